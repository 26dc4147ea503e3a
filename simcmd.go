package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

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
	Seed      int64  `default:"0" help:"Seed for the request UIDs."`
	Dir       string `arg:"" help:"Scenario directory."`
}

// Run replays the scenario; it exits with status 2 when the scenario is
// bad (it cannot be loaded, or a command is malformed or unknown) and 1
// when the invariant check failed.
func (c *SimRunCmd) Run() error {
	if code := c.run(os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
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
	res, err := sim.Run(sc, sim.Options{Timing: timing, Seed: c.Seed, Log: sink})
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
	NodesMax int    `name:"nodes-max" default:"7" help:"Largest cluster size (3 to 29)."`
	Timing   string `enum:"pve,fast" default:"pve" help:"Timing profile."`
	Dump     string `help:"Write the scenario of every failing run into this directory."`
	Verbose  bool   `short:"v" help:"Print one line per run."`
}

// Run generates and replays the runs; it exits with status 1 if any failed.
func (c *SimRandomCmd) Run() error {
	if code := c.run(os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
	}
	return nil
}

func (c *SimRandomCmd) run(stdout, stderr io.Writer) int {
	timing, err := ha.TimingProfile(c.Timing)
	if err != nil {
		fmt.Fprintln(stderr, "haxd sim random:", err)
		return 2
	}
	if c.NodesMax < 3 || c.NodesMax > 29 {
		fmt.Fprintf(stderr, "haxd sim random: --nodes-max %d: expected 3 to 29\n", c.NodesMax)
		return 2
	}
	failed := 0
	for i := range c.Runs {
		seed := c.Seed + int64(i)
		gen := sim.Generate(seed, sim.GenOptions{NodesMax: c.NodesMax})
		res, err := gen.Run(sim.Options{Timing: timing, Seed: seed})
		replay := fmt.Sprintf("haxd sim random --seed %d --runs 1 --nodes-max %d --timing %s", seed, c.NodesMax, c.Timing)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL seed %d: %v (replay: %s)\n", seed, err, replay)
			if c.Dump != "" {
				if derr := gen.WriteDir(fmt.Sprintf("%s/seed-%d", c.Dump, seed)); derr != nil {
					fmt.Fprintln(stderr, "haxd sim random:", derr)
				}
			}
			continue
		}
		if c.Verbose {
			fmt.Fprintf(stdout, "ok   seed %d: %s, ended at %v\n", seed, gen.Summary(), res.End)
		}
	}
	fmt.Fprintf(stdout, "%d runs, %d failed\n", c.Runs, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
