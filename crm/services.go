package crm

import (
	"fmt"
	"strings"

	"haxd/ha"
)

// removableLocks are the resource locks that are safe to remove once the
// node that held them was fenced (ha-semantics §5.5.7).
var removableLocks = []string{"backup", "mounted", "migrate", "clone", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended"}

// stateParams are the optional parameters of a state change; an empty node
// or target and a nil timeout are not set.
type stateParams struct {
	node, target string
	timeout      *int
}

// changeState is the one procedure every service state change goes through
// (ha-semantics §5.2): it keeps node, failed_nodes and maintenance_node,
// drops every other field, applies the params, re-accounts the service for
// placement, assigns a fresh UID and logs the change.
func (m *manager) changeState(sid ha.SID, sd *ha.ServiceStatus, st ha.ServiceState, params ...stateParams) {
	old := sd.State
	if old == st || !st.Valid() {
		// An internal error: handlers never ask for it.
		m.log.err(fmt.Sprintf("service '%s': invalid state change from '%s' to '%s'", sid, old, st), ha.KeySID, sid)
		return
	}
	*sd = ha.ServiceStatus{State: st, Node: sd.Node, FailedNodes: sd.FailedNodes, MaintenanceNode: sd.MaintenanceNode}
	var text []string
	for _, p := range params {
		if p.node != "" {
			sd.Node = p.node
			text = append(text, "node = "+p.node)
		}
		if p.target != "" {
			sd.Target = p.target
			text = append(text, "target = "+p.target)
		}
		if p.timeout != nil {
			t := *p.timeout
			sd.Timeout = &t
			text = append(text, fmt.Sprintf("timeout = %d", t))
		}
	}
	m.logLines(m.place.serviceChanged(sid))
	sd.UID = m.env.UID()
	msg := fmt.Sprintf("service '%s': state changed from '%s' to '%s'", sid, old, st)
	if len(text) > 0 {
		msg += "  (" + strings.Join(text, ", ") + ")"
	}
	m.log.info(msg, ha.KeySID, sid, ha.KeyState, string(st))
}

// requestedOrStop returns started when cd requests started, else
// request_stop.
func requestedOrStop(cd *ha.ResourceConfig) ha.ServiceState {
	if cd.Requested() == ha.RequestStarted {
		return ha.StateStarted
	}
	return ha.StateRequestStop
}

// handleService runs the handler of sd's current state (§5.5).
func (m *manager) handleService(sid ha.SID, sd *ha.ServiceStatus) {
	cd := m.resources[sid]
	if cd == nil {
		cd = &ha.ResourceConfig{SID: sid, State: ha.RequestDisabled}
	}
	var res *ha.LRMResult
	if sd.UID != "" {
		if r, ok := m.results[sd.UID]; ok {
			res = &r
		}
	}
	switch sd.State {
	case ha.StateStopped:
		m.stopped(sid, cd, sd)
	case ha.StateRequestStart:
		m.requestStart(sid, sd)
	case ha.StateMigrate, ha.StateRelocate, ha.StateRequestStartBalance:
		m.migrateRelocate(sid, cd, sd, res)
	case ha.StateStarted:
		m.started(sid, cd, sd, res)
	case ha.StateRequestStop:
		m.requestStop(sid, sd, res)
	case ha.StateFence:
		// Nothing: the fencing pass moves it to recovery.
	case ha.StateRecovery:
		m.recovery(sid, cd, sd)
	case ha.StateFreeze:
		if m.modes[sd.Node] == ha.ModeActive {
			m.changeState(sid, sd, requestedOrStop(cd))
		}
	case ha.StateError:
		if cd.Requested() == ha.RequestDisabled {
			sd.FailedNodes = nil
			m.changeState(sid, sd, ha.StateStopped)
		}
	default:
		m.log.err(fmt.Sprintf("service '%s' - unknown service state '%s'", sid, sd.State), ha.KeySID, sid)
	}
}

// stopped is §5.5.1.
func (m *manager) stopped(sid ha.SID, cd *ha.ResourceConfig, sd *ha.ServiceStatus) {
	if cd.Node != "" && sd.Node != cd.Node {
		m.log.info(fmt.Sprintf("fixup service '%s' location (%s => %s)", sid, sd.Node, cd.Node), ha.KeySID, sid)
		sd.Node = cd.Node
		m.logLines(m.place.serviceChanged(sid))
	}
	if cmd := sd.Cmd; cmd != nil {
		switch cmd.Name {
		case "migrate", "relocate":
			if !m.moveIgnored(sid, sd, cmd) {
				m.changeState(sid, sd, ha.ServiceState(cmd.Name), stateParams{node: sd.Node, target: cmd.Target})
				return
			}
		case "stop":
			m.log.info(fmt.Sprintf("ignore service '%s' stop request - service already stopped", sid), ha.KeySID, sid)
		default:
			m.log.err(fmt.Sprintf("unknown command '%s' for service '%s'", cmd.Name, sid), ha.KeySID, sid)
		}
		sd.Cmd = nil
	}
	req := cd.Requested()
	if req == ha.RequestDisabled {
		// The LRM keeps enforcing "stopped".
		return
	}
	if m.fenceDelayed(sd.Node) && m.nodeState(sd.Node) != ha.NodeMaintenance {
		m.changeState(sid, sd, ha.StateFence)
		return
	}
	switch req {
	case ha.RequestStopped:
		// Unlike disabled, such a service is fenced and recovered.
	case ha.RequestStarted:
		m.changeState(sid, sd, ha.StateRequestStart, stateParams{node: sd.Node})
	default:
		m.log.err(fmt.Sprintf("service '%s' - unknown state '%s' in service configuration", sid, req), ha.KeySID, sid)
	}
}

// requestStart is §5.5.2.
func (m *manager) requestStart(sid ha.SID, sd *ha.ServiceStatus) {
	current := sd.Node
	if m.place.rebalanceOnStartEnabled() {
		n, logs := m.place.rebalanceOnStart(sid)
		m.logLines(logs)
		if n != "" && n != current {
			m.changeState(sid, sd, ha.StateRequestStartBalance, stateParams{node: current, target: n})
			return
		}
	}
	m.changeState(sid, sd, ha.StateStarted, stateParams{node: current})
}

// migrateRelocate is §5.5.3 (migrate, relocate, request_start_balance).
func (m *manager) migrateRelocate(sid ha.SID, cd *ha.ResourceConfig, sd *ha.ServiceStatus, res *ha.LRMResult) {
	if res != nil {
		req := requestedOrStop(cd)
		switch res.ExitCode {
		case ha.ExitSuccess:
			m.changeState(sid, sd, req, stateParams{node: sd.Target})
			return
		case ha.ExitWrongNode:
			m.log.err(fmt.Sprintf("service '%s' - migration failed: service registered on wrong node!", sid), ha.KeySID, sid)
			m.changeState(sid, sd, ha.StateError)
		case ha.ExitIgnored:
			m.log.info(fmt.Sprintf("service '%s' - rebalance-on-start request ignored - service already running", sid), ha.KeySID, sid)
			m.changeState(sid, sd, req, stateParams{node: sd.Node})
		default:
			m.log.err(fmt.Sprintf("service '%s' - migration failed (exit code %d)", sid, res.ExitCode), ha.KeySID, sid)
			m.changeState(sid, sd, req, stateParams{node: sd.Node})
			return
		}
	}
	if sd.State != ha.StateFence && m.fenceDelayed(sd.Node) {
		m.changeState(sid, sd, ha.StateFence)
	}
}

// started is §5.5.4.
func (m *manager) started(sid ha.SID, cd *ha.ResourceConfig, sd *ha.ServiceStatus, res *ha.LRMResult) {
	if !m.online(sd.Node) {
		if m.fenceDelayed(sd.Node) {
			// haxd stops after fence, also for a dead maintenance node.
			m.changeState(sid, sd, ha.StateFence)
			return
		}
		if m.nodeState(sd.Node) != ha.NodeMaintenance {
			return
		}
		sd.MaintenanceNode = sd.Node
	}
	switch cd.Requested() {
	case ha.RequestDisabled, ha.RequestStopped:
		m.changeState(sid, sd, ha.StateRequestStop)
		return
	case ha.RequestStarted:
	default:
		m.log.err(fmt.Sprintf("service '%s' - unknown state '%s' in service configuration", sid, cd.Requested()), ha.KeySID, sid)
		return
	}

	if cmd := sd.Cmd; cmd != nil {
		sd.Cmd = nil
		m.startedCommand(sid, sd, cmd)
		return
	}

	pref := prefNone
	if res != nil {
		switch res.ExitCode {
		case ha.ExitSuccess:
			if len(sd.FailedNodes) > 0 {
				m.log.info(fmt.Sprintf("relocation policy successful for '%s' on node '%s', failed nodes: %s", sid, sd.Node, joinNodes(sd.FailedNodes)), ha.KeySID, sid)
			}
			sd.FailedNodes = nil
			sd.Running = true
		case ha.ExitError, ha.ExitWrongNode:
			sd.Running = false
			sd.FailedNodes = append(sd.FailedNodes, sd.Node)
			if len(sd.FailedNodes) > cd.MaxRelocate {
				m.log.err(fmt.Sprintf("recovery policy for service %s failed, entering error state. Failed nodes: %s", sid, joinNodes(sd.FailedNodes)), ha.KeySID, sid)
				m.changeState(sid, sd, ha.StateError)
				return
			}
			pref = prefTryNext
			m.log.warn(fmt.Sprintf("starting service %s on node '%s' failed, relocating service.", sid, sd.Node), ha.KeySID, sid)
		default:
			sd.FailedNodes = append(sd.FailedNodes, sd.Node)
			m.log.err(fmt.Sprintf("service '%s' got unrecoverable error (exit code %d)", sid, res.ExitCode), ha.KeySID, sid)
			m.changeState(sid, sd, ha.StateError)
			return
		}
	}

	n, logs := m.place.selectNode(sid, pref)
	m.logLines(logs)
	if n != "" && n != sd.Node {
		if fb := sd.MaintenanceNode; fb != "" {
			if n == fb {
				m.log.info(fmt.Sprintf("moving service '%s' back to '%s', node came back from maintenance.", sid, fb), ha.KeySID, sid)
				sd.MaintenanceNode = ""
			} else if sd.Node != fb {
				m.log.info(fmt.Sprintf("dropping maintenance fallback node '%s' for '%s'", fb, sid), ha.KeySID, sid)
				sd.MaintenanceNode = ""
			}
		}
		task := m.moveTask(sid)
		if task == ha.StateMigrate {
			m.log.info(fmt.Sprintf("migrate service '%s' to node '%s' (running)", sid, n), ha.KeySID, sid)
		} else {
			m.log.info(fmt.Sprintf("relocate service '%s' to node '%s'", sid, n), ha.KeySID, sid)
		}
		m.changeState(sid, sd, task, stateParams{node: sd.Node, target: n})
		return
	}
	if pref == prefTryNext && n == "" {
		m.log.warn(fmt.Sprintf("Start Error Recovery: Tried all available nodes for service '%s', retry start on current node. Tried nodes: %s", sid, joinNodes(sd.FailedNodes)), ha.KeySID, sid)
	}
	if mn := sd.MaintenanceNode; mn != "" && mn == sd.Node && m.online(mn) {
		m.log.info(fmt.Sprintf("service '%s': clearing stale maintenance node '%s' setting (is current node)", sid, mn), ha.KeySID, sid)
		sd.MaintenanceNode = ""
	}
	if res != nil && (m.recheck || res.ExitCode != ha.ExitSuccess) {
		// Ask the LRM to check the service again; no state change. A
		// service that started fine is re-checked only every
		// ServiceCheckInterval, all in the same round, so that an idle
		// cluster's status does not change every round.
		sd.UID = m.env.UID()
	}
}

// moveIgnored logs and reports a migrate or relocate command that cannot
// run: its target is not online, or the service is already there.
func (m *manager) moveIgnored(sid ha.SID, sd *ha.ServiceStatus, cmd *ha.ServiceCmd) bool {
	switch {
	case !m.online(cmd.Target):
		m.log.err(fmt.Sprintf("ignore service '%s' %s request - node '%s' not online", sid, cmd.Name, cmd.Target), ha.KeySID, sid)
		return true
	case cmd.Target == sd.Node:
		m.log.info(fmt.Sprintf("ignore service '%s' %s request - service already on node '%s'", sid, cmd.Name, cmd.Target), ha.KeySID, sid)
		return true
	}
	return false
}

// startedCommand consumes a pending operator command of a started service
// (§5.5.4 step 3a).
func (m *manager) startedCommand(sid ha.SID, sd *ha.ServiceStatus, cmd *ha.ServiceCmd) {
	switch cmd.Name {
	case "migrate", "relocate":
		if !m.moveIgnored(sid, sd, cmd) {
			m.log.info(fmt.Sprintf("%s service '%s' to node '%s'", cmd.Name, sid, cmd.Target), ha.KeySID, sid)
			m.changeState(sid, sd, ha.ServiceState(cmd.Name), stateParams{node: sd.Node, target: cmd.Target})
		}
	case "stop":
		if cmd.Timeout == 0 {
			m.log.info(fmt.Sprintf("request immediate service hard-stop for service '%s'", sid), ha.KeySID, sid)
		} else {
			m.log.info(fmt.Sprintf("request graceful stop with timeout '%d' for service '%s'", cmd.Timeout, sid), ha.KeySID, sid)
		}
		timeout := cmd.Timeout
		m.changeState(sid, sd, ha.StateRequestStop, stateParams{timeout: &timeout})
		if err := m.env.SetRequestedState(sid, ha.RequestStopped); err != nil {
			m.fail(err)
		}
	default:
		m.log.err(fmt.Sprintf("unknown command '%s' for service '%s'", cmd.Name, sid), ha.KeySID, sid)
	}
}

// moveTask returns migrate for live-migratable resource types, else
// relocate.
func (m *manager) moveTask(sid ha.SID) ha.ServiceState {
	if a := m.env.ResourceAgent(sid.Type()); a != nil && a.LiveMigratable() {
		return ha.StateMigrate
	}
	return ha.StateRelocate
}

// requestStop is §5.5.5.
func (m *manager) requestStop(sid ha.SID, sd *ha.ServiceStatus, res *ha.LRMResult) {
	if res != nil {
		if res.ExitCode == ha.ExitSuccess {
			m.changeState(sid, sd, ha.StateStopped)
			return
		}
		m.log.err(fmt.Sprintf("service '%s' stop failed (exit code %d)", sid, res.ExitCode), ha.KeySID, sid)
		m.changeState(sid, sd, ha.StateError)
		return
	}
	if m.fenceDelayed(sd.Node) {
		m.changeState(sid, sd, ha.StateFence)
	}
}

// recovery is §5.5.7. It runs only after the fencing pass proved the node
// fenced (fence → recovery happens nowhere else).
func (m *manager) recovery(sid ha.SID, cd *ha.ResourceConfig, sd *ha.ServiceStatus) {
	fenced := sd.Node
	if cd.Node != "" && cd.Node != fenced {
		// An earlier round's steal was committed but its answer was lost
		// (a leader change, a timeout): the store already moved the
		// service, under the lock and term checks of that steal. Sending
		// it again would be refused as a conflict every round; finish the
		// recovery on the node the store names instead.
		m.log.info(fmt.Sprintf("service '%s' was already moved from fenced node '%s' to node '%s' by an earlier steal, finishing its recovery there", sid, fenced, cd.Node), ha.KeySID, sid)
		sd.Node = cd.Node
		m.changeState(sid, sd, requestedOrStop(cd), stateParams{node: cd.Node})
		return
	}
	n, logs := m.place.selectNode(sid, prefBestScore)
	m.logLines(logs)
	if n == "" {
		m.log.err(fmt.Sprintf("recovering service '%s' from fenced node '%s' failed, no recovery node found", sid, fenced), ha.KeySID, sid)
		if cd.Requested() == ha.RequestDisabled {
			sd.FailedNodes = nil
			m.changeState(sid, sd, ha.StateStopped)
		}
		return
	}
	if n != fenced && !m.holdsAgentLock(fenced) {
		// The proof of fencing is the fenced node's agent lock held by
		// this master at the moment of the steal, not a lock some master
		// took rounds ago: the service may have waited here for a target
		// while the lock expired and the node came back and took it
		// again. Taking the lock again (a refresh, or an expired hold)
		// shows that the node has not held it since it was fenced. If
		// the node holds it now, it is alive and runs nothing of this
		// service (an LRM never starts a service in recovery); if a
		// previous master still holds it, the node cannot start
		// anything before it gets its lock either. Either way the
		// service is recovered on that node, which needs no steal, or
		// waits while the node is not online (a previous master's hold
		// expires within the lock TTL, and then the steal goes ahead).
		if !m.online(fenced) {
			return
		}
		m.log.info(fmt.Sprintf("cannot take the agent lock of node '%s' again (the node or a previous master holds it), recovering service '%s' on it", fenced, sid), ha.KeySID, sid)
		n = fenced
	}
	if n == fenced {
		m.log.info(fmt.Sprintf("recover service '%s' to previous failed and fenced node '%s' again", sid, fenced), ha.KeySID, sid)
	} else {
		m.log.info(fmt.Sprintf("recover service '%s' from fenced node '%s' to node '%s'", sid, fenced, n), ha.KeySID, sid)
	}
	if a := m.env.ResourceAgent(sid.Type()); a != nil {
		if lock := a.RemoveLocks(sid, removableLocks); lock != "" {
			m.log.warn(fmt.Sprintf("removed leftover lock '%s' from recovered service '%s' to allow its start.", lock, sid), ha.KeySID, sid)
		}
	}
	if n != fenced {
		if err := m.env.StealService(sid, fenced, n); err != nil {
			m.fail(err)
			return
		}
		if c := m.resources[sid]; c != nil {
			moved := *c
			moved.Node = n
			m.resources[sid] = &moved
		}
	}
	sd.Node = n
	m.changeState(sid, sd, requestedOrStop(cd), stateParams{node: n})
}
