package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"haxd/api"
	"haxd/pki"
)

// serveMemTLS serves the real API for b on an HTTPS listener as the
// agent's api_addr does, with node1's certificate from the CA in dir.
func serveMemTLS(t *testing.T, dir string, b *memBackend) string {
	t.Helper()
	m, err := pki.Load(filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.CertFile("node1")), filepath.Join(dir, pki.KeyFile("node1")), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewUnstartedServer(api.RoleHandler(api.NewServer(b, log), log))
	srv.TLS = api.TLSServerConfig(m.Cert, m.CAs)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestHAOverHTTPS: `haxd ha --address` talks to the HTTPS API listener
// with the certificates `haxd tls` makes: a read-only client reads the
// status and gets exit 2 naming its role on a write, which changes
// nothing; admin and node certificates write; missing flags, an expired
// certificate, one of another CA and a server of another CA or node are
// refused with an error that says so.
func TestHAOverHTTPS(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	var out bytes.Buffer
	for _, cmd := range []interface{ run(io.Writer) error }{
		&TLSCACreateCmd{Dir: dir, Days: 10}, &TLSCACreateCmd{Dir: other, Days: 10},
		&TLSCertCreateCmd{Node: "node1", Dir: dir, Days: 5}, &TLSCertCreateCmd{Node: "node2", Dir: dir, Days: 5},
		&TLSCertCreateCmd{Client: "ops", Role: "read-only", Dir: dir, Days: 5},
		&TLSCertCreateCmd{Client: "boss", Role: "admin", Dir: dir, Days: 5},
		&TLSCertCreateCmd{Client: "stranger", Role: "admin", Dir: other, Days: 5},
	} {
		if err := cmd.run(&out); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.CreateClientCert(dir, pki.ClientOptions{Name: "old", Role: pki.RoleAdmin, NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, pki.CAFile)
	tlsFlags := func(cadir, name string) []string {
		return []string{"--tls-ca", filepath.Join(cadir, pki.CAFile), "--tls-cert", filepath.Join(cadir, pki.CertFile(name)), "--tls-key", filepath.Join(cadir, pki.KeyFile(name))}
	}
	for _, tt := range []struct {
		name   string
		flags  []string
		env    map[string]string
		args   []string
		code   int
		output string
		change []string
	}{
		{name: "read-only reads the status", flags: tlsFlags(dir, "ops"), args: []string{"status"}, output: "quorum OK"},
		{name: "read-only reads the config", flags: tlsFlags(dir, "ops"), args: []string{"config", "exec:web"}, output: "revision 3"},
		{name: "read-only may not write", flags: tlsFlags(dir, "ops"), args: []string{"migrate", "exec:web", "node2"}, code: ExitUsage,
			output: `role read-only (client certificate "ops") may not POST /v1/migrate`},
		{name: "admin writes", flags: tlsFlags(dir, "boss"), args: []string{"migrate", "exec:web", "node2"}, change: []string{"queue migrate exec:web node2"}},
		{name: "a node certificate writes", flags: append(tlsFlags(dir, "node2"), "--tls-server-name", "node1"), args: []string{"stop", "exec:web"},
			change: []string{"queue stop exec:web 60"}},
		{name: "environment", env: map[string]string{"HAXD_TLS_CA": caFile, "HAXD_TLS_CERT": filepath.Join(dir, "ops.pem"), "HAXD_TLS_KEY": filepath.Join(dir, "ops-key.pem")},
			args: []string{"status", "--output", "json"}, output: `"local_node": "node1"`},
		{name: "no client certificate", flags: []string{"--tls-ca", caFile}, args: []string{"status"}, code: ExitUsage,
			output: "needs --tls-cert, --tls-key"},
		{name: "socket and address", flags: append(tlsFlags(dir, "ops"), "--socket", "/nonexistent.sock"), args: []string{"status"}, code: ExitUsage, output: "give one"},
		{name: "expired client certificate", flags: tlsFlags(dir, "old"), args: []string{"status"}, code: ExitUsage, output: "expired"},
		{name: "client certificate of another CA", flags: []string{"--tls-ca", caFile, "--tls-cert", filepath.Join(other, "stranger.pem"), "--tls-key", filepath.Join(other, "stranger-key.pem")},
			args: []string{"status"}, code: ExitUsage, output: "not a valid certificate of the CA"},
		{name: "server of another CA", flags: tlsFlags(other, "stranger"), args: []string{"status"}, code: ExitFailure, output: "not one of the cluster CA"},
		{name: "server is another node", flags: append(tlsFlags(dir, "ops"), "--tls-server-name", "node3"), args: []string{"status"}, code: ExitFailure,
			output: `names node "node1", expected "node3"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newMemBackend()
			addr := serveMemTLS(t, dir, b)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			t.Setenv("HAXD_ADDRESS", addr)
			var out, errb bytes.Buffer
			code := run(append(append([]string{"ha"}, tt.flags...), tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.output) {
				t.Fatalf("exit %d, output %q %q; want exit %d with %q", code, out.String(), errb.String(), tt.code, tt.output)
			}
			if !slices.Equal(b.log, tt.change) {
				t.Errorf("changes %q, want %q", b.log, tt.change)
			}
		})
	}
}
