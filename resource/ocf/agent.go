//go:build linux

package ocf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"haxd/ha"
	"haxd/resource"
)

// Type is the resource type this agent handles ("ocf:<name>" SIDs).
const Type = "ocf"

// OCF exit codes (ocf-returncodes).
const (
	RCSuccess        = 0 // OCF_SUCCESS
	RCErrGeneric     = 1 // OCF_ERR_GENERIC
	RCErrArgs        = 2 // OCF_ERR_ARGS
	RCUnimplemented  = 3 // OCF_ERR_UNIMPLEMENTED
	RCErrPerm        = 4 // OCF_ERR_PERM
	RCErrInstalled   = 5 // OCF_ERR_INSTALLED
	RCErrConfigured  = 6 // OCF_ERR_CONFIGURED
	RCNotRunning     = 7 // OCF_NOT_RUNNING
	RCRunningMaster  = 8 // OCF_RUNNING_MASTER
	RCFailedMaster   = 9 // OCF_FAILED_MASTER
	rcTimeout        = -1
	exitReasonPrefix = "ocf-exit-reason:"
)

// RCName returns the OCF name of an exit code ("OCF_NOT_RUNNING").
func RCName(rc int) string {
	switch rc {
	case RCSuccess:
		return "OCF_SUCCESS"
	case RCErrGeneric:
		return "OCF_ERR_GENERIC"
	case RCErrArgs:
		return "OCF_ERR_ARGS"
	case RCUnimplemented:
		return "OCF_ERR_UNIMPLEMENTED"
	case RCErrPerm:
		return "OCF_ERR_PERM"
	case RCErrInstalled:
		return "OCF_ERR_INSTALLED"
	case RCErrConfigured:
		return "OCF_ERR_CONFIGURED"
	case RCNotRunning:
		return "OCF_NOT_RUNNING"
	case RCRunningMaster:
		return "OCF_RUNNING_MASTER"
	case RCFailedMaster:
		return "OCF_FAILED_MASTER"
	}
	return "unknown"
}

// Config configures an Agent.
type Config struct {
	// Specs returns each service's spec. Required.
	Specs resource.SpecSource[Spec]
	// OCFRoot is OCF_ROOT, the directory holding resource.d/ and lib/.
	// Default /usr/lib/ocf (Debian's resource-agents).
	OCFRoot string
	// RunDir is HA_RSCTMP, where agents keep pid and state files. Default
	// /run/resource-agents. Created if missing.
	RunDir string
	// Logger receives the agent's log (and the agents' stderr at debug
	// level); nil discards it.
	Logger *slog.Logger
	// CgroupParent is an optional cgroup v2 directory; every action of a
	// resource then runs in the resource's own leaf below it,
	// <CgroupParent>/<escaped sid>, and so does everything the start
	// action leaves running (daemons that fork and setsid, as
	// ocf:heartbeat:anything does). Empty, or not a writable cgroup v2
	// directory: the actions run in their own process group only, which
	// daemonising processes leave.
	CgroupParent string
	// Fence puts the start action, and with it the resource's processes,
	// under the node's self-fence (see resource.Fence). Nil means
	// resource.NoFence.
	Fence resource.Fence
	// Node is this node's name, passed to every action as HAXD_NODE (as
	// exec services get it). Empty: not set.
	Node string
	// VarRun is HA_VARRUN, where agents such as ocf:heartbeat:anything
	// put their pid files by default. Empty: the agents' default
	// (/var/run). New empties RunDir and VarRun when the kernel's boot id
	// changed since it last ran (they must not survive a reboot: a stale
	// pid file names a pid that may be reused).
	VarRun string
}

// Agent is the ha.ResourceAgent for OCF resource agents.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	fence resource.Fence
}

var _ ha.ResourceAgent = (*Agent)(nil)

// New checks cfg and returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Specs == nil {
		return nil, errors.New("ocf agent: spec source: required")
	}
	if cfg.OCFRoot == "" {
		cfg.OCFRoot = "/usr/lib/ocf"
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/resource-agents"
	}
	if !filepath.IsAbs(cfg.OCFRoot) || !filepath.IsAbs(cfg.RunDir) || cfg.VarRun != "" && !filepath.IsAbs(cfg.VarRun) {
		return nil, fmt.Errorf("ocf agent: OCF root %q, run dir %q, var run %q: must be absolute paths", cfg.OCFRoot, cfg.RunDir, cfg.VarRun)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := cleanAfterReboot(cfg.RunDir, cfg.VarRun); err != nil {
		return nil, fmt.Errorf("ocf agent: %w", err)
	}
	a := &Agent{cfg: cfg, log: log, fence: cfg.Fence}
	if a.fence == nil {
		a.fence = resource.NoFence{}
	}
	if cfg.CgroupParent != "" {
		if err := resource.CheckCgroupParent(cfg.CgroupParent); err != nil {
			log.Warn("ocf agent: not using cgroups, resources are tracked by process group only", "err", err)
			a.cfg.CgroupParent = ""
		}
	}
	return a, nil
}

