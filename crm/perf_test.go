package crm

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"haxd/ha"
)

// sameStatus must compare every field of ha.ServiceStatus: writeStatus
// reuses a written copy whenever sameStatus says it is unchanged. A new
// field in ha.ServiceStatus fails this test until sameStatus covers it.
func TestSameStatusCoversEveryField(t *testing.T) {
	var names []string
	for f := range reflect.TypeFor[ha.ServiceStatus]().Fields() {
		names = append(names, f.Name)
	}
	want := []string{"State", "Node", "UID", "Target", "Timeout", "Running", "Cmd", "FailedNodes", "MaintenanceNode"}
	if !slices.Equal(names, want) {
		t.Fatalf("ha.ServiceStatus fields are %v, sameStatus compares %v: update sameStatus", names, want)
	}
	ten, eleven := 10, 11
	base := func() *ha.ServiceStatus {
		return &ha.ServiceStatus{State: ha.StateStarted, Node: "node1", UID: "u1", Target: "node2", Timeout: &ten,
			Running: true, Cmd: &ha.ServiceCmd{Name: "migrate", Target: "node3"}, FailedNodes: []string{"node4"}, MaintenanceNode: "node5"}
	}
	tests := []struct {
		name   string
		change func(*ha.ServiceStatus)
		same   bool
	}{
		{"clone", func(*ha.ServiceStatus) {}, true},
		{"timeout same value, other pointer", func(sd *ha.ServiceStatus) { v := 10; sd.Timeout = &v }, true},
		{"state", func(sd *ha.ServiceStatus) { sd.State = ha.StateMigrate }, false},
		{"node", func(sd *ha.ServiceStatus) { sd.Node = "node9" }, false},
		{"uid", func(sd *ha.ServiceStatus) { sd.UID = "u2" }, false},
		{"target", func(sd *ha.ServiceStatus) { sd.Target = "" }, false},
		{"timeout value", func(sd *ha.ServiceStatus) { sd.Timeout = &eleven }, false},
		{"timeout nil", func(sd *ha.ServiceStatus) { sd.Timeout = nil }, false},
		{"running", func(sd *ha.ServiceStatus) { sd.Running = false }, false},
		{"cmd target", func(sd *ha.ServiceStatus) { sd.Cmd.Target = "node1" }, false},
		{"cmd nil", func(sd *ha.ServiceStatus) { sd.Cmd = nil }, false},
		{"failed nodes appended", func(sd *ha.ServiceStatus) { sd.FailedNodes = append(sd.FailedNodes, "node1") }, false},
		{"failed nodes other", func(sd *ha.ServiceStatus) { sd.FailedNodes[0] = "node1" }, false},
		{"failed nodes nil", func(sd *ha.ServiceStatus) { sd.FailedNodes = nil }, false},
		{"maintenance node", func(sd *ha.ServiceStatus) { sd.MaintenanceNode = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := base()
			b := a.Clone()
			tt.change(b)
			if got := sameStatus(a, b); got != tt.same {
				t.Errorf("sameStatus = %v, want %v", got, tt.same)
			}
			if got := sameStatus(b, a); got != tt.same {
				t.Errorf("sameStatus (swapped) = %v, want %v", got, tt.same)
			}
		})
	}
}

