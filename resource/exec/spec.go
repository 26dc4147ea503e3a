// Package exec is the resource agent for type "exec": an HA service that is
// one supervised process (and whatever it forks) on the local node.
//
// Start launches the process in its own session and process group, and in
// its own cgroup v2 directory when a writable cgroup parent is configured. The
// process is not tied to the agent: its stdio goes to a log file in the state
// directory, no parent-death signal is set, and a state file per service
// records its pid, process group, kernel start time, boot id and cgroup. A
// new agent over the same state directory (after a restart or crash of haxd)
// therefore re-adopts every service that still runs, which is what the
// freeze-on-LRM-restart semantics need (ha-semantics §9): the services keep
// running while the LRM restarts.
//
// Running trusts a recorded pid only when its start time and the boot id
// still match, so a reused pid is never taken for the service and never
// signalled. Stop sends the stop signal to the process group (and to every
// process of the cgroup), waits up to the stop timeout and then kills what
// is left with SIGKILL (cgroup.kill when available).
//
// The Spec of a service (command, arguments, environment, directory, stop
// signal and timeout, health check) comes from a SpecSource; ParseSpec reads
// it from JSON (the resource config stores it so).
package exec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults applied by Spec.WithDefaults to zero fields.
const (
	// DefaultStopSignal is the signal Stop sends first.
	DefaultStopSignal = "SIGTERM"
	// DefaultStopTimeout is how long Stop waits after the stop signal
	// before it sends SIGKILL.
	DefaultStopTimeout = 10 * time.Second
	// DefaultHealthInterval is the period of the health check.
	DefaultHealthInterval = time.Second
	// DefaultHealthTimeout bounds one run of the health check.
	DefaultHealthTimeout = 5 * time.Second
	// DefaultStartTimeout bounds how long Start waits for the health check
	// to pass for the first time.
	DefaultStartTimeout = 30 * time.Second
)

// maxDuration caps every duration field; larger values are almost always a
// unit mistake (milliseconds written as seconds).
const maxDuration = 24 * time.Hour

// Spec describes one exec service. The zero value of every optional field
// means "default", as documented per field; WithDefaults fills them in and
// Validate rejects nonsense.
type Spec struct {
	// Command is the program to run: an absolute path, or a name looked up
	// in PATH of the service environment (PATH from Env, else the default
	// /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) when
	// the service starts. Required.
	Command string `json:"command"`
	// Args are the arguments after the program name. Default none.
	Args []string `json:"args,omitempty"`
	// Env holds the environment variables of the process, on top of a
	// minimal base environment (PATH, and HAXD_SID with the service id).
	// The agent's own environment is not inherited. Keys are non-empty and
	// contain no '=' or NUL. Default none.
	Env map[string]string `json:"env,omitempty"`
	// Dir is the working directory, an absolute path. Default "/".
	Dir string `json:"dir,omitempty"`
	// StopSignal is the signal that asks the process group to stop, by name
	// ("SIGTERM", "TERM", case-insensitive) or number ("15"). Default
	// SIGTERM.
	StopSignal string `json:"stop_signal,omitempty"`
	// StopTimeout is how long Stop waits after StopSignal before it
	// SIGKILLs whatever is left; a timeout passed to Stop overrides it.
	// Zero means the default, 10 s; hard stops are asked for through Stop.
	StopTimeout Duration `json:"stop_timeout,omitempty"`
	// HealthCommand is an optional program that checks the service: exit
	// status 0 means healthy, anything else (or running longer than
	// HealthTimeout) means unhealthy, and an unhealthy service counts as not
	// running. It runs with the service's Env (plus HAXD_PID, the service's
	// pid) and Dir. Resolved like Command. Default none (no health check).
	HealthCommand string `json:"health_command,omitempty"`
	// HealthArgs are the health check's arguments. Default none.
	HealthArgs []string `json:"health_args,omitempty"`
	// HealthInterval is the period of the health check: Start polls at
	// this period until the check first passes, and Running reuses a result
	// younger than this instead of running the check again. Default 1 s.
	HealthInterval Duration `json:"health_interval,omitempty"`
	// HealthTimeout bounds one run of the health check; a check still
	// running then is killed and counts as failed. Default 5 s.
	HealthTimeout Duration `json:"health_timeout,omitempty"`
	// StartTimeout bounds how long Start waits for the health check to pass
	// for the first time; if it does not, Start stops the process again and
	// fails. Only used with a health check. Default 30 s.
	StartTimeout Duration `json:"start_timeout,omitempty"`
}

