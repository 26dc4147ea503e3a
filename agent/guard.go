package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"haxd/clock"
	"haxd/fence"
	"haxd/ha"
	"haxd/resource"
)

// guardClient is the part of *fence.Client the agent uses; tests fake it.
type guardClient interface {
	Feed(expiry int64) error
	Register(t fence.Target) error
	Unregister(t fence.Target) error
	CheckTimeout(want time.Duration) error
	Close() error
	Abandon()
}

// guardOpener opens (arms) a guard handle with the given expiry.
type guardOpener func(ctx context.Context, expiry int64) (guardClient, error)

// fencer is the agent's side of self-fencing. It holds the LRM's guard
// handle, feeds it while the agent lock is valid, admits the spawn of
// every service process (resource.Fence), and keeps its own list of every
// cgroup and process group of every service it started or adopted,
// independent of the guard handle: when the guard fenced, when the guard
// could not register a process, or when the lock lapsed and the guard did
// not act, the agent kills that list itself. A fenced node starts nothing
// until its LRM opens a fresh handle after a successful lock renewal, as a
// rebooted node would.
type fencer struct {
	log    *slog.Logger
	timing *ha.Timing
	open   guardOpener
	// clock times the feeds; its Mono is CLOCK_MONOTONIC, the clock of
	// expiry: the end of the agent lock's validity (for lock_validity = 0:
	// the send time of the last acknowledged renewal).
	clock  clock.Clock
	expiry func() int64
	// kill SIGKILLs one target; gone reports a process group with no
	// process left (its id may be reused: it is dropped, never killed).
	kill    func(fence.Target) error
	gone    func(fence.Target) bool
	killAll func() error // exec's KillAll (state files); may be nil
	// fed observes the result of every feed (metrics); may be nil.
	fed func(ok bool)

	mu     sync.Mutex
	cl     guardClient
	armed  bool // the LRM opened its watchdog and has not closed it
	fenced bool // the guard or the agent fenced since the handle opened
	own    map[fence.Target]string
	// lapse is the expiry whose lapse the agent already acted on.
	lapse int64
}

var _ resource.Fence = (*fencer)(nil)

func newFencer(log *slog.Logger, timing *ha.Timing, open guardOpener, clk clock.Clock, expiry func() int64) *fencer {
	return &fencer{log: log, timing: timing, open: open, clock: clk, expiry: expiry,
		kill: fence.Kill, gone: targetGone, own: map[fence.Target]string{}}
}

// targetGone reports a process group without any process. Cgroups are
// the agent's own directories and never gone in that sense.
func targetGone(t fence.Target) bool {
	return t.Cgroup == "" && errors.Is(syscall.Kill(-t.PGID, 0), syscall.ESRCH)
}

func target(pgid int, cgroup string) fence.Target {
	if cgroup != "" {
		return fence.Cgroup(cgroup)
	}
	return fence.PGID(pgid)
}

// ownTargets returns the own list, sorted.
func (f *fencer) ownTargets() []fence.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedTargets(f.own)
}

func sortedTargets(m map[fence.Target]string) []fence.Target {
	return slices.SortedFunc(maps.Keys(m), func(a, b fence.Target) int { return strings.Compare(a.String(), b.String()) })
}

// openHandle arms a fresh guard handle with the current expiry and
// registers every own target with it. It clears the fenced state.
func (f *fencer) openHandle(ctx context.Context) error {
	cl, err := f.open(ctx, f.expiry())
	if err != nil {
		return fmt.Errorf("open guard handle: %w", err)
	}
	if err := cl.CheckTimeout(f.timing.WatchdogTimeout); err != nil {
		_ = cl.Close()
		return err
	}
	f.pruneGone()
	registered := map[fence.Target]bool{}
	for {
		var todo []fence.Target
		f.mu.Lock()
		for _, t := range sortedTargets(f.own) {
			if !registered[t] {
				todo = append(todo, t)
			}
		}
		if len(todo) == 0 {
			f.cl, f.armed, f.fenced = cl, true, false
			f.mu.Unlock()
			f.log.Info("guard handle opened", "targets", len(registered))
			return nil
		}
		f.mu.Unlock()
		for _, t := range todo {
			if err := cl.Register(t); err != nil {
				if f.gone(t) {
					f.drop(t)
					continue
				}
				cl.Abandon()
				return fmt.Errorf("register %v with the guard: %w", t, err)
			}
			registered[t] = true
		}
	}
}

