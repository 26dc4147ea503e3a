package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/clock"
	"haxd/crm/placement"
	"haxd/ha"
	"haxd/store"
)

// newTestBackend returns the API backend of an agent whose store is a
// real single-node raft cluster.
func newTestBackend(t *testing.T) (*backend, *store.Store) {
	t.Helper()
	cfg := store.LocalConfig("n1", t.TempDir())
	cfg.NoSync = true
	s, err := store.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !s.IsLeader() {
		if ctx.Err() != nil {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	log := slog.New(slog.DiscardHandler)
	return &backend{a: &Agent{log: log, n: &node{name: "n1", store: s, log: log, clock: clock.System{}}}}, s
}

func TestBackendConfigChanges(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	spec := json.RawMessage(`{"command":"/bin/sleep","args":["100"]}`)
	str := func(v string) *string { return &v }
	state := func(v ha.RequestedState) *ha.RequestedState { return &v }
	check := func(name string, err error, code int, msg string) {
		t.Helper()
		var ae *api.Error
		switch {
		case code == 0 && err != nil:
			t.Fatalf("%s: %v", name, err)
		case code == 0:
		case !errors.As(err, &ae) || ae.Code != code || !strings.Contains(ae.Message, msg):
			t.Fatalf("%s: got %v, want %d containing %q", name, err, code, msg)
		}
	}
	check("add", b.AddResource(ctx, ha.DefaultResourceConfig("exec:a", ""), spec), 0, "")
	check("add again", b.AddResource(ctx, ha.DefaultResourceConfig("exec:a", ""), spec), 409, "already defined")
	g := ha.DefaultResourceConfig("exec:b", "")
	g.Group = "g1"
	check("add with an unknown group", b.AddResource(ctx, g, spec), 404, "group 'g1' does not exist")
	check("set an unknown group", b.UpdateResource(ctx, "exec:a", api.ResourceChange{Group: str("nonexistent")}), 404, "group 'nonexistent' does not exist")
	check("set on an unknown service", b.UpdateResource(ctx, "exec:zz", api.ResourceChange{Group: str("g1")}), 404, "not configured")

	check("groups", b.SetGroups(ctx, "group: g1\n\tnodes n1\n\ngroup: g2\n\tnodes n1\n"), 0, "")
	check("add with a group", b.AddResource(ctx, g, spec), 0, "")
	check("set a group", b.UpdateResource(ctx, "exec:a", api.ResourceChange{Group: str("g2")}), 0, "")
	check("drop a used group", b.SetGroups(ctx, "group: g1\n\tnodes n1\n"), 409, "group 'g2' is still used by exec:a")
	if got := s.Resources()["exec:a"]; got.Group != "g2" || got.Node != "n1" {
		t.Fatalf("exec:a = %+v", got)
	}

	// A group migrated to a rule is named with the rule.
	check("rules", b.SetRules(ctx, "node-affinity: ha-group-old\n\tnodes n1\n\tresources exec:a\n"), 0, "")
	check("set a migrated group", b.UpdateResource(ctx, "exec:a", api.ResourceChange{Group: str("old")}), 404, "migrated to the node-affinity rule 'ha-group-old'")

	// Spec patches merge and are validated.
	check("patch spec", b.UpdateResource(ctx, "exec:a", api.ResourceChange{SpecPatch: json.RawMessage(`{"args":["5"]}`)}), 0, "")
	if got := string(s.Resources()["exec:a"].Spec); got != `{"args":["5"],"command":"/bin/sleep"}` {
		t.Fatalf("patched spec %s", got)
	}
	check("patch spec invalid", b.UpdateResource(ctx, "exec:a", api.ResourceChange{SpecPatch: json.RawMessage(`{"command":null}`)}), 400, "patched spec")

	// The error-state rule is checked with the write.
	term, _ := s.LeaderTerm()
	ms := &ha.ManagerStatus{NodeStatus: map[string]ha.NodeState{"n1": ha.NodeOnline},
		ServiceStatus: map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateError, Node: "n1"}}}
	if err := s.WriteManagerStatus(ctx, term, ms); err != nil {
		t.Fatal(err)
	}
	check("start in error", b.UpdateResource(ctx, "exec:a", api.ResourceChange{State: state(ha.RequestStarted)}), 409, "in error state")
	check("disable in error", b.UpdateResource(ctx, "exec:a", api.ResourceChange{State: state(ha.RequestDisabled)}), 0, "")
	c := ha.DefaultResourceConfig("exec:c", "n7")
	check("add on an unknown node", b.AddResource(ctx, c, spec), 400, `node "n7"`)

	// Remove purges the rules in the same write.
	check("remove", b.RemoveResource(ctx, "exec:a", true), 0, "")
	if rules := string(s.Rules()); rules != "" {
		t.Fatalf("rules after purge: %q", rules)
	}
	check("remove again", b.RemoveResource(ctx, "exec:a", true), 404, "not configured")
}

// A datacenter change that races another writer is applied again on what
// the other wrote, so both changes stay.
func TestBackendDatacenterChangeKeepsAConcurrentChange(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	calls := 0
	err := b.UpdateDatacenter(ctx, func(dc *ha.Datacenter) error {
		calls++
		if calls == 1 {
			// Another operator changes the scheduler between our read
			// and our write.
			other := *s.Datacenter()
			other.CRS.Mode = "static"
			if err := s.SetDatacenter(ctx, &other); err != nil {
				t.Fatal(err)
			}
		}
		dc.ShutdownPolicy = ha.ShutdownMigrate
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dc := s.Datacenter()
	if calls != 2 || dc.ShutdownPolicy != ha.ShutdownMigrate || dc.CRS.Mode != "static" {
		t.Fatalf("after %d attempts: %+v, want both changes", calls, dc)
	}
}

// TestRulesParseErrorSaysNothingChanged: the API refuses a whole rules
// text on a parse problem, so its message must not claim that only the
// section is ignored.
func TestRulesParseErrorSaysNothingChanged(t *testing.T) {
	_, diags := placement.ParseRules([]byte("bogus: r1\n\tresources exec:a\n"))
	if len(diags) == 0 {
		t.Fatal("the parser accepted an unknown rule type")
	}
	err := diagError("rules", diags[0])
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("diagError = %v, want a 400", err)
	}
	if strings.Contains(ae.Message, "section ignored") || !strings.Contains(ae.Message, "nothing was changed") ||
		!strings.Contains(ae.Message, "line 1") || !strings.Contains(ae.Message, "bogus") {
		t.Errorf("message %q: want line, the bad type and 'nothing was changed', not 'section ignored'", ae.Message)
	}
}
