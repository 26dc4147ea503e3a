package placement

import (
	"fmt"
	"testing"

	"haxd/ha"
)

// Manual migrate/relocate commands (placement.md §9).
func TestCheckMove(t *testing.T) {
	tests := []struct {
		name      string
		rules     string
		setup     func(c *cluster)
		cmd       MoveCommand
		wantQueue []ha.SID
		wantLogs  []string
	}{
		{
			name:     "unknown service",
			cmd:      MoveCommand{Task: "migrate", SID: "vm:9", Target: "node2"},
			wantLogs: []string{"crm command error - no such service: migrate vm:9 node2"},
		},
		{
			name:     "target not online",
			setup:    func(c *cluster) { c.nodes["node3"] = ha.NodeMaintenance },
			cmd:      MoveCommand{Task: "migrate", SID: "vm:101", Target: "node3"},
			wantLogs: []string{"crm command error - node not online: migrate vm:101 node3"},
		},
		{
			name:     "already there",
			cmd:      MoveCommand{Task: "relocate", SID: "vm:101", Target: "node1"},
			wantLogs: []string{"ignore crm command - service already on target node: relocate vm:101 node1"},
		},
		{
			name:      "accepted without rules",
			cmd:       MoveCommand{Task: "migrate", SID: "vm:101", Target: "node3"},
			wantQueue: []ha.SID{"vm:101"},
			wantLogs:  []string{"got crm command: migrate vm:101 node3"},
		},
		{
			name:     "strict-negative7: a partner whose own move is only queued still blocks its node",
			rules:    "resource-affinity: apart\n\tresources vm:101,vm:102\n\taffinity negative\n",
			setup:    func(c *cluster) { c.services["vm:101"].Cmd = &ha.ServiceCmd{Name: "migrate", Target: "node3"} },
			cmd:      MoveCommand{Task: "migrate", SID: "vm:102", Target: "node1"},
			wantLogs: []string{"crm command 'migrate vm:102 node1' error - service 'vm:101' on node 'node1' in negative affinity with service 'vm:102'"},
		},
		{
			name:  "quirk: a partner already leaving the target does not block",
			rules: "resource-affinity: apart\n\tresources vm:101,vm:102\n\taffinity negative\n",
			setup: func(c *cluster) {
				c.services["vm:101"].State, c.services["vm:101"].Target = ha.StateMigrate, "node3"
			},
			cmd:       MoveCommand{Task: "migrate", SID: "vm:102", Target: "node1"},
			wantQueue: []ha.SID{"vm:102"},
			wantLogs:  []string{"got crm command: migrate vm:102 node1"},
		},
		{
			name:  "a stopped partner on the target blocks",
			rules: "resource-affinity: apart\n\tresources vm:101,vm:103\n\taffinity negative\n",
			setup: func(c *cluster) {
				c.services["vm:103"].State, c.services["vm:103"].Node = ha.StateStopped, "node3"
			},
			cmd:      MoveCommand{Task: "migrate", SID: "vm:101", Target: "node3"},
			wantLogs: []string{"crm command 'migrate vm:101 node3' error - service 'vm:103' on node 'node3' in negative affinity with service 'vm:101'"},
		},
		{
			name:      "positive partners follow, except one already on the target",
			rules:     "resource-affinity: together\n\tresources vm:101,vm:102,vm:103\n\taffinity positive\n",
			cmd:       MoveCommand{Task: "migrate", SID: "vm:101", Target: "node2"},
			wantQueue: []ha.SID{"vm:101", "vm:103"},
			wantLogs: []string{
				"got crm command: migrate vm:101 node2",
				"crm command 'migrate vm:101 node2' - migrate service 'vm:103' to node 'node2' (service 'vm:103' in positive affinity with service 'vm:101')",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster("node1", "node2", "node3")
			c.add("vm:101", ha.StateStarted, "node1")
			c.add("vm:102", ha.StateStarted, "node2")
			c.add("vm:103", ha.StateStarted, "node1")
			c.rules = tt.rules
			if tt.setup != nil {
				tt.setup(c)
			}
			s := c.scheduler(t)
			d := s.CheckMove(tt.cmd)
			var logs []string
			for _, l := range d.Logs {
				logs = append(logs, l.Msg)
			}
			if fmt.Sprint(d.Queue) != fmt.Sprint(tt.wantQueue) {
				t.Errorf("queue %v, want %v", d.Queue, tt.wantQueue)
			}
			if fmt.Sprint(logs) != fmt.Sprint(tt.wantLogs) {
				t.Errorf("logs\n %q\nwant\n %q", logs, tt.wantLogs)
			}
		})
	}
}

func TestRebalanceOnStart(t *testing.T) {
	c := newCluster("node1", "node2", "node3")
	c.dc.CRS.RebalanceOnStart = true
	c.fill("node1", 2)
	c.fill("node2", 1)
	c.add("vm:100", ha.StateRequestStart, "node1")
	c.add("vm:101", ha.StateRequestStart, "node3")
	s := c.scheduler(t)
	if !s.RebalanceOnStartEnabled() {
		t.Fatal("rebalance on start not enabled")
	}
	tests := []struct {
		sid  ha.SID
		want string
		log  string
	}{
		{"vm:100", "node3", "service vm:100: re-balance selected new node node3 for startup"},
		{"vm:101", "node3", "service vm:101: re-balance selected current node node3 for startup"},
	}
	for _, tt := range tests {
		n, logs := s.RebalanceOnStart(tt.sid)
		if n != tt.want || len(logs) != 1 || logs[0].Msg != tt.log {
			t.Errorf("RebalanceOnStart(%s) = %q %v, want %q %q", tt.sid, n, logs, tt.want, tt.log)
		}
	}
}
