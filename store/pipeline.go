package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// The request pipeline. Every request that must run on the raft leader (a
// write, a lock request, a membership change, a read index) passes the same
// five stages, and this file holds them in that order, so that a request
// reads from top to bottom once:
//
//  1. Decode. A caller's request enters as a fwdRequest built by its method
//     (apply for the writes, acquire for the locks; Store.AddVoter, Barrier,
//     ... build theirs alike). A request another node forwarded is decoded
//     from its connection (handleForward, handleForwardStream) and admitted
//     (admit): the store must be ready, the peer authorized; its timeout is
//     bounded by ApplyTimeout. The leader check's term question (fwdTerm,
//     leaderread.go) is answered there by any node.
//  2. Route. The leader runs the request itself; any other node sends it to
//     the leader it knows, at most one hop (route, forward, send; a lock
//     request or read index unanswered after ForwardHedgeDelay is sent once
//     more). A caller on this node retries while no leader answers, and
//     after an unknown outcome when its request is idempotent (do).
//  3. Check. The leader checks the request before anything is appended
//     (execute): a command is decoded and serialized with the lock
//     decisions (checkCommand); a lock request is decided on the leader's
//     lock timers (decideLock, locks.go), a renewal answered from the
//     leader's memory once its term is verified (renewFromMemory,
//     leaderread.go); a membership change names its server
//     (changeMembership); a read index goes to readIndex (leaderread.go).
//  4. Apply. commit refuses a term-fenced command this node does not lead
//     the term of, appends the command through raft and waits until the
//     leader's FSM applied it through its operation table (operations.go),
//     which every node runs alike.
//  5. Answer. The FSM's result travels back: as JSON over the forwarding
//     connection to the node that sent it, and into the caller's value
//     and error (result.err, lockAnswer).
//
// The wire protocol (forward.go) and the log format (command.go) are
// independent of this order.

// Stage 1: decode.

