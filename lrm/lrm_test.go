package lrm

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"haxd/ha"
)

const (
	vm1 ha.SID = "vm:101"
	vm2 ha.SID = "vm:102"
	vm3 ha.SID = "vm:103"
)

// newTestLRM creates an LRM on e with the PVE timings and forgets the
// startup line.
func newTestLRM(t *testing.T, e *fakeEnv, mutate ...func(*Options)) *LRM {
	t.Helper()
	opts := Options{Timing: ha.PVETiming()}
	for _, m := range mutate {
		m(&opts)
	}
	l := New(e, opts)
	if got := e.logs.take(); !slices.Equal(got, []string{"info status change startup => wait_for_agent_lock"}) {
		t.Fatalf("startup logs %q", got)
	}
	return l
}

// step runs one LRM round and advances the clock by one PVE round.
func step(t *testing.T, l *LRM, e *fakeEnv) bool {
	t.Helper()
	ok := l.Step()
	e.now = e.now.Add(10 * time.Second)
	return ok
}

// activeLRM returns an LRM that holds its lock with vm:101 started and
// running on node1 (request uid "u1" already executed).
func activeLRM(t *testing.T, e *fakeEnv, mutate ...func(*Options)) *LRM {
	t.Helper()
	e.addService(vm1, "node1", ha.StateStarted, "u1")
	l := newTestLRM(t, e, mutate...)
	if !step(t, l, e) || l.State() != ha.LRMActive {
		t.Fatalf("setup: state %s, want active", l.State())
	}
	if !e.agent.running[vm1] {
		t.Fatal("setup: vm:101 not started")
	}
	e.logs.take()
	e.agent.calls = nil
	return l
}

func wantLogs(t *testing.T, e *fakeEnv, want ...string) {
	t.Helper()
	got := e.logs.take()
	if !slices.Equal(got, want) {
		t.Errorf("logs:\n  got  %q\n  want %q", got, want)
	}
}

func TestNewLogsStartupAndWaits(t *testing.T) {
	e := newFakeEnv()
	l := New(e, Options{Timing: ha.PVETiming()})
	wantLogs(t, e, "info status change startup => wait_for_agent_lock")
	if l.State() != ha.LRMWaitForAgentLock || l.Mode() != ha.ModeActive {
		t.Errorf("state %s mode %s, want wait_for_agent_lock active", l.State(), l.Mode())
	}
}

func TestLockTakenOnlyWithActiveServices(t *testing.T) {
	tests := []struct {
		name      string
		services  map[ha.SID]ha.ServiceStatus
		nodeState ha.NodeState
		quorate   bool
		disarm    bool
		wantLock  bool
	}{
		{name: "no services", quorate: true},
		{name: "started on this node", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStarted, Node: "node1", UID: "u"}}, quorate: true, wantLock: true},
		{name: "request_stop counts", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateRequestStop, Node: "node1", UID: "u"}}, quorate: true, wantLock: true},
		{name: "incoming migration target", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateMigrate, Node: "node2", Target: "node1", UID: "u"}}, quorate: true, wantLock: true},
		{name: "stopped does not count", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStopped, Node: "node1", UID: "u"}}, quorate: true},
		{name: "request_start does not count", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateRequestStart, Node: "node1", UID: "u"}}, quorate: true},
		{name: "freeze and error do not count", services: map[ha.SID]ha.ServiceStatus{
			vm1: {State: ha.StateFreeze, Node: "node1", UID: "u"}, vm2: {State: ha.StateError, Node: "node1", UID: "v"}}, quorate: true},
		{name: "service of another node", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStarted, Node: "node2", UID: "u"}}, quorate: true},
		{name: "not quorate", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStarted, Node: "node1", UID: "u"}}},
		{name: "fence requested by node state", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStarted, Node: "node1", UID: "u"}}, nodeState: ha.NodeFence, quorate: true},
		{name: "fence requested by a service", services: map[ha.SID]ha.ServiceStatus{
			vm1: {State: ha.StateStarted, Node: "node1", UID: "u"}, vm2: {State: ha.StateFence, Node: "node1", UID: "v"}}, quorate: true},
		{name: "disarmed", services: map[ha.SID]ha.ServiceStatus{vm1: {State: ha.StateStarted, Node: "node1", UID: "u"}}, quorate: true, disarm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			e.quorate = tt.quorate
			for sid, sd := range tt.services {
				cfg := ha.DefaultResourceConfig(sid, sd.Node)
				e.res[sid] = &cfg
				e.setService(sid, sd)
			}
			if tt.nodeState != "" {
				e.ms.NodeStatus["node1"] = tt.nodeState
			}
			if tt.disarm {
				e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarming}
			}
			written := true // the gate is tested separately
			l := newTestLRM(t, e, func(o *Options) { o.StatusWritten = &written })
			for range 3 {
				step(t, l, e)
			}
			gotLock := e.lockHolder == "node1"
			if gotLock != tt.wantLock || e.wdOpen != tt.wantLock {
				t.Fatalf("lock %v watchdog %v, want %v", gotLock, e.wdOpen, tt.wantLock)
			}
			wantState := ha.LRMWaitForAgentLock
			if tt.wantLock {
				wantState = ha.LRMActive
				if e.wdOpens != 1 || e.wdUpdates != 2 {
					t.Errorf("watchdog opened %d fed %d times, want opened once and fed on the 2 later rounds", e.wdOpens, e.wdUpdates)
				}
			}
			if l.State() != wantState {
				t.Errorf("state %s, want %s", l.State(), wantState)
			}
		})
	}
}

func TestLostLockStopsFeedingWatchdogAndKeepsServices(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	updates := e.wdUpdates

	e.lockHolder = "node2" // the refresh fails from now on
	if !step(t, l, e) {
		t.Fatal("daemon exited")
	}
	wantLogs(t, e, "info status change active => lost_agent_lock")
	for range 3 {
		step(t, l, e)
	}
	if l.State() != ha.LRMLostAgentLock {
		t.Fatalf("state %s, want lost_agent_lock", l.State())
	}
	if !e.wdOpen || e.wdCloses != 0 || e.wdUpdates != updates {
		t.Errorf("watchdog open=%v closes=%d updates=%d, want open, never closed, not fed (%d)", e.wdOpen, e.wdCloses, e.wdUpdates, updates)
	}
	if !e.agent.running[vm1] || len(e.agent.calls) != 0 {
		t.Errorf("lost_agent_lock touched services: running=%v calls=%q", e.agent.running[vm1], e.agent.calls)
	}
	if e.status.State != ha.LRMActive {
		t.Errorf("status written in lost_agent_lock: %s (only the transition round writes)", e.status.State)
	}

	e.lockHolder = "" // the lock comes back
	step(t, l, e)
	wantLogs(t, e, "info status change lost_agent_lock => active")
	if e.wdOpens != 1 || e.wdUpdates != updates+1 {
		t.Errorf("watchdog opens=%d updates=%d, want the open handle fed once", e.wdOpens, e.wdUpdates)
	}
}

