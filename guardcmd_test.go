package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/fence"
	"haxd/gossip"
	"haxd/ha"
)

func TestGuardRefusesTimingsThatBreakTheSafetyInequality(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		cmd     GuardCmd
		want    time.Duration
		wantErr error
	}{
		{"fast profile", GuardCmd{Socket: "/s", Timing: "fast"}, ha.FastTiming().WatchdogTimeout, nil},
		{"pve profile", GuardCmd{Socket: "/s", Timing: "pve"}, 60 * time.Second, nil},
		{"fast with a 2s watchdog", GuardCmd{Socket: "/s", Timing: "fast", WatchdogTimeout: 2 * time.Second}, 0, ha.ErrUnsafeTiming},
		{"pve with 100s", GuardCmd{Socket: "/s", Timing: "pve", WatchdogTimeout: 100 * time.Second}, 0, ha.ErrUnsafeTiming},
	}
	for _, tt := range tests {
		cfg, err := tt.cmd.config(logger)
		if !errors.Is(err, tt.wantErr) || err == nil && cfg.WatchdogTimeout != tt.want {
			t.Errorf("%s: config() = %v, %v; want timeout %v, err %v", tt.name, cfg.WatchdogTimeout, err, tt.want, tt.wantErr)
		}
	}
}

func TestKeygenWritesAParsableKeyOnlyReadableByItsOwner(t *testing.T) {
	var out bytes.Buffer
	if err := (&KeygenCmd{}).run(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := gossip.ParseKey(out.String()); err != nil {
		t.Errorf("printed key does not parse: %v", err)
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := (&KeygenCmd{Out: path}).run(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := gossip.ReadKeyFile(path); err != nil {
		t.Errorf("written key: %v", err)
	}
	if err := (&KeygenCmd{Out: path}).run(nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second keygen without --force = %v, want file exists", err)
	}
	if err := (&KeygenCmd{Out: path, Force: true}).run(nil); err != nil {
		t.Errorf("keygen --force: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
}

// fakeWatchdog is a watchdog device for `haxd guard --check-watchdog`:
// there is no real one on test machines, and arming one would reset them.
type fakeWatchdog struct {
	timeout int
	calls   []string
}

func (w *fakeWatchdog) Keepalive() error { w.calls = append(w.calls, "keepalive"); return nil }
func (w *fakeWatchdog) SetTimeout(s int) (int, error) {
	w.calls = append(w.calls, "settimeout")
	w.timeout = s
	return s, nil
}
func (w *fakeWatchdog) Timeout() (int, error) { return w.timeout, nil }
func (w *fakeWatchdog) Support() (fence.DeviceInfo, error) {
	return fence.DeviceInfo{Identity: "Software Watchdog", Options: 0x8180}, nil
}
func (w *fakeWatchdog) WriteMagic() error { w.calls = append(w.calls, "V"); return nil }
func (w *fakeWatchdog) Close() error      { w.calls = append(w.calls, "close"); return nil }

func TestGuardCheckWatchdogReportsTheDeviceAndTheTimingLimit(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		name    string
		cmd     GuardCmd
		want    []string
		wantErr string
	}{
		{"pve", GuardCmd{Socket: "/s", Timing: "pve", CheckWatchdog: true},
			[]string{"device:   /dev/watchdog", "identity: Software Watchdog", "timeout:  1m0s", "below 50s", "ask for 10s"}, ""},
		{"fast", GuardCmd{Socket: "/s", Timing: "fast", CheckWatchdog: true, Device: "/dev/watchdog1"},
			[]string{"device:   /dev/watchdog1", "below 400ms"}, "requested timeout 1s, granted 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.cmd.config(logger)
			if err != nil {
				t.Fatal(err)
			}
			dev := &fakeWatchdog{timeout: 60}
			var out bytes.Buffer
			err = tt.cmd.checkWatchdog(&out, cfg, func(string) (fence.DeviceFile, error) { return dev, nil }, t.TempDir())
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
			if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkWatchdog = %v, want %q", err, tt.wantErr)
			}
			if strings.Join(dev.calls, " ") != "V close" {
				t.Errorf("device calls %v: the check must only read and then disarm it", dev.calls)
			}
		})
	}
}
