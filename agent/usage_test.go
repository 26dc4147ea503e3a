package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"haxd/gossip"
	"haxd/ha"
)

func writeProc(t *testing.T, dir, stat string) {
	t.Helper()
	meminfo := "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    12288000 kB\n"
	if err := os.WriteFile(filepath.Join(dir, "meminfo"), []byte(meminfo), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeUsageFromProc: cores, memory and CPU load come from /proc; the
// config overrides cores and memory; the tags parse back into NodeStats.
func TestNodeUsageFromProc(t *testing.T) {
	dir := t.TempDir()
	writeProc(t, dir, "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\nintr 1\n")
	prev, err := readProc(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeProc(t, dir, "cpu  200 0 200 1400 0 0 0 0 0 0\ncpu0 100 0 100 700 0 0 0 0 0 0\ncpu1 100 0 100 700 0 0 0 0 0 0\n")
	cur, err := readProc(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cur.cpus != 2 || cur.memTotal != 16384000*1024 || cur.memUsed != 4096000*1024 {
		t.Fatalf("sample %+v", cur)
	}
	tags := usageTags(prev, cur, 0, 0)
	// 200 busy of 800 jiffies on 2 cores: 0.5 cores.
	if tags[tagCPUs] != "2" || tags[tagLoad] != "0.5" {
		t.Errorf("tags %v, want 2 cpus and load 0.5", tags)
	}
	over := usageTags(prev, cur, 8, 1024)
	if over[tagCPUs] != "8" || over[tagMem] != "1073741824" {
		t.Errorf("overridden tags %v", over)
	}
	st, err := nodeStats([]gossip.Member{{Name: "n1", State: gossip.StateOnline, Tags: over}, {Name: "n2", State: "unknown"}})
	if err != nil || st["n1"].MaxCPU != 8 || st["n1"].MaxMem != 1<<30 || st["n1"].CPU != 0.5 || len(st) != 1 {
		t.Errorf("nodeStats = %v, %v", st, err)
	}
	if _, err := nodeStats([]gossip.Member{{Name: "n3", State: gossip.StateOnline, Tags: map[string]string{}}}); err == nil || !strings.Contains(err.Error(), "n3") {
		t.Errorf("a node without usage tags: err %v, want one naming it", err)
	}
	if _, err := readProc(t.TempDir()); err == nil {
		t.Error("readProc of an empty dir succeeded")
	}
	if s, ok := serviceStats(&ha.ResourceConfig{Cores: 2, MemoryMB: 512}); !ok || s.MaxMem != 512<<20 || s.MaxCPU != 2 {
		t.Errorf("serviceStats = %+v %v", s, ok)
	}
	if _, ok := serviceStats(&ha.ResourceConfig{}); ok {
		t.Error("a service without a size has stats")
	}
}

// FuzzParseProc: arbitrary /proc contents never panic, and a parsed
// sample is sane.
func FuzzParseProc(f *testing.F) {
	f.Add([]byte("MemTotal: 100 kB\nMemAvailable: 50 kB\n"), []byte("cpu 1 2 3 4 5 6\ncpu0 1 2 3 4 5 6\n"))
	f.Add([]byte("MemTotal: x\n"), []byte("cpu a b c d e\n"))
	f.Fuzz(func(t *testing.T, meminfo, stat []byte) {
		s, err := parseProc(meminfo, stat)
		if err != nil {
			return
		}
		if s.memTotal <= 0 || s.memUsed < 0 || s.memUsed > s.memTotal || s.cpus <= 0 || s.busy > s.total {
			t.Fatalf("insane sample %+v", s)
		}
		tags := usageTags(s, s, 0, 0)
		if _, err := nodeStats([]gossip.Member{{Name: "n", State: gossip.StateOnline, Tags: tags}}); err != nil {
			t.Fatalf("tags of a parsed sample do not parse: %v", err)
		}
	})
}
