package sim

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"haxd/ha"
)

// errCFS is the error of every cluster filesystem access on a node with
// `cfs <node> rw fail` (scenario-format §2.4).
var errCFS = errors.New("cfs connection refused - not mounted?")

func parseRequested(s string) (ha.RequestedState, bool) { return ha.ParseRequestedState(s) }

// epoch is the wall-clock time of virtual time 0.
var epoch = time.Unix(0, 0).UTC()

// env is the ha.Env of one CRM or LRM instance. A new instance is created
// for every daemon start; the clock belongs to the node and survives.
type env struct {
	s      *sim
	node   *simNode
	kind   string // "crm" or "lrm"
	clock  *time.Duration
	logger *slog.Logger
	wd     int // watchdog handle, 0 = none
	work   inlineWorkers
}

var _ ha.Env = (*env)(nil)

func (s *sim) newEnv(n *simNode, kind string) *env {
	clock := &n.crmClock
	if kind == "lrm" {
		clock = &n.lrmClock
	}
	e := &env{s: s, node: n, kind: kind, clock: clock}
	e.logger = slog.New(&daemonHandler{origin: n.name + "/" + kind, clock: clock, emit: s.emit})
	return e
}

func (e *env) NodeName() string     { return e.node.name }
func (e *env) Now() time.Time       { return epoch.Add(*e.clock) }
func (e *env) Logger() *slog.Logger { return e.logger }

func (e *env) Notify(subject, text string) {
	e.logger.Log(context.Background(), LevelEmail, subject+": "+text)
}

// UID returns a deterministic 22-character base64 id from the run's seed
// and a cluster-wide counter.
func (e *env) UID() string {
	e.s.uidCounter++
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(e.s.opts.Seed))
	binary.BigEndian.PutUint64(buf[8:], e.s.uidCounter)
	sum := sha256.Sum256(buf[:])
	return base64.RawStdEncoding.EncodeToString(sum[:16])
}

func (e *env) Quorate() bool { return e.s.quorate(e.node) }

func (e *env) UpdateClusterState() bool { return !e.node.cfsUpdateFail }

func (e *env) NodeInfo() map[string]ha.NodeInfo {
	q := e.s.clusterQuorate()
	out := make(map[string]ha.NodeInfo, len(e.s.nodes))
	for _, n := range e.s.nodes {
		out[n.name] = ha.NodeInfo{Online: q && n.online()}
	}
	return out
}

const managerLock = "ha_manager_lock"

func agentLock(node string) string { return "ha_agent_" + node + "_lock" }

func (e *env) AcquireManagerLock() bool { return e.s.acquireLock(e, managerLock) }
func (e *env) ReleaseManagerLock() bool { return e.s.releaseLock(e, managerLock, false) }

// AcquireAgentLock: the simulator's daemons read the one shared state,
// so a node's view is always current after an acquisition (ha.Env). The
// grant's validity counts from the call, on the daemon's clock.
func (e *env) AcquireAgentLock(node string) (ha.LockGrant, bool) {
	sent := e.Now()
	if !e.s.acquireLock(e, agentLock(node)) {
		return ha.LockGrant{}, false
	}
	var g ha.LockGrant
	if v := e.s.timing.LockValidity; v > 0 && node == e.node.name {
		g.ValidUntil = sent.Add(v)
	}
	return g, true
}
func (e *env) ReleaseAgentLock(node string, running bool) bool {
	return e.s.releaseLock(e, agentLock(node), running)
}

// AgentLockReleasedRunning reports whether node's agent lock is recorded as
// released by node with services running (ha.Env).
func (e *env) AgentLockReleasedRunning(node string) bool {
	l, ok := e.s.locks[agentLock(node)]
	return ok && l.released
}

// FenceNode: the simulator has no fence devices; fencing is the agent
// lock alone, as in PVE's simulator.
func (e *env) FenceNode(string) ha.FenceResult { return ha.FenceResult{Status: ha.FenceNone} }

func (e *env) WatchdogOpen() error {
	if e.wd != 0 {
		if w, ok := e.s.watchdogs[e.wd]; ok {
			w.last = *e.clock
			return nil
		}
	}
	e.s.nextWatchdog++
	e.wd = e.s.nextWatchdog
	e.s.watchdogs[e.wd] = &watchdog{node: e.node.name, last: *e.clock}
	return nil
}

