package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"haxd/ha"
)

// TestHTTPErrorsAreJSON: unknown paths, wrong methods and oversized bodies
// get a JSON error body with the right status, and change nothing.
func TestHTTPErrorsAreJSON(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(NewServer(f, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	big := `{"text": "` + strings.Repeat("x", maxBody) + `"}`
	tests := []struct {
		name, method, path, body string
		code                     int
		msg, allow               string
	}{
		{"unknown path", "GET", "/v1/nothing", "", 404, "no API endpoint /v1/nothing", ""},
		{"wrong method", "DELETE", "/v1/status", "", 405, "method DELETE not allowed on /v1/status", "GET"},
		{"wrong method, several allowed", "PATCH", "/v1/resources", "", 405, "not allowed", "POST, PUT, DELETE"},
		{"body over 1 MiB", "PUT", "/v1/rules", big, 413, "request body larger than 1048576 bytes", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e Error
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tt.code || derr != nil || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%s: status %d, body %+v (decode err %v); want %d with %q", tt.name, resp.StatusCode, e, derr, tt.code, tt.msg)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tt.name, ct)
		}
		if tt.allow != "" && resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s: Allow %q, want %q", tt.name, resp.Header.Get("Allow"), tt.allow)
		}
	}
	if f.changes != 0 {
		t.Errorf("%d changes after refused requests", f.changes)
	}
}

// TestLimitsAndDisarmedRefusals: an over-long SID is refused at the API
// (with a shortened value in the message), and migrate, relocate and stop
// are refused while the stack is disarmed instead of waiting silently.
func TestLimitsAndDisarmedRefusals(t *testing.T) {
	f := newFake()
	c := startServer(t, f)
	ctx := context.Background()
	long := "exec:" + strings.Repeat("a", 100000)
	err := c.AddResource(ctx, AddResourceRequest{SID: long})
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Message, "at most 64 allowed") || len(ae.Message) > 300 {
		t.Errorf("long sid: %v", err)
	}
	if _, err := ha.ParseSID("exec:" + strings.Repeat("a", ha.MaxSIDLen-5)); err != nil {
		t.Errorf("a SID of exactly MaxSIDLen bytes is refused: %v", err)
	}

	f.st.Manager.Disarm = &ha.Disarm{Mode: ha.DisarmFreeze, State: ha.Disarmed}
	for name, call := range map[string]func() error{
		"migrate":  func() error { return c.Migrate(ctx, MoveRequest{SID: "exec:web", Node: "node2"}) },
		"relocate": func() error { return c.Relocate(ctx, MoveRequest{SID: "exec:web", Node: "node2"}) },
		"stop":     func() error { return c.Stop(ctx, StopRequest{SID: "exec:web", Timeout: 5}) },
	} {
		err := call()
		if !errors.As(err, &ae) || ae.Code != 409 || !strings.Contains(ae.Message, "disarmed") {
			t.Errorf("%s while disarmed: %v, want 409 naming disarmed", name, err)
		}
	}
	if len(f.commands) != 0 || f.changes != 0 {
		t.Errorf("refused requests changed state: commands %q", f.commands)
	}
	f.st.Commands = []string{"arm-ha"}
	if err := c.Migrate(ctx, MoveRequest{SID: "exec:web", Node: "node2"}); err != nil {
		t.Errorf("migrate with arm-ha queued: %v", err)
	}
	f.st.Manager.Disarm = nil
	f.st.Commands = []string{"disarm-ha freeze"}
	if err := c.Stop(ctx, StopRequest{SID: "exec:web"}); !errors.As(err, &ae) || ae.Code != 409 || !strings.Contains(ae.Message, "being disarmed") {
		t.Errorf("stop with disarm-ha queued: %v, want 409", err)
	}
	if len(f.commands) != 1 {
		t.Errorf("commands %q, want only the migrate queued while arm-ha was pending", f.commands)
	}
}
