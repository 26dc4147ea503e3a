package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"haxd/api"
	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
	"haxd/internal/netlab"
)

// need is what a fault kind needs beyond namespaces.
type need int

const (
	needNothing need = iota
	needFilters
	needNetem
	needClock
	needMounts
)

// kind is one fault kind.
type kind struct {
	name  string
	doc   string
	needs need
	// prepare, if set, runs before the cluster starts.
	prepare func(r *labRun) error
	// apply breaks the cluster, holds the fault, heals it and says which
	// nodes it hit.
	apply func(ctx context.Context, r *labRun) (fault, error)
}

// fault is what a fault did.
type fault struct {
	// start is the monotonic time the fault began (recovery times count
	// from here).
	start int64
	// faulted nodes are not counted as healthy: their self-fences are not
	// counted as a healthy node's.
	faulted []string
	// dead nodes must have their services recovered elsewhere within the
	// bound; a move of any other node's service is needless, except
	// mayMove's.
	dead    []string
	mayMove []string
	// what describes the schedule, e.g. "node2 cut for 8.3 s".
	what string
}

// allKinds lists every fault kind, in report order.
func allKinds() []kind {
	return []kind{
		{name: "partition", doc: "a node that is not the leader is cut off (bridge port down), then healed", apply: partition(false)},
		{name: "partition-leader", doc: "the leader (CRM master) is cut off, then healed", apply: partition(true)},
		{name: "asym", doc: "one node (any, the leader too) drops every inbound packet from the others (iptables), then the rule goes", needs: needFilters, apply: asym},
		{name: "loss1", doc: "1% random packet loss on every link (iptables statistic), no partition", needs: needFilters, apply: lossAll(0.01)},
		{name: "loss5", doc: "5% random packet loss on every link", needs: needFilters, apply: lossAll(0.05)},
		{name: "loss20", doc: "20% random packet loss on every link", needs: needFilters, apply: lossAll(0.20)},
		{name: "loss20-leader", doc: "20% random packet loss only on the leader's links (both directions)", needs: needFilters, apply: lossLeader(0.20)},
		{name: "delay", doc: "50 ms delay on every node's outbound packets (tc netem)", needs: needNetem, apply: delayAll(50 * time.Millisecond)},
		{name: "sigstop", doc: "one node's agent (any, the leader too) is SIGSTOPped for longer than the lock TTL, then continued", apply: sigstop},
		{name: "kill-leader", doc: "the leader's node dies (SIGKILL of agent, guard and services), then its agent starts again", apply: killLeader},
		{name: "restarts", doc: "three agent restarts (SIGTERM, start again), the leader's among them", apply: restarts},
		{name: "disk-full", doc: "a node's data dir (a tmpfs) is filled up, then freed; the node is not the leader", needs: needMounts, apply: diskFull(false)},
		{name: "disk-full-leader", doc: "the leader's data dir is filled up, then freed", needs: needMounts, apply: diskFull(true)},
		{name: "clock-step", doc: "one node's wall clock is off by 30 s to 5 min (ahead in odd runs, behind in even ones) from its agent's start on, as a step leaves it; the test build's clock offset, see docs/reliability.md", needs: needClock, prepare: clockStepPrepare, apply: clockStep},
	}
}

func kindNames() []string {
	var out []string
	for _, k := range allKinds() {
		out = append(out, k.name)
	}
	return out
}

func findKind(name string) *kind {
	for _, k := range allKinds() {
		if k.name == name {
			return &k
		}
	}
	return nil
}

// runSpec is one run to do.
type runSpec struct {
	kind  *kind
	index int
	nodes int
	seed  uint64
	rng   *rand.Rand
	opts  options
	env   labEnv
}

// labRun is a run in progress.
type labRun struct {
	runSpec
	nw     *netlab.Net
	cl     *cluster.Cluster
	dir    string
	timing ha.Timing
	leader string
	// services maps each service to its home node.
	services map[string]string
	// killed are nodes whose agent the lab killed or stopped on purpose
	// (an exit of another agent is a crash).
	killed map[string]bool
	notes  []string
	// startCrashes are agents that exited while starting again.
	startCrashes []string
	// clockNode and clockStep are the clock-step kind's node and offset.
	clockNode string
	clockStep time.Duration
}

// tmpfsSize is the size of each node's data dir mount in the disk kinds:
// small, so that filling it is quick, large enough for a short run's raft
// log.
const tmpfsSize = "64m"