func (e *env) WatchdogUpdate() error {
	w, ok := e.s.watchdogs[e.wd]
	if e.wd == 0 || !ok {
		return fmt.Errorf("watchdog update on %s: no watchdog open", e.node.name)
	}
	w.last = *e.clock
	return nil
}

func (e *env) WatchdogClose() error {
	if e.wd == 0 {
		return nil
	}
	delete(e.s.watchdogs, e.wd)
	e.wd = 0
	return nil
}

func (e *env) cfs() error {
	if e.node.cfsRWFail {
		return errCFS
	}
	return nil
}

func (e *env) ReadManagerStatus() (*ha.ManagerStatus, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	// Shared, not copied: WriteManagerStatus stores a copy that nothing
	// changes afterwards, and neither the crm nor the lrm changes what it
	// read.
	return e.s.managerStatus, nil
}

func (e *env) WriteManagerStatus(ms *ha.ManagerStatus) error {
	if err := e.cfs(); err != nil {
		return err
	}
	e.s.managerStatus = cloneManagerStatus(ms)
	return nil
}

func (e *env) ReadLRMStatus(node string) (*ha.LRMStatus, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	st, ok := e.s.lrmStatus[node]
	if !ok {
		return &ha.LRMStatus{}, nil
	}
	return cloneLRMStatus(st), nil
}

func (e *env) WriteLRMStatus(st *ha.LRMStatus) error {
	if err := e.cfs(); err != nil {
		return err
	}
	e.s.lrmStatus[e.node.name] = cloneLRMStatus(st)
	return nil
}

func (e *env) ReadResources() (map[ha.SID]*ha.ResourceConfig, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	// The configs are shared: the simulator never changes one it handed
	// out (editService), and neither the crm nor the lrm changes them.
	return maps.Clone(e.s.services), nil
}

func (e *env) SetRequestedState(sid ha.SID, state ha.RequestedState) error {
	if err := e.cfs(); err != nil {
		return err
	}
	c := e.s.editService(sid)
	if c == nil {
		return fmt.Errorf("set requested state of %s: no such service", sid)
	}
	c.State = state
	return nil
}

func (e *env) StealService(sid ha.SID, from, to string) error {
	if err := e.cfs(); err != nil {
		return err
	}
	l, held := e.s.locks[agentLock(from)]
	if !held || l.holder != e.node.name || l.released || *e.clock-l.time > e.s.lockTTL {
		e.s.violate(fmt.Errorf("invariant violated: %s/%s moved %s away from %s at %v without holding %s",
			e.node.name, e.kind, sid, from, *e.clock, agentLock(from)))
		return fmt.Errorf("steal %s from %s: agent lock of %s not held", sid, from, from)
	}
	c, ok := e.s.services[sid]
	if !ok {
		return fmt.Errorf("steal %s: no such service", sid)
	}
	if c.Node != from {
		return fmt.Errorf("steal %s from %s: service is on %s", sid, from, c.Node)
	}
	if _, ok := e.s.byName[to]; !ok {
		return fmt.Errorf("steal %s: unknown target node %q", sid, to)
	}
	e.s.editService(sid).Node = to
	return nil
}

func (e *env) ReadRules() ([]byte, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	return slices.Clone(e.s.rules), nil
}

func (e *env) ReadGroups() ([]byte, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	return slices.Clone(e.s.groups), nil
}

func (e *env) ReadDatacenter() (*ha.Datacenter, error) {
	dc := e.s.datacenter
	dc.CRS.Set = maps.Clone(dc.CRS.Set)
	return &dc, nil
}

func (e *env) ReadCRMCommands() ([]string, error) {
	if err := e.cfs(); err != nil {
		return nil, err
	}
	cmds := e.s.crmCommands
	e.s.crmCommands = nil
	return cmds, nil
}

func (e *env) NodeVersion(node string) string {
	if n, ok := e.s.byName[node]; ok {
		return n.version
	}
	return ""
}

// StaticNodeStats returns the capacities exactly as in hardware_status; a
// node without them makes the static scheduler's initialisation fail.
func (e *env) StaticNodeStats() (map[string]ha.NodeStats, error) {
	out := map[string]ha.NodeStats{}
	for _, n := range e.s.nodes {
		if n.maxCPU == nil || n.maxMem == nil {
			return nil, fmt.Errorf("node '%s' has no maxcpu/maxmem in hardware_status", n.name)
		}
		out[n.name] = ha.NodeStats{MaxCPU: *n.maxCPU, MaxMem: *n.maxMem}
	}
	return out, nil
}