func TestFenceRequestGivesUpLock(t *testing.T) {
	tests := []struct {
		name        string
		maintenance bool
		fence       func(e *fakeEnv)
		wantLog     string
	}{
		{name: "node state fence", fence: func(e *fakeEnv) { e.ms.NodeStatus["node1"] = ha.NodeFence },
			wantLog: "err node needs to be fenced - releasing agent_lock"},
		{name: "service in fence", fence: func(e *fakeEnv) { e.ms.ServiceStatus[vm1].State = ha.StateFence },
			wantLog: "err node needs to be fenced - releasing agent_lock"},
		{name: "during maintenance", maintenance: true, fence: func(e *fakeEnv) { e.ms.NodeStatus["node1"] = ha.NodeFence },
			wantLog: "err node needs to be fenced during maintenance mode - releasing agent_lock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			l := activeLRM(t, e)
			if tt.maintenance {
				e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
				step(t, l, e)
				wantLogs(t, e, "info status change active => maintenance")
			}
			acquires := e.acquires
			tt.fence(e)
			step(t, l, e)
			from := "active"
			if tt.maintenance {
				from = "maintenance"
			}
			wantLogs(t, e, tt.wantLog, "info status change "+from+" => lost_agent_lock")
			step(t, l, e)
			if e.acquires != acquires {
				t.Errorf("lock acquired %d times while fencing is requested", e.acquires-acquires)
			}
			if e.lockHolder != "node1" || !e.wdOpen {
				t.Errorf("lock holder %q watchdog open %v: the lock must not be released nor the watchdog closed", e.lockHolder, e.wdOpen)
			}
		})
	}
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		name       string
		failStarts int
		maxRestart int
		rounds     int
		wantLogs   []string
		wantCode   ha.ExitCode
		wantResult bool
	}{
		{name: "one failure is retried", failStarts: 1, maxRestart: 1, rounds: 2,
			wantLogs: []string{
				"info starting service vm:101", "warn unable to start service vm:101", "warn restart policy: retry number 1 for service 'vm:101'",
				"info starting service vm:101", "info service status vm:101 started",
			}, wantCode: ha.ExitSuccess, wantResult: true},
		{name: "retries exhausted", failStarts: 9, maxRestart: 2, rounds: 4,
			wantLogs: []string{
				"info starting service vm:101", "warn unable to start service vm:101", "warn restart policy: retry number 1 for service 'vm:101'",
				"info starting service vm:101", "warn unable to start service vm:101", "warn restart policy: retry number 2 for service 'vm:101'",
				"info starting service vm:101", "warn unable to start service vm:101", "err unable to start service vm:101 on local node after 2 retries",
			}, wantCode: ha.ExitError, wantResult: true},
		{name: "max_restart 0 reports at once", failStarts: 1, maxRestart: 0, rounds: 1,
			wantLogs: []string{
				"info starting service vm:101", "warn unable to start service vm:101", "err unable to start service vm:101 on local node after 0 retries",
			}, wantCode: ha.ExitError, wantResult: true},
		{name: "no result while retrying", failStarts: 1, maxRestart: 1, rounds: 1,
			wantLogs: []string{
				"info starting service vm:101", "warn unable to start service vm:101", "warn restart policy: retry number 1 for service 'vm:101'",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			e.addService(vm1, "node1", ha.StateStarted, "u1")
			e.res[vm1].MaxRestart = tt.maxRestart
			e.agent.failStarts[vm1] = tt.failStarts
			l := newTestLRM(t, e)
			for range tt.rounds {
				step(t, l, e)
			}
			got := e.logs.take()
			got = slices.DeleteFunc(got, func(s string) bool { return strings.Contains(s, "status change") })
			if !slices.Equal(got, tt.wantLogs) {
				t.Errorf("logs:\n  got  %q\n  want %q", got, tt.wantLogs)
			}
			res, ok := e.status.Results["u1"]
			if ok != tt.wantResult {
				t.Fatalf("result present %v, want %v (results %v)", ok, tt.wantResult, e.status.Results)
			}
			if ok && (res.ExitCode != tt.wantCode || res.SID != vm1 || res.State != ha.StateStarted) {
				t.Errorf("result %+v, want sid vm:101 state started exit %d", res, tt.wantCode)
			}
			if ok && l.restartTries[vm1] != 0 {
				t.Errorf("restart counter %d after a reported result, want 0", l.restartTries[vm1])
			}
		})
	}
}

func TestRestartCounterForgottenWithService(t *testing.T) {
	e := newFakeEnv()
	e.addService(vm1, "node1", ha.StateStarted, "u1")
	e.addService(vm2, "node1", ha.StateStarted, "u2")
	e.agent.failStarts[vm1] = 1
	l := newTestLRM(t, e)
	step(t, l, e)
	if l.restartTries[vm1] != 1 {
		t.Fatalf("restart counter %d, want 1", l.restartTries[vm1])
	}
	delete(e.ms.ServiceStatus, vm1)
	step(t, l, e)
	if _, ok := l.restartTries[vm1]; ok {
		t.Error("restart counter of a SID that left the service view was kept")
	}
}

func TestRequestsExecutedOncePerUIDExceptStopped(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)

	// The service dies; the same started UID is not executed again.
	e.agent.running[vm1] = false
	step(t, l, e)
	wantLogs(t, e)
	// A new UID (the CRM's refresh in started) restarts it.
	e.ms.ServiceStatus[vm1].UID = "u2"
	step(t, l, e)
	wantLogs(t, e, "info starting service vm:101", "info service status vm:101 started")
	if _, ok := e.status.Results["u1"]; ok {
		t.Error("result of the outdated uid u1 not pruned")
	}
	if _, ok := e.status.Results["u2"]; !ok {
		t.Error("result of u2 missing")
	}

	// stopped is enforced every round under one UID.
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "s1"})
	step(t, l, e)
	wantLogs(t, e, "info stopping service vm:101", "info service status vm:101 stopped")
	step(t, l, e)
	wantLogs(t, e)
	e.agent.running[vm1] = true // started behind the LRM's back
	step(t, l, e)
	wantLogs(t, e, "info stopping service vm:101", "info service status vm:101 stopped")
}

