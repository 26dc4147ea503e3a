// Package fence makes a node fence itself without fencing hardware.
//
// The guard (`haxd guard`) is a small separate process that the agent must
// feed over a unix socket, like a watchdog device. Each connection is one
// watchdog handle: its first command arms it (Open sends "arm"), every
// "feed" pushes its deadline WatchdogTimeout into the future, and "close"
// disarms it (the magic close of /dev/watchdog). When any armed handle is
// not fed for WatchdogTimeout, also because the agent hung or died, the
// guard kills every service the node runs: each registered cgroup v2
// directory through cgroup.kill, each registered process group with
// SIGKILL. When a /dev/watchdog is configured, the guard feeds it while all
// is well and stops feeding it when it fences, so the machine resets even
// if killing failed.
//
// Client is the agent's side of the socket protocol; Device drives a Linux
// watchdog device directly. The guard takes an injected Clock: every timing
// decision (expiry, device keepalive) is made against it.
//
// Wire protocol, one line per message. The guard greets with
// "haxd-guard 1 timeout_ms=N". The client sends "arm", "feed",
// "register pgid N", "register cgroup DIR", "unregister pgid N",
// "unregister cgroup DIR", "fence" or "close", and the guard answers each
// with "ok" or "err TEXT". Every command but "close" arms the handle if it
// is not armed yet; a connection that closes without a command arms
// nothing. "err fenced" means the guard already killed the node's
// services.
//
// Limits: without a watchdog device, a guard that is itself frozen
// (SIGSTOP) or killed cannot fence; run it with a high OOM-kill protection
// and, where possible, a device. A process group misses processes that
// left it (setsid); register cgroups where the agent can create them.
package fence
