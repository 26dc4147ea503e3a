package crm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"haxd/ha"
)

// fakeEnv is a map-backed ha.Env with a settable clock. It records every
// log line as "<level> <message>" (PVE level names cut to 4 characters) and
// every notification as "<subject>: <text>".
type fakeEnv struct {
	// stealAnswerLost makes that many steals commit and then fail, as a
	// store write whose answer is lost does.
	stealAnswerLost int
	node            string
	now             time.Time
	logs            []string
	uid             int
	quorate         bool
	clusterOK       bool
	members         map[string]ha.NodeInfo

	managerLock bool // whether AcquireManagerLock succeeds
	agentLock   map[string]bool
	// releasedRunning marks the agent locks their node released with
	// services running.
	releasedRunning map[string]bool
	agentCalls      []string
	released        int
	// fence is what FenceNode reports per node; fenceCalls records the
	// calls, and "lock N" in calls records AcquireAgentLock after them.
	fence      map[string]ha.FenceResult
	fenceCalls []string

	wdOpen            bool
	wdOpens, wdCloses int
	ms                *ha.ManagerStatus
	msWrites          int
	lrm               map[string]*ha.LRMStatus
	resources         map[ha.SID]*ha.ResourceConfig
	dc                *ha.Datacenter
	cmds              []string
	agents            map[string]ha.ResourceAgent
	steals            []string
	requested         []string
	readErr           error
	logger            *slog.Logger
	versions          map[string]string
	rules, groups     []byte
	migrated          []string
	failMigration     error
}

func newFakeEnv(node string, nodes ...string) *fakeEnv {
	e := &fakeEnv{
		node: node, now: time.Unix(1000, 0), quorate: true, clusterOK: true,
		members: map[string]ha.NodeInfo{}, managerLock: true, agentLock: map[string]bool{}, releasedRunning: map[string]bool{},
		ms: &ha.ManagerStatus{}, lrm: map[string]*ha.LRMStatus{},
		resources: map[ha.SID]*ha.ResourceConfig{}, dc: &ha.Datacenter{},
		agents: map[string]ha.ResourceAgent{"vm": &fakeAgent{live: true}, "ct": &fakeAgent{}},
	}
	for _, n := range nodes {
		e.members[n] = ha.NodeInfo{Online: true}
	}
	e.logger = slog.New(captureHandler{e})
	return e
}

type captureHandler struct{ e *fakeEnv }

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	lvl := "info"
	switch {
	case r.Level >= slog.LevelError:
		lvl = "err"
	case r.Level >= slog.LevelWarn:
		lvl = "warn"
	case r.Level >= ha.LevelNotice:
		lvl = "noti"
	}
	h.e.logs = append(h.e.logs, lvl+" "+r.Message)
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }

