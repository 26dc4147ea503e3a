package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// memCluster forms a 3-node cluster that answers renewals from memory and
// returns it with its leader and two followers.
func memCluster(t *testing.T) (c *cluster, l, a, b int) {
	t.Helper()
	c = newCluster(t, 3, func(cfg *Config) { cfg.RenewFromMemory = true })
	c.form()
	l = c.leader()
	c.waitServers(l, 3, 0)
	a = c.follower(l)
	b = c.follower(l, a)
	return c, l, a, b
}

func TestRenewalFromMemoryAppendsNoLogEntry(t *testing.T) {
	c, l, a, _ := memCluster(t)
	L, A := c.nodes[l], c.nodes[a]
	lock := AgentLock(A.NodeID())
	ctx := c.ctx(20 * time.Second)

	first, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true)
	if err != nil || !first.New {
		t.Fatalf("A takes its lock: %+v, %v", first, err)
	}
	// The first renewal of the term may commit the term's barrier.
	if _, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true); err != nil {
		t.Fatalf("A renews its lock: %v", err)
	}
	before, _, _ := L.RaftIndexes()
	mem := L.MemoryRenewals()
	for i := range 5 {
		res, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true)
		if err != nil || res.New || res.Owner != A.NodeID() || res.Released {
			t.Fatalf("renewal %d: %+v, %v", i+1, res, err)
		}
		if _, commit, _ := L.RaftIndexes(); res.Index == 0 || res.Index > commit {
			t.Fatalf("renewal %d: result index %d beyond the leader's commit index %d", i+1, res.Index, commit)
		}
	}
	if after, _, _ := L.RaftIndexes(); after != before {
		t.Errorf("leader's last index moved from %d to %d over 5 renewals", before, after)
	}
	if got := L.MemoryRenewals() - mem; got != 5 {
		t.Errorf("renewals answered from memory = %d, want 5", got)
	}
	if li, _ := L.Lock(lock); li.Index > first.Index+1 {
		t.Errorf("lock index moved to %d without a log entry (acquired at %d)", li.Index, first.Index)
	}

	// What changes the lock still goes through the log.
	ops := []struct {
		name string
		do   func() error
	}{
		{"release with services running", func() error { return A.ReleaseLock(ctx, lock, A.NodeID(), true) }},
		{"retake unarmed", func() error { _, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), false); return err }},
		{"first armed renewal", func() error { _, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true); return err }},
	}
	for _, op := range ops {
		before, _, _ := L.RaftIndexes()
		mem := L.MemoryRenewals()
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if after, _, _ := L.RaftIndexes(); after == before || L.MemoryRenewals() != mem {
			t.Errorf("%s: not a log entry (last index %d -> %d, memory renewals %d -> %d)", op.name, before, after, mem, L.MemoryRenewals())
		}
	}
	if !eventually(5*time.Second, func() bool { return !A.LockReleasedRunning(lock) }) {
		t.Error("the lock is still marked released after the armed renewal")
	}
}

func TestRenewalIsNotAnsweredWithoutAVerifiedTerm(t *testing.T) {
	c, l, a, b := memCluster(t)
	L := c.nodes[l]
	const holder = "x" // a requester on the leader itself, which outlives the partition
	lock := AgentLock(holder)
	ctx := c.ctx(20 * time.Second)
	if _, err := L.AcquireOwnLock(ctx, lock, holder, true); err != nil {
		t.Fatalf("take the lock: %v", err)
	}
	if _, err := L.AcquireOwnLock(ctx, lock, holder, true); err != nil {
		t.Fatalf("renew the lock: %v", err)
	}
	term, _ := L.LeaderTerm()

	// The other voters report a later term: they voted in a later
	// election. The renewal must not be answered from memory; it goes
	// through the log (which this raft, still healthy, commits).
	newer := func(raft.Server) (uint64, error) { return term + 1, nil }
	L.peerTermHook.Store(&newer)
	mem := L.MemoryRenewals()
	before, _, _ := L.RaftIndexes()
	if _, err := L.AcquireOwnLock(ctx, lock, holder, true); err != nil {
		t.Fatalf("renewal through the log: %v", err)
	}
	if after, _, _ := L.RaftIndexes(); L.MemoryRenewals() != mem || after == before {
		t.Errorf("renewal with a newer term among the voters: memory renewals %d -> %d, last index %d -> %d; want a log entry",
			mem, L.MemoryRenewals(), before, after)
	}
	// Voters that do not answer do not confirm either.
	silent := func(raft.Server) (uint64, error) { return 0, errors.New("unreachable") }
	L.peerTermHook.Store(&silent)
	if _, err := L.AcquireOwnLock(ctx, lock, holder, true); err != nil {
		t.Fatalf("renewal through the log: %v", err)
	}
	if L.MemoryRenewals() != mem {
		t.Errorf("renewal without answers from the voters was answered from memory")
	}
	L.peerTermHook.Store(nil)

	// The old leader cut off from both followers (they stop): no renewal
	// it is asked for succeeds, from memory or from the log.
	c.close(a)
	c.close(b)
	mem = L.MemoryRenewals()
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if res, err := L.AcquireOwnLock(rctx, lock, holder, true); err == nil {
		t.Errorf("renewal on a leader cut off from its voters succeeded: %+v", res)
	}
	if L.MemoryRenewals() != mem {
		t.Errorf("a renewal was answered from memory without a majority")
	}
}

func TestReadIndexAppendsNoEntryOnceTheTermHasOne(t *testing.T) {
	c, l, a, _ := memCluster(t)
	L, A := c.nodes[l], c.nodes[a]
	ctx := c.ctx(20 * time.Second)
	if err := A.Barrier(ctx); err != nil {
		t.Fatalf("first barrier: %v", err)
	}
	before, _, _ := L.RaftIndexes()
	for i := range 5 {
		if err := A.Barrier(ctx); err != nil {
			t.Fatalf("barrier %d on a follower: %v", i+1, err)
		}
		if err := L.Barrier(ctx); err != nil {
			t.Fatalf("barrier %d on the leader: %v", i+1, err)
		}
	}
	if after, _, _ := L.RaftIndexes(); after != before {
		t.Errorf("leader's last index moved from %d to %d over 10 reads", before, after)
	}
	// A write is visible on the follower after its next read barrier.
	if err := L.AppendCommands(ctx, "stop vm:1 0"); err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := A.Barrier(ctx); err != nil {
		t.Fatalf("barrier after the write: %v", err)
	}
	if got := A.Commands(); len(got) != 1 {
		t.Errorf("follower's commands after a barrier = %q, want the write", got)
	}
}
