package placement

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"haxd/ha"
)

// Auto-rebalance methods.
const (
	MethodBruteforce = "bruteforce"
	MethodTOPSIS     = "topsis"
)

// rebalanceSettings are the effective auto-rebalance options.
type rebalanceSettings struct {
	threshold, margin float64
	hold              int
	method            string
}

func effectiveRebalance(o ha.CRSOptions) rebalanceSettings {
	set := func(key string, v float64) bool { return (o.Set != nil && o.Set[key]) || v != 0 }
	r := rebalanceSettings{threshold: 0.3, margin: 0.1, hold: 3, method: MethodBruteforce}
	if set("ha-auto-rebalance-threshold", o.AutoRebalanceThreshold) {
		r.threshold = o.AutoRebalanceThreshold
	}
	if set("ha-auto-rebalance-margin", o.AutoRebalanceMargin) {
		r.margin = o.AutoRebalanceMargin
	}
	if set("ha-auto-rebalance-hold-duration", float64(o.AutoRebalanceHoldDuration)) {
		r.hold = o.AutoRebalanceHoldDuration
	}
	if o.AutoRebalanceMethod == MethodTOPSIS {
		r.method = MethodTOPSIS
	}
	return r
}

// Imbalance returns the current imbalance of the online nodes (placement.md
// §10.2): 0 in basic mode.
func (s *Scheduler) Imbalance() float64 {
	if s.usage == nil || s.usage.mode == ModeBasic {
		return 0
	}
	return imbalance(s.usage.loads(true))
}

// rebalanceCandidate is one (bundle, target) move.
type rebalanceCandidate struct {
	leader  ha.SID
	members []ha.SID
	source  string
	target  string
	cpu     float64
	mem     float64
	after   float64 // truncated imbalance after the move
	crit    [4]float64
}

// AutoRebalance runs the automatic rebalancing of placement.md §10 once per
// round, after the round's commands were queued. It returns the command to
// issue (nil if none) and the log lines; the caller passes the command to
// CheckMove, which logs "got crm command" and adds the positive partners.
func (s *Scheduler) AutoRebalance() (*MoveCommand, []LogLine) {
	if !s.crs.AutoRebalance || (s.mode != ModeStatic && s.mode != ModeDynamic) || s.usage == nil {
		return nil, nil
	}
	for _, sd := range s.services {
		if sd.State == ha.StateMigrate || sd.State == ha.StateRelocate {
			return nil, nil
		}
		if sd.Cmd != nil && (sd.Cmd.Name == TaskMigrate || sd.Cmd.Name == TaskRelocate) {
			return nil, nil
		}
	}
	cfg := effectiveRebalance(s.crs)
	current := s.Imbalance()
	if current <= cfg.threshold {
		s.hold = 0
		return nil, nil
	}
	s.hold++
	if s.hold < cfg.hold {
		return nil, nil
	}
	s.hold = 0
	cands, err := s.rebalanceCandidates(cfg.method == MethodTOPSIS)
	if err != nil {
		return nil, []LogLine{warn("unable to score best balancing migration - %v", err)}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	best := s.chooseCandidate(cands, cfg.method)
	if (current-best.after)/current < cfg.margin {
		return nil, nil
	}
	cmd := &MoveCommand{Task: s.MoveTask(best.leader), SID: best.leader, Target: best.target}
	return cmd, []LogLine{info("auto rebalance - %s %s to %s (expected change for imbalance from %.2f to %.2f)",
		cmd.Task, cmd.SID, cmd.Target, current, best.after)}
}

// rebalanceCandidates builds the (bundle, target) candidates of §10.3 with
// their hypothetical imbalance and, for the topsis method, criteria.
func (s *Scheduler) rebalanceCandidates(withCriteria bool) ([]*rebalanceCandidate, error) {
	u := s.usage
	seen := map[ha.SID]bool{}
	var cands []*rebalanceCandidate
	hyp := u.loads(true)
	index := map[string]int{}
	for i, n := range u.online {
		index[n] = i
	}
	for _, sid := range s.sortedServices() {
		sd := s.services[sid]
		if sd.State != ha.StateStarted {
			continue
		}
		members := []ha.SID{sid}
		skip := false
		for _, p := range slices.Sorted(maps.Keys(s.compiled.Positive[sid])) {
			psd := s.services[p]
			if psd == nil {
				continue
			}
			switch psd.State {
			case ha.StateMigrate, ha.StateRelocate:
				skip = true
			case ha.StateStarted:
				members = append(members, p)
			}
		}
		if skip {
			continue
		}
		slices.Sort(members)
		leader := members[0]
		if seen[leader] {
			continue
		}
		seen[leader] = true
		node := s.services[leader].Node
		if slices.ContainsFunc(members, func(m ha.SID) bool { return s.services[m].Node != node }) {
			continue
		}
		_, pri := s.priorityClass(leader, u.online)
		_, separate := s.partnerNodes(leader, u.isOnline)
		var targets []string
		for _, n := range pri {
			if !separate[n] && n != node {
				targets = append(targets, n)
			}
		}
		if len(targets) == 0 {
			continue
		}
		var cpu, mem float64
		for _, m := range members {
			e := u.services[m]
			if e == nil || !e.hasStats || e.current == "" || e.target != "" {
				if m == leader {
					return nil, fmt.Errorf("leader '%s' is not present in the cluster usage", m)
				}
				return nil, fmt.Errorf("resource '%s' is not present in the cluster usage", m)
			}
			if u.mode == ModeStatic {
				cpu += e.stats.MaxCPU
				mem += e.stats.MaxMem
			} else {
				cpu += e.stats.CPU
				mem += e.stats.Mem
			}
		}
		src := u.services[leader].current
		si := index[src]
		for _, t := range targets {
			ti := index[t]
			saved := [2]nodeLoad{hyp[si], hyp[ti]}
			hyp[si].cpu = max(0, hyp[si].cpu-cpu)
			hyp[si].mem = max(0, hyp[si].mem-mem)
			hyp[ti].cpu += cpu
			hyp[ti].mem += mem
			c := &rebalanceCandidate{leader: leader, members: members, source: src, target: t,
				cpu: cpu, mem: mem, after: truncate15(imbalance(hyp))}
			if withCriteria {
				c.crit = criteria(hyp)
			}
			cands = append(cands, c)
			hyp[si], hyp[ti] = saved[0], saved[1]
		}
	}
	return cands, nil
}

// chooseCandidate picks the move of §10.4.
func (s *Scheduler) chooseCandidate(cands []*rebalanceCandidate, method string) *rebalanceCandidate {
	if method == MethodTOPSIS {
		alts := make([][4]float64, len(cands))
		for i, c := range cands {
			alts[i] = c.crit
		}
		scores := topsis(alts)
		best := 0
		for i := range cands {
			if scores[i] > scores[best] {
				best = i
			}
		}
		return cands[best]
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if c.after < best.after || c.after == best.after && lessCandidate(c, best) {
			best = c
		}
	}
	return best
}

func lessCandidate(a, b *rebalanceCandidate) bool {
	if a.leader != b.leader {
		return a.leader < b.leader
	}
	if c := strings.Compare(a.source, b.source); c != 0 {
		return c < 0
	}
	return a.target < b.target
}
