// Command benchfailover measures haxd's failover on real agents on
// loopback and checks that fast timings buy no false alarms. It is a
// benchmark, not a test: it prints measurements.
//
//	go build -o haxd . && go run ./internal/benchfailover -haxd ./haxd -runs 30 -timing fast
//	go run ./internal/benchfailover -haxd ./haxd -runs 5 -timing pve
//	go run ./internal/benchfailover -haxd ./haxd -soak 10m
//	go run ./internal/benchfailover -haxd ./haxd -runs 30 -fence
//	go run ./internal/benchfailover -haxd ./haxd -runs 30 -kill leader
//	go run ./internal/benchfailover -haxd ./haxd -guard 300
//
// Failover: a 3-node cluster runs one demo service (heartbeats with the
// monotonic clock). Each run kills the node running it the hard way (SIGKILL
// of agent, guard and service; never the raft leader, so the measurement is
// the plain node-failure case; with -kill leader always the raft leader,
// whose CRM is the master, so a new leader must be elected and restart
// the lock timers first) and measures from the kill to the first
// heartbeat of the service on another node. The killed node is then
// restarted and the cluster settles before the next run. The invariant
// check runs over all recorded heartbeats at the end.
//
// With -fence every node gets a simulated IPMI BMC (ipmi_sim, see
// internal/bmcsim) whose power-off kills the node, and the agents a
// fence_config driving Debian's fence_ipmilan: the master powers the killed
// node off through its BMC and recovers on the confirmation instead of
// after the lock TTL. Every run must show the master's fenced takeover in
// its log. -set adds agent config overrides (repeatable).
//
// Guard reaction (-guard N): no cluster; a real `haxd guard` with N
// handles that are armed with an expiry of now and never fed, each with a
// fresh process group registered; it reports how long after each
// handle's deadline the process died (the bound self_fence_time +
// clock_drift_margin must cover).
//
// Soak: the same cluster with two services runs with no fault for the given
// time while CPU hogs load every core and a writer keeps the disk busy with
// fsyncs; it reports self-fences (LRM active => lost_agent_lock, guard
// fencing) and needless recoveries (service state changes to fence).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"haxd/api"
	"haxd/internal/cluster"
)

