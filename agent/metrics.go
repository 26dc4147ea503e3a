package agent

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	armonmetrics "github.com/armon/go-metrics"
	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"haxd/ha"
	"haxd/store"
)

// metrics holds the agent's Prometheus metrics (the list is in
// docs/configuration.md, "Metrics"). A nil *metrics records nothing, so
// the hooks in the agent need no checks.
type metrics struct {
	reg *prometheus.Registry

	fenceEvents      *prometheus.CounterVec
	recoveries       prometheus.Counter
	recoveryDuration prometheus.Histogram
	serviceErrors    prometheus.Counter
	masterChanges    prometheus.Counter
	quorumLosses     prometheus.Counter
	lockRenewals     *prometheus.CounterVec
	lockLatency      prometheus.Histogram
	crmRound         prometheus.Histogram
	guardFeeds       *prometheus.CounterVec
	notifications    *prometheus.CounterVec
	outboxDrops      prometheus.Counter
	raftLeaderChange prometheus.Counter
	raftStateChange  *prometheus.CounterVec
	raftCommit       prometheus.Histogram
	raftLastContact  prometheus.Histogram
	raftLogBytes     prometheus.Counter
	raftLogEntries   prometheus.Counter
	raftLogBatches   prometheus.Counter
}

// latencyBuckets suit round trips through raft on a LAN (1 ms to 10 s).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// recoveryBuckets suit failover times from the fast profile (seconds) to
// the pve profile (minutes).
var recoveryBuckets = []float64{1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120, 180, 300, 600}

func newMetrics(st *store.Store, nodeName string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		m.reg.MustRegister(h)
		return h
	}
	m.fenceEvents = counterVec("haxd_fence_events_total", "Fence events seen by this node as CRM master, by event: start, success, failure.", "event")
	m.recoveries = counter("haxd_recoveries_total", "Services recovered on another node after their node was fenced (counted by the master).")
	m.recoveryDuration = histogram("haxd_recovery_duration_seconds", "Time from a service entering fence to running on another node.", recoveryBuckets)
	m.serviceErrors = counter("haxd_service_errors_total", "Services that entered the error state (counted by the master).")
	m.masterChanges = counter("haxd_master_changes_total", "Times this node's CRM became master while another node was master before.")
	m.quorumLosses = counter("haxd_quorum_losses_total", "Times this node left the quorate partition.")
	m.lockRenewals = counterVec("haxd_lock_renewals_total", "Agent lock acquisitions and renewals by this node, by lock (own or other: a fence) and result (ok, failed).", "lock", "result")
	m.lockLatency = histogram("haxd_lock_renewal_seconds", "Latency of this node's own agent lock renewals (successful ones).", latencyBuckets)
	m.crmRound = histogram("haxd_crm_round_seconds", "Duration of one CRM round on this node (master or not).", latencyBuckets)
	m.guardFeeds = counterVec("haxd_guard_feeds_total", "Feeds of the self-fencing guard, by result (ok, failed).", "result")
	m.notifications = counterVec("haxd_notifications_total", "Notification deliveries, by kind (webhook, exec) and result (ok, failed: all retries used).", "kind", "result")
	m.outboxDrops = counter("haxd_notifications_dropped_total", "Undelivered notifications dropped from the full outbox (notify_outbox_max) by this node as master.")
	if st != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "haxd_notifications_queued", Help: "Notifications in the replicated outbox, not yet delivered."},
			func() float64 { return float64(len(st.Outbox())) }))
	}
	m.raftLeaderChange = counter("haxd_raft_leader_changes_total", "Times this node's raft became leader (raft's raft.state.leader).")
	m.raftStateChange = counterVec("haxd_raft_state_changes_total", "Raft state transitions of this node, by new state (raft's raft.state.*).", "state")
	m.raftCommit = histogram("haxd_raft_commit_seconds", "Raft commit latency on the leader, from dispatch to commit (raft's raft.commitTime).", latencyBuckets)
	m.raftLastContact = histogram("haxd_raft_leader_last_contact_seconds", "Time since the leader last heard from a follower (raft's raft.leader.lastContact).", latencyBuckets)
	m.raftLogBytes = counter("haxd_raft_log_bytes_total", "Bytes of raft log entries this node wrote to its log store (raft-boltdb's raft.boltdb.logBatchSize).")
	m.raftLogEntries = counter("haxd_raft_log_entries_total", "Raft log entries this node wrote to its log store (raft-boltdb's raft.boltdb.logsPerBatch).")
	m.raftLogBatches = counter("haxd_raft_log_batches_total", "Log store write transactions of this node, one bbolt commit (and its fsyncs) each (raft-boltdb's raft.boltdb.logBatchSize samples).")
	m.reg.MustRegister(&clusterCollector{st: st, node: nodeName})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) event(e Event) {
	if m == nil {
		return
	}
	switch e.Type {
	case EventFenceStart:
		m.fenceEvents.WithLabelValues("start").Inc()
	case EventFenceSuccess:
		m.fenceEvents.WithLabelValues("success").Inc()
	case EventFenceFailure:
		m.fenceEvents.WithLabelValues("failure").Inc()
	case EventRecovery:
		m.recoveries.Inc()
		m.recoveryDuration.Observe(e.DurationSeconds)
	case EventServiceError:
		m.serviceErrors.Inc()
	case EventMasterChange:
		m.masterChanges.Inc()
	case EventQuorumLost:
		m.quorumLosses.Inc()
	}
}

