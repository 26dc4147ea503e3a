package agent

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// job is a job of unit, with the object paths systemd would give it.
func job(id uint32, unit, typ string) SystemdJob {
	return SystemdJob{ID: id, Unit: unit, Type: typ, State: "waiting",
		Path:     dbus.ObjectPath("/org/freedesktop/systemd1/job/" + strconv.Itoa(int(id))),
		UnitPath: dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + strings.NewReplacer(".", "_2e", "-", "_2d").Replace(unit))}
}

// shutdownCases are the decisions the detector must make from systemd's
// job queue, shared by the pure and the D-Bus tests.
var shutdownCases = []struct {
	name             string
	jobs             []SystemdJob
	shutdown, reboot bool
}{
	{"no jobs", nil, false, false},
	{"unrelated jobs", []SystemdJob{job(1, "nginx.service", "stop"), job(2, "multi-user.target", "start")}, false, false},
	{"poweroff", []SystemdJob{job(7, "poweroff.target", "start"), job(8, "shutdown.target", "start"), job(9, "haxd.service", "stop")}, true, false},
	{"shutdown.target alone", []SystemdJob{job(8, "shutdown.target", "start")}, true, false},
	{"halt", []SystemdJob{job(3, "halt.target", "start")}, true, false},
	{"reboot", []SystemdJob{job(8, "shutdown.target", "start"), job(7, "reboot.target", "start"), job(9, "haxd.service", "stop")}, true, true},
	{"kexec", []SystemdJob{job(4, "kexec.target", "start"), job(5, "shutdown.target", "start")}, true, true},
	{"soft reboot", []SystemdJob{job(4, "soft-reboot.target", "start")}, true, true},
	{"stop job of reboot.target is no reboot", []SystemdJob{job(4, "reboot.target", "stop")}, false, false},
	{"target name as a prefix only", []SystemdJob{job(4, "reboot.target.wants", "start"), job(5, "my-shutdown.target", "start")}, false, false},
}

func TestShutdownFromJobs(t *testing.T) {
	for _, tc := range shutdownCases {
		t.Run(tc.name, func(t *testing.T) {
			shutdown, reboot, unit := shutdownFromJobs(tc.jobs)
			if shutdown != tc.shutdown || reboot != tc.reboot {
				t.Fatalf("shutdownFromJobs = (%v, %v), want (%v, %v)", shutdown, reboot, tc.shutdown, tc.reboot)
			}
			if shutdown == (unit == "") {
				t.Fatalf("deciding unit %q for shutdown=%v", unit, shutdown)
			}
		})
	}
}

// fakeSystemd is the part of org.freedesktop.systemd1.Manager the detector
// uses, exported on a test bus.
type fakeSystemd struct {
	mu    sync.Mutex
	jobs  []SystemdJob
	calls int
	hang  chan struct{} // when set, ListJobs blocks until it is closed
}

// ListJobs answers Manager.ListJobs with the configured queue.
func (f *fakeSystemd) ListJobs() ([]SystemdJob, *dbus.Error) {
	f.mu.Lock()
	f.calls++
	hang, jobs := f.hang, f.jobs
	f.mu.Unlock()
	if hang != nil {
		<-hang
	}
	if jobs == nil {
		jobs = []SystemdJob{} // D-Bus has no nil array
	}
	return jobs, nil
}

func (f *fakeSystemd) set(jobs []SystemdJob, hang chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs, f.hang = jobs, hang
}

// testBus is a private dbus-daemon with a unix socket in a temp dir.
type testBus struct {
	addr string
	cmd  *exec.Cmd
}

// startBus starts dbus-daemon, or skips loudly when it is not installed.
func startBus(t *testing.T) *testBus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("!!! dbus-daemon not found (Debian package dbus): the D-Bus shutdown detection is NOT tested")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	// The daemon dies with the test binary, even when a test times out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a test may have stopped it
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dbus-daemon stderr:\n%s", stderr.String())
		}
	})
	// The daemon prints its address once it listens.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return &testBus{addr: strings.TrimSpace(line), cmd: cmd}
}