func TestExecResourceAgent(t *testing.T) {
	timeout := 30
	tests := []struct {
		name     string
		sid      ha.SID
		sd       ha.ServiceStatus
		running  bool
		setup    func(e *fakeEnv)
		wantLogs []string
		wantCode ha.ExitCode
		wantNode string
	}{
		{name: "start", sid: vm1, sd: ha.ServiceStatus{State: ha.StateStarted},
			wantLogs: []string{"info starting service vm:101", "info service status vm:101 started"}, wantCode: ha.ExitSuccess},
		{name: "already running", sid: vm1, sd: ha.ServiceStatus{State: ha.StateStarted}, running: true, wantCode: ha.ExitSuccess},
		{name: "stop with timeout", sid: vm1, sd: ha.ServiceStatus{State: ha.StateRequestStop, Timeout: &timeout}, running: true,
			wantLogs: []string{"info stopping service vm:101 (timeout=30)", "info service status vm:101 stopped"}, wantCode: ha.ExitSuccess},
		{name: "unstoppable", sid: vm1, sd: ha.ServiceStatus{State: ha.StateRequestStop}, running: true,
			setup:    func(e *fakeEnv) { e.agent.unstoppable[vm1] = true },
			wantLogs: []string{"info stopping service vm:101", "info unable to stop service vm:101 (still running) err=refused"}, wantCode: ha.ExitError},
		{name: "migrate", sid: vm1, sd: ha.ServiceStatus{State: ha.StateMigrate, Target: "node2"}, running: true,
			wantCode: ha.ExitSuccess, wantNode: "node2"},
		{name: "migrate fails", sid: vm1, sd: ha.ServiceStatus{State: ha.StateRelocate, Target: "node2"}, running: true,
			setup:    func(e *fakeEnv) { e.agent.failMigrate[vm1] = true },
			wantLogs: []string{"err service vm:101 not moved (migration error) err=migration refused"}, wantCode: ha.ExitError, wantNode: "node1"},
		{name: "migrate without target", sid: vm1, sd: ha.ServiceStatus{State: ha.StateMigrate},
			wantLogs: []string{"err migrate 'vm:101' failed - missing target"}, wantCode: ha.ExitInvalidParameter},
		{name: "rebalance of a running service", sid: vm1, sd: ha.ServiceStatus{State: ha.StateRequestStartBalance, Target: "node2"}, running: true,
			wantLogs: []string{"info ignoring rebalance-on-start for service vm:101 - already running"}, wantCode: ha.ExitIgnored, wantNode: "node1"},
		{name: "rebalance of a stopped service", sid: vm1, sd: ha.ServiceStatus{State: ha.StateRequestStartBalance, Target: "node2"},
			wantCode: ha.ExitSuccess, wantNode: "node2"},
		{name: "error state only logs", sid: vm1, sd: ha.ServiceStatus{State: ha.StateError}, running: true,
			wantLogs: []string{"err service vm:101 is in an error state and needs manual intervention. Look up 'ERROR RECOVERY' in the documentation."}, wantCode: ha.ExitSuccess},
		{name: "unknown type", sid: "fa:1", sd: ha.ServiceStatus{State: ha.StateStarted},
			wantLogs: []string{"err service type 'fa' not implemented"}, wantCode: ha.ExitUnknownServiceType},
		{name: "not configured", sid: vm1, sd: ha.ServiceStatus{State: ha.StateStarted},
			setup:    func(e *fakeEnv) { delete(e.res, vm1) },
			wantLogs: []string{"err missing resource configuration for 'vm:101'"}, wantCode: ha.ExitUnknownService},
		{name: "wrong node", sid: vm1, sd: ha.ServiceStatus{State: ha.StateStarted},
			setup:    func(e *fakeEnv) { e.res[vm1].Node = "node3" },
			wantLogs: []string{"err service 'vm:101' not on this node"}, wantCode: ha.ExitWrongNode},
		{name: "unknown command", sid: vm1, sd: ha.ServiceStatus{State: ha.StateFence},
			wantLogs: []string{"err implement me (cmd 'fence')"}, wantCode: ha.ExitUnknownCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			cfg := ha.DefaultResourceConfig(tt.sid, "node1")
			e.res[tt.sid] = &cfg
			e.agent.running[tt.sid] = tt.running
			if tt.setup != nil {
				tt.setup(e)
			}
			l := newTestLRM(t, e)
			l.services = map[ha.SID]*ha.ServiceStatus{tt.sid: {State: tt.sd.State, Node: "node1", UID: "u"}}
			l.queue(tt.sid, "u", tt.sd.State, tt.sd.Target, tt.sd.Timeout)
			l.runWorkers()
			wantLogs(t, e, tt.wantLogs...)
			res, ok := l.results["u"]
			if !ok || res.ExitCode != tt.wantCode {
				t.Errorf("result %+v (present %v), want exit code %d", res, ok, tt.wantCode)
			}
			if tt.wantNode != "" && e.res[tt.sid].Node != tt.wantNode {
				t.Errorf("resource on %s, want %s", e.res[tt.sid].Node, tt.wantNode)
			}
		})
	}
}

func TestSkippedRequestStates(t *testing.T) {
	for _, state := range []ha.ServiceState{ha.StateRecovery, ha.StateFreeze, ha.StateRequestStart} {
		t.Run(string(state), func(t *testing.T) {
			e := newFakeEnv()
			l := activeLRM(t, e)
			e.agent.running[vm1] = false
			e.setService(vm1, ha.ServiceStatus{State: state, Node: "node1", UID: "x"})
			e.addService(vm2, "node1", ha.StateStarted, "u2") // keeps the LRM active
			step(t, l, e)
			if slices.Contains(e.agent.calls, "start vm:101") {
				t.Errorf("%s request executed: %q", state, e.agent.calls)
			}
			if _, ok := e.status.Results["x"]; ok {
				t.Errorf("%s request got a result", state)
			}
		})
	}
}

