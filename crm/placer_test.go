package crm

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"haxd/ha"
)

// newCRMWith creates a CRM with PVE timing that places with basicPlacer
// when basic is set, else with the default rulesPlacer.
func newCRMWith(e *fakeEnv, basic bool) *CRM {
	if basic {
		return newBasicCRM(e, ha.PVETiming())
	}
	return New(e, ha.PVETiming())
}

// newBasicCRM creates a CRM whose manager places with basicPlacer.
func newBasicCRM(e *fakeEnv, t ha.Timing) *CRM {
	c := New(e, t)
	c.newPlacer = func(ha.Env) placer { return newBasicPlacer() }
	return c
}

func TestBasicSelect(t *testing.T) {
	ns := map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline, "node3": ha.NodeOnline, "node4": ha.NodeMaintenance}
	// Usage: node1 2, node2 1, node3 1 (vm:9 migrating node2 -> node3).
	others := map[ha.SID]*ha.ServiceStatus{
		"vm:1": {State: ha.StateStarted, Node: "node1"},
		"vm:2": {State: ha.StateError, Node: "node1"},
		"vm:3": {State: ha.StateStopped, Node: "node2"},
		"vm:9": {State: ha.StateMigrate, Node: "node2", Target: "node3"},
		"vm:8": {State: ha.StateStarted, Node: "node4"},
	}
	for _, tc := range []struct {
		name     string
		sd       ha.ServiceStatus
		failback bool
		pref     nodePref
		want     string
	}{
		{"none keeps current", ha.ServiceStatus{State: ha.StateStarted, Node: "node1"}, true, prefNone, "node1"},
		{"none leaves a maintenance node", ha.ServiceStatus{State: ha.StateStarted, Node: "node4"}, true, prefNone, "node2"},
		{"no failback keeps an online node", ha.ServiceStatus{State: ha.StateStarted, Node: "node1", MaintenanceNode: "node2"}, false, prefNone, "node1"},
		{"maintenance fallback wins", ha.ServiceStatus{State: ha.StateStarted, Node: "node1", MaintenanceNode: "node3"}, true, prefNone, "node3"},
		{"best score ties by name", ha.ServiceStatus{State: ha.StateRecovery, Node: "node4"}, true, prefBestScore, "node2"},
		{"try-next skips tried nodes", ha.ServiceStatus{State: ha.StateStarted, Node: "node2", FailedNodes: []string{"node2"}}, true, prefTryNext, "node3"},
		{"try-next with all tried", ha.ServiceStatus{State: ha.StateStarted, Node: "node2", FailedNodes: []string{"node1", "node2", "node3"}}, true, prefTryNext, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := map[ha.SID]*ha.ServiceStatus{}
			for k, v := range others {
				c := *v
				ss[k] = &c
			}
			sd := tc.sd
			ss["vm:100"] = &sd
			cd := ha.DefaultResourceConfig("vm:100", sd.Node)
			cd.Failback = tc.failback
			p := newBasicPlacer()
			// vm:100 itself must not bias the scores: it is counted
			// only where it is, as in a real round.
			p.beginRound(roundView{NodeStatus: ns, Services: ss, Resources: map[ha.SID]*ha.ResourceConfig{"vm:100": &cd}})
			if got, _ := p.selectNode("vm:100", tc.pref); got != tc.want {
				t.Errorf("selected %q, want %q", got, tc.want)
			}
		})
	}
}

// With no rules configured, the rules-aware placement and basicPlacer must
// take the same decisions: the same log for the same scripted cluster.
func TestBasicPlacerAgreesWithRulesPlacer(t *testing.T) {
	scripts := map[string]func(t *testing.T, e *fakeEnv, c *CRM) []string{
		"recovery and maintenance": func(t *testing.T, e *fakeEnv, c *CRM) []string {
			var logs []string
			e.agentLock["node4"] = true
			e.members["node4"] = ha.NodeInfo{}
			for i := 0; i < 8; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			e.members["node4"] = ha.NodeInfo{Online: true}
			e.cmds = []string{"enable-node-maintenance node2"}
			logs = append(logs, round(t, e, c)...)
			e.setMode("node2", ha.ModeMaintenance)
			for i := 0; i < 3; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			e.cmds = []string{"disable-node-maintenance node2"}
			e.setMode("node2", ha.ModeActive)
			for i := 0; i < 3; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			return logs
		},
		"start failures": func(t *testing.T, e *fakeEnv, c *CRM) []string {
			var logs []string
			e.resources["ct:105"].MaxRelocate = 3
			for i := 0; i < 8; i++ {
				if e.sd(t, "ct:105").State == ha.StateStarted {
					e.result(t, "ct:105", ha.ExitError)
				}
				logs = append(logs, round(t, e, c)...)
			}
			return logs
		},
		"rebalance on start": func(t *testing.T, e *fakeEnv, c *CRM) []string {
			e.dc.CRS.RebalanceOnStart = true
			for _, sid := range []ha.SID{"vm:201", "vm:202", "vm:203"} {
				e.addService(sid, "node1", ha.RequestStarted)
			}
			var logs []string
			for i := 0; i < 3; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			return logs
		},
	}
	for _, name := range slices.Sorted(maps.Keys(scripts)) {
		t.Run(name, func(t *testing.T) {
			run := func(basic bool) []string {
				e := newFakeEnv("node1", "node1", "node2", "node3", "node4")
				for _, s := range []struct {
					sid  ha.SID
					node string
				}{{"vm:101", "node1"}, {"vm:102", "node2"}, {"vm:103", "node2"}, {"vm:104", "node4"}, {"ct:105", "node4"}, {"vm:106", "node4"}} {
					e.addService(s.sid, s.node, ha.RequestStarted)
				}
				c := newCRMWith(e, basic)
				c.Step()
				return append(e.takeLogs(), scripts[name](t, e, c)...)
			}
			basic, rules := run(true), run(false)
			if strings.Join(basic, "\n") != strings.Join(rules, "\n") {
				t.Errorf("basic and rules placement disagree\nbasic:\n  %s\nrules:\n  %s", strings.Join(basic, "\n  "), strings.Join(rules, "\n  "))
			}
			want := map[string]string{
				"recovery and maintenance": "moving service 'vm:102' back to 'node2'",
				"start failures":           "entering error state",
				"rebalance on start":       "re-balance selected new node",
			}[name]
			if !strings.Contains(strings.Join(basic, "\n"), want) {
				t.Errorf("script never logged %q; it tests nothing:\n  %s", want, strings.Join(basic, "\n  "))
			}
		})
	}
}
