package fence

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DeviceFile is the seam between the guard and a Linux watchdog device: the
// calls of linux/watchdog.h on one open file descriptor. OpenWatchdogFile is
// the real implementation (golang.org/x/sys/unix); tests use a fake, since
// a real watchdog device resets the machine it is tested on.
type DeviceFile interface {
	// Keepalive feeds the watchdog (a write of one byte that is not the
	// magic character).
	Keepalive() error
	// SetTimeout issues WDIOC_SETTIMEOUT with secs and returns the value
	// the driver wrote back: the timeout it actually chose.
	SetTimeout(secs int) (int, error)
	// Timeout issues WDIOC_GETTIMEOUT.
	Timeout() (int, error)
	// Support issues WDIOC_GETSUPPORT.
	Support() (DeviceInfo, error)
	// WriteMagic writes the magic character 'V', which lets the next
	// Close disarm a driver that supports the magic close.
	WriteMagic() error
	// Close closes the file descriptor. Without a preceding WriteMagic the
	// watchdog stays armed and resets the machine when it runs out.
	Close() error
}

// DeviceInfo is what WDIOC_GETSUPPORT reports.
type DeviceInfo struct {
	// Identity is the driver's identity string, e.g. "Software Watchdog"
	// (softdog), "iTCO_wdt" or "IPMI".
	Identity string
	// Firmware is the driver's firmware version.
	Firmware uint32
	// Options is the WDIOF_* bit set of what the driver supports.
	Options uint32
}

// SettableTimeout reports WDIOF_SETTIMEOUT.
func (i DeviceInfo) SettableTimeout() bool { return i.Options&unix.WDIOF_SETTIMEOUT != 0 }

// MagicClose reports WDIOF_MAGICCLOSE: the driver disarms only on a close
// preceded by 'V'.
func (i DeviceInfo) MagicClose() bool { return i.Options&unix.WDIOF_MAGICCLOSE != 0 }

// OpenDeviceFunc opens a watchdog device; opening arms it.
type OpenDeviceFunc func(path string) (DeviceFile, error)

// OpenWatchdogFile opens a real watchdog device with open(2) and drives it
// with ioctl(2). A path that is not a watchdog (a regular file, a FIFO)
// opens, but its ioctls fail with ENOTTY.
func OpenWatchdogFile(path string) (DeviceFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &watchdogFile{f: f}, nil
}

type watchdogFile struct{ f *os.File }

func (w *watchdogFile) Keepalive() error {
	_, err := w.f.Write([]byte{0})
	return err
}

func (w *watchdogFile) WriteMagic() error {
	_, err := w.f.Write([]byte("V"))
	return err
}

func (w *watchdogFile) Close() error { return w.f.Close() }

// control runs fn with the raw file descriptor.
func (w *watchdogFile) control(fn func(fd int) error) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (w *watchdogFile) SetTimeout(secs int) (int, error) {
	// WDIOC_SETTIMEOUT is _IOWR: the driver writes the timeout it chose
	// back into the same int.
	v := int32(secs)
	err := w.control(func(fd int) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.WDIOC_SETTIMEOUT, uintptr(unsafe.Pointer(&v)))
		if errno != 0 {
			return errno
		}
		return nil
	})
	return int(v), err
}

func (w *watchdogFile) Timeout() (int, error) {
	var v int
	err := w.control(func(fd int) error {
		var err error
		v, err = unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
		return err
	})
	return v, err
}

func (w *watchdogFile) Support() (DeviceInfo, error) {
	var info DeviceInfo
	err := w.control(func(fd int) error {
		wi, err := unix.IoctlGetWatchdogInfo(fd)
		if err != nil {
			return err
		}
		info = DeviceInfo{Identity: cString(wi.Identity[:]), Firmware: wi.Version, Options: wi.Options}
		return nil
	})
	return info, err
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

// Device is an open, armed Linux watchdog device such as /dev/watchdog.
// From OpenDevice on it must be fed (Keepalive) within its timeout or the
// machine resets; only Disarm stops it.
type Device struct {
	path    string
	f       DeviceFile
	info    DeviceInfo
	timeout time.Duration
}

// OpenDevice opens (and thereby arms) the watchdog device at path with
// open (nil: OpenWatchdogFile), asks the driver for the timeout want
// (rounded up to whole seconds) with WDIOC_SETTIMEOUT, and reads the
// timeout back with WDIOC_GETTIMEOUT: Timeout is what the driver will
// really wait. If anything fails, the device is disarmed again (nothing
// is guarded yet) and the error names the device.
func OpenDevice(path string, want time.Duration, open OpenDeviceFunc) (*Device, error) {
	if open == nil {
		open = OpenWatchdogFile
	}
	if want < time.Second {
		return nil, fmt.Errorf("watchdog device %s: timeout %v: devices count whole seconds, expected >= 1s", path, want)
	}
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("open watchdog device %s: %w", path, err)
	}
	d := &Device{path: path, f: f}
	fail := func(err error) (*Device, error) {
		if derr := d.Disarm(); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if d.info, err = f.Support(); err != nil {
		return fail(fmt.Errorf("watchdog device %s: WDIOC_GETSUPPORT: %w (not a watchdog device?)", path, err))
	}
	secs := int((want + time.Second - 1) / time.Second)
	set, err := f.SetTimeout(secs)
	if err != nil {
		return fail(fmt.Errorf("watchdog device %s (%s): WDIOC_SETTIMEOUT %ds: %w", path, d.info.Identity, secs, err))
	}
	got, err := f.Timeout()
	if err != nil {
		return fail(fmt.Errorf("watchdog device %s (%s): WDIOC_GETTIMEOUT: %w", path, d.info.Identity, err))
	}
	if got <= 0 {
		return fail(fmt.Errorf("watchdog device %s (%s): WDIOC_GETTIMEOUT reports %ds after WDIOC_SETTIMEOUT %ds (driver answered %ds)", path, d.info.Identity, got, secs, set))
	}
	d.timeout = time.Duration(got) * time.Second
	if err := d.Keepalive(); err != nil {
		return fail(err)
	}
	return d, nil
}

// Path is the device's path.
func (d *Device) Path() string { return d.path }

// Timeout is the timeout the driver reported after it was set.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Info is what the driver reported for WDIOC_GETSUPPORT.
func (d *Device) Info() DeviceInfo { return d.info }

// Keepalive feeds the watchdog.
func (d *Device) Keepalive() error {
	if err := d.f.Keepalive(); err != nil {
		return fmt.Errorf("feed watchdog device %s: %w", d.path, err)
	}
	return nil
}

// Disarm writes the magic character and closes the device, which stops a
// driver that supports the magic close (and was not loaded with
// nowayout). Only call it when nothing needs guarding: the guard never
// does while a client is armed.
func (d *Device) Disarm() error {
	werr := d.f.WriteMagic()
	cerr := d.f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("disarm watchdog device %s: %w", d.path, err)
	}
	return nil
}