// apply runs an encoded command on the leader and returns its result.
func (s *Store) apply(ctx context.Context, op string, term uint64, data any) (*result, error) {
	b, err := newCommand(op, term, data)
	if err != nil {
		return nil, err
	}
	res := s.do(ctx, &fwdRequest{Op: fwdApply, Command: b, idempotent: idempotent(op)})
	if err := res.err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// idempotent reports whether repeating op has the same effect as one
// application, so that the store may retry it when an attempt's outcome is
// unknown. Only writes that one writer makes in sequence qualify: the
// manager status (the master's, fenced by term) and a node's own LRM
// status. A config write is never retried: if the first attempt was
// committed, a repetition could revert a change another writer made in
// between (an operator's set after a CRM steal, a rules text after a
// migration); such a write returns ErrOutcomeUnknown to its caller, who
// reads the state and decides.
func idempotent(op string) bool {
	switch op {
	case opManagerStatus, opLRMStatus, opFenceConfirmed, opOutboxPut, opOutboxDone, opServiceUsage:
		return true
	}
	return false
}

// acquire sends a lock request to the leader and decodes its result
// (lockAnswer). Retrying after an unknown outcome is safe: if the first attempt was
// committed, the retry is a refresh by the new owner.
func (s *Store) acquire(ctx context.Context, req *lockRequest) (LockResult, error) {
	if req.Name == "" || req.Holder == "" {
		return LockResult{}, fmt.Errorf("acquire lock %q for %q: %w: empty name or holder", req.Name, req.Holder, ErrInvalid)
	}
	res := s.do(ctx, &fwdRequest{Op: fwdLock, Lock: req, idempotent: true})
	return lockAnswer(req, res)
}

// handleForward serves one forwarding connection from the node peer (named
// by its certificate; "" without TLS): one request, one answer.
func (s *Store) handleForward(c net.Conn, peer string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(s.cfg.ApplyTimeout + time.Second))
	var req fwdRequest
	if err := json.NewDecoder(io.LimitReader(c, maxForwardSize)).Decode(&req); err != nil {
		s.logger.Warn("drop undecodable forwarded request", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	res := s.admit(c, peer, &req)
	if err := json.NewEncoder(c).Encode(res); err != nil {
		s.logger.Debug("send forwarded response", "remote", c.RemoteAddr().String(), "err", err)
	}
}

// handleForwardStream serves a persistent forwarding connection: it
// acknowledges the kind (so that a sender can tell it from an older node
// that closes connections of unknown kinds), then answers requests one at
// a time until the sender closes the connection, stays idle for
// fwdServerIdle, or the store closes.
func (s *Store) handleForwardStream(c net.Conn, peer string) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	_ = c.SetWriteDeadline(time.Now().Add(preambleTimeout))
	if _, err := c.Write([]byte{connForwardStream}); err != nil {
		return
	}
	lr := &resetLimitReader{r: c}
	dec := json.NewDecoder(lr)
	for {
		_ = c.SetDeadline(time.Now().Add(fwdServerIdle))
		lr.n = maxForwardSize
		var req fwdRequest
		if err := dec.Decode(&req); err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !(errors.As(err, &ne) && ne.Timeout()) {
				s.logger.Warn("drop forwarding connection: undecodable request", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		_ = c.SetDeadline(time.Now().Add(s.cfg.ApplyTimeout + time.Second))
		res := s.admit(c, peer, &req)
		if err := json.NewEncoder(c).Encode(res); err != nil {
			s.logger.Debug("send forwarded response", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
	}
}

// resetLimitReader is an io.LimitReader whose budget is reset per request.
type resetLimitReader struct {
	r io.Reader
	n int64
}

func (l *resetLimitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("forwarded request larger than %d bytes", maxForwardSize)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// admit runs one forwarded request from peer and returns its result.
func (s *Store) admit(c net.Conn, peer string, req *fwdRequest) *result {
	if !s.isReady() {
		// Raft is not set up yet (Open is still loading the state): nothing
		// here may touch it. The sender retries.
		s.logger.Debug("refuse forwarded request: store not ready", "remote", c.RemoteAddr().String(), "op", req.Op)
		return refuse(ErrNotReady, "%s on %s: store is starting", req.Op, s.cfg.NodeID)
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > s.cfg.ApplyTimeout {
		timeout = s.cfg.ApplyTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if err := s.authorize(ctx, peer, req); err != nil {
		s.logger.Warn("refuse forwarded request", "peer", peer, "remote", c.RemoteAddr().String(), "op", req.Op, "id", req.ID, "err", err)
		return refuse(err, "%s on %s", req.Op, s.cfg.NodeID)
	}
	if req.Op == fwdTerm {
		// Read after the request arrived: the leader's term check.
		return ok(s.raft.CurrentTerm())
	}
	return s.route(ctx, req)
}

// Stage 2: route.

// do runs req on the leader, forwarding it if needed, and retries while no
// leader is known or the contacted node is not the leader, and for an
// idempotent request also when the outcome of an attempt is unknown, until
// ctx ends.
func (s *Store) do(ctx context.Context, req *fwdRequest) *result {
	if !s.isReady() {
		return refuse(ErrNotReady, "%s on %s", req.Op, s.cfg.NodeID)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for {
		res := s.route(ctx, req)
		retry := res.Code == errorCode(ErrNotLeader) || res.Code == errorCode(ErrNoLeader) || res.Code == errorCode(ErrNotReady) ||
			req.idempotent && res.Code == errorCode(ErrOutcomeUnknown)
		if !retry {
			return res
		}
		select {
		case <-ctx.Done():
			return res
		case <-time.After(retryInterval):
		}
	}
}

// route runs req here if this node is the leader, else forwards it to
// the leader, once: a request that already took a hop is refused.
func (s *Store) route(ctx context.Context, req *fwdRequest) *result {
	if s.raft.State() == raft.Leader {
		return s.execute(ctx, req)
	}
	if req.Hops > 0 {
		return refuse(ErrNotLeader, "%s on %s", req.Op, s.cfg.NodeID)
	}
	next := *req
	next.Hops++
	return s.forward(ctx, &next)
}

// forward sends req to the current leader once.
func (s *Store) forward(ctx context.Context, req *fwdRequest) *result {
	addr, id := s.raft.LeaderWithID()
	if addr == "" || string(id) == s.cfg.NodeID {
		return refuse(ErrNoLeader, "%s from %s", req.Op, s.cfg.NodeID)
	}
	return s.send(ctx, string(addr), string(id), req)
}

// send delivers req to the node at addr and returns its answer; with TLS,
// the node must present a certificate for expect ("": any node). It uses
// a pooled persistent connection when one is idle (see fwdPool), so that
// a renewal does not pay a TCP and TLS handshake (a lost SYN alone costs
// TCP's initial retransmit timeout of 1 s). A failure to connect or to
// send is reported as no_leader (nothing was executed, a retry is safe); a
// missing answer as outcome_unknown.
func (s *Store) send(ctx context.Context, addr, expect string, req *fwdRequest) *result {
	if s.cfg.ForwardHedgeDelay <= 0 || req.Op != fwdLock && req.Op != fwdReadIndex {
		return s.sendOnce(ctx, addr, expect, req)
	}
	// A lock request or read index that has no answer after
	// ForwardHedgeDelay is sent once more, on another connection: a lost
	// segment costs TCP at least its minimum retransmit timeout (200 ms on
	// Linux), doubling with each further loss, while the lock validity
	// leaves a renewal about 750 ms in the fast profile. Both are
	// idempotent (a second renewal is a refresh by the same holder), and
	// the holder counts its validity from before the first send, so the
	// hedge changes nothing in the safety argument. The first success
	// wins; a failure is returned only when no attempt succeeded.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan *result, 2)
	attempt := func() {
		r := *req
		results <- s.sendOnce(ctx, addr, expect, &r)
	}
	go attempt()
	hedge := time.NewTimer(s.cfg.ForwardHedgeDelay)
	defer hedge.Stop()
	pending := 1
	var failed *result
	for {
		select {
		case res := <-results:
			pending--
			if res.err() == nil {
				return res
			}
			if failed == nil {
				failed = res
			}
			if pending == 0 {
				return failed
			}
		case <-hedge.C:
			if pending == 1 && failed == nil {
				s.logger.Debug("forwarded request unanswered: sending it once more", "op", req.Op, "addr", addr, "after", s.cfg.ForwardHedgeDelay)
				pending++
				go attempt()
			}
		}
	}
}

// sendOnce is one attempt of send.
func (s *Store) sendOnce(ctx context.Context, addr, expect string, req *fwdRequest) *result {
	deadline, _ := ctx.Deadline()
	req.TimeoutMS = time.Until(deadline).Milliseconds()
	if req.TimeoutMS <= 0 {
		return refuse(ErrNoLeader, "%s to %s: %v", req.Op, addr, context.DeadlineExceeded)
	}
	fc, err := s.pool.get(ctx, addr, expect, time.Until(deadline))
	if errors.Is(err, ErrUnauthorized) {
		// The peer is not who it should be: a retry would meet it again.
		s.logger.Warn("refuse to forward: the peer's certificate does not match", "op", req.Op, "addr", addr, "expected", expect, "err", err)
		return &result{Code: errorCode(ErrUnauthorized), Msg: fmt.Sprintf("%s: %v", req.Op, err)}
	}
	if err != nil {
		return refuse(ErrNoLeader, "%s: %v", req.Op, err)
	}
	c := fc.c
	_ = c.SetDeadline(deadline.Add(500 * time.Millisecond))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	if err := json.NewEncoder(c).Encode(req); err != nil {
		stop()
		fc.close()
		return refuse(ErrNoLeader, "%s to %s: send: %v", req.Op, addr, err)
	}
	var res result
	err = fc.dec.Decode(&res)
	stopped := stop()
	if err != nil {
		fc.close()
		return refuse(ErrOutcomeUnknown, "%s to %s: no answer: %v", req.Op, addr, err)
	}
	if stopped {
		s.pool.put(fc)
	} else {
		fc.close() // the deadline was cut short: the connection is spent
	}
	return &res
}

// bound returns ctx limited to ApplyTimeout and to the store's lifetime.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Stage 3: check.

// execute runs req on this node, which believes it is the leader.
func (s *Store) execute(ctx context.Context, req *fwdRequest) *result {
	switch req.Op {
	case fwdApply:
		return s.checkCommand(ctx, req.Command)
	case fwdLock:
		if req.Lock == nil {
			return refuse(ErrInvalid, "lock request without lock")
		}
		return s.decideLock(ctx, req.Lock)
	case fwdJoin, fwdAddVoter, fwdRemove:
		return s.changeMembership(ctx, req)
	case fwdReadIndex:
		return s.readIndex(ctx)
	}
	return refuse(ErrInvalid, "unknown forwarded operation %q", req.Op)
}

// changeMembership adds or removes the server req names.
func (s *Store) changeMembership(ctx context.Context, req *fwdRequest) *result {
	switch req.Op {
	case fwdJoin, fwdAddVoter:
		if req.ID == "" || req.Addr == "" {
			return refuse(ErrInvalid, "%s: empty server id or address", req.Op)
		}
		var f raft.IndexFuture
		if req.Op == fwdJoin {
			f = s.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeoutOf(ctx))
		} else {
			f = s.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, timeoutOf(ctx))
		}
		if err := waitFuture(ctx, f); err != nil {
			return raftRefusal(err, "%s %s at %s", req.Op, req.ID, req.Addr)
		}
		s.logger.Info("added server to raft configuration", "server", req.ID, "addr", req.Addr, "voter", req.Op == fwdAddVoter)
		s.kickAutopilot()
		return ok(nil)
	case fwdRemove:
		if req.ID == "" {
			return refuse(ErrInvalid, "remove: empty server id")
		}
		if err := waitFuture(ctx, s.raft.RemoveServer(raft.ServerID(req.ID), 0, timeoutOf(ctx))); err != nil {
			return raftRefusal(err, "remove %s", req.ID)
		}
		s.logger.Info("removed server from raft configuration", "server", req.ID)
		s.kickAutopilot()
		return ok(nil)
	}
	return refuse(ErrInvalid, "unknown forwarded operation %q", req.Op)
}

// checkCommand decodes an encoded command on this node as leader and
// commits it. A lock or unlock entry is serialized with the leader's lock
// decisions (Store.lockMu).
func (s *Store) checkCommand(ctx context.Context, b []byte) *result {
	var cmd command
	if err := json.Unmarshal(b, &cmd); err != nil {
		return refuse(ErrInvalid, "decode command")
	}
	if cmd.Op == opLock || cmd.Op == opUnlock {
		s.lockMu.Lock()
		defer s.lockMu.Unlock()
	}
	return s.commit(ctx, b, &cmd)
}

// decideLock decides a lock request on the leader and commits it.
func (s *Store) decideLock(ctx context.Context, req *lockRequest) *result {
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
	res := s.commit(ctx, b, &command{V: commandVersion, Op: opLock, Term: req.Term})
	if res.Code == "" && res.Msg == "" && c.Fenced {
		s.logger.Info("took over lock on a fence device's confirmation, before its TTL", "lock", req.Name, "holder", req.Holder,
			"previous_owner", c.ExpectOwner, "ttl_left", ttlLeft)
	} else if res.Code == "" && res.Msg == "" && c.Takeover {
		s.logger.Info("took over expired lock", "lock", req.Name, "holder", req.Holder, "previous_owner", c.ExpectOwner)
	}
	return res
}

// Stage 4: apply.

// commit appends the encoded command b (decoded: cmd) on this node as
// leader and waits for the FSM's result. A term-fenced command is refused
// up front when this node is not the leader of that term. For a lock or
// unlock entry the caller holds s.lockMu.
func (s *Store) commit(ctx context.Context, b []byte, cmd *command) *result {
	if cmd.Term != 0 {
		if t, leader := s.LeaderTerm(); !leader || t != cmd.Term {
			return refuse(ErrStaleTerm, "%s: written as master of term %d, this node leads term %d (leader %v)", cmd.Op, cmd.Term, t, leader)
		}
	}
	f := s.raft.Apply(b, timeoutOf(ctx))
	var err error
	if cmd.Op == opLock || cmd.Op == opUnlock {
		err = s.waitLockEntry(ctx, f)
	} else {
		err = waitFuture(ctx, f)
	}
	if err != nil {
		return raftRefusal(err, "apply %s", cmd.Op)
	}
	res, isResult := f.Response().(*result)
	if !isResult {
		return refuse(ErrInvalid, "apply %s: unexpected FSM response %T", cmd.Op, f.Response())
	}
	return res
}

// timeoutOf returns the time left until ctx's deadline (at least 1 ms).
func timeoutOf(ctx context.Context) time.Duration {
	d, has := ctx.Deadline()
	if !has {
		return 0
	}
	return max(time.Until(d), time.Millisecond)
}

// waitFuture waits for f or for ctx, whichever ends first.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for raft: %w", ctx.Err())
	}
}

// raftRefusal turns a raft error into a result. Not-leader errors (the
// entry was never appended) get code not_leader so that clients retry; a
// leadership loss after appending gets outcome_unknown, retried only for
// idempotent requests because the entry may or may not have been
// committed.
func raftRefusal(err error, format string, args ...any) *result {
	msg := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return refuse(ErrNotLeader, "%s", msg)
	case errors.Is(err, raft.ErrRaftShutdown):
		return refuse(ErrClosed, "%s", msg)
	case errors.Is(err, raft.ErrLeadershipLost):
		return refuse(ErrOutcomeUnknown, "%s: %v", msg, err)
	}
	return &result{Msg: fmt.Sprintf("%s: %v", msg, err)}
}

// Stage 5: answer.

// lockAnswer decodes the leader's answer to the lock request req.
func lockAnswer(req *lockRequest, res *result) (LockResult, error) {
	if err := res.err(); err != nil {
		return LockResult{}, fmt.Errorf("acquire lock: %w", err)
	}
	var out LockResult
	if err := json.Unmarshal(res.Value, &out); err != nil {
		return LockResult{}, fmt.Errorf("acquire lock %q: decode result: %w", req.Name, err)
	}
	return out, nil
}
