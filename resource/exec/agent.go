//go:build linux

package exec

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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"haxd/ha"
	"haxd/resource"
)

// Type is the resource type this agent handles ("exec:<name>" SIDs).
const Type = "exec"

// DefaultPath is the PATH of a service whose Env sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Hook is called with a service's process group (0 when only its cgroup is
// known) and cgroup directory ("" when it has none). Wire OnStart to the
// self-fencing guard's registration (fence.Client.Register with
// fence.PGID(pgid) and, when set, fence.Cgroup(cgroup)) so that the guard can
// kill every service when the node must fence itself, and OnStop to its
// unregistration, so that a stale process group id is not kept once the
// kernel may hand it out again. Hooks run synchronously on the calling
// goroutine and must not block for long.
type Hook func(sid ha.SID, pgid int, cgroup string)

// Config configures an Agent.
type Config struct {
	// StateDir holds one <sid>.state file (JSON) and one <sid>.log file (the
	// process's stdout and stderr, appended) per service. Required. Created
	// with mode 0700 if missing. It must outlive the agent process (a
	// restarted agent re-adopts services from it); a tmpfs such as
	// /run/haxd/exec is fine, since nothing survives a reboot anyway.
	StateDir string
	// CgroupParent is an optional cgroup v2 directory (e.g.
	// /sys/fs/cgroup/haxd.slice) under which each service gets its own
	// cgroup <CgroupParent>/<escaped sid>; Stop then also kills processes
	// that left the process group, with cgroup.kill. Empty: process groups
	// only. When it is set but not a writable cgroup v2 directory, New logs
	// a warning and the agent uses process groups only.
	CgroupParent string
	// Specs returns the spec of a service at Start. Required.
	Specs resource.SpecSource[Spec]
	// OnStart, if set, is called after a service was started and for every
	// running service Adopt finds.
	OnStart Hook
	// OnStop, if set, is called after a service was found stopped (by Stop,
	// or by Running/Start/Adopt cleaning up after a service that exited).
	OnStop Hook
	// Fence puts every process Start spawns under the node's self-fence
	// (see resource.Fence): Admit before the spawn, Spawned after it,
	// Released when the service was found stopped. Nil means
	// resource.NoFence.
	Fence resource.Fence
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// KillWait is how long Stop waits for the processes to vanish after
	// SIGKILL before it reports failure. Zero means 5 s.
	KillWait time.Duration
	// PollInterval is how often Stop and Start check process state while
	// they wait. Zero means 50 ms.
	PollInterval time.Duration
	// Now returns the current time, for the health check cache. Nil means
	// time.Now.
	Now func() time.Time
	// ProcRoot is the proc file system. Empty means /proc; tests only.
	ProcRoot string
}

// Agent is the ha.ResourceAgent for type "exec". Its methods may be called
// concurrently for different SIDs, never for the same SID (ha.ResourceAgent).
type Agent struct {
	cfg          Config
	log          *slog.Logger
	fence        resource.Fence
	bootID       string
	cgroupParent string // "" when cgroups are not used

	mu     sync.Mutex
	health map[ha.SID]healthResult
	// leftovers are the group members the last scan found for a service
	// whose leader is gone, so that the next check reads their stat
	// instead of scanning /proc again.
	leftovers map[ha.SID][]procStat

	// procScans counts the scans of every process in /proc (the costly
	// part of a probe), for tests.
	procScans atomic.Int64
}

// healthResult is the last health check result of one process.
type healthResult struct {
	pid   int
	start uint64
	at    time.Time
	err   error // nil: healthy
}

var _ ha.ResourceAgent = (*Agent)(nil)

// New checks cfg, creates the state directory and returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("exec agent: state dir: required")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("exec agent: state dir %q: must be an absolute path", cfg.StateDir)
	}
	if cfg.Specs == nil {
		return nil, errors.New("exec agent: spec source: required")
	}
	if cfg.KillWait < 0 || cfg.PollInterval < 0 {
		return nil, fmt.Errorf("exec agent: kill wait %s, poll interval %s: must not be negative", cfg.KillWait, cfg.PollInterval)
	}
	if cfg.KillWait == 0 {
		cfg.KillWait = 5 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("exec agent: create state dir: %w", err)
	}
	boot, err := readBootID(cfg.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("exec agent: %w", err)
	}
	a := &Agent{cfg: cfg, log: log, fence: cfg.Fence, bootID: boot, health: map[ha.SID]healthResult{}, leftovers: map[ha.SID][]procStat{}}
	if a.fence == nil {
		a.fence = resource.NoFence{}
	}
	if cfg.CgroupParent != "" {
		if err := resource.CheckCgroupParent(cfg.CgroupParent); err != nil {
			log.Warn("exec agent: not using cgroups, services are tracked by process group only", "err", err)
		} else {
			a.cgroupParent = cfg.CgroupParent
		}
	}
	return a, nil
}

