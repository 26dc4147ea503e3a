//go:build linux

package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"haxd/ha"
	"haxd/resource"
)

// stateVersion is the format version of the state files this code writes.
const stateVersion = 1

// record is the content of one state file: everything a later agent needs
// to recognise, check and stop a service it did not start itself.
type record struct {
	// Version is stateVersion.
	Version int `json:"version"`
	// SID is the service.
	SID ha.SID `json:"sid"`
	// PID is the process the agent started; it leads its own session and
	// process group.
	PID int `json:"pid"`
	// PGID is the process group of the service (equal to PID).
	PGID int `json:"pgid"`
	// StartTicks is field 22 of /proc/<pid>/stat at start: the start time in
	// clock ticks after boot. A live pid with another start time is not the
	// service (the pid was reused).
	StartTicks uint64 `json:"start_ticks"`
	// BootID is the kernel boot id at start; after a reboot nothing
	// recorded is alive.
	BootID string `json:"boot_id"`
	// Cgroup is the service's cgroup v2 directory, or "" without one.
	Cgroup string `json:"cgroup,omitempty"`
	// Log is the file the process writes its stdout and stderr to.
	Log string `json:"log"`
	// StartedAt is the wall-clock start time, for operators only.
	StartedAt time.Time `json:"started_at"`
	// Spec is the normalised spec the process was started with; Stop and
	// the health check use it, not whatever the configuration says now.
	Spec Spec `json:"spec"`
}

// escapeSID is resource.EscapeSID: exec's file and cgroup names.
func escapeSID(sid ha.SID) (string, error) { return resource.EscapeSID(sid) }

// paths holds the per-service file names.
type paths struct {
	state, log string
	cgroup     string // "" without a cgroup parent
}

func (a *Agent) paths(sid ha.SID) (paths, error) {
	esc, err := escapeSID(sid)
	if err != nil {
		return paths{}, err
	}
	p := paths{
		state: filepath.Join(a.cfg.StateDir, esc+".state"),
		log:   filepath.Join(a.cfg.StateDir, esc+".log"),
	}
	if a.cgroupParent != "" {
		p.cgroup = filepath.Join(a.cgroupParent, esc)
	}
	return p, nil
}

// readRecord reads a state file; ok is false when there is none.
func readRecord(path string) (rec record, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("read state file: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, false, fmt.Errorf("parse state file %s: %w", path, err)
	}
	if rec.Version != stateVersion {
		return record{}, false, fmt.Errorf("parse state file %s: version %d, want %d", path, rec.Version, stateVersion)
	}
	if rec.PID <= 0 || rec.PGID <= 0 {
		return record{}, false, fmt.Errorf("parse state file %s: pid %d, pgid %d: must be positive", path, rec.PID, rec.PGID)
	}
	return rec, true, nil
}

// writeRecord replaces the state file atomically (write a temporary file,
// sync it, rename it over the old one, sync the directory).
func writeRecord(path string, rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state file: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// stateFiles returns the state files in dir, sorted.
func stateFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list state dir: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".state") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}
