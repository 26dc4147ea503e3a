package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/fence"
	"haxd/ha"
	"haxd/internal/invariant"
)

// anythingAgent is Debian's ocf:heartbeat:anything (package
// resource-agents): it starts a command with `su - USER -c "nohup CMD &"`,
// so the daemon leaves the start action's process group and session.
const anythingAgent = "/usr/lib/ocf/resource.d/heartbeat/anything"

// ocfDaemon is the invariant-checker name of the OCF test daemon.
const ocfDaemon = "ocfd"

// addOCFDaemon adds ocf:daemon on node: ocf:heartbeat:anything running
// `haxd demo-service` as a daemon. The agent expands $HAXD_NODE (which
// haxd passes to every OCF action) when it evals its command line, so
// every run records the node it really runs on.
func (h *harness) addOCFDaemon(sid, node string) {
	h.t.Helper()
	spec, err := json.Marshal(map[string]any{
		"agent": "heartbeat:anything",
		"params": map[string]string{
			"binfile":         h.cl.Binary(),
			"cmdline_options": fmt.Sprintf("demo-service --dir %s --name %s --node $HAXD_NODE", h.cl.HeartbeatDir, ocfDaemon),
		},
		"start_timeout": "20s",
		"stop_timeout":  "20s",
	})
	if err != nil {
		h.t.Fatal(err)
	}
	var last error
	h.waitFor(startDeadline, "adding "+sid+" on "+node, func() bool {
		for _, n := range h.cl.Nodes {
			if n.Exited() {
				continue
			}
			last = n.Client().AddResource(h.ctx, api.AddResourceRequest{SID: sid, Node: node, Spec: spec})
			if last == nil || strings.Contains(last.Error(), "already defined") {
				return true
			}
			break
		}
		h.t.Logf("add %s: %v (retrying)", sid, last)
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// newestRun returns the latest run of the invariant name svc.
func (h *harness) newestRun(svc string) (invariant.Run, bool) {
	runs := h.runs(svc)
	if len(runs) == 0 {
		return invariant.Run{}, false
	}
	return runs[len(runs)-1], true
}

// A node whose agent is frozen (SIGSTOP) beyond the lock TTL has every
// service killed by its guard before the CRM recovers it: an exec service
// and an OCF daemon that left its start action's process group and
// session (ocf:heartbeat:anything). Both ran in cgroup v2 leaves the
// agent registered with the guard before spawning them. The invariant
// checker sees no overlap.
func TestSelfFenceKillsOCFDaemonsAndExecServicesBeforeRecovery(t *testing.T) {
	if _, err := os.Stat(anythingAgent); err != nil {
		t.Skipf("!!! %s is missing (Debian package resource-agents): the OCF self-fence test cannot run", anythingAgent)
	}
	if _, err := exec.LookPath("su"); err != nil {
		t.Skip("!!! su is missing: ocf:heartbeat:anything cannot start its daemon")
	}
	// anything starts its daemon through `su - root`, a login shell: a
	// login profile that blocks (seen: pyenv's rehash waiting 60 s on a
	// lock file left by a killed shell) makes every start time out.
	suStart := time.Now()
	if out, err := exec.Command("timeout", "15", "su", "-", "root", "-c", "true").CombinedOutput(); err != nil {
		t.Skipf("!!! `su - root -c true` failed after %v (%v: %s): root's login profile blocks, so ocf:heartbeat:anything cannot start anything here; the OCF self-fence test DOES NOT RUN",
			time.Since(suStart).Round(time.Millisecond), err, strings.TrimSpace(string(out)))
	}
	if _, err := fence.Cgroup2Mount(); err != nil {
		t.Skipf("!!! no cgroup v2 mount (%v): a daemon that leaves its process group cannot be fenced; the OCF self-fence test cannot run", err)
	}
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	const sid = "ocf:daemon"
	h.addOCFDaemon(sid, victim)
	h.waitFor(startDeadline, sid+" started and beating on "+victim, func() bool {
		sd := h.service(sid)
		return sd != nil && sd.State == ha.StateStarted && sd.Node == victim && h.cl.RunningOn(ocfDaemon, fresh) == victim
	})
	old, _ := h.newestRun(ocfDaemon)
	oldExec, _ := h.newestRun(svc(victim))
	vn := h.cl.Node(victim)
	// The daemon left the start action's session but not its cgroup leaf.
	leaf := procCgroup(t, old.PID)
	if !strings.Contains(leaf, "/ocf%3Adaemon") {
		t.Fatalf("the OCF daemon (pid %d) runs in cgroup %q, not in its service's leaf", old.PID, leaf)
	}
	sess, pgid := procSession(t, old.PID)
	t.Logf("OCF daemon pid %d: cgroup %s, session %d, process group %d (the start action has exited)", old.PID, leaf, sess, pgid)
	mark := h.mark()

	h.cl.Pause(vn)
	paused := time.Now()
	t.Cleanup(func() { h.cl.Resume(vn) })
	var to string
	h.waitFor(failoverDeadline, sid+" recovered on another node", func() bool {
		sd := h.service(sid)
		if sd == nil || sd.State != ha.StateStarted || sd.Node == victim {
			return false
		}
		to = sd.Node
		return h.cl.RunningOn(ocfDaemon, fresh) == to
	})
	execTo := h.waitMoved(svc(victim), victim, failoverDeadline)
	// The TTL counts from the victim's last renewal, up to one LRM round
	// before the pause (TestAgentPauseSelfFencesAndDoesNotRestartOnResume).
	if frozen, min := time.Since(paused), h.timing.LockTTL-h.timing.LRMRound; frozen <= min {
		t.Fatalf("%s moved after %v, less than the lock TTL %v minus one renewal interval (lrm_round %v)", sid, frozen, h.timing.LockTTL, h.timing.LRMRound)
	}
	if fences := h.guardFences(victim, mark); len(fences) == 0 {
		t.Errorf("%s: the guard did not log a self-fence while its agent was frozen", victim)
	}
	for _, c := range []struct {
		name string
		old  invariant.Run
		to   string
	}{{ocfDaemon, old, to}, {svc(victim), oldExec, execTo}} {
		runs := h.runs(c.name)
		last := runs[len(runs)-1]
		if last.Node != c.to || last.PID == c.old.PID {
			t.Errorf("%s: want a new run on %s, got runs on [%s]", c.name, c.to, h.runNodes(c.name))
			continue
		}
		var ended invariant.Run
		for _, r := range runs {
			if r.PID == c.old.PID {
				ended = r
			}
		}
		if gap := time.Duration(last.First - ended.Last); gap <= 0 {
			t.Errorf("%s: started on %s %v before its run on %s (pid %d) ended", c.name, c.to, -gap, victim, c.old.PID)
		} else {
			t.Logf("%s: last heartbeat on %s, first on %s %v later", c.name, victim, c.to, gap.Round(time.Millisecond))
		}
		if alive(c.old.PID) {
			t.Errorf("%s: its process %d on the fenced node %s still runs", c.name, c.old.PID, victim)
		}
	}
}

// The same for a systemd unit: its own cgroup is registered with the
// guard. It needs systemd as PID 1 to start units.
func TestSelfFenceKillsASystemdUnitBeforeRecovery(t *testing.T) {
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Skipf("!!! systemd is not PID 1 here (PID 1 is %q): a systemd unit cannot be started, so the systemd self-fence test DOES NOT RUN", strings.TrimSpace(string(comm)))
	}
	if _, err := fence.Cgroup2Mount(); err != nil {
		t.Skipf("!!! no cgroup v2 mount (%v): the systemd self-fence test cannot run", err)
	}
	h := startCluster(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	// A runtime unit (gone at reboot) running the demo service;
	// Restart=no, as haxd requires. Every agent of this test runs on the
	// same host and so drives the same unit: the runs differ by pid.
	unit := fmt.Sprintf("haxd-it-%d", os.Getpid())
	const name = "sysd"
	path := filepath.Join("/run/systemd/system", unit+".service")
	unitText := fmt.Sprintf("[Service]\nType=simple\nRestart=no\nExecStart=%s demo-service --dir %s --name %s --node unit\n",
		h.cl.Binary(), h.cl.HeartbeatDir, name)
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatalf("write unit: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", unit).Run() //nolint:errcheck // best effort
		os.Remove(path)
		exec.Command("systemctl", "daemon-reload").Run() //nolint:errcheck // best effort
	})
	if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("systemctl daemon-reload: %v: %s", err, out)
	}
	sid := "systemd:" + unit
	var last error
	h.waitFor(startDeadline, "adding "+sid, func() bool {
		last = h.cl.Node(master).Client().AddResource(h.ctx, api.AddResourceRequest{SID: sid, Node: victim})
		return last == nil || strings.Contains(last.Error(), "already defined")
	})
	h.waitFor(startDeadline, sid+" started and beating", func() bool {
		sd := h.service(sid)
		return sd != nil && sd.State == ha.StateStarted && sd.Node == victim && h.cl.RunningOn(name, fresh) != ""
	})
	old, _ := h.newestRun(name)
	vn := h.cl.Node(victim)
	h.cl.Pause(vn)
	t.Cleanup(func() { h.cl.Resume(vn) })
	h.waitFor(failoverDeadline, sid+" recovered on another node", func() bool {
		sd := h.service(sid)
		if sd == nil || sd.State != ha.StateStarted || sd.Node == victim {
			return false
		}
		r, ok := h.newestRun(name)
		return ok && r.PID != old.PID && h.cl.RunningOn(name, fresh) != ""
	})
	runs := h.runs(name)
	newest := runs[len(runs)-1]
	var ended invariant.Run
	for _, r := range runs {
		if r.PID == old.PID {
			ended = r
		}
	}
	if newest.PID == old.PID || newest.First <= ended.Last {
		t.Errorf("%s: the recovered run (pid %d) began before the fenced one (pid %d) ended", sid, newest.PID, old.PID)
	}
}

// procCgroup returns the cgroup v2 path of pid ("0::" line).
func procCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("read cgroup of pid %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return ""
}

// procSession returns the session and process group of pid.
func procSession(t *testing.T, pid int) (sess, pgid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read stat of pid %d: %v", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	fmt.Sscan(f[2], &pgid)
	fmt.Sscan(f[3], &sess)
	return sess, pgid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
