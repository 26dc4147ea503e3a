package lrm

import (
	"fmt"
	"maps"
	"slices"

	"haxd/ha"
)

// RequestShutdown handles a shutdown request once (§4.9 steps 1-6): reads
// env.IsNodeShutdown() (both false means a daemon restart) and the
// datacenter shutdown policy, logs the policy lines, queues stop jobs,
// sets the mode and writes the LRM status. Later calls do nothing.
func (l *LRM) RequestShutdown() {
	if l.shutdownRequested {
		return
	}
	shutdown, reboot := l.env.IsNodeShutdown()
	if reboot {
		shutdown = true
	}

	policy := ha.ShutdownConditional
	dc, err := l.env.ReadDatacenter()
	if err != nil {
		l.log.Error(fmt.Sprintf("got unexpected error - read datacenter settings: %v", err))
	} else if dc != nil && dc.ShutdownPolicy != "" {
		policy = dc.ShutdownPolicy
	}
	if shutdown {
		l.log.Info(fmt.Sprintf("got shutdown request with shutdown policy '%s'", policy))
	}

	var freezeAll, maintenance bool
	switch policy {
	case ha.ShutdownConditional:
		freezeAll = reboot
	case ha.ShutdownFreeze:
		freezeAll = true
	case ha.ShutdownFailover:
		freezeAll = false
	case ha.ShutdownMigrate:
		maintenance = true
	default:
		l.log.Error(fmt.Sprintf("unknown shutdown policy '%s', fall back to conditional", policy))
		freezeAll = reboot
	}

	if !maintenance && shutdown {
		// Always stop every local service when the node goes down, whether
		// it reboots or powers off. Stop jobs carry no UID.
		for _, sid := range slices.Sorted(maps.Keys(l.services)) {
			if sd := l.services[sid]; sd != nil && sd.Node == l.node {
				l.queue(sid, "", ha.StateRequestStop, "", nil)
			}
		}
	}

	manual := l.mode == ha.ModeMaintenance
	if shutdown {
		kind := "shutdown"
		if reboot {
			kind = "reboot"
		}
		switch {
		case manual && maintenance:
			l.log.Info(kind + " LRM, ignore maintenance policy, already in maintenance mode")
		case manual:
			l.log.Info(fmt.Sprintf("%s LRM, ignore %s policy as manual maintenance mode is enabled", kind, policy))
		case maintenance:
			l.log.Info(kind + " LRM, doing maintenance, removing this node from active list")
			l.mode = ha.ModeMaintenance
		case freezeAll:
			l.log.Info(kind + " LRM, stop and freeze all services")
			l.mode = ha.ModeRestart
		default:
			l.log.Info("shutdown LRM, stop all services")
			l.mode = ha.ModeShutdown
		}
	} else if manual {
		l.log.Info("Restarting LRM in maintenance mode may be delayed until all services are moved")
	} else {
		l.log.Info("restart LRM, freeze all services")
		l.mode = ha.ModeRestart
	}

	l.shutdownRequested = true
	if !l.writeStatus() {
		l.log.Error("unable to update lrm status file - not quorate?")
	}
}
