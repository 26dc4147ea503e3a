//go:build linux

package ocf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"haxd/fence"
	"haxd/ha"
	"haxd/resource/exec"
)

// fakeRoot builds an OCF_ROOT with one agent, haxdtest:Fake, that keeps its
// state in $HA_RSCTMP/Fake-<instance>.state, records its environment in
// $HA_RSCTMP/env-<action>, and misbehaves on request through its parameters:
// fail=<action> exits 1 with an exit reason, hang=<action> sleeps, and
// monitor_rc=<n> forces the monitor result.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "haxdtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
st="$HA_RSCTMP/Fake-$OCF_RESOURCE_INSTANCE.state"
env | sort > "$HA_RSCTMP/env-$1"
if [ "$OCF_RESKEY_fail" = "$1" ]; then echo "something went wrong" >&2; echo "ocf-exit-reason:fake $1 failed" >&2; exit 1; fi
if [ "$OCF_RESKEY_hang" = "$1" ]; then sleep 30; fi
case "$1" in
start) touch "$st"; exit 0 ;;
stop) rm -f "$st"; exit 0 ;;
monitor)
	if [ -n "$OCF_RESKEY_monitor_rc" ]; then exit "$OCF_RESKEY_monitor_rc"; fi
	[ -f "$st" ] && exit 0; exit 7 ;;
*) exit 3 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "Fake"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func newFakeAgent(t *testing.T, specs StaticSpecs) (*Agent, string) {
	t.Helper()
	run := t.TempDir()
	a, err := New(Config{Specs: specs, OCFRoot: fakeRoot(t), RunDir: run})
	if err != nil {
		t.Fatal(err)
	}
	return a, run
}

func intp(i int) *int { return &i }

func TestStartMonitorStopWithTheOCFEnvironment(t *testing.T) {
	ctx := context.Background()
	a, run := newFakeAgent(t, StaticSpecs{"ocf:vip": {Agent: "ocf:haxdtest:Fake", Params: map[string]string{"ip": "10.0.0.1"}}})
	if running, err := a.Running(ctx, "ocf:vip"); err != nil || running {
		t.Fatalf("before start: Running = %v, %v", running, err)
	}
	if err := a.Start(ctx, "ocf:vip"); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "ocf:vip"); err != nil || !running {
		t.Fatalf("after start: Running = %v, %v", running, err)
	}
	if err := a.Stop(ctx, "ocf:vip", intp(5)); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "ocf:vip"); err != nil || running {
		t.Fatalf("after stop: Running = %v, %v", running, err)
	}
	env, err := os.ReadFile(filepath.Join(run, "env-stop"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"OCF_RA_VERSION_MAJOR=1", "OCF_RA_VERSION_MINOR=0", "OCF_RESOURCE_INSTANCE=vip",
		"OCF_RESOURCE_PROVIDER=haxdtest", "OCF_RESOURCE_TYPE=Fake", "OCF_RESKEY_ip=10.0.0.1",
		"OCF_RESKEY_CRM_meta_timeout=5000", "HA_RSCTMP=" + run, "OCF_ROOT=" + a.cfg.OCFRoot,
	} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("stop environment lacks %s:\n%s", want, env)
		}
	}
	menv, _ := os.ReadFile(filepath.Join(run, "env-monitor"))
	if !strings.Contains(string(menv), "OCF_RESKEY_CRM_meta_interval=0\n") || !strings.Contains(string(menv), "OCF_RESKEY_CRM_meta_timeout=20000\n") {
		t.Errorf("monitor is not a probe with the default timeout:\n%s", menv)
	}
}

