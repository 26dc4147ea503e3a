package api

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"haxd/ha"
)

// Status freshness bounds (ha-semantics §10.1). defaultStaleAfter is PVE's
// constant, used only when the answering agent did not say (Status.StaleAfter).
const (
	defaultStaleAfter = 30 // seconds
	driftAhead        = 2  // seconds
)

// ctimeLayout renders times like ctime(3): "Wed Nov 23 11:07:23 2016".
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// Freshness of a timestamp in the status view.
const (
	FreshActive = "active"                // written within StaleAfter
	FreshStale  = "old timestamp - dead?" // older than StaleAfter
	FreshDrift  = "detected time drift!"  // in the future
)

// View is the structured status: the JSON output of `haxd ha status
// --output json` (schema in docs/cli.md). Times are Unix seconds; ages are
// seconds before Now.
type View struct {
	// LocalNode is the node that answered.
	LocalNode string `json:"local_node"`
	// Quorate reports whether LocalNode is in the quorate partition.
	Quorate bool `json:"quorate"`
	// Now is the answering node's time.
	Now int64 `json:"now"`
	// StaleAfter is the age in seconds beyond which a status is stale.
	StaleAfter int64 `json:"stale_after"`
	// CRSMode is the scheduler mode: basic, static or dynamic.
	CRSMode string `json:"crs_mode"`
	// Master is the CRM master as its last manager status says.
	Master MasterView `json:"master"`
	// Fencing is the state of the HA stack's protection.
	Fencing FencingView `json:"fencing"`
	// Nodes lists every node of the manager status, sorted by name.
	Nodes []NodeView `json:"nodes"`
	// Services lists every service, sorted as the text output.
	Services []ServiceView `json:"services"`
	// PendingCommands are CRM commands queued but not yet taken by the
	// master, oldest first.
	PendingCommands []string `json:"pending_commands"`
}

// MasterView is the master line.
type MasterView struct {
	// Node is the master's name; empty when no CRM has been master.
	Node string `json:"node"`
	// State is active, "old timestamp - dead?", "detected time drift!",
	// idle, or none (no master yet).
	State string `json:"state"`
	// Timestamp is when the master last wrote the manager status (0: never).
	Timestamp int64 `json:"timestamp"`
	// Age is Now - Timestamp (0 when Timestamp is 0).
	Age int64 `json:"age"`
	// Disarm is "disarming" or "disarmed" while disarm-ha is in effect.
	Disarm string `json:"disarm,omitempty"`
	// DisarmMode is freeze or ignore while disarmed.
	DisarmMode string `json:"disarm_mode,omitempty"`
}

// FencingView is the fencing line.
type FencingView struct {
	// State is armed, standby, disarming or disarmed.
	State string `json:"state"`
	// Watchdog is the CRM watchdog: active, standby or released.
	Watchdog string `json:"watchdog"`
}

// NodeView is one node: the CRM's state of it and its LRM's last status.
type NodeView struct {
	// Name is the node name.
	Name string `json:"name"`
	// State is the CRM's node state: online, unknown, fence, maintenance
	// or gone.
	State ha.NodeState `json:"state"`
	// Alive is true when the CRM sees the node online (or in maintenance)
	// and its LRM status is fresh.
	Alive bool `json:"alive"`
	// LRMState is the LRM's own state (active, wait_for_agent_lock,
	// lost_agent_lock, maintenance); empty when it never wrote one.
	LRMState ha.LRMState `json:"lrm_state,omitempty"`
	// LRMMode is the LRM mode (active, restart, shutdown, maintenance, disarm).
	LRMMode ha.LRMMode `json:"lrm_mode,omitempty"`
	// Freshness is active, "old timestamp - dead?" or "detected time drift!".
	Freshness string `json:"freshness,omitempty"`
	// Watchdog is the LRM's watchdog: active, standby or released.
	Watchdog string `json:"watchdog,omitempty"`
	// Timestamp is when the LRM last wrote its status (0: never).
	Timestamp int64 `json:"timestamp"`
	// Age is Now - Timestamp: how long since the LRM was heard.
	Age int64 `json:"age"`
	// Display is the state as the text output shows it (idle, active,
	// "maintenance mode", "old timestamp - dead?", gone, ...).
	Display string `json:"display"`
}