// cleanAfterReboot empties the given directories when the boot id
// recorded in runDir/.boot_id is not the kernel's current one, and records
// the current one.
func cleanAfterReboot(runDir, varRun string) error {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return fmt.Errorf("read boot id: %w", err)
	}
	boot := strings.TrimSpace(string(b))
	mark := filepath.Join(runDir, ".boot_id")
	old, err := os.ReadFile(mark)
	if err == nil && strings.TrimSpace(string(old)) == boot {
		return nil
	}
	// Without a record (first start, or an upgrade from a version that
	// kept none) nothing is known to be stale: keep what is there.
	for _, dir := range []string{runDir, varRun} {
		if err != nil {
			break
		}
		if dir == "" {
			continue
		}
		ents, rerr := os.ReadDir(dir)
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("clean %s after a reboot: %w", dir, rerr)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("clean %s after a reboot: %w", dir, err)
			}
		}
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if err := os.WriteFile(mark, []byte(boot+"\n"), 0o644); err != nil {
		return fmt.Errorf("record boot id: %w", err)
	}
	return nil
}

// leaf returns the cgroup of sid, creating it, or "" without cgroups.
func (a *Agent) leaf(sid ha.SID) string {
	if a.cfg.CgroupParent == "" {
		return ""
	}
	esc, err := resource.EscapeSID(sid)
	if err != nil {
		return ""
	}
	dir := filepath.Join(a.cfg.CgroupParent, esc)
	if err := resource.PrepareLeaf(dir); err != nil {
		a.log.Warn("ocf resource: cannot create its cgroup, using its process group only", ha.KeySID, string(sid), "cgroup", dir, "err", err)
		return ""
	}
	return dir
}

// result is the outcome of one agent action.
type result struct {
	rc     int    // exit code, rcTimeout when killed on timeout
	reason string // last ocf-exit-reason line
	output string // stdout and stderr, capped
}

// ActionError is the failure of one OCF action.
type ActionError struct {
	// Agent is "provider:type"; Action is "start", "stop" or "monitor".
	Agent, Action string
	// RC is the exit code (-1 when the action timed out).
	RC int
	// Reason is the agent's ocf-exit-reason, or its last output line.
	Reason string
	// Timeout is the action's timeout, set when it ran out.
	Timeout time.Duration
}

