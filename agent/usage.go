package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"haxd/crm/placement"
	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
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

// Sources of the node's measured usage (node_usage_source).
const (
	// NodeUsageProc measures the whole node from /proc.
	NodeUsageProc = "proc"
	// NodeUsageServices sums the agent's services' cgroup leaves: for
	// several agents sharing one kernel, whose /proc is the same.
	NodeUsageServices = "services"
)

// publishUsage samples /proc and the services' cgroup leaves every
// usage_interval, gossips the node's figures and, while the scheduler mode
// is dynamic, publishes the services' usage to the store when it changed
// beyond the thresholds or usage_max_interval passed.
func (a *Agent) publishUsage(ctx context.Context, cgroupParent string) {
	prev, err := readProc("/proc")
	if err != nil {
		a.log.Warn("node usage not available: the static and dynamic schedulers fall back to basic", "err", err)
		return
	}
	sampler := newLeafSampler()
	pub := &usagePublisher{cpu: float64(a.cfg.UsageCPUThresholdMillicores) / 1000, mem: float64(a.cfg.UsageMemoryThresholdMB) * (1 << 20),
		maxInterval: a.cfg.UsageMaxInterval}
	first := true
	for {
		now := a.clock.Now()
		services := sampler.sample(a.serviceLeaves(cgroupParent), now)
		cur, err := readProc("/proc")
		if err != nil {
			a.log.Warn("reading node usage failed", "err", err)
		} else {
			tags := usageTags(prev, cur, a.cfg.NodeCPUs, a.cfg.NodeMemoryMB)
			if a.cfg.NodeUsageSource == NodeUsageServices {
				cpu, mem := 0.0, 0.0
				for _, u := range services {
					cpu += u.CPU
					mem += u.Mem
				}
				f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
				tags[tagLoad], tags[tagMemUsed] = f(cpu), f(mem)
			}
			a.usage.mu.Lock()
			a.usage.tags = tags
			a.usage.mu.Unlock()
			prev = cur
			a.n.tagsMu.Lock()
			err := a.n.gossip.SetTags(a.tags())
			a.n.tagsMu.Unlock()
			if err != nil {
				a.log.Warn("gossip usage tags", "err", err)
			} else if first {
				a.log.Info("gossiping node usage for the scheduler", "tags", a.usage.get(), "node_usage_source", a.cfg.NodeUsageSource)
				first = false
			}
		}
		a.publishServiceUsage(ctx, pub, services, now)
		if !sleepCtx(ctx, a.clock, a.cfg.UsageInterval) {
			return
		}
	}
}

// publishServiceUsage writes services to the store if the scheduler mode
// is dynamic and pub says it is due.
func (a *Agent) publishServiceUsage(ctx context.Context, pub *usagePublisher, services map[ha.SID]store.ServiceUsage, now time.Time) {
	if a.n.store.Datacenter().CRS.Mode != placement.ModeDynamic {
		pub.reset() // publish at once when the mode becomes dynamic
		return
	}
	reason := pub.due(services, now)
	if reason == "" {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, min(a.cfg.Timing.LockTTL, 5*time.Second))
	defer cancel()
	if err := a.n.store.PublishServiceUsage(wctx, a.n.name, services); err != nil {
		a.log.Warn("publishing the services' measured usage failed", "err", err)
		return
	}
	pub.published(services, now)
	a.log.Info("published the services' measured usage for the dynamic scheduler", "why", reason, "services", len(services), "usage", usageText(services))
}

// usageText formats services for a log line, sorted by SID.
func usageText(services map[ha.SID]store.ServiceUsage) string {
	var b strings.Builder
	for _, sid := range slices.Sorted(maps.Keys(services)) {
		u := services[sid]
		fmt.Fprintf(&b, "%s=%.2fcores/%.0fMiB ", sid, u.CPU, u.Mem/(1<<20))
	}
	return strings.TrimSpace(b.String())
}

// serviceLeaves returns the cgroup leaf of every service of this node:
// the leaves under cgroupParent (exec and OCF services, named by their
// escaped SID) and the cgroups the fencer knows (systemd units).
func (a *Agent) serviceLeaves(cgroupParent string) map[ha.SID]string {
	out := a.n.fencer.serviceCgroups()
	if cgroupParent == "" {
		return out
	}
	ents, err := os.ReadDir(cgroupParent)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if sid, ok := leafSID(e.Name()); ok && e.IsDir() {
			out[sid] = filepath.Join(cgroupParent, e.Name())
		}
	}
	return out
}

