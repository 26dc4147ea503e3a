package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"haxd/crm"
	"haxd/fence"
	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
)

// node is the infrastructure shared by the CRM and LRM of one agent.
type node struct {
	name   string
	cfg    *Config
	store  *store.Store
	gossip *gossip.Gossip
	// guardSocket is the unix socket of this node's guard process.
	guardSocket string
	targets     *targets
	agents      map[string]ha.ResourceAgent
	log         *slog.Logger

	// base is the monotonic reference of validUntil.
	base time.Time
	// validUntil is the end of the own agent lock's validity, in
	// nanoseconds since base on the monotonic clock: send time of the last
	// acknowledged renewal plus Timing.LockValidity. The feeder feeds the
	// guard only before it.
	validUntil atomic.Int64
	// killAll kills every local service at once; the last resort when the
	// lock lapsed and the guard did not act (it died or hangs).
	killAll func() error

	mu       sync.Mutex
	shutdown bool // the node itself is shutting down
	reboot   bool

	// obs, metrics and notify observe the cluster for operators; metrics
	// and notify may be nil (not configured).
	obs     *observer
	metrics *metrics
	notify  *notifier
	events  *eventLog
}

func (n *node) setShutdown(shutdown, reboot bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shutdown, n.reboot = shutdown, reboot
}

// env is the ha.Env of the CRM or the LRM of this node. The CRM's term is
// the raft term of the leadership it holds; every write it makes carries
// it, so a deposed master's late write is rejected by the store.
type env struct {
	n       *node
	role    string
	log     *slog.Logger
	workers *workers

	term uint64 // CRM: term of the current leadership, 0 when not leader
}

func newEnv(n *node, role string, w *workers) *env {
	return &env{n: n, role: role, log: n.log.With("origin", n.name+"/"+role), workers: w}
}

// ctx bounds one store operation of a round. The LRM's operations also
// end when the raft leader changes (see leaderWatch).
func (e *env) ctx() (context.Context, context.CancelFunc) {
	return e.watched(context.WithTimeout(context.Background(), e.opTimeout()))
}

// opTimeout is the longest a store operation of a round may take.
func (e *env) opTimeout() time.Duration {
	return min(e.n.cfg.Timing.LockTTL, 5*time.Second)
}

// watched adds the leader watch to the LRM's contexts.
func (e *env) watched(ctx context.Context, cancel context.CancelFunc) (context.Context, context.CancelFunc) {
	if e.role != "lrm" {
		return ctx, cancel
	}
	wctx, wcancel := e.leaderWatch(ctx)
	return wctx, func() { wcancel(); cancel() }
}

// leaderPoll is how often leaderWatch looks at the raft leader.
const leaderPoll = 20 * time.Millisecond

// errLeaderChanged ends an operation sent to a leader that is no longer
// the leader this node knows.
var errLeaderChanged = errors.New("the raft leader changed")

// leaderWatch returns a context that is cancelled with errLeaderChanged
// when the raft leader known at the start is replaced or lost. A request
// forwarded to a leader that went silent (cut off by a partition, not
// dead) hangs instead of failing; without the watch it would block the
// LRM's round until its timeout, past the lock validity, even though the
// other nodes elected a new leader long before, and the LRM would lose its
// lock and self-fence. When no leader is known at the start there is
// nothing to watch: the store waits for one.
func (e *env) leaderWatch(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	start, _ := e.n.store.Leader()
	if start == "" {
		return ctx, func() { cancel(nil) }
	}
	go func() {
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if id, _ := e.n.store.Leader(); id != start {
					cancel(errLeaderChanged)
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

func (e *env) NodeName() string     { return e.n.name }
func (e *env) Now() time.Time       { return time.Now() }
func (e *env) Logger() *slog.Logger { return e.log }

func (e *env) Notify(subject, text string) {
	e.log.Warn(subject+": "+text, "notification", subject)
}

func (e *env) UID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:])
}

func (e *env) leaderReachable() bool {
	id, _ := e.n.store.Leader()
	return id != ""
}

