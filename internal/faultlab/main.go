// Command faultlab runs seeded fault schedules against real haxd agents in
// network namespaces it creates, and checks every run: no service ever ran
// on two nodes at once, no healthy node self-fenced, every service of a
// dead node ran again elsewhere within a bound, no service was recovered
// needlessly, and how long services were down. It is a lab, not a test: it
// prints a table per fault kind (markdown, also written to -out) and exits
// non-zero only when a service ran twice at once or the lab itself failed.
//
//	go build -o haxd . && go run ./internal/faultlab -haxd ./haxd -runs 2
//	go run ./internal/faultlab -haxd ./haxd -kinds partition,loss5 -nodes 5 -runs 3 -seed 7
//	go build -tags faultlab -o haxd-lab . && go run ./internal/faultlab -haxd ./haxd-lab -kinds clock-step
//
// Each run starts a fresh cluster (fast timing profile; the node count
// cycles through -nodes) with one heartbeat service per node, waits until
// every service beats on its node and the nodes agree on the CRM master,
// applies the fault (its victim, durations and sizes drawn from the run's
// seed), heals it, watches for a while, then kills the cluster and
// analyses the heartbeat records and the logs. Every run removes its
// namespaces, mounts and processes on every exit path, Ctrl-C included.
//
// It needs root, iproute2 and iptables (asymmetric partitions, packet
// loss); delay needs tc netem in the kernel and is reported as not tested
// where it is missing. The clock-step kind needs a binary built with
// `-tags faultlab`, which reads a per-node wall-clock offset from the
// node's data dir (see agent/clockoffset_faultlab.go); with another binary
// the kind is reported as not tested. The disk kinds mount a 64 MiB tmpfs
// on every node's data dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"haxd/internal/netlab"
)

// options are the command line flags.
type options struct {
	bin      string
	seed     uint64
	runs     int
	kinds    []string
	nodes    []int
	out      string
	bound    time.Duration
	lossTime time.Duration
	observe  time.Duration
	keep     bool
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultlab:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, opts, os.Stdout)
	stop()
	os.Exit(code)
}

