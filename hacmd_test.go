package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
)

// recordingAgent is an API socket that records every request body and
// answers {}.
type recordingAgent struct {
	mu     sync.Mutex
	bodies []string
}

func startRecordingAgent(t *testing.T) (*recordingAgent, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "haxd.sock")
	l, err := api.ListenUnix(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	ra := &recordingAgent{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ra.mu.Lock()
		ra.bodies = append(ra.bodies, r.Method+" "+r.URL.Path+" "+string(b))
		ra.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ra, sock
}

// runHA parses and runs `haxd ha ARGS` against the socket.
func runHA(t *testing.T, sock string, args ...string) error {
	t.Helper()
	var buf bytes.Buffer
	k := cliParser(t, &buf)
	kctx, err := k.Parse(append([]string{"ha", "--socket", sock}, args...))
	if err != nil {
		return usageError{err}
	}
	return kctx.Run(&Env{Stdout: &buf, Stderr: &buf, Exit: func(int) { t.Fatal("exit called") }})
}

func TestHAAddCommandAfterDoubleDash(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"args": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	notObject := filepath.Join(dir, "list.json")
	if err := os.WriteFile(notObject, []byte(`["x"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "patch.json")
	if err := os.WriteFile(good, []byte(`{"args":["5"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // recorded request, or "" for a usage error
		err  string
	}{
		{name: "flags before --", args: []string{"add", "exec:x", "--group", "g1", "--", "/bin/sleep", "100"},
			want: `POST /v1/resources {"sid":"exec:x","state":"started","group":"g1","spec":{"args":["100"],"command":"/bin/sleep"}}`},
		{name: "a flag of ha add after --", args: []string{"add", "exec:x", "--", "/bin/sleep", "100", "--group", "g1"},
			err: "--group after --: everything after -- is the command"},
		{name: "a flag with = after --", args: []string{"add", "exec:x", "--", "/bin/sleep", "--node=n2"}, err: "--node after --"},
		{name: "the command's own flags after --", args: []string{"add", "exec:x", "--", "/usr/bin/python3", "-m", "http.server", "--bind", "::"},
			want: `POST /v1/resources {"sid":"exec:x","state":"started","spec":{"args":["-m","http.server","--bind","::"],"command":"/usr/bin/python3"}}`},
		{name: "set --spec with bad JSON names the file", args: []string{"set", "exec:x", "--spec", bad}, err: "--spec " + bad + ": not valid JSON"},
		{name: "set --spec with a non-object", args: []string{"set", "exec:x", "--spec", notObject}, err: "expected a JSON object"},
		{name: "set --spec missing file", args: []string{"set", "exec:x", "--spec", filepath.Join(dir, "nope.json")}, err: "nope.json"},
		{name: "set --expect-revision", args: []string{"set", "exec:x", "--state", "stopped", "--expect-revision", "7"},
			want: `PUT /v1/resources {"sid":"exec:x","state":"stopped","expect_revision":7}`},
		{name: "set --spec", args: []string{"set", "exec:x", "--spec", good, "--group", ""},
			want: `PUT /v1/resources {"sid":"exec:x","group":"","spec":{"args":["5"]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra, sock := startRecordingAgent(t)
			err := runHA(t, sock, tc.args...)
			if tc.err != "" {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want a usage error (exit 2) containing %q", err, tc.err)
				}
				if len(ra.bodies) != 0 {
					t.Fatalf("sent %q despite the error", ra.bodies)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ra.bodies) != 1 || strings.TrimSpace(ra.bodies[0]) != tc.want {
				t.Fatalf("requests %q, want %q", ra.bodies, tc.want)
			}
		})
	}
}

func TestFormatResourceConfig(t *testing.T) {
	cd := &ha.ResourceConfig{SID: "exec:web", Node: "node2", State: ha.RequestStopped, MaxRestart: 2, MaxRelocate: 1,
		Failback: false, Group: "g1", Comment: "web server", Spec: json.RawMessage("{\n  \"command\": \"/bin/sleep\"\n}"), Revision: 42}
	want := "exec:web\n\tcomment web server\n\tfailback 0\n\tgroup g1\n\tmax_relocate 1\n\tmax_restart 2\n\tnode node2\n\trevision 42\n\tspec {\"command\":\"/bin/sleep\"}\n\tstate stopped\n\n"
	if got := formatResourceConfig(cd); got != want {
		t.Errorf("got:\n%q\nwant:\n%q", got, want)
	}
	bare := &ha.ResourceConfig{SID: "vm:1", Node: "n1", Failback: true}
	if got, want := formatResourceConfig(bare), "vm:1\n\tfailback 1\n\tmax_relocate 0\n\tmax_restart 0\n\tnode n1\n\trevision 0\n\tstate started\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

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
	cl, err := h.client()
	if err != nil {
		t.Fatal(err)
	}

	var text bytes.Buffer
	if err := (&HAStatusCmd{Output: "text"}).print(t.Context(), cl, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "lrm node2 (old timestamp - dead?") || !strings.Contains(text.String(), "node unknown, last heard 10 s ago") {
		t.Errorf("text status:\n%s", text.String())
	}
	var js bytes.Buffer
	if err := (&HAStatusCmd{Output: "json"}).print(t.Context(), cl, &js); err != nil {
		t.Fatal(err)
	}
	var v api.View
	if err := json.Unmarshal(js.Bytes(), &v); err != nil || len(v.Nodes) != 2 || v.Nodes[1].Alive || v.Nodes[1].Age != 10 {
		t.Errorf("json status %s: %v", js.String(), err)
	}

	ms, err := cl.Members(t.Context())
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
	cl := api.NewClient(fakeAgent(t, map[string]any{"GET /v1/status": st}))
	ctx, cancel := context.WithTimeout(t.Context(), 350*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	(&HAStatusCmd{Output: "json", Watch: true, Interval: 100 * time.Millisecond}).watch(ctx, cl, &out, &errb)
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