func TestShutdownPolicies(t *testing.T) {
	tests := []struct {
		name     string
		policy   ha.ShutdownPolicy
		down     bool
		reboot   bool
		manual   bool
		wantLogs []string
		wantMode ha.LRMMode
		wantStop bool
	}{
		{name: "conditional reboot freezes", policy: "", down: true, reboot: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'conditional'", "info reboot LRM, stop and freeze all services"},
			wantMode: ha.ModeRestart, wantStop: true},
		{name: "conditional poweroff fails over", policy: ha.ShutdownConditional, down: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'conditional'", "info shutdown LRM, stop all services"},
			wantMode: ha.ModeShutdown, wantStop: true},
		{name: "freeze poweroff", policy: ha.ShutdownFreeze, down: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'freeze'", "info shutdown LRM, stop and freeze all services"},
			wantMode: ha.ModeRestart, wantStop: true},
		{name: "failover reboot", policy: ha.ShutdownFailover, down: true, reboot: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'failover'", "info shutdown LRM, stop all services"},
			wantMode: ha.ModeShutdown, wantStop: true},
		{name: "migrate", policy: ha.ShutdownMigrate, down: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'migrate'", "info shutdown LRM, doing maintenance, removing this node from active list"},
			wantMode: ha.ModeMaintenance},
		{name: "unknown policy", policy: "bogus", down: true, reboot: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'bogus'", "err unknown shutdown policy 'bogus', fall back to conditional", "info reboot LRM, stop and freeze all services"},
			wantMode: ha.ModeRestart, wantStop: true},
		{name: "manual maintenance ignores freeze", policy: ha.ShutdownFreeze, down: true, reboot: true, manual: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'freeze'", "info reboot LRM, ignore freeze policy as manual maintenance mode is enabled"},
			wantMode: ha.ModeMaintenance, wantStop: true},
		{name: "manual maintenance ignores migrate", policy: ha.ShutdownMigrate, down: true, manual: true,
			wantLogs: []string{"info got shutdown request with shutdown policy 'migrate'", "info shutdown LRM, ignore maintenance policy, already in maintenance mode"},
			wantMode: ha.ModeMaintenance},
		{name: "daemon restart", policy: ha.ShutdownFailover,
			wantLogs: []string{"info restart LRM, freeze all services"}, wantMode: ha.ModeRestart},
		{name: "daemon restart in maintenance", manual: true,
			wantLogs: []string{"info Restarting LRM in maintenance mode may be delayed until all services are moved"}, wantMode: ha.ModeMaintenance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			l := activeLRM(t, e)
			if tt.manual {
				e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
				step(t, l, e)
				e.logs.take()
			}
			e.dc.ShutdownPolicy = tt.policy
			e.down, e.reboot = tt.down, tt.reboot
			writes := e.writes
			l.RequestShutdown()
			wantLogs(t, e, tt.wantLogs...)
			if l.Mode() != tt.wantMode {
				t.Errorf("mode %s, want %s", l.Mode(), tt.wantMode)
			}
			if e.writes != writes+1 || e.status.Mode != tt.wantMode {
				t.Errorf("status not written at once with the new mode: writes %d, mode %s", e.writes-writes, e.status.Mode)
			}
			_, queued := l.jobs[vm1]
			if queued != tt.wantStop {
				t.Errorf("stop job queued %v, want %v", queued, tt.wantStop)
			}
			l.RequestShutdown()
			wantLogs(t, e) // handled once
		})
	}
}

func TestShutdownFailoverStopsReleasesAndExits(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.dc.ShutdownPolicy = ha.ShutdownFailover
	e.down = true
	l.RequestShutdown()
	e.logs.take()
	if step(t, l, e) {
		t.Fatal("daemon kept running after its stop jobs finished")
	}
	wantLogs(t, e, "info stopping service vm:101", "info service status vm:101 stopped")
	if e.agent.running[vm1] || e.wdOpen || e.lockHolder != "" {
		t.Errorf("running=%v watchdog=%v lock=%q, want stopped, closed, released", e.agent.running[vm1], e.wdOpen, e.lockHolder)
	}
}

func TestShutdownWithStopErrorsKeepsWatchdog(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.agent.unstoppable[vm1] = true
	e.down = true
	l.RequestShutdown()
	e.logs.take()
	if step(t, l, e) {
		t.Fatal("daemon kept running")
	}
	wantLogs(t, e, "info stopping service vm:101", "info unable to stop service vm:101 (still running) err=refused")
	if !e.wdOpen || e.lockHolder != "node1" {
		t.Errorf("watchdog open %v lock %q: a failed stop must leave the watchdog armed and the lock held", e.wdOpen, e.lockHolder)
	}
}

func TestRebootWaitsUntilFrozen(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.down, e.reboot = true, true
	l.RequestShutdown()
	e.logs.take()
	// The stop job runs, but the service is still started in the view: no
	// exit until the CRM froze it.
	if !step(t, l, e) {
		t.Fatal("exited before the CRM froze the service")
	}
	wantLogs(t, e, "info stopping service vm:101", "info service status vm:101 stopped")
	e.ms.ServiceStatus[vm1].State = ha.StateFreeze
	if step(t, l, e) {
		t.Fatal("still running with everything frozen")
	}
	if e.wdOpen || e.lockHolder != "" || e.status.Mode != ha.ModeRestart {
		t.Errorf("watchdog %v lock %q mode %s, want closed, released, restart", e.wdOpen, e.lockHolder, e.status.Mode)
	}
}

func TestDaemonRestartFreezesWithoutStopping(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	l.RequestShutdown()
	wantLogs(t, e, "info restart LRM, freeze all services")
	for range 3 {
		if !step(t, l, e) {
			t.Fatal("exited while the service is not frozen")
		}
	}
	// While restarting no requests are executed, not even stopped.
	e.ms.ServiceStatus[vm1] = &ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "s"}
	e.addService(vm2, "node1", ha.StateStarted, "u2")
	step(t, l, e)
	if len(e.agent.calls) != 0 {
		t.Errorf("resource actions during a restart: %q", e.agent.calls)
	}
	e.ms.ServiceStatus[vm2].State = ha.StateFreeze
	if step(t, l, e) {
		t.Fatal("still running with everything frozen or stopped")
	}
	if !e.agent.running[vm1] {
		t.Error("a daemon restart stopped the service")
	}
	if e.wdOpen || e.lockHolder != "" {
		t.Errorf("watchdog %v lock %q, want closed and released", e.wdOpen, e.lockHolder)
	}
}

func TestShutdownInWaitForAgentLockExits(t *testing.T) {
	e := newFakeEnv()
	l := newTestLRM(t, e)
	step(t, l, e)
	l.RequestShutdown()
	if step(t, l, e) {
		t.Error("idle LRM kept running after a shutdown request")
	}
}

