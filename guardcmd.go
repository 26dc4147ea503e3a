package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"haxd/fence"
	"haxd/ha"
)

// GuardCmd is `haxd guard`: the self-fencing watchdog process for hosts
// without a hardware watchdog (and a feeder of /dev/watchdog on hosts with
// one).
type GuardCmd struct {
	Socket          string        `default:"/run/haxd/guard.sock" help:"Unix socket the agent feeds."`
	Timing          string        `default:"fast" help:"The timing: a profile (pve, fast), or the agent's resolved timing as JSON (the agent passes its own; every field required). Its watchdog_timeout is the guard's, and its safety inequality is checked at start-up."`
	Device          string        `help:"Watchdog device to arm and feed, e.g. /dev/watchdog; it stops being fed when the guard fences, so the machine resets."`
	DeviceTimeout   time.Duration `name:"device-timeout" help:"Timeout to set on the device (whole seconds); 0 asks for self_fence_time rounded up to whole seconds. The guard refuses to start when the timeout the driver grants breaks the safety inequality."`
	DeviceKeepalive time.Duration `name:"device-keepalive" default:"1s" help:"How often to feed the device; less than half its timeout."`
	CheckWatchdog   bool          `name:"check-watchdog" help:"Report the watchdog device (--device, default /dev/watchdog): its identity and timeout, and whether the timing's safety inequality allows it; then exit, leaving the device disarmed."`
	Cgroup          []string      `help:"cgroup v2 directory to kill on every fence (repeatable)."`
	PGID            []int         `name:"pgid" help:"Process group to kill on every fence (repeatable)."`
	LogLevel        string        `name:"log-level" enum:"debug,info,warn,error" default:"info" help:"Log level."`
	RealtimePrio    int           `name:"realtime-priority" default:"10" help:"SCHED_RR priority (1-99) for the guard's threads, so that its timers and kills run before any normal process however loaded the host is; 0 keeps the normal scheduler. Without it the guard's reaction grows with the run queue (docs/safety.md)."`
}

// Run checks the timings, then serves until SIGINT or SIGTERM. Stopping the
// guard while an agent is armed fences: stop the agent first.
func (c *GuardCmd) Run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("guard --log-level: %w", err)
	}
	if c.RealtimePrio < 0 || c.RealtimePrio > 99 {
		return fmt.Errorf("guard --realtime-priority %d: expected 0 (off) or a SCHED_RR priority 1-99", c.RealtimePrio)
	}
	logger := slog.New(newLogHandler(os.Stderr, "text", c.LogLevel))
	cfg, timing, err := c.config(logger)
	if err != nil {
		return err
	}
	if c.CheckWatchdog {
		return c.checkWatchdog(os.Stdout, cfg, timing, nil, "")
	}
	logger.Info("guard: timing checked", "timing", timing.Encode())
	c.raisePriority(logger)
	g, err := fence.Listen(cfg, logger)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return g.Serve(ctx)
}

// resolved reports whether --timing is a serialised ha.Timing (a JSON
// object) rather than a profile name.
func (c *GuardCmd) resolved() bool { return strings.HasPrefix(strings.TrimSpace(c.Timing), "{") }

// timing resolves --timing: a profile name or a serialised ha.Timing.
func (c *GuardCmd) timing() (ha.Timing, error) {
	if c.resolved() {
		return ha.DecodeTiming(c.Timing)
	}
	return ha.TimingProfile(c.Timing)
}

// config builds the guard configuration, refusing timings that break the
// safety inequality (ha.Timing.Validate, the agent's own check).
func (c *GuardCmd) config(logger *slog.Logger) (fence.GuardConfig, ha.Timing, error) {
	timing, err := c.timing()
	if err != nil {
		return fence.GuardConfig{}, timing, fmt.Errorf("guard --timing: %w", err)
	}
	warnings, err := timing.Validate()
	if err != nil {
		return fence.GuardConfig{}, timing, fmt.Errorf("guard: refusing to start: %w", err)
	}
	for _, w := range warnings {
		logger.Warn("guard: timing " + w)
	}
	return fence.GuardConfig{
		SocketPath:         c.Socket,
		WatchdogTimeout:    timing.WatchdogTimeout,
		SelfFenceTime:      timing.SelfFenceTime,
		CheckDeviceTimeout: timing.CheckDeviceTimeout,
		Device:             c.Device,
		DeviceTimeout:      c.DeviceTimeout,
		DeviceKeepalive:    c.DeviceKeepalive,
		Cgroups:            c.Cgroup,
		PGIDs:              c.PGID,
	}, timing, nil
}

// checkWatchdog reports the device of cfg (default /dev/watchdog) and
// whether the timing allows it, with open and sysfs as in
// fence.CheckDevice. The device is left disarmed.
func (c *GuardCmd) checkWatchdog(w io.Writer, cfg fence.GuardConfig, t ha.Timing, open fence.OpenDeviceFunc, sysfs string) error {
	dev := cfg.Device
	if dev == "" {
		dev = "/dev/watchdog"
	}
	r, err := fence.CheckDevice(dev, open, sysfs)
	if err != nil {
		return fmt.Errorf("guard --check-watchdog: %w", err)
	}
	fmt.Fprint(w, r.String())
	limit := t.MaxDeviceTimeout()
	name := c.Timing
	if c.resolved() {
		name = "the agent's timing"
	}
	fmt.Fprintf(w, "timing:   %s: lock_ttl %v - lock_validity %v - watchdog_timeout %v - clock_drift_margin %v leaves a device timeout below %v\n",
		name, t.LockTTL, t.LockValidity, t.WatchdogTimeout, t.ClockDriftMargin, limit)
	want := cfg.RequestedDeviceTimeout()
	fmt.Fprintf(w, "request:  the guard would ask for %v (WDIOC_SETTIMEOUT) and refuse to start if the driver grants %v or more\n", want, limit)
	if err := t.CheckDeviceTimeout(dev, want, want); err != nil {
		return fmt.Errorf("guard --check-watchdog: %w", err)
	}
	return nil
}

// raisePriority puts the guard under the real-time scheduler
// (--realtime-priority). A guard that cannot get it still runs, and says
// loudly that its reaction now depends on the host's load.
func (c *GuardCmd) raisePriority(logger *slog.Logger) {
	if c.RealtimePrio == 0 {
		logger.Warn("guard: real-time scheduling off (--realtime-priority 0): the guard's reaction to a missed deadline grows with the host's load")
		return
	}
	if err := fence.SetRealtime(c.RealtimePrio); err != nil {
		logger.Warn("guard: could not switch to real-time scheduling: the guard's reaction to a missed deadline grows with the host's load", "err", err)
		return
	}
	logger.Info("guard: real-time scheduling", "policy", "SCHED_RR", "priority", c.RealtimePrio)
}
