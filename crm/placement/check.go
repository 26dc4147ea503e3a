package placement

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"haxd/ha"
)

// Feasibility check messages (placement.md §5.2).
const (
	msgNodeAffinityShared  = "resource '%s' is already used in another node affinity rule"
	msgIneffective         = "rule is ineffective as there are less than two resources"
	msgMoreThanNodes       = "rule defines more resources than available nodes"
	msgPosSharesWithNeg    = "rule shares two or more resources with a negative resource affinity rule"
	msgNegSharesWithPos    = "rule shares two or more resources with a positive resource affinity rule"
	msgResMultiPrio        = "resources are in node affinity rules with multiple priorities"
	msgNodeMultiPrio       = "resources are in a resource affinity rule and cannot be in a node affinity rule with multiple priorities"
	msgPosMultiNode        = "resources are in multiple node affinity rules"
	msgNodeMultiPos        = "at least one resource is in a positive resource affinity rule and there are other resources in at least one other node affinity rule already"
	msgNegTooFewNodes      = "two or more resources are restricted to less nodes than available to the resources"
	msgNodeNegTooFewNodes  = "at least one resource is in a negative resource affinity rule and this rule would restrict these to less nodes than available to the resources"
	dropLineFormat         = "Drop rule '%s', because %s."
	mergedPrefix           = "_merged-"
	implicitNegativePrefix = "_implicit-negative-"
)

// RuleErrors maps a rule id to its feasibility errors in production order.
type RuleErrors map[string][]string

// enabledRules returns the enabled rules of rs, split by kind, each sorted by id.
func enabledRules(rs *RuleSet) (node, pos, neg []*Rule) {
	for _, id := range rs.sortedIDs() {
		r := rs.Rules[id]
		if r.Disable {
			continue
		}
		switch {
		case r.Type == TypeNodeAffinity:
			node = append(node, r)
		case r.Affinity == AffinityPositive:
			pos = append(pos, r)
		case r.Affinity == AffinityNegative:
			neg = append(neg, r)
		}
	}
	return node, pos, neg
}

