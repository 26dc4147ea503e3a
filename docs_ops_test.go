package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestDocsErrorRecovery: the section the LRM's log line sends operators to
// exists, and every haxd command it shows parses with the current CLI.
func TestDocsErrorRecovery(t *testing.T) {
	src, err := os.ReadFile("lrm/exec.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "Look up 'ERROR RECOVERY' in the documentation") {
		t.Fatal("the LRM no longer refers to ERROR RECOVERY; update this test and docs/cli.md")
	}
	sec := mdSection(t, readDoc(t, "docs/cli.md"), "## ERROR RECOVERY")
	cmds := 0
	for line := range strings.SplitSeq(sec, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "haxd ha ") {
			continue
		}
		cmds++
		k := cliParser(t, &bytes.Buffer{})
		if _, err := k.Parse(strings.Fields(line)[1:]); err != nil {
			t.Errorf("docs/cli.md ERROR RECOVERY: %q does not parse: %v", line, err)
		}
	}
	if cmds < 3 {
		t.Errorf("ERROR RECOVERY shows %d commands, want the disable/start steps", cmds)
	}
}

// TestDocsBuildLinesAreStatic: every `go build` the README and the install
// guide show builds the static binary they promise.
func TestDocsBuildLinesAreStatic(t *testing.T) {
	for _, path := range []string{"README.md", "docs/install.md"} {
		n := 0
		for line := range strings.SplitSeq(readDoc(t, path), "\n") {
			if strings.Contains(line, "go build") && strings.HasPrefix(line, "    ") {
				n++
				if !strings.Contains(line, "CGO_ENABLED=0") {
					t.Errorf("%s: build line %q lacks CGO_ENABLED=0", path, strings.TrimSpace(line))
				}
			}
		}
		if n == 0 {
			t.Errorf("%s shows no build line", path)
		}
	}
}