func (m *metrics) lockRenewal(own, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	lock := map[bool]string{true: "own", false: "other"}[own]
	m.lockRenewals.WithLabelValues(lock, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
	if own && ok {
		m.lockLatency.Observe(d.Seconds())
	}
}

func (m *metrics) crmRoundDone(d time.Duration) {
	if m != nil {
		m.crmRound.Observe(d.Seconds())
	}
}

func (m *metrics) guardFeed(ok bool) {
	if m != nil {
		m.guardFeeds.WithLabelValues(map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
	}
}

func (m *metrics) notification(kind string, ok bool) {
	if m != nil {
		m.notifications.WithLabelValues(kind, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
	}
}

func (m *metrics) outboxDropped() {
	if m != nil {
		m.outboxDrops.Inc()
	}
}

// clusterCollector reports the replicated state at scrape time: one gauge
// per node and state, one per service and state, and LRM ages.
type clusterCollector struct {
	st   *store.Store
	node string
}

var (
	descNodeState = prometheus.NewDesc("haxd_node_state", "The CRM's state of each node: 1 for the current state, 0 for the others.", []string{"node", "state"}, nil)
	descNodeLRM   = prometheus.NewDesc("haxd_node_lrm_last_seen_seconds", "Unix time of each node's last LRM status write.", []string{"node"}, nil)
	descService   = prometheus.NewDesc("haxd_service_state", "The CRM's state of each service: 1 for the current state, 0 for the others.", []string{"sid", "node", "state"}, nil)
	descMaster    = prometheus.NewDesc("haxd_master", "1 on the node whose CRM wrote the last manager status, as this node's replica says.", []string{"node"}, nil)
	descLastWrite = prometheus.NewDesc("haxd_manager_status_timestamp_seconds", "Unix time of the last manager status write.", nil, nil)
	descApplied   = prometheus.NewDesc("haxd_raft_applied_entries_total", "Replicated commands this node applied since it started, by operation.", []string{"op"}, nil)
	descAppliedB  = prometheus.NewDesc("haxd_raft_applied_bytes_total", "Encoded size of the replicated commands this node applied since it started, by operation.", []string{"op"}, nil)
	descLastIndex = prometheus.NewDesc("haxd_raft_last_index", "This node's last raft log index (its growth is the log's entry rate, raft's own barrier and no-op entries included).", nil, nil)
)

var nodeStates = []ha.NodeState{ha.NodeOnline, ha.NodeUnknown, ha.NodeFence, ha.NodeMaintenance, ha.NodeGone}

var serviceStates = []ha.ServiceState{ha.StateRequestStart, ha.StateRequestStartBalance, ha.StateStarted, ha.StateRequestStop,
	ha.StateStopped, ha.StateMigrate, ha.StateRelocate, ha.StateFence, ha.StateRecovery, ha.StateFreeze, ha.StateError}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeState, descNodeLRM, descService, descMaster, descLastWrite, descApplied, descAppliedB, descLastIndex} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.st.ApplyStats()
	for _, op := range slices.Sorted(maps.Keys(stats)) {
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(stats[op].Entries), op)
		ch <- prometheus.MustNewConstMetric(descAppliedB, prometheus.CounterValue, float64(stats[op].Bytes), op)
	}
	last, _, _ := c.st.RaftIndexes()
	ch <- prometheus.MustNewConstMetric(descLastIndex, prometheus.GaugeValue, float64(last))
	ms, err := c.st.ManagerStatus()
	if err != nil || ms == nil {
		return
	}
	for _, node := range slices.Sorted(maps.Keys(ms.NodeStatus)) {
		for _, s := range nodeStates {
			ch <- prometheus.MustNewConstMetric(descNodeState, prometheus.GaugeValue, b2f(ms.NodeStatus[node] == s), node, string(s))
		}
		if ls, err := c.st.LRMStatus(node); err == nil && ls != nil && ls.Timestamp != 0 {
			ch <- prometheus.MustNewConstMetric(descNodeLRM, prometheus.GaugeValue, float64(ls.Timestamp), node)
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(ms.ServiceStatus)) {
		sd := ms.ServiceStatus[sid]
		for _, s := range serviceStates {
			ch <- prometheus.MustNewConstMetric(descService, prometheus.GaugeValue, b2f(sd.State == s), string(sid), sd.Node, string(s))
		}
	}
	if ms.MasterNode != "" {
		ch <- prometheus.MustNewConstMetric(descMaster, prometheus.GaugeValue, 1, ms.MasterNode)
		ch <- prometheus.MustNewConstMetric(descLastWrite, prometheus.GaugeValue, float64(ms.Timestamp))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// raftSink bridges raft's go-metrics calls into the Prometheus metrics:
// the keys haxd documents are mapped, the rest are dropped.
type raftSink struct {
	gometrics.BlackholeSink
	m *metrics
}

func key(k []string) string { return strings.Join(k, ".") }

// IncrCounter implements go-metrics' MetricSink.
func (s *raftSink) IncrCounter(k []string, val float32) {
	switch name := key(k); {
	case name == "raft.state.leader":
		s.m.raftLeaderChange.Add(float64(val))
		s.m.raftStateChange.WithLabelValues("leader").Add(float64(val))
	case name == "raft.state.follower", name == "raft.state.candidate":
		s.m.raftStateChange.WithLabelValues(strings.TrimPrefix(name, "raft.state.")).Add(float64(val))
	}
}

// IncrCounterWithLabels implements go-metrics' MetricSink.
func (s *raftSink) IncrCounterWithLabels(k []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(k, val)
}

// AddSample implements go-metrics' MetricSink; raft's timers are in
// milliseconds.
func (s *raftSink) AddSample(k []string, val float32) {
	switch key(k) {
	case "raft.commitTime":
		s.m.raftCommit.Observe(float64(val) / 1000)
	case "raft.leader.lastContact":
		s.m.raftLastContact.Observe(float64(val) / 1000)
	case "raft.boltdb.logBatchSize":
		s.m.raftLogBytes.Add(float64(val))
		s.m.raftLogBatches.Inc()
	case "raft.boltdb.logsPerBatch":
		s.m.raftLogEntries.Add(float64(val))
	}
}

// AddSampleWithLabels implements go-metrics' MetricSink.
func (s *raftSink) AddSampleWithLabels(k []string, val float32, _ []gometrics.Label) {
	s.AddSample(k, val)
}

// boltSink bridges raft-boltdb's calls, which go to the older
// armon/go-metrics, into the same mapping as raftSink.
type boltSink struct {
	armonmetrics.BlackholeSink
	raft *raftSink
}

// AddSample implements armon/go-metrics' MetricSink.
func (s *boltSink) AddSample(k []string, val float32) { s.raft.AddSample(k, val) }

// AddSampleWithLabels implements armon/go-metrics' MetricSink.
func (s *boltSink) AddSampleWithLabels(k []string, val float32, _ []armonmetrics.Label) {
	s.raft.AddSample(k, val)
}

// raftBridge installs the bridge as go-metrics' global sink (and as
// armon/go-metrics' for raft-boltdb): raft reports only through that
// process-wide global, so the last agent started in a process gets raft's
// metrics (one agent per process in production).
var raftBridge sync.Mutex

func (m *metrics) bridgeRaft() error {
	raftBridge.Lock()
	defer raftBridge.Unlock()
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname = false
	cfg.EnableRuntimeMetrics = false
	cfg.EnableServiceLabel = false
	sink := &raftSink{m: m}
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return err
	}
	acfg := armonmetrics.DefaultConfig("")
	acfg.EnableHostname = false
	acfg.EnableRuntimeMetrics = false
	acfg.EnableServiceLabel = false
	_, err := armonmetrics.NewGlobal(acfg, &boltSink{raft: sink})
	return err
}
