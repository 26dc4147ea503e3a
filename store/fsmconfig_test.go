package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

// applyChecked applies entries like applyAll and also checks that every
// refused entry left the state exactly as it was.
func applyChecked(t *testing.T, f *fsm, entries []entry) {
	t.Helper()
	for i, e := range entries {
		b, err := newCommand(e.op, e.cmd, e.data)
		if err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
		term := e.term
		if term == 0 {
			term = 1
		}
		before := mustJSON(f.st)
		res := f.Apply(&raft.Log{Index: uint64(i + 1), Term: term, Type: raft.LogCommand, Data: b}).(*result)
		err = res.err()
		switch {
		case e.want == nil && err != nil:
			t.Fatalf("entry %d (%s): %v", i+1, e.op, err)
		case e.want != nil && !errors.Is(err, e.want):
			t.Fatalf("entry %d (%s): err = %v, want %v", i+1, e.op, err, e.want)
		case e.want != nil && mustJSON(f.st) != before:
			t.Fatalf("entry %d (%s): refused with %v but changed the state:\n%s\nto\n%s", i+1, e.op, err, before, mustJSON(f.st))
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestFSMConfigOperations(t *testing.T) {
	rc := func(sid ha.SID, node string) ha.ResourceConfig { return ha.DefaultResourceConfig(sid, node) }
	msError := json.RawMessage(mustJSON(&ha.ManagerStatus{
		NodeStatus:    map[string]ha.NodeState{"n1": ha.NodeOnline, "n2": ha.NodeOnline},
		ServiceStatus: map[ha.SID]*ha.ServiceStatus{"vm:1": {State: ha.StateError, Node: "n1"}},
	}))
	groups := func(ids ...string) textCmd {
		var b strings.Builder
		for _, id := range ids {
			b.WriteString("group: " + id + "\n\tnodes n1\n\n")
		}
		return textCmd{Text: b.String(), GroupIDs: ids}
	}
	tests := []struct {
		name    string
		entries []entry
		check   func(t *testing.T, st *state)
	}{
		{"add creates with a revision, and only once", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n2")}, want: ErrConflict},
		}, func(t *testing.T, st *state) {
			if got := st.Resources["vm:1"]; got.Node != "n1" || got.Revision != 1 {
				t.Errorf("vm:1 = %+v, want node n1 revision 1", got)
			}
		}},
		{"add checks fields, node and group", []entry{
			{op: opManagerStatus, cmd: 1, data: msError},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "bad", Node: "n1"}}, want: ErrInvalid},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "vm:2"}}, want: ErrInvalid},
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:2", "n9")}, want: ErrInvalid},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "vm:2", Node: "n1", MaxRestart: -1}}, want: ErrInvalid},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "vm:2", Node: "n1", Group: "g1"}}, want: ErrNotFound},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "vm:2", Node: "n1", Group: "g.1"}}, want: ErrInvalid},
			{op: opSetGroups, data: groups("g1")},
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "vm:2", Node: "n1", Group: "g1"}}},
		}, nil},
		{"update sets only the named fields and keeps the location", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opSetLocation, data: locationCmd{SID: "vm:1", From: "n1", To: "n2"}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", State: ptr(ha.RequestStopped), Comment: ptr("db"), MaxRelocate: ptr(3)}},
		}, func(t *testing.T, st *state) {
			got := st.Resources["vm:1"]
			if got.Node != "n2" || got.State != ha.RequestStopped || got.Comment != "db" || got.MaxRelocate != 3 || got.MaxRestart != 1 || !got.Failback || got.Revision != 3 {
				t.Errorf("vm:1 = %+v", got)
			}
		}},
		{"update of a missing resource", []entry{
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:9", State: ptr(ha.RequestStopped)}, want: ErrNotFound},
		}, nil},
		{"a service in error may only be disabled", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opManagerStatus, cmd: 1, data: msError},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", State: ptr(ha.RequestStarted)}, want: ErrConflict},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", State: ptr(ha.RequestStopped), Comment: ptr("x")}, want: ErrConflict},
			{op: opSetRequestedState, data: requestedStateCmd{SID: "vm:1", State: ha.RequestStarted}, want: ErrConflict},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Comment: ptr("fixing")}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", State: ptr(ha.RequestDisabled)}},
			// The CRM's own write (fenced) is not an operator request.
			{op: opSetRequestedState, cmd: 1, data: requestedStateCmd{SID: "vm:1", State: ha.RequestStopped}},
		}, nil},
		{"group must exist", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g1")}, want: ErrNotFound},
			{op: opSetGroups, data: groups("g1", "g2")},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g3")}, want: ErrNotFound},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g1")}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("")}},
		}, func(t *testing.T, st *state) {
			if g := st.Resources["vm:1"].Group; g != "" {
				t.Errorf("group %q, want none", g)
			}
		}},
		{"a used group cannot be dropped from the groups config", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opSetGroups, data: groups("g1", "g2")},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g1")}},
			{op: opSetGroups, data: groups("g2"), want: ErrConflict},
			{op: opSetGroups, data: groups("g1")},
			{op: opSetGroups, data: textCmd{Text: "group: a.b\n", GroupIDs: []string{"g1", "a.b"}}, want: ErrInvalid},
		}, func(t *testing.T, st *state) {
			if strings.Join(st.GroupIDs, ",") != "g1" {
				t.Errorf("group ids %q, want g1", st.GroupIDs)
			}
		}},
		{"revision compare-and-set", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opSetLocation, data: locationCmd{SID: "vm:1", To: "n2"}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", ExpectRevision: 1, Comment: ptr("x")}, want: ErrConflict},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", ExpectRevision: 2, Comment: ptr("x")}},
		}, nil},
		{"spec compare-and-set", []entry{
			{op: opAddResource, data: addResourceCmd{Config: ha.ResourceConfig{SID: "exec:a", Node: "n1", Spec: json.RawMessage(`{"command":"a"}`)}}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "exec:a", Spec: json.RawMessage(`{"command":"c"}`), SpecFrom: json.RawMessage(`{"command":"b"}`)}, want: ErrConflict},
			{op: opUpdateResource, data: updateResourceCmd{SID: "exec:a", Spec: json.RawMessage(`{"command":"c"}`), SpecFrom: json.RawMessage(`{ "command" : "a" }`)}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "exec:a", MaxRestart: ptr(-1)}, want: ErrInvalid},
			{op: opUpdateResource, data: updateResourceCmd{SID: "exec:a", State: ptr(ha.RequestedState("running"))}, want: ErrInvalid},
			{op: opUpdateResource, data: updateResourceCmd{SID: "exec:a", Comment: ptr(strings.Repeat("x", ha.MaxCommentLen+1))}, want: ErrInvalid},
		}, func(t *testing.T, st *state) {
			if s := string(st.Resources["exec:a"].Spec); s != `{"command":"c"}` {
				t.Errorf("spec %s", s)
			}
		}},
		{"remove purges the rules it read, in the same entry", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opSetRules, data: textCmd{Text: "r1"}},
			{op: opRemoveResource, data: removeResourceCmd{SID: "vm:1", Rules: ptr("r2"), RulesFrom: "r0"}, want: ErrConflict},
			{op: opRemoveResource, data: removeResourceCmd{SID: "vm:1", Rules: ptr("r2"), RulesFrom: "r1"}},
			{op: opRemoveResource, data: removeResourceCmd{SID: "vm:1"}, want: ErrNotFound},
		}, func(t *testing.T, st *state) {
			if _, found := st.Resources["vm:1"]; found || st.Rules != "r2" {
				t.Errorf("resources %v rules %q", st.Resources, st.Rules)
			}
		}},
		{"group migration is fenced and a compare-and-set on what it read", []entry{
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:1", "n1")}},
			{op: opAddResource, data: addResourceCmd{Config: rc("vm:2", "n1")}},
			{op: opSetRules, data: textCmd{Text: "R"}},
			{op: opSetGroups, data: groups("g1", "g2")},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g1")}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:2", Group: ptr("g1")}},
			// no term
			{op: opMigrateGroups, data: migrateGroupsCmd{RulesFrom: "R", Rules: "R+g1", GroupsFrom: groups("g1", "g2").Text, Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g1"}, {SID: "vm:2", Group: "g1"}}}, want: ErrStaleTerm},
			// rules changed since read
			{op: opMigrateGroups, cmd: 1, data: migrateGroupsCmd{RulesFrom: "old", Rules: "R+g1", GroupsFrom: groups("g1", "g2").Text, Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g1"}, {SID: "vm:2", Group: "g1"}}}, want: ErrConflict},
			// groups changed since read
			{op: opMigrateGroups, cmd: 1, data: migrateGroupsCmd{RulesFrom: "R", Rules: "R+g1", GroupsFrom: "old", Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g1"}, {SID: "vm:2", Group: "g1"}}}, want: ErrConflict},
			// a member's group changed since read
			{op: opMigrateGroups, cmd: 1, data: migrateGroupsCmd{RulesFrom: "R", Rules: "R+g1", GroupsFrom: groups("g1", "g2").Text, Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g2"}, {SID: "vm:2", Group: "g1"}}}, want: ErrConflict},
			// a member not listed would keep a removed group
			{op: opMigrateGroups, cmd: 1, data: migrateGroupsCmd{RulesFrom: "R", Rules: "R+g1", GroupsFrom: groups("g1", "g2").Text, Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g1"}}}, want: ErrConflict},
			{op: opMigrateGroups, cmd: 1, data: migrateGroupsCmd{RulesFrom: "R", Rules: "R+g1", GroupsFrom: groups("g1", "g2").Text, Groups: "g2", GroupIDs: []string{"g2"},
				Resources: []migratedService{{SID: "vm:1", Group: "g1", Failback: false}, {SID: "vm:2", Group: "g1", Failback: true}}}},
		}, func(t *testing.T, st *state) {
			if st.Rules != "R+g1" || st.Groups != "g2" || strings.Join(st.GroupIDs, ",") != "g2" || st.ManagerTerm != 1 {
				t.Errorf("rules %q groups %q ids %v term %d", st.Rules, st.Groups, st.GroupIDs, st.ManagerTerm)
			}
			if a, b := st.Resources["vm:1"], st.Resources["vm:2"]; a.Group != "" || a.Failback || b.Group != "" || !b.Failback || a.Revision != 12 {
				t.Errorf("vm:1 %+v vm:2 %+v", a, b)
			}
		}},
		{"datacenter settings are a compare-and-set on what was read", []entry{
			{op: opUpdateDatacenter, data: updateDatacenterCmd{From: &datacenterDoc{}, To: datacenterDoc{Datacenter: ha.Datacenter{ShutdownPolicy: ha.ShutdownMigrate}}}},
			{op: opUpdateDatacenter, data: updateDatacenterCmd{From: &datacenterDoc{}, To: datacenterDoc{Datacenter: ha.Datacenter{CRS: ha.CRSOptions{Mode: "static"}}}}, want: ErrConflict},
			{op: opUpdateDatacenter, data: updateDatacenterCmd{From: &datacenterDoc{Datacenter: ha.Datacenter{ShutdownPolicy: ha.ShutdownMigrate}},
				To: datacenterDoc{Datacenter: ha.Datacenter{ShutdownPolicy: ha.ShutdownMigrate, CRS: ha.CRSOptions{Mode: "static"}}, CRSSet: map[string]bool{"x": true}}}},
			{op: opUpdateDatacenter, data: updateDatacenterCmd{From: &datacenterDoc{Datacenter: ha.Datacenter{ShutdownPolicy: ha.ShutdownMigrate, CRS: ha.CRSOptions{Mode: "static"}}},
				To: datacenterDoc{}}, want: ErrConflict},
		}, func(t *testing.T, st *state) {
			if dc := st.Datacenter; dc == nil || dc.Datacenter.ShutdownPolicy != ha.ShutdownMigrate || dc.Datacenter.CRS.Mode != "static" || !dc.CRSSet["x"] {
				t.Errorf("datacenter %+v", dc)
			}
		}},
		{"a deposed master's migration is refused", []entry{
			{term: 5, op: opManagerStatus, cmd: 5, data: json.RawMessage(`{}`)},
			{term: 4, op: opMigrateGroups, cmd: 4, data: migrateGroupsCmd{}, want: ErrStaleTerm},
			{term: 6, op: opMigrateGroups, cmd: 5, data: migrateGroupsCmd{}, want: ErrStaleTerm},
			{term: 6, op: opSetRules, cmd: 5, data: textCmd{Text: "x"}, want: ErrStaleTerm},
			{term: 6, op: opSetRules, cmd: 6, data: textCmd{Text: "x"}},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(nil)
			applyChecked(t, f, tt.entries)
			if tt.check != nil {
				tt.check(t, f.st)
			}
		})
	}
}

// FuzzFSMApply applies an arbitrary log entry to a populated FSM: it must
// never panic, and an entry it refuses must leave the state unchanged.
func FuzzFSMApply(f *testing.F) {
	seed := func(op string, term uint64, data any) {
		b, err := newCommand(op, term, data)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint64(1))
	}
	seed(opUpdateResource, 0, updateResourceCmd{SID: "vm:1", State: ptr(ha.RequestStarted), Group: ptr("g1")})
	seed(opUpdateResource, 0, updateResourceCmd{SID: "vm:1", Spec: json.RawMessage(`{"a":1}`), SpecFrom: json.RawMessage(`{}`)})
	seed(opAddResource, 0, addResourceCmd{Config: ha.DefaultResourceConfig("vm:2", "n1")})
	seed(opRemoveResource, 0, removeResourceCmd{SID: "vm:1", Rules: ptr(""), RulesFrom: "R"})
	seed(opSetGroups, 0, textCmd{Text: "g", GroupIDs: []string{"g2"}})
	seed(opMigrateGroups, 1, migrateGroupsCmd{RulesFrom: "R", GroupsFrom: "G", Resources: []migratedService{{SID: "vm:1", Group: "g1"}}})
	f.Add([]byte(`{"v":1,"op":"update_resource","data":{"sid":"vm:1","state":null,"group":7}}`), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, term uint64) {
		fsm := newTestFSM(nil)
		applyChecked(t, fsm, []entry{
			{op: opManagerStatus, cmd: 1, data: json.RawMessage(`{"node_status":{"n1":"online"},"service_status":{"vm:1":{"state":"error","node":"n1"}}}`)},
			{op: opSetRules, data: textCmd{Text: "R"}},
			{op: opSetGroups, data: textCmd{Text: "G", GroupIDs: []string{"g1"}}},
			{op: opAddResource, data: addResourceCmd{Config: ha.DefaultResourceConfig("vm:1", "n1")}},
			{op: opUpdateResource, data: updateResourceCmd{SID: "vm:1", Group: ptr("g1")}},
		})
		before := mustJSON(fsm.st)
		res, isResult := fsm.Apply(&raft.Log{Index: 6, Term: max(term, 1), Type: raft.LogCommand, Data: data}).(*result)
		if !isResult {
			t.Fatalf("response is not a *result")
		}
		if res.err() != nil && mustJSON(fsm.st) != before {
			t.Fatalf("refused %q (%v) but changed the state", data, res.err())
		}
	})
}
