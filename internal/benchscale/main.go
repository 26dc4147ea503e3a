// Command benchscale measures what a real haxd cluster costs as it grows:
// N agents on loopback (fast profile by default) running M exec services,
// one tiny heartbeat process each (internal/benchscale/heartbeat, the
// heartbeat files of internal/invariant). It is a benchmark, not a test:
// it prints and records measurements.
//
//	go build -o haxd . && go run ./internal/benchscale -haxd ./haxd -out bench-scale \
//	    -cells 3x100,9x100,9x500,25x100
//	go run ./internal/benchscale -haxd ./haxd -out bench-scale -nodes 3,9,15,25 -services 100,500,2000
//
// For each cell (N nodes × M services), on a fresh cluster:
//
//  1. The M services are added through the agents' API (the same call as
//     `haxd ha add`; -add cli runs the CLI itself), spread round-robin
//     over the nodes, -add-workers at a time; the add rate and the time
//     until every service beats are recorded.
//  2. After -settle, a steady-state window of -window: per agent, CPU
//     (utime+stime from /proc, % of one core) and RSS; raft log bytes,
//     entries and log-store writes per second (the agent's
//     haxd_raft_log_*_total metrics); bytes written to disk per second
//     (/proc/PID/io write_bytes); the master's CRM round duration
//     (haxd_crm_round_seconds). Nothing else runs against the cluster in
//     that window.
//  3. `haxd ha status` run -status-runs times against a follower and the
//     master: wall time of the CLI, median and max.
//  4. Failover: the follower (never the master) holding the most services
//     is killed the hard way (agent, guard and services, SIGKILL); the
//     time from the kill to the first heartbeat of the first and of the
//     last of its services on another node. Then the invariant check
//     runs over every heartbeat recorded in the cell.
//  5. The killed node is restarted; once every node is online again and
//     after -settle, a window of -strace-window with `strace -f -c -e
//     trace=fsync,fdatasync` attached to the master's agent and one
//     follower's: fsync calls per second. strace stops the traced agent
//     at every syscall, which slows it (under load it may lose its lock,
//     counted apart), so this window comes last. The log-store writes of
//     step 2 (bbolt commits, two fdatasync calls each) are the
//     undisturbed cross-check. The invariant check runs again.
//
// A cell that fails (a timeout, services not recovered) is recorded with
// its error and what it measured up to then, and the grid goes on; a
// rerun retries it.
//
// The 1-minute load average of the machine is recorded with every window.
// Each finished cell is appended to OUT/results.json at once; a rerun
// skips the cells already there (-force reruns them), so an interrupted
// grid resumes. OUT/results.csv, OUT/results.md and OUT/scale.png (failover
// time and raft bytes/s against M, one line per N) are rewritten from all
// results after every cell.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.haxd, "haxd", "./haxd", "haxd binary")
	flag.StringVar(&o.heartbeat, "heartbeat", "", "heartbeat service binary (default: built from ./internal/benchscale/heartbeat with go build)")
	flag.StringVar(&o.out, "out", "bench-scale", "directory for results.json, results.csv, results.md and scale.png")
	cells := flag.String("cells", "", "cells to run, NxM comma-separated (e.g. 3x100,9x500); overrides -nodes and -services")
	nodes := flag.String("nodes", "3,9,15,25", "node counts of the grid")
	services := flag.String("services", "100,500,2000", "service counts of the grid")
	flag.StringVar(&o.timing, "timing", "fast", "timing profile: fast or pve")
	flag.DurationVar(&o.interval, "interval", 100*time.Millisecond, "heartbeat period of every service (the invariant check sees overlaps longer than this)")
	flag.DurationVar(&o.settle, "settle", 20*time.Second, "wait after every service runs before measuring")
	flag.DurationVar(&o.window, "window", 60*time.Second, "steady-state window for CPU, RSS, raft and disk rates, CRM rounds")
	flag.DurationVar(&o.straceWindow, "strace-window", 20*time.Second, "window of the strace fsync count (0: skip)")
	flag.IntVar(&o.statusRuns, "status-runs", 5, "`haxd ha status` runs per node asked (a follower and the master)")
	flag.StringVar(&o.addVia, "add", "api", "how services are added: api (the agent's API socket) or cli (`haxd ha add`)")
	flag.IntVar(&o.addWorkers, "add-workers", 8, "adds in flight at once")
	flag.BoolVar(&o.force, "force", false, "rerun cells already in results.json")
	flag.BoolVar(&o.keep, "keep", false, "keep each cell's cluster directory (under -out)")
	flag.StringVar(&o.commit, "commit", "", "commit label of the measured code (default: git describe --always --dirty of the current directory)")
	plotOnly := flag.Bool("plot", false, "only rewrite results.csv, results.md and scale.png from results.json")
	flag.Parse()

	grid, err := parseGrid(*cells, *nodes, *services)
	if err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fatal(fmt.Errorf("create -out %s: %w", o.out, err))
	}
	rs, err := loadResults(o.out)
	if err != nil {
		fatal(err)
	}
	if *plotOnly {
		if err := writeOutputs(o.out, rs); err != nil {
			fatal(err)
		}
		return
	}
	if o.addVia != "api" && o.addVia != "cli" {
		fatal(fmt.Errorf("-add %q: expected api or cli", o.addVia))
	}
	if o.addWorkers < 1 || o.statusRuns < 1 {
		fatal(fmt.Errorf("-add-workers %d and -status-runs %d: expected >= 1", o.addWorkers, o.statusRuns))
	}
	if o.window <= 0 || o.interval <= 0 {
		fatal(fmt.Errorf("-window %v and -interval %v: expected > 0", o.window, o.interval))
	}
	if o.haxd, err = filepath.Abs(o.haxd); err != nil {
		fatal(err)
	}
	if o.commit == "" {
		o.commit = gitDescribe()
	}
	fmt.Printf("command: %s\ncommit: %s\n", strings.Join(os.Args, " "), o.commit)
	if o.straceWindow > 0 {
		if _, err := exec.LookPath("strace"); err != nil {
			fatal(fmt.Errorf("strace not found (install it, or -strace-window 0 to skip the fsync count): %w", err))
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if o.heartbeat == "" {
		if o.heartbeat, err = buildHeartbeat(ctx, o.out); err != nil {
			fatal(err)
		}
	}
	if o.heartbeat, err = filepath.Abs(o.heartbeat); err != nil {
		fatal(err)
	}
	for _, c := range grid {
		if !o.force && slices.ContainsFunc(rs, func(r Result) bool { return r.Nodes == c[0] && r.Services == c[1] && r.Error == "" }) {
			fmt.Printf("cell %dx%d: in %s already, skipped (-force reruns it)\n", c[0], c[1], filepath.Join(o.out, resultsJSON))
			continue
		}
		r, err := runCell(ctx, o, c[0], c[1])
		if ctx.Err() != nil {
			fmt.Printf("cell %dx%d: interrupted, not recorded\n", c[0], c[1])
			break
		}
		if err != nil {
			r.Error = err.Error()
			fmt.Printf("cell %dx%d FAILED: %v\n", c[0], c[1], err)
		}
		rs = slices.DeleteFunc(rs, func(x Result) bool { return x.Nodes == r.Nodes && x.Services == r.Services })
		rs = append(rs, r)
		if err := saveResults(o.out, rs); err != nil {
			fatal(err)
		}
		if err := writeOutputs(o.out, rs); err != nil {
			fatal(err)
		}
		fmt.Println(markdownHeader() + markdownRow(r))
	}
	fmt.Printf("\nresults: %s\n", o.out)
}

// options are the command's flags.
type options struct {
	haxd, heartbeat, out, timing, addVia, commit string
	interval, settle, window, straceWindow       time.Duration
	statusRuns, addWorkers                       int
	force, keep                                  bool
}

// parseGrid returns the cells to run as [nodes, services] pairs.
func parseGrid(cells, nodes, services string) ([][2]int, error) {
	var out [][2]int
	if cells != "" {
		for _, c := range strings.Split(cells, ",") {
			n, m, ok := strings.Cut(strings.TrimSpace(c), "x")
			a, err1 := strconv.Atoi(n)
			b, err2 := strconv.Atoi(m)
			if !ok || err1 != nil || err2 != nil || a < 1 || b < 1 {
				return nil, fmt.Errorf("-cells: %q: expected NODESxSERVICES, both >= 1 (e.g. 9x500)", c)
			}
			out = append(out, [2]int{a, b})
		}
		return out, nil
	}
	ns, err := intList("-nodes", nodes)
	if err != nil {
		return nil, err
	}
	ms, err := intList("-services", services)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		for _, n := range ns {
			out = append(out, [2]int{n, m})
		}
	}
	return out, nil
}

func intList(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: %q: expected a comma-separated list of integers >= 1", flagName, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// buildHeartbeat builds the heartbeat service into dir.
func buildHeartbeat(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "heartbeat")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "haxd/internal/benchscale/heartbeat")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the heartbeat service (or give -heartbeat): %w", err)
	}
	return out, nil
}

func gitDescribe() string {
	b, err := exec.Command("git", "describe", "--always", "--dirty", "--exclude", "*").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchscale:", err)
	os.Exit(1)
}
