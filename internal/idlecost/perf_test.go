package main

import (
	"math"
	"testing"
)

func TestClassify(t *testing.T) {
	script := `
	  4d2a10 runtime.usleep.abi0
	  44a1b2 runtime.sysmon

	  ffffffff finish_task_switch.isra.0
	  4d2a10 runtime.futex.abi0
	  4b0000 haxd/resource/exec.allProcs
	  4b0001 haxd/resource/exec.(*Agent).probeMode
	  4b0002 haxd/lrm.(*action).run

	  ffffffff finish_task_switch.isra.0
	  4d2a10 runtime.futex.abi0
	  4b0003 runtime.schedule

	  4c0000 crypto/tls.(*Conn).Write
	  4c0001 github.com/hashicorp/raft.(*Raft).heartbeat
`
	got := classify(script)
	want := map[string]float64{
		"Go sysmon thread":                           0.25,
		"exec backend (resource/exec)":               0.25, // before lrm: the backend is the more specific
		"Go scheduler (park, wake, timers, netpoll)": 0.25,
		"raft heartbeats (leader side)":              0.25,
	}
	if len(got) != len(want) {
		t.Fatalf("classify = %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("share of %q = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if got := classify(""); len(got) != 0 {
		t.Errorf("classify of no samples = %v, want none", got)
	}
}
