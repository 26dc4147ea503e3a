package placement

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"haxd/ha"
)

// CheckReport is the result of checking a rules file the way PVE's
// rules_cfgs tests do (scenario-format.md §9).
type CheckReport struct {
	// Diagnostics are the parse problems (dropped sections).
	Diagnostics []Diagnostic
	// Log holds the "Drop rule ..." lines.
	Log []string
	// Config is the rule set after checks and transforms.
	Config *RuleSet
	// Compiled is the compiled per-service view.
	Compiled *Compiled
}

// CheckRulesFile parses raw, runs the checks and transforms for the given
// known nodes and compiles the result.
func CheckRulesFile(raw []byte, knownNodes []string) *CheckReport {
	nodes := slices.Sorted(slices.Values(knownNodes))
	rs, diags := ParseRules(raw)
	canon, log := Canonicalize(rs, nodes)
	return &CheckReport{Diagnostics: diags, Log: log, Config: canon, Compiled: Compile(canon, nodes)}
}

// String renders the report in the three-part format of the rules_cfgs
// expected outputs: "--- Log ---", "--- Config ---", "--- Compiled Config ---",
// with JSON in Perl's canonical pretty style. Parse diagnostics, if any, are
// listed in the log part before the drop lines, prefixed with "warning: ".
func (r *CheckReport) String() string {
	var b strings.Builder
	b.WriteString("--- Log ---\n")
	for _, d := range r.Diagnostics {
		b.WriteString("warning: " + d.String() + "\n")
	}
	for _, l := range r.Log {
		b.WriteString(l + "\n")
	}
	b.WriteString("--- Config ---\n")
	b.WriteString(CanonicalJSON(r.Config.JSONValue()))
	b.WriteString("--- Compiled Config ---\n")
	b.WriteString(CanonicalJSON(r.Compiled.JSONValue()))
	return b.String()
}

// JSONValue returns the rule set as the generic value printed by the
// rules_cfgs tests: digest, ids and order.
func (rs *RuleSet) JSONValue() map[string]any {
	ids := map[string]any{}
	order := map[string]any{}
	for id, r := range rs.Rules {
		ids[id] = r.JSONValue()
		order[id] = r.Order
	}
	return map[string]any{"digest": rs.Digest, "ids": ids, "order": order}
}

// JSONValue returns the rule as a generic value in PVE's encoding.
func (r *Rule) JSONValue() map[string]any {
	m := map[string]any{"type": r.Type, "resources": sidSet(r.Resources)}
	if r.Type == TypeNodeAffinity {
		m["nodes"] = nodePrios(r.Nodes)
		if r.StrictSet {
			m["strict"] = boolInt(r.Strict)
		}
	} else {
		m["affinity"] = r.Affinity
	}
	if r.Disable {
		m["disable"] = 1
	}
	if r.Comment != "" {
		m["comment"] = r.Comment
	}
	return m
}

// JSONValue returns the compiled view as a generic value in the layout of
// the rules_cfgs tests.
func (c *Compiled) JSONValue() map[string]any {
	na := map[string]any{}
	for sid, nodes := range c.NodeAffinity {
		na[string(sid)] = map[string]any{"nodes": nodePrios(nodes)}
	}
	rel := func(m map[ha.SID]map[ha.SID]bool) map[string]any {
		out := map[string]any{}
		for sid, set := range m {
			out[string(sid)] = sidSet(set)
		}
		return out
	}
	return map[string]any{"node-affinity": na,
		"resource-affinity": map[string]any{"positive": rel(c.Positive), "negative": rel(c.Negative)}}
}

func sidSet(s map[ha.SID]bool) map[string]any {
	out := map[string]any{}
	for sid := range s {
		out[string(sid)] = 1
	}
	return out
}

func nodePrios(nodes map[string]int) map[string]any {
	out := map[string]any{}
	for n, p := range nodes {
		out[n] = map[string]any{"priority": p}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CanonicalJSON renders v like Perl's JSON->canonical->pretty: keys sorted,
// three-space indentation, " : " between key and value, "{}" for an empty
// object, and a trailing newline. v may hold map[string]any, []any, string,
// int, float64 and bool.
func CanonicalJSON(v any) string {
	var b strings.Builder
	writeJSON(&b, v, 0)
	b.WriteString("\n")
	return b.String()
}

func writeJSON(b *strings.Builder, v any, depth int) {
	indent := strings.Repeat("   ", depth)
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		keys := slices.Sorted(maps.Keys(x))
		for i, k := range keys {
			b.WriteString(indent + "   " + strconv.Quote(k) + " : ")
			writeJSON(b, x[k], depth+1)
			if i < len(keys)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(indent + "}")
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range x {
			b.WriteString(indent + "   ")
			writeJSON(b, e, depth+1)
			if i < len(x)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(indent + "]")
	case string:
		b.WriteString(strconv.Quote(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case bool:
		b.WriteString(strconv.FormatBool(x))
	default:
		b.WriteString("null")
	}
}
