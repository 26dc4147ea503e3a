package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"haxd/ha"
)

// State is a member's liveness as the HA stack sees it.
type State string

// The two states gossip feeds to the CRM (ha-semantics §1.3).
const (
	// StateOnline: the member is alive in this member's gossip view.
	StateOnline State = "online"
	// StateUnknown: the member failed, is leaving or left; it may still
	// run services until its agent lock expires.
	StateUnknown State = "unknown"
)

// Member is one cluster member as this node's gossip sees it.
type Member struct {
	// Name is the node name.
	Name string
	// Addr is the member's gossip address, host:port.
	Addr string
	// RaftAddr and APIAddr are the member's TagRaft and TagAPI tags; empty
	// when the member does not gossip them.
	RaftAddr, APIAddr string
	// Tags are all the tags the member gossips.
	Tags map[string]string
	// State is online when Status is alive, unknown otherwise.
	State State
	// Status is serf's status: "alive", "leaving", "left" or "failed".
	Status string
}

// EventType says what changed about a member.
type EventType string

// Membership event types.
const (
	// EventJoin: a member joined or came back.
	EventJoin EventType = "join"
	// EventLeave: a member left gracefully.
	EventLeave EventType = "leave"
	// EventFailed: the failure detector declared a member failed.
	EventFailed EventType = "failed"
	// EventUpdate: a member changed its tags.
	EventUpdate EventType = "update"
	// EventReap: a failed or left member was forgotten after
	// ReconnectTimeout or TombstoneTimeout.
	EventReap EventType = "reap"
)

// Event is one membership change.
type Event struct {
	// Type is what happened.
	Type EventType
	// Member is the member's state right after the change.
	Member Member
}

// Gossip is a running gossip member.
type Gossip struct {
	cfg    Config
	logger *slog.Logger
	serf   *serf.Serf
	in     chan serf.Event
	events chan Event
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// Start creates the member and listens on cfg.BindAddr:cfg.BindPort. It
// does not join anyone: call Join. When ctx is done the member shuts down
// without leaving, as if it had crashed; call Leave first for a graceful
// exit. logger may be nil.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	std := newStdLogger(logger)

	mlc := memberlist.DefaultLANConfig()
	mlc.LogOutput = nil
	mlc.Logger = std
	mlc.BindAddr = cfg.BindAddr
	mlc.BindPort = cfg.BindPort
	mlc.AdvertiseAddr = cfg.AdvertiseAddr
	mlc.AdvertisePort = cfg.AdvertisePort
	if mlc.AdvertisePort == 0 {
		mlc.AdvertisePort = cfg.BindPort
	}
	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mlc.GossipInterval = cfg.GossipInterval
	mlc.GossipNodes = cfg.GossipNodes
	mlc.RetransmitMult = cfg.RetransmitMult
	mlc.TCPTimeout = cfg.TCPTimeout
	mlc.PushPullInterval = cfg.PushPullInterval
	kr, err := loadKeyring(cfg)
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	if kr == nil && !cfg.Insecure {
		return nil, fmt.Errorf("start gossip: keyring file %q does not exist: %w", cfg.KeyringFile, ErrNoKey)
	}
	if kr != nil {
		mlc.Keyring = kr
		mlc.GossipVerifyIncoming = true
		mlc.GossipVerifyOutgoing = true
	} else {
		logger.Warn("gossip is not encrypted: anyone who reaches the gossip port can join", "insecure", true)
	}

	g := &Gossip{
		cfg:    cfg,
		logger: logger,
		in:     make(chan serf.Event, 64),
		events: make(chan Event, cfg.EventBuffer),
		stop:   make(chan struct{}),
	}
	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = cfg.tags()
	sc.EventCh = g.in
	sc.MemberlistConfig = mlc
	sc.LogOutput = nil
	sc.Logger = std
	sc.ReconnectInterval = cfg.ReconnectInterval
	sc.ReconnectTimeout = cfg.ReconnectTimeout
	sc.TombstoneTimeout = cfg.TombstoneTimeout
	sc.SnapshotPath = cfg.SnapshotPath
	sc.KeyringFile = cfg.KeyringFile
	sc.RejoinAfterLeave = true
	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("start gossip %s on %s:%d: %w", cfg.NodeName, cfg.BindAddr, cfg.BindPort, err)
	}
	g.serf = s
	g.wg.Add(1)
	go g.forward(ctx)
	logger.Info("gossip started", ha.KeyNode, cfg.NodeName, "addr", g.LocalAddr(), "encrypted", s.EncryptionEnabled())
	return g, nil
}

// forward turns serf's member events into Events until Shutdown or ctx.
func (g *Gossip) forward(ctx context.Context) {
	defer g.wg.Done()
	done := ctx.Done()
	for {
		select {
		case <-done:
			// Keep draining serf's events until Shutdown has stopped serf,
			// so serf never blocks on a full channel.
			done = nil
			go g.Shutdown() //nolint:errcheck // logged by Shutdown
		case <-g.stop:
			return
		case e := <-g.in:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			typ, ok := eventTypes[me.Type]
			if !ok {
				continue
			}
			for _, m := range me.Members {
				ev := Event{Type: typ, Member: convert(m)}
				g.logger.Info("gossip member "+string(typ), ha.KeyNode, ev.Member.Name, "status", ev.Member.Status)
				select {
				case g.events <- ev:
				default:
					g.logger.Warn("gossip event dropped: events channel full", ha.KeyNode, ev.Member.Name, "event", string(typ))
				}
			}
		}
	}
}

