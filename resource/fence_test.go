package resource

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"haxd/fence"
)

// A leaf that the self-fence killed while it was empty must still run the
// next process cloned into it: some kernels kill every process cloned into
// a cgroup after a cgroup.kill, so PrepareLeaf renews empty leaves.
func TestPrepareLeafRenewsAKilledLeaf(t *testing.T) {
	mount, err := fence.Cgroup2Mount()
	if err != nil {
		t.Skipf("!!! no cgroup v2 mount: %v", err)
	}
	parent := filepath.Join(mount, "haxd-leaf-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Skipf("!!! cgroup v2 at %s not writable: %v", mount, err)
	}
	t.Cleanup(func() { fence.RemoveCgroupTree(parent) })
	leaf := filepath.Join(parent, "exec%3Ax")
	run := func() error {
		fd, err := syscall.Open(leaf, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		cmd := exec.Command("true")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		return cmd.Run()
	}
	for i := range 2 {
		if err := PrepareLeaf(leaf); err != nil {
			t.Fatal(err)
		}
		if err := run(); err != nil {
			t.Fatalf("round %d: a process cloned into the prepared leaf: %v", i, err)
		}
		if err := fence.Kill(fence.Cgroup(leaf)); err != nil {
			t.Fatal(err)
		}
	}
}
