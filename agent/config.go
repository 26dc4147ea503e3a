package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"haxd/fencedev"
	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
)

// Config is the configuration of one `haxd agent`. It is read from one file
// (see ParseConfig for the syntax and docs/configuration.md for every field)
// and flags override single fields. Durations are Go durations ("500ms",
// "3s"); every duration and count has a default; Validate rejects
// combinations that break the safety inequality.
type Config struct {
	// NodeName is this node's name, unique in the cluster. Default: the
	// host name.
	NodeName string `cfg:"node_name"`
	// DataDir holds the raft log, snapshots and resource state. Default
	// /var/lib/haxd.
	DataDir string `cfg:"data_dir"`
	// GossipAddr is the host:port for gossip (serf/memberlist, TCP and UDP).
	// An empty host means AdvertiseIP. Default ":7946".
	GossipAddr string `cfg:"gossip_addr"`
	// RaftAddr is the host:port for raft and forwarded writes (mutual
	// TLS). An empty host means AdvertiseIP. Default ":7947".
	RaftAddr string `cfg:"raft_addr"`
	// AdvertiseIP is the address other nodes use to reach this one; empty
	// means the bind address, which then must not be 0.0.0.0.
	AdvertiseIP string `cfg:"advertise_ip"`
	// APISocket is the unix socket of the local API. Default
	// /run/haxd/haxd.sock, mode 0600.
	APISocket string `cfg:"api_socket"`
	// APIAddr is host:port of the optional HTTPS API listener: the API of
	// APISocket over TLS 1.3, every client presenting a certificate of the
	// cluster CA whose role (pki.RoleOf) limits what it may do. An empty
	// host means AdvertiseIP. Empty: no listener (the default).
	APIAddr string `cfg:"api_addr"`
	// Join lists gossip addresses of existing members to join at start.
	Join []string `cfg:"join"`
	// BootstrapExpect is the number of agents to wait for before
	// bootstrapping a new cluster (0: join an existing one).
	BootstrapExpect int `cfg:"bootstrap_expect"`
	// EncryptKey is the base64 gossip key from `haxd keygen` (16, 24 or 32
	// bytes). Required unless Insecure.
	EncryptKey string `cfg:"encrypt_key"`
	// EncryptKeyFile is a file holding the gossip key, as `haxd keygen -o`
	// writes it (surrounding blanks ignored); an alternative to EncryptKey
	// that keeps the key out of the config. Finish reads it.
	EncryptKeyFile string `cfg:"encrypt_key_file"`
	// Insecure allows running without gossip encryption and, when no TLS
	// file is set, without TLS on the raft port (local tests only).
	Insecure bool `cfg:"insecure"`
	// TLSCAFile is the cluster CA certificate (PEM) that signs every
	// node's certificate. Empty: /etc/haxd/tls/ca.pem, unless Insecure.
	TLSCAFile string `cfg:"tls_ca_file"`
	// TLSCertFile is this node's certificate (PEM), naming NodeName.
	// Empty: /etc/haxd/tls/<node_name>.pem, unless Insecure.
	TLSCertFile string `cfg:"tls_cert_file"`
	// TLSKeyFile is the private key of TLSCertFile (PEM). Empty:
	// /etc/haxd/tls/<node_name>-key.pem, unless Insecure.
	TLSKeyFile string `cfg:"tls_key_file"`
	// RaftVoters is the largest number of voting raft members; others are
	// non-voters, promoted when a voter leaves. Default 5.
	RaftVoters int `cfg:"raft_voters"`
	// GuardSocket is the unix socket of this node's `haxd guard`; empty means
	// the agent starts its own guard process.
	GuardSocket string `cfg:"guard_socket"`
	// WatchdogDevice is a /dev/watchdog the guard feeds; empty: none.
	WatchdogDevice string `cfg:"watchdog_device"`
	// CgroupParent is a cgroup v2 directory under which every service gets
	// its own cgroup leaf, registered with the guard; empty: a directory
	// of the agent's own on the cgroup v2 mount (process groups only when
	// there is none).
	CgroupParent string `cfg:"cgroup_parent"`
	// MaxWorkers is the number of resource actions run at once. Default 4.
	MaxWorkers int `cfg:"max_workers"`
	// ShutdownPolicy is used when this agent bootstraps the cluster:
	// conditional (default), freeze, failover or migrate.
	ShutdownPolicy string `cfg:"shutdown_policy"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `cfg:"log_level"`
	// LogFormat is text (default) or json.
	LogFormat string `cfg:"log_format"`

	// FenceConfig is a fence device config in PVE's fence.cfg format
	// (docs/safety.md, "Fence devices"); empty: no fence devices, a failed
	// node's lock TTL is the only proof of fencing.
	FenceConfig string `cfg:"fence_config"`
	// FenceAgentDir is where the fence agents are (Debian: /usr/sbin).
	FenceAgentDir string `cfg:"fence_agent_dir"`
	// FenceCallTimeout bounds one fence agent call (off, or one status).
	FenceCallTimeout time.Duration `cfg:"fence_call_timeout"`
	// FenceRetries is how often a fence device's off-and-confirm sequence
	// is tried again before its level counts as failed.
	FenceRetries int `cfg:"fence_retries"`
	// FenceRetryDelay is the pause before such a retry.
	FenceRetryDelay time.Duration `cfg:"fence_retry_delay"`
	// FenceStatusInterval is the pause between status calls until the
	// device reports the node off.
	FenceStatusInterval time.Duration `cfg:"fence_status_interval"`
	// FenceConfirmTimeout bounds how long a device may take, after its
	// off, to report the node off.
	FenceConfirmTimeout time.Duration `cfg:"fence_confirm_timeout"`

	// MetricsAddr is host:port of the opt-in HTTP listener serving
	// Prometheus metrics (/metrics) and the read-only status page (/);
	// empty: no listener. It has no authentication: bind it to a private
	// address.
	MetricsAddr string `cfg:"metrics_addr"`
	// NotifyWebhooks are URLs that get every event as a JSON POST (sent by
	// the CRM master; quorum_lost by the node that lost quorum).
	NotifyWebhooks []string `cfg:"notify_webhooks"`
	// NotifyWebhookSecretFile holds the key of the HMAC-SHA256 signature
	// header of webhooks; empty: unsigned.
	NotifyWebhookSecretFile string `cfg:"notify_webhook_secret_file"`
	// NotifyExec are programs run with every event as JSON on stdin.
	NotifyExec []string `cfg:"notify_exec"`
	// NotifyTimeout bounds one delivery attempt. Default 5s.
	NotifyTimeout time.Duration `cfg:"notify_timeout"`
	// NotifyRetries is how many times a failed delivery is retried.
	// Default 5.
	NotifyRetries int `cfg:"notify_retries"`
	// NotifyBackoff is the delay before the first retry; it doubles with
	// each retry, up to 30 s. Default 1s.
	NotifyBackoff time.Duration `cfg:"notify_backoff"`
	// NotifyOutboxMax bounds the replicated queue of undelivered
	// notifications; beyond it the oldest are dropped. Default 1000.
	NotifyOutboxMax int `cfg:"notify_outbox_max"`

	// NodeCPUs is the number of cores this node offers the static and
	// dynamic schedulers; 0: the cores in /proc/stat.
	NodeCPUs int `cfg:"node_cpus"`
	// NodeMemoryMB is the memory in MiB this node offers the schedulers;
	// 0: MemTotal of /proc/meminfo.
	NodeMemoryMB int `cfg:"node_memory_mb"`
	// UsageInterval is how often the agent samples /proc and gossips its
	// usage for the schedulers. Default 10s.
	UsageInterval time.Duration `cfg:"usage_interval"`
	// NodeUsageSource is where the node's measured usage comes from:
	// "proc" (the whole node, /proc) or "services" (the sum of this
	// agent's services, for several agents sharing one kernel). Default
	// proc.
	NodeUsageSource string `cfg:"node_usage_source"`
	// UsageCPUThresholdMillicores and UsageMemoryThresholdMB are the
	// changes of a service's measured CPU (in thousandths of a core) and
	// memory that make the agent publish its services' usage to the store
	// before UsageMaxInterval (dynamic scheduler only). Defaults 250 and
	// 64.
	UsageCPUThresholdMillicores int `cfg:"usage_cpu_threshold_millicores"`
	UsageMemoryThresholdMB      int `cfg:"usage_memory_threshold_mb"`
	// UsageMaxInterval is the longest the agent goes without publishing
	// its services' usage while the scheduler mode is dynamic. Default
	// 10m.
	UsageMaxInterval time.Duration `cfg:"usage_max_interval"`

	// ShutdownDetectTimeout bounds how long the agent's stop path waits
	// for systemd to list its jobs over D-Bus (to tell a node shutdown or
	// reboot from an agent restart); past it the stop counts as an agent
	// restart. Default DefaultShutdownDetectTimeout (1s).
	ShutdownDetectTimeout time.Duration `cfg:"shutdown_detect_timeout"`

	// notifySecret is the content of NotifyWebhookSecretFile, read by Finish.
	notifySecret []byte

	// TimingProfile picks the base timings: fast (default) or pve. The
	// fields below override single values of the profile.
	TimingProfile string `cfg:"timing"`
	// Timing is the effective timing; filled from TimingProfile and the
	// overrides by Finish.
	Timing ha.Timing `cfg:"-"`

	CRMRound            *time.Duration `cfg:"crm_round"`
	LRMRound            *time.Duration `cfg:"lrm_round"`
	LRMMaintenanceRound *time.Duration `cfg:"lrm_maintenance_round"`
	LockTTL             *time.Duration `cfg:"lock_ttl"`
	LockValidity        *time.Duration `cfg:"lock_validity"`
	WatchdogTimeout     *time.Duration `cfg:"watchdog_timeout"`
	SelfFenceTime       *time.Duration `cfg:"self_fence_time"`
	ClockDriftMargin    *time.Duration `cfg:"clock_drift_margin"`
	ElectionTimeout     *time.Duration `cfg:"election_timeout"`
	FenceDelay          *time.Duration `cfg:"fence_delay"`
	StatusRefresh       *time.Duration `cfg:"status_refresh"`
	// ServiceCheckInterval overrides the profile's service_check_interval.
	ServiceCheckInterval *time.Duration `cfg:"service_check_interval"`

	// GossipProbeInterval is the period of gossip's failure detector: every
	// interval the node probes one other member. A hard failure is seen
	// after about one interval plus the suspicion timeout
	// (GossipSuspicionMult × interval for up to 10 nodes). Default: 100ms
	// in the fast profile, 200ms in the pve profile.
	GossipProbeInterval *time.Duration `cfg:"gossip_probe_interval"`
	// GossipProbeTimeout is how long a direct probe waits for its ack
	// before other members are asked to probe indirectly; less than
	// GossipProbeInterval. Default: 50ms fast, 100ms pve.
	GossipProbeTimeout *time.Duration `cfg:"gossip_probe_timeout"`
	// GossipSuspicionMult scales the time a suspected member has to refute
	// the suspicion before it is declared failed (× interval ×
	// max(1, log10(nodes))). Default gossip.DefaultSuspicionMult (4): 2
	// let 5 % packet loss get healthy nodes declared failed and fenced
	// (docs/reliability.md).
	GossipSuspicionMult int `cfg:"gossip_suspicion_mult"`
	// GossipSuspicionMaxTimeoutMult bounds the suspicion timeout before
	// independent confirmations lower it, as a multiple of its minimum.
	// Default 3.
	GossipSuspicionMaxTimeoutMult int `cfg:"gossip_suspicion_max_timeout_mult"`
	// GossipPushPullInterval is the period of gossip's full state syncs
	// (TCP) with a random member. They repair what lost UDP broadcasts
	// left stale, above all a member's incarnation after a tag update: a
	// member suspected under a stale incarnation cannot refute and stays
	// failed until a sync (docs/reliability.md). Default: 500ms fast
	// (fastGossipPushPullInterval), 30s pve.
	GossipPushPullInterval *time.Duration `cfg:"gossip_push_pull_interval"`

	// EventRoundGap is the shortest time between the starts of two CRM
	// or two LRM rounds when a round runs early because something
	// happened (a member failed, a lock expired, a fence job ended, a
	// service was assigned to the node): it coalesces bursts of events and
	// bounds the extra load. Default DefaultEventRoundGap (25ms); it must
	// be less than crm_round and lrm_round.
	EventRoundGap *time.Duration `cfg:"event_round_gap"`

	// DiskCheckInterval is how often the agent checks that it can write to
	// its data dir; a node that cannot steps out (see watchDisk). Default
	// DefaultDiskCheckInterval.
	DiskCheckInterval *time.Duration `cfg:"disk_check_interval"`

	// The store's raft and forwarding timings (store.Config has the full
	// story of each; docs/safety.md, lossy networks, why they are sized
	// against TCP's retransmit times). They enter no safety inequality,
	// only liveness: the agent warns at start when they do not fit the HA
	// timing (store.Config.CheckTiming). Defaults: store.DefaultConfig.

	// RaftHeartbeatTimeout is raft's follower timeout without contact
	// from the leader (randomized 1-2x). Default 200ms.
	RaftHeartbeatTimeout time.Duration `cfg:"raft_heartbeat_timeout"`
	// RaftElectionTimeout is raft's candidate timeout; >=
	// raft_heartbeat_timeout. Default 200ms.
	RaftElectionTimeout time.Duration `cfg:"raft_election_timeout"`
	// RaftLeaderLeaseTimeout is how long the raft leader stays leader
	// without contact with a quorum; <= raft_heartbeat_timeout. Default
	// 200ms.
	RaftLeaderLeaseTimeout time.Duration `cfg:"raft_leader_lease_timeout"`
	// RaftCommitTimeout is raft's longest delay before a heartbeat carries
	// a new commit index. Default 50ms.
	RaftCommitTimeout time.Duration `cfg:"raft_commit_timeout"`
	// ForwardHedgeDelay is how long a forwarded lock request waits before
	// a second copy goes on another connection; 0 disables it. Default
	// 250ms.
	ForwardHedgeDelay time.Duration `cfg:"forward_hedge_delay"`
	// TCPRTOMin is the minimum TCP retransmission timeout of the store
	// port's connections (Linux 6.15+); 0 keeps the kernel's (200ms).
	// Default 20ms.
	TCPRTOMin time.Duration `cfg:"tcp_rto_min"`
}

// applyStoreTimings copies the store's raft and forwarding timings into s.
func (c *Config) applyStoreTimings(s *store.Config) {
	s.HeartbeatTimeout = c.RaftHeartbeatTimeout
	s.ElectionTimeout = c.RaftElectionTimeout
	s.LeaderLeaseTimeout = c.RaftLeaderLeaseTimeout
	s.CommitTimeout = c.RaftCommitTimeout
	s.ForwardHedgeDelay = c.ForwardHedgeDelay
	s.TCPRTOMin = c.TCPRTOMin
}

// validateStoreTimings checks the store's timings as the store will,
// with the effective lock TTL, so that a bad value stops the agent
// before it starts anything.
func (c *Config) validateStoreTimings(t ha.Timing) error {
	s := store.DefaultConfig()
	s.NodeID, s.DataDir, s.LockTTL = c.NodeName, c.DataDir, t.LockTTL
	c.applyStoreTimings(&s)
	return s.Validate()
}

// diskCheckInterval returns DiskCheckInterval or its default.
func (c *Config) diskCheckInterval() time.Duration {
	if c.DiskCheckInterval != nil {
		return *c.DiskCheckInterval
	}
	return DefaultDiskCheckInterval
}

// applyGossipTiming sets gc's failure detector from the config: the
// fields that are set, else the timing profile's defaults (fast: probe
// 100 ms, timeout 50 ms, push/pull every 500 ms; pve: the gossip
// package's DefaultConfig, 200 ms and 100 ms, and gc's push/pull interval
// is kept; suspicion ×4, at most ×3 in both).
func (c *Config) applyGossipTiming(gc *gossip.Config) {
	def := gossip.DefaultConfig(gc.NodeName)
	gc.ProbeInterval, gc.ProbeTimeout = def.ProbeInterval, def.ProbeTimeout
	gc.SuspicionMult, gc.SuspicionMaxTimeoutMult = def.SuspicionMult, def.SuspicionMaxTimeoutMult
	if c.TimingProfile != "pve" {
		gc.ProbeInterval, gc.ProbeTimeout = fastGossipProbeInterval, fastGossipProbeTimeout
		gc.PushPullInterval = fastGossipPushPullInterval
	}
	if c.GossipPushPullInterval != nil {
		gc.PushPullInterval = *c.GossipPushPullInterval
	}
	if c.GossipProbeInterval != nil {
		gc.ProbeInterval = *c.GossipProbeInterval
	}
	if c.GossipProbeTimeout != nil {
		gc.ProbeTimeout = *c.GossipProbeTimeout
	}
	if c.GossipSuspicionMult != 0 {
		gc.SuspicionMult = c.GossipSuspicionMult
	}
	if c.GossipSuspicionMaxTimeoutMult != 0 {
		gc.SuspicionMaxTimeoutMult = c.GossipSuspicionMaxTimeoutMult
	}
}

// The fast profile's gossip failure detector: research/timings.md's "fast"
// config, a hard failure seen by every survivor in a median of 339 ms
// (p95 536 ms) on loopback, with no false suspicion in 60 s with the
// CPUs 4× oversubscribed.
const (
	// fastGossipProbeInterval is gossip_probe_interval in the fast profile.
	fastGossipProbeInterval = 100 * time.Millisecond
	// fastGossipProbeTimeout is gossip_probe_timeout in the fast profile.
	fastGossipProbeTimeout = 50 * time.Millisecond
	// fastGossipPushPullInterval is gossip_push_pull_interval in the fast
	// profile: half of fence_delay (1 s), so that a healthy member
	// declared failed under a stale incarnation is alive again at the
	// master before the master fences it.
	fastGossipPushPullInterval = 500 * time.Millisecond
)

// eventRoundGap returns EventRoundGap or its default.
func (c *Config) eventRoundGap() time.Duration {
	if c.EventRoundGap != nil {
		return *c.EventRoundGap
	}
	return DefaultEventRoundGap
}

// DefaultConfig returns the defaults (NodeName is the host name).
func DefaultConfig() Config {
	host, _ := os.Hostname()
	fo := fencedev.DefaultOptions()
	sd := store.DefaultConfig()
	return Config{
		NodeName:                      host,
		DataDir:                       "/var/lib/haxd",
		GossipAddr:                    ":7946",
		RaftAddr:                      ":7947",
		APISocket:                     "/run/haxd/haxd.sock",
		RaftVoters:                    5,
		MaxWorkers:                    4,
		ShutdownPolicy:                string(ha.ShutdownConditional),
		LogLevel:                      "info",
		LogFormat:                     "text",
		TimingProfile:                 "fast",
		GossipSuspicionMult:           gossip.DefaultSuspicionMult,
		GossipSuspicionMaxTimeoutMult: 3,
		EventRoundGap:                 new(DefaultEventRoundGap),
		NotifyTimeout:                 5 * time.Second,
		NotifyRetries:                 5,
		NotifyBackoff:                 time.Second,
		UsageInterval:                 10 * time.Second,

		NotifyOutboxMax:             1000,
		NodeUsageSource:             NodeUsageProc,
		UsageCPUThresholdMillicores: 250,
		UsageMemoryThresholdMB:      64,
		UsageMaxInterval:            10 * time.Minute,

		ShutdownDetectTimeout: DefaultShutdownDetectTimeout,

		RaftHeartbeatTimeout:   sd.HeartbeatTimeout,
		RaftElectionTimeout:    sd.ElectionTimeout,
		RaftLeaderLeaseTimeout: sd.LeaderLeaseTimeout,
		RaftCommitTimeout:      sd.CommitTimeout,
		ForwardHedgeDelay:      sd.ForwardHedgeDelay,
		TCPRTOMin:              sd.TCPRTOMin,
		DiskCheckInterval: func() *time.Duration {
			d := DefaultDiskCheckInterval
			return &d
		}(),

		FenceAgentDir:       fo.AgentDir,
		FenceCallTimeout:    fo.CallTimeout,
		FenceRetries:        fo.Retries,
		FenceRetryDelay:     fo.RetryDelay,
		FenceStatusInterval: fo.StatusInterval,
		FenceConfirmTimeout: fo.ConfirmTimeout,
	}
}

// FenceOptions returns the fence device runner's options.
func (c Config) FenceOptions() fencedev.Options {
	return fencedev.Options{
		AgentDir:       c.FenceAgentDir,
		CallTimeout:    c.FenceCallTimeout,
		Retries:        c.FenceRetries,
		RetryDelay:     c.FenceRetryDelay,
		StatusInterval: c.FenceStatusInterval,
		ConfirmTimeout: c.FenceConfirmTimeout,
	}
}

// ParseConfig reads the config file syntax: one `key = value` per line,
// `#` starts a comment, blank lines are ignored, values may be double-quoted
// (Go escapes), lists are comma-separated. Unknown keys, repeated keys and
// bad values are errors naming the file, line, key and value. Fields not in
// the file keep their value in cfg.
func ParseConfig(name string, data []byte, cfg *Config) error {
	fields := configFields()
	seen := map[string]int{}
	for i, raw := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected key = value, found %q", name, lineNo, line)
		}
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, `"`) {
			uq, err := strconv.Unquote(value)
			if err != nil {
				return fmt.Errorf("%s:%d: %s: value %s: bad quoting", name, lineNo, key, value)
			}
			value = uq
		} else if i := strings.Index(value, " #"); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		idx, ok := fields[key]
		if !ok {
			return fmt.Errorf("%s:%d: unknown key %q", name, lineNo, key)
		}
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: key %q already set on line %d", name, lineNo, key, prev)
		}
		seen[key] = lineNo
		if err := setField(reflect.ValueOf(cfg).Elem().Field(idx), value); err != nil {
			return fmt.Errorf("%s:%d: %s: value %q: %w", name, lineNo, key, value, err)
		}
	}
	return nil
}

