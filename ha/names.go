package ha

import "fmt"

// MaxConfigIDLen is the longest rule or group id accepted, in bytes.
const MaxConfigIDLen = 128

// MaxCommentLen is the longest comment of a resource, rule or group, in
// bytes (ha-semantics §10.2).
const MaxCommentLen = 4096

// CheckConfigID checks a rule or group id (PVE's config id): a letter, then
// letters, digits, '-' or '_', at most MaxConfigIDLen bytes. The API and
// the section-config parser both use it, so an id the API accepts always
// parses back. kind ("rule", "group") starts the error, which names the id
// and says what was expected.
func CheckConfigID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("empty %s id: expected a letter, then letters, digits, '-' or '_'", kind)
	}
	if len(id) > MaxConfigIDLen {
		return fmt.Errorf("%s id %q is %d bytes long: at most %d are allowed", kind, id[:16]+"...", len(id), MaxConfigIDLen)
	}
	letter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	if !letter(id[0]) {
		return fmt.Errorf("invalid %s id %q: expected a letter, then letters, digits, '-' or '_'", kind, id)
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !letter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return fmt.Errorf("invalid %s id %q: expected a letter, then letters, digits, '-' or '_'", kind, id)
		}
	}
	return nil
}

// ValidConfigID reports whether CheckConfigID accepts id.
func ValidConfigID(id string) bool { return CheckConfigID("config", id) == nil }

// MaxNodeNameLen is the longest node name accepted, in bytes (a DNS label).
const MaxNodeNameLen = 63

// NodeNameRule says what CheckNodeName expects, for error messages that
// name the field themselves.
const NodeNameRule = "expected letters, digits and '-', at most 63, not starting or ending with '-'"

// CheckNodeName checks a node name: 1 to MaxNodeNameLen letters, digits
// and '-', not starting or ending with '-' (a DNS label, as PVE's node
// names). The agent config, the API and the certificate tooling all use
// it, so a name one accepts the others accept too. The error names the
// value and says what was expected.
func CheckNodeName(s string) error {
	ok := len(s) > 0 && len(s) <= MaxNodeNameLen && s[0] != '-' && s[len(s)-1] != '-'
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("node name %q: %s", s, NodeNameRule)
	}
	return nil
}

// ValidNodeName reports whether CheckNodeName accepts s.
func ValidNodeName(s string) bool { return CheckNodeName(s) == nil }