// UsesCgroups reports whether services get their own cgroup.
func (a *Agent) UsesCgroups() bool { return a.cgroupParent != "" }

// LiveMigratable reports false: a process cannot move to another node while
// it runs.
func (a *Agent) LiveMigratable() bool { return false }

// RemoveLocks returns "": exec services have no resource locks.
func (a *Agent) RemoveLocks(ha.SID, []string) string { return "" }

// Migrate stops sid on this node and returns nil once it is stopped; the
// caller's store then moves the location to target, where the target's LRM
// starts it. exec services cannot move live, so an online migration is done
// the same way (like PVE's restart migration of containers).
func (a *Agent) Migrate(ctx context.Context, sid ha.SID, target string, online bool) error {
	if online {
		a.log.Debug("exec services are not live-migratable, stopping instead", ha.KeySID, string(sid), ha.KeyNode, target)
	}
	if err := a.Stop(ctx, sid, nil); err != nil {
		return fmt.Errorf("migrate %s to %s: %w", sid, target, err)
	}
	return nil
}

// liveness is what runs of one recorded service.
type liveness struct {
	leader  bool  // the recorded pid, with the recorded start time
	members []int // live processes of the service's process group
	cgroup  []int // live processes of the service's cgroup
}

func (l liveness) alive() bool { return l.leader || len(l.members) > 0 || len(l.cgroup) > 0 }

func (l liveness) pids() []int {
	out := slices.Concat(l.members, l.cgroup)
	slices.Sort(out)
	return slices.Compact(out)
}

// probe finds what of rec still runs. A pid counts only with the recorded
// start time and boot id. The process group counts only while its id is not
// the pid of a different process: the kernel does not hand out a pid while a
// process group of that id exists, so members of the group that started no
// earlier than the leader are the service's leftovers (e.g. the children of
// a shell that already exited). probe lists every process (members and
// cgroup), for signalling; probeAlive is the cheap check for Running.
func (a *Agent) probe(rec record) (liveness, error) { return a.probeMode(rec, false) }

// probeAlive reports what of rec runs, stopping at the first sign of life:
// a live leader (one read of its /proc/<pid>/stat) is enough, and a process
// group the kernel says is empty (kill(-pgid, 0) fails with ESRCH) needs no
// scan of /proc, nor does a leftover member the last scan found that still
// lives. Only a dead leader whose group still has processes, none of them
// known, costs a scan (and, when the group has no live member, the
// service's cgroup is read, as by probe). The liveness it returns has alive() right but may
// lack members: never signal from it.
func (a *Agent) probeAlive(rec record) (liveness, error) { return a.probeMode(rec, true) }

// probeMode is probe, or probeAlive when aliveOnly is set.
func (a *Agent) probeMode(rec record, aliveOnly bool) (liveness, error) {
	var l liveness
	if rec.BootID == a.bootID && rec.PID > 1 && rec.PGID > 1 {
		st, err := readProcStat(a.cfg.ProcRoot, rec.PID)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return l, err
		case st.start != rec.StartTicks:
			// The pid was reused: neither it nor its group is the service.
		default:
			l.leader = !st.dead()
		}
		if aliveOnly && l.leader {
			return l, nil
		}
		if err == nil && st.start == rec.StartTicks || errors.Is(err, fs.ErrNotExist) {
			members, err := a.groupMembers(rec, aliveOnly)
			if err != nil {
				return l, err
			}
			l.members = members
		}
	}
	if aliveOnly && len(l.members) > 0 {
		return l, nil
	}
	if rec.Cgroup != "" {
		pids, err := cgroupPids(rec.Cgroup)
		if err != nil {
			return l, err
		}
		for _, pid := range pids {
			st, err := readProcStat(a.cfg.ProcRoot, pid)
			if err == nil && !st.dead() {
				l.cgroup = append(l.cgroup, pid)
			}
		}
	}
	return l, nil
}

