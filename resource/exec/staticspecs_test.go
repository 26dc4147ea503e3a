package exec

import (
	"context"
	"fmt"
	"io/fs"

	"haxd/ha"
)

// StaticSpecs is a resource.SpecSource over a fixed map, for tests.
type StaticSpecs map[ha.SID]Spec

// Spec returns m[sid], or an error wrapping fs.ErrNotExist.
func (m StaticSpecs) Spec(_ context.Context, sid ha.SID) (Spec, error) {
	s, ok := m[sid]
	if !ok {
		return Spec{}, fmt.Errorf("exec spec of %s: %w", sid, fs.ErrNotExist)
	}
	return s, nil
}
