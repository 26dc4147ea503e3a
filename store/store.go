package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"haxd/clock"
	"haxd/ha"
)

// Store is one node of the replicated cluster state.
type Store struct {
	cfg    Config
	logger *slog.Logger
	clock  clock.Clock

	raft     *raft.Raft
	fsm      *fsm
	mux      *mux
	trans    raftTransport
	bolt     *raftboltdb.BoltStore
	snaps    *raft.FileSnapshotStore
	observer *raft.Observer
	addr     string
	hadState bool

	timers  lockTimers
	watch   watchers
	members members

	// lockMu serializes the leader's lock decisions with their entries:
	// a lock request holds it from the check of the state until its entry
	// is applied (or its wait ends; lockPending then still counts it).
	lockMu sync.Mutex
	// lockPending counts lock and unlock entries appended and not yet
	// resolved by raft; a renewal is answered from memory only at 0.
	lockPending atomic.Int64
	// barrierTerm is the last term in which this node, as leader,
	// committed a barrier: from then on its commit index covers every
	// entry committed before (readIndex).
	barrierTerm atomic.Uint64
	// checks coalesces the leader's term checks (verifyTerm).
	checks termChecks
	// memRenewals counts renewals answered from memory (MemoryRenewals).
	memRenewals atomic.Uint64
	// peerTermHook, when set (tests only), answers the term checks in
	// place of the other voters.
	peerTermHook atomic.Pointer[func(raft.Server) (uint64, error)]
	pool         *fwdPool

	// ready is closed at the end of Open, once raft and the FSM are set
	// up. Until then the port is open but every request is answered "not
	// ready" (forwards) or held (raft connections).
	ready chan struct{}

	// writeFail is signalled when raft fails to write its stores
	// (failWatch); stoodDown is set while the node stands down (StandDown).
	writeFail chan struct{}
	stoodDown atomic.Bool
	// failMu guards the last failed write of raft's stores.
	failMu      sync.Mutex
	lastFail    time.Time
	lastFailErr error

	healthMu  sync.Mutex
	unhealthy map[raft.ServerID]bool

	kick      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Server is one member of the raft configuration.
type Server struct {
	// ID is the node name.
	ID string
	// Addr is the node's store address.
	Addr string
	// Voter is true for voting members, false for non-voters.
	Voter bool
	// Leader is true for the leader this node knows.
	Leader bool
}

// Peer names another node for Bootstrap.
type Peer struct {
	// ID is the node name.
	ID string
	// Addr is the node's store address.
	Addr string
}

// Open starts a store node: it opens (or creates) the bbolt log and the
// snapshots in cfg.DataDir, listens on cfg.BindAddr and starts raft. A node
// with existing raft state rejoins its cluster by itself; a new node waits
// for Bootstrap or Join. logger receives the store's and raft's records
// (raft's attributes in group "raft"); nil discards them.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if logger == nil {
		logger = discardLogger()
	}
	s := &Store{cfg: cfg, logger: logger, clock: cfg.Clock, unhealthy: map[raft.ServerID]bool{}, kick: make(chan struct{}, 1),
		ready: make(chan struct{}), writeFail: make(chan struct{}, 1)}
	if s.clock == nil {
		s.clock = clock.System{}
	}
	s.timers.deadline = map[string]time.Time{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	started := false
	defer func() {
		if !started {
			s.closeUnstarted()
		}
	}()
	raftLog := newHclogAdapter(logger, "raft")
	if err := s.openDisk(raftLog); err != nil {
		return nil, err
	}
	if err := s.openNetwork(raftLog); err != nil {
		return nil, err
	}
	if cfg.openHook != nil {
		cfg.openHook(s)
	}
	notify, obs, err := s.startRaft(raftLog)
	if err != nil {
		return nil, err
	}
	mctx, mcancel := context.WithTimeout(ctx, cfg.ApplyTimeout)
	err = s.refreshMembers(mctx)
	mcancel()
	if err != nil {
		return nil, err
	}
	s.wg.Add(4)
	go s.leaderLoop(notify)
	go s.observeLoop(obs)
	go s.everyInterval(s.kick, s.autopilotRound)
	go s.everyInterval(nil, s.refreshMemberCache)
	started = true
	close(s.ready)
	logger.Info("store started", "node", cfg.NodeID, "addr", s.addr, "existing_state", s.hadState)
	return s, nil
}

