package agent

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"haxd/gossip"
	"haxd/ha"
	"haxd/store"
)

const goodKey = "AAECAwQFBgcICQoLDA0ODw=="

func TestParseConfig(t *testing.T) {
	cfg := DefaultConfig()
	src := `# haxd agent config
node_name = node1
advertise_ip = 10.0.0.1
data_dir = "/tmp/haxd data"
join = 10.0.0.2:7946, 10.0.0.3:7946
bootstrap_expect = 3
encrypt_key = ` + goodKey + `
lock_ttl = 5s   # longer than the fast default
lock_validity = 2s
`
	if err := ParseConfig("haxd.conf", []byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "node1" || cfg.DataDir != "/tmp/haxd data" || len(cfg.Join) != 2 || cfg.Join[1] != "10.0.0.3:7946" ||
		cfg.BootstrapExpect != 3 || cfg.Timing.LockTTL != 5*time.Second || cfg.Timing.LockValidity != 2*time.Second ||
		cfg.Timing.CRMRound != ha.FastTiming().CRMRound {
		t.Fatalf("parsed %+v", cfg)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"node_name node1", `haxd.conf:1: expected key = value, found "node_name node1"`},
		{"\ncolour = red", `haxd.conf:2: unknown key "colour"`},
		{"lock_ttl = 3 seconds", `haxd.conf:1: lock_ttl: value "3 seconds": expected a duration`},
		{"insecure = maybe", `insecure: value "maybe": expected true or false`},
		{"raft_voters = five", `raft_voters: value "five": expected an integer`},
		{"node_name = a\nnode_name = b", `haxd.conf:2: key "node_name" already set on line 1`},
		{`data_dir = "unterminated`, `bad quoting`},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		err := ParseConfig("haxd.conf", []byte(tt.src), &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%q) = %v, want error containing %q", tt.src, err, tt.want)
		}
	}
}

