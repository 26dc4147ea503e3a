package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
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
}

// TestServiceStats: the declared size, replaced as usage by the measured
// usage when there is one; a service with neither has no stats.
func TestServiceStats(t *testing.T) {
	tests := []struct {
		name     string
		rc       *ha.ResourceConfig
		measured *store.ServiceUsage
		want     ha.ServiceStats
		ok       bool
	}{
		{"declared, not measured", &ha.ResourceConfig{Cores: 2, MemoryMB: 512}, nil, ha.ServiceStats{MaxCPU: 2, MaxMem: 512 << 20, CPU: 2, Mem: 512 << 20}, true},
		{"declared and measured", &ha.ResourceConfig{Cores: 2, MemoryMB: 512}, &store.ServiceUsage{CPU: 0.5, Mem: 100 << 20},
			ha.ServiceStats{MaxCPU: 2, MaxMem: 512 << 20, CPU: 0.5, Mem: 100 << 20}, true},
		{"measured only", &ha.ResourceConfig{}, &store.ServiceUsage{CPU: 1.5, Mem: 8 << 20}, ha.ServiceStats{MaxMem: 8 << 20, CPU: 1.5, Mem: 8 << 20}, true},
		{"neither", &ha.ResourceConfig{}, nil, ha.ServiceStats{}, false},
		{"no config", nil, &store.ServiceUsage{CPU: 1}, ha.ServiceStats{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := serviceStats(tt.rc, tt.measured)
			if got != tt.want || ok != tt.ok {
				t.Errorf("serviceStats = %+v %v, want %+v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestUsagePublisherDue: a publication is due first, on a service
// starting or stopping, on a change beyond a threshold, and after the
// maximum interval; never for changes within the thresholds.
func TestUsagePublisherDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	base := map[ha.SID]store.ServiceUsage{"exec:a": {CPU: 1, Mem: 100 << 20}}
	tests := []struct {
		name string
		cur  map[ha.SID]store.ServiceUsage
		at   time.Duration
		want string // substring of the reason; "" for not due
	}{
		{"unchanged", base, time.Second, ""},
		{"small changes", map[ha.SID]store.ServiceUsage{"exec:a": {CPU: 1.2, Mem: 150 << 20}}, time.Second, ""},
		{"cpu beyond threshold", map[ha.SID]store.ServiceUsage{"exec:a": {CPU: 1.3, Mem: 100 << 20}}, time.Second, "cpu 1.00 -> 1.30"},
		{"memory beyond threshold", map[ha.SID]store.ServiceUsage{"exec:a": {CPU: 1, Mem: 200 << 20}}, time.Second, "memory 100 -> 200"},
		{"service started", map[ha.SID]store.ServiceUsage{"exec:a": {CPU: 1, Mem: 100 << 20}, "exec:b": {}}, time.Second, "'exec:b' started"},
		{"service stopped", map[ha.SID]store.ServiceUsage{}, time.Second, "'exec:a' stopped"},
		{"max interval", base, time.Minute, "usage_max_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &usagePublisher{cpu: 0.25, mem: 64 << 20, maxInterval: time.Minute}
			if r := p.due(base, t0); !strings.Contains(r, "first") {
				t.Fatalf("first due = %q, want the first measurement", r)
			}
			p.published(base, t0)
			got := p.due(tt.cur, t0.Add(tt.at))
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("due = %q, want %q", got, tt.want)
			}
			p.reset()
			if r := p.due(base, t0.Add(tt.at)); r == "" {
				t.Error("not due after a reset")
			}
		})
	}
}

// TestLeafSampler: CPU in cores from two readings of usage_usec, memory
// from memory.current, or from the processes' resident pages where the
// memory controller is not on the v2 hierarchy; empty leaves and first
// readings give nothing.
func TestLeafSampler(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	leaf := func(name, procs, usec, mem string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(f, s string) {
			if err := os.WriteFile(filepath.Join(d, f), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("cgroup.procs", procs)
		write("cpu.stat", "usage_usec "+usec+"\nuser_usec 0\n")
		if mem != "" {
			write("memory.current", mem)
		}
		return d
	}
	if err := os.MkdirAll(filepath.Join(proc, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "42", "statm"), []byte("1000 256 10 1 0 100 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &leafSampler{prev: map[string]leafSample{}, procRoot: proc, pageSize: 4096}
	leaves := map[ha.SID]string{
		"exec:busy":  leaf("busy", "42\n", "1000000", "1048576"),
		"exec:rss":   leaf("rss", "42\n", "0", ""),
		"exec:empty": leaf("empty", "", "0", "0"),
	}
	t0 := time.Unix(1000, 0)
	if got := s.sample(leaves, t0); len(got) != 0 {
		t.Fatalf("first sample = %v, want nothing (no rate yet)", got)
	}
	leaf("busy", "42\n", "3000000", "2097152") // 2 s of CPU in 1 s
	leaf("rss", "42\n", "500000", "")
	got := s.sample(leaves, t0.Add(time.Second))
	want := map[ha.SID]store.ServiceUsage{"exec:busy": {CPU: 2, Mem: 2 << 20}, "exec:rss": {CPU: 0.5, Mem: 256 * 4096}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sample = %v, want %v", got, want)
	}
	delete(leaves, "exec:busy")
	s.sample(leaves, t0.Add(2*time.Second))
	if _, ok := s.prev[filepath.Join(dir, "busy")]; ok {
		t.Error("a leaf gone is still remembered")
	}
}

// TestLeafSID: leaf names are escaped SIDs.
func TestLeafSID(t *testing.T) {
	for name, want := range map[string]ha.SID{"exec%3Aweb": "exec:web", "vm:100": "vm:100", "nonsense": ""} {
		got, ok := leafSID(name)
		if got != want || ok != (want != "") {
			t.Errorf("leafSID(%q) = %q %v, want %q", name, got, ok, want)
		}
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