func TestShutdownInLostAgentLock(t *testing.T) {
	t.Run("restart gives up after the give-up time", func(t *testing.T) {
		e := newFakeEnv()
		l := activeLRM(t, e)
		e.lockHolder = "node2"
		step(t, l, e) // lost at t0
		e.logs.take()
		l.RequestShutdown()
		e.logs.take()
		// 10 s rounds: rounds at +10 .. +90 keep waiting, +100 gives up.
		for i := 1; i <= 9; i++ {
			if !step(t, l, e) {
				t.Fatalf("gave up after %d s", i*10)
			}
			wantLogs(t, e, "err got shutdown request in state 'lost_agent_lock' - detected 1 running services")
		}
		if step(t, l, e) {
			t.Fatal("did not give up after more than 90 s")
		}
		wantLogs(t, e, "err got shutdown request in state 'lost_agent_lock' - detected 1 running services",
			"err lost agent lock and restart request for over 90 seconds - giving up!")
		if !e.wdOpen {
			t.Error("watchdog closed while services may run")
		}
	})
	t.Run("no active services closes the watchdog", func(t *testing.T) {
		e := newFakeEnv()
		l := activeLRM(t, e)
		e.lockHolder = "node2"
		step(t, l, e)
		e.down = true
		l.RequestShutdown()
		e.ms.ServiceStatus[vm1].State = ha.StateFreeze
		if step(t, l, e) {
			t.Fatal("kept running")
		}
		if e.wdOpen {
			t.Error("watchdog still open")
		}
	})
}

func TestMaintenanceEmptiesThenReleases(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
	step(t, l, e)
	wantLogs(t, e, "info status change active => maintenance")
	if l.Mode() != ha.ModeMaintenance || e.status.Mode != ha.ModeMaintenance {
		t.Fatalf("mode %s status mode %s, want maintenance", l.Mode(), e.status.Mode)
	}

	// The CRM moves the service away; the LRM executes it and keeps lock
	// and watchdog meanwhile.
	e.setService(vm1, ha.ServiceStatus{State: ha.StateMigrate, Node: "node1", Target: "node2", UID: "m1"})
	updates := e.wdUpdates
	step(t, l, e)
	if e.res[vm1].Node != "node2" {
		t.Fatalf("service not migrated: %q", e.agent.calls)
	}
	if e.wdUpdates != updates+1 || e.lockHolder != "node1" {
		t.Errorf("lock %q, watchdog fed %d times: want lock refreshed while a service is active", e.lockHolder, e.wdUpdates-updates)
	}

	// The service is gone: watchdog closed, lock released, still maintenance.
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStarted, Node: "node2", UID: "s2"})
	step(t, l, e)
	if e.wdOpen || e.lockHolder != "" || l.State() != ha.LRMMaintenance {
		t.Fatalf("watchdog %v lock %q state %s, want closed, released, maintenance", e.wdOpen, e.lockHolder, l.State())
	}
	step(t, l, e) // released again silently
	wantLogs(t, e)

	// Maintenance disabled: back to active with a fresh lock and watchdog.
	e.ms.NodeRequest = nil
	step(t, l, e)
	wantLogs(t, e, "info status change maintenance => active")
	if !e.wdOpen || e.lockHolder != "node1" || l.Mode() != ha.ModeActive {
		t.Errorf("watchdog %v lock %q mode %s, want open, held, active", e.wdOpen, e.lockHolder, l.Mode())
	}
}

func TestMaintenanceShutdownExitsWhenEmpty(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.dc.ShutdownPolicy = ha.ShutdownMigrate
	e.down = true
	l.RequestShutdown()
	step(t, l, e)
	if l.State() != ha.LRMMaintenance {
		t.Fatalf("state %s, want maintenance", l.State())
	}
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStarted, Node: "node2", UID: "x"})
	if step(t, l, e) {
		t.Fatal("kept running after the node was emptied")
	}
	if e.wdOpen || e.lockHolder != "" {
		t.Errorf("watchdog %v lock %q, want closed and released", e.wdOpen, e.lockHolder)
	}
}

func TestMaintenanceReadFailureEndsDaemon(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
	step(t, l, e)
	e.logs.take()
	e.msErr = errors.New("cfs connection refused - not mounted?")
	if step(t, l, e) {
		t.Error("maintenance LRM kept running after a failed manager status read (upstream quirk)")
	}
	wantLogs(t, e,
		"err updating service status from manager failed: cfs connection refused - not mounted?",
		"err updating service status from manager failed: cfs connection refused - not mounted?")
}

func TestActiveReadFailureSkipsRound(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.msErr = errors.New("cfs connection refused - not mounted?")
	e.wErr = e.msErr
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "s"})
	if !step(t, l, e) {
		t.Fatal("exited")
	}
	wantLogs(t, e,
		"err updating service status from manager failed: cfs connection refused - not mounted?",
		"err updating service status from manager failed: cfs connection refused - not mounted?",
		"err unable to write lrm status file - cfs connection refused - not mounted?")
	if len(e.agent.calls) != 0 || l.State() != ha.LRMActive {
		t.Errorf("calls %q state %s, want nothing done and still active", e.agent.calls, l.State())
	}
}

func TestInconsistentClusterStateSkipsRound(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.clusterState = false
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "s"})
	step(t, l, e)
	wantLogs(t, e, "noti temporary inconsistent cluster state (cfs restart?), skip round")
	if len(e.agent.calls) != 0 {
		t.Errorf("resource actions in a skipped round: %q", e.agent.calls)
	}
}

func TestDisarmReleasesLockAndWatchdog(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarming}
	e.ms.ServiceStatus[vm1].State = ha.StateFreeze
	step(t, l, e)
	wantLogs(t, e, "info HA disarm requested, releasing agent lock and watchdog", "info status change active => wait_for_agent_lock")
	if e.wdOpen || e.lockHolder != "" || e.status.Mode != ha.ModeDisarm {
		t.Fatalf("watchdog %v lock %q status mode %s, want closed, released, disarm", e.wdOpen, e.lockHolder, e.status.Mode)
	}
	// Active services do not make a disarmed LRM take its lock.
	e.ms.ServiceStatus[vm1].State = ha.StateStarted
	step(t, l, e)
	if e.lockHolder != "" {
		t.Fatal("disarmed LRM took its lock")
	}
	// Arming again: mode active, lock taken for the active service.
	e.ms.Disarm = nil
	step(t, l, e)
	if l.Mode() != ha.ModeActive || l.State() != ha.LRMActive || !e.wdOpen {
		t.Errorf("mode %s state %s watchdog %v after arm-ha", l.Mode(), l.State(), e.wdOpen)
	}
}

func TestDisarmDuringMaintenanceWaitsForEmptyNode(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
	step(t, l, e)
	e.logs.take()
	// Maintenance request gone while disarmed, a service still active here.
	e.ms.NodeRequest = nil
	e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarming}
	step(t, l, e)
	if l.State() != ha.LRMMaintenance || e.lockHolder != "node1" {
		t.Fatalf("state %s lock %q, want maintenance holding the lock", l.State(), e.lockHolder)
	}
	e.ms.ServiceStatus[vm1].State = ha.StateFreeze
	step(t, l, e)
	wantLogs(t, e, "info HA disarm requested during maintenance, releasing agent lock and watchdog", "info status change maintenance => wait_for_agent_lock")
	if e.wdOpen || e.lockHolder != "" {
		t.Errorf("watchdog %v lock %q, want closed and released", e.wdOpen, e.lockHolder)
	}
}