// SetOverride sets one field by its config key, as a flag does.
func (c *Config) SetOverride(key, value string) error {
	idx, ok := configFields()[key]
	if !ok {
		return fmt.Errorf("unknown config key %q", key)
	}
	if err := setField(reflect.ValueOf(c).Elem().Field(idx), value); err != nil {
		return fmt.Errorf("%s: value %q: %w", key, value, err)
	}
	return nil
}

func configFields() map[string]int {
	t := reflect.TypeFor[Config]()
	out := map[string]int{}
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("cfg"); tag != "" && tag != "-" {
			out[tag] = i
		}
	}
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

func setField(f reflect.Value, value string) error {
	if f.Kind() == reflect.Pointer && f.Type().Elem() == durationType {
		d, err := time.ParseDuration(value)
		if err != nil {
			return errors.New("expected a duration such as 500ms or 3s")
		}
		f.Set(reflect.ValueOf(&d))
		return nil
	}
	if f.Type() == durationType {
		d, err := time.ParseDuration(value)
		if err != nil {
			return errors.New("expected a duration such as 500ms or 3s")
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(value)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return errors.New("expected true or false")
		}
		f.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return errors.New("expected an integer")
		}
		f.SetInt(int64(n))
	case reflect.Slice:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported field kind %s", f.Kind())
	}
	return nil
}