// Error returns e.g. "heartbeat:Dummy start: exit 1 (OCF_ERR_GENERIC): reason".
func (e *ActionError) Error() string {
	var s string
	if e.RC == rcTimeout {
		s = fmt.Sprintf("%s %s: timed out after %s", e.Agent, e.Action, e.Timeout)
	} else {
		s = fmt.Sprintf("%s %s: exit %d (%s)", e.Agent, e.Action, e.RC, RCName(e.RC))
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func (a *Agent) spec(ctx context.Context, sid ha.SID) (Spec, error) {
	raw, err := a.cfg.Specs.Spec(ctx, sid)
	if err != nil {
		return Spec{}, err
	}
	s, err := raw.Normalize()
	if err != nil {
		return Spec{}, fmt.Errorf("ocf spec: %w", err)
	}
	return s, nil
}

// run runs one action of the agent with the OCF environment, bounded by
// timeout. The script runs in its own process group and, with cgroups, in
// the resource's leaf cgroup; it is killed as a whole on timeout or when
// ctx ends; what it leaves running on success (the resource's daemons) is
// not touched. A start is admitted by the Fence before the spawn and
// confirmed after it, so the daemons it leaves are under the self-fence.
// Output goes to an unlinked temporary file, not a pipe, so a daemon
// holding it open cannot block the call.
func (a *Agent) run(ctx context.Context, sid ha.SID, spec Spec, action string, timeout time.Duration, extraEnv ...string) (result, error) {
	script := filepath.Join(a.cfg.OCFRoot, "resource.d", spec.Provider(), spec.Type())
	if _, err := os.Stat(script); err != nil {
		return result{}, fmt.Errorf("ocf agent %s: %w", spec.Agent, err)
	}
	envList, err := a.actionEnv(sid, spec, timeout, extraEnv)
	if err != nil {
		return result{}, err
	}
	out, err := os.CreateTemp("", "haxd-ocf-*")
	if err != nil {
		return result{}, fmt.Errorf("ocf %s: output file: %w", action, err)
	}
	_ = os.Remove(out.Name())
	defer out.Close()

	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	newCmd := func() *osexec.Cmd {
		cmd := osexec.CommandContext(actx, script, action)
		cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = envList, "/", out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		return cmd
	}
	cmd := newCmd()
	leaf := a.leaf(sid)
	if action == "start" {
		if err := a.fence.Admit(sid, leaf); err != nil {
			return result{}, fmt.Errorf("ocf %s start: not started: %w", spec.Agent, err)
		}
	}
	if leaf != "" {
		if fd, err := syscall.Open(leaf, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err == nil {
			defer syscall.Close(fd)
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = fd
		} else {
			leaf = ""
		}
	}
	runErr := cmd.Start()
	if runErr != nil && leaf != "" {
		// Cloning into the cgroup failed (kernel < 5.7): run the action
		// in its process group only.
		a.log.Warn("ocf action: cannot start in its cgroup, using its process group only", ha.KeySID, string(sid), "cgroup", leaf, "err", runErr)
		cmd, leaf = newCmd(), ""
		runErr = cmd.Start()
	}
	if runErr == nil && action == "start" {
		if err := a.fence.Spawned(sid, cmd.Process.Pid, leaf); err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			if leaf != "" {
				_ = os.WriteFile(filepath.Join(leaf, "cgroup.kill"), []byte("1"), 0)
			}
			_ = cmd.Wait()
			a.log.Error("ocf start killed at once: it could not be put under the self-fence", ha.KeySID, string(sid), "err", err)
			return result{}, fmt.Errorf("ocf %s start: killed: %w", spec.Agent, err)
		}
	}
	if runErr == nil {
		runErr = cmd.Wait()
	}

	res := readOutput(out)
	a.log.Debug("ocf action", ha.KeySID, string(sid), "agent", spec.Agent, "action", action, "output", strings.TrimSpace(res.output))
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		res.rc = rcTimeout
		return res, nil
	}
	var ee *osexec.ExitError
	switch {
	case runErr == nil:
		res.rc = 0
	case errors.As(runErr, &ee) && ee.Exited():
		res.rc = ee.ExitCode()
	default:
		return res, fmt.Errorf("ocf %s %s: %w", spec.Agent, action, runErr)
	}
	return res, nil
}

// actionEnv returns the environment of an action of sid, sorted: the OCF
// variables, the spec's parameters as OCF_RESKEY_*, then extraEnv. It
// creates the run directories the environment names.
func (a *Agent) actionEnv(sid ha.SID, spec Spec, timeout time.Duration, extraEnv []string) ([]string, error) {
	name := sid.Name()
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("instance name %q of %s: must be non-empty and without '/'", name, sid)
	}
	if err := os.MkdirAll(a.cfg.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run dir: %w", err)
	}
	env := map[string]string{
		"PATH":                         "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"OCF_ROOT":                     a.cfg.OCFRoot,
		"OCF_RA_VERSION_MAJOR":         "1",
		"OCF_RA_VERSION_MINOR":         "0",
		"OCF_RESOURCE_INSTANCE":        name,
		"OCF_RESOURCE_PROVIDER":        spec.Provider(),
		"OCF_RESOURCE_TYPE":            spec.Type(),
		"HA_RSCTMP":                    a.cfg.RunDir,
		"OCF_RESKEY_CRM_meta_timeout":  strconv.FormatInt(timeout.Milliseconds(), 10),
		"HAXD_SID":                     string(sid),
		"OCF_RESKEY_CRM_meta_interval": "0",
	}
	if a.cfg.Node != "" {
		env["HAXD_NODE"] = a.cfg.Node
	}
	if a.cfg.VarRun != "" {
		if err := os.MkdirAll(a.cfg.VarRun, 0o755); err != nil {
			return nil, fmt.Errorf("create var run dir: %w", err)
		}
		env["HA_VARRUN"] = a.cfg.VarRun
	}
	for k, v := range spec.Params {
		env["OCF_RESKEY_"+k] = v
	}
	for _, kv := range extraEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	envList := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	return envList, nil
}

// readOutput reads an action's output (its first 64 KiB) and the exit
// reason it printed, if any.
func readOutput(out *os.File) result {
	b := make([]byte, 64<<10)
	n, _ := out.ReadAt(b, 0)
	res := result{output: string(b[:n])}
	for _, l := range strings.Split(res.output, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), exitReasonPrefix); ok {
			res.reason = r
		}
	}
	return res
}

