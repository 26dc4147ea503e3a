// Command heartbeat is a small drop-in for `haxd demo-service` for the
// scale benchmark: the same command line (`heartbeat demo-service --dir DIR
// [--interval D]`, the service and node from HAXD_SID and HAXD_NODE) and
// the same heartbeat files (internal/invariant), in a process of ~2 MiB
// resident instead of the ~15 MiB of the full haxd binary, so that 2,000
// services fit on one machine. The first argument must be "demo-service":
// internal/cluster recognises the benchmark's services by it when it kills
// a node.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"haxd/internal/invariant"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "heartbeat:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "demo-service" {
		return fmt.Errorf("usage: heartbeat demo-service --dir DIR [--interval D] (got %q)", args)
	}
	fs := flag.NewFlagSet("demo-service", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for heartbeat files (required)")
	interval := fs.Duration("interval", invariant.Interval, "heartbeat period")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	sid, node := os.Getenv("HAXD_SID"), os.Getenv("HAXD_NODE")
	switch {
	case *dir == "":
		return fmt.Errorf("--dir is required")
	case *interval <= 0:
		return fmt.Errorf("--interval %v: expected > 0", *interval)
	case sid == "" || node == "":
		return fmt.Errorf("HAXD_SID (%q) and HAXD_NODE (%q) must be set", sid, node)
	}
	rec, err := invariant.NewRecorder(*dir, sid, node)
	if err != nil {
		return err
	}
	defer rec.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		if err := rec.Beat(); err != nil {
			return fmt.Errorf("heartbeat of %s: %w", sid, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
