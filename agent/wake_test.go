package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"haxd/clock"
	"haxd/gossip"
	"haxd/ha"
)

func TestWaitRound(t *testing.T) {
	const period, gap = 250 * time.Millisecond, 25 * time.Millisecond
	tests := []struct {
		name string
		at   time.Duration // from the round's start; 0: none
		wake time.Duration // when to wake, from the round's start; <0: never
		pre  int           // wake-ups pending before the wait
		stop bool
		want wakeReason
		took time.Duration
	}{
		{name: "nothing happens: the period", wake: -1, want: wakeTick, took: period},
		{name: "a wake-up runs the round at once", wake: 100 * time.Millisecond, want: wakeEvent, took: 100 * time.Millisecond},
		{name: "a wake-up right after the start waits for the gap", wake: 5 * time.Millisecond, want: wakeEvent, took: gap},
		{name: "wake-ups during the round run the next one after the gap", wake: -1, pre: 5, want: wakeEvent, took: gap},
		{name: "a lock expiry before the period's end", at: 120 * time.Millisecond, wake: -1, want: wakeAt, took: 120 * time.Millisecond},
		{name: "a lock expiry after the period's end waits for the period", at: 400 * time.Millisecond, wake: -1, want: wakeTick, took: period},
		{name: "a lock expiry inside the gap waits for the gap", at: time.Millisecond, wake: -1, want: wakeAt, took: gap},
		{name: "stop", wake: -1, stop: true, want: wakeStop, took: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWaker()
				for range tt.pre {
					w.wake()
				}
				stop := make(chan struct{})
				if tt.stop {
					close(stop)
				}
				start := time.Now()
				s := roundSchedule{period: period, gap: gap}
				if tt.at > 0 {
					s.at = start.Add(tt.at)
				}
				if tt.wake >= 0 {
					time.AfterFunc(tt.wake, w.wake)
				}
				got := waitRound(clock.System{}, start, s, stop, w)
				if took := time.Since(start); got != tt.want || took != tt.took {
					t.Errorf("waitRound = %v after %v, want %v after %v", got, took, tt.want, tt.took)
				}
				select {
				case <-w:
					t.Error("a wake-up is still pending after the round was due: it must be consumed by the round")
				default:
				}
			})
		})
	}
}

// TestRoundLoopCoalescesAndNeverOverlaps drives a round loop the way
// runCRM and runLRM do, with wake-ups every millisecond from two
// goroutines and rounds that take 40 ms: rounds never overlap, bursts
// coalesce (no round starts within the gap of the previous one), and each
// wake-up is followed by a round that starts after it.
func TestRoundLoopCoalescesAndNeverOverlaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period, gap, roundTime = 250 * time.Millisecond, 25 * time.Millisecond, 40 * time.Millisecond
		w := newWaker()
		stop := make(chan struct{})
		var inRound, overlaps, rounds atomic.Int32
		var lastWake atomic.Int64
		var starts []time.Time
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				start := time.Now()
				if inRound.Add(1) > 1 {
					overlaps.Add(1)
				}
				starts = append(starts, start)
				rounds.Add(1)
				time.Sleep(roundTime)
				inRound.Add(-1)
				if waitRound(clock.System{}, start, roundSchedule{period: period, gap: gap}, stop, w) == wakeStop {
					return
				}
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		for range 2 {
			go func() {
				tk := time.NewTicker(time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tk.C:
						lastWake.Store(time.Now().UnixNano())
						w.wake()
					}
				}
			}()
		}
		time.Sleep(time.Second)
		cancel()
		synctest.Wait()
		wakeEnd := time.Unix(0, lastWake.Load())
		time.Sleep(period + gap)
		close(stop)
		<-done
		if overlaps.Load() != 0 {
			t.Errorf("%d rounds ran while another was running", overlaps.Load())
		}
		for i := 1; i < len(starts); i++ {
			if d := starts[i].Sub(starts[i-1]); d < roundTime {
				t.Fatalf("round %d started %v after round %d: rounds overlap or the round time was not waited", i, d, i-1)
			}
		}
		// Busy rounds back to back: one per round time, not one per
		// wake-up (2000 wake-ups).
		if n := rounds.Load(); n > int32(time.Second/roundTime)+3 {
			t.Errorf("%d rounds for 2000 wake-ups in 1 s of 40 ms rounds: wake-ups did not coalesce", n)
		}
		last := starts[len(starts)-1]
		if !last.After(wakeEnd) {
			t.Errorf("the last round started at %v, before the last wake-up at %v: a wake-up was lost", last, wakeEnd)
		}
	})
}

func TestWakeOnGossip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := make(chan gossip.Event)
		w := newWaker()
		go wakeOnGossip(ctx, events, w)
		for _, tt := range []struct {
			typ  gossip.EventType
			want bool
		}{{gossip.EventJoin, false}, {gossip.EventUpdate, false}, {gossip.EventFailed, true}, {gossip.EventLeave, true}, {gossip.EventReap, false}} {
			events <- gossip.Event{Type: tt.typ, Member: gossip.Member{Name: "node2"}}
			synctest.Wait()
			got := false
			select {
			case <-w:
				got = true
			default:
			}
			if got != tt.want {
				t.Errorf("gossip %s: CRM woken = %v, want %v", tt.typ, got, tt.want)
			}
		}
	})
}

func TestWakeOnAssignment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var cur atomic.Pointer[ha.ManagerStatus]
		cur.Store(&ha.ManagerStatus{ServiceStatus: map[ha.SID]*ha.ServiceStatus{
			"exec:a": {State: ha.StateStarted, Node: "node1"},
		}})
		var fail atomic.Bool
		read := func() (*ha.ManagerStatus, error) {
			if fail.Load() {
				return nil, errors.New("no status")
			}
			return cur.Load(), nil
		}
		changed := make(chan struct{})
		w := newWaker()
		go wakeOnAssignment(ctx, changed, read, "node2", w)
		steps := []struct {
			name string
			ms   *ha.ManagerStatus
			fail bool
			want bool
		}{
			{"a service on another node changes", &ha.ManagerStatus{ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:a": {State: ha.StateStarted, Node: "node1", Running: true}}}, false, false},
			{"a service is recovered to this node", &ha.ManagerStatus{ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:a": {State: ha.StateStarted, Node: "node2"}}}, false, true},
			{"the same status written again", &ha.ManagerStatus{ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:a": {State: ha.StateStarted, Node: "node2"}}}, false, false},
			{"an unreadable status wakes nothing", nil, true, false},
			{"a service migrates to this node", &ha.ManagerStatus{ServiceStatus: map[ha.SID]*ha.ServiceStatus{
				"exec:a": {State: ha.StateStarted, Node: "node2"},
				"exec:b": {State: ha.StateMigrate, Node: "node3", Target: "node2"}}}, false, true},
			{"this node's state changes", &ha.ManagerStatus{NodeStatus: map[string]ha.NodeState{"node2": "maintenance"},
				ServiceStatus: map[ha.SID]*ha.ServiceStatus{
					"exec:a": {State: ha.StateStarted, Node: "node2"},
					"exec:b": {State: ha.StateMigrate, Node: "node3", Target: "node2"}}}, false, true},
		}
		for _, st := range steps {
			if st.ms != nil {
				cur.Store(st.ms)
			}
			fail.Store(st.fail)
			changed <- struct{}{}
			synctest.Wait()
			got := false
			select {
			case <-w:
				got = true
			default:
			}
			if got != st.want {
				t.Errorf("%s: LRM woken = %v, want %v", st.name, got, st.want)
			}
		}
	})
}
