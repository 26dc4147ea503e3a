package api

import (
	"context"
	"net/http"

	"haxd/ha"
)

// Member is one cluster member as `haxd ha node list` shows it.
type Member struct {
	// Name is the node name.
	Name string `json:"name"`
	// Addr is the member's gossip address.
	Addr string `json:"addr,omitempty"`
	// Gossip is serf's status of the member: alive, leaving, left, failed;
	// empty when gossip does not know it.
	Gossip string `json:"gossip"`
	// Raft is the member's raft role: voter, nonvoter, or empty when it is
	// not in the raft configuration.
	Raft string `json:"raft"`
	// Leader reports whether the member is the raft leader (the CRM master).
	Leader bool `json:"leader"`
	// State is the CRM's state of the node; empty when the CRM has not
	// seen it.
	State ha.NodeState `json:"state,omitempty"`
	// Version is the haxd version the member gossips.
	Version string `json:"version,omitempty"`
}

// MemberLister is implemented by backends that can list the members; the
// server serves GET /v1/members only for them.
type MemberLister interface {
	// Members returns every member known to gossip, raft or the CRM,
	// sorted by name.
	Members(ctx context.Context) ([]Member, error)
}

func (s *Server) members(ml MemberLister) http.HandlerFunc {
	return serveGet(s, func(ctx context.Context) ([]Member, error) {
		ms, err := ml.Members(ctx)
		if ms == nil {
			ms = []Member{}
		}
		return ms, err
	})
}

// Members lists the cluster members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	return ms, c.do(ctx, http.MethodGet, "/v1/members", nil, &ms)
}
