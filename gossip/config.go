package gossip

import (
	"errors"
	"fmt"
	"math"
	"net"
	"time"
)

// Tag keys a haxd member gossips about itself. serf limits the encoded tags
// of one member to 512 bytes.
const (
	// TagRaft carries the member's raft address (host:port).
	TagRaft = "raft"
	// TagAPI carries the member's API address (host:port or unix socket).
	TagAPI = "api"
	// TagVersion carries the haxd version the member runs.
	TagVersion = "version"
)

// Config configures one gossip member. Every duration is a Go duration;
// the zero value of a field is not a default: start from DefaultConfig or
// LocalConfig and change fields from there. Validate rejects values that
// cannot work.
//
// Failure detection is SWIM with Lifeguard suspicion (memberlist). A hard
// failure is reported by every survivor after roughly one ProbeInterval
// (the next probe fails) plus the minimum suspicion timeout,
// SuspicionMult × ProbeInterval for clusters of up to 10 nodes.
// research/timings.md measured, on loopback, a median of 639 ms (p95
// 840 ms) for DefaultConfig and 339 ms (p95 536 ms) for LocalConfig, and no
// false suspicion in 60 s with the CPUs 4× oversubscribed. A process freeze
// longer than about ProbeInterval + SuspicionMult × ProbeInterval is
// reported as a failure.
type Config struct {
	// NodeName is the member's unique name in the cluster, the same name
	// the HA stack uses for the node. Required.
	NodeName string
	// BindAddr is the IP address gossip listens on, TCP and UDP.
	// Default "0.0.0.0" (DefaultConfig) or "127.0.0.1" (LocalConfig).
	BindAddr string
	// BindPort is the TCP and UDP port gossip listens on. 0 picks a free
	// port (see Gossip.LocalAddr); default 7946.
	BindPort int
	// AdvertiseAddr is the IP address other members use to reach this one.
	// Empty: BindAddr, or the first private address when BindAddr is
	// 0.0.0.0.
	AdvertiseAddr string
	// AdvertisePort is the port other members use; 0 means BindPort.
	AdvertisePort int

	// RaftAddr is gossiped as the TagRaft tag ("host:port"); empty: not
	// gossiped.
	RaftAddr string
	// APIAddr is gossiped as the TagAPI tag; empty: not gossiped.
	APIAddr string
	// Tags are further tags to gossip. They must not use the keys TagRaft
	// or TagAPI (set RaftAddr and APIAddr instead).
	Tags map[string]string

	// Key is the shared AES key encrypting and authenticating all gossip,
	// 16, 24 or 32 bytes (ParseKey reads the base64 form `haxd keygen`
	// prints). Required unless Insecure is set or KeyringFile exists.
	Key []byte
	// KeyringFile is where the member persists its keyring after a key
	// rotation (InstallKey, UseKey, RemoveKey). When the file exists at
	// start its keys (the first is the primary) are used instead of Key.
	// Empty: rotated keys are lost on restart.
	KeyringFile string
	// Insecure allows starting without Key: gossip is then plain text and
	// anyone who can reach BindPort can join. For local tests only.
	Insecure bool

	// ProbeInterval is the period of the failure detector's probes: every
	// interval the member pings one other member. Smaller detects faster
	// and sends more packets. Default 200 ms; LocalConfig 100 ms;
	// memberlist's LAN default 1 s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for the ack of a direct probe before
	// asking other members to probe indirectly. It must exceed the
	// round-trip time of the network, and be less than ProbeInterval.
	// Default 100 ms; LocalConfig 50 ms.
	ProbeTimeout time.Duration
	// SuspicionMult scales the time a suspected member has to refute the
	// suspicion before it is declared failed: SuspicionMult ×
	// max(1, log10(n)) × ProbeInterval (SuspicionTimeouts). With fewer than
	// SuspicionMult - 2 members besides the suspect and the suspecter (3
	// nodes and a multiplier of 4, say), or a multiplier below 3, Lifeguard
	// expects no confirmations and that minimum is the whole timeout. Default 4: at 5 % packet loss a
	// healthy member is suspected a few times a minute (a lost ping, its
	// indirect probes and a lost TCP SYN), and 2 probe intervals were too
	// short for the suspect message and the refutation to cross a lossy
	// network (docs/reliability.md, gossip's suspicion under loss).
	SuspicionMult int
	// SuspicionMaxTimeoutMult is the upper bound of the suspicion timeout,
	// as a multiple of its lower bound; Lifeguard starts there and lowers
	// it as independent confirmations arrive. Default 3.
	SuspicionMaxTimeoutMult int
	// GossipInterval is the period at which queued broadcasts (joins,
	// suspicions, deaths) are sent to GossipNodes random members.
	// Default 50 ms.
	GossipInterval time.Duration
	// GossipNodes is the number of members each gossip round sends to.
	// Default 3.
	GossipNodes int
	// RetransmitMult scales how often a broadcast is retransmitted:
	// RetransmitMult × log10(n+1) times. research/timings.md saw survivors
	// learn of a death 20 s late with 2; keep it at 4 or more. Default 4.
	RetransmitMult int
	// TCPTimeout bounds TCP connections (push/pull state sync, the TCP
	// fallback probe). Default 1 s.
	TCPTimeout time.Duration
	// PushPullInterval is the period of full state syncs with a random
	// member, which repair anything broadcasts missed. Default 30 s.
	PushPullInterval time.Duration

	// ReconnectInterval is how often serf tries to reconnect to failed
	// members. Default 10 s.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a failed member is kept (counted in the
	// quorum, retried) before it is forgotten. Default 72 h.
	ReconnectTimeout time.Duration
	// TombstoneTimeout is how long a member that left gracefully is kept
	// (and counted in the quorum) before it is forgotten. Default 72 h.
	TombstoneTimeout time.Duration
	// SnapshotPath is a file where serf records membership so a restarted
	// member rejoins the members it knew. Empty: no snapshot.
	SnapshotPath string

	// EventBuffer is the capacity of the Events channel. When the channel
	// is full further events are dropped (and logged); Members is always
	// current. Default 256.
	EventBuffer int
}

