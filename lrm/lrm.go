package lrm

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"haxd/ha"
)

// Options configures an LRM.
type Options struct {
	// Timing is the timing profile. The LRM uses LRMIdleRounds,
	// LRMRestartGiveUp, LockValidity and, for Interval, LRMRound and
	// LRMMaintenanceRound. The zero value means ha.PVETiming(); a zero
	// LRMIdleRounds is read as 1.
	Timing ha.Timing
	// StatusWritten is the "LRM status written once" gate of ha-semantics
	// §4.3 step 1. The simulator passes one flag shared by all LRMs of a run
	// (a PVE simulator quirk); the real agent passes a fresh one. Nil means
	// a fresh private flag.
	StatusWritten *bool
}

// LRM is the local resource manager daemon of one node. It is not safe for
// concurrent use: the caller runs Step and RequestShutdown from one
// goroutine.
type LRM struct {
	env           ha.Env
	log           *slog.Logger
	node          string
	timing        ha.Timing
	statusWritten *bool

	state        ha.LRMState
	stateChanged time.Time
	mode         ha.LRMMode

	// services and nodeState are the service view (§4.2): the last
	// successfully read manager status.
	services  map[ha.SID]*ha.ServiceStatus
	nodeState ha.NodeState
	// disarmed reports whether the manager status has disarm set; unlike
	// the mode it is refreshed during a shutdown too.
	disarmed bool

	// clusterStateOK is the result of this round's UpdateClusterState.
	clusterStateOK bool

	// watchdogOpen reports whether this LRM holds an open watchdog handle.
	watchdogOpen bool
	// lockHeld reports whether the last acquisition succeeded and the lock
	// was neither released nor given up since; lockValidUntil is when it
	// stops being valid (ha.LockGrant.ValidUntil; only used when
	// Timing.LockValidity > 0).
	lockHeld       bool
	lockValidUntil time.Time

	shutdownRequested bool
	shutdownErrors    int
	// shutdownStopped marks the services a node-shutdown stop job stopped
	// successfully (servicesMayRun).
	shutdownStopped map[ha.SID]bool

	idleRounds int

	// jobs holds the queued and running resource actions, one per SID.
	jobs map[ha.SID]*job
	// results maps request UIDs to their outcome, published in the LRM
	// status; pruneResults is set when a job finished since the results of
	// stale requests were last dropped (dropStaleResults).
	results      map[string]ha.LRMResult
	pruneResults bool
	// restartTries counts failed starts per SID (§7.1).
	restartTries map[ha.SID]int
}

// New creates the LRM daemon of env's node; logs
// "status change startup => wait_for_agent_lock".
func New(env ha.Env, opts Options) *LRM {
	written := opts.StatusWritten
	if written == nil {
		written = new(bool)
	}
	timing := opts.Timing
	if timing == (ha.Timing{}) {
		timing = ha.PVETiming()
	}
	if timing.LRMIdleRounds < 1 {
		timing.LRMIdleRounds = 1
	}
	l := &LRM{
		env:             env,
		log:             env.Logger(),
		node:            env.NodeName(),
		timing:          timing,
		statusWritten:   written,
		state:           ha.LRMStartup,
		mode:            ha.ModeActive,
		nodeState:       ha.NodeUnknown,
		jobs:            map[ha.SID]*job{},
		results:         map[string]ha.LRMResult{},
		restartTries:    map[ha.SID]int{},
		shutdownStopped: map[ha.SID]bool{},
	}
	l.setState(ha.LRMWaitForAgentLock)
	return l
}

// State returns the daemon state.
func (l *LRM) State() ha.LRMState { return l.state }

// Mode returns the current mode.
func (l *LRM) Mode() ha.LRMMode { return l.mode }

// Interval returns how long the caller should wait between the start of
// this round and the next one: Timing.LRMRound while active, otherwise
// Timing.LRMMaintenanceRound (the maintenance round and the sleep of an
// idle or lock-less LRM, ha-semantics §2).
func (l *LRM) Interval() time.Duration {
	if l.state == ha.LRMActive {
		return l.timing.LRMRound
	}
	return l.timing.LRMMaintenanceRound
}

// Step runs one iteration (§4.3-§4.5, §4.9). It returns false when the
// daemon exits (after a shutdown request, or the maintenance-read-failure
// quirk of scenario-format §4.4: in state maintenance a failed read of the
// manager status ends the daemon, as upstream does).
func (l *LRM) Step() bool {
	l.clusterStateOK = l.env.UpdateClusterState()

	if !*l.statusWritten {
		if !l.writeStatus() {
			return !l.shutdownRequested
		}
		*l.statusWritten = true
	}

	l.updateServiceStatus()
	l.transition(l.fenceRequested())
	return l.work()
}

