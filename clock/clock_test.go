package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

// System's Mono and Now's monotonic reading are the same clock: an
// interval of Now read inside an interval of Mono is never longer.
func TestSystemMonoAdvancesWithNow(t *testing.T) {
	var c System
	m0, t0 := c.Mono(), c.Now()
	time.Sleep(10 * time.Millisecond)
	t1, m1 := c.Now(), c.Mono()
	if dm, dt := time.Duration(m1-m0), t1.Sub(t0); dt < 10*time.Millisecond || dm < dt {
		t.Errorf("CLOCK_MONOTONIC advanced %v while Now advanced %v", dm, dt)
	}
}

func TestSinceInABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Since{Epoch: time.Now()}
		if got := c.Mono(); got != 1 {
			t.Errorf("Mono at the epoch = %d, want 1", got)
		}
		tm := c.NewTimer(time.Hour)
		<-tm.C()
		if got := time.Duration(c.Mono() - 1); got != time.Hour {
			t.Errorf("Mono after a 1h timer = %v, want 1h", got)
		}
		if tm.Stop() {
			t.Error("Stop of a fired timer reported it pending")
		}
	})
}