// Finish computes the effective Timing from the profile and overrides and
// validates the whole config. It returns warnings for thin liveness margins.
func (c *Config) Finish() (warnings []string, err error) {
	t, err := ha.TimingProfile(c.TimingProfile)
	if err != nil {
		return nil, fmt.Errorf("timing: %w", err)
	}
	for _, o := range []struct {
		v   *time.Duration
		dst *time.Duration
	}{
		{c.CRMRound, &t.CRMRound}, {c.LRMRound, &t.LRMRound}, {c.LRMMaintenanceRound, &t.LRMMaintenanceRound},
		{c.LockTTL, &t.LockTTL}, {c.LockValidity, &t.LockValidity}, {c.WatchdogTimeout, &t.WatchdogTimeout},
		{c.SelfFenceTime, &t.SelfFenceTime}, {c.ClockDriftMargin, &t.ClockDriftMargin},
		{c.ElectionTimeout, &t.ElectionTimeout}, {c.FenceDelay, &t.FenceDelay}, {c.StatusRefresh, &t.StatusRefresh},
		{c.ServiceCheckInterval, &t.ServiceCheckInterval},
	} {
		if o.v != nil {
			*o.dst = *o.v
		}
	}
	warnings, err = t.Validate()
	if err != nil {
		return nil, err
	}
	c.Timing = t
	if c.EncryptKeyFile != "" {
		if c.EncryptKey != "" {
			return nil, fmt.Errorf("encrypt_key_file %q: encrypt_key is set too; set only one", c.EncryptKeyFile)
		}
		b, err := os.ReadFile(c.EncryptKeyFile)
		if err != nil {
			return nil, fmt.Errorf("encrypt_key_file %q: %w", c.EncryptKeyFile, err)
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			return nil, fmt.Errorf("encrypt_key_file %q: the file is empty (create it with `haxd keygen -o FILE`)", c.EncryptKeyFile)
		}
		c.EncryptKey = key
		if err := c.validateKey(); err != nil {
			return nil, fmt.Errorf("encrypt_key_file %q: %w", c.EncryptKeyFile, err)
		}
	}
	if c.NotifyWebhookSecretFile != "" {
		b, err := os.ReadFile(c.NotifyWebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("notify_webhook_secret_file %q: %w", c.NotifyWebhookSecretFile, err)
		}
		if c.notifySecret = []byte(strings.TrimSpace(string(b))); len(c.notifySecret) == 0 {
			return nil, fmt.Errorf("notify_webhook_secret_file %q: the file is empty", c.NotifyWebhookSecretFile)
		}
	}
	if err := c.validateObservability(); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := c.validateStoreTimings(t); err != nil {
		return nil, err
	}
	for _, a := range []*string{&c.GossipAddr, &c.RaftAddr, &c.APIAddr} {
		if *a == "" {
			continue
		}
		if host, port, _ := net.SplitHostPort(*a); host == "" {
			*a = net.JoinHostPort(c.AdvertiseIP, port)
		}
	}
	if c.UseTLS() {
		for _, f := range []struct {
			v   *string
			def string
		}{{&c.TLSCAFile, "ca.pem"}, {&c.TLSCertFile, c.NodeName + ".pem"}, {&c.TLSKeyFile, c.NodeName + "-key.pem"}} {
			if *f.v == "" {
				*f.v = filepath.Join(DefaultTLSDir, f.def)
			}
		}
	}
	gc := gossip.DefaultConfig(c.NodeName)
	c.applyGossipTiming(&gc)
	if gc.PushPullInterval >= c.Timing.FenceDelay {
		warnings = append(warnings, fmt.Sprintf("gossip_push_pull_interval (%v) is not below fence_delay (%v): a healthy node that a lost gossip broadcast leaves failed may have its services fenced before a sync repairs it",
			gc.PushPullInterval, c.Timing.FenceDelay))
	}
	if c.FenceConfig != "" {
		// A stall of about one probe plus the suspicion timeout makes
		// gossip declare a healthy node failed for an instant (it
		// refutes at once); fence_delay is what keeps the master from
		// powering it off.
		if silence := gc.ProbeInterval * time.Duration(1+gc.SuspicionMult); c.Timing.FenceDelay < 2*silence {
			warnings = append(warnings, fmt.Sprintf("fence_delay (%v) is less than twice gossip's failure threshold (about %v of silence): a node that stalls that long under load may be declared failed and powered off by a fence device",
				c.Timing.FenceDelay, silence))
		}
	}
	return warnings, nil
}