func TestIdleAfterRounds(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e, func(o *Options) { o.Timing.LRMIdleRounds = 3 })
	delete(e.ms.ServiceStatus, vm1)
	for i := 1; i <= 3; i++ {
		step(t, l, e)
		if l.State() != ha.LRMActive {
			t.Fatalf("went idle after %d rounds, want after more than 3", i)
		}
	}
	step(t, l, e)
	wantLogs(t, e, "info node had no service configured for 3 rounds, going idle.", "info status change active => wait_for_agent_lock")
	if e.wdOpen || e.lockHolder != "" {
		t.Errorf("watchdog %v lock %q, want closed and released", e.wdOpen, e.lockHolder)
	}
}

func TestIdleCounterResetsWithService(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e, func(o *Options) { o.Timing.LRMIdleRounds = 2 })
	saved := e.ms.ServiceStatus[vm1]
	delete(e.ms.ServiceStatus, vm1)
	step(t, l, e)
	step(t, l, e)
	e.setService(vm1, ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: saved.UID})
	step(t, l, e) // a configured (even stopped) service resets the counter
	delete(e.ms.ServiceStatus, vm1)
	step(t, l, e)
	step(t, l, e)
	if l.State() != ha.LRMActive {
		t.Fatal("idle counter was not reset by a configured service")
	}
	step(t, l, e)
	if l.State() != ha.LRMWaitForAgentLock {
		t.Fatalf("state %s, want idle", l.State())
	}
}

func TestStatusWrittenGate(t *testing.T) {
	t.Run("not quorate ends the round early", func(t *testing.T) {
		e := newFakeEnv()
		e.addService(vm1, "node1", ha.StateStarted, "u1")
		e.quorate = false
		l := newTestLRM(t, e)
		if !step(t, l, e) {
			t.Fatal("exited")
		}
		if e.acquires != 0 || e.writes != 0 {
			t.Errorf("acquires %d writes %d, want nothing before the first status write", e.acquires, e.writes)
		}
		l.RequestShutdown()
		if step(t, l, e) {
			t.Error("kept running after a shutdown request at the gate")
		}
	})
	t.Run("a shared flag set by another LRM skips the gate", func(t *testing.T) {
		e := newFakeEnv()
		e.addService(vm1, "node1", ha.StateStarted, "u1")
		shared := true
		e.wErr = errors.New("write refused")
		l := newTestLRM(t, e, func(o *Options) { o.StatusWritten = &shared })
		step(t, l, e)
		if l.State() != ha.LRMActive {
			t.Errorf("state %s, want active: the gate was passed by another LRM", l.State())
		}
	})
	t.Run("the first write sets the shared flag", func(t *testing.T) {
		e := newFakeEnv()
		var shared bool
		l := newTestLRM(t, e, func(o *Options) { o.StatusWritten = &shared })
		step(t, l, e)
		if !shared {
			t.Error("flag not set after a successful write")
		}
	})
}

func TestConcurrentWorkers(t *testing.T) {
	e := newFakeEnv()
	e.workers.max = 2
	for _, sid := range []ha.SID{vm3, vm1, vm2} {
		e.addService(sid, "node1", ha.StateStarted, "u-"+string(sid))
	}
	l := newTestLRM(t, e)
	step(t, l, e)
	if !slices.Equal(e.workers.started, []ha.SID{vm1, vm2}) {
		t.Fatalf("started %v, want the first two by SID", e.workers.started)
	}
	if len(e.status.Results) != 0 {
		t.Fatalf("results before any job finished: %v", e.status.Results)
	}
	// Nothing finished: no third job, running jobs are not started again.
	step(t, l, e)
	if len(e.workers.started) != 2 {
		t.Fatalf("started %v while two run", e.workers.started)
	}
	e.workers.complete()
	step(t, l, e)
	if !slices.Equal(e.workers.started, []ha.SID{vm1, vm2, vm3}) {
		t.Fatalf("started %v, want vm:103 once slots are free", e.workers.started)
	}
	for _, sid := range []ha.SID{vm1, vm2} {
		if r := e.status.Results["u-"+string(sid)]; r.SID != sid || r.ExitCode != ha.ExitSuccess {
			t.Errorf("result of %s: %+v", sid, r)
		}
	}
	e.workers.complete()
	step(t, l, e)
	if len(e.status.Results) != 3 || len(l.jobs) != 0 {
		t.Errorf("results %v jobs %d, want three results and an empty queue", e.status.Results, len(l.jobs))
	}
}

func TestQueueReplacesQueuedButNotRunningJobs(t *testing.T) {
	e := newFakeEnv()
	e.workers.max = 1
	l := newTestLRM(t, e)
	l.queue(vm1, "a", ha.StateStarted, "", nil)
	l.queue(vm2, "b", ha.StateStarted, "", nil)
	l.runWorkers() // vm:101 runs, vm:102 waits
	l.queue(vm1, "a2", ha.StateRequestStop, "", nil)
	l.queue(vm2, "b2", ha.StateRequestStop, "", nil)
	if j := l.jobs[vm1]; j.uid != "a" {
		t.Errorf("running job replaced: uid %s", j.uid)
	}
	if j := l.jobs[vm2]; j.uid != "b2" || j.tries != 1 {
		t.Errorf("queued job %+v, want replaced by b2 keeping its 1 try", j)
	}
}

func TestLockValidity(t *testing.T) {
	fast := func(o *Options) { o.Timing = ha.FastTiming() }
	newFakeEnv := func() *fakeEnv {
		e := newFakeEnv()
		e.validity = ha.FastTiming().LockValidity
		return e
	}
	t.Run("slow renewal does not count", func(t *testing.T) {
		e := newFakeEnv()
		l := activeLRM(t, e, fast)
		updates := e.wdUpdates
		e.acquireDelay = 2 * time.Second // longer than the 1.2 s validity
		l.Step()
		if l.State() != ha.LRMLostAgentLock || e.wdUpdates != updates {
			t.Errorf("state %s, watchdog fed %d times: want lost_agent_lock without feeding", l.State(), e.wdUpdates-updates)
		}
	})
	t.Run("lapsed between rounds", func(t *testing.T) {
		e := newFakeEnv()
		l := activeLRM(t, e, fast)
		acquires := e.acquires
		e.now = e.now.Add(-10 * time.Second) // undo step's PVE-sized advance
		e.now = e.now.Add(1300 * time.Millisecond)
		l.Step()
		if l.State() != ha.LRMLostAgentLock || e.acquires != acquires {
			t.Errorf("state %s after %d acquisitions: want lost_agent_lock without trying to renew", l.State(), e.acquires-acquires)
		}
		l.Step() // the next round may take it again
		if l.State() != ha.LRMActive {
			t.Errorf("state %s, want active again", l.State())
		}
	})
	t.Run("within validity", func(t *testing.T) {
		e := newFakeEnv()
		l := activeLRM(t, e, fast)
		e.now = e.now.Add(-10 * time.Second)
		for range 5 {
			e.now = e.now.Add(250 * time.Millisecond)
			l.Step()
		}
		if l.State() != ha.LRMActive {
			t.Errorf("state %s, want active", l.State())
		}
	})
}

