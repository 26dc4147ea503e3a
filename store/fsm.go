package store

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

// state is the replicated cluster state. It is JSON-encoded as is in
// snapshots, so field names are part of the on-disk format.
type state struct {
	// Resources is the resources config with each resource's location.
	Resources map[ha.SID]ha.ResourceConfig `json:"resources,omitempty"`
	// Rules and Groups are the raw section config texts.
	Rules  string `json:"rules,omitempty"`
	Groups string `json:"groups,omitempty"`
	// GroupIDs are the ids of the groups Groups defines, sorted; group
	// references are checked against them.
	GroupIDs []string `json:"group_ids,omitempty"`
	// Datacenter holds the datacenter settings; nil until first written.
	Datacenter *datacenterDoc `json:"datacenter,omitempty"`
	// ManagerStatus is the JSON of the last ha.ManagerStatus written.
	ManagerStatus json.RawMessage `json:"manager_status,omitempty"`
	// ManagerTerm is the term of the last fenced write; a fenced write with
	// a lower term is refused.
	ManagerTerm uint64 `json:"manager_term,omitempty"`
	// LRMStatus is the JSON of each node's last ha.LRMStatus.
	LRMStatus map[string]json.RawMessage `json:"lrm_status,omitempty"`
	// Commands is the CRM command queue, oldest first.
	Commands []string `json:"commands,omitempty"`
	// Locks holds every held lock by name.
	Locks map[string]LockInfo `json:"locks,omitempty"`
	// FenceConfirmed holds, per node, the last fence device confirmation
	// that the node is powered off (see fencing.go); nil until one.
	FenceConfirmed map[string]FenceConfirmation `json:"fence_confirmed,omitempty"`
	// Outbox holds the notifications not yet delivered, oldest first
	// (outbox.go).
	Outbox []OutboxEvent `json:"outbox,omitempty"`
	// ServiceUsage holds each node's measured service usage (usage.go).
	ServiceUsage map[string]NodeServiceUsage `json:"service_usage,omitempty"`
}

// snapshotDoc is the snapshot encoding.
type snapshotDoc struct {
	Version int    `json:"version"`
	State   *state `json:"state"`
	// Applied is the index of the last entry the FSM had applied when
	// the snapshot was taken (fsm.applied); 0 in older snapshots.
	Applied uint64 `json:"applied,omitempty"`
}

// lockHooks lets the store's lock timers follow the FSM. The hooks run on
// the FSM goroutine after the state change, without the FSM's mutex held.
type lockHooks interface {
	// lockRenewed is called for every committed acquisition or renewal.
	lockRenewed(name string)
	// lockReleased is called when a lock is released.
	lockReleased(name string)
	// locksRestored is called after a snapshot restore with the held locks.
	locksRestored(names []string)
}

// fsm applies commands to state. Apply is deterministic: its effect on the
// state depends only on the state, the command and the log entry's index
// and term. Reads from other goroutines take the read lock.
type fsm struct {
	mu     sync.RWMutex
	st     *state
	hooks  lockHooks
	logger *slog.Logger
	// applied is the index of the last command or configuration entry
	// the FSM applied (or of a restored snapshot's). Raft's own
	// AppliedIndex runs ahead of it: raft counts an entry applied once it
	// queued it for the FSM goroutine (see Store.WaitApplied).
	applied atomic.Uint64
	// beforeApply, when set, runs at the start of Apply on the FSM
	// goroutine (tests: a replica that lags behind raft).
	beforeApply atomic.Pointer[func(*raft.Log)]

	// statsMu guards stats, the count and size of the applied commands
	// by operation (ApplyStats).
	statsMu sync.Mutex
	stats   map[string]OpStats

	// ops is the operation table (operationTable), read-only after
	// newFSM.
	ops map[string]operation
}

// OpStats counts the log entries of one operation this node applied.
type OpStats struct {
	// Entries is the number of entries applied.
	Entries uint64
	// Bytes is their total encoded size.
	Bytes uint64
}

// count records one applied entry of op.
func (f *fsm) count(op string, size int) {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	if f.stats == nil {
		f.stats = map[string]OpStats{}
	}
	st := f.stats[op]
	st.Entries++
	st.Bytes += uint64(size)
	f.stats[op] = st
}

// applyStats returns a copy of the per-operation counts.
func (f *fsm) applyStats() map[string]OpStats {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	return maps.Clone(f.stats)
}

func newFSM(hooks lockHooks, logger *slog.Logger) *fsm {
	return &fsm{st: newState(), hooks: hooks, logger: logger, ops: operationTable()}
}

func newState() *state {
	return &state{
		Resources: map[ha.SID]ha.ResourceConfig{},
		LRMStatus: map[string]json.RawMessage{},
		Locks:     map[string]LockInfo{},
	}
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

// StoreConfiguration records that the FSM goroutine reached a
// configuration entry (raft.ConfigurationStore); the state does not
// change.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.applied.Store(index)
}

// refuse builds a refusal result.
func refuse(sentinel error, format string, args ...any) *result {
	err := fmt.Errorf(format+": %w", append(args, sentinel)...)
	return &result{Code: errorCode(sentinel), Msg: err.Error()}
}

