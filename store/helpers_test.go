package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"haxd/clock"
	"haxd/ha"
)

// fakeClock is a manually advanced clock shared by the nodes of a test
// (clock.Clock). Its timers fire when Advance reaches their deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once Advance reaches now + d.
func (c *fakeClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.fireLocked()
	return t
}

// Mono counts Now's nanoseconds.
func (c *fakeClock) Mono() int64 { return c.Now().UnixNano() }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.fireLocked()
	c.mu.Unlock()
}

// fireLocked fires and forgets every timer due at c.now.
func (c *fakeClock) fireLocked() {
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// fakeTimer is a timer of a fakeClock.
type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// Stop forgets the timer; it reports whether it had not fired yet.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, p := range t.c.timers {
		if p == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// inmemNet connects the in-memory raft transports of one test's nodes,
// by address: a node's raft reaches every other open node of the test and
// no closed one.
type inmemNet struct {
	mu    sync.Mutex
	nodes map[raft.ServerAddress]*inmemTransport
}

// transport returns a new in-memory raft transport at addr, connected both
// ways with every open node's (Config.raftTransport). A node reopened at
// its address replaces its earlier transport.
func (n *inmemNet) transport(addr string) raftTransport {
	a, tr := raft.NewInmemTransport(raft.ServerAddress(addr))
	it := &inmemTransport{InmemTransport: tr, net: n}
	n.mu.Lock()
	defer n.mu.Unlock()
	for pa, p := range n.nodes {
		if pa != a {
			tr.Connect(pa, p.InmemTransport)
		}
		p.Connect(a, tr)
	}
	n.nodes[a] = it
	return it
}

// inmemTransport is raft's in-memory transport without pipelining, like
// production's unpipelined, that leaves its inmemNet when closed.
type inmemTransport struct {
	*raft.InmemTransport
	net *inmemNet
}

// AppendEntriesPipeline refuses, so raft uses plain AppendEntries RPCs.
func (*inmemTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// Close disconnects the transport from every other node's and closes it.
func (t *inmemTransport) Close() error {
	n := t.net
	a := t.LocalAddr()
	n.mu.Lock()
	if n.nodes[a] == t {
		delete(n.nodes, a)
		for _, p := range n.nodes {
			p.Disconnect(a)
		}
	}
	n.mu.Unlock()
	return t.InmemTransport.Close()
}

// testWriter passes log lines to t until the test's cleanup shuts it, so
// that late goroutines cannot log into a finished test.
type testWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// testLogger logs at level to the test's output (shown on failure or -v).
func testLogger(t *testing.T, level slog.Level) *slog.Logger {
	t.Helper()
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.close) // registered first, runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// freePort returns a loopback address with a port that was free a moment
// ago, for tests that restart nodes on the same address.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cluster is a set of store nodes in one test.
type cluster struct {
	t      *testing.T
	logger *slog.Logger
	clock  *fakeClock
	cfgs   []Config
	nodes  []*Store
}

// newCluster opens n nodes with the fast timings and a shared fake clock,
// whose rafts talk over in-memory transports (inmemNet); mutate adjusts
// each config. Forwarded requests still use each node's port, on a fixed
// loopback address. Nodes are closed at the end of the test.
func newCluster(t *testing.T, n int, mutate func(*Config)) *cluster {
	t.Helper()
	mem := &inmemNet{nodes: map[raft.ServerAddress]*inmemTransport{}}
	return openCluster(t, n, func(cfg *Config) {
		cfg.raftTransport = mem.transport
		if mutate != nil {
			mutate(cfg)
		}
	})
}

// newTCPCluster is newCluster with raft's network transport over each
// node's port, for the tests of the transport itself.
func newTCPCluster(t *testing.T, n int, mutate func(*Config)) *cluster {
	t.Helper()
	return openCluster(t, n, mutate)
}

// openCluster opens n nodes on fixed loopback ports with the fast timings
// and a shared fake clock; mutate adjusts each config. Nodes are closed at
// the end of the test.
func openCluster(t *testing.T, n int, mutate func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, logger: testLogger(t, slog.LevelWarn), clock: newFakeClock()}
	base := t.TempDir()
	for i := range n {
		cfg := LocalConfig(fmt.Sprintf("n%d", i+1), fmt.Sprintf("%s/n%d", base, i+1))
		cfg.BindAddr = freePort(t)
		cfg.NoSync = true
		cfg.Clock = c.clock
		if mutate != nil {
			mutate(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.nodes = make([]*Store, n)
	for i := range n {
		c.openFirst(i)
	}
	t.Cleanup(c.closeAll)
	return c
}

// openFirst starts node i for the first time. Its port was free when
// freePort chose it, but until the bind anything on the host may take it
// (an outgoing connection of a test running in parallel gets its port
// from the same ephemeral range): then it picks another port and tries
// again. Restarts keep the address (open).
func (c *cluster) openFirst(i int) *Store {
	c.t.Helper()
	for try := 1; ; try++ {
		s, err := Open(context.Background(), c.cfgs[i], c.logger.With("test_node", c.cfgs[i].NodeID))
		if err == nil {
			c.nodes[i] = s
			return s
		}
		if !errors.Is(err, syscall.EADDRINUSE) || try == 5 {
			c.t.Fatalf("open %s: %v", c.cfgs[i].NodeID, err)
		}
		c.t.Logf("open %s: %v; trying another port", c.cfgs[i].NodeID, err)
		c.cfgs[i].BindAddr = freePort(c.t)
	}
}

// open (re)starts node i.
func (c *cluster) open(i int) *Store {
	c.t.Helper()
	s, err := Open(context.Background(), c.cfgs[i], c.logger.With("test_node", c.cfgs[i].NodeID))
	if err != nil {
		c.t.Fatalf("open %s: %v", c.cfgs[i].NodeID, err)
	}
	c.nodes[i] = s
	return s
}

// close stops node i.
func (c *cluster) close(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close %s: %v", c.cfgs[i].NodeID, err)
	}
	c.nodes[i] = nil
}

func (c *cluster) closeAll() {
	for i := range c.nodes {
		c.close(i)
	}
}

// form bootstraps node 0 and joins each other node through the node before
// it, so that most joins reach a follower and are forwarded to the leader.
func (c *cluster) form() {
	c.t.Helper()
	if err := c.nodes[0].Bootstrap(); err != nil {
		c.t.Fatalf("bootstrap: %v", err)
	}
	ctx := c.ctx(10 * time.Second)
	if _, err := c.nodes[0].WaitLeader(ctx); err != nil {
		c.t.Fatalf("first leader: %v", err)
	}
	for i, s := range c.nodes[1:] {
		if err := s.Join(ctx, c.nodes[i].Addr()); err != nil {
			c.t.Fatalf("join %s via %s: %v", s.NodeID(), c.nodes[i].NodeID(), err)
		}
	}
}

func (c *cluster) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	c.t.Cleanup(cancel)
	return ctx
}

// leader waits for a leader that all open cluster members agree on (nodes
// that have not joined yet do not count) and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	var last string
	ok := eventually(10*time.Second, func() bool {
		id := ""
		for i, s := range c.nodes {
			if s == nil {
				continue
			}
			if servers, err := s.Servers(); err != nil || len(servers) == 0 {
				continue
			}
			l, _ := s.Leader()
			if l == "" || (id != "" && l != id) {
				last = fmt.Sprintf("node %d sees leader %q", i, l)
				return false
			}
			id = l
		}
		for _, s := range c.nodes {
			if s != nil && s.NodeID() == id && s.IsLeader() {
				return true
			}
		}
		last = fmt.Sprintf("leader %q is not leader itself", id)
		return false
	})
	if !ok {
		c.t.Fatalf("no agreed leader: %s", last)
	}
	for i, s := range c.nodes {
		if s != nil && s.IsLeader() {
			return i
		}
	}
	c.t.Fatalf("leader vanished")
	return -1
}

// follower returns the index of an open node other than the leader and
// than the skip indexes.
func (c *cluster) follower(leader int, skip ...int) int {
	c.t.Helper()
outer:
	for i, s := range c.nodes {
		if s == nil || i == leader {
			continue
		}
		for _, k := range skip {
			if k == i {
				continue outer
			}
		}
		return i
	}
	c.t.Fatalf("no follower left")
	return -1
}

// waitServers waits until node i's configuration has want voters and
// nonvoters, and returns it.
func (c *cluster) waitServers(i, voters, nonvoters int) []Server {
	c.t.Helper()
	var got []Server
	ok := eventually(15*time.Second, func() bool {
		var err error
		got, err = c.nodes[i].Servers()
		if err != nil {
			return false
		}
		v, nv := 0, 0
		for _, sv := range got {
			if sv.Voter {
				v++
			} else {
				nv++
			}
		}
		return v == voters && nv == nonvoters
	})
	if !ok {
		c.t.Fatalf("servers on %s: want %d voters and %d non-voters, got %+v", c.nodes[i].NodeID(), voters, nonvoters, got)
	}
	return got
}

// eventually polls cond every 10 ms until it holds or d passed.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// changeLeader makes the current leader hand over to another node and
// returns the new leader's index. A leader that changed by itself
// meanwhile is asked again, so that a new term starts after the call.
func (c *cluster) changeLeader() int {
	c.t.Helper()
	for range 10 {
		l := c.leader()
		term, _ := c.nodes[l].LeaderTerm()
		if err := c.nodes[l].raft.LeadershipTransfer().Error(); err != nil {
			c.t.Logf("transfer leadership from %s: %v; retrying", c.nodes[l].NodeID(), err)
			continue
		}
		nl := c.leader()
		if nt, _ := c.nodes[nl].LeaderTerm(); nl != l && nt > term {
			return nl
		}
	}
	c.t.Fatalf("leadership did not move")
	return -1
}

// sameConfig reports whether got equals want apart from the revision, which
// the store sets and which must be set.
func sameConfig(got, want ha.ResourceConfig) bool {
	if got.Revision == 0 {
		return false
	}
	got.Revision, want.Revision = 0, 0
	return reflect.DeepEqual(got, want)
}

func TestFakeClockTimers(t *testing.T) {
	c := newFakeClock()
	a, b := c.NewTimer(time.Second), c.NewTimer(2*time.Second)
	if now := c.NewTimer(0); len(now.C()) != 1 {
		t.Error("a timer of 0 did not fire at once")
	}
	c.Advance(999 * time.Millisecond)
	if len(a.C()) != 0 {
		t.Error("timer fired before its deadline")
	}
	c.Advance(time.Millisecond)
	if got := <-a.C(); !got.Equal(c.Now()) {
		t.Errorf("timer fired at %v, want %v", got, c.Now())
	}
	if a.Stop() {
		t.Error("Stop of a fired timer reported it pending")
	}
	if !b.Stop() {
		t.Error("Stop of a pending timer reported it fired")
	}
	c.Advance(time.Hour)
	if len(b.C()) != 0 {
		t.Error("a stopped timer fired")
	}
}