func main() {
	bin := flag.String("haxd", "./haxd", "haxd binary")
	runs := flag.Int("runs", 30, "failover runs")
	timing := flag.String("timing", "fast", "timing profile: fast or pve")
	soak := flag.Duration("soak", 0, "run the no-fault soak for this long instead of failovers")
	keep := flag.Bool("keep", false, "keep the cluster directory")
	fenceMode := flag.Bool("fence", false, "fence through simulated IPMI BMCs and fence_ipmilan")
	kill := flag.String("kill", "other", "whose node to kill: other (a node that is not the raft leader) or leader (the master's own node)")
	guardRounds := flag.Int("guard", 0, "measure the guard's reaction over this many handles instead of failovers")
	guardPrio := flag.Int("guard-priority", 10, "with -guard: the guard's --realtime-priority (0: the normal scheduler)")
	var sets setFlags
	flag.Var(&sets, "set", "agent config override key=value (repeatable)")
	flag.Parse()
	if *kill != "other" && *kill != "leader" {
		fatal(fmt.Errorf("-kill %q: expected other or leader", *kill))
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fatal(err)
	}
	dir, err := os.MkdirTemp("", "haxd-bench-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ctx := context.Background()
	if *guardRounds > 0 {
		if err := runGuardReaction(ctx, abs, dir, *timing, *guardRounds, *guardPrio); err != nil {
			fatal(err)
		}
		return
	}
	extra := []string(sets)
	var bmcs *fenceBMCs
	if *fenceMode {
		bmcs, err = startBMCs(ctx, dir, 3)
		if err != nil {
			fatal(err)
		}
		defer bmcs.stop()
		if bmcs.lockTTL, err = lockTTL(*timing, sets); err != nil {
			fatal(err)
		}
		extra = append([]string{"fence_config=" + bmcs.cfgPath, "fence_status_interval=50ms", "fence_retries=0"}, extra...)
	}
	cl, err := cluster.Start(ctx, cluster.Options{Binary: abs, Dir: dir, Nodes: 3, Timing: *timing, Extra: extra, Metrics: true})
	if err != nil {
		fatal(err)
	}
	defer cl.Destroy()
	if bmcs != nil {
		bmcs.attach(cl)
	}
	if *soak > 0 {
		runSoak(ctx, cl, *soak)
		return
	}
	runFailovers(ctx, cl, *runs, *timing, bmcs, *kill == "leader")
}

// failoverStats is what runFailovers measures over its runs.
type failoverStats struct {
	samples                      []time.Duration // kill to running elsewhere
	fencedRuns                   int             // runs recovered on a fence device's confirmation
	phases                       [][4]time.Duration
	elections, lockTaken, starts []time.Duration
}

// runFailovers kills the node running a demo service runs times and
// prints how long the service took to run elsewhere, with its phases.
func runFailovers(ctx context.Context, cl *cluster.Cluster, runs int, timing string, bmcs *fenceBMCs, killLeader bool) {
	const sid = "exec:bench"
	must(cl, retry(30*time.Second, func() error { return cl.AddDemoService(ctx, cl.Nodes[0], sid, "node2") }))
	settle := 3 * time.Minute
	if timing == "pve" {
		settle = 10 * time.Minute
	}
	var st failoverStats
	fmt.Printf("load average at the start: %s\n", loadAvg())
	attempts := 0
	for len(st.samples) < runs {
		attempts++
		node, ok := placeForKill(ctx, cl, sid, settle, killLeader)
		if !ok {
			continue
		}
		st.killAndMeasure(ctx, cl, sid, node, settle, bmcs)
	}
	_, violations, err := cl.Check()
	must(cl, err)
	if killLeader {
		timing += ", the leader's node killed"
	}
	fmt.Printf("\n%d attempts for %d runs; load average at the end: %s\n", attempts, runs, loadAvg())
	if bmcs != nil {
		timing += fmt.Sprintf(" + fence device (%d of %d runs recovered on the confirmation)", st.fencedRuns, runs)
	}
	report(st.samples, timing, violations)
	st.print(cl)
}

// placeForKill waits for sid to run and moves it where the run kills it:
// onto the raft leader when killLeader, else off it. It returns the node
// to kill, or false when the leadership moved meanwhile (try again).
func placeForKill(ctx context.Context, cl *cluster.Cluster, sid string, settle time.Duration, killLeader bool) (string, bool) {
	node := waitRunning(cl, sid, settle)
	leader := leaderName(ctx, cl)
	switch {
	case killLeader && node != leader:
		// The master's own node dies with the service: move the
		// service to the raft leader first.
		_ = cl.Node(leader).Client().Relocate(ctx, apiMove(sid, leader))
		waitUntil(cl, settle, func() bool { return cl.RunningOn(sid, 300*time.Millisecond) == leader })
		node = leader
	case !killLeader && node == leader:
		// Keep the measurement to the plain node failure: move the
		// service off the raft leader first.
		target := firstOther(cl, leader)
		_ = cl.Node(leader).Client().Relocate(ctx, apiMove(sid, target))
		waitUntil(cl, settle, func() bool { return cl.RunningOn(sid, 300*time.Millisecond) == target })
		node = target
	}
	if killLeader && leaderName(ctx, cl) != node {
		// The leadership moved meanwhile: try again.
		return "", false
	}
	return node, true
}

// killAndMeasure kills node, waits for sid to run elsewhere, records the
// run and its phases, and restarts the node once it is usable again.
func (st *failoverStats) killAndMeasure(ctx context.Context, cl *cluster.Cluster, sid, node string, settle time.Duration, bmcs *fenceBMCs) {
	victim := cl.Node(node)
	confirmed, expired := countLogs(cl, fencedTakeover), countLogs(cl, expiredTakeover, "previous_owner="+node)
	marks := logSizes(cl)
	killed := time.Now()
	cl.KillNode(victim)
	waitUntil(cl, settle, func() bool {
		n := cl.RunningOn(sid, 300*time.Millisecond)
		return n != "" && n != node
	})
	d := time.Since(killed)
	st.samples = append(st.samples, d)
	fmt.Printf("run %2d: killed %s, %s running on %s after %.2f s (load %s)\n", len(st.samples), node, sid, cl.RunningOn(sid, time.Second), d.Seconds(), loadAvg())
	if bmcs == nil {
		st.recordKillPhases(cl, marks, node, killed, d)
	}
	if bmcs != nil {
		// Did the recovery come from the device's confirmation, or did
		// the lock TTL run out first (the store logs either)?
		waitUntil(cl, 10*time.Second, func() bool {
			return countLogs(cl, fencedTakeover) > confirmed || countLogs(cl, expiredTakeover, "previous_owner="+node) > expired
		})
		if countLogs(cl, fencedTakeover) > confirmed {
			st.fencedRuns++
			if p, ok := fencePhases(cl, marks, node, killed, killed.Add(d)); ok {
				st.phases = append(st.phases, p)
				fmt.Printf("        detect %.2f s, fence device %.2f s, record and take the lock %.3f s, start elsewhere %.2f s\n",
					p[0].Seconds(), p[1].Seconds(), p[2].Seconds(), p[3].Seconds())
			}
		} else {
			fmt.Printf("run %2d: recovered after the lock TTL, not on a confirmation\n", len(st.samples))
		}
		must(cl, bmcs.powerOn(node))
	}
	must(cl, cl.StartAgent(victim))
	// Let the restarted node rejoin and its LRM become usable again
	// (its lock was taken by the fencing master: one TTL).
	waitUntil(cl, settle, func() bool { return nodeUsable(ctx, cl, victim.Name) })
	if bmcs != nil {
		// The master took the node's lock on the confirmation and
		// holds it, unrenewed, for a TTL: a recovery to this node in
		// the next run would wait for it. Let it expire first.
		time.Sleep(bmcs.lockTTL)
	}
}

// recordKillPhases records, for a run without fence devices, when the new
// raft leader was elected and the lock taken after the kill, and how long
// the start elsewhere took after the takeover (d: kill to running).
func (st *failoverStats) recordKillPhases(cl *cluster.Cluster, marks map[string]int64, node string, killed time.Time, d time.Duration) {
	waitUntil(cl, 10*time.Second, func() bool { _, taken := killPhases(cl, marks, node); return !taken.IsZero() })
	elected, taken := killPhases(cl, marks, node)
	if !elected.IsZero() {
		st.elections = append(st.elections, elected.Sub(killed))
		fmt.Printf("        new raft leader %.3f s, ", elected.Sub(killed).Seconds())
	} else {
		fmt.Printf("        ")
	}
	fmt.Printf("lock taken %.3f s, start elsewhere %.3f s\n", taken.Sub(killed).Seconds(), killed.Add(d).Sub(taken).Seconds())
	st.lockTaken = append(st.lockTaken, taken.Sub(killed))
	st.starts = append(st.starts, killed.Add(d).Sub(taken))
}

// print prints the self-fences, the latencies and the phase spreads
// after the report.
func (st *failoverStats) print(cl *cluster.Cluster) {
	lost, fences := cl.SelfFences()
	fmt.Printf("surviving LRMs that lost their lock: %d; guard self-fences: %d (a killed node's own guard counts too)\n", lost, fences)
	printLatencies(cl)
	if len(st.lockTaken) > 0 {
		fmt.Printf("\nphases (min / median / p95 / p99 / max): lock taken after the kill %s; start elsewhere after the takeover %s\n", spread(st.lockTaken), spread(st.starts))
	}
	if len(st.elections) > 0 {
		fmt.Printf("new raft leader after the kill (%d runs; min / median / p95 / p99 / max): %s\n", len(st.elections), spread(st.elections))
	}
	if len(st.phases) > 0 {
		fmt.Printf("\nmedian of %d fenced runs: detect %.2f s | fence device %.2f s | record and take the lock %.3f s | start elsewhere %.2f s\n",
			len(st.phases), medianPhase(st.phases, 0).Seconds(), medianPhase(st.phases, 1).Seconds(), medianPhase(st.phases, 2).Seconds(), medianPhase(st.phases, 3).Seconds())
	}
}

// spread formats min / median / p95 / p99 / max of ds (nearest rank).
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration {
		i := int(float64(len(s))*p+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return fmt.Sprintf("%.3f / %.3f / %.3f / %.3f / %.3f s", s[0].Seconds(), pct(0.5).Seconds(), pct(0.95).Seconds(), pct(0.99).Seconds(), s[len(s)-1].Seconds())
}

func report(samples []time.Duration, timing string, violations []string) {
	s := slices.Clone(samples)
	slices.Sort(s)
	pct := func(p float64) time.Duration {
		i := int(float64(len(s))*p+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	fmt.Printf("\n| profile | runs | min | median | p95 | max | invariant violations |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Printf("| %s | %d | %.2f s | %.2f s | %.2f s | %.2f s | %d |\n", timing, len(s),
		s[0].Seconds(), median.Seconds(), pct(0.95).Seconds(), s[len(s)-1].Seconds(), len(violations))
	for _, v := range violations {
		fmt.Println("VIOLATION:", v)
	}
}

func runSoak(ctx context.Context, cl *cluster.Cluster, d time.Duration) {
	for i, n := range []string{"node1", "node2", "node3"} {
		sid := fmt.Sprintf("exec:soak%d", i+1)
		must(cl, retry(30*time.Second, func() error { return cl.AddDemoService(ctx, cl.Nodes[0], sid, n) }))
	}
	for i, n := range []string{"node1", "node2", "node3"} {
		waitUntil(cl, time.Minute, func() bool { return cl.RunningOn(fmt.Sprintf("exec:soak%d", i+1), time.Second) == n })
	}
	stop := make(chan struct{})
	var hogs atomic.Int64
	for range runtime.NumCPU() {
		go func() {
			x := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 1_000_000 {
					x++
				}
				hogs.Add(1)
			}
		}()
	}
	var fsyncs atomic.Int64
	go func() {
		f, err := os.CreateTemp("", "haxd-soak-disk-")
		if err != nil {
			return
		}
		defer os.Remove(f.Name())
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.Write(buf)
			f.Sync()
			if fsyncs.Add(1)%1000 == 0 {
				f.Truncate(0)
				f.Seek(0, 0)
			}
		}
	}()
	fmt.Printf("soak: %v with %d CPU hogs and an fsync writer, no faults\n", d, runtime.NumCPU())
	time.Sleep(d)
	close(stop)
	// A self-fence shows as an LRM losing its lock or as the guard
	// killing; a needless recovery as a service sent to fence; a service
	// killed and restarted in place as more than one recorded run.
	lostLocks, guardFences, recoveries, suspected := 0, 0, 0, 0
	for _, n := range cl.Nodes {
		b, _ := os.ReadFile(n.Log)
		lostLocks += strings.Count(string(b), "=> lost_agent_lock")
		suspected += strings.Count(string(b), `msg="gossip member failed"`)
		recoveries += strings.Count(string(b), "to 'fence'")
		g, _ := os.ReadFile(filepath.Join(n.DataDir, "guard.log"))
		guardFences += strings.Count(string(g), "guard: self-fence")
	}
	runs, violations, err := cl.Check()
	must(cl, err)
	fmt.Printf("\n| soak | CPU hogs | fsyncs | LRM lost its lock | guard self-fences | needless recoveries | service runs (3 services) | invariant violations |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	fmt.Printf("| %v | %d | %d | %d | %d | %d | %d | %d |\n", d, runtime.NumCPU(), fsyncs.Load(), lostLocks, guardFences, recoveries, len(runs), len(violations))
	fmt.Printf("healthy members declared failed by gossip (all nodes' views): %d\n", suspected)
	printLatencies(cl)
}

// loadAvg returns the 1, 5 and 15 minute load averages of the machine.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func leaderName(ctx context.Context, cl *cluster.Cluster) string {
	st, _, err := cl.Status(ctx)
	if err != nil || st.Manager == nil {
		return ""
	}
	return st.Manager.MasterNode
}

func nodeUsable(ctx context.Context, cl *cluster.Cluster, name string) bool {
	st, _, err := cl.Status(ctx)
	if err != nil || st.Manager == nil {
		return false
	}
	ls := st.LRM[name]
	fresh := st.StaleAfter
	if fresh <= 0 {
		fresh = 2
	}
	return st.Manager.NodeStatus[name] == "online" && ls != nil && st.Now-ls.Timestamp <= fresh &&
		(ls.State == "active" || ls.State == "wait_for_agent_lock")
}

func firstOther(cl *cluster.Cluster, not string) string {
	for _, n := range cl.Nodes {
		if n.Name != not {
			return n.Name
		}
	}
	return ""
}

func waitRunning(cl *cluster.Cluster, sid string, d time.Duration) string {
	var node string
	waitUntil(cl, d, func() bool { node = cl.RunningOn(sid, 300*time.Millisecond); return node != "" })
	return node
}

// failed destroys the cluster (no agent or service may outlive the
// benchmark) and exits.
func failed(cl *cluster.Cluster, err error) {
	cl.Destroy()
	fatal(err)
}

func waitUntil(cl *cluster.Cluster, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			failed(cl, fmt.Errorf("timed out after %v", d))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func retry(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func must(cl *cluster.Cluster, err error) {
	if err != nil {
		failed(cl, err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchfailover:", err)
	os.Exit(1)
}

func apiMove(sid, node string) api.MoveRequest { return api.MoveRequest{SID: sid, Node: node} }