// runOne sets up a cluster, applies the fault and analyses the run. It
// removes everything it made before it returns.
func runOne(ctx context.Context, s runSpec) (res result) {
	res = result{kind: s.kind.name, run: s.index, nodes: s.nodes, seed: s.seed}
	dir, err := os.MkdirTemp("", "haxd-faultlab-")
	if err != nil {
		res.err = err
		return res
	}
	res.dir = dir
	defer func() {
		// A failed run's directory is kept for inspection, an interrupted
		// one's is not.
		if (res.err == nil || ctx.Err() != nil) && res.overlaps == 0 && !s.opts.keep {
			os.RemoveAll(dir)
			res.dir = ""
		}
	}()
	r := &labRun{runSpec: s, dir: dir, timing: ha.FastTiming(), services: map[string]string{}, killed: map[string]bool{}}
	nw, err := netlab.Create(ctx, labTag(""), s.nodes, "10.214.0")
	if err != nil {
		res.err = err
		return res
	}
	r.nw = nw
	defer func() {
		if err := nw.Remove(); err != nil {
			res.notes = append(res.notes, "cleanup: "+err.Error())
		}
	}()
	if s.kind.needs == needMounts {
		for i := range s.nodes {
			d := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
			if err := os.MkdirAll(d, 0o700); err != nil {
				res.err = err
				return res
			}
			if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size="+tmpfsSize+",mode=0700"); err != nil {
				res.err = fmt.Errorf("mount a %s tmpfs on %s: %w", tmpfsSize, d, err)
				return res
			}
			defer func() {
				if err := syscall.Unmount(d, 0); err != nil {
					// Lazily, so that nothing stays mounted when a
					// process still holds a file there.
					if err2 := syscall.Unmount(d, syscall.MNT_DETACH); err2 != nil {
						res.notes = append(res.notes, fmt.Sprintf("cleanup: umount %s: %v", d, err2))
					}
				}
			}()
		}
	}
	if s.kind.prepare != nil {
		if err := s.kind.prepare(r); err != nil {
			res.err = fmt.Errorf("prepare %s: %w", s.kind.name, err)
			return res
		}
	}
	cl, err := cluster.Start(ctx, cluster.Options{Binary: s.opts.bin, Dir: dir, Nodes: s.nodes, Timing: "fast", IPs: nw.IPs, Netns: nw.Nodes})
	if err != nil {
		res.err = fmt.Errorf("start cluster: %w", err)
		return res
	}
	r.cl = cl
	defer cl.Destroy()
	if err := r.setup(ctx); err != nil {
		res.err = err
		return res
	}
	marks := r.logMarks()
	t0 := invariant.Monotonic()
	f, err := s.kind.apply(ctx, r)
	if err != nil {
		res.err = fmt.Errorf("apply %s: %w", s.kind.name, err)
		return res
	}
	if err := cluster.Sleep(ctx, s.opts.observe); err != nil {
		res.err = err
		return res
	}
	tEnd := invariant.Monotonic()
	crashed := r.crashedAgents()
	cl.Destroy()
	res.notes = append(res.notes, r.notes...)
	analyze(&res, r, f, marks, t0, tEnd, crashed)
	return res
}

