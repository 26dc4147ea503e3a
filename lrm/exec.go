package lrm

import (
	"context"
	"fmt"
	"log/slog"

	"haxd/ha"
)

// action is everything one resource action needs, captured when the job is
// started: it may run on another goroutine and must not touch the LRM.
type action struct {
	log    *slog.Logger
	node   string
	agent  ha.ResourceAgent
	typ    string
	sid    ha.SID
	config *ha.ResourceConfig // a copy; nil if the resource is not configured
	state  ha.ServiceState
	target string
	// timeout is the stop timeout in seconds; nil means none.
	timeout *int
}

// newAction captures job j and the resource's configuration cd (nil if it
// has none) and returns the worker function that executes it.
func (l *LRM) newAction(j *job, cd *ha.ResourceConfig) func(context.Context) ha.ExitCode {
	a := &action{
		log:    l.log,
		node:   l.node,
		agent:  l.env.ResourceAgent(j.sid.Type()),
		typ:    j.sid.Type(),
		sid:    j.sid,
		state:  j.state,
		target: j.target,
	}
	if cd != nil {
		c := *cd
		a.config = &c
	}
	if j.timeout != nil {
		t := *j.timeout
		a.timeout = &t
	}
	return a.run
}

// run executes the request (exec_resource_agent, §4.7) and returns its
// exit code. Errors returned by the agent are attached to the log line that
// reports the failure (attribute "err") and otherwise handled like a failed
// action: the outcome is decided by re-checking the resource.
func (a *action) run(ctx context.Context) ha.ExitCode {
	sidAttr := slog.String(ha.KeySID, string(a.sid))
	if a.agent == nil {
		a.log.Error(fmt.Sprintf("service type '%s' not implemented", a.typ), sidAttr)
		return ha.ExitUnknownServiceType
	}
	if a.config == nil {
		a.log.Error(fmt.Sprintf("missing resource configuration for '%s'", a.sid), sidAttr)
		return ha.ExitUnknownService
	}
	if a.state == ha.StateError {
		a.log.Error(fmt.Sprintf("service %s is in an error state and needs manual intervention. Look up 'ERROR RECOVERY' in the documentation.", a.sid), sidAttr)
		return ha.ExitSuccess // nothing is done for an errored service
	}
	if a.config.Node != a.node {
		a.log.Error(fmt.Sprintf("service '%s' not on this node", a.sid), sidAttr)
		return ha.ExitWrongNode
	}

	running, err := a.agent.Running(ctx, a.sid)
	if err != nil {
		a.log.Error(fmt.Sprintf("unable to check whether service %s runs", a.sid), sidAttr, slog.Any("err", err))
		return ha.ExitError
	}

	switch a.state {
	case ha.StateStarted:
		if running {
			return ha.ExitSuccess
		}
		a.log.Info(fmt.Sprintf("starting service %s", a.sid), sidAttr)
		startErr := a.agent.Start(ctx, a.sid)
		running, err = a.agent.Running(ctx, a.sid)
		if err == nil && running {
			a.log.Info(fmt.Sprintf("service status %s started", a.sid), sidAttr)
			return ha.ExitSuccess
		}
		a.log.Warn(fmt.Sprintf("unable to start service %s", a.sid), sidAttr, errAttr(startErr, err))
		return ha.ExitError

	case ha.StateRequestStop, ha.StateStopped:
		if !running {
			return ha.ExitSuccess
		}
		if a.timeout != nil {
			a.log.Info(fmt.Sprintf("stopping service %s (timeout=%d)", a.sid, *a.timeout), sidAttr)
		} else {
			a.log.Info(fmt.Sprintf("stopping service %s", a.sid), sidAttr)
		}
		stopErr := a.agent.Stop(ctx, a.sid, a.timeout)
		running, err = a.agent.Running(ctx, a.sid)
		if err == nil && !running {
			a.log.Info(fmt.Sprintf("service status %s stopped", a.sid), sidAttr)
			return ha.ExitSuccess
		}
		a.log.Info(fmt.Sprintf("unable to stop service %s (still running)", a.sid), sidAttr, errAttr(stopErr, err))
		return ha.ExitError

	case ha.StateMigrate, ha.StateRelocate, ha.StateRequestStartBalance:
		if a.target == "" {
			a.log.Error(fmt.Sprintf("%s '%s' failed - missing target", a.state, a.sid), sidAttr)
			return ha.ExitInvalidParameter
		}
		if a.config.Node == a.target {
			return ha.ExitSuccess // already there
		}
		if a.state == ha.StateRequestStartBalance && running {
			a.log.Info(fmt.Sprintf("ignoring rebalance-on-start for service %s - already running", a.sid), sidAttr)
			return ha.ExitIgnored
		}
		online := a.state == ha.StateMigrate
		if err := a.agent.Migrate(ctx, a.sid, a.target, online); err != nil {
			a.log.Error(fmt.Sprintf("service %s not moved (migration error)", a.sid), sidAttr, slog.Any("err", err))
			return ha.ExitError
		}
		return ha.ExitSuccess
	}

	a.log.Error(fmt.Sprintf("implement me (cmd '%s')", a.state), sidAttr)
	return ha.ExitUnknownCommand
}

// errAttr returns the first non-nil error as an "err" attribute, or an
// empty attribute (which slog drops).
func errAttr(errs ...error) slog.Attr {
	for _, err := range errs {
		if err != nil {
			return slog.Any("err", err)
		}
	}
	return slog.Attr{}
}
