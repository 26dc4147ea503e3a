package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"time"

	"haxd/logdedup"
)

// logWriter turns the lines memberlist and serf write to their *log.Logger
// ("[INFO] memberlist: Suspect n2 has failed, ...") into slog records at
// the level the prefix names.
// Warnings and errors repeated with the same text (addresses and numbers
// aside) are logged once per dedupWindow, then once more with the count
// of suppressed repeats: a node gossiping with a wrong key otherwise makes
// every healthy node log an error a second, forever.
type logWriter struct {
	logger *slog.Logger
	dedup  *logdedup.Dedup
}

// dedupWindow is how long a repeated gossip warning or error is suppressed
// after it was logged.
const dedupWindow = 30 * time.Second

// newStdLogger returns a *log.Logger that forwards to logger.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(&logWriter{logger: logger, dedup: logdedup.New(time.Now, dedupWindow)}, "", 0)
}

// dedupKey is the line with every run of digits replaced by '#', so that
// the same complaint about another port or packet size is the same key.
func dedupKey(lib, msg string) string {
	var b strings.Builder
	b.WriteString(lib)
	b.WriteByte(0)
	digits := false
	for _, r := range msg {
		if r >= '0' && r <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(r)
	}
	return b.String()
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
		var attrs []any
		if lib != "" {
			attrs = append(attrs, "lib", lib)
		}
		if level >= slog.LevelWarn && w.dedup != nil {
			ok, n := w.dedup.Allow(dedupKey(lib, msg))
			if !ok {
				continue
			}
			if n > 0 {
				attrs = append(attrs, "suppressed_repeats", n)
			}
		}
		w.logger.Log(context.Background(), level, msg, attrs...)
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
