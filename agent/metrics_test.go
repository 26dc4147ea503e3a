package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRaftSinkCountsLogStoreWrites: raft-boltdb's samples of each log
// store write become the raft log byte, entry and batch counters; other
// keys leave them alone.
func TestRaftSinkCountsLogStoreWrites(t *testing.T) {
	tests := []struct {
		name                   string
		samples                map[string][]float32
		bytes, entries, writes float64
	}{
		{"nothing", nil, 0, 0, 0},
		{"two batches", map[string][]float32{
			"raft.boltdb.logBatchSize": {300, 120},
			"raft.boltdb.logsPerBatch": {3, 1},
		}, 420, 4, 2},
		{"other keys ignored", map[string][]float32{
			"raft.boltdb.logSize":       {100},
			"raft.boltdb.storeLogs":     {1.5},
			"raft.boltdb.writeCapacity": {1000},
		}, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetrics(nil, "node1")
			// raft-boltdb reports through armon/go-metrics: boltSink.
			s := &boltSink{raft: &raftSink{m: m}}
			for k, vals := range tc.samples {
				for _, v := range vals {
					s.AddSample(strings.Split(k, "."), v)
				}
			}
			if got := counterValue(t, m, "haxd_raft_log_bytes_total"); got != tc.bytes {
				t.Errorf("haxd_raft_log_bytes_total = %v, want %v", got, tc.bytes)
			}
			if got := counterValue(t, m, "haxd_raft_log_entries_total"); got != tc.entries {
				t.Errorf("haxd_raft_log_entries_total = %v, want %v", got, tc.entries)
			}
			if got := counterValue(t, m, "haxd_raft_log_batches_total"); got != tc.writes {
				t.Errorf("haxd_raft_log_batches_total = %v, want %v", got, tc.writes)
			}
		})
	}
}

// counterValue returns the value of one of m's raft log counters, by
// name (gathered through a registry of their own: m's registry also
// holds the cluster collector, which needs a store).
func counterValue(t *testing.T, m *metrics, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.raftLogBytes, m.raftLogEntries, m.raftLogBatches)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
