package store

import (
	"sync"
	"time"
)

// dedupWindow is how long a repeated raft complaint about the same peer is
// suppressed after it was logged. With a peer dead, raft retries its
// heartbeat and replication many times a second, forever; one line per
// window (with the count of suppressed repeats) says the same.
const dedupWindow = 30 * time.Second

// dedupMaxKeys bounds the limiter's memory; older keys are pruned.
const dedupMaxKeys = 256

// logDedup suppresses a log line whose key was logged within the window.
// It is safe for concurrent use.
type logDedup struct {
	now    func() time.Time
	window time.Duration
	mu     sync.Mutex
	seen   map[string]*dedupEntry
}

type dedupEntry struct {
	last       time.Time // when the line was last let through
	suppressed int       // repeats dropped since
}

func newLogDedup(now func() time.Time, window time.Duration) *logDedup {
	return &logDedup{now: now, window: window, seen: map[string]*dedupEntry{}}
}

// allow reports whether a line with key is to be logged now, and how many
// repeats were suppressed since it was last logged.
func (d *logDedup) allow(key string) (ok bool, suppressed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	e := d.seen[key]
	if e != nil && now.Sub(e.last) < d.window {
		e.suppressed++
		return false, 0
	}
	if e == nil {
		if len(d.seen) >= dedupMaxKeys {
			for k, old := range d.seen {
				if now.Sub(old.last) >= d.window {
					delete(d.seen, k)
				}
			}
		}
		if len(d.seen) >= dedupMaxKeys {
			return true, 0 // full of live keys: never hide a new line
		}
		e = &dedupEntry{}
		d.seen[key] = e
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}
