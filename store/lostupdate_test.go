package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"haxd/ha"
)

// history is one writer's record of one field of one resource: the value
// of its last acknowledged write, and the values of later writes whose
// outcome is unknown (a leader change mid-commit), any of which may be the
// final value.
type history struct {
	confirmed string
	possible  []string
}

func (h *history) record(v string, err error) {
	switch {
	case err == nil:
		h.confirmed, h.possible = v, nil
	case errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, context.DeadlineExceeded):
		h.possible = append(h.possible, v)
	}
}

func (h *history) allows(v string) bool { return v == h.confirmed || slices.Contains(h.possible, v) }

// TestConcurrentConfigWritesLoseNothing drives operator writes (requested
// state, group, spec patches from two writers, comments) through the
// followers and the CRM's term-fenced steals plus resource-agent location
// changes against a real 3-node store, all at once on the same resources,
// and checks that the final state holds every writer's last write: no
// write reverted another writer's field.
func TestConcurrentConfigWritesLoseNothing(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	f1 := c.follower(l)
	f2 := c.follower(l, f1)
	leader, op1, op2 := c.nodes[l], c.nodes[f1], c.nodes[f2]
	ctx := c.ctx(60 * time.Second)
	term, ok := leader.LeaderTerm()
	if !ok {
		t.Fatal("leader lost leadership")
	}
	nodes := []string{"n1", "n2", "n3"}
	if err := leader.WriteManagerStatus(ctx, term, &ha.ManagerStatus{NodeStatus: map[string]ha.NodeState{"n1": "online", "n2": "online", "n3": "online"}}); err != nil {
		t.Fatal(err)
	}
	// The CRM's steals below need the source node's agent lock: the
	// master holds all three, as after fencing them.
	for _, n := range nodes {
		if _, err := leader.AcquireLock(ctx, AgentLock(n), leader.NodeID(), term); err != nil {
			t.Fatalf("take %s's agent lock: %v", n, err)
		}
	}
	if err := op1.SetGroups(ctx, 0, []byte("group: g1\n\tnodes n1\n\ngroup: g2\n\tnodes n2\n"), []string{"g1", "g2"}); err != nil {
		t.Fatal(err)
	}
	const services, rounds = 6, 25
	var sids []ha.SID
	for i := range services {
		sid := ha.SID(fmt.Sprintf("exec:s%d", i))
		sids = append(sids, sid)
		rc := ha.DefaultResourceConfig(sid, "n1")
		rc.Spec = json.RawMessage(`{"command":"/bin/true"}`)
		if err := op2.AddResource(ctx, rc); err != nil {
			t.Fatalf("add %s: %v", sid, err)
		}
	}

	var (
		mu       sync.Mutex
		state    = map[ha.SID]*history{}
		group    = map[ha.SID]*history{}
		comment  = map[ha.SID]*history{}
		location = map[ha.SID]*history{}
		keys     = map[ha.SID]map[string]bool{} // spec keys acknowledged
		maybe    = map[ha.SID]map[string]bool{} // spec keys of unknown outcome
		wg       sync.WaitGroup
		fail     = func(format string, args ...any) { t.Errorf(format, args...) }
	)
	for _, sid := range sids {
		state[sid], group[sid], comment[sid] = &history{confirmed: "started"}, &history{}, &history{}
		location[sid] = &history{confirmed: "n1"}
		keys[sid], maybe[sid] = map[string]bool{"command": true}, map[string]bool{}
	}
	run := func(name string, fn func(i int, sid ha.SID)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				for _, sid := range sids {
					fn(i, sid)
				}
			}
		}()
	}
	// Operator 1 (through follower 1): requested state.
	run("state", func(i int, sid ha.SID) {
		v := []ha.RequestedState{ha.RequestStopped, ha.RequestStarted, ha.RequestDisabled}[i%3]
		err := op1.UpdateResource(ctx, sid, ResourceUpdate{State: &v})
		mu.Lock()
		state[sid].record(string(v), err)
		mu.Unlock()
		if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
			fail("set state of %s: %v", sid, err)
		}
	})
	// Operator 2 (through follower 2): group and comment in one intent.
	run("group", func(i int, sid ha.SID) {
		g, cm := []string{"g1", "g2", ""}[i%3], fmt.Sprintf("round %d", i)
		err := op2.UpdateResource(ctx, sid, ResourceUpdate{Group: &g, Comment: &cm})
		mu.Lock()
		group[sid].record(g, err)
		comment[sid].record(cm, err)
		mu.Unlock()
		if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
			fail("set group of %s: %v", sid, err)
		}
	})
	// Two spec patchers, each adding its own keys with a read, a merge and
	// a compare-and-set, as the agent does for haxd ha set --spec.
	patcher := func(s *Store, prefix string) func(int, ha.SID) {
		return func(i int, sid ha.SID) {
			key := fmt.Sprintf("%s%d", prefix, i)
			for attempt := 0; ; attempt++ {
				if err := s.Barrier(ctx); err != nil {
					fail("barrier: %v", err)
					return
				}
				var spec map[string]any
				from := s.Resources()[sid].Spec
				if err := json.Unmarshal(from, &spec); err != nil {
					fail("decode spec of %s: %v", sid, err)
					return
				}
				spec[key] = i
				merged, _ := json.Marshal(spec)
				err := s.UpdateResource(ctx, sid, ResourceUpdate{Spec: merged, SpecFrom: from})
				if errors.Is(err, ErrConflict) && attempt < 50 {
					continue
				}
				mu.Lock()
				if err == nil {
					keys[sid][key] = true
				} else if errors.Is(err, ErrOutcomeUnknown) {
					maybe[sid][key] = true
				} else {
					fail("patch spec of %s: %v", sid, err)
				}
				mu.Unlock()
				return
			}
		}
	}
	run("spec1", patcher(op1, "a"))
	run("spec2", patcher(op2, "b"))
	// The CRM (the leader, fenced by its term) steals services between
	// nodes, and a resource agent reports finished migrations; both move
	// the location only from where the service is.
	deposed := false // the leader lost its term: its steals are refused
	run("location", func(i int, sid ha.SID) {
		mu.Lock()
		h := location[sid]
		from := h.confirmed
		if len(h.possible) > 0 {
			// An earlier move's outcome is unknown: learn where the
			// service is, which must be one of the candidates.
			if err := op1.Barrier(ctx); err != nil {
				mu.Unlock()
				fail("barrier: %v", err)
				return
			}
			if cur := op1.Resources()[sid].Node; h.allows(cur) {
				h.confirmed, h.possible, from = cur, nil, cur
			} else {
				fail("%s is on %s after moves %+v", sid, cur, *h)
			}
		}
		steal := i%2 == 0 && !deposed
		mu.Unlock()
		to := nodes[(slices.Index(nodes, from)+1)%len(nodes)]
		var err error
		if steal {
			err = leader.StealService(ctx, term, sid, from, to)
		} else {
			err = op1.SetLocation(ctx, sid, from, to)
		}
		mu.Lock()
		defer mu.Unlock()
		location[sid].record(to, err)
		switch {
		case err == nil || errors.Is(err, ErrOutcomeUnknown):
		case steal && errors.Is(err, ErrStaleTerm):
			deposed = true // a leader change under load: correct refusal
		default:
			fail("move %s from %s to %s: %v", sid, from, to, err)
		}
	})
	wg.Wait()

	for _, s := range c.nodes {
		if err := s.Barrier(ctx); err != nil {
			t.Fatalf("barrier on %s: %v", s.NodeID(), err)
		}
		for _, sid := range sids {
			got := s.Resources()[sid]
			if got == nil {
				t.Fatalf("%s: %s is gone", s.NodeID(), sid)
			}
			if !state[sid].allows(string(got.State)) {
				t.Errorf("%s: %s state %q, last written %+v", s.NodeID(), sid, got.State, *state[sid])
			}
			if !group[sid].allows(got.Group) {
				t.Errorf("%s: %s group %q, last written %+v", s.NodeID(), sid, got.Group, *group[sid])
			}
			if !comment[sid].allows(got.Comment) {
				t.Errorf("%s: %s comment %q, last written %+v", s.NodeID(), sid, got.Comment, *comment[sid])
			}
			if !location[sid].allows(got.Node) {
				t.Errorf("%s: %s on %q, last moved %+v", s.NodeID(), sid, got.Node, *location[sid])
			}
			var spec map[string]any
			if err := json.Unmarshal(got.Spec, &spec); err != nil {
				t.Fatalf("%s: spec of %s: %v", s.NodeID(), sid, err)
			}
			for _, k := range slices.Sorted(maps.Keys(keys[sid])) {
				if _, present := spec[k]; !present {
					t.Errorf("%s: %s spec lost key %q: %s", s.NodeID(), sid, k, got.Spec)
				}
			}
			for k := range spec {
				if !keys[sid][k] && !maybe[sid][k] {
					t.Errorf("%s: %s spec has key %q nobody wrote", s.NodeID(), sid, k)
				}
			}
		}
	}
	// Every patch was acknowledged or at least tried: the test exercised
	// the patchers.
	for _, sid := range sids {
		if n := len(keys[sid]) + len(maybe[sid]); n != 2*rounds+1 {
			t.Errorf("%s: %d spec keys written, want %d", sid, n, 2*rounds+1)
		}
	}
}