func (e *fakeEnv) NodeName() string            { return e.node }
func (e *fakeEnv) Now() time.Time              { return e.now }
func (e *fakeEnv) Logger() *slog.Logger        { return e.logger }
func (e *fakeEnv) Notify(subject, text string) { e.logs = append(e.logs, "emai "+subject+": "+text) }
func (e *fakeEnv) UID() string                 { e.uid++; return fmt.Sprintf("uid%d", e.uid) }
func (e *fakeEnv) Quorate() bool               { return e.quorate }
func (e *fakeEnv) UpdateClusterState() bool    { return e.clusterOK }
func (e *fakeEnv) NodeInfo() map[string]ha.NodeInfo {
	if !e.quorate {
		out := map[string]ha.NodeInfo{}
		for n := range e.members {
			out[n] = ha.NodeInfo{}
		}
		return out
	}
	return maps.Clone(e.members)
}
func (e *fakeEnv) AcquireManagerLock() bool { return e.quorate && e.managerLock }
func (e *fakeEnv) ReleaseManagerLock() bool { e.released++; return true }
func (e *fakeEnv) AcquireAgentLock(node string) (ha.LockGrant, bool) {
	e.agentCalls = append(e.agentCalls, node)
	e.fenceCalls = append(e.fenceCalls, "lock "+node)
	if e.releasedRunning[node] && node != e.node {
		// The lock's own rule: released with services running, it is
		// refused to everyone but its node.
		return ha.LockGrant{}, false
	}
	return ha.LockGrant{}, e.agentLock[node]
}
func (e *fakeEnv) FenceNode(node string) ha.FenceResult {
	e.fenceCalls = append(e.fenceCalls, "fence "+node)
	return e.fence[node]
}
func (e *fakeEnv) ReleaseAgentLock(string, bool) bool { return true }
func (e *fakeEnv) AgentLockReleasedRunning(node string) bool {
	return e.releasedRunning[node]
}
func (e *fakeEnv) WatchdogOpen() error   { e.wdOpen = true; e.wdOpens++; return nil }
func (e *fakeEnv) WatchdogUpdate() error { return nil }
func (e *fakeEnv) WatchdogClose() error  { e.wdOpen = false; e.wdCloses++; return nil }
func (e *fakeEnv) ReadManagerStatus() (*ha.ManagerStatus, error) {
	if e.readErr != nil {
		return nil, e.readErr
	}
	return e.ms, nil
}
func (e *fakeEnv) WriteManagerStatus(ms *ha.ManagerStatus) error {
	e.ms = ms
	e.msWrites++
	return nil
}
func (e *fakeEnv) ReadLRMStatus(node string) (*ha.LRMStatus, error) {
	if e.readErr != nil {
		return nil, e.readErr
	}
	if st := e.lrm[node]; st != nil {
		return st, nil
	}
	return &ha.LRMStatus{}, nil
}
func (e *fakeEnv) WriteLRMStatus(*ha.LRMStatus) error { return nil }
func (e *fakeEnv) ReadResources() (map[ha.SID]*ha.ResourceConfig, error) {
	return e.resources, nil
}
func (e *fakeEnv) SetRequestedState(sid ha.SID, st ha.RequestedState) error {
	e.requested = append(e.requested, fmt.Sprintf("%s=%s", sid, st))
	if c := e.resources[sid]; c != nil {
		c.State = st
	}
	return nil
}
func (e *fakeEnv) StealService(sid ha.SID, from, to string) error {
	e.steals = append(e.steals, fmt.Sprintf("%s %s->%s", sid, from, to))
	if c := e.resources[sid]; c != nil {
		if c.Node != from {
			return fmt.Errorf("steal %s from %s: it is on %s: conflicting state", sid, from, c.Node)
		}
		c.Node = to
	}
	if e.stealAnswerLost > 0 {
		e.stealAnswerLost--
		return fmt.Errorf("steal %s: outcome unknown", sid)
	}
	return nil
}
func (e *fakeEnv) ReadRules() ([]byte, error)              { return e.rules, nil }
func (e *fakeEnv) ReadGroups() ([]byte, error)             { return e.groups, nil }
func (e *fakeEnv) ReadDatacenter() (*ha.Datacenter, error) { return e.dc, nil }
func (e *fakeEnv) ReadCRMCommands() ([]string, error) {
	c := e.cmds
	e.cmds = nil
	return c, nil
}
func (e *fakeEnv) NodeVersion(node string) string                     { return e.versions[node] }
func (e *fakeEnv) StaticNodeStats() (map[string]ha.NodeStats, error)  { return nil, nil }
func (e *fakeEnv) DynamicNodeStats() (map[string]ha.NodeStats, error) { return nil, nil }
func (e *fakeEnv) ServiceStats(ha.SID) (ha.ServiceStats, bool)        { return ha.ServiceStats{}, false }
func (e *fakeEnv) IsNodeShutdown() (bool, bool)                       { return false, false }
func (e *fakeEnv) ResourceAgent(typ string) ha.ResourceAgent          { return e.agents[typ] }
func (e *fakeEnv) Workers() ha.Workers                                { return nil }

// MigrateGroups implements GroupMigrator with the store's compare-and-set
// semantics; failMigration makes it fail.
func (e *fakeEnv) MigrateGroups(m GroupMigration) error {
	if e.failMigration != nil {
		return e.failMigration
	}
	if !bytes.Equal(e.rules, m.RulesFrom) || !bytes.Equal(e.groups, m.GroupsFrom) {
		return fmt.Errorf("configs changed since read")
	}
	for _, r := range m.Resources {
		if c := e.resources[r.SID]; c == nil || c.Group != r.Group {
			return fmt.Errorf("group of %s changed since read", r.SID)
		}
	}
	for _, r := range m.Resources {
		e.resources[r.SID].Group = ""
		e.resources[r.SID].Failback = r.Failback
	}
	e.rules, e.groups = m.Rules, m.Groups
	e.migrated = append(e.migrated, "rules", "resources", "groups")
	return nil
}

