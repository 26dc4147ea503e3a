package fence

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCgroup2Mount(t *testing.T) {
	hybrid := `24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
33 24 0:27 / /sys/fs/cgroup rw,nosuid shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:29 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
`
	unified := `30 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"hybrid", hybrid, "/sys/fs/cgroup/unified", nil},
		{"unified", unified, "/sys/fs/cgroup", nil},
		{"optional fields", "40 30 0:40 / /mnt/my\\040cg rw shared:1 master:2 - cgroup2 none rw\n", "/mnt/my cg", nil},
		{"none", "30 1 254:0 / / rw - ext4 /dev/vda rw\n", "", ErrNoCgroup2},
		{"cgroup v1 only", "35 33 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", "", ErrNoCgroup2},
		{"empty", "", "", ErrNoCgroup2},
	}
	for _, tt := range tests {
		got, err := parseCgroup2Mount([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%s: parseCgroup2Mount = %q, %v; want %q, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	if _, err := parseCgroup2Mount([]byte("1 2 0:1 / relative rw - cgroup2 x rw\n")); err == nil || !strings.Contains(err.Error(), "not a clean absolute path") {
		t.Errorf("relative mount point: err = %v, want a refusal", err)
	}
}

func FuzzParseCgroup2Mount(f *testing.F) {
	f.Add([]byte("34 33 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"))
	f.Add([]byte("40 30 0:40 / /mnt/my\\040cg rw shared:1 - cgroup2 none rw\n"))
	f.Add([]byte(" - cgroup2\n\\\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseCgroup2Mount(b)
		if err == nil && (!filepath.IsAbs(got) || filepath.Clean(got) != got) {
			t.Errorf("parseCgroup2Mount(%q) = %q without error: not a clean absolute path", b, got)
		}
	})
}

func TestServiceCgroupParentIsPerAgent(t *testing.T) {
	a := ServiceCgroupParent("/sys/fs/cgroup", "node1", "/var/lib/haxd")
	b := ServiceCgroupParent("/sys/fs/cgroup", "node1", "/tmp/other/node1")
	if a == b || filepath.Dir(a) != "/sys/fs/cgroup" || !strings.HasPrefix(filepath.Base(a), "haxd-node1-") {
		t.Errorf("ServiceCgroupParent = %q and %q: want distinct haxd-node1-* directories on the mount", a, b)
	}
	if a != ServiceCgroupParent("/sys/fs/cgroup", "node1", "/var/lib/haxd/") {
		t.Error("the same data dir gave another parent: a restarted agent would lose its services")
	}
}
