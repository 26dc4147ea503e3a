package fence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Watchdog is the watchdog of one daemon (CRM or LRM) backed by the guard:
// the three ha.Env watchdog methods map to Open, Update and Close. The
// agent gives each daemon its own Watchdog (its own guard handle), as PVE's
// watchdog-mux gives each daemon a client. Methods are safe for concurrent
// use.
type Watchdog struct {
	// Path is the guard's socket.
	Path string
	// Timeout is the agent's watchdog_timeout; Open refuses a guard whose
	// timeout is longer, since the safety inequality was checked with
	// this one.
	Timeout time.Duration

	mu sync.Mutex
	c  *Client
}

// ErrNotOpen is returned by Watchdog methods that need an open handle.
var ErrNotOpen = errors.New("watchdog not open")

// Open arms a guard handle. Opening an open Watchdog is an error.
func (w *Watchdog) Open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c != nil {
		return errors.New("open watchdog: already open")
	}
	c, err := Open(context.Background(), w.Path)
	if err != nil {
		return fmt.Errorf("open watchdog: %w", err)
	}
	if err := c.CheckTimeout(w.Timeout); err != nil {
		c.Close()
		return fmt.Errorf("open watchdog: %w", err)
	}
	w.c = c
	return nil
}

// Update feeds the handle.
func (w *Watchdog) Update() error {
	c, err := w.client()
	if err != nil {
		return err
	}
	if err := c.Feed(); err != nil {
		return fmt.Errorf("feed watchdog: %w", err)
	}
	return nil
}

// Close disarms the handle gracefully; only call it when nothing this
// daemon started still runs.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	c := w.c
	w.c = nil
	w.mu.Unlock()
	if c == nil {
		return ErrNotOpen
	}
	return c.Close()
}

// Register adds a service's process group or cgroup to the targets the
// guard kills when it fences.
func (w *Watchdog) Register(t Target) error {
	c, err := w.client()
	if err != nil {
		return err
	}
	return c.Register(t)
}

// Unregister removes a target, for a service that stopped cleanly.
func (w *Watchdog) Unregister(t Target) error {
	c, err := w.client()
	if err != nil {
		return err
	}
	return c.Unregister(t)
}

// FenceNow makes the guard fence at once.
func (w *Watchdog) FenceNow() error {
	c, err := w.client()
	if err != nil {
		return err
	}
	return c.FenceNow()
}

func (w *Watchdog) client() (*Client, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c == nil {
		return nil, ErrNotOpen
	}
	return w.c, nil
}
