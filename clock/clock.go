// Package clock is the one time source of haxd's timed adapters (the
// guard, the agent's watchdog feeder): production passes System, tests a
// fake or System inside a testing/synctest bubble. It imports nothing of
// haxd, so that every package may use it.
package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock is a source of time. Deadlines are computed with time.Time
// arithmetic, which uses the monotonic reading of System's Now.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// Mono returns CLOCK_MONOTONIC in nanoseconds. Every process on a host
	// reads the same CLOCK_MONOTONIC (outside time namespaces), so one
	// process (the agent) can express an instant in it that another (the
	// guard) converts to its own Now.
	Mono() int64
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was
	// still pending.
	Stop() bool
}

// System is the real clock.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (System) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

// Mono reads CLOCK_MONOTONIC.
func (System) Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Cannot happen on Linux. 0 makes every expiry a client sends
		// lie in the future, so a guard's deadlines count from the
		// feed alone.
		return 0
	}
	return ts.Nano()
}

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time { return s.t.C }
func (s sysTimer) Stop() bool          { return s.t.Stop() }

// Since is a Clock whose Mono counts the time since Epoch on Now, for
// tests inside a testing/synctest bubble (where System's Now and timers
// are the bubble's fake time but CLOCK_MONOTONIC is not).
type Since struct {
	System
	// Epoch is Mono's zero; Mono returns at least 1.
	Epoch time.Time
}

// Mono returns the nanoseconds since Epoch, plus 1.
func (s Since) Mono() int64 { return int64(time.Since(s.Epoch)) + 1 }