// ServiceView is one service.
type ServiceView struct {
	// SID is the service id.
	SID ha.SID `json:"sid"`
	// Node is where the service is (or is requested); "---" when unknown.
	Node string `json:"node"`
	// Target is the destination of a move in progress.
	Target string `json:"target,omitempty"`
	// CRMState is the CRM's state; empty while not yet in the manager status.
	CRMState ha.ServiceState `json:"crm_state,omitempty"`
	// State is the display state (ha-semantics §10.1): started, starting,
	// stopping, queued, deleting, fence, recovery, error, ...
	State string `json:"state"`
	// RequestState is the requested state from the config.
	RequestState ha.RequestedState `json:"request_state,omitempty"`
	// FailedNodes lists the nodes where a start failed, in order.
	FailedNodes []string `json:"failed_nodes"`
	// PendingCommand is an operator command the CRM has accepted for this
	// service but not yet carried out.
	PendingCommand *CommandView `json:"pending_command,omitempty"`
}

// CommandView is a pending per-service command.
type CommandView struct {
	// Name is migrate, relocate or stop.
	Name string `json:"name"`
	// Target is the node of migrate and relocate.
	Target string `json:"target,omitempty"`
	// Timeout is the stop timeout in seconds.
	Timeout int `json:"timeout,omitempty"`
}

func (st *Status) staleAfter() int64 {
	if st.StaleAfter > 0 {
		return st.StaleAfter
	}
	return defaultStaleAfter
}

// StaleAfter returns the age beyond which a status timestamp reads as
// stale for timing t: a node whose LRM has not written for longer than
// this has missed several rounds and is past the fence delay, so it is
// probably dead. It is the largest of three slowest LRM rounds, the
// fence delay, and the status refresh plus one round (an unchanged
// status is rewritten only that often, ha.Timing.StatusRefresh), in whole
// seconds plus one for the timestamps' resolution. PVE's status uses a
// constant 30 s; with PVE timings this gives 61 s.
func StaleAfter(t ha.Timing) int64 {
	round := max(t.LRMRound, t.LRMMaintenanceRound, t.CRMRound)
	d := max(3*max(t.LRMRound, t.LRMMaintenanceRound), t.FenceDelay, t.StatusRefresh+round)
	secs := int64((d + time.Second - 1) / time.Second)
	return secs + 1
}

func freshness(now, ts, staleAfter int64) string {
	switch {
	case ts > now+driftAhead:
		return FreshDrift
	case now-ts > staleAfter:
		return FreshStale
	}
	return FreshActive
}

// BuildView computes the structured status from st.
func BuildView(st *Status) *View {
	ms := st.Manager
	if ms == nil {
		ms = &ha.ManagerStatus{}
	}
	stale := st.staleAfter()
	v := &View{LocalNode: st.LocalNode, Quorate: st.Quorate, Now: st.Now, StaleAfter: stale, CRSMode: st.CRMMode,
		Nodes: []NodeView{}, Services: []ServiceView{}, PendingCommands: append([]string{}, st.Commands...)}
	if v.CRSMode == "" {
		v.CRSMode = "basic"
	}

	masterActive := false
	v.Master = MasterView{Node: ms.MasterNode, State: "none"}
	if ms.MasterNode != "" && ms.Timestamp != 0 {
		state := freshness(st.Now, ms.Timestamp, stale)
		masterActive = state == FreshActive
		if st.Quorate && !masterActive && len(st.Resources) == 0 {
			state = "idle"
		}
		v.Master.State = state
		v.Master.Timestamp = ms.Timestamp
		v.Master.Age = max(0, st.Now-ms.Timestamp)
	}
	if ms.Disarm != nil {
		v.Master.Disarm = string(ms.Disarm.State)
		v.Master.DisarmMode = string(ms.Disarm.Mode)
	}
	switch {
	case ms.Disarm != nil && ms.Disarm.State == ha.Disarmed:
		v.Fencing = FencingView{State: string(ms.Disarm.State), Watchdog: "released"}
	case ms.Disarm != nil:
		v.Fencing = FencingView{State: string(ms.Disarm.State), Watchdog: "active"}
	case masterActive:
		v.Fencing = FencingView{State: "armed", Watchdog: "active"}
	default:
		v.Fencing = FencingView{State: "standby", Watchdog: "standby"}
	}

	for _, node := range slices.Sorted(maps.Keys(ms.NodeStatus)) {
		v.Nodes = append(v.Nodes, nodeView(st, node, ms.NodeStatus[node], stale))
	}

	ignore := ms.Disarm != nil && ms.Disarm.Mode == ha.DisarmIgnore
	for _, sid := range slices.Sorted(maps.Keys(ms.ServiceStatus)) {
		v.Services = append(v.Services, serviceView(sid, ms.ServiceStatus[sid], st.Resources[sid], ignore))
	}
	for _, sid := range slices.Sorted(maps.Keys(st.Resources)) {
		if _, ok := ms.ServiceStatus[sid]; !ok {
			v.Services = append(v.Services, serviceView(sid, nil, st.Resources[sid], ignore))
		}
	}
	return v
}

