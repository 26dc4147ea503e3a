// Package cluster starts and breaks real haxd clusters on loopback: one
// `haxd agent` process per node (each starting its own guard), with its own
// data dir, ports and API socket. `haxd demo` and the integration tests use
// it. Every process runs in its own session, so a node can be killed the
// hard way (SIGKILL of agent, guard and services) or partly (agent only,
// SIGSTOP).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"haxd/api"
	"haxd/fence"
	"haxd/gossip"
	"haxd/internal/invariant"
	"haxd/pki"
)

// Options configure a cluster.
type Options struct {
	// Binary is the haxd executable to run.
	Binary string
	// Dir holds every node's data dir, logs and the heartbeat records.
	Dir string
	// Nodes is the number of nodes (node1..nodeN).
	Nodes int
	// Timing is the timing profile: fast (default) or pve.
	Timing string
	// Extra are further `--set key=value` overrides for every agent.
	Extra []string
	// IPs, when set, gives node i+1 the address IPs[i]: its gossip and
	// raft listen on the fixed ports GossipPort and RaftPort of that
	// address instead of on free loopback ports. It must have one entry
	// per node.
	IPs []string
	// Netns, when set, runs node i+1's agent (and so its guard and
	// services) in the network namespace Netns[i], as `ip netns exec
	// Netns[i] haxd agent ...`; ip execs the agent, so the pid stays the
	// agent's. It must have one entry per node and is used with IPs.
	Netns []string
	// NodeExtra are further `--set key=value` overrides for single
	// agents, by node name (node1..nodeN).
	NodeExtra map[string][]string
	// Metrics gives every node a metrics_addr on a free loopback port
	// (Node.Metrics): metrics and the status page.
	Metrics bool
	// APITimeout is how long Start and WaitReady wait for an agent's API
	// to answer; default 20 s (many agents on a loaded machine need more).
	APITimeout time.Duration
}

// GossipPort and RaftPort are the ports used on every node's own address
// when Options.IPs is set.
const (
	GossipPort = 7946
	RaftPort   = 7947
)

// Node is one node of the cluster.
type Node struct {
	Name    string
	DataDir string
	Socket  string
	Gossip  string
	Raft    string
	Log     string
	// Metrics is the node's metrics_addr when Options.Metrics is set.
	Metrics string
	// Netns is the network namespace the agent runs in; empty: the
	// caller's.
	Netns string
	args  []string
	cmd   *exec.Cmd
	done  chan struct{}
}

// Cluster is a running set of agents.
type Cluster struct {
	opts  Options
	key   string
	Nodes []*Node
	// HeartbeatDir is where demo services record their runs.
	HeartbeatDir string
	// TLSDir holds the cluster CA (ca.pem, ca-key.pem) and every node's
	// certificate (NAME.pem, NAME-key.pem) of the raft port's mutual TLS.
	TLSDir string
}

