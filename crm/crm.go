// Package crm is the cluster resource manager: the CRM daemon state machine
// of one node (ha-semantics §3) and, while that daemon is master, the
// manager that runs the manage round (§3.6): node states and fencing (§6),
// the service state machine (§5), the start failure policy (§7), operator
// commands, node maintenance and disarm (§8).
//
// The package does no I/O of its own: everything goes through ha.Env, time
// comes only from Env.Now, and every iteration over a map is sorted, so a
// simulator replays it deterministically. The caller drives the daemon by
// calling Step once per round.
//
// Node selection goes through the placer seam (placer.go): the manager uses
// crm/placement (rules, groups, schedulers, rebalancing) through a thin
// adapter; basicPlacer (a test file) is the rule-less reference of placement.md §6.2
// and §7.2 that it must agree with when no rules exist.
//
// Two optional extensions of ha.Env are defined here: CommandPeeker (an
// idle CRM sees queued commands without consuming them) and GroupMigrator
// (the writes of the persistent group→rules migration).
package crm

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"haxd/ha"
)

// CommandPeeker is an optional extension of ha.Env. An Env that implements
// it lets an idle CRM see that CRM commands are queued without consuming
// them (ha-semantics §3.2 can_get_active step 5). Without it the CRM reads
// the queue and hands the commands to the manager it creates next.
type CommandPeeker interface {
	// HasCRMCommands reports whether the CRM command queue is non-empty.
	HasCRMCommands() (bool, error)
}

// CRM is the CRM daemon of one node. It is not safe for concurrent use;
// the caller runs Step, RequestShutdown and State from one goroutine.
type CRM struct {
	env ha.Env
	t   ha.Timing
	log logger

	state        ha.CRMState
	stateChanged time.Time
	mgr          *manager

	shutdownRequested bool
	exited            bool
	clusterStateOK    bool

	// watchdogOpen is set while this daemon holds an open watchdog.
	watchdogOpen bool
	// disarmed is set while this daemon considers the stack fully
	// disarmed and therefore runs without a watchdog (§3.3, §8.7).
	disarmed   bool
	idleRounds int

	// pendingCmds holds commands read while checking whether to become
	// master, when the Env cannot peek at the queue.
	pendingCmds []string
	// newPlacer creates the placement of a new manager.
	newPlacer func(ha.Env) placer
}

// New creates the CRM daemon of env's node. It logs
// "status change startup => wait_for_quorum".
func New(env ha.Env, t ha.Timing) *CRM {
	c := &CRM{env: env, t: t, log: logger{env.Logger()}, state: ha.CRMStartup,
		newPlacer: func(env ha.Env) placer { return newRulesPlacer(env) }}
	c.setState(ha.CRMWaitForQuorum)
	return c
}

// State returns the daemon state.
func (c *CRM) State() ha.CRMState { return c.state }

// RequestShutdown asks the daemon to stop (SIGTERM / `crm X stop`); logs
// "server received shutdown request" once.
func (c *CRM) RequestShutdown() {
	if !c.shutdownRequested {
		c.log.info("server received shutdown request")
	}
	c.shutdownRequested = true
}

// setState changes the daemon state, logging the change; setting the
// current state again is a no-op. Entering master creates a fresh manager,
// leaving it discards the manager.
func (c *CRM) setState(s ha.CRMState) {
	if s == c.state {
		return
	}
	c.log.info("status change " + string(c.state) + " => " + string(s))
	c.state = s
	c.stateChanged = c.env.Now()
	if s == ha.CRMMaster {
		c.mgr = newManager(c.env, c.t, c.log, c.newPlacer(c.env))
		c.mgr.pendingCmds, c.pendingCmds = c.pendingCmds, nil
	} else {
		c.mgr = nil
		// Disarmed mode belongs to a mastership: a later takeover
		// re-reads the stored status before skipping the watchdog.
		c.disarmed = false
	}
}

