package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"haxd/ha"
)

var allStates = []ha.ServiceState{ha.StateStarted, ha.StateStarted, ha.StateStarted, ha.StateRequestStart,
	ha.StateRequestStartBalance, ha.StateStopped, ha.StateRequestStop, ha.StateMigrate, ha.StateRelocate,
	ha.StateFence, ha.StateRecovery, ha.StateFreeze, ha.StateError}

var nodeStates = []ha.NodeState{ha.NodeOnline, ha.NodeOnline, ha.NodeOnline, ha.NodeMaintenance, ha.NodeUnknown, ha.NodeFence}

// randomCluster builds a random cluster with random strict rules.
func randomCluster(r *rand.Rand, mode string) *cluster {
	c := newCluster()
	c.dc.CRS.Mode = mode
	nn := 2 + r.IntN(5)
	var nodes []string
	for i := range nn {
		n := fmt.Sprintf("node%d", i+1)
		nodes = append(nodes, n)
		c.nodes[n] = nodeStates[r.IntN(len(nodeStates))]
		c.stats.static[n] = ha.NodeStats{MaxCPU: float64(8 + r.IntN(56)), MaxMem: float64(16+r.IntN(240)) * gib}
		c.stats.dynamic[n] = ha.NodeStats{MaxCPU: c.stats.static[n].MaxCPU, MaxMem: c.stats.static[n].MaxMem,
			CPU: r.Float64() * 4, Mem: r.Float64() * 8 * gib}
	}
	ns := 3 + r.IntN(12)
	var sids []ha.SID
	for i := range ns {
		sid := ha.SID(fmt.Sprintf("vm:%d", 100+i))
		sids = append(sids, sid)
		st := allStates[r.IntN(len(allStates))]
		sd := c.add(sid, st, nodes[r.IntN(nn)])
		if st == ha.StateMigrate || st == ha.StateRelocate || st == ha.StateRequestStartBalance {
			sd.Target = nodes[r.IntN(nn)]
		}
		sd.Running = r.IntN(2) == 0
		if r.IntN(4) == 0 {
			sd.FailedNodes = []string{nodes[r.IntN(nn)]}
		}
		if r.IntN(6) == 0 {
			sd.MaintenanceNode = nodes[r.IntN(nn)]
		}
		c.res[sid].Failback = r.IntN(3) != 0
		if r.IntN(8) != 0 {
			c.stats.services[sid] = ha.ServiceStats{MaxCPU: float64(r.IntN(8)), MaxMem: float64(1+r.IntN(16)) * gib, CPU: r.Float64() * 2, Mem: r.Float64() * 4 * gib}
		}
	}
	pick := func(k int) string {
		p := r.Perm(len(sids))[:min(k, len(sids))]
		var out []string
		for _, i := range p {
			out = append(out, string(sids[i]))
		}
		return strings.Join(out, ",")
	}
	var b strings.Builder
	for i := range r.IntN(4) {
		var ns []string
		for _, i := range r.Perm(nn)[:1+r.IntN(nn)] {
			ns = append(ns, fmt.Sprintf("%s:%d", nodes[i], r.IntN(3)))
		}
		fmt.Fprintf(&b, "node-affinity: na%d\n\tresources %s\n\tnodes %s\n\tstrict %d\n\n", i, pick(1+r.IntN(3)), strings.Join(ns, ","), r.IntN(2))
	}
	for i := range r.IntN(4) {
		aff := []string{"positive", "negative"}[r.IntN(2)]
		fmt.Fprintf(&b, "resource-affinity: ra%d\n\tresources %s\n\taffinity %s\n\n", i, pick(2+r.IntN(3)), aff)
	}
	c.rules = b.String()
	return c
}

// Properties of every selection on random clusters:
//   - the result is online (or "");
//   - a strict node-affinity rule never places outside its listed nodes;
//   - a strict negative rule is never violated by a placement (a node other
//     than staying put under preference none): the result is never a node
//     where a negative partner is or is heading.
func TestSelectProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for iter := range 3000 {
		mode := []string{ModeBasic, ModeStatic, ModeDynamic}[iter%3]
		c := randomCluster(r, mode)
		s := c.scheduler(t)
		comp := s.Compiled()
		strictNodes := map[ha.SID][]string{}
		for _, rule := range s.Rules().Rules {
			if rule.Type == TypeNodeAffinity && rule.Strict && !rule.Disable {
				for sid := range rule.Resources {
					for n := range rule.Nodes {
						strictNodes[sid] = append(strictNodes[sid], n)
					}
				}
			}
		}
		for _, sid := range sortedSIDs(c.services) {
			for _, pref := range []Preference{PreferNone, PreferBestScore, PreferTryNext} {
				got, _ := s.Select(sid, pref)
				if got == "" {
					continue
				}
				checked++
				ctx := fmt.Sprintf("iter %d %s %s -> %s\nrules:\n%s", iter, sid, pref, got, c.rules)
				if c.nodes[got] != ha.NodeOnline {
					t.Fatalf("%s: not online", ctx)
				}
				if allowed, ok := strictNodes[sid]; ok && !slices.Contains(allowed, got) {
					t.Fatalf("%s: outside strict nodes %v", ctx, allowed)
				}
				if pref == PreferNone && got == c.services[sid].Node {
					continue
				}
				for p := range comp.Negative[sid] {
					cur, tgt := usedNodes(c.services[p], s.usage.isOnline)
					if got == cur || got == tgt {
						t.Fatalf("%s: negative partner %s on %s/%s", ctx, p, cur, tgt)
					}
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d placements checked", checked)
	}
}
