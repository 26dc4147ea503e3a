package placement

import (
	"strings"
	"testing"

	"haxd/ha"
)

func TestApplyRuleChange(t *testing.T) {
	base, _ := ParseRules([]byte("resource-affinity: apart\n\tresources vm:1,vm:2\n\taffinity negative\n"))
	res := map[ha.SID]*ha.ResourceConfig{}
	for _, sid := range []ha.SID{"vm:1", "vm:2", "vm:3"} {
		cd := ha.DefaultResourceConfig(sid, "node1")
		res[sid] = &cd
	}
	nodes := []string{"node1", "node2", "node3"}
	na := func(id string, sids []ha.SID, n map[string]int) *Rule {
		r := &Rule{ID: id, Type: TypeNodeAffinity, Resources: map[ha.SID]bool{}, Nodes: n}
		for _, s := range sids {
			r.Resources[s] = true
		}
		return r
	}
	tests := []struct {
		name    string
		rule    *Rule
		create  bool
		groups  map[string]*Group
		wantErr string
	}{
		{"valid create", na("pin", []ha.SID{"vm:3"}, map[string]int{"node1": 0}), true, nil, ""},
		{"groups not migrated", na("pin", []ha.SID{"vm:3"}, map[string]int{"node1": 0}), true, map[string]*Group{"g": {}}, "cannot create ha rule: ha groups have not been migrated yet"},
		{"duplicate", na("apart", []ha.SID{"vm:3"}, map[string]int{"node1": 0}), true, nil, "HA rule 'apart' already defined"},
		{"unmanaged", na("pin", []ha.SID{"vm:9", "vm:3", "vm:8"}, map[string]int{"node1": 0}), true, nil, "resources: cannot use unmanaged resource(s) vm:8, vm:9."},
		{"unknown node", na("pin", []ha.SID{"vm:3"}, map[string]int{"node7": 0, "node1": 0}), true, nil, "nodes: cannot use non-existent node(s) node7."},
		{"own conflict refuses", na("pin", []ha.SID{"vm:1", "vm:2"}, map[string]int{"node1": 0}), true, nil,
			"Rule 'pin' is invalid: at least one resource is in a negative resource affinity rule and this rule would restrict these to less nodes than available to the resources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ApplyRuleChange(base, tt.rule, tt.create, res, tt.groups, nodes)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if out.Rules[tt.rule.ID].Order != 2 || len(base.Rules) != 1 {
					t.Errorf("order %d, base changed: %v", out.Rules[tt.rule.ID].Order, len(base.Rules) != 1)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// Format writes a config that parses back to the same rules.
func TestFormatRoundTrip(t *testing.T) {
	raw := "node-affinity: a\n\tcomment hello world\n\tnodes node1:2,node2\n\tresources vm:1,vm:2\n\tstrict 1\n\n" +
		"resource-affinity: b\n\taffinity positive\n\tdisable 1\n\tresources vm:3,vm:4\n"
	rs, diags := ParseRules([]byte(raw))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if got := string(rs.Format()); got != raw {
		t.Errorf("Format:\n%s\nwant\n%s", got, raw)
	}
}