// members returns the cluster's nodes, the raft configuration (the
// authoritative membership: a node removed with `haxd ha node remove`
// leaves it), each with its gossip liveness. Without a readable
// configuration it falls back to the gossip member list.
func (e *env) members() []gossip.Member {
	gm := e.n.gossip.Members()
	servers, err := e.n.store.Servers()
	if err != nil || len(servers) == 0 {
		return gm
	}
	out := make([]gossip.Member, 0, len(servers))
	for _, s := range servers {
		m := gossip.Member{Name: s.ID, State: gossip.StateUnknown}
		for _, g := range gm {
			if g.Name == s.ID {
				m = g
			}
		}
		out = append(out, m)
	}
	return out
}

// Quorate: a strict majority of the cluster's nodes is alive in this
// node's gossip view, and a raft leader is reachable.
func (e *env) Quorate() bool { return gossip.Quorate(e.members(), e.leaderReachable()) }

// UpdateClusterState makes this round's reads linearizable (a raft barrier
// or read index through the leader); it fails when no leader answers.
func (e *env) UpdateClusterState() bool {
	ctx, cancel := e.ctx()
	defer cancel()
	if err := e.n.store.Barrier(ctx); err != nil {
		e.log.Debug("cluster state refresh failed", "err", err)
		return false
	}
	return true
}

func (e *env) NodeInfo() map[string]ha.NodeInfo {
	members := e.members()
	return gossip.NodeInfo(members, e.n.name, gossip.Quorate(members, e.leaderReachable()))
}

// AcquireManagerLock: the CRM master is the raft leader. The term of the
// leadership is remembered and fences every write of this round.
func (e *env) AcquireManagerLock() bool {
	term, ok := e.n.store.LeaderTerm()
	if !ok {
		e.term = 0
		return false
	}
	ctx, cancel := e.ctx()
	defer cancel()
	if err := e.n.store.Barrier(ctx); err != nil {
		e.term = 0
		return false
	}
	if t2, ok := e.n.store.LeaderTerm(); !ok || t2 != term {
		e.term = 0
		return false
	}
	e.term = term
	return true
}

// ReleaseManagerLock gives up leadership only by shutting down; the next
// leader is elected within the raft election timeout.
func (e *env) ReleaseManagerLock() bool {
	e.term = 0
	return true
}

func (e *env) AcquireAgentLock(node string) bool {
	bound := e.opTimeout()
	if v := e.n.cfg.Timing.LockValidity; node == e.n.name && v > 0 {
		// A renewal that returns after the validity does not count (the
		// LRM checks), so waiting longer (a dead leader that does not
		// answer) only delays the next attempt with the new leader.
		bound = v
	}
	var term uint64
	if node != e.n.name {
		term = e.term // fencing another node: a CRM-only, term-fenced write
	}
	sent := time.Now()
	deadline := sent.Add(bound)
	var res store.LockResult
	var err error
	for {
		ctx, cancel := e.watched(context.WithDeadline(context.Background(), deadline))
		res, err = e.n.store.AcquireLock(ctx, store.AgentLock(node), e.n.name, term)
		changed := errors.Is(context.Cause(ctx), errLeaderChanged)
		cancel()
		// A renewal of the own lock that went to a leader that was then
		// replaced or lost is sent again, to the next leader, within the
		// same deadline. The validity still counts from the first send.
		if err == nil || node != e.n.name || !changed {
			break
		}
	}
	if err == nil && node == e.n.name {
		e.n.validUntil.Store(int64(sent.Sub(e.n.base) + e.n.cfg.Timing.LockValidity))
	}
	e.n.metrics.lockRenewal(node == e.n.name, err == nil, time.Since(sent))
	if err != nil {
		if !errors.Is(err, store.ErrLockHeld) {
			e.log.Debug("agent lock", "lock", node, "err", err)
		}
		return false
	}
	if res.New {
		e.log.Info(fmt.Sprintf("got lock 'ha_agent_%s_lock'", node))
	}
	return true
}

func (e *env) ReleaseAgentLock(node string) bool {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.ReleaseLock(ctx, store.AgentLock(node), e.n.name) == nil
}