func TestFinishRejects(t *testing.T) {
	d := func(s string) *time.Duration { v, _ := time.ParseDuration(s); return &v }
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
		unsafe bool
	}{
		{"no key", func(c *Config) { c.EncryptKey = "" }, "encrypt_key: required", false},
		{"short key", func(c *Config) { c.EncryptKey = "AAEC" }, "decodes to 3 bytes", false},
		{"bad node name", func(c *Config) { c.NodeName = "-x" }, `node_name "-x"`, false},
		{"unsafe ttl", func(c *Config) { c.LockTTL = d("1.8s") }, "must be less than lock_ttl (1.8s)", true},
		{"bad profile", func(c *Config) { c.TimingProfile = "warp" }, `unknown timing profile "warp"`, false},
		{"bad policy", func(c *Config) { c.ShutdownPolicy = "panic" }, `shutdown_policy "panic"`, false},
		{"zero shutdown detect timeout", func(c *Config) { c.ShutdownDetectTimeout = 0 }, "shutdown_detect_timeout 0s: expected a positive duration", false},
		{"negative shutdown detect timeout", func(c *Config) { c.ShutdownDetectTimeout = -time.Second }, "shutdown_detect_timeout -1s: expected a positive duration", false},
		{"default bind without advertise_ip", func(c *Config) { c.AdvertiseIP = "" }, `advertise_ip: required when gossip_addr ":7946" names no host`, false},
		{"unspecified bind without advertise_ip", func(c *Config) { c.AdvertiseIP = ""; c.GossipAddr = "0.0.0.0:7946" }, "advertise_ip: required when gossip_addr binds to 0.0.0.0", false},
		{"bad advertise_ip", func(c *Config) { c.AdvertiseIP = "node1.lan" }, `advertise_ip "node1.lan": not an IP address`, false},
		{"gossip host name", func(c *Config) { c.GossipAddr = "node1:7946" }, `gossip_addr "node1:7946": "node1" is not an IP address`, false},
		{"api_addr without port", func(c *Config) { c.APIAddr = "10.0.0.1" }, `api_addr "10.0.0.1": expected host:port`, false},
		{"api_addr host name", func(c *Config) { c.APIAddr = "node1:8443" }, `api_addr "node1:8443": "node1" is not an IP address`, false},
		{"api_addr without TLS", func(c *Config) { c.APIAddr = ":8443"; c.Insecure = true }, `api_addr ":8443": the HTTPS API listener needs the node's TLS files`, false},
		{"zero outbox", func(c *Config) { c.NotifyOutboxMax = 0 }, "notify_outbox_max 0: expected > 0", false},
		{"bad usage source", func(c *Config) { c.NodeUsageSource = "cgroups" }, `node_usage_source "cgroups": expected "proc" or "services"`, false},
		{"negative usage threshold", func(c *Config) { c.UsageCPUThresholdMillicores = -1 }, "usage_cpu_threshold_millicores -1", false},
		{"zero usage max interval", func(c *Config) { c.UsageMaxInterval = 0 }, "usage_max_interval 0s: expected a positive duration", false},
		{"event gap as long as a round", func(c *Config) { c.EventRoundGap = d("250ms") }, "event_round_gap 250ms: expected >= 0 and less than crm_round", false},
		{"negative event gap", func(c *Config) { c.EventRoundGap = d("-1ms") }, "event_round_gap -1ms", false},
		{"probe timeout not below the interval", func(c *Config) { c.GossipProbeTimeout = d("100ms") }, "gossip_probe_timeout 100ms, gossip_probe_interval 100ms", false},
		{"zero probe interval", func(c *Config) { c.GossipProbeInterval = d("0s") }, "gossip_probe_timeout 50ms, gossip_probe_interval 0s", false},
		{"zero suspicion mult", func(c *Config) { c.GossipSuspicionMult = 0 }, "gossip_suspicion_mult 0", false},
		{"zero push/pull interval", func(c *Config) { c.GossipPushPullInterval = d("0s") }, "gossip_push_pull_interval 0s: expected > 0", false},
		{"negative push/pull interval", func(c *Config) { c.GossipPushPullInterval = d("-1s") }, "gossip_push_pull_interval -1s: expected > 0", false},
		{"raft lease above heartbeat", func(c *Config) { c.RaftLeaderLeaseTimeout = 300 * time.Millisecond }, "raft_leader_lease_timeout (300ms): must be <= raft_heartbeat_timeout (200ms)", false},
		{"raft election below heartbeat", func(c *Config) { c.RaftElectionTimeout = 100 * time.Millisecond }, "raft_election_timeout (100ms): must be >= raft_heartbeat_timeout", false},
		{"zero raft commit timeout", func(c *Config) { c.RaftCommitTimeout = 0 }, "raft_commit_timeout: expected a positive duration", false},
		{"negative hedge", func(c *Config) { c.ForwardHedgeDelay = -time.Millisecond }, "forward_hedge_delay: expected >= 0", false},
		{"tcp_rto_min above the kernel's", func(c *Config) { c.TCPRTOMin = 300 * time.Millisecond }, "tcp_rto_min: expected 0 (the kernel's) or 5ms to 200ms, found 300ms", false},
		{"tcp_rto_min below a tick", func(c *Config) { c.TCPRTOMin = time.Millisecond }, "tcp_rto_min", false},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName = "node1"
		cfg.AdvertiseIP = "10.0.0.1"
		cfg.EncryptKey = goodKey
		tt.mutate(&cfg)
		_, err := cfg.Finish()
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ha.ErrUnsafeTiming) != tt.unsafe {
			t.Errorf("%s: Finish() = %v, want error containing %q (unsafe=%v)", tt.name, err, tt.want, tt.unsafe)
		}
	}
}

