package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// The notification outbox makes operator notifications survive a master
// change (docs/configuration.md, "Notifications"). The master enqueues each
// event (EnqueueEvents) before delivering it, and removes it (EventsDone)
// once every hook got it or gave up. A new master finds the events still
// queued and delivers them again under the same IDs: delivery is at least
// once, and receivers deduplicate by ID. Both writes are fenced by the
// master's term, so a deposed master can neither add nor remove events.

// OutboxEvent is one queued notification.
type OutboxEvent struct {
	// ID is the event's stable identifier (the receivers' dedup key).
	ID string `json:"id"`
	// Body is the event as sent (JSON), opaque to the store.
	Body json.RawMessage `json:"body"`
	// Index is the raft log index at which it was queued.
	Index uint64 `json:"index,omitempty"`
}

// outboxPutCmd is the payload of opOutboxPut.
type outboxPutCmd struct {
	Events []OutboxEvent `json:"events"`
	// Max bounds the queue; the oldest events beyond it are dropped.
	Max int `json:"max"`
}

// outboxDoneCmd is the payload of opOutboxDone.
type outboxDoneCmd struct {
	IDs []string `json:"ids"`
}

// OutboxResult is what EnqueueEvents reports.
type OutboxResult struct {
	// Dropped are the IDs of the oldest events removed to keep the queue
	// within its bound, oldest first.
	Dropped []string `json:"dropped,omitempty"`
}

// EnqueueEvents appends events to the outbox as master of term, skipping
// IDs already queued (a retried write), and drops the oldest events beyond
// max. A deposed master's write fails with ErrStaleTerm.
func (s *Store) EnqueueEvents(ctx context.Context, term uint64, max int, events []OutboxEvent) (OutboxResult, error) {
	if term == 0 || max <= 0 {
		return OutboxResult{}, fmt.Errorf("enqueue events: %w: term %d, max %d", ErrInvalid, term, max)
	}
	res, err := s.apply(ctx, opOutboxPut, term, outboxPutCmd{Events: events, Max: max})
	if err != nil {
		return OutboxResult{}, err
	}
	var out OutboxResult
	if err := json.Unmarshal(res.Value, &out); err != nil {
		return OutboxResult{}, fmt.Errorf("enqueue events: decode result: %w", err)
	}
	return out, nil
}

// EventsDone removes the events ids from the outbox as master of term. IDs
// not queued (removed already, or dropped) are ignored.
func (s *Store) EventsDone(ctx context.Context, term uint64, ids ...string) error {
	if term == 0 {
		return fmt.Errorf("remove delivered events: %w: term 0", ErrInvalid)
	}
	_, err := s.apply(ctx, opOutboxDone, term, outboxDoneCmd{IDs: ids})
	return err
}

// Outbox returns the queued events, oldest first.
func (s *Store) Outbox() []OutboxEvent {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	out := make([]OutboxEvent, len(s.fsm.st.Outbox))
	for i, e := range s.fsm.st.Outbox {
		out[i] = OutboxEvent{ID: e.ID, Body: slices.Clone(e.Body), Index: e.Index}
	}
	return out
}

// applyOutbox is the FSM's opOutboxPut and opOutboxDone (under f.mu).
func (f *fsm) applyOutbox(index uint64, cmd *command) *result {
	st := f.st
	if cmd.Term == 0 {
		return refuse(ErrStaleTerm, "%s: missing the writer's term", cmd.Op)
	}
	if cmd.Term < st.ManagerTerm {
		return refuse(ErrStaleTerm, "%s: term %d is older than term %d of the last master write", cmd.Op, cmd.Term, st.ManagerTerm)
	}
	if cmd.Op == opOutboxDone {
		var c outboxDoneCmd
		if err := json.Unmarshal(cmd.Data, &c); err != nil {
			return refuse(ErrInvalid, "decode %s payload", cmd.Op)
		}
		st.ManagerTerm = cmd.Term
		st.Outbox = slices.DeleteFunc(st.Outbox, func(e OutboxEvent) bool { return slices.Contains(c.IDs, e.ID) })
		if len(st.Outbox) == 0 {
			st.Outbox = nil
		}
		return ok(nil)
	}
	var c outboxPutCmd
	if err := json.Unmarshal(cmd.Data, &c); err != nil {
		return refuse(ErrInvalid, "decode %s payload", cmd.Op)
	}
	if c.Max <= 0 {
		return refuse(ErrInvalid, "%s: bound %d, expected > 0", cmd.Op, c.Max)
	}
	for _, e := range c.Events {
		if e.ID == "" || len(e.Body) == 0 || e.Body[0] != '{' || !json.Valid(e.Body) {
			return refuse(ErrInvalid, "%s: event %q: empty ID or body not a JSON object", cmd.Op, e.ID)
		}
	}
	st.ManagerTerm = cmd.Term
	for _, e := range c.Events {
		if slices.ContainsFunc(st.Outbox, func(q OutboxEvent) bool { return q.ID == e.ID }) {
			continue
		}
		st.Outbox = append(st.Outbox, OutboxEvent{ID: e.ID, Body: slices.Clone(e.Body), Index: index})
	}
	var out OutboxResult
	if n := len(st.Outbox) - c.Max; n > 0 {
		for _, e := range st.Outbox[:n] {
			out.Dropped = append(out.Dropped, e.ID)
		}
		st.Outbox = slices.Clone(st.Outbox[n:])
	}
	return ok(out)
}
