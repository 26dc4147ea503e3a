package sim

import (
	"testing"
	"time"

	"haxd/ha"
)

func sec2d(s int) time.Duration { return time.Duration(s) * time.Second }

// newTestSim builds a three-node cluster, all nodes online, with one env
// per node for direct calls.
func newTestSim(t *testing.T) (*sim, map[string]*env) {
	t.Helper()
	tm := ha.PVETiming()
	s := &sim{opts: Options{Timing: tm}, timing: tm, byName: map[string]*simNode{}, locks: map[string]*lock{},
		watchdogs: map[int]*watchdog{}, lrmStatus: map[string]*ha.LRMStatus{}, services: map[ha.SID]*ha.ResourceConfig{},
		faStart: map[ha.SID]int{}, faMigrate: map[ha.SID]int{}, managerStatus: &ha.ManagerStatus{},
		lockTTL: tm.LockTTL, wdTimeout: tm.WatchdogTimeout}
	envs := map[string]*env{}
	for _, name := range []string{"node1", "node2", "node3"} {
		n := &simNode{name: name, power: true, network: true, running: map[ha.SID]bool{}}
		s.nodes = append(s.nodes, n)
		s.byName[name] = n
		envs[name] = s.newEnv(n, "lrm")
	}
	return s, envs
}
