package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"haxd/internal/invariant"
)

// DemoServiceCmd is a tiny service for demos and integration tests: it
// records a heartbeat with the monotonic clock every interval until it is
// stopped, so that internal/invariant can prove no two instances of one
// service ever ran at once.
type DemoServiceCmd struct {
	Dir      string        `help:"Directory for heartbeat files." required:""`
	Name     string        `help:"Service name (default: $HAXD_SID)." env:"HAXD_SID"`
	Node     string        `help:"Node name (default: $HAXD_NODE)." env:"HAXD_NODE"`
	Interval time.Duration `help:"Heartbeat period." default:"20ms"`
}

// Run beats until SIGTERM or SIGINT.
func (c *DemoServiceCmd) Run() error {
	if c.Name == "" || c.Node == "" {
		return fmt.Errorf("demo-service: --name and --node (or HAXD_SID and HAXD_NODE) are required")
	}
	rec, err := invariant.NewRecorder(c.Dir, c.Name, c.Node)
	if err != nil {
		return fmt.Errorf("demo-service: %w", err)
	}
	defer rec.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		if err := rec.Beat(); err != nil {
			return fmt.Errorf("demo-service: heartbeat: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
