package store

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"haxd/logdedup"
)

// slogTrace is the slog level hclog's Trace maps to.
const slogTrace = slog.LevelDebug - 4

// hclogAdapter implements hclog.Logger on top of a *slog.Logger, for raft.
// Every attribute raft passes (and the logger name) goes into a group
// "raft", so raft's "node" key cannot clash with haxd's own attributes.
// Values are flattened to what a JSON handler prints well: hclog.Fmt
// values are formatted, errors and fmt.Stringers become strings.
type hclogAdapter struct {
	logger  *slog.Logger
	name    string
	implied []any
	level   *slog.LevelVar
	dedup   *logdedup.Dedup
}

// repetitive are raft's messages that repeat many times a second while a
// peer is down; they are logged once per dedupWindow and peer, with the
// number of repeats suppressed in between.
var repetitive = []string{
	"failed to heartbeat to",
	"failed to appendEntries to",
	"failed to contact", // per server; not "failed to contact quorum of nodes, stepping down"
	"failed to make requestVote RPC",
	"failed to pipeline appendEntries",
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHclogAdapter returns a raft logger writing to logger. The adapter's
// own minimum level starts at trace; the slog handler filters further.
func newHclogAdapter(logger *slog.Logger, name string) *hclogAdapter {
	lv := new(slog.LevelVar)
	lv.Set(slogTrace)
	return &hclogAdapter{logger: logger, name: name, level: lv, dedup: logdedup.New(time.Now, dedupWindow)}
}

// toSlogLevel maps an hclog level to a slog level; ok is false for Off.
func toSlogLevel(l hclog.Level) (slog.Level, bool) {
	switch l {
	case hclog.Trace:
		return slogTrace, true
	case hclog.Debug:
		return slog.LevelDebug, true
	case hclog.NoLevel, hclog.Info:
		return slog.LevelInfo, true
	case hclog.Warn:
		return slog.LevelWarn, true
	case hclog.Error:
		return slog.LevelError, true
	}
	return 0, false
}

// fromSlogLevel maps a slog level back to the nearest hclog level.
func fromSlogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slogTrace:
		return hclog.Trace
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	}
	return hclog.Error
}

func (a *hclogAdapter) enabled(l slog.Level) bool {
	return l >= a.level.Level() && a.logger.Enabled(context.Background(), l)
}

// Log emits one record at level with raft's key/value pairs in group raft.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	l, ok := toSlogLevel(level)
	if !ok || !a.enabled(l) {
		return
	}
	attrs := make([]any, 0, 1+(len(a.implied)+len(args))/2)
	if a.name != "" {
		attrs = append(attrs, slog.String("logger", a.name))
	}
	attrs = appendPairs(attrs, a.implied)
	attrs = appendPairs(attrs, args)
	var extra []any
	if a.dedup != nil && slices.Contains(repetitive, msg) {
		ok, n := a.dedup.Allow(msg + "\x00" + peerOf(append(slices.Clone(a.implied), args...)))
		if !ok {
			return
		}
		if n > 0 {
			extra = append(extra, slog.Int("suppressed_repeats", n))
		}
	}
	a.logger.Log(context.Background(), l, msg, append([]any{slog.Group("raft", attrs...)}, extra...)...)
}

// peerOf returns the value of the argument raft names the peer with
// ("peer", "server-id" or "target"), if any.
func peerOf(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && (k == "peer" || k == "server-id" || k == "target") {
			return fmt.Sprint(flatten(args[i+1]))
		}
	}
	return ""
}

// appendPairs converts hclog key/value pairs to slog attributes. A dangling
// value gets the key hclog uses for it, EXTRA_VALUE_AT_END.
func appendPairs(dst []any, args []any) []any {
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			dst = append(dst, slog.Any("EXTRA_VALUE_AT_END", flatten(args[i])))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(flatten(args[i]))
		}
		dst = append(dst, slog.Any(key, flatten(args[i+1])))
	}
	return dst
}

// flatten turns hclog.Format, errors and fmt.Stringers into strings.
func flatten(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		f, ok := x[0].(string)
		if !ok {
			return fmt.Sprint(x...)
		}
		return fmt.Sprintf(f, x[1:]...)
	case error:
		if isNilPointer(v) {
			return "<nil>"
		}
		return x.Error()
	case fmt.Stringer:
		if isNilPointer(v) {
			return "<nil>"
		}
		return x.String()
	}
	return v
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// Trace logs at trace level.
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }

// Debug logs at debug level.
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }

// Info logs at info level.
func (a *hclogAdapter) Info(msg string, args ...any) { a.Log(hclog.Info, msg, args...) }

// Warn logs at warn level.
func (a *hclogAdapter) Warn(msg string, args ...any) { a.Log(hclog.Warn, msg, args...) }

// Error logs at error level.
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

// IsTrace reports whether trace records are emitted.
func (a *hclogAdapter) IsTrace() bool { return a.enabled(slogTrace) }

// IsDebug reports whether debug records are emitted.
func (a *hclogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }

// IsInfo reports whether info records are emitted.
func (a *hclogAdapter) IsInfo() bool { return a.enabled(slog.LevelInfo) }

// IsWarn reports whether warn records are emitted.
func (a *hclogAdapter) IsWarn() bool { return a.enabled(slog.LevelWarn) }

// IsError reports whether error records are emitted.
func (a *hclogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

// ImpliedArgs returns the pairs added with With.
func (a *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

// With returns a logger that adds args to every record.
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

// Name returns the logger's name.
func (a *hclogAdapter) Name() string { return a.name }

// Named returns a logger whose name has name appended (hclog joins with
// a dot).
func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed returns a logger with exactly name.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel sets the minimum level of this logger and the loggers derived
// from the same root. Off suppresses everything.
func (a *hclogAdapter) SetLevel(level hclog.Level) {
	l, ok := toSlogLevel(level)
	if !ok {
		l = slog.LevelError + 100
	}
	a.level.Set(l)
}

// GetLevel returns the minimum level.
func (a *hclogAdapter) GetLevel() hclog.Level { return fromSlogLevel(a.level.Level()) }

// StandardLogger returns a *log.Logger writing at opts.ForceLevel (info if
// unset). Level inference from the text is not supported.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	l := slog.LevelInfo
	if opts != nil {
		if sl, ok := toSlogLevel(opts.ForceLevel); ok {
			l = sl
		}
	}
	return slog.NewLogLogger(a.logger.WithGroup("raft").Handler(), l)
}

// StandardWriter returns the writer of StandardLogger(opts).
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(opts).Writer()
}

// discardLogger returns a logger that drops everything.
func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// dedupWindow is how long a repeated raft complaint about the same peer is
// suppressed after it was logged. With a peer dead, raft retries its
// heartbeat and replication many times a second, forever; one line per
// window (with the count of suppressed repeats) says the same.
const dedupWindow = 30 * time.Second