// The written manager status equals the service table at the write and no
// later change of the service table reaches it, also where an unchanged
// service shares its copy with the previous write.
func TestWriteStatusCopies(t *testing.T) {
	e := threeNodes()
	m := newManager(e, ha.PVETiming(), logger{e.logger}, newBasicPlacer())
	m.services["vm:101"] = &ha.ServiceStatus{State: ha.StateStarted, Node: "node1", UID: "a"}
	m.services["vm:102"] = &ha.ServiceStatus{State: ha.StateStarted, Node: "node2", UID: "b", FailedNodes: []string{"node3"}}
	if err := m.writeStatus(); err != nil {
		t.Fatal(err)
	}
	first := e.ms
	m.services["vm:101"].State = ha.StateRequestStop
	m.services["vm:102"].FailedNodes[0] = "node1"
	if first.ServiceStatus["vm:101"].State != ha.StateStarted || first.ServiceStatus["vm:102"].FailedNodes[0] != "node3" {
		t.Fatalf("a change of the service table reached the written status: %+v", first.ServiceStatus)
	}
	m.services["vm:103"] = &ha.ServiceStatus{State: ha.StateStopped, Node: "node3"}
	// Someone else modified a written copy: the next write must not trust it.
	m.services["vm:102"].FailedNodes[0] = "node3"
	first.ServiceStatus["vm:102"].UID = "changed"
	if err := m.writeStatus(); err != nil {
		t.Fatal(err)
	}
	second := e.ms
	if len(second.ServiceStatus) != len(m.services) {
		t.Fatalf("written %d services, want %d", len(second.ServiceStatus), len(m.services))
	}
	for sid, sd := range m.services {
		w := second.ServiceStatus[sid]
		if !reflect.DeepEqual(w, sd) {
			t.Errorf("%s: written %+v, want %+v", sid, w, sd)
		}
		if w == sd {
			t.Errorf("%s: written status is the manager's own", sid)
		}
	}
	if first.ServiceStatus["vm:101"].State != ha.StateStarted {
		t.Errorf("second write changed the first: %+v", first.ServiceStatus["vm:101"])
	}
}

// sortedSIDs notices a changed set of SIDs of the same size.
func TestSortedSIDs(t *testing.T) {
	e := threeNodes()
	m := newManager(e, ha.PVETiming(), logger{e.logger}, newBasicPlacer())
	for _, sid := range []ha.SID{"vm:3", "vm:1", "vm:2"} {
		m.services[sid] = &ha.ServiceStatus{State: ha.StateStopped, Node: "node1"}
	}
	steps := []struct {
		name   string
		change func()
		want   []ha.SID
	}{
		{"initial", func() {}, []ha.SID{"vm:1", "vm:2", "vm:3"}},
		{"unchanged", func() {}, []ha.SID{"vm:1", "vm:2", "vm:3"}},
		{"one replaced", func() {
			delete(m.services, "vm:2")
			m.services["vm:0"] = &ha.ServiceStatus{}
		}, []ha.SID{"vm:0", "vm:1", "vm:3"}},
		{"one added", func() { m.services["vm:4"] = &ha.ServiceStatus{} }, []ha.SID{"vm:0", "vm:1", "vm:3", "vm:4"}},
		{"one removed", func() { delete(m.services, "vm:0") }, []ha.SID{"vm:1", "vm:3", "vm:4"}},
		{"all removed", func() { clear(m.services) }, nil},
	}
	for _, st := range steps {
		st.change()
		if got := m.sortedSIDs(); !slices.Equal(got, st.want) {
			t.Errorf("%s: sortedSIDs = %v, want %v", st.name, got, st.want)
		}
	}
}

// BenchmarkManageRoundRules is BenchmarkManageRound with a few
// node-affinity and resource-affinity rules (pinned, kept apart and kept
// together services), so that the rule paths of selection are measured too.
func BenchmarkManageRoundRules(b *testing.B) {
	setup := func(e *fakeEnv, nodes []string) {
		e.rules = []byte(fmt.Sprintf("node-affinity: pin\n\tresources vm:1000,vm:1050\n\tnodes %s:2,%s:1\n\n"+
			"node-affinity: prefer\n\tresources vm:1010,vm:1011,vm:1012\n\tnodes %s,%s,%s\n\tstrict 1\n\n"+
			"resource-affinity: apart\n\tresources vm:1002,vm:1003,vm:1004\n\taffinity negative\n\n"+
			"resource-affinity: together\n\tresources vm:1005,vm:1055\n\taffinity positive\n",
			nodes[0], nodes[1], nodes[10], nodes[11], nodes[12]))
	}
	benchmarkManageRoundWith(b, false, setup)
}
