// Package unixsock binds unix stream sockets the way every haxd listener
// needs it: a stale socket file left by a dead process is replaced, a
// socket another live process serves is never stolen, and the socket is
// created with a fixed mode. It imports nothing of haxd, so that every
// package (the guard included) may use it.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrInUse is wrapped by Listen when another process serves the socket.
var ErrInUse = errors.New("another process is serving the socket")

// probeTimeout bounds the connect that tells a live socket from a stale
// one; a live server accepts (the kernel completes the connect) at once.
const probeTimeout = time.Second

// Listen creates a unix socket at path with mode (0600 when zero),
// creating its directory with dirMode (0755 when zero) if missing. A file
// at path that is not a socket is an error; a socket that accepts a
// connection belongs to a live process and is an error wrapping ErrInUse;
// a socket that refuses connections is stale and is replaced.
func Listen(path string, mode, dirMode os.FileMode) (*net.UnixListener, error) {
	if mode == 0 {
		mode = 0o600
	}
	if dirMode == 0 {
		dirMode = 0o755
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("socket %s: create its directory: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: listen: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: chmod %v: %w", path, mode, err)
	}
	return ln, nil
}

// removeStale removes a socket file at path that no process serves.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("socket %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s: %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		// EACCES, a timeout (a live server with a full backlog): do not
		// guess that the socket is stale.
		return fmt.Errorf("socket %s: cannot tell whether a process serves it: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket %s: remove the stale socket: %w", path, err)
	}
	return nil
}
