package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"haxd/gossip"
	"haxd/ha"
)

// Gossip tags with this node's usage for the static and dynamic
// schedulers (placement.md §7): cores and memory in bytes, and the
// measured CPU load in cores and used memory in bytes.
const (
	tagCPUs    = "cpus"
	tagMem     = "mem"
	tagLoad    = "load"
	tagMemUsed = "memused"
)

// procSample is one reading of /proc.
type procSample struct {
	cpus              float64
	memTotal, memUsed float64 // bytes
	busy, total       uint64  // jiffies from /proc/stat's cpu line
}

// readProc reads CPU count, memory and CPU times under root ("/proc").
func readProc(root string) (procSample, error) {
	mem, err := os.ReadFile(filepath.Join(root, "meminfo"))
	if err != nil {
		return procSample{}, fmt.Errorf("read meminfo: %w", err)
	}
	stat, err := os.ReadFile(filepath.Join(root, "stat"))
	if err != nil {
		return procSample{}, fmt.Errorf("read stat: %w", err)
	}
	return parseProc(mem, stat)
}

// parseProc parses the contents of /proc/meminfo and /proc/stat.
func parseProc(meminfo, stat []byte) (procSample, error) {
	var s procSample
	var avail float64
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(fields[1], 64)
		if err != nil || kb < 0 || math.IsInf(kb, 0) || math.IsNaN(kb) {
			continue
		}
		switch fields[0] {
		case "MemTotal:":
			s.memTotal = kb * 1024
		case "MemAvailable:":
			avail = kb * 1024
		}
	}
	if s.memTotal <= 0 || math.IsInf(s.memTotal, 0) {
		return s, errors.New("read meminfo: no MemTotal")
	}
	s.memUsed = max(0, s.memTotal-avail)
	for line := range strings.SplitSeq(string(stat), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) > 4 && fields[0] == "cpu":
			for i, v := range fields[1:] {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return s, fmt.Errorf("read stat: cpu field %q: %w", v, err)
				}
				if s.total+n < s.total {
					return s, errors.New("read stat: cpu times overflow")
				}
				s.total += n
				if i != 3 && i != 4 { // idle and iowait
					s.busy += n
				}
			}
		case len(fields) > 0 && strings.HasPrefix(fields[0], "cpu"):
			s.cpus++
		}
	}
	if s.cpus == 0 {
		s.cpus = float64(runtime.NumCPU())
	}
	return s, nil
}

// usageTags turns two samples into the gossip tags, with the configured
// overrides of cores and memory (0: measured).
func usageTags(prev, cur procSample, cpus int, memMB int) map[string]string {
	maxCPU, maxMem := cur.cpus, cur.memTotal
	if cpus > 0 {
		maxCPU = float64(cpus)
	}
	if memMB > 0 {
		maxMem = float64(memMB) * (1 << 20)
	}
	load := 0.0
	if cur.total > prev.total && cur.busy >= prev.busy {
		load = min(float64(cur.busy-prev.busy)/float64(cur.total-prev.total), 1) * cur.cpus
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return map[string]string{tagCPUs: f(maxCPU), tagMem: f(maxMem), tagLoad: f(load), tagMemUsed: f(cur.memUsed)}
}

// usageTagsState holds the tags the agent gossips besides its identity.
type usageTagsState struct {
	mu   sync.Mutex
	tags map[string]string
}

func (u *usageTagsState) get() map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.tags)
}

// publishUsage samples /proc every usage_interval and gossips the figures.
func (a *Agent) publishUsage(ctx context.Context) {
	prev, err := readProc("/proc")
	if err != nil {
		a.log.Warn("node usage not available: the static and dynamic schedulers fall back to basic", "err", err)
		return
	}
	first := true
	for {
		cur, err := readProc("/proc")
		if err != nil {
			a.log.Warn("reading node usage failed", "err", err)
		} else {
			a.usage.mu.Lock()
			a.usage.tags = usageTags(prev, cur, a.cfg.NodeCPUs, a.cfg.NodeMemoryMB)
			a.usage.mu.Unlock()
			prev = cur
			a.n.tagsMu.Lock()
			err := a.n.gossip.SetTags(a.tags())
			a.n.tagsMu.Unlock()
			if err != nil {
				a.log.Warn("gossip usage tags", "err", err)
			} else if first {
				a.log.Info("gossiping node usage for the scheduler", "tags", a.usage.get())
				first = false
			}
		}
		if !sleepCtx(ctx, a.cfg.UsageInterval) {
			return
		}
	}
}

// nodeStats reads the usage tags of the online members.
func nodeStats(members []gossip.Member) (map[string]ha.NodeStats, error) {
	out := map[string]ha.NodeStats{}
	for _, m := range members {
		if m.State != gossip.StateOnline {
			continue
		}
		var st ha.NodeStats
		for _, f := range []struct {
			tag string
			dst *float64
		}{{tagCPUs, &st.MaxCPU}, {tagMem, &st.MaxMem}, {tagLoad, &st.CPU}, {tagMemUsed, &st.Mem}} {
			v, err := strconv.ParseFloat(m.Tags[f.tag], 64)
			if err != nil {
				return nil, fmt.Errorf("node '%s' gossips no usage (tag %s %q)", m.Name, f.tag, m.Tags[f.tag])
			}
			*f.dst = v
		}
		out[m.Name] = st
	}
	return out, nil
}

// serviceStats is a service's configured size: cores and memory; the
// measured usage is taken to be the size (the agent does not measure
// services).
func serviceStats(cd *ha.ResourceConfig) (ha.ServiceStats, bool) {
	if cd == nil || (cd.Cores <= 0 && cd.MemoryMB <= 0) {
		return ha.ServiceStats{}, false
	}
	mem := float64(cd.MemoryMB) * (1 << 20)
	return ha.ServiceStats{MaxCPU: cd.Cores, MaxMem: mem, CPU: cd.Cores, Mem: mem}, true
}