func (f *fencer) drop(t fence.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.own, t)
}

// client returns the open handle, or nil.
func (f *fencer) client() guardClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cl
}

// feed feeds the open handle with the current expiry, opening one when
// there is none.
func (f *fencer) feed(ctx context.Context) error {
	cl := f.client()
	if cl == nil {
		return f.openHandle(ctx)
	}
	err := cl.Feed(f.expiry())
	f.observeFeed(err == nil)
	if err != nil {
		f.feedFailed(cl, err)
		return err
	}
	return nil
}

// observeFeed reports a feed's result to fed, if set.
func (f *fencer) observeFeed(ok bool) {
	if f.fed != nil {
		f.fed(ok)
	}
}

// closeHandle disarms the handle gracefully (services keep running,
// unprotected: disarm, agent restart).
func (f *fencer) closeHandle() error {
	f.mu.Lock()
	cl := f.cl
	f.cl, f.armed = nil, false
	f.mu.Unlock()
	if cl == nil {
		return nil
	}
	return cl.Close()
}

// feedWhileValid feeds the guard every interval while a handle is open and
// the own agent lock is within its validity, until ctx ends. Feeding
// between renewals keeps a slow renewal (a leader election, a slow fsync)
// from firing the guard while the lock is still provably held; every feed
// carries the validity's end, so a feed delayed past it earns nothing.
// Once the validity ends, feeding stops and the guard kills every service
// watchdog_timeout later; if services may still run self_fence_time after
// that (the guard died, hangs or fenced without reaching them), the agent
// kills them itself.
func (f *fencer) feedWhileValid(ctx context.Context, interval time.Duration) {
	for {
		t := f.clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
			f.tick()
		}
	}
}

// tick is one round of feedWhileValid.
func (f *fencer) tick() {
	now, exp := f.clock.Mono(), f.expiry()
	f.mu.Lock()
	cl, armed := f.cl, f.armed
	f.mu.Unlock()
	if cl != nil && now < exp {
		err := cl.Feed(exp)
		f.observeFeed(err == nil)
		if err != nil {
			f.feedFailed(cl, err)
		}
	}
	f.pruneGone()
	if !armed || now < exp+int64(f.timing.WatchdogTimeout+f.timing.SelfFenceTime) {
		return
	}
	f.mu.Lock()
	first := f.lapse != exp
	f.lapse, f.fenced = exp, true
	n := len(f.own)
	f.mu.Unlock()
	if n == 0 {
		return // nothing was started (every start goes through the own list)
	}
	if first {
		f.log.Error("agent lock lapsed and services may still run: killing every service this agent started",
			"validity_ended_ago", time.Duration(now-exp).Round(time.Millisecond), "targets", n)
	}
	// Every tick while the lapse lasts: a start that raced with the
	// lapse cannot outlive the next one.
	f.killOwn(first)
}

// killOwn kills every target of the own list and every exec service.
// With report, failures are logged.
func (f *fencer) killOwn(report bool) {
	for _, t := range f.ownTargets() {
		if f.gone(t) {
			f.drop(t)
			continue
		}
		if err := f.kill(t); err != nil && report {
			f.log.Error("killing a service failed", "target", t.String(), "err", err)
		}
	}
	if f.killAll != nil {
		if err := f.killAll(); err != nil && report {
			f.log.Error("killing exec services failed", "err", err)
		}
	}
}

// pruneGone drops process groups that have no process left, so that a
// reused id is never killed.
func (f *fencer) pruneGone() {
	for _, t := range f.ownTargets() {
		if t.Cgroup == "" && f.gone(t) {
			f.drop(t)
		}
	}
}

