package fencedev

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"haxd/clock"
)

// The pauses between retries and status calls run on the injected clock:
// inside a synctest bubble an hour passes without a real wait, and a
// cancelled context ends the pause at once.
func TestRunnerSleepUsesInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &Runner{clock: clock.System{}}
		start := time.Now()
		if err := r.sleep(context.Background(), time.Hour); err != nil {
			t.Fatalf("sleep: %v", err)
		}
		if got := time.Since(start); got != time.Hour {
			t.Errorf("sleep(1h) took %v of the bubble's time, want 1h", got)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Minute)
			cancel()
		}()
		start = time.Now()
		if err := r.sleep(ctx, time.Hour); err != context.Canceled {
			t.Errorf("sleep with a context cancelled after 1m = %v, want context.Canceled", err)
		}
		if got := time.Since(start); got != time.Minute {
			t.Errorf("cancelled sleep took %v, want 1m", got)
		}
	})
}