// closeUnstarted releases what a failed Open opened.
func (s *Store) closeUnstarted() {
	s.cancel()
	if s.raft != nil {
		_ = s.raft.Shutdown().Error()
	}
	if s.trans != nil {
		_ = s.trans.Close()
	}
	if s.mux != nil {
		_ = s.mux.Close() // done already if the transport runs over it
		s.mux.wait()
	}
	if s.bolt != nil {
		_ = s.bolt.Close()
	}
}

// openDisk opens (or creates) the raft log and the snapshots in DataDir
// and notes whether raft state exists.
func (s *Store) openDisk(raftLog *hclogAdapter) error {
	cfg := s.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		NoSync:      cfg.NoSync,
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoSync: cfg.NoSync},
	})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
	}
	s.bolt = bolt
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, raftLog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store in %s: %w", cfg.DataDir, err)
	}
	s.snaps = snaps
	hadState, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	s.hadState = hadState
	return nil
}

// openNetwork listens on BindAddr and starts the connection mux and the
// raft transport over it.
func (s *Store) openNetwork(raftLog *hclogAdapter) error {
	cfg := s.cfg
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return fmt.Errorf("listen on bind_addr %s: %w", cfg.BindAddr, err)
	}
	adv, err := advertiseAddr(cfg.AdvertiseAddr, ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}
	s.addr = adv.String()
	s.mux = newMux(ln, adv, s.handleForward, s.ready, s.logger)
	s.mux.forwardStream = s.handleForwardStream
	s.pool = newFwdPool(cfg.TLS, s.logger)
	opts := &sockOpts{rtoMin: cfg.TCPRTOMin, logger: s.logger}
	s.mux.opts, s.pool.opts = opts, opts
	if cfg.TLS != nil {
		s.mux.tls = cfg.TLS
		s.mux.memberAt = s.memberAt
		s.mux.raftPeerAllowed = s.raftPeerAllowed
	}
	s.mux.start()
	if cfg.raftTransport != nil {
		s.trans = cfg.raftTransport(s.addr)
		return nil
	}
	s.trans = unpipelined{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s.mux,
		MaxPool: cfg.MaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  raftLog.Named("net"),
	})}
	return nil
}

// startRaft starts raft on the opened log, snapshots and transport, and
// returns its leadership notifications and the heartbeat and peer
// observations the autopilot uses.
func (s *Store) startRaft(raftLog *hclogAdapter) (chan bool, chan raft.Observation, error) {
	cfg := s.cfg
	s.fsm = newFSM(s, s.logger)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = raftLog
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, nil, fmt.Errorf("raft config: %w", err)
	}
	watched := &failWatch{LogStore: s.bolt, StableStore: s.bolt, failed: s.writeFailed}
	r, err := raft.NewRaft(rc, s.fsm, watched, watched, s.snaps, s.trans)
	if err != nil {
		return nil, nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	obs := make(chan raft.Observation, 64)
	s.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(s.observer)
	return notify, obs, nil
}

// advertiseAddr returns the address other nodes dial.
func advertiseAddr(configured string, listen net.Addr) (*net.TCPAddr, error) {
	if configured != "" {
		a, err := net.ResolveTCPAddr("tcp", configured)
		if err != nil {
			return nil, fmt.Errorf("resolve advertise_addr %s: %w", configured, err)
		}
		return a, nil
	}
	a, isTCP := listen.(*net.TCPAddr)
	if !isTCP || a.IP == nil || a.IP.IsUnspecified() {
		return nil, fmt.Errorf("store listens on %s: set advertise_addr to an address other nodes can reach", listen)
	}
	return a, nil
}

// Close stops raft and releases the listener and the database. Pending
// operations fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.pool.closeAll()
		var errs []error
		s.raft.DeregisterObserver(s.observer)
		if s.raft.State() == raft.Leader {
			// Hand the leadership over before stopping, so that the
			// followers' lock renewals wait for one TimeoutNow round
			// instead of an election timeout: a leader's agent restart
			// must not cost a healthy node its lock validity. Bounded by
			// raft (an election timeout); a failure only means the usual
			// election follows.
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.logger.Info("no leadership transfer before stopping; the others elect a leader", "err", err)
			} else {
				s.logger.Info("handed raft leadership over before stopping")
			}
		}
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
		if err := s.trans.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
		_ = s.mux.Close() // done already if the transport runs over it
		s.mux.wait()
		s.wg.Wait()
		if err := s.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		s.closeErr = errors.Join(errs...)
		s.logger.Info("store stopped", "node", s.cfg.NodeID)
	})
	return s.closeErr
}

