package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeScenario writes files into a fresh scenario directory.
func writeScenario(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const simTestCmdlist = `[["power node1 on", "power node2 on", "power node3 on"], ["network node3 off"]]`

func TestSimRunExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		code     int
		stderrIn string
	}{
		{"valid scenario", map[string]string{"cmdlist": simTestCmdlist}, 0, ""},
		{"missing cmdlist", map[string]string{"service_config": "{}"}, 2, "cmdlist: file is required"},
		{"bad number", map[string]string{"cmdlist": simTestCmdlist,
			"service_config": `{"vm:101": {"node": "node1", "max_restart": "many"}}`}, 2,
			`service_config: vm:101: field max_restart: expected a number, found "many"`},
		{"bad service id", map[string]string{"cmdlist": simTestCmdlist,
			"service_config": `{"xx:101": {"node": "node1"}}`}, 2, `invalid service id "xx:101"`},
		{"bad power value", map[string]string{"cmdlist": simTestCmdlist,
			"hardware_status": `{"node1": {"power": "maybe"}}`}, 2, `hardware_status: node node1: field power: expected "on" or "off", found "maybe"`},
		{"fatal command", map[string]string{"cmdlist": `[["power node1 on"], ["power node1 sideways"]]`}, 2, "unknown action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through run(), as main runs it: the command's exit code
			// reaches the process without a second message.
			var out, errb bytes.Buffer
			if code := run([]string{"sim", "run", "--timing", "pve", writeScenario(t, tt.files)}, &out, &errb); code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tt.code, errb.String())
			}
			if !strings.Contains(errb.String(), tt.stderrIn) || strings.Contains(errb.String(), "exit status") {
				t.Errorf("stderr %q does not contain %q (or repeats the exit status)", errb.String(), tt.stderrIn)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run([]string{"sim", "run", filepath.Join(t.TempDir(), "absent")}, &out, &errb); code != 2 {
		t.Errorf("missing directory: exit code %d, want 2", code)
	}
}

func TestSimRunIsReproducible(t *testing.T) {
	dir := writeScenario(t, map[string]string{"cmdlist": simTestCmdlist})
	for _, format := range []string{"pve", "text", "json"} {
		var first string
		for i := range 2 {
			var out, errb bytes.Buffer
			c := &SimRunCmd{LogFormat: format, Timing: "pve", Quiet: true, Dir: dir}
			if code := c.run(&out, &errb); code != 0 {
				t.Fatalf("%s: exit code %d: %s", format, code, errb.String())
			}
			if errb.Len() != 0 {
				t.Errorf("%s: --quiet wrote to stderr: %q", format, errb.String())
			}
			if i == 0 {
				first = out.String()
			} else if out.String() != first {
				t.Errorf("%s: two runs differ", format)
			}
		}
		switch format {
		case "pve":
			if !strings.HasPrefix(first, "info      0     hardware: starting simulation\n") {
				t.Errorf("pve log starts with %q", strings.SplitN(first, "\n", 2)[0])
			}
		case "json":
			for _, line := range strings.Split(strings.TrimSpace(first), "\n") {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("json line %q: %v", line, err)
				}
				if _, ok := rec["t"]; !ok || rec["origin"] == nil || rec["time"] != nil {
					t.Fatalf("json line %q: want t and origin, no wall-clock time", line)
				}
			}
		}
	}
}

// The output is the same whatever the number of parallel jobs: runs are
// reported in seed order, and mixed timing alternates pve and fast.
func TestSimRandomIsReproducible(t *testing.T) {
	var a, b, errb bytes.Buffer
	c := &SimRandomCmd{Seed: 7, Runs: 6, NodesMax: 5, Timing: "mixed", Rounds: "concurrent", Jobs: 1, Verbose: true}
	c.run(&a, &errb)
	c.Jobs = 3
	c.run(&b, &errb)
	if a.String() != b.String() || !strings.Contains(a.String(), "6 runs, 0 failed") {
		t.Errorf("random runs differ or lack the summary:\n%s\n---\n%s", a.String(), b.String())
	}
	for _, want := range []string{"ok   seed 7: ", "fast timing", "ok   seed 8: ", "pve timing", "ok   seed 12: "} {
		if !strings.Contains(a.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, a.String())
		}
	}
	if i, j := strings.Index(a.String(), "seed 8:"), strings.Index(a.String(), "seed 9:"); i < 0 || j < i {
		t.Errorf("runs not in seed order:\n%s", a.String())
	}
}

func TestSimRandomRejectsBadFlags(t *testing.T) {
	for _, c := range []*SimRandomCmd{
		{Runs: 1, NodesMax: 2, Timing: "pve", Rounds: "concurrent"},
		{Runs: 1, NodesMax: 30, Timing: "pve", Rounds: "concurrent"},
		{Runs: -1, NodesMax: 5, Timing: "pve", Rounds: "concurrent"},
		{Runs: 1, NodesMax: 5, Timing: "pve", Rounds: "concurrent", Jobs: -2},
	} {
		var out, errb bytes.Buffer
		if code := c.run(&out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%+v: exit %d, stderr %q; want 2 and a message", c, code, errb.String())
		}
	}
}
