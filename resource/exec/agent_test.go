//go:build linux

package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"haxd/ha"
)

// The test binary doubles as a throw-away agent process: with
// HAXD_EXEC_TEST_HELPER set, it starts one service through a fresh Agent,
// prints its pid and then exits ("exit") or waits to be killed ("wait").
func TestMain(m *testing.M) {
	if mode := os.Getenv("HAXD_EXEC_TEST_HELPER"); mode != "" {
		os.Exit(helperAgent(mode, os.Getenv("HAXD_EXEC_TEST_STATE")))
	}
	os.Exit(m.Run())
}

func helperAgent(mode, stateDir string) int {
	a, err := New(Config{StateDir: stateDir, Specs: StaticSpecs{"exec:survivor": {Command: "sleep", Args: []string{"1000"}}}})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if err := a.Start(context.Background(), "exec:survivor"); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	rec, _, _, err := a.load("exec:survivor")
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("started", rec.PID)
	if mode == "wait" {
		time.Sleep(time.Hour)
	}
	return 0
}

// testAgent returns an agent over dir with fast polling, and makes sure that
// every service it knows is killed when the test ends.
func testAgent(t *testing.T, dir string, specs StaticSpecs, mod ...func(*Config)) *Agent {
	t.Helper()
	cfg := Config{StateDir: dir, Specs: specs, PollInterval: 10 * time.Millisecond, KillWait: 3 * time.Second}
	for _, f := range mod {
		f(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.KillAll() })
	return a
}

// record returns the state file content of sid.
func mustRecord(t *testing.T, a *Agent, sid ha.SID) record {
	t.Helper()
	rec, _, ok, err := a.load(sid)
	if err != nil || !ok {
		t.Fatalf("state of %s: ok=%v err=%v", sid, ok, err)
	}
	return rec
}

// processAlive reports whether pid runs and is the process that started at
// start (a zombie or a reused pid is not).
func processAlive(t *testing.T, pid int, start uint64) bool {
	t.Helper()
	st, err := readProcStat("/proc", pid)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("read pid %d: %v", pid, err)
	}
	return !st.dead() && st.start == start
}

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func intp(i int) *int { return &i }

func sleeper() Spec { return Spec{Command: "sleep", Args: []string{"1000"}} }

// termIgnorer ignores SIGTERM; the ignore disposition is inherited across
// exec, so its sleep child ignores it too.
func termIgnorer() Spec {
	return Spec{Command: "sh", Args: []string{"-c", `trap "" TERM; sleep 1000`}}
}

func TestStartRunningStop(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var mu sync.Mutex
	var events []string
	hook := func(kind string) Hook {
		return func(sid ha.SID, pgid int, cgroup string) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%s %s %d", kind, sid, pgid))
		}
	}
	a := testAgent(t, dir, StaticSpecs{"exec:web": sleeper()}, func(c *Config) {
		c.OnStart, c.OnStop = hook("start"), hook("stop")
	})

	if running, err := a.Running(ctx, "exec:web"); err != nil || running {
		t.Fatalf("before start: Running = %v, %v; want false", running, err)
	}
	if err := a.Start(ctx, "exec:web"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rec := mustRecord(t, a, "exec:web")
	st, err := readProcStat("/proc", rec.PID)
	if err != nil {
		t.Fatal(err)
	}
	if st.pgrp != rec.PID || st.session != rec.PID || rec.PGID != rec.PID {
		t.Errorf("service pid %d has pgrp %d, session %d, recorded pgid %d: want its own session and group", rec.PID, st.pgrp, st.session, rec.PGID)
	}
	if st.start != rec.StartTicks {
		t.Errorf("recorded start %d, process start %d", rec.StartTicks, st.start)
	}
	if running, err := a.Running(ctx, "exec:web"); err != nil || !running {
		t.Fatalf("after start: Running = %v, %v; want true", running, err)
	}
	// A second Start of a running service is a no-op.
	if err := a.Start(ctx, "exec:web"); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if again := mustRecord(t, a, "exec:web"); again.PID != rec.PID {
		t.Errorf("second Start started pid %d besides %d", again.PID, rec.PID)
	}

	if err := a.Stop(ctx, "exec:web", nil); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if processAlive(t, rec.PID, rec.StartTicks) {
		t.Errorf("pid %d still alive after Stop", rec.PID)
	}
	if running, err := a.Running(ctx, "exec:web"); err != nil || running {
		t.Fatalf("after stop: Running = %v, %v; want false", running, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "exec%3Aweb.state")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file after Stop: %v, want it removed", err)
	}
	// Stopping a stopped service succeeds.
	if err := a.Stop(ctx, "exec:web", nil); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{fmt.Sprintf("start exec:web %d", rec.PID), fmt.Sprintf("stop exec:web %d", rec.PID)}
	if !slices.Equal(events, want) {
		t.Errorf("hooks = %q, want %q", events, want)
	}
}

