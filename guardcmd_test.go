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
