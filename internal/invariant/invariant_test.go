package invariant

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		runs []Run
		want int
	}{
		{"sequential", []Run{{Service: "a", First: 1, Last: 10}, {Service: "a", First: 11, Last: 20}}, 0},
		{"overlap", []Run{{Service: "a", First: 1, Last: 10}, {Service: "a", First: 10, Last: 20}}, 1},
		{"contained", []Run{{Service: "a", First: 1, Last: 100}, {Service: "a", First: 10, Last: 20}}, 1},
		{"different services", []Run{{Service: "a", First: 1, Last: 10}, {Service: "b", First: 5, Last: 20}}, 0},
		{"three with two overlaps", []Run{{Service: "a", First: 1, Last: 10}, {Service: "a", First: 5, Last: 20}, {Service: "a", First: 15, Last: 30}}, 2},
	}
	for _, tt := range tests {
		if got := Check(tt.runs); len(got) != tt.want {
			t.Errorf("%s: Check = %q, want %d violations", tt.name, got, tt.want)
		}
	}
}

func TestRecorderAndLoad(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRecorder(dir, "web", "node1")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := r.Beat(); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	// A second instance of the same service, written by hand later on.
	late := Monotonic() + 1e9
	os.WriteFile(filepath.Join(dir, "web.node2.99999.hb"), []byte(strconv.FormatInt(late, 10)+"\n"+strconv.FormatInt(late+5, 10)+"\n12"), 0o644)
	runs, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Node != "node1" || runs[1].Node != "node2" || runs[0].First > runs[0].Last {
		t.Fatalf("runs = %+v", runs)
	}
	if v := Check(runs); len(v) != 0 {
		t.Fatalf("unexpected violations %q", v)
	}
	if _, err := NewRecorder(dir, "a.b", "n"); err == nil {
		t.Fatal("service name with a dot accepted")
	}
}
