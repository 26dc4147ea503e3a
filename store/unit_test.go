package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"haxd/ha"
)

func TestPlanVoters(t *testing.T) {
	v := func(id string) raft.Server {
		return raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1"), Suffrage: raft.Voter}
	}
	nv := func(id string) raft.Server {
		return raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1"), Suffrage: raft.Nonvoter}
	}
	tests := []struct {
		name      string
		self      raft.ServerID // "" means n1
		servers   []raft.Server
		max       int
		unhealthy []raft.ServerID
		want      string // "promote X", "demote X" or ""
	}{
		{"single node", "", []raft.Server{v("n1")}, 5, nil, ""},
		{"promote smallest id", "", []raft.Server{v("n1"), nv("n7"), nv("n3"), nv("n5")}, 3, nil, "promote n3"},
		{"skip unhealthy non-voter", "", []raft.Server{v("n1"), nv("n3"), nv("n5")}, 3, []raft.ServerID{"n3"}, "promote n5"},
		{"all non-voters unhealthy", "", []raft.Server{v("n1"), nv("n3")}, 3, []raft.ServerID{"n3"}, ""},
		{"at the limit", "", []raft.Server{v("n1"), v("n2"), v("n3"), nv("n4")}, 3, nil, ""},
		{"demote largest id, not self", "", []raft.Server{v("n1"), v("n2"), v("n3"), v("n4")}, 3, nil, "demote n4"},
		{"demote unhealthy first", "", []raft.Server{v("n1"), v("n2"), v("n3"), v("n4")}, 3, []raft.ServerID{"n2"}, "demote n2"},
		{"never demote self", "", []raft.Server{v("n1"), v("n2")}, 1, nil, "demote n2"},
		{"never demote self even with the largest id", "n3", []raft.Server{v("n1"), v("n2"), v("n3")}, 2, nil, "demote n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unhealthy := map[raft.ServerID]bool{}
			for _, id := range tt.unhealthy {
				unhealthy[id] = true
			}
			self := tt.self
			if self == "" {
				self = "n1"
			}
			got := ""
			if ch := planVoters(tt.servers, self, tt.max, unhealthy); ch != nil {
				got = map[bool]string{true: "promote ", false: "demote "}[ch.Promote] + string(ch.ID)
			}
			if got != tt.want {
				t.Errorf("planVoters = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := LocalConfig("n1", "/tmp/x")
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error, "" for valid
	}{
		{"local config", func(*Config) {}, ""},
		{"default config with node and dir", func(c *Config) { d := DefaultConfig(); d.NodeID, d.DataDir = "n1", "/d"; *c = d }, ""},
		{"no node id", func(c *Config) { c.NodeID = "" }, "node_id"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"bad bind addr", func(c *Config) { c.BindAddr = "localhost" }, "bind_addr"},
		{"unspecified advertise addr", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7947" }, "advertise_addr"},
		{"advertise port 0", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, "advertise_addr"},
		{"zero voters", func(c *Config) { c.Voters = 0 }, "voters"},
		{"zero lock ttl", func(c *Config) { c.LockTTL = 0 }, "lock_ttl"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "leader_lease_timeout"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "election_timeout"},
		{"tiny timeouts", func(c *Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Millisecond, time.Millisecond, time.Millisecond
		}, "at least 5ms"},
		{"no snapshots kept", func(c *Config) { c.SnapshotRetain = 0 }, "snapshot_retain"},
		{"kernel's rto", func(c *Config) { c.TCPRTOMin = 0 }, ""},
		{"rto min at the kernel's", func(c *Config) { c.TCPRTOMin = MaxTCPRTOMin }, ""},
		{"rto min above the kernel's", func(c *Config) { c.TCPRTOMin = 201 * time.Millisecond }, "tcp_rto_min"},
		{"rto min below a tick", func(c *Config) { c.TCPRTOMin = time.Millisecond }, "tcp_rto_min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRefusalsKeepTheirSentinelOverTheWire(t *testing.T) {
	for _, c := range errorCodes() {
		t.Run(c.code, func(t *testing.T) {
			res := refuse(c.err, "lock %q", "agent/n1")
			b, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var back result
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got := back.err()
			if !errors.Is(got, c.err) {
				t.Errorf("decoded %v does not wrap %v", got, c.err)
			}
			if want := fmt.Sprintf("lock %q: %v", "agent/n1", c.err); got.Error() != want {
				t.Errorf("message %q, want %q", got.Error(), want)
			}
		})
	}
	if err := (&result{Msg: "disk full"}).err(); err == nil || errorCode(err) != "" {
		t.Errorf("plain failure: %v (code %q), want an error without code", err, errorCode(err))
	}
}

type stringerNode struct{ name string }

func (s *stringerNode) String() string { return "node " + s.name }

func TestHclogAdapterGroupsRaftAttributes(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", "n1")
	var nilNode *stringerNode
	l := newHclogAdapter(base, "raft").Named("net").With("peer", "n2")
	l.Info("entering candidate state", "node", &stringerNode{"n1"}, "servers", hclog.Fmt("%d+%d", 1, 2),
		"err", errors.New("refused"), "nil", nilNode, "dangling")
	l.Trace("not shown: below the handler's level")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	want := map[string]any{
		"logger": "raft.net", "peer": "n2", "node": "node n1", "servers": "1+2",
		"err": "refused", "nil": "<nil>", "EXTRA_VALUE_AT_END": "dangling",
	}
	got, _ := rec["raft"].(map[string]any)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("raft group = %v, want %v", got, want)
	}
	if rec["node"] != "n1" || rec["level"] != "INFO" || rec["msg"] != "entering candidate state" {
		t.Errorf("record = %v, want haxd's node n1 at INFO outside the group", rec)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("trace record was emitted: %q", buf.String())
	}
	if l.IsTrace() || !l.IsDebug() {
		t.Errorf("IsTrace/IsDebug = %v/%v, want false/true for a debug handler", l.IsTrace(), l.IsDebug())
	}
	l.SetLevel(hclog.Warn)
	if l.IsInfo() || l.GetLevel() != hclog.Warn {
		t.Errorf("after SetLevel(Warn): IsInfo %v, GetLevel %v", l.IsInfo(), l.GetLevel())
	}
	buf.Reset()
	l.Info("suppressed")
	l.Log(hclog.Off, "never")
	if buf.Len() != 0 {
		t.Errorf("records below the set level were emitted: %q", buf.String())
	}
}

func TestCheckTiming(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*Config)
		ttl      time.Duration
		timing   ha.Timing
		wantErr  bool
		warnings []string // substrings, one per warning
	}{
		{"defaults match the fast profile", func(*Config) {}, ha.FastTiming().LockTTL, ha.FastTiming(), false, nil},
		{"slow raft for the fast profile", func(c *Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
		},
			ha.FastTiming().LockTTL, ha.FastTiming(), false, []string{"raft failover may take up to 1.3s"}},
		{"pve profile has no election estimate", func(c *Config) { c.HeartbeatTimeout = time.Second }, 120 * time.Second, ha.PVETiming(), false, nil},
		{"lock ttl differs", func(*Config) {}, 2 * time.Second, ha.FastTiming(), true, nil},
		{"the kernel's rto outlasts the lease", func(c *Config) { c.TCPRTOMin = 0 }, ha.FastTiming().LockTTL, ha.FastTiming(), false,
			[]string{"raft_leader_lease_timeout (200ms) is shorter than two TCP retransmits (3 x 200ms"}},
		{"the old 100 ms lease", func(c *Config) { c.LeaderLeaseTimeout = 100 * time.Millisecond; c.TCPRTOMin = 50 * time.Millisecond }, ha.FastTiming().LockTTL, ha.FastTiming(), false,
			[]string{"raft_leader_lease_timeout (100ms) is shorter than two TCP retransmits (3 x 50ms"}},
		{"hedge too late", func(c *Config) { c.ForwardHedgeDelay = 740 * time.Millisecond }, ha.FastTiming().LockTTL, ha.FastTiming(), false,
			[]string{"forward_hedge_delay (740ms) plus one TCP retransmit (20ms) does not fit in the renewal budget lock_validity - lrm_round (750ms)"}},
		{"no hedge", func(c *Config) { c.ForwardHedgeDelay = 0 }, ha.FastTiming().LockTTL, ha.FastTiming(), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.LockTTL = tt.ttl
			tt.mutate(&c)
			w, err := c.CheckTiming(tt.timing)
			if (err != nil) != tt.wantErr || len(w) != len(tt.warnings) {
				t.Fatalf("CheckTiming = %q, %v; want %d warnings, error %v", w, err, len(tt.warnings), tt.wantErr)
			}
			for i, want := range tt.warnings {
				if !strings.Contains(w[i], want) {
					t.Errorf("warning %d = %q, want it to contain %q", i, w[i], want)
				}
			}
		})
	}
}
