package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
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
	Timing          string        `enum:"pve,fast" default:"fast" help:"Timing profile: its watchdog_timeout is the guard's, and its safety inequality is checked at start-up."`
	WatchdogTimeout time.Duration `name:"watchdog-timeout" help:"Override the profile's watchdog_timeout (the safety inequality is checked with it)."`
	LockTTL         time.Duration `name:"lock-ttl" help:"Override the profile's lock_ttl for the safety check (the agent passes its effective timing)."`
	LockValidity    time.Duration `name:"lock-validity" help:"Override the profile's lock_validity for the safety check (0 keeps the profile's)."`
	SelfFenceTime   time.Duration `name:"self-fence-time" help:"Override the profile's self_fence_time."`
	DriftMargin     time.Duration `name:"clock-drift-margin" help:"Override the profile's clock_drift_margin for the safety check."`
	Device          string        `help:"Watchdog device to arm and feed, e.g. /dev/watchdog; it stops being fed when the guard fences, so the machine resets."`
	DeviceTimeout   time.Duration `name:"device-timeout" help:"Timeout to set on the device (whole seconds); 0 asks for self_fence_time rounded up to whole seconds. The guard refuses to start when the timeout the driver grants breaks the safety inequality."`
	DeviceKeepalive time.Duration `name:"device-keepalive" default:"1s" help:"How often to feed the device; less than half its timeout."`
	CheckWatchdog   bool          `name:"check-watchdog" help:"Report the watchdog device (--device, default /dev/watchdog): its identity and timeout, and whether the timing's safety inequality allows it; then exit, leaving the device disarmed."`
	Cgroup          []string      `help:"cgroup v2 directory to kill on every fence (repeatable)."`
	PGID            []int         `name:"pgid" help:"Process group to kill on every fence (repeatable)."`
	LogLevel        string        `name:"log-level" enum:"debug,info,warn,error" default:"info" help:"Log level."`
}

// Run checks the timings, then serves until SIGINT or SIGTERM. Stopping the
// guard while an agent is armed fences: stop the agent first.
func (c *GuardCmd) Run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("guard --log-level: %w", err)
	}
	logger := slog.New(newLogHandler(os.Stderr, "text", c.LogLevel))
	cfg, err := c.config(logger)
	if err != nil {
		return err
	}
	if c.CheckWatchdog {
		return c.checkWatchdog(os.Stdout, cfg, nil, "")
	}
	g, err := fence.Listen(cfg, logger)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return g.Serve(ctx)
}

// config builds the guard configuration, refusing timings that break the
// safety inequality.
func (c *GuardCmd) config(logger *slog.Logger) (fence.GuardConfig, error) {
	timing, err := ha.TimingProfile(c.Timing)
	if err != nil {
		return fence.GuardConfig{}, fmt.Errorf("guard --timing: %w", err)
	}
	if c.WatchdogTimeout != 0 {
		timing.WatchdogTimeout = c.WatchdogTimeout
	}
	if c.LockTTL != 0 {
		timing.LockTTL = c.LockTTL
	}
	if c.LockValidity != 0 {
		timing.LockValidity = c.LockValidity
	}
	if c.SelfFenceTime != 0 {
		timing.SelfFenceTime = c.SelfFenceTime
	}
	if c.DriftMargin != 0 {
		timing.ClockDriftMargin = c.DriftMargin
	}
	warnings, err := timing.Validate()
	if err != nil {
		return fence.GuardConfig{}, fmt.Errorf("guard: refusing to start: %w", err)
	}
	for _, w := range warnings {
		logger.Warn("guard: timing " + w)
	}
	return fence.GuardConfig{
		SocketPath:      c.Socket,
		Timing:          timing,
		WatchdogTimeout: timing.WatchdogTimeout,
		SelfFenceTime:   timing.SelfFenceTime,
		Device:          c.Device,
		DeviceTimeout:   c.DeviceTimeout,
		DeviceKeepalive: c.DeviceKeepalive,
		Cgroups:         c.Cgroup,
		PGIDs:           c.PGID,
	}, nil
}

// checkWatchdog reports the device of cfg (default /dev/watchdog) and
// whether the timing allows it, with open and sysfs as in
// fence.CheckDevice. The device is left disarmed.
func (c *GuardCmd) checkWatchdog(w io.Writer, cfg fence.GuardConfig, open fence.OpenDeviceFunc, sysfs string) error {
	dev := cfg.Device
	if dev == "" {
		dev = "/dev/watchdog"
	}
	r, err := fence.CheckDevice(dev, open, sysfs)
	if err != nil {
		return fmt.Errorf("guard --check-watchdog: %w", err)
	}
	fmt.Fprint(w, r.String())
	t := cfg.Timing
	limit := t.LockTTL - t.LockValidity - t.WatchdogTimeout - t.ClockDriftMargin
	fmt.Fprintf(w, "timing:   %s: lock_ttl %v - lock_validity %v - watchdog_timeout %v - clock_drift_margin %v leaves a device timeout below %v\n",
		c.Timing, t.LockTTL, t.LockValidity, t.WatchdogTimeout, t.ClockDriftMargin, limit)
	want := cfg.DeviceTimeout
	if want == 0 {
		want = max(time.Second, (t.SelfFenceTime+time.Second-1)/time.Second*time.Second)
	}
	fmt.Fprintf(w, "request:  the guard would ask for %v (WDIOC_SETTIMEOUT) and refuse to start if the driver grants %v or more\n", want, limit)
	if err := fence.CheckDeviceTimeout(dev, t, want, want); err != nil {
		return fmt.Errorf("guard --check-watchdog: %w", err)
	}
	return nil
}
