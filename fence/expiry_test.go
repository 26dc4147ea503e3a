package fence

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"haxd/clock"
)

// bubbleGuard is a Guard without socket or device whose enforcement loop
// runs on the synctest bubble's fake time; its Mono starts at 1 h, so
// that expiries in the past are positive.
type bubbleGuard struct {
	g     *Guard
	clk   clock.Since
	kills *killLog
	h     *handle
	log   *slog.Logger
}

const bubbleWatchdog = 600 * time.Millisecond

// startBubbleGuard must run inside synctest.Test. It registers pgid 4242
// on one handle (not armed yet) and runs the loop until the test ends.
func startBubbleGuard(t *testing.T) *bubbleGuard {
	t.Helper()
	b := &bubbleGuard{clk: clock.Since{Epoch: time.Now().Add(-time.Hour)}, kills: &killLog{}, log: slog.New(slog.DiscardHandler)}
	b.g = newGuard(GuardConfig{SocketPath: "unused", WatchdogTimeout: bubbleWatchdog, SelfFenceTime: 200 * time.Millisecond, Clock: b.clk}, nil)
	b.g.check = Target.checkSyntax
	b.g.kill = b.kills.kill
	b.g.alive = func(Target) (bool, error) { return false, nil }
	b.h = b.g.arm()
	b.send(t, "register pgid 4242", "ok")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.g.enforce(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// send runs one client command and checks the reply.
func (b *bubbleGuard) send(t *testing.T, line, want string) {
	t.Helper()
	if got, _ := b.g.command(b.h, line, b.log); got != want {
		t.Fatalf("%q: reply %q, want %q", line, got, want)
	}
}

// expiryIn is the argument of "arm" and "feed" for a lock validity that
// ends d from now (negative: ended -d ago).
func (b *bubbleGuard) expiryIn(d time.Duration) string {
	return strconv.FormatInt(b.clk.Mono()+int64(d), 10)
}

// killedAfter advances the bubble's time by d, lets the guard act, and
// reports whether it has killed pgid 4242.
func (b *bubbleGuard) killedAfter(d time.Duration) bool {
	time.Sleep(d)
	synctest.Wait()
	return slices.Contains(b.kills.all(), "pgid 4242")
}

// The guard fences exactly one watchdog_timeout after the last feed, no
// earlier; every feed in time moves the deadline.
func TestGuardExpiresOneWatchdogTimeoutAfterTheLastFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := startBubbleGuard(t)
		far := b.expiryIn(time.Hour) // only the watchdog timeout counts
		b.send(t, "arm "+far, "ok")
		if b.killedAfter(400 * time.Millisecond) {
			t.Fatal("fenced 400ms after arming, before the watchdog timeout")
		}
		b.send(t, "feed "+far, "ok")
		if b.killedAfter(bubbleWatchdog - time.Nanosecond) {
			t.Fatal("fenced before one watchdog timeout after the feed")
		}
		if !b.killedAfter(time.Nanosecond) {
			t.Fatal("not fenced one watchdog timeout after the last feed")
		}
		if b.g.Fences() != 1 {
			t.Errorf("fences = %d, want 1", b.g.Fences())
		}
		b.send(t, "feed "+far, "err fenced")
	})
}

// The renewal bound: an arm or feed earns a deadline one watchdog_timeout
// after it arrives, but never later than one watchdog_timeout after the
// lock's validity end it carries. A feed that comes after that end so
// earns nothing beyond the safety bound.
func TestGuardDeadlineNeverOutlivesTheValidityByMoreThanTheWatchdogTimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		validity time.Duration // the validity end, from the arm
		fenceIn  time.Duration // when the guard must fence, from the arm
	}{
		{"validity ahead: one timeout after the arm", time.Hour, bubbleWatchdog},
		{"validity ends at the arm", 0, bubbleWatchdog},
		{"validity ended 200ms before the arm", -200 * time.Millisecond, bubbleWatchdog - 200*time.Millisecond},
		{"validity ended 599ms before the arm", -599 * time.Millisecond, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := startBubbleGuard(t)
				b.send(t, "arm "+b.expiryIn(tc.validity), "ok")
				if b.killedAfter(tc.fenceIn - time.Nanosecond) {
					t.Fatalf("fenced before %v", tc.fenceIn)
				}
				if !b.killedAfter(time.Nanosecond) {
					t.Fatalf("not fenced %v after the arm", tc.fenceIn)
				}
			})
		})
	}
	t.Run("a late feed earns only up to the validity end plus the timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := startBubbleGuard(t)
			end := b.expiryIn(100 * time.Millisecond)
			b.send(t, "arm "+end, "ok") // deadline: arm + 600ms
			b.killedAfter(300 * time.Millisecond)
			b.send(t, "feed "+end, "ok") // 200ms after the end: deadline arm + 700ms, not feed + 600ms
			if b.killedAfter(400*time.Millisecond - time.Nanosecond) {
				t.Fatal("fenced before the validity end plus the watchdog timeout")
			}
			if !b.killedAfter(time.Nanosecond) {
				t.Fatal("a late feed kept the services alive past the validity end plus the watchdog timeout")
			}
		})
	})
	t.Run("an arm past its deadline fences at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := startBubbleGuard(t)
			b.send(t, "arm "+b.expiryIn(-bubbleWatchdog), "err fenced")
			if !slices.Contains(b.kills.all(), "pgid 4242") {
				t.Fatal("an arm after its deadline did not fence")
			}
		})
	})
	t.Run("an older expiry never moves the deadline back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := startBubbleGuard(t)
			b.send(t, "arm "+b.expiryIn(time.Hour), "ok")
			b.send(t, "feed "+b.expiryIn(-500*time.Millisecond), "ok") // delayed on the way
			if b.killedAfter(bubbleWatchdog - time.Nanosecond) {
				t.Fatal("a stale feed moved the deadline back")
			}
			if !b.killedAfter(time.Nanosecond) {
				t.Fatal("not fenced at the deadline of the arm")
			}
		})
	})
}
