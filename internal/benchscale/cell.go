package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"haxd/api"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// cellLog prints one progress line of a cell.
type cellLog func(format string, args ...any)

// runCell starts a fresh cluster of n nodes, adds m services and measures
// it (see the package doc).
func runCell(ctx context.Context, o options, n, m int) (Result, error) {
	r := Result{Nodes: n, Services: m, Commit: o.commit, Timing: o.timing, Date: time.Now().UTC().Format(time.RFC3339),
		HeartbeatInterval: o.interval.String(), WindowSeconds: o.window.Seconds(), AddVia: o.addVia}
	dir, err := os.MkdirTemp("", fmt.Sprintf("haxd-benchscale-%dx%d-", n, m))
	if err != nil {
		return r, err
	}
	if o.keep {
		fmt.Printf("cell %dx%d: cluster directory %s (kept)\n", n, m, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logf := cellLog(func(format string, args ...any) {
		fmt.Printf("[%s %dx%d load %.1f] %s\n", time.Now().UTC().Format("15:04:05"), n, m, loadAvg(), fmt.Sprintf(format, args...))
	})
	logf("starting %d agents (%s profile) in %s", n, o.timing, dir)
	cl, err := startCellCluster(ctx, o, dir, n, &r, logf)
	if err != nil {
		return r, err
	}
	defer cl.Destroy()
	if err := waitQuorate(ctx, cl, 3*time.Minute); err != nil {
		return r, err
	}
	logf("cluster up; adding %d services via %s, %d at a time", m, o.addVia, o.addWorkers)

	// 1. Add the services; wait until every one beats.
	if err := addCellServices(ctx, o, cl, m, &r, logf); err != nil {
		return r, err
	}
	// 2. to 4. The steady-state window, `haxd ha status`, the failover.
	if err := measureCell(ctx, o, cl, &r, logf); err != nil {
		return r, err
	}
	if err := cluster.Sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	_, violations, err := cl.Check()
	if err != nil {
		return r, fmt.Errorf("invariant check: %w", err)
	}
	r.Violations = len(violations)
	for _, v := range violations {
		fmt.Println("VIOLATION:", v)
	}
	if r.FailoverRecovered < r.FailoverServices {
		return r, fmt.Errorf("failover: only %d of the %d services of %s ran elsewhere", r.FailoverRecovered, r.FailoverServices, r.Victim)
	}
	r.LostLocks, r.GuardFences = cl.SelfFences()

	// 5. fsyncs by strace, last: a traced agent is slow (every syscall
	// stops it) and may lose its lock under load, which must not spoil
	// the other measurements.
	if o.straceWindow > 0 {
		if err := straceAfterRestart(ctx, o, cl, &r, violations, logf); err != nil {
			return r, err
		}
	}
	r.MasterChanges = masterChanges(cl)
	logf("invariant violations %d; before the strace window: LRM lost its lock %d, guard self-fences %d; master changes %d", r.Violations, r.LostLocks, r.GuardFences, r.MasterChanges)
	return r, nil
}

// startCellCluster starts the cell's cluster of n nodes below dir. Many
// agents on a loaded machine are slow to answer: it gives each 20 s + 2 s
// per node, and tries twice more, in a fresh directory, noting each
// failed try in r.
func startCellCluster(ctx context.Context, o options, dir string, n int, r *Result, logf cellLog) (*cluster.Cluster, error) {
	for try := 1; ; try++ {
		cdir := filepath.Join(dir, fmt.Sprintf("try%d", try))
		cl, err := cluster.Start(ctx, cluster.Options{Binary: o.haxd, Dir: cdir, Nodes: n, Timing: o.timing, Metrics: true,
			APITimeout: 20*time.Second + time.Duration(n)*2*time.Second})
		if err == nil {
			return cl, nil
		}
		if try == 3 || ctx.Err() != nil {
			return nil, fmt.Errorf("start the cluster (%d tries): %w", try, err)
		}
		r.Notes = append(r.Notes, fmt.Sprintf("cluster start try %d failed: %v", try, err))
		logf("cluster start try %d failed (%v); trying again", try, err)
	}
}

// addCellServices adds m services, waits until every one beats and every
// node is online, then lets the cluster settle; it records the add rate
// and latencies in r.
func addCellServices(ctx context.Context, o options, cl *cluster.Cluster, m int, r *Result, logf cellLog) error {
	sids := make([]string, m)
	for i := range m {
		sids[i] = fmt.Sprintf("exec:s%05d", i+1)
	}
	addStart := time.Now()
	lat, err := addServices(ctx, o, cl, sids, &r.AddRetries)
	if err != nil {
		return err
	}
	r.AddSeconds = time.Since(addStart).Seconds()
	r.AddPerSecond = float64(m) / r.AddSeconds
	r.AddLatencyMedianMs, r.AddLatencyMaxMs = median(lat)*1000, slices.Max(lat)*1000
	logf("added %d services in %.1f s (%.0f/s; one add: median %.0f ms, max %.0f ms; %d retries)", m, r.AddSeconds, r.AddPerSecond, r.AddLatencyMedianMs, r.AddLatencyMaxMs, r.AddRetries)
	if err := waitAllBeating(ctx, cl, sids, 3*time.Minute+time.Duration(m)*300*time.Millisecond, o.interval); err != nil {
		return err
	}
	r.AllRunningSeconds = time.Since(addStart).Seconds()
	if _, err := waitAllOnline(ctx, cl, 3*time.Minute); err != nil {
		return err
	}
	logf("all %d services beating %.1f s after the first add; settling %v", m, r.AllRunningSeconds, o.settle)
	return cluster.Sleep(ctx, o.settle)
}

// measureCell measures the steady-state window, the latency of `haxd ha
// status` and the failover of the follower holding the most services.
func measureCell(ctx context.Context, o options, cl *cluster.Cluster, r *Result, logf cellLog) error {
	// 2. The steady-state window.
	master, err := masterNode(ctx, cl)
	if err != nil {
		return err
	}
	r.Master = master
	if err := steadyWindow(ctx, o, cl, r); err != nil {
		return err
	}
	logf("window: CPU master %.1f %%, followers median %.1f %% (max %.1f %%); RSS master %.0f MiB; raft %.0f B/s, %.1f entries/s, %.1f log writes/s; CRM round %.2f ms",
		r.CPUMasterPct, r.CPUFollowerMedianPct, r.CPUFollowerMaxPct, r.RSSMasterMiB, r.RaftBytesPerSecond, r.RaftEntriesPerSecond, r.LogWritesPerSecond, r.CRMRoundMeanMs)

	// 3. `haxd ha status` latency.
	if err := statusLatency(ctx, o, cl, r); err != nil {
		return err
	}
	logf("haxd ha status: median %.0f ms, max %.0f ms", r.StatusMedianMs, r.StatusMaxMs)

	// 4. Failover of the follower holding the most services.
	if err := failover(ctx, o, cl, r); err != nil {
		return err
	}
	logf("failover of %s (%d services): first %.2f s, last %.2f s, %d recovered", r.Victim, r.FailoverServices, r.FailoverFirstSeconds, r.FailoverLastSeconds, r.FailoverRecovered)
	return nil
}

// straceAfterRestart restarts the failover's victim first, so that the
// cluster is whole again, then counts fsyncs by strace and the lock
// losses and self-fences during it, and checks the invariants again
// (violations: those found before, not printed twice).
func straceAfterRestart(ctx context.Context, o options, cl *cluster.Cluster, r *Result, violations []string, logf cellLog) error {
	if err := cl.StartAgent(cl.Node(r.Victim)); err != nil {
		return fmt.Errorf("restart %s: %w", r.Victim, err)
	}
	if _, err := waitAllOnline(ctx, cl, 3*time.Minute); err != nil {
		return fmt.Errorf("after restarting %s: %w", r.Victim, err)
	}
	if err := cluster.Sleep(ctx, o.settle); err != nil {
		return err
	}
	var err error
	if r.Master, err = masterNode(ctx, cl); err != nil {
		return err
	}
	lost0, guard0 := cl.SelfFences()
	if err := straceWindow(ctx, o, cl, r); err != nil {
		return err
	}
	if err := cluster.Sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	lost1, guard1 := cl.SelfFences()
	r.LostLocksStrace, r.GuardFencesStrace = lost1-lost0, guard1-guard0
	logf("strace: %.1f fsync/s on the master (%s), %.1f on %s; during it and 5 s after: LRM lost its lock %d times, guard self-fences %d",
		r.FsyncMasterPerSecond, r.Master, r.FsyncFollowerPerSecond, r.FsyncFollower, r.LostLocksStrace, r.GuardFencesStrace)
	before := map[string]bool{}
	for _, v := range violations {
		before[v] = true
	}
	if _, violations, err = cl.Check(); err != nil {
		return fmt.Errorf("invariant check: %w", err)
	}
	r.Violations = len(violations)
	for _, v := range violations {
		if !before[v] {
			fmt.Println("VIOLATION (found after the restart of "+r.Victim+"):", v)
		}
	}
	return nil
}

// waitQuorate waits until every node's API answers and says it is in
// the quorate partition (a CRM becomes master only once a service is
// configured).
func waitQuorate(ctx context.Context, cl *cluster.Cluster, d time.Duration) error {
	var last string
	err := cluster.WaitFor(ctx, d, func() bool {
		for _, n := range cl.Nodes {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := n.Client().Status(sctx)
			cancel()
			if err != nil || !st.Quorate {
				last = fmt.Sprintf("%s not quorate (%v)", n.Name, err)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("cluster not up: %s: %w", last, err)
	}
	return nil
}

// waitAllOnline waits until a master wrote a status with every node
// online, and returns the master.
func waitAllOnline(ctx context.Context, cl *cluster.Cluster, d time.Duration) (string, error) {
	var last string
	err := cluster.WaitFor(ctx, d, func() bool {
		st, _, err := cl.Status(ctx)
		if err != nil || st.Manager == nil || st.Manager.MasterNode == "" {
			last = fmt.Sprint("no master yet: ", err)
			return false
		}
		online := 0
		for _, s := range st.Manager.NodeStatus {
			if s == "online" {
				online++
			}
		}
		last = fmt.Sprintf("%d of %d nodes online", online, len(cl.Nodes))
		return online == len(cl.Nodes)
	})
	if err != nil {
		return "", fmt.Errorf("cluster not up: %s: %w", last, err)
	}
	return masterNode(ctx, cl)
}

func masterNode(ctx context.Context, cl *cluster.Cluster) (string, error) {
	st, _, err := cl.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("status: %w", err)
	}
	if st.Manager == nil || st.Manager.MasterNode == "" {
		return "", errors.New("status: no master")
	}
	return st.Manager.MasterNode, nil
}

// addServices adds every sid, round-robin over the nodes (each added
// through the API socket of the node it is placed on), o.addWorkers at a
// time, and returns each add's latency in seconds.
func addServices(ctx context.Context, o options, cl *cluster.Cluster, sids []string, retries *int) ([]float64, error) {
	spec := fmt.Sprintf(`{"command":%q,"args":["demo-service","--dir",%q,"--interval",%q],"stop_timeout":"5s"}`,
		o.heartbeat, cl.HeartbeatDir, o.interval.String())
	lat := make([]float64, len(sids))
	var addRetries atomic.Int64
	defer func() { *retries = int(addRetries.Load()) }()
	work := make(chan int)
	errs := make(chan error, o.addWorkers)
	var wg sync.WaitGroup
	for range o.addWorkers {
		wg.Go(func() {
			for i := range work {
				node := cl.Nodes[i%len(cl.Nodes)]
				start := time.Now()
				var err error
				// A loaded cluster answers some adds with an unknown
				// outcome (a leader change, a timeout): try again for up
				// to two minutes.
				giveUp := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					err = addOne(ctx, o, cl.Binary(), node, sids[i], spec)
					if err != nil && try > 0 && strings.Contains(err.Error(), "already defined") {
						// An earlier try whose outcome was unknown did
						// add it.
						err = nil
					}
					if err == nil || time.Now().After(giveUp) || ctx.Err() != nil {
						break
					}
					addRetries.Add(1)
					time.Sleep(time.Second)
				}
				if err != nil {
					errs <- fmt.Errorf("add %s on %s: %w", sids[i], node.Name, err)
					return
				}
				lat[i] = time.Since(start).Seconds()
			}
		})
	}
	var err error
feed:
	for i := range sids {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return lat, err
}

func addOne(ctx context.Context, o options, haxd string, node *cluster.Node, sid, spec string) error {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if o.addVia == "cli" {
		out, err := exec.CommandContext(actx, haxd, "ha", "add", sid, "--socket", node.Socket, "--node", node.Name, "--spec", spec).CombinedOutput()
		if err != nil {
			return fmt.Errorf("haxd ha add: %w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return node.Client().AddResource(actx, api.AddResourceRequest{SID: sid, Node: node.Name, Spec: []byte(spec)})
}

// beating returns, per service, the node of its most recent heartbeat
// file that was written within fresh (by the file's mtime).
func beating(dir string, fresh time.Duration) map[string]string {
	ents, _ := os.ReadDir(dir)
	out := map[string]string{}
	newest := map[string]time.Time{}
	now := time.Now()
	for _, e := range ents {
		svc, node, ok := hbName(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) > fresh {
			continue
		}
		if info.ModTime().After(newest[svc]) {
			newest[svc], out[svc] = info.ModTime(), node
		}
	}
	return out
}

// hbName splits a heartbeat file name service.node.pid.hb.
func hbName(name string) (svc, node string, ok bool) {
	parts := strings.Split(strings.TrimSuffix(name, ".hb"), ".")
	if !strings.HasSuffix(name, ".hb") || len(parts) != 3 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func waitAllBeating(ctx context.Context, cl *cluster.Cluster, sids []string, d, interval time.Duration) error {
	fresh := 10*interval + 2*time.Second
	got := 0
	err := cluster.WaitFor(ctx, d, func() bool {
		b := beating(cl.HeartbeatDir, fresh)
		got = 0
		for _, s := range sids {
			if _, ok := b[s]; ok {
				got++
			}
		}
		return got == len(sids)
	})
	if err != nil {
		return fmt.Errorf("only %d of %d services beating: %w", got, len(sids), err)
	}
	return nil
}

// steadyWindow measures the idle cluster for o.window.
func steadyWindow(ctx context.Context, o options, cl *cluster.Cluster, r *Result) error {
	m0, err := scrapeAll(ctx, cl)
	if err != nil {
		return err
	}
	p0, t0 := procAll(cl), time.Now()
	load0 := loadAvg()
	if err := cluster.Sleep(ctx, o.window); err != nil {
		return err
	}
	p1, t1 := procAll(cl), time.Now()
	load1 := loadAvg()
	m1, err := scrapeAll(ctx, cl)
	if err != nil {
		return err
	}
	r.LoadWindow = [2]float64{load0, load1}
	if now, err := masterNode(ctx, cl); err != nil || now != r.Master {
		r.Notes = append(r.Notes, fmt.Sprintf("master changed during the window: %s -> %s", r.Master, now))
	}
	secs := t1.Sub(t0).Seconds()
	r.WindowMeasured = secs
	var follCPU, follRSS, raftBytes, raftEntries, logWrites, disk []float64
	for _, n := range cl.Nodes {
		a, b := p0[n.Name], p1[n.Name]
		if a.agentPID == 0 || a.agentPID != b.agentPID {
			return fmt.Errorf("agent of %s not running through the window (pid %d, then %d)", n.Name, a.agentPID, b.agentPID)
		}
		cpu := float64(b.agentTicks-a.agentTicks) / clockTicks / secs * 100
		guard := float64(b.guardTicks-a.guardTicks) / clockTicks / secs * 100
		rss := float64(b.agentRSS) / (1 << 20)
		r.CPUSumPct += cpu
		r.GuardCPUMeanPct += guard / float64(len(cl.Nodes))
		r.RSSMaxMiB = max(r.RSSMaxMiB, rss)
		d := float64(b.writeBytes-a.writeBytes) / secs
		disk = append(disk, d)
		x, y := m0[n.Name], m1[n.Name]
		raftBytes = append(raftBytes, (y.raftBytes-x.raftBytes)/secs)
		raftEntries = append(raftEntries, (y.raftEntries-x.raftEntries)/secs)
		logWrites = append(logWrites, (y.logWrites-x.logWrites)/secs)
		if n.Name == r.Master {
			r.CPUMasterPct, r.RSSMasterMiB, r.DiskWriteMasterBytesPerSecond = cpu, rss, d
			if rounds := y.crmCount - x.crmCount; rounds > 0 {
				r.CRMRoundMeanMs = (y.crmSum - x.crmSum) / rounds * 1000
				r.CRMRoundsPerSecond = rounds / secs
			}
			continue
		}
		follCPU, follRSS = append(follCPU, cpu), append(follRSS, rss)
	}
	if len(follCPU) > 0 {
		r.CPUFollowerMedianPct, r.CPUFollowerMaxPct = median(follCPU), slices.Max(follCPU)
		r.RSSFollowerMedianMiB = median(follRSS)
	}
	r.RaftBytesPerSecond, r.RaftEntriesPerSecond, r.LogWritesPerSecond = median(raftBytes), median(raftEntries), median(logWrites)
	r.DiskWriteMedianBytesPerSecond = median(disk)
	return nil
}

// straceWindow counts fsync and fdatasync calls of the master's agent and
// one follower's for o.straceWindow.
func straceWindow(ctx context.Context, o options, cl *cluster.Cluster, r *Result) error {
	follower := ""
	for _, n := range cl.Nodes {
		if n.Name != r.Master {
			follower = n.Name
			break
		}
	}
	r.FsyncFollower = follower
	targets := []string{r.Master}
	if follower != "" {
		targets = append(targets, follower)
	}
	type traced struct {
		cmd *exec.Cmd
		out string
	}
	var ts []traced
	stopAll := func() {
		for _, t := range ts {
			t.cmd.Process.Signal(syscall.SIGINT)
		}
		for _, t := range ts {
			t.cmd.Wait() //nolint:errcheck // strace exits non-zero on SIGINT on some versions; the summary file tells
		}
	}
	for _, name := range targets {
		out := filepath.Join(cl.Node(name).DataDir, "..", name+".strace")
		cmd := exec.Command("strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out, "-p", fmt.Sprint(cl.Node(name).AgentPID()))
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			stopAll()
			return fmt.Errorf("strace: %w", err)
		}
		ts = append(ts, traced{cmd, out})
	}
	start := time.Now()
	r.LoadStrace = loadAvg()
	err := cluster.Sleep(ctx, o.straceWindow)
	stopAll()
	secs := time.Since(start).Seconds()
	if err != nil {
		return err
	}
	for i, t := range ts {
		calls, err := straceCalls(t.out)
		if err != nil {
			return err
		}
		if i == 0 {
			r.FsyncMasterPerSecond = float64(calls) / secs
		} else {
			r.FsyncFollowerPerSecond = float64(calls) / secs
		}
	}
	return nil
}

// straceCalls sums the calls column of fsync and fdatasync in an
// `strace -c` summary.
func straceCalls(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("strace summary: %w", err)
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || (fs[len(fs)-1] != "fsync" && fs[len(fs)-1] != "fdatasync") {
			continue
		}
		var calls int
		if _, err := fmt.Sscan(fs[3], &calls); err != nil {
			return 0, fmt.Errorf("strace summary %s: line %q: calls column: %w", path, sc.Text(), err)
		}
		total += calls
	}
	return total, sc.Err()
}

// statusLatency times the real CLI, `haxd ha status`, against a follower
// and the master.
func statusLatency(ctx context.Context, o options, cl *cluster.Cluster, r *Result) error {
	var socks []string
	for _, n := range cl.Nodes {
		if n.Name != r.Master {
			socks = append(socks, n.Socket)
			break
		}
	}
	socks = append(socks, cl.Node(r.Master).Socket)
	var ds []float64
	for range o.statusRuns {
		for _, s := range socks {
			cmd := exec.CommandContext(ctx, cl.Binary(), "ha", "status", "--socket", s)
			var stderr strings.Builder
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("haxd ha status --socket %s: %w: %s", s, err, stderr.String())
			}
			ds = append(ds, time.Since(start).Seconds())
		}
	}
	r.StatusMedianMs, r.StatusMaxMs = median(ds)*1000, slices.Max(ds)*1000
	return nil
}

// failover kills the follower holding the most services and measures
// until each of its services beats on another node.
func failover(ctx context.Context, o options, cl *cluster.Cluster, r *Result) error {
	master, err := masterNode(ctx, cl)
	if err != nil {
		return err
	}
	fresh := 10*o.interval + 2*time.Second
	perNode := map[string][]string{}
	for svc, node := range beating(cl.HeartbeatDir, fresh) {
		perNode[node] = append(perNode[node], svc)
	}
	victim := ""
	for _, node := range slices.Sorted(maps.Keys(perNode)) {
		if node != master && (victim == "" || len(perNode[node]) > len(perNode[victim])) {
			victim = node
		}
	}
	if victim == "" {
		return errors.New("failover: no follower runs a service")
	}
	r.Victim, r.FailoverServices = victim, len(perNode[victim])
	mine := map[string]bool{}
	for _, s := range perNode[victim] {
		mine[s] = true
	}
	seen := map[string]bool{}
	ents, _ := os.ReadDir(cl.HeartbeatDir)
	for _, e := range ents {
		seen[e.Name()] = true
	}
	r.LoadFailover = loadAvg()
	killed := invariant.Monotonic()
	cl.KillNode(cl.Node(victim))
	newFile := map[string]string{}
	werr := cluster.WaitFor(ctx, 3*time.Minute+time.Duration(len(mine))*100*time.Millisecond, func() bool {
		ents, _ := os.ReadDir(cl.HeartbeatDir)
		for _, e := range ents {
			if seen[e.Name()] {
				continue
			}
			svc, node, ok := hbName(e.Name())
			if ok && mine[svc] && node != victim && newFile[svc] == "" {
				newFile[svc] = filepath.Join(cl.HeartbeatDir, e.Name())
			}
		}
		return len(newFile) == len(mine)
	})
	r.FailoverRecovered = len(newFile)
	if werr != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("failover: only %d of %d services of %s ran elsewhere within the wait", len(newFile), len(mine), victim))
	}
	var firsts []int64
	for _, p := range newFile {
		t, err := firstBeat(p)
		if err != nil {
			return err
		}
		firsts = append(firsts, t-killed)
	}
	if len(firsts) > 0 {
		r.FailoverFirstSeconds = time.Duration(slices.Min(firsts)).Seconds()
		r.FailoverLastSeconds = time.Duration(slices.Max(firsts)).Seconds()
	}
	return nil
}

// firstBeat returns the first heartbeat of a file, waiting briefly for a
// just-created file's first line.
func firstBeat(path string) (int64, error) {
	for range 100 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			var t int64
			if _, err := fmt.Sscan(line, &t); err != nil {
				return 0, fmt.Errorf("heartbeat file %s: first line %q: %w", path, line, err)
			}
			return t, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("heartbeat file %s: no heartbeat within 2 s of its creation", path)
}

// masterChanges counts CRMs that became master after the first one, from
// the logs.
func masterChanges(cl *cluster.Cluster) int {
	c := 0
	for _, n := range cl.Nodes {
		b, _ := os.ReadFile(n.Log)
		c += strings.Count(string(b), "=> master")
	}
	return max(0, c-1)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
