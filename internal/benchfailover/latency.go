package main

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"haxd/internal/cluster"
)

// histogram is one Prometheus histogram summed over the nodes: cumulative
// counts per upper bound.
type histogram struct {
	le     []float64
	counts map[float64]float64
	total  float64
}

// scrapeHistogram sums the histogram name over every node's /metrics
// (nodes without a metrics address, or down, are skipped).
func scrapeHistogram(cl *cluster.Cluster, name string) histogram {
	h := histogram{counts: map[float64]float64{}}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, n := range cl.Nodes {
		if n.Metrics == "" {
			continue
		}
		resp, err := client.Get("http://" + n.Metrics + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
			if !ok {
				continue
			}
			bound, val, ok := strings.Cut(rest, `"} `)
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				continue
			}
			if bound == "+Inf" {
				h.total += v
				continue
			}
			b, err := strconv.ParseFloat(bound, 64)
			if err != nil {
				continue
			}
			if _, seen := h.counts[b]; !seen {
				h.le = append(h.le, b)
			}
			h.counts[b] += v
		}
		resp.Body.Close()
	}
	sort.Float64s(h.le)
	return h
}

// bound returns the smallest bucket bound at or below which at least the
// fraction p of the observations lie ("+Inf" beyond the last bucket).
func (h histogram) bound(p float64) string {
	if h.total == 0 {
		return "no samples"
	}
	for _, b := range h.le {
		if h.counts[b] >= p*h.total {
			return fmt.Sprintf("≤ %g ms", b*1000)
		}
	}
	return "above the last bucket"
}

// printLatencies reports the renewal and raft commit latencies the
// agents measured (since each one's last start).
func printLatencies(cl *cluster.Cluster) {
	for _, m := range []struct{ name, what string }{
		{"haxd_lock_renewal_seconds", "own agent lock renewal (send to acknowledgement)"},
		{"haxd_raft_commit_seconds", "raft commit on the leader"},
	} {
		h := scrapeHistogram(cl, m.name)
		fmt.Printf("%s: %.0f samples, p50 %s, p99 %s, p99.9 %s\n", m.what, h.total, h.bound(0.5), h.bound(0.99), h.bound(0.999))
	}
}
