package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"haxd/clock"
	"haxd/crm"
	"haxd/crm/placement"
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
	// fencer holds the LRM's guard handle and the agent's own kill list
	// (agent/guard.go).
	fencer *fencer
	agents map[string]ha.ResourceAgent
	log    *slog.Logger
	// clock is the agent's clock (Agent.clock): Now, the lock renewals'
	// send times and base/monoBase read it.
	clock clock.Clock

	// base is the monotonic reference of validUntil; monoBase is
	// CLOCK_MONOTONIC (clock.Mono) read just before base, so that
	// monoBase + validUntil is the validity's end on the clock the guard
	// reads (never later than the true instant).
	base     time.Time
	monoBase int64
	// validUntil is the end of the own agent lock's validity, in
	// nanoseconds since base on the monotonic clock: send time of the last
	// acknowledged renewal plus Timing.LockValidity. The feeder feeds the
	// guard only before it.
	validUntil atomic.Int64

	// diskErr is why the data dir cannot be written (nil: it can); set
	// by watchDisk.
	diskErr atomic.Pointer[string]
	// member is set once the node belongs to the raft cluster; tagsMu
	// serializes publishing the gossip tags.
	member atomic.Bool
	tagsMu sync.Mutex
	// devices runs fence device jobs; nil without fence_config.
	devices *deviceFencer

	mu       sync.Mutex
	shutdown bool // the node itself is shutting down
	reboot   bool

	// obs, metrics and notify observe the cluster for operators; metrics
	// and notify may be nil (not configured).
	obs     *observer
	metrics *metrics
	notify  *notifier
	outbox  *outbox
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

