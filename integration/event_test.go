package integration

import (
	"context"
	"testing"

	"haxd/api"
)

// An idle LRM sleeps lrm_maintenance_round between its rounds; here that
// is 10 minutes, far beyond every deadline of the test. A service placed
// on an idle node can then start only if the store's watch wakes that
// node's LRM when the master's status assigns the service to it: first
// when the service is added on node1, then when it is relocated to node2,
// whose LRM has slept since it started.
func TestAssignedServiceStartsWithoutWaitingForARound(t *testing.T) {
	h := startCluster(t, "lrm_maintenance_round=10m")
	h.addService("exec:svc1", "node1")
	h.waitStarted("exec:svc1", "node1", startDeadline)
	since := h.mark()
	h.request("relocate exec:svc1 to node2", func(ctx context.Context, c *api.Client) error {
		return c.Relocate(ctx, api.MoveRequest{SID: "exec:svc1", Node: "node2"})
	})
	h.waitStarted("exec:svc1", "node2", failoverDeadline)
	if got := h.runNodes("exec:svc1"); got != "node1 node2" {
		t.Errorf("exec:svc1: want a run on node1 then one on node2, got runs on [%s]", got)
	}
	if f := h.selfFences("node2", since); len(f) > 0 {
		t.Errorf("node2 self-fenced: %v", f)
	}
}
