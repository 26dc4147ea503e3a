package lrm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"haxd/ha"
)

// fakeEnv is a map-backed ha.Env for one LRM on node "node1": a settable
// clock, a single agent lock, a watchdog that counts opens, feeds and
// closes, a fake resource agent and fake workers.
type fakeEnv struct {
	node string
	now  time.Time
	logs *logSink

	quorate      bool
	clusterState bool

	// lockHolder is the node holding the agent lock ("" = free).
	lockHolder string
	// validity is the lock validity the env grants (LockGrant.ValidUntil
	// = the clock at the call plus validity); 0 grants none.
	validity time.Duration
	// committed, when set, is the manager status as committed in the
	// store, and ms is this node's replica, which lags behind it until a
	// read barrier (UpdateClusterState) or an acquisition of the lock
	// catches it up (the ha.Env contract of AcquireAgentLock).
	committed *ha.ManagerStatus
	// beforeGrant, when set, runs in AcquireAgentLock before the lock is
	// granted: writes committed before the acquisition.
	beforeGrant func()
	// acquireDelay advances the clock during each acquisition.
	acquireDelay time.Duration
	acquires     int
	releases     int
	// releaseRunning records the running flag of every release, in order.
	releaseRunning []bool

	wdOpen bool
	// releaseFails makes ReleaseAgentLock fail with the lock kept (an
	// unreachable store, an unknown outcome).
	releaseFails bool
	wdOpens      int
	wdUpdates    int
	wdCloses     int

	ms      *ha.ManagerStatus
	msErr   error
	status  *ha.LRMStatus
	writes  int
	wErr    error
	dc      *ha.Datacenter
	res     map[ha.SID]*ha.ResourceConfig
	resErr  error
	down    bool // IsNodeShutdown: shutdown
	reboot  bool // IsNodeShutdown: reboot
	agent   *fakeAgent
	workers *fakeWorkers
}

func newFakeEnv() *fakeEnv {
	e := &fakeEnv{
		node:         "node1",
		now:          time.Unix(1000, 0),
		logs:         &logSink{},
		quorate:      true,
		clusterState: true,
		ms:           &ha.ManagerStatus{NodeStatus: map[string]ha.NodeState{"node1": ha.NodeOnline}, ServiceStatus: map[ha.SID]*ha.ServiceStatus{}},
		dc:           &ha.Datacenter{},
		res:          map[ha.SID]*ha.ResourceConfig{},
		workers:      &fakeWorkers{},
	}
	e.agent = &fakeAgent{env: e, running: map[ha.SID]bool{}, failStarts: map[ha.SID]int{}, unstoppable: map[ha.SID]bool{}, failMigrate: map[ha.SID]bool{}}
	return e
}

// addService configures sid on node with requested started and sets its
// manager-status entry.
func (e *fakeEnv) addService(sid ha.SID, node string, state ha.ServiceState, uid string) {
	cfg := ha.DefaultResourceConfig(sid, node)
	e.res[sid] = &cfg
	e.ms.ServiceStatus[sid] = &ha.ServiceStatus{State: state, Node: node, UID: uid}
}

// setService replaces sid's manager-status entry.
func (e *fakeEnv) setService(sid ha.SID, sd ha.ServiceStatus) {
	e.ms.ServiceStatus[sid] = &sd
}

func (e *fakeEnv) NodeName() string            { return e.node }
func (e *fakeEnv) Now() time.Time              { return e.now }
func (e *fakeEnv) Logger() *slog.Logger        { return slog.New(e.logs) }
func (e *fakeEnv) Notify(subject, text string) { e.logs.add("emai", subject+": "+text) }
func (e *fakeEnv) UID() string                 { return "uid" }
func (e *fakeEnv) Quorate() bool               { return e.quorate }
func (e *fakeEnv) UpdateClusterState() bool {
	if e.clusterState {
		e.catchUp()
	}
	return e.clusterState
}

// catchUp brings the replica up to the committed state.
func (e *fakeEnv) catchUp() {
	if e.committed != nil {
		e.ms = cloneStatus(e.committed)
	}
}

// cloneStatus copies ms deeply enough for the fake: the service entries.
func cloneStatus(ms *ha.ManagerStatus) *ha.ManagerStatus {
	c := *ms
	c.NodeStatus = maps.Clone(ms.NodeStatus)
	c.ServiceStatus = map[ha.SID]*ha.ServiceStatus{}
	for sid, sd := range ms.ServiceStatus {
		cp := *sd
		c.ServiceStatus[sid] = &cp
	}
	return &c
}
func (e *fakeEnv) NodeInfo() map[string]ha.NodeInfo {
	return map[string]ha.NodeInfo{e.node: {Online: e.quorate}}
}
func (e *fakeEnv) AcquireManagerLock() bool { return false }
func (e *fakeEnv) ReleaseManagerLock() bool { return false }

