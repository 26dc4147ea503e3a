package store

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A leader that stands down hands its leadership over, and while it
// stands down it never leads again, even when the leader after it dies;
// standing again restores raft's timeouts. Five nodes: the three others
// elect without it (stood down, it keeps the dead leader it knew and
// grants no vote, as a node whose disk is full could not persist one).
func TestStandDownKeepsANodeFromLeading(t *testing.T) {
	c := newCluster(t, 5, nil)
	c.form()
	l := c.leader()
	out := c.nodes[l]
	if err := out.StandDown("test"); err != nil {
		t.Fatalf("stand down: %v", err)
	}
	if !out.StoodDown() {
		t.Fatal("StoodDown() = false after StandDown")
	}
	if !eventually(10*time.Second, func() bool { return !out.IsLeader() }) {
		t.Fatal("the leader that stood down still leads")
	}
	next := c.leader()
	if next == l {
		t.Fatalf("node %d stood down and leads again", l)
	}
	// The second leader dies (a crash: Close would hand the leadership
	// over, and a transfer aimed at a stood-down node makes it stand, see
	// StandDown): one of the three others leads, not the node that stood
	// down.
	if err := c.nodes[next].raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	c.close(next)
	third := -1
	if !eventually(10*time.Second, func() bool {
		for i, s := range c.nodes {
			if s != nil && s.IsLeader() {
				third = i
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no leader after node %d died", next)
	}
	if third == l {
		t.Fatalf("node %d leads although it stood down", l)
	}
	if rc := out.raft.ReloadableConfig(); rc.HeartbeatTimeout != standDownTimeout {
		t.Errorf("heartbeat timeout while stood down = %v, want %v", rc.HeartbeatTimeout, standDownTimeout)
	}
	if err := out.StandAgain(); err != nil {
		t.Fatalf("stand again: %v", err)
	}
	rc := out.raft.ReloadableConfig()
	if rc.HeartbeatTimeout != c.cfgs[l].HeartbeatTimeout || rc.ElectionTimeout != c.cfgs[l].ElectionTimeout || out.StoodDown() {
		t.Errorf("after StandAgain: heartbeat %v, election %v, stood down %v; want %v, %v, false",
			rc.HeartbeatTimeout, rc.ElectionTimeout, out.StoodDown(), c.cfgs[l].HeartbeatTimeout, c.cfgs[l].ElectionTimeout)
	}
}

// failingLogs fails every write.
type failingLogs struct{ *raft.InmemStore }

var errDiskFull = errors.New("no space left on device")

func (failingLogs) StoreLogs([]*raft.Log) error    { return errDiskFull }
func (failingLogs) StoreLog(*raft.Log) error       { return errDiskFull }
func (failingLogs) Set([]byte, []byte) error       { return errDiskFull }
func (failingLogs) SetUint64([]byte, uint64) error { return errDiskFull }

// Every failed write of raft's stores is returned unchanged and signals
// WriteFailed, without blocking when nobody listens; successful writes
// signal nothing.
func TestFailWatchSignalsFailedWrites(t *testing.T) {
	clock := newFakeClock()
	s := &Store{logger: testLogger(t, 0), clock: clock, writeFail: make(chan struct{}, 1)}
	ok := &failWatch{LogStore: raft.NewInmemStore(), StableStore: raft.NewInmemStore(), failed: s.writeFailed}
	if err := ok.StoreLogs([]*raft.Log{{Index: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := ok.SetUint64([]byte("k"), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.WriteFailed():
		t.Fatal("signalled after successful writes")
	default:
	}
	if err := s.WriteFailedWithin(time.Hour); err != nil {
		t.Fatalf("WriteFailedWithin = %v before any failure", err)
	}
	bad := failingLogs{raft.NewInmemStore()}
	w := &failWatch{LogStore: bad, StableStore: bad, failed: s.writeFailed}
	for name, write := range map[string]func() error{
		"StoreLogs": func() error { return w.StoreLogs([]*raft.Log{{Index: 1}}) },
		"StoreLog":  func() error { return w.StoreLog(&raft.Log{Index: 1}) },
		"Set":       func() error { return w.Set([]byte("k"), []byte("v")) },
		"SetUint64": func() error { return w.SetUint64([]byte("k"), 1) },
	} {
		if err := write(); !errors.Is(err, errDiskFull) {
			t.Errorf("%s = %v, want the store's error", name, err)
		}
		if err := write(); !errors.Is(err, errDiskFull) { // the channel is full: must not block
			t.Errorf("%s (again) = %v, want the store's error", name, err)
		}
		select {
		case <-s.WriteFailed():
		default:
			t.Errorf("%s failed and WriteFailed was not signalled", name)
		}
	}
	clock.Advance(time.Second)
	if err := s.WriteFailedWithin(time.Second); !errors.Is(err, errDiskFull) {
		t.Errorf("WriteFailedWithin(1s) a second after the failure = %v, want the failure", err)
	}
	clock.Advance(time.Millisecond)
	if err := s.WriteFailedWithin(time.Second); err != nil {
		t.Errorf("WriteFailedWithin(1s) past a second after the failure = %v, want nil", err)
	}
}