func TestResultsPublishedAndPruned(t *testing.T) {
	e := newFakeEnv()
	e.addService(vm1, "node1", ha.StateStarted, "u1")
	e.addService(vm2, "node1", ha.StateRequestStop, "u2")
	l := newTestLRM(t, e)
	step(t, l, e)
	if len(e.status.Results) != 2 || e.status.State != ha.LRMActive || e.status.Mode != ha.ModeActive {
		t.Fatalf("status %+v", e.status)
	}
	if r := e.status.Results["u2"]; r.SID != vm2 || r.State != ha.StateRequestStop || r.ExitCode != ha.ExitSuccess {
		t.Errorf("result u2 %+v", r)
	}
	e.ms.ServiceStatus[vm2] = &ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "u3"}
	step(t, l, e)
	if _, ok := e.status.Results["u2"]; ok {
		t.Error("result u2 kept after its uid left the manager status")
	}
	if len(e.status.Results) != 2 {
		t.Errorf("results %v, want u1 and u3", e.status.Results)
	}
}

func TestShutdownWhileDisarmedExitsWithoutTakingTheLock(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	// disarm-ha ignore: states stay as they are, the LRM lets go.
	e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmIgnore, State: ha.Disarmed}
	step(t, l, e)
	if l.State() != ha.LRMWaitForAgentLock {
		t.Fatalf("state %s, want wait_for_agent_lock", l.State())
	}
	e.down, e.reboot = true, true
	l.RequestShutdown()
	e.logs.take()
	if step(t, l, e) {
		t.Fatal("disarmed LRM kept running after a reboot request")
	}
	if e.lockHolder != "" || e.wdOpen || len(e.agent.calls) != 0 {
		t.Errorf("lock %q watchdog %v calls %q: a disarmed LRM must not take its lock nor touch services", e.lockHolder, e.wdOpen, e.agent.calls)
	}
}

func TestZeroTimingMeansPVE(t *testing.T) {
	e := newFakeEnv()
	l := New(e, Options{})
	if l.timing != ha.PVETiming() {
		t.Errorf("timing %+v, want the PVE profile", l.timing)
	}
	if l.Interval() != 5*time.Second {
		t.Errorf("idle interval %v, want 5s", l.Interval())
	}
}

func TestAgentErrorsCountAsFailures(t *testing.T) {
	e := newFakeEnv()
	e.addService(vm1, "node1", ha.StateStarted, "u1")
	e.res[vm1].MaxRestart = 0
	e.agent.startErr = errors.New("exec: no such file")
	l := newTestLRM(t, e)
	step(t, l, e)
	got := slices.DeleteFunc(e.logs.take(), func(s string) bool { return strings.Contains(s, "status change") })
	want := []string{"info starting service vm:101", "warn unable to start service vm:101 err=exec: no such file",
		"err unable to start service vm:101 on local node after 0 retries"}
	if !slices.Equal(got, want) {
		t.Errorf("logs:\n  got  %q\n  want %q", got, want)
	}
	if r := e.status.Results["u1"]; r.ExitCode != ha.ExitError {
		t.Errorf("result %+v, want ERROR", r)
	}
}

// A node shutdown that arrives while a concurrent start of a service is
// still running must still stop that service before the LRM releases its
// lock: otherwise the CRM fences the node through the free lock and
// recovers the service elsewhere while it runs here (found by the
// integration test of shutdown_policy=failover).
func TestShutdownStopsAServiceWhoseStartWasStillRunning(t *testing.T) {
	e := newFakeEnv()
	e.workers.max = 2
	e.addService(vm1, "node1", ha.StateStarted, "u1")
	l := newTestLRM(t, e)
	step(t, l, e) // takes the lock, hands the start to a worker
	if l.State() != ha.LRMActive || len(e.workers.pending) != 1 {
		t.Fatalf("setup: state %s, %d pending jobs; want active with the start running", l.State(), len(e.workers.pending))
	}
	e.dc.ShutdownPolicy = ha.ShutdownFailover
	e.down = true
	l.RequestShutdown()
	e.workers.complete() // the start finishes: vm:101 runs
	if !e.agent.running[vm1] {
		t.Fatal("setup: the start did not run vm:101")
	}
	for i := 0; i < 5 && step(t, l, e); i++ {
		e.workers.complete()
	}
	if e.agent.running[vm1] {
		t.Fatal("the LRM shut down with vm:101 still running")
	}
	if e.lockHolder != "" && !e.wdOpen {
		t.Errorf("lock %q watchdog %v", e.lockHolder, e.wdOpen)
	}
}

