package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"haxd/internal/invariant"
)

// result is what one run found.
type result struct {
	kind    string
	run     int
	nodes   int
	seed    uint64
	dir     string // kept run directory, "" when removed
	skipped string // why the run was not done
	err     error  // the lab failed (not the cluster under test)
	what    string // the fault's schedule

	overlaps int
	// Self-fences since the fault began, as guard fences (the guard's
	// "self-fence, killing" line) and LRM lock losses ("=> lost_agent_lock"),
	// on healthy and on faulted nodes.
	healthyGuard, healthyLRM int
	faultedGuard, faultedLRM int
	// needless counts services of nodes that were not dead that were
	// started on another node after the fault began.
	needless int
	// recoveries are, per service of a dead node, the time from the fault
	// to its first heartbeat on another node; unrecovered counts those that
	// took longer than the bound or never came.
	recoveries  []time.Duration
	unrecovered int
	crashes     []string
	// downtime is the time no instance of a service beat, summed over the
	// services, from the fault to the end of the run; worstAvail is the
	// smallest fraction of that window any one service ran.
	downtime   time.Duration
	worstAvail float64
	notes      []string
}

// summary is the one-line progress report of a run.
func (r result) summary() string {
	if r.err != nil {
		return "LAB ERROR: " + r.err.Error()
	}
	s := fmt.Sprintf("%s; overlaps %d, healthy self-fences %d/%d (guard/LRM), faulted-node fences %d/%d, needless recoveries %d, not recovered in bound %d, downtime %.1f s, worst availability %.1f%%",
		r.what, r.overlaps, r.healthyGuard, r.healthyLRM, r.faultedGuard, r.faultedLRM, r.needless, r.unrecovered, r.downtime.Seconds(), 100*r.worstAvail)
	if len(r.recoveries) > 0 {
		var rs []string
		for _, d := range r.recoveries {
			rs = append(rs, fmt.Sprintf("%.2f", d.Seconds()))
		}
		s += ", recovered in " + strings.Join(rs, "/") + " s"
	}
	if len(r.crashes) > 0 {
		s += ", AGENT CRASHES: " + strings.Join(r.crashes, "; ")
	}
	for _, n := range r.notes {
		s += "\n    note: " + n
	}
	if r.dir != "" {
		s += "\n    kept: " + r.dir
	}
	return s
}

// logMarks remembers how far each node's agent and guard logs were
// written.
func (r *labRun) logMarks() map[string]int64 {
	m := map[string]int64{}
	for _, n := range r.cl.Nodes {
		for _, p := range []string{n.Log, filepath.Join(n.DataDir, "guard.log")} {
			if fi, err := os.Stat(p); err == nil {
				m[p] = fi.Size()
			}
		}
	}
	return m
}

// countSince counts the lines of path after byte off that contain substr.
func countSince(path string, off int64, substr string) int {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return 0
	}
	return strings.Count(string(b[off:]), substr)
}

// Markers of a self-fence in the logs.
const (
	guardFenceMarker = "guard: self-fence, killing"
	lrmFenceMarker   = "=> lost_agent_lock"
)

