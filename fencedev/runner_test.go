package fencedev

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAgent is a fence agent speaking the fence-agents stdin protocol. Its
// plugs' power states live in files under dir=; mode= picks a failure.
const fakeAgent = `#!/bin/sh
if [ "$1" = "-o" ]; then
cat <<'XML'
<?xml version="1.0" ?>
<resource-agent name="fence_fake"><parameters>
<parameter name="secure"><getopt mixed="-x, --ssh" /></parameter>
<parameter name="plug"><getopt mixed="-n, --plug=[id]" /></parameter>
</parameters></resource-agent>
XML
exit 0
fi
in=$(cat)
action=; plug=; dir=; mode=ok; password=
while IFS='=' read -r k v; do
  case "$k" in action) action=$v;; plug) plug=$v;; dir) dir=$v;; mode) mode=$v;; password) password=$v;; esac
done <<EOF2
$in
EOF2
printf '%s\n' "$in" > "$dir/stdin.$plug.$action"
echo "$action" >> "$dir/calls.$plug"
case "$mode" in
  wrongpass) echo "Unable to connect/login to fencing device with password $password" >&2; exit 1;;
  hang) sleep 30; exit 0;;
esac
case "$action" in
  off)
    if [ "$mode" = failonce ] && [ ! -e "$dir/failed.$plug" ]; then touch "$dir/failed.$plug"; echo "Failed: timed out"; exit 1; fi
    [ "$mode" = neveroff ] || echo off > "$dir/state.$plug"
    echo "Success: Powered OFF"; exit 0;;
  status)
    if [ "$(cat "$dir/state.$plug" 2>/dev/null)" = off ]; then echo "Status: OFF"; exit 2; fi
    echo "Status: ON"; exit 0;;
esac
exit 1
`

func fastOptions(dir string) Options {
	o := DefaultOptions()
	o.AgentDir = dir
	o.CallTimeout = 2 * time.Second
	o.Retries = 0
	o.RetryDelay = 10 * time.Millisecond
	o.StatusInterval = 10 * time.Millisecond
	o.ConfirmTimeout = time.Second
	return o
}

