package store

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// standDownTimeout replaces raft's heartbeat and election timeouts while
// this node stands down: it then never times out its leader and never
// stands for election.
const standDownTimeout = 24 * time.Hour

// failWatch wraps raft's log and stable store and reports every failed
// write. Raft itself reacts to a failed append of the leader by stepping
// down, and nothing else: with a full disk it stands again at the next
// timeout and, its log being as long as everyone's, may win and fail again
// (issue 8). The report lets the node step out at once (see StandDown).
type failWatch struct {
	raft.LogStore
	raft.StableStore
	failed func(error)
}

func (w *failWatch) note(err error) error {
	if err != nil {
		w.failed(err)
	}
	return err
}

// StoreLog stores one log entry and reports a failure.
func (w *failWatch) StoreLog(l *raft.Log) error { return w.note(w.LogStore.StoreLog(l)) }

// StoreLogs stores log entries and reports a failure.
func (w *failWatch) StoreLogs(ls []*raft.Log) error { return w.note(w.LogStore.StoreLogs(ls)) }

// Set stores a key of the stable store and reports a failure.
func (w *failWatch) Set(k, v []byte) error { return w.note(w.StableStore.Set(k, v)) }

// SetUint64 stores a number of the stable store and reports a failure.
func (w *failWatch) SetUint64(k []byte, v uint64) error {
	return w.note(w.StableStore.SetUint64(k, v))
}

// writeFailed records a failed write of raft's stores and wakes the
// WriteFailed channel without blocking: raft's own goroutine calls it.
func (s *Store) writeFailed(err error) {
	if !s.stoodDown.Load() {
		s.logger.Warn("raft could not write its log or state to the data dir", "err", err)
	}
	s.failMu.Lock()
	s.lastFail, s.lastFailErr = s.clock.Now(), err
	s.failMu.Unlock()
	select {
	case s.writeFail <- struct{}{}:
	default:
	}
}

// WriteFailed is signalled after raft failed to write its log or stable
// store (a full or failing disk). A node's disk check should then look at
// once whether it must step out (StandDown) instead of at its next probe.
func (s *Store) WriteFailed() <-chan struct{} { return s.writeFail }

// WriteFailedWithin returns the last error raft got writing its log or
// stable store if it came within d, else nil. Raft's writes are the
// ground truth of a usable data dir: a nearly full disk can take a small
// probe file and still refuse the larger write with which the log grows,
// and while a full node follows, every entry the leader sends it fails
// again, so a failure within the last check interval means it is still
// full.
func (s *Store) WriteFailedWithin(d time.Duration) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.lastFailErr == nil || s.clock.Now().Sub(s.lastFail) > d {
		return nil
	}
	return fmt.Errorf("raft could not write its log %v ago: %w", s.clock.Now().Sub(s.lastFail).Round(time.Millisecond), s.lastFailErr)
}

// StandDown takes this node out of raft's leadership race until StandAgain:
// when it leads it hands leadership to another voter, and it stops timing
// out its leader and standing for election (raft's heartbeat and election
// timeouts become standDownTimeout). It still follows a leader and counts
// as a voter for quorum, but it no longer notices that its leader is gone
// and so grants no vote to anyone else while it stands down: meant for a
// node whose disk cannot persist a vote anyway. A leadership transfer
// that another leader aims at it (raft's TimeoutNow) still makes it
// stand; it then hands over again at its next disk check. For a node that
// cannot write its data dir: raft would otherwise make it
// candidate at its next timeout, and it could win (its log is as long as
// the others') and then fail its first append again, every healthy node's
// lock renewals waiting on each such election. reason is logged.
// Idempotent.
func (s *Store) StandDown(reason string) error {
	var errs []error
	if s.IsLeader() {
		if err := s.TransferLeadership(); err != nil {
			errs = append(errs, err)
		} else {
			s.logger.Warn("handed raft leadership to another voter", "reason", reason)
		}
	}
	if s.stoodDown.CompareAndSwap(false, true) {
		if err := s.reloadTimeouts(standDownTimeout, standDownTimeout); err != nil {
			s.stoodDown.Store(false)
			errs = append(errs, err)
		} else {
			s.logger.Warn("not standing for raft election until the node stands again", "reason", reason)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stand down: %w", errs[0])
	}
	return nil
}

// StandAgain undoes StandDown: raft's configured heartbeat and election
// timeouts apply again. Idempotent.
func (s *Store) StandAgain() error {
	if !s.stoodDown.Load() {
		return nil
	}
	if err := s.reloadTimeouts(s.cfg.HeartbeatTimeout, s.cfg.ElectionTimeout); err != nil {
		return fmt.Errorf("stand again: %w", err)
	}
	s.stoodDown.Store(false)
	s.logger.Info("standing for raft election again", "heartbeat_timeout", s.cfg.HeartbeatTimeout, "election_timeout", s.cfg.ElectionTimeout)
	return nil
}

// StoodDown reports whether the node stands down (StandDown).
func (s *Store) StoodDown() bool { return s.stoodDown.Load() }

func (s *Store) reloadTimeouts(heartbeat, election time.Duration) error {
	rc := s.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = heartbeat, election
	if err := s.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("reload raft timeouts (heartbeat %v, election %v): %w", heartbeat, election, err)
	}
	return nil
}
