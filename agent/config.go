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
	"haxd/ha"
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

	// NodeCPUs is the number of cores this node offers the static and
	// dynamic schedulers; 0: the cores in /proc/stat.
	NodeCPUs int `cfg:"node_cpus"`
	// NodeMemoryMB is the memory in MiB this node offers the schedulers;
	// 0: MemTotal of /proc/meminfo.
	NodeMemoryMB int `cfg:"node_memory_mb"`
	// UsageInterval is how often the agent samples /proc and gossips its
	// usage for the schedulers. Default 10s.
	UsageInterval time.Duration `cfg:"usage_interval"`

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

	// DiskCheckInterval is how often the agent checks that it can write to
	// its data dir; a node that cannot steps out (see watchDisk). Default
	// DefaultDiskCheckInterval.
	DiskCheckInterval *time.Duration `cfg:"disk_check_interval"`
}

// diskCheckInterval returns DiskCheckInterval or its default.
func (c *Config) diskCheckInterval() time.Duration {
	if c.DiskCheckInterval != nil {
		return *c.DiskCheckInterval
	}
	return DefaultDiskCheckInterval
}

// DefaultConfig returns the defaults (NodeName is the host name).
func DefaultConfig() Config {
	host, _ := os.Hostname()
	fo := fencedev.DefaultOptions()
	return Config{
		NodeName:       host,
		DataDir:        "/var/lib/haxd",
		GossipAddr:     ":7946",
		RaftAddr:       ":7947",
		APISocket:      "/run/haxd/haxd.sock",
		RaftVoters:     5,
		MaxWorkers:     4,
		ShutdownPolicy: string(ha.ShutdownConditional),
		LogLevel:       "info",
		LogFormat:      "text",
		TimingProfile:  "fast",
		NotifyTimeout:  5 * time.Second,
		NotifyRetries:  5,
		NotifyBackoff:  time.Second,
		UsageInterval:  10 * time.Second,

		ShutdownDetectTimeout: DefaultShutdownDetectTimeout,
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
	for _, a := range []*string{&c.GossipAddr, &c.RaftAddr} {
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
	if c.NodeName == "" || !validNodeName(c.NodeName) {
		return fmt.Errorf("node_name %q: expected letters, digits and '-', starting and ending with a letter or digit", c.NodeName)
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
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("%s %q: expected host:port: %w", a.key, a.addr, err)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("%s %q: port %q is not a number", a.key, a.addr, port)
		}
		if host == "" {
			if c.AdvertiseIP == "" {
				return fmt.Errorf("advertise_ip: required when %s %q names no host (it then binds to the advertised address)", a.key, a.addr)
			}
			continue
		}
		if ip := net.ParseIP(host); ip == nil {
			return fmt.Errorf("%s %q: %q is not an IP address", a.key, a.addr, host)
		} else if ip.IsUnspecified() && c.AdvertiseIP == "" {
			return fmt.Errorf("advertise_ip: required when %s binds to %s (other nodes cannot dial an unspecified address)", a.key, host)
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

func validNodeName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
