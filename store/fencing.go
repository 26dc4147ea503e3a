package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// A fence device's confirmation that a node is powered off is the second
// proof of fencing (DESIGN.md), besides the node's agent lock left
// unrenewed for the lock TTL. The master records it (ConfirmFence) with the
// index of the node's agent lock as the master saw it before it powered the
// node off. The FSM accepts the record only while the node still holds its
// lock at that index: a renewal committed since means the node was alive
// after the master looked, and the record is refused. Then AcquireLock lets
// the master (same term) take the node's agent lock before the TTL, as a
// compare-and-swap on that same index: had the node renewed between the
// record and the takeover, the takeover fails. A node powered on again can
// only run services after renewing its lock, which bumps the index, so a
// confirmation never outlives the power-off it proves.

// FenceConfirmation is a recorded fence device confirmation.
type FenceConfirmation struct {
	// Node is the node confirmed off.
	Node string `json:"node"`
	// Device names the fence device (level) that confirmed.
	Device string `json:"device,omitempty"`
	// Term is the raft term of the master that recorded it.
	Term uint64 `json:"term"`
	// LockIndex is the index of the node's agent lock (LockInfo.Index)
	// the master saw before powering the node off.
	LockIndex uint64 `json:"lock_index"`
	// Time is when the device reported the node off (the master's wall
	// clock, for operators only; no decision uses it).
	Time time.Time `json:"time"`
	// Index is the raft log index of the record.
	Index uint64 `json:"index"`
}

// fenceConfirmedCmd is the payload of opFenceConfirmed.
type fenceConfirmedCmd struct {
	Node      string    `json:"node"`
	Device    string    `json:"device,omitempty"`
	LockIndex uint64    `json:"lock_index"`
	Time      time.Time `json:"time"`
}

// ConfirmFence records that a fence device confirmed node powered off.
// term is the recording master's term (a deposed master's record fails
// with ErrStaleTerm); lockIndex is the Index of the node's agent lock read
// before the node was powered off. It fails with ErrLockConflict when the
// node no longer holds its lock at that index.
func (s *Store) ConfirmFence(ctx context.Context, term uint64, node, device string, lockIndex uint64, at time.Time) error {
	if node == "" || term == 0 || lockIndex == 0 {
		return fmt.Errorf("confirm fence of %q: %w: empty node, term or lock index", node, ErrInvalid)
	}
	_, err := s.apply(ctx, opFenceConfirmed, term, fenceConfirmedCmd{Node: node, Device: device, LockIndex: lockIndex, Time: at})
	return err
}

// FenceConfirmation returns the last recorded confirmation for node.
func (s *Store) FenceConfirmation(node string) (FenceConfirmation, bool) {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	fc, ok := s.fsm.st.FenceConfirmed[node]
	return fc, ok
}

// applyFenceConfirmed is the FSM's opFenceConfirmed (under f.mu).
func (f *fsm) applyFenceConfirmed(l *raft.Log, cmd *command) *result {
	st := f.st
	var c fenceConfirmedCmd
	if err := json.Unmarshal(cmd.Data, &c); err != nil {
		return refuse(ErrInvalid, "decode %s payload", cmd.Op)
	}
	if c.Node == "" || c.LockIndex == 0 {
		return refuse(ErrInvalid, "%s: empty node or lock index", cmd.Op)
	}
	if cmd.Term == 0 {
		return refuse(ErrStaleTerm, "%s: missing the writer's term", cmd.Op)
	}
	if cmd.Term < st.ManagerTerm {
		return refuse(ErrStaleTerm, "%s: term %d is older than term %d of the last master write", cmd.Op, cmd.Term, st.ManagerTerm)
	}
	cur, held := st.Locks[AgentLock(c.Node)]
	if !held || cur.Owner != c.Node || cur.Index != c.LockIndex {
		return refuse(ErrLockConflict, "%s for %q: its agent lock is no longer the one at index %d (held %v by %q at %d)",
			cmd.Op, c.Node, c.LockIndex, held, cur.Owner, cur.Index)
	}
	st.ManagerTerm = cmd.Term
	if st.FenceConfirmed == nil {
		st.FenceConfirmed = map[string]FenceConfirmation{}
	}
	st.FenceConfirmed[c.Node] = FenceConfirmation{Node: c.Node, Device: c.Device, Term: cmd.Term, LockIndex: c.LockIndex, Time: c.Time, Index: l.Index}
	return ok(nil)
}

// checkFencedTakeover is the FSM's check of a lock takeover made on a
// fence confirmation: the confirmation of the lock's owner must match the
// lock index being taken over and the taker's term.
func checkFencedTakeover(st *state, cmd *command, c *lockCmd) *result {
	node, isAgent := strings.CutPrefix(c.Name, "agent/")
	fc, ok := st.FenceConfirmed[node]
	if !isAgent || node != c.ExpectOwner || !ok || fc.LockIndex != c.ExpectIndex || cmd.Term == 0 || fc.Term != cmd.Term {
		return refuse(ErrLockConflict, "lock %q for %q: no matching fence confirmation", c.Name, c.Holder)
	}
	return nil
}

// fenceConfirmedTakeover reports whether req may take cur, held by another
// node and not expired, on a recorded fence confirmation (leader side; the
// FSM checks again).
func (s *Store) fenceConfirmedTakeover(req *lockRequest, cur LockInfo, term uint64) bool {
	node, isAgent := strings.CutPrefix(req.Name, "agent/")
	if !isAgent || req.Term == 0 || req.Term != term || cur.Owner != node {
		return false
	}
	fc, ok := s.FenceConfirmation(node)
	return ok && fc.LockIndex == cur.Index && fc.Term == term
}
