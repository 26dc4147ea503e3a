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

// The guard takes the agent's resolved timing as it is (a 0 is a 0, not
// "the profile's value") and validates it with ha.Timing.Validate, the
// agent's own check: it accepts every timing the agent accepts.
func TestGuardTakesTheAgentsResolvedTiming(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	// lock_validity 0 is valid only at the renewal instant; with the fast
	// profile's 1s instead, the inequality breaks: 1s+100ms+500ms+200ms
	// >= 1.4s. The old flags (0 = the profile's) refused this timing.
	noValidity := ha.FastTiming()
	noValidity.LockValidity, noValidity.LockTTL = 0, 1400*time.Millisecond
	unsafe := ha.FastTiming()
	unsafe.WatchdogTimeout = 2 * time.Second
	tests := []struct {
		name    string
		timing  string
		want    ha.Timing
		wantErr string
		is      error
	}{
		{name: "fast profile", timing: "fast", want: ha.FastTiming()},
		{name: "pve profile", timing: "pve", want: ha.PVETiming()},
		{name: "resolved fast", timing: ha.FastTiming().Encode(), want: ha.FastTiming()},
		{name: "resolved, lock_validity 0", timing: noValidity.Encode(), want: noValidity},
		{name: "resolved, unsafe", timing: unsafe.Encode(), wantErr: "refusing to start", is: ha.ErrUnsafeTiming},
		{name: "resolved, a field missing", timing: `{"crm_round": "1s"}`, wantErr: "lrm_round: missing"},
		{name: "unknown profile", timing: "slow", wantErr: `unknown timing profile "slow"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr == "" {
				if _, err := tt.want.Validate(); err != nil {
					t.Fatalf("the agent refuses the test's timing: %v", err)
				}
			}
			cmd := GuardCmd{Socket: "/s", Timing: tt.timing}
			cfg, timing, err := cmd.config(logger)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("config() = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("config() = %v", err)
			}
			if timing != tt.want {
				t.Errorf("timing = %+v, want %+v", timing, tt.want)
			}
			if cfg.WatchdogTimeout != tt.want.WatchdogTimeout || cfg.SelfFenceTime != tt.want.SelfFenceTime || cfg.CheckDeviceTimeout == nil {
				t.Errorf("guard config %+v does not carry the timing", cfg)
			}
		})
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
			[]string{"device:   /dev/watchdog1", "below 200ms"}, "requested timeout 1s, granted 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, timing, err := tt.cmd.config(logger)
			if err != nil {
				t.Fatal(err)
			}
			dev := &fakeWatchdog{timeout: 60}
			var out bytes.Buffer
			err = tt.cmd.checkWatchdog(&out, cfg, timing, func(string) (fence.DeviceFile, error) { return dev, nil }, t.TempDir())
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
