package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"haxd/ha"
)

// Daemon is a CRM or LRM state machine as the harness drives it.
type Daemon interface {
	// Step runs one iteration; false means the daemon exited.
	Step() bool
	// RequestShutdown asks the daemon to shut down (it logs its reaction).
	RequestShutdown()
}

// Factory creates the daemons of a run. DefaultFactory uses packages crm
// and lrm; tests may substitute their own.
type Factory struct {
	// NewCRM creates a CRM on env (it logs its startup line).
	NewCRM func(env ha.Env, t ha.Timing) Daemon
	// NewLRM creates an LRM on env; statusWritten is shared by every LRM of
	// the run (scenario-format §4.4).
	NewLRM func(env ha.Env, t ha.Timing, statusWritten *bool) Daemon
}

// Options configure a run.
type Options struct {
	// Timing is the timing profile; the zero value means ha.PVETiming().
	Timing ha.Timing
	// Seed seeds the UIDs.
	Seed int64
	// Daemons creates the CRMs and LRMs; the zero value means DefaultFactory().
	Daemons Factory
	// Log receives every log line; nil discards them.
	Log Sink
	// Concurrent selects the concurrent round model: every node's CRM and
	// LRM start their round at the same instant (each node's CRM, then its
	// LRM, one step apart), so a round lasts one round however many nodes
	// there are, as on a real cluster. The default is PVE's serial model
	// (scenario-format §4): one node after the other, every daemon step
	// advancing the hardware clock, which PVE's log.expect files need and
	// which limits a cluster to what fits in a watchdog timeout (29 nodes
	// with the pve timing, 11 with the fast one). Both models apply the
	// daemons' actions in node order.
	Concurrent bool
}

// Result is the outcome of a completed run.
type Result struct {
	// End is the hardware time at which the run ended.
	End time.Duration
	// Err is the fatal simulation error ("exit simulation - <err>"), nil
	// when the run ended with "exit simulation - done". An invariant breach
	// is reported here too and satisfies errors.Is(err, ErrInvariant).
	Err error
	// ManagerStatus is the manager status at the end of the run.
	ManagerStatus *ha.ManagerStatus
	// Services is the service config at the end of the run.
	Services map[ha.SID]*ha.ResourceConfig
	// Lines is the number of log records emitted.
	Lines int
}

// ErrInvariant is wrapped by Result.Err when the safety invariant broke.
var ErrInvariant = errors.New("invariant violated")

// FinalState is a service's final CRM state and node.
type FinalState struct {
	State ha.ServiceState
	Node  string
}

// Final returns the final (state, node) of every service in the manager
// status.
func (r *Result) Final() map[ha.SID]FinalState {
	out := map[ha.SID]FinalState{}
	if r.ManagerStatus == nil {
		return out
	}
	for sid, sd := range r.ManagerStatus.ServiceStatus {
		out[sid] = FinalState{State: sd.State, Node: sd.Node}
	}
	return out
}

// lock is one cluster lock (scenario-format §2.2). A lock its holder
// released with services running is kept, with released set: it is free
// for its holder only, and proves nothing to anyone else (ha.Env).
type lock struct {
	holder   string
	time     time.Duration
	released bool
}

type watchdog struct {
	node string
	last time.Duration
}

// simNode is one simulated node with its hardware and daemons.
type simNode struct {
	name           string
	power, network bool
	shutdown       string // "", "reboot" or "shutdown"
	cfsRWFail      bool
	cfsUpdateFail  bool
	version        string
	maxCPU, maxMem *float64
	running        map[ha.SID]bool

	crmClock, lrmClock time.Duration
	crm, lrm           Daemon
	crmStopRequested   bool
	lrmRestart         bool
}

func (n *simNode) online() bool { return n.power && n.network }

// sim is the state of one run.
type sim struct {
	opts   Options
	timing ha.Timing
	sink   Sink
	lines  int

	// Time units derived from the timing (scenario-format §4 scaled).
	step, roundLen, endAfter, maxTime, lockTTL, wdTimeout time.Duration

	nodes  []*simNode
	byName map[string]*simNode
	H      time.Duration
	// at is where the current node's next daemon step starts in the
	// concurrent round model (Options.Concurrent).
	at time.Duration

	locks     map[string]*lock
	watchdogs map[int]*watchdog
	// where is checkInvariant's scratch map.
	where        map[ha.SID]string
	nextWatchdog int

	managerStatus *ha.ManagerStatus
	lrmStatus     map[string]*ha.LRMStatus
	services      map[ha.SID]*ha.ResourceConfig
	rules, groups []byte
	datacenter    ha.Datacenter
	static        map[ha.SID]Stats
	dynamic       map[ha.SID]Stats
	crmCommands   []string

	faStart, faMigrate map[ha.SID]int
	uidCounter         uint64
	statusWritten      bool

	steps                  [][]Command
	loopCount              int
	nextCmdAt, lastCommand time.Duration
	skipCRM, skipLRM       int
	violation              error
	fatal                  error
	done                   bool
}