// serviceCgroups returns the cgroup of every service on the own list.
func (f *fencer) serviceCgroups() map[ha.SID]string {
	out := map[ha.SID]string{}
	if f == nil {
		return out
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, name := range f.own {
		if sid, ok := leafSID(name); ok && t.Cgroup != "" {
			out[sid] = t.Cgroup
		}
	}
	return out
}

// leafSID turns a leaf name (resource.EscapeSID) or a SID into the SID.
func leafSID(name string) (ha.SID, bool) {
	if sid, err := ha.ParseSID(name); err == nil {
		return sid, true
	}
	un, err := url.PathUnescape(name)
	if err != nil {
		return "", false
	}
	sid, err := ha.ParseSID(un)
	return sid, err == nil
}

// leafSample is one reading of a cgroup leaf.
type leafSample struct {
	usec uint64 // cpu.stat usage_usec
	at   time.Time
}

// leafSampler turns successive readings of cgroup leaves into usage.
type leafSampler struct {
	prev map[string]leafSample // by cgroup directory
	// procRoot is /proc, for the memory fallback.
	procRoot string
	pageSize float64
}

func newLeafSampler() *leafSampler {
	return &leafSampler{prev: map[string]leafSample{}, procRoot: "/proc", pageSize: float64(os.Getpagesize())}
}

// sample reads every populated leaf at now and returns the usage of the
// services measured twice so far (CPU is a rate: the first reading only
// sets the base).
func (s *leafSampler) sample(leaves map[ha.SID]string, now time.Time) map[ha.SID]store.ServiceUsage {
	out := map[ha.SID]store.ServiceUsage{}
	seen := map[string]bool{}
	for _, sid := range slices.Sorted(maps.Keys(leaves)) {
		dir := leaves[sid]
		usec, mem, populated, err := s.readLeaf(dir)
		if err != nil || !populated {
			continue
		}
		seen[dir] = true
		p, had := s.prev[dir]
		s.prev[dir] = leafSample{usec: usec, at: now}
		if !had || !now.After(p.at) || usec < p.usec {
			continue
		}
		cores := float64(usec-p.usec) / float64(now.Sub(p.at).Microseconds())
		out[sid] = store.ServiceUsage{CPU: cores, Mem: mem}
	}
	for dir := range s.prev {
		if !seen[dir] {
			delete(s.prev, dir)
		}
	}
	return out
}

// readLeaf reads a cgroup v2 leaf: cpu.stat's usage_usec, memory.current
// (or, where the memory controller is not on the v2 hierarchy, the
// resident memory of its processes), and whether it has processes.
func (s *leafSampler) readLeaf(dir string) (usec uint64, mem float64, populated bool, err error) {
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return 0, 0, false, fmt.Errorf("read %s: %w", dir, err)
	}
	pids := strings.Fields(string(procs))
	if len(pids) == 0 {
		return 0, 0, false, nil
	}
	stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, 0, true, fmt.Errorf("read %s: %w", dir, err)
	}
	found := false
	for line := range strings.SplitSeq(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			if usec, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
				return 0, 0, true, fmt.Errorf("read %s/cpu.stat: usage_usec %q: %w", dir, v, err)
			}
			found = true
		}
	}
	if !found {
		return 0, 0, true, fmt.Errorf("read %s/cpu.stat: no usage_usec", dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "memory.current")); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil && v >= 0 {
			return usec, v, true, nil
		}
	}
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join(s.procRoot, pid, "statm"))
		if err != nil {
			continue // exited meanwhile
		}
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseFloat(f[1], 64); err == nil && pages >= 0 {
				mem += pages * s.pageSize
			}
		}
	}
	return usec, mem, true, nil
}

// usagePublisher decides when the services' usage is worth a store write:
// when a service appeared or went away, when one's CPU or memory moved by
// more than the thresholds since the last publication, or when maxInterval
// passed since it.
type usagePublisher struct {
	cpu, mem    float64 // thresholds: cores, bytes
	maxInterval time.Duration
	last        map[ha.SID]store.ServiceUsage
	lastAt      time.Time
	done        bool // published at least once since the last reset
}

// due returns why cur should be published at now, or "".
func (p *usagePublisher) due(cur map[ha.SID]store.ServiceUsage, now time.Time) string {
	switch {
	case !p.done:
		return "first measurement in dynamic mode"
	case now.Sub(p.lastAt) >= p.maxInterval:
		return "usage_max_interval passed"
	}
	for _, sid := range slices.Sorted(maps.Keys(cur)) {
		u := cur[sid]
		l, ok := p.last[sid]
		switch {
		case !ok:
			return fmt.Sprintf("service '%s' started", sid)
		case math.Abs(u.CPU-l.CPU) > p.cpu:
			return fmt.Sprintf("service '%s' cpu %.2f -> %.2f cores", sid, l.CPU, u.CPU)
		case math.Abs(u.Mem-l.Mem) > p.mem:
			return fmt.Sprintf("service '%s' memory %.0f -> %.0f MiB", sid, l.Mem/(1<<20), u.Mem/(1<<20))
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(p.last)) {
		if _, ok := cur[sid]; !ok {
			return fmt.Sprintf("service '%s' stopped", sid)
		}
	}
	return ""
}

// published records cur as published at now.
func (p *usagePublisher) published(cur map[ha.SID]store.ServiceUsage, now time.Time) {
	p.last, p.lastAt, p.done = maps.Clone(cur), now, true
}

// reset forgets the last publication.
func (p *usagePublisher) reset() { p.last, p.done = nil, false }

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

// serviceStats is a service's size for the schedulers: its configured
// cores and memory, and as usage its measured usage when there is one
// (dynamic mode: measured on its node), else its configured size. A
// service with neither has no stats.
func serviceStats(cd *ha.ResourceConfig, measured *store.ServiceUsage) (ha.ServiceStats, bool) {
	if cd == nil {
		return ha.ServiceStats{}, false
	}
	mem := float64(cd.MemoryMB) * (1 << 20)
	st := ha.ServiceStats{MaxCPU: cd.Cores, MaxMem: mem, CPU: cd.Cores, Mem: mem}
	if measured != nil {
		st.CPU, st.Mem = measured.CPU, measured.Mem
		if cd.MemoryMB <= 0 {
			st.MaxMem = measured.Mem // no declared size: what it uses
		}
		return st, true
	}
	if cd.Cores <= 0 && cd.MemoryMB <= 0 {
		return ha.ServiceStats{}, false
	}
	return st, true
}
