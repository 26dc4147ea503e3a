package placement

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"haxd/ha"
)

// RuleChangeError is a refused rule create/update (placement.md §5.5).
type RuleChangeError struct {
	// RuleID is the rule concerned.
	RuleID string
	// Property is the offending property, "" when the whole request is refused.
	Property string
	// Msg is the error text.
	Msg string
}

// Error renders "rule '<id>': <property>: <msg>".
func (e *RuleChangeError) Error() string {
	if e.Property == "" {
		return fmt.Sprintf("rule '%s': %s", e.RuleID, e.Msg)
	}
	return fmt.Sprintf("rule '%s': %s: %s", e.RuleID, e.Property, e.Msg)
}

// ApplyRuleChange validates creating (create true) or replacing the rule r
// in rs the way PVE's rule API does (placement.md §5.5) and returns the new
// rule set; rs is not modified. Only r's own feasibility errors refuse the
// change, errors of other rules do not. Legacy groups still present refuse
// every change. r.Order is assigned on create.
func ApplyRuleChange(rs *RuleSet, r *Rule, create bool, resources map[ha.SID]*ha.ResourceConfig,
	groups map[string]*Group, knownNodes []string) (*RuleSet, error) {
	verb := "update"
	if create {
		verb = "create"
	}
	fail := func(prop, format string, args ...any) error {
		return &RuleChangeError{RuleID: r.ID, Property: prop, Msg: fmt.Sprintf(format, args...)}
	}
	if len(groups) > 0 {
		return nil, fail("", "cannot %s ha rule: ha groups have not been migrated yet", verb)
	}
	if !isConfigID(r.ID) {
		return nil, fail("", "invalid rule id: expected a letter, then letters, digits, '-' or '_'")
	}
	_, exists := rs.Rules[r.ID]
	if create && exists {
		return nil, fail("", "HA rule '%s' already defined", r.ID)
	}
	if !create && !exists {
		return nil, fail("", "no such HA rule '%s'", r.ID)
	}
	if len(r.Resources) == 0 {
		return nil, fail("resources", "no resources were specified")
	}
	var unmanaged []string
	for _, sid := range r.SortedResources() {
		if _, ok := resources[sid]; !ok {
			unmanaged = append(unmanaged, string(sid))
		}
	}
	if len(unmanaged) > 0 {
		return nil, fail("resources", "cannot use unmanaged resource(s) %s.", strings.Join(unmanaged, ", "))
	}
	if r.Type == TypeNodeAffinity {
		if len(r.Nodes) == 0 {
			return nil, fail("nodes", "no nodes were specified")
		}
		var missing []string
		for _, n := range slices.Sorted(maps.Keys(r.Nodes)) {
			if !slices.Contains(knownNodes, n) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return nil, fail("nodes", "cannot use non-existent node(s) %s.", strings.Join(missing, ", "))
		}
	}
	out := rs.Clone()
	nr := r.clone()
	if create {
		nr.Order = out.minOrder() + 1
	} else {
		nr.Order = rs.Rules[r.ID].Order
	}
	out.Rules[nr.ID] = nr
	if errs := CheckRules(out, knownNodes)[nr.ID]; len(errs) > 0 {
		return nil, fail("resources", "Rule '%s' is invalid: %s", nr.ID, strings.Join(errs, ", "))
	}
	return out, nil
}

// Format renders rs as a rules config (section config text) in order-number
// order, then id. Derived rules (ids starting with '_') are skipped: haxd
// never writes them to the user's config. `disable 0` is never written.
func (rs *RuleSet) Format() []byte {
	rules := make([]*Rule, 0, len(rs.Rules))
	for _, r := range rs.Rules {
		if !strings.HasPrefix(r.ID, "_") {
			rules = append(rules, r)
		}
	}
	slices.SortFunc(rules, func(a, b *Rule) int {
		if a.Order != b.Order {
			return a.Order - b.Order
		}
		return strings.Compare(a.ID, b.ID)
	})
	var b strings.Builder
	for i, r := range rules {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s\n", r.Type, r.ID)
		if r.Type == TypeResourceAffinity {
			fmt.Fprintf(&b, "\taffinity %s\n", r.Affinity)
		}
		if r.Comment != "" {
			fmt.Fprintf(&b, "\tcomment %s\n", r.Comment)
		}
		if r.Disable {
			b.WriteString("\tdisable 1\n")
		}
		if r.Type == TypeNodeAffinity {
			var nodes []string
			for _, n := range slices.Sorted(maps.Keys(r.Nodes)) {
				if p := r.Nodes[n]; p != 0 {
					n = fmt.Sprintf("%s:%d", n, p)
				}
				nodes = append(nodes, n)
			}
			fmt.Fprintf(&b, "\tnodes %s\n", strings.Join(nodes, ","))
		}
		sids := make([]string, 0, len(r.Resources))
		for _, sid := range r.SortedResources() {
			sids = append(sids, string(sid))
		}
		fmt.Fprintf(&b, "\tresources %s\n", strings.Join(sids, ","))
		if r.Type == TypeNodeAffinity && r.StrictSet {
			fmt.Fprintf(&b, "\tstrict %d\n", boolInt(r.Strict))
		}
	}
	return []byte(b.String())
}
