package resource

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"haxd/ha"
)

// ReadSpecFile reads the spec file of sid from dir: <dir>/<name>.json or,
// when that does not exist, <dir>/<name>.conf, where name is the part of the
// SID after the colon. kind names the agent in errors ("exec", "ocf"). It
// returns the path read and its contents; a missing file is an error
// wrapping fs.ErrNotExist.
func ReadSpecFile(dir, kind string, sid ha.SID) (string, []byte, error) {
	name := sid.Name()
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return "", nil, fmt.Errorf("%s spec of %s: name %q cannot be a file name", kind, sid, name)
	}
	for _, ext := range []string{".json", ".conf"} {
		p := filepath.Join(dir, name+ext)
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("%s spec of %s: %w", kind, sid, err)
		}
		return p, b, nil
	}
	return "", nil, fmt.Errorf("%s spec of %s: no %s.json or %s.conf in %s: %w", kind, sid, name, name, dir, fs.ErrNotExist)
}
