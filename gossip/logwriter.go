package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// logWriter turns the lines memberlist and serf write to their *log.Logger
// ("[INFO] memberlist: Suspect n2 has failed, ...") into slog records at
// the level the prefix names.
type logWriter struct {
	logger *slog.Logger
}

// newStdLogger returns a *log.Logger that forwards to logger.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(&logWriter{logger: logger}, "", 0)
}

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[TRACE] ", slog.LevelDebug - 4},
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}

// Write logs each line of p. It never fails: a logger must not break gossip.
func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte{'\n'}) {
		level, lib, msg := parseLogLine(string(line))
		if msg == "" {
			continue
		}
		if !w.logger.Enabled(context.Background(), level) {
			continue
		}
		if lib != "" {
			w.logger.Log(context.Background(), level, msg, "lib", lib)
		} else {
			w.logger.Log(context.Background(), level, msg)
		}
	}
	return len(p), nil
}

// parseLogLine splits "[WARN] memberlist: text" into (Warn, "memberlist",
// "text"). Lines without a level prefix are logged at Info.
func parseLogLine(line string) (slog.Level, string, string) {
	level := slog.LevelInfo
	line = strings.TrimSpace(line)
	for _, p := range levelPrefixes {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			level, line = p.level, rest
			break
		}
	}
	for _, lib := range []string{"memberlist", "serf"} {
		if rest, ok := strings.CutPrefix(line, lib+": "); ok {
			return level, lib, rest
		}
	}
	return level, "", line
}