// Units returns the round length and the cost of one daemon step for a
// timing: the PVE model (20 s rounds, 1 s steps) scaled by CRMRound, with
// the round shortened to half the watchdog timeout when a full round would
// let a healthy daemon's watchdog run out.
func Units(t ha.Timing) (round, step time.Duration) {
	round = 2 * t.CRMRound
	if round >= t.WatchdogTimeout {
		round = t.WatchdogTimeout / 2
	}
	return round, round / 20
}

// Run replays sc and returns its result. Setup problems (an invalid
// timing, too many nodes) are returned as errors; everything that happens
// during the run, including fatal commands and invariant breaches, is in
// Result.Err.
func Run(sc *Scenario, opts Options) (*Result, error) {
	if opts.Timing == (ha.Timing{}) {
		opts.Timing = ha.PVETiming()
	}
	if _, err := opts.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if opts.Daemons.NewCRM == nil || opts.Daemons.NewLRM == nil {
		opts.Daemons = DefaultFactory()
	}
	s := &sim{opts: opts, timing: opts.Timing, sink: opts.Log,
		byName: map[string]*simNode{}, locks: map[string]*lock{}, watchdogs: map[int]*watchdog{}, where: map[ha.SID]string{},
		lrmStatus: map[string]*ha.LRMStatus{}, faStart: map[ha.SID]int{}, faMigrate: map[ha.SID]int{}}
	round, step := Units(opts.Timing)
	s.step = step
	s.roundLen = max(round, time.Duration(2*len(sc.Nodes))*step)
	if opts.Concurrent {
		s.roundLen = round
	}
	if s.roundLen >= 3*round {
		return nil, fmt.Errorf("simulate: %d nodes need a round of %v, the limit is %v", len(sc.Nodes), s.roundLen, 3*round)
	}
	if s.roundLen >= opts.Timing.WatchdogTimeout {
		return nil, fmt.Errorf("simulate: %d nodes need a round of %v, which a healthy daemon's watchdog (timeout %v) would not survive", len(sc.Nodes), s.roundLen, opts.Timing.WatchdogTimeout)
	}
	s.endAfter = 25 * round
	// 500 rounds (PVE's 10,000 s). A serial round of more than 10 nodes
	// is longer than a round; the limit counts such rounds, so that the
	// same schedule fits in both round models.
	s.maxTime = 500 * s.roundLen
	s.lockTTL = opts.Timing.LockTTL
	s.wdTimeout = opts.Timing.WatchdogTimeout

	for _, name := range sc.Nodes {
		hw := sc.Hardware[name]
		n := &simNode{name: name, power: hw.Power, network: hw.Network, version: hw.Version,
			maxCPU: hw.MaxCPU, maxMem: hw.MaxMem, running: map[ha.SID]bool{}}
		for sid, on := range sc.Running[name] {
			if on {
				n.running[sid] = true
			}
		}
		s.nodes = append(s.nodes, n)
		s.byName[name] = n
	}
	s.managerStatus = cloneManagerStatus(sc.ManagerStatus)
	s.services = map[ha.SID]*ha.ResourceConfig{}
	for sid, c := range sc.Services {
		cc := *c
		s.services[sid] = &cc
	}
	s.rules, s.groups = slices.Clone(sc.Rules), slices.Clone(sc.Groups)
	s.datacenter = sc.Datacenter
	s.datacenter.CRS.Set = maps.Clone(sc.Datacenter.CRS.Set)
	s.static, s.dynamic = cloneStats(sc.StaticStats), cloneStats(sc.DynamicStats)
	s.steps = make([][]Command, len(sc.Steps))
	for i, st := range sc.Steps {
		s.steps[i] = slices.Clone(st)
	}

	s.loop()
	res := &Result{End: s.H, ManagerStatus: cloneManagerStatus(s.managerStatus), Services: s.services, Lines: s.lines}
	if s.violation != nil {
		res.Err = s.violation
	} else if s.fatal != nil {
		res.Err = s.fatal
	}
	return res, nil
}

