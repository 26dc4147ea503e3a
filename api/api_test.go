package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/ha"
)

// fakeBackend is an in-memory Backend that records every change.
type fakeBackend struct {
	mu       sync.Mutex
	st       Status
	commands []string
	rules    string
	dc       ha.Datacenter
	changes  int
}

func newFake() *fakeBackend {
	return &fakeBackend{st: Status{
		LocalNode: "node1", Quorate: true, Now: 1000,
		Manager: &ha.ManagerStatus{MasterNode: "node1", Timestamp: 995,
			NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline},
			ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:web": {State: ha.StateStarted, Node: "node1", Running: true},
				"exec:bad": {State: ha.StateError, Node: "node2"},
			}},
		LRM: map[string]*ha.LRMStatus{
			"node1": {State: ha.LRMActive, Mode: ha.ModeActive, Timestamp: 999},
			"node2": {State: ha.LRMWaitForAgentLock, Timestamp: 998},
		},
		Resources: map[ha.SID]*ha.ResourceConfig{
			"exec:web": {SID: "exec:web", Node: "node1", State: ha.RequestStarted},
			"exec:bad": {SID: "exec:bad", Node: "node2", State: ha.RequestStarted},
			"exec:new": {SID: "exec:new", Node: "node2", State: ha.RequestStarted},
		},
	}}
}

func (f *fakeBackend) Status(context.Context) (*Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	return &st, nil
}

func (f *fakeBackend) AddResource(_ context.Context, cfg ha.ResourceConfig, _ json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.Resources[cfg.SID]; ok {
		return Conflict("resource '%s' already defined", cfg.SID)
	}
	f.st.Resources[cfg.SID] = &cfg
	f.changes++
	return nil
}

// UpdateResource follows the Backend contract the store implements: the
// error-state rule and the group check are the backend's.
func (f *fakeBackend) UpdateResource(_ context.Context, sid ha.SID, ch ResourceChange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cd, ok := f.st.Resources[sid]
	if !ok {
		return NotFound("service '%s' not configured", sid)
	}
	if ch.State != nil && *ch.State != ha.RequestDisabled {
		if e := inError(&f.st, sid); e != nil {
			return e
		}
	}
	if ch.Group != nil && *ch.Group != "" && *ch.Group != "g1" {
		return NotFound("group '%s' does not exist", *ch.Group)
	}
	c := *cd
	if ch.State != nil {
		c.State = *ch.State
	}
	if ch.Group != nil {
		c.Group = *ch.Group
	}
	if ch.SpecPatch != nil {
		spec, err := MergePatch(c.Spec, ch.SpecPatch)
		if err != nil {
			return BadRequest("spec", string(ch.SpecPatch), "%v", err)
		}
		c.Spec = spec
	}
	f.st.Resources[sid] = &c
	f.changes++
	return nil
}

func (f *fakeBackend) RemoveResource(_ context.Context, sid ha.SID, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.st.Resources, sid)
	f.changes++
	return nil
}

func (f *fakeBackend) QueueCRMCommand(_ context.Context, line string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, line)
	f.changes++
	return nil
}

func (f *fakeBackend) Rules(context.Context) (string, error) { return f.rules, nil }
func (f *fakeBackend) SetRules(_ context.Context, t string) error {
	f.rules = t
	f.changes++
	return nil
}
func (f *fakeBackend) RemoveNode(context.Context, string) error { f.changes++; return nil }
func (f *fakeBackend) Groups(context.Context) (string, error)   { return "", nil }
func (f *fakeBackend) Datacenter(context.Context) (*ha.Datacenter, error) {
	return &f.dc, nil
}
func (f *fakeBackend) UpdateDatacenter(_ context.Context, fn func(*ha.Datacenter) error) error {
	f.changes++
	return fn(&f.dc)
}
func (f *fakeBackend) SetGroups(context.Context, string) error { f.changes++; return nil }

func startServer(t *testing.T, b Backend) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "haxd.sock")
	l, err := ListenUnix(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewServer(b, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock)
}

func TestStatusEntries(t *testing.T) {
	f := newFake()
	got := Format(Entries(&f.st))
	ts := func(sec int64) string { return time.Unix(sec, 0).Format(ctimeLayout) }
	want := "quorum OK\n" +
		"master node1 (active, " + ts(995) + ")\n" +
		"fencing armed (CRM watchdog active)\n" +
		"lrm node1 (active, watchdog active, " + ts(999) + ") - node online\n" +
		"lrm node2 (idle, watchdog standby, " + ts(998) + ") - node online\n" +
		"service exec:bad (node2, error)\n" +
		"service exec:web (node1, started)\n" +
		"service exec:new (node2, queued)\n"
	if got != want {
		t.Fatalf("status:\n%s\nwant:\n%s", got, want)
	}
}

