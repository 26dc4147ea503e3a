// Package netlab builds the small networks that real-process tests and the
// fault lab run haxd agents in: one network namespace per node, each with
// its own address and a veth to a bridge in a hub namespace. It breaks them
// the ways a real network breaks: a node cut off (its bridge port down, so
// what it sends is dropped silently and its requests hang instead of
// failing), inbound traffic dropped only (an asymmetric partition), random
// packet loss (iptables' statistic match) and, where the kernel has netem,
// delay.
//
// Everything needs root, iproute2 and, for the filters, iptables; Check
// and CheckFilters say what is missing.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Net is a hub namespace holding a bridge and one namespace per node with
// a veth to it.
type Net struct {
	// Hub is the namespace holding the bridge.
	Hub string
	// Nodes holds node i+1's namespace.
	Nodes []string
	// Ports holds node i+1's veth end on the bridge (in Hub).
	Ports []string
	// Peers holds node i+1's veth end in its own namespace.
	Peers []string
	// IPs holds node i+1's address.
	IPs []string
}

// ErrNoNamespaces is wrapped by Create's error when not even the first
// namespace could be created: this machine cannot run namespace tests
// (other errors are failures).
var ErrNoNamespaces = errors.New("netlab: network namespaces cannot be created here")

// Check returns an error saying why network namespaces cannot be used
// here: not root, or no ip tool.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("creating network namespaces needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip tool (iproute2) is not in PATH")
	}
	return nil
}

// CheckFilters returns an error saying why packet filters (asymmetric
// partitions, packet loss) cannot be installed here.
func CheckFilters() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("iptables is not in PATH (Debian package iptables)")
	}
	return nil
}

// Create makes the namespaces and links for n nodes. Names start with tag
// (at most 8 bytes, so that interface names stay within 15 bytes); node
// i+1 gets the address prefix.(i+1) on a /24 (prefix like "10.213.0").
// Namespaces of the same names left over from a killed earlier process are
// removed first. On error, everything made so far is removed.
func Create(ctx context.Context, tag string, n int, prefix string) (*Net, error) {
	if len(tag) > 8 {
		return nil, fmt.Errorf("netlab: tag %q longer than 8 bytes", tag)
	}
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netlab: %d nodes: want 1..250", n)
	}
	nw := &Net{Hub: tag + "hub"}
	_ = exec.CommandContext(ctx, "ip", "netns", "del", nw.Hub).Run()
	for i := range n {
		_ = exec.CommandContext(ctx, "ip", "netns", "del", fmt.Sprintf("%sn%d", tag, i+1)).Run()
	}
	if err := ip(ctx, "netns", "add", nw.Hub); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoNamespaces, err)
	}
	fail := func(err error) (*Net, error) {
		_ = nw.Remove()
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", nw.Hub, "link", "set", "lo", "up"},
		{"-n", nw.Hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nw.Hub, "link", "set", "br0", "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			return fail(err)
		}
	}
	for i := range n {
		ns, port, peer := fmt.Sprintf("%sn%d", tag, i+1), fmt.Sprintf("%sp%d", tag, i+1), fmt.Sprintf("%se%d", tag, i+1)
		addr := fmt.Sprintf("%s.%d", prefix, i+1)
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return fail(err)
		}
		nw.Nodes = append(nw.Nodes, ns)
		nw.Ports = append(nw.Ports, port)
		nw.Peers = append(nw.Peers, peer)
		nw.IPs = append(nw.IPs, addr)
		for _, args := range [][]string{
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", nw.Hub, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", ns},
			{"-n", nw.Hub, "link", "set", port, "master", "br0", "up"},
			{"-n", ns, "addr", "add", addr + "/24", "dev", peer},
			{"-n", ns, "link", "set", peer, "up"},
		} {
			if err := ip(ctx, args...); err != nil {
				return fail(err)
			}
		}
	}
	return nw, nil
}

// Remove deletes every namespace; the veths and filters go with them. It
// returns every failure, joined.
func (nw *Net) Remove() error {
	var errs []error
	for _, ns := range append(slices.Clone(nw.Nodes), nw.Hub) {
		// Not the caller's context: removal must run on every exit path,
		// a cancelled one included.
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", ns, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// Index returns the index of a node name ("node2" -> 1).
func (nw *Net) Index(node string) (int, error) {
	var i int
	if _, err := fmt.Sscanf(node, "node%d", &i); err != nil || i < 1 || i > len(nw.Nodes) {
		return 0, fmt.Errorf("netlab: no network namespace for node %q", node)
	}
	return i - 1, nil
}

// Cut takes node i's bridge port down: the node is isolated, and what it
// sends is dropped silently.
func (nw *Net) Cut(ctx context.Context, i int) error {
	return ip(ctx, "-n", nw.Hub, "link", "set", nw.Ports[i], "down")
}

// Heal brings node i's bridge port up again.
func (nw *Net) Heal(ctx context.Context, i int) error {
	return ip(ctx, "-n", nw.Hub, "link", "set", nw.Ports[i], "up")
}

// DropInbound makes node i drop every packet from the other nodes: it
// still sends, but hears nothing (an asymmetric partition).
func (nw *Net) DropInbound(ctx context.Context, i int) error {
	for j, other := range nw.IPs {
		if j == i {
			continue
		}
		if err := nw.iptables(ctx, i, "-A", "INPUT", "-s", other, "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Loss makes node i drop packets from the other nodes at random with
// probability p; with outbound also packets to them. Giving every node
// inbound loss makes every link lossy in both directions, each packet
// facing one draw.
func (nw *Net) Loss(ctx context.Context, i int, p float64, outbound bool) error {
	if p <= 0 || p >= 1 {
		return fmt.Errorf("netlab: loss probability %v: want 0 < p < 1", p)
	}
	prob := strconv.FormatFloat(p, 'f', -1, 64)
	for j, other := range nw.IPs {
		if j == i {
			continue
		}
		rules := [][]string{{"-A", "INPUT", "-s", other}}
		if outbound {
			rules = append(rules, []string{"-A", "OUTPUT", "-d", other})
		}
		for _, r := range rules {
			args := append(r, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP")
			if err := nw.iptables(ctx, i, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// ClearFilters removes every filter rule of node i.
func (nw *Net) ClearFilters(ctx context.Context, i int) error {
	return nw.iptables(ctx, i, "-F")
}

// NetemError returns why delay cannot be added here (nil: it can): it
// tries a netem qdisc on node 1's veth and removes it again.
func (nw *Net) NetemError(ctx context.Context) error {
	if err := nw.Delay(ctx, 0, time.Millisecond); err != nil {
		return err
	}
	return nw.ClearDelay(ctx, 0)
}

// Delay adds d to every packet node i sends (tc netem).
func (nw *Net) Delay(ctx context.Context, i int, d time.Duration) error {
	return run(ctx, "ip", "netns", "exec", nw.Nodes[i], "tc", "qdisc", "replace", "dev", nw.Peers[i], "root", "netem",
		"delay", fmt.Sprintf("%dus", d.Microseconds()))
}

// ClearDelay removes node i's netem qdisc.
func (nw *Net) ClearDelay(ctx context.Context, i int) error {
	return run(ctx, "ip", "netns", "exec", nw.Nodes[i], "tc", "qdisc", "del", "dev", nw.Peers[i], "root")
}

func (nw *Net) iptables(ctx context.Context, i int, args ...string) error {
	return run(ctx, "ip", append([]string{"netns", "exec", nw.Nodes[i], "iptables", "-w"}, args...)...)
}

func ip(ctx context.Context, args ...string) error { return run(ctx, "ip", args...) }

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
