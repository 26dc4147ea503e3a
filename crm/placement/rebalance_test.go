package placement

import (
	"fmt"
	"testing"

	"haxd/ha"
)

const mib = 1 << 20

// rebalanceCase sets up a dynamic or static cluster of three equal nodes
// with started services and checks the first auto-rebalance decision.
type rebalanceCase struct {
	name    string
	mode    string
	method  string
	nodeCap [2]float64
	rules   string
	place   map[ha.SID]string
	stats   map[ha.SID]ha.ServiceStats
	want    string // the auto rebalance log line, "" for none
}

func (rc rebalanceCase) setup(t *testing.T) (*cluster, *Scheduler) {
	c := staticCluster(rc.mode, map[string][2]float64{"node1": rc.nodeCap, "node2": rc.nodeCap, "node3": rc.nodeCap})
	c.dc.CRS.AutoRebalance = true
	c.dc.CRS.AutoRebalanceMethod = rc.method
	c.dc.CRS.AutoRebalanceHoldDuration = 0
	c.dc.CRS.Set = map[string]bool{"ha-auto-rebalance-hold-duration": true}
	c.rules = rc.rules
	c.stats.services = rc.stats
	for sid, n := range rc.place {
		sd := c.add(sid, ha.StateStarted, n)
		sd.Running = true
	}
	// the dynamic node load is the sum of what runs there
	for sid, n := range rc.place {
		st := c.stats.dynamic[n]
		st.CPU += rc.stats[sid].CPU
		st.Mem += rc.stats[sid].Mem
		c.stats.dynamic[n] = st
	}
	return c, c.scheduler(t)
}

func TestAutoRebalanceChoice(t *testing.T) {
	four := map[ha.SID]string{"vm:101": "node1", "vm:102": "node1", "vm:103": "node1", "vm:104": "node1"}
	dyn4 := map[ha.SID]ha.ServiceStats{}
	stat4 := map[ha.SID]ha.ServiceStats{}
	for sid := range four {
		dyn4[sid] = ha.ServiceStats{MaxCPU: 2, MaxMem: 8 * gib, CPU: 1, Mem: 4 * gib}
		stat4[sid] = ha.ServiceStats{MaxCPU: 2, MaxMem: 8 * gib}
	}
	seven := map[ha.SID]string{"vm:101": "node1", "vm:102": "node1", "vm:103": "node2", "vm:104": "node2",
		"vm:105": "node3", "vm:106": "node3", "vm:107": "node3"}
	tests := []rebalanceCase{
		{
			name: "worked example 10.5 (dynamic)", mode: ModeDynamic, nodeCap: [2]float64{24, 32 * gib},
			place: four, stats: dyn4,
			want: "auto rebalance - migrate vm:101 to node2 (expected change for imbalance from 1.41 to 0.94)",
		},
		{
			name: "worked example 10.5 (static)", mode: ModeStatic, nodeCap: [2]float64{24, 32 * gib},
			place: four, stats: stat4,
			want: "auto rebalance - migrate vm:101 to node2 (expected change for imbalance from 1.41 to 0.94)",
		},
		{
			name: "single service never moves (improvement below margin)", mode: ModeDynamic, nodeCap: [2]float64{24, 32 * gib},
			place: map[ha.SID]string{"vm:101": "node1"}, stats: dyn4,
		},
		{
			name: "positive pair moves as a bundle (constrained-auto-rebalance2)", mode: ModeDynamic, nodeCap: [2]float64{24, 48 * gib},
			rules: "resource-affinity: together\n\tresources vm:101,vm:102\n\taffinity positive\n",
			place: map[ha.SID]string{"vm:101": "node1", "vm:102": "node1", "vm:103": "node1"},
			stats: map[ha.SID]ha.ServiceStats{
				"vm:101": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 0.9, Mem: 2621440000},
				"vm:102": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 7.9, Mem: 8 * gib},
				"vm:103": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 4, Mem: 4096 * mib},
			},
			want: "auto rebalance - migrate vm:101 to node2 (expected change for imbalance from 1.41 to 0.86)",
		},
		{
			name: "strict single-node rule is never a candidate", mode: ModeDynamic, nodeCap: [2]float64{24, 32 * gib},
			rules: "node-affinity: pin\n\tresources vm:101,vm:102,vm:103,vm:104\n\tnodes node1\n\tstrict 1\n",
			place: four, stats: dyn4,
		},
		{
			name: "static-auto-rebalance3 first move (bruteforce)", mode: ModeStatic, nodeCap: [2]float64{24, 48 * gib},
			place: seven,
			stats: map[ha.SID]ha.ServiceStats{
				"vm:101": {MaxCPU: 2, MaxMem: 2 * gib}, "vm:102": {MaxCPU: 2, MaxMem: 2 * gib},
				"vm:103": {MaxCPU: 2, MaxMem: 2 * gib}, "vm:104": {MaxCPU: 2, MaxMem: 2 * gib},
				"vm:105": {MaxCPU: 8, MaxMem: 8 * gib}, "vm:106": {MaxCPU: 8, MaxMem: 8 * gib}, "vm:107": {MaxCPU: 8, MaxMem: 8 * gib},
			},
			want: "auto rebalance - migrate vm:105 to node1 (expected change for imbalance from 0.88 to 0.47)",
		},
		{
			name: "dynamic-auto-rebalance-topsis3 first move (topsis)", mode: ModeDynamic, method: MethodTOPSIS, nodeCap: [2]float64{24, 48 * gib},
			place: seven,
			stats: map[ha.SID]ha.ServiceStats{
				"vm:101": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 0.9, Mem: 5444206592},
				"vm:102": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 1.2, Mem: 2621440000},
				"vm:103": {MaxCPU: 4, MaxMem: 8 * gib, CPU: 0.8, Mem: 5444206592},
				"vm:104": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 0.9, Mem: 2621440000},
				"vm:105": {MaxCPU: 8, MaxMem: 8 * gib, CPU: 7.8, Mem: 7912 * mib},
				"vm:106": {MaxCPU: 6, MaxMem: 8 * gib, CPU: 5.7, Mem: 8192 * mib},
				"vm:107": {MaxCPU: 6, MaxMem: 8 * gib, CPU: 6.0, Mem: 8011 * mib},
			},
			want: "auto rebalance - migrate vm:105 to node2 (expected change for imbalance from 0.85 to 0.42)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := tt.setup(t)
			cmd, logs := s.AutoRebalance()
			got := ""
			if len(logs) > 0 {
				got = logs[0].Msg
			}
			if got != tt.want {
				t.Errorf("log %q, want %q", got, tt.want)
			}
			if (cmd != nil) != (tt.want != "") {
				t.Errorf("command %v, want one iff a log line", cmd)
			}
		})
	}
}

