package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/api"
	"haxd/ha"
)

// The groups workflow on real agents: a group no service uses survives the
// CRM's migration rounds, a reference to a group that does not exist is a
// 404 naming it, and a used group is migrated to its rule.
//
// Then an operator keeps changing a service's comment while its node is
// killed and the CRM recovers it elsewhere: the recovery's location change
// and every acknowledged operator change both survive (the operator's
// write no longer puts back a whole record read before the steal).
func TestGroupsWorkflowAndOperatorWritesDuringRecovery(t *testing.T) {
	h := startCluster(t)
	master := h.startOnePerNode()
	via := h.cl.Node(master).Client()
	ctx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(h.ctx, 10*time.Second) }
	call := func(what string, f func(context.Context) error) error {
		c, cancel := ctx()
		defer cancel()
		err := f(c)
		t.Logf("%s: %v", what, err)
		return err
	}
	str := func(s string) *string { return &s }

	groups := "group: g1\n\tnodes node1:2,node2\n\ngroup: spare\n\tnodes node3\n"
	if err := call("groups set", func(c context.Context) error { return via.SetGroups(c, groups) }); err != nil {
		t.Fatal(err)
	}
	// Several migration intervals pass (first attempt in a master's 3rd
	// round, then every 6 rounds): no service uses a group yet, so both
	// stay.
	time.Sleep(15 * h.timing.CRMRound)
	var text string
	_ = call("groups show", func(c context.Context) (err error) { text, err = via.Groups(c); return err })
	if text != groups {
		t.Fatalf("groups config after %v without a user: %q, want it unchanged", 15*h.timing.CRMRound, text)
	}

	err := call("set --group nonexistent", func(c context.Context) error {
		return via.SetResource(c, api.SetResourceRequest{SID: "exec:svc1", Group: str("nonexistent")})
	})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 404 || !strings.Contains(ae.Message, "group 'nonexistent'") {
		t.Fatalf("set --group nonexistent: %v, want a 404 naming the group", err)
	}
	if err := call("set --group g1", func(c context.Context) error {
		return via.SetResource(c, api.SetResourceRequest{SID: "exec:svc1", Group: str("g1")})
	}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(startDeadline, "the CRM to migrate group g1 to rule ha-group-g1", func() bool {
		st := h.status()
		if st == nil || st.Resources["exec:svc1"] == nil || st.Resources["exec:svc1"].Group != "" {
			return false
		}
		c, cancel := ctx()
		defer cancel()
		rules, err := via.Rules(c)
		return err == nil && strings.Contains(rules, "node-affinity: ha-group-g1\n") && strings.Contains(rules, "resources exec:svc1\n")
	})
	_ = call("groups show", func(c context.Context) (err error) { text, err = via.Groups(c); return err })
	if text != "group: spare\n\tnodes node3\n" {
		t.Fatalf("groups config after the migration: %q, want only the unused group spare", text)
	}
	err = call("set --group g1 after its migration", func(c context.Context) error {
		return via.SetResource(c, api.SetResourceRequest{SID: "exec:svc2", Group: str("g1")})
	})
	if !errors.As(err, &ae) || ae.Code != 404 || !strings.Contains(ae.Message, "ha-group-g1") {
		t.Fatalf("set --group g1 after its migration: %v, want a 404 naming rule ha-group-g1", err)
	}

	// Operator writes during a recovery.
	victim := h.others(master)[0]
	sid := svc(victim)
	var (
		mu       sync.Mutex
		acked    string
		possible []string
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cm := fmt.Sprintf("change %d", i)
			c, cancel := ctx()
			err := via.SetResource(c, api.SetResourceRequest{SID: sid, Comment: &cm})
			cancel()
			mu.Lock()
			if err == nil {
				acked, possible = cm, nil
			} else {
				possible = append(possible, cm) // outcome unknown or refused
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	h.cl.KillNode(h.cl.Node(victim))
	to := h.waitMoved(sid, victim, failoverDeadline)
	time.Sleep(10 * h.timing.CRMRound) // writes after the recovery too
	close(stop)
	<-done

	st := h.status()
	if st == nil {
		t.Fatal("no status")
	}
	cd := st.Resources[ha.SID(sid)]
	mu.Lock()
	defer mu.Unlock()
	if acked == "" {
		t.Fatalf("no operator write was acknowledged during the recovery")
	}
	if cd.Node != to {
		t.Errorf("%s config says node %q, but the CRM recovered it to %s: the recovery was reverted", sid, cd.Node, to)
	}
	if cd.Comment != acked && !strings.Contains(strings.Join(possible, "\n"), cd.Comment) {
		t.Errorf("%s comment %q, last acknowledged write %q: an operator write was lost", sid, cd.Comment, acked)
	}
	if cd.Requested() != ha.RequestStarted {
		t.Errorf("%s requested state %q, want started", sid, cd.Requested())
	}
	h.waitStarted(sid, to, failoverDeadline)
}
