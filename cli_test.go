package main

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"haxd/ha"
)

const testKey = "AAECAwQFBgcICQoLDA0ODw=="

// runCLI runs haxd with args in-process and returns the exit code and the
// stderr text.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String() + errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExitCodes: bad input of every kind exits 2 with a short message;
// an unreachable agent exits 1; --version exits 0.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	noAgent := filepath.Join(dir, "none.sock")
	good := writeFile(t, dir, "good.conf", "node_name = n1\nadvertise_ip = 10.0.0.1\nencrypt_key = "+testKey+"\n")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"version flag", []string{"--version"}, ExitOK, "haxd dev"},
		{"typo", []string{"ha", "statsu"}, ExitUsage, `did you mean "status"`},
		{"unknown flag", []string{"ha", "status", "--bogus"}, ExitUsage, "unknown flag --bogus"},
		{"bad --spec JSON", []string{"ha", "--socket", noAgent, "add", "exec:x", "--spec", "{bad"}, ExitUsage, "not valid JSON"},
		{"stop timeout not whole seconds", []string{"ha", "--socket", noAgent, "stop", "exec:x", "--timeout", "1500ms"}, ExitUsage, "whole seconds"},
		{"stop timeout negative", []string{"ha", "--socket", noAgent, "stop", "exec:x", "--timeout=-1s"}, ExitUsage, ">= 0"},
		{"stop timeout integer", []string{"ha", "--socket", noAgent, "stop", "exec:x", "--timeout", "60"}, ExitUsage, "--timeout"},
		{"agent unreachable", []string{"ha", "--socket", noAgent, "status"}, ExitFailure, "contact agent"},
		{"agent --check good", []string{"agent", "--check", "-c", good}, ExitOK, ""},
		{"agent --check with api_addr", []string{"agent", "--check", "-c", good, "--set", "api_addr=:8443"}, ExitOK, "api /run/haxd/haxd.sock and https://10.0.0.1:8443"},
		{"agent --check bad flag value", []string{"agent", "--check", "-c", good, "--set", "lock_ttl=3"}, ExitUsage, "lock_ttl"},
	}
	for _, tt := range tests {
		code, out := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.msg) {
			t.Errorf("%s: haxd %s: exit %d, output %q; want exit %d containing %q", tt.name, strings.Join(tt.args, " "), code, out, tt.code, tt.msg)
		}
		if tt.code == ExitUsage && strings.Count(out, "\n") > 3 {
			t.Errorf("%s: a usage error prints %d lines, want a short message:\n%s", tt.name, strings.Count(out, "\n"), out)
		}
	}
}

// TestDocsExitCodes: docs/cli.md's exit code table lists exactly the
// codes the code uses.
func TestDocsExitCodes(t *testing.T) {
	rows := tableRows(t, readDoc(t, "docs/cli.md"), "## Exit codes")
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range rows {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"0", "1", "2"}; !slices.Equal(got, want) || ExitOK != 0 || ExitFailure != 1 || ExitUsage != 2 {
		t.Errorf("docs/cli.md exit codes %q, the code uses 0 (ok), 1 (failure), 2 (usage)", got)
	}
}

// backquoted matches the first `...` of a table cell.
var backquoted = regexp.MustCompile("`([^`]+)`")

