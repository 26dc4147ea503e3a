package main

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	resultsJSON = "results.json"
	resultsCSV  = "results.csv"
	resultsMD   = "results.md"
	plotPNG     = "scale.png"
)

// Result is one measured cell. Rates are per second over the window;
// CPU is in % of one core; medians over the followers exclude the master.
type Result struct {
	Nodes             int     `json:"nodes"`
	Services          int     `json:"services"`
	Commit            string  `json:"commit"`
	Timing            string  `json:"timing"`
	Date              string  `json:"date"`
	HeartbeatInterval string  `json:"heartbeat_interval"`
	WindowSeconds     float64 `json:"window_seconds"`
	Master            string  `json:"master"`

	AddVia             string  `json:"add_via"`
	AddSeconds         float64 `json:"add_seconds"`
	AddPerSecond       float64 `json:"add_per_second"`
	AddLatencyMedianMs float64 `json:"add_latency_median_ms"`
	AddLatencyMaxMs    float64 `json:"add_latency_max_ms"`
	// AddRetries counts adds tried again after an error (an unknown
	// outcome under load).
	AddRetries        int     `json:"add_retries"`
	AllRunningSeconds float64 `json:"all_running_seconds"`

	// WindowMeasured is the length of the steady-state window in
	// seconds; 0 when the cell failed before it.
	WindowMeasured       float64    `json:"window_measured_seconds"`
	LoadWindow           [2]float64 `json:"load_window"`
	CPUMasterPct         float64    `json:"cpu_master_pct"`
	CPUFollowerMedianPct float64    `json:"cpu_follower_median_pct"`
	CPUFollowerMaxPct    float64    `json:"cpu_follower_max_pct"`
	CPUSumPct            float64    `json:"cpu_sum_pct"`
	GuardCPUMeanPct      float64    `json:"guard_cpu_mean_pct"`
	RSSMasterMiB         float64    `json:"rss_master_mib"`
	RSSFollowerMedianMiB float64    `json:"rss_follower_median_mib"`
	RSSMaxMiB            float64    `json:"rss_max_mib"`

	RaftBytesPerSecond            float64 `json:"raft_bytes_per_second"`
	RaftEntriesPerSecond          float64 `json:"raft_entries_per_second"`
	LogWritesPerSecond            float64 `json:"log_writes_per_second"`
	DiskWriteMasterBytesPerSecond float64 `json:"disk_write_master_bytes_per_second"`
	DiskWriteMedianBytesPerSecond float64 `json:"disk_write_median_bytes_per_second"`
	CRMRoundMeanMs                float64 `json:"crm_round_mean_ms"`
	CRMRoundsPerSecond            float64 `json:"crm_rounds_per_second"`

	LoadStrace             float64 `json:"load_strace"`
	FsyncMasterPerSecond   float64 `json:"fsync_master_per_second"`
	FsyncFollower          string  `json:"fsync_follower"`
	FsyncFollowerPerSecond float64 `json:"fsync_follower_per_second"`

	StatusMedianMs float64 `json:"status_median_ms"`
	StatusMaxMs    float64 `json:"status_max_ms"`

	LoadFailover         float64 `json:"load_failover"`
	Victim               string  `json:"victim"`
	FailoverServices     int     `json:"failover_services"`
	FailoverRecovered    int     `json:"failover_recovered"`
	FailoverFirstSeconds float64 `json:"failover_first_seconds"`
	FailoverLastSeconds  float64 `json:"failover_last_seconds"`

	Violations int `json:"invariant_violations"`
	// LostLocks and GuardFences count the whole cell except the strace
	// window and the settle after it, which LostLocksStrace and
	// GuardFencesStrace count (the killed node's own are not logged).
	LostLocks         int      `json:"lrm_lost_lock"`
	GuardFences       int      `json:"guard_self_fences"`
	LostLocksStrace   int      `json:"lrm_lost_lock_strace"`
	GuardFencesStrace int      `json:"guard_self_fences_strace"`
	MasterChanges     int      `json:"master_changes"`
	Notes             []string `json:"notes,omitempty"`
	// Error is why the cell failed; empty when it completed.
	Error string `json:"error,omitempty"`
}

func loadResults(dir string) ([]Result, error) {
	p := filepath.Join(dir, resultsJSON)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rs []Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w (move it away to start over)", p, err)
	}
	return rs, nil
}

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Services, b.Services), cmp.Compare(a.Nodes, b.Nodes))
	})
}

