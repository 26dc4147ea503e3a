package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"haxd/clock"
	"haxd/fence"
)

// runGuardReaction measures how late a real `haxd guard` kills a
// registered service after its client's deadline, the bound that
// self_fence_time + clock_drift_margin must cover (docs/safety.md). Each
// of n rounds starts `sleep` in a process group of its own, arms a guard
// handle with an expiry of now (so the guard's deadline is now +
// watchdog_timeout, exactly as for an agent whose lock validity ends
// now), registers the group and never feeds. The death is observed by
// wait(2) in this process, on CLOCK_MONOTONIC (the clock the guard and
// the agent time deadlines on): its lateness includes the guard's timer
// firing late, the kill, and this process's own wake-up, so it
// over-estimates the guard's reaction. The benchmark itself runs under
// SCHED_RR at priority 50 when it may, above the guard's, so that its own
// wake-up adds as little as possible whether or not the guard runs under
// the real-time scheduler (prio, the guard's --realtime-priority; 0 is
// the normal scheduler).
func runGuardReaction(ctx context.Context, bin, dir, timing string, n, prio int) error {
	sock := filepath.Join(dir, "guard-bench.sock")
	var logBuf bytes.Buffer
	g := exec.Command(bin, "guard", "--socket", sock, "--timing", timing, "--realtime-priority", fmt.Sprint(prio))
	g.Stderr, g.Stdout = &logBuf, &logBuf
	g.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := g.Start(); err != nil {
		return fmt.Errorf("start guard: %w", err)
	}
	// Only now: the guard must not inherit the benchmark's policy.
	if err := fence.SetRealtime(50); err != nil {
		fmt.Printf("!!! the benchmark could not take SCHED_RR (%v): its own wake-up under load inflates every number\n", err)
	}
	defer func() {
		_ = g.Process.Signal(syscall.SIGTERM)
		_ = g.Wait()
	}()
	if err := waitProbe(ctx, sock); err != nil {
		return fmt.Errorf("guard did not come up: %w (log: %s)", err, logBuf.String())
	}
	fmt.Printf("guard reaction: %d rounds, timing %s, guard --realtime-priority %d; load average at the start: %s\n", n, timing, prio, loadAvg())
	var late []time.Duration
	for i := range n {
		d, err := guardRound(ctx, sock)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		late = append(late, d)
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	}
	fmt.Printf("load average at the end: %s\n", loadAvg())
	fmt.Printf("service dead after the guard's deadline (%d rounds; min / median / p95 / p99 / max): %s\n", len(late), spread(late))
	return nil
}

// guardRound arms one handle that expires at once, registers a fresh
// sleep's process group with it and returns how long after the handle's
// deadline wait(2) saw the sleep die.
func guardRound(ctx context.Context, sock string) (time.Duration, error) {
	sys := clock.System{}
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start sleep: %w", err)
	}
	died := make(chan int64, 1)
	go func() {
		_ = cmd.Wait()
		died <- sys.Mono()
	}()
	expiry := sys.Mono()
	c, err := fence.Open(ctx, sock, expiry)
	if err != nil {
		_ = cmd.Process.Kill()
		<-died
		return 0, fmt.Errorf("open guard handle: %w", err)
	}
	defer c.Abandon()
	deadline := expiry + int64(c.GuardTimeout())
	if err := c.Register(fence.PGID(cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		<-died
		return 0, fmt.Errorf("register pgid %d: %w", cmd.Process.Pid, err)
	}
	select {
	case at := <-died:
		return time.Duration(at - deadline), nil
	case <-time.After(c.GuardTimeout() + 30*time.Second):
		_ = cmd.Process.Kill()
		<-died
		return 0, fmt.Errorf("the guard did not kill pgid %d within 30 s of its deadline", cmd.Process.Pid)
	}
}

// waitProbe waits until the guard at sock answers.
func waitProbe(ctx context.Context, sock string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fence.Probe(ctx, sock)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
