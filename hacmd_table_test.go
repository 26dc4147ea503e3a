package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"haxd/api"
	"haxd/ha"
)

// memBackend is an in-memory api.Backend (and api.MemberLister): the real
// api.Server in front of it checks every request as an agent does, and it
// logs every change it applies as one line.
type memBackend struct {
	mu      sync.Mutex
	st      api.Status
	rules   string
	groups  string
	dc      ha.Datacenter
	members []api.Member
	log     []string
}

func newMemBackend() *memBackend {
	return &memBackend{
		st: api.Status{LocalNode: "node1", Quorate: true, Now: 1000, StaleAfter: 10,
			Manager: &ha.ManagerStatus{MasterNode: "node1", Timestamp: 1000,
				NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline},
				ServiceStatus: map[ha.SID]*ha.ServiceStatus{
					"exec:web": {State: ha.StateStarted, Node: "node1", Running: true},
					"exec:bad": {State: ha.StateError, Node: "node2"},
				}},
			LRM: map[string]*ha.LRMStatus{"node1": {State: ha.LRMActive, Mode: ha.ModeActive, Timestamp: 1000},
				"node2": {State: ha.LRMActive, Mode: ha.ModeActive, Timestamp: 999}},
			Resources: map[ha.SID]*ha.ResourceConfig{
				"exec:web": {SID: "exec:web", Node: "node1", State: ha.RequestStarted, MaxRestart: 1, MaxRelocate: 1, Failback: true, Revision: 3,
					Spec: json.RawMessage(`{"command":"/bin/sleep","args":["100"]}`)},
				"exec:bad": {SID: "exec:bad", Node: "node2", State: ha.RequestStarted, Revision: 4},
			}},
		rules:   "node-affinity: r1\n\tresources exec:web\n\tnodes node1\n",
		groups:  "",
		dc:      ha.Datacenter{ShutdownPolicy: ha.ShutdownConditional, CRS: ha.CRSOptions{Mode: "basic"}},
		members: []api.Member{{Name: "node1", Gossip: "alive", Raft: "voter", Leader: true, State: ha.NodeOnline}, {Name: "node2", Gossip: "alive", Raft: "voter", State: ha.NodeOnline}},
	}
}

func (b *memBackend) record(format string, args ...any) {
	b.log = append(b.log, fmt.Sprintf(format, args...))
}

func (b *memBackend) Status(context.Context) (*api.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	return &st, nil
}

func (b *memBackend) AddResource(_ context.Context, cfg ha.ResourceConfig, spec json.RawMessage) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.st.Resources[cfg.SID] != nil {
		return api.Conflict("resource '%s' already defined", cfg.SID)
	}
	cfg.Spec = spec
	b.st.Resources[cfg.SID] = &cfg
	b.record("add %s node=%q state=%s spec=%s", cfg.SID, cfg.Node, cfg.State, spec)
	return nil
}

func (b *memBackend) UpdateResource(_ context.Context, sid ha.SID, ch api.ResourceChange) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cd := b.st.Resources[sid]
	if cd == nil {
		return api.NotFound("service '%s' not configured", sid)
	}
	if ch.ExpectRevision != 0 && ch.ExpectRevision != cd.Revision {
		return api.Conflict("service '%s' has revision %d, expected %d", sid, cd.Revision, ch.ExpectRevision)
	}
	if ch.State != nil {
		cd.State = *ch.State
		b.record("set %s state=%s", sid, *ch.State)
	}
	if ch.Comment != nil {
		cd.Comment = *ch.Comment
		b.record("set %s comment=%q", sid, *ch.Comment)
	}
	return nil
}

func (b *memBackend) RemoveResource(_ context.Context, sid ha.SID, purge bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.st.Resources, sid)
	b.record("remove %s purge=%v", sid, purge)
	return nil
}

func (b *memBackend) QueueCRMCommand(_ context.Context, line string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("queue %s", line)
	return nil
}

func (b *memBackend) Rules(context.Context) (string, error) { return b.rules, nil }

func (b *memBackend) SetRules(_ context.Context, text string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = text
	b.record("rules %q", text)
	return nil
}

func (b *memBackend) Groups(context.Context) (string, error) { return b.groups, nil }

func (b *memBackend) SetGroups(_ context.Context, text string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groups = text
	b.record("groups %q", text)
	return nil
}

func (b *memBackend) RemoveNode(_ context.Context, node string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("remove-node %s", node)
	return nil
}

func (b *memBackend) Datacenter(context.Context) (*ha.Datacenter, error) {
	dc := b.dc
	return &dc, nil
}

func (b *memBackend) UpdateDatacenter(_ context.Context, fn func(*ha.Datacenter) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := fn(&b.dc); err != nil {
		return err
	}
	b.record("datacenter crs=%s shutdown=%s", b.dc.CRS.Mode, b.dc.ShutdownPolicy)
	return nil
}

func (b *memBackend) Members(context.Context) ([]api.Member, error) { return b.members, nil }

// serveMem serves the real API for b on a unix socket.
func serveMem(t *testing.T, b *memBackend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "haxd.sock")
	l, err := api.ListenUnix(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.NewServer(b, slog.New(slog.NewTextHandler(io.Discard, nil))))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// TestHACommands runs `haxd ha` subcommands through run(), as main does,
