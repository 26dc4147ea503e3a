package store

import (
	"fmt"
	"net"
	"time"

	"haxd/clock"
	"haxd/ha"
)

// MaxTCPRTOMin is the largest TCPRTOMin: Linux's own minimum
// retransmission timeout, which the socket option can only lower.
const MaxTCPRTOMin = 200 * time.Millisecond

// Config configures one store node. Start from DefaultConfig (production)
// or LocalConfig (tests on loopback) and set NodeID and DataDir.
type Config struct {
	// NodeID is this node's name; it is the raft server ID and must be
	// unique and stable across restarts. Required.
	NodeID string
	// DataDir holds raft.db (bbolt: raft log and stable store) and the
	// snapshots directory. Required; created if missing.
	DataDir string
	// BindAddr is the TCP host:port the node listens on for raft traffic and
	// for requests forwarded from other nodes (both share the port, see the
	// package doc). Port 0 picks a free port (tests). Default "0.0.0.0:7947".
	BindAddr string
	// AdvertiseAddr is the host:port other nodes dial to reach this node.
	// Empty means the listener's address, which must then not be an
	// unspecified IP such as 0.0.0.0. Default empty.
	AdvertiseAddr string

	// Voters is the largest number of voting members. Further members join
	// as non-voters and are promoted when a voter leaves (see the package
	// doc). Must be at least 1; an odd number is best. Default 5.
	Voters int
	// AutopilotInterval is how often the leader checks the voter count. It
	// also runs on every leadership or membership change. Default 1 s.
	AutopilotInterval time.Duration

	// HeartbeatTimeout (config key raft_heartbeat_timeout) is raft's
	// follower timeout without contact from the leader before it stands
	// for election (randomized between 1 and 2 times the value); the
	// leader sends a heartbeat every tenth of it. A failover takes about 1
	// to 2.6 times this value (research/timings.md: 200 ms gave median
	// 404 ms, max 520 ms), which must fit in ha.Timing.ElectionTimeout.
	// Default 200 ms.
	HeartbeatTimeout time.Duration
	// ElectionTimeout (raft_election_timeout) is raft's candidate timeout
	// without winning. Must be >= HeartbeatTimeout. Default 200 ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout (raft_leader_lease_timeout) is how long a leader
	// stays leader without contact with a quorum; past it the leader steps
	// down and every write, lock renewals included, waits for an election.
	// Each follower's contact is one TCP connection, so one lost segment
	// stalls it for a retransmit timeout: the lease must outlast two
	// retransmits (3 x TCPRTOMin) or the leader steps down under packet
	// loss (docs/safety.md, lossy networks). It guards no lock: a deposed
	// leader commits nothing. Must be <= HeartbeatTimeout. Default 200 ms.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout (raft_commit_timeout) is raft's longest delay before a heartbeat carries a new
	// commit index to followers. Default 50 ms.
	CommitTimeout time.Duration

	// SnapshotInterval is how often raft checks whether to take a snapshot.
	// Default 120 s.
	SnapshotInterval time.Duration
	// SnapshotThreshold is the number of log entries since the last
	// snapshot that triggers a new one. Default 8192.
	SnapshotThreshold uint64
	// TrailingLogs is the number of log entries kept after a snapshot so
	// that slightly lagging followers catch up without a snapshot install.
	// Default 10240.
	TrailingLogs uint64
	// SnapshotRetain is the number of snapshots kept on disk. Default 2.
	SnapshotRetain int

	// LockTTL is how long a lock stays held after its last committed
	// renewal, timed by the leader on its monotonic clock; another node may
	// take it only when strictly more than LockTTL has passed. Set it to
	// ha.Timing.LockTTL. Default: ha.FastTiming().LockTTL (1.9 s).
	LockTTL time.Duration
	// ApplyTimeout bounds every write and linearizable read, including the
	// wait for a leader and the forwarding round trip, when the caller's
	// context has no earlier deadline. Default 5 s.
	ApplyTimeout time.Duration
	// ForwardHedgeDelay is how long a forwarded lock request or read
	// index waits for its answer before the same request is sent once
	// more on another connection (the first answer wins). It must be above
	// a normal commit's round trip and well below Linux TCP's minimum
	// retransmit timeout plus the renewal budget (LockValidity minus the
	// LRM round, 750 ms in the fast profile), so that one lost or twice
	// lost segment does not cost a renewal (docs/safety.md). 0 disables
	// it. Default 250 ms.
	ForwardHedgeDelay time.Duration
	// TCPRTOMin is the minimum TCP retransmission timeout set on every
	// connection of the store port, raft's and forwarding ones, accepted
	// and dialed (TCP_RTO_MIN_US, Linux 6.15 and later; the kernel rounds
	// it to its clock tick). Linux's own minimum is 200 ms, as long as
	// raft's heartbeat timeout and leader lease: one lost segment then
	// stalls a follower's contact past the lease. On a LAN, whose round
	// trips are well below a millisecond, 20 ms lets a segment be lost
	// three times in a row (20+40+80 ms) within the lease. A kernel
	// without the option is logged once and keeps its own. 0 leaves the
	// kernel's minimum; otherwise 5 ms to 200 ms. Default 20 ms.
	TCPRTOMin time.Duration
	// RenewFromMemory lets the leader answer a lock renewal that changes
	// nothing but the lock's timer from its memory, after verifying its
	// term, instead of appending a log entry (docs/safety.md, "Renewals
	// answered from the leader's memory"). Leave it off on a node whose
	// master CRM records fence device confirmations: the confirmation's
	// check needs every renewal to bump the lock's index. Default false.
	RenewFromMemory bool
	// TransportTimeout is the raft transport's I/O deadline per RPC (scaled
	// up by raft for snapshot installs). Default 10 s.
	TransportTimeout time.Duration
	// MaxPool is the number of idle raft connections kept per peer.
	// Default 3.
	MaxPool int
	// NoSync skips fsync in bbolt. Only for tests: a crash may lose
	// acknowledged writes. Default false.
	NoSync bool
	// Clock times the locks. Nil means the system clock (monotonic).
	Clock clock.Clock
	// TLS makes the port mutual TLS 1.3 with the cluster CA (see TLS). Nil
	// means plain TCP with no authentication: tests and explicitly
	// insecure setups only. Default nil.
	TLS *TLS

	// openHook, when set (tests only), runs in Open once the listener
	// accepts connections and before raft exists: it lets a test see what
	// a half-started store answers.
	openHook func(*Store)
	// raftTransport, when set (tests only: newCluster), returns the
	// transport raft uses at the node's advertised address instead of
	// raft's network transport over the store port. Forwarded requests
	// still use the port.
	raftTransport func(addr string) raftTransport
}