// setup adds one heartbeat service per node and waits until every one
// beats on its node and the nodes agree on the CRM master.
func (r *labRun) setup(ctx context.Context) error {
	for _, n := range r.cl.Nodes {
		sid := "exec:svc" + strings.TrimPrefix(n.Name, "node")
		r.services[sid] = n.Name
		err := cluster.Retry(ctx, 60*time.Second, func() error {
			var last error
			for _, via := range r.cl.Nodes {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				last = r.cl.AddDemoService(actx, via, sid, n.Name)
				cancel()
				if last == nil || strings.Contains(last.Error(), "already defined") {
					return nil
				}
			}
			return last
		})
		if err != nil {
			return fmt.Errorf("add %s: %w", sid, err)
		}
	}
	err := cluster.WaitFor(ctx, 90*time.Second, func() bool {
		for sid, node := range r.services {
			if r.cl.RunningOn(sid, 500*time.Millisecond) != node {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("waiting for every service to run on its node: %w", err)
	}
	if err := cluster.WaitFor(ctx, 60*time.Second, func() bool { r.leader = r.agreedMaster(ctx, r.names()); return r.leader != "" }); err != nil {
		return fmt.Errorf("waiting for the nodes to agree on a CRM master: %w", err)
	}
	// Let the cluster settle (LRMs active, manager status written).
	return cluster.Sleep(ctx, 2*time.Second)
}

// names returns the node names.
func (r *labRun) names() []string {
	var out []string
	for _, n := range r.cl.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// agreedMaster returns the CRM master every one of nodes reports, or "".
func (r *labRun) agreedMaster(ctx context.Context, nodes []string) string {
	m := ""
	for _, name := range nodes {
		st := r.status(ctx, name)
		if st == nil || st.Manager == nil || st.Manager.MasterNode == "" || (m != "" && st.Manager.MasterNode != m) {
			return ""
		}
		m = st.Manager.MasterNode
	}
	return m
}

// status asks node for the cluster status (nil on error).
func (r *labRun) status(ctx context.Context, node string) *api.Status {
	n := r.cl.Node(node)
	if n == nil || n.Exited() {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := n.Client().Status(sctx)
	if err != nil {
		return nil
	}
	return st
}

// pick returns a node drawn from the run's seed: the leader when leader is
// set, else any node but the leader.
func (r *labRun) pick(leader bool) string {
	if leader {
		return r.leader
	}
	var others []string
	for _, n := range r.names() {
		if n != r.leader {
			others = append(others, n)
		}
	}
	return others[r.rng.IntN(len(others))]
}

// pickAny returns any node, the leader included, drawn from the seed.
func (r *labRun) pickAny() string {
	names := r.names()
	return names[r.rng.IntN(len(names))]
}

// between returns a duration in [lo, hi) drawn from the seed.
func (r *labRun) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// idx returns node's index in the network.
func (r *labRun) idx(node string) int {
	i, err := r.nw.Index(node)
	if err != nil {
		panic(err) // node names come from the cluster itself
	}
	return i
}

// holdTime is how long a partition-like fault lasts: past the bound, so
// that a late recovery still happens under the fault.
func (r *labRun) holdTime() time.Duration {
	return r.between(r.opts.bound, r.opts.bound+3*time.Second)
}

// waitRecovered waits (at most the bound plus 2 s) until every service of
// node beats on another node.
func (r *labRun) waitRecovered(ctx context.Context, node string) error {
	err := cluster.WaitFor(ctx, r.opts.bound+2*time.Second, func() bool {
		for sid, home := range r.services {
			if home == node {
				if on := r.cl.RunningOn(sid, 500*time.Millisecond); on == "" || on == node {
					return false
				}
			}
		}
		return true
	})
	if errors.Is(err, cluster.ErrTimeout) {
		return nil // analysed later as not recovered within the bound
	}
	return err
}

func partition(leader bool) func(context.Context, *labRun) (fault, error) {
	return func(ctx context.Context, r *labRun) (fault, error) {
		v := r.pick(leader)
		hold := r.holdTime()
		f := fault{start: invariant.Monotonic(), faulted: []string{v}, dead: []string{v},
			what: fmt.Sprintf("%s cut off for %.1f s", v, hold.Seconds())}
		return f, r.holdFault(ctx, []int{r.idx(v)}, hold, r.nw.Cut, r.nw.Heal)
	}
}

func asym(ctx context.Context, r *labRun) (fault, error) {
	v := r.pickAny()
	hold := r.holdTime()
	role := "follower"
	if v == r.leader {
		role = "leader"
	}
	f := fault{start: invariant.Monotonic(), faulted: []string{v}, dead: []string{v},
		what: fmt.Sprintf("%s (%s) drops all inbound for %.1f s", v, role, hold.Seconds())}
	return f, r.holdFault(ctx, []int{r.idx(v)}, hold, r.nw.DropInbound, r.nw.ClearFilters)
}

func lossAll(p float64) func(context.Context, *labRun) (fault, error) {
	return func(ctx context.Context, r *labRun) (fault, error) {
		f := fault{start: invariant.Monotonic(), what: fmt.Sprintf("%g%% loss on every link for %v", p*100, r.opts.lossTime)}
		loss := func(ctx context.Context, i int) error { return r.nw.Loss(ctx, i, p, false) }
		return f, r.holdFault(ctx, r.everyNode(), r.opts.lossTime, loss, r.nw.ClearFilters)
	}
}

// holdFault applies a fault to each node of idx, waits d, then clears
// it on each, even after ctx ended. The first error of apply or clear
// wins over the wait's.
func (r *labRun) holdFault(ctx context.Context, idx []int, d time.Duration, apply, clear func(ctx context.Context, i int) error) error {
	for _, i := range idx {
		if err := apply(ctx, i); err != nil {
			return err
		}
	}
	err := cluster.Sleep(ctx, d)
	for _, i := range idx {
		if cerr := clear(context.WithoutCancel(ctx), i); cerr != nil {
			return cerr
		}
	}
	return err
}

// everyNode returns the index of every node.
func (r *labRun) everyNode() []int {
	idx := make([]int, r.nodes)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func lossLeader(p float64) func(context.Context, *labRun) (fault, error) {
	return func(ctx context.Context, r *labRun) (fault, error) {
		v := r.leader
		f := fault{start: invariant.Monotonic(), faulted: []string{v}, mayMove: []string{v},
			what: fmt.Sprintf("%g%% loss on leader %s's links for %v", p*100, v, r.opts.lossTime)}
		loss := func(ctx context.Context, i int) error { return r.nw.Loss(ctx, i, p, true) }
		return f, r.holdFault(ctx, []int{r.idx(v)}, r.opts.lossTime, loss, r.nw.ClearFilters)
	}
}

func delayAll(d time.Duration) func(context.Context, *labRun) (fault, error) {
	return func(ctx context.Context, r *labRun) (fault, error) {
		f := fault{start: invariant.Monotonic(), what: fmt.Sprintf("%v delay on every node for %v", d, r.opts.lossTime)}
		delay := func(ctx context.Context, i int) error { return r.nw.Delay(ctx, i, d) }
		return f, r.holdFault(ctx, r.everyNode(), r.opts.lossTime, delay, r.nw.ClearDelay)
	}
}

func sigstop(ctx context.Context, r *labRun) (fault, error) {
	v := r.pickAny()
	n := r.cl.Node(v)
	hold := r.timing.LockTTL + r.between(2*time.Second, 5*time.Second)
	f := fault{start: invariant.Monotonic(), faulted: []string{v}, dead: []string{v},
		what: fmt.Sprintf("%s%s agent stopped for %.1f s", v, leaderMark(r, v), hold.Seconds())}
	r.cl.Pause(n)
	err := cluster.Sleep(ctx, hold)
	r.cl.Resume(n)
	return f, err
}

func killLeader(ctx context.Context, r *labRun) (fault, error) {
	v := r.leader
	n := r.cl.Node(v)
	f := fault{start: invariant.Monotonic(), faulted: []string{v}, dead: []string{v}, what: fmt.Sprintf("leader %s killed", v)}
	r.killed[v] = true
	r.cl.KillNode(n)
	if err := r.waitRecovered(ctx, v); err != nil {
		return f, err
	}
	down := r.between(0, 3*time.Second)
	if err := cluster.Sleep(ctx, down); err != nil {
		return f, err
	}
	f.what += fmt.Sprintf(", restarted after recovery + %.1f s", down.Seconds())
	return f, r.restartAgent(ctx, n)
}

// restartAgent starts n's agent again and waits for its API; an agent
// that exits on start is noted and started again (three tries).
func (r *labRun) restartAgent(ctx context.Context, n *cluster.Node) error {
	for try := 1; ; try++ {
		if err := r.cl.StartAgent(n); err != nil {
			return err
		}
		err := r.cl.WaitReady(ctx, n)
		if err == nil {
			r.killed[n.Name] = false
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.startCrashes = append(r.startCrashes, fmt.Sprintf("%s on start (try %d): %v: %s", n.Name, try, err, panicLine(n.Log)))
		if try == 3 {
			return fmt.Errorf("agent %s did not start in 3 tries", n.Name)
		}
		r.cl.KillAgent(n)
	}
}

func restarts(ctx context.Context, r *labRun) (fault, error) {
	f := fault{start: invariant.Monotonic()}
	order := []string{r.leader, r.pick(false), r.pickAny()}
	r.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var parts []string
	for _, v := range order {
		if !slices.Contains(f.faulted, v) {
			f.faulted = append(f.faulted, v)
		}
		n := r.cl.Node(v)
		r.killed[v] = true
		if err := r.cl.StopAgent(n, 20*time.Second); err != nil {
			r.notes = append(r.notes, err.Error())
			r.cl.KillAgent(n)
		}
		pause := r.between(0, time.Second)
		if err := cluster.Sleep(ctx, pause); err != nil {
			return f, err
		}
		if err := r.restartAgent(ctx, n); err != nil {
			return f, err
		}
		gap := r.between(3*time.Second, 6*time.Second)
		parts = append(parts, fmt.Sprintf("%s%s (down %.1f s, then %.1f s)", v, leaderMark(r, v), pause.Seconds(), gap.Seconds()))
		if err := cluster.Sleep(ctx, gap); err != nil {
			return f, err
		}
	}
	f.what = "restarted " + strings.Join(parts, ", ")
	return f, nil
}

func diskFull(leader bool) func(context.Context, *labRun) (fault, error) {
	return func(ctx context.Context, r *labRun) (fault, error) {
		v := r.pick(leader)
		n := r.cl.Node(v)
		hold := r.holdTime()
		f := fault{start: invariant.Monotonic(), faulted: []string{v}, dead: []string{v},
			what: fmt.Sprintf("%s%s data dir full for %.1f s", v, leaderMark(r, v), hold.Seconds())}
		fill := filepath.Join(n.DataDir, "faultlab-fill")
		if err := fillDisk(fill); err != nil {
			return f, err
		}
		err := cluster.Sleep(ctx, hold)
		if rerr := os.Remove(fill); rerr != nil {
			return f, rerr
		}
		return f, err
	}
}

// fillDisk writes path until the file system is full.
func fillDisk(path string) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("fill disk: %w", err)
	}
	defer fh.Close()
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := fh.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return fmt.Errorf("fill disk: %w", err)
			}
		}
	}
	return nil
}

// clockOffsetFile is the file in a node's data dir whose duration a
// `-tags faultlab` build adds to the agent's wall clock (see
// agent/clockoffset_faultlab.go).
const clockOffsetFile = "faultlab-clock-offset"

// clockSupport says why bin cannot step its clock (nil: it can).
func clockSupport(_ context.Context, bin string) error {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read build info of %s: %w", bin, err)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), "faultlab") {
			return nil
		}
	}
	return fmt.Errorf("%s was not built with -tags faultlab; a per-node wall-clock step needs that test build "+
		"(the host clock is shared by every namespace and time namespaces do not offset CLOCK_REALTIME)", bin)
}

