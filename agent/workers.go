package agent

import (
	"context"
	"sync"

	"haxd/ha"
)

// workers runs resource actions on goroutines for the LRM (ha.Workers). The
// LRM starts at most Max jobs at once and collects them with Finished, so
// the LRM itself stays single-threaded.
type workers struct {
	ctx     context.Context
	max     int
	mu      sync.Mutex
	running map[ha.SID]bool
	done    map[ha.SID]ha.ExitCode
}

func newWorkers(ctx context.Context, max int) *workers {
	return &workers{ctx: ctx, max: max, running: map[ha.SID]bool{}, done: map[ha.SID]ha.ExitCode{}}
}

// Max implements ha.Workers.
func (w *workers) Max() int { return w.max }

// Start implements ha.Workers: job runs on its own goroutine. A panicking
// resource agent is reported as a failed action, not a crashed agent.
func (w *workers) Start(sid ha.SID, job func(ctx context.Context) ha.ExitCode) {
	w.mu.Lock()
	w.running[sid] = true
	w.mu.Unlock()
	go func() {
		code := ha.ExitError
		defer func() {
			recover() //nolint:errcheck // reported as ExitError below
			w.mu.Lock()
			delete(w.running, sid)
			w.done[sid] = code
			w.mu.Unlock()
		}()
		code = job(w.ctx)
	}()
}

// Finished implements ha.Workers.
func (w *workers) Finished() map[ha.SID]ha.ExitCode {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.done
	w.done = map[ha.SID]ha.ExitCode{}
	return out
}

// Running implements ha.Workers.
func (w *workers) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}