// Step runs one daemon iteration (ha-semantics §3.4 transitions then §3.5
// work, and the manage round §3.6 when master). It returns false when the
// daemon exits (only after RequestShutdown).
func (c *CRM) Step() bool {
	if c.exited {
		return false
	}
	c.clusterStateOK = c.env.UpdateClusterState()
	c.transitions()
	if !c.work() {
		c.exited = true
		return false
	}
	return true
}

// transitions evaluates the state transitions of §3.4.
func (c *CRM) transitions() {
	switch c.state {
	case ha.CRMWaitForQuorum:
		if c.canGetActive(false) {
			if c.acquireManagerLock() {
				c.setState(ha.CRMMaster)
			} else {
				c.setState(ha.CRMSlave)
			}
		}
	case ha.CRMSlave:
		if c.canGetActive(false) {
			if c.acquireManagerLock() {
				c.setState(ha.CRMMaster)
			}
		} else {
			c.setState(ha.CRMWaitForQuorum)
		}
	case ha.CRMLostManagerLock:
		if c.canGetActive(true) && c.acquireManagerLock() {
			c.setState(ha.CRMMaster)
		}
	case ha.CRMMaster:
		switch {
		case !c.acquireManagerLock():
			c.setState(ha.CRMLostManagerLock)
		case c.allowedToGetIdle():
			c.idleRounds++
			if c.idleRounds > c.t.CRMIdleRounds {
				c.log.infof("cluster had no service configured for %d rounds, going idle.", c.t.CRMIdleRounds)
				// Safety: release the lock first, then the watchdog.
				c.env.ReleaseManagerLock()
				c.closeWatchdog()
				c.setState(ha.CRMWaitForQuorum)
				c.idleRounds = 0
			}
		default:
			c.idleRounds = 0
		}
	}
}

// work does the work of the current state (§3.5) and reports whether the
// daemon keeps running.
func (c *CRM) work() bool {
	switch c.state {
	case ha.CRMWaitForQuorum, ha.CRMSlave:
		return !c.shutdownRequested
	case ha.CRMLostManagerLock:
		c.closeWatchdog()
		if c.shutdownRequested {
			return false
		}
		c.setState(ha.CRMWaitForQuorum)
		return true
	case ha.CRMMaster:
		if c.shutdownRequested {
			c.closeWatchdog()
			c.log.info("voluntary release CRM lock")
			if !c.env.ReleaseManagerLock() {
				c.log.notice("CRM lock release failed, let the lock timeout")
			}
			return false
		}
		if !c.clusterStateOK {
			c.log.notice("temporary inconsistent cluster state (cfs restart?), skip round")
			return true
		}
		if err := c.mgr.manage(); err != nil {
			// The message is the Env's error text as is: operators and
			// the PVE conformance logs expect exactly that.
			c.log.err("got unexpected error - " + err.Error())
			return true
		}
		switch full := c.mgr.fullyDisarmed; {
		case full && !c.disarmed:
			c.log.info("HA stack fully disarmed, releasing CRM watchdog")
			c.closeWatchdog()
			c.disarmed = true
		case !full && c.disarmed:
			c.log.info("re-arming HA stack")
			c.disarmed = false
		}
		return true
	}
	return true
}

// healthy is the predicate of §3.2. It returns the manager status read.
func (c *CRM) healthy() (*ha.ManagerStatus, bool) {
	if !c.env.Quorate() || !c.clusterStateOK {
		return nil, false
	}
	ms, err := c.env.ReadManagerStatus()
	if err != nil {
		c.log.err("could not read manager status: " + err.Error())
		return nil, false
	}
	if ms == nil {
		ms = &ha.ManagerStatus{}
	}
	me := c.env.NodeName()
	for _, sd := range ms.ServiceStatus {
		if sd != nil && sd.State == ha.StateFence && sd.Node == me {
			return nil, false
		}
	}
	return ms, true
}

