package fence

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"haxd/ha"
)

// There is no /dev/watchdog on the machines these tests run on (no softdog
// either, and a real watchdog would reset the machine under test), so the
// device is a fake behind the DeviceFile seam. The real implementation is
// only checked against a file that is not a watchdog.

// fakeDevice is a watchdog driver: it records every call, grants timeouts
// like the driver it imitates, and counts as armed from open until a
// close that follows the magic 'V'.
type fakeDevice struct {
	mu       sync.Mutex
	calls    []string
	identity string
	options  uint32
	timeout  int             // current timeout, seconds
	grant    func(s int) int // the timeout the driver picks for a request
	setErr   error           // WDIOC_SETTIMEOUT fails with this
	open     bool
	magic    bool // 'V' written since the last keepalive
	armed    bool // still counting after close (no magic close)
}

func softdog() *fakeDevice {
	return &fakeDevice{identity: "Software Watchdog", options: unix.WDIOF_SETTIMEOUT | unix.WDIOF_MAGICCLOSE | unix.WDIOF_KEEPALIVEPING,
		timeout: 60, grant: func(s int) int { return s }}
}

// fixedDog ignores the requested timeout, as some BMC-backed drivers do.
func fixedDog(secs int) *fakeDevice {
	d := softdog()
	d.identity, d.timeout = "IPMI", secs
	d.grant = func(int) int { return secs }
	return d
}

func (d *fakeDevice) opener() OpenDeviceFunc {
	return func(string) (DeviceFile, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.open {
			return nil, &os.PathError{Op: "open", Path: "/dev/watchdog", Err: syscall.EBUSY}
		}
		d.open, d.armed, d.magic = true, true, false
		d.calls = append(d.calls, "open")
		return d, nil
	}
}

func (d *fakeDevice) record(c string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, c)
}

func (d *fakeDevice) Keepalive() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "keepalive")
	d.magic = false
	return nil
}

func (d *fakeDevice) SetTimeout(s int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "settimeout "+itoa(s))
	if d.setErr != nil {
		return s, d.setErr
	}
	d.timeout = d.grant(s)
	return d.timeout, nil
}

func (d *fakeDevice) Timeout() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "gettimeout")
	return d.timeout, nil
}

func (d *fakeDevice) Support() (DeviceInfo, error) {
	d.record("getsupport")
	return DeviceInfo{Identity: d.identity, Firmware: 0, Options: d.options}, nil
}

func (d *fakeDevice) WriteMagic() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "V")
	d.magic = true
	return nil
}

func (d *fakeDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "close")
	d.open = false
	d.armed = !d.magic
	return nil
}

func (d *fakeDevice) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *fakeDevice) stillArmed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.armed
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestOpenDeviceSetsTheTimeoutAndReadsItBack(t *testing.T) {
	tests := []struct {
		name    string
		dev     *fakeDevice
		want    time.Duration
		got     time.Duration
		wantErr string
	}{
		{"softdog grants what is asked", softdog(), 10 * time.Second, 10 * time.Second, ""},
		{"rounded up to whole seconds", softdog(), 1500 * time.Millisecond, 2 * time.Second, ""},
		{"a driver with a fixed timeout", fixedDog(60), 10 * time.Second, 60 * time.Second, ""},
		{"sub-second request", softdog(), 500 * time.Millisecond, 0, "whole seconds"},
		{"driver refuses the timeout", func() *fakeDevice { d := softdog(); d.setErr = syscall.EINVAL; return d }(), 10 * time.Second, 0,
			"watchdog device /dev/watchdog (Software Watchdog): WDIOC_SETTIMEOUT 10s: invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := OpenDevice("/dev/watchdog", tt.want, tt.dev.opener())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("OpenDevice = %v, want an error containing %q", err, tt.wantErr)
				}
				if tt.dev.stillArmed() {
					t.Errorf("a device that failed to open is left armed: calls %v", tt.dev.log())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Timeout() != tt.got {
				t.Errorf("Timeout() = %v, want %v (what WDIOC_GETTIMEOUT reports)", d.Timeout(), tt.got)
			}
			log := tt.dev.log()
			secs := int((tt.want + time.Second - 1) / time.Second)
			want := []string{"open", "getsupport", "settimeout " + itoa(secs), "gettimeout", "keepalive"}
			if !slices.Equal(log, want) {
				t.Errorf("calls = %v, want %v", log, want)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if !tt.dev.stillArmed() {
				t.Error("Close disarmed the device; only Disarm may")
			}
		})
	}
}

