//go:build faultlab

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ClockOffsetFile is the file in the data dir whose Go duration a
// fault-lab build (-tags faultlab) adds to the agent's wall clock. The
// fault lab's clock-step kind (internal/faultlab) writes it to step one
// node's wall clock without touching the host's, which every namespace
// shares (time namespaces offset only the monotonic and boot clocks).
const ClockOffsetFile = "faultlab-clock-offset"

// wallOffset returns the offset in <data dir>/faultlab-clock-offset, or 0
// when the file is missing or does not hold a duration. env.Now adds it
// with time.Time.Add, which moves the monotonic reading too: write the
// file before the agent starts, so that the node's wall clock is off from
// the others' as after a real step; changing it while the agent runs
// would also jump the durations the agent is timing, which a real step
// never does. Raft, gossip and the guard read the host clock.
func (n *node) wallOffset() time.Duration {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, ClockOffsetFile))
	if err != nil {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}
