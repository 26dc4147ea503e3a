package crm

import (
	"slices"
	"strings"
	"testing"
	"time"

	"haxd/ha"
)

// startMaster creates node1's CRM on a three-node cluster and runs its
// first round, which makes it master.
func startMaster(t *testing.T, e *fakeEnv) *CRM {
	t.Helper()
	c := New(e, ha.PVETiming())
	if !c.Step() || c.State() != ha.CRMMaster {
		t.Fatalf("first step: state %s, want master; logs %q", c.State(), e.logs)
	}
	return c
}

// round advances the clock one round, lets the fake LRMs succeed at every
// pending request, and runs one CRM step.
func round(t *testing.T, e *fakeEnv, c *CRM) []string {
	t.Helper()
	e.lrmDo(t)
	e.tick()
	e.logs = nil
	if !c.Step() {
		t.Fatalf("crm exited")
	}
	return e.takeLogs()
}

func threeNodes() *fakeEnv { return newFakeEnv("node1", "node1", "node2", "node3") }

func TestFirstRoundAddsServicesAndStartsThem(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestDisabled)
	startMaster(t, e)
	assertLogs(t, e.takeLogs(), []string{
		"info status change startup => wait_for_quorum",
		"info status change wait_for_quorum => master",
		"info node 'node1': state changed from 'unknown' => 'online'",
		"info node 'node2': state changed from 'unknown' => 'online'",
		"info node 'node3': state changed from 'unknown' => 'online'",
		"info adding new service 'vm:101' on node 'node1'",
		"info adding new service 'vm:102' on node 'node2'",
		"info service 'vm:101': state changed from 'request_start' to 'started'  (node = node1)",
	})
	if e.wdOpens != 1 {
		t.Errorf("watchdog opened %d times, want 1", e.wdOpens)
	}
	if got := e.sd(t, "vm:102").State; got != ha.StateRequestStop {
		t.Errorf("vm:102 state %s, want request_stop", got)
	}
}

// Fencing: a dead node's services go to fence after the fence delay, and
// are recovered only in the round in which the CRM got the node's agent
// lock.
func TestFencingOnlyAfterAgentLock(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:103", "node3", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.members["node3"] = ha.NodeInfo{Online: false}
	assertLogs(t, round(t, e, c), []string{"info node 'node3': state changed from 'online' => 'unknown'"})

	// Within the fence delay nothing happens.
	for i := 0; i < 4; i++ {
		logs := round(t, e, c)
		assertNoLog(t, logs, "fence")
	}
	// 60 s after node3 was last seen: fence, but the lock is not free.
	logs := round(t, e, c)
	assertLogs(t, logs, []string{
		"info service 'vm:103': state changed from 'started' to 'fence'",
		"info node 'node3': state changed from 'unknown' => 'fence'",
		"emai FENCE: Try to fence node 'node3'",
	})
	for i := 0; i < 5; i++ {
		logs = round(t, e, c)
		assertNoLog(t, logs, "recover")
		if len(e.steals) != 0 {
			t.Fatalf("service stolen before the agent lock was acquired: %v", e.steals)
		}
		if got := e.sd(t, "vm:103").State; got != ha.StateFence {
			t.Fatalf("vm:103 state %s before the lock, want fence", got)
		}
	}
	e.agentLock["node3"] = true
	logs = round(t, e, c)
	assertLogs(t, logs, []string{
		"info fencing: acknowledged - got agent lock for node 'node3'",
		"info node 'node3': state changed from 'fence' => 'unknown'",
		"emai SUCCEED: fencing: acknowledged - got agent lock for node 'node3'",
		"info service 'vm:103': state changed from 'fence' to 'recovery'",
		"info recover service 'vm:103' from fenced node 'node3' to node 'node2'",
		"info service 'vm:103': state changed from 'recovery' to 'started'  (node = node2)",
	})
	if len(e.steals) != 1 || e.steals[0] != "vm:103 node3->node2" {
		t.Errorf("steals %v, want [vm:103 node3->node2]", e.steals)
	}
	for _, n := range e.agentCalls {
		if n != "node3" {
			t.Errorf("CRM asked for the agent lock of %s, only node3 was to be fenced", n)
		}
	}
}

