package ha

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// SID identifies a resource (service) as "type:name", e.g. "vm:101".
type SID string

// MaxSIDLen is the longest SID in bytes. Every byte of a SID may take three
// bytes in a file or cgroup name (exec escapes it as %XX), and those names
// must stay well below NAME_MAX, so 64 is the bound every resource type can
// store.
const MaxSIDLen = 64

// ParseSID checks that s has the form "type:name" with a lower-case letter
// type and a non-empty name without blanks, at most MaxSIDLen bytes, and
// returns it as a SID. It is the one SID validator: the API, the config
// store and the simulator all use it.
func ParseSID(s string) (SID, error) {
	if len(s) > MaxSIDLen {
		short := s[:20] + "..."
		return "", fmt.Errorf("invalid service id %q: %d bytes, at most %d allowed", short, len(s), MaxSIDLen)
	}
	typ, name, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("invalid service id %q: expected type:name", s)
	}
	if typ == "" {
		return "", fmt.Errorf("invalid service id %q: empty type", s)
	}
	for _, r := range typ {
		if r < 'a' || r > 'z' {
			return "", fmt.Errorf("invalid service id %q: type %q must be lower-case letters", s, typ)
		}
	}
	if name == "" || strings.ContainsAny(name, " \t\r\n\v\f") {
		return "", fmt.Errorf("invalid service id %q: name must be non-empty and without blanks", s)
	}
	return SID(s), nil
}

// Type returns the part before the colon ("vm" for "vm:101").
func (s SID) Type() string {
	t, _, _ := strings.Cut(string(s), ":")
	return t
}

// Name returns the part after the colon ("101" for "vm:101").
func (s SID) Name() string {
	_, n, _ := strings.Cut(string(s), ":")
	return n
}

// String returns the SID as written.
func (s SID) String() string { return string(s) }

// SortedSIDs returns the keys of m, sorted, reusing *cache when it holds
// the same set: a service table keeps its sorted SIDs between rounds and
// sorts again only when the set changed. Callers must not modify the
// result.
func SortedSIDs[V any](cache *[]SID, m map[SID]V) []SID {
	if len(*cache) == len(m) && !slices.ContainsFunc(*cache, func(sid SID) bool {
		_, ok := m[sid]
		return !ok
	}) {
		// Same size and every cached SID present: the same set.
		return *cache
	}
	*cache = slices.Sorted(maps.Keys(m))
	return *cache
}