// The CRM's watchdog: the master's writes are fenced by the raft term, so a
// frozen and resumed master cannot corrupt the state; it needs no watchdog.
// The LRM's watchdog is a handle in the guard process: opening it arms the
// guard, which kills every registered service unless fed in time.
func (e *env) WatchdogOpen() error {
	if e.role != "lrm" {
		return nil
	}
	// The guard is local: no leader watch.
	ctx, cancel := context.WithTimeout(context.Background(), e.opTimeout())
	defer cancel()
	cl, err := fence.Open(ctx, e.n.guardSocket)
	if err != nil {
		return fmt.Errorf("open guard handle: %w", err)
	}
	if err := cl.CheckTimeout(e.n.cfg.Timing.WatchdogTimeout); err != nil {
		_ = cl.Close()
		return err
	}
	t := e.n.targets
	t.mu.Lock()
	defer t.mu.Unlock()
	for tg := range t.set {
		if err := cl.Register(tg); err != nil {
			cl.Abandon()
			return fmt.Errorf("register %v with the guard: %w", tg, err)
		}
	}
	t.cl = cl
	return nil
}

// feedWhileValid feeds the guard every interval while a handle is open and
// the own agent lock is within its validity, until ctx ends. Feeding
// between renewals keeps a slow renewal (a leader election, a slow fsync)
// from firing the guard while the lock is still provably held; once the
// validity ends, feeding stops and the guard kills every service
// watchdog_timeout later. This is the bound the safety inequality uses.
func (n *node) feedWhileValid(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := int64(time.Since(n.base)) // monotonic
			n.targets.mu.Lock()
			cl := n.targets.cl
			live := len(n.targets.set)
			n.targets.mu.Unlock()
			if cl == nil {
				continue
			}
			valid := n.validUntil.Load()
			switch {
			case now < valid:
				err := cl.Feed()
				n.metrics.guardFeed(err == nil)
				if err != nil {
					n.feedFailed(cl, err)
				}
			case now >= valid+int64(n.cfg.Timing.WatchdogTimeout+n.cfg.Timing.SelfFenceTime) && live > 0 && n.killAll != nil:
				// The guard should have killed everything by now. If it
				// died or hangs, the agent does it itself (DESIGN.md:
				// when its lock lapses, the LRM kills every service).
				n.log.Error("agent lock lapsed and services may still run: killing every local service")
				if err := n.killAll(); err != nil {
					n.log.Error("killing local services failed", "err", err)
				}
				n.targets.mu.Lock()
				clear(n.targets.set)
				n.targets.mu.Unlock()
			}
		}
	}
}

func (e *env) guard() *fence.Client {
	e.n.targets.mu.Lock()
	defer e.n.targets.mu.Unlock()
	return e.n.targets.cl
}

func (e *env) WatchdogUpdate() error {
	if e.role != "lrm" {
		return nil
	}
	cl := e.guard()
	if cl == nil {
		return e.WatchdogOpen()
	}
	if err := cl.Feed(); err != nil {
		e.n.feedFailed(cl, err)
		return err
	}
	return nil
}

// feedFailed handles a failed feed. When the guard has fenced (it killed
// every registered service, as a watchdog reset would), the handle is
// dropped together with the targets, which are all dead now; the next lock
// renewal opens a fresh handle, as a rebooted node would.
func (n *node) feedFailed(cl *fence.Client, err error) {
	if !errors.Is(err, fence.ErrFenced) {
		n.log.Warn("feeding the guard failed", "err", err)
		return
	}
	n.targets.mu.Lock()
	defer n.targets.mu.Unlock()
	if n.targets.cl != cl {
		return
	}
	n.log.Error("the guard fenced this node: every service it ran was killed")
	cl.Abandon()
	n.targets.cl = nil
	clear(n.targets.set)
}

func (e *env) WatchdogClose() error {
	if e.role != "lrm" {
		return nil
	}
	t := e.n.targets
	t.mu.Lock()
	cl := t.cl
	t.cl = nil
	t.mu.Unlock()
	if cl == nil {
		return nil
	}
	return cl.Close()
}

func (e *env) ReadManagerStatus() (*ha.ManagerStatus, error) { return e.n.store.ManagerStatus() }