// A fence device's confirmation: the CRM asks FenceNode before every
// attempt at the agent lock, recovers nothing while the job is pending or
// failed and the lock is held, and recovers in the round the lock is
// granted on the confirmation, saying so.
func TestFencingThroughFenceDevice(t *testing.T) {
	e := threeNodes()
	e.addService("vm:103", "node3", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.members["node3"] = ha.NodeInfo{Online: false}
	for i := 0; i < 6; i++ {
		round(t, e, c)
	}
	if got := e.sd(t, "vm:103").State; got != ha.StateFence {
		t.Fatalf("vm:103 state %s, want fence", got)
	}
	for _, st := range []ha.FenceStatus{ha.FencePending, ha.FenceFailed} {
		e.fence = map[string]ha.FenceResult{"node3": {Status: st}}
		e.fenceCalls = nil
		logs := round(t, e, c)
		assertNoLog(t, logs, "recover")
		if got := strings.Join(e.fenceCalls, ","); got != "fence node3,lock node3" {
			t.Errorf("%v: calls %q, want FenceNode then AcquireAgentLock", st, got)
		}
		if len(e.steals) != 0 {
			t.Fatalf("%v: service stolen without the agent lock", st)
		}
	}
	e.fence = map[string]ha.FenceResult{"node3": {Status: ha.FenceConfirmed, Device: "ipmi"}}
	e.agentLock["node3"] = true
	logs := round(t, e, c)
	assertLogs(t, logs, []string{
		"info fencing: fence device 'ipmi' confirmed node 'node3' powered off",
		"info fencing: acknowledged - got agent lock for node 'node3'",
		"info node 'node3': state changed from 'fence' => 'unknown'",
		"emai SUCCEED: fencing: acknowledged - got agent lock for node 'node3'",
		"info service 'vm:103': state changed from 'fence' to 'recovery'",
		"info recover service 'vm:103' from fenced node 'node3' to node 'node1'",
		"info service 'vm:103': state changed from 'recovery' to 'started'  (node = node1)",
	})
}

// Recovery spreads services by usage: each recovery is accounted before
// the next one is placed.
func TestRecoverySpreadsByUsage(t *testing.T) {
	e := newFakeEnv("node1", "node1", "node2", "node3", "node4")
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestStarted)
	e.addService("vm:103", "node2", ha.RequestStarted)
	e.addService("vm:201", "node4", ha.RequestStarted)
	e.addService("vm:202", "node4", ha.RequestStarted)
	e.addService("vm:203", "node4", ha.RequestStarted)
	e.agentLock["node4"] = true
	e.agents["vm"].(*fakeAgent).locks = map[ha.SID]string{"vm:202": "backup"}
	c := startMaster(t, e)
	round(t, e, c)
	e.members["node4"] = ha.NodeInfo{Online: false}
	var logs []string
	for i := 0; i < 8; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	// Usage before recovery: node1 1, node2 2, node3 0.
	assertLogs(t, logs, []string{
		"info recover service 'vm:201' from fenced node 'node4' to node 'node3'",
		"info recover service 'vm:202' from fenced node 'node4' to node 'node1'",
		"warn removed leftover lock 'backup' from recovered service 'vm:202' to allow its start.",
		"info recover service 'vm:203' from fenced node 'node4' to node 'node3'",
	})
}

func TestRecoveryWithoutNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		requested ha.RequestedState
		want      ha.ServiceState
	}{
		{"started keeps trying", ha.RequestStarted, ha.StateRecovery},
		{"disabled ends recovery", ha.RequestDisabled, ha.StateStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv("node1", "node1")
			e.addService("vm:101", "node2", ha.RequestStarted)
			e.ms = &ha.ManagerStatus{
				NodeStatus:    map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline},
				ServiceStatus: map[ha.SID]*ha.ServiceStatus{"vm:101": {State: ha.StateRecovery, Node: "node2", UID: "x", FailedNodes: []string{"node2"}}},
			}
			e.members["node2"] = ha.NodeInfo{}
			e.members["node1"] = ha.NodeInfo{Online: true}
			// node1 is the only online node; make it unusable by maintenance.
			e.setMode("node1", ha.ModeMaintenance)
			e.ms.NodeStatus["node1"] = ha.NodeMaintenance
			e.resources["vm:101"].State = tc.requested
			c := New(e, ha.PVETiming())
			c.Step()
			assertLogs(t, e.takeLogs(), []string{"err recovering service 'vm:101' from fenced node 'node2' failed, no recovery node found"})
			sd := e.sd(t, "vm:101")
			if sd.State != tc.want {
				t.Errorf("state %s, want %s", sd.State, tc.want)
			}
			if tc.want == ha.StateStopped && sd.FailedNodes != nil {
				t.Errorf("failed_nodes %v not cleared", sd.FailedNodes)
			}
		})
	}
}

