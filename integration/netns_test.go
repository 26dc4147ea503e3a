package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
	"haxd/internal/netlab"
)

// The same three agents as in the other tests, but each in its own network
// namespace with its own address, joined by a bridge in a fourth ("hub")
// namespace. A partition takes a node's bridge port down: the node's own
// end of the veth stays up and keeps its routes, so what it sends is
// dropped silently and its requests hang instead of failing.
//
//  1. A non-leader is cut off: its LRM loses its lock and its guard kills
//     its service (self-fence) before the others recover it elsewhere; the
//     runs never overlap.
//  2. The partition heals: the node rejoins, does not start the moved
//     service again and takes a new service.
//  3. The raft leader (the CRM master) is cut off: the others elect a new
//     leader, only the isolated node's services move and nobody else
//     self-fences.
func TestNetnsPartitionFencesRecoversHealsAndSurvivesLeaderCut(t *testing.T) {
	if built.skip != "" {
		t.Skip(built.skip)
	}
	nw := newNetnsNet(t, 3)
	h := startNetnsCluster(t, nw)
	master := h.startOnePerNode()

	// 1. Partition a node that is not the raft leader.
	victim := h.others(master)[0]
	sid := svc(victim)
	before := h.currentRuns()
	mark := h.mark()
	nw.cut(t, victim)
	to := h.waitMovedVia(h.others(victim), sid, victim)
	t.Logf("step 1: %s cut off; %s moved to %s", victim, sid, to)

	fences := h.guardFences(victim, mark)
	if len(fences) == 0 {
		t.Fatalf("step 1: the guard of the isolated %s did not log a self-fence", victim)
	}
	// The isolated LRM notices the lapse at its first renewal attempt
	// after the validity ended: its round waits at most one validity for
	// each store operation (the barrier, then the renewal), so it logs the
	// loss within a few validities of the cut even when the service moved
	// first.
	lostBy := time.Now().Add(4*h.timing.LockValidity + 4*h.timing.LRMRound)
	for len(h.grepSince(victim, mark, "=> lost_agent_lock")) == 0 {
		if time.Now().After(lostBy) {
			t.Errorf("step 1: the LRM of the isolated %s did not log losing its agent lock", victim)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.assertFencedBeforeStarted(sid, victim, to, fences[0], mark)
	runs := h.runs(sid)
	if len(runs) != 2 || runs[0].PID != before[sid].PID || runs[1].Node != to {
		t.Fatalf("step 1: %s: want its run on %s then one on %s, got runs on [%s]", sid, victim, to, h.runNodes(sid))
	}
	if gap := time.Duration(runs[1].First - runs[0].Last); gap <= 0 {
		t.Errorf("step 1: %s started on %s %v before its run on the isolated %s ended", sid, to, -gap, victim)
	} else {
		t.Logf("step 1: %s: last heartbeat on %s, first on %s %v later", sid, victim, to, gap.Round(time.Millisecond))
	}
	for _, n := range h.others(victim) {
		h.assertNoSelfFence("step 1", n, mark)
		h.assertSameRun(svc(n), before[svc(n)])
	}

	// 2. Heal: the node comes back, leaves the moved service alone and
	// can run services again.
	moved := h.currentRuns()[sid]
	healedAt := invariant.Monotonic()
	healedWall := time.Now()
	nw.heal(t, victim)
	h.waitLRMBack(victim, healedWall)
	const fresh2 = "exec:afterheal"
	h.addService(fresh2, victim)
	h.waitStarted(fresh2, victim, failoverDeadline)
	// Watch the rejoined node for many LRM rounds.
	time.Sleep(20 * h.timing.LRMRound)
	for _, r := range h.runs(sid) {
		if r.Node == victim && r.Last > healedAt {
			t.Errorf("step 2: %s ran again on %s (pid %d) after the partition healed", sid, victim, r.PID)
		}
	}
	h.assertSameRun(sid, moved)
	for _, n := range h.others(victim) {
		h.assertSameRun(svc(n), before[svc(n)])
	}
	t.Logf("step 2: %s rejoined and runs %s; %s stays on %s", victim, fresh2, sid, to)

	// 3. Partition the raft leader silently.
	leader := h.agreedMaster()
	survivors := h.others(leader)
	before = h.currentRuns()
	mark = h.mark()
	nw.cut(t, leader)
	var movedSIDs []string
	for _, s := range slices.Sorted(maps.Keys(before)) {
		if before[s].Node == leader {
			dest := h.waitMovedVia(survivors, s, leader)
			movedSIDs = append(movedSIDs, s+"->"+dest)
		}
	}
	if len(movedSIDs) == 0 {
		t.Fatalf("step 3: no service ran on the isolated leader %s", leader)
	}
	newLeader, _, ok := h.leaderSince(survivors, mark)
	if !ok {
		t.Fatalf("step 3: no survivor logged becoming raft leader after %s was cut off", leader)
	}
	if len(h.guardFences(leader, mark)) == 0 {
		t.Errorf("step 3: the guard of the isolated leader %s did not log a self-fence", leader)
	}
	for _, n := range survivors {
		h.assertNoSelfFence("step 3", n, mark)
		for _, l := range h.grepSince(n, mark, "renewal took longer than the lock validity") {
			t.Logf("step 3: near miss on %s: %s", n, l)
		}
	}
	for s, r := range before {
		if r.Node != leader {
			h.assertSameRun(s, r)
		}
	}
	t.Logf("step 3: leader %s cut off; %s became leader; moved %v", leader, newLeader, movedSIDs)
}

// netnsNet is the network of a netns test (see internal/netlab): a hub
// namespace holding a bridge, and one namespace per node with a veth to
// the bridge.
type netnsNet struct {
	*netlab.Net
	nodes []string // node i+1's namespace
	ips   []string // node i+1's address
}

// newNetnsNet creates the namespaces and links for n nodes and registers
// their removal. It skips the test, loudly, when not root or when network
// namespaces cannot be created here.
func newNetnsNet(t *testing.T, n int) *netnsNet {
	t.Helper()
	if err := netlab.Check(); err != nil {
		t.Skipf("!!! NETNS TEST SKIPPED: %v", err)
	}
	// Names unique per test process, short enough for interface names.
	tag := fmt.Sprintf("hx%d", os.Getpid()%1000000)
	nl, err := netlab.Create(context.Background(), tag, n, "10.213.0")
	if errors.Is(err, netlab.ErrNoNamespaces) {
		t.Skipf("!!! NETNS TEST SKIPPED: %v", err)
	}
	if err != nil {
		t.Fatalf("create the test network: %v", err)
	}
	t.Cleanup(func() {
		if err := nl.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return &netnsNet{Net: nl, nodes: nl.Nodes, ips: nl.IPs}
}

// index returns the index of node ("node2" -> 1).
func (nw *netnsNet) index(t *testing.T, node string) int {
	t.Helper()
	i, err := nw.Index(node)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// cut takes node's bridge port down: the node is isolated.
func (nw *netnsNet) cut(t *testing.T, node string) {
	t.Helper()
	if err := nw.Cut(context.Background(), nw.index(t, node)); err != nil {
		t.Fatal(err)
	}
}

// heal brings node's bridge port up again.
func (nw *netnsNet) heal(t *testing.T, node string) {
	t.Helper()
	if err := nw.Heal(context.Background(), nw.index(t, node)); err != nil {
		t.Fatal(err)
	}
}

// startNetnsCluster starts one agent per namespace of nw, on the
// namespace's address, with the fast timing profile, and registers the
// end of the test like startCluster (before nw's removal, which was
// registered earlier and so runs later).
func startNetnsCluster(t *testing.T, nw *netnsNet) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "haxd-it-netns-")
	if err != nil {
		t.Fatalf("create cluster dir: %v", err)
	}
	h := &harness{t: t, ctx: context.Background(), dir: dir, timing: ha.FastTiming()}
	cl, err := cluster.Start(h.ctx, cluster.Options{Binary: built.bin, Dir: dir, Nodes: len(nw.nodes), Timing: "fast",
		IPs: nw.ips, Netns: nw.nodes})
	if err != nil {
		t.Logf("cluster dir kept: %s", dir)
		t.Fatalf("start cluster in network namespaces: %v", err)
	}
	h.cl = cl
	t.Cleanup(h.finish)
	return h
}

// statusVia returns the status from the first of nodes that answers, or
// nil. An isolated node answers from its stale replica, so the callers
// name only the nodes of the majority.
func (h *harness) statusVia(nodes []string) *api.Status {
	for _, name := range nodes {
		n := h.cl.Node(name)
		if n.Exited() {
			continue
		}
		ctx, cancel := context.WithTimeout(h.ctx, 2*time.Second)
		st, err := n.Client().Status(ctx)
		cancel()
		if err == nil {
			return st
		}
	}
	return nil
}

// waitMovedVia waits until the majority nodes report sid started on a node
// other than from and its heartbeats come from there, and returns that
// node.
func (h *harness) waitMovedVia(nodes []string, sid, from string) string {
	h.t.Helper()
	var to string
	h.waitFor(failoverDeadline, fmt.Sprintf("%s started and beating on a node other than %s (as seen by %v)", sid, from, nodes), func() bool {
		st := h.statusVia(nodes)
		if st == nil || st.Manager == nil {
			return false
		}
		sd := st.Manager.ServiceStatus[ha.SID(sid)]
		if sd == nil || sd.State != ha.StateStarted || sd.Node == from {
			return false
		}
		to = sd.Node
		return h.cl.RunningOn(sid, fresh) == to
	})
	return to
}

// agreedMaster waits until every node reports the same CRM master and
// returns it.
func (h *harness) agreedMaster() string {
	h.t.Helper()
	var m string
	h.waitFor(startDeadline, "every node to report the same CRM master", func() bool {
		m = ""
		for _, n := range h.cl.Nodes {
			st := h.statusVia([]string{n.Name})
			if st == nil || st.Manager == nil || st.Manager.MasterNode == "" || (m != "" && st.Manager.MasterNode != m) {
				return false
			}
			m = st.Manager.MasterNode
		}
		return true
	})
	return m
}

// assertNoSelfFence fails the test if node self-fenced since mark.
func (h *harness) assertNoSelfFence(step, node string, since logMark) {
	h.t.Helper()
	for _, l := range h.selfFences(node, since) {
		h.t.Errorf("%s: %s self-fenced although it stayed in the majority: %s", step, node, l)
	}
}

// assertFencedBeforeStarted checks from the logs that from's guard fenced
// (the log line fence) before to started sid.
func (h *harness) assertFencedBeforeStarted(sid, from, to, fence string, since logMark) {
	h.t.Helper()
	starts := h.grepSince(to, since, "starting service "+sid)
	fenced, ok1 := cluster.LogTime(fence)
	started, ok2 := time.Time{}, len(starts) > 0
	if ok2 {
		started, ok2 = cluster.LogTime(starts[0])
	}
	switch {
	case !ok1 || !ok2:
		h.t.Errorf("cannot compare the guard's fence (%q) with the start on %s (%q)", fence, to, starts)
	case !fenced.Before(started):
		h.t.Errorf("%s was started on %s at %s, before %s's guard fenced it at %s", sid, to, started.Format(time.StampMilli), from, fenced.Format(time.StampMilli))
	default:
		h.t.Logf("%s's guard fenced at %s; %s started on %s %v later", from, fenced.Format(time.StampMilli), sid, to, started.Sub(fenced).Round(time.Millisecond))
	}
}
