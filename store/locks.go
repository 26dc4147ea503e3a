package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// lockTimers is the leader's in-memory timing of the locks. Every node
// keeps it up to date from the entries it applies, but only the leader's
// copy decides: when a node becomes leader of a term it first restarts
// every timer at the full TTL, because it cannot know how long ago the
// previous leader last saw a renewal.
type lockTimers struct {
	mu sync.Mutex
	// epoch is the term for which the timers were last restarted.
	epoch uint64
	// deadline is, per lock, the time after which another holder may take
	// it: the clock reading at the last applied renewal (or the restart)
	// plus the TTL.
	deadline map[string]time.Time
}

// lockRenewed restarts the timer of name at the full TTL (FSM hook).
func (s *Store) lockRenewed(name string) {
	now := s.clock.Now()
	s.timers.mu.Lock()
	s.timers.deadline[name] = now.Add(s.cfg.LockTTL)
	s.timers.mu.Unlock()
}

// lockReleased forgets name's timer (FSM hook).
func (s *Store) lockReleased(name string) {
	s.timers.mu.Lock()
	delete(s.timers.deadline, name)
	s.timers.mu.Unlock()
}

// locksRestored restarts every timer at the full TTL after a snapshot
// restore (FSM hook).
func (s *Store) locksRestored(names []string) {
	now := s.clock.Now()
	s.timers.mu.Lock()
	clear(s.timers.deadline)
	for _, n := range names {
		s.timers.deadline[n] = now.Add(s.cfg.LockTTL)
	}
	s.timers.mu.Unlock()
}

// restartLockTimers restarts every held lock's timer at the full TTL,
// once per leadership term. It never shortens a timer.
func (s *Store) restartLockTimers(term uint64) {
	s.timers.mu.Lock()
	defer s.timers.mu.Unlock()
	if s.timers.epoch == term {
		return
	}
	now := s.clock.Now()
	for name := range s.fsm.locks() {
		d := now.Add(s.cfg.LockTTL)
		if cur, has := s.timers.deadline[name]; !has || cur.Before(d) {
			s.timers.deadline[name] = d
		}
	}
	s.timers.epoch = term
	s.logger.Debug("restarted lock timers", "term", term, "ttl", s.cfg.LockTTL)
}

// lockDeadline returns the time after which name may be taken over,
// starting a full TTL now for a lock the timers do not know yet.
func (s *Store) lockDeadline(name string) time.Time {
	s.timers.mu.Lock()
	defer s.timers.mu.Unlock()
	d, has := s.timers.deadline[name]
	if !has {
		d = s.clock.Now().Add(s.cfg.LockTTL)
		s.timers.deadline[name] = d
	}
	return d
}

// AcquireLock takes or refreshes the lock called name for holder (the
// caller's node name). It succeeds when the lock is free, when holder owns
// it (a refresh), or when another owner's last committed renewal is more
// than Config.LockTTL ago on the leader's clock (a takeover); otherwise it
// fails with ErrLockHeld. A takeover that races with a renewal or release
// fails with ErrLockConflict. term is the CRM's fencing token when the
// master CRM takes a failed node's agent lock, 0 for an LRM.
//
// The caller (an LRM) may count its lock valid until the time it sent this
// request plus its validity: the leader starts the TTL only when it applies
// the entry, which is later.
func (s *Store) AcquireLock(ctx context.Context, name, holder string, term uint64) (LockResult, error) {
	return s.acquire(ctx, &lockRequest{Name: name, Holder: holder, Term: term})
}

// AcquireOwnLock is AcquireLock for a node's own agent lock (an LRM), with
// armed saying whether the node's watchdog is open. A lock its owner
// released with services running stays marked released (LockInfo.Released,
// refused to everyone else, no proof of fencing) when the owner takes it
// back unarmed, until a request with armed set: the LRM arms its watchdog
// only once an acquisition was answered in time, and an answer can be
// lost after the acquisition committed.
func (s *Store) AcquireOwnLock(ctx context.Context, name, holder string, armed bool) (LockResult, error) {
	return s.acquire(ctx, &lockRequest{Name: name, Holder: holder, Armed: armed})
}