// groupMembers returns the live processes of rec's process group that
// started no earlier than its leader, by scanning /proc. With quick, it
// first asks the kernel whether the group has any process at all (signal 0
// to the group) and skips the scan when it has none, and then checks the
// members the last scan found: if one of them is still the same process
// (same start time) and a live member, that is enough to know the service
// runs. Only when none is does it scan again.
func (a *Agent) groupMembers(rec record, quick bool) ([]int, error) {
	if quick && a.cfg.ProcRoot == "/proc" {
		if err := syscall.Kill(-rec.PGID, 0); errors.Is(err, syscall.ESRCH) {
			return nil, nil
		}
		// Any other answer (nil, or EPERM for a group of another user)
		// means the group has processes: are they the service's live
		// leftovers?
	}
	member := func(p procStat) bool { return p.pgrp == rec.PGID && !p.dead() && p.start >= rec.StartTicks }
	if quick {
		a.mu.Lock()
		known := a.leftovers[rec.SID]
		a.mu.Unlock()
		var out []int
		for _, k := range known {
			st, err := readProcStat(a.cfg.ProcRoot, k.pid)
			if err == nil && st.start == k.start && member(st) {
				out = append(out, k.pid)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	a.procScans.Add(1)
	procs, err := allProcs(a.cfg.ProcRoot)
	if err != nil {
		return nil, err
	}
	var out []int
	var found []procStat
	for _, p := range procs {
		if member(p) {
			out = append(out, p.pid)
			found = append(found, p)
		}
	}
	a.mu.Lock()
	if len(found) > 0 {
		a.leftovers[rec.SID] = found
	} else {
		delete(a.leftovers, rec.SID)
	}
	a.mu.Unlock()
	return out, nil
}

// load returns the record of sid. Without a state file but with processes in
// the service's cgroup (the agent died between starting the process and
// writing the state), it returns a record for the cgroup alone.
func (a *Agent) load(sid ha.SID) (record, paths, bool, error) {
	p, err := a.paths(sid)
	if err != nil {
		return record{}, p, false, err
	}
	rec, ok, err := readRecord(p.state)
	if err != nil || ok {
		return rec, p, ok, err
	}
	if p.cgroup == "" {
		return record{}, p, false, nil
	}
	pids, err := cgroupPids(p.cgroup)
	if err != nil || len(pids) == 0 {
		return record{}, p, false, err
	}
	return record{Version: stateVersion, SID: sid, Cgroup: p.cgroup, Spec: Spec{}.WithDefaults()}, p, true, nil
}

// Running reports whether any process of sid runs on this node. With a
// health check, a running service whose check fails counts as not running;
// so that "not running" is true, Running then stops it (stop signal, stop
// timeout, SIGKILL) before it returns false. If that stop fails, Running
// returns true with the error.
func (a *Agent) Running(ctx context.Context, sid ha.SID) (bool, error) {
	rec, p, ok, err := a.load(sid)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	if !ok {
		return false, nil
	}
	live, err := a.probeAlive(rec)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	if !live.alive() {
		a.cleanup(sid, rec, p)
		return false, nil
	}
	if rec.Spec.HealthCommand == "" || rec.PID == 0 {
		return true, nil
	}
	herr, err := a.cachedHealth(ctx, rec)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", sid, err)
	}
	if herr == nil {
		return true, nil
	}
	a.log.Warn("exec service unhealthy, stopping it", ha.KeySID, string(sid), "pid", rec.PID, "err", herr)
	if err := a.stop(ctx, sid, rec, p, rec.Spec.StopTimeout.D()); err != nil {
		return true, fmt.Errorf("check %s: stop unhealthy service: %w", sid, err)
	}
	return false, nil
}

// Start starts sid unless it already runs, and returns once the process
// runs (and, with a health check, once the check passed).
func (a *Agent) Start(ctx context.Context, sid ha.SID) error {
	if err := a.start(ctx, sid); err != nil {
		return fmt.Errorf("start %s: %w", sid, err)
	}
	return nil
}

func (a *Agent) start(ctx context.Context, sid ha.SID) error {
	spec, p, running, err := a.startSpec(ctx, sid)
	if err != nil || running {
		return err
	}
	rec, err := a.launch(sid, spec, p)
	if err != nil {
		return err
	}
	if err := writeRecord(p.state, rec); err != nil {
		_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
		if rec.Cgroup != "" {
			_ = killCgroup(rec.Cgroup)
		}
		return err
	}
	if a.cfg.OnStart != nil {
		a.cfg.OnStart(sid, rec.PID, rec.Cgroup)
	}
	a.log.Info("exec service started", ha.KeySID, string(sid), "pid", rec.PID, "cgroup", rec.Cgroup, "log", p.log)
	if spec.HealthCommand == "" {
		return nil
	}
	if err := a.waitHealthy(ctx, rec); err != nil {
		// Leave nothing behind: a start that failed must not keep running.
		grace := spec.StopTimeout.D()
		if ctx.Err() != nil {
			grace = 0
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+a.cfg.KillWait+time.Second)
		defer cancel()
		if serr := a.stop(stopCtx, sid, rec, p, grace); serr != nil {
			return fmt.Errorf("%w; stop again: %w", err, serr)
		}
		return err
	}
	return nil
}

// startSpec reads and normalises the spec of sid and its paths, and
// reports whether the service already runs. A dead previous run is
// cleaned up.
func (a *Agent) startSpec(ctx context.Context, sid ha.SID) (Spec, paths, bool, error) {
	raw, err := a.cfg.Specs.Spec(ctx, sid)
	if err != nil {
		return Spec{}, paths{}, false, err
	}
	spec, err := raw.Normalize()
	if err != nil {
		return Spec{}, paths{}, false, fmt.Errorf("exec spec: %w", err)
	}
	rec, p, ok, err := a.load(sid)
	if err != nil {
		return Spec{}, paths{}, false, err
	}
	if ok {
		live, err := a.probeAlive(rec)
		if err != nil {
			return Spec{}, paths{}, false, err
		}
		if live.alive() {
			a.log.Debug("exec service already running", ha.KeySID, string(sid), "pid", rec.PID, "leader_alive", live.leader)
			return spec, p, true, nil
		}
		a.cleanup(sid, rec, p)
	}
	return spec, p, false, ctx.Err()
}

// launch admits, spawns and puts sid's process under the self-fence, and
// returns its record (not yet written). A process the fence refused, or
// one that exited at once leaving nothing behind, is an error.
func (a *Agent) launch(sid ha.SID, spec Spec, p paths) (record, error) {
	if fi, err := os.Stat(spec.Dir); err != nil {
		return record{}, fmt.Errorf("dir: %w", err)
	} else if !fi.IsDir() {
		return record{}, fmt.Errorf("dir %s: not a directory", spec.Dir)
	}
	env := serviceEnv(sid, spec)
	path, err := lookPath(spec.Command, env)
	if err != nil {
		return record{}, fmt.Errorf("command: %w", err)
	}
	logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return record{}, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "haxd %s: starting %s: %s\n", a.cfg.Now().UTC().Format(time.RFC3339), sid,
		strings.Join(slices.Concat([]string{path}, spec.Args), " "))

	leaf := p.cgroup
	if leaf != "" {
		if err := resource.PrepareLeaf(leaf); err != nil {
			a.log.Warn("exec service: cannot create cgroup, using its process group only", ha.KeySID, string(sid), "cgroup", leaf, "err", err)
			leaf = ""
		}
	}
	if err := a.fence.Admit(sid, leaf); err != nil {
		if leaf != "" {
			_ = os.Remove(leaf)
		}
		return record{}, fmt.Errorf("not started: %w", err)
	}
	cmd, cgroup, err := a.spawn(spec, path, env, logf, leaf)
	if err != nil {
		a.fence.Released(sid, 0, leaf)
		return record{}, err
	}
	pid := cmd.Process.Pid
	if err := a.fence.Spawned(sid, pid, cgroup); err != nil {
		killRefused(cmd, cgroup)
		a.log.Error("exec service killed at once: it could not be put under the self-fence", ha.KeySID, string(sid), "pid", pid, "err", err)
		return record{}, fmt.Errorf("process %d killed: %w", pid, err)
	}
	// Read the start time before reaping: until then even a process that
	// already exited keeps its /proc entry (as a zombie).
	st, statErr := readProcStat(a.cfg.ProcRoot, pid)
	exited := make(chan error, 1)
	go func() {
		// Reap our child; a later agent adopts it by pid instead.
		err := cmd.Wait()
		exited <- err
		a.log.Info("exec service process exited", ha.KeySID, string(sid), "pid", pid, "status", exitStatus(err))
	}()
	if statErr != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return record{}, fmt.Errorf("process %d: %w", pid, statErr)
	}
	rec := record{
		Version:    stateVersion,
		SID:        sid,
		PID:        pid,
		PGID:       pid,
		StartTicks: st.start,
		BootID:     a.bootID,
		Cgroup:     cgroup,
		Log:        p.log,
		StartedAt:  a.cfg.Now().UTC(),
		Spec:       spec,
	}
	if st.dead() {
		// The process exited at once. It still counts as started when it
		// left processes behind (a daemon that forked into the background).
		live, err := a.probe(rec)
		if err != nil {
			return record{}, err
		}
		if !live.alive() {
			if cgroup != "" {
				_ = os.Remove(cgroup)
			}
			a.fence.Released(sid, pid, cgroup)
			return record{}, fmt.Errorf("process %d exited at once (%s), see %s", pid, exitStatus(<-exited), p.log)
		}
	}
	return rec, nil
}