// DefaultConfig returns the production configuration for nodeName: the
// "tuned" failure detector of research/timings.md (probe 200 ms, timeout
// 100 ms, max ×3, gossip 50 ms, retransmit ×4), which detected a hard
// failure in a median of 639 ms with no false positive under load, with
// the suspicion multiplier raised from 2 to 4 for lossy networks (a hard
// failure is seen about 2 probe intervals later).
func DefaultConfig(nodeName string) Config {
	return Config{
		NodeName:                nodeName,
		BindAddr:                "0.0.0.0",
		BindPort:                7946,
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           DefaultSuspicionMult,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          4,
		TCPTimeout:              time.Second,
		PushPullInterval:        30 * time.Second,
		ReconnectInterval:       10 * time.Second,
		ReconnectTimeout:        72 * time.Hour,
		TombstoneTimeout:        72 * time.Hour,
		EventBuffer:             256,
	}
}

// DefaultSuspicionMult is DefaultConfig's SuspicionMult.
const DefaultSuspicionMult = 4

// SuspicionTimeouts returns the bounds of the time a suspected member has
// to refute before it is declared failed in a cluster of nodes members, as
// memberlist computes them: min = SuspicionMult × max(1, log10(nodes)) ×
// ProbeInterval, max = SuspicionMaxTimeoutMult × min. The timer starts at
// max and falls towards min as other members confirm the suspicion; when
// the cluster has too few members to confirm (nodes - 2 < SuspicionMult
// - 2), it is min from the start.
func (c Config) SuspicionTimeouts(nodes int) (lo, hi time.Duration) {
	scale := math.Max(1, math.Log10(math.Max(1, float64(nodes))))
	lo = time.Duration(c.SuspicionMult) * time.Duration(scale*1000) * c.ProbeInterval / 1000
	if k := c.SuspicionMult - 2; k < 1 || nodes-2 < k {
		return lo, lo
	}
	return lo, time.Duration(c.SuspicionMaxTimeoutMult) * lo
}

// LocalConfig returns a configuration for tests on one machine: loopback,
// a free port, and the "fast" failure detector of research/timings.md
// (probe 100 ms, timeout 50 ms), which detected a hard failure in a median
// of 339 ms with suspicion ×2; with DefaultConfig's ×4 the suspicion
// timeout is 400 ms, about 200 ms more. It still requires Key or Insecure.
func LocalConfig(nodeName string) Config {
	c := DefaultConfig(nodeName)
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.PushPullInterval = 5 * time.Second
	c.ReconnectInterval = time.Second
	return c
}

// ErrNoKey is returned by Validate when Config.Key is empty and
// Config.Insecure is not set.
var ErrNoKey = errors.New("no gossip encryption key: generate one with `haxd keygen`, or set insecure for local tests")

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("gossip node_name: must not be empty")
	}
	if len(c.Key) == 0 && c.KeyringFile == "" && !c.Insecure {
		return ErrNoKey
	}
	if len(c.Key) > 0 {
		if err := checkKeyLen(len(c.Key)); err != nil {
			return fmt.Errorf("gossip key: %w", err)
		}
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("gossip bind_addr %q: not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("gossip advertise_addr %q: not an IP address", c.AdvertiseAddr)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"bind_port", c.BindPort}, {"advertise_port", c.AdvertisePort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("gossip %s %d: expected 0..65535", p.name, p.v)
		}
	}
	for _, k := range []string{TagRaft, TagAPI} {
		if _, ok := c.Tags[k]; ok {
			return fmt.Errorf("gossip tags: key %q is reserved, set the address field instead", k)
		}
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"probe_interval", c.ProbeInterval}, {"probe_timeout", c.ProbeTimeout},
		{"gossip_interval", c.GossipInterval}, {"tcp_timeout", c.TCPTimeout},
		{"push_pull_interval", c.PushPullInterval}, {"reconnect_interval", c.ReconnectInterval},
		{"reconnect_timeout", c.ReconnectTimeout}, {"tombstone_timeout", c.TombstoneTimeout},
	}
	for _, d := range durs {
		if d.v <= 0 {
			return fmt.Errorf("gossip %s: expected a positive duration, found %v", d.name, d.v)
		}
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return fmt.Errorf("gossip probe_timeout (%v): must be less than probe_interval (%v)", c.ProbeTimeout, c.ProbeInterval)
	}
	ints := []struct {
		name string
		v    int
	}{
		{"suspicion_mult", c.SuspicionMult}, {"suspicion_max_timeout_mult", c.SuspicionMaxTimeoutMult},
		{"gossip_nodes", c.GossipNodes}, {"retransmit_mult", c.RetransmitMult},
		{"event_buffer", c.EventBuffer},
	}
	for _, n := range ints {
		if n.v < 1 {
			return fmt.Errorf("gossip %s: expected >= 1, found %d", n.name, n.v)
		}
	}
	return nil
}

// tags returns the tags this member gossips.
func (c Config) tags() map[string]string {
	t := make(map[string]string, len(c.Tags)+2)
	for k, v := range c.Tags {
		t[k] = v
	}
	if c.RaftAddr != "" {
		t[TagRaft] = c.RaftAddr
	}
	if c.APIAddr != "" {
		t[TagAPI] = c.APIAddr
	}
	return t
}
