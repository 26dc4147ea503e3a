// Package invariant records when test services run and checks haxd's one
// invariant on real processes: no two instances of one service ever run at
// the same time.
//
// A recorded service (`haxd demo-service`) appends a heartbeat line to its
// own file every Interval, stamped with CLOCK_MONOTONIC, which is one clock
// for every process on a machine. An instance's run is the interval from its
// first to its last heartbeat. If two instances overlapped for longer than
// one heartbeat interval, both files hold heartbeats inside the overlap, and
// Check reports it; shorter overlaps can go unseen, so keep Interval well
// below the failover time.
package invariant

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Interval is the default heartbeat period.
const Interval = 20 * time.Millisecond

// Monotonic returns CLOCK_MONOTONIC in nanoseconds.
func Monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// Run is one instance of a service: the node it ran on and the monotonic
// times of its first and last heartbeat.
type Run struct {
	Service string
	Node    string
	PID     int
	First   int64
	Last    int64
	File    string
}

// Duration is Last - First.
func (r Run) Duration() time.Duration { return time.Duration(r.Last - r.First) }

// Recorder writes heartbeats of one instance to dir/<service>.<node>.<pid>.hb.
type Recorder struct {
	f *os.File
	w *bufio.Writer
}

// NewRecorder creates the heartbeat file of this instance.
func NewRecorder(dir, service, node string) (*Recorder, error) {
	if strings.ContainsAny(service, "/.") || strings.ContainsAny(node, "/.") {
		return nil, fmt.Errorf("service %q and node %q must not contain '/' or '.'", service, node)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create record dir: %w", err)
	}
	name := filepath.Join(dir, fmt.Sprintf("%s.%s.%d.hb", service, node, os.Getpid()))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create heartbeat file: %w", err)
	}
	return &Recorder{f: f, w: bufio.NewWriterSize(f, 64)}, nil
}

// Beat appends one heartbeat and flushes it to the kernel (no fsync: the
// process may die, the machine does not).
func (r *Recorder) Beat() error {
	if _, err := fmt.Fprintf(r.w, "%d\n", Monotonic()); err != nil {
		return err
	}
	return r.w.Flush()
}

// Close closes the file.
func (r *Recorder) Close() error { return r.f.Close() }

// Load reads every heartbeat file in dir.
func Load(dir string) ([]Run, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.hb"))
	if err != nil {
		return nil, err
	}
	var runs []Run
	for _, p := range paths {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(p), ".hb"), ".")
		if len(parts) != 3 {
			return nil, fmt.Errorf("heartbeat file %s: expected service.node.pid.hb", p)
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil {
			return nil, fmt.Errorf("heartbeat file %s: pid %q: %w", p, parts[2], err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r := Run{Service: parts[0], Node: parts[1], PID: pid, File: p}
		text := string(b)
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			text = text[:i] // drop a torn last line of a killed process
		} else {
			text = ""
		}
		for _, line := range strings.Fields(text) {
			ts, err := strconv.ParseInt(line, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("heartbeat file %s: line %q: expected monotonic nanoseconds", p, line)
			}
			if r.First == 0 || ts < r.First {
				r.First = ts
			}
			if ts > r.Last {
				r.Last = ts
			}
		}
		if r.First != 0 {
			runs = append(runs, r)
		}
	}
	slices.SortFunc(runs, func(a, b Run) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return int(a.First - b.First)
	})
	return runs, nil
}

// Check returns one error line per pair of runs of the same service whose
// heartbeat intervals overlap.
func Check(runs []Run) []string {
	var out []string
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Service != b.Service {
				continue
			}
			if b.First <= a.Last && a.First <= b.Last {
				out = append(out, fmt.Sprintf("service %s ran twice at once: %s pid %d [%d..%d] and %s pid %d [%d..%d] overlap by %v",
					a.Service, a.Node, a.PID, a.First, a.Last, b.Node, b.PID, b.First, b.Last,
					time.Duration(min(a.Last, b.Last)-max(a.First, b.First))))
			}
		}
	}
	return out
}
