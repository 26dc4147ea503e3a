package agent

import (
	"log/slog"
	"testing"
	"time"

	"haxd/clock"
)

// fixedClock is a clock.Clock whose Now is fixed.
type fixedClock struct {
	clock.System
	now time.Time
}

func (c fixedClock) Now() time.Time { return c.now }

// The env reads the agent's injected clock, not the host's directly.
func TestEnvNowReadsTheInjectedClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := newEnv(&node{name: "n1", cfg: &Config{}, log: slog.New(slog.DiscardHandler), clock: fixedClock{now: at}}, "crm", nil)
	if got := e.Now(); !got.Equal(at) {
		t.Errorf("env.Now() = %v, want the injected clock's %v", got, at)
	}
}
