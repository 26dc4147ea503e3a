package store

import (
	"cmp"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// The autopilot keeps Config.Voters voters, promoting healthy non-voters
// and demoting the surplus. It stays hand-written rather than hashicorp's
// raft-autopilot (v0.3.0, about 2,000 lines without tests): that library
// promotes every stable healthy server (it has no voter cap; a custom
// Promoter would carry planVoters anyway), judges health from per-server
// stats the application must fetch with an RPC of its own (the store has
// none: it learns health from raft's heartbeat observations), and waits a
// stabilization time before promoting. What remains here is planVoters
// (pure, table-tested) and a loop that applies it.

// voterChange is one change the autopilot makes.
type voterChange struct {
	// Promote is true to make ID a voter, false to demote it.
	Promote bool
	ID      raft.ServerID
	Addr    raft.ServerAddress
}

// planVoters returns the next change that brings the number of voters
// towards maxVoters, or nil. It promotes the healthy non-voter with the
// smallest ID, and demotes voters other than self beyond maxVoters,
// unhealthy ones first, then the largest ID. The choice depends only on
// its arguments.
func planVoters(servers []raft.Server, self raft.ServerID, maxVoters int, unhealthy map[raft.ServerID]bool) *voterChange {
	var voters, nonvoters []raft.Server
	for _, sv := range servers {
		if sv.Suffrage == raft.Voter {
			voters = append(voters, sv)
		} else {
			nonvoters = append(nonvoters, sv)
		}
	}
	byID := func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) }
	switch {
	case len(voters) < maxVoters:
		slices.SortFunc(nonvoters, byID)
		for _, sv := range nonvoters {
			if !unhealthy[sv.ID] {
				return &voterChange{Promote: true, ID: sv.ID, Addr: sv.Address}
			}
		}
	case len(voters) > maxVoters:
		slices.SortFunc(voters, func(a, b raft.Server) int {
			if ua, ub := unhealthy[a.ID], unhealthy[b.ID]; ua != ub {
				if ua {
					return -1
				}
				return 1
			}
			return -byID(a, b)
		})
		for _, sv := range voters {
			if sv.ID != self {
				return &voterChange{Promote: false, ID: sv.ID, Addr: sv.Address}
			}
		}
	}
	return nil
}

// kickAutopilot asks the autopilot loop to run now.
func (s *Store) kickAutopilot() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// everyInterval runs fn every AutopilotInterval and whenever kick fires
// (a nil kick never does), until the store closes.
func (s *Store) everyInterval(kick <-chan struct{}, fn func()) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.AutopilotInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		fn()
	}
}

// autopilotRound keeps the number of voters at Config.Voters while this
// node is the leader.
func (s *Store) autopilotRound() {
	if s.raft.State() == raft.Leader {
		s.reconcileVoters()
	}
}

// reconcileVoters applies planVoters until there is nothing left to do.
func (s *Store) reconcileVoters() {
	for range 64 {
		f := s.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			s.logger.Warn("autopilot: read raft configuration", "err", err)
			return
		}
		s.healthMu.Lock()
		unhealthy := make(map[raft.ServerID]bool, len(s.unhealthy))
		for id, v := range s.unhealthy {
			unhealthy[id] = v
		}
		s.healthMu.Unlock()
		ch := planVoters(f.Configuration().Servers, raft.ServerID(s.cfg.NodeID), s.cfg.Voters, unhealthy)
		if ch == nil {
			return
		}
		var err error
		if ch.Promote {
			err = s.raft.AddVoter(ch.ID, ch.Addr, f.Index(), s.cfg.ApplyTimeout).Error()
		} else {
			err = s.raft.DemoteVoter(ch.ID, f.Index(), s.cfg.ApplyTimeout).Error()
		}
		if err != nil {
			s.logger.Warn("autopilot: change voter", "server", string(ch.ID), "promote", ch.Promote, "err", err)
			return
		}
		s.logger.Info("autopilot changed voter", "server", string(ch.ID), "promote", ch.Promote, "max_voters", s.cfg.Voters)
	}
}
