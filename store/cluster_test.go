package store

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

func TestThreeNodeClusterForms(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	servers := c.waitServers(l, 3, 0)
	ids := []string{}
	for _, sv := range servers {
		ids = append(ids, sv.ID)
	}
	if want := []string{"n1", "n2", "n3"}; !slices.Equal(ids, want) {
		t.Errorf("servers = %v, want %v", ids, want)
	}
	for i, s := range c.nodes {
		if s.HadState() {
			t.Errorf("node %d: HadState on a fresh data dir", i)
		}
	}
	// Joining again (for example after a restart) changes nothing.
	if err := c.nodes[2].Join(c.ctx(5*time.Second), c.nodes[1].Addr()); err != nil {
		t.Fatalf("join again: %v", err)
	}
	c.waitServers(l, 3, 0)
}

func TestFollowerWritesAreForwardedToTheLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	f1 := c.follower(l)
	f2 := c.follower(l, f1)
	ctx := c.ctx(10 * time.Second)

	rc := ha.DefaultResourceConfig("vm:101", c.nodes[f1].NodeID())
	rc.Spec = json.RawMessage(`{"command":"/bin/sleep","args":["60"]}`)
	if err := c.nodes[f1].AddResource(ctx, rc); err != nil {
		t.Fatalf("add resource from follower: %v", err)
	}
	lrm := &ha.LRMStatus{State: ha.LRMState("active"), Mode: ha.ModeActive, Timestamp: 42,
		Results: map[string]ha.LRMResult{"uid1": {SID: "vm:101", State: "started", ExitCode: 0}}}
	if err := c.nodes[f1].WriteLRMStatus(ctx, c.nodes[f1].NodeID(), lrm); err != nil {
		t.Fatalf("write lrm status from follower: %v", err)
	}
	if err := c.nodes[f2].AppendCommands(ctx, "migrate vm:101 n3", "stop vm:101 0"); err != nil {
		t.Fatalf("append commands from follower: %v", err)
	}

	// The write is applied on the leader when the call returns.
	if got := c.nodes[l].Resources()["vm:101"]; got == nil || !sameConfig(*got, rc) {
		t.Errorf("leader's resource vm:101 = %+v, want %+v", got, rc)
	}
	// Another follower sees it after a read barrier.
	if err := c.nodes[f2].Barrier(ctx); err != nil {
		t.Fatalf("barrier on follower: %v", err)
	}
	if got := c.nodes[f2].Resources()["vm:101"]; got == nil || !sameConfig(*got, rc) {
		t.Errorf("other follower's resource vm:101 = %+v, want %+v", got, rc)
	}
	got, err := c.nodes[f2].LRMStatus(c.nodes[f1].NodeID())
	if err != nil || !reflect.DeepEqual(got, lrm) {
		t.Errorf("other follower's lrm status = %+v, %v; want %+v", got, err, lrm)
	}
	if got, want := c.nodes[f2].Commands(), []string{"migrate vm:101 n3", "stop vm:101 0"}; !slices.Equal(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}
	// A refusal keeps its sentinel across the forwarding hop.
	if err := c.nodes[f1].DeleteResource(ctx, "vm:999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing resource from follower: err = %v, want ErrNotFound", err)
	}
}

func TestLockIsHeldForTheTTLAfterTheLastRenewal(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(map[bool]string{false: "renewals in the log", true: "renewals from the leader's memory"}[mem], func(t *testing.T) {
			testLockIsHeldForTheTTL(t, mem)
		})
	}
}

