package placement

import (
	"os"
	"path/filepath"
	"testing"
)

// seedRules adds every rules_cfgs/*.cfg as a fuzz seed.
func seedRules(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(pveTests, "rules_cfgs", "*.cfg"))
	for _, p := range files {
		if raw, err := os.ReadFile(p); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte("node-affinity: a\n\tresources vm:1\n\tnodes n1:1,n2\n\tstrict 1\n"))
	f.Add([]byte("group: g\n\tnodes node2:2,node3\n\tnofailback 1\n\trestricted 1\n"))
}

// The rules pipeline never panics, its output does not depend on the order
// of the node list, and no rule with a feasibility error survives.
func FuzzRules(f *testing.F) {
	seedRules(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep := CheckRulesFile(raw, []string{"node1", "node2", "node3"})
		if rep.String() != CheckRulesFile(raw, []string{"node3", "node2", "node1"}).String() {
			t.Fatal("output depends on node order or is not deterministic")
		}
		parsed, _ := ParseRules(raw)
		for id := range CheckRules(parsed, []string{"node1", "node2", "node3"}) {
			if _, ok := rep.Config.Rules[id]; ok {
				t.Fatalf("rule %q has errors but survived", id)
			}
		}
		for id, r := range rep.Config.Rules {
			if id != r.ID || len(r.Resources) == 0 {
				t.Fatalf("rule %q malformed: %+v", id, r)
			}
		}
	})
}

// The groups parser never panics and keeps only well-formed groups.
func FuzzGroups(f *testing.F) {
	seedRules(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		groups, _ := ParseGroups(raw)
		for id, g := range groups {
			if id != g.ID || len(g.Nodes) == 0 {
				t.Fatalf("group %q malformed: %+v", id, g)
			}
			for n, p := range g.Nodes {
				if !isNodeName(n) || p < 0 {
					t.Fatalf("group %q: bad node %q:%d", id, n, p)
				}
			}
		}
	})
}