// feedFailed handles a failed feed or registration. When the guard has
// fenced (it killed every registered service, as a watchdog reset would),
// the handle is dropped, the node counts as fenced (it starts nothing
// until a fresh handle), and the agent kills its own list too: a process
// spawned after the guard's kill, or one the guard failed to kill, dies
// now. The next successful lock renewal opens a fresh handle.
func (f *fencer) feedFailed(cl guardClient, err error) {
	if !errors.Is(err, fence.ErrFenced) {
		f.log.Warn("feeding the guard failed", "err", err)
		return
	}
	f.mu.Lock()
	if f.cl != cl {
		f.mu.Unlock()
		return
	}
	f.cl, f.fenced = nil, true
	n := len(f.own)
	f.mu.Unlock()
	cl.Abandon()
	f.log.Error("the guard fenced this node: every service it ran was killed; killing every service this agent started as well", "targets", n)
	f.killOwn(true)
}

// mayStartLocked reports whether the lock allows a spawn now: within its
// validity, or, with lock_validity = 0 (valid only at the instant of a
// renewal), before the guard's deadline for the last renewal.
func (f *fencer) mayStartLocked(now int64) bool {
	exp := f.expiry()
	if f.timing.LockValidity == 0 {
		exp += int64(f.timing.WatchdogTimeout)
	}
	return now < exp
}

// Admit implements resource.Fence.
func (f *fencer) Admit(sid ha.SID, cgroup string) error {
	f.mu.Lock()
	cl := f.cl
	switch {
	case f.fenced:
		f.mu.Unlock()
		return fmt.Errorf("%w: the node fenced itself", resource.ErrNotAdmitted)
	case !f.armed || cl == nil:
		f.mu.Unlock()
		return fmt.Errorf("%w: no guard handle is open", resource.ErrNotAdmitted)
	case !f.mayStartLocked(f.clock.Mono()):
		f.mu.Unlock()
		return fmt.Errorf("%w: the agent lock's validity ended", resource.ErrNotAdmitted)
	}
	if cgroup != "" {
		f.own[fence.Cgroup(cgroup)] = string(sid)
	}
	f.mu.Unlock()
	if cgroup == "" {
		return nil
	}
	if err := cl.Register(fence.Cgroup(cgroup)); err != nil {
		if errors.Is(err, fence.ErrFenced) {
			f.feedFailed(cl, err)
		}
		f.drop(fence.Cgroup(cgroup))
		return fmt.Errorf("%w: register %s with the guard: %w", resource.ErrNotAdmitted, cgroup, err)
	}
	return nil
}

// Spawned implements resource.Fence.
func (f *fencer) Spawned(sid ha.SID, pgid int, cgroup string) error {
	var ts []fence.Target
	if cgroup != "" {
		ts = append(ts, fence.Cgroup(cgroup))
	}
	if pgid > 1 && cgroup == "" {
		ts = append(ts, fence.PGID(pgid))
	}
	f.mu.Lock()
	for _, t := range ts {
		f.own[t] = string(sid)
	}
	cl, fenced := f.cl, f.fenced
	f.mu.Unlock()
	var err error
	switch {
	case fenced:
		err = errors.New("the node fenced itself meanwhile")
	case cl == nil:
		err = errors.New("the guard handle was dropped meanwhile")
	}
	for _, t := range ts {
		if err != nil {
			break
		}
		if err = cl.Register(t); errors.Is(err, fence.ErrFenced) {
			f.feedFailed(cl, err)
		}
	}
	if err == nil {
		return nil
	}
	if pgid > 1 && !slices.Contains(ts, fence.PGID(pgid)) {
		ts = append(ts, fence.PGID(pgid))
	}
	for _, t := range ts {
		if kerr := f.kill(t); kerr != nil {
			f.log.Error("killing an unguarded service process failed", ha.KeySID, string(sid), "target", t.String(), "err", kerr)
		}
	}
	f.log.Error("service process could not be put under the guard: killed at once", ha.KeySID, string(sid), "pgid", pgid, "cgroup", cgroup, "err", err)
	return fmt.Errorf("put under the self-fence: %w", err)
}