// The start failure policy of §7.2.
func TestStartFailurePolicy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		sid         ha.SID
		maxRelocate int
		fails       int // consecutive failed starts
		want        []string
		wantState   ha.ServiceState
	}{
		{
			name: "max_relocate 0 errors at once", sid: "vm:101", maxRelocate: 0, fails: 1,
			want: []string{
				"err recovery policy for service vm:101 failed, entering error state. Failed nodes: node1",
				"info service 'vm:101': state changed from 'started' to 'error'",
			},
			wantState: ha.StateError,
		},
		{
			name: "max_relocate 1 tries the next node then errors", sid: "vm:101", maxRelocate: 1, fails: 2,
			want: []string{
				"warn starting service vm:101 on node 'node1' failed, relocating service.",
				"info migrate service 'vm:101' to node 'node2' (running)",
				"info service 'vm:101': state changed from 'started' to 'migrate'  (node = node1, target = node2)",
				"info service 'vm:101': state changed from 'migrate' to 'started'  (node = node2)",
				"err recovery policy for service vm:101 failed, entering error state. Failed nodes: node1, node2",
			},
			wantState: ha.StateError,
		},
		{
			name: "ct relocates", sid: "ct:101", maxRelocate: 1, fails: 1,
			want: []string{
				"warn starting service ct:101 on node 'node1' failed, relocating service.",
				"info relocate service 'ct:101' to node 'node2'",
				"info service 'ct:101': state changed from 'started' to 'relocate'  (node = node1, target = node2)",
			},
			wantState: ha.StateRelocate,
		},
		{
			name: "all nodes tried retries on current node", sid: "vm:101", maxRelocate: 5, fails: 4,
			want: []string{
				"info migrate service 'vm:101' to node 'node2' (running)",
				"info migrate service 'vm:101' to node 'node3' (running)",
				"warn Start Error Recovery: Tried all available nodes for service 'vm:101', retry start on current node. Tried nodes: node1, node2, node3",
				"warn starting service vm:101 on node 'node3' failed, relocating service.",
				"warn Start Error Recovery: Tried all available nodes for service 'vm:101', retry start on current node. Tried nodes: node1, node2, node3, node3",
			},
			wantState: ha.StateStarted,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService(tc.sid, "node1", ha.RequestStarted).MaxRelocate = tc.maxRelocate
			c := startMaster(t, e)
			var logs []string
			for fails := 0; fails < tc.fails; {
				sd := e.sd(t, tc.sid)
				if sd.State == ha.StateStarted {
					e.result(t, tc.sid, ha.ExitError)
					fails++
				} else {
					e.lrmDo(t)
				}
				e.tick()
				e.logs = nil
				c.Step()
				logs = append(logs, e.takeLogs()...)
			}
			assertLogs(t, logs, tc.want)
			if got := e.sd(t, tc.sid).State; got != tc.wantState {
				t.Errorf("state %s, want %s", got, tc.wantState)
			}
		})
	}
}

func TestStartSuccessClearsFailedNodes(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	c := startMaster(t, e)
	e.result(t, "vm:101", ha.ExitError)
	e.tick()
	c.Step() // -> migrate to node2
	e.lrmDo(t)
	e.tick()
	c.Step() // -> started on node2
	e.takeLogs()
	e.result(t, "vm:101", ha.ExitSuccess)
	e.tick()
	c.Step()
	assertLogs(t, e.takeLogs(), []string{"info relocation policy successful for 'vm:101' on node 'node2', failed nodes: node1"})
	sd := e.sd(t, "vm:101")
	if sd.FailedNodes != nil || !sd.Running {
		t.Errorf("after success: failed_nodes %v running %v, want none and true", sd.FailedNodes, sd.Running)
	}
}

func TestUnrecoverableExitCode(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	c := startMaster(t, e)
	e.result(t, "vm:101", ha.ExitUnknownService)
	e.tick()
	e.logs = nil
	c.Step()
	assertLogs(t, e.takeLogs(), []string{
		"err service 'vm:101' got unrecoverable error (exit code 7)",
		"info service 'vm:101': state changed from 'started' to 'error'",
	})
	// Disabling is the way out of error.
	e.resources["vm:101"].State = ha.RequestDisabled
	assertLogs(t, round(t, e, c), []string{"info service 'vm:101': state changed from 'error' to 'stopped'"})
	if fn := e.sd(t, "vm:101").FailedNodes; fn != nil {
		t.Errorf("failed_nodes %v not cleared", fn)
	}
}

func TestStopCommand(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmd     string
		want    []string
		timeout int
	}{
		{"graceful", "stop vm:101 30", []string{
			"info got crm command: stop vm:101 30",
			"info request graceful stop with timeout '30' for service 'vm:101'",
			"info service 'vm:101': state changed from 'started' to 'request_stop'  (timeout = 30)",
		}, 30},
		{"hard", "stop vm:101 0", []string{
			"info got crm command: stop vm:101 0",
			"info request immediate service hard-stop for service 'vm:101'",
			"info service 'vm:101': state changed from 'started' to 'request_stop'  (timeout = 0)",
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:101", "node1", ha.RequestStarted)
			c := startMaster(t, e)
			e.cmds = []string{tc.cmd}
			assertLogs(t, round(t, e, c), tc.want)
			sd := e.sd(t, "vm:101")
			if sd.Timeout == nil || *sd.Timeout != tc.timeout {
				t.Errorf("timeout %v, want %d", sd.Timeout, tc.timeout)
			}
			if len(e.requested) != 1 || e.requested[0] != "vm:101=stopped" {
				t.Errorf("requested state writes %v, want [vm:101=stopped]", e.requested)
			}
			assertLogs(t, round(t, e, c), []string{"info service 'vm:101': state changed from 'request_stop' to 'stopped'"})
			if e.sd(t, "vm:101").Timeout != nil {
				t.Errorf("timeout kept after the state change")
			}
			// A stop on a stopped service is ignored.
			e.cmds = []string{"stop vm:101 10"}
			assertLogs(t, round(t, e, c), []string{"info ignore service 'vm:101' stop request - service already stopped"})
		})
	}
}

func TestMigrateCommandValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cmd   string
		want  []string
		state ha.ServiceState
	}{
		{"unknown service", "migrate vm:999 node2", []string{"err crm command error - no such service: migrate vm:999 node2"}, ha.StateStarted},
		{"target offline", "migrate vm:101 node3", []string{"err crm command error - node not online: migrate vm:101 node3"}, ha.StateStarted},
		{"unknown node", "relocate vm:101 node9", []string{"err crm command error - node not online: relocate vm:101 node9"}, ha.StateStarted},
		{"already there", "migrate vm:101 node1", []string{"info ignore crm command - service already on target node: migrate vm:101 node1"}, ha.StateStarted},
		{"migrate", "migrate vm:101 node2", []string{
			"info got crm command: migrate vm:101 node2",
			"info migrate service 'vm:101' to node 'node2'",
			"info service 'vm:101': state changed from 'started' to 'migrate'  (node = node1, target = node2)",
		}, ha.StateMigrate},
		{"relocate", "relocate vm:101 node2", []string{
			"info got crm command: relocate vm:101 node2",
			"info relocate service 'vm:101' to node 'node2'",
			"info service 'vm:101': state changed from 'started' to 'relocate'  (node = node1, target = node2)",
		}, ha.StateRelocate},
		{"garbage", "migrate vm:101", []string{"err unable to parse crm command: migrate vm:101"}, ha.StateStarted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:101", "node1", ha.RequestStarted)
			c := startMaster(t, e)
			e.members["node3"] = ha.NodeInfo{}
			round(t, e, c)
			e.cmds = []string{tc.cmd}
			assertLogs(t, round(t, e, c), tc.want)
			if got := e.sd(t, "vm:101").State; got != tc.state {
				t.Errorf("state %s, want %s", got, tc.state)
			}
		})
	}
}

func TestMigrateStoppedService(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStopped)
	c := startMaster(t, e)
	round(t, e, c) // request_stop -> stopped
	e.cmds = []string{"migrate vm:101 node2"}
	assertLogs(t, round(t, e, c), []string{
		"info got crm command: migrate vm:101 node2",
		"info service 'vm:101': state changed from 'stopped' to 'migrate'  (node = node1, target = node2)",
	})
	assertLogs(t, round(t, e, c), []string{
		"info service 'vm:101': state changed from 'migrate' to 'request_stop'  (node = node2)",
	})
}

func TestNodeMaintenance(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node3", ha.RequestStarted)
	e.addService("ct:102", "node3", ha.RequestStopped)
	c := startMaster(t, e)
	round(t, e, c)
	e.cmds = []string{"enable-node-maintenance node3"}
	round(t, e, c)
	if r := e.ms.NodeRequest["node3"]; r == nil || !r.Maintenance {
		t.Fatalf("node_request %v, want maintenance for node3", e.ms.NodeRequest)
	}
	e.setMode("node3", ha.ModeMaintenance)
	assertLogs(t, round(t, e, c), []string{
		"info node 'node3': state changed from 'online' => 'maintenance'",
		"info migrate service 'vm:101' to node 'node1' (running)",
		"info service 'vm:101': state changed from 'started' to 'migrate'  (node = node3, target = node1)",
	})
	if got := e.sd(t, "vm:101").MaintenanceNode; got != "node3" {
		t.Errorf("maintenance_node %q, want node3", got)
	}
	round(t, e, c)
	e.cmds = []string{"enable-node-maintenance node3"}
	assertLogs(t, round(t, e, c), []string{"info ignoring crm command - node node3 is already in maintenance state"})
	if got := e.sd(t, "ct:102"); got.State != ha.StateStopped || got.Node != "node3" {
		t.Errorf("stopped ct:102 is %s on %s, want stopped on node3", got.State, got.Node)
	}

	e.cmds = []string{"disable-node-maintenance node3"}
	round(t, e, c)
	if len(e.ms.NodeRequest) != 0 {
		t.Errorf("node_request %v after disable, want empty", e.ms.NodeRequest)
	}
	e.setMode("node3", ha.ModeActive)
	assertLogs(t, round(t, e, c), []string{
		"info node 'node3': state changed from 'maintenance' => 'online'",
		"info moving service 'vm:101' back to 'node3', node came back from maintenance.",
		"info migrate service 'vm:101' to node 'node3' (running)",
	})
	e.cmds = []string{"disable-node-maintenance node2"}
	assertLogs(t, round(t, e, c), []string{"warn clearing maintenance of node node2 requested, but it's in state online"})
}

