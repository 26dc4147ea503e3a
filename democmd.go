package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"haxd/api"
	"haxd/internal/cluster"
)

// DemoCmd is `haxd demo`: a three-node cluster on loopback, two services,
// a node killed the hard way, and the failover measured.
type DemoCmd struct {
	Nodes  int    `help:"Number of nodes." default:"3"`
	Timing string `help:"Timing profile: fast or pve (pve takes minutes)." enum:"fast,pve" default:"fast"`
	Keep   bool   `help:"Keep the demo directory (logs, data) instead of removing it."`
}

// Run runs the demo and cleans up after itself.
func (c *DemoCmd) Run(env *Env) error {
	if c.Nodes < 3 {
		return usageError{fmt.Errorf("--nodes %d: a demo needs at least 3 nodes for quorum after a failure", c.Nodes)}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "haxd-demo-")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	out := env.Stdout
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	step("starting %d agents on loopback (data and logs in %s), raft traffic over mutual TLS with a fresh cluster CA", c.Nodes, dir)
	cl, err := cluster.Start(ctx, cluster.Options{Binary: self, Dir: dir, Nodes: c.Nodes, Timing: c.Timing})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		step("cleaning up: killing every agent, guard and service")
		cl.Destroy()
		if c.Keep {
			fmt.Fprintf(out, "    kept %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	via := cl.Nodes[0]
	services := map[string]string{"exec:demo1": "node1", "exec:demo2": "node2"}
	for _, sid := range []string{"exec:demo1", "exec:demo2"} {
		step("adding service %s on %s (a heartbeat-recording process)", sid, services[sid])
		if err := cluster.Retry(ctx, 20*time.Second, func() error { return cl.AddDemoService(ctx, via, sid, services[sid]) }); err != nil {
			return fmt.Errorf("demo: add %s: %w", sid, err)
		}
	}
	step("waiting for both services to run")
	for sid, node := range services {
		if err := cluster.WaitFor(ctx, 60*time.Second, func() bool { return cl.RunningOn(sid, time.Second) == node }); err != nil {
			return fmt.Errorf("demo: %s did not start on %s: %w", sid, node, err)
		}
	}
	waitStarted(ctx, cl, services)
	if err := printStatus(ctx, out, cl); err != nil {
		return err
	}

	victim := cl.Node("node2")
	step("killing node2 the hard way: SIGKILL of its agent, guard and services")
	killed := time.Now()
	cl.KillNode(victim)
	if err := cluster.WaitFor(ctx, 10*time.Minute, func() bool {
		n := cl.RunningOn("exec:demo2", 500*time.Millisecond)
		return n != "" && n != "node2"
	}); err != nil {
		return fmt.Errorf("demo: exec:demo2 did not come back: %w", err)
	}
	failover := time.Since(killed)
	step("exec:demo2 runs again on %s, %.2f s after node2 was killed", cl.RunningOn("exec:demo2", time.Second), failover.Seconds())
	waitStarted(ctx, cl, map[string]string{"exec:demo2": cl.RunningOn("exec:demo2", time.Second)})
	dead, err := waitNotAlive(ctx, cl, "node2")
	if err != nil {
		return err
	}
	if err := printStatus(ctx, out, cl); err != nil {
		return err
	}
	step("the status shows node2 as not alive: CRM state %s, LRM %s, last heard %d s ago", dead.State, dead.Display, dead.Age)
	runs, violations, err := cl.Check()
	if err != nil {
		return err
	}
	if len(violations) > 0 {
		for _, v := range violations {
			fmt.Fprintln(out, "    INVARIANT VIOLATED:", v)
		}
		return fmt.Errorf("demo: a service ran on two nodes at once")
	}
	step("invariant check: %d recorded runs, no service ever ran on two nodes at once", len(runs))
	if c.Keep {
		fmt.Fprintf(out, "    agent logs: %s\n", filepath.Join(dir, "node*.log"))
	} else {
		fmt.Fprintln(out, "    (run with --keep to keep the agent logs)")
	}
	return nil
}

// waitStarted waits (up to 10 s) until the CRM reports every service as
// started on its node, so the printed status is settled.
func waitStarted(ctx context.Context, cl *cluster.Cluster, want map[string]string) {
	_ = cluster.WaitFor(ctx, 10*time.Second, func() bool {
		st, _, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		for _, e := range api.Entries(st) {
			if node, ok := want[string(e.SID)]; ok && (e.State != "started" || e.Node != node) {
				return false
			}
		}
		return true
	})
}

// waitNotAlive waits until the status shows node as not alive (the CRM
// does not see it online, or its LRM status went stale), which takes at
// most the status's stale_after once the node is dead, and returns its view.
func waitNotAlive(ctx context.Context, cl *cluster.Cluster, node string) (api.NodeView, error) {
	var last api.NodeView
	var stale int64 = 60
	err := cluster.WaitFor(ctx, 2*time.Minute, func() bool {
		st, _, err := cl.Status(ctx)
		if err != nil {
			return false
		}
		v := api.BuildView(st)
		stale = v.StaleAfter
		for _, n := range v.Nodes {
			if n.Name == node {
				last = n
				return !n.Alive
			}
		}
		return false
	})
	if err != nil {
		return last, fmt.Errorf("demo: the status still shows %s alive (%+v, stale_after %d s): %w", node, last, stale, err)
	}
	return last, nil
}

func printStatus(ctx context.Context, out io.Writer, cl *cluster.Cluster) error {
	st, n, err := cl.Status(ctx)
	if err != nil {
		return fmt.Errorf("demo: status: %w", err)
	}
	_, err = fmt.Fprintf(out, "--- haxd ha status (via %s)\n%s---\n", n.Name, api.Format(api.Entries(st)))
	return err
}