// saveResults writes results.json atomically.
func saveResults(dir string, rs []Result) error {
	sortResults(rs)
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, resultsJSON)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// writeOutputs rewrites results.csv, results.md and scale.png from rs.
func writeOutputs(dir string, rs []Result) error {
	sortResults(rs)
	if err := writeCSV(filepath.Join(dir, resultsCSV), rs); err != nil {
		return err
	}
	var md strings.Builder
	md.WriteString(markdownHeader())
	for _, r := range rs {
		md.WriteString(markdownRow(r))
	}
	for _, r := range rs {
		for _, n := range r.Notes {
			fmt.Fprintf(&md, "\n- %d × %d: %s", r.Nodes, r.Services, n)
		}
		if r.Error != "" {
			fmt.Fprintf(&md, "\n- %d × %d FAILED: %s", r.Nodes, r.Services, r.Error)
		}
	}
	if !strings.HasSuffix(md.String(), "|\n") {
		md.WriteString("\n") // end the notes' last line
	}
	if err := os.WriteFile(filepath.Join(dir, resultsMD), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return writePlot(filepath.Join(dir, plotPNG), rs)
}

func writeCSV(path string, rs []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	// The columns are the JSON fields, in order.
	var header []string
	var rows [][]string
	for i, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			f.Close()
			return err
		}
		var kv orderedFields
		if err := json.Unmarshal(b, &kv); err != nil {
			f.Close()
			return err
		}
		if i == 0 {
			header = kv.keys
		}
		rows = append(rows, kv.vals)
	}
	if header != nil {
		w.Write(header) //nolint:errcheck // checked by w.Error below
	}
	w.WriteAll(rows) //nolint:errcheck // checked by w.Error below
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// orderedFields decodes a JSON object keeping its key order, values as
// text.
type orderedFields struct {
	keys, vals []string
}

// UnmarshalJSON implements json.Unmarshaler.
func (o *orderedFields) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		s := string(v)
		if u, err := strconv.Unquote(s); err == nil {
			s = u
		}
		o.keys, o.vals = append(o.keys, fmt.Sprint(k)), append(o.vals, s)
	}
	return nil
}

func markdownHeader() string {
	return "| N × M | commit | load (window / failover) | add via API | CPU % master / follower median (max) | RSS MiB master / max | raft B/s | raft entries/s | log writes/s | fsync/s master / follower (strace) | disk write KiB/s master / median | CRM round ms | `ha status` ms median (max) | failover first / last s (services) | violations | lost lock / guard fence (during strace) |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
}

func markdownRow(r Result) string {
	if r.Error != "" && r.WindowMeasured == 0 && r.RaftBytesPerSecond == 0 {
		add := "—"
		if r.AddPerSecond > 0 {
			add = fmt.Sprintf("%.0f/s", r.AddPerSecond)
		}
		return fmt.Sprintf("| %d × %d | %s | — | %s | failed before the window (see below) | — | — | — | — | — | — | — | — | — | — | — |\n",
			r.Nodes, r.Services, r.Commit, add)
	}
	failover := fmt.Sprintf("%.2f / %.2f (%d)", r.FailoverFirstSeconds, r.FailoverLastSeconds, r.FailoverServices)
	if r.FailoverRecovered < r.FailoverServices {
		failover = fmt.Sprintf("**%d of %d recovered**", r.FailoverRecovered, r.FailoverServices)
	}
	return fmt.Sprintf("| %d × %d | %s | %.1f–%.1f / %.1f | %.0f/s | %.1f / %.1f (%.1f) | %.0f / %.0f | %.0f | %.1f | %.1f | %.1f / %.1f | %.0f / %.0f | %.2f | %.0f (%.0f) | %s | %d | %d / %d (%d / %d) |\n",
		r.Nodes, r.Services, r.Commit, min(r.LoadWindow[0], r.LoadWindow[1]), max(r.LoadWindow[0], r.LoadWindow[1]), r.LoadFailover,
		r.AddPerSecond, r.CPUMasterPct, r.CPUFollowerMedianPct, r.CPUFollowerMaxPct, r.RSSMasterMiB, r.RSSMaxMiB,
		r.RaftBytesPerSecond, r.RaftEntriesPerSecond, r.LogWritesPerSecond, r.FsyncMasterPerSecond, r.FsyncFollowerPerSecond,
		r.DiskWriteMasterBytesPerSecond/1024, r.DiskWriteMedianBytesPerSecond/1024, r.CRMRoundMeanMs,
		r.StatusMedianMs, r.StatusMaxMs, failover, r.Violations,
		r.LostLocks, r.GuardFences, r.LostLocksStrace, r.GuardFencesStrace)
}