// against the real API server in front of an in-memory backend, and checks
// each one's exit code, output and the change it made.
func TestHACommands(t *testing.T) {
	dir := t.TempDir()
	rulesFile := writeFile(t, dir, "rules.cfg", "node-affinity: r2\n\tresources exec:web\n\tnodes node2\n")
	groupsFile := writeFile(t, dir, "groups.cfg", "group: g1\n\tnodes node1\n")
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings of stdout, in order; nil: stdout is empty
		stderr string   // substring of stderr; "": stderr is empty
		change []string // the backend's change log after the command
	}{
		{name: "status", args: []string{"status"}, stdout: []string{"quorum OK", "master node1", "lrm node1", "service exec:bad (node2, error)", "service exec:web (node1, started)"}},
		{name: "status json", args: []string{"status", "--output", "json"}, stdout: []string{`"local_node": "node1"`, `"sid": "exec:web"`}},
		{name: "status bad interval", args: []string{"status", "--interval", "0s"}, code: ExitUsage, stderr: "--interval 0s"},
		{name: "config one", args: []string{"config", "exec:web"},
			stdout: []string{"exec:web\n\tfailback 1\n\tmax_relocate 1\n\tmax_restart 1\n\tnode node1\n\trevision 3\n\tspec {\"command\":\"/bin/sleep\",\"args\":[\"100\"]}\n\tstate started\n\n"}},
		{name: "config all", args: []string{"config"}, stdout: []string{"exec:bad\n", "exec:web\n"}},
		{name: "config json", args: []string{"config", "--json", "exec:bad"}, stdout: []string{`"revision": 4`}},
		{name: "config unknown", args: []string{"config", "exec:nope"}, code: ExitUsage, stderr: "service 'exec:nope' not configured"},
		{name: "config bad sid", args: []string{"config", "nocolon"}, code: ExitUsage, stderr: "nocolon"},
		{name: "add", args: []string{"add", "exec:new", "--state", "stopped", "--", "/bin/true", "x"},
			change: []string{`add exec:new node="" state=stopped spec={"args":["x"],"command":"/bin/true"}`}},
		{name: "add existing", args: []string{"add", "exec:web"}, code: ExitUsage, stderr: "already defined"},
		{name: "add bad state", args: []string{"add", "exec:new", "--state", "running"}, code: ExitUsage, stderr: "running"},
		{name: "set", args: []string{"set", "exec:web", "--state", "stopped", "--comment", "hi"}, change: []string{"set exec:web state=stopped", `set exec:web comment="hi"`}},
		{name: "set stale revision", args: []string{"set", "exec:web", "--state", "stopped", "--expect-revision", "2"}, code: ExitUsage, stderr: "revision 3, expected 2"},
		{name: "remove", args: []string{"remove", "exec:web", "--no-purge"}, change: []string{"remove exec:web purge=false"}},
		{name: "migrate", args: []string{"migrate", "exec:web", "node2"}, change: []string{"queue migrate exec:web node2"}},
		{name: "relocate", args: []string{"relocate", "exec:web", "node2"}, change: []string{"queue relocate exec:web node2"}},
		{name: "migrate to unknown node", args: []string{"migrate", "exec:web", "node9"}, code: ExitUsage, stderr: "no such cluster node"},
		{name: "migrate a service in error", args: []string{"migrate", "exec:bad", "node1"}, code: ExitUsage, stderr: "error state"},
		{name: "stop", args: []string{"stop", "exec:web", "--timeout", "5s"}, change: []string{"queue stop exec:web 5"}},
		{name: "node-maintenance", args: []string{"node-maintenance", "enable", "node2"}, change: []string{"queue enable-node-maintenance node2"}},
		{name: "disarm", args: []string{"crm-command", "disarm-ha", "freeze"}, change: []string{"queue disarm-ha freeze"}},
		{name: "arm", args: []string{"crm-command", "arm-ha"}, change: []string{"queue arm-ha"}},
		{name: "rules show", args: []string{"rules", "show"}, stdout: []string{"node-affinity: r1\n\tresources exec:web\n\tnodes node1\n"}},
		{name: "rules set", args: []string{"rules", "set", rulesFile}, change: []string{`rules "node-affinity: r2\n\tresources exec:web\n\tnodes node2\n"`}},
		{name: "groups set", args: []string{"groups", "set", groupsFile}, change: []string{`groups "group: g1\n\tnodes node1\n"`}},
		{name: "node list", args: []string{"node", "list"}, stdout: []string{"NODE", "node1", "voter (leader)", "node2"}},
		{name: "node list json", args: []string{"node", "list", "--output", "json"}, stdout: []string{`"name": "node1"`, `"leader": true`}},
		{name: "node remove", args: []string{"node", "remove", "node2"}, change: []string{"remove-node node2"}},
		{name: "datacenter show", args: []string{"datacenter", "show"}, stdout: []string{`"crs"`, `"basic"`}},
		{name: "datacenter set", args: []string{"datacenter", "set", "--crs-mode", "static"}, change: []string{"datacenter crs=static shutdown=conditional"}},
		{name: "datacenter set bad", args: []string{"datacenter", "set", "--crs-mode", "magic"}, code: ExitUsage, stderr: "magic"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newMemBackend()
			sock := serveMem(t, b)
			var out, errb bytes.Buffer
			code := run(append([]string{"ha", "--socket", sock}, tt.args...), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tt.code, out.String(), errb.String())
			}
			rest := out.String()
			for _, want := range tt.stdout {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", want, out.String())
				}
				rest = rest[i+len(want):]
			}
			if tt.stdout == nil && out.Len() > 0 {
				t.Errorf("stdout %q, want none", out.String())
			}
			if tt.stderr == "" && errb.Len() > 0 || !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", errb.String(), tt.stderr)
			}
			if !slices.Equal(b.log, tt.change) {
				t.Errorf("changes %q, want %q", b.log, tt.change)
			}
		})
	}
}
