package agent

import (
	"context"
	"testing"
	"time"

	"haxd/clock"
	"haxd/ha"
)

// TestObserverEvents: a node failure seen through successive manager
// statuses gives fence_start, fence_success and a timed recovery, once
// each; error and master change are reported; a fence that does not
// progress gives one fence_failure.
func TestObserverEvents(t *testing.T) {
	tm := ha.FastTiming()
	o := newObserver("node1", tm)
	t0 := time.Unix(1000, 0)
	ms := func(master string, nodes map[string]ha.NodeState, svcs map[ha.SID]*ha.ServiceStatus) *ha.ManagerStatus {
		return &ha.ManagerStatus{MasterNode: master, NodeStatus: nodes, ServiceStatus: svcs}
	}
	on, unk, fen := ha.NodeOnline, ha.NodeUnknown, ha.NodeFence
	steps := []struct {
		at   time.Duration
		ms   *ha.ManagerStatus
		want []string
	}{
		{0, ms("node1", map[string]ha.NodeState{"node1": on, "node2": on},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node2", Running: true}}), []string{EventMasterChange}},
		{time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": unk},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node2", Running: true}}), nil},
		{2 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateFence, Node: "node2"}}), []string{EventFenceStart}},
		{3 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateFence, Node: "node2"}}), nil},
		{4 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": unk},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateRecovery, Node: "node2"}}), []string{EventFenceSuccess}},
		{5 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": unk},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node1"}}), nil},
		{6 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": unk},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node1", Running: true}}), []string{EventRecovery}},
		{7 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": unk},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateError, Node: "node1"}}), []string{EventServiceError}},
		{8 * time.Second, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen},
			map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateError, Node: "node1"}}), []string{EventFenceStart}},
		{8*time.Second + tm.LockTTL, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen}, nil), nil},
		{9*time.Second + tm.LockTTL, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen}, nil), []string{EventFenceFailure}},
		{10*time.Second + tm.LockTTL, ms("node1", map[string]ha.NodeState{"node1": on, "node2": fen}, nil), nil},
		{11*time.Second + tm.LockTTL, ms("node3", map[string]ha.NodeState{"node1": on, "node2": fen}, nil), []string{EventMasterChange}},
	}
	var prev *ha.ManagerStatus
	ids := map[string]bool{}
	for i, s := range steps {
		evs := o.observe(prev, s.ms, t0.Add(s.at))
		var got []string
		for _, e := range evs {
			got = append(got, e.Type)
			if ids[e.ID] || len(e.ID) != 32 || e.Sender != "node1" || e.Message == "" {
				t.Errorf("step %d: bad event %+v", i, e)
			}
			ids[e.ID] = true
			if e.Type == EventRecovery && (e.DurationSeconds != 4 || e.SID != "exec:a" || e.Node != "node1" || e.From != "node2") {
				t.Errorf("step %d: recovery %+v, want exec:a from node2 to node1 after 4 s", i, e)
			}
			if e.Type == EventFenceSuccess && e.DurationSeconds != 2 {
				t.Errorf("step %d: fence_success after %v s, want 2", i, e.DurationSeconds)
			}
		}
		if len(got) != len(s.want) || (len(got) > 0 && got[0] != s.want[0]) {
			t.Errorf("step %d: events %v, want %v", i, got, s.want)
		}
		prev = s.ms
	}
}

// TestQuorumLostOncePerLoss: quorum_lost fires on each transition from
// quorate to not quorate, not while it stays lost, nor at start-up.
func TestQuorumLostOncePerLoss(t *testing.T) {
	seq := []bool{false, false, true, true, false, false, false, true, false}
	i := 0
	lost := 0
	ctx, cancel := context.WithCancel(context.Background())
	watchQuorum(ctx, clock.System{}, time.Microsecond, func() bool {
		// After cancel, sleepCtx may still pick the elapsed timer once
		// (select chooses at random among ready cases): stay not quorate.
		if i >= len(seq) {
			return false
		}
		q := seq[i]
		i++
		if i == len(seq) {
			cancel()
		}
		return q
	}, func() { lost++ })
	if lost != 2 {
		t.Errorf("quorum_lost fired %d times for %v, want 2", lost, seq)
	}
	if e := quorumLost("n1", time.Unix(5, 0)); e.Type != EventQuorumLost || e.Node != "n1" || len(e.ID) != 32 {
		t.Errorf("event %+v", e)
	}
}

// TestObserverForgetsAcrossMasterships: what a master remembered about a
// fence is dropped when another node was master in between, so a service
// recovered meanwhile gives no recovery event later.
func TestObserverForgetsAcrossMasterships(t *testing.T) {
	o := newObserver("node1", ha.FastTiming())
	t0 := time.Unix(1000, 0)
	fenced := &ha.ManagerStatus{MasterNode: "node1", ServiceStatus: map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateFence, Node: "node2"}}}
	o.observe(fenced, fenced, t0)
	byNode3 := &ha.ManagerStatus{MasterNode: "node3", ServiceStatus: map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node3", Running: true}}}
	back := &ha.ManagerStatus{MasterNode: "node1", ServiceStatus: map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node3", Running: true}}}
	evs := o.observe(byNode3, back, t0.Add(time.Minute))
	if len(evs) != 1 || evs[0].Type != EventMasterChange || evs[0].From != "node3" {
		t.Errorf("events %+v, want only master_change from node3", evs)
	}
}
