package placement

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pveTests is the shared PVE regression data, relative to this package.
var pveTests = func() string {
	if d := os.Getenv("HAXD_SHARED"); d != "" {
		return filepath.Join(d, "pve-tests")
	}
	return "../../../shared/pve-tests"
}()

// Every rules_cfgs/*.cfg, checked for node1..node3, must print exactly the
// upstream .cfg.expect text.
func TestRulesCfgsMatchUpstream(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(pveTests, "rules_cfgs", "*.cfg"))
	if len(files) == 0 {
		t.Skipf("SKIPPING: no rules_cfgs found under %s", pveTests)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(f + ".expect")
			if err != nil {
				t.Fatal(err)
			}
			got := CheckRulesFile(raw, []string{"node1", "node2", "node3"}).String()
			if got != string(want) {
				t.Errorf("output differs from %s.expect:\n%s", filepath.Base(f), lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first differing lines of want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + wl + "\n  got: " + gl
		}
	}
	return "(identical lines)"
}
