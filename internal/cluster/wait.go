package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrTimeout is what WaitFor returns, wrapped, when its time passed.
var ErrTimeout = errors.New("timed out")

// WaitFor polls cond every 50 ms until it holds, d passes (ErrTimeout,
// "timed out after d") or ctx ends (ctx's error).
func WaitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", ErrTimeout, d)
		}
		if err := Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// Retry calls f every 200 ms until it succeeds or d passes, and returns
// its last error; or ctx's error when ctx ends first.
func Retry(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// Sleep waits d, or until ctx ends (ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SelfFences counts, over every node's logs, LRMs that lost their agent
// lock and guard self-fences (a killed node's own guard counts too).
func (c *Cluster) SelfFences() (lostLocks, guardFences int) {
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.Log)
		lostLocks += strings.Count(string(b), "=> lost_agent_lock")
		g, _ := os.ReadFile(filepath.Join(n.DataDir, "guard.log"))
		guardFences += strings.Count(string(g), "guard: self-fence,")
	}
	return lostLocks, guardFences
}

// LogTime parses the time= field at the start of an agent's slog text
// line.
func LogTime(line string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(line, "time=")
	if !ok {
		return time.Time{}, false
	}
	ts, _, _ := strings.Cut(rest, " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	return t, err == nil
}
