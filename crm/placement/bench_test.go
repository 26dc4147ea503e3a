package placement

import (
	"fmt"
	"testing"

	"haxd/ha"
)

// bigCluster: 50 nodes, 2,000 started services spread round-robin, some
// rules, static or dynamic stats.
func bigCluster(b *testing.B, mode string) (*cluster, *Scheduler) {
	c := newCluster()
	c.dc.CRS.Mode = mode
	c.dc.CRS.AutoRebalance = true
	c.dc.CRS.AutoRebalanceHoldDuration = 0
	c.dc.CRS.Set = map[string]bool{"ha-auto-rebalance-hold-duration": true}
	var nodes []string
	for i := range 50 {
		n := fmt.Sprintf("node%02d", i)
		nodes = append(nodes, n)
		c.nodes[n] = ha.NodeOnline
		c.stats.static[n] = ha.NodeStats{MaxCPU: 64, MaxMem: 256 * gib}
		c.stats.dynamic[n] = ha.NodeStats{MaxCPU: 64, MaxMem: 256 * gib, CPU: float64(i%7) * 3, Mem: float64(i%5) * 20 * gib}
	}
	for i := range 2000 {
		sid := ha.SID(fmt.Sprintf("vm:%d", 1000+i))
		sd := c.add(sid, ha.StateStarted, nodes[(i*7)%50])
		sd.Running = true
		c.stats.services[sid] = ha.ServiceStats{MaxCPU: float64(1 + i%4), MaxMem: float64(1+i%8) * gib, CPU: 0.5, Mem: gib}
	}
	c.rules = "node-affinity: pin\n\tresources vm:1000,vm:1001\n\tnodes node00:2,node01:1\n\n" +
		"resource-affinity: apart\n\tresources vm:1002,vm:1003,vm:1004\n\taffinity negative\n\n" +
		"resource-affinity: together\n\tresources vm:1005,vm:1006\n\taffinity positive\n"
	return c, c.scheduler(b)
}

// One placement decision (best-score, as for a recovery) in a cluster of
// 2,000 services on 50 nodes.
func BenchmarkSelect2000Services50Nodes(b *testing.B) {
	for _, mode := range []string{ModeBasic, ModeStatic, ModeDynamic} {
		b.Run(mode, func(b *testing.B) {
			_, s := bigCluster(b, mode)
			b.ResetTimer()
			for b.Loop() {
				if n, _ := s.Select("vm:1500", PreferBestScore); n == "" {
					b.Fatal("no node")
				}
			}
		})
	}
}

// A full auto-rebalance pass (candidates, hypothetical imbalance, choice)
// over 2,000 services on 50 nodes.
func BenchmarkAutoRebalance2000Services50Nodes(b *testing.B) {
	for _, method := range []string{MethodBruteforce, MethodTOPSIS} {
		b.Run(method, func(b *testing.B) {
			c, s := bigCluster(b, ModeDynamic)
			c.dc.CRS.AutoRebalanceMethod = method
			s.UpdateMode(c.dc)
			s.Prepare(Round{Resources: c.res, NodeStatus: c.nodes, Services: c.services, Datacenter: c.dc, Stats: c.stats})
			b.ResetTimer()
			for b.Loop() {
				s.AutoRebalance()
			}
		})
	}
}
