package crm

import (
	"errors"
	"fmt"
	"testing"

	"haxd/ha"
)

func TestDaemonTransitions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(e *fakeEnv)
		steps  []func(e *fakeEnv) // applied before each step after the first
		want   []string
		state  ha.CRMState
		wdOpen bool
	}{
		{
			name:  "no config stays waiting",
			setup: func(e *fakeEnv) { delete(e.resources, "vm:101") },
			want:  []string{"info status change startup => wait_for_quorum"},
			state: ha.CRMWaitForQuorum,
		},
		{
			name:  "command queue makes an idle CRM active",
			setup: func(e *fakeEnv) { delete(e.resources, "vm:101"); e.cmds = []string{"enable-node-maintenance node2"} },
			want:  []string{"info status change wait_for_quorum => master"},
			state: ha.CRMMaster, wdOpen: true,
		},
		{
			name:  "lock held elsewhere makes a slave",
			setup: func(e *fakeEnv) { e.managerLock = false },
			want:  []string{"info status change wait_for_quorum => slave"},
			state: ha.CRMSlave,
		},
		{
			name:  "no quorum",
			setup: func(e *fakeEnv) { e.quorate = false },
			state: ha.CRMWaitForQuorum,
		},
		{
			name: "a fenced service on this node keeps it from becoming master",
			setup: func(e *fakeEnv) {
				e.ms.ServiceStatus = map[ha.SID]*ha.ServiceStatus{"vm:9": {State: ha.StateFence, Node: "node1"}}
			},
			state: ha.CRMWaitForQuorum,
		},
		{
			name:  "slave loses quorum",
			setup: func(e *fakeEnv) { e.managerLock = false },
			steps: []func(e *fakeEnv){func(e *fakeEnv) { e.quorate = false }},
			want:  []string{"info status change wait_for_quorum => slave", "info status change slave => wait_for_quorum"},
			state: ha.CRMWaitForQuorum,
		},
		{
			name:  "master losing its lock closes the watchdog",
			steps: []func(e *fakeEnv){func(e *fakeEnv) { e.managerLock = false }},
			want: []string{
				"info status change wait_for_quorum => master",
				"info status change master => lost_manager_lock",
				"info status change lost_manager_lock => wait_for_quorum",
			},
			state: ha.CRMWaitForQuorum,
		},
		{
			name:  "inconsistent cluster state skips the round",
			steps: []func(e *fakeEnv){func(e *fakeEnv) { e.clusterOK = false }},
			want:  []string{"noti temporary inconsistent cluster state (cfs restart?), skip round"},
			state: ha.CRMMaster, wdOpen: true,
		},
		{
			name: "read errors are logged verbatim",
			steps: []func(e *fakeEnv){func(e *fakeEnv) {
				e.readErr = errors.New("cfs connection refused - not mounted?")
			}},
			want: []string{
				"err could not read manager status: cfs connection refused - not mounted?",
				"err got unexpected error - cfs connection refused - not mounted?",
			},
			state: ha.CRMMaster, wdOpen: true,
		},
		{
			name: "taking over a fully disarmed stack",
			setup: func(e *fakeEnv) {
				e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarmed}
			},
			want:  []string{"info taking over as disarmed master, skipping watchdog", "info status change wait_for_quorum => master"},
			state: ha.CRMMaster,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:101", "node1", ha.RequestStarted)
			if tc.setup != nil {
				tc.setup(e)
			}
			c := New(e, ha.PVETiming())
			c.Step()
			for _, s := range tc.steps {
				s(e)
				e.tick()
				c.Step()
			}
			assertLogs(t, e.logs, tc.want)
			if c.State() != tc.state {
				t.Errorf("state %s, want %s", c.State(), tc.state)
			}
			if e.wdOpen != tc.wdOpen {
				t.Errorf("watchdog open %v, want %v", e.wdOpen, tc.wdOpen)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Run("master releases its lock", func(t *testing.T) {
		e := threeNodes()
		e.addService("vm:101", "node1", ha.RequestStarted)
		c := startMaster(t, e)
		c.RequestShutdown()
		c.RequestShutdown()
		if c.Step() {
			t.Fatalf("master kept running after a shutdown request")
		}
		assertLogs(t, e.logs, []string{"info server received shutdown request", "info voluntary release CRM lock"})
		if n := countLines(e.logs, "info server received shutdown request"); n != 1 {
			t.Errorf("shutdown request logged %d times, want once", n)
		}
		if e.released != 1 || e.wdOpen {
			t.Errorf("released %d, watchdog open %v: want released once and closed", e.released, e.wdOpen)
		}
		if c.Step() {
			t.Errorf("Step after exit returned true")
		}
	})
	t.Run("slave exits", func(t *testing.T) {
		e := threeNodes()
		e.managerLock = false
		c := New(e, ha.PVETiming())
		c.Step()
		c.RequestShutdown()
		if c.Step() {
			t.Errorf("slave kept running after a shutdown request")
		}
	})
}

func countLines(logs []string, line string) int {
	n := 0
	for _, l := range logs {
		if l == line {
			n++
		}
	}
	return n
}

func TestMasterGoesIdle(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	tm := ha.PVETiming()
	tm.CRMIdleRounds = 3
	c := New(e, tm)
	c.Step()
	delete(e.resources, "vm:101")
	for i := 0; i < 10 && c.State() == ha.CRMMaster; i++ {
		e.tick()
		c.Step()
	}
	assertLogs(t, e.logs, []string{
		"info removing stale service 'vm:101' (no config)",
		"info cluster had no service configured for 3 rounds, going idle.",
		"info status change master => wait_for_quorum",
	})
	if e.wdOpen || e.released != 1 {
		t.Errorf("idle master: watchdog open %v, lock released %d times", e.wdOpen, e.released)
	}
}

// BenchmarkManageRound measures one manage round of a master with 50 nodes
// and 2,000 started services (charter target: under 5 ms), with the
// default (rules-aware) placement.
func BenchmarkManageRound(b *testing.B) { benchmarkManageRound(b, false) }

// BenchmarkManageRoundBasic is BenchmarkManageRound with basicPlacer, i.e.
// the cost of the state machine alone.
func BenchmarkManageRoundBasic(b *testing.B) { benchmarkManageRound(b, true) }

func benchmarkManageRound(b *testing.B, basic bool) { benchmarkManageRoundWith(b, basic, nil) }

// benchmarkManageRoundWith measures a round of 50 nodes and 2,000 started
// services after setup (if any) changed the environment.
func benchmarkManageRoundWith(b *testing.B, basic bool, setup func(e *fakeEnv, nodes []string)) {
	nodes := make([]string, 50)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node%02d", i+1)
	}
	e := newFakeEnv(nodes[0], nodes...)
	for i := 0; i < 2000; i++ {
		sid := ha.SID(fmt.Sprintf("vm:%d", 1000+i))
		e.addService(sid, nodes[i%len(nodes)], ha.RequestStarted)
	}
	if setup != nil {
		setup(e, nodes)
	}
	c := newCRMWith(e, basic)
	c.Step()
	for _, sd := range e.ms.ServiceStatus {
		if sd.State != ha.StateStarted {
			b.Fatalf("service not started after the first round: %+v", sd)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.logs = nil
		e.tick()
		c.Step()
	}
}
