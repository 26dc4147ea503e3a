package sim

import (
	"context"
	"fmt"
	"log/slog"

	"haxd/ha"
)

// agent is the simulated resource agent of one type on one node
// (scenario-format §5). It logs as the LRM it belongs to.
type agent struct {
	e   *env
	typ string
}

var _ ha.ResourceAgent = (*agent)(nil)

// faSpec is the failure behaviour encoded in the digits of an fa: name.
type faSpec struct {
	startFails, migrateFails int
	unstoppable              bool
	node                     string // "" = failures on every node
}

// parseFA decodes an fa: name; ok is false when the name has fewer than
// three digits (it then behaves like a vm).
func parseFA(sid ha.SID) (faSpec, bool) {
	name := sid.Name()
	if sid.Type() != "fa" || len(name) < 3 {
		return faSpec{}, false
	}
	for _, r := range name {
		if r < '0' || r > '9' {
			return faSpec{}, false
		}
	}
	d := func(i int) int {
		if i < len(name) {
			return int(name[i] - '0')
		}
		return 0
	}
	f := faSpec{startFails: d(1), migrateFails: d(2), unstoppable: d(3) != 0}
	if d(5) != 0 {
		f.node = fmt.Sprintf("node%d", d(5))
	}
	return f, true
}

// faAttempt counts an attempt and reports whether it fails.
func (a *agent) faAttempt(counters map[ha.SID]int, sid ha.SID, fails int) bool {
	f, ok := parseFA(sid)
	if !ok {
		return false
	}
	if f.node != "" && f.node != a.e.node.name {
		counters[sid] = 0
		return false
	}
	counters[sid]++
	if counters[sid] <= fails {
		return true
	}
	counters[sid] = 0
	return false
}

func (a *agent) log(level slog.Level, msg string) {
	a.e.logger.Log(context.Background(), level, msg)
}

func (a *agent) config(sid ha.SID) *ha.ResourceConfig { return a.e.s.services[sid] }

func (a *agent) Start(_ context.Context, sid ha.SID) error {
	if f, ok := parseFA(sid); ok && a.faAttempt(a.e.s.faStart, sid, f.startFails) {
		return nil // a failed start does nothing at all
	}
	if c := a.config(sid); c != nil && c.Lock != "" {
		a.log(slog.LevelError, fmt.Sprintf("service '%s' locked (%s), unable to start!", sid, c.Lock))
		return nil
	}
	a.e.s.setRunning(a.e.node, sid, true)
	return nil
}

func (a *agent) Stop(_ context.Context, sid ha.SID, _ *int) error {
	a.shutdown(sid)
	return nil
}

func (a *agent) shutdown(sid ha.SID) {
	if f, ok := parseFA(sid); ok && f.unstoppable {
		return
	}
	if c := a.config(sid); c != nil && c.Lock != "" {
		a.log(slog.LevelError, fmt.Sprintf("service '%s' locked (%s), unable to shutdown!", sid, c.Lock))
		return
	}
	a.e.s.setRunning(a.e.node, sid, false)
}

func (a *agent) Running(_ context.Context, sid ha.SID) (bool, error) {
	return a.e.node.running[sid], nil
}

func (a *agent) Migrate(_ context.Context, sid ha.SID, target string, online bool) error {
	if f, ok := parseFA(sid); ok && a.faAttempt(a.e.s.faMigrate, sid, f.migrateFails) {
		return fmt.Errorf("migrate %s to %s: simulated failure", sid, target)
	}
	running := a.e.node.running[sid]
	if a.typ == "ct" && online && running {
		a.log(slog.LevelWarn, "unable to live migrate running container, fallback to relocate")
		online = false
	}
	word := "relocate"
	if online {
		word = "migrate"
	}
	a.log(slog.LevelInfo, fmt.Sprintf("service %s - start %s to node '%s'", sid, word, target))
	c := a.config(sid)
	if c == nil {
		return fmt.Errorf("%s %s: no such service", word, sid)
	}
	if c.Lock != "" {
		a.log(slog.LevelError, fmt.Sprintf("service '%s' locked (%s), unable to %s!", sid, c.Lock, word))
		return fmt.Errorf("%s %s: locked (%s)", word, sid, c.Lock)
	}
	if _, ok := a.e.s.byName[target]; !ok {
		return fmt.Errorf("%s %s: unknown node %q", word, sid, target)
	}
	if !online && running {
		a.log(slog.LevelInfo, fmt.Sprintf("stopping service %s (relocate)", sid))
		a.shutdown(sid)
		a.log(slog.LevelInfo, fmt.Sprintf("service status %s stopped", sid))
	}
	a.e.s.editService(sid).Node = target
	a.log(slog.LevelInfo, fmt.Sprintf("service %s - end %s to node '%s'", sid, word, target))
	a.e.s.setRunning(a.e.node, sid, false)
	return nil
}

func (a *agent) LiveMigratable() bool { return a.typ == "vm" }

func (a *agent) RemoveLocks(sid ha.SID, names []string) string {
	c := a.config(sid)
	if c == nil || c.Lock == "" {
		return ""
	}
	for _, n := range names {
		if n == c.Lock {
			a.e.s.editService(sid).Lock = ""
			return n
		}
	}
	return ""
}
