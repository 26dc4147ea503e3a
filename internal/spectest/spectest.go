// Package spectest holds what the resource agents' tests share: a
// resource.SpecSource over a fixed map. Only tests import it.
package spectest

import (
	"context"
	"fmt"
	"io/fs"

	"haxd/ha"
)

// Static is a resource.SpecSource over a fixed map.
type Static[S any] map[ha.SID]S

// Spec returns m[sid], or an error wrapping fs.ErrNotExist.
func (m Static[S]) Spec(_ context.Context, sid ha.SID) (S, error) {
	s, ok := m[sid]
	if !ok {
		var zero S
		return zero, fmt.Errorf("spec of %s: %w", sid, fs.ErrNotExist)
	}
	return s, nil
}