func (e *fakeEnv) AcquireAgentLock(node string) (ha.LockGrant, bool) {
	e.acquires++
	sent := e.now
	e.now = e.now.Add(e.acquireDelay)
	if e.beforeGrant != nil {
		e.beforeGrant()
	}
	if !e.quorate || (e.lockHolder != "" && e.lockHolder != node) {
		return ha.LockGrant{}, false
	}
	if e.lockHolder != node {
		// An acquisition: the view shows everything committed before it.
		e.catchUp()
	}
	e.lockHolder = node
	var g ha.LockGrant
	if e.validity > 0 {
		g.ValidUntil = sent.Add(e.validity)
	}
	return g, true
}

func (e *fakeEnv) FenceNode(string) ha.FenceResult { return ha.FenceResult{} }

func (e *fakeEnv) ReleaseAgentLock(node string, running bool) bool {
	e.releases++
	e.releaseRunning = append(e.releaseRunning, running)
	if e.lockHolder != node || e.releaseFails {
		return false
	}
	e.lockHolder = ""
	return true
}

func (e *fakeEnv) AgentLockReleasedRunning(node string) bool {
	n := len(e.releaseRunning)
	return e.lockHolder == "" && n > 0 && e.releaseRunning[n-1]
}

func (e *fakeEnv) WatchdogOpen() error {
	if e.wdOpen {
		return errors.New("watchdog already open")
	}
	e.wdOpen = true
	e.wdOpens++
	return nil
}

func (e *fakeEnv) WatchdogUpdate() error {
	if !e.wdOpen {
		return errors.New("watchdog not open")
	}
	e.wdUpdates++
	return nil
}

func (e *fakeEnv) WatchdogClose() error {
	if !e.wdOpen {
		return errors.New("watchdog not open")
	}
	e.wdOpen = false
	e.wdCloses++
	return nil
}

func (e *fakeEnv) ReadManagerStatus() (*ha.ManagerStatus, error) {
	if e.msErr != nil {
		return nil, e.msErr
	}
	// Hand out a deep copy so the LRM cannot depend on later edits.
	c := *e.ms
	c.ServiceStatus = map[ha.SID]*ha.ServiceStatus{}
	for sid, sd := range e.ms.ServiceStatus {
		c.ServiceStatus[sid] = sd.Clone()
	}
	c.NodeStatus = maps.Clone(e.ms.NodeStatus)
	c.NodeRequest = maps.Clone(e.ms.NodeRequest)
	return &c, nil
}

func (e *fakeEnv) WriteManagerStatus(*ha.ManagerStatus) error { return errors.New("not the master") }

func (e *fakeEnv) ReadLRMStatus(node string) (*ha.LRMStatus, error) {
	if e.status == nil || node != e.node {
		return &ha.LRMStatus{}, nil
	}
	return e.status, nil
}

func (e *fakeEnv) WriteLRMStatus(st *ha.LRMStatus) error {
	if e.wErr != nil {
		return e.wErr
	}
	e.writes++
	e.status = st
	return nil
}

func (e *fakeEnv) ReadResources() (map[ha.SID]*ha.ResourceConfig, error) {
	if e.resErr != nil {
		return nil, e.resErr
	}
	out := map[ha.SID]*ha.ResourceConfig{}
	for sid, c := range e.res {
		cc := *c
		out[sid] = &cc
	}
	return out, nil
}

func (e *fakeEnv) SetRequestedState(ha.SID, ha.RequestedState) error { return nil }
func (e *fakeEnv) StealService(ha.SID, string, string) error         { return nil }
func (e *fakeEnv) ReadRules() ([]byte, error)                        { return nil, nil }
func (e *fakeEnv) ReadGroups() ([]byte, error)                       { return nil, nil }
func (e *fakeEnv) ReadDatacenter() (*ha.Datacenter, error)           { return e.dc, nil }
func (e *fakeEnv) ReadCRMCommands() ([]string, error)                { return nil, nil }
func (e *fakeEnv) NodeVersion(string) string                         { return "" }
func (e *fakeEnv) StaticNodeStats() (map[string]ha.NodeStats, error) {
	return nil, nil
}
func (e *fakeEnv) DynamicNodeStats() (map[string]ha.NodeStats, error) {
	return nil, nil
}
func (e *fakeEnv) ServiceStats(ha.SID) (ha.ServiceStats, bool) { return ha.ServiceStats{}, false }
func (e *fakeEnv) IsNodeShutdown() (bool, bool)                { return e.down, e.reboot }

