package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"haxd/ha"
	"haxd/sim"
)

// SimCmd groups the simulator commands.
type SimCmd struct {
	Run    SimRunCmd    `cmd:"" help:"Replay one scenario directory and print its log."`
	Random SimRandomCmd `cmd:"" help:"Generate random clusters and fault schedules and check the invariant."`
}

// SimRunCmd is `haxd sim run`.
type SimRunCmd struct {
	LogFormat string `name:"log-format" enum:"pve,text,json" default:"pve" help:"Log format: pve (log.expect lines), text or json (slog)."`
	Quiet     bool   `help:"Print only the log (no summary on stderr)."`
	Timing    string `enum:"pve,fast" default:"pve" help:"Timing profile: pve (PVE's timings) or fast (haxd's defaults)."`
	Rounds    string `enum:"auto,serial,concurrent" default:"auto" help:"Round model: serial (PVE's, one node after the other), concurrent (all nodes at once), or auto (serial with --timing pve, concurrent with fast)."`
	Seed      int64  `default:"0" help:"Seed for the request UIDs."`
	Dir       string `arg:"" help:"Scenario directory."`
}

// Run replays the scenario; it exits with status 2 when the scenario is
// bad (it cannot be loaded, or a command is malformed or unknown) and 1
// when the invariant check failed.
func (c *SimRunCmd) Run(env *Env) error {
	if code := c.run(env.Stdout, env.Stderr); code != 0 {
		return exitError{code: code} // run said why on stderr
	}
	return nil
}

func (c *SimRunCmd) run(stdout, stderr io.Writer) int {
	timing, err := ha.TimingProfile(c.Timing)
	if err != nil {
		fmt.Fprintln(stderr, "haxd sim run:", err)
		return 2
	}
	sc, err := sim.LoadScenario(c.Dir)
	if err != nil {
		fmt.Fprintln(stderr, "haxd sim run:", err)
		return 2
	}
	var sink sim.Sink
	switch c.LogFormat {
	case "text":
		sink = sim.SlogWriter(slog.NewTextHandler(stdout, sim.SlogHandlerOptions()))
	case "json":
		sink = sim.SlogWriter(slog.NewJSONHandler(stdout, sim.SlogHandlerOptions()))
	default:
		sink = sim.PVEWriter(stdout)
	}
	concurrent := c.Rounds == "concurrent" || (c.Rounds == "auto" && c.Timing == "fast")
	res, err := sim.Run(sc, sim.Options{Timing: timing, Seed: c.Seed, Log: sink, Concurrent: concurrent})
	if err != nil {
		fmt.Fprintln(stderr, "haxd sim run:", err)
		return 2
	}
	if !c.Quiet {
		fmt.Fprintf(stderr, "simulated %v, %d log lines, %d services\n", res.End, res.Lines, len(res.ManagerStatus.ServiceStatus))
	}
	if res.Err != nil {
		fmt.Fprintln(stderr, "haxd sim run:", res.Err)
		if errors.Is(res.Err, sim.ErrInvariant) {
			return 1 // haxd broke its one rule
		}
		return 2 // the scenario is at fault: a malformed or unknown command
	}
	return 0
}

// SimRandomCmd is `haxd sim random`.
type SimRandomCmd struct {
	Seed     int64  `default:"1" help:"Seed of the first run; run i uses seed+i."`
	Runs     int    `default:"100" help:"Number of runs."`
	NodesMax int    `name:"nodes-max" default:"29" help:"Largest cluster size (3 to 29); half of the clusters have at most 7 nodes."`
	Timing   string `enum:"pve,fast,mixed" default:"pve" help:"Timing profile: pve, fast, or mixed (even seeds pve, odd seeds fast)."`
	Rounds   string `enum:"concurrent,serial" default:"concurrent" help:"Round model: concurrent (all nodes at once) or serial (PVE's, at most 29 nodes with pve and 11 with fast)."`
	Jobs     int    `default:"0" help:"Runs replayed in parallel; 0 means one per CPU. The output is the same for any value."`
	Dump     string `help:"Write the scenario of every failing run into this directory."`
	Verbose  bool   `short:"v" help:"Print one line per run."`
}

