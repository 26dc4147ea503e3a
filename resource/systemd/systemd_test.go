package systemd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/ha"
)

// fakeSystemctl writes a systemctl stand-in that keeps unit states as files
// in dir/units and logs every call to dir/calls. "stop" hangs while
// dir/hang-stop exists; "stop --no-block" leaves the unit deactivating, and
// "kill --signal=SIGKILL" makes it failed.
func fakeSystemctl(t *testing.T, units map[string]string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "units"), 0o755); err != nil {
		t.Fatal(err)
	}
	for u, st := range units {
		if err := os.WriteFile(filepath.Join(dir, "units", u), []byte(st+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
D='` + dir + `'
echo "$*" >> "$D/calls"
for a in "$@"; do unit="$a"; done
f="$D/units/$unit"
case "$1" in
show)
	if [ -f "$f" ]; then echo LoadState=loaded; echo "ActiveState=$(cat "$f")"
	else echo LoadState=not-found; echo ActiveState=inactive; fi
	[ -f "$D/props/$unit" ] && cat "$D/props/$unit"
	exit 0 ;;
start)
	[ -f "$f" ] || { echo "Unit $unit not found." >&2; exit 5; }
	echo active > "$f" ;;
stop)
	if [ "$2" = --no-block ]; then echo deactivating > "$f"; exit 0; fi
	[ -f "$D/hang-stop" ] && exec sleep 30
	echo inactive > "$f" ;;
kill)
	echo failed > "$f" ;;
*)
	echo "unknown command $1" >&2; exit 1 ;;
