package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests posts arbitrary bodies to every write endpoint: the server
// must answer (never panic) with 2xx or a 4xx naming what is wrong.
func FuzzRequests(f *testing.F) {
	paths := []string{"/v1/resources", "/v1/migrate", "/v1/relocate", "/v1/stop", "/v1/node-maintenance", "/v1/disarm", "/v1/rules", "/v1/groups", "/v1/datacenter", "/v1/node-remove"}
	for _, b := range []string{`{"sid":"exec:web","node":"node2"}`, `{"sid":"exec:x","state":"started","max_restart":2,"spec":{"command":"sleep"}}`,
		`{"sid":"exec:web","timeout":0}`, `{"node":"node2","enable":true}`, `{"mode":"freeze"}`, `{"text":"node-affinity: a\n\tnodes n1\n"}`, `{`, `[]`, `null`} {
		for i := range paths {
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		srv := NewServer(newFake(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		path := paths[int(which)%len(paths)]
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
			if rec.Code >= 500 {
				t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body)
			}
		}
	})
}
