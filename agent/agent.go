package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"haxd/api"
	"haxd/clock"
	"haxd/crm"
	"haxd/fence"
	"haxd/gossip"
	"haxd/ha"
	"haxd/lrm"
	"haxd/pki"
	"haxd/resource/exec"
	"haxd/resource/ocf"
	"haxd/resource/systemd"
	"haxd/store"
)

// certRenewWarning is how long before its certificate expires the agent
// warns at start.
const certRenewWarning = 30 * 24 * time.Hour

// Version is reported in gossip tags and `haxd version`.
var Version = "dev"

// Agent is one running `haxd agent`.
type Agent struct {
	sd           *sdNotifier
	lrmStep      atomic.Int64 // Unix nanoseconds of the last LRM step
	usage        usageTagsState
	cfg          Config
	nodeShutdown NodeShutdownFunc
	log          *slog.Logger
	n            *node
	exec         *exec.Agent
	apiSrv       *http.Server
}

// Run starts the agent and blocks until ctx is cancelled (SIGTERM), then
// shuts down gracefully: the LRM follows the shutdown policy (a daemon
// restart freezes the services, which keep running), the CRM gives up
// mastership, gossip leaves, and the store closes. cfg must have passed
// Finish.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	return RunWith(ctx, cfg, logger, nil)
}

// NodeShutdownFunc reports, when the agent stops, whether the node itself
// is shutting down and whether that is a reboot (ha-semantics §4.9).
type NodeShutdownFunc func() (shutdown, reboot bool)

