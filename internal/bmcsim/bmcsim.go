// Package bmcsim runs simulated IPMI BMCs for tests: OpenIPMI's `ipmi_sim`
// (Debian package openipmi) on a loopback UDP port, speaking IPMI 2.0
// (lanplus) with a user and password, so that the real `fence_ipmilan` of
// Debian's fence-agents can power a "node" off through it.
//
// The BMC's chassis power is handled by ipmi_sim's `chassis_control`
// program, a shell script this package writes: `set power 0` runs the
// power-off hook and only then records the power as off, so a status query
// answers "off" only after the hook has returned; `get power` reports the
// recorded state. ipmi_sim's `startcmd` hook cannot serve here: Debian 12's
// openipmi 2.0.33 starts the startcmd process (startnow true) and reports
// the power on while it lives, but answers every chassis control request
// of a BMC without a `chassis_control` program (`ipmitool chassis power
// off|on|cycle|reset`, and the raw command 0x00 0x02) with completion code
// 0xcc, "Invalid data field in request", so fence_ipmilan's off never
// reaches the startcmd process (poweroff_wait 1, kill_wait 5 tried).
//
// The power-off hook is a Go function: the script creates a request file
// and waits for the done file; a goroutine polling every 5 ms runs the hook
// (which must kill the node's processes) and then creates the done file.
//
// ipmitool's automatic cipher-suite discovery does not work against
// ipmi_sim (each call then takes ~14 s): devices must set `cipher=3`.
package bmcsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Missing returns the programs a simulated BMC and its fencing need
// (ipmi_sim, ipmitool, fence_ipmilan) that are found neither in PATH nor
// in /usr/sbin.
func Missing() []string {
	var out []string
	for _, t := range []string{"ipmi_sim", "ipmitool", "fence_ipmilan"} {
		if _, err := exec.LookPath(t); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/usr/sbin", t)); err == nil {
			continue
		}
		out = append(out, t)
	}
	return out
}

// BMC is one running ipmi_sim.
type BMC struct {
	// Name is the BMC's (node's) name.
	Name string
	// Port is its UDP port on 127.0.0.1.
	Port int
	// User and Password are the admin credentials.
	User, Password string

	dir     string
	cmd     *exec.Cmd
	done    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	offs    int
	onHook  func()
	offHook func()
}

// Options configure a BMC.
type Options struct {
	// Name names the BMC and its node.
	Name string
	// Dir is a directory for the BMC's files (config, state, log).
	Dir string
	// Password is the admin user's password.
	Password string
	// PowerOff is called on a chassis power-off; the power is recorded
	// off only after it returned. It must kill the node.
	PowerOff func()
	// PowerOn is called on a chassis power-on (may be nil).
	PowerOn func()
}

// chassisScript is ipmi_sim's chassis_control program.
const chassisScript = `#!/bin/sh
# ipmi_sim chassis_control: $1 node, $2 get|set, then parameters.
dir=%q
echo "$*" >> "$dir/chassis.log"
node=$1; op=$2; shift 2
case "$op" in
get)
  for p in "$@"; do
    case "$p" in
      power) if [ "$(cat "$dir/power")" = off ]; then echo "power:0"; else echo "power:1"; fi;;
      reset) echo "reset:0";;
      boot) echo "boot:none";;
    esac
  done;;
set)
  while [ $# -gt 1 ]; do
    if [ "$1" = power ] && [ "$2" = 0 ] && [ "$(cat "$dir/power")" != off ]; then
      rm -f "$dir/off-done"; : > "$dir/off-request"
      while [ ! -e "$dir/off-done" ]; do sleep 0.005; done
      rm -f "$dir/off-done"
      echo off > "$dir/power"
    elif [ "$1" = power ] && [ "$2" = 1 ] && [ "$(cat "$dir/power")" = off ]; then
      echo on > "$dir/power"; : > "$dir/on-request"
    fi
    shift 2
  done;;
esac
exit 0
`

// Start writes the BMC's config and starts ipmi_sim; it returns once the
// BMC answers a power status query.
func Start(ctx context.Context, o Options) (*BMC, error) {
	if m := Missing(); len(m) > 0 {
		return nil, fmt.Errorf("bmcsim: missing %s", strings.Join(m, ", "))
	}
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, err
	}
	b := &BMC{Name: o.Name, Port: port, User: "admin", Password: o.Password, dir: dir, offHook: o.PowerOff, onHook: o.PowerOn, done: make(chan struct{})}
	files := map[string]string{
		"power":      "on\n",
		"chassis.sh": fmt.Sprintf(chassisScript, dir),
		"lan.conf": fmt.Sprintf(`name %q
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s %s"
  user 2 true "%s" "%s" admin 10 md5
`, o.Name, port, filepath.Join(dir, "chassis.sh"), o.Name, b.User, o.Password),
		"sim.emu": "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o700); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ipmi_sim", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "sim.emu"), "-s", filepath.Join(dir, "state"), "-n")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test or benchmark that dies (os.Exit, a panic) leaves
	// no simulator behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	b.cmd = cmd
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(b.done)
	}()
	hctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go b.hooks(hctx)
	if err := b.waitReady(ctx); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// hooks runs the power hooks the chassis script requests.
func (b *BMC) hooks(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(filepath.Join(b.dir, "off-request")); err == nil {
			os.Remove(filepath.Join(b.dir, "off-request"))
			if b.offHook != nil {
				b.offHook()
			}
			b.mu.Lock()
			b.offs++
			b.mu.Unlock()
			_ = os.WriteFile(filepath.Join(b.dir, "off-done"), nil, 0o600)
		}
		if _, err := os.Stat(filepath.Join(b.dir, "on-request")); err == nil {
			os.Remove(filepath.Join(b.dir, "on-request"))
			if b.onHook != nil {
				b.onHook()
			}
		}
	}
}

// PowerOffs returns how many power-offs the BMC carried out.
func (b *BMC) PowerOffs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.offs
}

// PowerOn sets the recorded power state to on without calling PowerOn (the
// caller restarts the node itself).
func (b *BMC) PowerOn() error {
	return os.WriteFile(filepath.Join(b.dir, "power"), []byte("on\n"), 0o600)
}

// IPMITool runs ipmitool against the BMC with args and returns its output.
func (b *BMC) IPMITool(ctx context.Context, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", fmt.Sprint(b.Port), "-U", b.User, "-P", b.Password, "-L", "ADMINISTRATOR", "-N", "1", "-R", "2"}
	out, err := exec.CommandContext(ctx, "ipmitool", append(base, args...)...).CombinedOutput()
	return string(out), err
}

func (b *BMC) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			log, _ := os.ReadFile(filepath.Join(b.dir, "ipmi_sim.log"))
			return fmt.Errorf("ipmi_sim exited: %s", log)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		out, err := b.IPMITool(cctx, "chassis", "power", "status")
		cancel()
		if err == nil && strings.Contains(out, "Chassis Power is") {
			return nil
		}
		last = out
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("ipmi_sim on port %d did not answer within 10s: %s", b.Port, last)
}

// Stop kills ipmi_sim and its process group and waits for it.
func (b *BMC) Stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
}

// freeUDPPort returns a UDP port on 127.0.0.1 free right now.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free UDP port: %w", err)
	}
	defer c.Close()
	addr, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return 0, errors.New("find a free UDP port: not a UDP address")
	}
	return addr.Port, nil
}
