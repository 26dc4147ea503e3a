package resource

import (
	"context"

	"haxd/ha"
)

// SpecSource returns the spec (of type S: exec.Spec, ocf.Spec) of a
// service. The real agent backs it with the replicated resources config.
type SpecSource[S any] interface {
	// Spec returns the spec of sid, or an error when sid has none.
	Spec(ctx context.Context, sid ha.SID) (S, error)
}

// SpecFunc adapts a function to SpecSource.
type SpecFunc[S any] func(ctx context.Context, sid ha.SID) (S, error)

// Spec calls f.
func (f SpecFunc[S]) Spec(ctx context.Context, sid ha.SID) (S, error) { return f(ctx, sid) }