// acquire sends a lock request to the leader and decodes its result.
// Retrying after an unknown outcome is safe: if the first attempt was
// committed, the retry is a refresh by the new owner.
func (s *Store) acquire(ctx context.Context, req *lockRequest) (LockResult, error) {
	if req.Name == "" || req.Holder == "" {
		return LockResult{}, fmt.Errorf("acquire lock %q for %q: %w: empty name or holder", req.Name, req.Holder, ErrInvalid)
	}
	res := s.do(ctx, &fwdRequest{Op: fwdLock, Lock: req, idempotent: true})
	if err := res.err(); err != nil {
		return LockResult{}, fmt.Errorf("acquire lock: %w", err)
	}
	var out LockResult
	if err := json.Unmarshal(res.Value, &out); err != nil {
		return LockResult{}, fmt.Errorf("acquire lock %q: decode result: %w", req.Name, err)
	}
	return out, nil
}

// ReleaseLock releases the lock called name held by holder. It fails with
// ErrLockHeld if another node holds it and ErrNotFound if nobody does.
// running says that holder's services may still run (a disarm, an agent
// restart): the lock then stays recorded as released by holder
// (LockInfo.Released), free for holder only, and refused to every other
// node with ErrLockReleasedRunning until holder takes it again. Without
// running the lock is deleted and free for anyone.
func (s *Store) ReleaseLock(ctx context.Context, name, holder string, running bool) error {
	_, err := s.apply(ctx, opUnlock, 0, unlockCmd{Name: name, Holder: holder, Running: running})
	return err
}

// LockReleasedRunning reports whether the lock called name was released by
// its owner with services running and not taken since, on this node's
// replica (ReleaseLock).
func (s *Store) LockReleasedRunning(name string) bool {
	li, held := s.fsm.lock(name)
	return held && li.Released
}

// acquireLocal decides a lock request on the leader and commits it.
func (s *Store) acquireLocal(ctx context.Context, req *lockRequest) *result {
	term, leader := s.LeaderTerm()
	if !leader {
		return refuse(ErrNotLeader, "lock %q on %s", req.Name, s.cfg.NodeID)
	}
	if req.Term != 0 && req.Term != term {
		return refuse(ErrStaleTerm, "lock %q for %q: requested as master of term %d, leader term is %d", req.Name, req.Holder, req.Term, term)
	}
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	s.restartLockTimers(term)
	if res, done := s.renewFromMemory(ctx, req, term); done {
		return res
	}
	c := lockCmd{Name: req.Name, Holder: req.Holder, Armed: req.Armed}
	var ttlLeft time.Duration
	cur, held := s.fsm.lock(req.Name)
	switch {
	case held && cur.Released && cur.Owner != req.Holder:
		// The FSM refuses it too; answering here saves a log entry. Not
		// even a fence confirmation opens it: the CRM does not fence a
		// node whose lock was released with services running.
		return refuse(ErrLockReleasedRunning, "lock %q for %q: released by %q with services running", req.Name, req.Holder, cur.Owner)
	case held && cur.Released:
		// Its owner takes it back: a new acquisition, not a takeover.
	case held && cur.Owner != req.Holder:
		now := s.clock.Now()
		deadline := s.lockDeadline(req.Name)
		ttlLeft = deadline.Sub(now)
		fenced := !now.After(deadline) && s.fenceConfirmedTakeover(req, cur, term)
		if !now.After(deadline) && !fenced {
			return refuse(ErrLockHeld, "lock %q for %q: held by %q for another %v", req.Name, req.Holder, cur.Owner, deadline.Sub(now))
		}
		c.Takeover, c.ExpectOwner, c.ExpectIndex, c.Fenced = true, cur.Owner, cur.Index, fenced
	}
	b, err := newCommand(opLock, req.Term, c)
	if err != nil {
		return refuse(ErrInvalid, "%v", err)
	}
	res := s.applyCommand(ctx, b, &command{V: commandVersion, Op: opLock, Term: req.Term})
	if res.Code == "" && res.Msg == "" && c.Fenced {
		s.logger.Info("took over lock on a fence device's confirmation, before its TTL", "lock", req.Name, "holder", req.Holder,
			"previous_owner", c.ExpectOwner, "ttl_left", ttlLeft)
	} else if res.Code == "" && res.Msg == "" && c.Takeover {
		s.logger.Info("took over expired lock", "lock", req.Name, "holder", req.Holder, "previous_owner", c.ExpectOwner)
	}
	return res
}
