package fence

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNoCgroup2 is returned by Cgroup2Mount when no cgroup v2 file system is
// mounted: services are then fenced by process group only.
var ErrNoCgroup2 = errors.New("no cgroup v2 file system mounted")

// Cgroup2Mount returns the mount point of the cgroup v2 file system, read
// from /proc/self/mountinfo: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one (cgroup v1 controllers with
// cgroup2 beside them). Either way cgroup.kill works there (Linux 5.14+).
func Cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	return parseCgroup2Mount(b)
}

// parseCgroup2Mount returns the first cgroup2 mount point of a mountinfo
// file (proc(5)): "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] -
// FSTYPE SOURCE SUPEROPTIONS", with blanks in paths escaped as \040.
func parseCgroup2Mount(b []byte) (string, error) {
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		typ := strings.Fields(post)
		if len(f) < 5 || len(typ) < 1 || typ[0] != "cgroup2" {
			continue
		}
		mp := unescapeMount(f[4])
		if !filepath.IsAbs(mp) || filepath.Clean(mp) != mp {
			return "", fmt.Errorf("find the cgroup v2 mount: mountinfo line %q: mount point %q is not a clean absolute path", line, mp)
		}
		return mp, nil
	}
	return "", ErrNoCgroup2
}

// unescapeMount undoes the octal escapes (\040, \011, \012, \134) of
// mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ServiceCgroupParent is the cgroup directory an agent owns for its
// services when none is configured: <mount>/haxd-<node>-<hash>, where hash
// identifies the agent's data directory, so that several agents on one
// host (tests, demos) never share a subtree and a restarted agent finds
// its services again.
func ServiceCgroupParent(mount, node, dataDir string) string {
	h := fnv.New32a()
	h.Write([]byte(filepath.Clean(dataDir)))
	return filepath.Join(mount, fmt.Sprintf("haxd-%s-%08x", node, h.Sum32()))
}

// RemoveCgroupTree removes dir and every cgroup below it, deepest first,
// after killing whatever still runs in them. A missing dir is not an
// error.
func RemoveCgroupTree(dir string) error {
	if !isCgroup2(dir) {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup tree %s: not a cgroup v2 directory", dir)
	}
	_ = Cgroup(dir).kill()
	// The killed processes leave the tree asynchronously; a populated
	// cgroup cannot be removed.
	for range 100 {
		if !cgroupPopulated(dir) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cgroup tree %s: %w", dir, err)
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup tree %s: %w", dir, err)
	}
	return nil
}

// cgroupPopulated reads "populated" from dir/cgroup.events: whether any
// process runs in dir or below it.
func cgroupPopulated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "populated "); ok {
			return strings.TrimSpace(v) == "1"
		}
	}
	return false
}
