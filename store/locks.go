package store

import (
	"context"
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
