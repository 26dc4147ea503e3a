package placement

import (
	"fmt"
	"strings"
	"testing"

	"haxd/ha"
)

// A broken section is dropped with a diagnostic naming line, section, key
// and value; the rest of the file survives.
func TestParseRulesDiagnostics(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		wantIDs  []string
		wantDiag string
	}{
		{"unknown key", "node-affinity: a\n\tresources vm:1\n\tnodes n1\n\tcolour blue\n\nnode-affinity: b\n\tresources vm:2\n\tnodes n1\n",
			[]string{"b"}, "line 4: section 'a': key 'colour': unknown key for type node-affinity, section ignored"},
		{"unknown type", "colocation: a\n\tresources vm:1\n\nnode-affinity: b\n\tresources vm:2\n\tnodes n1\n",
			[]string{"b"}, "line 1: section 'a': unknown rule type \"colocation\", section ignored"},
		{"bad priority", "node-affinity: a\n\tresources vm:1\n\tnodes n1:x\n",
			nil, "line 3: section 'a': key 'nodes': invalid priority \"x\" for node \"n1\": expected a non-negative integer, section ignored"},
		{"bad sid", "resource-affinity: a\n\tresources vm:1,VM2\n\taffinity positive\n",
			nil, "line 2: section 'a': key 'resources': invalid resource \"VM2\""},
		{"bad affinity", "resource-affinity: a\n\tresources vm:1,vm:2\n\taffinity maybe\n",
			nil, "key 'affinity': expected positive or negative, found \"maybe\""},
		{"missing nodes", "node-affinity: a\n\tresources vm:1\n",
			nil, "line 1: section 'a': key 'nodes': missing required key, section ignored"},
		{"duplicate id", "node-affinity: a\n\tresources vm:1\n\tnodes n1\n\nnode-affinity: a\n\tresources vm:2\n\tnodes n2\n",
			[]string{"a"}, "line 5: section 'a': duplicate rule id \"a\", section ignored"},
		{"bad strict", "node-affinity: a\n\tresources vm:1\n\tnodes n1\n\tstrict 2\n",
			nil, "key 'strict': expected 0 or 1, found \"2\""},
		{"bad id", "node-affinity: 1a\n\tresources vm:1\n\tnodes n1\n",
			nil, "invalid rule id \"1a\""},
		// The API refuses the same ids (one validator, ha.CheckConfigID).
		{"dot in id", "node-affinity: a.b\n\tresources vm:1\n\tnodes n1\n",
			nil, "invalid rule id \"a.b\""},
		{"id too long", "node-affinity: " + strings.Repeat("a", 129) + "\n\tresources vm:1\n\tnodes n1\n",
			nil, "is 129 bytes long: at most 128 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, diags := ParseRules([]byte(tt.text))
			if got := fmt.Sprint(rs.sortedIDs()); got != fmt.Sprint(tt.wantIDs) && !(len(tt.wantIDs) == 0 && len(rs.Rules) == 0) {
				t.Errorf("ids %v, want %v", got, tt.wantIDs)
			}
			if len(diags) != 1 || !strings.Contains(diags[0].String(), tt.wantDiag) {
				t.Errorf("diagnostics %v, want one containing %q", diags, tt.wantDiag)
			}
		})
	}
}

func TestParseRulesDisable(t *testing.T) {
	rs, diags := ParseRules([]byte("node-affinity: a\n\tresources vm:1\n\tnodes n1\n\tdisable 0\n\nnode-affinity: b\n\tresources vm:2\n\tnodes n1\n\tdisable\n"))
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	if rs.Rules["a"].Disable || !rs.Rules["b"].Disable {
		t.Errorf("disable 0 must enable, bare disable must disable: a=%v b=%v", rs.Rules["a"].Disable, rs.Rules["b"].Disable)
	}
}

// Groups become node-affinity rules for the services that use them
// (placement.md §2.3), and nofailback overrides the service's failback.
func TestApplyGroups(t *testing.T) {
	groups, diags := ParseGroups([]byte("group: group1\n\tnodes node1\n\trestricted 1\n\ngroup: group2\n\tnodes node2:2,node3\n\tnofailback 1\n\ngroup: unused\n\tnodes node1\n"))
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	res := map[ha.SID]*ha.ResourceConfig{}
	for sid, g := range map[ha.SID]string{"vm:101": "group1", "vm:102": "group2", "vm:103": "group2", "vm:104": "missing", "vm:105": ""} {
		cd := ha.DefaultResourceConfig(sid, "node1")
		cd.Group = g
		res[sid] = &cd
	}
	user, _ := ParseRules([]byte("node-affinity: keep\n\tresources vm:105\n\tnodes node3\n"))
	rs, failback := ApplyGroups(user, groups, res)
	if len(user.Rules) != 1 {
		t.Errorf("ApplyGroups modified its input")
	}
	wantFailback := map[ha.SID]bool{"vm:101": true, "vm:102": false, "vm:103": false, "vm:104": true}
	if fmt.Sprint(failback) != fmt.Sprint(wantFailback) {
		t.Errorf("failback %v, want %v", failback, wantFailback)
	}
	got := CanonicalJSON(rs.JSONValue())
	for _, want := range []string{
		`"ha-group-group1" : {
         "comment" : "Generated from HA group 'group1'.",`,
		`"ha-group-group2" : 2`,
		`"ha-group-group1" : 2`,
		`"vm:102" : 1,
            "vm:103" : 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	if _, ok := rs.Rules["ha-group-unused"]; ok {
		t.Error("unreferenced group produced a rule")
	}
	c := Compile(rs, []string{"node1", "node2", "node3"})
	if fmt.Sprint(c.NodeAffinity["vm:101"]) != "map[node1:0]" || fmt.Sprint(c.NodeAffinity["vm:102"]) != "map[node1:-1 node2:2 node3:0]" {
		t.Errorf("compiled %v", c.NodeAffinity)
	}
}

// A group id the API would refuse is refused by the parser with the same
// validator's message.
func TestParseGroupsRefusesInvalidIDs(t *testing.T) {
	for _, id := range []string{"g.1", "1g", strings.Repeat("g", 129)} {
		groups, diags := ParseGroups([]byte("group: " + id + "\n\tnodes n1\n"))
		want := ha.CheckConfigID("group", id)
		if len(groups) != 0 || len(diags) != 1 || want == nil || diags[0].Msg != want.Error() {
			t.Errorf("group %q: groups %v diags %v, want one diagnostic %v", id, groups, diags, want)
		}
	}
}
