package main

import (
	"strings"
	"testing"
)

// TestRunRefusesBadInput: a bad command line or a missing service or
// node name is a clear error before any heartbeat file is created.
func TestRunRefusesBadInput(t *testing.T) {
	tests := []struct {
		name, sid, node string
		args            []string
		err             string
	}{
		{"no subcommand", "exec:a", "node1", nil, "usage: heartbeat demo-service"},
		{"wrong subcommand", "exec:a", "node1", []string{"serve"}, "usage: heartbeat demo-service"},
		{"no dir", "exec:a", "node1", []string{"demo-service"}, "--dir is required"},
		{"zero interval", "exec:a", "node1", []string{"demo-service", "--dir", "x", "--interval", "0s"}, "--interval 0s"},
		{"no sid", "", "node1", []string{"demo-service", "--dir", "x"}, "HAXD_SID"},
		{"no node", "exec:a", "", []string{"demo-service", "--dir", "x"}, "HAXD_NODE"},
		{"bad flag", "exec:a", "node1", []string{"demo-service", "--bogus"}, "bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HAXD_SID", tc.sid)
			t.Setenv("HAXD_NODE", tc.node)
			err := run(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.err)
			}
		})
	}
}
