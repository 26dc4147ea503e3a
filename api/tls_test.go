package api

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"haxd/pki"
)

// startTLSAPI serves the real API for b over real TLS 1.3 with the node
// certificate of node1 from ca, as the agent's api_addr listener does.
func startTLSAPI(t *testing.T, ca *pki.CA, b Backend) string {
	t.Helper()
	now := time.Now()
	server, err := ca.Sign(pki.CertOptions{Node: "node1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewUnstartedServer(RoleHandler(NewServer(b, log), log))
	srv.TLS = TLSServerConfig(server, ca.Pool())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestTLSListenerRoles: over real TLS, a read-only certificate can read
// the status and gets a 403 naming its role on a write; an admin
// certificate and a node certificate can write; no certificate, one of
// another CA and an expired one fail the handshake with the TLS alert
// that says why; the client refuses a server of another CA or of another
// node than the one it pins.
func TestTLSListenerRoles(t *testing.T) {
	now := time.Now()
	ca, err := pki.CreateCA(t.TempDir(), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.CreateCA(t.TempDir(), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	addr := startTLSAPI(t, ca, f)

	client := func(c tls.Certificate, pool *pki.CA, serverName string) *Client {
		m := &pki.Material{Cert: c, CAs: pool.Pool()}
		return NewTLSClient(addr, TLSClientConfig(m, serverName))
	}
	sign := func(signer *pki.CA, opts pki.ClientOptions) tls.Certificate {
		c, err := signer.SignClient(opts, now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	readOnly := sign(ca, pki.ClientOptions{Name: "ops", Role: pki.RoleReadOnly})
	admin := sign(ca, pki.ClientOptions{Name: "root1", Role: pki.RoleAdmin})
	node, err := ca.Sign(pki.CertOptions{Node: "node2"}, now)
	if err != nil {
		t.Fatal(err)
	}
	foreign := sign(other, pki.ClientOptions{Name: "ops", Role: pki.RoleAdmin})
	expired := sign(ca, pki.ClientOptions{Name: "old", Role: pki.RoleAdmin, NotBefore: now.Add(-48 * time.Hour), Validity: time.Hour})

	for _, tt := range []struct {
		name       string
		cl         *Client
		readErr    string // "" when reading the status works
		writeCode  int    // 0 when the write works
		writeErr   string
		serverName string
	}{
		{name: "read-only", cl: client(readOnly, ca, ""), writeCode: 403, writeErr: `role read-only (client certificate "ops") may not POST /v1/resources`},
		{name: "admin", cl: client(admin, ca, "")},
		{name: "node certificate", cl: client(node, ca, "node1")},
		{name: "no certificate", cl: client(tls.Certificate{}, ca, ""), readErr: "certificate required"},
		{name: "another CA", cl: client(foreign, ca, ""), readErr: "unknown certificate authority"},
		{name: "expired", cl: client(expired, ca, ""), readErr: "expired certificate"},
		{name: "server of another CA", cl: client(admin, other, ""), readErr: "not one of the cluster CA"},
		{name: "server is another node", cl: client(admin, ca, "node3"), readErr: `names node "node1", expected "node3"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tt.cl.Status(t.Context())
			if tt.readErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.readErr) {
					t.Fatalf("Status = %v, want an error with %q", err, tt.readErr)
				}
				return
			}
			if err != nil || st.LocalNode != "node1" {
				t.Fatalf("Status: %+v, %v", st, err)
			}
			if _, err := tt.cl.Rules(t.Context()); err != nil {
				t.Fatalf("Rules: %v", err)
			}
			before := f.changes
			err = tt.cl.AddResource(t.Context(), AddResourceRequest{SID: "exec:" + strings.ReplaceAll(tt.name, " ", "-")})
			if tt.writeCode != 0 {
				var ae *Error
				if !errors.As(err, &ae) || ae.Code != tt.writeCode || !strings.Contains(ae.Message, tt.writeErr) {
					t.Fatalf("AddResource = %v, want %d with %q", err, tt.writeCode, tt.writeErr)
				}
				if f.changes != before {
					t.Fatal("a refused write changed the backend")
				}
				return
			}
			if err != nil || f.changes != before+1 {
				t.Fatalf("AddResource = %v (changes %d -> %d)", err, before, f.changes)
			}
		})
	}
}
