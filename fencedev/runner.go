package fencedev

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"haxd/clock"
	"haxd/ha"
)

// Options configure a Runner. Start from DefaultOptions; Validate rejects
// nonsense. docs/configuration.md documents each as an agent config field.
type Options struct {
	// AgentDir is the directory of the fence agents (Debian's fence-agents
	// installs them in /usr/sbin). Default /usr/sbin.
	AgentDir string
	// CallTimeout bounds one agent call (`action=off` or one
	// `action=status`); the agent's process group is killed when it
	// passes. Default 20s, fence-agents' own power timeout.
	CallTimeout time.Duration
	// Retries is how many times a sub-device's whole off-and-confirm
	// sequence is tried again after it failed, before its level counts as
	// failed (Pacemaker's pcmk_off_retries). Default 2; 0 tries once.
	Retries int
	// RetryDelay is the pause before a retry. Default 1s.
	RetryDelay time.Duration
	// StatusInterval is the pause between two `action=status` calls while
	// the plug is not reported off yet. Default 500ms.
	StatusInterval time.Duration
	// ConfirmTimeout bounds how long a sub-device may take, after its
	// `action=off` succeeded, to report the plug off. Default 30s.
	ConfirmTimeout time.Duration
}

// DefaultOptions returns the default options.
func DefaultOptions() Options {
	return Options{
		AgentDir:       "/usr/sbin",
		CallTimeout:    20 * time.Second,
		Retries:        2,
		RetryDelay:     time.Second,
		StatusInterval: 500 * time.Millisecond,
		ConfirmTimeout: 30 * time.Second,
	}
}

// Validate rejects options that cannot work.
func (o Options) Validate() error {
	switch {
	case o.AgentDir == "" || !filepath.IsAbs(o.AgentDir):
		return fmt.Errorf("fence options: agent dir %q: want an absolute path", o.AgentDir)
	case o.CallTimeout <= 0:
		return fmt.Errorf("fence options: call timeout %v: want > 0", o.CallTimeout)
	case o.Retries < 0:
		return fmt.Errorf("fence options: retries %d: want >= 0", o.Retries)
	case o.RetryDelay < 0:
		return fmt.Errorf("fence options: retry delay %v: want >= 0", o.RetryDelay)
	case o.StatusInterval <= 0:
		return fmt.Errorf("fence options: status interval %v: want > 0", o.StatusInterval)
	case o.ConfirmTimeout <= 0:
		return fmt.Errorf("fence options: confirm timeout %v: want > 0", o.ConfirmTimeout)
	}
	return nil
}

// Result is the outcome of fencing one node.
type Result struct {
	// Node is the fenced node.
	Node string
	// Confirmed is true when a level's every sub-device reported the node's
	// plug off: the node is powered off.
	Confirmed bool
	// Device names the level (device name) that confirmed.
	Device string
	// Time is when the last sub-device of that level reported off.
	Time time.Time
	// Err says why no level confirmed; nil when Confirmed.
	Err error
}

// ErrNotConnected is returned for a node no device is connected to.
var ErrNotConnected = errors.New("no fence device connected")

// Runner fences nodes through the fence agents of a Config. It is safe for
// concurrent use.
type Runner struct {
	cfg   *Config
	opts  Options
	log   *slog.Logger
	clock clock.Clock

	mu sync.Mutex
	// short maps an agent to its one-letter options' long names, from the
	// agent's metadata (read once).
	short map[string]map[string]string
}

// NewRunner checks that every agent of cfg exists in opts.AgentDir and
// returns a Runner. A configured `action` argument is ignored (logged
// once): haxd always powers off and confirms with status, the only
// sequence that proves the node is off. clk times the confirmation
// deadline and the pauses between calls; nil means clock.System.
func NewRunner(cfg *Config, opts Options, clk clock.Clock, log *slog.Logger) (*Runner, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.System{}
	}
	for _, dev := range cfg.Levels() {
		for _, num := range slices.Sorted(maps.Keys(dev.Subs)) {
			sub := dev.Subs[num]
			path := filepath.Join(opts.AgentDir, sub.Agent)
			if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return nil, fmt.Errorf("fence device '%s:%d' (line %d): agent %s is not an executable file", dev.Name, num, sub.Line, path)
			}
			for _, a := range sub.Args {
				if a.Key == "action" && a.Value != "off" {
					log.Warn("fence device action ignored: haxd always sends action=off and confirms with action=status",
						"device", fmt.Sprintf("%s:%d", dev.Name, num), "action", a.Value)
				}
			}
		}
	}
	return &Runner{cfg: cfg, opts: opts, log: log, clock: clk, short: map[string]map[string]string{}}, nil
}