func TestGuardRefusesADeviceThatCannotHonourTheSafetyInequality(t *testing.T) {
	tests := []struct {
		name    string
		dev     *fakeDevice
		timing  ha.Timing
		devTime time.Duration
		wantErr string
	}{
		{"fast timing", softdog(), ha.FastTiming(), 0, "requested timeout 1s, granted 1s"},
		{"driver keeps 60s", fixedDog(60), ha.PVETiming(), 0, "requested timeout 10s, granted 1m0s"},
		{"pve timing, softdog", softdog(), ha.PVETiming(), 0, ""},
		{"explicit request", softdog(), ha.PVETiming(), 30 * time.Second, ""},
		{"keepalive not under half the granted timeout", fixedDog(1), ha.Timing{LockTTL: time.Hour, WatchdogTimeout: time.Second}, 0, "less than half"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := GuardConfig{SocketPath: socketPath(t), WatchdogTimeout: tt.timing.WatchdogTimeout, SelfFenceTime: tt.timing.SelfFenceTime,
				Device: "/dev/watchdog", DeviceTimeout: tt.devTime, OpenDevice: tt.dev.opener(), CheckDeviceTimeout: tt.timing.CheckDeviceTimeout}
			g, err := Listen(cfg, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "/dev/watchdog") {
					t.Fatalf("Listen = %v, want a refusal naming the device and containing %q", err, tt.wantErr)
				}
				if tt.dev.stillArmed() {
					t.Errorf("refused device left armed: calls %v", tt.dev.log())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g.ln.Close()
			if want := max(tt.devTime, 10*time.Second); g.dev.Timeout() != want {
				t.Errorf("device timeout %v, want %v", g.dev.Timeout(), want)
			}
		})
	}
	if err := (GuardConfig{SocketPath: "/x", WatchdogTimeout: time.Second, Device: "/dev/watchdog"}).Validate(); err == nil || !strings.Contains(err.Error(), "timing is required") {
		t.Errorf("Validate with a device and no timing = %v, want refusal", err)
	}
}

