package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"haxd/ha"
)

// fakeDaemon is a scripted CRM or LRM: it logs its startup, calls onStep
// every step, and exits on the step after a shutdown request.
type fakeDaemon struct {
	env      ha.Env
	kind     string
	shutdown bool
	onStep   func(d *fakeDaemon)
}

func (d *fakeDaemon) Step() bool {
	if d.shutdown {
		return false
	}
	if d.onStep != nil {
		d.onStep(d)
	}
	return true
}

func (d *fakeDaemon) RequestShutdown() {
	d.env.Logger().Info("shutdown requested")
	d.shutdown = true
}

// fakeFactory returns a factory of fake daemons; crm and lrm are the step
// functions (nil: do nothing).
func fakeFactory(crm, lrm func(d *fakeDaemon)) Factory {
	return Factory{
		NewCRM: func(env ha.Env, _ ha.Timing) Daemon {
			env.Logger().Info("status change startup => wait_for_quorum")
			return &fakeDaemon{env: env, kind: "crm", onStep: crm}
		},
		NewLRM: func(env ha.Env, _ ha.Timing, _ *bool) Daemon {
			env.Logger().Info("status change startup => wait_for_agent_lock")
			return &fakeDaemon{env: env, kind: "lrm", onStep: lrm}
		},
	}
}

func logStep(d *fakeDaemon) { d.env.Logger().Info("step") }

