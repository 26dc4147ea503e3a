package integration

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// build is the result of building haxd once for the whole package.
type build struct {
	bin  string // path of the haxd binary
	skip string // non-empty: why every test is skipped
}

// built is set once by TestMain, before any test runs, and only read after.
var built build

// TestMain builds the haxd binary once from the repository root (the
// parent of this package's directory) for every test of the package.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		built.skip = "integration tests start real agents: skipped in -short mode"
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "haxd-integration-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: create build dir: %v\n", err)
		os.Exit(2)
	}
	built.bin = filepath.Join(dir, "haxd")
	if gobin, err := exec.LookPath("go"); err != nil {
		built.skip = "the go tool is not in PATH, so haxd cannot be built: EVERY INTEGRATION TEST IS SKIPPED"
		fmt.Fprintf(os.Stderr, "\n!!! integration: %s\n\n", built.skip)
	} else {
		cmd := exec.Command(gobin, "build", "-o", built.bin, "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: go build -o %s ..: %v\n%s", built.bin, err, out)
			os.RemoveAll(dir)
			os.Exit(2)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Deadlines for polling. They are generous on purpose: the tests assert
// what happens, never how fast; a loaded 2-core machine may be slow.
const (
	startDeadline    = 60 * time.Second
	failoverDeadline = 90 * time.Second
	// fresh is how recent a heartbeat must be for a service to count as
	// running (heartbeats come every invariant.Interval).
	fresh = 500 * time.Millisecond
)

// harness is one test's cluster of three real agents with fast timing.
type harness struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	cl     *cluster.Cluster
	timing ha.Timing
}

// startCluster starts three agents with the fast timing profile and
// registers the end of the test: destroy everything, run the invariant
// check, and on failure print the tails of every log and keep the dir.
func startCluster(t *testing.T, extra ...string) *harness {
	t.Helper()
	return startClusterWith(t, func(*cluster.Options) {}, extra...)
}

// startClusterWith is startCluster with a hook that changes the options
// (metrics listeners, say) before the agents start.
func startClusterWith(t *testing.T, opt func(*cluster.Options), extra ...string) *harness {
	t.Helper()
	if built.skip != "" {
		t.Skip(built.skip)
	}
	dir, err := os.MkdirTemp("", "haxd-it-")
	if err != nil {
		t.Fatalf("create cluster dir: %v", err)
	}
	h := &harness{t: t, ctx: context.Background(), dir: dir, timing: ha.FastTiming()}
	opts := cluster.Options{Binary: built.bin, Dir: dir, Nodes: 3, Timing: "fast", Extra: extra}
	opt(&opts)
	cl, err := cluster.Start(h.ctx, opts)
	if err != nil {
		t.Logf("cluster dir kept: %s", dir)
		t.Fatalf("start cluster: %v", err)
	}
	h.cl = cl
	t.Cleanup(h.finish)
	return h
}

// finish kills the cluster, checks the invariant over every recorded run,
// and dumps the logs when the test failed.
func (h *harness) finish() {
	t := h.t
	h.cl.Destroy()
	runs, violations, err := h.cl.Check()
	if err != nil {
		t.Errorf("invariant check: %v", err)
	}
	for _, v := range violations {
		t.Errorf("INVARIANT VIOLATED: %s", v)
	}
	t.Logf("invariant check: %d recorded runs, %d violations", len(runs), len(violations))
	for _, r := range runs {
		t.Logf("  run %s on %s pid %d for %v", r.Service, r.Node, r.PID, r.Duration().Round(time.Millisecond))
	}
	if !t.Failed() {
		if os.Getenv("HAXD_IT_KEEP") != "" {
			t.Logf("HAXD_IT_KEEP is set: cluster dir kept: %s", h.dir)
		} else {
			os.RemoveAll(h.dir)
		}
		return
	}
	for _, n := range h.cl.Nodes {
		t.Logf("----- tail of %s (raft transport noise removed)\n%s", n.Log, tail(n.Log, 60))
		guardLog := filepath.Join(n.DataDir, "guard.log")
		t.Logf("----- tail of %s\n%s", guardLog, tail(guardLog, 20))
	}
	t.Logf("cluster dir kept for inspection: %s", h.dir)
}

