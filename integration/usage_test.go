package integration

import (
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

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