// killRefused kills and reaps a process the self-fence refused, and
// empties its cgroup: nothing of a refused start outlives the call.
func killRefused(cmd *osexec.Cmd, cgroup string) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if cgroup != "" {
		_ = killCgroup(cgroup)
	}
	_ = cmd.Wait()
	if cgroup == "" {
		return
	}
	// A child forked while the kill ran may still sit in the leaf: kill
	// until it is empty (bounded).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if pids, err := cgroupPids(cgroup); err != nil || len(pids) == 0 {
			return
		}
		_ = killCgroup(cgroup)
	}
}

// spawn starts the process in a new session (so its own process group, with
// no controlling terminal and no parent-death signal: it survives the agent)
// and, when cgroupDir (an existing cgroup) is set, in that cgroup. It
// returns the cgroup actually used.
func (a *Agent) spawn(spec Spec, path string, env []string, logf *os.File, cgroupDir string) (*osexec.Cmd, string, error) {
	newCmd := func() *osexec.Cmd {
		return &osexec.Cmd{
			Path:        path,
			Args:        slices.Concat([]string{spec.Command}, spec.Args),
			Env:         env,
			Dir:         spec.Dir,
			Stdout:      logf,
			Stderr:      logf,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
	}
	if cgroupDir == "" {
		cmd := newCmd()
		if err := cmd.Start(); err != nil {
			return nil, "", fmt.Errorf("run %s: %w", path, err)
		}
		return cmd, "", nil
	}
	// Preferred: clone the process straight into the cgroup, so not even
	// its first fork escapes it.
	if fd, err := syscall.Open(cgroupDir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err == nil {
		cmd := newCmd()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		err := cmd.Start()
		_ = syscall.Close(fd)
		if err == nil {
			return cmd, cgroupDir, nil
		}
		a.log.Debug("exec service: clone into cgroup failed, moving the process after start", "cgroup", cgroupDir, "err", err)
	}
	cmd := newCmd()
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("run %s: %w", path, err)
	}
	if err := os.WriteFile(filepath.Join(cgroupDir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		a.log.Warn("exec service: cannot move the process into its cgroup, using its process group only", "cgroup", cgroupDir, "err", err)
		return cmd, "", nil
	}
	return cmd, cgroupDir, nil
}

// Stop stops sid: the stop signal to its process group (and every process
// of its cgroup), up to timeout seconds of grace (nil: the spec's stop
// timeout; 0: none), then SIGKILL. It returns nil once nothing of sid runs,
// and removes the state file. A cancelled ctx cuts the grace short: Stop
// then sends SIGKILL and returns the context's error without waiting.
func (a *Agent) Stop(ctx context.Context, sid ha.SID, timeout *int) error {
	if timeout != nil && *timeout < 0 {
		return fmt.Errorf("stop %s: timeout %d: must not be negative", sid, *timeout)
	}
	rec, p, ok, err := a.load(sid)
	if err != nil {
		return fmt.Errorf("stop %s: %w", sid, err)
	}
	if !ok {
		return nil
	}
	grace := rec.Spec.StopTimeout.D()
	if timeout != nil {
		grace = time.Duration(*timeout) * time.Second
	}
	if err := a.stop(ctx, sid, rec, p, grace); err != nil {
		return fmt.Errorf("stop %s: %w", sid, err)
	}
	return nil
}

func (a *Agent) stop(ctx context.Context, sid ha.SID, rec record, p paths, grace time.Duration) error {
	live, err := a.probe(rec)
	if err != nil {
		return err
	}
	if !live.alive() {
		a.cleanup(sid, rec, p)
		return nil
	}
	if grace > 0 {
		sig, err := ParseSignal(rec.Spec.StopSignal)
		if err != nil {
			sig = syscall.SIGTERM
		}
		a.log.Info("stopping exec service", ha.KeySID, string(sid), "signal", SignalName(sig), "timeout", grace, "pids", live.pids())
		a.signal(rec, live, sig)
		// Processes forked after the first signal get it once too; none
		// gets it twice (a second SIGINT means "quit now" to many programs).
		sent := map[int]bool{}
		for _, pid := range live.pids() {
			sent[pid] = true
		}
		gone, err := a.waitGone(ctx, rec, grace, func(l liveness) {
			for _, pid := range l.pids() {
				if !sent[pid] {
					sent[pid] = true
					_ = syscall.Kill(pid, sig)
				}
			}
		})
		if err != nil {
			if ctx.Err() != nil {
				a.killNow(rec)
			}
			return err
		}
		if gone {
			a.cleanup(sid, rec, p)
			return nil
		}
		a.log.Warn("exec service did not stop in time, sending SIGKILL", ha.KeySID, string(sid), "timeout", grace)
	} else {
		a.log.Info("killing exec service", ha.KeySID, string(sid), "pids", live.pids())
	}
	a.killNow(rec)
	gone, err := a.waitGone(ctx, rec, a.cfg.KillWait, func(liveness) { a.killNow(rec) })
	if err != nil {
		return err
	}
	if !gone {
		live, _ := a.probe(rec)
		return fmt.Errorf("processes %v still alive %s after SIGKILL", live.pids(), a.cfg.KillWait)
	}
	a.cleanup(sid, rec, p)
	return nil
}

// signal sends sig to the process group (while it has members) and to every
// process of the cgroup outside the group.
func (a *Agent) signal(rec record, live liveness, sig syscall.Signal) {
	if (live.leader || len(live.members) > 0) && rec.PGID > 1 && rec.PGID != syscall.Getpgrp() {
		if err := syscall.Kill(-rec.PGID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			a.log.Warn("signal exec service", ha.KeySID, string(rec.SID), "pgid", rec.PGID, "signal", SignalName(sig), "err", err)
		}
	}
	for _, pid := range live.cgroup {
		if !slices.Contains(live.members, pid) {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// killNow SIGKILLs everything of rec at once: cgroup.kill when the cgroup has
// one, then the process group and every cgroup member.
func (a *Agent) killNow(rec record) {
	if rec.Cgroup != "" {
		if err := killCgroup(rec.Cgroup); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Debug("cgroup.kill", "cgroup", rec.Cgroup, "err", err)
		}
	}
	live, err := a.probe(rec)
	if err != nil {
		a.log.Warn("probe exec service for SIGKILL", ha.KeySID, string(rec.SID), "err", err)
		return
	}
	a.signal(rec, live, syscall.SIGKILL)
}

// killCgroup writes "1" to cgroup.kill (Linux 5.14+).
func killCgroup(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// waitGone polls until nothing of rec runs (true), d has passed (false) or
// ctx is done (its error). resend is called on every poll with what still
// runs, to reach processes forked after the first signal.
func (a *Agent) waitGone(ctx context.Context, rec record, d time.Duration, resend func(liveness)) (bool, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(a.cfg.PollInterval)
	defer tick.Stop()
	for {
		live, err := a.probe(rec)
		if err != nil {
			return false, err
		}
		if !live.alive() {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			return false, nil
		case <-tick.C:
			if live, err := a.probe(rec); err == nil && live.alive() {
				resend(live)
			}
		}
	}
}

// cleanup forgets a service that no longer runs: state file, cgroup
// directory, health cache, and the OnStop hook.
func (a *Agent) cleanup(sid ha.SID, rec record, p paths) {
	if rec.Cgroup != "" {
		if err := os.Remove(rec.Cgroup); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Debug("remove cgroup", ha.KeySID, string(sid), "cgroup", rec.Cgroup, "err", err)
		}
	}
	if err := os.Remove(p.state); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("remove state file", ha.KeySID, string(sid), "err", err)
	}
	a.mu.Lock()
	delete(a.health, sid)
	delete(a.leftovers, sid)
	a.mu.Unlock()
	a.fence.Released(sid, rec.PGID, rec.Cgroup)
	if a.cfg.OnStop != nil {
		a.cfg.OnStop(sid, rec.PGID, rec.Cgroup)
	}
}

// Service describes a service recorded in the state directory.
type Service struct {
	// SID is the service.
	SID ha.SID
	// PID is the process the agent started (0 if only its cgroup is known).
	PID int
	// PGID is its process group.
	PGID int
	// Cgroup is its cgroup directory, or "".
	Cgroup string
	// Log is the file holding its stdout and stderr.
	Log string
	// StartedAt is when it was started.
	StartedAt time.Time
	// PIDs are the live processes of the service.
	PIDs []int
}

// Adopt scans the state directory after an agent (re)start: it calls OnStart
// for every recorded service that still runs and returns them sorted by SID,
// and forgets the ones that no longer run. The health check is not run.
func (a *Agent) Adopt(ctx context.Context) ([]Service, error) {
	files, err := stateFiles(a.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	var out []Service
	var errs []error
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("adopt: %w", err)
		}
		rec, ok, err := readRecord(f)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		p, err := a.paths(rec.SID)
		if err != nil || p.state != f {
			errs = append(errs, fmt.Errorf("state file %s: records service %q", f, rec.SID))
			continue
		}
		live, err := a.probe(rec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rec.SID, err))
			continue
		}
		if !live.alive() {
			a.log.Info("exec service no longer running, forgetting it", ha.KeySID, string(rec.SID), "pid", rec.PID)
			a.cleanup(rec.SID, rec, p)
			continue
		}
		a.log.Info("adopted running exec service", ha.KeySID, string(rec.SID), "pid", rec.PID, "pids", live.pids())
		if a.cfg.OnStart != nil {
			a.cfg.OnStart(rec.SID, rec.PGID, rec.Cgroup)
		}
		out = append(out, Service{SID: rec.SID, PID: rec.PID, PGID: rec.PGID, Cgroup: rec.Cgroup, Log: rec.Log, StartedAt: rec.StartedAt, PIDs: live.pids()})
	}
	slices.SortFunc(out, func(x, y Service) int { return strings.Compare(string(x.SID), string(y.SID)) })
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("adopt: %w", err)
	}
	return out, nil
}

