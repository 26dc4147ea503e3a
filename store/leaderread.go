package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// Reads and renewals answered from the leader's memory.
//
// A linearizable read (Barrier) and a lock renewal that only restarts the
// timer of a lock its holder already has need no log entry: the leader
// answers them once it has checked, after the request arrived, that it is
// still the leader of its term. The check is termCheck: a majority of
// the voters (the leader included) reports a raft term no higher than the
// leader's, each read after the check was sent. A node that voted in a
// later election has moved to that later term before it voted, so no
// leader of a later term was elected before those answers: a later leader
// is elected after the request arrived, and it restarts every held lock's
// timer at the full TTL when it takes office (restartLockTimers). The
// argument is in docs/safety.md, "Renewals answered from the leader's
// memory". Raft's own VerifyLeader is not used: it counts a heartbeat
// answer whose request was sent before the verification started.

// fwdTerm asks a node for its current raft term (wire protocol: never
// rename it). Any node answers it itself, leader or not.
const fwdTerm = "term"

// termRound is one leadership check that several requests may share:
// every request that joined it arrived before it started.
type termRound struct {
	term uint64
	done chan struct{}
	err  error
}

// termChecks coalesces the leader's checks: while one runs, the requests
// that arrive wait for the next one, which starts when it ends.
type termChecks struct {
	mu      sync.Mutex
	running bool
	next    *termRound
}

// verifyTerm returns nil once a majority of the voters has reported, after
// the call, a raft term no higher than term, with this node leader of term
// before and after. Concurrent callers share checks.
func (s *Store) verifyTerm(ctx context.Context, term uint64) error {
	s.checks.mu.Lock()
	r := s.checks.next
	if r == nil || r.term != term {
		if r != nil {
			// A check of another term is waiting: run this one alone.
			s.checks.mu.Unlock()
			return s.checkTerm(ctx, term)
		}
		r = &termRound{term: term, done: make(chan struct{})}
		s.checks.next = r
	}
	if !s.checks.running {
		s.checks.running = true
		s.checks.next = nil
		go s.runTermChecks(r)
	}
	s.checks.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("verify leadership of term %d: %w", term, ctx.Err())
	}
}

// runTermChecks runs r, then every round queued meanwhile, one at a time.
func (s *Store) runTermChecks(r *termRound) {
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
		r.err = s.checkTerm(ctx, r.term)
		cancel()
		close(r.done)
		s.checks.mu.Lock()
		r = s.checks.next
		s.checks.next = nil
		if r == nil {
			s.checks.running = false
			s.checks.mu.Unlock()
			return
		}
		s.checks.mu.Unlock()
	}
}

// errNotVerified is returned when no majority confirmed the term.
var errNotVerified = errors.New("no majority of the voters confirmed the leader's term")

// checkTerm asks every other voter for its raft term and waits for a
// majority (this node included) at term or lower.
func (s *Store) checkTerm(ctx context.Context, term uint64) error {
	if t, leader := s.LeaderTerm(); !leader || t != term {
		return fmt.Errorf("verify leadership of term %d: %w (term %d, leader %v)", term, ErrNotLeader, t, leader)
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("verify leadership of term %d: read configuration: %w", term, err)
	}
	var voters []raft.Server
	self := false
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage != raft.Voter {
			continue
		}
		if string(sv.ID) == s.cfg.NodeID {
			self = true
			continue
		}
		voters = append(voters, sv)
	}
	if !self {
		return fmt.Errorf("verify leadership of term %d: %w: this node is not a voter", term, errNotVerified)
	}
	need := (len(voters) + 1) / 2 // a majority of len(voters)+1, less this node's own vote
	if need > 0 {
		answers := make(chan bool, len(voters))
		for _, sv := range voters {
			go func() {
				// Not the caller's context: a request still out when the
				// majority is in runs to its end, so that its pooled
				// connection is kept (cutting it short spends it, and the
				// next check would pay a new TLS handshake).
				rctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
				defer cancel()
				t, err := s.peerTerm(rctx, sv)
				answers <- err == nil && t <= term
			}()
		}
		got, left := 0, len(voters)
		for got < need && left >= need-got {
			select {
			case a := <-answers:
				left--
				if a {
					got++
				}
			case <-ctx.Done():
				return fmt.Errorf("verify leadership of term %d: %w: %w", term, errNotVerified, ctx.Err())
			}
		}
		if got < need {
			return fmt.Errorf("verify leadership of term %d: %w", term, errNotVerified)
		}
	}
	if t, leader := s.LeaderTerm(); !leader || t != term {
		return fmt.Errorf("verify leadership of term %d: %w (term %d, leader %v)", term, ErrNotLeader, t, leader)
	}
	return nil
}

