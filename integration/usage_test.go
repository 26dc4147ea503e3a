package integration

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"haxd/api"
	"haxd/internal/cluster"
)

// TestStaticSchedulerPlacesByMemory: real agents gossip their memory (here
// set per node with node_memory_mb) and the static scheduler uses it with
// the services' declared size: both services of a killed node are
// recovered on the survivor with more free memory, where the basic
// scheduler (counting services) would split them.
func TestStaticSchedulerPlacesByMemory(t *testing.T) {
	mem := map[string]string{"node1": "4096", "node2": "16384", "node3": "65536"}
	h := startClusterWith(t, func(o *cluster.Options) {
		o.NodeExtra = map[string][]string{}
		for n, mb := range mem {
			o.NodeExtra[n] = []string{"node_memory_mb=" + mb}
		}
	}, "node_cpus=4", "usage_interval=500ms")
	// A first service elects a master (no size: the static scheduler counts
	// it for nothing).
	h.addService("exec:probe", "node1")
	h.waitStarted("exec:probe", "node1", startDeadline)
	master := h.master()
	victim := h.others(master)[0]
	survivors := h.others(victim)
	big := survivors[0]
	if atoi(mem[survivors[1]]) > atoi(mem[big]) {
		big = survivors[1]
	}

	crs := "static"
	via := h.cl.Node(master)
	if err := via.Client().SetDatacenter(h.ctx, api.DatacenterRequest{CRSMode: &crs}); err != nil {
		t.Fatalf("set crs-mode static: %v", err)
	}
	for _, sid := range []string{"exec:big1", "exec:big2"} {
		req := h.cl.DemoServiceRequest(sid, victim)
		req.MemoryMB = 2048
		if err := via.Client().AddResource(h.ctx, req); err != nil {
			t.Fatalf("add %s: %v", sid, err)
		}
	}
	for _, sid := range []string{"exec:big1", "exec:big2"} {
		h.waitStarted(sid, victim, startDeadline)
	}

	h.cl.KillNode(h.cl.Node(victim))
	for _, sid := range []string{"exec:big1", "exec:big2"} {
		if to := h.waitMoved(sid, victim, failoverDeadline); to != big {
			t.Errorf("%s recovered on %s (%s MiB), want %s (%s MiB): the static scheduler did not place by memory",
				sid, to, mem[to], big, mem[big])
		}
	}
	if log := tail(h.cl.Node(master).Log, 400); strings.Contains(log, "fallback to 'basic'") || strings.Contains(log, "no maxcpu or maxmem") {
		t.Errorf("the CRM fell back to the basic scheduler:\n%s", log)
	}
}

// TestDynamicSchedulerPlacesByMeasuredCPU: real agents measure their
// services' cgroup leaves (node_usage_source=services, since the test's
// agents share one kernel and so one /proc). One survivor runs a service
// that burns CPU, the other two idle services. When the third node is
// killed, the dynamic scheduler recovers its service on the idle
// survivor, where the basic scheduler (counting services) would choose
// the busy one, which runs fewer services, and equal figures (one /proc
// for all, or none measured) would choose it too, as it sorts first.
func TestDynamicSchedulerPlacesByMeasuredCPU(t *testing.T) {
	h := startClusterWith(t, func(*cluster.Options) {}, "node_cpus=4", "node_memory_mb=16384",
		"usage_interval=500ms", "node_usage_source=services", "usage_cpu_threshold_millicores=50")
	h.addService("exec:probe", "node1")
	h.waitStarted("exec:probe", "node1", startDeadline)
	master := h.master()
	victim := h.others(master)[0]
	// The busy node sorts first: where the figures tie (the same /proc on
	// every node, or no measurement), the first node would win.
	survivors := h.others(victim)
	busy, idle := survivors[0], survivors[1]
	via := h.cl.Node(master)

	crs := "dynamic"
	if err := via.Client().SetDatacenter(h.ctx, api.DatacenterRequest{CRSMode: &crs}); err != nil {
		t.Fatalf("set crs-mode dynamic: %v", err)
	}
	// A burner: three spinning shells, so that it gets a measurable share
	// of the CPU even on a loaded machine (for the test's few seconds).
	spec, _ := json.Marshal(map[string]any{"command": "/bin/sh", "args": []string{"-c",
		"for i in 1 2 3; do (while :; do :; done) & done; wait"}, "stop_timeout": "5s"})
	mark := h.mark()
	if err := via.Client().AddResource(h.ctx, api.AddResourceRequest{SID: "exec:burn", Node: busy, Spec: spec}); err != nil {
		t.Fatalf("add exec:burn: %v", err)
	}
	h.addService(svc(victim), victim)
	// More services on the idle node than on the busy one (the probe may
	// be on either): the basic scheduler would choose the busy node.
	idles := []string{"exec:idle1", "exec:idle2", "exec:idle3"}
	for _, sid := range idles {
		h.addService(sid, idle)
	}
	h.waitStarted(svc(victim), victim, startDeadline)
	for _, sid := range idles {
		h.waitStarted(sid, idle, startDeadline)
	}
	// The busy node publishes the burner's measured CPU (and gossips it as
	// its load in the same sample), and the victim its service's usage
	// (declaring no size, it has no stats until measured).
	published := func(node, sid string, min float64) func() bool {
		cores := regexp.MustCompile(regexp.QuoteMeta(sid) + `=([0-9.]+)cores`)
		return func() bool {
			for _, l := range h.grepSince(node, mark, "published the services' measured usage") {
				if m := cores.FindStringSubmatch(l); m != nil {
					if v, err := strconv.ParseFloat(m[1], 64); err == nil && v >= min {
						return true
					}
				}
			}
			return false
		}
	}
	h.waitFor(startDeadline, "the burner's measured CPU published by "+busy, published(busy, "exec:burn", 0.1))
	h.waitFor(startDeadline, svc(victim)+"'s usage published by "+victim, published(victim, svc(victim), 0))

	h.cl.KillNode(h.cl.Node(victim))
	if to := h.waitMoved(svc(victim), victim, failoverDeadline); to != idle {
		t.Errorf("%s recovered on %s, want %s: the dynamic scheduler did not avoid the node running exec:burn (%s)", svc(victim), to, idle, busy)
	}
	for _, n := range []string{master, idle, busy} {
		if log := tail(h.cl.Node(n).Log, 400); strings.Contains(log, "fallback to 'basic'") {
			t.Errorf("%s's CRM fell back to the basic scheduler:\n%s", n, log)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