func testLockIsHeldForTheTTL(t *testing.T, renewFromMemory bool) {
	const ttl = 3 * time.Second
	c := newCluster(t, 3, func(cfg *Config) { cfg.LockTTL, cfg.RenewFromMemory = ttl, renewFromMemory })
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	a := c.follower(l)
	b := c.follower(l, a)
	A, B := c.nodes[a], c.nodes[b]
	lock := AgentLock(A.NodeID())
	ctx := c.ctx(20 * time.Second)

	steps := []struct {
		name    string
		advance time.Duration
		by      *Store
		want    error // nil: acquired
		wantNew bool
	}{
		{"A takes the free lock", 0, A, nil, true},
		{"B cannot take it at once", 0, B, ErrLockHeld, false},
		{"B cannot take it just before the TTL", ttl - time.Millisecond, B, ErrLockHeld, false},
		{"A refreshes it", 0, A, nil, false},
		{"B cannot take it a TTL after the first acquisition", 2 * time.Millisecond, B, ErrLockHeld, false},
		{"B cannot take it exactly a TTL after the refresh", ttl - 2*time.Millisecond, B, ErrLockHeld, false},
		{"B takes it once more than the TTL passed", time.Nanosecond, B, nil, true},
		{"A cannot refresh a lock it lost", 0, A, ErrLockHeld, false},
		{"B refreshes", 0, B, nil, false},
	}
	for _, st := range steps {
		c.clock.Advance(st.advance)
		res, err := st.by.AcquireLock(ctx, lock, st.by.NodeID(), 0)
		switch {
		case st.want == nil && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.want != nil && !errors.Is(err, st.want):
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		case st.want == nil && (res.Owner != st.by.NodeID() || res.New != st.wantNew):
			t.Fatalf("%s: result %+v, want owner %s new %v", st.name, res, st.by.NodeID(), st.wantNew)
		}
	}
	if err := A.ReleaseLock(ctx, lock, A.NodeID(), false); !errors.Is(err, ErrLockHeld) {
		t.Errorf("A releases B's lock: err = %v, want ErrLockHeld", err)
	}
	if err := B.ReleaseLock(ctx, lock, B.NodeID(), false); err != nil {
		t.Fatalf("B releases its lock: %v", err)
	}
	if res, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); err != nil || !res.New {
		t.Errorf("A takes the released lock at once: %+v, %v", res, err)
	}

	// A lock released with services running is free for its owner only,
	// however long ago: it proves nothing about what the owner runs.
	if err := A.ReleaseLock(ctx, lock, A.NodeID(), true); err != nil {
		t.Fatalf("A releases its lock with services running: %v", err)
	}
	if !eventually(5*time.Second, func() bool { return A.LockReleasedRunning(lock) }) {
		t.Error("A's lock is not recorded as released with services running")
	}
	c.clock.Advance(10 * ttl)
	if _, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); !errors.Is(err, ErrLockReleasedRunning) {
		t.Errorf("B takes A's lock released with services running: err = %v, want ErrLockReleasedRunning", err)
	}
	// A takes it back before its watchdog is armed (the LRM arms it only
	// once the answer is in): still no proof for anyone else.
	if res, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), false); err != nil || !res.New || !res.Released {
		t.Fatalf("A takes its own released lock back unarmed: %+v, %v", res, err)
	}
	if _, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); !errors.Is(err, ErrLockReleasedRunning) {
		t.Errorf("B takes A's lock retaken unarmed: err = %v, want ErrLockReleasedRunning", err)
	}
	// The first renewal with the watchdog armed makes it an ordinary lock.
	if res, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true); err != nil || res.Released {
		t.Fatalf("A renews its lock armed: %+v, %v", res, err)
	}
	if !eventually(5*time.Second, func() bool { return !A.LockReleasedRunning(lock) }) {
		t.Error("A's lock still recorded as released after A renewed it armed")
	}
	if _, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); !errors.Is(err, ErrLockHeld) {
		t.Errorf("B takes A's lock right after A took it back: err = %v, want ErrLockHeld", err)
	}
	c.clock.Advance(ttl + time.Millisecond)
	if res, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); err != nil || !res.New {
		t.Errorf("B takes A's lock once it timed out again: %+v, %v", res, err)
	}
}

