package placement

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"haxd/ha"
)

// selectReference is placement.md §6.2 written out step by step with no
// shortcut and no shared slices: the oracle that Select, with its quick
// path for a service that stays put, must agree with.
func selectReference(s *Scheduler, sid ha.SID, pref Preference) (string, []LogLine) {
	sd := s.services[sid]
	if sd == nil || s.usage == nil {
		return "", nil
	}
	online, isOnline := s.usage.online, s.usage.isOnline
	// Step 2: allowed nodes and the highest priority class.
	var allowed, pri []string
	if na, ok := s.compiled.NodeAffinity[sid]; !ok {
		allowed, pri = slices.Clone(online), slices.Clone(online)
	} else {
		best := 0
		for _, n := range online {
			p, listed := na[n]
			if !listed {
				continue
			}
			if len(allowed) == 0 || p > best {
				best = p
			}
			allowed = append(allowed, n)
		}
		for _, n := range allowed {
			if na[n] == best {
				pri = append(pri, n)
			}
		}
	}
	if len(pri) == 0 {
		return "", nil
	}
	// Step 3: partners.
	together, separate := map[string]int{}, map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(s.compiled.Positive[sid])) {
		cur, tgt := usedNodes(s.services[p], isOnline)
		if tgt != "" {
			together[tgt]++
		} else if cur != "" {
			together[cur]++
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s.compiled.Negative[sid])) {
		cur, tgt := usedNodes(s.services[p], isOnline)
		if cur != "" {
			separate[cur] = true
		}
		if tgt != "" {
			separate[tgt] = true
		}
	}
	current := sd.Node
	if pref == PreferNone && !s.Failback(sid) && slices.Contains(allowed, current) &&
		(together[current] > 0 || !separate[current]) {
		return current, nil
	}
	if pref == PreferTryNext {
		pri = slices.DeleteFunc(pri, func(n string) bool { return slices.Contains(sd.FailedNodes, n) })
	}
	pri = slices.DeleteFunc(pri, func(n string) bool { return separate[n] })
	bestNode, bestCount := "", 0
	for _, n := range pri {
		if c := together[n]; c > bestCount {
			bestNode, bestCount = n, c
		}
	}
	if bestNode != "" {
		pri = []string{bestNode}
	}
	if sd.MaintenanceNode != "" && slices.Contains(pri, sd.MaintenanceNode) {
		return sd.MaintenanceNode, nil
	}
	if pref == PreferNone && slices.Contains(pri, current) {
		return current, nil
	}
	var logs []LogLine
	scores, err := s.usage.scores(sid, s.stats)
	if err != nil {
		logs = append(logs, errLine("unable to score nodes according to %s usage for service '%s' - %v", s.usage.mode, sid, err))
		scores = map[string]float64{}
	}
	slices.SortStableFunc(pri, func(a, b string) int {
		if scores[a] < scores[b] {
			return -1
		}
		if scores[a] > scores[b] {
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(pri) == 0 {
		return "", logs
	}
	if pref == PreferTryNext {
		if i := slices.Index(pri, current); i >= 0 && i+1 < len(pri) {
			return pri[i+1], logs
		}
	}
	return pri[0], logs
}

// Select agrees with the step-by-step §6.2 on random clusters (all modes,
// random strict and non-strict rules, random maintenance and failback), for
// every service and preference, and leaves the online node list untouched.
func TestSelectMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	quick := 0
	for iter := range 3000 {
		mode := []string{ModeBasic, ModeStatic, ModeDynamic}[iter%3]
		c := randomCluster(r, mode)
		if r.IntN(2) == 0 {
			c.rules = "" // many services without any rule: the quick path
		}
		s := c.scheduler(t)
		online := slices.Clone(s.usage.online)
		for _, sid := range sortedSIDs(c.services) {
			for _, pref := range []Preference{PreferNone, PreferBestScore, PreferTryNext} {
				want, wantLogs := selectReference(s, sid, pref)
				got, gotLogs := s.Select(sid, pref)
				if got != want || !reflect.DeepEqual(gotLogs, wantLogs) {
					t.Fatalf("iter %d %s %s: Select = %q %v, reference %q %v\nrules:\n%s", iter, sid, pref, got, gotLogs, want, wantLogs, c.rules)
				}
				if pref == PreferNone && got == c.services[sid].Node {
					quick++
				}
			}
		}
		if !slices.Equal(s.usage.online, online) {
			t.Fatalf("iter %d: online nodes changed from %v to %v", iter, online, s.usage.online)
		}
	}
	if quick < 1000 {
		t.Errorf("only %d services stayed put: the quick path is barely exercised", quick)
	}
}

// freshUsage builds the usage model from scratch, as a round did before
// incremental updates existed.
func freshUsage(t *testing.T, s *Scheduler) *usage {
	t.Helper()
	u, err := newUsage(ModeBasic, s.OnlineNodes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sid := range sortedSIDs(s.services) {
		u.add(sid, s.services[sid], nil)
	}
	return u
}

// nonZero drops the zero counts: a node whose last service left keeps a
// zero entry, which reads the same as none.
func nonZero(count map[string]int) map[string]int {
	out := map[string]int{}
	for n, c := range count {
		if c != 0 {
			out[n] = c
		}
	}
	return out
}

// In basic mode Prepare updates last round's usage model in place when the
// online nodes are the same; the result equals a rebuild after any change
// of the service table made without ServiceChanged (added, removed,
// moved, state, target or running changed).
func TestPrepareSyncsBasicUsage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for iter := range 500 {
		c := randomCluster(r, ModeBasic)
		s := c.scheduler(t)
		var nodes []string
		for n := range c.nodes {
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		for round := range 5 {
			prev := s.usage
			for _, sid := range sortedSIDs(c.services) {
				sd := c.services[sid]
				switch r.IntN(8) {
				case 0:
					delete(c.services, sid)
				case 1:
					sd.State = allStates[r.IntN(len(allStates))]
				case 2:
					sd.Node = nodes[r.IntN(len(nodes))]
				case 3:
					sd.Target = nodes[r.IntN(len(nodes))]
				case 4:
					sd.Running = !sd.Running
				}
			}
			for i := range r.IntN(3) {
				sid := ha.SID(fmt.Sprintf("ct:%d-%d", round, i))
				c.add(sid, allStates[r.IntN(len(allStates))], nodes[r.IntN(len(nodes))], nodes[r.IntN(len(nodes))])
			}
			s.Prepare(Round{Resources: c.res, Rules: []byte(c.rules), Datacenter: c.dc,
				NodeStatus: c.nodes, Services: c.services, Stats: c.stats})
			if s.usage != prev {
				t.Fatalf("iter %d round %d: usage was rebuilt, not updated", iter, round)
			}
			want := freshUsage(t, s)
			if !reflect.DeepEqual(nonZero(s.usage.count), nonZero(want.count)) || !reflect.DeepEqual(s.usage.attached, want.attached) ||
				!reflect.DeepEqual(s.usage.services, want.services) || !reflect.DeepEqual(s.usage.loads(true), want.loads(true)) {
				t.Fatalf("iter %d round %d: updated usage\n%+v\ndiffers from rebuilt\n%+v", iter, round, s.usage, want)
			}
		}
	}
}

// Prepare rebuilds the usage model when the online nodes or the mode
// change, and never carries a static or dynamic model over.
func TestPrepareRebuildsUsage(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *cluster)
		rebuilt bool
	}{
		{"nothing changed", func(*cluster) {}, false},
		{"service moved", func(c *cluster) { c.services["vm:1"].Node = "node2" }, false},
		{"node went offline", func(c *cluster) { c.nodes["node3"] = ha.NodeUnknown }, true},
		{"node came online", func(c *cluster) { c.nodes["node4"] = ha.NodeOnline }, true},
		{"static mode", func(c *cluster) { c.dc.CRS.Mode = ModeStatic }, true},
		{"unknown mode, used as basic", func(c *cluster) { c.dc.CRS.Mode = "fancy" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster("node1", "node2", "node3")
			c.nodes["node4"] = ha.NodeMaintenance
			for _, n := range []string{"node1", "node2", "node3", "node4"} {
				c.stats.static[n] = ha.NodeStats{MaxCPU: 8, MaxMem: 16 * gib}
			}
			c.add("vm:1", ha.StateStarted, "node1")
			c.add("vm:2", ha.StateStarted, "node2")
			s := c.scheduler(t)
			prev := s.usage
			tt.change(c)
			s.UpdateMode(c.dc)
			s.Prepare(Round{Resources: c.res, Datacenter: c.dc, NodeStatus: c.nodes, Services: c.services, Stats: c.stats})
			if got := s.usage != prev; got != tt.rebuilt {
				t.Errorf("rebuilt = %v, want %v", got, tt.rebuilt)
			}
			want := freshUsage(t, s)
			if s.usage.mode == ModeBasic && !reflect.DeepEqual(nonZero(s.usage.count), nonZero(want.count)) {
				t.Errorf("counts %v, want %v", s.usage.count, want.count)
			}
		})
	}
}