// Run generates and replays the runs; it exits with status 1 if any failed.
func (c *SimRandomCmd) Run(env *Env) error {
	if code := c.run(env.Stdout, env.Stderr); code != 0 {
		return exitError{code: code} // run said why on stderr
	}
	return nil
}

// timingOf returns the timing profile name of the run with seed.
func (c *SimRandomCmd) timingOf(seed int64) string {
	if c.Timing != "mixed" {
		return c.Timing
	}
	if seed%2 == 0 {
		return "pve"
	}
	return "fast"
}

// randomRun is the outcome of one random run.
type randomRun struct {
	gen    *sim.Generated
	res    *sim.Result
	err    error
	timing string
}

func (c *SimRandomCmd) run(stdout, stderr io.Writer) int {
	for _, name := range []string{"pve", "fast"} {
		if _, err := ha.TimingProfile(name); err != nil {
			fmt.Fprintln(stderr, "haxd sim random:", err)
			return 2
		}
	}
	if c.NodesMax < 3 || c.NodesMax > 29 {
		fmt.Fprintf(stderr, "haxd sim random: --nodes-max %d: expected 3 to 29\n", c.NodesMax)
		return 2
	}
	if c.Runs < 0 {
		fmt.Fprintf(stderr, "haxd sim random: --runs %d: expected 0 or more\n", c.Runs)
		return 2
	}
	if c.Jobs < 0 {
		fmt.Fprintf(stderr, "haxd sim random: --jobs %d: expected 0 or more\n", c.Jobs)
		return 2
	}
	jobs := c.Jobs
	if jobs == 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	// Runs are replayed by jobs goroutines and reported in seed order:
	// run i is printed once runs 0..i-1 were, so the output does not
	// depend on the number of jobs or on scheduling.
	results := make([]chan randomRun, c.Runs)
	for i := range results {
		results[i] = make(chan randomRun, 1)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] <- c.one(c.Seed + int64(i))
			}
		}()
	}
	go func() {
		for i := range c.Runs {
			next <- i
		}
		close(next)
	}()
	failed := 0
	for i := range c.Runs {
		r := <-results[i]
		seed := c.Seed + int64(i)
		replay := fmt.Sprintf("haxd sim random --seed %d --runs 1 --nodes-max %d --timing %s --rounds %s", seed, c.NodesMax, r.timing, c.Rounds)
		if r.err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL seed %d: %v (replay: %s)\n", seed, r.err, replay)
			if c.Dump != "" {
				r.gen.Files["README"] = []byte(fmt.Sprintf("Random scenario %d, failed with: %v\n\nReplay: %s\n   or: haxd sim run --timing %s --rounds %s DIR\n",
					seed, r.err, replay, r.timing, c.Rounds))
				if derr := r.gen.WriteDir(fmt.Sprintf("%s/seed-%d", c.Dump, seed)); derr != nil {
					fmt.Fprintln(stderr, "haxd sim random:", derr)
				}
			}
			continue
		}
		if c.Verbose {
			fmt.Fprintf(stdout, "ok   seed %d: %s, %s timing, ended at %v\n", seed, r.gen.Summary(), r.timing, r.res.End)
		}
	}
	wg.Wait()
	fmt.Fprintf(stdout, "%d runs, %d failed\n", c.Runs, failed)
	fmt.Fprintf(stderr, "haxd sim random: %d runs in %v with %d jobs\n", c.Runs, time.Since(start).Round(time.Millisecond), jobs)
	if failed > 0 {
		return 1
	}
	return 0
}

// one generates and replays the run with seed.
func (c *SimRandomCmd) one(seed int64) randomRun {
	name := c.timingOf(seed)
	timing, _ := ha.TimingProfile(name) // checked in run
	gen := sim.Generate(seed, sim.GenOptions{NodesMax: c.NodesMax})
	res, err := gen.Run(sim.Options{Timing: timing, Seed: seed, Concurrent: c.Rounds == "concurrent"})
	if err == nil && res.Err != nil {
		err = res.Err
	}
	return randomRun{gen: gen, res: res, err: err, timing: name}
}