// Connected reports whether any device is connected to node.
func (r *Runner) Connected(node string) bool { return len(r.cfg.NodeLevels(node)) > 0 }

// Fence powers node off: it tries each level of devices in order and stops
// at the first that confirms the node off. It blocks until then, until
// every level failed, or until ctx ends.
func (r *Runner) Fence(ctx context.Context, node string) Result {
	levels := r.cfg.NodeLevels(node)
	if len(levels) == 0 {
		return Result{Node: node, Err: fmt.Errorf("fence node %s: %w", node, ErrNotConnected)}
	}
	var errs []error
	for i, level := range levels {
		name, _, _ := strings.Cut(level[0].Device, ":")
		t, err := r.level(ctx, node, level)
		if err == nil {
			r.log.Info("fence device confirmed the node off", ha.KeyNode, node, "device", name, "level", i)
			return Result{Node: node, Confirmed: true, Device: name, Time: t}
		}
		errs = append(errs, fmt.Errorf("level %d (device %s): %w", i, name, err))
		if ctx.Err() != nil {
			break
		}
		if i+1 < len(levels) {
			r.log.Warn("fence level failed, trying the next", ha.KeyNode, node, "device", name, "level", i, "err", err)
		}
	}
	err := fmt.Errorf("fence node %s: no device confirmed it off: %w", node, errors.Join(errs...))
	if ctx.Err() != nil {
		r.log.Info("fencing through devices stopped", ha.KeyNode, node, "why", context.Cause(ctx))
	} else {
		r.log.Warn("fencing through devices failed", ha.KeyNode, node, "err", err)
	}
	return Result{Node: node, Err: err}
}

// level runs every command of one level in parallel; all must confirm.
func (r *Runner) level(ctx context.Context, node string, cmds []Command) (time.Time, error) {
	type out struct {
		t   time.Time
		err error
	}
	outs := make([]out, len(cmds))
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := r.device(ctx, node, c)
			outs[i] = out{t, err}
		}()
	}
	wg.Wait()
	var last time.Time
	var errs []error
	for i, o := range outs {
		if o.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cmds[i].Device, o.err))
		} else if o.t.After(last) {
			last = o.t
		}
	}
	return last, errors.Join(errs...)
}

// device runs the off-and-confirm sequence of one sub-device, with retries.
func (r *Runner) device(ctx context.Context, node string, c Command) (time.Time, error) {
	var err error
	for attempt := 0; attempt <= r.opts.Retries; attempt++ {
		if attempt > 0 {
			r.log.Info("retrying fence device", ha.KeyNode, node, "device", c.Device, "attempt", attempt+1, "after", r.opts.RetryDelay, "err", err)
			if serr := r.sleep(ctx, r.opts.RetryDelay); serr != nil {
				return time.Time{}, errors.Join(err, serr)
			}
		}
		var t time.Time
		if t, err = r.offAndConfirm(ctx, node, c); err == nil {
			return t, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return time.Time{}, err
}

// offAndConfirm sends action=off, then action=status until the agent
// reports the plug off or ConfirmTimeout passes.
func (r *Runner) offAndConfirm(ctx context.Context, node string, c Command) (time.Time, error) {
	res := r.call(ctx, c, "off")
	if res.err != nil || res.exit != 0 {
		return time.Time{}, fmt.Errorf("action=off: %s", res.describe())
	}
	r.log.Debug("fence agent powered off", ha.KeyNode, node, "device", c.Device)
	deadline := r.clock.Now().Add(r.opts.ConfirmTimeout)
	for {
		st := r.call(ctx, c, "status")
		if st.off() {
			return r.clock.Now(), nil
		}
		if !r.clock.Now().Before(deadline) {
			return time.Time{}, fmt.Errorf("action=status did not report off within %v: last %s", r.opts.ConfirmTimeout, st.describe())
		}
		if err := r.sleep(ctx, r.opts.StatusInterval); err != nil {
			return time.Time{}, fmt.Errorf("confirm off: %w", err)
		}
	}
}

// sleep waits d on the Runner's clock, or until ctx ends.
func (r *Runner) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// callResult is one agent call's outcome.
type callResult struct {
	exit   int
	output string // stdout and stderr, secrets redacted
	err    error  // the call could not run or timed out
}

// off reports whether a status call said the plug is off: fence-agents
// exit with 2 and print "Status: OFF".
func (c callResult) off() bool {
	return c.err == nil && c.exit == 2 && statusOffRe.MatchString(c.output)
}

var statusOffRe = regexp.MustCompile(`(?mi)^Status: OFF\s*$`)

func (c callResult) describe() string {
	out := strings.TrimSpace(c.output)
	if len(out) > 300 {
		out = "..." + out[len(out)-300:]
	}
	out = strings.ReplaceAll(out, "\n", " | ")
	if c.err != nil {
		return fmt.Sprintf("%v (output: %q)", c.err, out)
	}
	return fmt.Sprintf("exit %d (output: %q)", c.exit, out)
}

// maxOutput bounds the output kept of one agent call.
const maxOutput = 64 << 10

// call runs agent action for c with the stdin protocol.
func (r *Runner) call(ctx context.Context, c Command, action string) callResult {
	path := filepath.Join(r.opts.AgentDir, c.Agent)
	short, err := r.shortOptions(ctx, path, c)
	if err != nil {
		return callResult{err: err}
	}
	lines, err := stdinLines(c.Args, short)
	if err != nil {
		return callResult{err: err}
	}
	stdin := "action=" + action + "\n" + strings.Join(lines, "\n") + "\n"
	exit, out, err := r.run(ctx, path, []string{}, stdin)
	return callResult{exit: exit, output: redact(out, c.Args), err: err}
}

// run executes path with args and stdin in its own process group, bounded
// by CallTimeout; on timeout the whole group is killed.
func (r *Runner) run(ctx context.Context, path string, args []string, stdin string) (int, string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return nil
	}
	cmd.WaitDelay = time.Second
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "PYTHONWARNINGS=ignore"}
	err := cmd.Run()
	if cctx.Err() != nil && ctx.Err() == nil {
		return -1, out.String(), fmt.Errorf("%s timed out after %v", filepath.Base(path), r.opts.CallTimeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), nil
	}
	if err != nil {
		return -1, out.String(), fmt.Errorf("run %s: %w", filepath.Base(path), err)
	}
	return 0, out.String(), nil
}