// Prepare recompiles the rules exactly when the rules or groups text, the
// known nodes or a resource's configuration other than its location
// changed.
func TestPrepareRecompilesOnInputChange(t *testing.T) {
	tests := []struct {
		name       string
		change     func(c *cluster)
		recompiled bool
	}{
		{"nothing changed", func(*cluster) {}, false},
		{"same rules, new buffer", func(c *cluster) { c.rules = strings.Clone(c.rules) }, false},
		{"location changed", func(c *cluster) { c.res["vm:1"].Node = "node2" }, false},
		{"service state changed", func(c *cluster) { c.services["vm:1"].State = ha.StateStopped }, false},
		{"known node state changed", func(c *cluster) { c.nodes["node3"] = ha.NodeUnknown }, false},
		{"rules changed", func(c *cluster) { c.rules += "\n" }, true},
		{"groups changed", func(c *cluster) { c.groups = "group: g1\n\tnodes node1\n" }, true},
		{"node added", func(c *cluster) { c.nodes["node4"] = ha.NodeUnknown }, true},
		{"node removed", func(c *cluster) { delete(c.nodes, "node3") }, true},
		{"requested state", func(c *cluster) { c.res["vm:1"].State = ha.RequestStopped }, true},
		{"max_restart", func(c *cluster) { c.res["vm:1"].MaxRestart++ }, true},
		{"max_relocate", func(c *cluster) { c.res["vm:1"].MaxRelocate++ }, true},
		{"failback", func(c *cluster) { c.res["vm:1"].Failback = !c.res["vm:1"].Failback }, true},
		{"group", func(c *cluster) { c.res["vm:1"].Group = "g1" }, true},
		{"comment", func(c *cluster) { c.res["vm:1"].Comment = "x" }, true},
		{"resource added", func(c *cluster) { c.add("vm:3", ha.StateStarted, "node1") }, true},
		{"resource removed", func(c *cluster) { delete(c.res, "vm:2") }, true},
		{"resource replaced", func(c *cluster) {
			delete(c.res, "vm:2")
			cd := ha.DefaultResourceConfig("vm:3", "node1")
			c.res["vm:3"] = &cd
		}, true},
		{"nil resource entry added", func(c *cluster) { c.res["vm:9"] = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster("node1", "node2", "node3")
			c.add("vm:1", ha.StateStarted, "node1")
			c.add("vm:2", ha.StateStarted, "node2")
			c.rules = "node-affinity: pin\n\tresources vm:1\n\tnodes node1:2,node2\n"
			s := c.scheduler(t)
			prev := s.Rules()
			tt.change(c)
			s.Prepare(Round{Resources: c.res, Rules: []byte(c.rules), Groups: []byte(c.groups), Datacenter: c.dc,
				NodeStatus: c.nodes, Services: c.services, Stats: c.stats})
			if got := s.Rules() != prev; got != tt.recompiled {
				t.Errorf("recompiled = %v, want %v", got, tt.recompiled)
			}
		})
	}
}

