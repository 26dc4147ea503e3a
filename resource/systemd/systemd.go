// Package systemd is the resource agent for type "systemd": an HA service
// that is one systemd unit on the local node, driven through systemctl.
//
// The SID's name is the unit ("systemd:nginx" is nginx.service,
// "systemd:data.mount" is data.mount). The unit should not be enabled to
// start at boot: haxd decides where it runs.
//
// Running counts every ActiveState other than "inactive" and "failed" as
// running, so that a unit that is still activating, deactivating or waiting
// for an automatic restart is never taken for stopped (and then started on a
// second node). Stop queues a stop job first, which cancels any pending
// automatic restart, and SIGKILLs the unit's processes when the stop does
// not finish within the timeout.
//
// Self-fencing: the unit's cgroup is registered with the node's guard
// (resource.Fence) before the unit starts, derived from its Slice, and
// again after the start from its ControlGroup, so the guard's cgroup.kill
// reaches every process of the unit. Units with Restart= other than "no"
// are refused: systemd would start them again after the self-fence killed
// them, next to their recovered copy on another node.
package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"haxd/ha"
	"haxd/resource"
)

// Type is the resource type this agent handles ("systemd:<unit>" SIDs).
const Type = "systemd"

// Config configures an Agent.
type Config struct {
	// Systemctl is the systemctl program. Empty means "systemctl" from PATH.
	Systemctl string
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// KillWait is how long Stop waits for the unit to become inactive after
	// SIGKILL before it reports failure. Zero means 10 s.
	KillWait time.Duration
	// PollInterval is how often Stop checks the unit's state while it
	// waits. Zero means 100 ms.
	PollInterval time.Duration
	// CgroupMount is the cgroup v2 mount point (e.g. /sys/fs/cgroup, or
	// /sys/fs/cgroup/unified on a hybrid host): units' cgroups are
	// registered with the Fence under it. Empty: no cgroup is registered
	// and a self-fence cannot reach the unit's processes.
	CgroupMount string
	// Fence puts every started unit under the node's self-fence (see
	// resource.Fence). Nil means resource.NoFence.
	Fence resource.Fence
}

// Agent is the ha.ResourceAgent for systemd units.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	fence resource.Fence

	mu      sync.Mutex
	cgroups map[ha.SID][]string // registered with the Fence
}

var _ ha.ResourceAgent = (*Agent)(nil)

// New returns an agent; it does not check that systemd runs.
func New(cfg Config) (*Agent, error) {
	if cfg.KillWait < 0 || cfg.PollInterval < 0 {
		return nil, fmt.Errorf("systemd agent: kill wait %s, poll interval %s: must not be negative", cfg.KillWait, cfg.PollInterval)
	}
	if cfg.Systemctl == "" {
		cfg.Systemctl = "systemctl"
	}
	if cfg.KillWait == 0 {
		cfg.KillWait = 10 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Agent{cfg: cfg, log: log, fence: cfg.Fence, cgroups: map[ha.SID][]string{}}
	if a.fence == nil {
		a.fence = resource.NoFence{}
	}
	return a, nil
}

// SlicePath returns the cgroup path of a systemd slice: dashes denote
// nesting, so "a-b.slice" is "/a.slice/a-b.slice", and "-.slice" (the root
// slice) is "". It returns false for a name that is not a slice.
func SlicePath(slice string) (string, bool) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	if name == "-" {
		return "", true
	}
	parts := strings.Split(name, "-")
	if slices.Contains(parts, "") {
		return "", false
	}
	var p string
	for i := range parts {
		p += "/" + strings.Join(parts[:i+1], "-") + ".slice"
	}
	return p, true
}

// cgroupDir returns the cgroup v2 directory of a cgroup path as systemd
// reports it ("/system.slice/nginx.service"), or "".
func (a *Agent) cgroupDir(cg string) string {
	if a.cfg.CgroupMount == "" || cg == "" || !strings.HasPrefix(cg, "/") || filepath.Clean(cg) != cg || cg == "/" {
		return ""
	}
	return filepath.Join(a.cfg.CgroupMount, cg)
}

