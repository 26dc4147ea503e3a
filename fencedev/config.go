package fencedev

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Arg is one argument of a device or connect line: `key=value`, or a bare
// `key` (a flag, HasValue false).
type Arg struct {
	// Key is the option name, a long fence-agents option ("ip",
	// "password", "plug") or a one-letter short option ("x").
	Key string
	// Value is the option's value; empty for a flag.
	Value string
	// HasValue distinguishes `key=` and `key=value` from a bare `key`.
	HasValue bool
}

// SubDevice is one sub-device of a device: an agent with its arguments and
// the nodes connected to it.
type SubDevice struct {
	// Number is the sub-device number (`NAME:N`, default 1).
	Number int
	// Agent is the fence agent's program name, e.g. "fence_ipmilan".
	Agent string
	// Args are the device's arguments in file order.
	Args []Arg
	// Line is the line of the `device` declaration.
	Line int
	// Nodes maps a connected node to its connect arguments (without the
	// node= argument), in file order.
	Nodes map[string][]Arg
}

// Device is a fence device: one or more parallel sub-devices of one name.
type Device struct {
	// Name is the device's name.
	Name string
	// Priority orders the devices: lower is tried first. It is the number
	// of the last `device` line of this name among all device lines
	// (0-based), as PVE's parser assigns it.
	Priority int
	// Subs maps a sub-device number to the sub-device.
	Subs map[int]*SubDevice
}

// Config is a parsed fence.cfg.
type Config struct {
	// Devices maps a device name to the device.
	Devices map[string]*Device
}

// Command is one agent invocation for one node: the sub-device's agent
// with the device's arguments followed by the node's connect arguments.
type Command struct {
	// Device is "NAME:N", the sub-device this command drives.
	Device string
	// Agent is the fence agent's program name.
	Agent string
	// Args are the device arguments then the node's connect arguments.
	Args []Arg
}

// LineError is one rejected line of a fence.cfg.
type LineError struct {
	// Line is the 1-based physical line number.
	Line int
	// Msg says what is wrong, naming the offending value.
	Msg string
}

// ParseError lists every rejected line of a fence.cfg. Its text is PVE's:
// "Encountered error(s) on parsing 'FILE':" then one "line N: MSG" line
// per error.
type ParseError struct {
	// File is the file name as given to Parse.
	File string
	// Errors are the rejected lines in file order.
	Errors []LineError
}

// Error renders the errors as PVE does.
func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Encountered error(s) on parsing '%s':\n", e.File)
	for _, le := range e.Errors {
		fmt.Fprintf(&b, "line %d: %s\n", le.Line, le.Msg)
	}
	return b.String()
}

