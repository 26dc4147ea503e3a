package fence

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Target is what the guard kills when it fences: exactly one of a process
// group or a cgroup v2 directory.
//
// A cgroup catches every process a service forks, even those that start
// their own session; a process group misses processes that called setsid
// or setpgid. Prefer cgroups where the agent can create them.
type Target struct {
	// PGID is a process group ID (> 1); 0 when Cgroup is set.
	PGID int
	// Cgroup is an absolute cgroup v2 directory, e.g.
	// /sys/fs/cgroup/haxd.slice/vm-100; empty when PGID is set.
	Cgroup string
}

// PGID returns the target for process group pgid.
func PGID(pgid int) Target { return Target{PGID: pgid} }

// Cgroup returns the target for the cgroup v2 directory dir.
func Cgroup(dir string) Target { return Target{Cgroup: dir} }

// String is the target as the wire protocol spells it: "pgid N" or
// "cgroup DIR".
func (t Target) String() string {
	if t.Cgroup != "" {
		return "cgroup " + t.Cgroup
	}
	return "pgid " + strconv.Itoa(t.PGID)
}

// parseTarget reads the String form.
func parseTarget(s string) (Target, error) {
	kind, arg, ok := strings.Cut(s, " ")
	if !ok {
		return Target{}, fmt.Errorf("target %q: expected \"pgid N\" or \"cgroup DIR\"", s)
	}
	switch kind {
	case "pgid":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return Target{}, fmt.Errorf("target %q: pgid is not a number", s)
		}
		return PGID(n), nil
	case "cgroup":
		return Cgroup(arg), nil
	}
	return Target{}, fmt.Errorf("target %q: unknown kind %q, expected pgid or cgroup", s, kind)
}

// checkSyntax rejects targets that cannot be meant: pgid 0, 1 or negative
// (kill(2) would signal the caller's group, init or everything), relative
// or unclean cgroup paths, and both or neither kind set.
func (t Target) checkSyntax() error {
	switch {
	case t.PGID != 0 && t.Cgroup != "":
		return fmt.Errorf("target: pgid %d and cgroup %q both set", t.PGID, t.Cgroup)
	case t.Cgroup != "":
		if !filepath.IsAbs(t.Cgroup) || filepath.Clean(t.Cgroup) != t.Cgroup || strings.ContainsAny(t.Cgroup, "\n\r") {
			return fmt.Errorf("target cgroup %q: expected a clean absolute path", t.Cgroup)
		}
	case t.PGID <= 1:
		return fmt.Errorf("target pgid %d: expected a process group ID > 1", t.PGID)
	}
	return nil
}

// cgroup2Magic is CGROUP2_SUPER_MAGIC from linux/magic.h.
const cgroup2Magic = 0x63677270

// validate checks that the target exists and that killing it cannot hit
// the guard itself.
func (t Target) validate() error {
	if err := t.checkSyntax(); err != nil {
		return err
	}
	if t.Cgroup == "" {
		if t.PGID == syscall.Getpgrp() {
			return fmt.Errorf("target pgid %d: that is the guard's own process group", t.PGID)
		}
		if err := syscall.Kill(-t.PGID, 0); errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("target pgid %d: no such process group", t.PGID)
		}
		return nil
	}
	if _, err := os.Stat(t.Cgroup); errors.Is(err, fs.ErrNotExist) && isCgroup2(filepath.Dir(t.Cgroup)) {
		// A cgroup that does not exist yet, in an existing cgroup v2
		// directory: a systemd unit's cgroup, registered before the unit
		// starts so that not even its first process is unguarded. It
		// cannot contain the guard.
		return nil
	}
	root, err := cgroupRoot(t.Cgroup)
	if err != nil {
		return err
	}
	if root == t.Cgroup {
		return fmt.Errorf("target cgroup %q: is the root of the cgroup hierarchy", t.Cgroup)
	}
	self, err := selfCgroup()
	if err != nil {
		return err
	}
	rel := strings.TrimPrefix(t.Cgroup, root)
	if self == rel || strings.HasPrefix(self, rel+"/") {
		return fmt.Errorf("target cgroup %q: contains the guard itself (cgroup %s)", t.Cgroup, self)
	}
	return nil
}

// cgroupRoot returns the mount point of the cgroup2 file system dir is in.
func cgroupRoot(dir string) (string, error) {
	if !isCgroup2(dir) {
		return "", fmt.Errorf("target cgroup %q: not a directory on a cgroup v2 file system", dir)
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir || !isCgroup2(parent) {
			return dir, nil
		}
		dir = parent
	}
}

func isCgroup2(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == cgroup2Magic
}

// selfCgroup returns the guard's cgroup v2 path ("/" or "/a/b") from
// /proc/self/cgroup.
func selfCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("read own cgroup: /proc/self/cgroup has no cgroup v2 entry")
}

// kill sends SIGKILL to every process of t. A target that no longer
// exists is not an error.
func (t Target) kill() error {
	if t.Cgroup == "" {
		if err := syscall.Kill(-t.PGID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill pgid %d: %w", t.PGID, err)
		}
		return nil
	}
	err := os.WriteFile(filepath.Join(t.Cgroup, "cgroup.kill"), []byte("1"), 0)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("kill cgroup %s: %w", t.Cgroup, err)
	}
	// No cgroup.kill (Linux < 5.14), or the cgroup is gone: kill each
	// process listed.
	pids, err := t.pids()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d of cgroup %s: %w", pid, t.Cgroup, err))
		}
	}
	return errors.Join(errs...)
}

// alive reports whether any live (non-zombie) process is still in t.
func (t Target) alive() (bool, error) {
	if t.Cgroup != "" {
		pids, err := t.pids()
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return len(pids) > 0, err
	}
	return pgidAlive(t.PGID)
}

func (t Target) pids() ([]int, error) {
	f, err := os.Open(filepath.Join(t.Cgroup, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", t.Cgroup, err)
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			pids = append(pids, pid)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", t.Cgroup, err)
	}
	return pids, nil
}

// pgidAlive scans /proc for a process of group pgid that is not a zombie
// (a killed child that its parent has not reaped yet is dead, not alive).
func pgidAlive(pgid int) (bool, error) {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false, fmt.Errorf("scan processes: %w", err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		state, pg, ok := parseStat(string(b))
		if ok && pg == pgid && state != "Z" && state != "X" {
			return true, nil
		}
	}
	return false, nil
}

// parseStat returns the state and process group from a /proc/PID/stat
// line: "pid (comm) S ppid pgrp ...", where comm may contain spaces and
// parentheses.
func parseStat(s string) (state string, pgrp int, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return "", 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[0], pg, true
}

// Kill SIGKILLs every process of t: through cgroup.kill for a cgroup (each
// listed process where cgroup.kill is missing), the whole group for a
// process group. A target that no longer exists is not an error.
func Kill(t Target) error {
	if err := t.checkSyntax(); err != nil {
		return err
	}
	return t.kill()
}
