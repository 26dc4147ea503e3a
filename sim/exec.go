package sim

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"haxd/ha"
)

// execute runs one cmdlist command (scenario-format §3).
func (s *sim) execute(c Command) {
	// delay and skip-round matched their own patterns (Object is empty);
	// anything else starting with those words is a generic command.
	switch {
	case c.Verb == "delay" && c.Object == "":
		s.logAt(OriginCmdlist, slog.LevelInfo, "execute "+c.Raw)
		if c.Err != nil {
			s.fail(c.Err)
			return
		}
		s.nextCmdAt = s.H + time.Duration(c.Seconds)*s.step
		return
	case c.Verb == "skip-round" && c.Object == "":
		s.logAt(OriginCmdlist, slog.LevelInfo, "execute "+c.Raw)
		if c.Err != nil {
			s.fail(c.Err)
			return
		}
		if c.SkipDaemon == "crm" {
			s.skipCRM += c.SkipRounds
		} else {
			s.skipLRM += c.SkipRounds
		}
		return
	}
	if c.ObjectErr != nil {
		s.fail(c.ObjectErr)
		return
	}
	var n *simNode
	var sid ha.SID
	if c.Verb == "service" {
		sid = ha.SID(c.Object)
	} else {
		n = s.byName[c.Object]
		if n == nil {
			s.fail(fmt.Errorf("command %q: no such node '%s'", c.Raw, c.Object))
			return
		}
	}
	s.logAt(OriginCmdlist, slog.LevelInfo, "execute "+c.Raw)
	if c.Err != nil {
		s.fail(c.Err)
		return
	}
	if c.Verb == "service" {
		if err := s.serviceCommand(c, sid); err != nil {
			s.fail(err)
		}
		return
	}
	switch c.Verb {
	case "power":
		if c.Action == "on" {
			s.powerOn(n)
		} else {
			s.powerOff(n)
		}
	case "network":
		n.network = c.Action == "on"
	case "reboot", "shutdown":
		n.shutdown = c.Verb
		if n.lrm != nil {
			n.lrm.RequestShutdown()
		}
	case "restart-lrm":
		if n.lrm != nil {
			n.lrmRestart = true
			n.lrm.RequestShutdown()
		}
	case "crm":
		switch c.Action {
		case "stop":
			s.crmStop(n)
		case "start":
			// A CRM needs a running node.
			if n.crm == nil && n.power {
				s.startCRM(n)
			}
		case "enable-node-maintenance", "disable-node-maintenance":
			s.crmCommands = append(s.crmCommands, c.Action+" "+n.name)
		case "disarm-ha":
			s.crmCommands = append(s.crmCommands, "disarm-ha "+c.Args[0])
		case "arm-ha":
			s.crmCommands = append(s.crmCommands, "arm-ha")
		}
	case "pve-manager-version":
		n.version = c.Args[0]
	case "cfs":
		fail := c.Args[0] == "fail"
		if c.Action == "rw" {
			n.cfsRWFail = fail
		} else {
			n.cfsUpdateFail = fail
		}
	}
}

func (s *sim) serviceCommand(c Command, sid ha.SID) error {
	cfg := s.editService(sid)
	needsConfig := func() error {
		if cfg == nil {
			return fmt.Errorf("command %q: no such service '%s'", c.Raw, sid)
		}
		return nil
	}
	switch c.Action {
	case "started", "stopped", "disabled", "ignored":
		if err := needsConfig(); err != nil {
			return err
		}
		cfg.State, _ = parseRequested(c.Action)
	case "migrate", "relocate":
		s.crmCommands = append(s.crmCommands, c.Action+" "+string(sid)+" "+c.Args[0])
	case "stop":
		s.crmCommands = append(s.crmCommands, "stop "+string(sid)+" "+c.Args[0])
	case "add":
		if cfg != nil {
			return fmt.Errorf("command %q: service '%s' already exists", c.Raw, sid)
		}
		n := s.byName[c.Args[0]]
		if n == nil {
			return fmt.Errorf("command %q: no such node '%s'", c.Raw, c.Args[0])
		}
		nc := ha.DefaultResourceConfig(sid, n.name)
		if len(c.Args) > 1 {
			nc.State, _ = parseRequested(c.Args[1])
		}
		s.services[sid] = &nc
		if len(c.Args) > 2 && c.Args[2] == "1" {
			n.running[sid] = true
		}
	case "delete":
		if err := needsConfig(); err != nil {
			return err
		}
		delete(s.services, sid)
		delete(s.static, sid)
	case "lock":
		if err := needsConfig(); err != nil {
			return err
		}
		cfg.Lock = "backup"
		if len(c.Args) > 0 {
			cfg.Lock = c.Args[0]
		}
	case "unlock":
		if err := needsConfig(); err != nil {
			return err
		}
		if len(c.Args) == 0 || c.Args[0] == cfg.Lock {
			cfg.Lock = ""
		}
	case "manual-migrate":
		if err := needsConfig(); err != nil {
			return err
		}
		target := s.byName[c.Args[0]]
		if target == nil {
			return fmt.Errorf("command %q: no such node '%s'", c.Raw, c.Args[0])
		}
		disarmIgnore := s.managerStatus.Disarm != nil && s.managerStatus.Disarm.Mode == ha.DisarmIgnore
		if cfg.State != ha.RequestIgnored && !disarmIgnore {
			return fmt.Errorf("command %q: service '%s' is not ignored and HA is not disarmed in ignore mode", c.Raw, sid)
		}
		// The operator moves the stopped guest: it runs nowhere afterwards.
		if src := s.byName[cfg.Node]; src != nil {
			delete(src.running, sid)
		}
		cfg.Node = target.name
	case "set-static-stats", "set-dynamic-stats":
		if err := needsConfig(); err != nil {
			return err
		}
		dst := s.static
		if c.Action == "set-dynamic-stats" {
			dst = s.dynamic
		}
		st := dst[sid]
		if st == nil {
			st = Stats{}
			dst[sid] = st
		}
		for i := 0; i+1 < len(c.Args); i += 2 {
			v, err := strconv.ParseFloat(c.Args[i+1], 64)
			if err != nil {
				return fmt.Errorf("command %q: %s: %w", c.Raw, c.Args[i], err)
			}
			if c.Args[i] == "maxmem" || c.Args[i] == "mem" {
				v *= mib
			}
			st[c.Args[i]] = v
		}
	}
	return nil
}