func nodeView(st *Status, node string, state ha.NodeState, stale int64) NodeView {
	nv := NodeView{Name: node, State: state}
	ls := st.LRM[node]
	if ls != nil && ls.Timestamp != 0 {
		nv.LRMState = ls.State
		nv.LRMMode = ls.EffectiveMode()
		nv.Timestamp = ls.Timestamp
		nv.Age = max(0, st.Now-ls.Timestamp)
		nv.Freshness = freshness(st.Now, ls.Timestamp, stale)
	}
	if state == ha.NodeGone {
		nv.Display = "gone"
		return nv
	}
	if nv.Timestamp == 0 {
		nv.Display = "unable to read lrm status"
		return nv
	}
	fresh := nv.Freshness == FreshActive
	mode := nv.LRMMode
	switch {
	case fresh && mode != ha.ModeActive:
		nv.Display = string(mode) + " mode"
	case fresh && ls.State == ha.LRMWaitForAgentLock && activeCount(st.Manager, node) == 0:
		nv.Display = "idle"
	case fresh:
		nv.Display = string(ls.State)
	case mode == ha.ModeMaintenance || mode == ha.ModeDisarm:
		nv.Display = string(mode) + " mode"
	default:
		nv.Display = nv.Freshness
	}
	nv.Watchdog = "standby"
	switch {
	case fresh && (ls.State == ha.LRMActive || ls.State == ha.LRMMaintenance):
		nv.Watchdog = "active"
	case mode == ha.ModeDisarm:
		nv.Watchdog = "released"
	}
	nv.Alive = fresh && (state == ha.NodeOnline || state == ha.NodeMaintenance)
	return nv
}

// Entries computes the status view of ha-semantics §10.1 from st: quorum,
// master, fencing, one line per LRM and one per service, in that order.
// haxd additions: the master line is always there (`master none (...)`
// before any CRM was master), and each LRM line ends with the CRM's state
// of the node and, when stale, how long ago its LRM was last heard.
func Entries(st *Status) []Entry {
	v := BuildView(st)
	var out []Entry
	q := "OK"
	if !st.Quorate {
		q = fmt.Sprintf("No quorum on node '%s'!", st.LocalNode)
	}
	out = append(out, Entry{ID: "quorum", Type: "quorum", Node: st.LocalNode, Status: q})

	m := v.Master
	var text string
	if m.Timestamp == 0 {
		why := "no CRM has been master yet"
		if len(st.Resources) == 0 {
			why += ": the master is elected once a service is configured"
		}
		text = "none (" + why + ")"
	} else {
		text = fmt.Sprintf("%s (%s, %s)", m.Node, m.State, time.Unix(m.Timestamp, 0).Format(ctimeLayout))
	}
	if m.Disarm != "" {
		text += fmt.Sprintf(" - %s, resource mode: %s", m.Disarm, m.DisarmMode)
	}
	if v.CRSMode != "basic" {
		text += fmt.Sprintf(" - %s load CRS", v.CRSMode)
	}
	out = append(out, Entry{ID: "master", Type: "master", Node: m.Node, Status: text})

	var fencing string
	switch v.Fencing.State {
	case "armed":
		fencing = "armed (CRM watchdog active)"
	case "standby":
		fencing = "standby (CRM watchdog standby)"
	default:
		fencing = fmt.Sprintf("%s, resource mode: %s (CRM watchdog %s)", v.Fencing.State, m.DisarmMode, v.Fencing.Watchdog)
	}
	out = append(out, Entry{ID: "fencing", Type: "fencing", Status: fencing})

	for _, nv := range v.Nodes {
		out = append(out, Entry{ID: "lrm:" + nv.Name, Type: "lrm", Node: nv.Name, State: string(nv.State), Status: lrmText(nv)})
	}
	for _, sv := range v.Services {
		out = append(out, Entry{ID: "service:" + string(sv.SID), Type: "service", SID: sv.SID, Node: sv.Node,
			CRMState: string(sv.CRMState), State: sv.State, RequestState: string(sv.RequestState),
			Status: fmt.Sprintf("%s (%s, %s)", sv.SID, sv.Node, sv.State)})
	}
	return out
}