// Every release of the agent lock says whether services may still run on
// the node: only a clean stop of all of them makes a lock that another node
// may take at once; a disarm or a daemon restart leaves them running, and
// the lock must say so (it then proves nothing to the CRM).
func TestReleaseSaysWhetherServicesMayRun(t *testing.T) {
	for _, tc := range []struct {
		name        string
		do          func(t *testing.T, l *LRM, e *fakeEnv)
		wantRunning bool
	}{
		{"disarm freeze", func(t *testing.T, l *LRM, e *fakeEnv) {
			e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarming}
			e.ms.ServiceStatus[vm1].State = ha.StateFreeze
			step(t, l, e)
		}, true},
		{"disarm ignore", func(t *testing.T, l *LRM, e *fakeEnv) {
			e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmIgnore, State: ha.Disarming}
			step(t, l, e)
		}, true},
		{"daemon restart", func(t *testing.T, l *LRM, e *fakeEnv) {
			l.RequestShutdown()
			step(t, l, e)
			e.ms.ServiceStatus[vm1].State = ha.StateFreeze
			step(t, l, e)
		}, true},
		{"node shutdown, failover", func(t *testing.T, l *LRM, e *fakeEnv) {
			e.dc.ShutdownPolicy = ha.ShutdownFailover
			e.down = true
			l.RequestShutdown()
			step(t, l, e)
		}, false},
		{"node reboot, conditional: stopped and frozen", func(t *testing.T, l *LRM, e *fakeEnv) {
			e.down, e.reboot = true, true
			l.RequestShutdown()
			step(t, l, e)
			e.ms.ServiceStatus[vm1].State = ha.StateFreeze
			step(t, l, e)
		}, false},
		{"idle: no service left", func(t *testing.T, l *LRM, e *fakeEnv) {
			// Stopped, then removed from HA.
			e.agent.running[vm1] = false
			delete(e.ms.ServiceStatus, vm1)
			delete(e.res, vm1)
			for range 3 + l.timing.LRMIdleRounds {
				step(t, l, e)
			}
		}, false},
		{"idle: a service given back to HA, not adopted yet", func(t *testing.T, l *LRM, e *fakeEnv) {
			// Ignored (the CRM dropped it, it kept running here), then
			// requested started again before the CRM's next round.
			delete(e.ms.ServiceStatus, vm1)
			e.res[vm1].State = ha.RequestStarted
			for range 3 + l.timing.LRMIdleRounds {
				step(t, l, e)
			}
		}, true},
		{"idle: an ignored service may run and be given back to HA", func(t *testing.T, l *LRM, e *fakeEnv) {
			delete(e.ms.ServiceStatus, vm1)
			e.res[vm1].State = ha.RequestIgnored
			for range 3 + l.timing.LRMIdleRounds {
				step(t, l, e)
			}
		}, true},
		{"maintenance: the service stopped", func(t *testing.T, l *LRM, e *fakeEnv) {
			e.ms.NodeRequest = map[string]*ha.NodeRequest{"node1": {Maintenance: true}}
			step(t, l, e)
			e.setService(vm1, ha.ServiceStatus{State: ha.StateStopped, Node: "node1", UID: "s"})
			// The first release comes before the stop ran: running. The
			// next round's release, after the stop, is a clean one.
			step(t, l, e)
			if len(e.releaseRunning) != 1 || !e.releaseRunning[0] {
				t.Fatalf("releases before the stop ran: %v, want [true]", e.releaseRunning)
			}
			step(t, l, e)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv()
			l := activeLRM(t, e)
			tc.do(t, l, e)
			if len(e.releaseRunning) == 0 {
				t.Fatalf("lock not released (state %s)", l.State())
			}
			if got := e.releaseRunning[len(e.releaseRunning)-1]; got != tc.wantRunning {
				t.Errorf("released with running=%v, want %v (vm:101 running: %v)", got, tc.wantRunning, e.agent.running[vm1])
			}
			if !tc.wantRunning && e.agent.running[vm1] {
				t.Error("released as clean while vm:101 runs")
			}
		})
	}
}

// A release that fails while services may still run must not close the
// watchdog: the lock may still be held by this node, time out, and be
// taken by the CRM as proof of fencing, which only the armed watchdog then
// makes true (SPIN model, BUG_RELEASE_LOSS). The LRM stays active, keeps
// renewing, and releases once the store answers.
func TestFailedReleaseKeepsTheWatchdogArmed(t *testing.T) {
	e := newFakeEnv()
	l := activeLRM(t, e)
	e.ms.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarming}
	e.ms.ServiceStatus[vm1].State = ha.StateFreeze
	e.releaseFails = true
	step(t, l, e)
	step(t, l, e)
	if l.State() != ha.LRMActive || !e.wdOpen || e.lockHolder != "node1" {
		t.Fatalf("after a failed release: state %s, watchdog open %v, lock holder %q; want active, open, node1", l.State(), e.wdOpen, e.lockHolder)
	}
	if !e.agent.running[vm1] {
		t.Fatal("vm:101 stopped; a disarm freeze must not stop it")
	}
	e.releaseFails = false
	step(t, l, e)
	if l.State() != ha.LRMWaitForAgentLock || e.wdOpen || e.lockHolder != "" {
		t.Fatalf("after the release went through: state %s, watchdog open %v, lock holder %q; want wait_for_agent_lock, closed, free", l.State(), e.wdOpen, e.lockHolder)
	}
	if n := len(e.releaseRunning); n == 0 || !e.releaseRunning[n-1] {
		t.Errorf("releases %v: the last must say services may run", e.releaseRunning)
	}
}

// TestAcquisitionDoesNotActOnAStaleView is the regression test of the
// model's BUG_STALE_VIEW: the agent is stopped (SIGSTOP) right after its
// round's read barrier, long enough for the master to take its lock, steal
// its services to node2 and let its hold time out; after SIGCONT the LRM
// takes its lock again while its replica (paused with the agent) still
// shows the services on node1. The acquisition brings the view up to date
// (the ha.Env contract), so the LRM must start nothing here.
func TestAcquisitionDoesNotActOnAStaleView(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *fakeEnv) *LRM
	}{
		{"new LRM after a restart", func(e *fakeEnv) *LRM {
			e.addService(vm1, "node1", ha.StateStarted, "u1")
			return newTestLRM(t, e)
		}},
		{"lost_agent_lock, lock taken over by the master", func(e *fakeEnv) *LRM {
			l := activeLRM(t, e)
			e.lockHolder = "master" // the master's proof of fencing
			step(t, l, e)
			if l.State() != ha.LRMLostAgentLock {
				t.Fatalf("setup: state %s, want lost_agent_lock", l.State())
			}
			// A start of vm:102 on node1 reached the replica while the
			// lock was lost (the LRM does not act in lost_agent_lock).
			e.addService(vm2, "node1", ha.StateStarted, "u2")
			step(t, l, e)
			e.agent.running[vm1] = false // the watchdog fenced the node
			e.lockHolder = ""            // the master's hold timed out
			return l
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeEnv()
			l := tt.setup(e)
			e.committed = cloneStatus(e.ms)
			e.beforeGrant = func() {
				if e.lockHolder != "" {
					return
				}
				for sid, sd := range e.committed.ServiceStatus {
					e.committed.ServiceStatus[sid] = &ha.ServiceStatus{State: ha.StateStarted, Node: "node2", UID: sd.UID + "-stolen"}
				}
				e.beforeGrant = nil
			}
			e.agent.calls = nil
			step(t, l, e)
			if l.State() != ha.LRMActive || e.lockHolder != "node1" {
				t.Fatalf("state %s lock %q, want active holding the lock", l.State(), e.lockHolder)
			}
			if e.agent.running[vm1] || e.agent.running[vm2] || len(e.agent.calls) != 0 {
				t.Errorf("started on node1 from a stale view (calls %q) while the master moved the services to node2", e.agent.calls)
			}
		})
	}
}
