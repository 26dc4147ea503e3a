package integration

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lossSettings returns the drop probability and duration of the loss test:
// HAXD_IT_LOSS (a probability, e.g. 0.05) for HAXD_IT_LOSS_FOR (default
// 30 s). The test runs only when HAXD_IT_LOSS is set: it takes 30 s of
// loss on top of a cluster start, and at 5% loss a healthy node can still
// be fenced by the gossip failure detector (1 run in 10 of the fault lab,
// docs/reliability.md, "Loss after the raft timings were sized against
// TCP"), so it is a measurement, not yet a gate.
func lossSettings(t *testing.T) (string, time.Duration) {
	t.Helper()
	p, d := "", 30*time.Second
	if os.Getenv("HAXD_IT_LOSS") == "" {
		t.Skip("!!! LOSS TEST SKIPPED: set HAXD_IT_LOSS=0.05 to run it (a measurement: see docs/safety.md)")
	}
	if v := os.Getenv("HAXD_IT_LOSS"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f >= 1 {
			t.Fatalf("HAXD_IT_LOSS %q: expected a probability in [0, 1)", v)
		}
		p = v
	}
	if v := os.Getenv("HAXD_IT_LOSS_FOR"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("HAXD_IT_LOSS_FOR %q: %v", v, err)
		}
	}
	return p, d
}

// Three agents in network namespaces; every node drops HAXD_IT_LOSS (5%)
// of the packets it receives, at random (iptables statistic: this kernel has no netem),
// for 30 s, without any partition. No node may self-fence (its guard
// kills nothing) and every service keeps its one run: a degraded network
// must not kill healthy nodes. An LRM that saw its lock validity end and
// got the lock back before its watchdog fired (a lost_agent_lock blip,
// nothing killed) is logged and counted, not failed.
func TestRandomPacketLossDoesNotSelfFence(t *testing.T) {
	if built.skip != "" {
		t.Skip(built.skip)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("!!! LOSS TEST SKIPPED: iptables is not in PATH")
	}
	prob, dur := lossSettings(t)
	nw := newNetnsNet(t, 3)
	h := startNetnsCluster(t, nw)
	h.startOnePerNode()
	before := h.currentRuns()
	mark := h.mark()
	rule := []string{"INPUT", "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"}
	for _, ns := range nw.nodes {
		args := append([]string{"netns", "exec", ns, "iptables", "-A"}, rule...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("!!! LOSS TEST SKIPPED: %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Logf("dropping %s of the packets every node receives, for %v", prob, dur)
	time.Sleep(dur)
	for _, ns := range nw.nodes {
		args := append([]string{"netns", "exec", ns, "iptables", "-D"}, rule...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	fences, blips := 0, 0
	for _, n := range h.cl.Nodes {
		for _, l := range h.guardFences(n.Name, mark) {
			fences++
			t.Errorf("%s self-fenced under %s random loss: %s", n.Name, prob, l)
		}
		for _, l := range h.grepSince(n.Name, mark, "status change active => lost_agent_lock") {
			blips++
			t.Logf("%s: lock validity ended, watchdog not fired: %s", n.Name, l)
		}
	}
	for sid, r := range before {
		h.assertSameRun(sid, r)
	}
	t.Logf("under %s loss for %v: %d guard self-fences, %d lost_agent_lock blips", prob, dur, fences, blips)
}