// transition evaluates the state transitions of §4.4.
func (l *LRM) transition(fence bool) {
	switch l.state {
	case ha.LRMWaitForAgentLock:
		// Never take the lock while disarmed. A shutdown request replaces
		// mode disarm (by restart or shutdown), so check the manager
		// status too: otherwise a disarmed LRM with active services (ignore
		// mode) would take its lock on shutdown and wait forever for a
		// freeze the disarmed CRM never does. The spec (§4.4) only names
		// the mode; this extends it to the shutdown case, where the LRM now
		// exits at once without touching the services.
		if l.mode == ha.ModeDisarm || (l.shutdownRequested && l.disarmed) {
			return
		}
		if !fence && l.activeServiceCount() > 0 && l.env.Quorate() && l.acquireLock() {
			l.setState(ha.LRMActive)
		}

	case ha.LRMLostAgentLock:
		if !fence && l.env.Quorate() && l.acquireLock() {
			l.setState(ha.LRMActive)
		}

	case ha.LRMActive:
		switch {
		case fence:
			l.log.Error("node needs to be fenced - releasing agent_lock")
			l.loseLock()
		case l.lockLapsed() || !l.acquireLock():
			l.loseLock()
		case l.mode == ha.ModeMaintenance:
			l.setState(ha.LRMMaintenance)
		case l.mode == ha.ModeDisarm && l.runWorkers() == 0:
			l.log.Info("HA disarm requested, releasing agent lock and watchdog")
			if l.disarm() {
				l.setState(ha.LRMWaitForAgentLock)
			}
		case !l.hasConfiguredService() && l.runWorkers() == 0:
			l.idleRounds++
			if l.idleRounds > l.timing.LRMIdleRounds {
				l.log.Info(fmt.Sprintf("node had no service configured for %d rounds, going idle.", l.timing.LRMIdleRounds))
				if l.disarm() {
					l.setState(ha.LRMWaitForAgentLock)
					l.idleRounds = 0
				}
			}
		default:
			l.idleRounds = 0
		}

	case ha.LRMMaintenance:
		switch {
		case fence:
			l.log.Error("node needs to be fenced during maintenance mode - releasing agent_lock")
			l.loseLock()
		case l.mode == ha.ModeDisarm && l.activeServiceCount() == 0 && l.runWorkers() == 0:
			l.log.Info("HA disarm requested during maintenance, releasing agent lock and watchdog")
			if l.disarm() {
				l.setState(ha.LRMWaitForAgentLock)
			}
		case l.activeServiceCount() > 0 || l.runWorkers() > 0:
			// Keep lock and watchdog while services or workers remain.
			if l.lockLapsed() || !l.acquireLock() {
				l.loseLock()
			}
		case l.mode != ha.ModeMaintenance:
			// Empty and no longer requested: back to active.
			if l.acquireLock() {
				l.setState(ha.LRMActive)
			} else {
				l.loseLock()
			}
		}
	}
}

// work does the work of the current state (§4.5, §4.9) and reports whether
// the daemon keeps running.
func (l *LRM) work() bool {
	switch l.state {
	case ha.LRMWaitForAgentLock:
		if l.shutdownRequested {
			return false
		}
		l.writeStatus()
		return true

	case ha.LRMActive:
		exit := false
		if l.updateServiceStatus() {
			switch {
			case l.shutdownRequested:
				exit = l.shutdownRound()
			case !l.clusterStateOK:
				l.log.Log(context.Background(), ha.LevelNotice, "temporary inconsistent cluster state (cfs restart?), skip round")
			default:
				l.manageResources()
			}
		}
		l.writeStatus()
		return !exit

	case ha.LRMLostAgentLock:
		// The watchdog stays open and unfed: the node resets unless the
		// lock comes back in time. Services are not touched here.
		if !l.shutdownRequested {
			return true
		}
		n := l.activeServiceCount()
		if n == 0 {
			// Nothing may run any more: safe to disarm the watchdog.
			l.closeWatchdog()
			return false
		}
		l.log.Error(fmt.Sprintf("got shutdown request in state 'lost_agent_lock' - detected %d running services", n))
		if l.mode == ha.ModeRestart && l.env.Now().Sub(l.stateChanged) > l.timing.LRMRestartGiveUp {
			l.log.Error(fmt.Sprintf("lost agent lock and restart request for over %d seconds - giving up!", int(l.timing.LRMRestartGiveUp/time.Second)))
			return false
		}
		return true

	case ha.LRMMaintenance:
		if !l.updateServiceStatus() {
			// Upstream quirk (scenario-format §4.4): the iteration ends with
			// a false value, which ends the daemon.
			return false
		}
		exit := false
		if l.activeServiceCount() == 0 && l.runWorkers() == 0 {
			// Every active service left the node: safe to give up the
			// watchdog and the lock (every such round; a second release
			// is silent).
			if l.disarm() && l.shutdownRequested {
				exit = true
			}
		}
		if !exit {
			l.manageResources()
		}
		l.writeStatus()
		return !exit
	}
	return true
}

