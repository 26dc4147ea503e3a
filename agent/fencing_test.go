package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFenceConfigKeys(t *testing.T) {
	cfg := DefaultConfig()
	src := "node_name = n1\nadvertise_ip = 10.0.0.1\nencrypt_key = " + goodKey + "\nfence_config = /etc/haxd/fence.cfg\n" +
		"fence_call_timeout = 3s\nfence_retries = 0\nfence_retry_delay = 100ms\nfence_status_interval = 50ms\nfence_confirm_timeout = 4s\nfence_agent_dir = /opt/fence\n"
	if err := ParseConfig("haxd.conf", []byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	o := cfg.FenceOptions()
	if cfg.FenceConfig != "/etc/haxd/fence.cfg" || o.AgentDir != "/opt/fence" || o.CallTimeout != 3*time.Second || o.Retries != 0 ||
		o.RetryDelay != 100*time.Millisecond || o.StatusInterval != 50*time.Millisecond || o.ConfirmTimeout != 4*time.Second {
		t.Fatalf("fence options %+v", o)
	}
	for _, bad := range []string{"fence_retries = -1", "fence_call_timeout = 0s", "fence_agent_dir = rel/dir"} {
		cfg := DefaultConfig()
		if err := ParseConfig("haxd.conf", []byte("node_name = n1\nadvertise_ip = 10.0.0.1\ninsecure = true\n"+bad+"\n"), &cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Finish(); err == nil || !strings.Contains(err.Error(), "fence") {
			t.Errorf("%s: Finish = %v, want a fence_* error", bad, err)
		}
	}
	cfg = DefaultConfig()
	if err := ParseConfig("haxd.conf", []byte("fence_call_timeout = soon\n"), &cfg); err == nil || !strings.Contains(err.Error(), "haxd.conf:1: fence_call_timeout") {
		t.Errorf("bad duration: %v", err)
	}
}

// A bad fence config stops the agent with the file, line and value.
func TestNewFencerRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fence.cfg")
	if err := os.WriteFile(path, []byte("device ipmi fence_ipmilan ip=1\nconnect nope node=n1 plug=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := DefaultConfig().FenceOptions()
	o.AgentDir = dir
	_, err := newDeviceFencer(context.Background(), path, o, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2: device 'nope' must be declared") {
		t.Errorf("newDeviceFencer = %v, want the file and line 2", err)
	}
	if f, err := newDeviceFencer(context.Background(), "", o, nil); f != nil || err != nil {
		t.Errorf("no fence config: %v, %v", f, err)
	}
	if _, err := newDeviceFencer(context.Background(), filepath.Join(dir, "missing.cfg"), o, nil); err == nil {
		t.Error("a missing fence config was accepted")
	}
}
