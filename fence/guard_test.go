package fence

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/clock"
)

// fakeClock is a manual clock: timers fire only when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *fakeClock
	at    time.Time
	ch    chan time.Time
	done  bool
}

// fakeEpoch is the fake clock's start; its CLOCK_MONOTONIC counts from
// here.
var fakeEpoch = time.Unix(1_000_000, 0)

// noExpiry is an expiry so far in the future that only the watchdog
// timeout after each feed counts.
const noExpiry = int64(1) << 62

func newFakeClock() *fakeClock { return &fakeClock{now: fakeEpoch} }

// Mono is the fake clock's CLOCK_MONOTONIC in nanoseconds.
func (c *fakeClock) Mono() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.now.Sub(fakeEpoch)) + 1
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.done = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves time forward and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.done {
			continue
		}
		if !c.now.Before(t.at) {
			t.done = true
			t.ch <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// waitTimers waits (in real time) until at least n timers are pending,
// i.e. the guard's loop has scheduled what the test is about to fire.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		pending := 0
		for _, tm := range c.timers {
			if !tm.done {
				pending++
			}
		}
		c.mu.Unlock()
		if pending >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard did not schedule %d timers (has %d)", n, pending)
		}
		time.Sleep(time.Millisecond)
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// killLog records the guard's kills instead of sending signals.
type killLog struct {
	mu  sync.Mutex
	cur []string
}

func (k *killLog) kill(t Target) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cur = append(k.cur, t.String())
	return nil
}

// match waits (in real time, up to 5 s) until at least len(want) kills
// happened, and reports whether the kills are exactly want.
func (k *killLog) match(want []string) ([]string, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for len(k.all()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	settle() // and catch any extra kill
	got := k.all()
	return got, slices.Equal(got, want)
}

// all returns every target killed so far, in order.
func (k *killLog) all() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.cur)
}

type fakeGuard struct {
	g      *Guard
	clock  *fakeClock
	kills  *killLog
	cancel context.CancelFunc
	done   chan error
	logs   *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// socketPath returns a short socket path (unix socket paths are limited
// to 108 bytes, and t.TempDir can be long).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "haxdg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "guard.sock")
}

