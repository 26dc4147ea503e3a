package agent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestProbeDataDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		wantErr string
	}{
		{"writable dir", func(t *testing.T) string { return t.TempDir() }, ""},
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") }, "create"},
		{"probe path is a directory", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Mkdir(filepath.Join(d, diskProbeFile), 0o700); err != nil {
				t.Fatal(err)
			}
			return d
		}, "create"},
		{"full file system", func(t *testing.T) string {
			if os.Geteuid() != 0 {
				t.Skip("mounting a tmpfs needs root")
			}
			d := t.TempDir()
			if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size=64k"); err != nil {
				t.Skipf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(d, syscall.MNT_DETACH) })
			if err := os.WriteFile(filepath.Join(d, "fill"), make([]byte, 60<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			return d
		}, "no space left on device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			err := probeDataDir(dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("probe of a writable dir: %v", err)
				}
				if _, err := os.Stat(filepath.Join(dir, diskProbeFile)); !os.IsNotExist(err) {
					t.Errorf("the probe file was left behind: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