func (e *fakeEnv) ResourceAgent(typ string) ha.ResourceAgent {
	if typ == "vm" || typ == "ct" {
		return e.agent
	}
	return nil
}

func (e *fakeEnv) Workers() ha.Workers { return e.workers }

// fakeAgent simulates resources on the fake env's node: a running flag per
// SID, injectable start, stop and migrate failures.
type fakeAgent struct {
	env         *fakeEnv
	running     map[ha.SID]bool
	failStarts  map[ha.SID]int // remaining failing start attempts
	unstoppable map[ha.SID]bool
	failMigrate map[ha.SID]bool
	startErr    error // returned by every Start, which then does nothing
	calls       []string
}

func (a *fakeAgent) Start(_ context.Context, sid ha.SID) error {
	a.calls = append(a.calls, "start "+string(sid))
	if a.startErr != nil {
		return a.startErr
	}
	if a.failStarts[sid] > 0 {
		a.failStarts[sid]--
		return nil // a failed start does nothing
	}
	a.running[sid] = true
	return nil
}

func (a *fakeAgent) Stop(_ context.Context, sid ha.SID, timeout *int) error {
	call := "stop " + string(sid)
	if timeout != nil {
		call += fmt.Sprintf(" timeout=%d", *timeout)
	}
	a.calls = append(a.calls, call)
	if a.unstoppable[sid] {
		return errors.New("refused")
	}
	a.running[sid] = false
	return nil
}

func (a *fakeAgent) Running(_ context.Context, sid ha.SID) (bool, error) {
	return a.running[sid], nil
}

func (a *fakeAgent) Migrate(_ context.Context, sid ha.SID, target string, online bool) error {
	a.calls = append(a.calls, fmt.Sprintf("migrate %s %s online=%v", sid, target, online))
	if a.failMigrate[sid] {
		return errors.New("migration refused")
	}
	a.running[sid] = false
	a.env.res[sid].Node = target
	return nil
}

func (a *fakeAgent) LiveMigratable() bool { return true }

func (a *fakeAgent) RemoveLocks(ha.SID, []string) string { return "" }

// fakeWorkers runs jobs inline when max is 0. Otherwise it keeps them
// pending until the test calls complete, which runs them in SID order.
type fakeWorkers struct {
	max      int
	pending  map[ha.SID]func(context.Context) ha.ExitCode
	started  []ha.SID
	finished map[ha.SID]ha.ExitCode
}

func (w *fakeWorkers) Max() int { return w.max }

func (w *fakeWorkers) Start(sid ha.SID, job func(context.Context) ha.ExitCode) {
	w.started = append(w.started, sid)
	if w.finished == nil {
		w.finished = map[ha.SID]ha.ExitCode{}
	}
	if w.max == 0 {
		w.finished[sid] = job(context.Background())
		return
	}
	if w.pending == nil {
		w.pending = map[ha.SID]func(context.Context) ha.ExitCode{}
	}
	w.pending[sid] = job
}

// complete runs the pending jobs.
func (w *fakeWorkers) complete() {
	if w.finished == nil {
		w.finished = map[ha.SID]ha.ExitCode{}
	}
	for _, sid := range slices.Sorted(maps.Keys(w.pending)) {
		w.finished[sid] = w.pending[sid](context.Background())
		delete(w.pending, sid)
	}
}

func (w *fakeWorkers) Finished() map[ha.SID]ha.ExitCode {
	f := w.finished
	w.finished = nil
	return f
}

func (w *fakeWorkers) Running() int { return len(w.pending) }

// logSink is a slog.Handler that records "<level> <message>" lines, with
// PVE level names cut to four characters; an "err" attribute is appended
// as " err=<value>", other attributes are ignored.
type logSink struct {
	lines []string
}

func (s *logSink) add(level, msg string) { s.lines = append(s.lines, level+" "+msg) }

// take returns and forgets the recorded lines.
func (s *logSink) take() []string {
	l := s.lines
	s.lines = nil
	return l
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	level := "info"
	switch {
	case r.Level >= slog.LevelError:
		level = "err"
	case r.Level >= slog.LevelWarn:
		level = "warn"
	case r.Level >= ha.LevelNotice:
		level = "noti"
	case r.Level < slog.LevelInfo:
		return nil
	}
	msg := strings.TrimSuffix(r.Message, "\n")
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += " err=" + a.Value.String()
		}
		return true
	})
	s.add(level, msg)
	return nil
}

func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }
