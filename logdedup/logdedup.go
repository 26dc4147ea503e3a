// Package logdedup suppresses repeated log lines: a line whose key was let
// through within a window is dropped and counted, so that a library that
// retries many times a second (raft's heartbeats to a dead peer, gossip's
// complaints about a peer with a wrong key) logs one line per window with
// the count of what it suppressed.
package logdedup

import (
	"sync"
	"time"
)

// dedupMaxKeys bounds the limiter's memory; older keys are pruned.
const dedupMaxKeys = 256

// Dedup suppresses a log line whose key was logged within the window.
// It is safe for concurrent use.
type Dedup struct {
	now    func() time.Time
	window time.Duration
	mu     sync.Mutex
	seen   map[string]*dedupEntry
}

type dedupEntry struct {
	last       time.Time // when the line was last let through
	suppressed int       // repeats dropped since
}

// New returns a Dedup that lets a key through at most once per window
// (a duration) of the clock now.
func New(now func() time.Time, window time.Duration) *Dedup {
	return &Dedup{now: now, window: window, seen: map[string]*dedupEntry{}}
}

// Allow reports whether a line with key is to be logged now, and how many
// repeats were suppressed since it was last logged.
func (d *Dedup) Allow(key string) (ok bool, suppressed int) {
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