// fakeAgent is a resource agent whose only behaviour the CRM uses is
// LiveMigratable and RemoveLocks.
type fakeAgent struct {
	live  bool
	locks map[ha.SID]string
}

func (a *fakeAgent) Start(context.Context, ha.SID) error                 { return nil }
func (a *fakeAgent) Stop(context.Context, ha.SID, *int) error            { return nil }
func (a *fakeAgent) Running(context.Context, ha.SID) (bool, error)       { return false, nil }
func (a *fakeAgent) Migrate(context.Context, ha.SID, string, bool) error { return nil }
func (a *fakeAgent) LiveMigratable() bool                                { return a.live }
func (a *fakeAgent) RemoveLocks(sid ha.SID, names []string) string {
	if l := a.locks[sid]; l != "" && slices.Contains(names, l) {
		delete(a.locks, sid)
		return l
	}
	return ""
}

// addService configures sid on node with the simulator defaults.
func (e *fakeEnv) addService(sid ha.SID, node string, st ha.RequestedState) *ha.ResourceConfig {
	c := ha.DefaultResourceConfig(sid, node)
	c.State = st
	e.resources[sid] = &c
	return &c
}

// tick advances the clock by one PVE CRM round.
func (e *fakeEnv) tick() { e.now = e.now.Add(10 * time.Second) }

// takeLogs returns and forgets the logged lines.
func (e *fakeEnv) takeLogs() []string {
	l := e.logs
	e.logs = nil
	return l
}

// sd returns the written status of sid.
func (e *fakeEnv) sd(t *testing.T, sid ha.SID) *ha.ServiceStatus {
	t.Helper()
	sd := e.ms.ServiceStatus[sid]
	if sd == nil {
		t.Fatalf("service %s not in the written manager status", sid)
	}
	return sd
}

// result records an LRM result for sid's current UID on the LRM of sid's
// node, as if that LRM executed the current request with code.
func (e *fakeEnv) result(t *testing.T, sid ha.SID, code ha.ExitCode) {
	t.Helper()
	sd := e.sd(t, sid)
	st := e.lrm[sd.Node]
	if st == nil {
		st = &ha.LRMStatus{Mode: ha.ModeActive}
		e.lrm[sd.Node] = st
	}
	if st.Results == nil {
		st.Results = map[string]ha.LRMResult{}
	}
	st.Results[sd.UID] = ha.LRMResult{SID: sid, State: sd.State, ExitCode: code}
	if code == ha.ExitSuccess && (sd.State == ha.StateMigrate || sd.State == ha.StateRelocate) {
		e.resources[sid].Node = sd.Target
	}
}

// lrmDo plays an LRM that succeeds at every pending request.
func (e *fakeEnv) lrmDo(t *testing.T) {
	t.Helper()
	for _, sid := range slices.Sorted(maps.Keys(e.ms.ServiceStatus)) {
		switch e.ms.ServiceStatus[sid].State {
		case ha.StateStarted, ha.StateRequestStop, ha.StateMigrate, ha.StateRelocate, ha.StateRequestStartBalance:
			if st := e.lrm[e.ms.ServiceStatus[sid].Node]; st != nil && st.Results != nil {
				if _, done := st.Results[e.ms.ServiceStatus[sid].UID]; done {
					continue
				}
			}
			e.result(t, sid, ha.ExitSuccess)
		}
	}
}

func (e *fakeEnv) setMode(node string, mode ha.LRMMode) {
	st := e.lrm[node]
	if st == nil {
		st = &ha.LRMStatus{}
		e.lrm[node] = st
	}
	st.Mode = mode
}

// containsInOrder reports whether want appears in got as a subsequence.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func assertLogs(t *testing.T, got, want []string) {
	t.Helper()
	if !containsInOrder(got, want) {
		t.Errorf("log lines missing or out of order\nwant (in order):\n  %s\ngot:\n  %s", strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}

func assertNoLog(t *testing.T, got []string, sub string) {
	t.Helper()
	for _, g := range got {
		if strings.Contains(g, sub) {
			t.Errorf("unexpected log line %q", g)
		}
	}
}
