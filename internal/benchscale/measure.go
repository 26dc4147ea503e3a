package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"haxd/internal/cluster"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is what /proc says about one node's agent and guard.
type procSample struct {
	agentPID   int
	agentTicks uint64 // utime + stime
	agentRSS   uint64 // bytes
	writeBytes uint64 // /proc/PID/io write_bytes
	guardTicks uint64
}

func procAll(cl *cluster.Cluster) map[string]procSample {
	out := map[string]procSample{}
	for _, n := range cl.Nodes {
		s := procSample{agentPID: n.AgentPID()}
		if s.agentPID > 0 {
			s.agentTicks, _ = cpuTicks(s.agentPID)
			s.agentRSS = statusField(s.agentPID, "VmRSS:") * 1024
			s.writeBytes = ioField(s.agentPID, "write_bytes:")
		}
		if g := n.GuardPID(); g > 0 {
			s.guardTicks, _ = cpuTicks(g)
		}
		out[n.Name] = s
	}
	return out
}

// cpuTicks returns utime + stime of pid (fields 14 and 15 of
// /proc/PID/stat, counted after the parenthesised command name).
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return u + st, nil
}

// statusField returns the number after key in /proc/PID/status (kB for
// the Vm fields), 0 when absent.
func statusField(pid int, key string) uint64 {
	return keyedField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// ioField returns a counter of /proc/PID/io, 0 when absent.
func ioField(pid int, key string) uint64 { return keyedField(fmt.Sprintf("/proc/%d/io", pid), key) }

func keyedField(path, key string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				v, _ := strconv.ParseUint(fs[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// loadAvg returns the machine's 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// metricSample holds the counters read from one agent's metrics page.
type metricSample struct {
	crmSum, crmCount                  float64
	raftBytes, raftEntries, logWrites float64
}

// scrapeAll reads every node's metrics page.
func scrapeAll(ctx context.Context, cl *cluster.Cluster) (map[string]metricSample, error) {
	out := map[string]metricSample{}
	for _, n := range cl.Nodes {
		s, err := scrape(ctx, n.Metrics)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", n.Name, err)
		}
		out[n.Name] = s
	}
	return out, nil
}

func scrape(ctx context.Context, addr string) (metricSample, error) {
	var s metricSample
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	want := map[string]*float64{
		"haxd_crm_round_seconds_sum":   &s.crmSum,
		"haxd_crm_round_seconds_count": &s.crmCount,
		"haxd_raft_log_bytes_total":    &s.raftBytes,
		"haxd_raft_log_entries_total":  &s.raftEntries,
		"haxd_raft_log_batches_total":  &s.logWrites,
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return s, fmt.Errorf("metric %s: value %q: %w", name, val, err)
			}
			*p = v
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if found != len(want) {
		return s, fmt.Errorf("GET /metrics: %d of the %d metrics the benchmark reads (haxd_crm_round_seconds, haxd_raft_log_*_total); an agent from before these metrics?", found, len(want))
	}
	return s, nil
}
