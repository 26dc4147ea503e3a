package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNetworkAndFilters builds a two-node network and checks each fault's
// effect on the namespaces: link state and filter rules.
func TestNetworkAndFilters(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("!!! NETLAB TEST SKIPPED: %v", err)
	}
	ctx := context.Background()
	nw, err := Create(ctx, fmt.Sprintf("nt%d", os.Getpid()%100000), 2, "10.215.0")
	if errors.Is(err, ErrNoNamespaces) {
		t.Skipf("!!! NETLAB TEST SKIPPED: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := nw.Remove(); err != nil {
			t.Error(err)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), nw.Hub) {
			t.Errorf("namespace %s left after Remove", nw.Hub)
		}
	}()
	if got, want := strings.Join(nw.IPs, " "), "10.215.0.1 10.215.0.2"; got != want {
		t.Errorf("IPs = %q, want %q", got, want)
	}
	if i, err := nw.Index("node2"); err != nil || i != 1 {
		t.Errorf("Index(node2) = %d, %v", i, err)
	}
	for _, bad := range []string{"node0", "node3", "x"} {
		if _, err := nw.Index(bad); err == nil {
			t.Errorf("Index(%q): no error", bad)
		}
	}
	linkUp := func() bool {
		out, err := exec.Command("ip", "-n", nw.Hub, "-o", "link", "show", nw.Ports[0]).CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show: %v: %s", err, out)
		}
		return !strings.Contains(string(out), "state DOWN") && strings.Contains(string(out), ",UP")
	}
	if err := nw.Cut(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if linkUp() {
		t.Error("node1's bridge port is up after Cut")
	}
	if err := nw.Heal(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if !linkUp() {
		t.Error("node1's bridge port is down after Heal")
	}
	if err := nw.Loss(ctx, 0, 1.5, false); err == nil {
		t.Error("Loss with p = 1.5: no error")
	}
	if err := CheckFilters(); err != nil {
		t.Skipf("!!! FILTER PART SKIPPED: %v", err)
	}
	rules := func() string {
		out, err := exec.Command("ip", "netns", "exec", nw.Nodes[0], "iptables", "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -S: %v: %s", err, out)
		}
		return string(out)
	}
	if err := nw.DropInbound(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if r := rules(); !strings.Contains(r, "-A INPUT -s 10.215.0.2/32 -j DROP") {
		t.Errorf("after DropInbound, node1's rules lack the drop from node2:\n%s", r)
	}
	if err := nw.ClearFilters(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := nw.Loss(ctx, 0, 0.05, true); err != nil {
		t.Fatal(err)
	}
	r := rules()
	for _, want := range []string{"-A INPUT -s 10.215.0.2/32 -m statistic --mode random --probability 0.0", "-A OUTPUT -d 10.215.0.2/32 -m statistic"} {
		if !strings.Contains(r, want) {
			t.Errorf("after Loss, node1's rules lack %q:\n%s", want, r)
		}
	}
	if err := nw.ClearFilters(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if r := rules(); strings.Contains(r, "DROP") {
		t.Errorf("rules left after ClearFilters:\n%s", r)
	}
}
