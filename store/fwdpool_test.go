package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"haxd/ha"
)

// A follower's forwarded writes reuse one persistent connection to the
// leader instead of opening one per request; when the leader's node
// restarts, the dead pooled connection is noticed before use, so even a
// write that is not retried on an unknown outcome goes through.
func TestForwardedWritesReuseAPersistentConnection(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	f := c.follower(l)
	ctx := c.ctx(20 * time.Second)
	before := c.nodes[l].mux.streams.Load()
	for i := range 20 {
		rc := ha.DefaultResourceConfig(ha.SID(fmt.Sprintf("vm:%d", 100+i)), c.nodes[f].NodeID())
		if err := c.nodes[f].PutResource(ctx, rc); err != nil {
			t.Fatalf("put resource %d from a follower: %v", i, err)
		}
	}
	// The joins during form may have opened the connection already.
	if n, total := c.nodes[l].mux.streams.Load()-before, c.nodes[l].mux.streams.Load(); n > 1 || total < 1 {
		t.Errorf("20 forwarded writes opened %d persistent connections on the leader (%d in all), want at most 1 (and at least 1 in all)", n, total)
	}

	// Restart the leader's node; the others elect a new leader or it
	// comes back. Append (not idempotent: an unknown outcome is returned,
	// not retried) from the follower must succeed.
	c.close(l)
	c.open(l)
	nl := c.leader()
	sender := c.follower(nl)
	if err := c.nodes[sender].AppendCommands(ctx, "stop vm:100 0"); err != nil {
		t.Fatalf("append from %s after %s restarted: %v", c.nodes[sender].NodeID(), c.cfgs[l].NodeID, err)
	}
}

// A node of an older version closes connections of the unknown persistent
// kind; the sender falls back to one connection per request.
func TestForwardingFallsBackToOneShotConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != connForward {
					return // what an older node does with an unknown kind
				}
				var req fwdRequest
				if err := json.NewDecoder(c).Decode(&req); err != nil {
					return
				}
				_ = json.NewEncoder(c).Encode(ok(42))
			}()
		}
	}()
	cfg := LocalConfig("n1", t.TempDir())
	cfg.NoSync = true
	s, err := Open(context.Background(), cfg, testLogger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res := s.send(ctx, ln.Addr().String(), "", &fwdRequest{Op: fwdReadIndex})
		cancel()
		if err := res.err(); err != nil || string(res.Value) != "42" {
			t.Fatalf("request %d to an older node: %+v, want value 42", i, res)
		}
	}
}

// A pooled connection that the receiver closed while it was idle is not
// used again: the next request goes on a new connection and gets its
// answer (no outcome_unknown).
func TestPooledConnectionClosedByTheReceiverIsNotReused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- struct{}{}
			go func() {
				defer c.Close() // after one request: as a restarted node would
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != connForwardStream {
					return
				}
				if _, err := c.Write([]byte{connForwardStream}); err != nil {
					return
				}
				var req fwdRequest
				if err := json.NewDecoder(c).Decode(&req); err != nil {
					return
				}
				_ = json.NewEncoder(c).Encode(ok(7))
			}()
		}
	}()
	p := newFwdPool(nil, slog.New(slog.DiscardHandler))
	defer p.closeAll()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fc, err := p.get(ctx, ln.Addr().String(), "", 5*time.Second)
		if err != nil {
			cancel()
			t.Fatalf("request %d: %v", i, err)
		}
		var res result
		if err := json.NewEncoder(fc.c).Encode(fwdRequest{Op: fwdReadIndex}); err != nil {
			t.Fatalf("request %d: send: %v", i, err)
		}
		if err := fc.dec.Decode(&res); err != nil || string(res.Value) != "7" {
			t.Fatalf("request %d: answer %+v, %v; want 7", i, res, err)
		}
		cancel()
		p.put(fc)
		time.Sleep(50 * time.Millisecond) // the receiver's close arrives
	}
	if n := len(conns); n != 3 {
		t.Errorf("%d connections for 3 requests to a receiver that closes each, want 3", n)
	}
}

// A lock request whose answer does not come (a lost segment waiting for
// TCP's retransmit) is sent once more after ForwardHedgeDelay on another
// connection, and the first answer wins; without hedging the same request
// runs into its deadline.
func TestUnansweredLockRequestIsHedged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			silent := conns.Add(1) == 1 // the first connection swallows its request
			go func() {
				defer c.Close()
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != connForwardStream {
					return
				}
				if _, err := c.Write([]byte{connForwardStream}); err != nil {
					return
				}
				dec := json.NewDecoder(c)
				for {
					var req fwdRequest
					if err := dec.Decode(&req); err != nil {
						return
					}
					if !silent {
						_ = json.NewEncoder(c).Encode(ok(LockResult{}))
					}
				}
			}()
		}
	}()
	for _, tt := range []struct {
		hedge time.Duration
		ok    bool
	}{{100 * time.Millisecond, true}, {0, false}} {
		conns.Store(0)
		cfg := LocalConfig("n1", t.TempDir())
		cfg.NoSync = true
		cfg.ForwardHedgeDelay = tt.hedge
		s, err := Open(context.Background(), cfg, testLogger(t, slog.LevelWarn))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res := s.send(ctx, ln.Addr().String(), "", &fwdRequest{Op: fwdLock, Lock: &lockRequest{Name: "l", Holder: "n1"}})
		cancel()
		s.Close()
		if got := res.err() == nil; got != tt.ok {
			t.Errorf("hedge %v: answer %+v, want success %v", tt.hedge, res, tt.ok)
		}
	}
}