func TestServiceGetsEnvDirAndLogFile(t *testing.T) {
	ctx := context.Background()
	dir, work := t.TempDir(), t.TempDir()
	spec := Spec{Command: "sh", Args: []string{"-c", `echo "foo=$FOO sid=$HAXD_SID pwd=$(pwd) home=${HOME:-unset}"; echo oops >&2; exec sleep 1000`},
		Env: map[string]string{"FOO": "bar baz"}, Dir: work}
	a := testAgent(t, dir, StaticSpecs{"exec:env": spec})
	if err := a.Start(ctx, "exec:env"); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "exec%3Aenv.log")
	want := fmt.Sprintf("foo=bar baz sid=exec:env pwd=%s home=unset\noops\n", work)
	var got string
	if !eventually(2*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		got = string(b)
		return strings.HasSuffix(got, want)
	}) {
		t.Errorf("log file %s =\n%s\nwant it to end with\n%s", logPath, got, want)
	}
	if !strings.HasPrefix(got, "haxd ") || !strings.Contains(got, "starting exec:env") {
		t.Errorf("log file lacks the agent's start line: %q", got)
	}
}

func TestStopGraceAndEscalation(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		timeout *int
		min     time.Duration // Stop must take at least this long
		max     time.Duration // and at most this long
	}{
		{"SIGTERM stops a plain process at once", sleeper(), intp(10), 0, 2 * time.Second},
		{"SIGKILL after the timeout for a process ignoring SIGTERM", termIgnorer(), intp(1), time.Second, 3 * time.Second},
		{"spec stop timeout is the default", func() Spec { s := termIgnorer(); s.StopTimeout = Duration(time.Second); return s }(), nil, time.Second, 3 * time.Second},
		{"timeout 0 kills at once", termIgnorer(), intp(0), 0, 900 * time.Millisecond},
		{"the spec's stop signal is sent", Spec{Command: "sh", Args: []string{"-c", `trap "" TERM; trap "exit 0" INT; while :; do sleep 0.05; done`}, StopSignal: "SIGINT"},
			intp(10), 0, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a := testAgent(t, t.TempDir(), StaticSpecs{"exec:x": tt.spec})
			if err := a.Start(ctx, "exec:x"); err != nil {
				t.Fatal(err)
			}
			rec := mustRecord(t, a, "exec:x")
			// Let the shell install its traps before it is signalled.
			time.Sleep(100 * time.Millisecond)
			t0 := time.Now()
			if err := a.Stop(ctx, "exec:x", tt.timeout); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			took := time.Since(t0)
			if took < tt.min || took > tt.max {
				t.Errorf("Stop took %s, want between %s and %s", took, tt.min, tt.max)
			}
			if processAlive(t, rec.PID, rec.StartTicks) {
				t.Errorf("pid %d alive after Stop", rec.PID)
			}
			if running, _ := a.Running(ctx, "exec:x"); running {
				t.Error("Running after Stop")
			}
		})
	}
}

func TestStopHonoursContext(t *testing.T) {
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:x": termIgnorer()})
	if err := a.Start(context.Background(), "exec:x"); err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, a, "exec:x")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := a.Stop(ctx, "exec:x", intp(30))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with an expiring context = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("Stop returned after %s, want about 200ms", took)
	}
	// A cancelled stop still sent SIGKILL: the service does not outlive it.
	if !eventually(2*time.Second, func() bool { return !processAlive(t, rec.PID, rec.StartTicks) }) {
		t.Errorf("pid %d survived a cancelled Stop", rec.PID)
	}
}