// DynamicNodeStats returns capacities (with defaults) and the load of the
// services each node actually runs; overcommitment is logged as hardware.
func (e *env) DynamicNodeStats() (map[string]ha.NodeStats, error) {
	out := map[string]ha.NodeStats{}
	for _, n := range e.s.nodes {
		ns := ha.NodeStats{MaxCPU: defaultMaxCPU, MaxMem: defaultMaxMem}
		if n.maxCPU != nil {
			ns.MaxCPU = *n.maxCPU
		}
		if n.maxMem != nil {
			ns.MaxMem = *n.maxMem
		}
		for _, sid := range slices.Sorted(maps.Keys(n.running)) {
			st, ok := e.s.serviceStats(sid)
			if !ok {
				continue
			}
			if st.CPU > st.MaxCPU {
				e.s.hwlog(slog.LevelWarn, fmt.Sprintf("overcommitted cpu on '%s'", sid))
			}
			if st.Mem > st.MaxMem {
				e.s.hwlog(slog.LevelWarn, fmt.Sprintf("overcommitted mem on '%s'", sid))
			}
			ns.CPU += st.CPU
			ns.Mem += st.Mem
		}
		if ns.CPU > ns.MaxCPU {
			e.s.hwlog(slog.LevelWarn, fmt.Sprintf("overcommitted cpu on '%s'", n.name))
		}
		if ns.Mem > ns.MaxMem {
			e.s.hwlog(slog.LevelWarn, fmt.Sprintf("overcommitted mem on '%s'", n.name))
		}
		out[n.name] = ns
	}
	return out, nil
}

func (e *env) ServiceStats(sid ha.SID) (ha.ServiceStats, bool) { return e.s.serviceStats(sid) }

func (e *env) IsNodeShutdown() (shutdown, reboot bool) {
	if e.node.lrmRestart {
		return false, false
	}
	return e.node.shutdown != "", e.node.shutdown == "reboot"
}

func (e *env) ResourceAgent(typ string) ha.ResourceAgent {
	switch typ {
	case "vm", "ct", "fa":
		return &agent{e: e, typ: typ}
	}
	return nil
}

func (e *env) Workers() ha.Workers { return &e.work }

// inlineWorkers runs every job to completion inside Start (Max() == 0).
type inlineWorkers struct {
	done map[ha.SID]ha.ExitCode
}

func (w *inlineWorkers) Max() int { return 0 }

func (w *inlineWorkers) Start(sid ha.SID, job func(ctx context.Context) ha.ExitCode) {
	code := job(context.Background())
	if w.done == nil {
		w.done = map[ha.SID]ha.ExitCode{}
	}
	w.done[sid] = code
}

func (w *inlineWorkers) Finished() map[ha.SID]ha.ExitCode {
	d := w.done
	w.done = nil
	if d == nil {
		d = map[ha.SID]ha.ExitCode{}
	}
	return d
}

func (w *inlineWorkers) Running() int { return 0 }

func cloneManagerStatus(ms *ha.ManagerStatus) *ha.ManagerStatus {
	if ms == nil {
		return &ha.ManagerStatus{}
	}
	c := *ms
	c.NodeStatus = maps.Clone(ms.NodeStatus)
	if ms.ServiceStatus != nil {
		c.ServiceStatus = make(map[ha.SID]*ha.ServiceStatus, len(ms.ServiceStatus))
		for sid, sd := range ms.ServiceStatus {
			c.ServiceStatus[sid] = sd.Clone()
		}
	}
	if ms.NodeRequest != nil {
		c.NodeRequest = make(map[string]*ha.NodeRequest, len(ms.NodeRequest))
		for n, r := range ms.NodeRequest {
			rr := *r
			c.NodeRequest[n] = &rr
		}
	}
	if ms.Disarm != nil {
		d := *ms.Disarm
		c.Disarm = &d
	}
	return &c
}

func cloneLRMStatus(st *ha.LRMStatus) *ha.LRMStatus {
	if st == nil {
		return &ha.LRMStatus{}
	}
	c := *st
	c.Results = maps.Clone(st.Results)
	return &c
}
