package main

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"haxd/crm/placement"
	"haxd/ha"
)

// fencedBlock is one fenced code block of a markdown document.
type fencedBlock struct {
	tag  string // the info string after the opening fence
	body string // the lines between the fences, each ending in "\n"
	line int    // 1-based line number of the opening fence
}

// fencedBlocks returns the fenced code blocks of doc in document order. An
// unterminated block is an error.
func fencedBlocks(t *testing.T, name, doc string) []fencedBlock {
	t.Helper()
	var out []fencedBlock
	var cur *fencedBlock
	for i, line := range strings.Split(doc, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fencedBlock{tag: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated ``` block", name, cur.line)
	}
	return out
}

// dropLines returns the "Drop rule ..." lines of a text block.
func dropLines(body string) []string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "Drop rule '") {
			out = append(out, line)
		}
	}
	return out
}

// docsRulesNodes are the cluster nodes the examples of docs/rules.md assume.
var docsRulesNodes = []string{"node1", "node2", "node3"}

// TestDocsRulesExamples: every ```rules and ```groups block of docs/rules.md
// parses without a diagnostic with the parsers the agent and the CRM use. A
// rules block is feasible on node1..node3 unless the ```text block right
// after it lists its "Drop rule" lines, which must then be exactly the ones
// the checks log. A groups block followed by a rules block of ha-group-*
// rules must convert to exactly those rules.
func TestDocsRulesExamples(t *testing.T) {
	const name = "docs/rules.md"
	blocks := fencedBlocks(t, name, readDoc(t, name))
	var rulesBlocks, groupsBlocks int
	checkedDrops := map[int]bool{} // indexes of text blocks verified against a rules block
	for i, b := range blocks {
		switch b.tag {
		case "rules":
			rulesBlocks++
			rs, diags := placement.ParseRules([]byte(b.body))
			for _, d := range diags {
				t.Errorf("%s:%d: ```rules block: %s", name, b.line, d)
			}
			if len(rs.Rules) == 0 {
				t.Errorf("%s:%d: ```rules block defines no rule", name, b.line)
			}
			got := placement.CheckRulesFile([]byte(b.body), docsRulesNodes).Log
			var want []string
			if i+1 < len(blocks) && blocks[i+1].tag == "text" {
				want = dropLines(blocks[i+1].body)
				checkedDrops[i+1] = true
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s:%d: ```rules block logs\n%s\nbut the doc shows\n%s", name, b.line,
					strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		case "groups":
			groupsBlocks++
			groups, diags := placement.ParseGroups([]byte(b.body))
			for _, d := range diags {
				t.Errorf("%s:%d: ```groups block: %s", name, b.line, d)
			}
			if len(groups) == 0 {
				t.Errorf("%s:%d: ```groups block defines no group", name, b.line)
			}
			if i+1 < len(blocks) && blocks[i+1].tag == "rules" {
				checkGroupConversion(t, name, groups, blocks[i+1])
			}
		case "text":
			if !checkedDrops[i] {
				for _, l := range dropLines(b.body) {
					if !strings.Contains(l, "<id>") {
						t.Errorf("%s:%d: %q is not checked against a ```rules block right before it", name, b.line, l)
					}
				}
			}
		}
	}
	if rulesBlocks < 3 || groupsBlocks < 1 {
		t.Errorf("%s has %d ```rules and %d ```groups examples; want at least 3 and 1", name, rulesBlocks, groupsBlocks)
	}
}

// checkGroupConversion checks that the ha-group-* rules of next are what
// the groups become when the services those rules list are their members.
func checkGroupConversion(t *testing.T, name string, groups map[string]*placement.Group, next fencedBlock) {
	t.Helper()
	want, _ := placement.ParseRules([]byte(next.body))
	resources := map[ha.SID]*ha.ResourceConfig{}
	for _, id := range slices.Sorted(maps.Keys(want.Rules)) {
		gid, ok := strings.CutPrefix(id, "ha-group-")
		if !ok {
			return // not a conversion example
		}
		for _, sid := range want.Rules[id].SortedResources() {
			resources[sid] = &ha.ResourceConfig{SID: sid, Group: gid}
		}
	}
	got, _ := placement.ApplyGroups(&placement.RuleSet{Rules: map[string]*placement.Rule{}}, groups, resources)
	for _, id := range slices.Sorted(maps.Keys(want.Rules)) {
		w, g := want.Rules[id], got.Rules[id]
		if g == nil {
			t.Errorf("%s:%d: rule %s is shown but no group converts to it", name, next.line, id)
			continue
		}
		if !maps.Equal(g.Nodes, w.Nodes) || !maps.Equal(g.Resources, w.Resources) || g.Strict != w.Strict || g.Comment != w.Comment {
			t.Errorf("%s:%d: rule %s: the group converts to nodes %v resources %v strict %v comment %q, the doc shows nodes %v resources %v strict %v comment %q",
				name, next.line, id, g.Nodes, g.SortedResources(), g.Strict, g.Comment, w.Nodes, w.SortedResources(), w.Strict, w.Comment)
		}
	}
	if len(got.Rules) != len(want.Rules) {
		t.Errorf("%s:%d: the groups convert to %d rules, the doc shows %d", name, next.line, len(got.Rules), len(want.Rules))
	}
}

// headingAnchor returns the anchor a markdown renderer gives a heading:
// lower case, blanks as '-', punctuation other than '-' and '_' dropped.
func headingAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// docAnchors returns the heading anchors of a markdown document, skipping
// fenced code blocks.
func docAnchors(t *testing.T, name string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	inCode := false
	for line := range strings.SplitSeq(readDoc(t, name), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if !inCode && strings.HasPrefix(line, "#") {
			out[headingAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return out
}

// TestDocsRulesLinks: README.md and docs/cli.md point to docs/rules.md, and
// every #anchor link between docs/rules.md and docs/cli.md names a heading
// that exists.
func TestDocsRulesLinks(t *testing.T) {
	if !strings.Contains(readDoc(t, "README.md"), "(docs/rules.md)") {
		t.Error("README.md does not link docs/rules.md")
	}
	anchors := map[string]map[string]bool{
		"rules.md": docAnchors(t, "docs/rules.md"),
		"cli.md":   docAnchors(t, "docs/cli.md"),
	}
	links := regexp.MustCompile(`\]\(((?:rules|cli)\.md)?#([^)]+)\)`)
	for _, from := range []string{"rules.md", "cli.md"} {
		doc := readDoc(t, "docs/"+from)
		if from == "cli.md" && !strings.Contains(doc, "](rules.md") {
			t.Error("docs/cli.md does not link rules.md")
		}
		for _, m := range links.FindAllStringSubmatch(doc, -1) {
			target := m[1]
			if target == "" {
				target = from
			}
			if !anchors[target][m[2]] {
				t.Errorf("docs/%s links %s#%s, which has no such heading", from, target, m[2])
			}
		}
	}
}