// lrmText is `<node> (<lrm state>, <watchdog>, <time>) - node <crm state>`
// with `, last heard N s ago` when the LRM status is not fresh.
func lrmText(nv NodeView) string {
	var s string
	switch {
	case nv.State == ha.NodeGone && nv.Timestamp != 0:
		s = fmt.Sprintf("%s (gone: removed from the cluster, last heard %s)", nv.Name, time.Unix(nv.Timestamp, 0).Format(ctimeLayout))
	case nv.State == ha.NodeGone:
		s = fmt.Sprintf("%s (gone: removed from the cluster)", nv.Name)
	case nv.Timestamp == 0:
		s = fmt.Sprintf("%s (unable to read lrm status)", nv.Name)
	default:
		s = fmt.Sprintf("%s (%s, watchdog %s, %s)", nv.Name, nv.Display, nv.Watchdog, time.Unix(nv.Timestamp, 0).Format(ctimeLayout))
	}
	if nv.State == ha.NodeGone {
		return s
	}
	s += " - node " + string(nv.State)
	if nv.Timestamp != 0 && nv.Freshness != FreshActive {
		s += fmt.Sprintf(", last heard %d s ago", nv.Age)
	}
	return s
}

// Format renders entries as `<type> <status>` lines.
func Format(entries []Entry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s\n", e.Type, e.Status)
	}
	return b.String()
}

// activeCount counts the services that keep node's LRM active (ha-semantics §4.2).
func activeCount(ms *ha.ManagerStatus, node string) int {
	if ms == nil {
		return 0
	}
	n := 0
	for _, sd := range ms.ServiceStatus {
		if (sd.Node == node || sd.Target == node) && sd.State.CountsActive() {
			n++
		}
	}
	return n
}

func serviceView(sid ha.SID, sd *ha.ServiceStatus, cd *ha.ResourceConfig, ignore bool) ServiceView {
	sv := ServiceView{SID: sid, Node: "---", FailedNodes: []string{}}
	switch {
	case sd != nil:
		sv.Node = sd.Node
		sv.Target = sd.Target
		sv.CRMState = sd.State
		sv.FailedNodes = append(sv.FailedNodes, sd.FailedNodes...)
		if sd.Cmd != nil {
			sv.PendingCommand = &CommandView{Name: sd.Cmd.Name, Target: sd.Cmd.Target, Timeout: sd.Cmd.Timeout}
		}
	case cd != nil && cd.Node != "":
		sv.Node = cd.Node
	}
	if cd != nil {
		sv.RequestState = cd.Requested()
	}
	sv.State = verboseState(sd, cd, ignore)
	return sv
}

// verboseState is the display state of ha-semantics §10.1.
func verboseState(sd *ha.ServiceStatus, cd *ha.ResourceConfig, ignore bool) string {
	if ignore {
		return "ignore"
	}
	switch {
	case cd == nil:
		return "deleting"
	case cd.Requested() == ha.RequestIgnored:
		return "ignored"
	case cd.Node == "":
		return "not found"
	case sd == nil:
		return "queued"
	}
	req := cd.Requested()
	switch sd.State {
	case ha.StateStopped:
		switch req {
		case ha.RequestStarted:
			return "starting"
		case ha.RequestDisabled:
			return "disabled"
		}
		return "stopped"
	case ha.StateStarted:
		if !sd.Running {
			return "starting"
		}
		if req == ha.RequestStopped || req == ha.RequestDisabled {
			return "stopping"
		}
		return "started"
	case ha.StateError:
		if req == ha.RequestDisabled {
			return "clearing error flag"
		}
	}
	return string(sd.State)
}
