package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"haxd/clock"
	"haxd/fence"
	"haxd/ha"
	"haxd/resource"
)

// fakeClient is a guard handle that records what the agent sends; it
// answers ErrFenced once fenced is set, and regErr to registrations.
type fakeClient struct {
	mu         sync.Mutex
	feeds      []int64
	registered []fence.Target
	fenced     bool
	regErr     error
	abandoned  bool
	closed     bool
}

func (c *fakeClient) Feed(expiry int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fenced {
		return fence.ErrFenced
	}
	c.feeds = append(c.feeds, expiry)
	return nil
}

func (c *fakeClient) Register(t fence.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fenced {
		return fence.ErrFenced
	}
	if c.regErr != nil {
		return c.regErr
	}
	c.registered = append(c.registered, t)
	return nil
}

func (c *fakeClient) Unregister(t fence.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.registered = slices.DeleteFunc(c.registered, func(x fence.Target) bool { return x == t })
	return nil
}

func (c *fakeClient) CheckTimeout(time.Duration) error { return nil }
func (c *fakeClient) Close() error                     { c.mu.Lock(); c.closed = true; c.mu.Unlock(); return nil }
func (c *fakeClient) Abandon()                         { c.mu.Lock(); c.abandoned = true; c.mu.Unlock() }

func (c *fakeClient) setFenced() { c.mu.Lock(); c.fenced = true; c.mu.Unlock() }

func (c *fakeClient) feedLog() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.feeds)
}

func (c *fakeClient) regs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, t := range c.registered {
		out = append(out, t.String())
	}
	return out
}

// rig is a fencer with a fake clock (the synctest bubble's), a fake guard
// and recorded kills. Its CLOCK_MONOTONIC starts at 1 s in the bubble.
type rig struct {
	f      *fencer
	cl     *fakeClient
	clk    clock.Since // the bubble's time; Mono starts at 1 s
	exp    atomic.Int64
	mu     sync.Mutex
	kills  []string
	gone   map[fence.Target]bool
	execKA int
	logs   *strings.Builder
	logMu  *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newRig(t *testing.T, timing ha.Timing) *rig {
	t.Helper()
	r := &rig{cl: &fakeClient{}, clk: clock.Since{Epoch: time.Now().Add(-time.Second)}, gone: map[fence.Target]bool{}, logs: &strings.Builder{}, logMu: &sync.Mutex{}}
	tm := timing
	log := slog.New(slog.NewTextHandler(lockedWriter{r.logMu, r.logs}, nil))
	r.f = newFencer(log, &tm,
		func(context.Context, int64) (guardClient, error) { return r.cl, nil },
		r.clk, r.exp.Load)
	r.f.kill = func(tg fence.Target) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.kills = append(r.kills, tg.String())
		return nil
	}
	r.f.gone = func(tg fence.Target) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.gone[tg]
	}
	r.f.killAll = func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.execKA++
		return nil
	}
	return r
}

// validFor sets the lock's validity end d from now.
func (r *rig) validFor(d time.Duration) int64 {
	e := r.clk.Mono() + int64(d)
	r.exp.Store(e)
	return e
}

func (r *rig) killed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.kills)
}

func (r *rig) execKills() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.execKA
}

func (r *rig) log() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.String()
}

func fastTiming() ha.Timing { return ha.FastTiming() } // validity 1s, watchdog 500ms, self-fence 100ms

func TestFeedWhileValidFeedsOnlyWithinTheValidityAndCarriesItsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, fastTiming())
		exp := r.validFor(350 * time.Millisecond)
		if err := r.f.openHandle(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { r.f.feedWhileValid(ctx, 100*time.Millisecond); close(done) }()
		time.Sleep(time.Second + time.Millisecond)
		cancel()
		<-done
		feeds := r.cl.feedLog()
		if want := []int64{exp, exp, exp}; !slices.Equal(feeds, want) {
			t.Errorf("feeds = %v, want three (at 100, 200, 300 ms) each carrying the validity end %d, none after it", feeds, exp)
		}
		// A renewal moves the end: the feeds follow it.
		exp2 := r.validFor(150 * time.Millisecond)
		ctx, cancel = context.WithCancel(t.Context())
		done = make(chan struct{})
		go func() { r.f.feedWhileValid(ctx, 100*time.Millisecond); close(done) }()
		time.Sleep(500 * time.Millisecond)
		cancel()
		<-done
		if got := r.cl.feedLog()[3:]; !slices.Equal(got, []int64{exp2}) {
			t.Errorf("feeds after the renewal = %v, want one carrying %d", got, exp2)
		}
		if k := r.killed(); len(k) != 0 {
			t.Errorf("killed %v without any service", k)
		}
	})
}

