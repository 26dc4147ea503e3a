package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"haxd/ha"
	"haxd/internal/bmcsim"
	"haxd/internal/cluster"
)

// fencedTakeover is what the master's store logs when it grants a node's
// agent lock on a fence device's confirmation.
const fencedTakeover = "took over lock on a fence device's confirmation"

// expiredTakeover is what it logs when it grants a lock after its TTL.
const expiredTakeover = `msg="took over expired lock"`

// fenceBMCs is one simulated BMC per node and the fence config using them.
type fenceBMCs struct {
	cfgPath string
	// lockTTL is the agents' lock TTL (profile or -set lock_ttl).
	lockTTL time.Duration
	bmcs    map[string]*bmcsim.BMC
	mu      sync.Mutex
	cl      *cluster.Cluster
}

func startBMCs(ctx context.Context, dir string, nodes int) (*fenceBMCs, error) {
	if m := bmcsim.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("-fence needs %s (apt-get install fence-agents openipmi ipmitool)", strings.Join(m, ", "))
	}
	f := &fenceBMCs{cfgPath: filepath.Join(dir, "fence.cfg"), bmcs: map[string]*bmcsim.BMC{}}
	var cfg strings.Builder
	cfg.WriteString("device ipmi fence_ipmilan ip=127.0.0.1 username=admin password=bench-pw lanplus cipher=3 power_wait=0\n")
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		b, err := bmcsim.Start(ctx, bmcsim.Options{Name: name, Dir: filepath.Join(dir, "bmc-"+name), Password: "bench-pw",
			PowerOff: func() { f.kill(name) }})
		if err != nil {
			f.stop()
			return nil, err
		}
		f.bmcs[name] = b
		fmt.Fprintf(&cfg, "connect ipmi node=%s ipport=%d\n", name, b.Port)
	}
	if err := os.WriteFile(f.cfgPath, []byte(cfg.String()), 0o600); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// attach lets the BMCs' power-off kill the cluster's nodes.
func (f *fenceBMCs) attach(cl *cluster.Cluster) {
	f.mu.Lock()
	f.cl = cl
	f.mu.Unlock()
}

func (f *fenceBMCs) kill(node string) {
	f.mu.Lock()
	cl := f.cl
	f.mu.Unlock()
	if cl != nil {
		cl.KillNode(cl.Node(node))
	}
}

func (f *fenceBMCs) powerOn(node string) error { return f.bmcs[node].PowerOn() }

func (f *fenceBMCs) stop() {
	for _, b := range f.bmcs {
		b.Stop()
	}
}

// countLogs counts the lines of every node's agent log that contain all
// of subs.
func countLogs(cl *cluster.Cluster, subs ...string) int {
	n := 0
	for _, node := range cl.Nodes {
		b, _ := os.ReadFile(node.Log)
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				n++
			}
		}
	}
	return n
}

// setFlags collects repeated -set key=value flags.
type setFlags []string

func (s *setFlags) String() string { return strings.Join(*s, ",") }

func (s *setFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want key=value, got %q", v)
	}
	*s = append(*s, v)
	return nil
}

// logSizes returns the size of every node's agent log.
func logSizes(cl *cluster.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, n := range cl.Nodes {
		if fi, err := os.Stat(n.Log); err == nil {
			out[n.Log] = fi.Size()
		}
	}
	return out
}

// fencePhases splits one fenced failover of node, from killed to running,
// into: failure detection (kill to the master's "online => unknown"), the
// fence device (to the runner's confirmation), recording it and taking the
// lock (to the store's fenced takeover), and the start elsewhere (to the
// first heartbeat). It reads the logs written since marks.
func fencePhases(cl *cluster.Cluster, marks map[string]int64, node string, killed, running time.Time) ([4]time.Duration, bool) {
	var unknown, confirmed, taken time.Time
	eachNewLine(cl, marks, "", func(line string, t time.Time) {
		switch {
		case unknown.IsZero() && strings.Contains(line, "node '"+node+"': state changed from 'online' => 'unknown'"):
			unknown = t
		case confirmed.IsZero() && strings.Contains(line, `msg="fence device confirmed the node off" `) && strings.Contains(line, "node="+node+" "):
			confirmed = t
		case taken.IsZero() && strings.Contains(line, fencedTakeover) && strings.Contains(line, "lock=agent/"+node+" "):
			taken = t
		}
	})
	if unknown.IsZero() || confirmed.IsZero() || taken.IsZero() {
		return [4]time.Duration{}, false
	}
	return [4]time.Duration{unknown.Sub(killed), confirmed.Sub(unknown), taken.Sub(confirmed), running.Sub(taken)}, true
}

// killPhases reads the logs written since marks after node was killed at
// killed: when another node became raft leader (zero when the leadership
// did not change) and when the master took node's expired lock.
func killPhases(cl *cluster.Cluster, marks map[string]int64, node string) (elected, taken time.Time) {
	eachNewLine(cl, marks, node, func(line string, t time.Time) {
		switch {
		case strings.Contains(line, `msg="became raft leader"`) && (elected.IsZero() || t.Before(elected)):
			elected = t
		case strings.Contains(line, expiredTakeover) && strings.Contains(line, "previous_owner="+node) && (taken.IsZero() || t.Before(taken)):
			taken = t
		}
	})
	return elected, taken
}

// eachNewLine calls fn with every line, and its time, that the agent logs
// of the nodes but skip ("" for none) got since marks; lines without a
// time= field are passed over.
func eachNewLine(cl *cluster.Cluster, marks map[string]int64, skip string, fn func(line string, t time.Time)) {
	for _, n := range cl.Nodes {
		if n.Name == skip {
			continue
		}
		b, err := os.ReadFile(n.Log)
		if err != nil || marks[n.Log] > int64(len(b)) {
			continue
		}
		for _, line := range strings.Split(string(b[marks[n.Log]:]), "\n") {
			if t, ok := cluster.LogTime(line); ok {
				fn(line, t)
			}
		}
	}
}

// medianPhase is the median of phase i.
func medianPhase(ps [][4]time.Duration, i int) time.Duration {
	v := make([]time.Duration, len(ps))
	for j, p := range ps {
		v[j] = p[i]
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// lockTTL returns the lock TTL of the timing profile, or the one set with
// -set lock_ttl=D.
func lockTTL(profile string, sets []string) (time.Duration, error) {
	t, err := ha.TimingProfile(profile)
	if err != nil {
		return 0, err
	}
	ttl := t.LockTTL
	for _, kv := range sets {
		if v, ok := strings.CutPrefix(kv, "lock_ttl="); ok {
			if ttl, err = time.ParseDuration(v); err != nil {
				return 0, fmt.Errorf("-set %s: %w", kv, err)
			}
		}
	}
	return ttl, nil
}