func TestNewLeaderRestartsLockTimersAtFullTTL(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(map[bool]string{false: "renewals in the log", true: "renewals from the leader's memory"}[mem], func(t *testing.T) {
			testNewLeaderRestartsLockTimers(t, mem)
		})
	}
}

func testNewLeaderRestartsLockTimers(t *testing.T, renewFromMemory bool) {
	const ttl = 3 * time.Second
	c := newCluster(t, 3, func(cfg *Config) { cfg.LockTTL, cfg.RenewFromMemory = ttl, renewFromMemory })
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	a := c.follower(l)
	b := c.follower(l, a)
	A, B := c.nodes[a], c.nodes[b]
	lock := AgentLock(A.NodeID())
	ctx := c.ctx(20 * time.Second)

	if _, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); err != nil {
		t.Fatalf("A takes the lock: %v", err)
	}
	// A renewal (answered from the old leader's memory in that mode).
	if _, err := A.AcquireLock(ctx, lock, A.NodeID(), 0); err != nil {
		t.Fatalf("A renews the lock: %v", err)
	}
	// Every node has applied the acquisition before the clock moves, so
	// the followers' own timers would expire with the old leader's.
	for _, s := range c.nodes {
		if err := s.Barrier(ctx); err != nil {
			t.Fatalf("barrier on %s: %v", s.NodeID(), err)
		}
	}
	// Almost a TTL passes on the old leader, then the leadership moves.
	c.clock.Advance(ttl - 500*time.Millisecond)
	c.changeLeader()
	// The old leader would have given the lock away now; the new one
	// counts a full TTL from its election.
	c.clock.Advance(time.Second)
	if _, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("B takes the lock 0.5 s after the old deadline: err = %v, want ErrLockHeld", err)
	}
	c.clock.Advance(ttl - time.Second)
	if _, err := B.AcquireLock(ctx, lock, B.NodeID(), 0); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("B takes the lock exactly a TTL after the election: err = %v, want ErrLockHeld", err)
	}
	c.clock.Advance(time.Nanosecond)
	res, err := B.AcquireLock(ctx, lock, B.NodeID(), 0)
	if err != nil || !res.New || res.Owner != B.NodeID() {
		t.Fatalf("B takes the lock after the new leader's TTL: %+v, %v", res, err)
	}
}

