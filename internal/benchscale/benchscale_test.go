package main

import (
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseGrid(t *testing.T) {
	tests := []struct {
		cells, nodes, services string
		want                   [][2]int
		err                    string
	}{
		{"", "3,9", "100,500", [][2]int{{3, 100}, {9, 100}, {3, 500}, {9, 500}}, ""},
		{"3x100, 25x2000", "", "", [][2]int{{3, 100}, {25, 2000}}, ""},
		{"3x", "", "", nil, `-cells: "3x"`},
		{"0x100", "", "", nil, `-cells: "0x100"`},
		{"", "3,a", "100", nil, `-nodes: "a"`},
		{"", "3", "-1", nil, `-services: "-1"`},
	}
	for _, tc := range tests {
		got, err := parseGrid(tc.cells, tc.nodes, tc.services)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseGrid(%q, %q, %q): error %v, want one containing %q", tc.cells, tc.nodes, tc.services, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseGrid(%q, %q, %q) = %v, %v; want %v", tc.cells, tc.nodes, tc.services, got, err, tc.want)
		}
	}
}

func TestStraceCalls(t *testing.T) {
	tests := []struct {
		name, summary string
		want          int
	}{
		{"both", `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 93.61    0.060162         168       358           fdatasync
  6.39    0.004110         411        10         1 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.064272         174       368         1 total
`, 368},
		{"none traced", "% time     seconds  usecs/call     calls    errors syscall\n", 0},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "s")
		if err := os.WriteFile(p, []byte(tc.summary), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := straceCalls(p)
		if err != nil || got != tc.want {
			t.Errorf("%s: straceCalls = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestHBName(t *testing.T) {
	tests := []struct {
		name, svc, node string
		ok              bool
	}{
		{"exec:s00001.node3.4242.hb", "exec:s00001", "node3", true},
		{"exec:s00001.node3.4242", "", "", false},
		{"x.hb", "", "", false},
	}
	for _, tc := range tests {
		svc, node, ok := hbName(tc.name)
		if svc != tc.svc || node != tc.node || ok != tc.ok {
			t.Errorf("hbName(%q) = %q, %q, %v; want %q, %q, %v", tc.name, svc, node, ok, tc.svc, tc.node, tc.ok)
		}
	}
}

// TestCPUTicksOfSelf: the parser finds utime+stime of this process, which
// has used some CPU by now.
func TestCPUTicksOfSelf(t *testing.T) {
	x := 0
	for i := range 200_000_000 {
		x += i
	}
	ticks, err := cpuTicks(os.Getpid())
	if err != nil || ticks == 0 {
		t.Errorf("cpuTicks(self) = %d, %v (x=%d); want > 0", ticks, err, x)
	}
}

// TestOutputsRoundTrip: results saved and loaded are the same, and the
// CSV, Markdown and PNG outputs are written from them.
func TestOutputsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rs := []Result{
		{Nodes: 9, Services: 500, Commit: "abc1234", RaftBytesPerSecond: 80000, FailoverFirstSeconds: 2.6, FailoverLastSeconds: 3.1, FailoverServices: 55},
		{Nodes: 3, Services: 100, Commit: "abc1234", RaftBytesPerSecond: 50000, FailoverFirstSeconds: 2.5, FailoverLastSeconds: 2.9, FailoverServices: 33,
			LoadWindow: [2]float64{1.5, 2}, Notes: []string{"a note"}},
		{Nodes: 9, Services: 100, Commit: "abc1234", RaftBytesPerSecond: 60000, FailoverFirstSeconds: 2.7, FailoverLastSeconds: 3.0, FailoverServices: 11},
	}
	if err := saveResults(dir, rs); err != nil {
		t.Fatal(err)
	}
	got, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("loaded %+v, want %+v", got, rs)
	}
	if got[0].Nodes != 3 || got[1].Nodes != 9 || got[2].Services != 500 {
		t.Errorf("results not sorted by services, then nodes: %+v", got)
	}
	if err := writeOutputs(dir, got); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, resultsMD))
	if n := strings.Count(string(md), "\n| 9 × "); n != 2 || !strings.Contains(string(md), "| 3 × 100 | abc1234 | 1.5–2.0 /") {
		t.Errorf("results.md:\n%s", md)
	}
	csv, _ := os.ReadFile(filepath.Join(dir, resultsCSV))
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "nodes,services,commit,") || !strings.HasPrefix(lines[1], "3,100,abc1234,") {
		t.Errorf("results.csv:\n%s", csv)
	}
	f, err := os.Open(filepath.Join(dir, plotPNG))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("scale.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Errorf("scale.png is %v", b)
	}
}

func TestLoadResultsBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, resultsJSON), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadResults(dir); err == nil || !strings.Contains(err.Error(), resultsJSON) {
		t.Errorf("loadResults of a torn file: %v, want an error naming %s", err, resultsJSON)
	}
	if rs, err := loadResults(t.TempDir()); err != nil || rs != nil {
		t.Errorf("loadResults of an empty dir: %v, %v", rs, err)
	}
}

// TestMarkdownFailedCell: a cell whose failover did not recover every
// service says so instead of printing times, and its error is listed
// under the table.
func TestMarkdownFailedCell(t *testing.T) {
	r := Result{Nodes: 3, Services: 100, Commit: "abc", WindowMeasured: 60, FailoverServices: 34, FailoverRecovered: 0,
		Error: "failover: only 0 of the 34 services of node2 ran elsewhere"}
	row := markdownRow(r)
	if !strings.Contains(row, "**0 of 34 recovered**") || strings.Contains(row, "0.00 / 0.00") {
		t.Errorf("row of a failed failover: %s", row)
	}
	early := Result{Nodes: 9, Services: 500, Commit: "abc", AddPerSecond: 12, Error: "only 0 of 500 services beating"}
	if row := markdownRow(early); !strings.Contains(row, "failed before the window") || strings.Contains(row, "0.00") {
		t.Errorf("row of a cell that failed before its window: %s", row)
	}
	dir := t.TempDir()
	if err := writeOutputs(dir, []Result{r}); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, resultsMD))
	if !strings.Contains(string(md), "\n- 3 × 100 FAILED: failover: only 0 of the 34") {
		t.Errorf("results.md does not list the error:\n%s", md)
	}
}
