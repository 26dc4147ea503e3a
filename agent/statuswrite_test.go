package agent

import (
	"testing"
	"time"

	"haxd/ha"
)

func TestStatusWriteSkippedOnlyWhenUnchangedAndFresh(t *testing.T) {
	res := func(uids ...string) map[string]ha.LRMResult {
		m := map[string]ha.LRMResult{}
		for _, u := range uids {
			m[u] = ha.LRMResult{SID: "exec:a", State: ha.StateStarted}
		}
		return m
	}
	lrm := func(state ha.LRMState, uids ...string) *ha.LRMStatus {
		return &ha.LRMStatus{State: state, Mode: ha.ModeActive, Results: res(uids...)}
	}
	tests := []struct {
		name           string
		prev, next     *ha.LRMStatus
		prevTS, nextTS int64
		refresh        time.Duration
		skip           bool
	}{
		{"same content, 1 s later", lrm("active", "u1"), lrm("active", "u1"), 100, 101, 5 * time.Second, true},
		{"same content, 4 s later", lrm("active", "u1"), lrm("active", "u1"), 100, 104, 5 * time.Second, true},
		{"same content, refresh due", lrm("active", "u1"), lrm("active", "u1"), 100, 105, 5 * time.Second, false},
		{"same content, refresh 0 writes every round", lrm("active", "u1"), lrm("active", "u1"), 100, 100, 0, false},
		{"a new result", lrm("active", "u1"), lrm("active", "u1", "u2"), 100, 101, 5 * time.Second, false},
		{"only a dropped result", lrm("active", "u1", "u2"), lrm("active", "u2"), 100, 101, 5 * time.Second, true},
		{"a dropped result and a new one", lrm("active", "u1"), lrm("active", "u2"), 100, 101, 5 * time.Second, false},
		{"state change", lrm("active", "u1"), lrm("lost_agent_lock", "u1"), 100, 101, 5 * time.Second, false},
		{"never written", lrm("active", "u1"), lrm("active", "u1"), 0, 101, 5 * time.Second, false},
		{"clock went back", lrm("active", "u1"), lrm("active", "u1"), 100, 99, 5 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, n := *tt.prev, *tt.next
			if onlyDropsResults(&p, &n) {
				n.Results = p.Results
			}
			if got := unchangedStatus(&p, &n, tt.prevTS, tt.nextTS, tt.refresh); got != tt.skip {
				t.Errorf("skip = %v, want %v", got, tt.skip)
			}
		})
	}
	ms := func(uid string) *ha.ManagerStatus {
		return &ha.ManagerStatus{MasterNode: "node1", ServiceStatus: map[ha.SID]*ha.ServiceStatus{"exec:a": {State: ha.StateStarted, Node: "node1", UID: uid}}}
	}
	if !unchangedStatus(ms("u1"), ms("u1"), 100, 102, 5*time.Second) {
		t.Error("identical manager status written again within the refresh")
	}
	if unchangedStatus(ms("u1"), ms("u2"), 100, 102, 5*time.Second) {
		t.Error("manager status with a new request UID skipped")
	}
}