// shutdownRound is the active-state work during a shutdown (§4.9). It
// reports whether the daemon exits now.
func (l *LRM) shutdownRound() bool {
	if l.mode == ha.ModeRestart {
		workers := l.runWorkers()
		if l.activeServiceCount() == 0 && workers == 0 {
			// Everything is frozen or stopped: safe to disarm once the
			// lock is released.
			return l.disarm()
		}
		return false
	}
	if l.runWorkers() > 0 {
		return false
	}
	if l.shutdownErrors == 0 {
		// All stop jobs succeeded: safe to disarm. With failures the
		// watchdog stays armed and resets the node.
		return l.disarm()
	}
	return true
}

// setState changes the daemon state and logs the change.
func (l *LRM) setState(s ha.LRMState) {
	if s == l.state {
		return
	}
	l.log.Info(fmt.Sprintf("status change %s => %s", l.state, s))
	l.state = s
	l.stateChanged = l.env.Now()
}

// loseLock enters lost_agent_lock: the lock is no longer refreshed (it is
// not released) and the watchdog stays open without being fed.
func (l *LRM) loseLock() {
	l.lockHeld = false
	l.setState(ha.LRMLostAgentLock)
}

// updateServiceStatus re-reads the manager status into the service view and
// refreshes the mode unless a shutdown is in progress (§4.1, §4.2). It
// reports whether the read succeeded.
func (l *LRM) updateServiceStatus() bool {
	ms, err := l.env.ReadManagerStatus()
	if err != nil {
		l.log.Error(fmt.Sprintf("updating service status from manager failed: %v", err))
		return false
	}
	if ms == nil {
		ms = &ha.ManagerStatus{}
	}
	l.services = ms.ServiceStatus
	l.disarmed = ms.Disarm != nil
	l.nodeState = ha.NodeUnknown
	if s, ok := ms.NodeStatus[l.node]; ok && s != "" {
		l.nodeState = s
	}
	if !l.shutdownRequested {
		req := ms.NodeRequest[l.node]
		switch {
		case req != nil && req.Maintenance:
			l.mode = ha.ModeMaintenance
		case ms.Disarm != nil:
			l.mode = ha.ModeDisarm
		case l.mode == ha.ModeMaintenance || l.mode == ha.ModeDisarm:
			l.mode = ha.ModeActive
		}
	}
	return true
}

// fenceRequested reports whether the CRM wants this node fenced: a service
// of this node is in state fence, or the node itself is (§4.2).
func (l *LRM) fenceRequested() bool {
	if l.nodeState == ha.NodeFence {
		return true
	}
	for _, sd := range l.services {
		if sd != nil && sd.Node == l.node && sd.State == ha.StateFence {
			return true
		}
	}
	return false
}

// activeServiceCount counts the services on this node, or migrating to it,
// that are in a state counting as active (§4.2).
func (l *LRM) activeServiceCount() int {
	n := 0
	for _, sd := range l.services {
		if sd == nil || (sd.Node != l.node && sd.Target != l.node) {
			continue
		}
		if sd.State.CountsActive() {
			n++
		}
	}
	return n
}

// hasConfiguredService reports whether any service is located on this node,
// in any state.
func (l *LRM) hasConfiguredService() bool {
	for _, sd := range l.services {
		if sd != nil && sd.Node == l.node {
			return true
		}
	}
	return false
}

// acquireLock takes or refreshes this node's agent lock and, on success,
// opens or feeds the watchdog (§4.8). The environment retries for a bounded
// time. With Timing.LockValidity > 0 a renewal answered after the end of
// its validity (LockGrant.ValidUntil: its send time plus LockValidity, the
// value the agent's watchdog feeder uses too) does not count. After an
// acquisition the environment has brought this node's view up to date
// (ha.Env.AcquireAgentLock), and work re-reads the manager status before
// acting on it.
func (l *LRM) acquireLock() bool {
	grant, ok := l.env.AcquireAgentLock(l.node)
	if !ok {
		return false
	}
	if v := l.timing.LockValidity; v > 0 && l.env.Now().After(grant.ValidUntil) {
		l.log.Warn(fmt.Sprintf("agent lock renewal took longer than the lock validity (%v), not feeding the watchdog", v))
		return false
	}
	if l.watchdogOpen {
		if err := l.env.WatchdogUpdate(); err != nil {
			l.log.Error(fmt.Sprintf("watchdog update failed - %v", err))
			return false
		}
	} else {
		if err := l.env.WatchdogOpen(); err != nil {
			l.log.Error(fmt.Sprintf("watchdog open failed - %v", err))
			return false
		}
		l.watchdogOpen = true
	}
	l.lockHeld = true
	l.lockValidUntil = grant.ValidUntil
	return true
}

