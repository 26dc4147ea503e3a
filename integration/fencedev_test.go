package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/internal/bmcsim"
)

// Fence devices on real agents: each node has a simulated IPMI BMC
// (ipmi_sim) whose power-off kills the node (agent, guard, services); the
// agents fence through Debian's fence_ipmilan (fence_config). A node killed
// the hard way is powered off through its BMC by the master, which then
// takes its lock on the recorded confirmation before the lock TTL ran out
// and recovers its service. The node
// powered on again waits for its lock as usual. With a wrong password
// (the BMC's password changed) nothing is confirmed and recovery waits for
// the lock TTL, saying so in the log. The invariant checker runs at the
// end (harness.finish).
func TestFenceDeviceRecoversBeforeTheLockTTL(t *testing.T) {
	if m := bmcsim.Missing(); len(m) > 0 {
		t.Skipf("!!! %s missing (apt-get install fence-agents openipmi ipmitool): the fence-device failover test did NOT run", strings.Join(m, ", "))
	}
	if built.skip != "" {
		t.Skip(built.skip)
	}
	const lockTTL = 8 * time.Second
	const password = "Fence-Me"
	var (
		mu sync.Mutex
		h  *harness
	)
	bmcs := map[string]*bmcsim.BMC{}
	cfgDir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "device ipmi fence_ipmilan ip=127.0.0.1 username=admin password=%q lanplus cipher=3 power_wait=0\n", password)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		b, err := bmcsim.Start(t.Context(), bmcsim.Options{Name: name, Dir: filepath.Join(cfgDir, "bmc-"+name), Password: password,
			PowerOff: func() {
				mu.Lock()
				hh := h
				mu.Unlock()
				if hh != nil {
					hh.cl.KillNode(hh.cl.Node(name))
				}
			}})
		if err != nil {
			t.Fatalf("start the BMC of %s: %v", name, err)
		}
		t.Cleanup(b.Stop)
		bmcs[name] = b
		fmt.Fprintf(&cfg, "connect ipmi node=%s ipport=%d\n", name, b.Port)
	}
	fenceCfg := filepath.Join(cfgDir, "fence.cfg")
	if err := os.WriteFile(fenceCfg, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	hh := startCluster(t, "fence_config="+fenceCfg, "lock_ttl="+lockTTL.String(), "fence_status_interval=100ms",
		"fence_call_timeout=10s", "fence_retries=0", "fence_confirm_timeout=5s")
	mu.Lock()
	h = hh
	mu.Unlock()
	master := h.startOnePerNode()
	others := h.others(master)
	good, bad := others[0], others[1]

	// 1. Killed hard, fenced through the BMC, recovered before the TTL.
	mark := h.mark()
	killed := time.Now()
	h.cl.KillNode(h.cl.Node(good))
	to := h.waitMoved(svc(good), good, failoverDeadline)
	took := time.Since(killed)
	t.Logf("%s killed; %s running on %s after %v (lock_ttl %v)", good, svc(good), to, took.Round(time.Millisecond), lockTTL)
	if n := bmcs[good].PowerOffs(); n != 1 {
		t.Errorf("the BMC of %s powered it off %d times, want 1", good, n)
	}
	// The leader's store logs this only when it grants the lock on the
	// recorded confirmation while the lock's TTL has not run out. (The
	// master may change under load: every node's log counts.)
	if got := grepAll(h.grepNodes(mark, "took over lock on a fence device's confirmation, before its TTL"), "lock=agent/"+good+" "); len(got) != 1 {
		t.Errorf("%d fenced takeovers of agent/%s logged, want 1: %q", len(got), good, got)
	}
	if got := grepAll(h.grepNodes(mark, "fence device confirmed the node off: recorded as proof of fencing"), "node="+good+" "); len(got) == 0 {
		t.Errorf("no recorded confirmation for %s logged", good)
	}
	if got := h.grepNodes(mark, password); len(got) != 0 {
		t.Errorf("the BMC password is in the logs: %q", got)
	}
	if got := h.runNodes(svc(good)); got != good+" "+to {
		t.Errorf("%s: want one run on %s then one on %s, got runs on [%s]", svc(good), good, to, got)
	}

	// 2. Powered on again: the node waits for its lock (held by the master)
	// and runs nothing of what it ran before.
	if err := bmcs[good].PowerOn(); err != nil {
		t.Fatal(err)
	}
	if err := h.cl.StartAgent(h.cl.Node(good)); err != nil {
		t.Fatal(err)
	}
	if err := h.cl.WaitReady(h.ctx, h.cl.Node(good)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := h.runNodes(svc(good)); got != good+" "+to {
		t.Errorf("after power-on, %s: want runs on [%s %s], got [%s]", svc(good), good, to, got)
	}

	// 3. A wrong password: no confirmation, recovery only after the TTL.
	if out, err := bmcs[bad].IPMITool(h.ctx, "user", "set", "password", "2", "Changed-99"); err != nil {
		t.Fatalf("change the BMC password of %s: %v: %s", bad, err, out)
	}
	mark = h.mark()
	killed = time.Now()
	h.cl.KillNode(h.cl.Node(bad))
	to = h.waitMoved(svc(bad), bad, failoverDeadline)
	took = time.Since(killed)
	t.Logf("%s killed with a wrong BMC password; %s running on %s after %v", bad, svc(bad), to, took.Round(time.Millisecond))
	if got := grepAll(h.grepNodes(mark, "took over expired lock"), "lock=agent/"+bad+" "); len(got) != 1 {
		t.Errorf("want one takeover of agent/%s after its TTL, got %q", bad, got)
	}
	if n := bmcs[bad].PowerOffs(); n != 0 {
		t.Errorf("the BMC of %s powered off %d times with a wrong password", bad, n)
	}
	if got := grepAll(h.grepNodes(mark, "no fence device confirmed the node off: waiting for its agent lock TTL instead"), "node="+bad+" "); len(got) == 0 {
		t.Errorf("no fallback to the TTL logged for %s", bad)
	}
	if got := h.grepNodes(mark, "took over lock on a fence device's confirmation"); len(got) != 0 {
		t.Errorf("a lock was taken on a confirmation with a wrong password: %q", got)
	}
}

// grepAll returns the lines that contain substr.
func grepAll(lines []string, substr string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// grepNodes returns the lines of every node's agent log written since
// mark that contain substr.
func (h *harness) grepNodes(since logMark, substr string) []string {
	var out []string
	for _, n := range h.cl.Nodes {
		out = append(out, h.grepSince(n.Name, since, substr)...)
	}
	return out
}