func newTestRunner(t *testing.T, cfgText string, tweak func(*Options)) (*Runner, string, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fence_fake"), []byte(fakeAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("test.cfg", []byte(strings.ReplaceAll(cfgText, "DIR", dir)))
	if err != nil {
		t.Fatal(err)
	}
	o := fastOptions(dir)
	if tweak != nil {
		tweak(&o)
	}
	var logs bytes.Buffer
	r, err := NewRunner(cfg, o, nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return r, dir, &logs
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	return string(b)
}

func TestRunnerFence(t *testing.T) {
	const secret = "Sup3rSecret"
	tests := []struct {
		name    string
		cfg     string
		tweak   func(*Options)
		node    string
		device  string // the confirming level; "" for a failure
		errHas  string
		calls   map[string]string // plug -> calls
		stdinOf string            // plug whose off stdin must be exactly stdin
		stdin   string
	}{
		{
			name:    "one device",
			cfg:     "device ipmi fence_fake dir=DIR password=" + secret + " action=reboot\nconnect ipmi node=n1 plug=1\n",
			node:    "n1",
			device:  "ipmi",
			calls:   map[string]string{"1": "off\nstatus\n"},
			stdinOf: "1",
			stdin:   "action=off\ndir=DIR\npassword=" + secret + "\nplug=1\n",
		},
		{
			name:   "parallel sub-devices all off",
			cfg:    "device psu:1 fence_fake dir=DIR\ndevice psu:2 fence_fake dir=DIR\nconnect psu:1 node=n1 plug=a\nconnect psu:2 node=n1 plug=b\n",
			node:   "n1",
			device: "psu",
			calls:  map[string]string{"a": "off\nstatus\n", "b": "off\nstatus\n"},
		},
		{
			name:   "wrong password falls to the next level",
			cfg:    "device ipmi fence_fake dir=DIR mode=wrongpass password=" + secret + "\ndevice pdu fence_fake dir=DIR\nconnect ipmi node=n1 plug=1\nconnect pdu node=n1 plug=2\n",
			node:   "n1",
			device: "pdu",
			calls:  map[string]string{"1": "off\n", "2": "off\nstatus\n"},
		},
		{
			name:   "one parallel sub-device fails the level",
			cfg:    "device psu:1 fence_fake dir=DIR\ndevice psu:2 fence_fake dir=DIR mode=wrongpass password=" + secret + "\nconnect psu:1 node=n1 plug=a\nconnect psu:2 node=n1 plug=b\n",
			node:   "n1",
			errHas: "psu:2: action=off: exit 1",
		},
		{
			name:   "retry after a failed off",
			cfg:    "device ipmi fence_fake dir=DIR mode=failonce\nconnect ipmi node=n1 plug=1\n",
			tweak:  func(o *Options) { o.Retries = 1 },
			node:   "n1",
			device: "ipmi",
			calls:  map[string]string{"1": "off\noff\nstatus\n"},
		},
		{
			name:   "no retry left",
			cfg:    "device ipmi fence_fake dir=DIR mode=failonce\nconnect ipmi node=n1 plug=1\n",
			node:   "n1",
			errHas: "action=off: exit 1",
		},
		{
			name:   "never reports off",
			cfg:    "device ipmi fence_fake dir=DIR mode=neveroff\nconnect ipmi node=n1 plug=1\n",
			tweak:  func(o *Options) { o.ConfirmTimeout = 100 * time.Millisecond },
			node:   "n1",
			errHas: "action=status did not report off within 100ms",
		},
		{
			name:   "hanging agent times out",
			cfg:    "device ipmi fence_fake dir=DIR mode=hang\nconnect ipmi node=n1 plug=1\n",
			tweak:  func(o *Options) { o.CallTimeout = 200 * time.Millisecond },
			node:   "n1",
			errHas: "fence_fake timed out after 200ms",
		},
		{
			name:    "short option mapped through metadata",
			cfg:     "device ipmi fence_fake dir=DIR x\nconnect ipmi node=n1 n=7\n",
			node:    "n1",
			device:  "ipmi",
			stdinOf: "7",
			stdin:   "action=off\ndir=DIR\nsecure=1\nplug=7\n",
		},
		{
			name:   "not connected",
			cfg:    "device ipmi fence_fake dir=DIR\nconnect ipmi node=n1 plug=1\n",
			node:   "n2",
			errHas: "no fence device connected",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, dir, logs := newTestRunner(t, tt.cfg, tt.tweak)
			start := time.Now()
			res := r.Fence(context.Background(), tt.node)
			if tt.device != "" {
				if !res.Confirmed || res.Device != tt.device || res.Err != nil {
					t.Fatalf("Fence = %+v, want confirmed by %s", res, tt.device)
				}
				if res.Time.Before(start) {
					t.Errorf("confirmation time %v before the start %v", res.Time, start)
				}
			} else {
				if res.Confirmed || res.Err == nil || !strings.Contains(res.Err.Error(), tt.errHas) {
					t.Fatalf("Fence = %+v, want an error containing %q", res, tt.errHas)
				}
			}
			for plug, want := range tt.calls {
				if got := readFile(t, filepath.Join(dir, "calls."+plug)); got != want {
					t.Errorf("calls of plug %s = %q, want %q", plug, got, want)
				}
			}
			if tt.stdinOf != "" {
				if got, want := readFile(t, filepath.Join(dir, "stdin."+tt.stdinOf+".off")), strings.ReplaceAll(tt.stdin, "DIR", dir); got != want {
					t.Errorf("stdin of off = %q, want %q", got, want)
				}
			}
			if strings.Contains(logs.String(), secret) || res.Err != nil && strings.Contains(res.Err.Error(), secret) {
				t.Errorf("the password leaked:\nlogs: %s\nerr: %v", logs, res.Err)
			}
		})
	}
}

func TestRunnerCancel(t *testing.T) {
	r, _, _ := newTestRunner(t, "device ipmi fence_fake dir=DIR mode=hang\nconnect ipmi node=n1 plug=1\n", func(o *Options) { o.CallTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := r.Fence(ctx, "n1")
	if res.Confirmed || res.Err == nil {
		t.Fatalf("Fence = %+v, want an error", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fence took %v after its context ended", d)
	}
}

func TestNewRunnerChecks(t *testing.T) {
	cfg, err := Parse("x.cfg", []byte("device ipmi fence_nonexistent ip=1\nconnect ipmi node=n1 plug=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.AgentDir = t.TempDir()
	if _, err := NewRunner(cfg, o, nil, nil); err == nil || !strings.Contains(err.Error(), "fence_nonexistent is not an executable file") {
		t.Errorf("NewRunner = %v, want a missing-agent error", err)
	}
	bad := []func(*Options){
		func(o *Options) { o.AgentDir = "rel" },
		func(o *Options) { o.CallTimeout = 0 },
		func(o *Options) { o.Retries = -1 },
		func(o *Options) { o.RetryDelay = -1 },
		func(o *Options) { o.StatusInterval = 0 },
		func(o *Options) { o.ConfirmTimeout = 0 },
	}
	for i, f := range bad {
		o := DefaultOptions()
		f(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted %+v", i, o)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if !errors.Is(Result{Err: ErrNotConnected}.Err, ErrNotConnected) {
		t.Error("unreachable")
	}
}
