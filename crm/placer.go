package crm

import (
	"log/slog"

	"haxd/ha"
)

// This file is the placement seam. The manager asks a placer for node
// decisions and keeps it informed of every service change. Two placers
// exist: rulesPlacer (placer_rules.go), the default, wraps crm/placement
// with node and resource affinity rules, legacy groups, the static and
// dynamic schedulers and automatic rebalancing; basicPlacer (a test file,
// basicplacer_test.go) is the rule-less rule of placement.md §6.2 with the
// basic usage model (§7.1, §7.2), the reference that tests compare
// rulesPlacer with. The hooks that basicPlacer answers trivially are
// marked "HOOK".

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