// RunWith is Run with an explicit way to tell a node shutdown from an agent
// restart when the agent stops; nil asks systemd over D-Bus (a
// ShutdownDetector bounded by cfg.ShutdownDetectTimeout), and without
// systemd a stop is an agent restart.
func RunWith(ctx context.Context, cfg Config, logger *slog.Logger, nodeShutdown NodeShutdownFunc) error {
	a := &Agent{cfg: cfg, log: logger.With(ha.KeyAgent, cfg.NodeName), sd: newSDNotifier(os.Getenv)}
	if nodeShutdown == nil {
		nodeShutdown = NewShutdownDetector(cfg.ShutdownDetectTimeout, a.log.With("component", "shutdown-detect")).Detect
	}
	a.nodeShutdown = nodeShutdown
	// TLS first: a node that cannot join the cluster starts nothing.
	var storeTLS *store.TLS
	if cfg.UseTLS() {
		m, err := pki.Load(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile, time.Now())
		if err != nil {
			return fmt.Errorf("tls: %w (create the files with `haxd tls ca create` and `haxd tls cert create --node %s`, or set insecure = true for local tests)", err, cfg.NodeName)
		}
		if m.Node != cfg.NodeName {
			return fmt.Errorf("tls_cert_file %s: the certificate names node %q, but node_name is %q", cfg.TLSCertFile, m.Node, cfg.NodeName)
		}
		storeTLS = &store.TLS{Cert: m.Cert, CAs: m.CAs}
		a.log.Info("raft port uses mutual TLS", "cert", cfg.TLSCertFile, "ca", cfg.TLSCAFile, "not_after", m.Cert.Leaf.NotAfter)
		if left := time.Until(m.Cert.Leaf.NotAfter); left < certRenewWarning {
			a.log.Warn("the node certificate expires soon: renew it with haxd tls cert create --force and restart the agent, or the other nodes will refuse this node",
				"cert", cfg.TLSCertFile, "not_after", m.Cert.Leaf.NotAfter, "left", left.Round(time.Hour))
		}
	} else {
		a.log.Warn("raft port WITHOUT TLS: anyone who reaches it can write to the cluster (insecure = true)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// The agent's own lifetime: store and gossip stay up during the
	// graceful shutdown, after ctx is done.
	life, stopLife := context.WithCancel(context.Background())
	defer stopLife()
	// A bad fence config stops the agent before it starts anything.
	fr, err := newDeviceFencer(life, cfg.FenceConfig, cfg.FenceOptions(), a.log.With("component", "fence"))
	if err != nil {
		return err
	}
	defer fr.stop()
	guardSocket, err := a.ensureGuard(ctx)
	if err != nil {
		return err
	}

	scfg := store.DefaultConfig()
	scfg.NodeID = cfg.NodeName
	scfg.DataDir = filepath.Join(cfg.DataDir, "raft")
	scfg.BindAddr = cfg.RaftAddr
	scfg.Voters = cfg.RaftVoters
	scfg.LockTTL = cfg.Timing.LockTTL
	cfg.applyStoreTimings(&scfg)
	scfg.TLS = storeTLS
	// Renewals answered from the leader's memory, unless this node's
	// master CRM may record fence device confirmations (docs/safety.md).
	scfg.RenewFromMemory = fr == nil
	if cfg.AdvertiseIP != "" {
		_, port, _ := net.SplitHostPort(cfg.RaftAddr)
		scfg.AdvertiseAddr = net.JoinHostPort(cfg.AdvertiseIP, port)
	}
	warnings, err := scfg.CheckTiming(cfg.Timing)
	if err != nil {
		return fmt.Errorf("store timing: %w", err)
	}
	for _, w := range warnings {
		a.log.Warn("store timing: " + w)
	}
	st, err := store.Open(life, scfg, a.log.With("component", "store"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()

	gcfg := gossip.DefaultConfig(cfg.NodeName)
	if cfg.Insecure {
		gcfg = gossip.LocalConfig(cfg.NodeName)
	}
	ghost, gport, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip_addr %q: %w", cfg.GossipAddr, err)
	}
	gcfg.BindAddr = ghost
	if gcfg.BindPort, err = strconv.Atoi(gport); err != nil {
		return fmt.Errorf("gossip_addr %q: port: %w", cfg.GossipAddr, err)
	}
	cfg.applyGossipTiming(&gcfg)
	a.log.Info("gossip failure detector", "probe_interval", gcfg.ProbeInterval, "probe_timeout", gcfg.ProbeTimeout,
		"suspicion_mult", gcfg.SuspicionMult, "suspicion_max_timeout_mult", gcfg.SuspicionMaxTimeoutMult,
		"push_pull_interval", gcfg.PushPullInterval)
	gcfg.AdvertiseAddr = ""
	if cfg.AdvertiseIP != "" {
		gcfg.AdvertiseAddr = cfg.AdvertiseIP
	}
	gcfg.RaftAddr = st.Addr()
	gcfg.APIAddr = cfg.APISocket
	gcfg.Tags = map[string]string{gossip.TagVersion: Version}
	gcfg.Insecure = cfg.Insecure
	// serf's snapshot lets a restarted agent rejoin the members it knew,
	// even when its join list names only itself.
	gcfg.SnapshotPath = filepath.Join(cfg.DataDir, "serf.snapshot")
	if cfg.EncryptKey != "" {
		key, err := gossip.ParseKey(cfg.EncryptKey)
		if err != nil {
			return fmt.Errorf("encrypt_key: %w", err)
		}
		gcfg.Key = key
	}
	g, err := gossip.Start(life, gcfg, a.log.With("component", "gossip"))
	if err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}

	monoBase := clock.System{}.Mono()
	a.n = &node{name: cfg.NodeName, cfg: &a.cfg, store: st, gossip: g, guardSocket: guardSocket, base: time.Now(), monoBase: monoBase, devices: fr, log: a.log,
		obs: newObserver(cfg.NodeName, cfg.Timing), events: newEventLog(maxPageEvents)}
	if cfg.MetricsAddr != "" {
		a.n.metrics = newMetrics(st, cfg.NodeName)
		if err := a.n.metrics.bridgeRaft(); err != nil {
			a.log.Warn("raft metrics not bridged", "err", err)
		}
	}
	a.n.notify = newNotifier(life, cfg.NodeName, notifyConfig{webhooks: cfg.NotifyWebhooks, exec: cfg.NotifyExec, secret: cfg.notifySecret,
		timeout: cfg.NotifyTimeout, retries: cfg.NotifyRetries, backoff: cfg.NotifyBackoff}, a.log.With("component", "notify"), a.n.metrics)
	a.n.outbox = newOutbox(a.n.notify, st, a.log.With("component", "notify"), cfg.NotifyOutboxMax, cfg.Timing.CRMRound, min(cfg.Timing.LockTTL, 5*time.Second))
	go a.n.outbox.run(life)
	go a.watchQuorum(life, cfg.Timing.CRMRound)
	a.n.fencer = newFencer(a.log.With("component", "fence"), &a.cfg.Timing,
		func(ctx context.Context, expiry int64) (guardClient, error) {
			return fence.Open(ctx, guardSocket, expiry)
		},
		clock.System{}, a.n.expiry)
	a.n.fencer.fed = a.n.metrics.guardFeed
	// Every service, whatever its type, runs in a cgroup v2 leaf of its
	// own below cgroupParent (systemd units: the unit's cgroup), admitted
	// by the fencer and registered with the guard before it is spawned.
	cgroupParent, cgroupMount := serviceCgroupParent(&a.cfg, a.log)
	ex, err := exec.New(exec.Config{
		StateDir:     filepath.Join(cfg.DataDir, "services"),
		CgroupParent: cgroupParent,
		Specs:        execSpecs(a.n),
		Fence:        a.n.fencer,
		OnStart:      a.n.fencer.adopt,
		Logger:       a.log.With("component", "exec"),
	})
	if err != nil {
		return fmt.Errorf("exec agent: %w", err)
	}
	a.exec = ex
	a.n.fencer.killAll = ex.KillAll
	adopted, err := ex.Adopt(ctx)
	if err != nil {
		a.log.Warn("adopting running services failed", "err", err)
	}
	for _, s := range adopted {
		a.log.Info("re-adopted running service", ha.KeySID, s.SID, "pid", s.PID)
	}
	a.n.fencer.adoptLeaves(cgroupParent)
	oc, err := ocf.New(ocf.Config{Specs: ocfSpecs{a.n}, RunDir: filepath.Join(cfg.DataDir, "ocf"), VarRun: filepath.Join(cfg.DataDir, "ocf", "run"), CgroupParent: cgroupParent,
		Fence: a.n.fencer, Node: cfg.NodeName, Logger: a.log.With("component", "ocf")})
	if err != nil {
		return fmt.Errorf("ocf agent: %w", err)
	}
	sd, err := systemd.New(systemd.Config{CgroupMount: cgroupMount, Fence: a.n.fencer, Logger: a.log.With("component", "systemd")})
	if err != nil {
		return fmt.Errorf("systemd agent: %w", err)
	}
	a.n.agents = map[string]ha.ResourceAgent{
		"exec":    movingAgent{ResourceAgent: ex, n: a.n},
		"ocf":     movingAgent{ResourceAgent: oc, n: a.n},
		"systemd": movingAgent{ResourceAgent: sd, n: a.n},
	}

	go a.membership(life)
	go a.watchDisk(life, cfg.diskCheckInterval())
	go a.publishUsage(life, cgroupParent)

	if err := a.serveAPI(); err != nil {
		return err
	}
	defer a.apiSrv.Close()
	if cfg.APIAddr != "" {
		if storeTLS == nil {
			return fmt.Errorf("api_addr %s: the HTTPS API listener needs the node's TLS files", cfg.APIAddr)
		}
		srv, err := a.serveAPITLS(cfg.APIAddr, storeTLS.Cert, storeTLS.CAs)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if cfg.MetricsAddr != "" {
		srv, err := a.serveObservability(cfg.MetricsAddr)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	crmDone := make(chan struct{})
	lrmDone := make(chan struct{})
	crmStop := make(chan struct{})
	lrmStop := make(chan struct{})
	crmWake, lrmWake := newWaker(), newWaker()
	go wakeOnGossip(life, g.Events(), crmWake)
	go forwardWakes(life, a.n.devices.woken(), crmWake)
	crmChanges, stopCRMWatch := st.Watch(store.ChangeResources | store.ChangeCommands)
	defer stopCRMWatch()
	go forwardWakes(life, crmChanges, crmWake)
	lrmChanges, stopLRMWatch := st.Watch(store.ChangeManagerStatus)
	defer stopLRMWatch()
	go wakeOnAssignment(life, lrmChanges, st.ManagerStatus, cfg.NodeName, lrmWake)
	go a.runCRM(crmStop, crmDone, crmWake)
	go a.runLRM(life, lrmStop, lrmDone, lrmWake)
	a.log.Info("agent started", "raft", st.Addr(), "gossip", g.LocalAddr(), "api", cfg.APISocket,
		"lock_ttl", cfg.Timing.LockTTL, "watchdog_timeout", cfg.Timing.WatchdogTimeout)
	a.lrmStep.Store(time.Now().UnixNano())
	if err := a.sd.notify("READY=1\nSTATUS=serving the API on " + cfg.APISocket); err != nil {
		a.log.Warn("systemd notification failed", "err", err)
	}
	go a.sd.watchdog(life, &a.lrmStep, time.Now)

	<-ctx.Done()
	if err := a.sd.notify("STOPPING=1\nSTATUS=stopping: the LRM follows the shutdown policy"); err != nil {
		a.log.Warn("systemd notification failed", "err", err)
	}
	a.log.Info("shutting down", "shutdown_policy_applies", a.detectNodeShutdown())
	close(lrmStop)
	<-lrmDone
	close(crmStop)
	<-crmDone
	if err := g.Leave(); err != nil {
		a.log.Warn("gossip leave", "err", err)
	}
	_ = g.Shutdown()
	a.log.Info("agent stopped")
	return nil
}

// detectNodeShutdown tells a node shutdown or reboot (systemd is stopping
// the system) from a restart of the agent alone, and records it for the
// LRM's shutdown policy (ha-semantics §4.9).
func (a *Agent) detectNodeShutdown() bool {
	shutdown, reboot := a.nodeShutdown()
	a.n.setShutdown(shutdown, reboot)
	return shutdown
}

// runCRM steps the CRM once per CRMRound until stop, then shuts it down.
// Between rounds it runs one at once when woken (a gossip member failed or
// left, a fence job ended, the resources or commands changed) and, on the
// leader, when another node's lock becomes takeable, never two rounds at
// a time and never two starts closer than EventRoundGap.
func (a *Agent) runCRM(stop <-chan struct{}, done chan<- struct{}, wake waker) {
	defer close(done)
	e := newEnv(a.n, "crm", nil)
	c := crm.New(e, a.cfg.Timing)
	stopping := false
	for {
		start := time.Now()
		if !c.Step() {
			return
		}
		a.n.metrics.crmRoundDone(time.Since(start))
		sched := roundSchedule{period: a.cfg.Timing.CRMRound, gap: a.cfg.eventRoundGap(),
			at: nextLockExpiry(a.n.store, a.n.name, time.Now())}
		switch r := waitRound(start, sched, stop, wake); r {
		case wakeStop:
			if !stopping {
				c.RequestShutdown()
				stopping = true
			}
		case wakeAt, wakeEvent:
			a.log.Debug("CRM round now, not at its next tick", "origin", a.n.name+"/crm", "why", r.String())
		}
	}
}

// runLRM steps the LRM at its own pace until stop, then follows the
// shutdown request until the LRM exits. A wake-up (the master's status
// changed what concerns this node) runs a round at once, never two at a
// time and never two starts closer than EventRoundGap.
func (a *Agent) runLRM(life context.Context, stop <-chan struct{}, done chan<- struct{}, wake waker) {
	defer close(done)
	e := newEnv(a.n, "lrm", newWorkers(life, a.cfg.MaxWorkers))
	feedCtx, stopFeed := context.WithCancel(life)
	defer stopFeed()
	go a.n.fencer.feedWhileValid(feedCtx, min(a.cfg.Timing.WatchdogTimeout/4, 100*time.Millisecond))
	l := lrm.New(e, lrm.Options{Timing: a.cfg.Timing})
	stopping := false
	for {
		start := time.Now()
		if !l.Step() {
			return
		}
		a.lrmStep.Store(time.Now().UnixNano())
		period := l.Interval()
		if stopping {
			period = min(period, 100*time.Millisecond)
		}
		switch r := waitRound(start, roundSchedule{period: period, gap: a.cfg.eventRoundGap()}, stop, wake); r {
		case wakeStop:
			if !stopping {
				l.RequestShutdown()
				stopping = true
				stop = nil
			}
		case wakeEvent:
			a.log.Debug("LRM round now, not at its next tick", "origin", a.n.name+"/lrm", "why", "the master's status changed for this node")
		}
	}
}

// membership joins the raft cluster: bootstrap when this node is the
// lowest-named of bootstrap_expect gossip members with raft addresses and
// there is no state yet; otherwise ask the members to add this node until
// it is part of the configuration.
func (a *Agent) membership(ctx context.Context) {
	go a.rejoin(ctx)
	for {
		if a.inRaftConfig() {
			a.markMember()
			return
		}
		members := a.n.gossip.Members()
		var peers []store.Peer
		clusterExists := false
		for _, m := range members {
			if m.State == gossip.StateOnline && m.RaftAddr != "" {
				peers = append(peers, store.Peer{ID: m.Name, Addr: m.RaftAddr})
				clusterExists = clusterExists || m.Tags[tagMember] == "1"
			}
		}
		slices.SortFunc(peers, func(x, y store.Peer) int { return strings.Compare(x.ID, y.ID) })
		switch {
		case a.cfg.BootstrapExpect > 0 && !clusterExists && !a.n.store.HadState() && len(peers) >= a.cfg.BootstrapExpect && peers[0].ID == a.cfg.NodeName:
			if err := a.n.store.Bootstrap(peers...); err != nil {
				a.log.Warn("bootstrap failed", "err", err)
			} else {
				a.log.Info("bootstrapped the cluster", "peers", len(peers))
				a.seedDatacenter(ctx)
				a.markMember()
				return
			}
		default:
			for _, p := range peers {
				if p.ID == a.cfg.NodeName {
					continue
				}
				jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := a.n.store.JoinPeer(jctx, p)
				cancel()
				if err == nil {
					a.log.Info("joined the cluster", "via", p.ID)
					a.markMember()
					return
				}
			}
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return
		}
	}
}

// tagMember is gossiped once a node belongs to a raft cluster, so that a
// new node started with bootstrap_expect never bootstraps a second cluster
// beside an existing one: it joins instead.
const tagMember = "member"

// tagSteppedOut is gossiped, with a reason code, while a node steps out
// (its data dir is not writable, see watchDisk): the master then counts it
// as offline, so that it fences it (takes its expired agent lock) and
// recovers its services elsewhere.
const tagSteppedOut = "stepped_out"

func (a *Agent) markMember() {
	a.n.member.Store(true)
	a.publishTags()
}

// publishTags gossips this node's tags (tags).
func (a *Agent) publishTags() {
	a.n.tagsMu.Lock()
	defer a.n.tagsMu.Unlock()
	if err := a.n.gossip.SetTags(a.tags()); err != nil {
		a.log.Warn("gossip tags", "err", err)
	}
}

// tags are the gossip tags of this node: identity, membership and usage.
func (a *Agent) tags() map[string]string {
	tags := a.usage.get()
	if tags == nil {
		tags = map[string]string{}
	}
	tags[gossip.TagVersion] = Version
	tags[gossip.TagRaft] = a.n.store.Addr()
	tags[gossip.TagAPI] = a.cfg.APISocket
	if a.n.member.Load() {
		tags[tagMember] = "1"
	}
	if a.n.unwritable() != "" {
		// A short code, not the error: gossip metadata is small.
		tags[tagSteppedOut] = "data_dir_not_writable"
	}
	return tags
}

// rejoin keeps this node in gossip: whenever no other member is alive in
// its view (at start, or after a restart in which the others forgot it),
// it joins the configured addresses again, its own address excluded.
func (a *Agent) rejoin(ctx context.Context) {
	var addrs []string
	for _, j := range a.cfg.Join {
		if j != a.cfg.GossipAddr && j != a.n.gossip.LocalAddr() {
			addrs = append(addrs, j)
		}
	}
	if len(addrs) == 0 {
		return
	}
	for {
		if !a.othersAlive() {
			if _, err := a.n.gossip.Join(addrs); err != nil {
				a.log.Warn("gossip join failed, retrying", "join", addrs, "err", err)
			}
		}
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

func (a *Agent) othersAlive() bool {
	for _, m := range a.n.gossip.Members() {
		if m.Name != a.cfg.NodeName && m.State == gossip.StateOnline {
			return true
		}
	}
	return false
}

func (a *Agent) inRaftConfig() bool {
	servers, err := a.n.store.Servers()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(servers, func(s store.Server) bool { return s.ID == a.cfg.NodeName }) && len(servers) > 1 ||
		a.n.store.HadState()
}

// seedDatacenter stores the shutdown policy of the bootstrapping node,
// unless an operator set the settings meanwhile: the write is a
// compare-and-set on the settings read, so an operator's change between
// the read and the write wins (the next attempt sees it and stops).
func (a *Agent) seedDatacenter(ctx context.Context) {
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := a.n.store.Barrier(wctx)
		if err == nil {
			from, dc := a.n.store.Datacenter(), a.n.store.Datacenter()
			if dc.ShutdownPolicy != "" {
				cancel()
				return
			}
			dc.ShutdownPolicy = ha.ShutdownPolicy(a.cfg.ShutdownPolicy)
			err = a.n.store.UpdateDatacenter(wctx, from, dc)
		}
		cancel()
		if err == nil || !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// ensureGuard connects to this node's guard, starting `haxd guard` as a
// separate process (its own session, so it outlives the agent) when none
// answers on the socket.
func (a *Agent) ensureGuard(ctx context.Context) (string, error) {
	sock := a.cfg.GuardSocket
	if sock == "" {
		sock = filepath.Join(a.cfg.DataDir, "guard.sock")
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		if err := fence.Probe(ctx, sock); err != nil {
			return "", fmt.Errorf("guard on %s: %w", sock, err)
		}
		return sock, nil
	}
	if a.cfg.GuardSocket != "" {
		return "", fmt.Errorf("guard_socket %s: no guard answers; start `haxd guard` first", sock)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable to start the guard: %w", err)
	}
	args := []string{"guard", "--socket", sock, "--timing", a.cfg.Timing.Encode()}
	if a.cfg.WatchdogDevice != "" {
		args = append(args, "--device", a.cfg.WatchdogDevice)
	}
	logf, err := os.OpenFile(filepath.Join(a.cfg.DataDir, "guard.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", fmt.Errorf("guard log: %w", err)
	}
	defer logf.Close()
	cmd := osexec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start guard: %w", err)
	}
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, "guard.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write guard pid: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped; its exit is logged to guard.log
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			a.log.Info("started guard", "pid", cmd.Process.Pid, "socket", sock)
			return sock, nil
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return "", ctx.Err()
		}
	}
	return "", errors.New("guard did not start within 5s; see guard.log in the data dir")
}

// serveAPI serves the local API on the unix socket.
func (a *Agent) serveAPI() error {
	l, err := api.ListenUnix(a.cfg.APISocket, 0o600)
	if err != nil {
		return err
	}
	a.apiSrv = &http.Server{Handler: api.NewServer(&backend{a: a}, a.log.With("component", "api")), ReadHeaderTimeout: 5 * time.Second}
	go a.apiSrv.Serve(l) //nolint:errcheck // returns on Close
	return nil
}
