package integration

import (
	"syscall"
	"testing"
)

// A node shutdown (SIGUSR1 to the agent) with shutdown_policy=migrate puts
// the node in maintenance: its service moves to another node before the
// agent exits, with one run on each node and no overlap; the other
// services are untouched and nobody self-fences.
func TestNodeShutdownWithMigratePolicyMovesServicesFirst(t *testing.T) {
	h := startCluster(t, "shutdown_policy=migrate")
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	before := h.currentRuns()
	mark := h.mark()
	n := h.cl.Node(victim)
	if err := syscall.Kill(n.AgentPID(), syscall.SIGUSR1); err != nil {
		t.Fatalf("signal %s: %v", victim, err)
	}
	to := h.waitMoved(svc(victim), victim, failoverDeadline)
	h.waitFor(failoverDeadline, victim+"'s agent to exit after the migration", n.Exited)
	if got := h.runNodes(svc(victim)); got != victim+" "+to {
		t.Errorf("%s: want one run on %s then one on %s, got runs on [%s]", svc(victim), victim, to, got)
	}
	if lines := h.grepSince(victim, mark, "doing maintenance, removing this node from active list"); len(lines) == 0 {
		t.Errorf("%s's LRM did not log the migrate policy's maintenance line", victim)
	}
	for _, other := range h.others(victim) {
		h.assertSameRun(svc(other), before[svc(other)])
		if f := h.selfFences(other, mark); len(f) > 0 {
			t.Errorf("%s self-fenced during a planned shutdown of %s: %v", other, victim, f)
		}
	}
}

// With shutdown_policy=failover a node shutdown stops the node's services
// and releases its agent lock; the master fences it at once (the free lock)
// after the fence delay and recovers the service elsewhere.
func TestNodeShutdownWithFailoverPolicyRecoversElsewhere(t *testing.T) {
	h := startCluster(t, "shutdown_policy=failover")
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	mark := h.mark()
	n := h.cl.Node(victim)
	if err := syscall.Kill(n.AgentPID(), syscall.SIGUSR1); err != nil {
		t.Fatalf("signal %s: %v", victim, err)
	}
	h.waitFor(failoverDeadline, victim+"'s agent to exit", n.Exited)
	to := h.waitMoved(svc(victim), victim, failoverDeadline)
	if got := h.runNodes(svc(victim)); got != victim+" "+to {
		t.Errorf("%s: want one run on %s then one on %s, got runs on [%s]", svc(victim), victim, to, got)
	}
	if lines := h.grepSince(victim, mark, "shutdown LRM, stop all services"); len(lines) == 0 {
		t.Errorf("%s's LRM did not log the failover policy's line", victim)
	}
	if f := h.guardFences(victim, mark); len(f) > 0 {
		t.Errorf("a clean failover shutdown of %s made its guard fence: %v", victim, f)
	}
}