// KillAll SIGKILLs every recorded service (and, with cgroups, every
// service cgroup under the parent) at once, without grace and without
// waiting: the self-fence path when the agent lock is lost. It takes
// no locks, so it may run while workers run; a Start racing with it is
// refused by the Fence (Admit) or killed by it (Spawned). State files
// stay; the next Running or Stop cleans them up.
func (a *Agent) KillAll() error {
	files, err := stateFiles(a.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("kill all: %w", err)
	}
	var errs []error
	for _, f := range files {
		rec, ok, err := readRecord(f)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		a.log.Warn("killing exec service", ha.KeySID, string(rec.SID), "pgid", rec.PGID)
		a.killNow(rec)
	}
	if a.cgroupParent != "" {
		// Also services whose state file was never written: every service
		// cgroup has an escaped SID, hence "%3A", in its name.
		ents, err := os.ReadDir(a.cgroupParent)
		if err != nil {
			errs = append(errs, err)
		}
		for _, e := range ents {
			if e.IsDir() && strings.Contains(e.Name(), "%3A") {
				if err := killCgroup(filepath.Join(a.cgroupParent, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kill all: %w", err)
	}
	return nil
}

// serviceEnv returns the sorted environment of a service: PATH, HAXD_SID and
// the spec's variables (which may override PATH).
func serviceEnv(sid ha.SID, spec Spec) []string {
	m := map[string]string{"PATH": DefaultPath, "HAXD_SID": string(sid)}
	maps.Copy(m, spec.Env)
	env := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		env = append(env, k+"="+m[k])
	}
	return env
}

// lookPath resolves a command like a shell would with the PATH of env.
func lookPath(command string, env []string) (string, error) {
	if strings.Contains(command, "/") {
		p, err := osexec.LookPath(command)
		if err != nil {
			return "", fmt.Errorf("%q: %w", command, err)
		}
		return p, nil
	}
	path := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p, err := osexec.LookPath(filepath.Join(dir, command)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: not found in PATH %s", command, path)
}

// exitStatus describes how a process ended.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + SignalName(ws.Signal())
		}
		return ee.Error()
	}
	return err.Error()
}
