package placement

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"haxd/ha"
)

// Rule types.
const (
	TypeNodeAffinity     = "node-affinity"
	TypeResourceAffinity = "resource-affinity"
)

// Resource affinities.
const (
	AffinityPositive = "positive"
	AffinityNegative = "negative"
)

// maxComment is the longest comment accepted, in bytes.
const maxComment = 4096

// Rule is one HA rule (placement.md §3, §4), as parsed or as derived by the
// transforms of §5.3.
type Rule struct {
	// ID is the rule id.
	ID string
	// Type is TypeNodeAffinity or TypeResourceAffinity.
	Type string
	// Order is the rule's position number (1-based file position for parsed
	// rules; see placement.md §5.3 for derived rules).
	Order int
	// Resources are the SIDs the rule applies to.
	Resources map[ha.SID]bool
	// Nodes maps each listed node to its priority (node-affinity only).
	Nodes map[string]int
	// Strict is the strict flag (node-affinity only); StrictSet records
	// whether the key was written at all.
	Strict, StrictSet bool
	// Affinity is AffinityPositive or AffinityNegative (resource-affinity only).
	Affinity string
	// Disable marks the rule as ignored.
	Disable bool
	// Comment is free text.
	Comment string
}

// SortedResources returns the rule's SIDs in ascending order.
func (r *Rule) SortedResources() []ha.SID { return slices.Sorted(maps.Keys(r.Resources)) }

// clone returns a deep copy of r.
func (r *Rule) clone() *Rule {
	c := *r
	c.Resources = maps.Clone(r.Resources)
	c.Nodes = maps.Clone(r.Nodes)
	return &c
}

// RuleSet is a rules config: its rules keyed by id, and the SHA-1 digest of
// the raw text it was parsed from.
type RuleSet struct {
	// Digest is the hex SHA-1 of the raw config bytes.
	Digest string
	// Rules maps the rule id to the rule.
	Rules map[string]*Rule
}

// Clone returns a deep copy of rs.
func (rs *RuleSet) Clone() *RuleSet {
	c := &RuleSet{Digest: rs.Digest, Rules: make(map[string]*Rule, len(rs.Rules))}
	for id, r := range rs.Rules {
		c.Rules[id] = r.clone()
	}
	return c
}

// sortedIDs returns the rule ids in ascending order.
func (rs *RuleSet) sortedIDs() []string { return slices.Sorted(maps.Keys(rs.Rules)) }

// minOrder returns the smallest order number in the set, 0 when empty.
func (rs *RuleSet) minOrder() int {
	first := true
	m := 0
	for _, r := range rs.Rules {
		if first || r.Order < m {
			m, first = r.Order, false
		}
	}
	return m
}

// digest returns the hex SHA-1 of raw.
func digest(raw []byte) string {
	sum := sha1.Sum(raw)
	return hex.EncodeToString(sum[:])
}

// ParseRules parses a rules config (placement.md §3.1, §4.1). A section with
// an unknown type, an unknown key, an invalid value or a missing required key
// is dropped with a diagnostic; the rest of the file is kept. A duplicate id
// drops the later section. `disable 0` is read as enabled and dropped.
func ParseRules(raw []byte) (*RuleSet, []Diagnostic) {
	secs, diags := parseSections(string(raw))
	rs := &RuleSet{Digest: digest(raw), Rules: map[string]*Rule{}}
	order := 0
	for _, s := range secs {
		if s.typ != TypeNodeAffinity && s.typ != TypeResourceAffinity {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: fmt.Sprintf("unknown rule type %q, section ignored", s.typ)})
			continue
		}
		if err := ha.CheckConfigID("rule", s.id); err != nil {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: err.Error()})
			continue
		}
		if _, dup := rs.Rules[s.id]; dup {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: fmt.Sprintf("duplicate rule id %q, section ignored", s.id)})
			continue
		}
		r, d := parseRule(s)
		if d != nil {
			diags = append(diags, *d)
			continue
		}
		order++
		r.Order = order
		rs.Rules[r.ID] = r
	}
	return rs, diags
}

