package placement

import (
	"fmt"
	"maps"
	"slices"

	"haxd/ha"
)

// Scheduler modes (crs.ha).
const (
	ModeBasic   = "basic"
	ModeStatic  = "static"
	ModeDynamic = "dynamic"
)

// StatsSource provides the figures of the static and dynamic schedulers.
// ha.Env implements it.
type StatsSource interface {
	// StaticNodeStats returns each node's capacity.
	StaticNodeStats() (map[string]ha.NodeStats, error)
	// DynamicNodeStats returns each node's capacity and measured load.
	DynamicNodeStats() (map[string]ha.NodeStats, error)
	// ServiceStats returns the size and usage of sid, and whether any is known.
	ServiceStats(sid ha.SID) (ha.ServiceStats, bool)
}

// usageEntry is one service as accounted by the usage model.
type usageEntry struct {
	// current and target are the online nodes the service is counted on
	// (placement.md §7.1); "" when not counted there.
	current, target string
	// running is the dynamic-mode running flag (§7.1).
	running bool
	// stats are the service's figures; hasStats whether they were available
	// (always true in basic mode).
	stats    ha.ServiceStats
	hasStats bool
}

// usage is the per-round usage model of the online nodes (placement.md §7).
type usage struct {
	mode     string // effective mode: basic, static or dynamic
	online   []string
	isOnline map[string]bool
	count    map[string]int
	base     map[string]ha.NodeStats
	attached map[string]map[ha.SID]bool
	services map[ha.SID]*usageEntry
	// cache holds loads(false) and loads(true) until the next change.
	cache [2][]nodeLoad
	// slab holds unused entries, allocated together for a rebuild.
	slab []usageEntry
}

// usedNodes returns the online nodes sd is counted on (§7.1): its current
// node and its target, each "" when not counted.
func usedNodes(sd *ha.ServiceStatus, isOnline map[string]bool) (current, target string) {
	if sd == nil {
		return "", ""
	}
	switch sd.State {
	case ha.StateStarted, ha.StateRequestStop, ha.StateFence, ha.StateRecovery, ha.StateFreeze, ha.StateError:
		if isOnline[sd.Node] {
			current = sd.Node
		}
	case ha.StateMigrate, ha.StateRelocate:
		if isOnline[sd.Node] {
			current = sd.Node
		}
		if isOnline[sd.Target] {
			target = sd.Target
		}
	case ha.StateRequestStartBalance:
		if isOnline[sd.Target] {
			target = sd.Target
		}
	}
	return current, target
}

// newUsage initialises the model for mode over the online nodes. For static
// and dynamic it reads the node stats; on failure it returns an error and
// the caller falls back to basic.
func newUsage(mode string, online []string, stats StatsSource) (*usage, error) {
	u := &usage{mode: mode, online: online, isOnline: map[string]bool{}, count: map[string]int{},
		base: map[string]ha.NodeStats{}, attached: map[string]map[ha.SID]bool{}, services: map[ha.SID]*usageEntry{}}
	for _, n := range online {
		u.isOnline[n] = true
		u.attached[n] = map[ha.SID]bool{}
	}
	if mode == ModeBasic {
		return u, nil
	}
	if stats == nil {
		return nil, fmt.Errorf("no stats source")
	}
	var (
		ns  map[string]ha.NodeStats
		err error
	)
	if mode == ModeStatic {
		ns, err = stats.StaticNodeStats()
	} else {
		ns, err = stats.DynamicNodeStats()
	}
	if err != nil {
		return nil, fmt.Errorf("read node stats: %w", err)
	}
	for _, n := range online {
		st, ok := ns[n]
		if !ok || st.MaxCPU <= 0 || st.MaxMem <= 0 {
			return nil, fmt.Errorf("node '%s' has no maxcpu or maxmem", n)
		}
		if mode == ModeStatic {
			st.CPU, st.Mem = 0, 0
		}
		u.base[n] = st
	}
	return u, nil
}

// add accounts sid with status sd; it returns a warning text when the
// service's stats are missing in static/dynamic mode (it is then counted for
// nothing but its positions).
func (u *usage) add(sid ha.SID, sd *ha.ServiceStatus, stats StatsSource) string {
	e := u.entry(sd)
	cur, tgt := e.current, e.target
	u.services[sid] = e
	u.cache = [2][]nodeLoad{}
	if cur == "" && tgt == "" {
		return ""
	}
	if u.mode != ModeBasic {
		st, ok := ha.ServiceStats{}, false
		if stats != nil {
			st, ok = stats.ServiceStats(sid)
		}
		if !ok {
			e.hasStats = false
			return fmt.Sprintf("unable to add service '%s' - no %s usage stats available", sid, u.mode)
		}
		e.stats = st
	}
	for _, n := range []string{cur, tgt} {
		if n != "" {
			u.count[n]++
			u.attached[n][sid] = true
		}
	}
	return ""
}

