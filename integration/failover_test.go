package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// A node that loses power (agent, guard and services all SIGKILLed) has its
// services recovered on another node; services elsewhere are untouched.
func TestNodeKillRecoversItsServicesElsewhere(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]

	h.cl.KillNode(h.cl.Node(victim))
	to := h.waitMoved(svc(victim), victim, failoverDeadline)

	if got := h.runNodes(svc(victim)); got != victim+" "+to {
		t.Errorf("%s: want one run on %s then one on %s, got runs on [%s]", svc(victim), victim, to, got)
	}
	for _, n := range h.others(victim) {
		h.assertOneRun(svc(n), n)
	}

	// The status tells the truth: the dead node is not alive, its line
	// says so, and once removed it reads as gone, not idle.
	h.waitFor(failoverDeadline, victim+" shown as not alive", func() bool {
		st := h.status()
		if st == nil {
			return false
		}
		for _, n := range api.BuildView(st).Nodes {
			if n.Name == victim {
				return !n.Alive && n.State != ha.NodeOnline
			}
		}
		return false
	})
	via := h.cl.Node(to)
	ms, err := via.Client().Members(h.ctx)
	if err != nil {
		t.Fatalf("node list: %v", err)
	}
	leaders, voters := 0, 0
	for _, m := range ms {
		if m.Leader {
			leaders++
		}
		if m.Raft == "voter" {
			voters++
		}
		if m.Name == victim && m.Gossip == "alive" {
			t.Errorf("node list shows the killed %s alive: %+v", victim, m)
		}
	}
	if len(ms) != 3 || leaders != 1 || voters != 3 {
		t.Errorf("node list %+v: want 3 members, 3 voters, 1 leader", ms)
	}
	var ae *api.Error
	if err := via.Client().RemoveNode(h.ctx, "node9"); !errors.As(err, &ae) || ae.Code != 404 {
		t.Errorf("node remove of an unknown node: %v, want a 404 naming it", err)
	}
	if err := via.Client().RemoveNode(h.ctx, victim); err != nil {
		t.Fatalf("node remove %s: %v", victim, err)
	}
	h.waitFor(failoverDeadline, victim+" shown as gone", func() bool {
		st := h.status()
		if st == nil {
			return false
		}
		text := api.Format(api.Entries(st))
		return strings.Contains(text, "lrm "+victim+" (gone") && !strings.Contains(text, "lrm "+victim+" (idle")
	})
}

// When only the agent dies (SIGKILL), its guard and services live on. The
// guard, no longer fed, kills the services; only after that does the CRM
// recover them on another node.
func TestAgentKillGuardFencesThenRecovery(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	sid := svc(victim)
	mark := h.mark()
	old := h.runs(sid)[0]

	h.cl.KillAgent(h.cl.Node(victim))
	to := h.waitMoved(sid, victim, failoverDeadline)

	fences := h.guardFences(victim, mark)
	if len(fences) == 0 {
		t.Fatalf("%s: the guard did not log a self-fence after its agent was killed", victim)
	}
	starts := h.grepSince(to, mark, "starting service "+sid)
	fenced, ok1 := cluster.LogTime(fences[0])
	started, ok2 := time.Time{}, len(starts) > 0
	if ok2 {
		started, ok2 = cluster.LogTime(starts[0])
	}
	switch {
	case !ok1 || !ok2:
		t.Errorf("cannot compare the guard's fence (%q) with the start on %s (%q)", fences, to, starts)
	case !fenced.Before(started):
		t.Errorf("%s was started on %s at %s, before %s's guard fenced it at %s", sid, to, started.Format(time.StampMilli), victim, fenced.Format(time.StampMilli))
	default:
		t.Logf("%s's guard fenced at %s; %s started on %s %v later", victim, fenced.Format(time.StampMilli), sid, to, started.Sub(fenced).Round(time.Millisecond))
	}
	runs := h.runs(sid)
	if len(runs) != 2 || runs[0].PID != old.PID || runs[1].Node != to {
		t.Fatalf("%s: want the old run on %s then one on %s, got runs on [%s]", sid, victim, to, h.runNodes(sid))
	}
	if gap := time.Duration(runs[1].First - runs[0].Last); gap <= 0 {
		t.Errorf("%s started on %s %v before its run on %s ended", sid, to, -gap, victim)
	} else {
		t.Logf("%s: last heartbeat on %s, first on %s %v later", sid, victim, to, gap.Round(time.Millisecond))
	}
	for _, n := range h.others(victim) {
		h.assertOneRun(svc(n), n)
	}
}