func TestLeftoverGroupMembersCountAsRunning(t *testing.T) {
	ctx := context.Background()
	// The shell exits at once; its background sleep stays in the group.
	spec := Spec{Command: "sh", Args: []string{"-c", "sleep 1000 & exit 0"}}
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:left": spec})
	if err := a.Start(ctx, "exec:left"); err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, a, "exec:left")
	if !eventually(2*time.Second, func() bool { return !processAlive(t, rec.PID, rec.StartTicks) }) {
		t.Fatal("the shell did not exit")
	}
	live, err := a.probe(rec)
	if err != nil || live.leader || len(live.members) != 1 {
		t.Fatalf("probe = %+v, %v; want one leftover member and no leader", live, err)
	}
	if running, err := a.Running(ctx, "exec:left"); err != nil || !running {
		t.Fatalf("Running = %v, %v; want true while a member of the group lives", running, err)
	}
	member := live.members[0]
	mst, err := readProcStat("/proc", member)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(ctx, "exec:left", nil); err != nil {
		t.Fatal(err)
	}
	if processAlive(t, member, mst.start) {
		t.Errorf("leftover pid %d alive after Stop", member)
	}
}

func TestServiceSurvivesAgentProcessAndIsAdopted(t *testing.T) {
	for _, mode := range []string{"exit", "wait"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			helper := osexec.Command(os.Args[0])
			helper.Env = append(os.Environ(), "HAXD_EXEC_TEST_HELPER="+mode, "HAXD_EXEC_TEST_STATE="+dir)
			helper.WaitDelay = 5 * time.Second
			out, err := helper.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "started ") {
				_ = helper.Process.Kill()
				_ = helper.Wait()
				t.Fatalf("helper agent said %q, %v", line, err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "started ")))
			if mode == "wait" {
				// The agent crashes hard: no chance to clean up.
				_ = helper.Process.Signal(syscall.SIGKILL)
			}
			_ = helper.Wait()

			var adopted []string
			a := testAgent(t, dir, StaticSpecs{}, func(c *Config) {
				c.OnStart = func(sid ha.SID, pgid int, cgroup string) {
					adopted = append(adopted, fmt.Sprintf("%s %d", sid, pgid))
				}
			})
			rec := mustRecord(t, a, "exec:survivor")
			if rec.PID != pid {
				t.Fatalf("state file has pid %d, helper reported %d", rec.PID, pid)
			}
			st, err := readProcStat("/proc", pid)
			if err != nil || st.dead() {
				t.Fatalf("service pid %d did not survive its agent: %+v, %v", pid, st, err)
			}
			if running, err := a.Running(ctx, "exec:survivor"); err != nil || !running {
				t.Fatalf("new agent: Running = %v, %v; want true", running, err)
			}
			svcs, err := a.Adopt(ctx)
			if err != nil || len(svcs) != 1 || svcs[0].SID != "exec:survivor" || svcs[0].PID != pid {
				t.Fatalf("Adopt = %+v, %v; want exec:survivor with pid %d", svcs, err, pid)
			}
			if want := []string{fmt.Sprintf("exec:survivor %d", pid)}; !slices.Equal(adopted, want) {
				t.Errorf("OnStart on adoption = %q, want %q", adopted, want)
			}
			// The new agent stops a process that is not its child.
			if err := a.Stop(ctx, "exec:survivor", nil); err != nil {
				t.Fatalf("Stop of adopted service: %v", err)
			}
			if processAlive(t, pid, rec.StartTicks) {
				t.Errorf("adopted pid %d alive after Stop", pid)
			}
			if svcs, err := a.Adopt(ctx); err != nil || len(svcs) != 0 {
				t.Errorf("Adopt after Stop = %+v, %v; want nothing", svcs, err)
			}
		})
	}
}

