package integration

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// Killing the node of the raft leader (the CRM master) moves only that
// node's services. The other nodes' LRMs cannot renew their locks until a
// new leader is elected; their lock validity must outlast the election, so
// none of them self-fences and their services never stop. Done twice (or
// $HAXD_IT_LEADER_ROUNDS times): the killed node comes back, then the new
// leader is killed. The log shows each election's duration, to compare with
// lock_validity.
func TestLeaderKillMovesOnlyItsServicesAndNobodySelfFences(t *testing.T) {
	rounds := 2
	if v := os.Getenv("HAXD_IT_LEADER_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("HAXD_IT_LEADER_ROUNDS %q: expected a positive number of rounds", v)
		}
		rounds = n
	}
	h := startCluster(t)
	leader := h.startOnePerNode()
	var elections []time.Duration
	for round := 1; round <= rounds; round++ {
		before := h.currentRuns()
		mark := h.mark()
		killed := time.Now()
		h.cl.KillNode(h.cl.Node(leader))
		survivors := h.others(leader)

		var moved []string
		for _, sid := range slices.Sorted(maps.Keys(before)) {
			if before[sid].Node == leader {
				to := h.waitMoved(sid, leader, failoverDeadline)
				moved = append(moved, sid+"->"+to)
			}
		}
		if len(moved) == 0 {
			t.Fatalf("round %d: no service ran on the killed leader %s", round, leader)
		}
		newLeader, elected, ok := h.leaderSince(survivors, mark)
		if !ok {
			t.Fatalf("round %d: no survivor logged becoming raft leader after %s was killed", round, leader)
		}
		election := elected.Sub(killed)
		elections = append(elections, election)
		margin := h.timing.LockValidity - election - h.timing.LRMRound
		t.Logf("round %d: killed leader %s; %s became leader %v later; moved %v; lock_validity %v - election %v - lrm_round %v leaves a margin of %v",
			round, leader, newLeader, election.Round(time.Millisecond), moved, h.timing.LockValidity,
			election.Round(time.Millisecond), h.timing.LRMRound, margin.Round(time.Millisecond))

		for _, n := range survivors {
			for _, l := range h.selfFences(n, mark) {
				t.Errorf("round %d: %s self-fenced while a new leader was elected: %s", round, n, l)
			}
			for _, l := range h.grepSince(n, mark, "renewal took longer than the lock validity") {
				t.Logf("round %d: near miss on %s: %s", round, n, l)
			}
		}
		for sid, r := range before {
			if r.Node != leader {
				h.assertSameRun(sid, r)
			}
		}

		if round < rounds {
			n := h.cl.Node(leader)
			restarted := time.Now()
			if err := h.cl.StartAgent(n); err != nil {
				t.Fatalf("restart %s: %v", leader, err)
			}
			if err := h.cl.WaitReady(h.ctx, n); err != nil {
				t.Fatalf("restart %s: %v", leader, err)
			}
			h.waitLRMBack(leader, restarted)
			leader = newLeader
		}
	}
	slices.Sort(elections)
	t.Logf("%d leader kills: new leader after %v (min) .. %v (max); lock_validity %v, lrm_round %v",
		len(elections), elections[0].Round(time.Millisecond), elections[len(elections)-1].Round(time.Millisecond),
		h.timing.LockValidity, h.timing.LRMRound)
}

// currentRuns returns the latest run of every service.
func (h *harness) currentRuns() map[string]invariant.Run {
	all, err := invariant.Load(h.cl.HeartbeatDir)
	if err != nil {
		h.t.Fatalf("load heartbeats: %v", err)
	}
	out := map[string]invariant.Run{}
	for _, r := range all {
		if cur, ok := out[r.Service]; !ok || r.First > cur.First {
			out[r.Service] = r
		}
	}
	return out
}

// assertSameRun checks that sid's latest run is still the run want (same
// process) and still beats: the service was never stopped or moved.
func (h *harness) assertSameRun(sid string, want invariant.Run) {
	h.t.Helper()
	cur := h.currentRuns()[sid]
	if cur.PID != want.PID || cur.Node != want.Node {
		h.t.Errorf("%s: its run on %s (pid %d) was replaced by one on %s (pid %d)", sid, want.Node, want.PID, cur.Node, cur.PID)
		return
	}
	if age := time.Duration(invariant.Monotonic() - cur.Last); age > fresh {
		h.t.Errorf("%s: its run on %s (pid %d) stopped beating %v ago", sid, cur.Node, cur.PID, age.Round(time.Millisecond))
	}
}

// leaderSince returns the first of nodes that logged becoming raft leader
// since mark, and when.
func (h *harness) leaderSince(nodes []string, mark logMark) (string, time.Time, bool) {
	best, at := "", time.Time{}
	for _, n := range nodes {
		for _, l := range h.grepSince(n, mark, `msg="became raft leader"`) {
			if ts, ok := cluster.LogTime(l); ok && (best == "" || ts.Before(at)) {
				best, at = n, ts
			}
		}
	}
	return best, at, best != ""
}

// waitLRMBack waits until node's LRM has written its status since the
// given time, waiting for or holding its lock: it is back in the cluster.
func (h *harness) waitLRMBack(node string, since time.Time) {
	h.t.Helper()
	h.waitFor(startDeadline, node+"'s LRM back in the cluster", func() bool {
		st := h.status()
		if st == nil {
			return false
		}
		ls := st.LRM[node]
		return ls != nil && ls.Timestamp >= since.Unix() && (ls.State == ha.LRMActive || ls.State == ha.LRMWaitForAgentLock)
	})
}
