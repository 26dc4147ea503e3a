package fencedev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pveTestsDir is the shared conformance data beside the repository
// ($HAXD_SHARED/pve-tests when set).
func pveTestsDir() string {
	if d := os.Getenv("HAXD_SHARED"); d != "" {
		return filepath.Join(d, "pve-tests")
	}
	return "../../shared/pve-tests"
}

// pveFenceOutput renders a parse result as PVE's test_fence_config.pl does
// for the nodes node1..node3.
func pveFenceOutput(file string, data []byte) string {
	cfg, err := Parse(file, data)
	if err != nil {
		return "[FenceConfig] " + err.Error()
	}
	nodes := []string{"node1", "node2", "node3"}
	var b strings.Builder
	for try := 0; ; try++ {
		fmt.Fprintf(&b, "[try] %d\n", try)
		any := false
		for _, n := range nodes {
			levels := cfg.NodeLevels(n)
			if try >= len(levels) {
				fmt.Fprintf(&b, "[%s-cmd] none\n", n)
				continue
			}
			any = true
			for _, c := range levels[try] {
				fmt.Fprintf(&b, "[%s-cmd] %s\n", n, c.CommandLine())
			}
		}
		if !any {
			return b.String()
		}
	}
}

// TestPVEFenceConfigs parses every sample of upstream's fence_cfgs and
// compares the rendered commands (or errors) with its .expect file.
func TestPVEFenceConfigs(t *testing.T) {
	dir := filepath.Join(pveTestsDir(), "fence_cfgs")
	cfgs, _ := filepath.Glob(filepath.Join(dir, "*.cfg"))
	if len(cfgs) == 0 {
		t.Skipf("!!! no fence_cfgs samples under %s: PVE fence.cfg conformance NOT tested", dir)
	}
	for _, path := range cfgs {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(path + ".expect")
			if err != nil {
				t.Fatal(err)
			}
			got := pveFenceOutput("fence_cfgs/"+name, data)
			if strings.TrimRight(got, "\n") != strings.TrimRight(string(want), "\n") {
				t.Errorf("output differs\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
	if len(cfgs) < 6 {
		t.Errorf("found %d samples, want the 6 of upstream", len(cfgs))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []LineError
	}{
		{"unknown shape", "device foo fence_x\n", []LineError{{1, "expected 'device NAME[:N] AGENT ARGS...' or 'connect NAME[:N] node=NODE ARGS...', got 'device foo fence_x'"}}},
		{"bad keyword", "# c\n\nfoo a b c\n", []LineError{{3, "expected 'device NAME[:N] AGENT ARGS...' or 'connect NAME[:N] node=NODE ARGS...', got 'foo a b c'"}}},
		{"bad name", "device a-b fence_x ip=1\n", []LineError{{1, "invalid device name 'a-b': want NAME or NAME:N, NAME of letters, digits and '_'"}}},
		{"sub zero", "device a:0 fence_x ip=1\n", []LineError{{1, "invalid sub-device number in 'a:0': want 1 to 65536"}}},
		{"agent path", "device a /bin/sh ip=1\n", []LineError{{1, "invalid fence agent '/bin/sh': want a program name like fence_ipmilan"}}},
		{"unbalanced", "device a fence_x ip=\"1\n", []LineError{{1, "unbalanced double quote in 'ip=\"1'"}}},
		{"second equals", "device a fence_x password=a=b\n", []LineError{{1, "value of 'password' contains a second '=' (PVE would cut it there); not accepted"}}},
		{"bad key", "device a fence_x =value\n", []LineError{{1, "invalid argument key '' in '=value'"}}},
		{"no node", "device a fence_x ip=1\nconnect a plug=1 node=n1\n", []LineError{{2, "node=nodename needed to connect device 'a' to a node, got 'plug=1'"}}},
		{"bad node", "device a fence_x ip=1\nconnect a node=n/1 plug=1\n", []LineError{{2, "invalid node name 'n/1'"}}},
		{"no parallel", "device a fence_x ip=1\nconnect a:2 node=n1 plug=1\n", []LineError{{2, "No parallel device 'a:2' found"}}},
		{"secret in a bad line", "devices a fence_x password=secret ip=1\n", []LineError{{1, "expected 'device NAME[:N] AGENT ARGS...' or 'connect NAME[:N] node=NODE ARGS...', got 'devices a fence_x password=[hidden] ip=1'"}}},
		{"secret in unbalanced", "device a fence_x passwd='secret ip=1\n", []LineError{{1, "unbalanced single quote in 'passwd=[hidden]'"}}},
		{"several", "device a fence_x ip=1\ndevice a:1 fence_x ip=2\nconnect b node=n plug=1\n", []LineError{{2, "device 'a:1' already declared"}, {3, "device 'b' must be declared before you can connect to it"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.cfg", []byte(tt.text))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v, want a *ParseError", err)
			}
			if pe.File != "f.cfg" || fmt.Sprint(pe.Errors) != fmt.Sprint(tt.want) {
				t.Errorf("errors = %v in %q, want %v", pe.Errors, pe.File, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestParseMeaning(t *testing.T) {
	text := `
  # levels: ipmi first, then two PDUs together
device ipmi fence_ipmilan ip=127.0.0.1 username=admin password='s3cr et' lanplus
device pdu:1 fence_apc ip=10.0.0.1 password=p1
device pdu:2 fence_apc ip=10.0.0.2 password=p2
connect ipmi node=n1 ipport=9001
connect pdu:2 node=n1 plug=3
connect pdu:1 node=n1 plug=4
connect pdu:1 node=n2 plug=5
`
	cfg, err := Parse("t.cfg", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	lv := cfg.NodeLevels("n1")
	var got []string
	for _, l := range lv {
		var s []string
		for _, c := range l {
			s = append(s, c.Device+" "+c.Redacted())
		}
		got = append(got, strings.Join(s, " | "))
	}
	want := []string{
		"ipmi:1 fence_ipmilan --ip=127.0.0.1 --username=admin --password='[hidden]' --lanplus --ipport=9001",
		"pdu:1 fence_apc --ip=10.0.0.1 --password='[hidden]' --plug=4 | pdu:2 fence_apc --ip=10.0.0.2 --password='[hidden]' --plug=3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("levels of n1:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l := cfg.NodeLevels("n2"); len(l) != 1 || len(l[0]) != 1 || l[0][0].Device != "pdu:1" {
		t.Errorf("levels of n2 = %v", l)
	}
	if l := cfg.NodeLevels("n3"); len(l) != 0 {
		t.Errorf("levels of n3 = %v, want none", l)
	}
	if n := cfg.Nodes(); fmt.Sprint(n) != "[n1 n2]" {
		t.Errorf("Nodes = %v", n)
	}
	if c := lv[0][0]; c.CommandLine() != "fence_ipmilan --ip=127.0.0.1 --username=admin --password='s3cr et' --lanplus --ipport=9001" {
		t.Errorf("CommandLine = %s", c.CommandLine())
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a b  c`, `[a b c]`},
		{`p="12\"345"`, `[p=12"345]`},
		{`p='a\b'`, `[p=a\b]`},
		{`a\ b`, `[a b]`},
		{`x="" y`, `[x= y]`},
		{`"a"'b'c`, `[abc]`},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("splitArgs(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc-1.2:3/4@5", "abc-1.2:3/4@5"},
		{"", "''"},
		{"a b", "'a b'"},
		{`12"345`, `'12"345'`},
		{"it's", `'it'\''s'`},
		{"'x", `\''x'`},
		{"fäö", "'fäö'"},
	}
	for _, tt := range tests {
		if got := shellQuote(tt.in); got != tt.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that an accepted config only
// holds valid names, and that its commands render.
func FuzzParse(f *testing.F) {
	cfgs, _ := filepath.Glob(filepath.Join(pveTestsDir(), "fence_cfgs", "*.cfg"))
	for _, p := range cfgs {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("device a:2 fence_x ip=\"1 2\" 'p=x'\\ y\nconnect a:2 node=n plug=1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.cfg", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || len(pe.Errors) == 0 {
				t.Fatalf("error %v is not a non-empty *ParseError", err)
			}
			return
		}
		for _, n := range cfg.Nodes() {
			if !nodeRe.MatchString(n) {
				t.Fatalf("accepted node name %q", n)
			}
			for _, l := range cfg.NodeLevels(n) {
				for _, c := range l {
					if !agentRe.MatchString(c.Agent) {
						t.Fatalf("accepted agent %q", c.Agent)
					}
					_ = c.CommandLine()
					if _, err := stdinLines(c.Args, nil); err != nil && !strings.Contains(err.Error(), "short option") {
						t.Fatalf("stdin: %v", err)
					}
				}
			}
		}
	})
}