// clockStepPrepare gives one node, drawn from the seed, its clock offset
// before its agent starts. The offset is in place from the start, not
// stepped in the middle of the run: the test build adds it with
// time.Time.Add, which moves Go's monotonic reading too, so a change of
// the offset while the agent runs would jump every duration the agent is
// timing, which a real step never does (Go times durations on the
// monotonic clock). From the start on, the node's wall clock is off from
// the others' exactly as after a real step.
func clockStepPrepare(r *labRun) error {
	i := r.rng.IntN(r.nodes)
	r.clockNode = fmt.Sprintf("node%d", i+1)
	r.clockStep = r.between(30*time.Second, 5*time.Minute).Round(time.Second)
	if r.index%2 == 0 {
		r.clockStep = -r.clockStep
	}
	d := filepath.Join(r.dir, r.clockNode)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, clockOffsetFile), []byte(r.clockStep.String()+"\n"), 0o600)
}

func clockStep(ctx context.Context, r *labRun) (fault, error) {
	v, step := r.clockNode, r.clockStep
	hold := r.holdTime()
	f := fault{start: invariant.Monotonic(), what: fmt.Sprintf("%s%s wall clock off by %v, watched %.1f s", v, leaderMark(r, v), step, hold.Seconds())}
	// Check that the offset took: the node's status reports its clock.
	err := cluster.WaitFor(ctx, 5*time.Second, func() bool {
		st := r.status(ctx, v)
		return st != nil && absDur(time.Duration(st.Now-time.Now().Unix())*time.Second-step) <= 2*time.Second
	})
	if err != nil {
		return f, fmt.Errorf("%s's status does not show its clock off by %v: %w", v, step, err)
	}
	return f, cluster.Sleep(ctx, hold)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func leaderMark(r *labRun, node string) string {
	if node == r.leader {
		return " (leader)"
	}
	return ""
}

// crashedAgents returns the agents that exited while starting again and
// the nodes whose agent exited without the lab killing or stopping it.
func (r *labRun) crashedAgents() []string {
	out := slices.Clone(r.startCrashes)
	for _, n := range r.cl.Nodes {
		if n.Exited() && !r.killed[n.Name] {
			out = append(out, n.Name+": "+panicLine(n.Log))
		}
	}
	return out
}

// panicLine returns the first panic or fatal line of a log, or a pointer
// to the log.
func panicLine(path string) string {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			return l
		}
	}
	return "see " + path
}