func TestWriteWithStaleTermIsRejected(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	ctx := c.ctx(20 * time.Second)
	old := c.nodes[l]
	term, isLeader := old.LeaderTerm()
	if !isLeader {
		t.Fatalf("leader %s: LeaderTerm says not leader", old.NodeID())
	}
	ms := &ha.ManagerStatus{MasterNode: old.NodeID(), Timestamp: 1}
	if err := old.WriteManagerStatus(ctx, term, ms); err != nil {
		t.Fatalf("write manager status as master: %v", err)
	}
	if err := old.PutResource(ctx, ha.DefaultResourceConfig("vm:100", old.NodeID())); err != nil {
		t.Fatalf("put resource: %v", err)
	}
	if err := old.AppendCommands(ctx, "stop vm:100 0"); err != nil {
		t.Fatalf("append command: %v", err)
	}

	nl := c.changeLeader()
	newLeader := c.nodes[nl]
	newTerm, _ := newLeader.LeaderTerm()
	if newTerm <= term {
		t.Fatalf("new term %d <= old term %d", newTerm, term)
	}

	late := []struct {
		name  string
		write func(s *Store, term uint64) error
	}{
		{"manager status", func(s *Store, term uint64) error {
			return s.WriteManagerStatus(ctx, term, &ha.ManagerStatus{MasterNode: s.NodeID(), Timestamp: 2})
		}},
		{"steal service", func(s *Store, term uint64) error { return s.StealService(ctx, term, "vm:100", old.NodeID(), "n9") }},
		{"set requested state", func(s *Store, term uint64) error {
			return s.SetRequestedState(ctx, term, "vm:100", ha.RequestStopped)
		}},
		{"take commands", func(s *Store, term uint64) error { _, err := s.TakeCommands(ctx, term); return err }},
		{"agent lock takeover", func(s *Store, term uint64) error {
			_, err := s.AcquireLock(ctx, AgentLock("n9"), s.NodeID(), term)
			return err
		}},
	}
	for _, w := range late {
		// The deposed master writes with its old term (forwarded to the new
		// leader), and the new leader is handed the old term too.
		for _, s := range []*Store{old, newLeader} {
			if err := w.write(s, term); !errors.Is(err, ErrStaleTerm) {
				t.Errorf("%s with term %d from %s: err = %v, want ErrStaleTerm", w.name, term, s.NodeID(), err)
			}
		}
	}
	got, err := newLeader.ManagerStatus()
	if err != nil || got.MasterNode != old.NodeID() || got.Timestamp != 1 {
		t.Errorf("manager status after late writes = %+v, %v; want the first write", got, err)
	}
	if rc := newLeader.Resources()["vm:100"]; rc.Node != old.NodeID() || rc.Requested() != ha.RequestStarted {
		t.Errorf("vm:100 after late writes = %+v, want unchanged", rc)
	}
	if cmds := newLeader.Commands(); len(cmds) != 1 {
		t.Errorf("commands after late take = %q, want the queued one", cmds)
	}

	// The new master's writes with its own term go through.
	if err := newLeader.WriteManagerStatus(ctx, newTerm, &ha.ManagerStatus{MasterNode: newLeader.NodeID(), Timestamp: 3}); err != nil {
		t.Fatalf("new master writes manager status: %v", err)
	}
	cmds, err := newLeader.TakeCommands(ctx, newTerm)
	if err != nil || !slices.Equal(cmds, []string{"stop vm:100 0"}) {
		t.Errorf("new master takes commands = %q, %v", cmds, err)
	}
	if rest := newLeader.Commands(); len(rest) != 0 {
		t.Errorf("queue after take = %q, want empty", rest)
	}
}

func TestSnapshotIsInstalledOnANewNode(t *testing.T) {
	c := newCluster(t, 4, nil)
	// Start with three nodes; the fourth joins after a snapshot compacted
	// the log, so it can only catch up by installing the snapshot.
	if err := c.nodes[0].Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	ctx := c.ctx(30 * time.Second)
	for _, s := range c.nodes[1:3] {
		if err := s.Join(ctx, c.nodes[0].Addr()); err != nil {
			t.Fatalf("join %s: %v", s.NodeID(), err)
		}
	}
	l := c.leader()
	c.waitServers(l, 4-1, 0)
	want := populate(t, ctx, c.nodes[l])
	for i := range 100 {
		if err := c.nodes[l].WriteLRMStatus(ctx, "n1", &ha.LRMStatus{Timestamp: int64(i)}); err != nil {
			t.Fatalf("write lrm status %d: %v", i, err)
		}
	}
	want.lrm["n1"] = &ha.LRMStatus{Timestamp: 99}
	// Every member compacts its log, so that whoever leads when n4 joins
	// has to send a snapshot.
	for _, s := range c.nodes[:3] {
		if err := s.Barrier(ctx); err != nil {
			t.Fatalf("barrier on %s: %v", s.NodeID(), err)
		}
		if err := s.Snapshot(); err != nil {
			t.Fatalf("snapshot on %s: %v", s.NodeID(), err)
		}
		first, err := s.bolt.FirstIndex()
		if err != nil || first <= 1 {
			t.Fatalf("log of %s not compacted after snapshot: first index %d, %v", s.NodeID(), first, err)
		}
	}
	if err := c.nodes[3].Join(ctx, c.nodes[0].Addr()); err != nil {
		t.Fatalf("join n4: %v", err)
	}
	if err := c.nodes[3].Barrier(ctx); err != nil {
		t.Fatalf("barrier on n4: %v", err)
	}
	want.check(t, c.nodes[3])
	// n4 got there through a snapshot install, which leaves a snapshot in
	// its own snapshot store.
	snaps, err := c.nodes[3].snaps.List()
	if err != nil || len(snaps) == 0 {
		t.Errorf("n4 snapshots = %v, %v; want the installed one", snaps, err)
	}
}