// Close closes the device without the magic character: the watchdog keeps
// counting and resets the machine when its timeout passes.
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close watchdog device %s: %w", d.path, err)
	}
	return nil
}

// DeviceReport is what `haxd guard --check-watchdog` prints.
type DeviceReport struct {
	// Path is the device.
	Path string
	// Identity, Firmware and Options are the WDIOC_GETSUPPORT answer
	// (from sysfs when the device was not opened).
	Identity string
	Firmware uint32
	Options  uint32
	// Timeout is the driver's current timeout (WDIOC_GETTIMEOUT).
	Timeout time.Duration
	// NoWayOut is true when sysfs says the driver cannot be stopped once
	// opened; the check then does not open it.
	NoWayOut bool
	// Opened tells whether the check opened the device (and disarmed it
	// again with the magic close).
	Opened bool
}

// String renders the report, one field per line.
func (r DeviceReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device:   %s\n", r.Path)
	fmt.Fprintf(&b, "identity: %s\n", r.Identity)
	if r.Opened {
		fmt.Fprintf(&b, "firmware: %d\n", r.Firmware)
		info := DeviceInfo{Options: r.Options}
		fmt.Fprintf(&b, "options:  0x%x (settimeout=%v magicclose=%v)\n", r.Options, info.SettableTimeout(), info.MagicClose())
	}
	fmt.Fprintf(&b, "timeout:  %v\n", r.Timeout)
	if r.NoWayOut {
		b.WriteString("nowayout: yes (the device was not opened: it could not be disarmed again; values from sysfs)\n")
	}
	return b.String()
}

// CheckDevice reports a watchdog device's identity and timeout without
// leaving it armed: it opens the device, asks WDIOC_GETSUPPORT and
// WDIOC_GETTIMEOUT and disarms it with the magic close. When sysfs (root
// of /sys/class/watchdog; "" for the real one) says the driver runs with
// nowayout, opening it would arm it for good, so the report comes from
// sysfs instead. A device held by a running guard fails with EBUSY.
func CheckDevice(path string, open OpenDeviceFunc, sysfs string) (DeviceReport, error) {
	if open == nil {
		open = OpenWatchdogFile
	}
	if sysfs == "" {
		sysfs = "/sys/class/watchdog"
	}
	r := DeviceReport{Path: path}
	if dir := sysfsDir(path, sysfs); dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "nowayout")); err == nil && strings.TrimSpace(string(b)) == "1" {
			r.NoWayOut = true
			if b, err := os.ReadFile(filepath.Join(dir, "identity")); err == nil {
				r.Identity = strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "timeout")); err == nil {
				if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					r.Timeout = time.Duration(n) * time.Second
				}
			}
			return r, nil
		}
	}
	f, err := open(path)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return r, fmt.Errorf("watchdog device %s: %w (a running guard holds it; only one process may open a watchdog)", path, err)
		}
		return r, fmt.Errorf("open watchdog device %s: %w", path, err)
	}
	r.Opened = true
	d := &Device{path: path, f: f}
	info, ierr := f.Support()
	secs, terr := f.Timeout()
	if err := d.Disarm(); err != nil {
		return r, err
	}
	if ierr != nil {
		return r, fmt.Errorf("watchdog device %s: WDIOC_GETSUPPORT: %w (not a watchdog device?)", path, ierr)
	}
	r.Identity, r.Firmware, r.Options = info.Identity, info.Firmware, info.Options
	if terr != nil {
		return r, fmt.Errorf("watchdog device %s (%s): WDIOC_GETTIMEOUT: %w", path, info.Identity, terr)
	}
	r.Timeout = time.Duration(secs) * time.Second
	return r, nil
}

// sysfsDir returns the /sys/class/watchdog entry of a device path:
// /dev/watchdogN is watchdogN, the legacy /dev/watchdog is watchdog0.
func sysfsDir(path, sysfs string) string {
	base := filepath.Base(path)
	if base == "watchdog" {
		base = "watchdog0"
	}
	if !strings.HasPrefix(base, "watchdog") {
		return ""
	}
	return filepath.Join(sysfs, base)
}
