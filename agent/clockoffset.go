//go:build !faultlab

package agent

import "time"

// wallOffset is 0 in a normal build: the agent's wall clock is the
// host's. A fault-lab build (-tags faultlab, clockoffset_faultlab.go)
// reads a per-node offset instead.
func (n *node) wallOffset() time.Duration { return 0 }