// runFake loads the given files (cmdlist required) and runs them with the
// fake daemons, returning the result and the PVE log.
func runFake(t *testing.T, files map[string]string, f Factory) (*Result, string) {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, content := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(content)}
	}
	sc, err := LoadScenarioFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res, err := Run(sc, Options{Daemons: f, Log: PVEWriter(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	return res, buf.String()
}

// hasLines reports whether want appears in log as consecutive lines
// (whitespace runs collapsed).
func hasLines(log string, want ...string) bool {
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	lines := strings.Split(log, "\n")
	for i := range lines {
		lines[i] = norm(lines[i])
	}
	for i := 0; i+len(want) <= len(lines); i++ {
		ok := true
		for j, w := range want {
			if lines[i+j] != norm(w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

const threeNodesOn = `[["power node1 on", "power node2 on", "power node3 on"]]`

func TestRoundStructureAndClocks(t *testing.T) {
	_, log := runFake(t, map[string]string{"cmdlist": threeNodesOn}, fakeFactory(logStep, logStep))
	// Every daemon steps once per 20 s round, in node order, 1 s each.
	if !hasLines(log,
		"info 20 node1/crm: step", "info 21 node1/lrm: step",
		"info 22 node2/crm: step", "info 23 node2/lrm: step",
		"info 24 node3/crm: step", "info 25 node3/lrm: step",
		"info 40 node1/crm: step") {
		t.Errorf("round structure wrong:\n%s", log)
	}
	// The first step executes at 20; with nothing left, the run ends at the
	// first command slot more than 500 s after it (5 rounds = 100 s apart).
	if !hasLines(log, "info 0 hardware: starting simulation", "info 20 cmdlist: execute power node1 on") ||
		!strings.HasSuffix(log, "info    620     hardware: exit simulation - done\n") {
		t.Errorf("start/end wrong:\n%s", tail(log, 3))
	}
}

// In the concurrent round model every node's round starts at the same
// instant: its CRM steps at the round start, its LRM one step later.
func TestConcurrentRounds(t *testing.T) {
	fsys := fstest.MapFS{"cmdlist": &fstest.MapFile{Data: []byte(threeNodesOn)}}
	sc, err := LoadScenarioFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Run(sc, Options{Daemons: fakeFactory(logStep, logStep), Log: PVEWriter(&buf), Concurrent: true}); err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	if !hasLines(log,
		"info 20 node1/crm: step", "info 21 node1/lrm: step",
		"info 20 node2/crm: step", "info 21 node2/lrm: step",
		"info 20 node3/crm: step", "info 21 node3/lrm: step",
		"info 40 node1/crm: step") {
		t.Errorf("concurrent round structure wrong:\n%s", log)
	}
}

func TestCommandCadenceAndDelay(t *testing.T) {
	tests := []struct {
		name    string
		cmdlist string
		want    []string
	}{
		{"every five rounds", `[["power node1 on"], ["network node1 off"], []]`,
			[]string{"info 120 cmdlist: execute network node1 off", "info 720 hardware: exit simulation - done"}},
		{"delay postpones the next step", `[["power node1 on"], ["delay 200"], ["network node1 off"]]`,
			[]string{"info 120 cmdlist: execute delay 200", "info 400 cmdlist: execute network node1 off"}},
		{"delay 0 is no delay", `[["power node1 on"], ["delay 0"], ["network node1 off"]]`,
			[]string{"info 220 cmdlist: execute network node1 off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, log := runFake(t, map[string]string{"cmdlist": tt.cmdlist}, fakeFactory(nil, nil))
			for _, w := range tt.want {
				if !hasLines(log, w) {
					t.Errorf("missing %q in:\n%s", w, log)
				}
			}
		})
	}
}

func TestSkipRound(t *testing.T) {
	_, log := runFake(t, map[string]string{"cmdlist": `[["power node1 on", "power node2 on", "power node3 on"], ["skip-round crm 2"]]`},
		fakeFactory(logStep, logStep))
	// Skipped CRM steps take no time: the LRM runs in the CRM's slot.
	if !hasLines(log, "info 120 run-loop: skipping CRM round", "info 120 node1/lrm: step", "info 121 node2/lrm: step") {
		t.Errorf("skip-round wrong:\n%s", log)
	}
	if strings.Count(log, "skipping CRM round") != 2 || !hasLines(log, "info 160 node1/crm: step") {
		t.Errorf("want exactly two skipped rounds:\n%s", log)
	}
}

func TestWatchdogExpiryPowersNodeOff(t *testing.T) {
	// The LRM of node1 opens its watchdog on its first step and never feeds it.
	lrm := func(d *fakeDaemon) {
		if d.env.NodeName() == "node1" && d.env.(*env).wd == 0 {
			if err := d.env.WatchdogOpen(); err != nil {
				t.Error(err)
			}
		}
	}
	_, log := runFake(t, map[string]string{"cmdlist": threeNodesOn}, fakeFactory(nil, lrm))
	// Opened at 21; expired when more than 60 s passed, checked after each
	// node's turn: first at 82 (after node1's turn of the round at 80).
	if !hasLines(log,
		"info 82 watchdog: execute power node1 off",
		"info 81 node1/crm: killed by poweroff",
		"info 82 node1/lrm: killed by poweroff",
		"info 82 hardware: server 'node1' stopped by poweroff (watchdog)") {
		t.Errorf("watchdog sequence wrong:\n%s", log)
	}
}

func TestFedWatchdogDoesNotFire(t *testing.T) {
	lrm := func(d *fakeDaemon) {
		e := d.env.(*env)
		if e.wd == 0 {
			_ = e.WatchdogOpen()
		} else if err := e.WatchdogUpdate(); err != nil {
			t.Error(err)
		}
	}
	_, log := runFake(t, map[string]string{"cmdlist": threeNodesOn}, fakeFactory(nil, lrm))
	if strings.Contains(log, "watchdog:") {
		t.Errorf("a fed watchdog fired:\n%s", log)
	}
}

func TestRebootSequence(t *testing.T) {
	_, log := runFake(t, map[string]string{"cmdlist": `[["power node1 on", "power node2 on", "power node3 on"], ["reboot node3"]]`},
		fakeFactory(nil, nil))
	// LRM exits on its next step (125 -> 126), then crm stop; the CRM exits
	// on its next step, then power off/on; the fresh CRM logs at H, the LRM
	// at its last env time (the round start).
	if !hasLines(log,
		"info 120 cmdlist: execute reboot node3",
		"info 120 node3/lrm: shutdown requested",
		"info 126 node3/lrm: exit (loop end)",
		"info 126 reboot: execute crm node3 stop",
		"info 125 node3/crm: shutdown requested",
		"info 145 node3/crm: exit (loop end)",
		"info 145 reboot: execute power node3 off",
		"info 145 reboot: execute power node3 on",
		"info 145 node3/crm: status change startup => wait_for_quorum",
		"info 140 node3/lrm: status change startup => wait_for_agent_lock") {
		t.Errorf("reboot sequence wrong:\n%s", log)
	}
}

func TestFatalCommands(t *testing.T) {
	tests := []struct {
		name, cmd string
		logged    bool // whether the execute line is printed
		errText   string
	}{
		{"unknown node", "power node9 on", false, "no such node 'node9'"},
		{"malformed sid", "service 101 started", false, "invalid service id"},
		{"unknown action", "power node1 sideways", true, "unknown action"},
		{"unknown command", "explode node1", true, "unknown command"},
		{"missing parameter", "service vm:101 migrate", true, "missing parameter"},
		{"unknown service", "service vm:999 started", true, "no such service 'vm:999'"},
		{"add existing", "service vm:101 add node1", true, "already exists"},
		{"bad disarm mode", "crm node1 disarm-ha maybe", true, "unknown disarm mode"},
		{"manual migrate of a managed service", "service vm:101 manual-migrate node2", true, "not ignored"},
		{"delay that does not match", "delay soon", false, "no such node 'soon'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, log := runFake(t, map[string]string{"cmdlist": `[["power node1 on"], ["` + tt.cmd + `"]]`},
				fakeFactory(nil, nil))
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.errText) {
				t.Fatalf("Err = %v, want one containing %q", res.Err, tt.errText)
			}
			if got := strings.Contains(log, "execute "+tt.cmd); got != tt.logged {
				t.Errorf("execute line logged = %v, want %v", got, tt.logged)
			}
			if !strings.HasSuffix(log, "exit simulation - "+res.Err.Error()+"\n \n") {
				t.Errorf("log does not end with the fatal line and a single space:\n%s", tail(log, 2))
			}
		})
	}
}

func TestLocks(t *testing.T) {
	s, envs := newTestSim(t)
	n1, n2 := envs["node1"], envs["node2"]
	at := func(e *env, sec int) *env { *e.clock = sec2d(sec); return e }
	steps := []struct {
		name string
		do   func() bool
		want bool
	}{
		{"free lock is taken", func() bool { _, ok := at(n1, 0).AcquireAgentLock("node1"); return ok }, true},
		{"holder refreshes", func() bool { _, ok := at(n1, 100).AcquireAgentLock("node1"); return ok }, true},
		{"other node fails while held", func() bool { _, ok := at(n2, 220).AcquireAgentLock("node1"); return ok }, false},
		{"other node takes it once expired (> 120 s)", func() bool { _, ok := at(n2, 221).AcquireAgentLock("node1"); return ok }, true},
		{"old holder cannot release it", func() bool { return at(n1, 222).ReleaseAgentLock("node1", false) }, false},
		{"new holder releases it", func() bool { return at(n2, 223).ReleaseAgentLock("node1", false) }, true},
		{"releasing a free lock fails", func() bool { return at(n2, 224).ReleaseAgentLock("node1", false) }, false},
		{"node1 takes its free lock", func() bool { _, ok := at(n1, 225).AcquireAgentLock("node1"); return ok }, true},
		{"node1 releases it with services running", func() bool { return at(n1, 226).ReleaseAgentLock("node1", true) }, true},
		{"it is recorded so", func() bool { return n2.AgentLockReleasedRunning("node1") }, true},
		{"another node cannot take it, however late", func() bool { _, ok := at(n2, 2000).AcquireAgentLock("node1"); return ok }, false},
		{"nor release it", func() bool { return at(n2, 2001).ReleaseAgentLock("node1", false) }, false},
		{"node1 takes it back", func() bool { _, ok := at(n1, 2002).AcquireAgentLock("node1"); return ok }, true},
		{"which clears the record", func() bool { return n2.AgentLockReleasedRunning("node1") }, false},
		{"then it times out as usual", func() bool { _, ok := at(n2, 2123).AcquireAgentLock("node1"); return ok }, true},
	}
	for _, st := range steps {
		if got := st.do(); got != st.want {
			t.Fatalf("%s: got %v, want %v", st.name, got, st.want)
		}
	}
	// Without quorum nothing is acquired.
	s.byName["node2"].network, s.byName["node3"].network = false, false
	if at(n1, 300).AcquireManagerLock() {
		t.Error("lock acquired without quorum")
	}
	if info := n1.NodeInfo(); info["node1"].Online {
		t.Error("node reported online without quorum")
	}
}

func TestStealServiceNeedsTheAgentLock(t *testing.T) {
	s, envs := newTestSim(t)
	n1 := envs["node1"]
	s.services["vm:101"] = &ha.ResourceConfig{SID: "vm:101", Node: "node2"}
	if err := n1.StealService("vm:101", "node2", "node1"); err == nil || !errors.Is(s.violation, ErrInvariant) {
		t.Fatalf("steal without lock: err %v, violation %v", err, s.violation)
	}
	s.violation = nil
	if _, ok := n1.AcquireAgentLock("node2"); !ok {
		t.Fatal("could not take the free agent lock")
	}
	if err := n1.StealService("vm:101", "node2", "node1"); err != nil || s.violation != nil {
		t.Fatalf("steal with lock: err %v, violation %v", err, s.violation)
	}
	if s.services["vm:101"].Node != "node1" {
		t.Errorf("service not moved")
	}
}

func TestRunningTwiceIsAViolation(t *testing.T) {
	// Every LRM starts vm:101 on its own node: the second start breaks the
	// invariant.
	lrm := func(d *fakeDaemon) {
		_ = d.env.ResourceAgent("vm").Start(context.Background(), "vm:101")
	}
	res, log := runFake(t, map[string]string{"cmdlist": threeNodesOn}, fakeFactory(nil, lrm))
	if !errors.Is(res.Err, ErrInvariant) || !strings.Contains(res.Err.Error(), "vm:101 runs on node1 and node2") {
		t.Fatalf("Err = %v", res.Err)
	}
	if !strings.Contains(log, "exit simulation - invariant violated") {
		t.Errorf("log lacks the violation:\n%s", tail(log, 3))
	}
}

func TestFAEncoding(t *testing.T) {
	tests := []struct {
		sid  ha.SID
		want faSpec
		ok   bool
	}{
		{"fa:1001", faSpec{unstoppable: true}, true},
		{"fa:110", faSpec{startFails: 1}, true},
		{"fa:1010", faSpec{migrateFails: 1}, true},
		{"fa:120001", faSpec{startFails: 2, node: "node1"}, true},
		{"fa:12", faSpec{}, false},
		{"vm:110", faSpec{}, false},
	}
	for _, tt := range tests {
		got, ok := parseFA(tt.sid)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseFA(%s) = %+v %v, want %+v %v", tt.sid, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFAStartFailuresCountGlobally(t *testing.T) {
	s, envs := newTestSim(t)
	s.services["fa:120001"] = &ha.ResourceConfig{SID: "fa:120001", Node: "node1"}
	ctx := context.Background()
	a1, a2 := envs["node1"].ResourceAgent("fa"), envs["node2"].ResourceAgent("fa")
	for i, want := range []bool{false, false, true} {
		_ = a1.Start(ctx, "fa:120001")
		if got, _ := a1.Running(ctx, "fa:120001"); got != want {
			t.Fatalf("attempt %d on node1: running %v, want %v", i+1, got, want)
		}
	}
	// Failures are restricted to node1: node2 starts it at once.
	_ = a1.Stop(ctx, "fa:120001", nil)
	if _ = a2.Start(ctx, "fa:120001"); !s.byName["node2"].running["fa:120001"] {
		t.Error("start on node2 failed")
	}
}

func TestRoundLengthLimits(t *testing.T) {
	hw := func(n int) string {
		var parts []string
		for i := 1; i <= n; i++ {
			parts = append(parts, fmt.Sprintf(`"node%d": {"power": "off", "network": "off"}`, i))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		nodes      int
		timing     ha.Timing
		concurrent bool
		ok         bool
	}{
		{29, ha.PVETiming(), false, true},   // 58 s rounds
		{30, ha.PVETiming(), false, false},  // 60 s rounds: upstream's limit
		{19, ha.FastTiming(), false, true},  // 0.475 s rounds (12.5 ms steps: 2 crm_round is not below the 0.5 s watchdog, so the round is halved to 0.25 s)
		{20, ha.FastTiming(), false, false}, // 0.5 s rounds: the watchdog would fire
		{29, ha.FastTiming(), true, true},   // concurrent: 0.25 s rounds
		{29, ha.PVETiming(), true, true},    // concurrent: 20 s rounds
	}
	for _, tt := range tests {
		sc, err := loadFiles(map[string]string{"cmdlist": "[]", "hardware_status": hw(tt.nodes)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Run(sc, Options{Timing: tt.timing, Daemons: fakeFactory(nil, nil), Concurrent: tt.concurrent})
		if (err == nil) != tt.ok {
			t.Errorf("%d nodes, round %v: err %v, want ok=%v", tt.nodes, tt.timing.CRMRound, err, tt.ok)
		}
	}
}
