package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"haxd/clock"
	"haxd/store"
)

// fakeOutboxStore is a replicated outbox shared by several nodes; leader
// names the node that is raft leader in term.
type fakeOutboxStore struct {
	mu     sync.Mutex
	leader string
	term   uint64
	queue  []store.OutboxEvent
}

// view is one node's handle on the shared store.
type view struct {
	s    *fakeOutboxStore
	node string
}

func (v view) LeaderTerm() (uint64, bool) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.s.term, v.s.leader == v.node
}

func (v view) Outbox() []store.OutboxEvent {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return slices.Clone(v.s.queue)
}

func (v view) EnqueueEvents(_ context.Context, term uint64, max int, events []store.OutboxEvent) (store.OutboxResult, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if term != v.s.term {
		return store.OutboxResult{}, store.ErrStaleTerm
	}
	v.s.queue = append(v.s.queue, events...)
	var res store.OutboxResult
	for len(v.s.queue) > max {
		res.Dropped = append(res.Dropped, v.s.queue[0].ID)
		v.s.queue = v.s.queue[1:]
	}
	return res, nil
}

func (v view) EventsDone(_ context.Context, term uint64, ids ...string) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if term != v.s.term {
		return store.ErrStaleTerm
	}
	v.s.queue = slices.DeleteFunc(v.s.queue, func(e store.OutboxEvent) bool { return slices.Contains(ids, e.ID) })
	return nil
}

func (s *fakeOutboxStore) elect(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leader = node
	s.term++
}

func (s *fakeOutboxStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutboxResumesOnTheNewMaster: node1 queues an event and retries it
// against a failing receiver; it loses mastership before any delivery
// succeeded; node2, the new master, delivers the queued event under the
// same ID and removes it.
func TestOutboxResumesOnTheNewMaster(t *testing.T) {
	var mu sync.Mutex
	accept := false
	var attempts []string // "id by node result"
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("body %q: %v", body, err)
		}
		mu.Lock()
		defer mu.Unlock()
		res := "failed"
		if accept {
			res = "ok"
		}
		attempts = append(attempts, e.ID+" by "+r.Header.Get(DeliveredByHeader)+" "+res)
		if !accept {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	defer rcv.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(attempts) }

	shared := &fakeOutboxStore{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := notifyConfig{webhooks: []string{rcv.URL}, timeout: time.Second, retries: 1000, backoff: time.Millisecond}
	boxes := map[string]*outbox{}
	for _, node := range []string{"node1", "node2"} {
		n := newNotifier(ctx, node, cfg, clock.System{}, slog.New(slog.DiscardHandler), nil)
		boxes[node] = newOutbox(n, view{shared, node}, slog.New(slog.DiscardHandler), 2, 10*time.Millisecond, time.Second)
		go boxes[node].run(ctx)
	}

	shared.elect("node1")
	ev := Event{ID: newEventID(), Type: EventFenceStart, Sender: "node1", Node: "node3", Message: "fencing node3"}
	boxes["node1"].enqueue(1, []Event{ev})
	waitUntil(t, "two failed attempts by node1", func() bool { return count() >= 2 })
	shared.elect("node2")
	mu.Lock()
	before := len(attempts)
	accept = true
	mu.Unlock()
	waitUntil(t, "the event delivered and removed", func() bool { return shared.len() == 0 })

	mu.Lock()
	defer mu.Unlock()
	ok := 0
	for i, a := range attempts {
		if a == ev.ID+" by node2 ok" {
			ok++
		} else if i >= before && a != ev.ID+" by node1 failed" && a != ev.ID+" by node1 ok" {
			t.Errorf("attempt %q after the master change", a)
		}
	}
	if ok != 1 {
		t.Errorf("attempts %v: want exactly one successful delivery by node2 with ID %s", attempts, ev.ID)
	}

}