func (a *Agent) actionError(spec Spec, action string, res result, timeout time.Duration) *ActionError {
	e := &ActionError{Agent: spec.Agent, Action: action, RC: res.rc, Reason: res.reason}
	if res.rc == rcTimeout {
		e.Timeout = timeout
	}
	if e.Reason == "" {
		lines := strings.Split(strings.TrimSpace(res.output), "\n")
		e.Reason = strings.TrimSpace(lines[len(lines)-1])
	}
	return e
}

// Running runs the monitor action as a probe (interval 0). OCF_SUCCESS and
// OCF_RUNNING_MASTER mean running; OCF_NOT_RUNNING, and OCF_ERR_INSTALLED
// (the software is not even on this node), mean not running. Any other
// outcome is a failed resource that may still hold processes or addresses:
// Running then returns true with an *ActionError, so that a caller that
// ignores the error still stops it rather than starting it elsewhere.
func (a *Agent) Running(ctx context.Context, sid ha.SID) (bool, error) {
	spec, err := a.spec(ctx, sid)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	timeout := spec.MonitorTimeout.D()
	res, err := a.run(ctx, sid, spec, "monitor", timeout)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	switch res.rc {
	case RCSuccess, RCRunningMaster:
		return true, nil
	case RCNotRunning, RCErrInstalled:
		return false, nil
	}
	return true, fmt.Errorf("check %s: %w", sid, a.actionError(spec, "monitor", res, timeout))
}

// Start runs the start action.
func (a *Agent) Start(ctx context.Context, sid ha.SID) error {
	spec, err := a.spec(ctx, sid)
	if err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	timeout := spec.StartTimeout.D()
	res, err := a.run(ctx, sid, spec, "start", timeout)
	if err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	if res.rc != RCSuccess {
		return fmt.Errorf("start %s: %w", sid, a.actionError(spec, "start", res, timeout))
	}
	a.log.Info("ocf resource started", ha.KeySID, string(sid), "agent", spec.Agent)
	return nil
}

// Stop runs the stop action, bounded by timeout seconds (nil: the spec's
// stop timeout). OCF agents have no hard stop; a timeout of 0 is run with
// the spec's stop timeout too.
func (a *Agent) Stop(ctx context.Context, sid ha.SID, timeout *int) error {
	if timeout != nil && *timeout < 0 {
		return fmt.Errorf("stop %s: timeout %d: must not be negative", sid, *timeout)
	}
	spec, err := a.spec(ctx, sid)
	if err != nil {
		return fmt.Errorf("stop %s: %w", sid, err)
	}
	t := spec.StopTimeout.D()
	if timeout != nil && *timeout > 0 {
		t = time.Duration(*timeout) * time.Second
	}
	res, err := a.run(ctx, sid, spec, "stop", t)
	if err != nil {
		return fmt.Errorf("stop %s: %w", sid, err)
	}
	if res.rc != RCSuccess {
		return fmt.Errorf("stop %s: %w", sid, a.actionError(spec, "stop", res, t))
	}
	a.release(sid)
	a.log.Info("ocf resource stopped", ha.KeySID, string(sid), "agent", spec.Agent)
	return nil
}

// release forgets a stopped resource's cgroup: whatever still runs in it
// after a successful stop is a leftover of the resource and is killed,
// then the leaf is removed and unregistered.
func (a *Agent) release(sid ha.SID) {
	dir := ""
	if a.cfg.CgroupParent != "" {
		if esc, err := resource.EscapeSID(sid); err == nil {
			dir = filepath.Join(a.cfg.CgroupParent, esc)
		}
	}
	if dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			a.log.Warn("ocf resource stopped but left processes in its cgroup: killing them", ha.KeySID, string(sid), "cgroup", dir, "pids", strings.Fields(string(b)))
			_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		}
		for range 50 {
			if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a.fence.Released(sid, 0, dir)
}

// Migrate stops the resource here; the caller moves the location to target.
// OCF migrate_to/migrate_from are not used, so an online migration is done
// the same way.
func (a *Agent) Migrate(ctx context.Context, sid ha.SID, target string, online bool) error {
	if err := a.Stop(ctx, sid, nil); err != nil {
		return fmt.Errorf("migrate %s to %s: %w", sid, target, err)
	}
	return nil
}

// LiveMigratable reports false.
func (a *Agent) LiveMigratable() bool { return false }

// RemoveLocks returns "": OCF resources have no haxd resource locks.
func (a *Agent) RemoveLocks(ha.SID, []string) string { return "" }