// The agent's own kill covers every service it started, with or without
// a guard handle, once the lock lapsed by watchdog_timeout +
// self_fence_time; a gracefully closed handle (disarm) kills nothing.
func TestFeedWhileValidKillsEveryOwnTargetWhenTheGuardDidNot(t *testing.T) {
	tm := fastTiming()
	for _, tt := range []struct {
		name     string
		prepare  func(r *rig)
		wantKill bool
	}{
		{"handle open", func(*rig) {}, true},
		{"guard fenced and the handle was dropped", func(r *rig) {
			r.cl.setFenced()
			r.f.feedFailed(r.cl, fence.ErrFenced)
			r.mu.Lock()
			r.kills, r.execKA = nil, 0 // feedFailed already killed; the lapse must kill again
			r.mu.Unlock()
		}, true},
		{"handle closed gracefully", func(r *rig) { r.f.closeHandle() }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, tm)
				r.validFor(300 * time.Millisecond)
				if err := r.f.openHandle(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := r.f.Admit("ocf:web", "/cg/ocf%3Aweb"); err != nil {
					t.Fatal(err)
				}
				if err := r.f.Spawned("ocf:web", 4242, "/cg/ocf%3Aweb"); err != nil {
					t.Fatal(err)
				}
				if err := r.f.Admit("exec:db", ""); err != nil {
					t.Fatal(err)
				}
				if err := r.f.Spawned("exec:db", 777, ""); err != nil {
					t.Fatal(err)
				}
				tt.prepare(r)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				go r.f.feedWhileValid(ctx, 50*time.Millisecond)
				// The lapse deadline: the validity (300 ms) +
				// watchdog_timeout + self_fence_time.
				time.Sleep(300*time.Millisecond + tm.WatchdogTimeout + tm.SelfFenceTime - time.Millisecond)
				synctest.Wait()
				if k := r.killed(); len(k) != 0 {
					t.Fatalf("killed %v before validity + watchdog_timeout + self_fence_time", k)
				}
				time.Sleep(2 * time.Millisecond)
				synctest.Wait()
				k := r.killed()
				if !tt.wantKill {
					if len(k) != 0 || r.execKills() != 0 {
						t.Errorf("killed %v (exec %d) after a graceful close: the services run on, unprotected, by design", k, r.execKills())
					}
					return
				}
				want := []string{"cgroup /cg/ocf%3Aweb", "pgid 777"}
				if !slices.Equal(k, want) || r.execKills() != 1 {
					t.Fatalf("kills at the lapse = %v, exec KillAll %d; want %v and exec KillAll once", k, r.execKills(), want)
				}
				if err := r.f.Admit("exec:late", ""); !errors.Is(err, resource.ErrNotAdmitted) {
					t.Errorf("Admit after the lapse = %v, want a refusal", err)
				}
				// A process spawned after the lapse by a start that was
				// admitted earlier dies on the next tick, too.
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				if k2 := r.killed(); len(k2) < 2*len(want) {
					t.Errorf("kills %v: the agent stopped re-killing while the lapse lasts", k2)
				}
				if n := strings.Count(r.log(), "agent lock lapsed"); n != 1 {
					t.Errorf("the lapse was logged %d times, want once:\n%s", n, r.log())
				}
			})
		})
	}
}

