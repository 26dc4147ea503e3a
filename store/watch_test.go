package store

import (
	"testing"
	"time"

	"haxd/ha"
)

// pending reports whether ch holds a wake-up, and consumes it.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWatchCoalescesAndFilters(t *testing.T) {
	tests := []struct {
		name string
		mask Change
		ops  []string
		want bool
	}{
		{"manager status wakes its watcher", ChangeManagerStatus, []string{opManagerStatus}, true},
		{"many changes make one wake-up", ChangeManagerStatus | ChangeResources, []string{opManagerStatus, opSetRequestedState, opManagerStatus}, true},
		{"LRM status wakes nobody", ChangeManagerStatus | ChangeResources | ChangeCommands | ChangeLocks, []string{opLRMStatus, opSetRules, opSetDatacenter}, false},
		{"a lock renewal does not wake a manager status watcher", ChangeManagerStatus, []string{opLock, opUnlock}, false},
		{"a requested state change wakes a resources watcher", ChangeResources, []string{opSetRequestedState}, true},
		{"commands wake a commands watcher", ChangeCommands, []string{opAppendCommands}, true},
		{"no change, no wake-up", ChangeManagerStatus, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Store
			ch, cancel := s.Watch(tt.mask)
			defer cancel()
			for _, op := range tt.ops {
				s.applied(op)
			}
			if got := pending(ch); got != tt.want {
				t.Fatalf("woken = %v, want %v", got, tt.want)
			}
			if pending(ch) {
				t.Fatal("a second wake-up is pending: wake-ups must coalesce into one")
			}
		})
	}
}

func TestWatchCancelStopsWakeUps(t *testing.T) {
	var s Store
	a, cancelA := s.Watch(ChangeManagerStatus)
	b, cancelB := s.Watch(ChangeManagerStatus)
	defer cancelB()
	cancelA()
	s.applied(opManagerStatus)
	if pending(a) {
		t.Error("a cancelled watcher was woken")
	}
	if !pending(b) {
		t.Error("the other watcher was not woken")
	}
}

// TestWatchSeesCommittedChanges: on a real cluster every node's replica
// wakes its watcher when the master's status or a requested state is
// applied, and the state read after the wake-up already has the change.
func TestWatchSeesCommittedChanges(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	// Watch every node: under load the leadership may move before the
	// write, and whichever node is a follower then must be woken.
	chs := make([]<-chan struct{}, len(c.nodes))
	for i, s := range c.nodes {
		ch, cancel := s.Watch(ChangeManagerStatus)
		defer cancel()
		chs[i] = ch
	}
	var l, f int
	ok := eventually(10*time.Second, func() bool {
		l = c.leader()
		f = c.follower(l)
		term, isLeader := c.nodes[l].LeaderTerm()
		if !isLeader {
			return false
		}
		ms := &ha.ManagerStatus{MasterNode: c.nodes[l].NodeID(), ServiceStatus: map[ha.SID]*ha.ServiceStatus{
			"exec:a": {Node: c.nodes[f].NodeID(), State: ha.StateStarted},
		}}
		return c.nodes[l].WriteManagerStatus(c.ctx(5*time.Second), term, ms) == nil
	})
	if !ok {
		t.Fatal("no manager status write succeeded in 10 s")
	}
	select {
	case <-chs[f]:
	case <-time.After(5 * time.Second):
		t.Fatal("the follower's watcher was not woken by the applied manager status")
	}
	got, err := c.nodes[f].ManagerStatus()
	if err != nil || got.ServiceStatus["exec:a"] == nil || got.ServiceStatus["exec:a"].Node != c.nodes[f].NodeID() {
		t.Fatalf("after the wake-up the follower reads %+v, %v: the change must be applied first", got, err)
	}
}

func TestNextLockExpiry(t *testing.T) {
	const ttl = 3 * time.Second
	c := newCluster(t, 1, func(cfg *Config) { cfg.LockTTL = ttl })
	c.form()
	s := c.nodes[0]
	ctx := c.ctx(5 * time.Second)
	t0 := c.clock.Now()
	if _, ok := s.NextLockExpiry("n1", t0); ok {
		t.Fatal("an expiry without any lock")
	}
	if _, err := s.AcquireLock(ctx, AgentLock("n1"), "n1", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.NextLockExpiry("n1", t0); ok {
		t.Error("the caller's own lock is reported")
	}
	c.clock.Advance(time.Second)
	if _, err := s.AcquireLock(ctx, AgentLock("n2"), "n2", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLock(ctx, AgentLock("n3"), "n3", 0); err != nil {
		t.Fatal(err)
	}
	got, ok := s.NextLockExpiry("n2", c.clock.Now())
	if want := t0.Add(ttl); !ok || !got.Equal(want) {
		t.Errorf("NextLockExpiry for n2 = %v, %v; want n1's %v", got, ok, want)
	}
	got, ok = s.NextLockExpiry("n1", c.clock.Now())
	if want := t0.Add(time.Second + ttl); !ok || !got.Equal(want) {
		t.Errorf("NextLockExpiry for n1 = %v, %v; want %v", got, ok, want)
	}
	// Past deadlines are not reported: the lock is takeable already.
	if _, ok := s.NextLockExpiry("n1", t0.Add(time.Second+ttl)); ok {
		t.Error("an expiry at or before now is reported")
	}
	// A lock released with services running is never takeable by others.
	if err := s.ReleaseLock(ctx, AgentLock("n3"), "n3", true); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.NextLockExpiry("n1", c.clock.Now()); ok && !got.Equal(t0.Add(time.Second+ttl)) {
		t.Errorf("NextLockExpiry = %v after n3 released its lock with services running; only n2's lock counts", got)
	}
}
