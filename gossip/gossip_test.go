package gossip

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for the goroutines of memberlist and serf.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testKey(t *testing.T) []byte {
	t.Helper()
	s, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startMember starts a LocalConfig member with key on a free loopback port
// and stops it (hard) at the end of the test.
func startMember(t *testing.T, name string, key []byte, logs *syncBuffer) *Gossip {
	t.Helper()
	cfg := LocalConfig(name)
	cfg.Key = key
	cfg.RaftAddr = "127.0.0.1:" + fmt.Sprint(9000+len(name))
	cfg.APIAddr = "/run/haxd/" + name + ".sock"
	cfg.Tags = map[string]string{TagVersion: "test"}
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	g, err := Start(t.Context(), cfg, slog.New(h).With("self", name))
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

// waitFor polls cond every 10 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func states(g *Gossip) string {
	var parts []string
	for _, m := range g.Members() {
		parts = append(parts, m.Name+"="+m.Status)
	}
	return strings.Join(parts, " ")
}

func TestThreeMembersJoinSeeTagsAndDetectAHardFailure(t *testing.T) {
	key := testKey(t)
	logs := &syncBuffer{}
	n1 := startMember(t, "n1", key, logs)
	n2 := startMember(t, "n2", key, nil)
	n3 := startMember(t, "n3", key, nil)

	// Any member's address is enough: n3 joins through n2, not n1.
	if _, err := n2.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.Join([]string{n2.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	all := []*Gossip{n1, n2, n3}
	for _, g := range all {
		waitFor(t, 5*time.Second, g.LocalName()+" sees 3 alive", func() bool {
			return states(g) == "n1=alive n2=alive n3=alive"
		})
	}
	m, err := n1.Member("n3")
	if err != nil {
		t.Fatal(err)
	}
	if m.RaftAddr != "127.0.0.1:9002" || m.APIAddr != "/run/haxd/n3.sock" || m.Tags[TagVersion] != "test" || m.State != StateOnline {
		t.Errorf("n1's view of n3 = %+v, want raft 127.0.0.1:9002, api /run/haxd/n3.sock, version test, online", m)
	}
	if m.Addr != n3.LocalAddr() {
		t.Errorf("n3 address seen by n1 = %q, want %q", m.Addr, n3.LocalAddr())
	}
	if !n1.Quorum(true) || n1.Quorum(false) {
		t.Errorf("3/3 alive: Quorum(true) = %v (want true), Quorum(false) = %v (want false)", n1.Quorum(true), n1.Quorum(false))
	}
	// Drain the join events so the failure event is the next of interest.
	drain(n1)

	// Hard failure: no leave broadcast, listeners closed (like SIGKILL).
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// research/timings.md: fast config, p95 536 ms, max 639 ms; allow for
	// a loaded test machine.
	const bound = 5 * time.Second
	for _, g := range []*Gossip{n1, n2} {
		took := waitFor(t, bound, g.LocalName()+" sees n3 failed", func() bool {
			return states(g) == "n1=alive n2=alive n3=failed"
		})
		t.Logf("%s saw n3 failed after %v", g.LocalName(), took)
	}
	ev := nextEvent(t, n1, EventFailed)
	if ev.Member.Name != "n3" || ev.Member.State != StateUnknown {
		t.Errorf("failure event = %+v, want n3 unknown", ev)
	}
	// 2 of 3 known members alive: still quorate with a leader.
	if !n1.Quorum(true) {
		t.Errorf("2/3 alive: Quorum(true) = false, want true")
	}
	info := n1.NodeInfo(true)
	if !info["n1"].Online || !info["n2"].Online || info["n3"].Online || len(info) != 3 {
		t.Errorf("NodeInfo(true) = %v, want n1, n2 online and n3 offline", info)
	}
	if !strings.Contains(logs.String(), "lib=memberlist") {
		t.Errorf("memberlist's log lines did not reach slog:\n%s", logs.String())
	}

	// Graceful leave: n2 is seen as left, not failed, and n1 alone (1 of
	// 3 known) has lost quorum.
	if err := n2.Leave(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, bound, "n1 sees n2 left", func() bool {
		return states(n1) == "n1=alive n2=left n3=failed"
	})
	if n1.Quorum(true) {
		t.Errorf("1/3 alive: Quorum(true) = true, want false")
	}
}

func drain(g *Gossip) {
	for {
		select {
		case <-g.Events():
		default:
			return
		}
	}
}

func nextEvent(t *testing.T, g *Gossip, typ EventType) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-g.Events():
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event on %s", typ, g.LocalName())
		}
	}
}