var eventTypes = map[serf.EventType]EventType{
	serf.EventMemberJoin:   EventJoin,
	serf.EventMemberLeave:  EventLeave,
	serf.EventMemberFailed: EventFailed,
	serf.EventMemberUpdate: EventUpdate,
	serf.EventMemberReap:   EventReap,
}

// Events returns the membership changes, one Event per member and change.
// Events are hints: when the channel is full, new events are dropped, so
// read Members for the current view.
func (g *Gossip) Events() <-chan Event { return g.events }

// LocalName is this member's node name.
func (g *Gossip) LocalName() string { return g.cfg.NodeName }

// LocalAddr is the address other members join, "ip:port"; with BindPort 0
// the port is the one chosen at Start.
func (g *Gossip) LocalAddr() string {
	n := g.serf.Memberlist().LocalNode()
	return n.Address()
}

// Join contacts the members at addrs ("host:port"; any one member suffices)
// and returns how many it reached. The error is nil if at least one was
// reached.
func (g *Gossip) Join(addrs []string) (int, error) {
	n, err := g.serf.Join(addrs, true)
	if err != nil {
		return n, fmt.Errorf("join gossip %v: %w", addrs, err)
	}
	return n, nil
}

// SetTags replaces the tags this member gossips (including TagRaft and
// TagAPI) and broadcasts them.
func (g *Gossip) SetTags(tags map[string]string) error {
	if err := g.serf.SetTags(maps.Clone(tags)); err != nil {
		return fmt.Errorf("set gossip tags: %w", err)
	}
	return nil
}

// Members returns every member this node knows, itself included, sorted by
// name. Members that failed or left stay until ReconnectTimeout or
// TombstoneTimeout, in state unknown.
func (g *Gossip) Members() []Member {
	sm := g.serf.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		if m.Status == serf.StatusNone {
			continue
		}
		out = append(out, convert(m))
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Quorum reports whether this node is in the quorate partition: a strict
// majority of the members it knows is alive in its gossip view, and it can
// reach a raft leader (leaderReachable, from the store).
func (g *Gossip) Quorum(leaderReachable bool) bool {
	return Quorate(g.Members(), leaderReachable)
}

// NodeInfo returns the membership view the CRM reads (ha.Env.NodeInfo):
// every known member, online only when quorate is true and the member is
// alive; the local node always reports itself online.
func (g *Gossip) NodeInfo(quorate bool) map[string]ha.NodeInfo {
	return NodeInfo(g.Members(), g.cfg.NodeName, quorate)
}

// Leave announces a graceful departure, waits for it to propagate (bounded
// by serf's broadcast timeout, 5 s) and shuts the member down. Other
// members see the node as left (unknown), not failed.
func (g *Gossip) Leave() error {
	err := g.serf.Leave()
	if err2 := g.Shutdown(); err == nil {
		err = err2
	}
	if err != nil {
		return fmt.Errorf("leave gossip: %w", err)
	}
	return nil
}

// Shutdown stops the member without leaving: the others detect it as
// failed, as after a crash. It is idempotent.
func (g *Gossip) Shutdown() error {
	var err error
	g.once.Do(func() {
		err = g.serf.Shutdown()
		close(g.stop)
		g.wg.Wait()
		g.logger.Info("gossip stopped", ha.KeyNode, g.cfg.NodeName)
	})
	if err != nil {
		return fmt.Errorf("shut down gossip: %w", err)
	}
	return nil
}

// Quorate reports whether members (one node's view, itself included) form
// the quorate partition: a strict majority of them is online, and a raft
// leader is reachable. No members means not quorate.
func Quorate(members []Member, leaderReachable bool) bool {
	if !leaderReachable || len(members) == 0 {
		return false
	}
	alive := 0
	for _, m := range members {
		if m.State == StateOnline {
			alive++
		}
	}
	return 2*alive > len(members)
}

// NodeInfo turns a member list into the CRM's node view: every member is
// online only if quorate and alive; local is always online (ha-semantics
// §1.3).
func NodeInfo(members []Member, local string, quorate bool) map[string]ha.NodeInfo {
	out := make(map[string]ha.NodeInfo, len(members)+1)
	for _, m := range members {
		out[m.Name] = ha.NodeInfo{Online: quorate && m.State == StateOnline}
	}
	out[local] = ha.NodeInfo{Online: true}
	return out
}

// ErrNoMember is wrapped by Gossip.Member when no member has the name.
var ErrNoMember = errors.New("no such member")

// Member returns the member called name.
func (g *Gossip) Member(name string) (Member, error) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, nil
		}
	}
	return Member{}, fmt.Errorf("gossip member %q: %w", name, ErrNoMember)
}

func convert(m serf.Member) Member {
	st := StateUnknown
	if m.Status == serf.StatusAlive {
		st = StateOnline
	}
	return Member{
		Name:     m.Name,
		Addr:     addr(m),
		RaftAddr: m.Tags[TagRaft],
		APIAddr:  m.Tags[TagAPI],
		Tags:     maps.Clone(m.Tags),
		State:    st,
		Status:   m.Status.String(),
	}
}

func addr(m serf.Member) string {
	if m.Addr == nil {
		return ""
	}
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}
