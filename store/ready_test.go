package store

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"haxd/ha"
)

// forwardRaw sends one forwarded request to addr as another node would and
// returns the decoded answer.
func forwardRaw(addr string, req fwdRequest) (*result, error) {
	c, err := dialKind(context.Background(), addr, connForward, time.Second, nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	var res result
	if err := json.NewDecoder(io.LimitReader(c, maxForwardSize)).Decode(&res); err != nil {
		return nil, err
	}
	return &res, nil
}

// A store whose port is open but whose Open has not finished answers every
// forwarded request and every public write "not ready", executes nothing,
// and serves normally once Open returns.
func TestHalfStartedStoreAnswersNotReady(t *testing.T) {
	cfg := LocalConfig("n1", t.TempDir())
	cfg.NoSync = true
	rc := ha.DefaultResourceConfig("exec:pwn", "n1")
	cmd, err := newCommand(opPutResource, 0, rc)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []fwdRequest{
		{Op: fwdReadIndex, TimeoutMS: 1000},
		{Op: fwdApply, TimeoutMS: 1000, Command: cmd},
		{Op: fwdJoin, TimeoutMS: 1000, ID: "evil", Addr: "127.0.0.1:1"},
	}
	hookRan := false
	cfg.openHook = func(s *Store) {
		hookRan = true
		for _, req := range reqs {
			res, err := forwardRaw(s.Addr(), req)
			if err != nil {
				t.Errorf("forwarded %s to a half-started store: %v, want a not-ready answer", req.Op, err)
				continue
			}
			if !errors.Is(res.err(), ErrNotReady) {
				t.Errorf("forwarded %s to a half-started store: answer %+v, want code not_ready", req.Op, res)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.PutResource(ctx, rc); !errors.Is(err, ErrNotReady) {
			t.Errorf("PutResource on a half-started store: %v, want ErrNotReady", err)
		}
		if err := s.Barrier(ctx); !errors.Is(err, ErrNotReady) {
			t.Errorf("Barrier on a half-started store: %v, want ErrNotReady", err)
		}
	}
	s, err := Open(context.Background(), cfg, testLogger(t, slog.LevelWarn))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if !hookRan {
		t.Fatal("open hook did not run")
	}
	if err := s.Bootstrap(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.Resources()) != 0 {
		t.Errorf("resources after refused requests: %v, want none", s.Resources())
	}
	if servers, _ := s.Servers(); len(servers) != 1 {
		t.Errorf("servers after a refused join: %+v, want only n1", servers)
	}
	// Ready now: the same forwarded read reaches raft.
	ok := eventually(5*time.Second, func() bool {
		res, err := forwardRaw(s.Addr(), fwdRequest{Op: fwdReadIndex, TimeoutMS: 1000})
		return err == nil && res.err() == nil
	})
	if !ok {
		t.Error("forwarded read_index to the ready leader never succeeded")
	}
}

// A node restarted again and again while another process hammers its port
// with forwarded requests (as the other nodes do when it was their leader)
// never crashes: every request gets an answer or a closed connection.
func TestRestartUnderForwardedRequestsDoesNotCrash(t *testing.T) {
	cfg := LocalConfig("n1", t.TempDir())
	cfg.NoSync = true
	cfg.BindAddr = freePort(t)
	logger := testLogger(t, slog.LevelWarn)
	s, err := Open(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var notReady, answered atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := forwardRaw(cfg.BindAddr, fwdRequest{Op: fwdReadIndex, TimeoutMS: 200})
				if err != nil {
					continue
				}
				answered.Add(1)
				if errors.Is(res.err(), ErrNotReady) {
					notReady.Add(1)
				}
			}
		}()
	}
	// Raft loads its state in the window between listening and being
	// ready; make that window as long as a large snapshot would.
	cfg.openHook = func(*Store) { time.Sleep(20 * time.Millisecond) }
	for range 20 {
		s, err := Open(context.Background(), cfg, logger)
		if err != nil {
			t.Errorf("reopen: %v", err)
			continue
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("forwarded requests answered: %d, of which not ready: %d", answered.Load(), notReady.Load())
	if notReady.Load() == 0 {
		t.Error("no forwarded request reached a starting store: the test did not exercise the window")
	}
}
