//go:build linux

package exec

import (
	"context"
	"errors"
	"fmt"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"haxd/ha"
)

// maxHealthOutput is how much of the health check's output an error quotes.
const maxHealthOutput = 512

// cachedHealth returns the health of rec's process (nil: healthy), running
// the check unless a result younger than the health interval exists for the
// same process. err is set only when the check could not be judged (ctx
// done, or the command cannot be found).
func (a *Agent) cachedHealth(ctx context.Context, rec record) (health, err error) {
	now := a.cfg.Now()
	a.mu.Lock()
	last, ok := a.health[rec.SID]
	a.mu.Unlock()
	if ok && last.pid == rec.PID && last.start == rec.StartTicks && now.Sub(last.at) < rec.Spec.HealthInterval.D() && now.Sub(last.at) >= 0 {
		return last.err, nil
	}
	health, err = a.checkHealth(ctx, rec)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.health[rec.SID] = healthResult{pid: rec.PID, start: rec.StartTicks, at: a.cfg.Now(), err: health}
	a.mu.Unlock()
	return health, nil
}

// waitHealthy runs the health check every health interval until it passes,
// the start timeout has passed, the process is gone, or ctx is done.
func (a *Agent) waitHealthy(ctx context.Context, rec record) error {
	deadline := time.NewTimer(rec.Spec.StartTimeout.D())
	defer deadline.Stop()
	tick := time.NewTicker(rec.Spec.HealthInterval.D())
	defer tick.Stop()
	for {
		health, err := a.cachedHealth(ctx, rec)
		if err != nil {
			return err
		}
		if health == nil {
			return nil
		}
		live, err := a.probeAlive(rec)
		if err != nil {
			return err
		}
		if !live.alive() {
			return fmt.Errorf("process %d exited before its health check passed (last: %w), see %s", rec.PID, health, rec.Log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("health check did not pass within %s: %w", rec.Spec.StartTimeout.D(), health)
		case <-tick.C:
		}
	}
}

// checkHealth runs the health check once. health is nil when it passed and
// describes the failure otherwise; err is set when ctx ended the check or the
// command cannot be found, which says nothing about the service.
func (a *Agent) checkHealth(ctx context.Context, rec record) (health, err error) {
	spec := rec.Spec
	env := append(serviceEnv(rec.SID, spec), "HAXD_PID="+strconv.Itoa(rec.PID))
	path, err := lookPath(spec.HealthCommand, env)
	if err != nil {
		return nil, fmt.Errorf("health command: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, spec.HealthTimeout.D())
	defer cancel()
	cmd := osexec.CommandContext(hctx, path, spec.HealthArgs...)
	cmd.Args[0] = spec.HealthCommand
	cmd.Env = env
	cmd.Dir = spec.Dir
	// Its own process group, so that a timeout kills what it forked too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out capWriter
	cmd.Stdout = &out
	cmd.Stderr = &out
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("health check: %w", ctx.Err())
	}
	if runErr == nil {
		return nil, nil
	}
	what := exitStatus(runErr)
	if errors.Is(hctx.Err(), context.DeadlineExceeded) {
		what = "timed out after " + spec.HealthTimeout.D().String()
	}
	msg := strings.TrimSpace(out.String())
	a.log.Debug("exec service health check failed", ha.KeySID, string(rec.SID), "result", what, "output", msg)
	if msg != "" {
		return fmt.Errorf("health check %s: %s: %s", spec.HealthCommand, what, msg), nil
	}
	return fmt.Errorf("health check %s: %s", spec.HealthCommand, what), nil
}

// capWriter keeps the first maxHealthOutput bytes written to it.
type capWriter struct {
	b []byte
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := maxHealthOutput - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *capWriter) String() string { return string(w.b) }