func cloneStats(m map[ha.SID]Stats) map[ha.SID]Stats {
	out := make(map[ha.SID]Stats, len(m))
	for k, v := range m {
		out[k] = maps.Clone(v)
	}
	return out
}

func (s *sim) emit(r Record) {
	s.lines++
	if s.sink != nil {
		s.sink.Emit(r)
	}
}

// logAt logs a harness line.
func (s *sim) logAt(origin string, level slog.Level, msg string) {
	s.emit(Record{Time: s.H, Level: level, Origin: origin, Msg: msg})
}

func (s *sim) hwlog(level slog.Level, msg string) { s.logAt(OriginHardware, level, msg) }

// stopped reports whether the run must end now.
func (s *sim) stopped() bool { return s.done || s.fatal != nil || s.violation != nil }

// fail records a fatal simulation error.
func (s *sim) fail(err error) {
	if s.fatal == nil && s.violation == nil {
		s.fatal = err
	}
}

// violate records an invariant breach.
func (s *sim) violate(err error) {
	if s.violation == nil {
		s.violation = fmt.Errorf("%w: %s", ErrInvariant, trimInvariant(err))
	}
}

func trimInvariant(err error) string {
	msg := err.Error()
	const p = "invariant violated: "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

func (s *sim) clusterQuorate() bool {
	online := 0
	for _, n := range s.nodes {
		if n.online() {
			online++
		}
	}
	return online > len(s.nodes)/2
}

func (s *sim) quorate(n *simNode) bool { return n.online() && s.clusterQuorate() }

func (s *sim) acquireLock(e *env, name string) bool {
	if !s.quorate(e.node) {
		return false
	}
	now := *e.clock
	l, ok := s.locks[name]
	switch {
	case ok && l.released && l.holder != e.node.name:
		// Given up by its node with services running: only that node
		// may take it, however long ago that was.
		return false
	case !ok || l.released || now-l.time > s.lockTTL:
		s.locks[name] = &lock{holder: e.node.name, time: now}
		e.logger.Info(fmt.Sprintf("got lock '%s'", name))
		return true
	case l.holder == e.node.name:
		l.time = now
		return true
	}
	return false
}

// releaseLock releases name for e's node. running (agent locks only) says
// that services of the node may still run: the lock then stays recorded as
// released by its holder. A release that claims nothing runs any more is
// checked against the node's hardware: a service still running there is a
// breach, since the CRM may take such a lock as proof of fencing.
func (s *sim) releaseLock(e *env, name string, running bool) bool {
	if !s.quorate(e.node) {
		return false
	}
	l, ok := s.locks[name]
	switch {
	case !ok:
		return false
	case l.holder == e.node.name:
		if !running {
			if name != managerLock {
				for _, sid := range slices.Sorted(maps.Keys(e.node.running)) {
					// A service removed from HA (or ignored) is not
					// the lock's business.
					if c := s.services[sid]; c != nil && c.Requested() != ha.RequestIgnored {
						s.violate(fmt.Errorf("invariant violated: %s/%s released %s as clean at %v while %s still runs there",
							e.node.name, e.kind, name, *e.clock, sid))
						break
					}
				}
			}
			delete(s.locks, name)
			return true
		}
		l.released, l.time = true, *e.clock
		return true
	case l.released:
		return false
	case *e.clock-l.time > s.lockTTL:
		return true
	}
	return false
}

// editService returns sid's config for a change, or nil if there is none.
// The config is copied first: ReadResources hands out the current configs
// without copying them, so a config once handed out never changes.
func (s *sim) editService(sid ha.SID) *ha.ResourceConfig {
	c := s.services[sid]
	if c == nil {
		return nil
	}
	cc := *c
	s.services[sid] = &cc
	return &cc
}

func (s *sim) setRunning(n *simNode, sid ha.SID, on bool) {
	if on {
		n.running[sid] = true
	} else {
		delete(n.running, sid)
	}
}

// serviceStats merges a service's static and dynamic entries.
func (s *sim) serviceStats(sid ha.SID) (ha.ServiceStats, bool) {
	st, okS := s.static[sid]
	dy, okD := s.dynamic[sid]
	if !okS && !okD {
		return ha.ServiceStats{}, false
	}
	// The dynamic usage is the static entry merged with the dynamic one
	// (scenario-format §1.7); a key in neither counts as 0.
	return ha.ServiceStats{MaxCPU: st["maxcpu"], MaxMem: st["maxmem"], CPU: dy["cpu"], Mem: dy["mem"]}, true
}

// checkInvariant verifies that no service runs on two powered nodes.
func (s *sim) checkInvariant(after string) {
	if s.violation != nil {
		return
	}
	// The common case (no service twice) needs no order: count first,
	// and find the first breach in sorted order only if there is one.
	total := 0
	clear(s.where)
	for _, n := range s.nodes {
		if !n.power {
			continue
		}
		total += len(n.running)
		for sid := range n.running {
			s.where[sid] = n.name
		}
	}
	if len(s.where) == total {
		return
	}
	where := map[ha.SID]string{}
	for _, n := range s.nodes {
		if !n.power {
			continue
		}
		for _, sid := range slices.Sorted(maps.Keys(n.running)) {
			if other, ok := where[sid]; ok {
				s.violate(fmt.Errorf("service %s runs on %s and %s at %v (after %s)", sid, other, n.name, s.H, after))
				return
			}
			where[sid] = n.name
		}
	}
}

// stepOrSkip runs step unless skip rounds remain (a skip_round command);
// the skip is logged once a round, by the first node.
func (s *sim) stepOrSkip(first bool, skip int, msg string, step func()) {
	if skip > 0 {
		if first {
			s.logAt(OriginRunLoop, slog.LevelInfo, msg)
		}
		return
	}
	step()
}

// loop is the main loop of scenario-format §4.
func (s *sim) loop() {
	s.H = 0
	s.hwlog(slog.LevelInfo, "starting simulation")
	for !s.stopped() {
		start := s.H
		for i, n := range s.nodes {
			if s.opts.Concurrent {
				// Every node starts its round now; the hardware
				// clock only moves forward (to the latest daemon).
				s.at = start
			}
			if n.crm != nil {
				s.stepOrSkip(i == 0, s.skipCRM, "skipping CRM round", func() { s.stepCRM(n) })
			}
			if s.stopped() {
				break
			}
			if n.lrm != nil {
				s.stepOrSkip(i == 0, s.skipLRM, "skipping LRM round", func() { s.stepLRM(n) })
			}
			if s.stopped() {
				break
			}
			s.checkWatchdogs()
			if s.stopped() {
				break
			}
		}
		if s.stopped() {
			break
		}
		if s.skipCRM > 0 {
			s.skipCRM--
		}
		if s.skipLRM > 0 {
			s.skipLRM--
		}
		if s.H-start < s.roundLen {
			s.H = start + s.roundLen
		}
		if s.H > s.maxTime {
			s.fail(fmt.Errorf("simulation exceeded maximum time (%d) - force end", int64(s.maxTime/time.Second)))
			break
		}
		for _, n := range s.nodes {
			n.crmClock, n.lrmClock = s.H, s.H
		}
		s.commandPhase()
	}
	switch {
	case s.violation != nil:
		s.emit(Record{Time: s.H, Level: slog.LevelError, Origin: OriginHardware,
			Msg: "exit simulation - " + s.violation.Error(), Trailer: " "})
	case s.fatal != nil:
		s.emit(Record{Time: s.H, Level: slog.LevelError, Origin: OriginHardware,
			Msg: "exit simulation - " + s.fatal.Error(), Trailer: " "})
	default:
		s.hwlog(slog.LevelInfo, "exit simulation - done")
	}
}

// stepStart returns the time at which the next daemon step starts: the
// hardware clock in the serial model, the node's own round clock in the
// concurrent one.
func (s *sim) stepStart() time.Duration {
	if s.opts.Concurrent {
		return s.at
	}
	return s.H
}

func (s *sim) stepCRM(n *simNode) {
	s.stepDaemon(n, "crm", &n.crmClock, n.crm.Step, s.crmExited)
}

func (s *sim) stepLRM(n *simNode) {
	s.stepDaemon(n, "lrm", &n.lrmClock, n.lrm.Step, s.lrmExited)
}

// stepDaemon runs one step of n's daemon role on its clock, checks the
// invariant after it, and calls exited when the daemon returned false.
func (s *sim) stepDaemon(n *simNode, role string, clock *time.Duration, step func() bool, exited func(*simNode)) {
	*clock = s.stepStart()
	ok := step()
	*clock += s.step
	s.at = *clock
	s.H = max(s.H, *clock)
	s.checkInvariant(n.name + "/" + role + " step")
	if !ok {
		exited(n)
	}
}

func (s *sim) daemonLog(n *simNode, kind, msg string) {
	clock := n.crmClock
	if kind == "lrm" {
		clock = n.lrmClock
	}
	s.emit(Record{Time: clock, Level: slog.LevelInfo, Origin: n.name + "/" + kind, Daemon: true, Msg: msg})
}

func (s *sim) crmExited(n *simNode) {
	s.daemonLog(n, "crm", "exit (loop end)")
	n.crm = nil
	stopRequested := n.crmStopRequested
	n.crmStopRequested = false
	switch {
	case n.shutdown == "reboot":
		s.logAt("reboot", slog.LevelInfo, "execute power "+n.name+" off")
		s.powerOff(n)
		s.logAt("reboot", slog.LevelInfo, "execute power "+n.name+" on")
		s.powerOn(n)
	case n.shutdown == "shutdown":
		s.logAt("shutdown", slog.LevelInfo, "execute power "+n.name+" off")
		s.powerOff(n)
	case stopRequested:
	default:
		s.fail(errors.New("unexpected CRM exit - not implemented"))
	}
	s.checkInvariant(n.name + " crm exit")
}

func (s *sim) lrmExited(n *simNode) {
	s.daemonLog(n, "lrm", "exit (loop end)")
	n.lrm = nil
	switch {
	case n.lrmRestart:
		n.lrmRestart = false
		if n.shutdown != "" {
			s.fail(errors.New("lrm restart during shutdown - not implemented"))
			return
		}
		s.startLRM(n)
	case n.shutdown != "":
		s.logAt(n.shutdown, slog.LevelInfo, "execute crm "+n.name+" stop")
		s.crmStop(n)
	default:
		s.fail(errors.New("unexpected LRM exit - not implemented"))
	}
}

func (s *sim) startCRM(n *simNode) {
	n.crmStopRequested = false
	n.crm = s.opts.Daemons.NewCRM(s.newEnv(n, "crm"), s.timing)
}

func (s *sim) startLRM(n *simNode) {
	n.lrm = s.opts.Daemons.NewLRM(s.newEnv(n, "lrm"), s.timing, &s.statusWritten)
}

func (s *sim) crmStop(n *simNode) {
	if n.crm == nil {
		return
	}
	n.crmStopRequested = true
	n.crm.RequestShutdown()
}

func (s *sim) powerOn(n *simNode) {
	if !n.power {
		n.cfsRWFail, n.cfsUpdateFail = false, false
		n.power, n.network = true, true
		s.startCRM(n)
		s.startLRM(n)
	}
	n.power, n.network = true, true
	n.shutdown = ""
}

func (s *sim) powerOff(n *simNode) {
	if n.power {
		if n.crm != nil {
			s.daemonLog(n, "crm", "killed by poweroff")
			n.crm = nil
		}
		if n.lrm != nil {
			s.daemonLog(n, "lrm", "killed by poweroff")
			n.lrm = nil
		}
		for _, id := range slices.Sorted(maps.Keys(s.watchdogs)) {
			if s.watchdogs[id].node == n.name {
				delete(s.watchdogs, id)
			}
		}
		clear(n.running)
	}
	n.power, n.network = false, false
	n.shutdown = ""
	n.lrmRestart, n.crmStopRequested = false, false
}

// checkWatchdogs powers off every node with an expired watchdog.
func (s *sim) checkWatchdogs() {
	var expired map[string]bool
	for _, w := range s.watchdogs {
		if s.H-w.last > s.wdTimeout {
			if expired == nil {
				expired = map[string]bool{}
			}
			expired[w.node] = true
		}
	}
	if expired == nil {
		return
	}
	for _, n := range s.nodes {
		if !expired[n.name] {
			continue
		}
		s.logAt(OriginWatchdog, slog.LevelInfo, "execute power "+n.name+" off")
		s.powerOff(n)
		s.hwlog(slog.LevelInfo, fmt.Sprintf("server '%s' stopped by poweroff (watchdog)", n.name))
	}
}

// commandPhase runs the cmdlist cadence of scenario-format §4.3.
func (s *sim) commandPhase() {
	if s.H < s.nextCmdAt {
		return
	}
	if s.loopCount%5 == 0 {
		if len(s.steps) == 0 {
			if s.H-s.lastCommand > s.endAfter {
				s.done = true
				return
			}
		} else {
			step := s.steps[0]
			s.steps = s.steps[1:]
			for _, c := range step {
				s.lastCommand = s.H
				s.execute(c)
				s.checkInvariant("command " + strconv.Quote(c.Raw))
				if s.stopped() {
					return
				}
			}
		}
	}
	s.loopCount++
}