func TestWholeClusterRestartKeepsState(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	ctx := c.ctx(30 * time.Second)
	want := populate(t, ctx, c.nodes[l])
	// One node keeps part of the state in a snapshot, the others only in
	// their logs.
	f := c.follower(l)
	if err := c.nodes[f].Barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if err := c.nodes[f].Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := c.nodes[l].PutResource(ctx, ha.DefaultResourceConfig("ct:200", "n2")); err != nil {
		t.Fatalf("put resource after snapshot: %v", err)
	}
	want.resources["ct:200"] = ha.DefaultResourceConfig("ct:200", "n2")

	c.closeAll()
	for i := range c.nodes {
		if s := c.open(i); !s.HadState() {
			t.Errorf("%s: HadState false after restart", s.NodeID())
		}
	}
	nl := c.leader()
	c.waitServers(nl, 3, 0)
	for _, s := range c.nodes {
		if err := s.Barrier(ctx); err != nil {
			t.Fatalf("barrier on %s: %v", s.NodeID(), err)
		}
		want.check(t, s)
	}
}

func TestVoterCountIsCappedAndARemovedVoterIsReplaced(t *testing.T) {
	c := newCluster(t, 7, func(cfg *Config) { cfg.Voters = 3 })
	c.form()
	l := c.leader()
	servers := c.waitServers(l, 3, 4)
	var victim string
	for _, sv := range servers {
		if sv.Voter && !sv.Leader {
			victim = sv.ID
			break
		}
	}
	ctx := c.ctx(20 * time.Second)
	// Removal is requested through a non-voter, so it is forwarded.
	via := -1
	for i, sv := range servers {
		if !sv.Voter {
			via = i
			break
		}
	}
	if err := c.nodes[via].Remove(ctx, victim); err != nil {
		t.Fatalf("remove voter %s: %v", victim, err)
	}
	for i, s := range c.nodes {
		if s != nil && s.NodeID() == victim {
			c.close(i)
		}
	}
	l = c.leader()
	after := c.waitServers(l, 3, 3)
	for _, sv := range after {
		if sv.ID == victim {
			t.Errorf("removed voter %s still in configuration %+v", victim, after)
		}
	}
	// The cluster still commits with the promoted voter.
	if err := c.nodes[l].AppendCommands(ctx, "x"); err != nil {
		t.Errorf("write after promotion: %v", err)
	}
}

// stateWant is what populate wrote.
type stateWant struct {
	resources map[ha.SID]ha.ResourceConfig
	ms        *ha.ManagerStatus
	lrm       map[string]*ha.LRMStatus
	rules     string
	groups    string
	dc        *ha.Datacenter
	commands  []string
	locks     []string
}

