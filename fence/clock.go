package fence

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the guard's source of time. Deadlines are computed with
// time.Time arithmetic, which uses the monotonic reading of the real clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was
	// still pending.
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time { return s.t.C }
func (s sysTimer) Stop() bool          { return s.t.Stop() }

// MonotonicNow returns CLOCK_MONOTONIC in nanoseconds. Every process on a
// host reads the same CLOCK_MONOTONIC (outside time namespaces), so the
// agent expresses its lock's validity end in it and the guard converts it
// to its own Clock.
func MonotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Cannot happen on Linux. 0 makes every expiry lie in the
		// future, so deadlines count from the feed, as in protocol 1.
		return 0
	}
	return ts.Nano()
}
