package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"haxd/clock"
	"haxd/ha"
)

// eventLog keeps the last events this node saw, newest last, for the
// status page; subscribers get each new one.
type eventLog struct {
	mu     sync.Mutex
	max    int
	events []Event
	subs   map[chan Event]bool
}

func newEventLog(max int) *eventLog { return &eventLog{max: max, subs: map[chan Event]bool{}} }

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	if len(l.events) > l.max {
		l.events = l.events[len(l.events)-l.max:]
	}
	for ch := range l.subs {
		select {
		case ch <- e:
		default: // a slow subscriber misses events, never blocks the CRM
		}
	}
}

// recent returns a copy of the kept events.
func (l *eventLog) recent() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event{}, l.events...)
}

func (l *eventLog) subscribe() (chan Event, func()) {
	ch := make(chan Event, 16)
	l.mu.Lock()
	l.subs[ch] = true
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

// published is called after this node, as master of term, wrote ms over
// prev: it turns the difference into events, logs each, counts it and
// queues them in the replicated outbox for delivery.
func (n *node) published(prev, ms *ha.ManagerStatus, term uint64) {
	if n.obs == nil {
		return
	}
	events := n.obs.observe(prev, ms, n.clock.Now())
	for _, e := range events {
		n.record(e)
	}
	n.outbox.enqueue(term, events)
}

// record logs e, counts it and keeps it for the status page.
func (n *node) record(e Event) {
	n.log.Info(fmt.Sprintf("event %s: %s", e.Type, e.Message), "event", e.Type, "id", e.ID)
	n.metrics.event(e)
	if n.events != nil {
		n.events.add(e)
	}
}

// watchQuorum emits quorum_lost when this node leaves the quorate
// partition (after having been in it), checking every interval.
func (a *Agent) watchQuorum(ctx context.Context, interval time.Duration) {
	e := newEnv(a.n, "quorum", nil)
	watchQuorum(ctx, a.clock, interval, e.Quorate, func() {
		// Without quorum the store takes no writes: delivered from memory.
		ev := quorumLost(a.n.name, a.clock.Now())
		a.n.record(ev)
		a.n.notify.send(ev)
	})
}

// watchQuorum calls lost each time quorate turns from true to false,
// checking every interval on clk.
func watchQuorum(ctx context.Context, clk clock.Clock, interval time.Duration, quorate func() bool, lost func()) {
	was := false
	for sleepCtx(ctx, clk, interval) {
		q := quorate()
		if was && !q {
			lost()
		}
		was = q
	}
}

func quorumLost(node string, now time.Time) Event {
	return Event{ID: newEventID(), Type: EventQuorumLost, Time: now, Sender: node, Node: node,
		Message: fmt.Sprintf("node '%s' lost quorum: its CRM and LRM stop acting until it is back in the majority", node)}
}
