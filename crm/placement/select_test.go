package placement

import (
	"testing"

	"haxd/ha"
)

// Node selection (placement.md §6.2) with the basic scheduler: every case
// names the situation and the node PVE picks.
func TestSelectBasic(t *testing.T) {
	tests := []struct {
		name  string
		setup func(c *cluster)
		sid   ha.SID
		pref  Preference
		want  string
	}{
		{
			name: "recovery goes to the node with fewest services, ties by name",
			setup: func(c *cluster) {
				c.nodes["n1"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n1")
				c.fill("n2", 2)
				c.fill("n3", 1)
				c.fill("n4", 1)
			},
			sid: "vm:1", pref: PreferBestScore, want: "n3",
		},
		{
			name: "E1: highest online priority class, then fewest services",
			setup: func(c *cluster) {
				c.nodes["n1"] = ha.NodeFence
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n1:2,n2:1,n3:1,n4\n"
				c.add("vm:100", ha.StateRecovery, "n1")
				c.fill("n2", 3)
				c.fill("n3", 1)
			},
			sid: "vm:100", pref: PreferBestScore, want: "n3",
		},
		{
			name: "E1: failback moves back to the returned higher-priority node",
			setup: func(c *cluster) {
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n1:2,n2:1,n3:1,n4\n"
				c.add("vm:100", ha.StateStarted, "n3")
				c.fill("n1", 5)
			},
			sid: "vm:100", pref: PreferNone, want: "n1",
		},
		{
			name: "E1: without failback the service stays",
			setup: func(c *cluster) {
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n1:2,n2:1,n3:1,n4\n"
				c.add("vm:100", ha.StateStarted, "n3")
				c.res["vm:100"].Failback = false
			},
			sid: "vm:100", pref: PreferNone, want: "n3",
		},
		{
			name: "strict rule pulls back even without failback",
			setup: func(c *cluster) {
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n3\n\tstrict 1\n"
				c.add("vm:100", ha.StateStarted, "n2")
				c.res["vm:100"].Failback = false
			},
			sid: "vm:100", pref: PreferNone, want: "n3",
		},
		{
			name: "strict rule with no listed node online: no node",
			setup: func(c *cluster) {
				c.nodes["n3"] = ha.NodeFence
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n3\n\tstrict 1\n"
				c.add("vm:100", ha.StateRecovery, "n3")
			},
			sid: "vm:100", pref: PreferBestScore, want: "",
		},
		{
			name: "non-strict rule with no listed node online: any node",
			setup: func(c *cluster) {
				c.nodes["n3"] = ha.NodeFence
				c.rules = "node-affinity: r\n\tresources vm:100\n\tnodes n3\n"
				c.add("vm:100", ha.StateRecovery, "n3")
				c.fill("n1", 1)
			},
			sid: "vm:100", pref: PreferBestScore, want: "n2",
		},
		{
			name: "none keeps a service in its best class (no load balancing)",
			setup: func(c *cluster) {
				c.add("vm:1", ha.StateStarted, "n1")
				c.fill("n1", 5)
			},
			sid: "vm:1", pref: PreferNone, want: "n1",
		},
		{
			name: "E2: try-next skips tried nodes",
			setup: func(c *cluster) {
				delete(c.nodes, "n4")
				c.fill("n1", 3)
				c.fill("n2", 2)
				sd := c.add("fa:130", ha.StateStarted, "n3")
				sd.FailedNodes = []string{"n3"}
			},
			sid: "fa:130", pref: PreferTryNext, want: "n2",
		},
		{
			name: "E2: every node tried gives no node",
			setup: func(c *cluster) {
				delete(c.nodes, "n4")
				sd := c.add("fa:130", ha.StateStarted, "n1")
				sd.FailedNodes = []string{"n3", "n2", "n1"}
			},
			sid: "fa:130", pref: PreferTryNext, want: "",
		},
		{
			name: "E3: positive majority wins over load",
			setup: func(c *cluster) {
				c.rules = "resource-affinity: p\n\tresources vm:1,vm:2,vm:3,vm:4,vm:5\n\taffinity positive\n"
				c.nodes["n0"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n0")
				c.add("vm:2", ha.StateStarted, "n2")
				c.add("vm:3", ha.StateStarted, "n2")
				c.add("vm:4", ha.StateMigrate, "n1", "n3")
				c.add("vm:5", ha.StateStarted, "n1")
			},
			sid: "vm:1", pref: PreferBestScore, want: "n2",
		},
		{
			name: "E3: positive tie goes to the first name when the majority node is blocked",
			setup: func(c *cluster) {
				c.rules = "resource-affinity: p\n\tresources vm:1,vm:2,vm:3,vm:4,vm:5\n\taffinity positive\n\n" +
					"resource-affinity: n\n\tresources vm:1,vm:9\n\taffinity negative\n"
				c.nodes["n0"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n0")
				c.add("vm:2", ha.StateStarted, "n2")
				c.add("vm:3", ha.StateStarted, "n2")
				c.add("vm:4", ha.StateMigrate, "n1", "n3")
				c.add("vm:5", ha.StateStarted, "n1")
				c.add("vm:9", ha.StateStarted, "n2")
			},
			sid: "vm:1", pref: PreferBestScore, want: "n1",
		},
		{
			name: "E4: negative partners exclude their nodes",
			setup: func(c *cluster) {
				c.nodes["n5"] = ha.NodeFence
				c.rules = "resource-affinity: n\n\tresources vm:101,vm:102,vm:103\n\taffinity negative\n"
				c.add("vm:101", ha.StateStarted, "n3")
				c.add("vm:102", ha.StateStarted, "n4")
				c.add("vm:103", ha.StateRecovery, "n5")
				c.fill("n1", 3)
				c.fill("n2", 2)
			},
			sid: "vm:103", pref: PreferBestScore, want: "n2",
		},
		{
			name: "negative partner moving blocks its target too",
			setup: func(c *cluster) {
				c.rules = "resource-affinity: n\n\tresources vm:1,vm:2\n\taffinity negative\n"
				c.nodes["n4"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n4")
				c.add("vm:2", ha.StateMigrate, "n1", "n2")
			},
			sid: "vm:1", pref: PreferBestScore, want: "n3",
		},
		{
			name: "negative violation is repaired by leaving the shared node",
			setup: func(c *cluster) {
				c.rules = "resource-affinity: n\n\tresources vm:1,vm:2\n\taffinity negative\n"
				c.add("vm:1", ha.StateStarted, "n1")
				c.add("vm:2", ha.StateStarted, "n1")
				c.fill("n2", 1)
			},
			sid: "vm:1", pref: PreferNone, want: "n3",
		},
		{
			name: "stopped and request_start partners pull nowhere",
			setup: func(c *cluster) {
				c.rules = "resource-affinity: p\n\tresources vm:1,vm:2,vm:3\n\taffinity positive\n"
				c.nodes["n0"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n0")
				c.add("vm:2", ha.StateStopped, "n2")
				c.add("vm:3", ha.StateRequestStart, "n2")
				c.fill("n2", 1)
			},
			sid: "vm:1", pref: PreferBestScore, want: "n1",
		},
		{
			name: "maintenance fallback beats staying and scoring",
			setup: func(c *cluster) {
				sd := c.add("vm:1", ha.StateStarted, "n2")
				sd.MaintenanceNode = "n1"
				c.fill("n1", 4)
			},
			sid: "vm:1", pref: PreferNone, want: "n1",
		},
		{
			name: "quirk: failback off stays put even after maintenance ends",
			setup: func(c *cluster) {
				sd := c.add("vm:1", ha.StateStarted, "n2")
				sd.MaintenanceNode = "n1"
				c.res["vm:1"].Failback = false
			},
			sid: "vm:1", pref: PreferNone, want: "n2",
		},
		{
			name: "service on a maintenance node moves to the least loaded online node",
			setup: func(c *cluster) {
				c.nodes["n1"] = ha.NodeMaintenance
				c.add("vm:1", ha.StateStarted, "n1")
				c.fill("n2", 1)
			},
			sid: "vm:1", pref: PreferNone, want: "n3",
		},
		{
			name: "group nofailback overrides the service's failback",
			setup: func(c *cluster) {
				c.groups = "group: g\n\tnodes n1\n\tnofailback 1\n"
				c.add("vm:1", ha.StateStarted, "n2")
				c.res["vm:1"].Group = "g"
			},
			sid: "vm:1", pref: PreferNone, want: "n2",
		},
		{
			name: "restricted group acts as strict rule",
			setup: func(c *cluster) {
				c.groups = "group: g\n\tnodes n1:1,n3:2\n\trestricted 1\n"
				c.nodes["n3"] = ha.NodeFence
				c.add("vm:1", ha.StateRecovery, "n3")
				c.res["vm:1"].Group = "g"
			},
			sid: "vm:1", pref: PreferBestScore, want: "n1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster("n1", "n2", "n3", "n4")
			tt.setup(c)
			s := c.scheduler(t)
			got, logs := s.Select(tt.sid, tt.pref)
			if got != tt.want {
				t.Errorf("Select(%s, %s) = %q, want %q (logs %v)", tt.sid, tt.pref, got, tt.want, logs)
			}
		})
	}
}

// Sequential recoveries in one round see each other (usage is updated after
// every state change): strict-negative3-like spreading.
func TestSelectSeesEarlierDecisionsOfTheRound(t *testing.T) {
	c := newCluster("n1", "n2", "n3")
	c.nodes["n3"] = ha.NodeFence
	c.add("vm:1", ha.StateRecovery, "n3")
	c.add("vm:2", ha.StateRecovery, "n3")
	c.add("vm:3", ha.StateRecovery, "n3")
	s := c.scheduler(t)
	var got []string
	for _, sid := range sortedSIDs(c.services) {
		n, _ := s.Select(sid, PreferBestScore)
		got = append(got, n)
		c.services[sid].State, c.services[sid].Node = ha.StateStarted, n
		s.ServiceChanged(sid)
	}
	want := []string{"n1", "n2", "n1"}
	if !equal(got, want) {
		t.Errorf("recoveries went to %v, want %v", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