// exportSystemd connects to the bus, takes systemd's name and exports f as
// its manager object.
func exportSystemd(t *testing.T, bus *testBus, f *fakeSystemd) {
	t.Helper()
	conn, err := dbus.Connect(bus.addr)
	if err != nil {
		t.Fatalf("connect to test bus: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.Export(f, systemdObjectPath, "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(systemdBusName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name %s: reply %v, err %v", systemdBusName, reply, err)
	}
}

// detector returns a detector on the given buses, as if systemd were PID 1,
// logging into buf.
func detector(t *testing.T, timeout time.Duration, buf *syncBuffer, buses ...SystemdBus) *ShutdownDetector {
	return &ShutdownDetector{Buses: buses, Booted: t.TempDir(), Timeout: timeout,
		Log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// syncBuffer is a bytes.Buffer safe for concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const fallbackLine = "node shutdown detection relies on signals"

func TestShutdownDetectorOverDBus(t *testing.T) {
	bus := startBus(t)
	fake := &fakeSystemd{}
	exportSystemd(t, bus, fake)
	var logs syncBuffer
	// The first bus (a private socket that does not exist) fails; the
	// detector goes on to the system bus, as on a host where it runs
	// without root.
	d := detector(t, 5*time.Second, &logs,
		SystemdBus{Address: "unix:path=" + filepath.Join(t.TempDir(), "private"), Direct: true},
		SystemdBus{Address: bus.addr})
	for _, tc := range shutdownCases {
		t.Run(tc.name, func(t *testing.T) {
			fake.set(tc.jobs, nil)
			jobs, err := d.Jobs(context.Background())
			if err != nil {
				t.Fatalf("Jobs: %v", err)
			}
			if len(jobs) != len(tc.jobs) {
				t.Fatalf("Jobs returned %d jobs, the fake systemd has %d", len(jobs), len(tc.jobs))
			}
			for i := range jobs {
				if jobs[i] != tc.jobs[i] {
					t.Fatalf("job %d = %+v, want %+v", i, jobs[i], tc.jobs[i])
				}
			}
			shutdown, reboot := d.Detect()
			if shutdown != tc.shutdown || reboot != tc.reboot {
				t.Fatalf("Detect = (%v, %v), want (%v, %v)", shutdown, reboot, tc.shutdown, tc.reboot)
			}
		})
	}
	if strings.Contains(logs.String(), fallbackLine) {
		t.Fatalf("the detector fell back although systemd answered:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `msg="systemd is shutting the node down" reboot=true job_unit=reboot.target`) {
		t.Fatalf("no decision line for the reboot case:\n%s", logs.String())
	}
}

func TestShutdownDetectorFallback(t *testing.T) {
	bus := startBus(t) // a bus on which nobody owns systemd's name
	missing := "unix:path=" + filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name    string
		buses   []SystemdBus
		booted  bool
		wantErr string
	}{
		{"systemd not PID 1", []SystemdBus{{Address: bus.addr}}, false, "systemd is not PID 1"},
		{"no bus socket", []SystemdBus{{Address: missing, Direct: true}, {Address: missing}}, true, "connect"},
		{"bad address", []SystemdBus{{Address: "nonsense"}}, true, "connect"},
		{"systemd not on the bus", []SystemdBus{{Address: bus.addr}}, true, "ListJobs"},
		{"a bus daemon is no direct systemd socket", []SystemdBus{{Address: bus.addr, Direct: true}}, true, "ListJobs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			d := detector(t, 5*time.Second, &logs, tc.buses...)
			if !tc.booted {
				d.Booted = filepath.Join(t.TempDir(), "no-systemd")
			}
			if _, err := d.Jobs(context.Background()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Jobs error %v, want one containing %q", err, tc.wantErr)
			}
			for range 3 {
				if shutdown, reboot := d.Detect(); shutdown || reboot {
					t.Fatalf("Detect = (%v, %v) without systemd, want an agent restart", shutdown, reboot)
				}
			}
			if n := strings.Count(logs.String(), fallbackLine); n != 1 {
				t.Fatalf("the fallback was logged %d times in 3 detections, want once:\n%s", n, logs.String())
			}
		})
	}
}

// TestShutdownDetectorHungBus checks that a bus that accepts but never
// answers cannot hold the agent's stop beyond the detector's bound.
func TestShutdownDetectorHungBus(t *testing.T) {
	const bound = 300 * time.Millisecond
	// slack covers scheduling on a loaded machine; a hang would be forever.
	const slack = 3 * time.Second
	bus := startBus(t)
	fake := &fakeSystemd{}
	exportSystemd(t, bus, fake)

	// A socket that accepts connections and never says a word (a hung
	// systemd on its private socket).
	silent := filepath.Join(t.TempDir(), "silent")
	ln, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) []SystemdBus
	}{
		{"silent socket", func(t *testing.T) []SystemdBus {
			return []SystemdBus{{Address: "unix:path=" + silent, Direct: true}, {Address: bus.addr}}
		}},
		{"ListJobs never returns", func(t *testing.T) []SystemdBus {
			hang := make(chan struct{})
			fake.set([]SystemdJob{job(7, "reboot.target", "start")}, hang)
			t.Cleanup(func() { close(hang); fake.set(nil, nil) })
			return []SystemdBus{{Address: bus.addr}}
		}},
		{"bus daemon stopped", func(t *testing.T) []SystemdBus {
			if err := bus.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = bus.cmd.Process.Signal(syscall.SIGCONT) })
			return []SystemdBus{{Address: bus.addr}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			d := detector(t, bound, &logs, tc.setup(t)...)
			start := time.Now()
			shutdown, reboot := d.Detect()
			took := time.Since(start)
			if shutdown || reboot {
				t.Fatalf("Detect = (%v, %v) from a hung bus, want the fallback", shutdown, reboot)
			}
			if took > bound+slack {
				t.Fatalf("Detect took %v with a bound of %v", took, bound)
			}
			if !strings.Contains(logs.String(), fallbackLine) || !strings.Contains(logs.String(), "deadline exceeded") {
				t.Fatalf("no fallback line naming the timeout:\n%s", logs.String())
			}
		})
	}
	// The bus works again once the hang is over: the timeout left no
	// state behind.
	fake.set([]SystemdJob{job(7, "poweroff.target", "start")}, nil)
	d := detector(t, 5*time.Second, &syncBuffer{}, SystemdBus{Address: bus.addr})
	if shutdown, reboot := d.Detect(); !shutdown || reboot {
		t.Fatalf("Detect after the hang = (%v, %v), want a shutdown", shutdown, reboot)
	}
}
