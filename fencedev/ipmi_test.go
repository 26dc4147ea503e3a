package fencedev_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"haxd/fencedev"
	"haxd/internal/bmcsim"
)

// TestFenceIPMILanAgainstIPMISim drives the real fence_ipmilan of Debian's
// fence-agents through the Runner against ipmi_sim as a simulated BMC whose
// power-off kills a process standing for the node: the runner must report
// the node off only after that process is dead, and a wrong password or an
// unreachable BMC must never be reported as off.
func TestFenceIPMILanAgainstIPMISim(t *testing.T) {
	if m := bmcsim.Missing(); len(m) > 0 {
		t.Skipf("!!! %s missing (apt-get install fence-agents openipmi ipmitool): the real fence-device test did NOT run", strings.Join(m, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The process standing for the node.
	node := exec.Command("sleep", "3600")
	node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Wait() }()
	defer func() { _ = syscall.Kill(-node.Process.Pid, syscall.SIGKILL) }()
	var killedAt time.Time
	const password = "Pa55-word"
	bmc, err := bmcsim.Start(ctx, bmcsim.Options{Name: "node1", Dir: t.TempDir(), Password: password, PowerOff: func() {
		_ = syscall.Kill(-node.Process.Pid, syscall.SIGKILL)
		<-nodeDone
		killedAt = time.Now()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer bmc.Stop()
	// node2's BMC answers nowhere: nothing listens on port 9 (discard).
	text := fmt.Sprintf(`device bmc fence_ipmilan ip=127.0.0.1 username=admin password=%q lanplus cipher=3 power_wait=0
connect bmc node=node1 ipport=%d
device wrongpw fence_ipmilan ip=127.0.0.1 username=admin password=not-it lanplus cipher=3 power_wait=0
connect wrongpw node=node3 ipport=%d
connect bmc node=node2 ipport=9
`, password, bmc.Port, bmc.Port)
	cfg, err := fencedev.Parse("fence.cfg", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	o := fencedev.DefaultOptions()
	o.CallTimeout = 20 * time.Second
	o.Retries = 0
	o.StatusInterval = 100 * time.Millisecond
	o.ConfirmTimeout = 10 * time.Second
	var logs bytes.Buffer
	r, err := fencedev.NewRunner(cfg, o, nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	res := r.Fence(ctx, "node1")
	if !res.Confirmed || res.Device != "bmc" {
		t.Fatalf("Fence(node1) = %+v\nlogs:\n%s", res, logs.String())
	}
	t.Logf("fence_ipmilan confirmed node1 off in %v", time.Since(start))
	if killedAt.IsZero() {
		t.Fatal("confirmed off, but the BMC's power-off never killed the node")
	}
	if res.Time.Before(killedAt) {
		t.Errorf("confirmed off at %v, before the node was killed at %v", res.Time, killedAt)
	}
	if bmc.PowerOffs() != 1 {
		t.Errorf("BMC powered off %d times, want 1", bmc.PowerOffs())
	}
	out, err := bmc.IPMITool(ctx, "chassis", "power", "status")
	if err != nil || !strings.Contains(out, "Chassis Power is off") {
		t.Errorf("ipmitool power status after fencing = %q, %v; want off", out, err)
	}

	// The same BMC with the wrong password: never confirmed.
	res = r.Fence(ctx, "node3")
	if res.Confirmed || res.Err == nil {
		t.Fatalf("Fence(node3) with a wrong password = %+v, want a failure", res)
	}
	t.Logf("wrong password: %v", res.Err)

	// An unreachable BMC: never confirmed.
	r2cfg := o
	r2cfg.CallTimeout = 5 * time.Second
	r2, err := fencedev.NewRunner(cfg, r2cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	res = r2.Fence(ctx, "node2")
	if res.Confirmed || res.Err == nil {
		t.Fatalf("Fence(node2) with no BMC = %+v, want a failure", res)
	}
	t.Logf("unreachable: %v", res.Err)
	if strings.Contains(logs.String(), password) || strings.Contains(logs.String(), "not-it") {
		t.Errorf("a password leaked into the logs:\n%s", logs.String())
	}
}