// DefaultConfig returns the production defaults. NodeID and DataDir must
// still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:           "0.0.0.0:7947",
		Voters:             5,
		AutopilotInterval:  time.Second,
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotInterval:   120 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		LockTTL:            ha.FastTiming().LockTTL,
		ApplyTimeout:       5 * time.Second,
		ForwardHedgeDelay:  250 * time.Millisecond,
		TCPRTOMin:          20 * time.Millisecond,
		TransportTimeout:   10 * time.Second,
		MaxPool:            3,
	}
}

// LocalConfig returns a configuration for a node on loopback with a free
// port, as tests use it: the production raft timings, a fast autopilot and
// small snapshot thresholds so that snapshots actually happen.
func LocalConfig(nodeID, dataDir string) Config {
	c := DefaultConfig()
	c.NodeID = nodeID
	c.DataDir = dataDir
	c.BindAddr = "127.0.0.1:0"
	c.AutopilotInterval = 100 * time.Millisecond
	c.SnapshotThreshold = 64
	c.TrailingLogs = 32
	c.TransportTimeout = 2 * time.Second
	return c
}

// Validate checks every field and returns the first problem found.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("store config node_id: must not be empty")
	}
	if c.DataDir == "" {
		return fmt.Errorf("store config data_dir: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("store config bind_addr %q: %w", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("store config advertise_addr %q: %w", c.AdvertiseAddr, err)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || port == "0" || host == "" {
			return fmt.Errorf("store config advertise_addr %q: expected a reachable host and a fixed port", c.AdvertiseAddr)
		}
	}
	if c.Voters < 1 {
		return fmt.Errorf("store config voters: expected >= 1, found %d", c.Voters)
	}
	pos := []struct {
		name string
		v    time.Duration
	}{
		{"autopilot_interval", c.AutopilotInterval},
		{"raft_heartbeat_timeout", c.HeartbeatTimeout},
		{"raft_election_timeout", c.ElectionTimeout},
		{"raft_leader_lease_timeout", c.LeaderLeaseTimeout},
		{"raft_commit_timeout", c.CommitTimeout},
		{"snapshot_interval", c.SnapshotInterval},
		{"lock_ttl", c.LockTTL},
		{"apply_timeout", c.ApplyTimeout},
		{"transport_timeout", c.TransportTimeout},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("store config %s: expected a positive duration, found %v", p.name, p.v)
		}
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout < 5*time.Millisecond {
		return fmt.Errorf("store config raft_heartbeat_timeout, raft_election_timeout, raft_leader_lease_timeout: must be at least 5ms, found %v, %v, %v",
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("store config raft_election_timeout (%v): must be >= raft_heartbeat_timeout (%v)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return fmt.Errorf("store config raft_leader_lease_timeout (%v): must be <= raft_heartbeat_timeout (%v)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.TCPRTOMin != 0 && (c.TCPRTOMin < 5*time.Millisecond || c.TCPRTOMin > MaxTCPRTOMin) {
		return fmt.Errorf("store config tcp_rto_min: expected 0 (the kernel's) or 5ms to %v, found %v", MaxTCPRTOMin, c.TCPRTOMin)
	}
	if c.ForwardHedgeDelay < 0 {
		return fmt.Errorf("store config forward_hedge_delay: expected >= 0, found %v", c.ForwardHedgeDelay)
	}
	if c.SnapshotThreshold < 1 {
		return fmt.Errorf("store config snapshot_threshold: expected >= 1, found %d", c.SnapshotThreshold)
	}
	if c.SnapshotRetain < 1 {
		return fmt.Errorf("store config snapshot_retain: expected >= 1, found %d", c.SnapshotRetain)
	}
	if c.TLS != nil {
		if err := c.TLS.validate(c.NodeID); err != nil {
			return err
		}
	}
	if c.MaxPool < 1 {
		return fmt.Errorf("store config max_pool: expected >= 1, found %d", c.MaxPool)
	}
	return nil
}

// CheckTiming compares the store's timings with the HA timings the agent
// runs with. LockTTL must equal t.LockTTL (error). None of the store's
// timings enters the safety inequality (ha.Timing.Validate): a lock is
// timed by whichever node leads, from the last renewal it committed, and
// a deposed leader commits nothing. They decide liveness, and warnings
// say when they cannot give it:
//
//   - a raft failover takes up to about 2.6 heartbeat timeouts
//     (research/timings.md: max 520 ms at 200 ms); a t.ElectionTimeout
//     shorter than that is warned about, as the LRMs' lock validity is
//     sized on it;
//   - a leader lease shorter than two TCP retransmits (3 x tcp_rto_min,
//     or 3 x 200 ms where tcp_rto_min is 0) makes the leader step down
//     when one follower's segments are lost twice, and every renewal then
//     waits for an election;
//   - a hedge delay plus one retransmit that does not fit in the renewal
//     budget (lock_validity minus lrm_round) cannot save a renewal.
func (c Config) CheckTiming(t ha.Timing) (warnings []string, err error) {
	if c.LockTTL != t.LockTTL {
		return nil, fmt.Errorf("store config lock_ttl (%v): must equal the HA timing lock_ttl (%v)", c.LockTTL, t.LockTTL)
	}
	if worst := c.HeartbeatTimeout * 26 / 10; t.ElectionTimeout > 0 && worst > t.ElectionTimeout {
		warnings = append(warnings, fmt.Sprintf("raft failover may take up to %v (2.6 x raft_heartbeat_timeout %v), longer than the HA timing election_timeout (%v)",
			worst, c.HeartbeatTimeout, t.ElectionTimeout))
	}
	rto := c.TCPRTOMin
	if rto == 0 {
		rto = MaxTCPRTOMin
	}
	if c.LeaderLeaseTimeout < 3*rto {
		warnings = append(warnings, fmt.Sprintf("raft_leader_lease_timeout (%v) is shorter than two TCP retransmits (3 x %v, tcp_rto_min %v): the raft leader steps down under packet loss",
			c.LeaderLeaseTimeout, rto, c.TCPRTOMin))
	}
	if budget := t.LockValidity - t.LRMRound; t.LockValidity > 0 && c.ForwardHedgeDelay > 0 && c.ForwardHedgeDelay+rto >= budget {
		warnings = append(warnings, fmt.Sprintf("forward_hedge_delay (%v) plus one TCP retransmit (%v) does not fit in the renewal budget lock_validity - lrm_round (%v): a hedged renewal comes too late",
			c.ForwardHedgeDelay, rto, budget))
	}
	return warnings, nil
}
