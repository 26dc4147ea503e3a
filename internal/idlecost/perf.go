package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"haxd/internal/cluster"
)

// component is a share of an agent's CPU, recognised by the functions on
// the sampled call stack. The first component with a match wins, so the
// specific ones come first and the Go runtime last.
type component struct {
	name  string
	match []string
}

// components returns how perf samples are attributed. Unlike Go's own CPU
// profile, perf also sees the runtime's sysmon thread and the kernel side
// of parking and waking threads, which is most of an idle Go process's
// cost.
func components() []component {
	return []component{
		{"exec backend (resource/exec)", []string{"haxd/resource/exec."}},
		{"ocf backend (resource/ocf)", []string{"haxd/resource/ocf."}},
		{"usage sampling (agent/usage.go)", []string{"publishUsage", "haxd/agent.readProc", "leafSampler"}},
		{"disk probe (agent/diskcheck.go)", []string{"watchDisk", "probeDataDir"}},
		{"lrm rounds (lrm/)", []string{"haxd/lrm."}},
		{"crm rounds (crm/)", []string{"haxd/crm."}},
		{"guard feeds (agent fencer, fence/)", []string{"haxd/agent.(*fencer)", "haxd/fence."}},
		{"metrics/pprof http", []string{"promhttp", "net/http"}},
		{"raft heartbeats (leader side)", []string{"raft.(*Raft).heartbeat"}},
		{"raft replication and RPCs", []string{"raft.(*Raft).replicate", "raft.(*Raft).appendEntries", "raft.(*Raft).processHeartbeat", "raft.(*Raft).processRPC", "raft.(*NetworkTransport)", "raft.(*netConn)"}},
		{"raft other (fsm, log store)", []string{"hashicorp/raft", "raft-boltdb", "bbolt"}},
		{"store (forwarding, read barriers, term checks)", []string{"haxd/store."}},
		{"gossip (memberlist)", []string{"hashicorp/memberlist", "haxd/gossip."}},
		{"agent other", []string{"haxd/"}},
		{"tls/net (caller not on stack)", []string{"crypto/tls", "net."}},
		{"Go GC and allocation", []string{"gcBgMarkWorker", "bgsweep", "bgscavenge", "gcStart", "mallocgc"}},
		{"Go sysmon thread", []string{"runtime.sysmon"}},
		{"Go scheduler (park, wake, timers, netpoll)", []string{"runtime."}},
	}
}

// perfProfiles records every agent with perf for d, all at once, and
// prints each agent's CPU (from /proc over the same d) split by component.
func perfProfiles(cl *cluster.Cluster, d time.Duration) error {
	dir, err := os.MkdirTemp("", "idlecost-perf-")
	if err != nil {
		return fmt.Errorf("perf dir: %w", err)
	}
	defer os.RemoveAll(dir)
	load0 := loadavg()
	type out struct {
		name   string
		cpu    float64
		shares map[string]float64
		err    error
	}
	res := make(chan out, len(cl.Nodes))
	for _, n := range cl.Nodes {
		go func() {
			pid := n.AgentPID()
			t0 := cpuTicks(pid)
			start := time.Now()
			shares, err := perfRecord(pid, d, filepath.Join(dir, n.Name+".data"))
			cpu := float64(cpuTicks(pid)-t0) / 100 / time.Since(start).Seconds() * 100
			res <- out{n.Name, cpu, shares, err}
		}()
	}
	got := map[string]out{}
	for range cl.Nodes {
		r := <-res
		got[r.name] = r
	}
	fmt.Printf("\nCPU by component over %v (perf record -g, %% of one core; the agent's utime+stime meanwhile split by perf's samples), load average before: %s; after: %s\n", d, load0, loadavg())
	fmt.Printf("%-48s", "component")
	for _, n := range cl.Nodes {
		fmt.Printf(" %8s", n.Name)
	}
	fmt.Println()
	for _, c := range append(components(), component{name: "other"}, component{name: "total"}) {
		fmt.Printf("%-48s", c.name)
		for _, n := range cl.Nodes {
			r := got[n.Name]
			switch {
			case r.err != nil:
				fmt.Printf(" %8s", "error")
			case c.name == "total":
				fmt.Printf(" %8.2f", r.cpu)
			default:
				fmt.Printf(" %8.2f", r.shares[c.name]*r.cpu)
			}
		}
		fmt.Println()
	}
	for _, n := range cl.Nodes {
		if r := got[n.Name]; r.err != nil {
			fmt.Printf("%s: %v\n", n.Name, r.err)
		}
	}
	return nil
}

// perfRecord samples pid's call stacks for d and returns each component's
// share of the samples.
func perfRecord(pid int, d time.Duration, data string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	rec := exec.CommandContext(ctx, "perf", "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", data, "--", "sleep", secs)
	if b, err := rec.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("perf record: %w: %s", err, strings.TrimSpace(string(b)))
	}
	b, err := exec.CommandContext(ctx, "perf", "script", "-i", data, "-F", "ip,sym").Output()
	if err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	return classify(string(b)), nil
}

// classify splits perf script output (one blank-line separated call stack
// per sample) into component shares.
func classify(script string) map[string]float64 {
	comps := components()
	counts := map[string]int{}
	total := 0
	for _, sample := range strings.Split(script, "\n\n") {
		frames := strings.Split(strings.TrimSpace(sample), "\n")
		if len(frames) == 0 || frames[0] == "" {
			continue
		}
		total++
		name := "other"
	find:
		for _, c := range comps {
			for _, f := range frames {
				for _, m := range c.match {
					if strings.Contains(f, m) {
						name = c.name
						break find
					}
				}
			}
		}
		counts[name]++
	}
	shares := map[string]float64{}
	for k, v := range counts {
		shares[k] = float64(v) / float64(total)
	}
	return shares
}