func TestDisarmFreezeAndArm(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestStopped)
	c := startMaster(t, e)
	round(t, e, c)
	e.cmds = []string{"disarm-ha freeze"}
	assertLogs(t, round(t, e, c), []string{
		"info got crm command: disarm-ha freeze",
		"info disarm: freezing service 'vm:101' (was 'started')",
		"info disarm: freezing service 'vm:102' (was 'stopped')",
	})
	if e.ms.Disarm == nil || e.ms.Disarm.State != ha.Disarming {
		t.Fatalf("disarm %+v, want disarming", e.ms.Disarm)
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		e.setMode(n, ha.ModeDisarm)
	}
	e.cmds = []string{"disarm-ha ignore", "enable-node-maintenance node2"}
	assertLogs(t, round(t, e, c), []string{
		"noti ignoring disarm-ha command - already in disarm state (disarming)",
		"warn ignoring maintenance command for node node2 - HA stack is disarmed",
		"info all LRMs disarmed, HA stack is now fully disarmed",
		"info HA stack fully disarmed, releasing CRM watchdog",
	})
	if e.wdOpen {
		t.Errorf("CRM watchdog still open when fully disarmed")
	}
	// New services are not added while disarmed.
	e.addService("vm:103", "node3", ha.RequestStarted)
	logs := round(t, e, c)
	assertNoLog(t, logs, "adding new service")
	if c.State() != ha.CRMMaster {
		t.Errorf("state %s while disarmed, want master", c.State())
	}

	e.cmds = []string{"arm-ha"}
	assertLogs(t, round(t, e, c), []string{"info got crm command: arm-ha", "info re-arming HA stack"})
	for _, n := range []string{"node1", "node2", "node3"} {
		e.setMode(n, ha.ModeActive)
	}
	assertLogs(t, round(t, e, c), []string{
		"info adding new service 'vm:103' on node 'node3'",
		"info service 'vm:101': state changed from 'freeze' to 'started'",
		"info service 'vm:102': state changed from 'freeze' to 'request_stop'",
	})
	if !e.wdOpen {
		t.Errorf("watchdog not reopened after arm")
	}
	e.cmds = []string{"arm-ha"}
	assertLogs(t, round(t, e, c), []string{"noti ignoring arm-ha command - HA stack is not disarmed"})
}

func TestDisarmIgnoreAndDeferral(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.cmds = []string{"migrate vm:102 node3"}
	round(t, e, c) // vm:102 migrate, no result yet
	e.cmds = []string{"disarm-ha ignore"}
	e.tick()
	e.logs = nil
	c.Step()
	assertLogs(t, e.takeLogs(), []string{
		"info got crm command: disarm-ha ignore",
		"info disarm: suspending HA tracking for service 'vm:101'",
		"info disarm: suspending HA tracking for service 'vm:102'",
		"info deferring disarm - service 'vm:102' is in 'migrate' state",
	})
	// The deferred service finishes its migration; then the stack prunes.
	assertLogs(t, round(t, e, c), []string{
		"info deferring disarm - service 'vm:102' is in 'migrate' state",
		"info service 'vm:102': state changed from 'migrate' to 'started'  (node = node3)",
	})
	e.sd(t, "vm:101").FailedNodes = nil
	logs := round(t, e, c)
	assertNoLog(t, logs, "deferring")
	sd := e.sd(t, "vm:102")
	if sd.State != ha.StateStarted || sd.Running {
		t.Errorf("ignore mode pruned entry %+v, want started without running", sd)
	}
	// A resource moved by hand while ignored is picked up on arm.
	e.resources["vm:101"].Node = "node2"
	e.cmds = []string{"arm-ha"}
	assertLogs(t, round(t, e, c), []string{
		"info got crm command: arm-ha",
		"info service 'vm:101': updating node 'node1' => 'node2' (changed while disarmed)",
	})
}

func TestFreezeOnLRMRestart(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node2", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestStopped)
	e.addService("vm:103", "node3", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.setMode("node2", ha.ModeRestart)
	logs := round(t, e, c)
	assertLogs(t, logs, []string{
		"info service 'vm:101': state changed from 'started' to 'freeze'",
		"info service 'vm:102': state changed from 'stopped' to 'freeze'",
	})
	assertNoLog(t, logs, "vm:103")
	// Frozen services on a dead node are never fenced.
	e.members["node2"] = ha.NodeInfo{}
	for i := 0; i < 12; i++ {
		logs = round(t, e, c)
		assertNoLog(t, logs, "vm:101")
	}
	e.members["node2"] = ha.NodeInfo{Online: true}
	e.setMode("node2", ha.ModeActive)
	assertLogs(t, round(t, e, c), []string{
		"info service 'vm:101': state changed from 'freeze' to 'started'",
		"info service 'vm:102': state changed from 'freeze' to 'request_stop'",
	})
}

// A new master keeps node_status, service_status, node_request and disarm,
// and restarts the fence delay from its own first look.
func TestMasterTakeoverKeepsStatus(t *testing.T) {
	e := newFakeEnv("node2", "node2", "node3")
	e.members["node1"] = ha.NodeInfo{}
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node2", ha.RequestStarted)
	e.ms = &ha.ManagerStatus{
		MasterNode: "node1", Timestamp: 990,
		NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline, "node3": ha.NodeMaintenance},
		ServiceStatus: map[ha.SID]*ha.ServiceStatus{
			"vm:101": {State: ha.StateStarted, Node: "node1", UID: "a", Running: true},
			"vm:102": {State: ha.StateStarted, Node: "node2", UID: "b", Running: true},
		},
		NodeRequest: map[string]*ha.NodeRequest{"node3": {Maintenance: true}},
	}
	e.setMode("node3", ha.ModeMaintenance)
	c := New(e, ha.PVETiming())
	c.Step()
	logs := e.takeLogs()
	assertLogs(t, logs, []string{"info status change wait_for_quorum => master", "info node 'node1': state changed from 'online' => 'unknown'"})
	assertNoLog(t, logs, "adding new service")
	if e.ms.MasterNode != "node2" || e.ms.NodeRequest["node3"] == nil || e.ms.NodeStatus["node3"] != ha.NodeMaintenance {
		t.Errorf("written status %+v lost the taken-over fields", e.ms)
	}
	// The fence delay counts from this master's first look at node1.
	for i := 0; i < 6; i++ {
		if i == 5 {
			assertLogs(t, round(t, e, c), []string{"info service 'vm:101': state changed from 'started' to 'fence'"})
			break
		}
		assertNoLog(t, round(t, e, c), "'fence'")
	}
}