// ok builds a success result with value v (nil for none).
func ok(v any) *result {
	if v == nil {
		return &result{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return refuse(ErrInvalid, "encode result")
	}
	return &result{Value: b}
}

// Apply applies one committed log entry and returns a *result.
func (f *fsm) Apply(l *raft.Log) any {
	defer f.applied.Store(l.Index)
	if h := f.beforeApply.Load(); h != nil {
		(*h)(l)
	}
	var cmd command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		f.count("undecodable", len(l.Data))
		f.logger.Error("skip undecodable log entry", "index", l.Index, "err", err)
		return refuse(ErrInvalid, "decode log entry %d", l.Index)
	}
	f.count(cmd.Op, len(l.Data))
	if cmd.V != commandVersion {
		f.logger.Error("skip log entry of unknown version", "index", l.Index, "version", cmd.V)
		return refuse(ErrInvalid, "log entry %d: command version %d, this node knows %d", l.Index, cmd.V, commandVersion)
	}
	if cmd.Term != 0 && cmd.Term != l.Term {
		return refuse(ErrStaleTerm, "%s: written as master of term %d, appended in term %d", cmd.Op, cmd.Term, l.Term)
	}
	f.mu.Lock()
	res, eff := f.apply(l, &cmd)
	f.mu.Unlock()
	if f.hooks != nil {
		if eff.renewed != "" {
			f.hooks.lockRenewed(eff.renewed)
		}
		if eff.released != "" {
			f.hooks.lockReleased(eff.released)
		}
	}
	if w, ok := f.hooks.(applyWatcher); ok {
		w.applied(cmd.Op)
	}
	return res
}

// Snapshot captures the state; raft persists it while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(snapshotDoc{Version: commandVersion, State: f.st, Applied: f.applied.Load()})
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return &fsmSnapshot{data: b}, nil
}

// Restore replaces the state with a snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var doc snapshotDoc
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if doc.Version != commandVersion {
		return fmt.Errorf("decode snapshot: version %d, this node knows %d", doc.Version, commandVersion)
	}
	st := doc.State
	if st == nil {
		st = newState()
	}
	if st.Resources == nil {
		st.Resources = map[ha.SID]ha.ResourceConfig{}
	}
	if st.LRMStatus == nil {
		st.LRMStatus = map[string]json.RawMessage{}
	}
	if st.Locks == nil {
		st.Locks = map[string]LockInfo{}
	}
	f.mu.Lock()
	f.st = st
	names := slices.Sorted(maps.Keys(st.Locks))
	f.mu.Unlock()
	f.applied.Store(doc.Applied)
	if f.hooks != nil {
		f.hooks.locksRestored(names)
	}
	return nil
}

// fsmSnapshot is an encoded state.
type fsmSnapshot struct{ data []byte }

// Persist writes the snapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

// Release does nothing.
func (s *fsmSnapshot) Release() {}

// Read accessors. They return copies; the caller may modify them.

func (f *fsm) managerStatus() (*ha.ManagerStatus, error) {
	f.mu.RLock()
	raw := f.st.ManagerStatus
	f.mu.RUnlock()
	ms := &ha.ManagerStatus{}
	if len(raw) == 0 {
		return ms, nil
	}
	if err := json.Unmarshal(raw, ms); err != nil {
		return nil, fmt.Errorf("decode manager status: %w", err)
	}
	return ms, nil
}

func (f *fsm) lrmStatus(node string) (*ha.LRMStatus, error) {
	f.mu.RLock()
	raw := f.st.LRMStatus[node]
	f.mu.RUnlock()
	st := &ha.LRMStatus{}
	if len(raw) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("decode lrm status of %s: %w", node, err)
	}
	return st, nil
}

func (f *fsm) lrmNodes() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Sorted(maps.Keys(f.st.LRMStatus))
}

func (f *fsm) resources() map[ha.SID]*ha.ResourceConfig {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[ha.SID]*ha.ResourceConfig, len(f.st.Resources))
	for sid, rc := range f.st.Resources {
		c := rc
		c.Spec = slices.Clone(rc.Spec)
		out[sid] = &c
	}
	return out
}

func (f *fsm) text() (rules, groups string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Rules, f.st.Groups
}

func (f *fsm) datacenter() *ha.Datacenter {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.Datacenter == nil {
		return &ha.Datacenter{}
	}
	dc := f.st.Datacenter.Datacenter
	dc.CRS.Set = maps.Clone(f.st.Datacenter.CRSSet)
	return &dc
}

func (f *fsm) commands() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.st.Commands)
}

func (f *fsm) lock(name string) (LockInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	li, held := f.st.Locks[name]
	return li, held
}

func (f *fsm) locks() map[string]LockInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.st.Locks)
}

// checkStealLock is the store's own check of the one rule: a service is
// stolen from a node only by the holder of that node's agent lock, taken
// (not given up: a lock released with services running is never held by
// another node) as the proof that the node fenced itself. The CRM takes
// the lock right before it steals; the FSM checks it again at the steal's
// log position, so no lock change in between can slip through.
func checkStealLock(st *state, c *locationCmd) *result {
	if c.From == "" || c.Holder == "" {
		return refuse(ErrInvalid, "steal %q: source node and lock holder are required (from %q, holder %q)", c.SID, c.From, c.Holder)
	}
	l, held := st.Locks[AgentLock(c.From)]
	switch {
	case !held:
		return refuse(ErrLockHeld, "steal %q from %q for %q: nobody holds %q's agent lock", c.SID, c.From, c.Holder, c.From)
	case l.Released || l.Owner != c.Holder:
		return refuse(ErrLockHeld, "steal %q from %q for %q: %q's agent lock is held by %q (released with services running: %v)",
			c.SID, c.From, c.Holder, c.From, l.Owner, l.Released)
	}
	return nil
}