// The hold counter: three consecutive rounds above the threshold by default;
// pending migrations freeze it; a round at or below the threshold resets it.
func TestAutoRebalanceHold(t *testing.T) {
	rc := rebalanceCase{mode: ModeDynamic, nodeCap: [2]float64{24, 32 * gib},
		place: map[ha.SID]string{"vm:101": "node1", "vm:102": "node1"},
		stats: map[ha.SID]ha.ServiceStats{"vm:101": {CPU: 1, Mem: 4 * gib}, "vm:102": {CPU: 1, Mem: 4 * gib}}}
	c, s := rc.setup(t)
	c.dc.CRS.Set = nil
	c.dc.CRS.AutoRebalanceHoldDuration = 0 // absent: default 3
	s.UpdateMode(c.dc)
	round := func() string {
		s.Prepare(Round{Resources: c.res, NodeStatus: c.nodes, Services: c.services, Datacenter: c.dc, Stats: c.stats})
		cmd, _ := s.AutoRebalance()
		if cmd == nil {
			return "-"
		}
		return cmd.String()
	}
	var got []string
	got = append(got, round(), round())
	c.services["vm:102"].Cmd = &ha.ServiceCmd{Name: "migrate", Target: "node3"} // queued command: counter untouched
	got = append(got, round())
	c.services["vm:102"].Cmd = nil
	got = append(got, round(), round(), round(), round())
	want := []string{"-", "-", "-", "migrate vm:101 node2", "-", "-", "migrate vm:101 node2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rounds %v, want %v", got, want)
	}
}

// A started service on a node that is not online makes scoring fail.
func TestAutoRebalanceMissingFromUsage(t *testing.T) {
	rc := rebalanceCase{mode: ModeDynamic, nodeCap: [2]float64{24, 32 * gib},
		place: map[ha.SID]string{"vm:101": "node1", "vm:102": "node1", "vm:103": "node3"},
		stats: map[ha.SID]ha.ServiceStats{"vm:101": {CPU: 1, Mem: 4 * gib}, "vm:102": {CPU: 1, Mem: 4 * gib}, "vm:103": {CPU: 1, Mem: 4 * gib}}}
	c, _ := rc.setup(t)
	c.nodes["node3"] = ha.NodeMaintenance
	s := c.scheduler(t)
	cmd, logs := s.AutoRebalance()
	want := "unable to score best balancing migration - leader 'vm:103' is not present in the cluster usage"
	if cmd != nil || len(logs) != 1 || logs[0].Msg != want {
		t.Errorf("AutoRebalance = %v, %v; want nil, %q", cmd, logs, want)
	}
}
