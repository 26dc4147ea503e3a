package store

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"haxd/logdedup"
)

// TestRaftPeerFailuresAreDeduplicated: with a peer dead raft complains
// several times a second; the adapter logs one line per peer and window,
// then one with the count of suppressed repeats. Other messages pass.
func TestRaftPeerFailuresAreDeduplicated(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	a := newHclogAdapter(slog.New(slog.NewJSONHandler(&buf, nil)), "raft")
	a.dedup = logdedup.New(func() time.Time { return now }, dedupWindow)
	for range 80 { // ten seconds at 8 a second
		a.Error("failed to heartbeat to", "peer", "n2:7947", "backoff time", "10ms")
		a.Error("failed to heartbeat to", "peer", "n3:7947", "backoff time", "10ms")
		now = now.Add(125 * time.Millisecond)
	}
	a.Info("entering follower state")
	a.Info("entering follower state")
	now = now.Add(dedupWindow)
	a.Error("failed to heartbeat to", "peer", "n2:7947")

	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, rec)
	}
	peer := func(r map[string]any) any { g, _ := r["raft"].(map[string]any); return g["peer"] }
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5 (one per dead peer, two others, one after the window):\n%s", len(lines), buf.String())
	}
	if peer(lines[0]) != "n2:7947" || peer(lines[1]) != "n3:7947" || lines[2]["msg"] != "entering follower state" {
		t.Errorf("unexpected first lines:\n%s", buf.String())
	}
	if last := lines[4]; peer(last) != "n2:7947" || last["suppressed_repeats"] != float64(79) {
		t.Errorf("line after the window = %v, want n2 with suppressed_repeats 79", last)
	}
}

// TestRaftDedupKeepsDecisions: only the per-peer retry messages are
// deduplicated; a step-down and log errors always pass.
func TestRaftDedupKeepsDecisions(t *testing.T) {
	var buf bytes.Buffer
	a := newHclogAdapter(slog.New(slog.NewJSONHandler(&buf, nil)), "raft")
	for range 3 {
		a.Warn("failed to contact quorum of nodes, stepping down")
		a.Error("failed to get log", "index", 7)
		a.Warn("failed to contact", "server-id", "n2", "time", "1s")
		a.Error("failed to make requestVote RPC", "target", "n3")
	}
	out := buf.String()
	for msg, want := range map[string]int{`"failed to contact quorum of nodes, stepping down"`: 3, `"failed to get log"`: 3,
		`"failed to contact"`: 1, `"failed to make requestVote RPC"`: 1} {
		if got := strings.Count(out, `"msg":`+msg); got != want {
			t.Errorf("%s logged %d times, want %d", msg, got, want)
		}
	}
}
