//go:build linux

package exec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what the agent needs from /proc/<pid>/stat.
type procStat struct {
	pid     int
	state   byte   // R, S, D, Z, T, ...
	pgrp    int    // process group id
	session int    // session id
	start   uint64 // start time in clock ticks after boot (field 22)
}

// dead reports whether the process has exited and only waits to be reaped.
func (p procStat) dead() bool { return p.state == 'Z' || p.state == 'X' || p.state == 'x' }

// readProcStat reads /proc/<pid>/stat under procRoot. It returns an error
// wrapping fs.ErrNotExist when no such process exists.
func readProcStat(procRoot string, pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return procStat{}, fmt.Errorf("read stat of pid %d: %w", pid, fs.ErrNotExist)
		}
		return procStat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseProcStat(pid, b)
}

// parseProcStat parses the content of /proc/<pid>/stat. The command name
// (field 2) is in parentheses and may itself contain blanks and
// parentheses, so the fields are counted from the last ')'.
func parseProcStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse stat of pid %d: no ')' after the command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse stat of pid %d: %d fields after the command name, want at least 20", pid, len(f))
	}
	pgrp, err1 := strconv.Atoi(f[5-3])
	sess, err2 := strconv.Atoi(f[6-3])
	start, err3 := strconv.ParseUint(f[22-3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("parse stat of pid %d: %w", pid, err)
	}
	return procStat{pid: pid, state: f[0][0], pgrp: pgrp, session: sess, start: start}, nil
}

// allProcs returns the stat of every process under procRoot, by pid order.
// Processes that vanish while being read are skipped.
func allProcs(procRoot string) ([]procStat, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, err := readProcStat(procRoot, pid)
		if err != nil {
			continue // exited meanwhile, or unreadable: not a member we can act on
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b procStat) int { return a.pid - b.pid })
	return out, nil
}

// readBootID returns the kernel's boot id, which changes on every boot, so
// that a pid recorded before a reboot is never mistaken for a live one.
func readBootID(procRoot string) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys", "kernel", "random", "boot_id"))
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// cgroupPids returns the pids listed in dir/cgroup.procs; a missing cgroup
// has none.
func cgroupPids(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			return nil, nil
		}
		return nil, fmt.Errorf("read cgroup %s: %w", dir, err)
	}
	var pids []int
	for _, l := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(l)
		if err != nil {
			return nil, fmt.Errorf("read cgroup %s: bad pid %q in cgroup.procs", dir, l)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids, nil
}