// parseRule reads the properties of one rule section.
func parseRule(s section) (*Rule, *Diagnostic) {
	r := &Rule{ID: s.id, Type: s.typ}
	seen := map[string]bool{}
	bad := func(p prop, format string, args ...any) *Diagnostic {
		return &Diagnostic{Line: p.line, Section: s.id, Key: p.key, Msg: fmt.Sprintf(format, args...) + ", section ignored"}
	}
	for _, p := range s.props {
		if seen[p.key] {
			return nil, bad(p, "duplicate key")
		}
		seen[p.key] = true
		if p.key != "disable" && !p.hasValue {
			return nil, bad(p, "missing value")
		}
		switch {
		case p.key == "resources":
			res, err := parseResources(p.value)
			if err != nil {
				return nil, bad(p, "%v", err)
			}
			r.Resources = res
		case p.key == "comment":
			if len(p.value) > maxComment {
				return nil, bad(p, "comment longer than %d characters", maxComment)
			}
			r.Comment = p.value
		case p.key == "disable":
			v := true
			if p.hasValue {
				b, err := parseBool(p.value)
				if err != nil {
					return nil, bad(p, "%v", err)
				}
				v = b
			}
			r.Disable = v
		case p.key == "nodes" && s.typ == TypeNodeAffinity:
			nodes, err := parseNodes(p.value)
			if err != nil {
				return nil, bad(p, "%v", err)
			}
			r.Nodes = nodes
		case p.key == "strict" && s.typ == TypeNodeAffinity:
			b, err := parseBool(p.value)
			if err != nil {
				return nil, bad(p, "%v", err)
			}
			r.Strict, r.StrictSet = b, true
		case p.key == "affinity" && s.typ == TypeResourceAffinity:
			if p.value != AffinityPositive && p.value != AffinityNegative {
				return nil, bad(p, "expected positive or negative, found %q", p.value)
			}
			r.Affinity = p.value
		default:
			return nil, bad(p, "unknown key for type %s", s.typ)
		}
	}
	missing := func(key string) *Diagnostic {
		return &Diagnostic{Line: s.line, Section: s.id, Key: key, Msg: "missing required key, section ignored"}
	}
	if r.Resources == nil {
		return nil, missing("resources")
	}
	if s.typ == TypeNodeAffinity && r.Nodes == nil {
		return nil, missing("nodes")
	}
	if s.typ == TypeResourceAffinity && r.Affinity == "" {
		return nil, missing("affinity")
	}
	return r, nil
}

// parseResources reads a comma-separated SID list.
func parseResources(v string) (map[ha.SID]bool, error) {
	out := map[ha.SID]bool{}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		sid, err := ha.ParseSID(item)
		if err != nil {
			return nil, fmt.Errorf("invalid resource %q: %w", item, err)
		}
		out[sid] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resources were specified")
	}
	return out, nil
}

// parseNodes reads a comma-separated node[:priority] list.
func parseNodes(v string) (map[string]int, error) {
	out := map[string]int{}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, prio, hasPrio := strings.Cut(item, ":")
		if !isNodeName(name) {
			return nil, fmt.Errorf("invalid node name %q", name)
		}
		p := 0
		if hasPrio {
			n, err := strconv.Atoi(prio)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("invalid priority %q for node %q: expected a non-negative integer", prio, name)
			}
			p = n
		}
		out[name] = p
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nodes were specified")
	}
	return out, nil
}

// Group is a legacy HA group (placement.md §2).
type Group struct {
	// ID is the group id.
	ID string
	// Nodes maps each member node to its priority.
	Nodes map[string]int
	// Restricted makes the derived node-affinity rule strict.
	Restricted bool
	// NoFailback sets failback false on every member service.
	NoFailback bool
	// Comment is free text.
	Comment string
}

// ParseGroups parses a legacy groups config (placement.md §2.1) with the same
// error handling as ParseRules.
func ParseGroups(raw []byte) (map[string]*Group, []Diagnostic) {
	secs, diags := parseSections(string(raw))
	out := map[string]*Group{}
	for _, s := range secs {
		if s.typ != "group" {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: fmt.Sprintf("unknown section type %q, section ignored", s.typ)})
			continue
		}
		if err := ha.CheckConfigID("group", s.id); err != nil {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: err.Error()})
			continue
		}
		if _, dup := out[s.id]; dup {
			diags = append(diags, Diagnostic{Line: s.line, Section: s.id, Msg: fmt.Sprintf("duplicate group id %q, section ignored", s.id)})
			continue
		}
		g, d := parseGroup(s)
		if d != nil {
			diags = append(diags, *d)
			continue
		}
		out[g.ID] = g
	}
	return out, diags
}

