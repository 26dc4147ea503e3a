package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// LevelEmail is the level of operator notifications (Env.Notify), printed as
// "emai" in the PVE log format.
const LevelEmail = slog.LevelError + 4

// Origins used by the harness itself.
const (
	OriginHardware = "hardware"
	OriginCmdlist  = "cmdlist"
	OriginWatchdog = "watchdog"
	OriginRunLoop  = "run-loop"
)

// Record is one line of the simulation log.
type Record struct {
	// Time is the virtual time of the line: the logging daemon's env time or
	// the hardware time for harness lines.
	Time time.Duration
	// Level is the slog level; LevelEmail marks notifications.
	Level slog.Level
	// Origin is "<node>/crm", "<node>/lrm" or a harness id such as "hardware".
	Origin string
	// Daemon is set for lines of a CRM or LRM, whose level names are cut to
	// four characters in the PVE format.
	Daemon bool
	// Msg is the message, without trailing newline.
	Msg string
	// Trailer is an extra line printed after the message in the PVE format
	// (the single space after a fatal "exit simulation" line).
	Trailer string
	// Attrs are the structured attributes the daemon attached (text and JSON
	// formats only).
	Attrs []slog.Attr
}

// LevelName returns the PVE name of a level: info, notice, warning, err or
// email; debug for anything below info.
func LevelName(l slog.Level) string {
	switch {
	case l >= LevelEmail:
		return "email"
	case l >= slog.LevelError:
		return "err"
	case l >= slog.LevelWarn:
		return "warning"
	case l >= slog.LevelInfo+2:
		return "notice"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// Sink receives the log records of a run in order.
type Sink interface {
	Emit(r Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Record)

// Emit calls f(r).
func (f SinkFunc) Emit(r Record) { f(r) }

// malformedLRMLine is the one upstream LRM message logged with a malformed
// level string; the PVE simulator prints it as an empty line followed by a
// line starting with a tab and four spaces (scenario-format §6).
const malformedLRMLine = "Restarting LRM in maintenance mode may be delayed until all services are moved"

// FormatPVE renders r in the log.expect format ("%-5s %5d %12s: %s"),
// including the final newline. Debug records render as "".
func FormatPVE(r Record) string {
	if r.Level < slog.LevelInfo {
		return ""
	}
	lvl := LevelName(r.Level)
	if r.Daemon && len(lvl) > 4 {
		lvl = lvl[:4]
	}
	secs := int64(r.Time / time.Second)
	var b strings.Builder
	if r.Daemon && strings.HasSuffix(r.Origin, "/lrm") && r.Msg == malformedLRMLine {
		fmt.Fprintf(&b, "\n\t    %5d %12s: %s\n", secs, r.Origin, r.Msg)
	} else {
		fmt.Fprintf(&b, "%-5s %5d %12s: %s\n", lvl, secs, r.Origin, r.Msg)
	}
	if r.Trailer != "" {
		b.WriteString(r.Trailer)
		b.WriteByte('\n')
	}
	return b.String()
}

// PVEWriter returns a sink writing the PVE log format to w.
func PVEWriter(w io.Writer) Sink {
	return SinkFunc(func(r Record) {
		if s := FormatPVE(r); s != "" {
			_, _ = io.WriteString(w, s)
		}
	})
}

// SlogWriter returns a sink that re-emits every record through h (a slog
// text or JSON handler) with the virtual time in seconds as attribute "t"
// and the origin as attribute "origin". Records carry no wall-clock time.
func SlogWriter(h slog.Handler) Sink {
	return SinkFunc(func(r Record) {
		if r.Level < slog.LevelInfo {
			return
		}
		rec := slog.NewRecord(time.Time{}, r.Level, r.Msg, 0)
		rec.AddAttrs(slog.Float64("t", r.Time.Seconds()), slog.String("origin", r.Origin))
		rec.AddAttrs(r.Attrs...)
		_ = h.Handle(context.Background(), rec)
	})
}

// SlogHandlerOptions are handler options that print PVE level names; use
// them with slog.NewTextHandler or slog.NewJSONHandler for SlogWriter.
func SlogHandlerOptions() *slog.HandlerOptions {
	return &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String(slog.LevelKey, LevelName(l))
				}
			}
			return a
		},
	}
}

// daemonHandler is the slog handler of one daemon's Env: it stamps records
// with the daemon's origin and its env clock.
type daemonHandler struct {
	origin string
	clock  *time.Duration
	emit   func(Record)
	attrs  []slog.Attr
	group  string
}

func (h *daemonHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo
}

func (h *daemonHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		attrs = append(attrs, a)
		return true
	})
	h.emit(Record{Time: *h.clock, Level: r.Level, Origin: h.origin, Daemon: true,
		Msg: strings.TrimSuffix(r.Message, "\n"), Attrs: attrs})
	return nil
}

func (h *daemonHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *daemonHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	if c.group != "" {
		c.group += "." + name
	} else {
		c.group = name
	}
	return &c
}
