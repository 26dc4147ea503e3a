package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"haxd/ha"
	"haxd/internal/cluster"
	"haxd/internal/invariant"
)

// A node whose data dir is full steps out cleanly: it stops renewing its
// agent lock, its LRM loses the lock (its guard fences its services), the
// master recovers them on other nodes, no other node self-fences, and it
// says why in its log. A follower and the raft leader, each in a fresh
// cluster; the leader also hands its leadership over.
//
// Every node's data dir is a small tmpfs, so that filling one is quick and
// touches nothing else.
func TestFullDataDirStepsOut(t *testing.T) {
	if built.skip != "" {
		t.Skip(built.skip)
	}
	if os.Geteuid() != 0 {
		t.Skip("!!! FULL-DISK TEST SKIPPED: mounting a tmpfs needs root")
	}
	for _, tc := range []struct {
		name   string
		leader bool
	}{{"follower", false}, {"leader", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := startTmpfsCluster(t)
			master := h.startOnePerNode()
			victim := h.others(master)[0]
			if tc.leader {
				victim = h.agreedMaster()
			}
			mark := h.mark()
			before := h.currentRuns()
			fill := filepath.Join(h.cl.Node(victim).DataDir, "fill")
			fillUp(t, fill)
			full := time.Now()
			to := h.waitMovedVia(h.others(victim), svc(victim), victim)
			moved := time.Since(full)
			if l := h.grepSince(victim, mark, "data dir not writable: stepping out"); len(l) == 0 {
				t.Errorf("%s did not log that it steps out because its data dir is not writable", victim)
			}
			// Its guard's log is on the full disk; the LRM's line is not.
			// The full node's LRM round can lag (its own writes fail), so
			// the line may come after its service already moved.
			h.waitFor(failoverDeadline, "the LRM of "+victim+", whose disk is full, to log losing its agent lock", func() bool {
				return len(h.grepSince(victim, mark, "=> lost_agent_lock")) > 0
			})
			if l := h.grepSince(victim, mark, "not standing for raft election"); len(l) == 0 {
				t.Errorf("%s, whose disk is full, did not log that it stopped standing for raft election", victim)
			}
			if tc.leader {
				if _, _, ok := h.leaderSince(h.others(victim), mark); !ok {
					t.Errorf("no other node became raft leader after %s's data dir filled up", victim)
				}
			}
			// While full it never leads again (it would fail its first
			// append and make everyone wait for another election).
			if l := h.grepSince(victim, mark, `msg="became raft leader"`); len(l) > 0 {
				t.Errorf("%s led raft again while its data dir was full: %s", victim, l[0])
			}
			h.assertHealthy(tc.leader, h.others(victim), mark, before)
			t.Logf("%s's data dir full; %s ran on %s %.2fs later (lock TTL %v)", victim, svc(victim), to, moved.Seconds(), h.timing.LockTTL)
			// Free the disk; nobody else may suffer while it comes back.
			if err := os.Remove(fill); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * h.timing.LRMRound)
			h.assertHealthy(tc.leader, h.others(victim), mark, before)
			back := h.grepSince(victim, mark, "data dir writable again and the store in step")
			t.Logf("after the disk was freed, %s stood again: %v", victim, len(back) > 0)
		})
	}
}

// assertHealthy checks that no node of nodes self-fenced since mark and
// that their services run on as before. When the leader's disk filled up,
// a healthy LRM may lose its lock for a moment without its guard fencing:
// the full leader stands down at its first failed write, and the healthy
// nodes elect a leader among themselves within about a raft heartbeat
// timeout, as after a leader crash, which a loaded machine can stretch
// past the renewal budget; that near miss is logged, a guard fence fails.
func (h *harness) assertHealthy(leaderCase bool, nodes []string, mark logMark, before map[string]invariant.Run) {
	h.t.Helper()
	for _, n := range nodes {
		if !leaderCase {
			h.assertNoSelfFence("follower's disk full", n, mark)
		} else {
			for _, l := range h.guardFences(n, mark) {
				h.t.Errorf("leader's disk full: the guard of healthy %s fenced: %s", n, l)
			}
			for _, l := range h.grepSince(n, mark, "=> lost_agent_lock") {
				h.t.Logf("near miss: healthy %s's LRM lost its lock for a moment: %s", n, l)
			}
		}
		h.assertSameRun(svc(n), before[svc(n)])
	}
}

// startTmpfsCluster starts three agents whose data dirs are 64 MiB tmpfs
// mounts, unmounted after the test.
func startTmpfsCluster(t *testing.T) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "haxd-it-diskfull-")
	if err != nil {
		t.Fatalf("create cluster dir: %v", err)
	}
	// Runs last, after the unmounts: finish removes the dir's contents
	// while the tmpfs are still mounted, which leaves the mount points.
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("HAXD_IT_KEEP") == "" {
			os.RemoveAll(dir)
		}
	})
	for i := 1; i <= 3; i++ {
		d := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
			t.Skipf("!!! FULL-DISK TEST SKIPPED: mount a tmpfs on %s: %v", d, err)
		}
		// Registered before the cluster's end, so it runs after it.
		t.Cleanup(func() {
			if err := syscall.Unmount(d, 0); err != nil {
				_ = syscall.Unmount(d, syscall.MNT_DETACH)
			}
		})
	}
	h := &harness{t: t, ctx: context.Background(), dir: dir, timing: ha.FastTiming()}
	cl, err := cluster.Start(h.ctx, cluster.Options{Binary: built.bin, Dir: dir, Nodes: 3, Timing: "fast"})
	if err != nil {
		t.Fatalf("start cluster: %v (dir kept: %s)", err, dir)
	}
	h.cl = cl
	t.Cleanup(h.finish)
	return h
}

// fillUp writes path until its file system is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
}
