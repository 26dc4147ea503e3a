package fence

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestDeviceOnARegularFileWritesKeepalivesAndTheMagicClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.Keepalive(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.SetTimeout(10 * time.Second); !errors.Is(err, syscall.ENOTTY) {
		t.Errorf("SetTimeout on a regular file = %v, want ENOTTY", err)
	}
	if _, err := d.Timeout(); !errors.Is(err, syscall.ENOTTY) {
		t.Errorf("Timeout on a regular file = %v, want ENOTTY", err)
	}
	if err := d.MagicClose(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "\x00\x00V" {
		t.Errorf("device got %q, want two keepalives and the magic V", got)
	}
}

func TestDeviceOnAFIFOClosesWithoutTheMagicCharacter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := OpenDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Keepalive(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil { // not disarmed: a real watchdog would reset
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "\x00" {
		t.Errorf("device got %q, want one keepalive and no V", buf[:n])
	}
	if _, err := OpenDevice(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("OpenDevice(missing) succeeded")
	}
}