func TestVerboseState(t *testing.T) {
	cd := func(st ha.RequestedState) *ha.ResourceConfig { return &ha.ResourceConfig{Node: "n1", State: st} }
	tests := []struct {
		sd     *ha.ServiceStatus
		cd     *ha.ResourceConfig
		ignore bool
		want   string
	}{
		{sd: &ha.ServiceStatus{State: ha.StateStarted}, cd: nil, want: "deleting"},
		{sd: nil, cd: cd(ha.RequestIgnored), want: "ignored"},
		{sd: nil, cd: cd(ha.RequestStarted), want: "queued"},
		{sd: &ha.ServiceStatus{State: ha.StateStopped}, cd: cd(ha.RequestStarted), want: "starting"},
		{sd: &ha.ServiceStatus{State: ha.StateStopped}, cd: cd(ha.RequestDisabled), want: "disabled"},
		{sd: &ha.ServiceStatus{State: ha.StateStopped}, cd: cd(ha.RequestStopped), want: "stopped"},
		{sd: &ha.ServiceStatus{State: ha.StateStarted, Running: true}, cd: cd(ha.RequestStopped), want: "stopping"},
		{sd: &ha.ServiceStatus{State: ha.StateStarted}, cd: cd(ha.RequestStopped), want: "starting"},
		{sd: &ha.ServiceStatus{State: ha.StateStarted, Running: true}, cd: cd(ha.RequestStarted), want: "started"},
		{sd: &ha.ServiceStatus{State: ha.StateError}, cd: cd(ha.RequestDisabled), want: "clearing error flag"},
		{sd: &ha.ServiceStatus{State: ha.StateFence}, cd: cd(ha.RequestStarted), want: "fence"},
		{sd: &ha.ServiceStatus{State: ha.StateStarted}, cd: cd(ha.RequestStarted), ignore: true, want: "ignore"},
	}
	for i, tt := range tests {
		if got := verboseState(tt.sd, tt.cd, tt.ignore); got != tt.want {
			t.Errorf("case %d: verboseState = %q, want %q", i, got, tt.want)
		}
	}
}