// shortOptions returns the long names of an agent's one-letter options,
// read once from `agent -o metadata`, when c uses any.
func (r *Runner) shortOptions(ctx context.Context, path string, c Command) (map[string]string, error) {
	if !slices.ContainsFunc(c.Args, func(a Arg) bool { return len(a.Key) == 1 }) {
		return nil, nil
	}
	r.mu.Lock()
	m, ok := r.short[c.Agent]
	r.mu.Unlock()
	if ok {
		return m, nil
	}
	exit, out, err := r.run(ctx, path, []string{"-o", "metadata"}, "")
	if err != nil || exit != 0 {
		return nil, fmt.Errorf("read metadata of %s for its short options: exit %d: %v", c.Agent, exit, err)
	}
	m, err = parseMetadata([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", c.Agent, err)
	}
	r.mu.Lock()
	r.short[c.Agent] = m
	r.mu.Unlock()
	return m, nil
}

// parseMetadata maps one-letter options to parameter names from a fence
// agent's XML metadata (`<parameter name="ip"><getopt mixed="-a, --ip=[ip]"/>`).
func parseMetadata(b []byte) (map[string]string, error) {
	var doc struct {
		Parameters []struct {
			Name   string `xml:"name,attr"`
			Getopt struct {
				Mixed string `xml:"mixed,attr"`
			} `xml:"getopt"`
		} `xml:"parameters>parameter"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode metadata XML: %w", err)
	}
	m := map[string]string{}
	for _, p := range doc.Parameters {
		for _, f := range strings.Split(p.Getopt.Mixed, ",") {
			f = strings.TrimSpace(f)
			if len(f) >= 2 && f[0] == '-' && f[1] != '-' {
				m[f[1:2]] = p.Name
			}
		}
	}
	return m, nil
}

// stdinLines renders args as fence-agents stdin lines: `key=value`, a
// flag as `key=1`. A configured action is left out (the runner sends its
// own first). One-letter keys are replaced by their long name from short.
func stdinLines(args []Arg, short map[string]string) ([]string, error) {
	var lines []string
	for _, a := range args {
		key := a.Key
		if len(key) == 1 {
			long, ok := short[key]
			if !ok {
				return nil, fmt.Errorf("short option -%s: the agent's metadata names no such option", key)
			}
			key = long
		}
		if key == "action" {
			continue
		}
		v := a.Value
		if !a.HasValue || v == "" {
			v = "1"
		}
		if strings.ContainsAny(v, "\n\r") || strings.ContainsAny(key, "\n\r=") {
			return nil, fmt.Errorf("argument %q: line break in key or value", key)
		}
		lines = append(lines, key+"="+v)
	}
	return lines, nil
}

// redact replaces the value of every secret argument in s.
func redact(s string, args []Arg) string {
	for _, a := range args {
		if isSecret(a.Key) && a.Value != "" {
			s = strings.ReplaceAll(s, a.Value, "[hidden]")
		}
	}
	return s
}

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