func TestGuardFeedsTheDeviceUntilItFencesAndNeverDisarmsItWhileArmed(t *testing.T) {
	pve := ha.PVETiming()
	for _, tt := range []struct {
		name       string
		client     bool // a client arms a handle
		fence      bool // ... and lets it expire
		wantArmed  bool // the device is left counting
		keepalives int
	}{
		{"clean stop without clients", false, false, false, 3},
		{"stop while a client is armed", true, false, true, 3},
		{"fenced", true, true, true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dev := softdog()
			fg := startFakeGuard(t, GuardConfig{Device: "/dev/watchdog", OpenDevice: dev.opener(), CheckDeviceTimeout: pve.CheckDeviceTimeout, DeviceTimeout: 10 * time.Second,
				DeviceKeepalive: 500 * time.Millisecond, WatchdogTimeout: 800 * time.Millisecond})
			timers := 1 // keepalive
			var c *Client
			if tt.client {
				c = open(t, fg)
				timers = 2 // and expiry
			}
			fg.clock.waitTimers(t, timers)
			fg.clock.Advance(500 * time.Millisecond) // keepalive
			settle()
			if c != nil && !tt.fence {
				if err := c.Feed(noExpiry); err != nil {
					t.Fatal(err)
				}
			}
			fg.clock.waitTimers(t, timers)
			fg.clock.Advance(500 * time.Millisecond) // fenced at 800 ms, or keepalive
			settle()
			if tt.fence {
				fg.clock.waitTimers(t, 1)
				fg.clock.Advance(500 * time.Millisecond) // no keepalive once fenced
				settle()
			}
			fg.stop()
			log := dev.log()
			if n := countOf(log, "keepalive"); n != tt.keepalives {
				t.Errorf("%d keepalives, want %d: calls %v", n, tt.keepalives, log)
			}
			if dev.stillArmed() != tt.wantArmed {
				t.Errorf("device armed after the guard stopped = %v, want %v: calls %v", dev.stillArmed(), tt.wantArmed, log)
			}
			if tt.wantArmed && slices.Contains(log, "V") {
				t.Errorf("the magic character was written while a client was armed: calls %v", log)
			}
			if countOf(log, "open") != 1 {
				t.Errorf("device opened %d times, want once: calls %v", countOf(log, "open"), log)
			}
		})
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestCheckDeviceReportsIdentityAndTimeoutAndDisarms(t *testing.T) {
	dev := fixedDog(30)
	r, err := CheckDevice("/dev/watchdog", dev.opener(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity != "IPMI" || r.Timeout != 30*time.Second || !r.Opened {
		t.Errorf("report = %+v, want identity IPMI, timeout 30s, opened", r)
	}
	if dev.stillArmed() || !slices.Contains(dev.log(), "V") {
		t.Errorf("the check left the device armed: calls %v", dev.log())
	}
	for _, want := range []string{"device:   /dev/watchdog", "identity: IPMI", "timeout:  30s", "magicclose=true"} {
		if !strings.Contains(r.String(), want) {
			t.Errorf("report %q lacks %q", r.String(), want)
		}
	}

	// A device held by a running guard.
	busy := softdog()
	busy.opener()("/dev/watchdog") //nolint:errcheck // holds it open
	if _, err := CheckDevice("/dev/watchdog", busy.opener(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "running guard") {
		t.Errorf("CheckDevice on a busy device = %v, want it to name the running guard", err)
	}

	// nowayout: opening would arm the watchdog for good.
	sys := t.TempDir()
	wd := filepath.Join(sys, "watchdog0")
	os.MkdirAll(wd, 0o755)
	os.WriteFile(filepath.Join(wd, "nowayout"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(wd, "identity"), []byte("iTCO_wdt\n"), 0o644)
	os.WriteFile(filepath.Join(wd, "timeout"), []byte("30\n"), 0o644)
	never := softdog()
	r, err = CheckDevice("/dev/watchdog", never.opener(), sys)
	if err != nil || r.Opened || !r.NoWayOut || r.Identity != "iTCO_wdt" || r.Timeout != 30*time.Second {
		t.Errorf("CheckDevice with nowayout = %+v, %v; want the sysfs values without opening", r, err)
	}
	if len(never.log()) != 0 {
		t.Errorf("a nowayout device was opened: calls %v", never.log())
	}
}

func TestTheRealDeviceRefusesAFileThatIsNoWatchdog(t *testing.T) {
	// A real character device cannot be tested here: there is none, and
	// arming one would reset the machine. A regular file opens but fails
	// the first ioctl, and the guard refuses it.
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDevice(path, 10*time.Second, nil)
	if !errors.Is(err, syscall.ENOTTY) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a watchdog device") {
		t.Errorf("OpenDevice(regular file) = %v, want ENOTTY naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "V" {
		t.Errorf("the refused file got %q, want only the magic close", b)
	}
	if _, err := OpenDevice(filepath.Join(t.TempDir(), "missing"), 10*time.Second, nil); err == nil {
		t.Error("OpenDevice(missing) succeeded")
	}
}
