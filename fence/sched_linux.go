//go:build linux

package fence

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetRealtime puts every thread of this process under the SCHED_RR
// real-time policy at priority prio (1-99), so that the guard's timers and
// kills run before any normal (SCHED_OTHER) process however loaded the host
// is: the safety inequality's self_fence_time and clock_drift_margin cover
// the guard's reaction as measured, and that measurement must not grow with
// the run queue. Threads the Go runtime creates later inherit the policy
// from the thread that creates them, which by then has it. The guard never
// starts other programs, so no child inherits it.
//
// It fails with the first thread it could not change (EPERM without
// CAP_SYS_NICE, or in a cgroup with no real-time budget); threads changed
// before stay changed.
func SetRealtime(prio int) error {
	if prio < 1 || prio > 99 {
		return fmt.Errorf("real-time priority %d: expected 1-99", prio)
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: uint32(prio)}
	// A thread created while the list is read is created by a thread of
	// the list, changed or not: repeat until a pass finds every thread
	// changed.
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tids, err := threads()
		if err != nil {
			return err
		}
		fresh := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("set SCHED_RR priority %d on thread %d: %w", prio, tid, err)
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
	return errors.New("set SCHED_RR: the process kept creating threads")
}

// threads lists the thread IDs of this process, sorted.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	var tids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	slices.Sort(tids)
	return tids, nil
}