// TestDocsAgentCheckRefusals: every row of the status-2 table of
// docs/configuration.md ("Other start-up refusals") is a config that
// `haxd agent --check` refuses with exit 2 and the documented message
// (its pieces around "..." in order), and every case here has a row.
func TestDocsAgentCheckRefusals(t *testing.T) {
	dir := t.TempDir()
	base := "node_name = n1\nadvertise_ip = 10.0.0.1\n"
	key := "encrypt_key = " + testKey + "\n"
	empty := writeFile(t, dir, "empty.key", "\n")
	cases := map[string][]string{ // documented message -> haxd agent args (config text as first element)
		`FILE:LINE: unknown key "x"`:                                       {base + key + "x = 1\n"},
		`--set "x": expected key=value`:                                    {base + key, "--set", "x"},
		`config: timing: unknown timing profile "x": expected pve or fast`: {base + key + "timing = x\n"},
		`config: timing ...`:                                               {base + key + "lock_ttl = -1s\n"},
		`node_name "x": expected letters, digits and '-', ...`:             {"node_name = -x\nadvertise_ip = 10.0.0.1\n" + key},
		`data_dir: must not be empty`:                                      {base + key + "data_dir = \"\"\n"},
		`bootstrap_expect -1: expected >= 0`:                               {base + key + "bootstrap_expect = -1\n"},
		`raft_voters 0: expected >= 1`:                                     {base + key + "raft_voters = 0\n"},
		`store config raft_leader_lease_timeout (300ms): must be <= raft_heartbeat_timeout (200ms)`:                 {base + key + "raft_leader_lease_timeout = 300ms\n"},
		`shutdown_policy "x": expected conditional, freeze, failover or migrate`:                                    {base + key + "shutdown_policy = x\n"},
		"encrypt_key: required (create one with ...), or set insecure = true for local tests":                       {base},
		`encrypt_key: decodes to 20 bytes, expected 16, 24 or 32`:                                                   {base + "encrypt_key = " + "AAECAwQFBgcICQoLDA0ODxAREhM=" + "\n"},
		`encrypt_key_file "F": the file is empty`:                                                                   {base + "encrypt_key_file = " + empty + "\n"},
		`advertise_ip: required when gossip_addr binds to 0.0.0.0 (other nodes cannot dial an unspecified address)`: {"node_name = n1\ngossip_addr = 0.0.0.0:7946\n" + key},
		`gossip_addr "x:7946": "x" is not an IP address`:                                                            {base + key + "gossip_addr = x:7946\n"},
		`api_addr ":8443": the HTTPS API listener needs the node's TLS files ...`:                                   {base + "insecure = true\napi_addr = :8443\n"},
	}
	doc := mdSection(t, readDoc(t, "docs/configuration.md"), "## Other start-up refusals")
	exit2, _, ok := strings.Cut(doc, "make it exit with status 1")
	if !ok {
		t.Fatal("docs/configuration.md: no status-1 table under \"## Other start-up refusals\"")
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(exit2, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !strings.HasPrefix(line, "| ") || len(cells) != 2 || strings.Contains(line, "---") || strings.TrimSpace(cells[0]) == "condition" {
			continue
		}
		m := backquoted.FindStringSubmatch(cells[1])
		if m == nil {
			t.Errorf("docs/configuration.md: row %q has no `message`", line)
			continue
		}
		msg := m[1]
		seen[msg] = true
		args, ok := cases[msg]
		if !ok {
			t.Errorf("docs/configuration.md documents %q; add a case for it to this test", msg)
			continue
		}
		conf := writeFile(t, dir, "c.conf", args[0])
		code, out := runCLI(t, append([]string{"agent", "--check", "-c", conf}, args[1:]...)...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (output %q)", msg, code, ExitUsage, out)
		}
		// The documented message, with FILE, LINE, x, F and "..." as wildcards.
		pat := regexp.QuoteMeta(msg)
		for _, w := range []string{"FILE", "LINE", "F", "x", `\.\.\.`} {
			pat = strings.ReplaceAll(pat, w, ".*")
		}
		if !regexp.MustCompile(pat).MatchString(out) {
			t.Errorf("%q: output %q does not match the documented message", msg, out)
		}
	}
	for msg := range cases {
		if !seen[msg] {
			t.Errorf("case %q has no row in docs/configuration.md", msg)
		}
	}
}

// TestCompletionBash: the generated script completes commands and flags
// in a real bash.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	code, script := runCLI(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("haxd completion bash: exit %d: %s", code, script)
	}
	for _, tt := range []struct {
		words string
		want  []string
	}{
		{"haxd ha st", []string{"status", "stop"}},
		{"haxd ha node ", []string{"list", "remove"}},
		{"haxd ha status --w", []string{"--watch"}},
		{"haxd ag", []string{"agent"}},
	} {
		words := strings.Fields(tt.words)
		if strings.HasSuffix(tt.words, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _haxd; echo \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, tt.want) {
			t.Errorf("completing %q: %q, want %q", tt.words, got, tt.want)
		}
	}
}

// TestSocketFromConfig: without --socket and $HAXD_SOCKET, haxd ha uses
// the api_socket of the agent config.
func TestSocketFromConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HAXD_CONFIG", writeFile(t, dir, "haxd.conf", "api_socket = /tmp/elsewhere.sock\n"))
	if got := (&HACmd{}).socket(); got != "/tmp/elsewhere.sock" {
		t.Errorf("socket from config = %q", got)
	}
	if got := (&HACmd{Socket: "/x.sock"}).socket(); got != "/x.sock" {
		t.Errorf("--socket ignored: %q", got)
	}
	t.Setenv("HAXD_CONFIG", filepath.Join(dir, "missing.conf"))
	if got := (&HACmd{}).socket(); got != defaultSocket {
		t.Errorf("without a config: %q, want %q", got, defaultSocket)
	}
}

// TestLogLevelNames: haxd's custom levels print by name.
func TestLogLevelNames(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  string // the printed name
		not   string // slog's own name, which must not show
	}{
		{ha.LevelNotice, "NOTICE", "INFO+2"},
		{ha.LevelTrace, "TRACE", "DEBUG-4"},
		{slog.LevelDebug, "DEBUG", ""},
		{slog.LevelInfo, "INFO", ""},
		{slog.LevelWarn, "WARN", ""},
		{slog.LevelError, "ERROR", ""},
	} {
		for _, format := range []string{"text", "json"} {
			var buf bytes.Buffer
			slog.New(newLogHandler(&buf, format, "debug-4")).Log(t.Context(), tc.level, "x")
			out := buf.String()
			if !strings.Contains(out, tc.want) || tc.not != "" && strings.Contains(out, tc.not) {
				t.Errorf("%s, level %d: %q, want level %s", format, tc.level, out, tc.want)
			}
		}
	}
}