// isReady reports whether Open has finished setting the store up.
func (s *Store) isReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// leaderLoop follows raft's leadership notifications.
func (s *Store) leaderLoop(notify <-chan bool) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leader := <-notify:
			if leader {
				term := s.raft.CurrentTerm()
				s.restartLockTimers(term)
				s.logger.Info("became raft leader", "node", s.cfg.NodeID, "term", term)
				s.kickAutopilot()
			} else {
				s.healthMu.Lock()
				clear(s.unhealthy)
				s.healthMu.Unlock()
				s.logger.Info("lost raft leadership", "node", s.cfg.NodeID)
			}
		}
	}
}

// observeLoop tracks peers whose heartbeats fail, for the autopilot.
func (s *Store) observeLoop(obs <-chan raft.Observation) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case o := <-obs:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				s.healthMu.Lock()
				s.unhealthy[d.PeerID] = true
				s.healthMu.Unlock()
			case raft.ResumedHeartbeatObservation:
				s.healthMu.Lock()
				delete(s.unhealthy, d.PeerID)
				s.healthMu.Unlock()
			case raft.PeerObservation:
				if d.Removed {
					s.healthMu.Lock()
					delete(s.unhealthy, d.Peer.ID)
					s.healthMu.Unlock()
				}
				s.kickAutopilot()
			}
		}
	}
}

// TransferLeadership hands raft leadership to another voter (a leader
// that can no longer write its log steps down this way). It fails when
// this node is not the leader or no voter took over in time.
func (s *Store) TransferLeadership() error {
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("transfer raft leadership: %w", err)
	}
	return nil
}

// NodeID returns this node's name.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Addr returns the address other nodes use to reach this node.
func (s *Store) Addr() string { return s.addr }

// HadState reports whether the node found raft state on disk at Open; such
// a node must not be bootstrapped or joined again.
func (s *Store) HadState() bool { return s.hadState }

// IsLeader reports whether this node is the raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderTerm returns the raft term in which this node is leader, and false
// if it is not the leader. The term is the CRM's fencing token: pass it to
// every CRM write.
func (s *Store) LeaderTerm() (uint64, bool) {
	// The term only grows, and raft sets the follower state before a newer
	// term, so a leader state seen between two equal readings of the term
	// is the leadership of that term.
	t1 := s.raft.CurrentTerm()
	if s.raft.State() != raft.Leader {
		return t1, false
	}
	if t2 := s.raft.CurrentTerm(); t2 != t1 {
		return t2, false
	}
	return t1, true
}

// Leader returns the ID and address of the leader this node knows, or
// empty strings.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitLeader waits until a leader is known and returns its ID.
func (s *Store) WaitLeader(ctx context.Context) (string, error) {
	for {
		if id, _ := s.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for leader: %w: %w", ErrNoLeader, ctx.Err())
		case <-s.ctx.Done():
			return "", fmt.Errorf("wait for leader: %w", ErrClosed)
		case <-time.After(retryInterval):
		}
	}
}

// Bootstrap creates a new cluster of this node and peers. This node is a
// voter; peers become voters in ID order up to Config.Voters, the rest
// non-voters. Run it on one node only, and only on a node without state
// (it fails with raft.ErrCantBootstrap otherwise); the others start empty
// and get the configuration from the leader.
func (s *Store) Bootstrap(peers ...Peer) error {
	servers := []raft.Server{{ID: raft.ServerID(s.cfg.NodeID), Address: raft.ServerAddress(s.addr), Suffrage: raft.Voter}}
	sorted := slices.SortedFunc(slices.Values(peers), func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	for _, p := range sorted {
		if p.ID == s.cfg.NodeID {
			continue
		}
		if p.ID == "" || p.Addr == "" {
			return fmt.Errorf("bootstrap peer %q at %q: %w: empty id or address", p.ID, p.Addr, ErrInvalid)
		}
		suffrage := raft.Nonvoter
		if len(servers) < s.cfg.Voters {
			suffrage = raft.Voter
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: suffrage})
	}
	if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return fmt.Errorf("bootstrap cluster: %w", err)
	}
	return nil
}

