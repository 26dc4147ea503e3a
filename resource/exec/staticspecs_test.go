package exec

import "haxd/internal/spectest"

// StaticSpecs is a resource.SpecSource over a fixed map.
type StaticSpecs = spectest.Static[Spec]