// parseGroup reads the properties of one group section.
func parseGroup(s section) (*Group, *Diagnostic) {
	g := &Group{ID: s.id}
	seen := map[string]bool{}
	for _, p := range s.props {
		bad := func(format string, args ...any) *Diagnostic {
			return &Diagnostic{Line: p.line, Section: s.id, Key: p.key, Msg: fmt.Sprintf(format, args...) + ", section ignored"}
		}
		if seen[p.key] {
			return nil, bad("duplicate key")
		}
		seen[p.key] = true
		var err error
		switch p.key {
		case "nodes":
			g.Nodes, err = parseNodes(p.value)
		case "restricted":
			g.Restricted, err = parseBool(p.value)
		case "nofailback":
			g.NoFailback, err = parseBool(p.value)
		case "comment":
			if len(p.value) > maxComment {
				err = fmt.Errorf("comment longer than %d characters", maxComment)
			}
			g.Comment = p.value
		default:
			return nil, bad("unknown key for type group")
		}
		if err != nil {
			return nil, bad("%v", err)
		}
	}
	if g.Nodes == nil {
		return nil, &Diagnostic{Line: s.line, Section: s.id, Key: "nodes", Msg: "missing required key, section ignored"}
	}
	return g, nil
}

// GroupRuleID returns the id of the node-affinity rule derived from group id.
func GroupRuleID(group string) string { return "ha-group-" + group }

// ApplyGroups converts the groups referenced by resources into node-affinity
// rules added to a copy of rs (placement.md §2.3) and returns it together with
// the failback value each grouped service must use instead of its own
// (services naming a missing group get true). rs is not modified.
func ApplyGroups(rs *RuleSet, groups map[string]*Group, resources map[ha.SID]*ha.ResourceConfig) (*RuleSet, map[ha.SID]bool) {
	out := rs.Clone()
	failback := map[ha.SID]bool{}
	members := map[string][]ha.SID{}
	for _, sid := range slices.Sorted(maps.Keys(resources)) {
		cd := resources[sid]
		if cd == nil || cd.Group == "" {
			continue
		}
		g, ok := groups[cd.Group]
		failback[sid] = !ok || !g.NoFailback
		if ok {
			members[cd.Group] = append(members[cd.Group], sid)
		}
	}
	for _, gid := range slices.Sorted(maps.Keys(members)) {
		g := groups[gid]
		r := &Rule{ID: GroupRuleID(gid), Type: TypeNodeAffinity, Resources: map[ha.SID]bool{},
			Nodes: maps.Clone(g.Nodes), Strict: g.Restricted, StrictSet: true, Comment: g.Comment,
			Order: out.minOrder() + 1}
		if r.Comment == "" {
			r.Comment = fmt.Sprintf("Generated from HA group '%s'.", gid)
		}
		for _, sid := range members[gid] {
			r.Resources[sid] = true
		}
		out.Rules[r.ID] = r
	}
	return out, failback
}

// FormatGroups renders groups as a legacy groups config (section config
// text, placement.md §2.1) in id order; ParseGroups reads it back.
func FormatGroups(groups map[string]*Group) []byte {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(groups)) {
		g := groups[id]
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "group: %s\n", id)
		if g.Comment != "" {
			fmt.Fprintf(&b, "\tcomment %s\n", g.Comment)
		}
		if g.NoFailback {
			b.WriteString("\tnofailback 1\n")
		}
		nodes := make([]string, 0, len(g.Nodes))
		for _, n := range slices.Sorted(maps.Keys(g.Nodes)) {
			if p := g.Nodes[n]; p != 0 {
				n = fmt.Sprintf("%s:%d", n, p)
			}
			nodes = append(nodes, n)
		}
		fmt.Fprintf(&b, "\tnodes %s\n", strings.Join(nodes, ","))
		if g.Restricted {
			b.WriteString("\trestricted 1\n")
		}
	}
	return []byte(b.String())
}
