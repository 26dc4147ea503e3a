package placement

import (
	"fmt"
	"strings"

	"haxd/ha"
)

// Diagnostic is a problem found while parsing a section config file. A
// diagnostic never aborts parsing: the section it names is dropped (or the
// property ignored) and the rest of the file is used.
type Diagnostic struct {
	// Line is the 1-based line number the problem was found on.
	Line int
	// Section is the id of the section concerned, if known.
	Section string
	// Key is the property concerned, if any.
	Key string
	// Msg describes the problem, naming the offending value.
	Msg string
}

// String renders the diagnostic as "line N: section 'id': key 'k': msg".
func (d Diagnostic) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d", d.Line)
	if d.Section != "" {
		fmt.Fprintf(&b, ": section '%s'", d.Section)
	}
	if d.Key != "" {
		fmt.Fprintf(&b, ": key '%s'", d.Key)
	}
	b.WriteString(": ")
	b.WriteString(d.Msg)
	return b.String()
}

// section is one raw "type: id" block of a section config file.
type section struct {
	typ, id string
	line    int
	props   []prop
}

// prop is one "key value" line of a section.
type prop struct {
	key, value string
	hasValue   bool
	line       int
}

// parseSections splits text into sections. Lines starting with '#' are
// comments; a blank line ends a section; property lines must be indented.
// Malformed lines are reported and skipped.
func parseSections(text string) ([]section, []Diagnostic) {
	var (
		out   []section
		diags []Diagnostic
		cur   *section
	)
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	skipping := false
	for i, raw := range strings.Split(text, "\n") {
		lineNo := i + 1
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if trimmed == "" {
			flush()
			skipping = false
			continue
		}
		indented := line[0] == ' ' || line[0] == '\t'
		if !indented {
			flush()
			skipping = false
			typ, id, ok := strings.Cut(trimmed, ":")
			typ, id = strings.TrimSpace(typ), strings.TrimSpace(id)
			if !ok || typ == "" || strings.ContainsAny(typ, " \t") || id == "" || strings.ContainsAny(id, " \t") {
				diags = append(diags, Diagnostic{Line: lineNo, Msg: fmt.Sprintf("expected a section header 'type: id', found %q", trimmed)})
				skipping = true
				continue
			}
			cur = &section{typ: strings.ToLower(typ), id: id, line: lineNo}
			continue
		}
		if skipping {
			continue
		}
		if cur == nil {
			diags = append(diags, Diagnostic{Line: lineNo, Msg: fmt.Sprintf("property line outside of a section: %q", trimmed)})
			continue
		}
		key, value := trimmed, ""
		if i := strings.IndexAny(trimmed, " \t"); i >= 0 {
			key, value = trimmed[:i], strings.TrimSpace(trimmed[i+1:])
		}
		hasValue := value != ""
		cur.props = append(cur.props, prop{key: key, value: value, hasValue: hasValue, line: lineNo})
	}
	flush()
	return out, diags
}

// isConfigID reports whether s is a PVE config id (ha.CheckConfigID, the
// validator the API uses too).
func isConfigID(s string) bool { return ha.ValidConfigID(s) }

// isNodeName reports whether s matches ^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$.
func isNodeName(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// parseBool reads a PVE boolean.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "on", "true":
		return true, nil
	case "0", "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("expected 0 or 1, found %q", s)
}
