package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"haxd/pki"
)

// TLSServerConfig is the TLS config of the agent's HTTPS API listener
// (api_addr): TLS 1.3 only, the node's own certificate, and a client
// certificate of the cluster CA required on every connection, carrying a
// role (pki.RoleOf). A client without a certificate, with one of another
// CA, an expired one or one without a role fails the handshake; the
// client sees the TLS alert ("certificate required", "unknown certificate
// authority", "expired certificate", "bad certificate").
func TLSServerConfig(cert tls.Certificate, cas *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("client presented no certificate")
			}
			if _, err := pki.RoleOf(cs.PeerCertificates[0]); err != nil {
				return fmt.Errorf("client certificate refused: %w", err)
			}
			return nil
		},
	}
}

// TLSClientConfig is the TLS config of a client of the HTTPS API
// listener: it presents m's certificate and accepts a server only if its
// certificate is a node certificate of m's CA (and, when serverName is
// not empty, names that node). Nodes are identified by the node name in
// their certificate, not by a host name, as on the raft port.
func TLSClientConfig(m *pki.Material, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Always present the certificate, even when its CA is not the
		// one the server asks for: the server then says why it refuses
		// it ("unknown certificate authority") instead of "certificate
		// required".
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &m.Cert, nil },
		ServerName:           "haxd",
		// The chain and the node name are checked in VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			node, err := pki.VerifyNode(cs.PeerCertificates, m.CAs, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("the agent's %w", err)
			}
			if serverName != "" && node != serverName {
				return fmt.Errorf("the agent's certificate names node %q, expected %q", node, serverName)
			}
			return nil
		},
	}
}

// RoleHandler serves h on the HTTPS API listener with the role of the
// client certificate enforced: RoleAdmin may do everything, RoleReadOnly
// only GET requests (status, config, rules, groups, datacenter, members);
// any other request of a read-only client answers 403 with a JSON error
// naming the role. A request without a verified client certificate (not
// possible behind TLSServerConfig) answers 403 too.
func RoleHandler(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			writeJSON(w, http.StatusForbidden, &Error{Code: http.StatusForbidden, Message: "no verified client certificate"})
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		role, err := pki.RoleOf(leaf)
		if err != nil {
			writeJSON(w, http.StatusForbidden, &Error{Code: http.StatusForbidden, Message: err.Error()})
			return
		}
		if role == pki.RoleAdmin || r.Method == http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		client := leaf.Subject.CommonName
		log.Warn("refused a write of a read-only client", "client", client, "role", role, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusForbidden, &Error{Code: http.StatusForbidden,
			Message: fmt.Sprintf("role %s (client certificate %q) may not %s %s: it may only read; writes need a certificate with role %s",
				role, client, r.Method, r.URL.Path, pki.RoleAdmin)})
	})
}