// opTimeout is the longest a store operation of a round may take: the
// lock TTL, at most 5 s. An LRM with a lock validity waits at most that
// validity: its round renews the lock, and an operation that waited
// longer for an unreachable leader (the barrier every round starts with)
// would only delay the renewal attempt that shows the lock lapsed, and the
// LRM's lost_agent_lock with it, past the moment the lock's validity ended
// and the guard began to count down. A failed operation is retried by the
// next round; nothing of the safety argument depends on this bound.
func (e *env) opTimeout() time.Duration {
	t := e.n.cfg.Timing
	d := min(t.LockTTL, 5*time.Second)
	if e.role == "lrm" && t.LockValidity > 0 {
		d = min(d, t.LockValidity)
	}
	return d
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
func (e *env) Now() time.Time       { return e.n.clock.Now().Add(e.n.wallOffset()) }
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

// NodeInfo: a member is online when it is alive in gossip and this node
// is quorate; a member that gossips that it stepped out (its data dir is
// not writable) is offline, so that the master fences it and recovers its
// services.
func (e *env) NodeInfo() map[string]ha.NodeInfo {
	members := e.members()
	out := gossip.NodeInfo(members, e.n.name, gossip.Quorate(members, e.leaderReachable()))
	for _, m := range members {
		if m.Tags[tagSteppedOut] != "" && m.Name != e.n.name {
			out[m.Name] = ha.NodeInfo{Online: false}
		}
	}
	return out
}

// AcquireManagerLock: the CRM master is the raft leader. The term of the
// leadership is remembered and fences every write of this round.
func (e *env) AcquireManagerLock() bool {
	if why := e.n.unwritable(); why != "" {
		// A master that cannot write its own log must not act; watchDisk
		// hands the leadership over.
		e.log.Debug("not acting as master: data dir not writable", "err", why)
		e.term = 0
		return false
	}
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

// AcquireAgentLock takes or renews node's agent lock in the store. For
// the own lock it computes the validity once, from the first send
// (LockGrant.ValidUntil and the feeder's validUntil are the same instant),
// and an acquisition (store.LockResult.New: the lock was free or released
// by this node) counts only once the local replica applied
// store.LockResult.Index, within the same deadline: the lock may have
// been taken from this node and its services stolen meanwhile, and the
// LRM acts on the replica right after this call. A later round needs no
// such wait: it starts with a read barrier (UpdateClusterState).
func (e *env) AcquireAgentLock(node string) (ha.LockGrant, bool) {
	own := node == e.n.name
	if why := e.n.unwritable(); why != "" && own {
		// Stepped out (watchDisk): no renewal, so the lock lapses and the
		// services are recovered elsewhere.
		e.log.Debug("not renewing the agent lock: data dir not writable", "err", why)
		return ha.LockGrant{}, false
	}
	bound := e.opTimeout()
	if v := e.n.cfg.Timing.LockValidity; own && v > 0 {
		// A renewal that returns after the validity does not count (the
		// LRM checks), so waiting longer (a dead leader that does not
		// answer) only delays the next attempt with the new leader.
		bound = v
	}
	var term uint64
	if !own {
		term = e.term // fencing another node: a CRM-only, term-fenced write
	}
	sent := e.n.clock.Now()
	offset := e.n.wallOffset()
	deadline := sent.Add(bound)
	var res store.LockResult
	var err error
	for {
		ctx, cancel := e.watched(context.WithDeadline(context.Background(), deadline))
		if own {
			res, err = e.n.store.AcquireOwnLock(ctx, store.AgentLock(node), e.n.name, e.n.fencer.isArmed())
		} else {
			res, err = e.n.store.AcquireLock(ctx, store.AgentLock(node), e.n.name, term)
		}
		changed := errors.Is(context.Cause(ctx), errLeaderChanged)
		cancel()
		// A renewal of the own lock that went to a leader that was then
		// replaced or lost is sent again, to the next leader, within the
		// same deadline. The validity still counts from the first send.
		if err == nil || !own || !changed {
			break
		}
	}
	if err == nil && own && res.New {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if werr := e.n.store.WaitApplied(ctx, res.Index); werr != nil {
			e.log.Warn("agent lock taken, but this node's replica did not catch up with it in time: not acting on it",
				"lock", node, "index", res.Index, "err", werr)
			err = fmt.Errorf("acquisition at index %d: %w", res.Index, werr)
		}
		cancel()
	}
	var grant ha.LockGrant
	if err == nil && own {
		v := e.n.cfg.Timing.LockValidity
		validUntil := sent.Add(v)
		e.n.validUntil.Store(int64(validUntil.Sub(e.n.base)))
		if v > 0 {
			grant.ValidUntil = validUntil.Add(offset) // on Now's clock
		}
	}
	e.n.metrics.lockRenewal(own, err == nil, e.n.clock.Now().Sub(sent))
	if err != nil {
		if !errors.Is(err, store.ErrLockHeld) {
			e.log.Debug("agent lock", "lock", node, "err", err)
		}
		return ha.LockGrant{}, false
	}
	if res.New {
		e.log.Info(fmt.Sprintf("got lock 'ha_agent_%s_lock'", node))
	}
	return grant, true
}

func (e *env) ReleaseAgentLock(node string, running bool) bool {
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.ReleaseLock(ctx, store.AgentLock(node), e.n.name, running) == nil
}

// AgentLockReleasedRunning reads the local replica, which the CRM's round
// made current with a barrier (UpdateClusterState, AcquireManagerLock).
// The store itself refuses such a lock to anyone but its node, so a stale
// answer can only delay a fencing, never let one through.
func (e *env) AgentLockReleasedRunning(node string) bool {
	return e.n.store.LockReleasedRunning(store.AgentLock(node))
}

func (e *env) ReadManagerStatus() (*ha.ManagerStatus, error) { return e.n.store.ManagerStatus() }

// WriteManagerStatus writes ms, unless the replica already holds the
// same status (all but the timestamp) written less than
// Timing.StatusRefresh before ms's timestamp: an idle master costs no
// raft entry per round (see unchangedStatus).
func (e *env) WriteManagerStatus(ms *ha.ManagerStatus) error {
	prev, _ := e.n.store.ManagerStatus()
	if prev != nil && ms != nil {
		p, n := *prev, *ms
		p.Timestamp, n.Timestamp = 0, 0
		if unchangedStatus(&p, &n, prev.Timestamp, ms.Timestamp, e.n.cfg.Timing.StatusRefresh) {
			return nil
		}
	}
	ctx, cancel := e.ctx()
	defer cancel()
	err := e.n.store.WriteManagerStatus(ctx, e.term, ms)
	if err == nil {
		e.n.published(prev, ms, e.term)
	}
	return err
}

func (e *env) ReadLRMStatus(node string) (*ha.LRMStatus, error) { return e.n.store.LRMStatus(node) }

// WriteLRMStatus writes st, unless the replica already holds the same
// status (all but the timestamp) written less than Timing.StatusRefresh
// before st's timestamp (see unchangedStatus).
func (e *env) WriteLRMStatus(st *ha.LRMStatus) error {
	if prev, err := e.n.store.LRMStatus(e.n.name); err == nil && st != nil {
		p, n := *prev, *st
		p.Timestamp, n.Timestamp = 0, 0
		if onlyDropsResults(&p, &n) {
			// Results of requests the master no longer asks for are
			// dropped with the next write: nobody reads a result whose
			// UID is gone (UIDs are never reused).
			n.Results = p.Results
		}
		if unchangedStatus(&p, &n, prev.Timestamp, st.Timestamp, e.n.cfg.Timing.StatusRefresh) {
			return nil
		}
	}
	ctx, cancel := e.ctx()
	defer cancel()
	return e.n.store.WriteLRMStatus(ctx, e.n.name, st)
}

// onlyDropsResults reports whether next differs from prev at most by
// results it no longer has.
func onlyDropsResults(prev, next *ha.LRMStatus) bool {
	if prev.State != next.State || prev.Mode != next.Mode {
		return false
	}
	for uid, r := range next.Results {
		if pr, has := prev.Results[uid]; !has || pr != r {
			return false
		}
	}
	return true
}

// unchangedStatus reports whether a status write may be skipped: the
// replica's status prev (its timestamp cleared, written at prevTS, Unix
// seconds) equals next (its timestamp cleared), and next's timestamp
// nextTS is less than refresh after prevTS. The replica holds only
// committed writes, so a skipped write leaves the store as truthful as
// the write would: the content is there, and the timestamp is less than
// refresh old (the status view's stale bound allows for it,
// api.StaleAfter). refresh 0 skips nothing.
func unchangedStatus(prev, next any, prevTS, nextTS int64, refresh time.Duration) bool {
	if refresh <= 0 || prevTS == 0 || nextTS < prevTS || time.Duration(nextTS-prevTS)*time.Second >= refresh {
		return false
	}
	a, errA := json.Marshal(prev)
	b, errB := json.Marshal(next)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

func (e *env) ReadResources() (map[ha.SID]*ha.ResourceConfig, error) {
	return e.n.store.Resources(), nil
}

// errNotMaster refuses a CRM write without the term of a leadership: with
// term 0 the store would take it for an operator's unfenced write.
var errNotMaster = errors.New("the CRM holds no manager lock (raft term): write refused")

func (e *env) SetRequestedState(sid ha.SID, state ha.RequestedState) error {
	if e.term == 0 {
		return fmt.Errorf("set requested state of %s: %w", sid, errNotMaster)
	}
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

// ReadCRMCommands takes the queued commands in one term-fenced entry, or
// none when the replica holds no command: the master's round made the
// replica current with a barrier (AcquireManagerLock), and a command
// queued after it is taken next round, so an idle master's round costs
// no raft entry here.
func (e *env) ReadCRMCommands() ([]string, error) {
	if len(e.n.store.Commands()) == 0 {
		return nil, nil
	}
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

// MigrateGroups implements crm.GroupMigrator: one term-fenced store entry
// that applies only while the configs are still what the master read.
func (e *env) MigrateGroups(m crm.GroupMigration) error {
	if e.term == 0 {
		return fmt.Errorf("write group migration: %w", errNotMaster)
	}
	ctx, cancel := e.ctx()
	defer cancel()
	sm := store.GroupMigration{RulesFrom: string(m.RulesFrom), Rules: string(m.Rules),
		GroupsFrom: string(m.GroupsFrom), Groups: string(m.Groups), GroupIDs: m.GroupIDs}
	for _, r := range m.Resources {
		sm.Resources = append(sm.Resources, store.MigratedService{SID: r.SID, Group: r.Group, Failback: r.Failback})
	}
	if err := e.n.store.MigrateGroups(ctx, e.term, sm); err != nil {
		return fmt.Errorf("write group migration: %w", err)
	}
	return nil
}

// StaticNodeStats and DynamicNodeStats read the usage every agent gossips
// (usage.go); ServiceStats the size configured for the service and, in
// dynamic mode, the usage its node measured (the configured size until
// it is measured).
func (e *env) StaticNodeStats() (map[string]ha.NodeStats, error) {
	return nodeStats(e.n.gossip.Members())
}
func (e *env) DynamicNodeStats() (map[string]ha.NodeStats, error) {
	return nodeStats(e.n.gossip.Members())
}
func (e *env) ServiceStats(sid ha.SID) (ha.ServiceStats, bool) {
	rc := e.n.store.Resources()[sid]
	if rc != nil && e.n.store.Datacenter().CRS.Mode == placement.ModeDynamic {
		if u, ok := e.n.store.MeasuredUsage(rc.Node, sid); ok {
			return serviceStats(rc, &u)
		}
	}
	return serviceStats(rc, nil)
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
