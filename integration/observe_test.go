package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"haxd/internal/cluster"
)

// webhookEvent is the part of a notification the test checks.
type webhookEvent struct {
	ID, Type, Node, SID, From, Sender string
	DurationSeconds                   float64 `json:"duration_seconds"`
}

// receiver is a real local HTTP webhook receiver.
type receiver struct {
	mu     sync.Mutex
	events []webhookEvent
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e webhookEvent
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// find returns the events of type typ matching cond.
func (r *receiver) find(typ string, cond func(webhookEvent) bool) []webhookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []webhookEvent
	for _, e := range r.events {
		if e.Type == typ && cond(e) {
			out = append(out, e)
		}
	}
	return out
}

// scrape fetches a node's /metrics and returns "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// documentedMetrics returns the metric names of docs/configuration.md's
// "## Metrics" table.
func documentedMetrics(t *testing.T) []string {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "\n## Metrics\n")
	sec, _, _ = strings.Cut(sec, "\n## ")
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(haxd_[a-z_]+)` \\|").FindAllStringSubmatch(sec, -1) {
		names = append(names, m[1])
	}
	if len(names) < 15 {
		t.Fatalf("found only %d metrics in docs/configuration.md", len(names))
	}
	return names
}

// TestMetricsAndWebhooksOnNodeKill: a real cluster with metrics listeners
// and a webhook pointing at a local receiver. After a node is killed, the
// receiver gets fence_start, fence_success and a recovery with its
// duration, each once; the master's /metrics shows the dead node not
// online, the recovery in the histogram, raft's commit latency bridged
// from go-metrics, lock renewals, CRM rounds and guard feeds; and every
// metric the docs list is served.
func TestMetricsAndWebhooksOnNodeKill(t *testing.T) {
	rcv := newReceiver(t)
	h := startClusterWith(t, func(o *cluster.Options) { o.Metrics = true },
		"notify_webhooks="+rcv.srv.URL, "notify_backoff=100ms", "notify_timeout=2s")
	master := h.startOnePerNode()
	victim := h.others(master)[0]

	h.cl.KillNode(h.cl.Node(victim))
	to := h.waitMoved(svc(victim), victim, failoverDeadline)

	about := func(node string) func(webhookEvent) bool { return func(e webhookEvent) bool { return e.Node == node } }
	h.waitFor(failoverDeadline, "fence_start, fence_success and recovery webhooks", func() bool {
		return len(rcv.find("fence_start", about(victim))) > 0 && len(rcv.find("fence_success", about(victim))) > 0 &&
			len(rcv.find("recovery", func(e webhookEvent) bool { return e.SID == svc(victim) })) > 0
	})
	time.Sleep(time.Second) // let any duplicate arrive before counting
	// Sent once each, by the master of the time: normally the first
	// master; on a loaded machine mastership may move meanwhile.
	for _, typ := range []string{"fence_start", "fence_success"} {
		if got := rcv.find(typ, about(victim)); len(got) != 1 || got[0].Sender == victim || len(got[0].ID) != 32 {
			t.Errorf("%s events for %s: %+v, want one from a master", typ, victim, got)
		}
	}
	rec := rcv.find("recovery", func(e webhookEvent) bool { return e.SID == svc(victim) })
	if len(rec) != 1 || rec[0].Node != to || rec[0].From != victim || rec[0].DurationSeconds <= 0 {
		t.Fatalf("recovery events: %+v, want one of %s from %s to %s with a duration", rec, svc(victim), victim, to)
	}
	if sender := rec[0].Sender; sender != master {
		t.Logf("mastership moved from %s to %s during the failover", master, sender)
		master = sender
	}

	m := scrape(t, h.cl.Node(master).Metrics)
	want := map[string]func(float64) bool{
		`haxd_node_state{node="` + victim + `",state="online"}`:                           func(v float64) bool { return v == 0 },
		`haxd_node_state{node="` + master + `",state="online"}`:                           func(v float64) bool { return v == 1 },
		`haxd_fence_events_total{event="start"}`:                                          func(v float64) bool { return v <= 1 },
		`haxd_fence_events_total{event="success"}`:                                        func(v float64) bool { return v == 1 },
		`haxd_recoveries_total`:                                                           func(v float64) bool { return v == 1 },
		`haxd_recovery_duration_seconds_count`:                                            func(v float64) bool { return v == 1 },
		`haxd_raft_commit_seconds_count`:                                                  func(v float64) bool { return v > 0 },
		`haxd_raft_log_bytes_total`:                                                       func(v float64) bool { return v > 0 },
		`haxd_raft_log_batches_total`:                                                     func(v float64) bool { return v > 0 },
		`haxd_lock_renewals_total{lock="own",result="ok"}`:                                func(v float64) bool { return v > 0 },
		`haxd_lock_renewals_total{lock="other",result="ok"}`:                              func(v float64) bool { return v >= 1 },
		`haxd_crm_round_seconds_count`:                                                    func(v float64) bool { return v > 0 },
		`haxd_guard_feeds_total{result="ok"}`:                                             func(v float64) bool { return v > 0 },
		`haxd_notifications_total{kind="webhook",result="ok"}`:                            func(v float64) bool { return v >= 3 },
		`haxd_service_state{node="` + to + `",sid="` + svc(victim) + `",state="started"}`: func(v float64) bool { return v == 1 },
	}
	for k, ok := range want {
		if v, found := m[k]; !found || !ok(v) {
			t.Errorf("master's /metrics: %s = %v (present %v)", k, v, found)
		}
	}
	served := map[string]bool{}
	for k := range m {
		name, _, _ := strings.Cut(k, "{")
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		served[name] = true
	}
	for _, name := range documentedMetrics(t) {
		if !served[name] {
			t.Errorf("docs/configuration.md lists %s, which the master does not serve", name)
		}
	}
	for name := range served {
		if strings.HasPrefix(name, "haxd_") && !contains(documentedMetrics(t), name) {
			t.Errorf("the agent serves %s, which docs/configuration.md does not list", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