// positiveGroups groups connected positive rules with the single-pass
// algorithm of placement.md §5.3 T1. Each group lists its rules in group order.
func positiveGroups(pos []*Rule) [][]*Rule {
	sorted := slices.Clone(pos)
	slices.SortStableFunc(sorted, func(a, b *Rule) int {
		if c := strings.Compare(string(a.SortedResources()[0]), string(b.SortedResources()[0])); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var groups [][]*Rule
	var sets []map[ha.SID]bool
	for _, r := range sorted {
		joined := false
		for i, set := range sets {
			if intersects(set, r.Resources) {
				groups[i] = append(groups[i], r)
				maps.Copy(set, r.Resources)
				joined = true
				break
			}
		}
		if !joined {
			groups = append(groups, []*Rule{r})
			sets = append(sets, maps.Clone(r.Resources))
		}
	}
	return groups
}

// groupResources returns the union of the resources of rules.
func groupResources(rules []*Rule) map[ha.SID]bool {
	out := map[ha.SID]bool{}
	for _, r := range rules {
		maps.Copy(out, r.Resources)
	}
	return out
}

func intersects(a, b map[ha.SID]bool) bool {
	for k := range a {
		if b[k] {
			return true
		}
	}
	return false
}

func intersectionSize(a, b map[ha.SID]bool) int {
	n := 0
	for k := range a {
		if b[k] {
			n++
		}
	}
	return n
}

// distinctPriorities returns the number of distinct priorities of r's nodes.
func distinctPriorities(r *Rule) int {
	seen := map[int]bool{}
	for _, p := range r.Nodes {
		seen[p] = true
	}
	return len(seen)
}

// CheckRules runs the feasibility checks of placement.md §5.2 on the enabled
// rules of rs against the known nodes and returns the errors per rule id.
// Every check sees the same input; a rule's errors come in check order.
func CheckRules(rs *RuleSet, knownNodes []string) RuleErrors {
	c := &ruleChecker{errs: RuleErrors{}, known: knownNodes}
	c.node, c.pos, c.neg = enabledRules(rs)
	c.groups = positiveGroups(c.pos)
	c.sharedNodeAffinity()
	c.ineffective()
	c.posSharesWithNeg()
	c.multiPriority()
	c.posMultiNode()
	c.negTooFewNodes()
	return c.errs
}

// ruleChecker holds the input and the result of CheckRules.
type ruleChecker struct {
	errs           RuleErrors
	known          []string
	node, pos, neg []*Rule
	groups         [][]*Rule
}

func (c *ruleChecker) add(id, msg string) { c.errs[id] = append(c.errs[id], msg) }

// sharedNodeAffinity checks N1: a SID in two or more node-affinity rules.
func (c *ruleChecker) sharedNodeAffinity() {
	users := map[ha.SID][]string{}
	for _, r := range c.node {
		for sid := range r.Resources {
			users[sid] = append(users[sid], r.ID)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(users)) {
		if ids := users[sid]; len(ids) > 1 {
			for _, id := range ids {
				c.add(id, fmt.Sprintf(msgNodeAffinityShared, sid))
			}
		}
	}
}

// ineffective checks R1 (a resource-affinity rule with fewer than two
// resources) and R2 (a negative rule with more resources than nodes).
func (c *ruleChecker) ineffective() {
	for _, r := range append(slices.Clone(c.pos), c.neg...) {
		if len(r.Resources) < 2 {
			c.add(r.ID, msgIneffective)
		}
	}
	for _, r := range c.neg {
		if len(r.Resources) > len(c.known) {
			c.add(r.ID, msgMoreThanNodes)
		}
	}
}

// posSharesWithNeg checks R3: a positive group sharing two or more SIDs
// with a negative rule.
func (c *ruleChecker) posSharesWithNeg() {
	for _, g := range c.groups {
		set := groupResources(g)
		for _, n := range c.neg {
			if intersectionSize(set, n.Resources) >= 2 {
				for _, p := range g {
					c.add(p.ID, msgPosSharesWithNeg)
				}
				c.add(n.ID, msgNegSharesWithPos)
			}
		}
	}
}

// multiPriority checks G1: a resource-affinity rule sharing a SID with a
// multi-priority node rule.
func (c *ruleChecker) multiPriority() {
	for _, ra := range append(slices.Clone(c.pos), c.neg...) {
		var sharing []*Rule
		multi := false
		for _, na := range c.node {
			if intersects(ra.Resources, na.Resources) {
				sharing = append(sharing, na)
				if distinctPriorities(na) > 1 {
					multi = true
				}
			}
		}
		if multi {
			c.add(ra.ID, msgResMultiPrio)
			for _, na := range sharing {
				c.add(na.ID, msgNodeMultiPrio)
			}
		}
	}
}

// posMultiNode checks G2: a positive group sharing SIDs with two or more
// node rules.
func (c *ruleChecker) posMultiNode() {
	for _, g := range c.groups {
		set := groupResources(g)
		var sharing []*Rule
		for _, na := range c.node {
			if intersects(set, na.Resources) {
				sharing = append(sharing, na)
			}
		}
		if len(sharing) >= 2 {
			for _, p := range g {
				c.add(p.ID, msgPosMultiNode)
			}
			for _, na := range sharing {
				c.add(na.ID, msgNodeMultiPos)
			}
		}
	}
}

// negTooFewNodes checks G3: a negative rule whose node-restricted members
// have too few nodes.
func (c *ruleChecker) negTooFewNodes() {
	for _, n := range c.neg {
		restricted := map[ha.SID]bool{}
		union := map[string]bool{}
		var sharing []*Rule
		for _, na := range c.node {
			if !intersects(n.Resources, na.Resources) {
				continue
			}
			sharing = append(sharing, na)
			for sid := range n.Resources {
				if na.Resources[sid] {
					restricted[sid] = true
				}
			}
			for nd := range na.Nodes {
				union[nd] = true
			}
		}
		if len(union) < len(restricted) {
			c.add(n.ID, msgNegTooFewNodes)
			for _, na := range sharing {
				c.add(na.ID, msgNodeNegTooFewNodes)
			}
		}
	}
}

// DropLines renders errs as the "Drop rule ..." log lines, ordered by rule id.
func DropLines(errs RuleErrors) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(errs)) {
		for _, msg := range errs[id] {
			out = append(out, fmt.Sprintf(dropLineFormat, id, msg))
		}
	}
	return out
}

// Canonicalize runs the pipeline of placement.md §5.2-§5.3 on a copy of rs:
// feasibility checks on the enabled rules, removal of every rule with an
// error, then the transforms T1 (merge positive rules), T2 (implicit
// negatives) and T3 (node affinity inherited by positive groups). It
// returns the resulting rule set and the "Drop rule" log lines.
func Canonicalize(rs *RuleSet, knownNodes []string) (*RuleSet, []string) {
	out := rs.Clone()
	errs := CheckRules(out, knownNodes)
	for id := range errs {
		delete(out.Rules, id)
	}
	mergePositive(out)
	inferImplicitNegatives(out)
	inferNodeAffinity(out)
	return out, DropLines(errs)
}

// mergePositive is transform T1.
func mergePositive(rs *RuleSet) {
	_, pos, _ := enabledRules(rs)
	for _, g := range positiveGroups(pos) {
		if len(g) < 2 {
			continue
		}
		ids := make([]string, len(g))
		for i, r := range g {
			ids[i] = r.ID
			delete(rs.Rules, r.ID)
		}
		m := &Rule{ID: mergedPrefix + strings.Join(ids, "-"), Type: TypeResourceAffinity,
			Affinity: AffinityPositive, Resources: groupResources(g), Order: g[0].Order}
		rs.Rules[m.ID] = m
	}
}

// inferImplicitNegatives is transform T2.
func inferImplicitNegatives(rs *RuleSet) {
	_, pos, neg := enabledRules(rs)
	negPartners := map[ha.SID]map[ha.SID]bool{}
	for _, n := range neg {
		for a := range n.Resources {
			for b := range n.Resources {
				if a == b {
					continue
				}
				if negPartners[a] == nil {
					negPartners[a] = map[ha.SID]bool{}
				}
				negPartners[a][b] = true
			}
		}
	}
	order := rs.minOrder() + 1
	for _, p := range pos {
		members := p.SortedResources()
		cs := map[ha.SID]bool{}
		for _, s := range members {
			maps.Copy(cs, negPartners[s])
		}
		for _, c := range slices.Sorted(maps.Keys(cs)) {
			if p.Resources[c] {
				continue
			}
			for _, s := range members {
				if negPartners[s][c] {
					continue
				}
				id := fmt.Sprintf("%s%s-%s-%s", implicitNegativePrefix, p.ID, s, c)
				rs.Rules[id] = &Rule{ID: id, Type: TypeResourceAffinity, Affinity: AffinityNegative,
					Resources: map[ha.SID]bool{s: true, c: true}, Order: order}
			}
		}
	}
}

// inferNodeAffinity is transform T3.
func inferNodeAffinity(rs *RuleSet) {
	node, pos, _ := enabledRules(rs)
	for _, p := range pos {
		for _, na := range node {
			if intersects(p.Resources, na.Resources) {
				maps.Copy(na.Resources, p.Resources)
				break
			}
		}
	}
}

// Compiled is the per-service view of the enabled rules (placement.md §5.4).
type Compiled struct {
	// NodeAffinity maps a SID to its allowed nodes and their priorities;
	// non-strict rules list every known node, unlisted ones at -1.
	NodeAffinity map[ha.SID]map[string]int
	// Positive maps a SID to its positive partners.
	Positive map[ha.SID]map[ha.SID]bool
	// Negative maps a SID to its negative partners.
	Negative map[ha.SID]map[ha.SID]bool
}

// Compile builds the per-service view of the enabled rules of rs, which
// should have gone through Canonicalize.
func Compile(rs *RuleSet, knownNodes []string) *Compiled {
	c := &Compiled{NodeAffinity: map[ha.SID]map[string]int{}, Positive: map[ha.SID]map[ha.SID]bool{}, Negative: map[ha.SID]map[ha.SID]bool{}}
	node, pos, neg := enabledRules(rs)
	for _, r := range node {
		for sid := range r.Resources {
			m := maps.Clone(r.Nodes)
			if !r.Strict {
				for _, n := range knownNodes {
					if _, ok := m[n]; !ok {
						m[n] = -1
					}
				}
			}
			c.NodeAffinity[sid] = m
		}
	}
	rel := func(dst map[ha.SID]map[ha.SID]bool, rules []*Rule) {
		for _, r := range rules {
			for a := range r.Resources {
				for b := range r.Resources {
					if a == b {
						continue
					}
					if dst[a] == nil {
						dst[a] = map[ha.SID]bool{}
					}
					dst[a][b] = true
				}
			}
		}
	}
	rel(c.Positive, pos)
	rel(c.Negative, neg)
	return c
}