// Start launches every agent and returns once all API sockets answer.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Timing == "" {
		opts.Timing = "fast"
	}
	key, err := gossip.GenerateKey()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, key: key, HeartbeatDir: filepath.Join(opts.Dir, "heartbeats"), TLSDir: filepath.Join(opts.Dir, "tls")}
	if opts.IPs != nil && len(opts.IPs) != opts.Nodes {
		return nil, fmt.Errorf("cluster options: %d IPs for %d nodes", len(opts.IPs), opts.Nodes)
	}
	if opts.Netns != nil && len(opts.Netns) != opts.Nodes {
		return nil, fmt.Errorf("cluster options: %d network namespaces for %d nodes", len(opts.Netns), opts.Nodes)
	}
	// All ports at once, so none is handed out twice: gossip and raft
	// (on loopback), then metrics.
	var ports, metricsPorts []int
	want := 0
	if opts.IPs == nil {
		want = 2 * opts.Nodes
	}
	if opts.Metrics {
		want += opts.Nodes
	}
	if want > 0 {
		if ports, err = freePorts(want); err != nil {
			return nil, err
		}
	}
	if opts.Metrics {
		ports, metricsPorts = ports[:len(ports)-opts.Nodes], ports[len(ports)-opts.Nodes:]
	}
	for i := range opts.Nodes {
		name := fmt.Sprintf("node%d", i+1)
		n := &Node{Name: name, DataDir: filepath.Join(opts.Dir, name), Socket: filepath.Join(opts.Dir, name, "api.sock"),
			Log: filepath.Join(opts.Dir, name+".log")}
		if opts.IPs == nil {
			n.Gossip, n.Raft = fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		} else {
			n.Gossip = net.JoinHostPort(opts.IPs[i], strconv.Itoa(GossipPort))
			n.Raft = net.JoinHostPort(opts.IPs[i], strconv.Itoa(RaftPort))
		}
		if opts.Netns != nil {
			n.Netns = opts.Netns[i]
		}
		if opts.Metrics {
			n.Metrics = fmt.Sprintf("127.0.0.1:%d", metricsPorts[i])
		}
		c.Nodes = append(c.Nodes, n)
	}
	ca, err := pki.CreateCA(c.TLSDir, 0, time.Now(), false)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := ca.CreateCert(c.TLSDir, pki.CertOptions{Node: n.Name}, time.Now(), false); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		n.args = []string{"agent", "--node-name", n.Name, "--data-dir", n.DataDir, "--gossip-addr", n.Gossip,
			"--raft-addr", n.Raft, "--api-socket", n.Socket, "--encrypt-key", key, "--timing", opts.Timing,
			"--bootstrap-expect", strconv.Itoa(opts.Nodes),
			"--set", "tls_ca_file=" + filepath.Join(c.TLSDir, pki.CAFile),
			"--set", "tls_cert_file=" + filepath.Join(c.TLSDir, pki.CertFile(n.Name)),
			"--set", "tls_key_file=" + filepath.Join(c.TLSDir, pki.KeyFile(n.Name))}
		// Join every other node, never only node1: a restarted node1 that
		// joined just itself would stay alone in its gossip view.
		for _, o := range c.Nodes {
			if o != n {
				n.args = append(n.args, "--join", o.Gossip)
			}
		}
		if n.Metrics != "" {
			n.args = append(n.args, "--set", "metrics_addr="+n.Metrics)
		}
		for _, kv := range append(slices.Clone(opts.Extra), opts.NodeExtra[n.Name]...) {
			n.args = append(n.args, "--set", kv)
		}
		if err := c.StartAgent(n); err != nil {
			c.Destroy()
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := c.waitSocket(ctx, n); err != nil {
			c.Destroy()
			return nil, err
		}
	}
	return c, nil
}

// Binary is the haxd executable the cluster runs.
func (c *Cluster) Binary() string { return c.opts.Binary }

// Node returns the node with the given name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// StartAgent (re)starts n's agent process.
func (c *Cluster) StartAgent(n *Node) error {
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.opts.Binary, n.args...)
	if n.Netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.Netns, c.opts.Binary}, n.args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start agent %s: %w", n.Name, err)
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait() //nolint:errcheck // the exit is visible in the node's log
		logf.Close()
		close(done)
	}(n.done)
	return nil
}

func (c *Cluster) waitSocket(ctx context.Context, n *Node) error {
	wait := c.opts.APITimeout
	if wait <= 0 {
		wait = 20 * time.Second
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		cl := api.NewClient(n.Socket)
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cl.Status(sctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.done:
			return fmt.Errorf("agent %s exited; see %s", n.Name, n.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("agent %s: API did not answer within %v; see %s", n.Name, wait, n.Log)
}

// Client returns an API client of n.
func (n *Node) Client() *api.Client { return api.NewClient(n.Socket) }

// AgentPID returns the agent's pid, or 0 when it is not running.
func (n *Node) AgentPID() int {
	if n.cmd == nil || n.Exited() {
		return 0
	}
	return n.cmd.Process.Pid
}

// Exited reports whether the agent process has exited.
func (n *Node) Exited() bool {
	if n.done == nil {
		return true
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// GuardPID returns the pid of n's guard process, or 0 when it is not
// running.
func (n *Node) GuardPID() int {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "guard.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		return 0
	}
	// guard.pid outlives the guard; its pid may belong to anything now.
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !slices.Contains(strings.Split(string(cmd), "\x00"), filepath.Join(n.DataDir, "guard.sock")) {
		return 0
	}
	return pid
}

// ServicePGIDs returns the process groups of the demo services that
// recorded heartbeats on n and are still alive.
func (c *Cluster) ServicePGIDs(n *Node) []int {
	runs, _ := invariant.Load(c.HeartbeatDir)
	var out []int
	for _, r := range runs {
		if r.Node == n.Name && c.ours(r.PID) {
			out = append(out, r.PID)
		}
	}
	return out
}

// ours reports whether pid is alive and still a demo service of this
// cluster: pids of old runs get reused, and signalling a reused pid's
// process group could hit anything on the machine.
func (c *Cluster) ours(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return slices.Contains(args, "demo-service") && slices.Contains(args, c.HeartbeatDir)
}

// KillNode kills n the hard way: agent, guard and every service, with
// SIGKILL, as a power loss would.
func (c *Cluster) KillNode(n *Node) {
	if pid := n.AgentPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if pid := n.GuardPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pg := range c.ServicePGIDs(n) {
		syscall.Kill(-pg, syscall.SIGKILL)
	}
	if n.done != nil {
		<-n.done
	}
}

// KillAgent kills only n's agent with SIGKILL; its guard and services live on.
func (c *Cluster) KillAgent(n *Node) {
	if pid := n.AgentPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		<-n.done
	}
}

// StopAgent sends SIGTERM to n's agent and waits for it to exit (the LRM
// follows the restart/shutdown rules first).
func (c *Cluster) StopAgent(n *Node, timeout time.Duration) error {
	pid := n.AgentPID()
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-n.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("agent %s did not exit within %v after SIGTERM", n.Name, timeout)
	}
}

// Pause sends SIGSTOP to n's agent; Resume sends SIGCONT. Both do nothing
// when the agent is not running (a pid of 0 would signal the caller's own
// process group).
func (c *Cluster) Pause(n *Node) {
	if pid := n.AgentPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
}

// Resume continues a paused agent.
func (c *Cluster) Resume(n *Node) {
	if pid := n.AgentPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGCONT)
	}
}

