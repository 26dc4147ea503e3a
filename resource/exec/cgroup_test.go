//go:build linux

package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/ha"
	"haxd/resource"
)

// testCgroupParent creates a fresh cgroup v2 directory beside the test's own
// cgroup and removes it (and whatever is left in it) when the test ends. It
// skips the test, loudly, when the machine has no writable cgroup v2.
func testCgroupParent(t *testing.T) string {
	t.Helper()
	mount := ""
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("SKIP cgroup test: %v", err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "... mountpoint options ... - fstype source superoptions"
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i > 4 && i+1 < len(fields) && fields[i+1] == "cgroup2" {
			mount = fields[4]
			break
		}
	}
	f.Close()
	if mount == "" {
		t.Skip("SKIP cgroup test: no cgroup v2 file system mounted")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("SKIP cgroup test: %v", err)
	}
	base := mount
	for _, l := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			base = filepath.Join(mount, p)
		}
	}
	dir := filepath.Join(base, fmt.Sprintf("haxd-exec-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("SKIP cgroup test: cgroup v2 at %s not writable: %v", base, err)
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				sub := filepath.Join(dir, e.Name())
				_ = killCgroup(sub)
				eventually(2*time.Second, func() bool { return os.Remove(sub) == nil || errors.Is(os.Remove(sub), fs.ErrNotExist) })
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup %s: %v", dir, err)
		}
	})
	if err := resource.CheckCgroupParent(dir); err != nil {
		t.Skipf("SKIP cgroup test: %v", err)
	}
	return dir
}

func TestCgroupCatchesProcessesThatLeaveTheGroup(t *testing.T) {
	parent := testCgroupParent(t)
	ctx := context.Background()
	// The service forks a child that starts its own session, leaving the
	// process group: only the cgroup still holds it.
	spec := Spec{Command: "sh", Args: []string{"-c", "setsid sleep 1000 & exec sleep 1000"}}
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:cg": spec}, func(c *Config) { c.CgroupParent = parent })
	if !a.UsesCgroups() {
		t.Fatal("agent does not use the writable cgroup parent")
	}
	var registered string
	a.cfg.OnStart = func(_ ha.SID, _ int, cgroup string) { registered = cgroup }
	if err := a.Start(ctx, "exec:cg"); err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, a, "exec:cg")
	want := filepath.Join(parent, "exec%3Acg")
	if rec.Cgroup != want || registered != want {
		t.Fatalf("cgroup recorded %q, registered %q; want %q", rec.Cgroup, registered, want)
	}
	// Wait until the child has called setsid: the cgroup holds two
	// processes and one of them is no longer in the process group.
	var live liveness
	escaped := -1
	if !eventually(2*time.Second, func() bool {
		live, _ = a.probe(rec)
		escaped = -1
		for _, pid := range live.cgroup {
			if !slices.Contains(live.members, pid) {
				escaped = pid
			}
		}
		return len(live.cgroup) == 2 && escaped >= 0
	}) {
		t.Fatalf("no process left the group: members %v, cgroup %v", live.members, live.cgroup)
	}
	est, err := readProcStat("/proc", escaped)
	if err != nil {
		t.Fatal(err)
	}

	// The cgroup alone proves the service runs, even without a state file
	// (the agent died between starting it and recording it).
	if err := os.Remove(filepath.Join(a.cfg.StateDir, "exec%3Acg.state")); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "exec:cg"); err != nil || !running {
		t.Fatalf("without state file: Running = %v, %v; want true from the cgroup", running, err)
	}
	if err := a.Stop(ctx, "exec:cg", intp(1)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if processAlive(t, escaped, est.start) {
		t.Errorf("escaped pid %d alive after Stop", escaped)
	}
	if processAlive(t, rec.PID, rec.StartTicks) {
		t.Errorf("service pid %d alive after Stop", rec.PID)
	}
	if !eventually(time.Second, func() bool { _, err := os.Stat(want); return errors.Is(err, fs.ErrNotExist) }) {
		t.Errorf("cgroup %s not removed after Stop", want)
	}
}

// recFence records the resource.Fence calls and refuses what it is told to.
type recFence struct {
	mu         sync.Mutex
	calls      []string
	admitErr   error
	spawnedErr error
}