// parseFlags parses and checks the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("faultlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var kinds, nodes string
	fs.StringVar(&o.bin, "haxd", "./haxd", "haxd binary to run")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the fault schedules (victims, durations, sizes)")
	fs.IntVar(&o.runs, "runs", 2, "runs per fault kind")
	fs.StringVar(&kinds, "kinds", "all", "comma-separated fault kinds, or all: "+strings.Join(kindNames(), ","))
	fs.StringVar(&nodes, "nodes", "3,5", "comma-separated cluster sizes; run i of a kind uses size i mod len")
	fs.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	fs.DurationVar(&o.bound, "bound", 10*time.Second, "a dead node's service must run elsewhere within this time from the fault")
	fs.DurationVar(&o.lossTime, "loss-time", 30*time.Second, "how long packet loss and delay last")
	fs.DurationVar(&o.observe, "observe", 8*time.Second, "how long to watch the cluster after a fault healed")
	fs.BoolVar(&o.keep, "keep", false, "keep every run's directory (logs, heartbeats); failed runs' are always kept")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	abs, err := filepath.Abs(o.bin)
	if err != nil {
		return o, fmt.Errorf("-haxd %q: %w", o.bin, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return o, fmt.Errorf("-haxd %q: not an executable file", o.bin)
	}
	o.bin = abs
	if o.runs < 1 {
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	if o.bound <= 0 || o.lossTime <= 0 || o.observe <= 0 {
		return o, errors.New("-bound, -loss-time and -observe must be positive")
	}
	if o.kinds, err = parseKinds(kinds); err != nil {
		return o, err
	}
	if o.nodes, err = parseNodes(nodes); err != nil {
		return o, err
	}
	return o, nil
}

// parseKinds parses -kinds.
func parseKinds(s string) ([]string, error) {
	if s == "all" {
		return kindNames(), nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if findKind(k) == nil {
			return nil, fmt.Errorf("-kinds: unknown fault kind %q; known: %s", k, strings.Join(kindNames(), ","))
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// parseNodes parses -nodes.
func parseNodes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 || n > 9 {
			return nil, fmt.Errorf("-nodes: cluster size %q: want a number from 3 to 9", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run runs every kind's runs and prints the report; it returns the exit
// code.
func run(ctx context.Context, o options, stdout io.Writer) int {
	if err := netlab.Check(); err != nil {
		fmt.Fprintf(stdout, "!!! FAULT LAB SKIPPED: %v\n", err)
		return 3
	}
	env := probeEnv(ctx, o)
	fmt.Fprintf(stdout, "faultlab: seed %d, %d runs per kind, kinds %s, nodes %v\n", o.seed, o.runs, strings.Join(o.kinds, ","), o.nodes)
	for _, l := range env.notes() {
		fmt.Fprintln(stdout, "faultlab:", l)
	}
	var results []result
	for _, name := range o.kinds {
		k := findKind(name)
		for i := range o.runs {
			if ctx.Err() != nil {
				break
			}
			// A run's schedule depends on -seed, the kind and the run's
			// number only, so that one kind can be rerun alone.
			seed := o.seed*1_000_003 + uint64(i)
			spec := runSpec{kind: k, index: i + 1, nodes: o.nodes[i%len(o.nodes)], seed: seed,
				rng: rand.New(rand.NewPCG(seed, kindHash(name))), opts: o, env: env}
			if why := env.unsupported(k); why != "" {
				results = append(results, result{kind: name, run: i + 1, nodes: spec.nodes, seed: seed, skipped: why})
				fmt.Fprintf(stdout, "%-17s run %d: NOT TESTED: %s\n", name, i+1, why)
				continue
			}
			start := time.Now()
			r := runOne(ctx, spec)
			results = append(results, r)
			fmt.Fprintf(stdout, "%-17s run %d (%d nodes, seed %d, %.0f s): %s\n", name, i+1, spec.nodes, seed, time.Since(start).Seconds(), r.summary())
		}
	}
	report := renderReport(o, env, results)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			fmt.Fprintf(stdout, "faultlab: write %s: %v\n", o.out, err)
			return 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "faultlab: interrupted; every namespace, mount and process of the lab was removed")
		return 130
	}
	code := 0
	for _, r := range results {
		if r.overlaps > 0 {
			fmt.Fprintf(stdout, "faultlab: SAFETY VIOLATED in %s run %d: a service ran on two nodes at once (dir %s)\n", r.kind, r.run, r.dir)
			code = 1
		}
		if r.err != nil {
			fmt.Fprintf(stdout, "faultlab: %s run %d failed: %v\n", r.kind, r.run, r.err)
			code = 1
		}
	}
	return code
}

// labEnv is what this machine and binary can do.
type labEnv struct {
	filters error // why iptables cannot be used (nil: it can)
	netem   error // why tc netem cannot be used
	clock   error // why the binary cannot step its clock
}

// probeEnv finds out what the machine and binary support.
func probeEnv(ctx context.Context, o options) labEnv {
	var e labEnv
	e.filters = netlab.CheckFilters()
	e.netem = errors.New("not probed")
	if nw, err := netlab.Create(ctx, labTag("p"), 1, "10.214.9"); err != nil {
		e.netem = err
	} else {
		e.netem = nw.NetemError(ctx)
		_ = nw.Remove()
	}
	e.clock = clockSupport(ctx, o.bin)
	return e
}

func (e labEnv) notes() []string {
	var out []string
	if e.filters != nil {
		out = append(out, "packet filters unavailable, asymmetric partitions and loss NOT TESTED: "+e.filters.Error())
	}
	if e.netem != nil {
		out = append(out, "tc netem unavailable, delay NOT TESTED: "+firstLine(e.netem.Error()))
	}
	if e.clock != nil {
		out = append(out, "wall-clock step NOT TESTED: "+e.clock.Error())
	}
	return out
}

// unsupported says why kind k cannot run here ("" when it can).
func (e labEnv) unsupported(k *kind) string {
	switch {
	case k.needs == needFilters && e.filters != nil:
		return e.filters.Error()
	case k.needs == needNetem && e.netem != nil:
		return "tc netem: " + firstLine(e.netem.Error())
	case k.needs == needClock && e.clock != nil:
		return e.clock.Error()
	}
	return ""
}

// kindHash returns the FNV-1a hash of a kind's name: the second word of
// its runs' random source.
func kindHash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// labTag returns a namespace tag unique to this process (at most 8
// bytes).
func labTag(suffix string) string {
	return fmt.Sprintf("fl%d%s", os.Getpid()%100000, suffix)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
