package fence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"haxd/clock"
)

// These tests fence real processes with the real clock.

const realTimeout = 600 * time.Millisecond

// startRealGuard runs a guard with the system clock and real kills.
func startRealGuard(t *testing.T, path string) (*Guard, context.CancelFunc) {
	t.Helper()
	if path == "" {
		path = socketPath(t)
	}
	g, err := Listen(GuardConfig{SocketPath: path, WatchdogTimeout: realTimeout, SelfFenceTime: time.Second},
		slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Serve(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return g, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// service is a process started in its own process group.
type service struct {
	cmd  *exec.Cmd
	done chan struct{}
	end  time.Time
	err  error
}

func startService(t *testing.T, name string, args ...string) *service {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		s.end = time.Now()
		close(s.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

func (s *service) pgid() int { return s.cmd.Process.Pid }

func (s *service) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// waitDead waits up to limit for the service to exit and checks SIGKILL
// ended it.
func (s *service) waitDead(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(limit):
		t.Fatalf("service %d still running after %v", s.pgid(), limit)
	}
	var ee *exec.ExitError
	if !errors.As(s.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("service ended with %v, want killed by SIGKILL", s.err)
	}
}

func TestGuardKillsARegisteredProcessGroupAfterTheTimeoutAndNotBefore(t *testing.T) {
	g, _ := startRealGuard(t, "")
	svc := startService(t, "sleep", "1000")
	c, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(PGID(svc.pgid())); err != nil {
		t.Fatal(err)
	}
	var lastFeed time.Time
	for range 5 { // fed every 200 ms for 1 s: well past one timeout
		lastFeed = time.Now()
		if err := c.Feed(noExpiry); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !svc.running() {
		t.Fatal("service killed while the agent was feeding")
	}
	svc.waitDead(t, realTimeout+2*time.Second)
	took := svc.end.Sub(lastFeed)
	t.Logf("killed %v after the last feed (timeout %v)", took, realTimeout)
	if took < realTimeout {
		t.Errorf("killed %v after the last feed, before the %v timeout", took, realTimeout)
	}
	if took > realTimeout+500*time.Millisecond {
		t.Errorf("killed %v after the last feed, more than 500 ms late", took)
	}
	if err := c.Feed(noExpiry); !errors.Is(err, ErrFenced) {
		t.Errorf("Feed after the fence = %v, want ErrFenced", err)
	}
}

// The agent and the guard agree on CLOCK_MONOTONIC: feeds that vouch for a
// validity that ended keep nothing alive, however often they come.
func TestFeedsWithAnExpiredValidityDoNotKeepServicesAlive(t *testing.T) {
	g, _ := startRealGuard(t, "")
	svc := startService(t, "sleep", "1000")
	expired := clock.System{}.Mono() - int64(realTimeout) + int64(300*time.Millisecond) // the guard fences 300 ms from now
	c, err := Open(t.Context(), g.Addr(), expired)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(PGID(svc.pgid())); err != nil {
		t.Fatal(err)
	}
	fenced := false
	for range 40 { // 2 s of feeds every 50 ms, each for the old validity
		if err := c.Feed(expired); errors.Is(err, ErrFenced) {
			fenced = true
			break
		} else if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !fenced {
		t.Fatal("feeds for a validity that ended kept the handle alive")
	}
	svc.waitDead(t, 2*time.Second)
}

func TestGracefulCloseDoesNotKill(t *testing.T) {
	g, _ := startRealGuard(t, "")
	svc := startService(t, "sleep", "1000")
	c, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(PGID(svc.pgid())); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * realTimeout)
	if !svc.running() {
		t.Error("service killed although the agent closed its handle gracefully")
	}
	if g.Fences() != 0 {
		t.Errorf("Fences() = %d, want 0", g.Fences())
	}
}

func TestARestartedAgentRegistersAgainAndIsGuarded(t *testing.T) {
	g, _ := startRealGuard(t, "")
	svc := startService(t, "sleep", "1000")
	first, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Register(PGID(svc.pgid())); err != nil {
		t.Fatal(err)
	}
	// The agent restarts with its services left running: it disarms, and
	// the guard forgets the registration.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Register(PGID(svc.pgid())); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	svc.waitDead(t, realTimeout+2*time.Second)
	if took := svc.end.Sub(start); took < realTimeout-50*time.Millisecond {
		t.Errorf("killed %v after the new handle was armed, want about %v", took, realTimeout)
	}
}

func TestRegisteringAMissingProcessGroupFails(t *testing.T) {
	g, _ := startRealGuard(t, "")
	svc := startService(t, "true")
	<-svc.done
	c, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Register(PGID(svc.pgid())); err == nil || !strings.Contains(err.Error(), "no such process group") {
		t.Errorf("Register(dead pgid) = %v, want no such process group", err)
	}
	if err := c.Register(PGID(syscall.Getpgrp())); err == nil || !strings.Contains(err.Error(), "guard's own process group") {
		t.Errorf("Register(own pgid) = %v, want refusal", err)
	}
}

// cgroup2Mount returns the mount point of the cgroup v2 hierarchy.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(pre); len(fields) >= 5 {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

func TestGuardKillsARegisteredCgroupWithEveryProcessInIt(t *testing.T) {
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skipf("SKIP cgroup test: cgroup v2 unavailable: %v", err)
	}
	dir := filepath.Join(mnt, fmt.Sprintf("haxd-fence-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("SKIP cgroup test: cgroup v2 at %s not writable: %v", mnt, err)
	}
	t.Cleanup(func() {
		Cgroup(dir).kill()
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", dir)
	})
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		t.Logf("no cgroup.kill (Linux < 5.14): the guard kills each listed process")
	}
	// The shell moves itself into the cgroup, then forks two sleeps; one
	// escapes into its own session, which a process group would miss.
	svc := startService(t, "sh", "-c",
		`echo $$ > "$1/cgroup.procs" && { sleep 1000 & setsid sleep 1000 & wait; }`, "sh", dir)
	waitFor(t, 2*time.Second, "3 processes in the cgroup", func() bool {
		pids, _ := Cgroup(dir).pids()
		return len(pids) == 3
	})
	g, _ := startRealGuard(t, "")
	c, err := Open(t.Context(), g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(Cgroup(dir)); err != nil {
		t.Fatal(err)
	}
	svc.waitDead(t, realTimeout+2*time.Second)
	waitFor(t, 2*time.Second, "empty cgroup", func() bool {
		pids, _ := Cgroup(dir).pids()
		return len(pids) == 0
	})
}

func TestRegisteringTheCgroupRootOrTheGuardsOwnCgroupFails(t *testing.T) {
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skipf("SKIP: cgroup v2 unavailable: %v", err)
	}
	if err := Cgroup(mnt).validate(); err == nil || !strings.Contains(err.Error(), "root of the cgroup hierarchy") {
		t.Errorf("validate(%s) = %v, want refusal of the root", mnt, err)
	}
	if err := Cgroup("/tmp").validate(); err == nil || !strings.Contains(err.Error(), "not a directory on a cgroup v2") {
		t.Errorf("validate(/tmp) = %v, want not cgroup v2", err)
	}
	// Move this test process into parent/child, check that both are
	// refused (killing them would kill the guard), and move back.
	orig, err := selfCgroup()
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(mnt, fmt.Sprintf("haxd-fence-self-%d", os.Getpid()))
	child := filepath.Join(parent, "child")
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Skipf("SKIP: cgroup v2 at %s not writable: %v", mnt, err)
	}
	defer os.Remove(parent)
	defer os.Remove(child)
	pid := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), pid, 0); err != nil {
		t.Skipf("SKIP: cannot move the test into a cgroup: %v", err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(mnt, orig, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("move the test back to cgroup %s: %v", orig, err)
		}
	}()
	for _, dir := range []string{parent, child} {
		if err := Cgroup(dir).validate(); err == nil || !strings.Contains(err.Error(), "contains the guard itself") {
			t.Errorf("validate(%s) = %v, want refusal: the guard runs in it", dir, err)
		}
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