// populate writes one of everything through s (the leader).
func populate(t *testing.T, ctx context.Context, s *Store) *stateWant {
	t.Helper()
	term, ok := s.LeaderTerm()
	if !ok {
		t.Fatalf("populate: %s is not the leader", s.NodeID())
	}
	timeout := 30
	w := &stateWant{
		resources: map[ha.SID]ha.ResourceConfig{
			"vm:100": ha.DefaultResourceConfig("vm:100", "n1"),
			"vm:101": {SID: "vm:101", Node: "n2", State: ha.RequestStopped, MaxRestart: 2, MaxRelocate: 0, Comment: "db", Spec: json.RawMessage(`{"unit":"db.service"}`)},
		},
		ms: &ha.ManagerStatus{
			MasterNode:    s.NodeID(),
			Timestamp:     1700000000,
			NodeStatus:    map[string]ha.NodeState{"n1": "online", "n2": "online"},
			ServiceStatus: map[ha.SID]*ha.ServiceStatus{"vm:100": {State: "started", Node: "n1", UID: "u1", Running: true}, "vm:101": {State: "request_stop", Node: "n2", Timeout: &timeout}},
		},
		lrm:      map[string]*ha.LRMStatus{"n2": {State: "active", Mode: ha.ModeActive, Timestamp: 5}},
		rules:    "node-affinity: r1\n\tresources vm:100\n\tnodes n1\n",
		groups:   "group: g1\n\tnodes n1,n2\n",
		dc:       &ha.Datacenter{ShutdownPolicy: ha.ShutdownMigrate, MaxWorkers: 4, CRS: ha.CRSOptions{Mode: "static", AutoRebalanceThreshold: 0, Set: map[string]bool{"ha-auto-rebalance-threshold": true}}},
		commands: []string{"migrate vm:100 n2"},
		locks:    []string{AgentLock("n1")},
	}
	for _, sid := range slices.Sorted(maps.Keys(w.resources)) {
		if err := s.PutResource(ctx, w.resources[sid]); err != nil {
			t.Fatalf("populate resource %s: %v", sid, err)
		}
	}
	steps := []error{
		s.WriteManagerStatus(ctx, term, w.ms),
		s.WriteLRMStatus(ctx, "n2", w.lrm["n2"]),
		s.SetRules(ctx, 0, []byte(w.rules)),
		s.SetGroups(ctx, 0, []byte(w.groups), []string{"g1"}),
		s.SetDatacenter(ctx, w.dc),
		s.AppendCommands(ctx, w.commands...),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("populate step %d: %v", i, err)
		}
	}
	if _, err := s.AcquireLock(ctx, AgentLock("n1"), "n1", 0); err != nil {
		t.Fatalf("populate lock: %v", err)
	}
	return w
}

// check compares s's local state with w.
func (w *stateWant) check(t *testing.T, s *Store) {
	t.Helper()
	gotRes := map[ha.SID]ha.ResourceConfig{}
	for sid, rc := range s.Resources() {
		if rc.Revision == 0 {
			t.Errorf("%s resource %s has no revision", s.NodeID(), sid)
		}
		rc.Revision = 0
		gotRes[sid] = *rc
	}
	if !reflect.DeepEqual(gotRes, w.resources) {
		t.Errorf("%s resources = %+v, want %+v", s.NodeID(), gotRes, w.resources)
	}
	ms, err := s.ManagerStatus()
	if err != nil || !reflect.DeepEqual(ms, w.ms) {
		t.Errorf("%s manager status = %+v, %v; want %+v", s.NodeID(), ms, err, w.ms)
	}
	for node, want := range w.lrm {
		got, err := s.LRMStatus(node)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s lrm status of %s = %+v, %v; want %+v", s.NodeID(), node, got, err, want)
		}
	}
	if got := string(s.Rules()); got != w.rules {
		t.Errorf("%s rules = %q, want %q", s.NodeID(), got, w.rules)
	}
	if got := string(s.Groups()); got != w.groups {
		t.Errorf("%s groups = %q, want %q", s.NodeID(), got, w.groups)
	}
	if got := s.Datacenter(); !reflect.DeepEqual(got, w.dc) {
		t.Errorf("%s datacenter = %+v, want %+v", s.NodeID(), got, w.dc)
	}
	if got := s.Commands(); !slices.Equal(got, w.commands) {
		t.Errorf("%s commands = %q, want %q", s.NodeID(), got, w.commands)
	}
	if got := slices.Sorted(maps.Keys(s.Locks())); !slices.Equal(got, w.locks) {
		t.Errorf("%s locks = %q, want %q", s.NodeID(), got, w.locks)
	}
}