func TestInvalidRequestsChangeNothing(t *testing.T) {
	f := newFake()
	c := startServer(t, f)
	ctx := context.Background()
	neg := -1
	bad := "bogus"
	tests := []struct {
		name string
		call func() error
		code int
		msg  string
	}{
		{"bad sid", func() error { return c.AddResource(ctx, AddResourceRequest{SID: "web"}) }, 400, `sid "web"`},
		{"bad state", func() error { return c.AddResource(ctx, AddResourceRequest{SID: "exec:x", State: "running"}) }, 400, `state "running"`},
		{"negative max_restart", func() error { return c.AddResource(ctx, AddResourceRequest{SID: "exec:x", MaxRestart: &neg}) }, 400, `max_restart "-1"`},
		{"duplicate", func() error { return c.AddResource(ctx, AddResourceRequest{SID: "exec:web"}) }, 409, "already defined"},
		{"set bad state", func() error { return c.SetResource(ctx, SetResourceRequest{SID: "exec:web", State: &bad}) }, 400, `state "bogus"`},
		{"start errored", func() error {
			s := "started"
			return c.SetResource(ctx, SetResourceRequest{SID: "exec:bad", State: &s})
		}, 409, "in error state, must be disabled and fixed first"},
		{"group with a dot", func() error {
			g := "g.1"
			return c.SetResource(ctx, SetResourceRequest{SID: "exec:web", Group: &g})
		}, 400, `group "g.1": invalid group id "g.1"`},
		{"add with group with a dot", func() error { return c.AddResource(ctx, AddResourceRequest{SID: "exec:x", Group: "g.1"}) }, 400, `group "g.1"`},
		{"unknown group", func() error {
			g := "nonexistent"
			return c.SetResource(ctx, SetResourceRequest{SID: "exec:web", Group: &g})
		}, 404, "group 'nonexistent'"},
		{"nothing to change", func() error { return c.SetResource(ctx, SetResourceRequest{SID: "exec:web"}) }, 400, "nothing to change"},
		{"spec patch not an object", func() error {
			return c.SetResource(ctx, SetResourceRequest{SID: "exec:web", Spec: json.RawMessage(`["x"]`)})
		}, 400, "expected a JSON object"},
		{"migrate errored", func() error { return c.Migrate(ctx, MoveRequest{SID: "exec:bad", Node: "node1"}) }, 409, "error state"},
		{"migrate unknown node", func() error { return c.Migrate(ctx, MoveRequest{SID: "exec:web", Node: "node9"}) }, 400, `node "node9"`},
		{"migrate bad node", func() error { return c.Relocate(ctx, MoveRequest{SID: "exec:web", Node: "-x"}) }, 400, `node "-x"`},
		{"migrate unknown sid", func() error { return c.Migrate(ctx, MoveRequest{SID: "exec:zzz", Node: "node2"}) }, 404, "not configured"},
		{"negative stop timeout", func() error { return c.Stop(ctx, StopRequest{SID: "exec:web", Timeout: -5}) }, 400, `timeout "-5"`},
		{"disarm mode", func() error { return c.Disarm(ctx, DisarmRequest{Mode: "panic"}) }, 400, `mode "panic"`},
		{"maintenance unknown node", func() error { return c.NodeMaintenance(ctx, NodeMaintenanceRequest{Node: "node7", Enable: true}) }, 400, `node "node7"`},
		{"bad shutdown policy", func() error { p := "reboot"; return c.SetDatacenter(ctx, DatacenterRequest{ShutdownPolicy: &p}) }, 400, `shutdown_policy "reboot": expected one of conditional, freeze, failover, migrate`},
		{"bad crs mode", func() error { m := "smart"; return c.SetDatacenter(ctx, DatacenterRequest{CRSMode: &m}) }, 400, `crs_mode "smart"`},
		{"negative threshold", func() error { v := -0.5; return c.SetDatacenter(ctx, DatacenterRequest{AutoRebalanceThreshold: &v}) }, 400, `auto_rebalance_threshold "-0.5"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an *api.Error", err)
			}
			if ae.Code != tt.code || !strings.Contains(ae.Message, tt.msg) {
				t.Fatalf("got %d %q, want %d containing %q", ae.Code, ae.Message, tt.code, tt.msg)
			}
		})
	}
	if f.changes != 0 {
		t.Fatalf("invalid requests made %d changes", f.changes)
	}
}

func TestMalformedBodies(t *testing.T) {
	f := newFake()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := ListenUnix(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewServer(f, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go srv.Serve(l)
	defer srv.Close()
	hc := NewClient(sock).http
	for _, body := range []string{`{`, `{"sid":"exec:x","colour":"red"}`, `{"sid":"exec:x"} {}`, `[1,2]`} {
		resp, err := hc.Post("http://haxd/v1/resources", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.HasPrefix(e.Message, "invalid request body") {
			t.Errorf("body %s: got %d %q, want 400 invalid request body", body, resp.StatusCode, e.Message)
		}
	}
	if f.changes != 0 {
		t.Fatalf("malformed bodies made %d changes", f.changes)
	}
}

func TestValidRequestsQueueCommands(t *testing.T) {
	f := newFake()
	c := startServer(t, f)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Migrate(ctx, MoveRequest{SID: "exec:web", Node: "node2"}))
	must(c.Relocate(ctx, MoveRequest{SID: "exec:web", Node: "node2"}))
	must(c.Stop(ctx, StopRequest{SID: "exec:web", Timeout: 0}))
	must(c.NodeMaintenance(ctx, NodeMaintenanceRequest{Node: "node2", Enable: true}))
	must(c.NodeMaintenance(ctx, NodeMaintenanceRequest{Node: "node2"}))
	must(c.Disarm(ctx, DisarmRequest{Mode: "freeze"}))
	must(c.Arm(ctx))
	want := []string{"migrate exec:web node2", "relocate exec:web node2", "stop exec:web 0",
		"enable-node-maintenance node2", "disable-node-maintenance node2", "disarm-ha freeze", "arm-ha"}
	if strings.Join(f.commands, "|") != strings.Join(want, "|") {
		t.Fatalf("queued %q, want %q", f.commands, want)
	}
	mode, policy, hold := "static", "migrate", 0
	must(c.SetDatacenter(ctx, DatacenterRequest{CRSMode: &mode, ShutdownPolicy: &policy, AutoRebalanceHoldDuration: &hold}))
	if dc, err := c.Datacenter(ctx); err != nil || dc.CRS.Mode != "static" || dc.ShutdownPolicy != ha.ShutdownMigrate || !f.dc.CRS.Set["ha-auto-rebalance-hold-duration"] {
		t.Fatalf("datacenter = %+v, %v", dc, err)
	}
	must(c.AddResource(ctx, AddResourceRequest{SID: "exec:db", Node: "node2", State: "stopped"}))
	if cd := f.st.Resources["exec:db"]; cd == nil || cd.State != ha.RequestStopped || cd.MaxRestart != 1 || !cd.Failback {
		t.Fatalf("added resource = %+v", cd)
	}
}