// DefaultTLSDir holds the TLS files when their keys are not set.
const DefaultTLSDir = "/etc/haxd/tls"

// UseTLS reports whether the raft port runs mutual TLS: always, except
// with Insecure and no TLS file set.
func (c *Config) UseTLS() bool {
	return !c.Insecure || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""
}

// validateObservability checks the metrics and notification fields.
func (c *Config) validateObservability() error {
	if c.MetricsAddr != "" {
		host, port, err := net.SplitHostPort(c.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics_addr %q: expected host:port: %w", c.MetricsAddr, err)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("metrics_addr %q: port %q is not a number", c.MetricsAddr, port)
		}
		if host != "" && net.ParseIP(host) == nil {
			return fmt.Errorf("metrics_addr %q: %q is not an IP address", c.MetricsAddr, host)
		}
	}
	for _, u := range c.NotifyWebhooks {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("notify_webhooks %q: expected an http:// or https:// URL", u)
		}
	}
	for _, p := range c.NotifyExec {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("notify_exec %q: expected an absolute path of a program", p)
		}
	}
	if c.NotifyTimeout <= 0 {
		return fmt.Errorf("notify_timeout %v: expected a positive duration", c.NotifyTimeout)
	}
	if c.NotifyRetries < 0 {
		return fmt.Errorf("notify_retries %d: expected >= 0", c.NotifyRetries)
	}
	if c.NodeCPUs < 0 || c.NodeMemoryMB < 0 {
		return fmt.Errorf("node_cpus %d, node_memory_mb %d: expected >= 0 (0: measured)", c.NodeCPUs, c.NodeMemoryMB)
	}
	if c.ShutdownDetectTimeout <= 0 {
		return fmt.Errorf("shutdown_detect_timeout %v: expected a positive duration", c.ShutdownDetectTimeout)
	}
	if c.UsageInterval <= 0 {
		return fmt.Errorf("usage_interval %v: expected a positive duration", c.UsageInterval)
	}
	if c.NotifyBackoff <= 0 {
		return fmt.Errorf("notify_backoff %v: expected a positive duration", c.NotifyBackoff)
	}
	if c.NotifyOutboxMax <= 0 {
		return fmt.Errorf("notify_outbox_max %d: expected > 0", c.NotifyOutboxMax)
	}
	if c.NodeUsageSource != NodeUsageProc && c.NodeUsageSource != NodeUsageServices {
		return fmt.Errorf("node_usage_source %q: expected %q or %q", c.NodeUsageSource, NodeUsageProc, NodeUsageServices)
	}
	if c.UsageCPUThresholdMillicores < 0 || c.UsageMemoryThresholdMB < 0 {
		return fmt.Errorf("usage_cpu_threshold_millicores %d, usage_memory_threshold_mb %d: expected >= 0", c.UsageCPUThresholdMillicores, c.UsageMemoryThresholdMB)
	}
	if c.UsageMaxInterval <= 0 {
		return fmt.Errorf("usage_max_interval %v: expected a positive duration", c.UsageMaxInterval)
	}
	return nil
}

