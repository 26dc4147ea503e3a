package placement

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"haxd/ha"
)

const gib = 1 << 30

// fakeStats is a StatsSource backed by maps.
type fakeStats struct {
	static, dynamic map[string]ha.NodeStats
	services        map[ha.SID]ha.ServiceStats
}

func (f *fakeStats) StaticNodeStats() (map[string]ha.NodeStats, error)  { return f.static, nil }
func (f *fakeStats) DynamicNodeStats() (map[string]ha.NodeStats, error) { return f.dynamic, nil }
func (f *fakeStats) ServiceStats(sid ha.SID) (ha.ServiceStats, bool) {
	st, ok := f.services[sid]
	return st, ok
}

// cluster is a compact test fixture: node states, services "sid@node" in
// state started unless given, a rules text and a mode.
type cluster struct {
	nodes    map[string]ha.NodeState
	services map[ha.SID]*ha.ServiceStatus
	res      map[ha.SID]*ha.ResourceConfig
	rules    string
	groups   string
	dc       *ha.Datacenter
	stats    *fakeStats
}

func newCluster(online ...string) *cluster {
	c := &cluster{nodes: map[string]ha.NodeState{}, services: map[ha.SID]*ha.ServiceStatus{},
		res: map[ha.SID]*ha.ResourceConfig{}, dc: &ha.Datacenter{},
		stats: &fakeStats{static: map[string]ha.NodeStats{}, dynamic: map[string]ha.NodeStats{}, services: map[ha.SID]ha.ServiceStats{}}}
	for _, n := range online {
		c.nodes[n] = ha.NodeOnline
	}
	return c
}

// add adds a service in state st on node (target optional).
func (c *cluster) add(sid ha.SID, st ha.ServiceState, node string, target ...string) *ha.ServiceStatus {
	sd := &ha.ServiceStatus{State: st, Node: node}
	if len(target) > 0 {
		sd.Target = target[0]
	}
	c.services[sid] = sd
	cd := ha.DefaultResourceConfig(sid, node)
	c.res[sid] = &cd
	return sd
}

// started adds n filler services named prefix:i started on node.
func (c *cluster) fill(node string, n int) {
	for i := range n {
		c.add(ha.SID(fmt.Sprintf("ct:%s-%d", node, i)), ha.StateStarted, node)
	}
}

func (c *cluster) scheduler(t testing.TB) *Scheduler {
	t.Helper()
	s := New(Options{})
	s.UpdateMode(c.dc)
	logs := s.Prepare(Round{Resources: c.res, Rules: []byte(c.rules), Groups: []byte(c.groups), Datacenter: c.dc,
		NodeStatus: c.nodes, Services: c.services, Stats: c.stats})
	for _, l := range logs {
		t.Logf("prepare: %s", l.Msg)
	}
	return s
}

func sortedSIDs[V any](m map[ha.SID]V) []ha.SID { return slices.Sorted(maps.Keys(m)) }