// analyze fills res from the heartbeat records and logs of a finished run.
func analyze(res *result, r *labRun, f fault, marks map[string]int64, t0, tEnd int64, crashed []string) {
	res.what = f.what
	res.crashes = crashed
	runs, err := invariant.Load(r.cl.HeartbeatDir)
	if err != nil {
		res.err = fmt.Errorf("load heartbeats: %w", err)
		return
	}
	violations := invariant.Check(runs)
	res.overlaps = len(violations)
	for _, v := range violations[:min(3, len(violations))] {
		res.notes = append(res.notes, "VIOLATION: "+v)
	}
	for _, n := range r.cl.Nodes {
		guardLog := filepath.Join(n.DataDir, "guard.log")
		g := countSince(guardLog, marks[guardLog], guardFenceMarker)
		l := countSince(n.Log, marks[n.Log], lrmFenceMarker)
		if slices.Contains(f.faulted, n.Name) {
			res.faultedGuard += g
			res.faultedLRM += l
		} else {
			res.healthyGuard += g
			res.healthyLRM += l
			if g+l > 0 {
				res.notes = append(res.notes, fmt.Sprintf("healthy %s self-fenced: %d guard fences, %d LRM lock losses", n.Name, g, l))
			}
		}
	}
	res.worstAvail = 1
	for _, sid := range slices.Sorted(maps.Keys(r.services)) {
		home := r.services[sid]
		var mine []invariant.Run
		for _, run := range runs {
			if run.Service == sid {
				mine = append(mine, run)
			}
		}
		moved := firstElsewhere(mine, home, t0)
		switch {
		case slices.Contains(f.dead, home):
			if moved == nil {
				res.unrecovered++
				res.notes = append(res.notes, fmt.Sprintf("%s of dead %s never ran elsewhere", sid, home))
				break
			}
			d := time.Duration(moved.First - f.start)
			res.recoveries = append(res.recoveries, d)
			if d > r.opts.bound {
				res.unrecovered++
				res.notes = append(res.notes, fmt.Sprintf("%s of dead %s ran on %s only after %.2f s (bound %v)", sid, home, moved.Node, d.Seconds(), r.opts.bound))
			}
		case moved != nil && !slices.Contains(f.mayMove, home):
			res.needless++
			res.notes = append(res.notes, fmt.Sprintf("needless recovery: %s moved from %s to %s", sid, home, moved.Node))
		}
		down := downtime(mine, t0, tEnd, invariant.Interval)
		res.downtime += down
		if w := tEnd - t0; w > 0 {
			res.worstAvail = min(res.worstAvail, 1-float64(down)/float64(w))
		}
	}
}

// firstElsewhere returns the earliest run not on home that started at or
// after t0, or nil.
func firstElsewhere(runs []invariant.Run, home string, t0 int64) *invariant.Run {
	var best *invariant.Run
	for i, run := range runs {
		if run.Node != home && run.First >= t0 && (best == nil || run.First < best.First) {
			best = &runs[i]
		}
	}
	return best
}

// downtime returns how much of [from, to] no run covered; a run covers
// [First, Last+interval] (its last heartbeat vouches for one interval).
func downtime(runs []invariant.Run, from, to int64, interval time.Duration) time.Duration {
	if to <= from {
		return 0
	}
	type span struct{ a, b int64 }
	var spans []span
	for _, r := range runs {
		a, b := max(r.First, from), min(r.Last+int64(interval), to)
		if a < b {
			spans = append(spans, span{a, b})
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return int(x.a - y.a) })
	covered, end := int64(0), from
	for _, s := range spans {
		if s.b <= end {
			continue
		}
		covered += s.b - max(s.a, end)
		end = s.b
	}
	return time.Duration(to - from - covered)
}