esac
`
	path = filepath.Join(dir, "systemctl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func calls(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func intp(i int) *int { return &i }

func TestUnitName(t *testing.T) {
	tests := []struct {
		sid  ha.SID
		want string
		ok   bool
	}{
		{"systemd:nginx", "nginx.service", true},
		{"systemd:nginx.service", "nginx.service", true},
		{"systemd:data.mount", "data.mount", true},
		{"systemd:getty@tty1", "getty@tty1.service", true},
		{"systemd:my.app", "my.app.service", true},
		{"systemd:-f", "", false},
		{"systemd:a/b", "", false},
		{"systemd:", "", false},
	}
	for _, tt := range tests {
		got, err := Unit(tt.sid)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Unit(%q) = %q, %v; want %q, ok=%v", tt.sid, got, err, tt.want, tt.ok)
		}
	}
}

func TestStartRunningStop(t *testing.T) {
	ctx := context.Background()
	path, dir := fakeSystemctl(t, map[string]string{"web.service": "inactive"})
	a, err := New(Config{Systemctl: path, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "systemd:web"); err != nil || running {
		t.Fatalf("before start: Running = %v, %v", running, err)
	}
	if err := a.Start(ctx, "systemd:web"); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "systemd:web"); err != nil || !running {
		t.Fatalf("after start: Running = %v, %v", running, err)
	}
	if err := a.Stop(ctx, "systemd:web", nil); err != nil {
		t.Fatal(err)
	}
	if running, err := a.Running(ctx, "systemd:web"); err != nil || running {
		t.Fatalf("after stop: Running = %v, %v", running, err)
	}
	got := calls(t, dir)
	want := []string{
		"show --property=LoadState --property=ActiveState -- web.service",
		"show --property=LoadState --property=ActiveState --property=Restart --property=Slice -- web.service",
		"start -- web.service",
		"show --property=ControlGroup -- web.service",
		"show --property=LoadState --property=ActiveState -- web.service",
		"stop -- web.service",
		"show --property=LoadState --property=ActiveState -- web.service",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("systemctl calls:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunningCountsEveryStateButInactiveAndFailed(t *testing.T) {
	ctx := context.Background()
	states := map[string]bool{"active": true, "activating": true, "deactivating": true, "reloading": true,
		"refreshing": true, "maintenance": true, "inactive": false, "failed": false}
	for st, want := range states {
		path, _ := fakeSystemctl(t, map[string]string{"x.service": st})
		a, _ := New(Config{Systemctl: path})
		if got, err := a.Running(ctx, "systemd:x"); err != nil || got != want {
			t.Errorf("ActiveState %s: Running = %v, %v; want %v", st, got, err, want)
		}
	}
}

func TestStopWithTimeoutKills(t *testing.T) {
	tests := []struct {
		name    string
		timeout int
		hang    bool
		min     time.Duration
	}{
		{"timeout 0 kills at once", 0, false, 0},
		{"a stop that hangs past the timeout is killed", 1, true, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path, dir := fakeSystemctl(t, map[string]string{"db.service": "active"})
			if tt.hang {
				if err := os.WriteFile(filepath.Join(dir, "hang-stop"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a, _ := New(Config{Systemctl: path, PollInterval: 10 * time.Millisecond})
			t0 := time.Now()
			if err := a.Stop(ctx, "systemd:db", intp(tt.timeout)); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(t0); took < tt.min || took > tt.min+3*time.Second {
				t.Errorf("Stop took %s, want about %s", took, tt.min)
			}
			got := calls(t, dir)
			n := len(got)
			// The stop job is queued before the kill, so Restart= cannot
			// bring the unit back; then the agent waits for it to be down.
			if n < 3 || got[n-3] != "stop --no-block -- db.service" || got[n-2] != "kill --signal=SIGKILL -- db.service" {
				t.Errorf("systemctl calls end with %q, want stop --no-block, kill, show", got)
			}
			if running, _ := a.Running(ctx, "systemd:db"); running {
				t.Error("still running after Stop")
			}
		})
	}
}

func TestStartUnknownUnitFails(t *testing.T) {
	path, _ := fakeSystemctl(t, nil)
	a, _ := New(Config{Systemctl: path})
	err := a.Start(context.Background(), "systemd:nope")
	if err == nil || !strings.Contains(err.Error(), "unit nope.service not found") {
		t.Fatalf("Start = %v, want unit not found", err)
	}
}

func TestMigrateStopsAndIsNotLive(t *testing.T) {
	path, _ := fakeSystemctl(t, map[string]string{"m.service": "active"})
	a, _ := New(Config{Systemctl: path})
	if a.LiveMigratable() || a.RemoveLocks("systemd:m", []string{"backup"}) != "" {
		t.Fatal("systemd units are not live-migratable and have no locks")
	}
	if err := a.Migrate(context.Background(), "systemd:m", "node2", true); err != nil {
		t.Fatal(err)
	}
	if running, _ := a.Running(context.Background(), "systemd:m"); running {
		t.Error("still running after Migrate")
	}
}

// TestRealSystemd asks a real systemd about a unit that does not exist; it
// changes nothing on the host.
func TestRealSystemd(t *testing.T) {
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		t.Skipf("SKIP: systemd is not PID 1 here (PID 1 is %q): only the fake-systemctl tests ran", strings.TrimSpace(string(comm)))
	}
	a, _ := New(Config{})
	// A unit that does not exist must be reported as not running.
	if running, err := a.Running(context.Background(), "systemd:haxd-test-does-not-exist"); err != nil || running {
		t.Fatalf("Running of a missing unit = %v, %v", running, err)
	}
}

func TestSlicePath(t *testing.T) {
	tests := []struct {
		slice, want string
		ok          bool
	}{
		{"system.slice", "/system.slice", true},
		{"user-1000.slice", "/user.slice/user-1000.slice", true},
		{"a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice", true},
		{"-.slice", "", true},
		{"", "", false},
		{"nginx.service", "", false},
		{"a--b.slice", "", false},
		{"../x.slice", "", false},
	}
	for _, tt := range tests {
		got, ok := SlicePath(tt.slice)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SlicePath(%q) = %q, %v; want %q, %v", tt.slice, got, ok, tt.want, tt.ok)
		}
	}
}

// recFence records the Fence calls and refuses what it is told to.
type recFence struct {
	calls      []string
	admitErr   error
	spawnedErr error
}

func (f *recFence) Admit(sid ha.SID, cg string) error {
	f.calls = append(f.calls, "admit "+string(sid)+" "+cg)
	return f.admitErr
}

func (f *recFence) Spawned(sid ha.SID, pgid int, cg string) error {
	f.calls = append(f.calls, "spawned "+string(sid)+" "+cg)
	return f.spawnedErr
}

func (f *recFence) Released(sid ha.SID, pgid int, cg string) {
	f.calls = append(f.calls, "released "+string(sid)+" "+cg)
}

func TestStartPutsTheUnitsCgroupUnderTheFence(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		props     string
		fence     recFence
		wantErr   string
		wantCalls []string
		wantState string
	}{
		{"registered before and after the start", "Restart=no\nSlice=system-web.slice\nControlGroup=/system.slice/system-web.slice/web.service\n", recFence{}, "",
			[]string{"admit systemd:web /cg/system.slice/system-web.slice/web.service", "spawned systemd:web /cg/system.slice/system-web.slice/web.service",
				"released systemd:web /cg/system.slice/system-web.slice/web.service"}, "inactive"},
		{"Restart=always is refused", "Restart=always\nSlice=system.slice\n", recFence{}, "Restart=always", nil, "inactive"},
		{"fenced node starts nothing", "Slice=system.slice\n", recFence{admitErr: errors.New("node is fenced")}, "not started: node is fenced",
			[]string{"admit systemd:web /cg/system.slice/web.service"}, "inactive"},
		{"a start the fence missed is killed", "Slice=system.slice\n", recFence{spawnedErr: errors.New("fenced")}, "killed: fenced",
			[]string{"admit systemd:web /cg/system.slice/web.service", "spawned systemd:web /cg/system.slice/web.service"}, "failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, dir := fakeSystemctl(t, map[string]string{"web.service": "inactive"})
			os.MkdirAll(filepath.Join(dir, "props"), 0o755)
			os.WriteFile(filepath.Join(dir, "props", "web.service"), []byte(strings.ReplaceAll(tt.props, `\n`, "\n")), 0o644)
			f := tt.fence
			a, err := New(Config{Systemctl: path, PollInterval: 10 * time.Millisecond, KillWait: time.Second, CgroupMount: "/cg", Fence: &f})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Start(ctx, "systemd:web")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v, want an error containing %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if err := a.Stop(ctx, "systemd:web", nil); err != nil {
					t.Fatal(err)
				}
			}
			if strings.Join(f.calls, "\n") != strings.Join(tt.wantCalls, "\n") {
				t.Errorf("fence calls:\n%s\nwant\n%s", strings.Join(f.calls, "\n"), strings.Join(tt.wantCalls, "\n"))
			}
			st, _ := os.ReadFile(filepath.Join(dir, "units", "web.service"))
			if got := strings.TrimSpace(string(st)); got != tt.wantState {
				t.Errorf("unit state %q, want %q", got, tt.wantState)
			}
		})
	}
}
