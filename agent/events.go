package agent

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"haxd/ha"
)

// Event types of operator notifications (docs/notifications section of
// docs/configuration.md).
const (
	EventFenceStart   = "fence_start"   // a node's services go to fence
	EventFenceSuccess = "fence_success" // its agent lock was taken: provably fenced
	EventFenceFailure = "fence_failure" // still not fenced after lock_ttl plus two CRM rounds
	EventRecovery     = "recovery"      // a fenced service was started on another node
	EventServiceError = "service_error" // a service entered the error state
	EventMasterChange = "master_change" // another node's CRM became master
	EventQuorumLost   = "quorum_lost"   // this node left the quorate partition
)

// Event is one notification: sent as the JSON body of a webhook and on the
// stdin of an exec hook. ID is unique per event and stays the same across
// retries and, through the replicated outbox (outbox.go), across master
// changes, so a receiver can drop duplicates (delivery is at least once).
type Event struct {
	// ID identifies the event (32 hex digits).
	ID string `json:"id"`
	// Type is one of the Event* constants.
	Type string `json:"type"`
	// Time is when the sender detected the event, RFC 3339.
	Time time.Time `json:"time"`
	// Sender is the node that sent it (the CRM master, or for quorum_lost
	// the node that lost quorum).
	Sender string `json:"sender"`
	// Node is the node the event is about (fence_*, quorum_lost, the new
	// master of master_change, the node a service is on).
	Node string `json:"node,omitempty"`
	// From is the previous master of master_change, or the node a
	// recovered service was fenced on.
	From string `json:"from,omitempty"`
	// SID is the service of recovery and service_error.
	SID ha.SID `json:"sid,omitempty"`
	// DurationSeconds is, for recovery, the time from the service entering
	// fence to running again; for fence_success and fence_failure, the time
	// since fencing started.
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	// Message is a one-line description.
	Message string `json:"message"`
}

// observer turns successive manager statuses written by the master into
// events. It remembers when each fence started to time recoveries. Safe
// for use by one goroutine (the CRM loop) at a time; the mutex guards the
// rare concurrent reset on master change.
type observer struct {
	self     string
	timing   ha.Timing
	mu       sync.Mutex
	fenced   map[string]time.Time // node -> when its fence started
	failed   map[string]bool      // node -> fence_failure already sent
	svcSince map[ha.SID]time.Time // sid -> when it entered fence
	svcFrom  map[ha.SID]string    // sid -> the node it was fenced on
}

func newObserver(self string, t ha.Timing) *observer {
	return &observer{self: self, timing: t, fenced: map[string]time.Time{}, failed: map[string]bool{},
		svcSince: map[ha.SID]time.Time{}, svcFrom: map[ha.SID]string{}}
}

// newEventID returns 16 random bytes in hex.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe compares the stored manager status prev with next, just written
// by this node as master at now, and returns the events, sorted by type
// and subject for a stable order.
func (o *observer) observe(prev, next *ha.ManagerStatus, now time.Time) []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev == nil {
		prev = &ha.ManagerStatus{}
	}
	var out []Event
	add := func(e Event) {
		e.ID, e.Time, e.Sender = newEventID(), now, o.self
		out = append(out, e)
	}
	if prev.MasterNode != next.MasterNode {
		// A new mastership: what this node remembered from an earlier one
		// is stale (another master may have finished those fences).
		clear(o.fenced)
		clear(o.failed)
		clear(o.svcSince)
		clear(o.svcFrom)
	}
	if next.MasterNode != "" && prev.MasterNode != next.MasterNode {
		msg := fmt.Sprintf("node '%s' is the CRM master now", next.MasterNode)
		if prev.MasterNode != "" {
			msg += fmt.Sprintf(" (was '%s')", prev.MasterNode)
		}
		add(Event{Type: EventMasterChange, Node: next.MasterNode, From: prev.MasterNode, Message: msg})
	}
	for _, node := range slices.Sorted(maps.Keys(next.NodeStatus)) {
		was, now2 := prev.NodeStatus[node], next.NodeStatus[node]
		switch {
		case now2 == ha.NodeFence && was != ha.NodeFence:
			o.fenced[node] = now
			delete(o.failed, node)
			add(Event{Type: EventFenceStart, Node: node, Message: fmt.Sprintf("fencing node '%s': waiting for its agent lock to expire", node)})
		case now2 == ha.NodeFence:
			start, ok := o.fenced[node]
			if !ok {
				o.fenced[node] = now // fence started under another master
				continue
			}
			limit := o.timing.LockTTL + 2*o.timing.CRMRound
			if d := now.Sub(start); d > limit && !o.failed[node] {
				o.failed[node] = true
				add(Event{Type: EventFenceFailure, Node: node, DurationSeconds: d.Seconds(),
					Message: fmt.Sprintf("node '%s' is still not fenced after %v (lock_ttl %v): its agent lock cannot be taken", node, d.Round(time.Millisecond), o.timing.LockTTL)})
			}
		case was == ha.NodeFence:
			start, ok := o.fenced[node]
			delete(o.fenced, node)
			delete(o.failed, node)
			e := Event{Type: EventFenceSuccess, Node: node, Message: fmt.Sprintf("node '%s' is fenced: got its agent lock", node)}
			if now2 == ha.NodeOnline {
				e.Message = fmt.Sprintf("node '%s' came back online while being fenced; its services stay with it", node)
			} else if ok {
				e.DurationSeconds = now.Sub(start).Seconds()
			}
			add(e)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(next.ServiceStatus)) {
		sd := next.ServiceStatus[sid]
		var was ha.ServiceState
		wasRunning := false
		if p := prev.ServiceStatus[sid]; p != nil {
			was = p.State
			wasRunning = p.State == ha.StateStarted && p.Running
		}
		switch {
		case sd.State == ha.StateFence:
			if _, ok := o.svcSince[sid]; !ok { // fenced now, or before this mastership
				o.svcSince[sid], o.svcFrom[sid] = now, sd.Node
			}
		case sd.State == ha.StateError && was != ha.StateError:
			add(Event{Type: EventServiceError, SID: sid, Node: sd.Node,
				Message: fmt.Sprintf("service '%s' entered the error state on node '%s' and needs manual intervention (see ERROR RECOVERY in docs/cli.md)", sid, sd.Node)})
		}
		if since, ok := o.svcSince[sid]; ok && sd.State == ha.StateStarted && sd.Running && !wasRunning {
			from := o.svcFrom[sid]
			delete(o.svcSince, sid)
			delete(o.svcFrom, sid)
			d := now.Sub(since)
			add(Event{Type: EventRecovery, SID: sid, Node: sd.Node, From: from, DurationSeconds: d.Seconds(),
				Message: fmt.Sprintf("service '%s' recovered on node '%s' after node '%s' was fenced (%v after fencing started)", sid, sd.Node, from, d.Round(time.Millisecond))})
		}
	}
	for sid := range o.svcSince {
		if sd := next.ServiceStatus[sid]; sd == nil || sd.State == ha.StateError || sd.State == ha.StateStopped {
			delete(o.svcSince, sid) // removed, or given up: no recovery to time
			delete(o.svcFrom, sid)
		}
	}
	return out
}