// canGetActive is the predicate of §3.2.
func (c *CRM) canGetActive(allowNoService bool) bool {
	ms, ok := c.healthy()
	if !ok {
		return false
	}
	if allowNoService {
		return true
	}
	sc, err := c.env.ReadResources()
	if err != nil {
		c.log.err("could not read service config: " + err.Error())
		return false
	}
	if len(sc) > 0 {
		return true
	}
	if ms.MasterNode != "" && ms.MasterNode != c.env.NodeName() && ms.NodeStatus[ms.MasterNode] == ha.NodeOnline {
		return false
	}
	for node, st := range ms.NodeStatus {
		if st == ha.NodeMaintenance && (ms.NodeRequest[node] == nil || !ms.NodeRequest[node].Maintenance) {
			return true
		}
	}
	if c.commandsQueued() {
		return true
	}
	return len(ms.ServiceStatus) > 0 || ms.Disarm != nil
}

// commandsQueued reports whether CRM commands wait in the queue.
func (c *CRM) commandsQueued() bool {
	if len(c.pendingCmds) > 0 {
		return true
	}
	if p, ok := c.env.(CommandPeeker); ok {
		has, err := p.HasCRMCommands()
		return err == nil && has
	}
	cmds, err := c.env.ReadCRMCommands()
	if err != nil {
		return false
	}
	c.pendingCmds = append(c.pendingCmds, cmds...)
	return len(c.pendingCmds) > 0
}

// allowedToGetIdle is the predicate of §3.2.
func (c *CRM) allowedToGetIdle() bool {
	ms, ok := c.healthy()
	if !ok || ms.Disarm != nil || len(ms.ServiceStatus) > 0 {
		return false
	}
	sc, err := c.env.ReadResources()
	return err == nil && len(sc) == 0
}

// acquireManagerLock is the protected lock acquisition of §3.3 with its
// watchdog rules. The Env retries the lock itself.
func (c *CRM) acquireManagerLock() bool {
	if !c.env.AcquireManagerLock() {
		return false
	}
	switch {
	case c.watchdogOpen:
		if err := c.env.WatchdogUpdate(); err != nil {
			c.log.err("watchdog update failed - " + err.Error())
		}
	case !c.disarmed:
		ms, err := c.env.ReadManagerStatus()
		if err == nil && ms != nil && ms.Disarm != nil && ms.Disarm.State == ha.Disarmed {
			c.log.info("taking over as disarmed master, skipping watchdog")
			c.disarmed = true
			return true
		}
		if err := c.env.WatchdogOpen(); err != nil {
			// Never act as master without the watchdog that bounds a
			// stalled master (§3.3); retry at the next round.
			c.log.err("watchdog open failed - " + err.Error())
			return false
		}
		c.watchdogOpen = true
	}
	return true
}

// closeWatchdog gives up watchdog protection gracefully, if it is open.
func (c *CRM) closeWatchdog() {
	if !c.watchdogOpen {
		return
	}
	if err := c.env.WatchdogClose(); err != nil {
		c.log.err("watchdog close failed - " + err.Error())
	}
	c.watchdogOpen = false
}

// logger logs a decision at the PVE level names; messages are the exact
// wording of ha-semantics §11.
type logger struct{ l *slog.Logger }

func (l logger) at(level slog.Level, msg string, attrs ...any) {
	l.l.Log(context.Background(), level, msg, attrs...)
}

func (l logger) info(msg string, attrs ...any)   { l.at(slog.LevelInfo, msg, attrs...) }
func (l logger) notice(msg string, attrs ...any) { l.at(ha.LevelNotice, msg, attrs...) }
func (l logger) warn(msg string, attrs ...any)   { l.at(slog.LevelWarn, msg, attrs...) }
func (l logger) err(msg string, attrs ...any)    { l.at(slog.LevelError, msg, attrs...) }

func (l logger) infof(format string, args ...any) { l.info(fmt.Sprintf(format, args...)) }
