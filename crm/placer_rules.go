package crm

import (
	"haxd/crm/placement"
	"haxd/ha"
)

// rulesPlacer adapts crm/placement's Scheduler (rules, legacy groups,
// static/dynamic scheduling, rebalancing) to the placer seam. It is the
// manager's default placer; basicPlacer is the rule-less reference it must
// agree with when no rules are configured.
type rulesPlacer struct {
	env ha.Env
	s   *placement.Scheduler
}

func newRulesPlacer(env ha.Env) *rulesPlacer {
	live := func(sid ha.SID) bool {
		a := env.ResourceAgent(sid.Type())
		return a != nil && a.LiveMigratable()
	}
	return &rulesPlacer{env: env, s: placement.New(placement.Options{LiveMigratable: live})}
}

func convertLines(in []placement.LogLine) []logLine {
	if len(in) == 0 {
		return nil
	}
	out := make([]logLine, len(in))
	for i, l := range in {
		out[i] = logLine{level: l.Level, msg: l.Msg}
	}
	return out
}

func (p *rulesPlacer) updateMode(dc *ha.Datacenter) []logLine {
	return convertLines(p.s.UpdateMode(dc))
}

func (p *rulesPlacer) beginRound(v roundView) []logLine {
	return convertLines(p.s.Prepare(placement.Round{
		Resources: v.Resources, Rules: v.Rules, Groups: v.Groups, Datacenter: v.Datacenter,
		NodeStatus: v.NodeStatus, Services: v.Services, Stats: p.env,
	}))
}

func (p *rulesPlacer) serviceChanged(sid ha.SID) []logLine {
	return convertLines(p.s.ServiceChanged(sid))
}

func (p *rulesPlacer) selectNode(sid ha.SID, pref nodePref) (string, []logLine) {
	pp := placement.PreferNone
	switch pref {
	case prefBestScore:
		pp = placement.PreferBestScore
	case prefTryNext:
		pp = placement.PreferTryNext
	}
	n, logs := p.s.Select(sid, pp)
	return n, convertLines(logs)
}

func (p *rulesPlacer) rebalanceOnStartEnabled() bool { return p.s.RebalanceOnStartEnabled() }

func (p *rulesPlacer) rebalanceOnStart(sid ha.SID) (string, []logLine) {
	n, logs := p.s.RebalanceOnStart(sid)
	return n, convertLines(logs)
}

func (p *rulesPlacer) checkMove(cmd moveCommand) moveDecision {
	d := p.s.CheckMove(placement.MoveCommand{Task: cmd.task, SID: cmd.sid, Target: cmd.target})
	return moveDecision{queue: d.Queue, logs: convertLines(d.Logs)}
}

func (p *rulesPlacer) autoRebalance() (*moveCommand, []logLine) {
	cmd, logs := p.s.AutoRebalance()
	if cmd == nil {
		return nil, convertLines(logs)
	}
	return &moveCommand{task: cmd.Task, sid: cmd.SID, target: cmd.Target}, convertLines(logs)
}