// The store timings parse from the config file, reach the store's
// config, and default to the store's defaults.
func TestStoreTimings(t *testing.T) {
	cfg := DefaultConfig()
	var got store.Config
	cfg.applyStoreTimings(&got)
	def := store.DefaultConfig()
	if got.HeartbeatTimeout != def.HeartbeatTimeout || got.ElectionTimeout != def.ElectionTimeout ||
		got.LeaderLeaseTimeout != def.LeaderLeaseTimeout || got.CommitTimeout != def.CommitTimeout ||
		got.ForwardHedgeDelay != def.ForwardHedgeDelay || got.TCPRTOMin != def.TCPRTOMin {
		t.Errorf("default agent config gives store timings %+v, want the store's defaults", got)
	}
	text := "raft_heartbeat_timeout = 300ms\nraft_election_timeout = 400ms\nraft_leader_lease_timeout = 250ms\n" +
		"raft_commit_timeout = 20ms\nforward_hedge_delay = 0s\ntcp_rto_min = 0s\n"
	if err := ParseConfig("test.conf", []byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.applyStoreTimings(&got)
	want := []time.Duration{300 * time.Millisecond, 400 * time.Millisecond, 250 * time.Millisecond, 20 * time.Millisecond, 0, 0}
	for i, v := range []time.Duration{got.HeartbeatTimeout, got.ElectionTimeout, got.LeaderLeaseTimeout, got.CommitTimeout, got.ForwardHedgeDelay, got.TCPRTOMin} {
		if v != want[i] {
			t.Errorf("store timing %d = %v, want %v (config %q)", i, v, want[i], text)
		}
	}
}

// By default the listeners bind to the advertised address, not to every
// address, and TLS is on with its files in DefaultTLSDir; insecure
// without TLS files turns it off.
func TestFinishDefaultsBindAndTLS(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName, cfg.AdvertiseIP, cfg.EncryptKey = "node1", "10.0.0.1", goodKey
	if _, err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	if cfg.GossipAddr != "10.0.0.1:7946" || cfg.RaftAddr != "10.0.0.1:7947" || cfg.APIAddr != "" {
		t.Errorf("bind addresses %s, %s, api %q; want the advertised address and no API listener", cfg.GossipAddr, cfg.RaftAddr, cfg.APIAddr)
	}
	api := DefaultConfig()
	api.NodeName, api.AdvertiseIP, api.EncryptKey, api.APIAddr = "node1", "10.0.0.1", goodKey, ":8443"
	if _, err := api.Finish(); err != nil || api.APIAddr != "10.0.0.1:8443" {
		t.Errorf("api_addr :8443: %q, %v; want the advertised address", api.APIAddr, err)
	}
	if !cfg.UseTLS() || cfg.TLSCAFile != "/etc/haxd/tls/ca.pem" || cfg.TLSCertFile != "/etc/haxd/tls/node1.pem" || cfg.TLSKeyFile != "/etc/haxd/tls/node1-key.pem" {
		t.Errorf("TLS %v: %s %s %s; want on with the default files", cfg.UseTLS(), cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile)
	}
	ins := DefaultConfig()
	ins.NodeName, ins.AdvertiseIP, ins.Insecure = "node1", "10.0.0.1", true
	if _, err := ins.Finish(); err != nil {
		t.Fatal(err)
	}
	if ins.UseTLS() || ins.TLSCertFile != "" {
		t.Errorf("insecure without TLS files: TLS %v, cert %q; want off", ins.UseTLS(), ins.TLSCertFile)
	}
	ins.TLSCAFile = "/x/ca.pem"
	if !ins.UseTLS() {
		t.Error("insecure with a TLS file set: TLS off, want on")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("node_name = n1\njoin = a:1,b:2\nlock_ttl = 3s\n"))
	f.Add([]byte(`data_dir = "x\ty"` + "\n# c\ninsecure = true"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := DefaultConfig()
		if err := ParseConfig("fuzz.conf", b, &cfg); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf:") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		_, _ = cfg.Finish()
	})
}

// TestEncryptKeyFile: the key file `haxd keygen -o` writes can be
// referenced; a missing, empty or bad file and a key set twice are errors
// naming encrypt_key_file.
func TestEncryptKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", goodKey+"\n")
	tests := []struct {
		name, file, key, wantErr string
	}{
		{"good", good, "", ""},
		{"missing", dir + "/none.key", "", "encrypt_key_file"},
		{"empty", write("empty.key", "\n"), "", "the file is empty"},
		{"bad", write("bad.key", "not base64!\n"), "", "not valid base64"},
		{"both", good, goodKey, "set only one"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.AdvertiseIP = "10.0.0.1"
		cfg.EncryptKeyFile, cfg.EncryptKey = tt.file, tt.key
		_, err := cfg.Finish()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr == "" && cfg.EncryptKey != goodKey:
			t.Errorf("%s: key %q not read", tt.name, cfg.EncryptKey)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "encrypt_key")):
			t.Errorf("%s: err %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestGossipTimingByProfile(t *testing.T) {
	d := func(s string) *time.Duration { v, _ := time.ParseDuration(s); return &v }
	tests := []struct {
		name           string
		mutate         func(*Config)
		probe, timeout time.Duration
		mult, maxMult  int
		pushPull       time.Duration
	}{
		{"fast", func(c *Config) {}, 100 * time.Millisecond, 50 * time.Millisecond, 4, 3, 500 * time.Millisecond},
		// pve keeps the push/pull interval of the gossip config it is
		// given (LocalConfig's 5s here).
		{"pve keeps the gossip defaults", func(c *Config) { c.TimingProfile = "pve" }, 200 * time.Millisecond, 100 * time.Millisecond, 4, 3, 5 * time.Second},
		{"overrides", func(c *Config) {
			c.GossipProbeInterval, c.GossipProbeTimeout = d("300ms"), d("150ms")
			c.GossipSuspicionMult, c.GossipSuspicionMaxTimeoutMult = 2, 6
			c.GossipPushPullInterval = d("2s")
		}, 300 * time.Millisecond, 150 * time.Millisecond, 2, 6, 2 * time.Second},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.AdvertiseIP, cfg.EncryptKey = "node1", "10.0.0.1", goodKey
		tt.mutate(&cfg)
		if _, err := cfg.Finish(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		gc := gossip.LocalConfig("node1")
		cfg.applyGossipTiming(&gc)
		if gc.ProbeInterval != tt.probe || gc.ProbeTimeout != tt.timeout || gc.SuspicionMult != tt.mult || gc.SuspicionMaxTimeoutMult != tt.maxMult {
			t.Errorf("%s: probe %v timeout %v mult %d max %d, want %v %v %d %d", tt.name,
				gc.ProbeInterval, gc.ProbeTimeout, gc.SuspicionMult, gc.SuspicionMaxTimeoutMult, tt.probe, tt.timeout, tt.mult, tt.maxMult)
		}
		if gc.PushPullInterval != tt.pushPull {
			t.Errorf("%s: push/pull interval %v, want %v", tt.name, gc.PushPullInterval, tt.pushPull)
		}
	}
}

func TestPushPullWarning(t *testing.T) {
	d := func(s string) *time.Duration { v, _ := time.ParseDuration(s); return &v }
	tests := []struct {
		name     string
		profile  string
		pushPull *time.Duration
		warned   bool
	}{
		{"fast default (500ms, fence_delay 1s)", "fast", nil, false},
		{"fast, push/pull as long as fence_delay", "fast", d("1s"), true},
		{"pve default (30s, fence_delay 60s)", "pve", nil, false},
		{"pve, push/pull 2m", "pve", d("2m"), true},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.AdvertiseIP, cfg.EncryptKey = "node1", "10.0.0.1", goodKey
		cfg.TimingProfile, cfg.GossipPushPullInterval = tt.profile, tt.pushPull
		warnings, err := cfg.Finish()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		warned := false
		for _, w := range warnings {
			warned = warned || strings.Contains(w, "gossip_push_pull_interval")
		}
		if warned != tt.warned {
			t.Errorf("%s: warned = %v (%q), want %v", tt.name, warned, warnings, tt.warned)
		}
	}
}

func TestFenceDelayWarning(t *testing.T) {
	d := func(s string) *time.Duration { v, _ := time.ParseDuration(s); return &v }
	tests := []struct {
		name   string
		fence  string
		delay  *time.Duration
		warned bool
	}{
		{"fence device, default fence_delay", "/etc/haxd/fence.cfg", nil, false},
		{"fence device, fence_delay 0", "/etc/haxd/fence.cfg", d("0s"), true},
		{"no fence device, fence_delay 0", "", d("0s"), false},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.AdvertiseIP, cfg.EncryptKey = "node1", "10.0.0.1", goodKey
		cfg.FenceConfig, cfg.FenceDelay = tt.fence, tt.delay
		warnings, err := cfg.Finish()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		warned := false
		for _, w := range warnings {
			warned = warned || strings.Contains(w, "fence_delay (0s) is less than twice gossip's failure threshold")
		}
		if warned != tt.warned {
			t.Errorf("%s: warned = %v (%q), want %v", tt.name, warned, warnings, tt.warned)
		}
	}
}
