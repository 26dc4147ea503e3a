package store

import (
	"slices"
	"sync"
	"time"
)

// Change is a kind of applied state change a watcher can ask for.
type Change int

// The kinds of change Watch reports.
const (
	// ChangeManagerStatus: the master wrote its manager status (service
	// placement and states, node states).
	ChangeManagerStatus Change = 1 << iota
	// ChangeResources: the resource configuration changed (a service
	// added, removed, its requested state or settings changed).
	ChangeResources
	// ChangeCommands: commands were queued for the master or taken.
	ChangeCommands
	// ChangeLocks: a lock was taken, renewed or released.
	ChangeLocks
)

// opChange returns the change op makes; commands not listed (LRM status,
// rules, datacenter settings) report nothing.
func opChange(op string) Change {
	switch op {
	case opManagerStatus:
		return ChangeManagerStatus
	case opPutResource, opDeleteResource, opAddResource, opUpdateResource, opRemoveResource,
		opSetLocation, opSetRequestedState, opStealService, opMigrateGroups:
		return ChangeResources
	case opAppendCommands, opTakeCommands:
		return ChangeCommands
	case opLock, opUnlock, opFenceConfirmed:
		return ChangeLocks
	}
	return 0
}

// watchers is the set of Watch subscriptions of a Store.
type watchers struct {
	mu   sync.Mutex
	subs []*watcher
}

type watcher struct {
	mask Change
	ch   chan struct{}
}

// applyWatcher is implemented by the FSM's hooks (the Store): applied is
// called after every log entry the FSM applied, on every node.
type applyWatcher interface {
	applied(op string)
}

var _ applyWatcher = (*Store)(nil)

// applied wakes every watcher of op's kind of change (FSM hook). It never
// blocks: a watcher's channel holds one pending wake-up, and further ones
// coalesce into it.
func (s *Store) applied(op string) {
	c := opChange(op)
	if c == 0 {
		return
	}
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	for _, w := range s.watch.subs {
		if w.mask&c == 0 {
			continue
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// Watch returns a channel that receives a value soon after this node's
// replica applied a committed change of one of the kinds in mask, and a
// function that ends the subscription. Wake-ups coalesce: the channel
// holds at most one, so a reader that was busy sees one wake-up for any
// number of changes, and must then read the state it cares about (which
// already includes every change that woke it). The channel is never
// closed. A snapshot restore wakes nobody: a watcher must still poll,
// the watch only saves it the wait. A new command that changes one of
// these kinds of state must be added to opChange.
func (s *Store) Watch(mask Change) (<-chan struct{}, func()) {
	w := &watcher{mask: mask, ch: make(chan struct{}, 1)}
	s.watch.mu.Lock()
	s.watch.subs = append(s.watch.subs, w)
	s.watch.mu.Unlock()
	return w.ch, func() {
		s.watch.mu.Lock()
		defer s.watch.mu.Unlock()
		s.watch.subs = slices.DeleteFunc(s.watch.subs, func(x *watcher) bool { return x == w })
	}
}

// NextLockExpiry returns the earliest instant after now at which a lock
// held by another holder than owner becomes takeable on this node's lock
// timers, and false when there is none. Locks released with services
// running are skipped (nobody else may take them). Only the raft leader's
// timers decide (AcquireLock); on a follower the answer is an estimate. A
// new leader restarts every timer at the full TTL on its first lock
// request, so an instant read before that may be early: the caller then
// finds the lock still held and asks again.
func (s *Store) NextLockExpiry(owner string, now time.Time) (time.Time, bool) {
	locks := s.fsm.locks()
	s.timers.mu.Lock()
	defer s.timers.mu.Unlock()
	var next time.Time
	for name, li := range locks {
		if li.Owner == owner || li.Released {
			continue
		}
		d, has := s.timers.deadline[name]
		if !has || !d.After(now) {
			continue
		}
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, !next.IsZero()
}
