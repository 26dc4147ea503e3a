package api

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"haxd/ha"
)

// Status freshness bounds (ha-semantics §10.1).
const (
	staleAfter = 30 // seconds
	driftAhead = 2  // seconds
)

// ctimeLayout renders times like ctime(3): "Wed Nov 23 11:07:23 2016".
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// Entries computes the status view of ha-semantics §10.1 from st: quorum,
// master, fencing, one line per LRM and one per service, in that order.
func Entries(st *Status) []Entry {
	ms := st.Manager
	if ms == nil {
		ms = &ha.ManagerStatus{}
	}
	var out []Entry
	q := "OK"
	if !st.Quorate {
		q = fmt.Sprintf("No quorum on node '%s'!", st.LocalNode)
	}
	out = append(out, Entry{ID: "quorum", Type: "quorum", Node: st.LocalNode, Status: q})

	masterActive := false
	if ms.MasterNode != "" && ms.Timestamp != 0 {
		state := freshness(st.Now, ms.Timestamp)
		masterActive = state == "active"
		if st.Quorate && !masterActive && len(st.Resources) == 0 {
			state = "idle"
		}
		text := fmt.Sprintf("%s (%s, %s)", ms.MasterNode, state, time.Unix(ms.Timestamp, 0).Format(ctimeLayout))
		if ms.Disarm != nil {
			text += fmt.Sprintf(" - %s, resource mode: %s", ms.Disarm.State, ms.Disarm.Mode)
		}
		if st.CRMMode != "" && st.CRMMode != "basic" {
			text += fmt.Sprintf(" - %s load CRS", st.CRMMode)
		}
		out = append(out, Entry{ID: "master", Type: "master", Node: ms.MasterNode, Status: text})
	}
	var fencing string
	switch {
	case ms.Disarm != nil && ms.Disarm.State == ha.Disarmed:
		fencing = fmt.Sprintf("%s, resource mode: %s (CRM watchdog released)", ms.Disarm.State, ms.Disarm.Mode)
	case ms.Disarm != nil:
		fencing = fmt.Sprintf("%s, resource mode: %s (CRM watchdog active)", ms.Disarm.State, ms.Disarm.Mode)
	case masterActive:
		fencing = "armed (CRM watchdog active)"
	default:
		fencing = "standby (CRM watchdog standby)"
	}
	out = append(out, Entry{ID: "fencing", Type: "fencing", Status: fencing})

	for _, node := range slices.Sorted(maps.Keys(ms.NodeStatus)) {
		out = append(out, Entry{ID: "lrm:" + node, Type: "lrm", Node: node, Status: lrmText(st, node)})
	}

	ignore := ms.Disarm != nil && ms.Disarm.Mode == ha.DisarmIgnore
	for _, sid := range slices.Sorted(maps.Keys(ms.ServiceStatus)) {
		out = append(out, serviceEntry(sid, ms.ServiceStatus[sid], st.Resources[sid], ignore))
	}
	for _, sid := range slices.Sorted(maps.Keys(st.Resources)) {
		if _, ok := ms.ServiceStatus[sid]; !ok {
			out = append(out, serviceEntry(sid, nil, st.Resources[sid], ignore))
		}
	}
	return out
}

// Format renders entries as `<type> <status>` lines.
func Format(entries []Entry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s\n", e.Type, e.Status)
	}
	return b.String()
}

func freshness(now, ts int64) string {
	switch {
	case ts > now+driftAhead:
		return "detected time drift!"
	case now-ts > staleAfter:
		return "old timestamp - dead?"
	}
	return "active"
}

func lrmText(st *Status, node string) string {
	ls := st.LRM[node]
	if ls == nil || ls.Timestamp == 0 {
		return fmt.Sprintf("%s (unable to read lrm status)", node)
	}
	mode := ls.EffectiveMode()
	fresh := freshness(st.Now, ls.Timestamp)
	var state string
	switch {
	case fresh == "active" && mode != ha.ModeActive:
		state = string(mode) + " mode"
	case fresh == "active" && ls.State == ha.LRMWaitForAgentLock && activeCount(st.Manager, node) == 0:
		state = "idle"
	case fresh == "active":
		state = string(ls.State)
	case mode == ha.ModeMaintenance || mode == ha.ModeDisarm:
		state = string(mode) + " mode"
	default:
		state = fresh
	}
	wd := "watchdog standby"
	switch {
	case fresh == "active" && (ls.State == ha.LRMActive || ls.State == ha.LRMMaintenance):
		wd = "watchdog active"
	case mode == ha.ModeDisarm:
		wd = "watchdog released"
	}
	return fmt.Sprintf("%s (%s, %s, %s)", node, state, wd, time.Unix(ls.Timestamp, 0).Format(ctimeLayout))
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

func serviceEntry(sid ha.SID, sd *ha.ServiceStatus, cd *ha.ResourceConfig, ignore bool) Entry {
	e := Entry{ID: "service:" + string(sid), Type: "service", SID: sid}
	node := "---"
	switch {
	case sd != nil:
		node = sd.Node
		e.CRMState = string(sd.State)
	case cd != nil && cd.Node != "":
		node = cd.Node
	}
	e.Node = node
	if cd != nil {
		e.RequestState = string(cd.Requested())
	}
	e.State = verboseState(sd, cd, ignore)
	e.Status = fmt.Sprintf("%s (%s, %s)", sid, node, e.State)
	return e
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
