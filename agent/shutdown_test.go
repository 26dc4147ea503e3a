package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
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

// fakePrivateSocket serves one systemd-like peer-to-peer D-Bus connection
// per accept, as /run/systemd/private does: EXTERNAL auth for the caller's
// uid, no bus daemon (a Hello is refused), and Manager.ListJobs answered
// with jobs. Each connection's first method call is sent to calls.
func fakePrivateSocket(t *testing.T, jobs []SystemdJob, calls chan<- string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "private")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				member, err := servePrivate(c, jobs)
				if err != nil {
					member = "error: " + err.Error()
				}
				calls <- member
			}()
		}
	}()
	return "unix:path=" + path
}

// servePrivate runs the server side of the SASL handshake and answers the
// first method call; it returns the called member.
func servePrivate(c net.Conn, jobs []SystemdJob) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	in := bufio.NewReader(c)
	if b, err := in.ReadByte(); err != nil || b != 0 {
		return "", fmt.Errorf("no leading NUL byte (%v)", err)
	}
	wantID := hex.EncodeToString([]byte(strconv.Itoa(os.Geteuid())))
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && f[0] == "AUTH":
			_, err = io.WriteString(c, "REJECTED EXTERNAL\r\n")
		case len(f) == 3 && f[0] == "AUTH" && f[1] == "EXTERNAL" && f[2] == wantID:
			_, err = io.WriteString(c, "OK 0123456789abcdef0123456789abcdef\r\n")
		case len(f) == 2 && f[0] == "AUTH" && f[1] == "EXTERNAL":
			// No identity sent: the kernel's peer credentials decide, as
			// in sd-bus; an empty DATA exchange follows.
			if uid, err := peerUID(c); err != nil || uid != os.Geteuid() {
				return "", fmt.Errorf("peer uid %d (%v), want %d", uid, err, os.Geteuid())
			}
			_, err = io.WriteString(c, "DATA\r\n")
		case len(f) == 1 && f[0] == "DATA":
			_, err = io.WriteString(c, "OK 0123456789abcdef0123456789abcdef\r\n")
		case len(f) >= 2 && f[0] == "AUTH":
			_, err = io.WriteString(c, "REJECTED EXTERNAL\r\n")
		case len(f) == 1 && f[0] == "NEGOTIATE_UNIX_FD":
			_, err = io.WriteString(c, "AGREE_UNIX_FD\r\n")
		case len(f) == 1 && f[0] == "BEGIN":
			return answerPrivate(c, in, jobs)
		default:
			_, err = io.WriteString(c, "ERROR\r\n")
		}
		if err != nil {
			return "", err
		}
	}
}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c net.Conn) (int, error) {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// answerPrivate reads one method call and answers ListJobs with jobs and
// anything else (a Hello, say) with UnknownMethod, as systemd does.
func answerPrivate(c net.Conn, in *bufio.Reader, jobs []SystemdJob) (string, error) {
	msg, err := dbus.DecodeMessage(in)
	if err != nil {
		return "", fmt.Errorf("decode call: %w", err)
	}
	iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[dbus.FieldMember].Value().(string)
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	name := iface + "." + member
	reply := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(msg.Serial()),
	}}
	if name == systemdListJobs && path == systemdObjectPath {
		if jobs == nil {
			jobs = []SystemdJob{}
		}
		reply.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(jobs))
		reply.Body = []any{jobs}
	} else {
		reply.Type = dbus.TypeError
		reply.Headers[dbus.FieldErrorName] = dbus.MakeVariant("org.freedesktop.DBus.Error.UnknownMethod")
		reply.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(""))
		reply.Body = []any{"unknown method " + name}
	}
	var buf bytes.Buffer
	if err := reply.EncodeTo(&buf, binary.LittleEndian); err != nil {
		return "", fmt.Errorf("encode reply: %w", err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:12], 1) // the reply's own serial (godbus leaves it 0)
	if _, err := c.Write(b); err != nil {
		return "", err
	}
	return name, nil
}

// TestShutdownDetectorPrivateSocket talks to a systemd-like private socket
// (peer to peer, no bus daemon): the detector must authenticate as its
// uid and call ListJobs without a Hello first.
func TestShutdownDetectorPrivateSocket(t *testing.T) {
	for _, tc := range []struct {
		name             string
		jobs             []SystemdJob
		shutdown, reboot bool
	}{
		{"reboot", []SystemdJob{job(8, "shutdown.target", "start"), job(7, "reboot.target", "start")}, true, true},
		{"poweroff", []SystemdJob{job(7, "poweroff.target", "start")}, true, false},
		{"nothing queued", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := make(chan string, 4)
			addr := fakePrivateSocket(t, tc.jobs, calls)
			var logs syncBuffer
			d := detector(t, 5*time.Second, &logs, SystemdBus{Address: addr, Direct: true})
			shutdown, reboot := d.Detect()
			if got := <-calls; got != systemdListJobs {
				t.Fatalf("the private socket got %q first, want %s; log:\n%s", got, systemdListJobs, logs.String())
			}
			if shutdown != tc.shutdown || reboot != tc.reboot {
				t.Fatalf("Detect = (%v, %v), want (%v, %v); log:\n%s", shutdown, reboot, tc.shutdown, tc.reboot, logs.String())
			}
		})
	}
	// Treating the private socket as a bus (a Hello first) fails the way
	// systemd would answer it: the detector falls back.
	calls := make(chan string, 4)
	addr := fakePrivateSocket(t, []SystemdJob{job(7, "reboot.target", "start")}, calls)
	var logs syncBuffer
	d := detector(t, 5*time.Second, &logs, SystemdBus{Address: addr})
	if shutdown, _ := d.Detect(); shutdown {
		t.Fatal("Detect reported a shutdown after a refused Hello")
	}
	if got := <-calls; got != "org.freedesktop.DBus.Hello" {
		t.Fatalf("first call %q, want the Hello", got)
	}
	if !strings.Contains(logs.String(), fallbackLine) {
		t.Fatalf("no fallback line:\n%s", logs.String())
	}
}
