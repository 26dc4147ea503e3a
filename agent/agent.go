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
	// clock times the agent's rounds, the lock validity and the guard's
	// feeds: one clock, so that they agree (RunWith: clock.System).
	clock  clock.Clock
	log    *slog.Logger
	n      *node
	exec   *exec.Agent
	apiSrv *http.Server
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
//
// It runs the agent's phases in order: load the TLS files, start the
// fence devices and the guard, open the store, start gossip, wire the
// node, start the resource agents, serve the APIs, run the CRM and LRM
// loops until ctx ends, then stop them.
func RunWith(ctx context.Context, cfg Config, logger *slog.Logger, nodeShutdown NodeShutdownFunc) error {
	a := &Agent{cfg: cfg, log: agentLogger(logger, cfg.NodeName), sd: newSDNotifier(os.Getenv), clock: clock.System{}}
	if nodeShutdown == nil {
		nodeShutdown = NewShutdownDetector(cfg.ShutdownDetectTimeout, a.log.With("component", "shutdown-detect")).Detect
	}
	a.nodeShutdown = nodeShutdown
	// TLS first: a node that cannot join the cluster starts nothing.
	storeTLS, err := a.loadTLS()
	if err != nil {
		return err
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
	st, err := a.openStore(life, storeTLS, fr == nil)
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := a.startGossip(life, st)
	if err != nil {
		return err
	}
	a.wireNode(life, st, g, guardSocket, fr)
	cgroupParent, err := a.startResourceAgents(ctx)
	if err != nil {
		return err
	}
	go a.membership(life)
	go a.watchDisk(life, cfg.diskCheckInterval())
	go a.publishUsage(life, cgroupParent)
	closeAPI, err := a.startAPIs(storeTLS)
	defer closeAPI()
	if err != nil {
		return err
	}
	lp := a.startLoops(life, st, g)
	defer lp.stopWatches()
	a.announceStarted(life, st, g)

	<-ctx.Done()
	a.stop(lp, g)
	return nil
}

// agentLogger is the logger of the agent of node name: every record
// carries the name under ha.KeyAgent, so that ha.KeyNode is left to the
// node a record is about and no record carries two node keys.
func agentLogger(logger *slog.Logger, name string) *slog.Logger {
	return logger.With(ha.KeyAgent, name)
}

// loadTLS loads the node's certificate for the raft port (and the HTTPS
// API) when TLS is configured, checks that it names this node and warns
// when it expires soon; without TLS it warns that the raft port is open
// and returns nil.
func (a *Agent) loadTLS() (*store.TLS, error) {
	cfg := &a.cfg
	if !cfg.UseTLS() {
		a.log.Warn("raft port WITHOUT TLS: anyone who reaches it can write to the cluster (insecure = true)")
		return nil, nil
	}
	m, err := pki.Load(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile, a.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("tls: %w (create the files with `haxd tls ca create` and `haxd tls cert create --node %s`, or set insecure = true for local tests)", err, cfg.NodeName)
	}
	if m.Node != cfg.NodeName {
		return nil, fmt.Errorf("tls_cert_file %s: the certificate names node %q, but node_name is %q", cfg.TLSCertFile, m.Node, cfg.NodeName)
	}
	a.log.Info("raft port uses mutual TLS", "cert", cfg.TLSCertFile, "ca", cfg.TLSCAFile, "not_after", m.Cert.Leaf.NotAfter)
	if left := m.Cert.Leaf.NotAfter.Sub(a.clock.Now()); left < certRenewWarning {
		a.log.Warn("the node certificate expires soon: renew it with haxd tls cert create --force and restart the agent, or the other nodes will refuse this node",
			"cert", cfg.TLSCertFile, "not_after", m.Cert.Leaf.NotAfter, "left", left.Round(time.Hour))
	}
	return &store.TLS{Cert: m.Cert, CAs: m.CAs}, nil
}

// openStore opens the raft store with the configured timings, after
// checking them against the lock TTL. renewFromMemory is true when this
// node has no fence devices (docs/safety.md).
func (a *Agent) openStore(life context.Context, storeTLS *store.TLS, renewFromMemory bool) (*store.Store, error) {
	cfg := &a.cfg
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
	scfg.RenewFromMemory = renewFromMemory
	if cfg.AdvertiseIP != "" {
		_, port, _ := net.SplitHostPort(cfg.RaftAddr)
		scfg.AdvertiseAddr = net.JoinHostPort(cfg.AdvertiseIP, port)
	}
	warnings, err := scfg.CheckTiming(cfg.Timing)
	if err != nil {
		return nil, fmt.Errorf("store timing: %w", err)
	}
	for _, w := range warnings {
		a.log.Warn("store timing: " + w)
	}
	st, err := store.Open(life, scfg, a.log.With("component", "store"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// startGossip starts the gossip member of this node, advertising the
// store's raft address and the API socket.
func (a *Agent) startGossip(life context.Context, st *store.Store) (*gossip.Gossip, error) {
	cfg := &a.cfg
	gcfg := gossip.DefaultConfig(cfg.NodeName)
	if cfg.Insecure {
		gcfg = gossip.LocalConfig(cfg.NodeName)
	}
	ghost, gport, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip_addr %q: %w", cfg.GossipAddr, err)
	}
	gcfg.BindAddr = ghost
	if gcfg.BindPort, err = strconv.Atoi(gport); err != nil {
		return nil, fmt.Errorf("gossip_addr %q: port: %w", cfg.GossipAddr, err)
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
			return nil, fmt.Errorf("encrypt_key: %w", err)
		}
		gcfg.Key = key
	}
	g, err := gossip.Start(life, gcfg, a.log.With("component", "gossip"))
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	return g, nil
}

// wireNode builds the node the CRM and LRM run on (a.n): metrics,
// notifications and their outbox, the quorum watch, and the fencer that
// feeds the guard on guardSocket.
func (a *Agent) wireNode(life context.Context, st *store.Store, g *gossip.Gossip, guardSocket string, fr *deviceFencer) {
	cfg := &a.cfg
	monoBase := a.clock.Mono()
	a.n = &node{name: cfg.NodeName, cfg: &a.cfg, store: st, gossip: g, guardSocket: guardSocket, clock: a.clock, base: a.clock.Now(), monoBase: monoBase, devices: fr, log: a.log,
		obs: newObserver(cfg.NodeName, cfg.Timing), events: newEventLog(maxPageEvents)}
	if cfg.MetricsAddr != "" {
		a.n.metrics = newMetrics(st, cfg.NodeName)
		if err := a.n.metrics.bridgeRaft(); err != nil {
			a.log.Warn("raft metrics not bridged", "err", err)
		}
	}
	a.n.notify = newNotifier(life, cfg.NodeName, notifyConfig{webhooks: cfg.NotifyWebhooks, exec: cfg.NotifyExec, secret: cfg.notifySecret,
		timeout: cfg.NotifyTimeout, retries: cfg.NotifyRetries, backoff: cfg.NotifyBackoff}, a.clock, a.log.With("component", "notify"), a.n.metrics)
	a.n.outbox = newOutbox(a.n.notify, st, a.log.With("component", "notify"), cfg.NotifyOutboxMax, cfg.Timing.CRMRound, min(cfg.Timing.LockTTL, 5*time.Second))
	go a.n.outbox.run(life)
	go a.watchQuorum(life, cfg.Timing.CRMRound)
	a.n.fencer = newFencer(a.log.With("component", "fence"), &a.cfg.Timing,
		func(ctx context.Context, expiry int64) (guardClient, error) {
			return fence.Open(ctx, guardSocket, expiry)
		},
		a.clock, a.n.expiry)
	a.n.fencer.fed = a.n.metrics.guardFeed
}

// startResourceAgents creates the exec, ocf and systemd resource agents,
// re-adopts the services still running from before a restart, and
// returns the cgroup below which every service runs. Every service,
// whatever its type, runs in a cgroup v2 leaf of its own below that
// parent (systemd units: the unit's cgroup), admitted by the fencer and
// registered with the guard before it is spawned.
func (a *Agent) startResourceAgents(ctx context.Context) (cgroupParent string, err error) {
	cfg := &a.cfg
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
		return "", fmt.Errorf("exec agent: %w", err)
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
		return "", fmt.Errorf("ocf agent: %w", err)
	}
	sd, err := systemd.New(systemd.Config{CgroupMount: cgroupMount, Fence: a.n.fencer, Logger: a.log.With("component", "systemd")})
	if err != nil {
		return "", fmt.Errorf("systemd agent: %w", err)
	}
	a.n.agents = map[string]ha.ResourceAgent{
		"exec":    movingAgent{ResourceAgent: ex, n: a.n},
		"ocf":     movingAgent{ResourceAgent: oc, n: a.n},
		"systemd": movingAgent{ResourceAgent: sd, n: a.n},
	}
	return cgroupParent, nil
}

// startAPIs serves the local API on the unix socket, the HTTPS API on
// api_addr and the observability endpoints on metrics_addr, as
// configured. closeAll closes the servers it started, the last first;
// call it whether or not err is nil.
func (a *Agent) startAPIs(storeTLS *store.TLS) (closeAll func(), err error) {
	var srvs []*http.Server
	closeAll = func() {
		for _, srv := range slices.Backward(srvs) {
			srv.Close()
		}
	}
	if err := a.serveAPI(); err != nil {
		return closeAll, err
	}
	srvs = append(srvs, a.apiSrv)
	if a.cfg.APIAddr != "" {
		if storeTLS == nil {
			return closeAll, fmt.Errorf("api_addr %s: the HTTPS API listener needs the node's TLS files", a.cfg.APIAddr)
		}
		srv, err := a.serveAPITLS(a.cfg.APIAddr, storeTLS.Cert, storeTLS.CAs)
		if err != nil {
			return closeAll, err
		}
		srvs = append(srvs, srv)
	}
	if a.cfg.MetricsAddr != "" {
		srv, err := a.serveObservability(a.cfg.MetricsAddr)
		if err != nil {
			return closeAll, err
		}
		srvs = append(srvs, srv)
	}
	return closeAll, nil
}

// loops are the running CRM and LRM loops of the agent.
type loops struct {
	crmStop, lrmStop chan struct{} // closed to stop each loop
	crmDone, lrmDone chan struct{} // closed when each loop has returned
	// stopWatches ends the store watches that wake the loops.
	stopWatches func()
}

// startLoops starts the CRM and LRM loops with what wakes them between
// their rounds: gossip events, fence device jobs and store changes for
// the CRM, manager status changes concerning this node for the LRM.
func (a *Agent) startLoops(life context.Context, st *store.Store, g *gossip.Gossip) *loops {
	lp := &loops{crmStop: make(chan struct{}), lrmStop: make(chan struct{}), crmDone: make(chan struct{}), lrmDone: make(chan struct{})}
	crmWake, lrmWake := newWaker(), newWaker()
	go wakeOnGossip(life, g.Events(), crmWake)
	go forwardWakes(life, a.n.devices.woken(), crmWake)
	crmChanges, stopCRMWatch := st.Watch(store.ChangeResources | store.ChangeCommands)
	go forwardWakes(life, crmChanges, crmWake)
	lrmChanges, stopLRMWatch := st.Watch(store.ChangeManagerStatus)
	go wakeOnAssignment(life, lrmChanges, st.ManagerStatus, a.cfg.NodeName, lrmWake)
	lp.stopWatches = func() {
		stopLRMWatch()
		stopCRMWatch()
	}
	go a.runCRM(lp.crmStop, lp.crmDone, crmWake)
	go a.runLRM(life, lp.lrmStop, lp.lrmDone, lrmWake)
	return lp
}

// announceStarted logs that the agent started, tells systemd it is ready
// and starts feeding systemd's watchdog from the LRM's progress.
func (a *Agent) announceStarted(life context.Context, st *store.Store, g *gossip.Gossip) {
	a.log.Info("agent started", "raft", st.Addr(), "gossip", g.LocalAddr(), "api", a.cfg.APISocket,
		"lock_ttl", a.cfg.Timing.LockTTL, "watchdog_timeout", a.cfg.Timing.WatchdogTimeout)
	a.lrmStep.Store(a.clock.Now().UnixNano())
	if err := a.sd.notify("READY=1\nSTATUS=serving the API on " + a.cfg.APISocket); err != nil {
		a.log.Warn("systemd notification failed", "err", err)
	}
	go a.sd.watchdog(life, &a.lrmStep, a.clock.Now)
}

// stop shuts the agent down gracefully: the LRM follows the shutdown
// policy, then the CRM gives up mastership, then gossip leaves.
func (a *Agent) stop(lp *loops, g *gossip.Gossip) {
	if err := a.sd.notify("STOPPING=1\nSTATUS=stopping: the LRM follows the shutdown policy"); err != nil {
		a.log.Warn("systemd notification failed", "err", err)
	}
	a.log.Info("shutting down", "shutdown_policy_applies", a.detectNodeShutdown())
	close(lp.lrmStop)
	<-lp.lrmDone
	close(lp.crmStop)
	<-lp.crmDone
	a.handOverLeadership()
	if err := g.Leave(); err != nil {
		a.log.Warn("gossip leave", "err", err)
	}
	_ = g.Shutdown()
	a.log.Info("agent stopped")
}

// handOverLeadership hands raft leadership to another voter once this
// node's CRM has stopped, before the gossip leave (which waits about a
// second for its broadcast) and the store's close: every other node's
// lock renewals go through the leader, and a leader that is on its way
// out should not serve them longer than it must. A failed transfer only
// means the store's close tries again, and else the others elect a leader
// after it stopped.
func (a *Agent) handOverLeadership() {
	if !a.n.store.IsLeader() {
		return
	}
	if err := a.n.store.TransferLeadership(); err != nil {
		a.log.Info("no raft leadership transfer at shutdown; the store's close tries again", "err", err)
		return
	}
	a.log.Info("handed raft leadership over at shutdown, before leaving gossip")
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
		start := a.clock.Now()
		if !c.Step() {
			return
		}
		a.n.metrics.crmRoundDone(a.clock.Now().Sub(start))
		sched := roundSchedule{period: a.cfg.Timing.CRMRound, gap: a.cfg.eventRoundGap(),
			at: nextLockExpiry(a.n.store, a.n.name, a.clock.Now())}
		switch r := waitRound(a.clock, start, sched, stop, wake); r {
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
		start := a.clock.Now()
		if !l.Step() {
			return
		}
		a.lrmStep.Store(a.clock.Now().UnixNano())
		period := l.Interval()
		if stopping {
			period = min(period, 100*time.Millisecond)
		}
		switch r := waitRound(a.clock, start, roundSchedule{period: period, gap: a.cfg.eventRoundGap()}, stop, wake); r {
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
		if !sleepCtx(ctx, a.clock, 500*time.Millisecond) {
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
		if !sleepCtx(ctx, a.clock, time.Second) {
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
		if err == nil || !sleepCtx(ctx, a.clock, time.Second) {
			return
		}
	}
}

// sleepCtx waits d on clk; it reports false, at once, when ctx ends
// first.
func sleepCtx(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
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
	deadline := a.clock.Now().Add(5 * time.Second)
	for a.clock.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			a.log.Info("started guard", "pid", cmd.Process.Pid, "socket", sock)
			return sock, nil
		}
		if !sleepCtx(ctx, a.clock, 20*time.Millisecond) {
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
