package sim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Command is one parsed cmdlist command (scenario-format §3). Parsing never
// loses a command: syntax errors are kept in ObjectErr and Err so that the
// run fails at the right instant with the spec's log behaviour.
type Command struct {
	// Raw is the command string as written; it is what "execute" logs.
	Raw string
	// Verb is the first word: power, network, reboot, shutdown, restart-lrm,
	// crm, service, pve-manager-version, cfs, delay or skip-round.
	Verb string
	// Object is the node name, or the SID for service commands.
	Object string
	// Action is the third word ("on", "migrate", ...), "" if none.
	Action string
	// Args are the words after the action.
	Args []string
	// Seconds is the argument of delay.
	Seconds int
	// SkipDaemon ("crm" or "lrm") and SkipRounds are the arguments of
	// skip-round.
	SkipDaemon string
	SkipRounds int
	// ObjectErr is an error detected before the execute line is logged
	// (missing object, malformed SID).
	ObjectErr error
	// Err is an error detected after the execute line (unknown command or
	// action, missing or invalid parameter).
	Err error
}

var (
	delayRe     = regexp.MustCompile(`^delay\s+([0-9]+)\s*$`)
	skipRoundRe = regexp.MustCompile(`^skip-round\s+(crm|lrm)(?:\s+([0-9]+))?\s*$`)
	sidishRe    = regexp.MustCompile(`^[a-z]+:\S+$`)
	numberRe    = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// ParseCommand parses one command string. The returned Command is always
// usable; the error, if any, is the first of c.ObjectErr and c.Err.
func ParseCommand(s string) (Command, error) {
	c := Command{Raw: s}
	if m := delayRe.FindStringSubmatch(s); m != nil {
		c.Verb = "delay"
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 1e7 {
			c.Err = fmt.Errorf("command %q: delay %s out of range", s, m[1])
		}
		c.Seconds = n
		return c, c.Err
	}
	if m := skipRoundRe.FindStringSubmatch(s); m != nil {
		c.Verb, c.SkipDaemon, c.SkipRounds = "skip-round", m[1], 1
		if m[2] != "" {
			n, err := strconv.Atoi(m[2])
			if err != nil || n > 1e6 {
				c.Err = fmt.Errorf("command %q: skip count %s out of range", s, m[2])
			}
			c.SkipRounds = n
		}
		return c, c.Err
	}
	f := strings.Fields(s)
	if len(f) < 2 {
		c.ObjectErr = fmt.Errorf("command %q: expected '<command> <node|sid> [<action> ...]'", s)
		if len(f) == 1 {
			c.Verb = f[0]
		}
		return c, c.ObjectErr
	}
	c.Verb, c.Object = f[0], f[1]
	if len(f) > 2 {
		c.Action = f[2]
		c.Args = f[3:]
	}
	if c.Verb == "service" && !sidishRe.MatchString(c.Object) {
		c.ObjectErr = fmt.Errorf("command %q: invalid service id %q", s, c.Object)
		return c, c.ObjectErr
	}
	c.Err = c.check()
	return c, c.Err
}

// check validates the action and parameters of a generic command.
func (c *Command) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("command %q: %s", c.Raw, fmt.Sprintf(format, a...))
	}
	nargs := func(min, max int) error {
		if len(c.Args) < min {
			return bad("action %q: missing parameter", c.Action)
		}
		if len(c.Args) > max {
			return bad("action %q: unexpected parameter %q", c.Action, c.Args[max])
		}
		return nil
	}
	switch c.Verb {
	case "power", "network":
		if c.Action != "on" && c.Action != "off" {
			return bad("unknown action %q (expected on or off)", c.Action)
		}
		return nargs(0, 0)
	case "reboot", "shutdown", "restart-lrm":
		if c.Action != "" {
			return bad("unexpected parameter %q", c.Action)
		}
		return nil
	case "crm":
		switch c.Action {
		case "stop", "start", "enable-node-maintenance", "disable-node-maintenance", "arm-ha":
			return nargs(0, 0)
		case "disarm-ha":
			if err := nargs(1, 1); err != nil {
				return err
			}
			if c.Args[0] != "freeze" && c.Args[0] != "ignore" {
				return bad("unknown disarm mode %q (expected freeze or ignore)", c.Args[0])
			}
			return nil
		}
		return bad("unknown crm action %q", c.Action)
	case "pve-manager-version":
		if c.Action != "set" {
			return bad("unknown action %q (expected set)", c.Action)
		}
		return nargs(1, 1)
	case "cfs":
		if c.Action != "rw" && c.Action != "update" {
			return bad("unknown cfs part %q (expected rw or update)", c.Action)
		}
		if err := nargs(1, 1); err != nil {
			return err
		}
		if c.Args[0] != "work" && c.Args[0] != "fail" {
			return bad("unknown cfs state %q (expected work or fail)", c.Args[0])
		}
		return nil
	case "service":
		return c.checkService(bad, nargs)
	}
	return bad("unknown command %q", c.Verb)
}

func (c *Command) checkService(bad func(string, ...any) error, nargs func(int, int) error) error {
	switch c.Action {
	case "started", "stopped", "disabled", "ignored", "delete":
		return nargs(0, 0)
	case "migrate", "relocate", "manual-migrate":
		return nargs(1, 1)
	case "stop":
		if err := nargs(1, 1); err != nil {
			return err
		}
		if _, err := strconv.Atoi(c.Args[0]); err != nil || strings.HasPrefix(c.Args[0], "-") {
			return bad("stop timeout %q: expected a number of seconds", c.Args[0])
		}
		return nil
	case "add":
		if err := nargs(1, 3); err != nil {
			return err
		}
		if len(c.Args) > 1 {
			if _, ok := parseRequested(c.Args[1]); !ok {
				return bad("add: unknown state %q", c.Args[1])
			}
		}
		if len(c.Args) > 2 && c.Args[2] != "0" && c.Args[2] != "1" {
			return bad("add: running flag %q: expected 0 or 1", c.Args[2])
		}
		return nil
	case "lock", "unlock":
		return nargs(0, 1)
	case "set-static-stats", "set-dynamic-stats":
		keys := map[string]bool{"maxcpu": true, "maxmem": true}
		if c.Action == "set-dynamic-stats" {
			keys = map[string]bool{"cpu": true, "mem": true}
		}
		if len(c.Args) == 0 || len(c.Args)%2 != 0 {
			return bad("%s: expected key value pairs", c.Action)
		}
		for i := 0; i < len(c.Args); i += 2 {
			if !keys[c.Args[i]] {
				return bad("%s: unknown key %q", c.Action, c.Args[i])
			}
			if !numberRe.MatchString(c.Args[i+1]) {
				return bad("%s: %s: expected a number, found %q", c.Action, c.Args[i], c.Args[i+1])
			}
		}
		return nil
	}
	return bad("unknown service action %q", c.Action)
}
