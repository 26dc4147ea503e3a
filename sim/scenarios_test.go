package sim

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"haxd/ha"
)

var update = flag.Bool("update", false, "rewrite the log.golden files of sim/testdata/scenarios")

var pveTestsDir = func() string {
	if d := os.Getenv("HAXD_SHARED"); d != "" {
		return filepath.Join(d, "pve-tests")
	}
	return "../../shared/pve-tests"
}()

// scenarioDirs returns the scenario directories below root (those with a
// cmdlist), sorted.
func scenarioDirs(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	var dirs []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "cmdlist")); e.IsDir() && err == nil {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	return dirs
}

// replay runs dir with the real daemons and returns the result and the PVE
// log: with the pve timing in PVE's serial round model, with the fast one
// in the concurrent model (as haxd sim run does).
func replay(t testing.TB, dir string, timing ha.Timing) (*Result, string) {
	t.Helper()
	sc, err := LoadScenario(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res, err := Run(sc, Options{Timing: timing, Log: PVEWriter(&buf), Concurrent: timing != ha.PVETiming()})
	if err != nil {
		t.Fatal(err)
	}
	return res, buf.String()
}

func formatFinal(m map[ha.SID]FinalState) string {
	var b strings.Builder
	for _, sid := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%s@%s ", sid, m[sid].State, m[sid].Node)
	}
	return b.String()
}

// checkScenario replays dir with the PVE timing (no fatal error, no
// invariant breach) and with the fast timing (same final service states).
func checkScenario(t *testing.T, dir string, golden bool) {
	res, log := replay(t, dir, ha.PVETiming())
	if res.Err != nil {
		t.Fatalf("pve timing: run ended with %v\n%s", res.Err, tail(log, 15))
	}
	if golden {
		path := filepath.Join(dir, "log.golden")
		if *update {
			if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./sim -update to create it)", err)
			}
			if string(want) != log {
				t.Errorf("log differs from %s (go test ./sim -update rewrites it):\n%s", path, firstDiff(string(want), log))
			}
		}
	}
	fast, flog := replay(t, dir, ha.FastTiming())
	if fast.Err != nil {
		t.Fatalf("fast timing: run ended with %v\n%s", fast.Err, tail(flog, 15))
	}
	if a, b := formatFinal(res.Final()), formatFinal(fast.Final()); a != b {
		t.Errorf("final service states differ between timings:\npve:  %s\nfast: %s", a, b)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, wl, gl)
		}
	}
	return "(no difference)"
}

// TestOwnScenarios replays sim/testdata/scenarios against their golden
// logs, with the invariant on, under both timings.
func TestOwnScenarios(t *testing.T) {
	for _, dir := range scenarioDirs(t, "testdata/scenarios") {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkScenario(t, dir, true) })
	}
}

// TestPVEScenarios replays every shared pve-tests scenario with the
// invariant on, under both timings. Log conformance is measured by
// shared/tools/pve-conformance, not here.
func TestPVEScenarios(t *testing.T) {
	if _, err := os.Stat(pveTestsDir); err != nil {
		t.Skipf("SKIPPING ALL PVE SCENARIOS: %s not found (%v); the shared conformance data lives beside the repository", pveTestsDir, err)
	}
	for _, dir := range scenarioDirs(t, pveTestsDir) {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkScenario(t, dir, false) })
	}
}

// BenchmarkReplayPVETests replays all shared scenarios once per iteration
// (target: all of them in under 2 s).
func BenchmarkReplayPVETests(b *testing.B) {
	if _, err := os.Stat(pveTestsDir); err != nil {
		b.Skipf("SKIPPING: %s not found", pveTestsDir)
	}
	var scs []*Scenario
	for _, dir := range scenarioDirs(b, pveTestsDir) {
		sc, err := LoadScenario(dir)
		if err != nil {
			b.Fatal(err)
		}
		scs = append(scs, sc)
	}
	b.ResetTimer()
	for b.Loop() {
		for _, sc := range scs {
			if _, err := Run(sc, Options{Log: PVEWriter(&bytes.Buffer{})}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
