package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"haxd/ha"
)

func TestStaleAfterFollowsTiming(t *testing.T) {
	tests := []struct {
		name string
		t    ha.Timing
		want int64
	}{
		{"fast: status refresh 5 s", ha.FastTiming(), 7},
		{"fast, refreshed every round: fence delay 1 s", func() ha.Timing { t := ha.FastTiming(); t.StatusRefresh = 0; return t }(), 2},
		{"long status refresh", func() ha.Timing { t := ha.FastTiming(); t.StatusRefresh = 9 * time.Second; return t }(), 11},
		{"pve: fence delay 60 s", ha.PVETiming(), 61},
		{"slow rounds dominate", func() ha.Timing { t := ha.FastTiming(); t.LRMRound = 4 * time.Second; return t }(), 13},
		{"long fence delay", func() ha.Timing { t := ha.FastTiming(); t.FenceDelay = 7500 * time.Millisecond; return t }(), 9},
	}
	for _, tt := range tests {
		if got := StaleAfter(tt.t); got != tt.want {
			t.Errorf("%s: StaleAfter = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestStatusShowsDeadAndGoneNodes: a node whose LRM was not heard for
// longer than StaleAfter reads as dead with its CRM state and age; a
// removed node reads as gone, not idle; no node is alive unless the CRM
// sees it online and its LRM is fresh.
func TestStatusShowsDeadAndGoneNodes(t *testing.T) {
	ts := func(sec int64) string { return time.Unix(sec, 0).Format(ctimeLayout) }
	st := &Status{LocalNode: "node1", Quorate: true, Now: 1000, StaleAfter: 2,
		Manager: &ha.ManagerStatus{MasterNode: "node1", Timestamp: 1000,
			NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeFence, "node3": ha.NodeGone, "node4": ha.NodeUnknown},
			ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:a": {State: ha.StateFence, Node: "node2", FailedNodes: []string{"node4"}},
				"exec:b": {State: ha.StateStarted, Node: "node1", Running: true, Cmd: &ha.ServiceCmd{Name: "migrate", Target: "node4"}},
			}},
		LRM: map[string]*ha.LRMStatus{
			"node1": {State: ha.LRMActive, Timestamp: 1000},
			"node2": {State: ha.LRMActive, Timestamp: 995},
			"node3": {State: ha.LRMWaitForAgentLock, Timestamp: 900},
			"node4": {State: ha.LRMActive, Timestamp: 999},
		},
		Resources: map[ha.SID]*ha.ResourceConfig{
			"exec:a": {SID: "exec:a", Node: "node2", State: ha.RequestStarted},
			"exec:b": {SID: "exec:b", Node: "node1", State: ha.RequestStarted},
		},
		Commands: []string{"relocate exec:a node1"},
	}
	got := Format(Entries(st))
	for _, want := range []string{
		"lrm node1 (active, watchdog active, " + ts(1000) + ") - node online\n",
		"lrm node2 (old timestamp - dead?, watchdog standby, " + ts(995) + ") - node fence, last heard 5 s ago\n",
		"lrm node3 (gone: removed from the cluster, last heard " + ts(900) + ")\n",
		"lrm node4 (active, watchdog active, " + ts(999) + ") - node unknown\n",
		"service exec:a (node2, fence)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	v := BuildView(st)
	alive := map[string]bool{}
	for _, n := range v.Nodes {
		alive[n.Name] = n.Alive
	}
	if want := map[string]bool{"node1": true, "node2": false, "node3": false, "node4": false}; !mapsEqual(alive, want) {
		t.Errorf("alive = %v, want %v", alive, want)
	}

	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Now     int64    `json:"now"`
		Stale   int64    `json:"stale_after"`
		Pending []string `json:"pending_commands"`
		Master  struct {
			Node      string `json:"node"`
			Timestamp int64  `json:"timestamp"`
		} `json:"master"`
		Nodes []struct {
			Name  string `json:"name"`
			State string `json:"state"`
			Age   int64  `json:"age"`
		} `json:"nodes"`
		Services []struct {
			SID            string   `json:"sid"`
			FailedNodes    []string `json:"failed_nodes"`
			PendingCommand *struct {
				Name, Target string
			} `json:"pending_command"`
		} `json:"services"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Now != 1000 || doc.Stale != 2 || doc.Master.Node != "node1" || doc.Master.Timestamp != 1000 {
		t.Errorf("json header wrong: %s", b)
	}
	if len(doc.Nodes) != 4 || doc.Nodes[1].State != "fence" || doc.Nodes[1].Age != 5 {
		t.Errorf("json nodes wrong: %+v", doc.Nodes)
	}
	if len(doc.Pending) != 1 || doc.Pending[0] != "relocate exec:a node1" {
		t.Errorf("pending commands = %q", doc.Pending)
	}
	if len(doc.Services) != 2 || len(doc.Services[0].FailedNodes) != 1 || doc.Services[1].PendingCommand == nil ||
		doc.Services[1].PendingCommand.Target != "node4" {
		t.Errorf("json services wrong: %s", b)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestStatusMasterLineAlways: an empty cluster (no manager status yet)
// still has a master line saying why there is none.
func TestStatusMasterLineAlways(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   *Status
		want string
	}{
		{"empty cluster", &Status{LocalNode: "n1", Quorate: true, Now: 10},
			"master none (no CRM has been master yet: the master is elected once a service is configured)\n"},
		{"services, no master yet", &Status{LocalNode: "n1", Quorate: true, Now: 10,
			Resources: map[ha.SID]*ha.ResourceConfig{"exec:a": {SID: "exec:a", Node: "n1"}}},
			"master none (no CRM has been master yet)\n"},
	} {
		got := Format(Entries(tt.st))
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: status lacks %q:\n%s", tt.name, tt.want, got)
		}
		if v := BuildView(tt.st); v.Master.State != "none" || v.Nodes == nil || v.Services == nil {
			t.Errorf("%s: view %+v", tt.name, v)
		}
	}
}