// An agent frozen (SIGSTOP) for longer than the lock TTL cannot feed its
// guard, which kills its services; the CRM recovers them elsewhere. When the
// agent continues it finds its lock lost and does not start them again.
func TestAgentPauseSelfFencesAndDoesNotRestartOnResume(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	sid := svc(victim)
	mark := h.mark()
	vn := h.cl.Node(victim)

	h.cl.Pause(vn)
	paused := time.Now()
	to := h.waitMoved(sid, victim, failoverDeadline)
	// The lock TTL counts from the send of the victim's last renewal
	// (docs/safety.md), which preceded the pause by up to one LRM round:
	// the move may come that much earlier than pause + TTL, never more.
	if frozen, min := time.Since(paused), h.timing.LockTTL-h.timing.LRMRound; frozen <= min {
		t.Fatalf("%s moved after %v, less than the lock TTL %v minus one renewal interval (lrm_round %v): the CRM cannot have waited for the lock to expire", sid, frozen, h.timing.LockTTL, h.timing.LRMRound)
	}
	if fences := h.selfFences(victim, mark); len(fences) == 0 {
		t.Errorf("%s: the guard did not log a self-fence while its agent was frozen", victim)
	}

	resumed := invariant.Monotonic()
	afterResume := h.mark()
	h.cl.Resume(vn)
	h.waitFor(failoverDeadline, victim+"'s LRM to notice the lost lock after SIGCONT", func() bool {
		return len(h.grepSince(victim, afterResume, "=> lost_agent_lock")) > 0
	})
	// Watch the continued agent for many LRM rounds.
	time.Sleep(20 * h.timing.LRMRound)

	for _, r := range h.runs(sid) {
		if r.Node == victim && r.Last > resumed {
			t.Errorf("%s ran on %s (pid %d) after the frozen agent was continued", sid, victim, r.PID)
		}
	}
	h.assertOneRunSince(sid, to, resumed)
	for _, n := range h.others(victim) {
		h.assertOneRun(svc(n), n)
	}
}

// assertOneRunSince checks that the last run of sid is on node, began
// before since and still runs.
func (h *harness) assertOneRunSince(sid, node string, since int64) {
	h.t.Helper()
	runs := h.runs(sid)
	last := runs[len(runs)-1]
	if last.Node != node || last.First > since {
		h.t.Errorf("%s: want its run on %s to continue undisturbed, got runs on [%s]", sid, node, h.runNodes(sid))
	}
	if age := time.Duration(invariant.Monotonic() - last.Last); age > fresh {
		h.t.Errorf("%s: its run on %s stopped beating %v ago", sid, node, age.Round(time.Millisecond))
	}
}

// An agent that crashes (SIGKILL) and is restarted at once, before its
// guard handle expired, cannot take over that handle: the guard fences the
// services the dead agent registered, as a watchdog would reset the node.
// The restarted agent still holds the node's lock and starts them again
// on the same node; nothing runs twice and the other nodes are untouched.
func TestAgentCrashAndQuickRestartFencesThenRestartsInPlace(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	sid := svc(victim)
	before := h.currentRuns()
	mark := h.mark()
	n := h.cl.Node(victim)

	h.cl.KillAgent(n)
	if err := h.cl.StartAgent(n); err != nil {
		t.Fatalf("restart %s: %v", victim, err)
	}
	if err := h.cl.WaitReady(h.ctx, n); err != nil {
		t.Fatalf("restart %s: %v", victim, err)
	}
	h.waitFor(failoverDeadline, sid+" started again after the guard fenced it", func() bool {
		cur := h.currentRuns()[sid]
		return cur.PID != before[sid].PID && h.cl.RunningOn(sid, fresh) == cur.Node
	})
	if fences := h.selfFences(victim, mark); len(fences) == 0 {
		t.Errorf("%s: the guard did not log a self-fence for the crashed agent's handle", victim)
	}
	if got := h.runNodes(sid); got != victim+" "+victim {
		t.Errorf("%s: want its first run and a restart, both on %s, got runs on [%s]", sid, victim, got)
	}
	for _, o := range h.others(victim) {
		h.assertSameRun(svc(o), before[svc(o)])
	}
}