// killAll: the agent's own kill reaches every target it ever registered,
// also those the guard refused or failed, and drops only process groups
// that are gone.
func TestKillAllCoversEveryServiceEverStartedAndDropsOnlyGoneGroups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, fastTiming())
		r.validFor(time.Second)
		if err := r.f.openHandle(t.Context()); err != nil {
			t.Fatal(err)
		}
		r.f.adopt("exec:old", 500, "")
		r.f.Admit("ocf:a", "/cg/a")
		r.f.Spawned("ocf:a", 600, "/cg/a")
		r.f.Admit("exec:b", "")
		r.f.Spawned("exec:b", 700, "")
		r.f.Admit("exec:c", "")
		r.f.Spawned("exec:c", 800, "")
		r.f.Released("exec:c", 800, "") // stopped cleanly: forgotten
		r.mu.Lock()
		r.gone[fence.PGID(500)] = true // its processes are gone: never kill a reusable id
		r.mu.Unlock()
		r.f.killOwn(true)
		if k, want := r.killed(), []string{"cgroup /cg/a", "pgid 700"}; !slices.Equal(k, want) {
			t.Errorf("kills = %v, want %v", k, want)
		}
		if got := r.f.ownTargets(); len(got) != 2 {
			t.Errorf("own list after the kill = %v, want the two live targets kept", got)
		}
		if r.execKills() != 1 {
			t.Errorf("exec KillAll called %d times, want 1", r.execKills())
		}
	})
}

// feedFailed on a fence: the handle is dropped, the node starts nothing,
// the own list is kept and killed; any other error changes nothing.
func TestFeedFailedOnAFenceKillsTheOwnListAndStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, fastTiming())
		r.validFor(time.Second)
		if err := r.f.openHandle(t.Context()); err != nil {
			t.Fatal(err)
		}
		r.f.Admit("exec:a", "/cg/a")
		r.f.Spawned("exec:a", 100, "/cg/a")

		r.f.feedFailed(r.cl, errors.New("guard: read reply: timeout"))
		if r.f.client() == nil || len(r.killed()) != 0 {
			t.Fatalf("a non-fence error dropped the handle or killed %v", r.killed())
		}
		other := &fakeClient{}
		r.f.feedFailed(other, fence.ErrFenced) // a stale handle: ignored
		if r.f.client() != r.cl {
			t.Fatal("a fence reported by a stale handle dropped the current one")
		}

		r.cl.setFenced()
		if err := r.f.feed(t.Context()); !errors.Is(err, fence.ErrFenced) {
			t.Fatalf("feed = %v, want ErrFenced", err)
		}
		if r.f.client() != nil || !r.cl.abandoned {
			t.Error("the fenced handle was not dropped and abandoned")
		}
		if k := r.killed(); !slices.Equal(k, []string{"cgroup /cg/a"}) {
			t.Errorf("kills = %v, want the own list killed at once", k)
		}
		if got := r.f.ownTargets(); len(got) != 1 {
			t.Errorf("own list = %v, want it kept after the fence", got)
		}
		if err := r.f.Admit("exec:b", ""); !errors.Is(err, resource.ErrNotAdmitted) {
			t.Errorf("Admit on a fenced node = %v, want a refusal", err)
		}
		// The next renewal opens a fresh handle, as a rebooted node would,
		// and registers the own list with it.
		r.cl = &fakeClient{}
		if err := r.f.feed(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := r.cl.regs(); !slices.Equal(got, []string{"cgroup /cg/a"}) {
			t.Errorf("fresh handle registered %v, want the own list", got)
		}
		if err := r.f.Admit("exec:b", ""); err != nil {
			t.Errorf("Admit after a fresh handle = %v", err)
		}
	})
}

