package store

import (
	"context"
	"encoding/json"
	"maps"
	"math"

	"haxd/ha"
)

// Measured service usage for the dynamic scheduler (docs/configuration.md,
// "Scheduler usage"). Each agent measures the services running on its node
// and publishes the whole set (PublishServiceUsage) only when a figure
// changed by more than a threshold or after a maximum interval, and only
// while the scheduler mode is dynamic, so an idle cluster writes nothing
// per service.

// ServiceUsage is a service's measured usage.
type ServiceUsage struct {
	// CPU is the CPU usage in cores.
	CPU float64 `json:"cpu"`
	// Mem is the memory in use in bytes.
	Mem float64 `json:"mem"`
}

// NodeServiceUsage is one node's last published measurement.
type NodeServiceUsage struct {
	// Services holds each service running on the node.
	Services map[ha.SID]ServiceUsage `json:"services,omitempty"`
	// Index is the raft log index of the publication.
	Index uint64 `json:"index"`
}

// serviceUsageCmd is the payload of opServiceUsage.
type serviceUsageCmd struct {
	Node     string                  `json:"node"`
	Services map[ha.SID]ServiceUsage `json:"services,omitempty"`
}

// PublishServiceUsage replaces node's measured service usage.
func (s *Store) PublishServiceUsage(ctx context.Context, node string, services map[ha.SID]ServiceUsage) error {
	_, err := s.apply(ctx, opServiceUsage, 0, serviceUsageCmd{Node: node, Services: services})
	return err
}

// ServiceUsage returns every node's last published service usage.
func (s *Store) ServiceUsage() map[string]NodeServiceUsage {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	out := make(map[string]NodeServiceUsage, len(s.fsm.st.ServiceUsage))
	for n, u := range s.fsm.st.ServiceUsage {
		out[n] = NodeServiceUsage{Services: maps.Clone(u.Services), Index: u.Index}
	}
	return out
}

// MeasuredUsage returns sid's usage as last published by node.
func (s *Store) MeasuredUsage(node string, sid ha.SID) (ServiceUsage, bool) {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	u, ok := s.fsm.st.ServiceUsage[node].Services[sid]
	return u, ok
}

// applyServiceUsage is the FSM's opServiceUsage (under f.mu).
func (f *fsm) applyServiceUsage(index uint64, cmd *command) *result {
	var c serviceUsageCmd
	if err := json.Unmarshal(cmd.Data, &c); err != nil {
		return refuse(ErrInvalid, "decode %s payload", cmd.Op)
	}
	if c.Node == "" {
		return refuse(ErrInvalid, "%s: empty node", cmd.Op)
	}
	for sid, u := range c.Services {
		if _, err := ha.ParseSID(string(sid)); err != nil {
			return refuse(ErrInvalid, "%s of node %q: service %q", cmd.Op, c.Node, sid)
		}
		if !finiteNonNeg(u.CPU) || !finiteNonNeg(u.Mem) {
			return refuse(ErrInvalid, "%s of node %q: service %q: cpu %v, mem %v: expected finite values >= 0", cmd.Op, c.Node, sid, u.CPU, u.Mem)
		}
	}
	if f.st.ServiceUsage == nil {
		f.st.ServiceUsage = map[string]NodeServiceUsage{}
	}
	f.st.ServiceUsage[c.Node] = NodeServiceUsage{Services: c.Services, Index: index}
	return ok(nil)
}

func finiteNonNeg(v float64) bool { return v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
