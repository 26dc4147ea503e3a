package store

import (
	"errors"
	"testing"
	"time"
)

// A fence device's confirmation lets the master take a node's agent lock
// before the TTL, and only while it still matches the lock the node held
// when the master powered it off, in the master's term.
func TestFenceConfirmationGrantsTheLockBeforeTheTTL(t *testing.T) {
	const ttl = time.Hour // the TTL never passes in this test
	c := newCluster(t, 3, func(cfg *Config) { cfg.LockTTL = ttl })
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	a := c.follower(l)
	L, A := c.nodes[l], c.nodes[a]
	ctx := c.ctx(20 * time.Second)
	lock := AgentLock(A.NodeID())
	term, ok := L.LeaderTerm()
	if !ok {
		t.Fatal("no leader term")
	}
	if _, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); err != nil {
		t.Fatal(err)
	}
	if err := L.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	seen, _ := L.Lock(lock)

	// Without a confirmation the lock is held.
	if _, err := L.AcquireLock(ctx, lock, L.NodeID(), term); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("take without confirmation: %v, want ErrLockHeld", err)
	}
	// A confirmation for a stale lock index, or from a stale term, is refused.
	if err := L.ConfirmFence(ctx, term, A.NodeID(), "ipmi", seen.Index-1, time.Now()); !errors.Is(err, ErrLockConflict) {
		t.Fatalf("confirm a stale index: %v, want ErrLockConflict", err)
	}
	if err := L.ConfirmFence(ctx, term-1, A.NodeID(), "ipmi", seen.Index, time.Now()); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("confirm with an old term: %v, want ErrStaleTerm", err)
	}
	// The node renews after the master looked: the confirmation is refused.
	if _, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); err != nil {
		t.Fatal(err)
	}
	if err := L.ConfirmFence(ctx, term, A.NodeID(), "ipmi", seen.Index, time.Now()); !errors.Is(err, ErrLockConflict) {
		t.Fatalf("confirm after a renewal: %v, want ErrLockConflict", err)
	}
	if err := L.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	seen, _ = L.Lock(lock)
	if err := L.ConfirmFence(ctx, term, A.NodeID(), "ipmi", seen.Index, time.Now()); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	fc, ok := A.FenceConfirmation(A.NodeID())
	for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); fc, ok = A.FenceConfirmation(A.NodeID()) {
		time.Sleep(10 * time.Millisecond)
	}
	if !ok || fc.Term != term || fc.LockIndex != seen.Index || fc.Device != "ipmi" {
		t.Fatalf("replicated confirmation = %+v, %v", fc, ok)
	}
	// Another node, or an unfenced (LRM) request, cannot use it.
	if _, err := c.nodes[c.follower(l, a)].AcquireLock(ctx, lock, "other", 0); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("unfenced take: %v, want ErrLockHeld", err)
	}
	// The master takes the lock at once, with the TTL far away.
	res, err := L.AcquireLock(ctx, lock, L.NodeID(), term)
	if err != nil || !res.New || res.Owner != L.NodeID() {
		t.Fatalf("take on the confirmation: %+v, %v", res, err)
	}
	// The node, powered on again, waits for its lock as usual.
	if _, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("the fenced node takes its lock back: %v, want ErrLockHeld", err)
	}
}

// The FSM refuses a fenced takeover whose confirmation does not match,
// even if the leader's check was passed (a forged or raced entry).
func TestFencedTakeoverNeedsAMatchingConfirmation(t *testing.T) {
	st := newState()
	st.Locks["agent/n1"] = LockInfo{Name: "agent/n1", Owner: "n1", Index: 7}
	cases := []struct {
		name string
		fc   *FenceConfirmation
		term uint64
		ok   bool
	}{
		{"none", nil, 3, false},
		{"other index", &FenceConfirmation{Node: "n1", LockIndex: 6, Term: 3}, 3, false},
		{"other term", &FenceConfirmation{Node: "n1", LockIndex: 7, Term: 2}, 3, false},
		{"unfenced", &FenceConfirmation{Node: "n1", LockIndex: 7, Term: 3}, 0, false},
		{"match", &FenceConfirmation{Node: "n1", LockIndex: 7, Term: 3}, 3, true},
	}
	for _, tc := range cases {
		st.FenceConfirmed = nil
		if tc.fc != nil {
			st.FenceConfirmed = map[string]FenceConfirmation{"n1": *tc.fc}
		}
		c := lockCmd{Name: "agent/n1", Holder: "n2", Takeover: true, ExpectOwner: "n1", ExpectIndex: 7, Fenced: true}
		r := checkFencedTakeover(st, &command{Op: opLock, Term: tc.term}, &c)
		if (r == nil) != tc.ok {
			t.Errorf("%s: result %+v, want ok %v", tc.name, r, tc.ok)
		}
	}
}