func TestConfigRemoval(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	e.addService("vm:102", "node1", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	delete(e.resources, "vm:101")
	e.resources["vm:102"].State = ha.RequestIgnored
	assertLogs(t, round(t, e, c), []string{
		"info removing stale service 'vm:101' (no config)",
		"info removing stale service 'vm:102' (ignored state requested)",
	})
	if len(e.ms.ServiceStatus) != 0 {
		t.Errorf("service status %v, want empty", e.ms.ServiceStatus)
	}
	e.resources["vm:102"].State = ha.RequestStarted
	assertLogs(t, round(t, e, c), []string{"info adding new service 'vm:102' on node 'node1'"})
}

func TestNodeStateUpdate(t *testing.T) {
	e := threeNodes()
	tm := ha.PVETiming()
	tm.GoneNodeDelete = time.Minute
	e.addService("vm:101", "node1", ha.RequestStarted)
	c := New(e, tm)
	c.Step()
	e.takeLogs()
	delete(e.members, "node3")
	assertLogs(t, round(t, e, c), []string{
		"info node 'node3': state changed from 'online' => 'unknown'",
	})
	assertLogs(t, round(t, e, c), []string{"info node 'node3': state changed from 'unknown' => 'gone'"})
	var logs []string
	for i := 0; i < 7; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	assertLogs(t, logs, []string{"noti deleting gone node 'node3', not a cluster member anymore."})
	if _, ok := e.ms.NodeStatus["node3"]; ok {
		t.Errorf("gone node3 still in node status")
	}
}

func TestMasterSeemsOffline(t *testing.T) {
	e := threeNodes()
	e.addService("vm:101", "node1", ha.RequestStarted)
	c := startMaster(t, e)
	writes := e.msWrites
	e.members["node1"] = ha.NodeInfo{}
	assertLogs(t, round(t, e, c), []string{"info node 'node1': state changed from 'online' => 'unknown'", "info master seems offline"})
	if e.msWrites != writes {
		t.Errorf("manager status written by an offline master")
	}
}

// A node that disarmed released its agent lock while its services kept
// running: after arm-ha, that lock proves nothing, so its services are not
// fenced while the node is away, whatever its last LRM status says. Only a
// lock that timed out after it was held is a proof.
func TestNoFencingOfDisarmedNodeAfterArm(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lrm is node3's last LRM status: an LRM writes it after it
		// released its lock, so a node cut off in between still reads
		// active.
		lrm             ha.LRMStatus
		releasedRunning bool
		wantFence       bool
	}{
		{"released with services running, status says disarmed", ha.LRMStatus{State: ha.LRMWaitForAgentLock, Mode: ha.ModeDisarm}, true, false},
		{"released with services running, status still says active", ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeActive}, true, false},
		{"lock held, then timed out", ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeDisarm}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:103", "node3", ha.RequestStarted)
			e.agentLock["node3"] = true // a free lock: taking it would succeed at once
			c := startMaster(t, e)
			round(t, e, c)
			e.cmds = []string{"disarm-ha ignore"}
			round(t, e, c)
			for _, n := range []string{"node1", "node2", "node3"} {
				e.lrm[n] = &ha.LRMStatus{State: ha.LRMWaitForAgentLock, Mode: ha.ModeDisarm}
			}
			st := tc.lrm
			e.lrm["node3"] = &st
			e.releasedRunning["node3"] = tc.releasedRunning
			round(t, e, c)
			e.members["node3"] = ha.NodeInfo{}
			for i := 0; i < 10; i++ {
				round(t, e, c)
			}
			e.cmds = []string{"arm-ha"}
			e.setMode("node1", ha.ModeActive)
			e.setMode("node2", ha.ModeActive)
			var logs []string
			for i := 0; i < 10; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			fenced := slices.Contains(logs, "info service 'vm:103': state changed from 'started' to 'fence'")
			if fenced != tc.wantFence {
				t.Errorf("vm:103 fenced %v, want %v; logs:\n%v", fenced, tc.wantFence, logs)
			}
			if !tc.wantFence {
				if slices.Contains(e.agentCalls, "node3") {
					t.Errorf("the master asked for node3's lock: %v", e.agentCalls)
				}
				if len(e.steals) > 0 {
					t.Errorf("steals %v, want none", e.steals)
				}
			}
		})
	}
}