var (
	// lineRe is the shape of a device or connect line (PVE's regex).
	lineRe = regexp.MustCompile(`^(device|connect)\s+(\S+)\s+(\S+)\s+(.+)$`)
	// devNameRe is a device name with an optional sub-device number.
	devNameRe = regexp.MustCompile(`^(\w+)(?::(\d+))?$`)
	// agentRe is a fence agent's program name: a bare name, never a path.
	agentRe = regexp.MustCompile(`^fence_[A-Za-z0-9_]+$`)
	// keyRe is an argument's key.
	keyRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	// nodeRe is a node name.
	nodeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// maxSubDevice bounds a sub-device number.
const maxSubDevice = 1 << 16

// Parse parses the fence.cfg text data read from file (the name is used in
// errors only). Blank lines and lines starting with '#' are skipped;
// leading and trailing blanks are ignored. Every bad line is reported with
// its number and offending value in one *ParseError; nothing is returned
// then.
//
// Unlike PVE, which ignores a line of an unknown shape with a warning,
// Parse rejects it: a silently dropped fence line leaves a node without the
// fencing the operator meant it to have. For the same reason it rejects a
// value holding a second '=' (PVE cuts it there, turning "a=b=c" into
// value "b") and a value with control characters.
func Parse(file string, data []byte) (*Config, error) {
	cfg := &Config{Devices: map[string]*Device{}}
	var errs []LineError
	priority := 0
	lines := strings.Split(string(data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	for i, raw := range lines {
		lineno := i + 1
		line := strings.Trim(raw, " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, LineError{Line: lineno, Msg: fmt.Sprintf(format, args...)})
		}
		m := lineRe.FindStringSubmatch(line)
		if m == nil {
			fail("expected 'device NAME[:N] AGENT ARGS...' or 'connect NAME[:N] node=NODE ARGS...', got '%s'", redactLine(line))
			continue
		}
		command, devName, target := m[1], m[2], m[3]
		nm := devNameRe.FindStringSubmatch(devName)
		if nm == nil {
			fail("invalid device name '%s': want NAME or NAME:N, NAME of letters, digits and '_'", devName)
			continue
		}
		name, number := nm[1], 1
		if nm[2] != "" {
			n, err := strconv.Atoi(nm[2])
			if err != nil || n < 1 || n > maxSubDevice {
				fail("invalid sub-device number in '%s': want 1 to %d", devName, maxSubDevice)
				continue
			}
			number = n
		}
		words, err := splitArgs(m[4])
		if err != nil {
			fail("%v in '%s'", err, redactLine(m[4]))
			continue
		}
		args, msg := parseArgs(words)
		if msg != "" {
			fail("%s", msg)
			continue
		}
		switch command {
		case "device":
			if !agentRe.MatchString(target) {
				fail("invalid fence agent '%s': want a program name like fence_ipmilan", target)
				continue
			}
			dev := cfg.Devices[name]
			if dev != nil && dev.Subs[number] != nil {
				fail("device '%s:%d' already declared", name, number)
				continue
			}
			if dev == nil {
				dev = &Device{Name: name, Subs: map[int]*SubDevice{}}
				cfg.Devices[name] = dev
			}
			dev.Subs[number] = &SubDevice{Number: number, Agent: target, Args: args, Line: lineno, Nodes: map[string][]Arg{}}
			dev.Priority = priority
			priority++
		case "connect":
			dev := cfg.Devices[name]
			if dev == nil {
				fail("device '%s' must be declared before you can connect to it", name)
				continue
			}
			node, ok := strings.CutPrefix(target, "node=")
			if !ok || node == "" {
				fail("node=nodename needed to connect device '%s' to a node, got '%s'", devName, target)
				continue
			}
			if !nodeRe.MatchString(node) {
				fail("invalid node name '%s'", node)
				continue
			}
			sub := dev.Subs[number]
			if sub == nil {
				fail("No parallel device '%s:%d' found", name, number)
				continue
			}
			if _, dup := sub.Nodes[node]; dup {
				fail("node '%s' already connected to device '%s:%d'", node, name, number)
				continue
			}
			sub.Nodes[node] = args
		}
	}
	if len(errs) > 0 {
		return nil, &ParseError{File: file, Errors: errs}
	}
	return cfg, nil
}

// parseArgs turns words into arguments; msg is non-empty for a bad one.
func parseArgs(words []string) (args []Arg, msg string) {
	for _, w := range words {
		key, value, has := strings.Cut(w, "=")
		if !keyRe.MatchString(key) {
			return nil, fmt.Sprintf("invalid argument key '%s' in '%s'", key, redactWord(w))
		}
		if strings.Contains(value, "=") {
			return nil, fmt.Sprintf("value of '%s' contains a second '=' (PVE would cut it there); not accepted", key)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Sprintf("value of '%s' contains a control character", key)
		}
		args = append(args, Arg{Key: key, Value: value, HasValue: has})
	}
	return args, ""
}

// secretAssignRe finds `key=value` of a secret-looking key in raw text.
var secretAssignRe = regexp.MustCompile(`(?i)\b([A-Za-z0-9_-]*(?:pass|secret|community|token)[A-Za-z0-9_-]*|p)=("[^"]*"?|'[^']*'?|\S*)`)

// redactLine hides the values of secret-looking keys in a raw line shown
// in an error.
func redactLine(s string) string {
	return secretAssignRe.ReplaceAllString(s, "$1=[hidden]")
}

// redactWord hides the value of a secret argument in an error message.
func redactWord(w string) string {
	key, _, has := strings.Cut(w, "=")
	if has && isSecret(key) {
		return key + "=[hidden]"
	}
	return w
}

// splitArgs splits s into shell-like words as Perl's
// Text::ParseWords::shellwords does: blanks separate words; double quotes
// group and take backslash escapes; single quotes group literally; outside
// quotes a backslash escapes the next character.
func splitArgs(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case c == '"':
			inWord = true
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unbalanced double quote")
			}
			i = j
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unbalanced single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Levels returns the devices in the order they are tried (priority, then
// name).
func (c *Config) Levels() []*Device {
	devs := slices.Collect(maps.Values(c.Devices))
	slices.SortFunc(devs, func(a, b *Device) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Name, b.Name))
	})
	return devs
}

// NodeLevels returns, for node, one list of commands per level it is
// connected to, in the order they are tried; within a level the commands
// are those of the sub-devices the node is connected to, by ascending
// number, and they run in parallel.
func (c *Config) NodeLevels(node string) [][]Command {
	var out [][]Command
	for _, dev := range c.Levels() {
		var level []Command
		for _, num := range slices.Sorted(maps.Keys(dev.Subs)) {
			sub := dev.Subs[num]
			nodeArgs, ok := sub.Nodes[node]
			if !ok {
				continue
			}
			args := append(slices.Clone(sub.Args), nodeArgs...)
			level = append(level, Command{Device: fmt.Sprintf("%s:%d", dev.Name, num), Agent: sub.Agent, Args: args})
		}
		if len(level) > 0 {
			out = append(out, level)
		}
	}
	return out
}

// Nodes returns every node connected to any device, sorted.
func (c *Config) Nodes() []string {
	set := map[string]bool{}
	for _, dev := range c.Devices {
		for _, sub := range dev.Subs {
			for n := range sub.Nodes {
				set[n] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// CommandLine renders cmd as PVE renders a fence command line: the agent,
// then `--key=value` (`--key` for a flag) for long keys and `-k [value]`
// for one-letter keys, values shell-quoted. It shows passwords: use it for
// conformance with PVE, never in a log (see Redacted).
func (cmd Command) CommandLine() string {
	return cmd.render(false)
}

// Redacted is CommandLine with the value of every secret argument
// (password and the like) replaced by "[hidden]".
func (cmd Command) Redacted() string {
	return cmd.render(true)
}

func (cmd Command) render(redact bool) string {
	parts := []string{cmd.Agent}
	for _, a := range cmd.Args {
		v := a.Value
		if redact && isSecret(a.Key) {
			v = "[hidden]"
		}
		if len(a.Key) == 1 {
			parts = append(parts, "-"+a.Key)
			if a.HasValue && a.Value != "" {
				parts = append(parts, shellQuote(v))
			}
			continue
		}
		if a.HasValue && a.Value != "" {
			parts = append(parts, "--"+a.Key+"="+shellQuote(v))
		} else {
			parts = append(parts, "--"+a.Key)
		}
	}
	return strings.Join(parts, " ")
}

// isSecret reports whether an argument's value must never be shown.
func isSecret(key string) bool {
	k := strings.ToLower(key)
	return k == "p" || strings.Contains(k, "pass") || strings.Contains(k, "secret") || strings.Contains(k, "community") ||
		strings.Contains(k, "token") || k == "snmp_priv_passwd"
}

// shellQuote quotes s for a POSIX shell as Perl's String::ShellQuote does:
// left alone when it holds only safe characters, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_!%+,-./:=@^", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	q := "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	q = strings.TrimPrefix(q, "''")
	q = strings.TrimSuffix(q, "''")
	return q
}
