package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string // "" for success
		inUse   bool
	}{
		{name: "fresh", prepare: func(*testing.T, string) {}},
		{name: "missing directory", prepare: func(t *testing.T, path string) {
			if err := os.Remove(filepath.Dir(path)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "stale socket", prepare: func(t *testing.T, path string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("the stale socket file is gone: %v", err)
			}
		}},
		{name: "live socket", prepare: func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, want: "another process is serving the socket", inUse: true},
		{name: "regular file", prepare: func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: "exists and is not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "s.sock")
			tc.prepare(t, path)
			l, err := Listen(path, 0o640, 0o700)
			if tc.want != "" {
				if err == nil {
					l.Close()
					t.Fatalf("Listen succeeded, want an error containing %q", tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Listen: %v, want an error naming %s and containing %q", err, path, tc.want)
				}
				if errors.Is(err, ErrInUse) != tc.inUse {
					t.Fatalf("errors.Is(%v, ErrInUse) = %v, want %v", err, !tc.inUse, tc.inUse)
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			defer l.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("socket mode %v, want 0640", fi.Mode().Perm())
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dial the new socket: %v", err)
			}
			c.Close()
		})
	}
}