// Join asks the cluster member at addr to add this node as a non-voter
// (the autopilot promotes it if voters are missing). It is a no-op for a
// node that is already a member.
func (s *Store) Join(ctx context.Context, addr string) error { return s.join(ctx, addr, "") }

// JoinPeer is Join through the member p; with TLS, the node at p.Addr must
// present a certificate for p.ID (for example the name under which gossip
// knows it).
func (s *Store) JoinPeer(ctx context.Context, p Peer) error { return s.join(ctx, p.Addr, p.ID) }

func (s *Store) join(ctx context.Context, addr, expect string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	req := fwdRequest{Op: fwdJoin, ID: s.cfg.NodeID, Addr: s.addr}
	for {
		r := req
		res := s.send(ctx, addr, expect, &r)
		err := res.err()
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotReady) {
			return fmt.Errorf("join via %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join via %s: %w", addr, err)
		case <-time.After(retryInterval):
		}
	}
}

// AddVoter adds (or promotes) a voting member. The autopilot demotes
// voters beyond Config.Voters again.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	return s.do(ctx, &fwdRequest{Op: fwdAddVoter, ID: id, Addr: addr}).errf("add voter %s", id)
}

// AddNonvoter adds a non-voting member.
func (s *Store) AddNonvoter(ctx context.Context, id, addr string) error {
	return s.do(ctx, &fwdRequest{Op: fwdJoin, ID: id, Addr: addr}).errf("add non-voter %s", id)
}

// Remove removes a member; if it was a voter, the autopilot promotes a
// non-voter in its place.
func (s *Store) Remove(ctx context.Context, id string) error {
	return s.do(ctx, &fwdRequest{Op: fwdRemove, ID: id}).errf("remove server %s", id)
}

// errf returns the result's error with context, or nil.
func (r *result) errf(format string, args ...any) error {
	if err := r.err(); err != nil {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return nil
}

// Servers returns the raft configuration as this node knows it, sorted by
// ID.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(sv.ID), Addr: string(sv.Address), Voter: sv.Suffrage == raft.Voter, Leader: sv.ID == leader})
	}
	slices.SortFunc(out, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Snapshot makes raft take a snapshot now (raft also takes them by itself,
// see Config.SnapshotThreshold).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("take snapshot: %w", err)
	}
	return nil
}

// Barrier makes the following local reads linearizable: when it returns
// nil, this node's state reflects every write committed before the call.
// On the leader it commits a no-op entry; a follower asks the leader for
// its applied index (read index) and waits until it has applied that far.
func (s *Store) Barrier(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res := s.do(ctx, &fwdRequest{Op: fwdReadIndex, idempotent: true})
	if err := res.err(); err != nil {
		return fmt.Errorf("read barrier: %w", err)
	}
	var idx uint64
	if err := json.Unmarshal(res.Value, &idx); err != nil {
		return fmt.Errorf("read barrier: decode index: %w", err)
	}
	if err := s.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("read barrier: %w", err)
	}
	return nil
}

// applyPoll is how often WaitApplied looks at the FSM's progress.
const applyPoll = 2 * time.Millisecond

// WaitApplied waits until this node's replica reflects every entry of
// the raft log up to index, or ctx ends. Raft's own AppliedIndex is not
// enough: raft counts an entry applied once it queued it for the FSM
// goroutine, before the FSM changed the state.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for !s.appliedThrough(index) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d, fsm %d): %w", index, s.raft.AppliedIndex(), s.fsm.applied.Load(), ctx.Err())
		case <-time.After(applyPoll):
		}
	}
	return nil
}