func (f *recFence) add(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

func (f *recFence) Admit(sid ha.SID, cg string) error {
	f.add("admit " + filepath.Base(cg))
	return f.admitErr
}

func (f *recFence) Spawned(sid ha.SID, pgid int, cg string) error {
	f.add("spawned " + filepath.Base(cg))
	return f.spawnedErr
}

func (f *recFence) Released(sid ha.SID, pgid int, cg string) { f.add("released " + filepath.Base(cg)) }

func (f *recFence) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// The leaf is created and admitted before the spawn, the process is cloned
// into it, and confirmed after it; a refused admission spawns nothing, a
// refused confirmation kills the process at once.
func TestStartIsAdmittedByTheFenceBeforeTheSpawnAndConfirmedAfter(t *testing.T) {
	parent := testCgroupParent(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		admitErr   error
		spawnedErr error
		wantErr    string
		calls      []string
	}{
		{"admitted", nil, nil, "", []string{"admit exec%3Aweb", "spawned exec%3Aweb", "released exec%3Aweb"}},
		{"fenced node", errors.New("node may not start services: the node fenced itself"), nil, "not started: node may not start services", []string{"admit exec%3Aweb"}},
		{"guard fenced during the spawn", nil, errors.New("guard fenced the node"), "killed: guard fenced the node", []string{"admit exec%3Aweb", "spawned exec%3Aweb"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &recFence{admitErr: tt.admitErr, spawnedErr: tt.spawnedErr}
			dir := t.TempDir()
			marker := filepath.Join(dir, "ran")
			a := testAgent(t, dir, StaticSpecs{"exec:web": {Command: "sh", Args: []string{"-c", "touch " + marker + "; exec sleep 1000"}}},
				func(c *Config) { c.CgroupParent = parent; c.Fence = f })
			err := a.Start(ctx, "exec:web")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v, want an error containing %q", err, tt.wantErr)
				}
				if running, _ := a.Running(ctx, "exec:web"); running {
					t.Error("the service runs after a refused start")
				}
				if pids, _ := cgroupPids(filepath.Join(parent, "exec%3Aweb")); len(pids) != 0 {
					t.Errorf("processes %v left in the leaf", pids)
				}
				if tt.admitErr != nil {
					if _, err := os.Stat(marker); err == nil {
						t.Error("the command ran although the fence refused the start")
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				rec := mustRecord(t, a, "exec:web")
				if rec.Cgroup != filepath.Join(parent, "exec%3Aweb") {
					t.Errorf("service cgroup %q, want its leaf", rec.Cgroup)
				}
				if err := a.Stop(ctx, "exec:web", intp(0)); err != nil {
					t.Fatal(err)
				}
			}
			if got := f.log(); !slices.Equal(got, tt.calls) {
				t.Errorf("fence calls %v, want %v", got, tt.calls)
			}
		})
	}
}

// TestRunningSeesEscapedProcessInCgroupWithoutScan checks that a service
// whose main process exited and whose only process left the process group
// (setsid) still counts as running, from its cgroup, although the kernel
// reports its process group empty so that Running does not scan /proc.
func TestRunningSeesEscapedProcessInCgroupWithoutScan(t *testing.T) {
	ctx := context.Background()
	parent := testCgroupParent(t)
	spec := Spec{Command: "sh", Args: []string{"-c", "setsid sleep 1000 & sleep 0.2; exit 0"}}
	a := testAgent(t, t.TempDir(), StaticSpecs{"exec:esc": spec}, func(c *Config) { c.CgroupParent = parent })
	if err := a.Start(ctx, "exec:esc"); err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, a, "exec:esc")
	if !eventually(5*time.Second, func() bool {
		_, err := readProcStat("/proc", rec.PID)
		return errors.Is(err, fs.ErrNotExist)
	}) {
		t.Fatalf("the shell %d did not exit", rec.PID)
	}
	before := a.procScans.Load()
	if running, err := a.Running(ctx, "exec:esc"); err != nil || !running {
		t.Fatalf("Running = %v, %v; want true from the cgroup", running, err)
	}
	if scans := a.procScans.Load() - before; scans != 0 {
		t.Errorf("Running scanned /proc %d times for an empty process group; want 0", scans)
	}
	if err := a.Stop(ctx, "exec:esc", intp(1)); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "exec:esc"); err != nil || running {
		t.Fatalf("Running after Stop = %v, %v; want false", running, err)
	}
}
