package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
)

// fakeAgent serves canned answers on a unix socket, as an agent would.
func fakeAgent(t *testing.T, routes map[string]any) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, v := range routes {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(v)
		})
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestStatusAndNodeListOutput: ha status prints the text view and the
// structured JSON; ha node list prints a table with raft role and CRM
// state.
func TestStatusAndNodeListOutput(t *testing.T) {
	st := api.Status{LocalNode: "node1", Quorate: true, Now: 1000, StaleAfter: 2,
		Manager: &ha.ManagerStatus{MasterNode: "node1", Timestamp: 1000,
			NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeUnknown}},
		LRM: map[string]*ha.LRMStatus{"node1": {State: ha.LRMActive, Timestamp: 1000}, "node2": {State: ha.LRMActive, Timestamp: 990}}}
	members := []api.Member{{Name: "node1", Gossip: "alive", Raft: "voter", Leader: true, State: ha.NodeOnline, Addr: "10.0.0.1:7946", Version: "dev"},
		{Name: "node2", Gossip: "failed", Raft: "voter", State: ha.NodeUnknown}}
	sock := fakeAgent(t, map[string]any{"GET /v1/status": st, "GET /v1/members": members})
	h := &HACmd{Socket: sock}

	var text bytes.Buffer
	if err := (&HAStatusCmd{Output: "text"}).print(t.Context(), h, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "lrm node2 (old timestamp - dead?") || !strings.Contains(text.String(), "node unknown, last heard 10 s ago") {
		t.Errorf("text status:\n%s", text.String())
	}
	var js bytes.Buffer
	if err := (&HAStatusCmd{Output: "json"}).print(t.Context(), h, &js); err != nil {
		t.Fatal(err)
	}
	var v api.View
	if err := json.Unmarshal(js.Bytes(), &v); err != nil || len(v.Nodes) != 2 || v.Nodes[1].Alive || v.Nodes[1].Age != 10 {
		t.Errorf("json status %s: %v", js.String(), err)
	}

	ms, err := h.client().Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	table := formatMembers(ms)
	for _, want := range []string{"NODE", "node1", "voter (leader)", "node2", "failed", "unknown"} {
		if !strings.Contains(table, want) {
			t.Errorf("node list lacks %q:\n%s", want, table)
		}
	}
}

// TestStatusWatch: --watch --output json prints one status document per
// interval, each a line, until interrupted.
func TestStatusWatch(t *testing.T) {
	st := api.Status{LocalNode: "node1", Quorate: true, Now: 1000}
	h := &HACmd{Socket: fakeAgent(t, map[string]any{"GET /v1/status": st})}
	ctx, cancel := context.WithTimeout(t.Context(), 350*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	(&HAStatusCmd{Output: "json", Watch: true, Interval: 100 * time.Millisecond}).watch(ctx, h, &out, &errb)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || errb.Len() > 0 {
		t.Fatalf("watch printed %d lines (stderr %q), want one per interval:\n%s", len(lines), errb.String(), out.String())
	}
	for _, l := range lines {
		var v api.View
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.LocalNode != "node1" {
			t.Errorf("line %q: %v", l, err)
		}
	}
}
