// Package fence makes a node fence itself.
//
// The guard (`haxd guard`) is a small separate process that the agent must
// feed over a unix socket, like a watchdog device. Each connection is one
// watchdog handle: "arm" arms it, every "feed" pushes its deadline
// WatchdogTimeout into the future, and "close" disarms it (the magic close
// of /dev/watchdog). Every arm and feed carries an expiry, the end of the
// agent's lock validity in CLOCK_MONOTONIC nanoseconds, and the deadline
// never goes beyond one WatchdogTimeout after it, however late the feed
// arrives. When any armed handle passes its deadline, also because the
// agent hung or died, the guard kills every service the node runs: each
// registered cgroup v2 directory through cgroup.kill, each registered
// process group with SIGKILL. When a watchdog device is configured, the
// guard opens it once, sets and reads back its timeout (refusing one that
// breaks the safety inequality), feeds it while no handle expired and
// stops feeding it when it fences, so the machine resets even if killing
// failed or the guard itself froze.
//
// Client is the agent's side of the socket protocol; Device drives a Linux
// watchdog device through the DeviceFile seam (the ioctls of
// linux/watchdog.h). The guard takes an injected Clock: every timing
// decision (expiry, device keepalive) is made against it.
//
// Wire protocol, one line per message. The guard greets with
// "haxd-guard 2 timeout_ms=N". The client sends "arm EXPIRY",
// "feed EXPIRY", "register pgid N", "register cgroup DIR",
// "unregister pgid N", "unregister cgroup DIR", "fence" or "close", and
// the guard answers each with "ok" or "err TEXT". "arm", "feed" and
// "fence" arm the handle if it is not armed yet; targets registered on an
// unarmed handle are killed by any fence but forgotten when the
// connection ends unarmed, so a connection that says nothing arms
// nothing. "err fenced" means the guard already killed the node's
// services. A cgroup may be registered before it exists if its parent is
// a cgroup v2 directory (a systemd unit's cgroup before the unit starts).
//
// Limits: without a watchdog device, a guard that is itself frozen
// (SIGSTOP) or killed cannot fence; run it with a high OOM-kill protection
// and, where possible, a device. A process group misses processes that
// left it (setsid); the agent puts every service in a cgroup v2 leaf where
// cgroup v2 is mounted.
package fence