func TestMonitorExitCodes(t *testing.T) {
	tests := []struct {
		rc      int
		running bool
		err     bool
	}{
		{RCSuccess, true, false},
		{RCRunningMaster, true, false},
		{RCNotRunning, false, false},
		{RCErrInstalled, false, false},
		// A failed resource may still run: reported as running, with the error.
		{RCErrGeneric, true, true},
		{RCErrConfigured, true, true},
		{RCFailedMaster, true, true},
	}
	for _, tt := range tests {
		t.Run(RCName(tt.rc), func(t *testing.T) {
			a, _ := newFakeAgent(t, StaticSpecs{"ocf:x": {Agent: "haxdtest:Fake", Params: map[string]string{"monitor_rc": strconv.Itoa(tt.rc)}}})
			running, err := a.Running(context.Background(), "ocf:x")
			if running != tt.running || (err != nil) != tt.err {
				t.Fatalf("monitor rc %d: Running = %v, %v; want %v, error=%v", tt.rc, running, err, tt.running, tt.err)
			}
			var ae *ActionError
			if tt.err && (!errors.As(err, &ae) || ae.RC != tt.rc) {
				t.Errorf("error %v is not an *ActionError with rc %d", err, tt.rc)
			}
		})
	}
}

func TestFailureReasonAndTimeout(t *testing.T) {
	ctx := context.Background()
	a, _ := newFakeAgent(t, StaticSpecs{
		"ocf:bad":  {Agent: "haxdtest:Fake", Params: map[string]string{"fail": "start"}},
		"ocf:slow": {Agent: "haxdtest:Fake", Params: map[string]string{"hang": "stop"}, StopTimeout: exec.Duration(time.Second)},
	})
	err := a.Start(ctx, "ocf:bad")
	if err == nil || !strings.Contains(err.Error(), "start ocf:bad: haxdtest:Fake start: exit 1 (OCF_ERR_GENERIC): fake start failed") {
		t.Errorf("Start = %v, want the exit code and the ocf-exit-reason", err)
	}
	t0 := time.Now()
	err = a.Stop(ctx, "ocf:slow", nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("Stop = %v, want a timeout", err)
	}
	if took := time.Since(t0); took > 4*time.Second {
		t.Errorf("a hanging stop took %s with a 1s timeout", took)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Start(cctx, "ocf:slow"); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context = %v", err)
	}
}

func TestBadSpecsAndMissingAgents(t *testing.T) {
	a, _ := newFakeAgent(t, StaticSpecs{
		"ocf:noagent": {Agent: "haxdtest:Missing"},
		"ocf:bad":     {Agent: "../../bin:sh"},
	})
	for sid, want := range map[ha.SID]string{
		"ocf:noagent": "ocf agent haxdtest:Missing",
		"ocf:bad":     `agent "../../bin:sh": want provider:type`,
		"ocf:none":    "start ocf:none: spec of ocf:none",
	} {
		if err := a.Start(context.Background(), sid); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start(%s) = %v, want an error containing %q", sid, err, want)
		}
	}
}