// entry returns the positions and running flag of sd as add accounts
// them, with hasStats set and no stats.
func (u *usage) entry(sd *ha.ServiceStatus) *usageEntry {
	cur, tgt, running := u.position(sd)
	var e *usageEntry
	if len(u.slab) > 0 {
		e, u.slab = &u.slab[0], u.slab[1:]
	} else {
		e = &usageEntry{}
	}
	*e = usageEntry{current: cur, target: tgt, running: running, hasStats: true}
	return e
}

// position returns the online nodes sd is counted on (usedNodes) and its
// dynamic-mode running flag (§7.1).
func (u *usage) position(sd *ha.ServiceStatus) (current, target string, running bool) {
	current, target = usedNodes(sd, u.isOnline)
	if sd != nil {
		running = (sd.State == ha.StateStarted && sd.Running) || (sd.State != ha.StateStarted && current != "")
	}
	return current, target, running
}

// syncBasic brings a basic-mode model up to date with services, as if it
// had been rebuilt from them: it re-adds only the services whose positions
// or running flag changed and forgets the ones no longer present. In basic
// mode add never warns and only counts positions, so the order of the
// changes does not matter and the result equals a fresh rebuild.
func (u *usage) syncBasic(services map[ha.SID]*ha.ServiceStatus) {
	for sid := range u.services {
		if _, ok := services[sid]; !ok {
			u.remove(sid)
		}
	}
	for sid, sd := range services {
		if e, ok := u.services[sid]; ok {
			cur, tgt, running := u.position(sd)
			if e.current == cur && e.target == tgt && e.running == running && e.hasStats {
				continue
			}
			u.remove(sid)
		}
		u.add(sid, sd, nil)
	}
}

// remove forgets sid.
func (u *usage) remove(sid ha.SID) {
	e, ok := u.services[sid]
	if !ok {
		return
	}
	delete(u.services, sid)
	u.cache = [2][]nodeLoad{}
	if !e.hasStats {
		return
	}
	for _, n := range []string{e.current, e.target} {
		if n != "" {
			u.count[n]--
			delete(u.attached[n], sid)
		}
	}
}

// addStarted adds a service's configured size to l as a started service.
func addStarted(l *nodeLoad, st ha.ServiceStats) {
	cpu := st.MaxCPU
	if cpu == 0 {
		cpu = l.maxCPU
	}
	l.cpu += cpu
	l.mem += st.MaxMem
}

// loads returns the aggregated loads of the online nodes, in sorted order:
// for scoring a start (forBalance false) or for the imbalance (true),
// placement.md §7.3.2.
func (u *usage) loads(forBalance bool) []nodeLoad {
	ci := 0
	if forBalance {
		ci = 1
	}
	if u.cache[ci] == nil {
		u.cache[ci] = u.computeLoads(forBalance)
	}
	return slices.Clone(u.cache[ci])
}

// computeLoads sums the loads of loads() in sorted node and SID order.
func (u *usage) computeLoads(forBalance bool) []nodeLoad {
	out := make([]nodeLoad, len(u.online))
	for i, n := range u.online {
		b := u.base[n]
		l := nodeLoad{maxCPU: b.MaxCPU, maxMem: b.MaxMem, cpu: b.CPU, mem: b.Mem}
		if u.mode == ModeStatic || (u.mode == ModeDynamic && !forBalance) {
			for _, sid := range slices.Sorted(maps.Keys(u.attached[n])) {
				e := u.services[sid]
				if u.mode == ModeDynamic && e.running {
					continue
				}
				addStarted(&l, e.stats)
			}
		}
		out[i] = l
	}
	return out
}

// scores returns a score per online node for placing sid (lower is better),
// or an error when the service cannot be scored (every node then compares
// equal).
func (u *usage) scores(sid ha.SID, stats StatsSource) (map[string]float64, error) {
	out := make(map[string]float64, len(u.online))
	if u.mode == ModeBasic {
		for _, n := range u.online {
			out[n] = float64(u.count[n])
		}
		return out, nil
	}
	var st ha.ServiceStats
	ok := false
	if e := u.services[sid]; e != nil && e.hasStats && (e.current != "" || e.target != "") {
		st, ok = e.stats, true
	} else if stats != nil {
		st, ok = stats.ServiceStats(sid)
	}
	if !ok {
		return nil, fmt.Errorf("no %s usage stats for service '%s'", u.mode, sid)
	}
	loads := u.loads(false)
	alts := make([][4]float64, len(loads))
	for k := range loads {
		alt := slices.Clone(loads)
		addStarted(&alt[k], st)
		alts[k] = criteria(alt)
	}
	s := topsis(alts)
	for k, n := range u.online {
		out[n] = -s[k]
	}
	return out, nil
}
