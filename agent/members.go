package agent

import (
	"context"
	"maps"
	"slices"

	"haxd/api"
	"haxd/gossip"
)

var _ api.MemberLister = (*backend)(nil)

// Members merges the gossip members, the raft configuration and the CRM's
// node states into one list, sorted by name.
func (b *backend) Members(ctx context.Context) ([]api.Member, error) {
	_ = b.st().Barrier(ctx) // best effort, as Status
	byName := map[string]*api.Member{}
	get := func(name string) *api.Member {
		m := byName[name]
		if m == nil {
			m = &api.Member{Name: name}
			byName[name] = m
		}
		return m
	}
	for _, gm := range b.a.n.gossip.Members() {
		m := get(gm.Name)
		m.Addr, m.Gossip, m.Version = gm.Addr, gm.Status, gm.Tags[gossip.TagVersion]
	}
	if servers, err := b.st().Servers(); err == nil {
		for _, s := range servers {
			m := get(s.ID)
			m.Raft = "nonvoter"
			if s.Voter {
				m.Raft = "voter"
			}
			m.Leader = s.Leader
		}
	}
	if ms, err := b.st().ManagerStatus(); err == nil {
		for node, st := range ms.NodeStatus {
			get(node).State = st
		}
	}
	out := make([]api.Member, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return out, nil
}