// Duration is a time.Duration that reads from JSON either as a Go duration
// string ("10s", "1m30s") or as a number of seconds (10, 0.5), and writes as a
// duration string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string such as "10s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := parseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration %s: want a string like \"10s\" or a number of seconds", b)
	}
	v, err := secondsToDuration(f)
	if err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// parseDuration reads "10s" style durations, and bare numbers as seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		v, err := secondsToDuration(f)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		return v, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a number of seconds or a duration like \"10s\"", s)
	}
	return v, nil
}

func secondsToDuration(f float64) (time.Duration, error) {
	if f != f || f > maxDuration.Seconds() || f < -maxDuration.Seconds() {
		return 0, fmt.Errorf("out of range")
	}
	return time.Duration(f * float64(time.Second)), nil
}

// FieldError reports a Spec field with a bad value.
type FieldError struct {
	// Field is the field's name in the JSON form.
	Field string
	// Value is the offending value as written.
	Value string
	// Reason says what is wrong.
	Reason string
}

// Error returns e.g. `stop_signal "SIGFOO": unknown signal`.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// WithDefaults returns s with every zero optional field set to its default.
func (s Spec) WithDefaults() Spec {
	if s.Dir == "" {
		s.Dir = "/"
	}
	if s.StopSignal == "" {
		s.StopSignal = DefaultStopSignal
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = Duration(DefaultStopTimeout)
	}
	if s.HealthCommand != "" {
		if s.HealthInterval == 0 {
			s.HealthInterval = Duration(DefaultHealthInterval)
		}
		if s.HealthTimeout == 0 {
			s.HealthTimeout = Duration(DefaultHealthTimeout)
		}
		if s.StartTimeout == 0 {
			s.StartTimeout = Duration(DefaultStartTimeout)
		}
	}
	return s
}

// Validate reports the first bad field of s (with defaults applied) as a
// *FieldError, or nil. It does not change s; Normalize returns the checked,
// defaulted spec.
func (s Spec) Validate() error {
	_, err := s.Normalize()
	return err
}

