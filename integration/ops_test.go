package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"haxd/api"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// An operator's migrate and relocate requests move a service: it stops on
// its node and starts on the target, never running on both; other services
// are untouched.
func TestMigrateAndRelocate(t *testing.T) {
	h := startCluster(t)
	h.startOnePerNode()
	before := h.currentRuns()

	h.request("migrate exec:svc1 to node2", func(ctx context.Context, c *api.Client) error {
		return c.Migrate(ctx, api.MoveRequest{SID: "exec:svc1", Node: "node2"})
	})
	h.waitStarted("exec:svc1", "node2", failoverDeadline)
	if got := h.runNodes("exec:svc1"); got != "node1 node2" {
		t.Errorf("exec:svc1: want a run on node1 then one on node2 after the migration, got runs on [%s]", got)
	}

	h.request("relocate exec:svc2 to node3", func(ctx context.Context, c *api.Client) error {
		return c.Relocate(ctx, api.MoveRequest{SID: "exec:svc2", Node: "node3"})
	})
	h.waitStarted("exec:svc2", "node3", failoverDeadline)
	if got := h.runNodes("exec:svc2"); got != "node2 node3" {
		t.Errorf("exec:svc2: want a run on node2 then one on node3 after the relocation, got runs on [%s]", got)
	}
	h.assertSameRun("exec:svc3", before["exec:svc3"])
}

// An agent stopped with SIGTERM and started again (a daemon restart, not a
// node shutdown) leaves its services running: the same processes, never
// stopped, adopted by the new agent. Done for a follower and then for the
// CRM master; no node self-fences meanwhile.
func TestAgentRestartKeepsItsServicesRunning(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	for _, node := range []string{h.others(master)[0], master} {
		before := h.currentRuns()
		mark := h.mark()
		n := h.cl.Node(node)
		if err := h.cl.StopAgent(n, failoverDeadline); err != nil {
			t.Fatalf("stop %s: %v", node, err)
		}
		if on := h.cl.RunningOn(svc(node), fresh); on != node {
			t.Errorf("%s stopped running on %s when its agent stopped (heartbeat from %q)", svc(node), node, on)
		}
		restarted := time.Now()
		if err := h.cl.StartAgent(n); err != nil {
			t.Fatalf("restart %s: %v", node, err)
		}
		if err := h.cl.WaitReady(h.ctx, n); err != nil {
			t.Fatalf("restart %s: %v", node, err)
		}
		h.waitLRMBack(node, restarted)
		h.waitStarted(svc(node), node, failoverDeadline)
		time.Sleep(8 * h.timing.LRMRound) // let the new agent run some rounds

		for sid, r := range before {
			h.assertSameRun(sid, r)
		}
		for _, nn := range h.cl.Nodes {
			for _, l := range h.selfFences(nn.Name, mark) {
				t.Errorf("restart of %s: %s self-fenced: %s", node, nn.Name, l)
			}
		}
	}
}

// The whole cluster restarts: first every agent is stopped with SIGTERM
// and started again (services keep running, the same processes); then every
// node loses power at once and comes back (each service is started again,
// once, on its node).
func TestWholeClusterRestart(t *testing.T) {
	h := startCluster(t)
	h.startOnePerNode()

	before := h.currentRuns()
	mark := h.mark()
	h.eachNode(func(n *cluster.Node) error { return h.cl.StopAgent(n, failoverDeadline) })
	for sid, r := range before {
		h.assertSameRun(sid, r)
	}
	h.restartAll()
	for _, n := range h.cl.Nodes {
		h.waitStarted(svc(n.Name), n.Name, failoverDeadline)
	}
	time.Sleep(8 * h.timing.LRMRound)
	for sid, r := range before {
		h.assertSameRun(sid, r)
	}
	for _, n := range h.cl.Nodes {
		for _, l := range h.selfFences(n.Name, mark) {
			t.Errorf("graceful cluster restart: %s self-fenced: %s", n.Name, l)
		}
	}

	for _, n := range h.cl.Nodes {
		h.cl.KillNode(n)
	}
	killed := invariant.Monotonic()
	h.restartAll()
	for _, n := range h.cl.Nodes {
		sid := svc(n.Name)
		h.waitFor(failoverDeadline, sid+" started again on "+n.Name+" after the power loss", func() bool {
			cur := h.currentRuns()[sid]
			return cur.Node == n.Name && cur.First > killed && h.cl.RunningOn(sid, fresh) == n.Name
		})
		h.waitStarted(sid, n.Name, failoverDeadline)
		if got, want := h.runNodes(svc(n.Name)), n.Name+" "+n.Name; got != want {
			t.Errorf("%s: want its first run and one run after the power loss, both on %s, got runs on [%s]", svc(n.Name), n.Name, got)
		}
	}
}

// request sends an operator request through the first live agent,
// retrying while the cluster settles.
func (h *harness) request(what string, f func(context.Context, *api.Client) error) {
	h.t.Helper()
	var last error
	h.waitFor(startDeadline, what, func() bool {
		for _, n := range h.cl.Nodes {
			if n.Exited() {
				continue
			}
			ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
			last = f(ctx, n.Client())
			cancel()
			if last == nil {
				return true
			}
			break
		}
		h.t.Logf("%s: %v (retrying)", what, last)
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// eachNode runs f on every node at once and fails the test on any error.
func (h *harness) eachNode(f func(*cluster.Node) error) {
	h.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(h.cl.Nodes))
	for i, n := range h.cl.Nodes {
		wg.Go(func() {
			if err := f(n); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.Name, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			h.t.Fatal(err)
		}
	}
}

// restartAll starts every agent again and waits until all of them answer.
func (h *harness) restartAll() {
	h.t.Helper()
	for _, n := range h.cl.Nodes {
		if err := h.cl.StartAgent(n); err != nil {
			h.t.Fatalf("restart %s: %v", n.Name, err)
		}
	}
	for _, n := range h.cl.Nodes {
		if err := h.cl.WaitReady(h.ctx, n); err != nil {
			h.t.Fatalf("restart %s: %v", n.Name, err)
		}
	}
}
