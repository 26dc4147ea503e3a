package crm

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"haxd/ha"
)

// This file is the placement seam. The manager asks a placer for node
// decisions and keeps it informed of every service change. Two placers
// exist: rulesPlacer (placer_rules.go), the default, wraps crm/placement
// with node and resource affinity rules, legacy groups, the static and
// dynamic schedulers and automatic rebalancing; basicPlacer below is the
// rule-less rule of placement.md §6.2 with the basic usage model (§7.1,
// §7.2), kept as the reference that tests compare rulesPlacer with. The
// hooks that basicPlacer answers trivially are marked "HOOK".

// nodePref is the node preference of a selection (placement.md §6.1).
type nodePref string

const (
	// prefNone keeps the current node unless rules, failback or maintenance
	// say otherwise.
	prefNone nodePref = "none"
	// prefBestScore picks the best node (recovery, rebalance-on-start).
	prefBestScore nodePref = "best-score"
	// prefTryNext picks the best node not yet tried after a failed start.
	prefTryNext nodePref = "try-next"
)

// roundView is what a placer sees of the cluster at the start of a round.
type roundView struct {
	// NodeStatus is the CRM node state of every known node.
	NodeStatus map[string]ha.NodeState
	// Services is the manager's service status; the placer must not modify it.
	Services map[ha.SID]*ha.ServiceStatus
	// Resources is this round's resources config.
	Resources map[ha.SID]*ha.ResourceConfig
	// Datacenter holds the crs options.
	Datacenter *ha.Datacenter
	// Rules and Groups are the raw rules and legacy groups configs.
	Rules, Groups []byte
}

// logLine is a line a placer wants logged, in order, at level.
type logLine struct {
	level slog.Level
	msg   string
}

// moveCommand is a migrate/relocate command of an operator or of automatic
// rebalancing.
type moveCommand struct {
	task   string // "migrate" or "relocate"
	sid    ha.SID
	target string
}

// String returns the command line, e.g. "migrate vm:101 node2".
func (c moveCommand) String() string { return c.task + " " + string(c.sid) + " " + c.target }

// moveDecision is the outcome of checking a move command (ha-semantics
// §8.1, placement.md §9).
type moveDecision struct {
	// queue lists the services that get the command: the service itself,
	// then any positively affine partners; empty when refused.
	queue []ha.SID
	// logs are the lines to log, in order.
	logs []logLine
}

// placer makes node decisions for the manager. Its shape follows
// crm/placement's Scheduler, so that an adapter around that type can
// replace basicPlacer without touching the state machine.
type placer interface {
	// updateMode refreshes the scheduler mode from the datacenter settings
	// (§3.6 step 4). HOOK: basic placement has one mode and logs nothing;
	// a full implementation logs "using scheduler mode ..." and
	// "switching scheduler mode ...".
	updateMode(dc *ha.Datacenter) []logLine
	// beginRound rebuilds the usage model from the status at the start of
	// a round and recompiles rules (§3.6 step 7). The placer keeps the
	// maps of v and reads them on later calls.
	beginRound(v roundView) []logLine
	// serviceChanged re-accounts sid after any change of its state, node
	// or target, or its addition or removal, during the round.
	serviceChanged(sid ha.SID) []logLine
	// selectNode returns the node sid should be on, or "" for none
	// (placement.md §6.2).
	selectNode(sid ha.SID, pref nodePref) (string, []logLine)
	// rebalanceOnStartEnabled reports crs.ha-rebalance-on-start.
	rebalanceOnStartEnabled() bool
	// rebalanceOnStart picks the start node of a service in request_start
	// (placement.md §8) and logs the "re-balance selected" line.
	rebalanceOnStart(sid ha.SID) (string, []logLine)
	// checkMove validates a migrate/relocate command when it is read.
	// HOOK: the resource-affinity part (negative blockers, positive
	// partners moving along) is empty without rules.
	checkMove(cmd moveCommand) moveDecision
	// autoRebalance runs automatic rebalancing (placement.md §10) and
	// returns the command to issue, if any. HOOK: never fires in basic
	// mode.
	autoRebalance() (*moveCommand, []logLine)
}

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