func TestAMemberWithTheWrongKeyCannotJoin(t *testing.T) {
	n1 := startMember(t, "n1", testKey(t), nil)
	intruder := startMember(t, "intruder", testKey(t), nil)
	if _, err := intruder.Join([]string{n1.LocalAddr()}); err == nil {
		t.Fatal("join with a different key succeeded")
	} else if !strings.Contains(err.Error(), "decrypt") {
		t.Errorf("join error = %v, want a decryption failure", err)
	}

	cfg := LocalConfig("plain")
	cfg.Insecure = true
	plain, err := Start(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	if _, err := plain.Join([]string{n1.LocalAddr()}); err == nil {
		t.Fatal("join without a key succeeded")
	}
	time.Sleep(300 * time.Millisecond)
	if got := states(n1); got != "n1=alive" {
		t.Errorf("n1 members = %q, want only itself", got)
	}
}

func TestStartRefusesToRunWithoutAKeyUnlessInsecure(t *testing.T) {
	cfg := LocalConfig("n1")
	if _, err := Start(t.Context(), cfg, nil); err == nil || !strings.Contains(err.Error(), "haxd keygen") {
		t.Fatalf("Start without key: err = %v, want ErrNoKey pointing at haxd keygen", err)
	}
	cfg.Insecure = true
	g, err := Start(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("Start with insecure: %v", err)
	}
	g.Shutdown()
}

func TestCancellingTheContextShutsTheMemberDown(t *testing.T) {
	key := testKey(t)
	n1 := startMember(t, "n1", key, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cfg := LocalConfig("n2")
	cfg.Key = key
	n2, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2", func() bool { return states(n1) == "n1=alive n2=alive" })
	cancel()
	waitFor(t, 5*time.Second, "n1 sees n2 failed", func() bool { return states(n1) == "n1=alive n2=failed" })
}

func TestParseKey(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	tests := []struct {
		in      string
		wantLen int
		wantErr string
	}{
		{b64(16), 16, ""},
		{b64(24), 24, ""},
		{" " + b64(32) + "\n", 32, ""},
		{b64(31), 0, "key is 31 bytes, expected 16, 24 or 32"},
		{b64(5), 0, "key is 5 bytes"},
		{"", 0, "empty"},
		{"not base64!", 0, "not base64"},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKey(%q) err = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(k) != tt.wantLen {
			t.Errorf("ParseKey(%q) = %d bytes, %v; want %d bytes", tt.in, len(k), err, tt.wantLen)
		}
	}
}

func TestGenerateKeyMakesDistinctParsableKeys(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey()
	if a == b {
		t.Error("two generated keys are equal")
	}
	if k, err := ParseKey(a); err != nil || len(k) != KeySize {
		t.Errorf("ParseKey(GenerateKey()) = %d bytes, %v", len(k), err)
	}
}

func TestReadKeyFileRefusesAWorldReadableFile(t *testing.T) {
	dir := t.TempDir()
	k, _ := GenerateKey()
	p := filepath.Join(dir, "key")
	if err := os.WriteFile(p, []byte(k+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(p); err == nil || !strings.Contains(err.Error(), "expected 0600") {
		t.Errorf("ReadKeyFile(0644) err = %v, want a mode error", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadKeyFile(p); err != nil || len(got) != KeySize {
		t.Errorf("ReadKeyFile(0600) = %d bytes, %v", len(got), err)
	}
}

func TestSuspicionTimeouts(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name           string
		probe          time.Duration
		mult, maxMult  int
		nodes          int
		wantLo, wantHi time.Duration
	}{
		// 3 nodes: one possible confirmer, fewer than mult-2, so memberlist
		// uses the minimum from the start.
		{"fast default, 3 nodes", 100 * ms, 4, 3, 3, 400 * ms, 400 * ms},
		{"fast default, 4 nodes: 2 possible confirmers", 100 * ms, 4, 3, 4, 400 * ms, 1200 * ms},
		{"fast default, 5 nodes", 100 * ms, 4, 3, 5, 400 * ms, 1200 * ms},
		{"pve default, 5 nodes", 200 * ms, 4, 3, 5, 800 * ms, 2400 * ms},
		{"mult 2 expects no confirmation", 100 * ms, 2, 3, 5, 200 * ms, 200 * ms},
		{"100 nodes scale by log10", 100 * ms, 4, 3, 100, 800 * ms, 2400 * ms},
		{"1 node", 100 * ms, 4, 3, 1, 400 * ms, 400 * ms},
	}
	for _, tt := range tests {
		c := DefaultConfig("n1")
		c.ProbeInterval, c.SuspicionMult, c.SuspicionMaxTimeoutMult = tt.probe, tt.mult, tt.maxMult
		lo, hi := c.SuspicionTimeouts(tt.nodes)
		if lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("%s: SuspicionTimeouts(%d) = %v, %v, want %v, %v", tt.name, tt.nodes, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}

func TestDefaultSuspicionOutlastsLossyRefutation(t *testing.T) {
	// The default must give a suspected member at least 4 probe intervals
	// to refute (docs/reliability.md: 2 let 5 % loss fence healthy nodes),
	// and a dead member of a small cluster must still be declared failed
	// within about 1.5 s, so that with fence_delay (1 s, fast profile)
	// recovery waits for the lock TTL (2.5 s), not for gossip.
	for _, c := range []Config{DefaultConfig("n1"), LocalConfig("n1")} {
		for _, nodes := range []int{3, 5, 9} {
			lo, hi := c.SuspicionTimeouts(nodes)
			if lo < 4*c.ProbeInterval {
				t.Errorf("probe %v, %d nodes: minimum suspicion timeout %v, want >= 4 probe intervals", c.ProbeInterval, nodes, lo)
			}
			if c.ProbeInterval == 100*time.Millisecond && 2*c.ProbeInterval+hi > 1500*time.Millisecond {
				t.Errorf("probe %v, %d nodes: worst detection %v, want <= 1.5s", c.ProbeInterval, nodes, 2*c.ProbeInterval+hi)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"default with key", func(c *Config) {}, ""},
		{"no key", func(c *Config) { c.Key = nil }, "haxd keygen"},
		{"insecure", func(c *Config) { c.Key = nil; c.Insecure = true }, ""},
		{"short key", func(c *Config) { c.Key = []byte("short") }, "key is 5 bytes"},
		{"no name", func(c *Config) { c.NodeName = "" }, "node_name"},
		{"bad bind", func(c *Config) { c.BindAddr = "localhost" }, "bind_addr"},
		{"bad port", func(c *Config) { c.BindPort = 70000 }, "bind_port 70000"},
		{"probe timeout too long", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "probe_timeout"},
		{"zero gossip interval", func(c *Config) { c.GossipInterval = 0 }, "gossip_interval"},
		{"zero suspicion", func(c *Config) { c.SuspicionMult = 0 }, "suspicion_mult"},
		{"zero suspicion max", func(c *Config) { c.SuspicionMaxTimeoutMult = 0 }, "suspicion_max_timeout_mult"},
		{"suspicion 1 is allowed", func(c *Config) { c.SuspicionMult = 1 }, ""},
		{"reserved tag", func(c *Config) { c.Tags = map[string]string{TagRaft: "x"} }, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig("n1")
			c.Key = bytes.Repeat([]byte{1}, 32)
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
	if err := LocalConfig("n1").Validate(); err != ErrNoKey {
		t.Errorf("LocalConfig without key: Validate() = %v, want ErrNoKey", err)
	}
}

func TestQuorate(t *testing.T) {
	on := func(n string) Member { return Member{Name: n, State: StateOnline, Status: "alive"} }
	off := func(n, st string) Member { return Member{Name: n, State: StateUnknown, Status: st} }
	tests := []struct {
		name    string
		members []Member
		leader  bool
		want    bool
	}{
		{"3 of 3", []Member{on("a"), on("b"), on("c")}, true, true},
		{"2 of 3", []Member{on("a"), on("b"), off("c", "failed")}, true, true},
		{"1 of 3", []Member{on("a"), off("b", "failed"), off("c", "failed")}, true, false},
		{"2 of 4 is no majority", []Member{on("a"), on("b"), off("c", "failed"), off("d", "failed")}, true, false},
		{"left members still count", []Member{on("a"), off("b", "left"), off("c", "left")}, true, false},
		{"no leader", []Member{on("a"), on("b"), on("c")}, false, false},
		{"alone", []Member{on("a")}, true, true},
		{"nothing known", nil, true, false},
	}
	for _, tt := range tests {
		if got := Quorate(tt.members, tt.leader); got != tt.want {
			t.Errorf("%s: Quorate = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNodeInfoReportsEveryoneOfflineWithoutQuorumButTheLocalNode(t *testing.T) {
	members := []Member{
		{Name: "a", State: StateOnline}, {Name: "b", State: StateOnline}, {Name: "c", State: StateUnknown},
	}
	tests := []struct {
		quorate bool
		want    string
	}{
		{true, "a=true b=true c=false"},
		{false, "a=true b=false c=false"},
	}
	for _, tt := range tests {
		info := NodeInfo(members, "a", tt.quorate)
		got := fmt.Sprintf("a=%v b=%v c=%v", info["a"].Online, info["b"].Online, info["c"].Online)
		if got != tt.want || len(info) != 3 {
			t.Errorf("NodeInfo(quorate=%v) = %s, want %s", tt.quorate, got, tt.want)
		}
	}
}

func TestParseLogLineMapsPrefixesToLevels(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		lib   string
		msg   string
	}{
		{"[INFO] memberlist: Suspect n2 has failed, no acks received", slog.LevelInfo, "memberlist", "Suspect n2 has failed, no acks received"},
		{"[WARN] serf: Shutdown without a Leave", slog.LevelWarn, "serf", "Shutdown without a Leave"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelError, "memberlist", "Failed to send ping"},
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1", slog.LevelDebug, "memberlist", "Stream connection from=127.0.0.1"},
		{"no prefix at all", slog.LevelInfo, "", "no prefix at all"},
	}
	for _, tt := range tests {
		level, lib, msg := parseLogLine(tt.line)
		if level != tt.level || lib != tt.lib || msg != tt.msg {
			t.Errorf("parseLogLine(%q) = %v %q %q, want %v %q %q", tt.line, level, lib, msg, tt.level, tt.lib, tt.msg)
		}
	}
}

func TestARestartedMemberRejoinsOnTheSameAddress(t *testing.T) {
	key := testKey(t)
	n1 := startMember(t, "n1", key, nil)
	n2 := startMember(t, "n2", key, nil)
	if _, err := n2.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2", func() bool { return states(n1) == "n1=alive n2=alive" })
	addr := n2.LocalAddr()
	n2.Shutdown()
	waitFor(t, 5*time.Second, "n1 sees n2 failed", func() bool { return states(n1) == "n1=alive n2=failed" })
	drain(n1)

	cfg := LocalConfig("n2")
	cfg.Key = key
	_, port, _ := strings.Cut(addr, ":")
	fmt.Sscan(port, &cfg.BindPort)
	again, err := Start(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("restart n2 on %s: %v", addr, err)
	}
	defer again.Shutdown()
	if _, err := again.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2 alive again", func() bool { return states(n1) == "n1=alive n2=alive" })
	drainUntil(t, n1, EventJoin, "n2")
}

// drainUntil reads g's events until a typ event for name arrives.
func drainUntil(t *testing.T, g *Gossip, typ EventType, name string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-g.Events():
			if ev.Type == typ && ev.Member.Name == name {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s on %s", typ, name, g.LocalName())
		}
	}
}

func TestKeyRotationAcrossTheClusterSurvivesARestart(t *testing.T) {
	oldKey, _ := GenerateKey()
	newKey, _ := GenerateKey()
	old, _ := ParseKey(oldKey)
	dir := t.TempDir()
	start := func(name string, port int) *Gossip {
		cfg := LocalConfig(name)
		cfg.Key = old
		cfg.BindPort = port
		cfg.KeyringFile = filepath.Join(dir, name+".keyring")
		g, err := Start(t.Context(), cfg, nil)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { g.Shutdown() })
		return g
	}
	n1, n2 := start("n1", 0), start("n2", 0)
	if _, err := n2.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2", func() bool { return states(n1) == "n1=alive n2=alive" })

	if err := n1.InstallKey(newKey); err != nil {
		t.Fatal(err)
	}
	if err := n1.UseKey(newKey); err != nil {
		t.Fatal(err)
	}
	if err := n1.RemoveKey(oldKey); err != nil {
		t.Fatal(err)
	}
	st, err := n2.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 || st.Keys[newKey] != 2 || st.Primary[newKey] != 2 {
		t.Errorf("keyring after rotation = %+v, want only the new key, on both members, primary", st)
	}
	if err := n1.RemoveKey("short"); err == nil {
		t.Error("RemoveKey(malformed) succeeded")
	}

	// A member with only the old key can no longer join.
	cfg := LocalConfig("stale")
	cfg.Key = old
	stale, err := Start(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Shutdown()
	if _, err := stale.Join([]string{n1.LocalAddr()}); err == nil {
		t.Error("a member with the removed key joined")
	}

	// n2 restarts with the old key in its config, but its keyring file
	// holds the new one.
	_, port, _ := strings.Cut(n2.LocalAddr(), ":")
	var p int
	fmt.Sscan(port, &p)
	n2.Shutdown()
	again := start("n2", p)
	if _, err := again.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatalf("restarted n2 could not join with its persisted keyring: %v", err)
	}
}

func TestSetTagsReachesTheOtherMembers(t *testing.T) {
	key := testKey(t)
	n1 := startMember(t, "n1", key, nil)
	n2 := startMember(t, "n2", key, nil)
	if _, err := n2.Join([]string{n1.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2", func() bool { return states(n1) == "n1=alive n2=alive" })
	if err := n2.SetTags(map[string]string{TagRaft: "10.0.0.2:8300", TagAPI: "10.0.0.2:8443"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 sees n2's new tags", func() bool {
		m, err := n1.Member("n2")
		return err == nil && m.RaftAddr == "10.0.0.2:8300" && m.APIAddr == "10.0.0.2:8443"
	})
	drainUntil(t, n1, EventUpdate, "n2")
	if _, err := n1.Member("n9"); !errors.Is(err, ErrNoMember) {
		t.Errorf("Member(n9) = %v, want ErrNoMember", err)
	}
}