// peerTerm asks the voter sv for its raft term (fwdTerm).
func (s *Store) peerTerm(ctx context.Context, sv raft.Server) (uint64, error) {
	if h := s.peerTermHook.Load(); h != nil {
		return (*h)(sv)
	}
	res := s.sendOnce(ctx, string(sv.Address), string(sv.ID), &fwdRequest{Op: fwdTerm, Hops: 1})
	if err := res.err(); err != nil {
		return 0, fmt.Errorf("term of %s: %w", sv.ID, err)
	}
	var t uint64
	if err := json.Unmarshal(res.Value, &t); err != nil {
		return 0, fmt.Errorf("term of %s: decode: %w", sv.ID, err)
	}
	return t, nil
}

// termBarrier commits a barrier entry as leader of term, after which
// the commit index covers every entry committed before (readIndex).
func (s *Store) termBarrier(ctx context.Context, term uint64) error {
	if err := waitFuture(ctx, s.raft.Barrier(timeoutOf(ctx))); err != nil {
		return err
	}
	if t, leader := s.LeaderTerm(); leader && t == term {
		s.barrierTerm.Store(term)
	}
	return nil
}

// readIndex answers a read-index request on the leader: the index a
// replica must have applied to reflect every write committed before the
// request arrived. The first read of a term commits a barrier entry (raft
// knows an entry of earlier terms committed only once one of its own
// term is); later ones return the commit index read on arrival once the
// term is verified (verifyTerm), without a log entry. If the check fails
// (a deposed leader, or a peer too old to answer it) the read falls back
// to a barrier entry, which only a real leader can commit.
func (s *Store) readIndex(ctx context.Context) *result {
	term, leader := s.LeaderTerm()
	if !leader {
		return refuse(ErrNotLeader, "read index on %s", s.cfg.NodeID)
	}
	if s.barrierTerm.Load() == term {
		idx := s.raft.CommitIndex()
		err := s.verifyTerm(ctx, term)
		if err == nil {
			return ok(idx)
		}
		s.logger.Debug("read index: leadership not verified, committing a barrier instead", "term", term, "err", err)
	}
	if err := s.termBarrier(ctx, term); err != nil {
		return raftRefusal(err, "read index")
	}
	return ok(s.raft.AppliedIndex())
}

// renewFromMemory answers a renewal of a lock its holder has, armed state
// unchanged, without a log entry: the leader checks its state, verifies
// its term after the request arrived, and restarts the lock's timer. It
// returns false when the request must go through the log instead (an
// acquisition, a takeover, a lock released with services running, a CRM
// request, a lock a fence device confirmation is pending on, lock entries
// still in flight, or a check that failed). The first request of a term
// commits a barrier first.
// The caller holds s.lockMu.
func (s *Store) renewFromMemory(ctx context.Context, req *lockRequest, term uint64) (*result, bool) {
	if !s.cfg.RenewFromMemory || req.Term != 0 || s.lockPending.Load() != 0 {
		return nil, false
	}
	if s.barrierTerm.Load() != term {
		// Once per term: the state must reflect every entry of the
		// earlier terms before it can answer anything.
		if err := s.termBarrier(ctx, term); err != nil || s.barrierTerm.Load() != term {
			return nil, false
		}
	}
	cur, held := s.fsm.lock(req.Name)
	if !held || cur.Released || cur.Owner != req.Holder {
		return nil, false
	}
	if node, isAgent := strings.CutPrefix(req.Name, "agent/"); isAgent {
		if fc, found := s.FenceConfirmation(node); found && fc.LockIndex == cur.Index {
			// The confirmation is void only once a renewal bumps the
			// lock's index: this one goes to the log.
			return nil, false
		}
	}
	if err := s.verifyTerm(ctx, term); err != nil {
		s.logger.Debug("lock renewal: leadership not verified, renewing through the log", "lock", req.Name, "err", err)
		return nil, false
	}
	s.lockRenewed(req.Name)
	s.memRenewals.Add(1)
	return ok(LockResult{LockInfo: cur, Index: s.raft.CommitIndex()}), true
}

// MemoryRenewals returns how many lock renewals this node answered from
// its memory as leader since it started.
func (s *Store) MemoryRenewals() uint64 { return s.memRenewals.Load() }

// waitLockEntry is waitFuture for a lock or unlock entry: it counts the
// entry in flight (lockPending) until raft resolves it, whatever ctx does.
// One goroutine waits for f (a raft future is not safe for concurrent
// waiters).
func (s *Store) waitLockEntry(ctx context.Context, f raft.Future) error {
	s.lockPending.Add(1)
	done := make(chan error, 1)
	go func() {
		err := f.Error()
		s.lockPending.Add(-1)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for raft: %w", ctx.Err())
	}
}
