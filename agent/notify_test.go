package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"haxd/clock"
)

// TestWebhookRetriesSignsAndKeepsTheID: a real local receiver that fails
// twice gets the event three times, with the same ID, a valid HMAC-SHA256
// signature and the JSON body; a receiver that always fails is given up
// after the retries.
func TestWebhookRetriesSignsAndKeepsTheID(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var got []Event
	var sigsOK, calls int
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if r.Header.Get(SignatureHeader) == sign(secret, body) && r.Header.Get("Content-Type") == "application/json" {
			sigsOK++
		}
		var e Event
		if err := json.Unmarshal(body, &e); err != nil || r.Header.Get(EventIDHeader) != e.ID {
			t.Errorf("bad body %q or id header %q: %v", body, r.Header.Get(EventIDHeader), err)
		}
		got = append(got, e)
		if calls <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}
	}))
	defer flaky.Close()
	var deadCalls int
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		deadCalls++
		mu.Unlock()
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer dead.Close()

	m := newMetrics(nil, "node1")
	n := newNotifier(context.Background(), "node1", notifyConfig{webhooks: []string{flaky.URL, dead.URL}, secret: secret,
		timeout: time.Second, retries: 3, backoff: 10 * time.Millisecond}, clock.System{}, slog.New(slog.DiscardHandler), m)
	ev := Event{ID: newEventID(), Type: EventFenceStart, Time: time.Now(), Sender: "node1", Node: "node2", Message: "fencing node2"}
	n.send(ev)
	n.wait()

	if calls != 3 || sigsOK != 3 {
		t.Errorf("flaky receiver: %d calls, %d with a valid signature; want 3 and 3", calls, sigsOK)
	}
	for _, e := range got {
		if e.ID != ev.ID || e.Type != EventFenceStart || e.Node != "node2" {
			t.Errorf("received %+v, want the event with ID %s", e, ev.ID)
		}
	}
	if deadCalls != 4 {
		t.Errorf("dead receiver: %d calls, want 1 + 3 retries", deadCalls)
	}
}

// TestExecHookGetsTheEventOnStdin: an exec hook gets the event JSON on
// stdin.
func TestExecHookGetsTheEventOnStdin(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "event.json")
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\ncat > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNotifier(context.Background(), "node1", notifyConfig{exec: []string{hook}, timeout: 5 * time.Second, retries: 0, backoff: time.Millisecond},
		clock.System{}, slog.New(slog.DiscardHandler), nil)
	ev := Event{ID: newEventID(), Type: EventServiceError, SID: "exec:a", Node: "node1", Message: "x"}
	n.send(ev)
	n.wait()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal(b, &e); err != nil || e.ID != ev.ID || e.SID != "exec:a" {
		t.Errorf("hook got %q (%v), want the event", b, err)
	}
}