// WaitReady waits until n's API answers (at most Options.APITimeout), e.g. after
// StartAgent restarted it.
func (c *Cluster) WaitReady(ctx context.Context, n *Node) error { return c.waitSocket(ctx, n) }

// AddDemoService adds an exec service that runs `haxd demo-service` on node.
func (c *Cluster) AddDemoService(ctx context.Context, via *Node, sid, node string) error {
	return via.Client().AddResource(ctx, c.DemoServiceRequest(sid, node))
}

// DemoServiceRequest is the request AddDemoService sends, for callers that
// add fields (a size for the scheduler, say).
func (c *Cluster) DemoServiceRequest(sid, node string) api.AddResourceRequest {
	return api.AddResourceRequest{SID: sid, Node: node,
		Spec: []byte(fmt.Sprintf(`{"command":%q,"args":["demo-service","--dir",%q],"stop_timeout":"5s"}`, c.opts.Binary, c.HeartbeatDir))}
}

// Status returns the status via the first live node.
func (c *Cluster) Status(ctx context.Context) (*api.Status, *Node, error) {
	var last error
	for _, n := range c.Nodes {
		if n.Exited() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Client().Status(sctx)
		cancel()
		if err == nil {
			return st, n, nil
		}
		last = err
	}
	if last == nil {
		last = errors.New("no agent running")
	}
	return nil, nil, last
}

// RunningOn returns the node that most recently recorded a heartbeat of
// service sid within the last window, or "".
func (c *Cluster) RunningOn(sid string, window time.Duration) string {
	runs, _ := invariant.Load(c.HeartbeatDir)
	now := invariant.Monotonic()
	best, node := int64(0), ""
	for _, r := range runs {
		if r.Service == sid && now-r.Last < int64(window) && r.Last > best {
			best, node = r.Last, r.Node
		}
	}
	return node
}

// Check runs the invariant check over every recorded heartbeat.
func (c *Cluster) Check() ([]invariant.Run, []string, error) {
	runs, err := invariant.Load(c.HeartbeatDir)
	if err != nil {
		return nil, nil, err
	}
	return runs, invariant.Check(runs), nil
}

// Destroy kills every agent, guard and service of the cluster, and
// removes the service cgroups the agents created.
func (c *Cluster) Destroy() {
	for _, n := range c.Nodes {
		c.KillNode(n)
	}
	if mount, err := fence.Cgroup2Mount(); err == nil {
		for _, n := range c.Nodes {
			_ = fence.RemoveCgroupTree(fence.ServiceCgroupParent(mount, n.Name, n.DataDir))
		}
	}
	// Services started after the heartbeat scan, some maybe before their
	// first heartbeat: kill every process left that runs a demo service of
	// this cluster (each leads its own session).
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && c.ours(pid) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// LogTail returns the tail of n's agent log, for test failure messages.
func (n *Node) LogTail(lines int) string {
	f, err := os.Open(n.Log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// freePorts returns n loopback ports, each free for TCP and UDP (memberlist
// uses both) when chosen. They are chosen below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range), so that an outgoing connection of
// a test running in parallel, whose local port comes from that range,
// cannot take one before the agent binds it; with no room below the range
// the kernel chooses (port 0).
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	low := ephemeralLow()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no %d free loopback ports found below %d", n, low)
		}
		p := 0
		if low > 11000 {
			p = 10000 + rand.IntN(low-10000)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		held = append(held, l)
		p = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		held = append(held, u)
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// ephemeralLow returns the lowest port of the kernel's ephemeral range,
// 32768 (Linux's default) when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return low
}
