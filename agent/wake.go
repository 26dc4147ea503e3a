package agent

import (
	"context"
	"encoding/json"
	"time"

	"haxd/clock"
	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
)

// DefaultEventRoundGap is the default of Config.EventRoundGap.
const DefaultEventRoundGap = 25 * time.Millisecond

// waker coalesces the wake-up requests of one round loop: it holds at most
// one pending wake-up, so any number of requests before the loop next
// waits make a single early round. Requests never block.
type waker chan struct{}

func newWaker() waker { return make(waker, 1) }

// wake asks for a round now.
func (w waker) wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// drain drops a pending wake-up: the round about to start covers every
// change that asked for it.
func (w waker) drain() {
	select {
	case <-w:
	default:
	}
}

// roundSchedule says when a round loop runs its next round.
type roundSchedule struct {
	// period is the time from the start of a round to the start of the
	// next when nothing wakes the loop earlier.
	period time.Duration
	// gap is the shortest time from the start of a round to the start of
	// the next, whatever woke the loop: the rate limit of event-driven
	// rounds.
	gap time.Duration
	// at, when not zero, is an instant before the period's end at which a
	// round is due anyway (the master: the next expiry of another node's
	// lock).
	at time.Time
}

// wakeReason tells why waitRound returned.
type wakeReason int

const (
	// wakeTick: the period ended.
	wakeTick wakeReason = iota
	// wakeAt: the schedule's instant was reached.
	wakeAt
	// wakeEvent: a wake-up was requested.
	wakeEvent
	// wakeStop: stop is closed.
	wakeStop
)

func (r wakeReason) String() string {
	switch r {
	case wakeTick:
		return "tick"
	case wakeAt:
		return "deadline"
	case wakeEvent:
		return "event"
	}
	return "stop"
}

// waitRound blocks until the round after the one that started at start is
// due: at the end of the period, at s.at if that is earlier, or on a
// wake-up from w, but never before start + s.gap; a closed stop returns at
// once. The caller runs its rounds in its own goroutine, one after the
// other, so rounds never overlap; a wake-up requested during a round is
// kept by w and starts the next round as soon as the gap allows. A round
// started for any reason consumes the pending wake-up, because it reads
// the state after every change that requested it.
// clk is the clock start was read from.
func waitRound(clk clock.Clock, start time.Time, s roundSchedule, stop <-chan struct{}, w waker) wakeReason {
	due, reason := start.Add(s.period), wakeTick
	if !s.at.IsZero() && s.at.Before(due) {
		due, reason = s.at, wakeAt
	}
	earliest := start.Add(s.gap)
	if due.Before(earliest) {
		due = earliest
	}
	t := clk.NewTimer(due.Sub(clk.Now()))
	defer t.Stop()
	select {
	case <-stop:
		return wakeStop
	case <-t.C():
		w.drain()
		return reason
	case <-w:
	}
	if d := earliest.Sub(clk.Now()); d > 0 {
		gapTimer := clk.NewTimer(d)
		defer gapTimer.Stop()
		select {
		case <-stop:
			return wakeStop
		case <-gapTimer.C():
		}
		w.drain()
	}
	return wakeEvent
}

// wakeOnGossip wakes the CRM whenever gossip reports a member failed or
// left, until ctx ends: the master marks the node offline (and starts
// fencing it) at once instead of at its next round. Events are hints; the
// round reads the current member list.
func wakeOnGossip(ctx context.Context, events <-chan gossip.Event, crm waker) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.Type == gossip.EventFailed || ev.Type == gossip.EventLeave {
				crm.wake()
			}
		}
	}
}

// forwardWakes wakes w for every value on ch until ctx ends; a nil ch
// never delivers.
func forwardWakes(ctx context.Context, ch <-chan struct{}, w waker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			w.wake()
		}
	}
}

// lrmView is the part of the master's status an LRM acts on: its node's
// state and request, and every service placed on it or moving to it.
type lrmView struct {
	Node     ha.NodeState                 `json:"node,omitempty"`
	Request  *ha.NodeRequest              `json:"request,omitempty"`
	Services map[ha.SID]*ha.ServiceStatus `json:"services,omitempty"`
}

// viewOf returns node's lrmView of ms, encoded; nil without a status.
func viewOf(ms *ha.ManagerStatus, node string) []byte {
	if ms == nil {
		return nil
	}
	v := lrmView{Node: ms.NodeStatus[node], Request: ms.NodeRequest[node], Services: map[ha.SID]*ha.ServiceStatus{}}
	for sid, ss := range ms.ServiceStatus {
		if ss != nil && (ss.Node == node || ss.Target == node) {
			v.Services[sid] = ss
		}
	}
	// Maps encode with sorted keys: equal views encode equally.
	b, _ := json.Marshal(v)
	return b
}

// managerStatusReader reads the local replica's manager status.
type managerStatusReader func() (*ha.ManagerStatus, error)

// wakeOnAssignment wakes the LRM of node whenever the applied manager
// status changes what concerns node (a service placed on it or moving to
// it, a state or request change), until ctx ends. Changes elsewhere in the
// status wake nothing.
func wakeOnAssignment(ctx context.Context, changed <-chan struct{}, read managerStatusReader, node string, lrm waker) {
	var last []byte
	if ms, err := read(); err == nil {
		last = viewOf(ms, node)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		ms, err := read()
		if err != nil {
			continue
		}
		if v := viewOf(ms, node); string(v) != string(last) {
			last = v
			lrm.wake()
		}
	}
}

// nextLockExpiry is the instant the master's next round is due because
// another node's lock becomes takeable on the leader's lock timers (zero
// when this node is not the leader or no lock expires). A takeover needs
// the clock strictly past the deadline, hence the millisecond.
func nextLockExpiry(st *store.Store, self string, now time.Time) time.Time {
	if _, leader := st.LeaderTerm(); !leader {
		return time.Time{}
	}
	d, ok := st.NextLockExpiry(self, now)
	if !ok {
		return time.Time{}
	}
	return d.Add(time.Millisecond)
}
