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
// when the file is missing or does not hold a duration. It is added to
// time.Now, which keeps the monotonic reading: as with a real step,
// durations the agent measures do not move, only the wall times it writes
// and compares (CRM and LRM timestamps, the status). Raft, gossip and the
// guard read the host clock.
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