// lockLapsed reports whether the lock is held but its validity ran out
// (only with Timing.LockValidity > 0; see the package documentation).
func (l *LRM) lockLapsed() bool {
	return l.lockHeld && l.timing.LockValidity > 0 && l.env.Now().After(l.lockValidUntil)
}

// disarm releases the agent lock and closes the watchdog, and reports
// whether it did. The release tells the lock whether services may still
// run here (servicesMayRun): such a lock proves nothing to the CRM until
// this node takes it again. With services that may still run, the
// watchdog is closed only once the release is confirmed: a release that
// failed (an unreachable store, an unknown outcome) may leave the lock
// held by this node, and a held lock that times out proves the fencing to
// the CRM, which only the armed watchdog then makes true. The caller tries
// again in a later round (the lock is renewed meanwhile, or lapses and the
// watchdog fences). With nothing that may run, a failed release is
// harmless (the lock times out) and the watchdog is closed at once.
func (l *LRM) disarm() bool {
	running := l.servicesMayRun()
	// A release of a lock this LRM already gave up (maintenance releases
	// every round) changes nothing, whatever it answers.
	if !l.env.ReleaseAgentLock(l.node, running) && running && l.lockHeld {
		l.log.Error("releasing the agent lock failed while services may still run - keeping the watchdog armed")
		return false
	}
	l.lockHeld = false
	l.closeWatchdog()
	return true
}

// servicesMayRun reports whether a service may still run on this node as
// far as this LRM knows: a service located on it (or migrating to it) in
// any state but stopped (with this LRM's stop of it successful), unless a
// node-shutdown stop job stopped it; or a resource configured on this node
// that the manager status does not list (yet): one the operator took out
// of HA (ignored) while it ran here and gave back to HA may still run, and
// the CRM adopts it only at its next round. An ignored resource counts
// too: the operator may give it back to HA at any time, also while this
// node is away, and the CRM then manages it where it is (sim seed 42021 of
// the 100,000-schedule run: a clean release with an ignored service
// running, the node cut off, the service given back, and the CRM took the
// free lock as proof and recovered it elsewhere). A
// frozen service (disarm, LRM restart) and a service in error count as
// running; only a clean stop of every service makes the node's release
// of its lock a clean one.
func (l *LRM) servicesMayRun() bool {
	for sid, sd := range l.services {
		if sd == nil || (sd.Node != l.node && sd.Target != l.node) {
			continue
		}
		if l.shutdownStopped[sid] {
			continue
		}
		if sd.State == ha.StateStopped {
			// Stopped only once this LRM's stop for the current request
			// succeeded (an unstoppable service stays stopped in the
			// CRM's view while its stop fails every round).
			res, done := l.results[sd.UID]
			if j := l.jobs[sid]; done && res.ExitCode == ha.ExitSuccess && (j == nil || j.state == ha.StateStopped) {
				continue
			}
		}
		return true
	}
	resources, err := l.env.ReadResources()
	if err != nil {
		return true // unknown: assume the worst
	}
	for sid, cfg := range resources {
		if cfg == nil || cfg.Node != l.node {
			continue
		}
		if _, listed := l.services[sid]; !listed && !l.shutdownStopped[sid] {
			return true
		}
	}
	return false
}

// closeWatchdog gives up the self-fence protection. Callers must only do so
// when no service may run unprotected (§4.8).
func (l *LRM) closeWatchdog() {
	if !l.watchdogOpen {
		return
	}
	if err := l.env.WatchdogClose(); err != nil {
		l.log.Error(fmt.Sprintf("watchdog close failed - %v", err))
		return
	}
	l.watchdogOpen = false
}

// writeStatus writes the LRM status; it needs quorum. It reports success.
func (l *LRM) writeStatus() bool {
	if !l.env.Quorate() {
		return false
	}
	l.dropStaleResults()
	st := &ha.LRMStatus{
		State:     l.state,
		Mode:      l.mode,
		Results:   maps.Clone(l.results),
		Timestamp: l.env.Now().Unix(),
	}
	if err := l.env.WriteLRMStatus(st); err != nil {
		l.log.Error(fmt.Sprintf("unable to write lrm status file - %v", err))
		return false
	}
	return true
}