func TestLockRenewalGoesThroughALeaderCrash(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	a := c.follower(l)
	A := c.nodes[a]
	ctx := c.ctx(20 * time.Second)
	if _, err := A.AcquireLock(ctx, AgentLock(A.NodeID()), A.NodeID(), 0); err != nil {
		t.Fatalf("take lock: %v", err)
	}
	c.close(l) // the leader is gone without a word
	start := time.Now()
	res, err := A.AcquireLock(ctx, AgentLock(A.NodeID()), A.NodeID(), 0)
	if err != nil || res.Owner != A.NodeID() || res.New {
		t.Fatalf("renew across the leader crash: %+v, %v; want a refresh", res, err)
	}
	t.Logf("renewal waited %v for the new leader", time.Since(start))
}

// TestAcquisitionIndexIsReachedByTheRequestersReplica: a lock answered
// to a follower carries the index of its committed entry; the follower's
// replica may lag behind it (here its FSM is held back), and WaitApplied
// returns only once the replica shows that entry and every write
// committed before it (agent.env.AcquireAgentLock waits so before the LRM
// acts on an acquisition).
func TestAcquisitionIndexIsReachedByTheRequestersReplica(t *testing.T) {
	// The requester is the non-voter: held back, it must not become the
	// leader (an election under load would otherwise stall the test).
	c := newCluster(t, 3, func(cfg *Config) { cfg.Voters = 2 })
	c.form()
	l := c.leader()
	a := -1
	for _, sv := range c.waitServers(l, 2, 1) {
		for i, n := range c.nodes {
			if !sv.Voter && n.NodeID() == sv.ID {
				a = i
			}
		}
	}
	if a < 0 {
		t.Fatal("no non-voter")
	}
	L, A := c.nodes[l], c.nodes[a]
	ctx := c.ctx(20 * time.Second)
	lock := AgentLock(A.NodeID())

	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	hold := func(*raft.Log) { <-release }
	A.fsm.beforeApply.Store(&hold)

	// A write committed before the acquisition (a steal, say), then the
	// acquisition; A's FSM applies neither yet.
	before := &ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeActive, Timestamp: 42}
	if err := L.WriteLRMStatus(ctx, "n9", before); err != nil {
		t.Fatalf("write before the acquisition: %v", err)
	}
	res, err := A.AcquireOwnLock(ctx, lock, A.NodeID(), true)
	if err != nil || !res.New {
		t.Fatalf("A takes its free lock: %+v, %v", res, err)
	}
	if li, held := L.fsm.lock(lock); !held || res.Index == 0 || li.Index != res.Index {
		t.Fatalf("result index %d, leader's lock %+v: want the committed entry's index", res.Index, li)
	}
	if got := A.fsm.applied.Load(); got >= res.Index {
		t.Fatalf("A's FSM applied %d >= %d although held back: the test shows nothing", got, res.Index)
	}
	if _, held := A.fsm.lock(lock); held {
		t.Fatal("A's replica shows the lock although its FSM is held back")
	}

	// Raft counts the entries applied once it queued them for the FSM:
	// not enough for a read.
	if !eventually(10*time.Second, func() bool { return A.raft.AppliedIndex() >= res.Index }) {
		t.Fatalf("raft on A never passed index %d (at %d)", res.Index, A.raft.AppliedIndex())
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = A.WaitApplied(short, res.Index)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied on a lagging replica: err = %v, want a deadline error", err)
	}

	done := make(chan error, 1)
	go func() { done <- A.WaitApplied(ctx, res.Index) }()
	unblock()
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied after the replica caught up: %v", err)
	}
	if li, held := A.fsm.lock(lock); !held || li.Owner != A.NodeID() || li.Index != res.Index {
		t.Errorf("A's replica after WaitApplied: lock %+v held %v, want owned by A at %d", li, held, res.Index)
	}
	if got, err := A.LRMStatus("n9"); err != nil || got.Timestamp != before.Timestamp {
		t.Errorf("A's replica after WaitApplied misses the earlier write: %+v, %v", got, err)
	}
}
