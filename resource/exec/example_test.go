//go:build linux

package exec_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"haxd/ha"
	"haxd/resource"
	"haxd/resource/exec"
)

// An agent as the real haxd agent wires it: specs from the cluster config, a
// dedicated cgroup parent, and hooks that tell the self-fencing guard which
// process groups and cgroups to kill.
func Example() {
	specs := func(_ context.Context, sid ha.SID) (exec.Spec, error) {
		return exec.ParseSpec([]byte(`{"command": "sleep", "args": ["1000"]}`)) // the stored JSON of sid
	}
	register := func(sid ha.SID, pgid int, cgroup string) {
		fmt.Println("guard: register", sid, pgid, cgroup) // fence.Client.Register
	}
	unregister := func(sid ha.SID, pgid int, cgroup string) {
		fmt.Println("guard: unregister", sid, pgid, cgroup) // fence.Client.Unregister
	}
	a, err := exec.New(exec.Config{
		StateDir:     "/run/haxd/exec",
		CgroupParent: "/sys/fs/cgroup/haxd.slice",
		Specs:        resource.SpecFunc[exec.Spec](specs),
		OnStart:      register,
		OnStop:       unregister,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// After a restart of haxd: re-register what still runs.
	if _, err := a.Adopt(context.Background()); err != nil {
		fmt.Println(err)
	}
	// The LRM then calls a.Start, a.Running, a.Stop and a.Migrate through
	// ha.Env.ResourceAgent("exec").
}
