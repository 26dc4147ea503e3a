// Command idlecost measures what an idle cluster costs: it starts N real
// agents on loopback with M exec services (`/bin/sleep`), waits until
// every service runs, lets nothing happen, and reports per agent the CPU
// (utime+stime from /proc over the window, in % of one core; its guard
// process's apart), the RSS,
// the fsync and fdatasync calls per second (strace -c, when strace is
// installed), and for the cluster the raft log's entries per second, the
// replicated commands per second and their bytes, by operation (from the
// agents' metrics). The load average is printed with every number: the
// machine may be shared.
//
// With -perf, it then samples every agent's call stacks with perf (kernel
// included, unlike Go's profiler) and splits each agent's CPU by component.
//
//	go build -o haxd . && go run ./internal/idlecost -haxd ./haxd -nodes 3 -services 10
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"haxd/api"
	"haxd/internal/cluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idlecost:", err)
		os.Exit(1)
	}
}

type options struct {
	binary   string
	nodes    int
	services int
	timing   string
	warmup   time.Duration
	window   time.Duration
	straceD  time.Duration
	keep     bool
	extra    string
	profile  string
	perf     time.Duration
}

func run() error {
	var o options
	flag.StringVar(&o.binary, "haxd", "./haxd", "haxd binary to run")
	flag.IntVar(&o.nodes, "nodes", 3, "number of agents")
	flag.IntVar(&o.services, "services", 10, "number of idle exec services (/bin/sleep)")
	flag.StringVar(&o.timing, "timing", "fast", "timing profile: fast or pve")
	flag.DurationVar(&o.warmup, "warmup", 15*time.Second, "idle time after every service runs, before measuring")
	flag.DurationVar(&o.window, "window", 60*time.Second, "CPU and raft measurement window")
	flag.DurationVar(&o.straceD, "strace", 30*time.Second, "strace window for fsync counting (0: skip)")
	flag.BoolVar(&o.keep, "keep", false, "keep the cluster directory")
	flag.StringVar(&o.extra, "set", "", "comma-separated key=value overrides for every agent")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the leader's agent to this file and of every other agent to this file plus .<node> (needs agents serving /debug/pprof)")
	flag.DurationVar(&o.perf, "perf", 0, "after the window, sample every agent with perf record -g for this long and split its CPU by component (0: skip)")
	flag.Parse()
	if o.nodes < 1 || o.services < 0 || o.window <= 0 {
		return fmt.Errorf("-nodes must be >= 1, -services >= 0, -window > 0 (got %d, %d, %v)", o.nodes, o.services, o.window)
	}
	bin, err := filepath.Abs(o.binary)
	if err != nil {
		return fmt.Errorf("-haxd %s: %w", o.binary, err)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("-haxd %s: %w", o.binary, err)
	}
	dir, err := os.MkdirTemp("", "haxd-idlecost-")
	if err != nil {
		return fmt.Errorf("create cluster dir: %w", err)
	}
	ctx := context.Background()
	var extra []string
	if o.extra != "" {
		extra = strings.Split(o.extra, ",")
	}
	cl, err := cluster.Start(ctx, cluster.Options{Binary: bin, Dir: dir, Nodes: o.nodes, Timing: o.timing, Metrics: true, Extra: extra})
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer func() {
		cl.Destroy()
		if o.keep {
			fmt.Println("kept", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	fmt.Printf("cluster: %d agents, %d services, timing %s, dir %s\n", o.nodes, o.services, o.timing, dir)
	if err := addServices(ctx, cl, o.services); err != nil {
		return err
	}
	fmt.Printf("all %d services started; idling %v\n", o.services, o.warmup)
	time.Sleep(o.warmup)
	return measure(ctx, cl, o)
}

// addServices adds n /bin/sleep services spread over the nodes and waits
// until the CRM reports each as started.
func addServices(ctx context.Context, cl *cluster.Cluster, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for i := range n {
		sid := fmt.Sprintf("exec:idle%d", i+1)
		node := cl.Nodes[i%len(cl.Nodes)].Name
		req := api.AddResourceRequest{SID: sid, Node: node, Spec: []byte(`{"command":"/bin/sleep","args":["100000"],"stop_timeout":"5s"}`)}
		for {
			err := cl.Nodes[0].Client().AddResource(ctx, req)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("add %s: %w", sid, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for {
		st, _, err := cl.Status(ctx)
		if err == nil {
			v := api.BuildView(st)
			started := 0
			for _, s := range v.Services {
				if s.State == "started" {
					started++
				}
			}
			if started == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("services did not all start within 2 minutes (last error %v)", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sample is one reading of an agent.
type sample struct {
	cpuTicks   uint64
	rssKiB     uint64
	guardPID   int    // the agent's guard child, 0 if not found
	guardTicks uint64 // its utime+stime
	metrics    map[string]float64
}

func measure(ctx context.Context, cl *cluster.Cluster, o options) error {
	hz := 100.0 // USER_HZ on Linux
	before := map[string]sample{}
	for _, n := range cl.Nodes {
		before[n.Name] = read(n)
	}
	load0 := loadavg()
	start := time.Now()
	var prof sync.WaitGroup
	if o.profile != "" {
		leader := leaderNode(ctx, cl)
		for _, n := range cl.Nodes {
			path := o.profile + "." + n.Name
			if n == leader {
				path = o.profile
			}
			prof.Add(1)
			go func() {
				defer prof.Done()
				if err := cpuProfile(n, min(o.window, 30*time.Second), path); err != nil {
					fmt.Fprintln(os.Stderr, "cpu profile:", err)
				}
			}()
		}
	}
	time.Sleep(o.window)
	elapsed := time.Since(start).Seconds()
	prof.Wait()
	load1 := loadavg()
	leader := leaderNode(ctx, cl)
	fmt.Printf("\nwindow %.0f s; load average before: %s; after: %s; raft leader %s\n", elapsed, load0, load1, leader.Name)
	fmt.Printf("%-8s %8s %9s %10s %12s\n", "node", "cpu %", "rss MiB", "log ent/s", "guard cpu %")
	for _, n := range cl.Nodes {
		a, b := before[n.Name], read(n)
		cpu := float64(b.cpuTicks-a.cpuTicks) / hz / elapsed * 100
		ents := (b.metrics["haxd_raft_last_index"] - a.metrics["haxd_raft_last_index"]) / elapsed
		guard := "?"
		if a.guardPID != 0 && a.guardPID == b.guardPID {
			guard = fmt.Sprintf("%.2f", float64(b.guardTicks-a.guardTicks)/hz/elapsed*100)
		}
		fmt.Printf("%-8s %8.2f %9.1f %10.2f %12s\n", n.Name, cpu, float64(b.rssKiB)/1024, ents, guard)
		if n == leader {
			printOps(a.metrics, b.metrics, elapsed)
		}
	}
	if o.straceD > 0 {
		if _, err := exec.LookPath("strace"); err != nil {
			fmt.Println("\nstrace not installed: fsyncs not counted")
		} else if err := fsyncs(cl, o.straceD); err != nil {
			return err
		}
	}
	if o.perf > 0 {
		if _, err := exec.LookPath("perf"); err != nil {
			fmt.Println("\nperf not installed: CPU not split by component")
			return nil
		}
		return perfProfiles(cl, o.perf)
	}
	return nil
}

// printOps prints the replicated commands per second by operation.
func printOps(a, b map[string]float64, secs float64) {
	re := regexp.MustCompile(`^haxd_raft_applied_(entries|bytes)_total\{op="([^"]+)"\}$`)
	type rate struct{ ents, bytes float64 }
	ops := map[string]*rate{}
	for k, v := range b {
		m := re.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		r := ops[m[2]]
		if r == nil {
			r = &rate{}
			ops[m[2]] = r
		}
		d := (v - a[k]) / secs
		if m[1] == "entries" {
			r.ents = d
		} else {
			r.bytes = d
		}
	}
	var te, tb float64
	fmt.Printf("  commands applied on the leader, per second, by operation:\n")
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		r := ops[op]
		if r.ents == 0 {
			continue
		}
		te += r.ents
		tb += r.bytes
		fmt.Printf("    %-16s %8.2f entries/s %10.0f bytes/s\n", op, r.ents, r.bytes)
	}
	fmt.Printf("    %-16s %8.2f entries/s %10.0f bytes/s\n", "total", te, tb)
}

// fsyncs counts every agent's fsync and fdatasync calls over d, all at once.
func fsyncs(cl *cluster.Cluster, d time.Duration) error {
	load0 := loadavg()
	type out struct {
		name  string
		calls int
		err   error
	}
	res := make(chan out, len(cl.Nodes))
	for _, n := range cl.Nodes {
		go func() {
			c, err := straceCount(n.AgentPID(), d)
			res <- out{n.Name, c, err}
		}()
	}
	got := map[string]out{}
	for range cl.Nodes {
		r := <-res
		got[r.name] = r
	}
	fmt.Printf("\nfsync+fdatasync over %v (strace -f -c), load average before: %s; after: %s\n", d, load0, loadavg())
	for _, n := range cl.Nodes {
		r := got[n.Name]
		if r.err != nil {
			fmt.Printf("%-8s error: %v\n", n.Name, r.err)
			continue
		}
		fmt.Printf("%-8s %8.2f /s (%d calls)\n", n.Name, float64(r.calls)/d.Seconds(), r.calls)
	}
	return nil
}

// straceCount runs strace -c on pid for d and returns the fsync and
// fdatasync calls it counted.
func straceCount(pid int, d time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-p", strconv.Itoa(pid))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, fmt.Errorf("strace: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start strace: %w", err)
	}
	time.AfterFunc(d, func() { _ = cmd.Process.Signal(os.Interrupt) })
	b, _ := io.ReadAll(stderr)
	_ = cmd.Wait()
	calls := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[len(f)-1] == "fsync" || f[len(f)-1] == "fdatasync") {
			if c, err := strconv.Atoi(f[3]); err == nil {
				calls += c
			}
		}
	}
	return calls, nil
}

// read samples an agent's CPU ticks, RSS and metrics.
func read(n *cluster.Node) sample {
	var s sample
	pid := n.AgentPID()
	s.cpuTicks = cpuTicks(pid)
	if s.guardPID = guardChild(pid); s.guardPID != 0 {
		s.guardTicks = cpuTicks(s.guardPID)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				s.rssKiB, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
	}
	s.metrics, _ = scrape(n.Metrics)
	return s
}

// cpuTicks returns utime+stime of pid in clock ticks, 0 if unreadable.
func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}

// guardChild returns the pid of the agent's self-fencing guard (a child
// process run as "haxd guard"), or 0.
func guardChild(agent int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", agent))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, c := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(c)
			if err != nil {
				continue
			}
			args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && slices.Contains(strings.Split(string(args), "\x00"), "guard") {
				return pid
			}
		}
	}
	return 0
}

// scrape reads the haxd_raft_* metrics of an agent.
func scrape(addr string) (map[string]float64, error) {
	if addr == "" {
		return nil, errors.New("no metrics address")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "haxd_raft_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// leaderNode returns the node the status names as master, or the first.
func leaderNode(ctx context.Context, cl *cluster.Cluster) *cluster.Node {
	st, _, err := cl.Status(ctx)
	if err == nil && st.Manager != nil {
		if n := cl.Node(st.Manager.MasterNode); n != nil {
			return n
		}
	}
	return cl.Nodes[0]
}

// cpuProfile fetches a CPU profile from n's metrics listener.
func cpuProfile(n *cluster.Node, d time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.Metrics, int(d.Seconds())))
	if err != nil {
		return fmt.Errorf("fetch profile of %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile of %s: %s", n.Name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Printf("cpu profile of %s (%v) in %s\n", n.Name, d, path)
	return nil
}

// loadavg returns the 1/5/15-minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