func TestParseSpec(t *testing.T) {
	s, err := ParseSpec([]byte(`{"agent": "ocf:heartbeat:IPaddr2", "params": {"ip": "10.0.0.10", "cidr_netmask": "24"}, "stop_timeout": "30s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Agent != "heartbeat:IPaddr2" || s.Params["ip"] != "10.0.0.10" || s.Params["cidr_netmask"] != "24" ||
		s.StopTimeout.D() != 30*time.Second || s.StartTimeout.D() != DefaultActionTimeout {
		t.Errorf("ParseSpec = %+v", s)
	}
	if _, err := ParseSpec([]byte(`{"agent": "heartbeat:Dummy", "params": {"state": "/tmp/x"}, "monitor_timeout": 5}`)); err != nil {
		t.Errorf("JSON spec: %v", err)
	}
	bad := map[string]string{
		`{"agent": "heartbeat:X", "params": {"a-b": "1"}}`: `params "a-b"`,
		`{"agent": "Dummy"}`:                            "want provider:type",
		`{"agent": "heartbeat:X", "stop_timeout": 0.1}`: `stop_timeout "100ms": must be between 1s and 1h`,
		`{"agent": "heartbeat:X", "x": 1}`:              `unknown field "x"`,
		`{"agent": "heartbeat:X"} {}`:                   "trailing data",
		`{}`:                                            `agent "": required`,
		"agent=heartbeat:X\n":                           "invalid character",
	}
	for in, want := range bad {
		if _, err := ParseSpec([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// The real agents of Debian's resource-agents package, when installed.
func realAgent(t *testing.T, specs StaticSpecs) *Agent {
	t.Helper()
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/Dummy"); err != nil {
		t.Skip("SKIP: resource-agents is not installed (apt-get install resource-agents); only the fake-agent tests ran")
	}
	a, err := New(Config{Specs: specs, RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRealDummy(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "dummy.state")
	a := realAgent(t, StaticSpecs{"ocf:dummy": {Agent: "heartbeat:Dummy", Params: map[string]string{"state": state}}})
	steps := []struct {
		do      func() error
		running bool
	}{
		{func() error { return nil }, false},
		{func() error { return a.Start(ctx, "ocf:dummy") }, true},
		{func() error { return a.Start(ctx, "ocf:dummy") }, true}, // idempotent
		{func() error { return a.Stop(ctx, "ocf:dummy", nil) }, false},
		{func() error { return a.Stop(ctx, "ocf:dummy", intp(0)) }, false}, // idempotent
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if running, err := a.Running(ctx, "ocf:dummy"); err != nil || running != s.running {
			t.Fatalf("step %d: Running = %v, %v; want %v", i, running, err, s.running)
		}
	}
}

func TestRealAnythingRunsAndStopsAProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "any.pid")
	a := realAgent(t, StaticSpecs{"ocf:any": {Agent: "heartbeat:anything", Params: map[string]string{
		"binfile": "/bin/sleep", "cmdline_options": "1000", "pidfile": pidfile, "logfile": filepath.Join(dir, "any.log"),
	}}})
	if err := a.Start(ctx, "ocf:any"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if running, err := a.Running(ctx, "ocf:any"); err != nil || !running {
		t.Fatalf("Running = %v, %v", running, err)
	}
	if err := a.Stop(ctx, "ocf:any", nil); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "ocf:any"); err != nil || running {
		t.Fatalf("after Stop: Running = %v, %v", running, err)
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Errorf("sleep %d still runs after Stop: %s", pid, st)
	}
}

func TestRunDirsAreEmptiedOnlyAfterAReboot(t *testing.T) {
	run := t.TempDir()
	varRun := filepath.Join(run, "run")
	os.MkdirAll(varRun, 0o755)
	os.WriteFile(filepath.Join(varRun, "anything_x.pid"), []byte("123\n"), 0o644)
	// First start: no record, nothing is known to be stale.
	if _, err := New(Config{Specs: StaticSpecs{}, OCFRoot: "/nonexist", RunDir: run, VarRun: varRun}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(varRun, "anything_x.pid")); err != nil {
		t.Fatalf("first start removed a pid file: %v", err)
	}
	// Same boot: kept.
	New(Config{Specs: StaticSpecs{}, OCFRoot: "/nonexist", RunDir: run, VarRun: varRun})
	if _, err := os.Stat(filepath.Join(varRun, "anything_x.pid")); err != nil {
		t.Fatalf("a restart in the same boot removed a pid file: %v", err)
	}
	// Another boot: emptied.
	os.WriteFile(filepath.Join(run, ".boot_id"), []byte("an-earlier-boot\n"), 0o644)
	if _, err := New(Config{Specs: StaticSpecs{}, OCFRoot: "/nonexist", RunDir: run, VarRun: varRun}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(varRun, "anything_x.pid")); err == nil {
		t.Error("a pid file of an earlier boot survived")
	}
}

// daemonRoot is an OCF_ROOT with haxdtest:Daemon, whose start leaves a
// daemon in a session of its own (setsid), as real agents do, and records
// its pid.
func daemonRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "haxdtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
pf="$HA_RSCTMP/daemon.pid"
case "$1" in
start) setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$pf"; exit 0 ;;
stop) [ -f "$pf" ] && kill -9 "$(cat "$pf")"; rm -f "$pf"; exit 0 ;;
monitor) [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null && exit 0; exit 7 ;;
*) exit 3 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "Daemon"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

type recFence struct {
	calls      []string
	admitErr   error
	spawnedErr error
}

func (f *recFence) Admit(sid ha.SID, cg string) error {
	f.calls = append(f.calls, "admit "+filepath.Base(cg))
	return f.admitErr
}

func (f *recFence) Spawned(sid ha.SID, pgid int, cg string) error {
	f.calls = append(f.calls, "spawned "+filepath.Base(cg))
	return f.spawnedErr
}

func (f *recFence) Released(sid ha.SID, pgid int, cg string) {
	f.calls = append(f.calls, "released "+filepath.Base(cg))
}

// ocfCgroupParent is a fresh cgroup v2 directory for the test, removed at
// its end; the test skips loudly without a writable cgroup v2.
func ocfCgroupParent(t *testing.T) string {
	t.Helper()
	mount, err := fence.Cgroup2Mount()
	if err != nil {
		t.Skipf("!!! no cgroup v2 mount: %v", err)
	}
	dir := filepath.Join(mount, "haxd-ocf-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Skipf("!!! cgroup v2 at %s not writable: %v", mount, err)
	}
	t.Cleanup(func() {
		if err := fence.RemoveCgroupTree(dir); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return dir
}

// The start action, and the daemon it leaves in a session of its own,
// run in the resource's leaf cgroup, admitted before the spawn; a refused
// admission runs nothing, a refused confirmation kills the action and its
// daemon at once.
func TestStartRunsInTheLeafAdmittedByTheFence(t *testing.T) {
	parent := ocfCgroupParent(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		fence   recFence
		wantErr string
		calls   []string
	}{
		{"admitted", recFence{}, "", []string{"admit ocf%3Ad", "spawned ocf%3Ad", "released ocf%3Ad"}},
		{"fenced node", recFence{admitErr: errors.New("node may not start services")}, "not started", []string{"admit ocf%3Ad"}},
		{"guard fenced during the spawn", recFence{spawnedErr: errors.New("guard fenced the node")}, "killed: guard fenced the node", []string{"admit ocf%3Ad", "spawned ocf%3Ad"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fence
			run := t.TempDir()
			a, err := New(Config{Specs: StaticSpecs{"ocf:d": {Agent: "haxdtest:Daemon"}}, OCFRoot: daemonRoot(t), RunDir: run, CgroupParent: parent, Fence: &f})
			if err != nil {
				t.Fatal(err)
			}
			leaf := filepath.Join(parent, "ocf%3Ad")
			err = a.Start(ctx, "ocf:d")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v, want an error containing %q", err, tt.wantErr)
				}
				time.Sleep(50 * time.Millisecond)
				if b, _ := os.ReadFile(filepath.Join(leaf, "cgroup.procs")); len(strings.TrimSpace(string(b))) != 0 {
					t.Errorf("processes %q left in the leaf after a refused start", b)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(run, "daemon.pid"))
				if err != nil {
					t.Fatal(err)
				}
				pid := strings.TrimSpace(string(b))
				cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
				if !strings.Contains(string(cg), "/ocf%3Ad\n") {
					t.Errorf("daemon %s runs in cgroup %q, want its resource's leaf", pid, cg)
				}
				if err := a.Stop(ctx, "ocf:d", nil); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(leaf); err == nil {
					t.Error("the leaf was not removed after a clean stop")
				}
			}
			if strings.Join(f.calls, ",") != strings.Join(tt.calls, ",") {
				t.Errorf("fence calls %v, want %v", f.calls, tt.calls)
			}
		})
	}
}
