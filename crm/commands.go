package crm

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"haxd/ha"
)

// processCommands handles the CRM command queue, in order (ha-semantics
// §8.1).
func (m *manager) processCommands(lines []string) {
	for _, raw := range lines {
		line := strings.TrimRight(raw, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && (f[0] == "migrate" || f[0] == "relocate"):
			m.queueMove(moveCommand{task: f[0], sid: ha.SID(f[1]), target: f[2]})
		case len(f) == 3 && f[0] == "stop":
			timeout, err := strconv.Atoi(f[2])
			if err != nil || timeout < 0 {
				m.log.err("unable to parse crm command: " + line)
				continue
			}
			sd := m.services[ha.SID(f[1])]
			if sd == nil {
				m.log.err("crm command error - no such service: " + line)
				continue
			}
			m.log.info("got crm command: " + line)
			sd.Cmd = &ha.ServiceCmd{Name: "stop", Timeout: timeout}
		case len(f) == 2 && f[0] == "enable-node-maintenance":
			m.cmdEnableMaintenance(line, f[1])
		case len(f) == 2 && f[0] == "disable-node-maintenance":
			node := f[1]
			if st := m.nodeState(node); st != ha.NodeMaintenance {
				m.log.warn(fmt.Sprintf("clearing maintenance of node %s requested, but it's in state %s", node, st), ha.KeyNode, node)
			}
			if r := m.nodeRequest[node]; r != nil {
				r.Maintenance = false
				if *r == (ha.NodeRequest{}) {
					delete(m.nodeRequest, node)
				}
			}
		case len(f) == 2 && f[0] == "disarm-ha":
			m.cmdDisarm(ha.DisarmMode(f[1]))
		case len(f) == 1 && f[0] == "arm-ha":
			m.cmdArm()
		default:
			m.log.err("unable to parse crm command: " + line)
		}
	}
}

// queueMove checks a migrate/relocate command (§8.1, placement.md §9) and
// sets it as the pending command of the services the check returns.
func (m *manager) queueMove(cmd moveCommand) {
	d := m.place.checkMove(cmd)
	m.logLines(d.logs)
	for _, sid := range d.queue {
		if sd := m.services[sid]; sd != nil {
			sd.Cmd = &ha.ServiceCmd{Name: cmd.task, Target: cmd.target}
		}
	}
}

// cmdEnableMaintenance handles enable-node-maintenance <node> (§8.6).
func (m *manager) cmdEnableMaintenance(line, node string) {
	if m.disarm != nil {
		m.log.warn(fmt.Sprintf("ignoring maintenance command for node %s - HA stack is disarmed", node), ha.KeyNode, node)
		return
	}
	switch m.nodeState(node) {
	case ha.NodeOnline:
		r := m.nodeRequest[node]
		if r == nil {
			r = &ha.NodeRequest{}
			m.nodeRequest[node] = r
		}
		r.Maintenance = true
	case ha.NodeMaintenance:
		m.log.info(fmt.Sprintf("ignoring crm command - node %s is already in maintenance state", node), ha.KeyNode, node)
	default:
		m.log.err("crm command error - node not online: " + line)
	}
}

// cmdDisarm handles disarm-ha <mode> (§8.7).
func (m *manager) cmdDisarm(mode ha.DisarmMode) {
	if m.disarm != nil {
		m.log.notice(fmt.Sprintf("ignoring disarm-ha command - already in disarm state (%s)", m.disarm.State))
		return
	}
	if mode != ha.DisarmFreeze && mode != ha.DisarmIgnore {
		m.log.err(fmt.Sprintf("unknown disarm-mode '%s', ignoring", mode))
		return
	}
	m.log.info("got crm command: disarm-ha " + string(mode))
	if mode == ha.DisarmIgnore {
		for _, sid := range slices.Sorted(maps.Keys(m.services)) {
			m.log.info(fmt.Sprintf("disarm: suspending HA tracking for service '%s'", sid), ha.KeySID, sid)
		}
	}
	m.disarm = &ha.Disarm{Mode: mode, State: ha.Disarming}
}

// cmdArm handles arm-ha (§8.7).
func (m *manager) cmdArm() {
	if m.disarm == nil {
		m.log.notice("ignoring arm-ha command - HA stack is not disarmed")
		return
	}
	m.log.info("got crm command: arm-ha")
	if m.disarm.Mode == ha.DisarmIgnore {
		for _, sid := range slices.Sorted(maps.Keys(m.services)) {
			sd, cd := m.services[sid], m.resources[sid]
			if cd == nil || cd.Node == "" || cd.Node == sd.Node {
				continue
			}
			m.log.info(fmt.Sprintf("service '%s': updating node '%s' => '%s' (changed while disarmed)", sid, sd.Node, cd.Node), ha.KeySID, sid)
			sd.Node = cd.Node
			m.logLines(m.place.serviceChanged(sid))
		}
	}
	m.disarm = nil
}

// handleDisarm is the disarm handling of §8.7, run while disarm is set. It
// returns handled when the round is over (the caller writes the status),
// or the set of deferred services that alone take part in this round's
// state machine.
func (m *manager) handleDisarm() (handled bool, deferred map[ha.SID]bool) {
	sids := slices.Sorted(maps.Keys(m.services))
	for _, sid := range sids {
		st := m.services[sid].State
		switch st {
		case ha.StateFence, ha.StateRecovery:
			m.log.warn(fmt.Sprintf("deferring disarm - service '%s' is in '%s' state", sid, st), ha.KeySID, sid)
		case ha.StateMigrate, ha.StateRelocate:
			m.log.info(fmt.Sprintf("deferring disarm - service '%s' is in '%s' state", sid, st), ha.KeySID, sid)
		default:
			continue
		}
		if deferred == nil {
			deferred = map[ha.SID]bool{}
		}
		deferred[sid] = true
	}
	if deferred != nil {
		return false, deferred
	}
	for _, sid := range sids {
		sd := m.services[sid]
		if m.disarm.Mode == ha.DisarmIgnore {
			*sd = ha.ServiceStatus{State: sd.State, Node: sd.Node, UID: sd.UID, MaintenanceNode: sd.MaintenanceNode}
			continue
		}
		switch sd.State {
		case ha.StateStarted, ha.StateStopped, ha.StateRequestStop, ha.StateRequestStart, ha.StateRequestStartBalance:
			m.log.info(fmt.Sprintf("disarm: freezing service '%s' (was '%s')", sid, sd.State), ha.KeySID, sid)
			*sd = ha.ServiceStatus{State: ha.StateFreeze, Node: sd.Node, MaintenanceNode: sd.MaintenanceNode, UID: m.env.UID()}
			m.logLines(m.place.serviceChanged(sid))
		}
	}
	if m.disarm.State != ha.Disarmed && m.allOnlineDisarmed() {
		m.log.info("all LRMs disarmed, HA stack is now fully disarmed")
		m.disarm.State = ha.Disarmed
	}
	m.fullyDisarmed = m.disarm.State == ha.Disarmed
	return true, nil
}

// allOnlineDisarmed reports whether every online node's LRM reports mode
// disarm.
func (m *manager) allOnlineDisarmed() bool {
	for _, node := range slices.Sorted(maps.Keys(m.nodeStatus)) {
		if m.nodeStatus[node] == ha.NodeOnline && m.modes[node] != ha.ModeDisarm {
			return false
		}
	}
	return true
}
