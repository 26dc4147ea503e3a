package fence

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Linux watchdog ioctls (linux/watchdog.h).
const (
	wdiocSetTimeout = 0xC0045706 // _IOWR('W', 6, int)
	wdiocGetTimeout = 0x80045707 // _IOR('W', 7, int)
)

// Device is an open Linux watchdog device such as /dev/watchdog. Opening it
// arms the watchdog: from then on it must be fed (Keepalive) within its
// timeout or the machine resets. Only MagicClose disarms it. A regular file
// or a FIFO works as a fake device in tests: Keepalive writes one NUL byte,
// MagicClose writes "V".
type Device struct {
	path string
	f    *os.File
}

// OpenDevice opens and thereby arms the watchdog device at path.
func OpenDevice(path string) (*Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open watchdog device: %w", err)
	}
	return &Device{path: path, f: f}, nil
}

// Path is the device's path.
func (d *Device) Path() string { return d.path }

// Keepalive feeds the watchdog.
func (d *Device) Keepalive() error {
	if _, err := d.f.Write([]byte{0}); err != nil {
		return fmt.Errorf("feed watchdog device %s: %w", d.path, err)
	}
	return nil
}

// SetTimeout asks the driver for a timeout of d, rounded up to whole
// seconds, and returns the timeout the driver chose. A fake device
// (regular file, FIFO) returns an error wrapping syscall.ENOTTY.
func (d *Device) SetTimeout(timeout time.Duration) (time.Duration, error) {
	secs := int32((timeout + time.Second - 1) / time.Second)
	if err := d.ioctl(wdiocSetTimeout, &secs); err != nil {
		return 0, fmt.Errorf("set watchdog device %s timeout to %v: %w", d.path, timeout, err)
	}
	return time.Duration(secs) * time.Second, nil
}

// Timeout returns the driver's current timeout.
func (d *Device) Timeout() (time.Duration, error) {
	var secs int32
	if err := d.ioctl(wdiocGetTimeout, &secs); err != nil {
		return 0, fmt.Errorf("get watchdog device %s timeout: %w", d.path, err)
	}
	return time.Duration(secs) * time.Second, nil
}

func (d *Device) ioctl(req uintptr, v *int32) error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(v)))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// MagicClose disarms the watchdog: it writes the magic character 'V' and
// closes the device. Only do this when nothing needs guarding any more.
func (d *Device) MagicClose() error {
	_, werr := d.f.Write([]byte("V"))
	cerr := d.f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("disarm watchdog device %s: %w", d.path, err)
	}
	return nil
}

// Close closes the device without disarming it: the watchdog keeps
// counting and resets the machine when its timeout passes.
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close watchdog device %s: %w", d.path, err)
	}
	return nil
}
