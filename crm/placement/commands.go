package placement

import (
	"maps"
	"slices"

	"haxd/ha"
)

// Move tasks.
const (
	TaskMigrate  = "migrate"
	TaskRelocate = "relocate"
)

// MoveCommand is an operator (or auto-rebalance) command
// "migrate|relocate <sid> <node>".
type MoveCommand struct {
	// Task is TaskMigrate or TaskRelocate.
	Task string
	// SID is the service to move.
	SID ha.SID
	// Target is the destination node.
	Target string
}

// String returns the command line, e.g. "migrate vm:101 node2".
func (c MoveCommand) String() string { return c.Task + " " + string(c.SID) + " " + c.Target }

// MoveDecision is the outcome of CheckMove.
type MoveDecision struct {
	// Queue lists the services on which the caller sets the command
	// (cmd = [Task, Target]): the service itself first, then its positive
	// partners that follow it, sorted. Empty when the command is refused.
	Queue []ha.SID
	// Logs are the lines to log, in order.
	Logs []LogLine
}

// CheckMove checks a migrate/relocate command when the CRM reads it
// (placement.md §9, ha-semantics §8.1): unknown service, target not online,
// already on target, negative affinity; and it adds the positive partners
// that must follow. The caller queues the command on every service of
// Queue; node affinity is not checked here.
func (s *Scheduler) CheckMove(cmd MoveCommand) MoveDecision {
	line := cmd.String()
	sd, ok := s.services[cmd.SID]
	if !ok {
		return MoveDecision{Logs: []LogLine{errLine("crm command error - no such service: %s", line)}}
	}
	if s.nodeStatus[cmd.Target] != ha.NodeOnline {
		return MoveDecision{Logs: []LogLine{errLine("crm command error - node not online: %s", line)}}
	}
	if sd.Node == cmd.Target {
		return MoveDecision{Logs: []LogLine{info("ignore crm command - service already on target node: %s", line)}}
	}
	for _, p := range slices.Sorted(maps.Keys(s.compiled.Negative[cmd.SID])) {
		psd, ok := s.services[p]
		if !ok {
			continue
		}
		if (psd.Node == "" || psd.Node == cmd.Target) && (psd.Target == "" || psd.Target == cmd.Target) {
			return MoveDecision{Logs: []LogLine{errLine("crm command '%s' error - service '%s' on node '%s' in negative affinity with service '%s'",
				line, p, cmd.Target, cmd.SID)}}
		}
	}
	d := MoveDecision{Queue: []ha.SID{cmd.SID}, Logs: []LogLine{info("got crm command: %s", line)}}
	for _, p := range slices.Sorted(maps.Keys(s.compiled.Positive[cmd.SID])) {
		psd, ok := s.services[p]
		if !ok || psd.Node == cmd.Target || psd.Target == cmd.Target {
			continue
		}
		d.Queue = append(d.Queue, p)
		d.Logs = append(d.Logs, info("crm command '%s' - %s service '%s' to node '%s' (service '%s' in positive affinity with service '%s')",
			line, cmd.Task, p, cmd.Target, p, cmd.SID))
	}
	return d
}

// MoveTask returns the task used to move sid: migrate for live-migratable
// services, relocate otherwise.
func (s *Scheduler) MoveTask(sid ha.SID) string {
	if s.opts.LiveMigratable(sid) {
		return TaskMigrate
	}
	return TaskRelocate
}
