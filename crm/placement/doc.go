// Package placement decides where HA services run: it parses the rules and
// legacy groups configs, validates, transforms and compiles the rules
// (placement.md §2-§5), selects nodes (§6), keeps the usage model of the
// basic, static and dynamic schedulers with TOPSIS scoring (§7), and
// implements rebalance-on-start (§8), the affinity checks of migrate and
// relocate commands (§9) and automatic rebalancing (§10).
//
// The package is pure and deterministic: it imports only ha and the
// standard library, never reads a clock and iterates in sorted order. It
// does not log by itself: every method that has something to say returns
// LogLine values, in the order PVE emits them, so the CRM can interleave
// them exactly with its own lines.
//
// # Use from the CRM's manage round
//
// Create one Scheduler per mastership (New), then per round:
//
//	sched := placement.New(placement.Options{}) // when becoming master
//
//	// step 4: scheduler mode ("using ..." / "switching ...")
//	logAll(sched.UpdateMode(dc))
//	// step 7: usage model and (re)compiled rules ("Drop rule ..." lines)
//	logAll(sched.Prepare(placement.Round{
//		Resources: resources, Rules: rulesRaw, Groups: groupsRaw, Datacenter: dc,
//		NodeStatus: ms.NodeStatus, Services: ms.ServiceStatus, Stats: env,
//	}))
//	// step 8: each migrate/relocate command line
//	d := sched.CheckMove(placement.MoveCommand{Task: "migrate", SID: sid, Target: node})
//	logAll(d.Logs)
//	for _, q := range d.Queue { ms.ServiceStatus[q].Cmd = &ha.ServiceCmd{Name: "migrate", Target: node} }
//	// step 9: auto-rebalance; feed its command through CheckMove as above
//	cmd, logs := sched.AutoRebalance()
//	logAll(logs)
//	if cmd != nil {
//		d := sched.CheckMove(*cmd) // logs "got crm command: ..." and partners
//	}
//	// step 11: in the handlers
//	node, logs := sched.Select(sid, placement.PreferNone)   // started
//	node, logs := sched.Select(sid, placement.PreferTryNext) // after a start failure
//	node, logs := sched.Select(sid, placement.PreferBestScore) // recovery
//	if sched.RebalanceOnStartEnabled() { node, logs := sched.RebalanceOnStart(sid) } // request_start
//	// after every change_state (and add/remove) of a service:
//	logAll(sched.ServiceChanged(sid))
//
// Select returns "" for "no node". The failback in effect for a service
// (which legacy groups override) is Failback(sid); MoveTask(sid) tells
// migrate from relocate.
//
// Outside the CRM, ParseRules, ParseGroups, ApplyGroups, Canonicalize and
// Compile are the individual pipeline stages, CheckRulesFile renders the
// rules_cfgs test format used by `haxd rules check`, ApplyRuleChange
// validates a rule create/update like PVE's API (§5.5) and RuleSet.Format
// writes a rules config back.
package placement
