package placement

import (
	"fmt"
	"math"
	"testing"

	"haxd/ha"
)

// The criteria of placement.md §7.3.4 (test-crs-static1): n2 32 CPUs/200 GB,
// n3 32 CPUs/300 GB, nothing running, a 2-CPU/4-GB service.
func TestCriteriaWorkedExample(t *testing.T) {
	n2 := nodeLoad{maxCPU: 32, maxMem: 200e9}
	n3 := nodeLoad{maxCPU: 32, maxMem: 300e9}
	svc := ha.ServiceStats{MaxCPU: 2, MaxMem: 4e9}
	on2 := []nodeLoad{n2, n3}
	addStarted(&on2[0], svc)
	on3 := []nodeLoad{n2, n3}
	addStarted(&on3[1], svc)
	tests := []struct {
		name  string
		loads []nodeLoad
		want  [4]float64
	}{
		{"on n2", on2, [4]float64{1.044194, 1.0625, 1.014142, 1.020000}},
		{"on n3", on3, [4]float64{1.044194, 1.0625, 1.009428, 1.013333}},
	}
	for _, tt := range tests {
		got := criteria(tt.loads)
		for c := range 4 {
			if math.Abs(got[c]-tt.want[c]) > 5e-7 {
				t.Errorf("%s: criterion %d = %.6f, want %.6f", tt.name, c+1, got[c], tt.want[c])
			}
		}
	}
	s := topsis([][4]float64{criteria(on2), criteria(on3)})
	if s[0] != 0 || s[1] != 1 {
		t.Errorf("topsis = %v, want [0 1] (n3 is the ideal best)", s)
	}
}