// The path of seed 77703840: node3 disarms and releases its lock with
// vm:103 running, arm-ha comes, node3's LRM sees it and writes mode active
// before it could take its lock again, and node3 is cut off. The master
// must not fence node3 on its released lock; once node3 takes its lock
// back, the usual timing applies: cut off again, it is fenced only after
// its lock timed out.
func TestDisarmCutOffArmWaitsForTheNodeToTakeItsLock(t *testing.T) {
	e := threeNodes()
	e.addService("vm:103", "node3", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.lrmDo(t)
	round(t, e, c)
	if sd := e.sd(t, "vm:103"); sd.State != ha.StateStarted || sd.Node != "node3" {
		t.Fatalf("vm:103 is %s on %s, want started on node3", sd.State, sd.Node)
	}
	e.cmds = []string{"disarm-ha freeze"}
	round(t, e, c)
	for _, n := range []string{"node1", "node2", "node3"} {
		e.lrm[n] = &ha.LRMStatus{State: ha.LRMWaitForAgentLock, Mode: ha.ModeDisarm}
	}
	e.releasedRunning["node3"] = true
	round(t, e, c)
	round(t, e, c)
	if sd := e.sd(t, "vm:103"); sd.State != ha.StateFreeze {
		t.Fatalf("vm:103 is %s, want freeze", sd.State)
	}

	// arm-ha: every LRM reports mode active, node3's before it took its
	// lock, and node3 is cut off.
	e.cmds = []string{"arm-ha"}
	for _, n := range []string{"node1", "node2", "node3"} {
		e.lrm[n] = &ha.LRMStatus{State: ha.LRMWaitForAgentLock, Mode: ha.ModeActive}
	}
	e.members["node3"] = ha.NodeInfo{}
	e.agentLock["node3"] = true // would the lock rule not refuse it, it could be taken
	var logs []string
	for i := 0; i < 30; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	assertNoLog(t, logs, "'fence'")
	assertNoLog(t, logs, "recover")
	warned := 0
	for _, l := range logs {
		if strings.HasPrefix(l, "warn not fencing node 'node3'") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings that node3 is not fenced, want 1:\n%s", warned, strings.Join(logs, "\n"))
	}
	if slices.Contains(e.agentCalls, "node3") || len(e.steals) > 0 {
		t.Fatalf("master asked for node3's lock %v or stole %v", e.agentCalls, e.steals)
	}
	if sd := e.sd(t, "vm:103"); sd.Node != "node3" {
		t.Fatalf("vm:103 moved to %s", sd.Node)
	}

	// node3 returns and takes its lock: the record is gone.
	e.members["node3"] = ha.NodeInfo{Online: true}
	e.releasedRunning["node3"] = false
	e.lrm["node3"] = &ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeActive}
	round(t, e, c)
	e.lrmDo(t)
	round(t, e, c)
	// Cut off again: fenced once its lock can be taken (timed out).
	e.members["node3"] = ha.NodeInfo{}
	e.agentLock["node3"] = false
	logs = nil
	for i := 0; i < 10; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	assertLogs(t, logs, []string{"info service 'vm:103': state changed from 'started' to 'fence'"})
	assertNoLog(t, logs, "recover")
	e.agentLock["node3"] = true
	logs = round(t, e, c)
	assertLogs(t, logs, []string{
		"info fencing: acknowledged - got agent lock for node 'node3'",
		"info service 'vm:103': state changed from 'fence' to 'recovery'",
	})
}

// A node whose services are already to be fenced may release its lock
// with services running (it reached the store while the master saw it
// offline). Its LRM never takes its lock while fencing is requested, so
// the master gives the fencing up and freezes the services instead of
// waiting forever.
func TestFencingGivenUpWhenTheLockIsReleasedRunning(t *testing.T) {
	e := threeNodes()
	e.addService("vm:103", "node3", ha.RequestStarted)
	c := startMaster(t, e)
	round(t, e, c)
	e.lrmDo(t)
	round(t, e, c)
	e.members["node3"] = ha.NodeInfo{}
	var logs []string
	for i := 0; i < 10; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	assertLogs(t, logs, []string{"info service 'vm:103': state changed from 'started' to 'fence'"})
	e.releasedRunning["node3"] = true
	logs = round(t, e, c)
	assertLogs(t, logs, []string{
		"warn not fencing node 'node3': its LRM released its agent lock with services running, which proves nothing; its services wait for it to take its lock again",
		"info service 'vm:103': state changed from 'fence' to 'freeze'",
		"info node 'node3': state changed from 'fence' => 'unknown'",
	})
	logs = nil
	for i := 0; i < 10; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	assertNoLog(t, logs, "fence")
	if len(e.steals) > 0 {
		t.Fatalf("steals %v", e.steals)
	}
}

