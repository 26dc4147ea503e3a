package store

import "time"

// Clock is the time source of the leader's lock timers. Its readings must
// carry Go's monotonic clock (time.Now does) so that wall clock steps do not
// shorten or stretch a lock; tests inject a fake.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