// unitSuffixes are the unit types a SID may name explicitly.
func unitSuffixes() []string {
	return []string{".service", ".socket", ".target", ".mount", ".automount", ".swap", ".timer", ".path", ".slice", ".scope"}
}

// Unit returns the unit name of sid: its name, with ".service" appended
// unless it already ends in a unit type suffix. Names that systemd would not
// accept (or that look like options) are errors.
func Unit(sid ha.SID) (string, error) {
	name := sid.Name()
	if name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, ".") || len(name) > 250 {
		return "", fmt.Errorf("unit name %q of %s: must be 1-250 characters and not start with '-' or '.'", name, sid)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.@\\", r)
		if !ok {
			return "", fmt.Errorf("unit name %q of %s: character %q not allowed", name, sid, r)
		}
	}
	for _, s := range unitSuffixes() {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return name, nil
		}
	}
	return name + ".service", nil
}

// systemctl runs systemctl with args and returns its trimmed stdout.
func (a *Agent) systemctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, a.cfg.Systemctl, args...)
	cmd.WaitDelay = time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), ctx.Err())
		}
		msg := strings.TrimSpace(errOut.String())
		if msg != "" {
			return "", fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(out.String()), nil
}

// state returns the unit's LoadState and ActiveState.
func (a *Agent) state(ctx context.Context, unit string) (load, active string, err error) {
	p, err := a.show(ctx, unit, "LoadState", "ActiveState")
	if err != nil {
		return "", "", err
	}
	return p["LoadState"], p["ActiveState"], nil
}

// show returns the named properties of unit (missing ones are ""); it
// fails when systemd reports no ActiveState.
func (a *Agent) show(ctx context.Context, unit string, props ...string) (map[string]string, error) {
	args := []string{"show"}
	for _, p := range props {
		args = append(args, "--property="+p)
	}
	out, err := a.systemctl(ctx, append(args, "--", unit)...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		if slices.Contains(props, k) {
			m[k] = v
		}
	}
	if slices.Contains(props, "ActiveState") && m["ActiveState"] == "" {
		return nil, fmt.Errorf("systemctl show %s: no ActiveState in %q", unit, out)
	}
	return m, nil
}

// stopped reports whether an ActiveState means no process of the unit runs.
func stopped(active string) bool { return active == "inactive" || active == "failed" }

// Running reports whether the unit is anything but inactive or failed.
func (a *Agent) Running(ctx context.Context, sid ha.SID) (bool, error) {
	unit, err := Unit(sid)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	_, active, err := a.state(ctx, unit)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	return !stopped(active), nil
}

