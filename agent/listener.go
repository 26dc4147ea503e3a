package agent

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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