// Normalize applies the defaults, checks every field, and returns the spec
// with StopSignal in canonical form ("SIGTERM"). Errors are *FieldError.
func (s Spec) Normalize() (Spec, error) {
	s = s.WithDefaults()
	if err := checkCommand("command", s.Command); err != nil {
		return Spec{}, err
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return Spec{}, &FieldError{Field: fmt.Sprintf("args[%d]", i), Value: a, Reason: "contains a NUL byte"}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		v := s.Env[k]
		switch {
		case k == "":
			return Spec{}, &FieldError{Field: "env", Value: k + "=" + v, Reason: "empty variable name"}
		case strings.ContainsAny(k, "=\x00"):
			return Spec{}, &FieldError{Field: "env", Value: k, Reason: "variable name contains '=' or NUL"}
		case strings.IndexByte(v, 0) >= 0:
			return Spec{}, &FieldError{Field: "env", Value: k, Reason: "value contains a NUL byte"}
		}
	}
	if !filepath.IsAbs(s.Dir) || strings.IndexByte(s.Dir, 0) >= 0 {
		return Spec{}, &FieldError{Field: "dir", Value: s.Dir, Reason: "must be an absolute path"}
	}
	sig, err := ParseSignal(s.StopSignal)
	if err != nil {
		return Spec{}, &FieldError{Field: "stop_signal", Value: s.StopSignal, Reason: err.Error()}
	}
	s.StopSignal = SignalName(sig)
	durations := []struct {
		name string
		d    Duration
	}{
		{"stop_timeout", s.StopTimeout},
		{"health_interval", s.HealthInterval},
		{"health_timeout", s.HealthTimeout},
		{"start_timeout", s.StartTimeout},
	}
	for _, f := range durations {
		if f.d < 0 {
			return Spec{}, &FieldError{Field: f.name, Value: f.d.D().String(), Reason: "must not be negative"}
		}
		if f.d.D() > maxDuration {
			return Spec{}, &FieldError{Field: f.name, Value: f.d.D().String(), Reason: "must be at most 24h"}
		}
	}
	if s.HealthCommand == "" {
		if len(s.HealthArgs) > 0 {
			return Spec{}, &FieldError{Field: "health_args", Value: strings.Join(s.HealthArgs, " "), Reason: "given without health_command"}
		}
		return s, nil
	}
	if err := checkCommand("health_command", s.HealthCommand); err != nil {
		return Spec{}, err
	}
	for i, a := range s.HealthArgs {
		if strings.IndexByte(a, 0) >= 0 {
			return Spec{}, &FieldError{Field: fmt.Sprintf("health_args[%d]", i), Value: a, Reason: "contains a NUL byte"}
		}
	}
	if s.HealthInterval < Duration(10*time.Millisecond) {
		return Spec{}, &FieldError{Field: "health_interval", Value: s.HealthInterval.D().String(), Reason: "must be at least 10ms"}
	}
	if s.HealthTimeout < Duration(10*time.Millisecond) {
		return Spec{}, &FieldError{Field: "health_timeout", Value: s.HealthTimeout.D().String(), Reason: "must be at least 10ms"}
	}
	return s, nil
}

func checkCommand(field, c string) error {
	switch {
	case strings.TrimSpace(c) == "":
		return &FieldError{Field: field, Value: c, Reason: "required"}
	case strings.IndexByte(c, 0) >= 0:
		return &FieldError{Field: field, Value: c, Reason: "contains a NUL byte"}
	case strings.Contains(c, "/") && !filepath.IsAbs(c):
		return &FieldError{Field: field, Value: c, Reason: "must be an absolute path or a bare program name"}
	}
	return nil
}

// ParseSpec reads a Spec from a JSON object with the field names of the
// Spec's json tags (as the API stores it); unknown fields are errors.
// Durations are strings ("10s") or numbers of seconds. The result is
// normalised and validated.
func ParseSpec(data []byte) (Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Spec{}, fmt.Errorf("parse exec spec: field %s: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return Spec{}, fmt.Errorf("parse exec spec: %w", err)
	}
	if dec.More() {
		return Spec{}, errors.New("parse exec spec: trailing data after the JSON object")
	}
	n, err := s.Normalize()
	if err != nil {
		return Spec{}, fmt.Errorf("exec spec: %w", err)
	}
	return n, nil
}

// stopSignals lists the signals a stop signal may name, in number order.
func stopSignals() [10]syscall.Signal {
	return [...]syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGABRT,
		syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGWINCH}
}

// ParseSignal reads a signal by name ("SIGTERM", "term") or number ("15").
// Only signals that make sense as a stop signal are accepted.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		for _, sig := range stopSignals() {
			if int(sig) == n {
				return sig, nil
			}
		}
		return 0, fmt.Errorf("signal number %d is not a valid stop signal", n)
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	for _, sig := range stopSignals() {
		if SignalName(sig) == t {
			return sig, nil
		}
	}
	return 0, errors.New("unknown signal (want e.g. SIGTERM, INT or 15)")
}

// SignalName returns the canonical name of sig ("SIGTERM"), or its number.
func SignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGALRM:
		return "SIGALRM"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGWINCH:
		return "SIGWINCH"
	}
	return strconv.Itoa(int(sig))
}