// startFakeGuard runs a guard on a fake clock with recorded kills and
// target checks that accept any well-formed target.
func startFakeGuard(t *testing.T, cfg GuardConfig) *fakeGuard {
	t.Helper()
	if cfg.SocketPath == "" {
		cfg.SocketPath = socketPath(t)
	}
	if cfg.WatchdogTimeout == 0 {
		cfg.WatchdogTimeout = 800 * time.Millisecond
	}
	fg := &fakeGuard{clock: newFakeClock(), kills: &killLog{}, logs: &lockedBuffer{}, done: make(chan error, 1)}
	cfg.Clock = fg.clock
	g, err := Listen(cfg, slog.New(slog.NewTextHandler(fg.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	g.check = Target.checkSyntax
	g.kill = fg.kills.kill
	g.alive = func(Target) (bool, error) { return false, nil }
	fg.g = g
	ctx, cancel := context.WithCancel(context.Background())
	fg.cancel = cancel
	go func() { fg.done <- g.Serve(ctx) }()
	t.Cleanup(fg.stop)
	return fg
}

func (fg *fakeGuard) stop() {
	fg.cancel()
	<-fg.done
	fg.done <- nil // later stops return at once
}

// settle gives the guard's goroutines real time to react to a fake-clock
// step; the fake clock makes what they decide deterministic, this only
// waits for them to run.
func settle() { time.Sleep(50 * time.Millisecond) }

func open(t *testing.T, fg *fakeGuard) *Client {
	t.Helper()
	c, err := Open(t.Context(), fg.g.Addr(), noExpiry)
	if err != nil {
		t.Fatal(err)
	}
	settle() // let the guard arm the handle before the clock moves
	return c
}

func TestGuardKillsEveryTargetExactlyAtTheTimeoutAfterTheLastFeed(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{PGIDs: []int{4242}, Cgroups: []string{"/sys/fs/cgroup/haxd.slice"}})
	c := open(t, fg)
	if got := c.GuardTimeout(); got != 800*time.Millisecond {
		t.Fatalf("GuardTimeout = %v, want 800ms", got)
	}
	for _, tg := range []Target{PGID(300), Cgroup("/sys/fs/cgroup/haxd.slice/vm-100"), PGID(200), PGID(300)} {
		if err := c.Register(tg); err != nil {
			t.Fatal(err)
		}
	}
	fg.clock.Advance(799 * time.Millisecond)
	settle()
	if err := c.Feed(noExpiry); err != nil { // deadline is now 799+800 ms
		t.Fatal(err)
	}
	fg.clock.Advance(799 * time.Millisecond)
	settle()
	if k := fg.kills.all(); len(k) != 0 {
		t.Fatalf("killed %v 799ms after a feed, timeout is 800ms", k)
	}
	fg.clock.Advance(time.Millisecond)
	settle()
	want := []string{"pgid 200", "pgid 300", "pgid 4242", "cgroup /sys/fs/cgroup/haxd.slice", "cgroup /sys/fs/cgroup/haxd.slice/vm-100"}
	if k, ok := fg.kills.match(want); !ok {
		t.Fatalf("kills at the deadline = %v, want every registered and static target once, sorted: %v", k, want)
	}
	if err := c.Feed(noExpiry); !errors.Is(err, ErrFenced) {
		t.Errorf("Feed after the fence = %v, want ErrFenced", err)
	}
	if err := c.Register(PGID(500)); !errors.Is(err, ErrFenced) {
		t.Errorf("Register after the fence = %v, want ErrFenced", err)
	}
	if fg.g.Fences() != 1 {
		t.Errorf("Fences() = %d, want 1", fg.g.Fences())
	}
	if !strings.Contains(fg.logs.String(), "self-fence") {
		t.Errorf("the fence was not logged:\n%s", fg.logs.String())
	}
}

func TestGuardDoesNotFenceAfterAGracefulClose(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	if err := c.Register(PGID(300)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fg.clock.Advance(time.Hour)
	settle()
	fg.stop()
	if k := fg.kills.all(); len(k) != 0 || fg.g.Fences() != 0 {
		t.Errorf("after close: kills %v, fences %d; want none", k, fg.g.Fences())
	}
	if err := c.Feed(noExpiry); !errors.Is(err, ErrClosed) {
		t.Errorf("Feed after Close = %v, want ErrClosed", err)
	}
}

func TestGuardFencesWhenTheClientVanishesWithoutClosing(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	if err := c.Register(PGID(300)); err != nil {
		t.Fatal(err)
	}
	c.Abandon()
	settle()
	fg.clock.Advance(700 * time.Millisecond)
	settle()
	if k := fg.kills.all(); len(k) != 0 {
		t.Fatalf("killed %v before the deadline", k)
	}
	fg.clock.Advance(100 * time.Millisecond)
	settle()
	if k, ok := fg.kills.match([]string{"pgid 300"}); !ok {
		t.Errorf("kills = %v, want [pgid 300] at the deadline of the vanished client", k)
	}
}

func TestGuardWithTwoClientsKillsTheTargetsOfEveryArmedOne(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	lrm, crm, gone := open(t, fg), open(t, fg), open(t, fg)
	lrm.Register(PGID(300))
	crm.Register(PGID(400))
	gone.Register(PGID(500))
	if err := gone.Close(); err != nil { // disarmed: its target is forgotten
		t.Fatal(err)
	}
	fg.clock.Advance(500 * time.Millisecond)
	settle()
	if err := lrm.Feed(noExpiry); err != nil { // lrm is fed, crm is not
		t.Fatal(err)
	}
	fg.clock.Advance(300 * time.Millisecond)
	settle()
	if k, ok := fg.kills.match([]string{"pgid 300", "pgid 400"}); !ok {
		t.Errorf("kills = %v, want [pgid 300 pgid 400]: one expired handle fences the whole node", k)
	}
	if err := lrm.Feed(noExpiry); !errors.Is(err, ErrFenced) {
		t.Errorf("the fed client's next Feed = %v, want ErrFenced", err)
	}
}

func TestAFeedThatArrivesAfterTheDeadlineFences(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	c.Register(PGID(300))
	fg.clock.Advance(2 * time.Second)
	if err := c.Feed(noExpiry); !errors.Is(err, ErrFenced) {
		t.Errorf("late Feed = %v, want ErrFenced", err)
	}
	settle()
	if k, ok := fg.kills.match([]string{"pgid 300"}); !ok {
		t.Errorf("kills = %v, want exactly one kill of pgid 300", k)
	}
}

func TestFenceNowKillsAtOnce(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	c.Register(PGID(300))
	if err := c.FenceNow(); err != nil {
		t.Fatal(err)
	}
	if k, ok := fg.kills.match([]string{"pgid 300"}); !ok {
		t.Errorf("kills = %v, want [pgid 300]", k)
	}
}

func TestStoppingTheGuardWhileAClientIsArmedFences(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	c.Register(PGID(300))
	fg.stop()
	if k, ok := fg.kills.match([]string{"pgid 300"}); !ok {
		t.Errorf("kills = %v, want [pgid 300]: services must not outlive their guard", k)
	}
}

func TestGuardRejectsBadCommandsAndTargets(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	c := open(t, fg)
	tests := []struct {
		line string
		want string
	}{
		{"register pgid 1", "err target pgid 1: expected a process group ID > 1"},
		{"register pgid 0", "err target pgid 0"},
		{"register pgid x", "err target \"pgid x\": pgid is not a number"},
		{"register cgroup relative/dir", "err target cgroup \"relative/dir\": expected a clean absolute path"},
		{"register thing 3", "err target \"thing 3\": unknown kind"},
		{"reboot", "err unknown command \"reboot\""},
		{"feed", "err feed \"\": expected the lock's validity end"},
		{"feed -5", "err feed \"-5\": expected"},
		{"feed soon", "err feed \"soon\": expected"},
		{"feed 4611686018427387904", "ok"},
	}
	for _, tt := range tests {
		c.mu.Lock()
		got, err := c.roundTrip(tt.line)
		c.mu.Unlock()
		if err != nil || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%q → %q, %v; want prefix %q", tt.line, got, err, tt.want)
		}
	}
}

func TestAConnectionThatSendsNothingArmsNothing(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{PGIDs: []int{300}})
	conn, err := net.Dial("unix", fg.g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	settle()
	fg.clock.Advance(time.Hour)
	settle()
	conn.Close()
	settle()
	fg.clock.Advance(time.Hour)
	settle()
	fg.stop()
	if k := fg.kills.all(); len(k) != 0 {
		t.Errorf("a silent connection caused kills %v", k)
	}
}

func TestGuardRefusesClientsBeyondMaxClients(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{MaxClients: 1})
	open(t, fg)
	if _, err := Open(t.Context(), fg.g.Addr(), noExpiry); err == nil || !strings.Contains(err.Error(), "too many clients") {
		t.Errorf("second Open = %v, want refused: too many clients", err)
	}
}

func TestASecondGuardCannotTakeTheSocket(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	_, err := Listen(GuardConfig{SocketPath: fg.g.Addr(), WatchdogTimeout: time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "another process is serving the socket") {
		t.Errorf("second Listen = %v, want refusal", err)
	}
	// A stale socket file (its guard died) is replaced.
	fg.stop()
	if err := os.WriteFile(fg.g.Addr()+".x", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(GuardConfig{SocketPath: fg.g.Addr() + ".x", WatchdogTimeout: time.Second}, nil); err == nil {
		t.Errorf("Listen on a regular file succeeded, want refusal")
	}
}

func TestClientReregistersItsTargetsWithARestartedGuard(t *testing.T) {
	path := socketPath(t)
	fg := startFakeGuard(t, GuardConfig{SocketPath: path})
	c := open(t, fg)
	c.Register(PGID(300))
	c.Register(Cgroup("/sys/fs/cgroup/svc"))
	// The guard dies without fencing (SIGKILL): forget its handles so the
	// stop below does not fence, then stop it.
	fg.g.mu.Lock()
	fg.g.handles = map[uint64]*handle{}
	fg.g.mu.Unlock()
	fg.stop()

	fg2 := startFakeGuard(t, GuardConfig{SocketPath: path})
	if err := c.Feed(noExpiry); err != nil {
		t.Fatalf("Feed to the restarted guard: %v", err)
	}
	settle()
	fg2.clock.Advance(800 * time.Millisecond)
	settle()
	if k, ok := fg2.kills.match([]string{"pgid 300", "cgroup /sys/fs/cgroup/svc"}); !ok {
		t.Errorf("restarted guard killed %v, want the re-registered [pgid 300 cgroup /sys/fs/cgroup/svc]", k)
	}
}

func TestGuardConfigValidate(t *testing.T) {
	ok := GuardConfig{SocketPath: "/run/haxd/guard.sock", WatchdogTimeout: time.Second}
	tests := []struct {
		name    string
		change  func(*GuardConfig)
		wantErr string
	}{
		{"ok", func(*GuardConfig) {}, ""},
		{"no socket", func(c *GuardConfig) { c.SocketPath = "" }, "socket_path"},
		{"no timeout", func(c *GuardConfig) { c.WatchdogTimeout = 0 }, "watchdog_timeout"},
		{"sub-second device timeout", func(c *GuardConfig) { c.DeviceTimeout = 500 * time.Millisecond }, "whole seconds"},
		{"keepalive too slow", func(c *GuardConfig) { c.DeviceTimeout = 2 * time.Second; c.DeviceKeepalive = time.Second }, "less than half"},
		{"bad static pgid", func(c *GuardConfig) { c.PGIDs = []int{1} }, "pgid 1"},
		{"bad static cgroup", func(c *GuardConfig) { c.Cgroups = []string{"x/../y"} }, "clean absolute"},
	}
	for _, tt := range tests {
		c := ok
		tt.change(&c)
		err := c.Validate()
		if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestParseGreeting(t *testing.T) {
	tests := []struct {
		line    string
		want    time.Duration
		wantErr string
	}{
		{"haxd-guard 2 timeout_ms=800", 800 * time.Millisecond, ""},
		{"haxd-guard 1 timeout_ms=800", 0, "protocol version 1"},
		{"haxd-guard 2 timeout_ms=0", 0, "bad timeout"},
		{"SSH-2.0-OpenSSH", 0, "not a haxd guard"},
		{"err too many clients", 0, "guard refused: too many clients"},
	}
	for _, tt := range tests {
		got, err := parseGreeting(tt.line)
		if got != tt.want || (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseGreeting(%q) = %v, %v; want %v, %q", tt.line, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in    string
		state string
		pgrp  int
		ok    bool
	}{
		{"123 (sleep) S 1 123 123 0 -1", "S", 123, true},
		{"77 (a (weird) name) Z 1 55 55 0", "Z", 55, true},
		{"garbage", "", 0, false},
	}
	for _, tt := range tests {
		st, pg, ok := parseStat(tt.in)
		if st != tt.state || pg != tt.pgrp || ok != tt.ok {
			t.Errorf("parseStat(%q) = %q %d %v, want %q %d %v", tt.in, st, pg, ok, tt.state, tt.pgrp, tt.ok)
		}
	}
}

func TestCheckTimeoutRefusesAGuardSlowerThanTheAgentAssumes(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{WatchdogTimeout: 2 * time.Second})
	c := open(t, fg)
	if err := c.CheckTimeout(2 * time.Second); err != nil {
		t.Errorf("CheckTimeout(equal) = %v, want nil", err)
	}
	if err := c.CheckTimeout(time.Second); err == nil {
		t.Error("CheckTimeout(shorter than the guard's) = nil, want an error")
	}
}

// A feed carries the end of the lock validity it vouches for; however late
// it arrives, the deadline is at most one timeout after that expiry.
func TestAFeedNeverExtendsTheDeadlinePastItsExpiry(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{})
	expiry := fg.clock.Mono() + int64(300*time.Millisecond)
	c, err := Open(t.Context(), fg.g.Addr(), expiry)
	if err != nil {
		t.Fatal(err)
	}
	settle()
	c.Register(PGID(300))
	fg.clock.Advance(500 * time.Millisecond) // the feeder stalled past the expiry
	settle()
	if err := c.Feed(expiry); err != nil { // counts as fed at the expiry: deadline 300+800 ms
		t.Fatal(err)
	}
	// An older expiry, delayed on the way, does not move the deadline back.
	if err := c.Feed(expiry - int64(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	fg.clock.Advance(599 * time.Millisecond)
	settle()
	if k := fg.kills.all(); len(k) != 0 {
		t.Fatalf("killed %v before expiry + timeout", k)
	}
	fg.clock.Advance(time.Millisecond)
	if k, ok := fg.kills.match([]string{"pgid 300"}); !ok {
		t.Errorf("kills = %v, want [pgid 300] at expiry + timeout (1.1 s), not at the late feed + timeout (1.3 s)", k)
	}
}

// A client whose guard restarted arms the new handle with the latest
// expiry it sent, not with a fresh timeout: the new handle runs out when
// the old one would have, or at once when that is already past.
func TestARedialledClientDoesNotArmBeyondItsExpiry(t *testing.T) {
	for _, tt := range []struct {
		name     string
		down     time.Duration // how long the new guard ran before the client came back
		fencedAt time.Duration // after down; 0: at once
	}{
		{"expiry still ahead", 400 * time.Millisecond, 600 * time.Millisecond},
		{"expiry long past", 2 * time.Second, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := socketPath(t)
			fg := startFakeGuard(t, GuardConfig{SocketPath: path})
			// Both fake guards' monotonic clocks start at the same point,
			// so this expiry means 200 ms after the start for both.
			c, err := Open(t.Context(), path, int64(200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			c.Register(PGID(300))
			fg.g.mu.Lock()
			fg.g.handles = map[uint64]*handle{} // the guard dies without fencing
			fg.g.mu.Unlock()
			fg.stop()

			fg2 := startFakeGuard(t, GuardConfig{SocketPath: path})
			fg2.clock.Advance(tt.down)
			settle()
			err = c.Register(PGID(301)) // redials and arms
			if tt.fencedAt == 0 {
				if !errors.Is(err, ErrFenced) {
					t.Fatalf("Register after redial = %v, want ErrFenced: the expiry was more than a timeout ago", err)
				}
				if k, ok := fg2.kills.match([]string{"pgid 300"}); !ok {
					t.Errorf("kills = %v, want the re-registered pgid 300 killed at once", k)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			settle()
			fg2.clock.Advance(tt.fencedAt - time.Millisecond)
			settle()
			if k := fg2.kills.all(); len(k) != 0 {
				t.Fatalf("killed %v before expiry + timeout", k)
			}
			fg2.clock.Advance(time.Millisecond)
			if k, ok := fg2.kills.match([]string{"pgid 300", "pgid 301"}); !ok {
				t.Errorf("kills = %v, want both targets at expiry + timeout (1 s), not a fresh timeout after the redial", k)
			}
		})
	}
}

func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"1", "4611686018427387904", "", "-5", "0", "+7", "12x", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		n, err := parseExpiry("feed", arg)
		if err == nil && n <= 0 {
			t.Errorf("parseExpiry(%q) = %d without error, want a positive expiry", arg, n)
		}
		if err != nil && !strings.Contains(err.Error(), "CLOCK_MONOTONIC") {
			t.Errorf("parseExpiry(%q): error %q does not say what is expected", arg, err)
		}
	})
}

func TestProbeReadsTheGreetingAndArmsNothing(t *testing.T) {
	fg := startFakeGuard(t, GuardConfig{PGIDs: []int{300}})
	if err := Probe(t.Context(), fg.g.Addr()); err != nil {
		t.Fatalf("Probe = %v", err)
	}
	fg.clock.Advance(time.Hour)
	settle()
	if k := fg.kills.all(); len(k) != 0 {
		t.Errorf("a probe armed a handle: kills %v", k)
	}
	// A guard of another protocol version.
	old := socketPath(t)
	ln, err := net.Listen("unix", old)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("haxd-guard 1 timeout_ms=600\n"))
			c.Close()
		}
	}()
	if err := Probe(t.Context(), old); err == nil || !strings.Contains(err.Error(), "protocol version 1, expected 2") {
		t.Errorf("Probe of a protocol-1 guard = %v, want a refusal naming both versions", err)
	}
}