// appliedThrough reports whether the FSM's state reflects every entry up
// to index: the FSM applied an entry at or past index, or raft committed
// and handed over everything up to index and the entries after the FSM's
// last one are raft's own (no-ops, barriers), which change no state.
func (s *Store) appliedThrough(index uint64) bool {
	fsmAt := s.fsm.applied.Load()
	if fsmAt >= index {
		return true
	}
	if s.raft.AppliedIndex() < index {
		return false
	}
	first, err := s.bolt.FirstIndex()
	if err != nil {
		return false
	}
	// Entries compacted away are in a snapshot this node took from, or
	// restored into, its FSM.
	snapAt := uint64(0)
	for i := max(fsmAt+1, first); i <= index; i++ {
		var l raft.Log
		if err := s.bolt.GetLog(i, &l); err != nil {
			// Not in the log: covered only by a snapshot this node
			// restored (a node that installed one from the leader has
			// no log below it; its FSM's index is the snapshot's last
			// command, which may come before raft's own entries).
			if snapAt == 0 {
				if snaps, err := s.snaps.List(); err == nil && len(snaps) > 0 {
					snapAt = snaps[0].Index
				}
			}
			if i <= snapAt {
				continue
			}
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// Writes. Each goes through the leader (forwarded from followers) and
// returns once committed and applied on the leader, or with an error. A
// write that fails with ErrOutcomeUnknown (leadership lost mid-commit, a
// broken connection) or a timeout may still have been committed.

// WriteManagerStatus stores ms as the manager status. term is the raft
// term in which the writing CRM is master (LeaderTerm); a write from a
// deposed master fails with ErrStaleTerm.
func (s *Store) WriteManagerStatus(ctx context.Context, term uint64, ms *ha.ManagerStatus) error {
	if ms == nil {
		ms = &ha.ManagerStatus{}
	}
	b, err := json.Marshal(ms)
	if err != nil {
		return fmt.Errorf("encode manager status: %w", err)
	}
	_, err = s.apply(ctx, opManagerStatus, term, json.RawMessage(b))
	return err
}

// WriteLRMStatus stores node's LRM status.
func (s *Store) WriteLRMStatus(ctx context.Context, node string, st *ha.LRMStatus) error {
	if st == nil {
		st = &ha.LRMStatus{}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode lrm status of %s: %w", node, err)
	}
	_, err = s.apply(ctx, opLRMStatus, 0, lrmStatusCmd{Node: node, Status: b})
	return err
}

// PutResource creates or replaces a resource's config, location included,
// without any check of the current record: a restore or import path.
// Operator and CRM changes use AddResource, UpdateResource,
// RemoveResource, SetLocation, StealService, SetRequestedState and
// MigrateGroups, which change only what they name.
func (s *Store) PutResource(ctx context.Context, rc ha.ResourceConfig) error {
	if _, err := ha.ParseSID(string(rc.SID)); err != nil {
		return fmt.Errorf("put resource: %w: %w", ErrInvalid, err)
	}
	_, err := s.apply(ctx, opPutResource, 0, rc)
	return err
}

// DeleteResource removes a resource; ErrNotFound if there is none.
func (s *Store) DeleteResource(ctx context.Context, sid ha.SID) error {
	_, err := s.apply(ctx, opDeleteResource, 0, sidCmd{SID: sid})
	return err
}

// SetLocation moves sid to node to (a resource agent after a successful
// migration). With from set, only if sid is on from now (else ErrConflict).
func (s *Store) SetLocation(ctx context.Context, sid ha.SID, from, to string) error {
	_, err := s.apply(ctx, opSetLocation, 0, locationCmd{SID: sid, From: from, To: to})
	return err
}

// StealService moves sid from a fenced node to another (the CRM's
// recovery). Fenced by term; ErrConflict if sid is not on from;
// ErrLockHeld unless this node holds from's agent lock (taken, not given
// up) when the steal is applied.
func (s *Store) StealService(ctx context.Context, term uint64, sid ha.SID, from, to string) error {
	_, err := s.apply(ctx, opStealService, term, locationCmd{SID: sid, From: from, To: to, Holder: s.cfg.NodeID})
	return err
}

// SetRequestedState changes sid's requested state. term is the CRM's
// fencing token, or 0 for an operator's write.
func (s *Store) SetRequestedState(ctx context.Context, term uint64, sid ha.SID, state ha.RequestedState) error {
	_, err := s.apply(ctx, opSetRequestedState, term, requestedStateCmd{SID: sid, State: state})
	return err
}

// SetRules replaces the rules config text (the operator's write). term
// is the CRM's fencing token when the master writes, 0 for the operator.
func (s *Store) SetRules(ctx context.Context, term uint64, text []byte) error {
	_, err := s.apply(ctx, opSetRules, term, textCmd{Text: string(text)})
	return err
}

// SetGroups replaces the legacy groups config text; groupIDs are the ids
// of the groups it defines (the caller parsed and validated it). It fails
// with ErrConflict when a group some resource uses would disappear. term
// is the CRM's fencing token when the master writes, 0 for the operator.
func (s *Store) SetGroups(ctx context.Context, term uint64, text []byte, groupIDs []string) error {
	_, err := s.apply(ctx, opSetGroups, term, textCmd{Text: string(text), GroupIDs: groupIDs})
	return err
}

// AddResource creates a resource: ErrConflict if it exists, ErrInvalid for
// a bad field or a node the manager status does not know, ErrNotFound for
// a group the groups config does not define.
func (s *Store) AddResource(ctx context.Context, rc ha.ResourceConfig) error {
	if _, err := ha.ParseSID(string(rc.SID)); err != nil {
		return fmt.Errorf("add resource: %w: %w", ErrInvalid, err)
	}
	rc.Revision = 0
	_, err := s.apply(ctx, opAddResource, 0, addResourceCmd{Config: rc})
	return err
}

// ResourceUpdate is one operator intent on a resource: every non-nil field
// is set, all together or none. The FSM checks it at its log position: a
// requested state other than disabled is refused for a service in the
// error state, a group must be defined in the groups config, and the
// location is never touched, so a concurrent steal or migration is kept.
type ResourceUpdate struct {
	// ExpectRevision, when not 0, applies the update only while the
	// resource's Revision is still this one (ErrConflict otherwise).
	ExpectRevision uint64
	// State is the requested state.
	State *ha.RequestedState
	// Group is the legacy group; "" removes it.
	Group *string
	// MaxRestart, MaxRelocate, Failback and Comment are the policy fields.
	MaxRestart  *int
	MaxRelocate *int
	Failback    *bool
	Comment     *string
	// Spec, when not nil, replaces the spec, only while it is still
	// SpecFrom (ErrConflict otherwise): the writer read SpecFrom, patched
	// and validated it.
	Spec     json.RawMessage
	SpecFrom json.RawMessage
}

// UpdateResource applies u to sid atomically; ErrNotFound if sid is not
// configured, ErrConflict when a check or a compare-and-set fails.
func (s *Store) UpdateResource(ctx context.Context, sid ha.SID, u ResourceUpdate) error {
	_, err := s.apply(ctx, opUpdateResource, 0, updateResourceCmd{SID: sid, ExpectRevision: u.ExpectRevision,
		State: u.State, Group: u.Group, MaxRestart: u.MaxRestart, MaxRelocate: u.MaxRelocate, Failback: u.Failback,
		Comment: u.Comment, Spec: u.Spec, SpecFrom: u.SpecFrom})
	return err
}

// RemoveResource deletes sid. With rules not nil, the rules text becomes
// *rules in the same entry, only while it is still rulesFrom (the caller
// purged sid from the text it read; ErrConflict otherwise).
func (s *Store) RemoveResource(ctx context.Context, sid ha.SID, rules *string, rulesFrom string) error {
	_, err := s.apply(ctx, opRemoveResource, 0, removeResourceCmd{SID: sid, Rules: rules, RulesFrom: rulesFrom})
	return err
}

// GroupMigration is the CRM's persistent migration of legacy groups to
// node-affinity rules, written as one term-fenced entry. It applies only
// while the rules and groups texts are still RulesFrom and GroupsFrom and
// every listed resource still has its Group (ErrConflict otherwise).
type GroupMigration struct {
	// RulesFrom and Rules are the rules text read and the new one.
	RulesFrom, Rules string
	// GroupsFrom and Groups are the groups text read and the new one (the
	// groups not migrated); GroupIDs are the ids Groups defines.
	GroupsFrom, Groups string
	GroupIDs           []string
	// Resources lose their group and get the failback their group implied.
	Resources []MigratedService
}

// MigratedService is one resource of a GroupMigration.
type MigratedService struct {
	// SID is the resource.
	SID ha.SID
	// Group is the group the resource must still have.
	Group string
	// Failback is its new failback.
	Failback bool
}

// MigrateGroups applies m; term is the CRM's fencing token.
func (s *Store) MigrateGroups(ctx context.Context, term uint64, m GroupMigration) error {
	c := migrateGroupsCmd{RulesFrom: m.RulesFrom, Rules: m.Rules, GroupsFrom: m.GroupsFrom, Groups: m.Groups, GroupIDs: m.GroupIDs}
	for _, r := range m.Resources {
		c.Resources = append(c.Resources, migratedService{SID: r.SID, Group: r.Group, Failback: r.Failback})
	}
	_, err := s.apply(ctx, opMigrateGroups, term, c)
	return err
}

// SetDatacenter replaces the datacenter settings.
func (s *Store) SetDatacenter(ctx context.Context, dc *ha.Datacenter) error {
	if dc == nil {
		dc = &ha.Datacenter{}
	}
	doc := datacenterDoc{Datacenter: *dc, CRSSet: maps.Clone(dc.CRS.Set)}
	_, err := s.apply(ctx, opSetDatacenter, 0, doc)
	return err
}

// UpdateDatacenter replaces the datacenter settings from with to, only
// while they are still from (what the caller read; ErrConflict otherwise).
func (s *Store) UpdateDatacenter(ctx context.Context, from, to *ha.Datacenter) error {
	doc := func(dc *ha.Datacenter) *datacenterDoc {
		if dc == nil {
			dc = &ha.Datacenter{}
		}
		return &datacenterDoc{Datacenter: *dc, CRSSet: maps.Clone(dc.CRS.Set)}
	}
	_, err := s.apply(ctx, opUpdateDatacenter, 0, updateDatacenterCmd{From: doc(from), To: *doc(to)})
	return err
}

// AppendCommands appends to the CRM command queue.
func (s *Store) AppendCommands(ctx context.Context, cmds ...string) error {
	if len(cmds) == 0 {
		return nil
	}
	_, err := s.apply(ctx, opAppendCommands, 0, commandsCmd{Commands: cmds})
	return err
}

// TakeCommands returns and removes the queued CRM commands in one
// committed entry. Fenced by term. If it fails after the entry was
// appended (leadership lost mid-commit) the commands may be gone.
func (s *Store) TakeCommands(ctx context.Context, term uint64) ([]string, error) {
	res, err := s.apply(ctx, opTakeCommands, term, struct{}{})
	if err != nil {
		return nil, err
	}
	var cmds []string
	if err := json.Unmarshal(res.Value, &cmds); err != nil {
		return nil, fmt.Errorf("take commands: decode: %w", err)
	}
	return cmds, nil
}

// Local reads. They return this node's applied state, which on a follower
// may lag the leader by a few milliseconds; call Barrier first for a
// linearizable read. Every read returns a copy.

// ManagerStatus returns the manager status (empty if never written).
func (s *Store) ManagerStatus() (*ha.ManagerStatus, error) { return s.fsm.managerStatus() }

// LRMStatus returns node's LRM status (empty if never written).
func (s *Store) LRMStatus(node string) (*ha.LRMStatus, error) { return s.fsm.lrmStatus(node) }

// LRMNodes returns the nodes that have written an LRM status, sorted.
func (s *Store) LRMNodes() []string { return s.fsm.lrmNodes() }

// Resources returns the resources config keyed by SID.
func (s *Store) Resources() map[ha.SID]*ha.ResourceConfig { return s.fsm.resources() }

// Rules returns the rules config text.
func (s *Store) Rules() []byte {
	r, _ := s.fsm.text()
	return []byte(r)
}

// Groups returns the legacy groups config text.
func (s *Store) Groups() []byte {
	_, g := s.fsm.text()
	return []byte(g)
}

// Datacenter returns the datacenter settings (zero value if never set).
func (s *Store) Datacenter() *ha.Datacenter { return s.fsm.datacenter() }

// Commands returns the queued CRM commands without removing them.
func (s *Store) Commands() []string { return s.fsm.commands() }

// Lock returns the lock called name and whether it is held.
func (s *Store) Lock(name string) (LockInfo, bool) { return s.fsm.lock(name) }

// Locks returns every held lock by name.
func (s *Store) Locks() map[string]LockInfo { return s.fsm.locks() }

// ApplyStats returns, per operation, the log entries this node's FSM
// applied since it started and their size: what the replicated log
// costs (raft's own entries, barriers and no-ops, are not commands and
// are not counted; see RaftIndexes).
func (s *Store) ApplyStats() map[string]OpStats { return s.fsm.applyStats() }

// RaftIndexes returns this node's last log index, commit index and
// applied index. The growth of the last index over time is the log's
// entry rate, commands and raft's own entries together.
func (s *Store) RaftIndexes() (last, commit, applied uint64) {
	return s.raft.LastIndex(), s.raft.CommitIndex(), s.raft.AppliedIndex()
}