// A service waits in recovery while its fenced node comes back (seed
// 77702804): the master's hold on that node's lock, taken when it fenced
// it, has long expired. The master steals only while it holds the node's
// lock at that moment; if the node took its lock back, the service is
// recovered on that node (it runs nothing in recovery), without a steal
// and without an error every round.
func TestRecoveryNeedsTheFencedNodesLockAtTheSteal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lockTaken bool // the master can take node3's lock again
		online    bool // node3 is online
		wantNode  string
		wantState ha.ServiceState
		wantSteal bool
	}{
		{"lock still free for the master: recovered elsewhere", true, false, "node1", ha.StateStarted, true},
		{"node took its lock back and is online: recovered on it", false, true, "node3", ha.StateStarted, false},
		{"node took its lock back and is away: waits", false, false, "node3", ha.StateRecovery, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:103", "node3", ha.RequestStarted)
			for _, sid := range []ha.SID{"vm:104", "vm:105"} {
				e.addService(sid, "node3", ha.RequestStarted)
			}
			e.ms = &ha.ManagerStatus{
				MasterNode: "node2",
				NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline, "node3": ha.NodeUnknown},
				ServiceStatus: map[ha.SID]*ha.ServiceStatus{
					"vm:103": {State: ha.StateRecovery, Node: "node3", UID: "old"},
					"vm:104": {State: ha.StateStarted, Node: "node3", UID: "old4", Running: true},
					"vm:105": {State: ha.StateStarted, Node: "node3", UID: "old5", Running: true},
				},
			}
			e.members["node3"] = ha.NodeInfo{Online: tc.online}
			e.agentLock["node3"] = tc.lockTaken
			c := startMaster(t, e)
			logs := e.takeLogs()
			for i := 0; i < 3; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			sd := e.sd(t, "vm:103")
			if sd.Node != tc.wantNode || sd.State != tc.wantState {
				t.Errorf("vm:103 %s on %s, want %s on %s; logs:\n%s", sd.State, sd.Node, tc.wantState, tc.wantNode, strings.Join(logs, "\n"))
			}
			if got := len(e.steals) > 0; got != tc.wantSteal {
				t.Errorf("steals %v, want a steal %v", e.steals, tc.wantSteal)
			}
			assertNoLog(t, logs, "err ")
		})
	}
}

// A steal that the store committed but whose answer was lost (found by the
// scale benchmark: "outcome unknown", then "it is on node3: conflicting
// state" every round and no service recovered) is finished on the node
// the store names, without a second steal and without an error.
func TestRecoveryFinishesAStealWhoseAnswerWasLost(t *testing.T) {
	e := threeNodes()
	e.addService("vm:103", "node3", ha.RequestStarted)
	e.ms = &ha.ManagerStatus{
		MasterNode: "node2",
		NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline, "node2": ha.NodeOnline, "node3": ha.NodeUnknown},
		ServiceStatus: map[ha.SID]*ha.ServiceStatus{
			"vm:103": {State: ha.StateRecovery, Node: "node3", UID: "old"},
		},
	}
	e.members["node3"] = ha.NodeInfo{Online: false}
	e.agentLock["node3"] = true
	e.stealAnswerLost = 1
	c := startMaster(t, e)
	logs := e.takeLogs()
	for i := 0; i < 3; i++ {
		logs = append(logs, round(t, e, c)...)
	}
	sd := e.sd(t, "vm:103")
	if sd.State != ha.StateStarted || sd.Node != e.resources["vm:103"].Node || sd.Node == "node3" {
		t.Errorf("vm:103 %s on %s (store: %s), want started on the node the store names; logs:\n%s", sd.State, sd.Node, e.resources["vm:103"].Node, strings.Join(logs, "\n"))
	}
	if len(e.steals) != 1 {
		t.Errorf("steals %v, want exactly one", e.steals)
	}
	assertLogs(t, logs, []string{"info service 'vm:103' was already moved from fenced node 'node3' to node '" + sd.Node + "' by an earlier steal, finishing its recovery there"})
}

// A started service that runs is re-checked (a new request UID for its
// LRM) every round with PVE's timing, but only every ServiceCheckInterval
// with a longer one; a failed start is answered at once either way.
func TestRunningServiceIsRecheckedEveryServiceCheckInterval(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		// uidChanges says, per round after the service runs (10 s apart),
		// whether its UID changes.
		uidChanges []bool
	}{
		{"every round (PVE)", 0, []bool{true, true, true, true, true}},
		{"every 30 s", 30 * time.Second, []bool{false, true, false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := threeNodes()
			e.addService("vm:101", "node1", ha.RequestStarted)
			timing := ha.PVETiming()
			timing.ServiceCheckInterval = tt.interval
			c := New(e, timing)
			if !c.Step() || c.State() != ha.CRMMaster {
				t.Fatalf("first step: state %s, want master", c.State())
			}
			round(t, e, c) // the LRM starts it; the CRM sees it running
			for i, want := range tt.uidChanges {
				before := e.sd(t, "vm:101").UID
				round(t, e, c)
				if got := e.sd(t, "vm:101").UID != before; got != want {
					t.Errorf("round %d: UID changed = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}