// Hand-computed TOPSIS cases.
func TestTOPSIS(t *testing.T) {
	tests := []struct {
		name string
		alts [][4]float64
		want []float64
	}{
		{"identical alternatives all score 0", [][4]float64{{1, 1, 1, 1}, {1, 1, 1, 1}}, []float64{0, 0}},
		{"dominating alternative is ideal", [][4]float64{{1, 1, 1, 1}, {2, 2, 2, 2}}, []float64{1, 0}},
		// Only criterion 4 (weight 10/18) differs: 1 vs 3, norm sqrt(10).
		// The middle alternative 2 lies half-way: S = 0.5.
		{"linear in a single criterion", [][4]float64{{1, 1, 1, 1}, {1, 1, 1, 2}, {1, 1, 1, 3}}, []float64{1, 0.5, 0}},
	}
	for _, tt := range tests {
		got := topsis(tt.alts)
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-12 {
				t.Errorf("%s: S = %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}

func TestImbalance(t *testing.T) {
	tests := []struct {
		name  string
		loads []nodeLoad
		want  float64
	}{
		{"one of three loaded is sqrt 2", []nodeLoad{{1, 1, 0.5, 0.5}, {1, 1, 0, 0}, {1, 1, 0, 0}}, math.Sqrt2},
		{"even load is 0", []nodeLoad{{1, 1, 0.5, 0.5}, {2, 2, 1, 1}}, 0},
		{"no load is 0", []nodeLoad{{1, 1, 0, 0}, {1, 1, 0, 0}}, 0},
		{"single node is 0", []nodeLoad{{1, 1, 1, 1}}, 0},
		// loads 0.25 and 0.75: mean 0.5, sigma 0.25
		{"two nodes", []nodeLoad{{1, 1, 0.25, 0.25}, {1, 1, 0.75, 0.75}}, 0.5},
	}
	for _, tt := range tests {
		if got := imbalance(tt.loads); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s: imbalance = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// staticCluster returns nodes with the given capacities (cores, bytes).
func staticCluster(mode string, caps map[string][2]float64) *cluster {
	c := newCluster()
	c.dc.CRS.Mode = mode
	for n, cp := range caps {
		c.nodes[n] = ha.NodeOnline
		c.stats.static[n] = ha.NodeStats{MaxCPU: cp[0], MaxMem: cp[1]}
		c.stats.dynamic[n] = ha.NodeStats{MaxCPU: cp[0], MaxMem: cp[1]}
	}
	return c
}

// test-crs-static3 and static4: services leaving a maintenance node are
// placed one after another, each decision updating the model.
func TestStaticSequentialPlacement(t *testing.T) {
	tests := []struct {
		name  string
		caps  map[string][2]float64
		stats map[ha.SID]ha.ServiceStats
		want  []string
	}{
		{
			name: "static3: twice the resources gets twice the services",
			caps: map[string][2]float64{"node1": {32, 100e9}, "node2": {64, 200e9}, "node3": {32, 100e9}},
			stats: func() map[ha.SID]ha.ServiceStats {
				m := map[ha.SID]ha.ServiceStats{}
				for i := 101; i <= 109; i++ {
					m[ha.SID(fmt.Sprintf("vm:%d", i))] = ha.ServiceStats{MaxCPU: 2, MaxMem: 4e9}
				}
				return m
			}(),
			want: []string{"node2", "node2", "node3", "node2", "node2", "node3", "node2", "node2", "node3"},
		},
		{
			name: "static4: one heavy unlimited-CPU container, then all light ones elsewhere",
			caps: map[string][2]float64{"node1": {32, 100e9}, "node2": {32, 100e9}, "node3": {32, 100e9}},
			stats: func() map[ha.SID]ha.ServiceStats {
				m := map[ha.SID]ha.ServiceStats{"ct:101": {MaxCPU: 0, MaxMem: 40e9}}
				for i := 102; i <= 109; i++ {
					m[ha.SID(fmt.Sprintf("ct:%d", i))] = ha.ServiceStats{MaxCPU: 2, MaxMem: 2e9}
				}
				return m
			}(),
			want: []string{"node2", "node3", "node3", "node3", "node3", "node3", "node3", "node3", "node3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := staticCluster(ModeStatic, tt.caps)
			c.nodes["node1"] = ha.NodeMaintenance
			c.stats.services = tt.stats
			for sid := range tt.stats {
				c.add(sid, ha.StateStarted, "node1")
			}
			s := c.scheduler(t)
			var got []string
			for _, sid := range sortedSIDs(c.services) {
				n, logs := s.Select(sid, PreferNone)
				if len(logs) > 0 {
					t.Fatalf("unexpected logs %v", logs)
				}
				got = append(got, n)
				c.services[sid].State, c.services[sid].Target = ha.StateMigrate, n
				s.ServiceChanged(sid)
			}
			if !equal(got, tt.want) {
				t.Errorf("placements %v, want %v", got, tt.want)
			}
		})
	}
}

// test-crs-static1: recovery to the node with the most memory.
func TestStaticRecoveryPrefersMemory(t *testing.T) {
	c := staticCluster(ModeStatic, map[string][2]float64{"node1": {32, 100e9}, "node2": {32, 200e9}, "node3": {32, 300e9}})
	c.nodes["node1"] = ha.NodeFence
	c.stats.services["vm:102"] = ha.ServiceStats{MaxCPU: 2, MaxMem: 4e9}
	c.add("vm:102", ha.StateRecovery, "node1")
	s := c.scheduler(t)
	if got, _ := s.Select("vm:102", PreferBestScore); got != "node3" {
		t.Errorf("recovered to %q, want node3", got)
	}
}

// Missing service stats: error line, nodes compare equal, first name wins.
func TestStaticMissingServiceStats(t *testing.T) {
	c := staticCluster(ModeStatic, map[string][2]float64{"node1": {32, 100e9}, "node2": {32, 200e9}, "node3": {32, 300e9}})
	c.nodes["node1"] = ha.NodeFence
	c.add("vm:102", ha.StateRecovery, "node1")
	s := c.scheduler(t)
	got, logs := s.Select("vm:102", PreferBestScore)
	if got != "node2" {
		t.Errorf("recovered to %q, want node2 (first name)", got)
	}
	if len(logs) != 1 || logs[0].Msg != "unable to score nodes according to static usage for service 'vm:102' - no static usage stats for service 'vm:102'" {
		t.Errorf("logs %v", logs)
	}
}

func TestModeLogs(t *testing.T) {
	s := New(Options{})
	steps := []struct {
		mode string
		want []string
	}{
		{"static", []string{"using scheduler mode 'static'"}},
		{"static", nil},
		{"", []string{"switching scheduler mode from 'static' to 'basic'"}},
		{"dynamic", []string{"switching scheduler mode from 'basic' to 'dynamic'"}},
	}
	for i, st := range steps {
		got := s.UpdateMode(&ha.Datacenter{CRS: ha.CRSOptions{Mode: st.mode}})
		if len(got) != len(st.want) || (len(got) == 1 && got[0].Msg != st.want[0]) {
			t.Errorf("step %d (%q): logs %v, want %v", i, st.mode, got, st.want)
		}
	}
	if got := New(Options{}).UpdateMode(&ha.Datacenter{}); len(got) != 0 {
		t.Errorf("basic on first round logs %v, want nothing", got)
	}
}

func TestFallbackToBasic(t *testing.T) {
	c := staticCluster(ModeStatic, map[string][2]float64{"node1": {32, 100e9}, "node2": {32, 200e9}})
	c.nodes["node3"] = ha.NodeOnline // no stats
	s := New(Options{})
	s.UpdateMode(c.dc)
	logs := s.Prepare(Round{Resources: c.res, NodeStatus: c.nodes, Services: c.services, Datacenter: c.dc, Stats: c.stats})
	want := "fallback to 'basic' scheduler mode, init for 'static' failed - node 'node3' has no maxcpu or maxmem"
	if len(logs) != 1 || logs[0].Msg != want {
		t.Errorf("logs %v, want %q", logs, want)
	}
	c.dc.CRS.Mode = "fancy"
	s.UpdateMode(c.dc)
	logs = s.Prepare(Round{Resources: c.res, NodeStatus: c.nodes, Services: c.services, Datacenter: c.dc, Stats: c.stats})
	if len(logs) != 1 || logs[0].Msg != "got unknown scheduler mode 'fancy', using 'basic'" {
		t.Errorf("logs %v", logs)
	}
}
