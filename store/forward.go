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

// Forwarding protocol. A node that is not the leader sends writes, lock
// requests, membership changes and read-index requests to the leader over a
// connection to the leader's store port (the raft port) that starts with
// the byte connForwardStream (persistent, see fwdPool) or connForward (one
// request). The client writes one fwdRequest as JSON, the server answers
// with one result as JSON; on a one-shot connection it then closes it. A
// request that reaches a node which is not the leader is forwarded once
// more to the leader it knows (Hops counts this), otherwise it is answered
// with code not_leader and the client retries.

// Forwarded operation names (wire protocol: never rename one).
const (
	fwdApply     = "apply"
	fwdLock      = "lock"
	fwdJoin      = "join"
	fwdAddVoter  = "add_voter"
	fwdRemove    = "remove"
	fwdReadIndex = "read_index"
)

// maxForwardSize bounds a forwarded request or response.
const maxForwardSize = 64 << 20

// retryInterval is the pause before retrying a request that found no
// leader or a node that is no longer leader.
const retryInterval = 20 * time.Millisecond

// fwdRequest is one forwarded request.
type fwdRequest struct {
	// Op is one of the fwd* names.
	Op string `json:"op"`
	// Hops counts forwards; a node forwards a request only while Hops is 0.
	Hops int `json:"hops,omitempty"`
	// TimeoutMS is the time the client waits, in milliseconds.
	TimeoutMS int64 `json:"timeout_ms"`
	// Command is the encoded command of fwdApply.
	Command json.RawMessage `json:"command,omitempty"`
	// Lock is the request of fwdLock.
	Lock *lockRequest `json:"lock,omitempty"`
	// ID and Addr name the server of fwdJoin, fwdAddVoter and fwdRemove.
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
	// idempotent marks a request that may be repeated when the outcome of
	// an attempt is unknown; it is the client's decision and not sent.
	idempotent bool
}

// lockRequest asks the leader for a lock.
type lockRequest struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Term   uint64 `json:"term,omitempty"`
	// Armed: the holder's watchdog was open when it sent this (see
	// Store.AcquireOwnLock).
	Armed bool `json:"armed,omitempty"`
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
	res := s.answer(c, peer, &req)
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
		res := s.answer(c, peer, &req)
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

// answer runs one forwarded request from peer and returns its result.
func (s *Store) answer(c net.Conn, peer string, req *fwdRequest) *result {
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
	return s.serve(ctx, req)
}

// serve runs req here if this node is the leader, else forwards it once.
func (s *Store) serve(ctx context.Context, req *fwdRequest) *result {
	if s.raft.State() == raft.Leader {
		return s.serveLocal(ctx, req)
	}
	if req.Hops > 0 {
		return refuse(ErrNotLeader, "%s on %s", req.Op, s.cfg.NodeID)
	}
	next := *req
	next.Hops++
	return s.doRemote(ctx, &next)
}

// serveLocal runs req on this node, which believes it is the leader.
func (s *Store) serveLocal(ctx context.Context, req *fwdRequest) *result {
	switch req.Op {
	case fwdApply:
		return s.applyLocal(ctx, req.Command)
	case fwdLock:
		if req.Lock == nil {
			return refuse(ErrInvalid, "lock request without lock")
		}
		return s.acquireLocal(ctx, req.Lock)
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
	case fwdReadIndex:
		return s.readIndex(ctx)
	}
	return refuse(ErrInvalid, "unknown forwarded operation %q", req.Op)
}

// applyLocal appends an encoded command on this node as leader and waits
// for the FSM's result. A term-fenced command is refused up front when
// this node is not the leader of that term. A lock or unlock entry is
// serialized with the leader's lock decisions (Store.lockMu).
func (s *Store) applyLocal(ctx context.Context, b []byte) *result {
	var cmd command
	if err := json.Unmarshal(b, &cmd); err != nil {
		return refuse(ErrInvalid, "decode command")
	}
	if cmd.Op == opLock || cmd.Op == opUnlock {
		s.lockMu.Lock()
		defer s.lockMu.Unlock()
	}
	return s.applyCommand(ctx, b, &cmd)
}

// applyCommand is applyLocal for a decoded command; for a lock or unlock
// entry the caller holds s.lockMu.
func (s *Store) applyCommand(ctx context.Context, b []byte, cmd *command) *result {
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
		var res *result
		if s.raft.State() == raft.Leader {
			res = s.serveLocal(ctx, req)
		} else {
			r := *req
			r.Hops = 1
			res = s.doRemote(ctx, &r)
		}
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

// doRemote sends req to the current leader once.
func (s *Store) doRemote(ctx context.Context, req *fwdRequest) *result {
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