func (e *env) WriteManagerStatus(ms *ha.ManagerStatus) error {
	prev, _ := e.n.store.ManagerStatus()
	ctx, cancel := e.ctx()
	defer cancel()
	err := e.n.store.WriteManagerStatus(ctx, e.term, ms)
	if err == nil {
		e.n.published(prev, ms)
	}
	return err
}

func (e *env) ReadLRMStatus(node string) (*ha.LRMStatus, error) { return e.n.store.LRMStatus(node) }

func (e *env) WriteLRMStatus(st *ha.LRMStatus) error {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.WriteLRMStatus(ctx, e.n.name, st)
}

func (e *env) ReadResources() (map[ha.SID]*ha.ResourceConfig, error) {
	return e.n.store.Resources(), nil
}

func (e *env) SetRequestedState(sid ha.SID, state ha.RequestedState) error {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.SetRequestedState(ctx, e.term, sid, state)
}

func (e *env) StealService(sid ha.SID, from, to string) error {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.StealService(ctx, e.term, sid, from, to)
}

func (e *env) ReadRules() ([]byte, error)  { return e.n.store.Rules(), nil }
func (e *env) ReadGroups() ([]byte, error) { return e.n.store.Groups(), nil }

func (e *env) ReadDatacenter() (*ha.Datacenter, error) {
	dc := *e.n.store.Datacenter()
	dc.MaxWorkers = e.n.cfg.MaxWorkers
	return &dc, nil
}

func (e *env) ReadCRMCommands() ([]string, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.TakeCommands(ctx, e.term)
}

// HasCRMCommands lets an idle CRM see queued commands without taking them.
func (e *env) HasCRMCommands() (bool, error) { return len(e.n.store.Commands()) > 0, nil }

// rulesCapableVersion is the PVE software level the CRM's group-to-rules
// migration gate asks for (ha-semantics §10.3). Every haxd agent
// understands rules, so a live member reports it.
const rulesCapableVersion = "9.1.0"

func (e *env) NodeVersion(node string) string {
	if m, err := e.n.gossip.Member(node); err == nil && m.Tags[gossip.TagVersion] != "" {
		return rulesCapableVersion
	}
	return ""
}

// WriteRules implements crm.GroupMigrator.
func (e *env) WriteRules(raw []byte) error {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.SetRules(ctx, raw)
}

// MigrateResourceGroups implements crm.GroupMigrator: every resource loses
// its group; the listed ones get the failback their group implied.
func (e *env) MigrateResourceGroups(failback map[ha.SID]bool) error {
	ctx, cancel := e.ctx()
	defer cancel()
	for sid, cd := range e.n.store.Resources() {
		fb, listed := failback[sid]
		if cd.Group == "" && !listed {
			continue
		}
		c := *cd
		c.Group = ""
		if listed {
			c.Failback = fb
		}
		if err := e.n.store.PutResource(ctx, c); err != nil {
			return fmt.Errorf("migrate group of %s: %w", sid, err)
		}
	}
	return nil
}

// DeleteGroups implements crm.GroupMigrator.
func (e *env) DeleteGroups() error {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.SetGroups(ctx, nil)
}

// StaticNodeStats and DynamicNodeStats read the usage every agent gossips
// (usage.go); ServiceStats the size configured for the service.
func (e *env) StaticNodeStats() (map[string]ha.NodeStats, error) {
	return nodeStats(e.n.gossip.Members())
}
func (e *env) DynamicNodeStats() (map[string]ha.NodeStats, error) {
	return nodeStats(e.n.gossip.Members())
}
func (e *env) ServiceStats(sid ha.SID) (ha.ServiceStats, bool) {
	return serviceStats(e.n.store.Resources()[sid])
}

func (e *env) IsNodeShutdown() (bool, bool) {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	return e.n.shutdown, e.n.reboot
}

func (e *env) ResourceAgent(typ string) ha.ResourceAgent { return e.n.agents[typ] }

func (e *env) Workers() ha.Workers { return e.workers }

var (
	_ ha.Env            = (*env)(nil)
	_ crm.GroupMigrator = (*env)(nil)
	_ crm.CommandPeeker = (*env)(nil)
)