// validateKey checks that EncryptKey is a base64 key of 16, 24 or 32 bytes.
func (c *Config) validateKey() error {
	k, err := base64.StdEncoding.DecodeString(c.EncryptKey)
	if err != nil {
		return fmt.Errorf("encrypt_key: not valid base64: %w", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("encrypt_key: decodes to %d bytes, expected 16, 24 or 32", n)
	}
	return nil
}

func (c *Config) validate() error {
	if !ha.ValidNodeName(c.NodeName) {
		return fmt.Errorf("node_name %q: %s", c.NodeName, ha.NodeNameRule)
	}
	if c.DataDir == "" {
		return fmt.Errorf("data_dir: must not be empty")
	}
	if c.APISocket == "" {
		return fmt.Errorf("api_socket: must not be empty")
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("bootstrap_expect %d: expected >= 0", c.BootstrapExpect)
	}
	if c.RaftVoters < 1 {
		return fmt.Errorf("raft_voters %d: expected >= 1", c.RaftVoters)
	}
	if g := c.eventRoundGap(); g < 0 || g >= c.Timing.CRMRound || g >= c.Timing.LRMRound {
		return fmt.Errorf("event_round_gap %v: expected >= 0 and less than crm_round (%v) and lrm_round (%v)", g, c.Timing.CRMRound, c.Timing.LRMRound)
	}
	gc := gossip.DefaultConfig(c.NodeName)
	c.applyGossipTiming(&gc)
	if gc.ProbeInterval <= 0 || gc.ProbeTimeout <= 0 || gc.ProbeTimeout >= gc.ProbeInterval {
		return fmt.Errorf("gossip_probe_timeout %v, gossip_probe_interval %v: expected both > 0 and the timeout less than the interval", gc.ProbeTimeout, gc.ProbeInterval)
	}
	if gc.PushPullInterval <= 0 {
		return fmt.Errorf("gossip_push_pull_interval %v: expected > 0", gc.PushPullInterval)
	}
	if c.GossipSuspicionMult < 1 || c.GossipSuspicionMaxTimeoutMult < 1 {
		return fmt.Errorf("gossip_suspicion_mult %d, gossip_suspicion_max_timeout_mult %d: expected >= 1", c.GossipSuspicionMult, c.GossipSuspicionMaxTimeoutMult)
	}
	if c.DiskCheckInterval != nil && *c.DiskCheckInterval <= 0 {
		return fmt.Errorf("disk_check_interval %v: expected > 0", *c.DiskCheckInterval)
	}
	if c.MaxWorkers < 1 {
		return fmt.Errorf("max_workers %d: expected >= 1", c.MaxWorkers)
	}
	switch ha.ShutdownPolicy(c.ShutdownPolicy) {
	case ha.ShutdownConditional, ha.ShutdownFreeze, ha.ShutdownFailover, ha.ShutdownMigrate:
	default:
		return fmt.Errorf("shutdown_policy %q: expected conditional, freeze, failover or migrate", c.ShutdownPolicy)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: expected debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format %q: expected text or json", c.LogFormat)
	}
	for _, a := range []struct{ key, addr string }{{"gossip_addr", c.GossipAddr}, {"raft_addr", c.RaftAddr}} {
		if err := c.validateAddr(a.key, a.addr, true); err != nil {
			return err
		}
	}
	if c.APIAddr != "" {
		if err := c.validateAddr("api_addr", c.APIAddr, false); err != nil {
			return err
		}
		if !c.UseTLS() {
			return fmt.Errorf("api_addr %q: the HTTPS API listener needs the node's TLS files (tls_ca_file, tls_cert_file, tls_key_file); with insecure = true and none set it could not authenticate clients", c.APIAddr)
		}
	}
	if c.AdvertiseIP != "" && net.ParseIP(c.AdvertiseIP) == nil {
		return fmt.Errorf("advertise_ip %q: not an IP address", c.AdvertiseIP)
	}
	if err := c.FenceOptions().Validate(); err != nil {
		return fmt.Errorf("fence_* keys: %w", err)
	}
	if c.EncryptKey == "" && !c.Insecure {
		return fmt.Errorf("encrypt_key: required (create one with `haxd keygen`, or point encrypt_key_file at `haxd keygen -o FILE`), or set insecure = true for local tests")
	}
	if c.EncryptKey != "" {
		return c.validateKey()
	}
	return nil
}

// validateAddr checks a listener's bind address: host:port with a
// numeric port and an IP host, or no host when AdvertiseIP is set (it then
// binds to the advertised address). An unspecified IP needs AdvertiseIP
// too when other nodes dial the address (advertised).
func (c *Config) validateAddr(key, addr string, advertised bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: expected host:port: %w", key, addr, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("%s %q: port %q is not a number", key, addr, port)
	}
	if host == "" {
		if c.AdvertiseIP == "" {
			return fmt.Errorf("advertise_ip: required when %s %q names no host (it then binds to the advertised address)", key, addr)
		}
		return nil
	}
	if ip := net.ParseIP(host); ip == nil {
		return fmt.Errorf("%s %q: %q is not an IP address", key, addr, host)
	} else if advertised && ip.IsUnspecified() && c.AdvertiseIP == "" {
		return fmt.Errorf("advertise_ip: required when %s binds to %s (other nodes cannot dial an unspecified address)", key, host)
	}
	return nil
}
