//go:build linux

package fence

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSetRealtimeCoversEveryThreadAndLaterOnes: after SetRealtime every
// thread of the process runs SCHED_RR at the priority, and so do threads
// the runtime creates afterwards. It runs in a child process (the test
// binary again), so the test process itself keeps the normal scheduler.
func TestSetRealtimeCoversEveryThreadAndLaterOnes(t *testing.T) {
	if os.Getenv("HAXD_TEST_SETREALTIME") == "1" {
		setRealtimeChild()
		return
	}
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: 1}, 0); err != nil {
		t.Skipf("!!! REAL-TIME SCHEDULING TEST SKIPPED: this process may not use SCHED_RR (%v)", err)
	}
	// Back to normal for the test process's thread.
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSetRealtimeCoversEveryThreadAndLaterOnes$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HAXD_TEST_SETREALTIME=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL-RR") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// setRealtimeChild runs in the child: it calls SetRealtime, makes the
// runtime start new threads, and prints ALL-RR when every thread runs
// SCHED_RR at the priority.
func setRealtimeChild() {
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL: "+format+"\n", args...)
		os.Exit(1)
	}
	if err := SetRealtime(7); err != nil {
		fail("SetRealtime: %v", err)
	}
	before, err := threadPolicies()
	if err != nil {
		fail("%v", err)
	}
	// Goroutines locked to their threads, blocked at once: the runtime
	// must start new threads for them.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			<-release
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pol, err := threadPolicies()
		if err != nil {
			fail("%v", err)
		}
		if len(pol) <= len(before) {
			if time.Now().After(deadline) {
				fail("the runtime started no new thread (%d threads before, %d now)", len(before), len(pol))
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, tid := range slices.Sorted(maps.Keys(pol)) {
			if p := pol[tid]; p[0] != unix.SCHED_RR || p[1] != 7 {
				fail("thread %d: policy %d priority %d, want SCHED_RR (%d) priority 7", tid, p[0], p[1], unix.SCHED_RR)
			}
		}
		break
	}
	close(release)
	wg.Wait()
	fmt.Println("ALL-RR")
	os.Exit(0)
}

// TestSetRealtimeRejectsPriorityOutOfRange: 1-99 only.
func TestSetRealtimeRejectsPriorityOutOfRange(t *testing.T) {
	for _, p := range []int{0, -1, 100} {
		if err := SetRealtime(p); err == nil || !strings.Contains(err.Error(), "expected 1-99") {
			t.Errorf("SetRealtime(%d) = %v, want an error naming 1-99", p, err)
		}
	}
}

// threadPolicies returns each thread's scheduling policy and priority, for
// tests and the guard's start-up log.
func threadPolicies() (map[int][2]uint32, error) {
	tids, err := threads()
	if err != nil {
		return nil, err
	}
	out := map[int][2]uint32{}
	for _, tid := range tids {
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			return nil, fmt.Errorf("read the scheduling policy of thread %d: %w", tid, err)
		}
		out[tid] = [2]uint32{a.Policy, a.Priority}
	}
	return out, nil
}