// Released implements resource.Fence.
func (f *fencer) Released(sid ha.SID, pgid int, cgroup string) {
	var ts []fence.Target
	if cgroup != "" {
		ts = append(ts, fence.Cgroup(cgroup))
	}
	if pgid > 1 {
		ts = append(ts, fence.PGID(pgid))
	}
	f.mu.Lock()
	var known []fence.Target
	for _, t := range ts {
		if _, ok := f.own[t]; ok {
			known = append(known, t)
			delete(f.own, t)
		}
	}
	cl := f.cl
	f.mu.Unlock()
	if cl == nil {
		return
	}
	for _, t := range known {
		if err := cl.Unregister(t); err != nil {
			f.log.Debug("unregister a stopped service from the guard", ha.KeySID, string(sid), "target", t.String(), "err", err)
		}
	}
}

// adopt adds a running service found at start (or reported by a resource
// agent after a start) to the own list and, with a handle open, to the
// guard.
func (f *fencer) adopt(sid ha.SID, pgid int, cgroup string) {
	t := target(pgid, cgroup)
	f.mu.Lock()
	f.own[t] = string(sid)
	cl := f.cl
	f.mu.Unlock()
	if cl != nil {
		if err := cl.Register(t); err != nil {
			f.log.Warn("register a running service with the guard", ha.KeySID, string(sid), "target", t.String(), "err", err)
		}
	}
}

// adoptLeaves adds every populated cgroup below parent (services a
// previous agent started: OCF daemons, exec services) to the own list.
func (f *fencer) adoptLeaves(parent string) {
	if parent == "" {
		return
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			f.adopt(ha.SID(e.Name()), 0, dir)
			f.log.Info("re-adopted a running service cgroup", "cgroup", dir)
		}
	}
}

// serviceCgroupParent returns the cgroup v2 directory the agent puts its
// services' leaves in: cgroup_parent, or a directory of its own on the
// cgroup v2 mount. It returns "" (process groups only) where cgroup v2 is
// absent or the directory cannot be created, and the mount ("" if none).
func serviceCgroupParent(cfg *Config, log *slog.Logger) (parent, mount string) {
	mount, err := fence.Cgroup2Mount()
	if err != nil {
		log.Warn("no cgroup v2 mount: services are fenced by process group only, which daemons that setsid leave", "err", err)
	}
	parent = cfg.CgroupParent
	if parent == "" && mount != "" {
		parent = fence.ServiceCgroupParent(mount, cfg.NodeName, cfg.DataDir)
	}
	if parent == "" {
		return "", mount
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		log.Warn("cannot create the services' cgroup parent: services are fenced by process group only", "cgroup_parent", parent, "err", err)
		return "", mount
	}
	log.Info("services run in cgroup v2 leaves", "cgroup_parent", parent)
	return parent, mount
}

// WatchdogOpen opens the LRM's guard handle: opening it arms the guard,
// which kills every registered service unless fed in time. The CRM's
// writes are fenced by the raft term; it needs no watchdog.
func (e *env) WatchdogOpen() error {
	if e.role != "lrm" {
		return nil
	}
	// The guard is local: no leader watch.
	ctx, cancel := context.WithTimeout(context.Background(), e.opTimeout())
	defer cancel()
	return e.n.fencer.openHandle(ctx)
}

// WatchdogUpdate feeds the LRM's guard handle after a lock renewal.
func (e *env) WatchdogUpdate() error {
	if e.role != "lrm" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opTimeout())
	defer cancel()
	return e.n.fencer.feed(ctx)
}

// WatchdogClose disarms the LRM's guard handle.
func (e *env) WatchdogClose() error {
	if e.role != "lrm" {
		return nil
	}
	return e.n.fencer.closeHandle()
}

// expiry is the end of the own agent lock's validity in CLOCK_MONOTONIC
// nanoseconds.
func (n *node) expiry() int64 { return n.monoBase + n.validUntil.Load() }

// isArmed reports whether the LRM's guard handle is open and armed: a lock
// renewal sent now has a watchdog behind it (store.AcquireOwnLock).
func (f *fencer) isArmed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed && f.cl != nil
}