// BenchmarkRound2000Services50Nodes is one round of the scheduler with no
// rules: Prepare, then a preference-none selection for every service, as
// the manager does for 2,000 started services on 50 nodes. The basic
// sub-benchmark is the pure basic scheduler mode.
func BenchmarkRound2000Services50Nodes(b *testing.B) {
	for _, mode := range []string{ModeBasic, ModeStatic, ModeDynamic} {
		b.Run(mode, func(b *testing.B) {
			c, s := bigCluster(b, mode)
			c.rules = ""
			sids := sortedSIDs(c.services)
			round := Round{Resources: c.res, Datacenter: c.dc, NodeStatus: c.nodes, Services: c.services, Stats: c.stats}
			s.Prepare(round)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s.Prepare(round)
				for _, sid := range sids {
					if n, _ := s.Select(sid, PreferNone); n == "" {
						b.Fatal("no node")
					}
				}
			}
		})
	}
}

// sortedServices notices a changed set of SIDs of the same size.
func TestSortedServices(t *testing.T) {
	c := newCluster("node1")
	for _, sid := range []ha.SID{"vm:3", "vm:1", "vm:2"} {
		c.add(sid, ha.StateStarted, "node1")
	}
	s := c.scheduler(t)
	steps := []struct {
		name   string
		change func()
		want   []ha.SID
	}{
		{"initial", func() {}, []ha.SID{"vm:1", "vm:2", "vm:3"}},
		{"unchanged", func() {}, []ha.SID{"vm:1", "vm:2", "vm:3"}},
		{"one replaced", func() {
			delete(c.services, "vm:2")
			c.add("vm:0", ha.StateStarted, "node1")
		}, []ha.SID{"vm:0", "vm:1", "vm:3"}},
		{"one added", func() { c.add("vm:4", ha.StateStarted, "node1") }, []ha.SID{"vm:0", "vm:1", "vm:3", "vm:4"}},
		{"one removed", func() { delete(c.services, "vm:0") }, []ha.SID{"vm:1", "vm:3", "vm:4"}},
		{"all removed", func() { clear(c.services) }, nil},
	}
	for _, st := range steps {
		st.change()
		if got := s.sortedServices(); !slices.Equal(got, st.want) {
			t.Errorf("%s: sortedServices = %v, want %v", st.name, got, st.want)
		}
	}
}
