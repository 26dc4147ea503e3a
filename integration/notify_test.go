package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"haxd/agent"
	"haxd/internal/cluster"
)

// attempt is one webhook delivery as a receiver saw it.
type attempt struct {
	id, typ, node, by string
	ok                bool
	body              []byte
}

// flakyReceiver is a real local webhook receiver that fails every
// delivery until accept is called.
type flakyReceiver struct {
	mu       sync.Mutex
	accept   bool
	attempts []attempt
	srv      *httptest.Server
}

func newFlakyReceiver(t *testing.T) *flakyReceiver {
	r := &flakyReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e webhookEvent
		if err := json.Unmarshal(body, &e); err != nil || req.Header.Get(agent.EventIDHeader) != e.ID {
			t.Errorf("webhook body %q, id header %q: %v", body, req.Header.Get(agent.EventIDHeader), err)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts = append(r.attempts, attempt{id: e.ID, typ: e.Type, node: e.Node, by: req.Header.Get(agent.DeliveredByHeader), ok: r.accept, body: body})
		if !r.accept {
			http.Error(w, "not now", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *flakyReceiver) setAccept() {
	r.mu.Lock()
	r.accept = true
	r.mu.Unlock()
}

func (r *flakyReceiver) snapshot() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

// TestNotificationsSurviveAMasterKill: the receiver fails every delivery;
// the master's agent retries its events and is SIGKILLed before any
// delivery succeeded. The new master delivers the queued events from the
// replicated outbox with the same IDs and bodies: no event is lost, and
// duplicates carry the same ID.
func TestNotificationsSurviveAMasterKill(t *testing.T) {
	rcv := newFlakyReceiver(t)
	h := startClusterWith(t, func(*cluster.Options) {},
		"notify_webhooks="+rcv.srv.URL, "notify_backoff=100ms", "notify_retries=1000", "notify_timeout=2s")
	master := h.startOnePerNode()

	// The first master announced itself (master_change) and retries it.
	var first attempt
	h.waitFor(startDeadline, "two failed deliveries of the master's master_change event by the master", func() bool {
		n := 0
		for _, a := range rcv.snapshot() {
			if a.typ == "master_change" && a.node == master && a.by == master && !a.ok {
				first = a
				n++
			}
		}
		return n >= 2
	})
	h.cl.KillAgent(h.cl.Node(master))
	if slices.ContainsFunc(rcv.snapshot(), func(a attempt) bool { return a.ok }) {
		t.Fatal("a delivery succeeded before the receiver accepted any")
	}
	rcv.setAccept()

	h.waitFor(failoverDeadline, "the old master's event delivered by another node with the same ID", func() bool {
		return slices.ContainsFunc(rcv.snapshot(), func(a attempt) bool { return a.id == first.id && a.ok && a.by != master })
	})
	// Every event the receiver ever saw is delivered in the end, under one
	// ID with one body.
	h.waitFor(failoverDeadline, "every event delivered", func() bool {
		seen := map[string]bool{}
		for _, a := range rcv.snapshot() {
			seen[a.id] = seen[a.id] || a.ok
		}
		for _, ok := range seen {
			if !ok {
				return false
			}
		}
		return true
	})
	bodies := map[string][]byte{}
	for _, a := range rcv.snapshot() {
		if b, ok := bodies[a.id]; ok && !bytes.Equal(b, a.body) {
			t.Errorf("event %s delivered with two bodies:\n%s\n%s", a.id, b, a.body)
		}
		bodies[a.id] = a.body
		if a.ok && a.by == master {
			t.Errorf("event %s (%s) delivered by the killed master %s", a.id, a.typ, master)
		}
	}
	t.Logf("%d deliveries of %d events; the first master %s's master_change %s delivered after its kill", len(rcv.snapshot()), len(bodies), master, first.id)
}