// Start starts the unit and waits for the start job (systemctl start). A
// cancelled ctx stops waiting, but systemd finishes the job.
func (a *Agent) Start(ctx context.Context, sid ha.SID) error {
	unit, err := Unit(sid)
	if err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	p, err := a.show(ctx, unit, "LoadState", "ActiveState", "Restart", "Slice")
	if err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	if p["LoadState"] == "not-found" {
		return fmt.Errorf("start %s: unit %s not found", sid, unit)
	}
	if r := p["Restart"]; r != "" && r != "no" {
		return fmt.Errorf("start %s: unit %s has Restart=%s: systemd would start it again after a self-fence killed it, while haxd recovers it on another node; set Restart=no (haxd restarts failed services itself)", sid, unit, r)
	}
	var expected string
	if sp, ok := SlicePath(p["Slice"]); ok {
		expected = a.cgroupDir(sp + "/" + unit)
	}
	if err := a.fence.Admit(sid, expected); err != nil {
		return fmt.Errorf("start %s: not started: %w", sid, err)
	}
	a.remember(sid, expected)
	if _, err := a.systemctl(ctx, "start", "--", unit); err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	actual := expected
	if q, err := a.show(ctx, unit, "ControlGroup"); err == nil && a.cgroupDir(q["ControlGroup"]) != "" {
		actual = a.cgroupDir(q["ControlGroup"])
	}
	if actual != expected {
		a.remember(sid, actual)
	}
	if err := a.fence.Spawned(sid, 0, actual); err != nil {
		a.log.Error("systemd unit killed at once: it could not be put under the self-fence", ha.KeySID, string(sid), "unit", unit, "err", err)
		zero := 0
		if serr := a.stop(context.WithoutCancel(ctx), sid, &zero); serr != nil {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("start %s: killed: %w", sid, err)
	}
	a.log.Info("systemd unit started", ha.KeySID, string(sid), "unit", unit, "cgroup", actual)
	return nil
}

// remember records a cgroup registered for sid, to release it on stop.
func (a *Agent) remember(sid ha.SID, cg string) {
	if cg == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Contains(a.cgroups[sid], cg) {
		a.cgroups[sid] = append(a.cgroups[sid], cg)
	}
}

// release unregisters the cgroups of a stopped unit.
func (a *Agent) release(sid ha.SID) {
	a.mu.Lock()
	cgs := a.cgroups[sid]
	delete(a.cgroups, sid)
	a.mu.Unlock()
	for _, cg := range cgs {
		a.fence.Released(sid, 0, cg)
	}
}

// Stop stops the unit. With timeout nil it waits for systemd's own stop
// (TimeoutStopSec applies); with timeout t > 0 it waits t seconds and then
// SIGKILLs every process of the unit; with 0 it kills at once. In every case
// a stop job is queued first, so Restart= does not bring the unit back.
func (a *Agent) Stop(ctx context.Context, sid ha.SID, timeout *int) error {
	if err := a.stop(ctx, sid, timeout); err != nil {
		return fmt.Errorf("stop %s: %w", sid, err)
	}
	a.release(sid)
	return nil
}

func (a *Agent) stop(ctx context.Context, sid ha.SID, timeout *int) error {
	if timeout != nil && *timeout < 0 {
		return fmt.Errorf("timeout %d: must not be negative", *timeout)
	}
	unit, err := Unit(sid)
	if err != nil {
		return err
	}
	if timeout == nil {
		_, err := a.systemctl(ctx, "stop", "--", unit)
		return err
	}
	if *timeout > 0 {
		sctx, cancel := context.WithTimeout(ctx, time.Duration(*timeout)*time.Second)
		_, err := a.systemctl(sctx, "stop", "--", unit)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		a.log.Warn("systemd unit did not stop in time, sending SIGKILL", ha.KeySID, string(sid), "unit", unit, "timeout", *timeout)
	}
	// The stop job cancels a pending restart and makes the unit end up
	// inactive once its processes are gone.
	if _, err := a.systemctl(ctx, "stop", "--no-block", "--", unit); err != nil {
		return err
	}
	if _, err := a.systemctl(ctx, "kill", "--signal=SIGKILL", "--", unit); err != nil {
		a.log.Debug("systemctl kill", ha.KeySID, string(sid), "err", err)
	}
	deadline := time.NewTimer(a.cfg.KillWait)
	defer deadline.Stop()
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	for {
		_, active, err := a.state(ctx, unit)
		if err != nil {
			return err
		}
		if stopped(active) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("unit %s still %s %s after SIGKILL", unit, active, a.cfg.KillWait)
		case <-tick.C:
		}
	}
}

// Migrate stops the unit here; the caller moves the location to target.
// Units cannot move live, so an online migration is done the same way.
func (a *Agent) Migrate(ctx context.Context, sid ha.SID, target string, online bool) error {
	if err := a.Stop(ctx, sid, nil); err != nil {
		return fmt.Errorf("migrate %s to %s: %w", sid, target, err)
	}
	return nil
}

// LiveMigratable reports false.
func (a *Agent) LiveMigratable() bool { return false }

// RemoveLocks returns "": units have no resource locks.
func (a *Agent) RemoveLocks(ha.SID, []string) string { return "" }
