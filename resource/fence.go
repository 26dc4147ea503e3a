package resource

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"haxd/ha"
)

// Fence puts every process a resource agent spawns for a service under the
// node's self-fence. The agent (package agent) implements it over its
// guard handle and its own kill list; resource agents call it around every
// process they spawn, in this order:
//
//  1. Admit, before the spawn, with the cgroup the process will be cloned
//     into. An error means: spawn nothing.
//  2. the spawn (into the cgroup, with CLONE_INTO_CGROUP, where there is
//     one).
//  3. Spawned, with the new process group. An error means the self-fence
//     may have missed the process: the Fence has already killed it (and its
//     cgroup); the caller reports the start as failed.
//  4. Released, once nothing of the service runs any more (a clean stop).
//
// Because the cgroup is registered before the spawn and checked again after
// it, a process either runs in a cgroup the guard will kill, or is killed
// at once: a start racing with the end of the lock validity cannot leave a
// service behind. Methods are safe for concurrent use.
type Fence interface {
	// Admit checks that the node may start sid now (its lock is valid, its
	// guard handle is open, it has not fenced) and registers cgroup ("" for
	// none: the process group is registered by Spawned) with the guard and
	// with the agent's own kill list. cgroup must be a cgroup v2 directory
	// or a not yet existing one in a cgroup v2 directory (a systemd unit's).
	Admit(sid ha.SID, cgroup string) error
	// Spawned registers the process group pgid (when > 1) of the process
	// just spawned for sid in cgroup, and checks that the self-fence did not
	// fire since Admit. On error it has killed pgid and cgroup already.
	Spawned(sid ha.SID, pgid int, cgroup string) error
	// Released forgets the targets of sid after it stopped cleanly.
	Released(sid ha.SID, pgid int, cgroup string)
}

// ErrNotAdmitted wraps every Admit refusal: the node must not start
// anything now (fenced, lock validity over, no guard handle).
var ErrNotAdmitted = errors.New("node may not start services")

// NoFence admits every start and registers nothing: for tests and for
// running a resource agent outside a cluster.
type NoFence struct{}

// Admit returns nil.
func (NoFence) Admit(ha.SID, string) error { return nil }

// Spawned returns nil.
func (NoFence) Spawned(ha.SID, int, string) error { return nil }

// Released does nothing.
func (NoFence) Released(ha.SID, int, string) {}

// maxEscapedLen keeps file and cgroup names well below NAME_MAX (255) with
// room for suffixes.
const maxEscapedLen = 200

// EscapeSID turns a SID into a name usable for files and cgroups: ASCII
// letters, digits, '-', '_' and '.' (not first) stay, every other byte
// becomes %XX, so "exec:web" becomes "exec%3Aweb". The mapping is one to
// one.
func EscapeSID(sid ha.SID) (string, error) {
	s := string(sid)
	if s == "" {
		return "", errors.New("empty service id")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() > maxEscapedLen {
		return "", fmt.Errorf("service id %q: too long for a file name (%d bytes escaped, max %d)", s, b.Len(), maxEscapedLen)
	}
	return b.String(), nil
}

// PrepareLeaf makes dir an existing cgroup v2 directory to clone a new
// process into. An existing leaf without processes is removed and created
// again: on some kernels (seen on 6.18) a cgroup that was once killed
// through cgroup.kill kills every process later cloned into it
// (CLONE_INTO_CGROUP), and the self-fence kills leaves. A leaf with
// processes (a running daemon) is used as it is.
func PrepareLeaf(dir string) error {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) == 0 {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("renew cgroup %s: %w", dir, err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return nil
}

// cgroup2Magic is CGROUP2_SUPER_MAGIC from linux/magic.h.
const cgroup2Magic = 0x63677270

// CheckCgroupParent reports why dir cannot hold service cgroups, or nil: it
// must be a directory on a cgroup v2 file system that the agent may write.
func CheckCgroupParent(dir string) error {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("cgroup parent %s: %w", dir, err)
	}
	if uint64(sfs.Type) != cgroup2Magic {
		return fmt.Errorf("cgroup parent %s: not on a cgroup v2 file system", dir)
	}
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("cgroup parent %s: not writable: %w", dir, err)
	}
	return nil
}
