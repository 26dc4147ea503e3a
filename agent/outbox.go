package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"haxd/store"
)

// outboxStore is the part of the store the outbox uses.
type outboxStore interface {
	LeaderTerm() (uint64, bool)
	Outbox() []store.OutboxEvent
	EnqueueEvents(ctx context.Context, term uint64, max int, events []store.OutboxEvent) (store.OutboxResult, error)
	EventsDone(ctx context.Context, term uint64, ids ...string) error
}

// outbox delivers the master's notifications at least once across master
// changes: the master queues each event in the replicated store before
// delivering it and removes it once every hook got it or gave up; a new
// master delivers what is still queued, under the same event IDs.
type outbox struct {
	n   *notifier
	st  outboxStore
	log *slog.Logger
	// max bounds the queue (notify_outbox_max).
	max int
	// poll is how often the master looks at the queue besides right
	// after queuing (the CRM round).
	poll time.Duration
	// opTimeout bounds one store write.
	opTimeout time.Duration
	kick      chan struct{}
	finished  chan finished
}

// finished reports the end of one delivery started in term.
type finished struct {
	id   string
	term uint64
}

func newOutbox(n *notifier, st outboxStore, log *slog.Logger, max int, poll, opTimeout time.Duration) *outbox {
	return &outbox{n: n, st: st, log: log, max: max, poll: poll, opTimeout: opTimeout,
		kick: make(chan struct{}, 1), finished: make(chan finished)}
}

// enqueue queues events as master of term and wakes the delivery loop.
func (o *outbox) enqueue(term uint64, events []Event) {
	if o == nil || len(events) == 0 || !o.n.enabled() {
		return
	}
	q := make([]store.OutboxEvent, 0, len(events))
	for _, e := range events {
		body, err := json.Marshal(e)
		if err != nil {
			o.log.Error("encode notification", "event", e.Type, "id", e.ID, "err", err)
			continue
		}
		q = append(q, store.OutboxEvent{ID: e.ID, Body: body})
	}
	ctx, cancel := context.WithTimeout(o.n.ctx, o.opTimeout)
	defer cancel()
	res, err := o.st.EnqueueEvents(ctx, term, o.max, q)
	if err != nil {
		// Not queued: deliver from memory rather than not at all.
		o.log.Warn("queuing notifications failed: delivering them from memory, lost if this master fails", "events", len(q), "err", err)
		for _, e := range events {
			o.n.send(e)
		}
		return
	}
	for _, id := range res.Dropped {
		o.log.Error("notification outbox full: dropped the oldest undelivered event", "id", id, "notify_outbox_max", o.max)
		o.n.metrics.outboxDropped()
	}
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run delivers the queued events while this node is the raft leader (the
// CRM master), each once per term in its own goroutine, until ctx ends.
func (o *outbox) run(ctx context.Context) {
	var (
		term     uint64
		inflight = map[string]bool{}
		// cur is the context of the current term's deliveries.
		cur = struct {
			ctx    context.Context
			cancel context.CancelFunc
		}{ctx, func() {}}
	)
	defer func() { cur.cancel() }()
	t := time.NewTicker(o.poll)
	defer t.Stop()
	for {
		now, leader := o.st.LeaderTerm()
		if !leader {
			now = 0
		}
		if now != term {
			cur.cancel() // deliveries of the old term stop; the new master resends
			term, inflight = now, map[string]bool{}
			cur.ctx, cur.cancel = context.WithCancel(ctx)
			if term != 0 {
				if n := len(o.st.Outbox()); n > 0 {
					o.log.Info("master: resuming the delivery of queued notifications", "events", n, "term", term)
				}
			}
		}
		if term != 0 {
			o.start(cur.ctx, term, inflight)
		}
		select {
		case <-ctx.Done():
			return
		case f := <-o.finished:
			if f.term == term {
				delete(inflight, f.id)
			}
		case <-o.kick:
		case <-t.C:
		}
	}
}

// start begins the delivery of every queued event not in flight.
func (o *outbox) start(ctx context.Context, term uint64, inflight map[string]bool) {
	for _, q := range o.st.Outbox() {
		if inflight[q.ID] {
			continue
		}
		if !o.n.enabled() {
			o.log.Warn("removing a queued notification: this master has no notify_webhooks or notify_exec", "id", q.ID)
			o.done(ctx, term, q.ID)
			continue
		}
		var e Event
		if err := json.Unmarshal(q.Body, &e); err != nil {
			o.log.Error("removing an undecodable queued notification", "id", q.ID, "err", err)
			o.done(ctx, term, q.ID)
			continue
		}
		inflight[q.ID] = true
		o.n.wg.Add(1)
		go func() {
			defer o.n.wg.Done()
			if o.n.deliverAll(ctx, q.ID, e.Type, q.Body) {
				o.done(ctx, term, q.ID)
			}
			select {
			case o.finished <- finished{id: q.ID, term: term}:
			case <-ctx.Done():
			}
		}()
	}
}

// done removes id from the queue as master of term.
func (o *outbox) done(ctx context.Context, term uint64, id string) {
	wctx, cancel := context.WithTimeout(ctx, o.opTimeout)
	defer cancel()
	if err := o.st.EventsDone(wctx, term, id); err != nil {
		o.log.Warn("removing a delivered notification from the outbox failed: it may be delivered again", "id", id, "err", err)
	}
}