// tail returns the last lines of a log file, without raft's transport
// noise about unreachable peers.
func tail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "appendEntries") || strings.Contains(l, "heartbeat to") ||
			strings.Contains(l, "failed to decode incoming command") || strings.Contains(l, "failed to contact") {
			continue
		}
		all = append(all, l)
	}
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// waitFor polls cond until it holds, failing the test after d.
func (h *harness) waitFor(d time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status returns the cluster status from the first agent that answers, or
// nil.
func (h *harness) status() *api.Status {
	st, _, err := h.cl.Status(h.ctx)
	if err != nil {
		return nil
	}
	return st
}

// service returns the CRM's status of sid, or nil.
func (h *harness) service(sid string) *ha.ServiceStatus {
	st := h.status()
	if st == nil || st.Manager == nil {
		return nil
	}
	return st.Manager.ServiceStatus[ha.SID(sid)]
}

// svc is the name of the demo service that startOnePerNode puts on node.
func svc(node string) string { return "exec:svc" + strings.TrimPrefix(node, "node") }

// startOnePerNode adds svc(node) on every node, waits until all of them run,
// and returns the CRM master (an idle CRM has no master, so the master is
// only known once there are services).
func (h *harness) startOnePerNode() string {
	h.t.Helper()
	for _, n := range h.cl.Nodes {
		h.addService(svc(n.Name), n.Name)
	}
	for _, n := range h.cl.Nodes {
		h.waitStarted(svc(n.Name), n.Name, startDeadline)
	}
	return h.master()
}

// master returns the node whose CRM wrote the manager status last.
func (h *harness) master() string {
	h.t.Helper()
	var m string
	h.waitFor(startDeadline, "a CRM master", func() bool {
		st := h.status()
		if st != nil && st.Manager != nil {
			m = st.Manager.MasterNode
		}
		return m != ""
	})
	return m
}

// others returns the names of every node except the given ones, sorted.
func (h *harness) others(except ...string) []string {
	var out []string
	for _, n := range h.cl.Nodes {
		if !slices.Contains(except, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

// addService adds a demo service on node, retrying while the cluster
// settles (no leader yet, node not yet known to the CRM).
func (h *harness) addService(sid, node string) {
	h.t.Helper()
	var last error
	h.waitFor(startDeadline, "adding "+sid+" on "+node+" (last error: see below)", func() bool {
		for _, n := range h.cl.Nodes {
			if n.Exited() {
				continue
			}
			last = h.cl.AddDemoService(h.ctx, n, sid, node)
			if last == nil {
				return true
			}
			if strings.Contains(last.Error(), "already defined") {
				return true
			}
			break
		}
		h.t.Logf("add %s: %v (retrying)", sid, last)
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// waitStarted waits until the CRM reports sid started on node and its
// heartbeats come from node.
func (h *harness) waitStarted(sid, node string, d time.Duration) {
	h.t.Helper()
	h.waitFor(d, fmt.Sprintf("%s started and beating on %s", sid, node), func() bool {
		sd := h.service(sid)
		return sd != nil && sd.State == ha.StateStarted && sd.Node == node && h.cl.RunningOn(sid, fresh) == node
	})
}

// waitMoved waits until sid is started and beating on a node other than
// from, and returns that node.
func (h *harness) waitMoved(sid, from string, d time.Duration) string {
	h.t.Helper()
	var to string
	h.waitFor(d, fmt.Sprintf("%s started and beating on a node other than %s", sid, from), func() bool {
		sd := h.service(sid)
		if sd == nil || sd.State != ha.StateStarted || sd.Node == from {
			return false
		}
		to = sd.Node
		return h.cl.RunningOn(sid, fresh) == to
	})
	return to
}

// runs returns the recorded runs of sid, oldest first.
func (h *harness) runs(sid string) []invariant.Run {
	all, err := invariant.Load(h.cl.HeartbeatDir)
	if err != nil {
		h.t.Fatalf("load heartbeats: %v", err)
	}
	var out []invariant.Run
	for _, r := range all {
		if r.Service == sid {
			out = append(out, r)
		}
	}
	return out
}

// runNodes lists the nodes of sid's runs, oldest first, e.g. "node1 node3".
func (h *harness) runNodes(sid string) string {
	var nodes []string
	for _, r := range h.runs(sid) {
		nodes = append(nodes, r.Node)
	}
	return strings.Join(nodes, " ")
}

// assertOneRun checks that sid ran exactly once, on node, and still runs:
// it was never stopped, restarted or moved.
func (h *harness) assertOneRun(sid, node string) {
	h.t.Helper()
	runs := h.runs(sid)
	if len(runs) != 1 || runs[0].Node != node {
		h.t.Errorf("%s: want a single uninterrupted run on %s, got runs on [%s]", sid, node, h.runNodes(sid))
		return
	}
	if age := time.Duration(invariant.Monotonic() - runs[0].Last); age > fresh {
		h.t.Errorf("%s: its only run on %s (pid %d) stopped beating %v ago", sid, node, runs[0].PID, age.Round(time.Millisecond))
	}
}

// logMark remembers how far every node's agent and guard logs were
// written, so that later checks look only at what came after.
type logMark map[string]int64

func (h *harness) mark() logMark {
	m := logMark{}
	for _, n := range h.cl.Nodes {
		for _, p := range logPaths(n) {
			if fi, err := os.Stat(p); err == nil {
				m[p] = fi.Size()
			}
		}
	}
	return m
}

func logPaths(n *cluster.Node) []string {
	return []string{n.Log, filepath.Join(n.DataDir, "guard.log")}
}

// selfFenceMarkers are what a self-fence prints: the LRM losing its lock
// while active, and the guard killing the services.
var selfFenceMarkers = []string{"status change active => lost_agent_lock", "guard: self-fence"}

// selfFences returns the self-fence lines node wrote since mark.
func (h *harness) selfFences(node string, since logMark) []string {
	n := h.cl.Node(node)
	var out []string
	for _, p := range logPaths(n) {
		for _, l := range linesSince(p, since[p]) {
			for _, m := range selfFenceMarkers {
				if strings.Contains(l, m) {
					out = append(out, filepath.Base(p)+": "+l)
				}
			}
		}
	}
	return out
}

// guardFences returns the self-fence lines of node's guard log since mark.
func (h *harness) guardFences(node string, since logMark) []string {
	p := filepath.Join(h.cl.Node(node).DataDir, "guard.log")
	var out []string
	for _, l := range linesSince(p, since[p]) {
		if strings.Contains(l, "guard: self-fence, killing") {
			out = append(out, l)
		}
	}
	return out
}

// grepSince returns the lines of node's agent log written since mark that
// contain substr.
func (h *harness) grepSince(node string, since logMark, substr string) []string {
	n := h.cl.Node(node)
	var out []string
	for _, l := range linesSince(n.Log, since[n.Log]) {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

func linesSince(path string, off int64) []string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b[off:]), "\n"), "\n")
}
