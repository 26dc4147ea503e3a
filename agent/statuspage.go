package agent

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"haxd/api"
)

//go:embed statuspage.html
var statusPageHTML []byte

// pageRefresh is how often the status page's event stream re-reads the
// status; an update is sent only when it changed.
const pageRefresh = time.Second

// pageState is what the status page shows: the structured status view and
// the recent events this node saw.
type pageState struct {
	*api.View
	Events []Event `json:"events"`
}

func (a *Agent) pageState(ctx context.Context) (*pageState, error) {
	st, err := (&backend{a: a}).Status(ctx)
	if err != nil {
		return nil, err
	}
	return &pageState{View: api.BuildView(st), Events: a.n.events.recent()}, nil
}

// statusPage registers the read-only status page: / (HTML, no external
// assets), /api/view (the same data as JSON) and /events (server-sent
// events: a "state" event whenever the view changes).
func (a *Agent) statusPage(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
		w.Write(statusPageHTML)
	})
	mux.HandleFunc("GET /api/view", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		ps, err := a.pageState(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ps)
	})
	mux.HandleFunc("GET /events", a.serveEvents)
}

// serveEvents streams the page state as server-sent events until the
// client goes away.
func (a *Agent) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	evs, unsubscribe := a.n.events.subscribe()
	defer unsubscribe()
	var last []byte
	tick := time.NewTicker(pageRefresh)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		ps, err := a.pageState(ctx)
		cancel()
		if err == nil {
			// Ages change every second, so this sends about once a second.
			b, _ := json.Marshal(ps)
			if !bytes.Equal(b, last) {
				last = b
				if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b); err != nil {
					return
				}
				fl.Flush()
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		case <-evs:
		}
	}
}
