package exec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSpecAppliesDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Spec
	}{
		{
			name: "json minimal gets every default",
			in:   `{"command": "sleep", "args": ["1000"]}`,
			want: Spec{Command: "sleep", Args: []string{"1000"}, Dir: "/", StopSignal: "SIGTERM", StopTimeout: Duration(10 * time.Second)},
		},
		{
			name: "json full, durations as strings and seconds",
			in: `{"command": "/usr/bin/python3", "args": ["-m", "http.server"], "env": {"A": "1"},
				"dir": "/srv", "stop_signal": "int", "stop_timeout": 20,
				"health_command": "curl", "health_args": ["-f", "http://x/"],
				"health_interval": "2s", "health_timeout": 0.5, "start_timeout": "1m"}`,
			want: Spec{Command: "/usr/bin/python3", Args: []string{"-m", "http.server"}, Env: map[string]string{"A": "1"},
				Dir: "/srv", StopSignal: "SIGINT", StopTimeout: Duration(20 * time.Second),
				HealthCommand: "curl", HealthArgs: []string{"-f", "http://x/"},
				HealthInterval: Duration(2 * time.Second), HealthTimeout: Duration(500 * time.Millisecond), StartTimeout: Duration(time.Minute)},
		},
		{
			name: "health check gets its own defaults",
			in:   `{"command": "sleep", "health_command": "true"}`,
			want: Spec{Command: "sleep", Dir: "/", StopSignal: "SIGTERM", StopTimeout: Duration(DefaultStopTimeout),
				HealthCommand: "true", HealthInterval: Duration(DefaultHealthInterval), HealthTimeout: Duration(DefaultHealthTimeout), StartTimeout: Duration(DefaultStartTimeout)},
		},
		{
			name: "an = in an env value, a signal number",
			in: `{"command": "/usr/bin/python3", "args": ["-m", "http.server"], "env": {"PYTHONPATH": "/a:/b", "EMPTY": ""},
				"stop_signal": "15", "stop_timeout": "1m30s", "health_command": "curl", "health_args": ["-f"]}`,
			want: Spec{Command: "/usr/bin/python3", Args: []string{"-m", "http.server"}, Env: map[string]string{"PYTHONPATH": "/a:/b", "EMPTY": ""},
				Dir: "/", StopSignal: "SIGTERM", StopTimeout: Duration(90 * time.Second),
				HealthCommand: "curl", HealthArgs: []string{"-f"},
				HealthInterval: Duration(DefaultHealthInterval), HealthTimeout: Duration(DefaultHealthTimeout), StartTimeout: Duration(DefaultStartTimeout)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseSpec: %v", err)
			}
			if !specEqual(got, tt.want) {
				t.Errorf("ParseSpec =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func specEqual(a, b Spec) bool {
	if len(a.Env) != len(b.Env) {
		return false
	}
	for k, v := range a.Env {
		if w, ok := b.Env[k]; !ok || w != v {
			return false
		}
	}
	a.Env, b.Env = nil, nil
	return strings.Join(a.Args, "\x00") == strings.Join(b.Args, "\x00") &&
		strings.Join(a.HealthArgs, "\x00") == strings.Join(b.HealthArgs, "\x00") &&
		a.Command == b.Command && a.Dir == b.Dir && a.StopSignal == b.StopSignal && a.StopTimeout == b.StopTimeout &&
		a.HealthCommand == b.HealthCommand && a.HealthInterval == b.HealthInterval &&
		a.HealthTimeout == b.HealthTimeout && a.StartTimeout == b.StartTimeout
}

func TestParseSpecRejectsBadSpecsNamingFieldAndValue(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"json without command", `{"args": ["x"]}`, []string{"command", "required"}},
		{"relative command path", `{"command": "bin/x"}`, []string{`command "bin/x"`, "absolute path or a bare program name"}},
		{"unknown signal", `{"command": "x", "stop_signal": "SIGFOO"}`, []string{`stop_signal "SIGFOO"`, "unknown signal"}},
		{"signal number not allowed", `{"command": "x", "stop_signal": "19"}`, []string{`stop_signal "19"`, "not a valid stop signal"}},
		{"negative stop timeout", `{"command": "x", "stop_timeout": "-1s"}`, []string{`stop_timeout "-1s"`, "negative"}},
		{"absurd stop timeout", `{"command": "x", "stop_timeout": "48h"}`, []string{`stop_timeout "48h0m0s"`, "at most 24h"}},
		{"relative dir", `{"command": "x", "dir": "srv"}`, []string{`dir "srv"`, "absolute"}},
		{"empty env name", `{"command": "x", "env": {"": "v"}}`, []string{"env", "empty variable name"}},
		{"health args without command", `{"command": "x", "health_args": ["-f"]}`, []string{`health_args "-f"`, "without health_command"}},
		{"tiny health interval", `{"command": "x", "health_command": "true", "health_interval": "1ms"}`, []string{`health_interval "1ms"`, "at least 10ms"}},
		{"json unknown field", `{"command": "x", "comand": "y"}`, []string{`unknown field "comand"`}},
		{"json wrong type", `{"command": "x", "args": "a b"}`, []string{"field args", "want []string"}},
		{"json bad duration", `{"command": "x", "stop_timeout": "soon"}`, []string{`duration "soon"`}},
		{"json trailing data", `{"command": "x"} {}`, []string{"trailing data"}},
		{"not JSON", "command=x\n", []string{"parse exec spec", "invalid character"}},
		{"nul in arg", "{\"command\": \"x\", \"args\": [\"a\\u0000b\"]}", []string{"args[0]", "NUL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseSpec(%q) succeeded, want an error", tt.in)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateReturnsFieldError(t *testing.T) {
	err := Spec{Command: "x", StopSignal: "NOPE"}.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "stop_signal" || fe.Value != "NOPE" {
		t.Fatalf("Validate = %v, want a *FieldError for stop_signal NOPE", err)
	}
	if err := (Spec{Command: "sleep"}).Validate(); err != nil {
		t.Fatalf("Validate of a minimal spec: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"SIGTERM", "SIGTERM", true},
		{"term", "SIGTERM", true},
		{" Int ", "SIGINT", true},
		{"9", "SIGKILL", true},
		{"SIGUSR1", "SIGUSR1", true},
		{"SIGSTOP", "", false}, // would never stop anything
		{"0", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		sig, err := ParseSignal(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseSignal(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && SignalName(sig) != tt.want {
			t.Errorf("ParseSignal(%q) = %s, want %s", tt.in, SignalName(sig), tt.want)
		}
	}
}

func TestDurationJSONRoundTrip(t *testing.T) {
	s := Spec{Command: "x", StopTimeout: Duration(1500 * time.Millisecond)}
	b, err := s.StopTimeout.MarshalJSON()
	if err != nil || string(b) != `"1.5s"` {
		t.Fatalf("MarshalJSON = %s, %v; want \"1.5s\"", b, err)
	}
	var d Duration
	if err := d.UnmarshalJSON(b); err != nil || d != s.StopTimeout {
		t.Fatalf("UnmarshalJSON(%s) = %v, %v", b, d, err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(`{"command": "sleep", "args": ["1"], "stop_timeout": 3}`))
	f.Add([]byte(`{"command": "sleep", "args": ["1"], "stop_signal": "INT", "health_command": "true", "health_interval": 1}`))
	f.Add([]byte(`{"command": "x", "stop_timeout": 1e300}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			return
		}
		// Whatever parses is normalised and valid.
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed spec does not validate: %v", err)
		}
		if s.StopTimeout <= 0 || s.Dir == "" || s.StopSignal == "" {
			t.Fatalf("parsed spec lacks defaults: %+v", s)
		}
	})
}
