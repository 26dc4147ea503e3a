package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"haxd/api"
)

// maxPageEvents is how many recent events the status page shows.
const maxPageEvents = 50

// serveObservability serves the opt-in listener on addr: Prometheus
// metrics on /metrics and the read-only status page (statuspage.go).
func (a *Agent) serveObservability(addr string) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.n.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil}))
	a.statusPage(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l) //nolint:errcheck // returns on Close
	a.log.Info("serving metrics and the status page", "metrics_addr", l.Addr().String())
	return srv, nil
}

// serveAPITLS serves the API on the HTTPS listener at addr (api_addr):
// TLS 1.3 with the node's certificate, a client certificate of the
// cluster CA required, and the certificate's role enforced
// (api.RoleHandler). Refused handshakes are logged with the reason.
func (a *Agent) serveAPITLS(addr string, cert tls.Certificate, cas *x509.CertPool) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api_addr %s: %w", addr, err)
	}
	log := a.log.With("component", "api-tls")
	srv := &http.Server{
		Handler:           api.RoleHandler(api.NewServer(&backend{a: a}, log), log),
		TLSConfig:         api.TLSServerConfig(cert, cas),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go srv.ServeTLS(l, "", "") //nolint:errcheck // returns on Close
	log.Info("serving the API over HTTPS with client certificates", "api_addr", l.Addr().String())
	return srv, nil
}