// stranger starts a process the agent did not start, in its own session, and
// kills it when the test ends.
func stranger(t *testing.T) (pid int, start uint64) {
	t.Helper()
	cmd := osexec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	st, err := readProcStat("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, st.start
}

func TestReusedPidIsNeitherRunningNorSignalled(t *testing.T) {
	ctx := context.Background()
	pid, start := stranger(t)
	tests := []struct {
		name    string
		edit    func(*record)
		running bool
	}{
		{"matching start time and boot id: it is the service", func(*record) {}, true},
		{"later start time: the pid was reused", func(r *record) { r.StartTicks = start + 1 }, false},
		{"earlier start time: the pid was reused", func(r *record) { r.StartTicks = start - 1 }, false},
		{"other boot: recorded before a reboot", func(r *record) { r.BootID = "00000000-0000-0000-0000-000000000000" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := New(Config{StateDir: dir, Specs: StaticSpecs{}, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rec := record{Version: stateVersion, SID: "exec:old", PID: pid, PGID: pid, StartTicks: start, BootID: a.bootID, Spec: sleeper().WithDefaults()}
			tt.edit(&rec)
			if err := writeRecord(filepath.Join(dir, "exec%3Aold.state"), rec); err != nil {
				t.Fatal(err)
			}
			running, err := a.Running(ctx, "exec:old")
			if err != nil || running != tt.running {
				t.Fatalf("Running = %v, %v; want %v", running, err, tt.running)
			}
			if tt.running {
				return // do not stop the stranger through a matching record
			}
			if err := a.Stop(ctx, "exec:old", intp(0)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := a.KillAll(); err != nil {
				t.Fatalf("KillAll: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			if !processAlive(t, pid, start) {
				t.Fatalf("the unrelated pid %d was killed through a stale state file", pid)
			}
		})
	}
}

// healthSpec runs sleep with a health check that passes while flag exists.
func healthSpec(flag string) Spec {
	return Spec{Command: "sleep", Args: []string{"1000"},
		HealthCommand: "sh", HealthArgs: []string{"-c", `test -f "$FLAG" && kill -0 "$HAXD_PID"`},
		Env:            map[string]string{"FLAG": flag},
		HealthInterval: Duration(20 * time.Millisecond), HealthTimeout: Duration(time.Second),
		StartTimeout: Duration(400 * time.Millisecond), StopTimeout: Duration(time.Second)}
}

func TestHealthCheck(t *testing.T) {
	ctx := context.Background()
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:h": healthSpec(flag)})
	if err := a.Start(ctx, "exec:h"); err != nil {
		t.Fatalf("Start with a passing health check: %v", err)
	}
	rec := mustRecord(t, a, "exec:h")
	if running, err := a.Running(ctx, "exec:h"); err != nil || !running {
		t.Fatalf("healthy: Running = %v, %v; want true", running, err)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // past the health interval: no cached result
	if running, err := a.Running(ctx, "exec:h"); err != nil || running {
		t.Fatalf("failing health check: Running = %v, %v; want false", running, err)
	}
	// Not running means not running: the unhealthy process was stopped.
	if processAlive(t, rec.PID, rec.StartTicks) {
		t.Errorf("unhealthy pid %d still alive after Running reported false", rec.PID)
	}
}

func TestHealthCheckResultIsCachedForTheInterval(t *testing.T) {
	ctx := context.Background()
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	spec := healthSpec(flag)
	spec.HealthInterval = Duration(time.Minute)
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:h": spec}, func(c *Config) { c.Now = func() time.Time { return now } })
	if err := a.Start(ctx, "exec:h"); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(flag)
	if running, _ := a.Running(ctx, "exec:h"); !running {
		t.Fatal("within the interval, Running ran the check again instead of using the last result")
	}
	now = now.Add(time.Minute)
	if running, _ := a.Running(ctx, "exec:h"); running {
		t.Fatal("after the interval, Running reused a stale result")
	}
}

func TestStartFailsAndLeavesNothingWhenHealthNeverPasses(t *testing.T) {
	tests := []struct {
		name string
		spec func(flag string) Spec
		want string
	}{
		{"check keeps failing", healthSpec, "did not pass within 400ms"},
		{"check hangs past its timeout", func(flag string) Spec {
			s := healthSpec(flag)
			s.HealthCommand, s.HealthArgs, s.HealthTimeout = "sleep", []string{"5"}, Duration(50*time.Millisecond)
			return s
		}, "timed out after 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var startedPGID int
			a := testAgent(t, dir, StaticSpecs{"exec:h": tt.spec(filepath.Join(t.TempDir(), "absent"))},
				func(c *Config) { c.OnStart = func(_ ha.SID, pgid int, _ string) { startedPGID = pgid } })
			t0 := time.Now()
			err := a.Start(ctx, "exec:h")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want an error containing %q", err, tt.want)
			}
			if took := time.Since(t0); took > 3*time.Second {
				t.Errorf("Start took %s", took)
			}
			if startedPGID == 0 {
				t.Fatal("the process was never started")
			}
			if !eventually(time.Second, func() bool { return syscall.Kill(-startedPGID, 0) != nil }) {
				t.Errorf("process group %d survived a failed start", startedPGID)
			}
			if _, err := os.Stat(filepath.Join(dir, "exec%3Ah.state")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state file after failed start: %v", err)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	a := testAgent(t, t.TempDir(), StaticSpecs{
		"exec:missing": {Command: "no-such-program-haxd"},
		"exec:bad":     {Command: "sleep", StopSignal: "NOPE"},
		"exec:baddir":  {Command: "sleep", Args: []string{"1"}, Dir: "/no/such/dir"},
	})
	tests := []struct {
		sid  ha.SID
		want string
	}{
		{"exec:none", "spec of exec:none: file does not exist"},
		{"exec:missing", `"no-such-program-haxd": not found in PATH`},
		{"exec:bad", `stop_signal "NOPE"`},
		{"exec:baddir", "/no/such/dir"},
	}
	for _, tt := range tests {
		err := a.Start(ctx, tt.sid)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "start "+string(tt.sid)) {
			t.Errorf("Start(%s) = %v, want an error starting with %q and containing %q", tt.sid, err, "start "+string(tt.sid), tt.want)
		}
		if running, _ := a.Running(ctx, tt.sid); running {
			t.Errorf("%s running after a failed start", tt.sid)
		}
	}
	if err := a.Start(ctx, "exec:x"); err == nil {
		t.Error("Start of an unknown service succeeded")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	a2 := testAgent(t, t.TempDir(), StaticSpecs{"exec:x": sleeper()})
	if err := a2.Start(canceled, "exec:x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestMigrateStopsLocally(t *testing.T) {
	ctx := context.Background()
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:m": sleeper()})
	if a.LiveMigratable() {
		t.Error("LiveMigratable = true")
	}
	if got := a.RemoveLocks("exec:m", []string{"backup"}); got != "" {
		t.Errorf("RemoveLocks = %q", got)
	}
	for _, online := range []bool{false, true} {
		if err := a.Start(ctx, "exec:m"); err != nil {
			t.Fatal(err)
		}
		if err := a.Migrate(ctx, "exec:m", "node2", online); err != nil {
			t.Fatalf("Migrate(online=%v): %v", online, err)
		}
		if running, _ := a.Running(ctx, "exec:m"); running {
			t.Errorf("still running here after Migrate(online=%v)", online)
		}
	}
}

func TestKillAllKillsEveryServiceAtOnce(t *testing.T) {
	ctx := context.Background()
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:a": termIgnorer(), "exec:b": sleeper()})
	var recs []record
	for _, sid := range []ha.SID{"exec:a", "exec:b"} {
		if err := a.Start(ctx, sid); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, mustRecord(t, a, sid))
	}
	if err := a.KillAll(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !eventually(time.Second, func() bool { return !processAlive(t, r.PID, r.StartTicks) }) {
			t.Errorf("%s (pid %d) alive after KillAll", r.SID, r.PID)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state dir", Config{Specs: StaticSpecs{}}, "state dir: required"},
		{"relative state dir", Config{StateDir: "state", Specs: StaticSpecs{}}, `state dir "state"`},
		{"no specs", Config{StateDir: t.TempDir()}, "spec source: required"},
		{"negative wait", Config{StateDir: t.TempDir(), Specs: StaticSpecs{}, KillWait: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	a, err := New(Config{StateDir: t.TempDir(), Specs: StaticSpecs{}, CgroupParent: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if a.UsesCgroups() {
		t.Error("a plain directory was accepted as cgroup v2 parent")
	}
}

func TestProcessThatExitsAtOnceIsNotStarted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := testAgent(t, dir, StaticSpecs{"exec:quit": {Command: "sh", Args: []string{"-c", "exit 3"}}})
	err := a.Start(ctx, "exec:quit")
	if err != nil {
		if !strings.Contains(err.Error(), "exited at once (exit status 3)") {
			t.Fatalf("Start = %v, want it to report the exit status", err)
		}
		if _, serr := os.Stat(filepath.Join(dir, "exec%3Aquit.state")); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("state file after a failed start: %v", serr)
		}
	}
	// Whether Start saw it exit or not, it does not run.
	if !eventually(time.Second, func() bool { running, _ := a.Running(ctx, "exec:quit"); return !running }) {
		t.Error("a process that exited counts as running")
	}
}

func TestStopSignalIsSentOnlyOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Counts SIGINTs and ignores them (and SIGTERM), so Stop must escalate.
	spec := Spec{Command: "sh", Args: []string{"-c", `trap "" TERM; trap "echo got-int" INT; while :; do sleep 0.02; done`}, StopSignal: "INT"}
	a := testAgent(t, dir, StaticSpecs{"exec:once": spec})
	if err := a.Start(ctx, "exec:once"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := a.Stop(ctx, "exec:once", intp(1)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "exec%3Aonce.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\ngot-int\n"); n != 1 {
		t.Errorf("the service got SIGINT %d times during a 1s grace, want once:\n%s", n, b)
	}
}

// TestRunningScansProcOnlyForLeftovers checks that Running, called at
// every re-check of every service, tells a live service, a dead one and one
// whose leader left a process behind apart, lists every process in /proc
// only to find a leftover it does not know yet, and still sees the
// leftover die.
func TestRunningScansProcOnlyForLeftovers(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		kill     bool // SIGKILL the leader and wait until it is reaped
		leftover bool // wait until the leader exited on its own
		running  bool
		scans    int64 // /proc scans over three Running calls
	}{
		{name: "live leader", spec: sleeper(), running: true},
		{name: "killed service", spec: sleeper(), kill: true},
		{name: "leader exited, child left in its group", spec: Spec{Command: "sh", Args: []string{"-c", "sleep 1000 & exit 0"}}, leftover: true, running: true, scans: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := testAgent(t, t.TempDir(), StaticSpecs{"exec:s": tc.spec})
			if err := a.Start(ctx, "exec:s"); err != nil {
				t.Fatal(err)
			}
			rec := mustRecord(t, a, "exec:s")
			if tc.kill {
				if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			if tc.kill || tc.leftover {
				// Gone from /proc: reaped by the agent's Wait.
				if !eventually(5*time.Second, func() bool {
					_, err := readProcStat("/proc", rec.PID)
					return errors.Is(err, fs.ErrNotExist)
				}) {
					t.Fatalf("pid %d was not reaped", rec.PID)
				}
			}
			before := a.procScans.Load()
			for range 3 {
				running, err := a.Running(ctx, "exec:s")
				if err != nil || running != tc.running {
					t.Fatalf("Running = %v, %v; want %v", running, err, tc.running)
				}
			}
			if scans := a.procScans.Load() - before; scans != tc.scans {
				t.Errorf("three Running calls listed /proc %d times, want %d", scans, tc.scans)
			}
			if !tc.running {
				p, err := a.paths("exec:s")
				if err != nil {
					t.Fatal(err)
				}
				if _, ok, _ := readRecord(p.state); ok {
					t.Errorf("state file of the dead service is still there")
				}
				return
			}
			if tc.leftover {
				// The leftover dies: the next check must see it.
				live, err := a.probe(rec)
				if err != nil || len(live.members) != 1 {
					t.Fatalf("probe = %+v, %v; want one leftover", live, err)
				}
				if err := syscall.Kill(live.members[0], syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if !eventually(5*time.Second, func() bool {
					running, err := a.Running(ctx, "exec:s")
					return err == nil && !running
				}) {
					t.Fatal("Running still true after the only leftover was killed")
				}
				return
			}
			// Stop still finds (and stops) every process of the service.
			if err := a.Stop(ctx, "exec:s", intp(1)); err != nil {
				t.Fatal(err)
			}
			if running, err := a.Running(ctx, "exec:s"); err != nil || running {
				t.Fatalf("Running after Stop = %v, %v; want false", running, err)
			}
		})
	}
}

// BenchmarkProbe compares the full probe (every process in /proc read, for
// signalling) with the check Running does, for a live service and for one
// whose leader exited and left a child in its group.
func BenchmarkProbe(b *testing.B) {
	specs := StaticSpecs{"exec:s": sleeper(), "exec:left": {Command: "sh", Args: []string{"-c", "sleep 1000 & exit 0"}}}
	a, err := New(Config{StateDir: b.TempDir(), Specs: specs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.KillAll() })
	recs := map[ha.SID]record{}
	for _, sid := range []ha.SID{"exec:s", "exec:left"} {
		if err := a.Start(context.Background(), sid); err != nil {
			b.Fatal(err)
		}
		rec, _, _, err := a.load(sid)
		if err != nil {
			b.Fatal(err)
		}
		recs[sid] = rec
	}
	left := recs["exec:left"]
	if !eventually(5*time.Second, func() bool {
		_, err := readProcStat("/proc", left.PID)
		return errors.Is(err, fs.ErrNotExist)
	}) {
		b.Fatal("the shell did not exit")
	}
	for _, bc := range []struct {
		name  string
		sid   ha.SID
		probe func(record) (liveness, error)
	}{
		{"live/full", "exec:s", a.probe}, {"live/alive", "exec:s", a.probeAlive},
		{"leftover/full", "exec:left", a.probe}, {"leftover/alive", "exec:left", a.probeAlive},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if l, err := bc.probe(recs[bc.sid]); err != nil || !l.alive() {
					b.Fatalf("probe = %+v, %v", l, err)
				}
			}
		})
	}
}