// renderReport returns the markdown report: a table per fault kind, then
// every run.
func renderReport(o options, env labEnv, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Fault lab: seed %d, %d run(s) per kind, cluster sizes %v, bound %v, loss/delay time %v, watched %v after each heal.\n\n",
		o.seed, o.runs, o.nodes, o.bound, o.lossTime, o.observe)
	for _, l := range env.notes() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\n| fault kind | runs | overlaps | healthy self-fences (guard/LRM) | needless recoveries | dead node's services not running elsewhere within bound | agent crashes | service downtime (sum) | worst service availability | recovery min / median / max |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, k := range o.kinds {
		var rs []result
		for _, r := range results {
			if r.kind == k {
				rs = append(rs, r)
			}
		}
		b.WriteString(kindRow(k, rs))
	}
	b.WriteString("\nFault kinds:\n\n")
	for _, k := range o.kinds {
		fmt.Fprintf(&b, "- `%s`: %s\n", k, findKind(k).doc)
	}
	b.WriteString("\n| kind | run | nodes | seed | fault | overlaps | healthy fences g/l | faulted-node fences g/l | needless | late | recovery (s) | downtime (s) | notes |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		switch {
		case r.skipped != "":
			fmt.Fprintf(&b, "| %s | %d | %d | %d | not tested: %s | | | | | | | | |\n", r.kind, r.run, r.nodes, r.seed, mdEscape(r.skipped))
		case r.err != nil:
			fmt.Fprintf(&b, "| %s | %d | %d | %d | lab error: %s | | | | | | | | |\n", r.kind, r.run, r.nodes, r.seed, mdEscape(r.err.Error()))
		default:
			var rec []string
			for _, d := range r.recoveries {
				rec = append(rec, fmt.Sprintf("%.2f", d.Seconds()))
			}
			notes := slices.Clone(r.notes)
			for _, c := range r.crashes {
				notes = append(notes, "agent crash: "+c)
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %d/%d | %d/%d | %d | %d | %s | %.1f | %s |\n", r.kind, r.run, r.nodes, r.seed,
				mdEscape(r.what), r.overlaps, r.healthyGuard, r.healthyLRM, r.faultedGuard, r.faultedLRM, r.needless, r.unrecovered,
				strings.Join(rec, ", "), r.downtime.Seconds(), mdEscape(strings.Join(notes, "; ")))
		}
	}
	return b.String()
}

// kindRow is the summary row of one kind.
func kindRow(k string, rs []result) string {
	var done []result
	var skipped, failed []string
	for _, r := range rs {
		switch {
		case r.skipped != "":
			skipped = append(skipped, r.skipped)
		case r.err != nil:
			failed = append(failed, r.err.Error())
		default:
			done = append(done, r)
		}
	}
	if len(done) == 0 {
		why := "no run"
		if len(skipped) > 0 {
			why = "not tested: " + skipped[0]
		} else if len(failed) > 0 {
			why = fmt.Sprintf("%d lab error(s): %s", len(failed), failed[0])
		}
		return fmt.Sprintf("| %s | 0 | %s | | | | | | | |\n", k, mdEscape(why))
	}
	var overlaps, hg, hl, needless, late, crashes int
	var down time.Duration
	worst := 1.0
	var rec []time.Duration
	sizes := map[int]int{}
	for _, r := range done {
		overlaps += r.overlaps
		hg += r.healthyGuard
		hl += r.healthyLRM
		needless += r.needless
		late += r.unrecovered
		crashes += len(r.crashes)
		down += r.downtime
		worst = min(worst, r.worstAvail)
		rec = append(rec, r.recoveries...)
		sizes[r.nodes]++
	}
	var sz []string
	for _, n := range slices.Sorted(maps.Keys(sizes)) {
		sz = append(sz, fmt.Sprintf("%d×%dn", sizes[n], n))
	}
	runs := fmt.Sprintf("%d (%s)", len(done), strings.Join(sz, ", "))
	if len(failed) > 0 {
		runs += fmt.Sprintf(" + %d lab error(s)", len(failed))
	}
	recovery := "–"
	if len(rec) > 0 {
		slices.Sort(rec)
		median := rec[len(rec)/2]
		if len(rec)%2 == 0 {
			median = (rec[len(rec)/2-1] + rec[len(rec)/2]) / 2
		}
		recovery = fmt.Sprintf("%.2f / %.2f / %.2f s", rec[0].Seconds(), median.Seconds(), rec[len(rec)-1].Seconds())
	}
	return fmt.Sprintf("| %s | %s | %d | %d (%d/%d) | %d | %d | %d | %.1f s | %.1f%% | %s |\n",
		k, runs, overlaps, hg+hl, hg, hl, needless, late, crashes, down.Seconds(), 100*worst, recovery)
}

// mdEscape makes s safe in a markdown table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