// The race of issue 9 (a): a start admitted just before the guard fences
// spawns its process after the fence. Its registration fails with
// "fenced": the process is killed at once, and nothing else starts.
func TestAStartThatRacesTheFenceIsKilledAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cgroup string
		regErr error
		fence  bool
		want   []string
	}{
		{"cgroup, guard fenced", "/cg/x", nil, true, []string{"cgroup /cg/a", "cgroup /cg/x", "cgroup /cg/x", "pgid 900"}},
		{"process group, guard fenced", "", nil, true, []string{"cgroup /cg/a", "pgid 900", "pgid 900"}},
		{"guard refuses the target", "", errors.New("guard: target pgid 900: no such process group"), false, []string{"pgid 900"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, fastTiming())
				r.validFor(time.Second)
				if err := r.f.openHandle(t.Context()); err != nil {
					t.Fatal(err)
				}
				r.f.Admit("exec:a", "/cg/a")
				r.f.Spawned("exec:a", 100, "/cg/a")
				if err := r.f.Admit("exec:x", tt.cgroup); err != nil {
					t.Fatal(err)
				}
				if tt.fence {
					r.cl.setFenced()
				}
				r.cl.mu.Lock()
				r.cl.regErr = tt.regErr
				r.cl.mu.Unlock()
				err := r.f.Spawned("exec:x", 900, tt.cgroup)
				if err == nil {
					t.Fatal("Spawned succeeded for a process the guard does not cover")
				}
				k := r.killed()
				slices.Sort(k)
				if !slices.Equal(k, tt.want) {
					t.Errorf("kills = %v, want %v", k, tt.want)
				}
				if tt.fence {
					if err := r.f.Admit("exec:y", ""); !errors.Is(err, resource.ErrNotAdmitted) {
						t.Errorf("Admit after the fence = %v, want a refusal", err)
					}
				}
			})
		})
	}
}

// Issue 9 (b): a worker's spawn is admitted only while the lock is valid,
// whatever the lock_validity; with 0 the lock is valid at each renewal
// and the guard guards until watchdog_timeout after it.
func TestAdmitChecksTheLockAtEverySpawn(t *testing.T) {
	for _, tt := range []struct {
		name   string
		timing ha.Timing
		until  time.Duration // after the renewal's validity end
	}{
		{"fast (lock_validity 1s)", ha.FastTiming(), 0},
		{"pve (lock_validity 0)", ha.PVETiming(), ha.PVETiming().WatchdogTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, tt.timing)
				r.validFor(tt.timing.LockValidity)
				if err := r.f.openHandle(t.Context()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.timing.LockValidity + tt.until - time.Millisecond)
				if err := r.f.Admit("exec:a", ""); err != nil {
					t.Errorf("Admit just before the end = %v", err)
				}
				time.Sleep(time.Millisecond)
				if err := r.f.Admit("exec:b", ""); !errors.Is(err, resource.ErrNotAdmitted) || !strings.Contains(err.Error(), "validity") {
					t.Errorf("Admit at the end = %v, want a refusal naming the validity", err)
				}
			})
		})
	}
	// No handle: nothing starts.
	r := newRig(t, ha.FastTiming())
	r.validFor(time.Second)
	if err := r.f.Admit("exec:a", ""); !errors.Is(err, resource.ErrNotAdmitted) {
		t.Errorf("Admit without a handle = %v, want a refusal", err)
	}
}

func TestOpenHandleDropsGoneGroupsAndArmsWithTheExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, fastTiming())
		var armed int64
		r.f.open = func(_ context.Context, e int64) (guardClient, error) { armed = e; return r.cl, nil }
		exp := r.validFor(time.Second)
		r.f.adopt("exec:a", 300, "")
		r.f.adopt("exec:b", 301, "")
		r.mu.Lock()
		r.gone[fence.PGID(301)] = true
		r.mu.Unlock()
		r.cl.regErr = errors.New("no such process group")
		if err := r.f.openHandle(t.Context()); err == nil {
			t.Fatal("openHandle succeeded although a live target could not be registered")
		}
		r.cl.regErr = nil
		r.cl.abandoned = false
		if err := r.f.openHandle(t.Context()); err != nil {
			t.Fatal(err)
		}
		if armed != exp {
			t.Errorf("armed with expiry %d, want the validity end %d", armed, exp)
		}
		if got := r.cl.regs(); !slices.Equal(got, []string{"pgid 300"}) {
			t.Errorf("registered %v, want [pgid 300] (301 is gone)", got)
		}
	})
}
