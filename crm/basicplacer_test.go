package crm

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"haxd/ha"
)

// basicPlacer implements placement.md §6.2 without any rules (allowed and
// pri are the online nodes) and the basic usage model of §7.1/§7.2: a
// node's score is the number of services counted on it.
type basicPlacer struct {
	view   roundView
	online []string
	isOn   map[string]bool
	count  map[string]int
	// counted records on which nodes each service is counted, so that a
	// change can remove its old contribution.
	counted map[ha.SID][2]string
}

func newBasicPlacer() *basicPlacer {
	return &basicPlacer{}
}

func (p *basicPlacer) updateMode(*ha.Datacenter) []logLine { return nil }

func (p *basicPlacer) beginRound(v roundView) []logLine {
	p.view = v
	p.online = p.online[:0]
	p.isOn = make(map[string]bool, len(v.NodeStatus))
	p.count = make(map[string]int, len(v.NodeStatus))
	for _, n := range slices.Sorted(maps.Keys(v.NodeStatus)) {
		if v.NodeStatus[n] == ha.NodeOnline {
			p.online = append(p.online, n)
			p.isOn[n] = true
			p.count[n] = 0
		}
	}
	p.counted = make(map[ha.SID][2]string, len(v.Services))
	for sid, sd := range v.Services {
		p.add(sid, sd)
	}
	return nil
}

// usedNodes returns the nodes sd is counted on (placement.md §7.1),
// before the online filter.
func usedNodes(sd *ha.ServiceStatus) (current, target string) {
	switch sd.State {
	case ha.StateStarted, ha.StateRequestStop, ha.StateFence, ha.StateRecovery,
		ha.StateFreeze, ha.StateError:
		return sd.Node, ""
	case ha.StateMigrate, ha.StateRelocate:
		return sd.Node, sd.Target
	case ha.StateRequestStartBalance:
		return "", sd.Target
	}
	return "", ""
}

func (p *basicPlacer) add(sid ha.SID, sd *ha.ServiceStatus) {
	cur, tgt := usedNodes(sd)
	var c [2]string
	if cur != "" && p.isOn[cur] {
		p.count[cur]++
		c[0] = cur
	}
	if tgt != "" && p.isOn[tgt] {
		p.count[tgt]++
		c[1] = tgt
	}
	if c != [2]string{} {
		p.counted[sid] = c
	}
}

func (p *basicPlacer) serviceChanged(sid ha.SID) []logLine {
	if c, ok := p.counted[sid]; ok {
		for _, n := range c {
			if n != "" {
				p.count[n]--
			}
		}
		delete(p.counted, sid)
	}
	if sd := p.view.Services[sid]; sd != nil {
		p.add(sid, sd)
	}
	return nil
}

func (p *basicPlacer) selectNode(sid ha.SID, pref nodePref) (string, []logLine) {
	return p.selectBasic(sid, pref), nil
}

func (p *basicPlacer) selectBasic(sid ha.SID, pref nodePref) string {
	sd, cd := p.view.Services[sid], p.view.Resources[sid]
	// Steps 1-3: no node-affinity or resource-affinity rules, so
	// allowed = pri = online, together and separate are empty.
	if sd == nil || len(p.online) == 0 {
		return ""
	}
	current := sd.Node
	failback := cd == nil || cd.Failback
	// Step 4: stay put without failback.
	if pref == prefNone && !failback && p.isOn[current] {
		return current
	}
	// Fast path of steps 5-9 for the common case: preference none keeps an
	// online current node unless the maintenance fallback is online.
	if pref == prefNone && p.isOn[current] && (sd.MaintenanceNode == "" || !p.isOn[sd.MaintenanceNode]) {
		return current
	}
	pri := make([]string, 0, len(p.online))
	for _, n := range p.online {
		// Step 5: try-next drops the tried nodes.
		if pref == prefTryNext && slices.Contains(sd.FailedNodes, n) {
			continue
		}
		pri = append(pri, n)
	}
	// Steps 6-7 (resource affinity) are HOOKs of a rules-aware placer.
	// Step 8: maintenance fallback.
	if sd.MaintenanceNode != "" && slices.Contains(pri, sd.MaintenanceNode) {
		return sd.MaintenanceNode
	}
	// Step 9: keep the current node.
	if pref == prefNone && slices.Contains(pri, current) {
		return current
	}
	// Step 10: score, ties by name (pri is already sorted by name and the
	// sort is stable).
	slices.SortStableFunc(pri, func(a, b string) int { return cmp.Compare(p.count[a], p.count[b]) })
	// Step 11.
	if len(pri) == 0 {
		return ""
	}
	if pref == prefTryNext {
		if i := slices.Index(pri, current); i >= 0 && i < len(pri)-1 {
			return pri[i+1]
		}
	}
	return pri[0]
}

func (p *basicPlacer) rebalanceOnStartEnabled() bool {
	return p.view.Datacenter != nil && p.view.Datacenter.CRS.RebalanceOnStart
}

func (p *basicPlacer) rebalanceOnStart(sid ha.SID) (string, []logLine) {
	sd := p.view.Services[sid]
	if sd == nil {
		return "", nil
	}
	n := p.selectBasic(sid, prefBestScore)
	if n == "" {
		// PVE does not guard this case; haxd keeps the current node.
		n = sd.Node
	}
	which := "current"
	if n != sd.Node {
		which = "new"
	}
	return n, []logLine{{slog.LevelInfo, fmt.Sprintf("service %s: re-balance selected %s node %s for startup", sid, which, n)}}
}

func (p *basicPlacer) checkMove(cmd moveCommand) moveDecision {
	line := cmd.String()
	sd := p.view.Services[cmd.sid]
	switch {
	case sd == nil:
		return moveDecision{logs: []logLine{{slog.LevelError, "crm command error - no such service: " + line}}}
	case p.view.NodeStatus[cmd.target] != ha.NodeOnline:
		return moveDecision{logs: []logLine{{slog.LevelError, "crm command error - node not online: " + line}}}
	case sd.Node == cmd.target:
		return moveDecision{logs: []logLine{{slog.LevelInfo, "ignore crm command - service already on target node: " + line}}}
	}
	// HOOK: resource-affinity checks (negative blockers, positive
	// partners) go here; there are no rules in basic placement.
	return moveDecision{queue: []ha.SID{cmd.sid}, logs: []logLine{{slog.LevelInfo, "got crm command: " + line}}}
}

func (p *basicPlacer) autoRebalance() (*moveCommand, []logLine) { return nil, nil }
