package agent

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	osexec "os/exec"
	"sync"
	"time"

	"haxd/clock"
)

// Notification delivery (docs/configuration.md, "Notifications").
const (
	// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when
	// notify_webhook_secret_file is set.
	SignatureHeader = "X-Haxd-Signature-256"
	// EventIDHeader repeats the event ID, for receivers that deduplicate
	// before parsing.
	EventIDHeader = "X-Haxd-Event-Id"
	// DeliveredByHeader names the node that delivered the event: the
	// master of the time, which after a master change is not the event's
	// sender.
	DeliveredByHeader = "X-Haxd-Delivered-By"
	// maxBackoff caps the doubling retry delay.
	maxBackoff = 30 * time.Second
)

// notifyConfig is the delivery part of the agent config.
type notifyConfig struct {
	webhooks []string
	exec     []string
	secret   []byte
	timeout  time.Duration
	retries  int
	backoff  time.Duration
}

// notifier delivers events to every webhook and exec hook, each delivery
// in its own goroutine with retries, so a slow receiver never blocks the
// CRM. Close waits for deliveries in flight until ctx ends.
type notifier struct {
	self    string // this node, named in DeliveredByHeader
	cfg     notifyConfig
	log     *slog.Logger
	metrics *metrics
	client  *http.Client
	clock   clock.Clock // times the retry backoff
	ctx     context.Context
	wg      sync.WaitGroup
}

func newNotifier(ctx context.Context, self string, cfg notifyConfig, clk clock.Clock, log *slog.Logger, m *metrics) *notifier {
	return &notifier{self: self, cfg: cfg, log: log, metrics: m, client: &http.Client{Timeout: cfg.timeout}, clock: clk, ctx: ctx}
}

// enabled reports whether any hook is configured.
func (n *notifier) enabled() bool {
	return n != nil && (len(n.cfg.webhooks) > 0 || len(n.cfg.exec) > 0)
}

// send delivers e to every hook in the background, from memory only: for
// events that cannot go through the replicated outbox (quorum_lost, sent
// by a node that lost quorum).
func (n *notifier) send(e Event) {
	if !n.enabled() {
		return
	}
	body, err := json.Marshal(e)
	if err != nil {
		n.log.Error("encode notification", "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.deliverAll(n.ctx, e.ID, e.Type, body)
	}()
}

// deliverAll delivers body to every hook, each with its retries, in
// parallel, and returns when every hook succeeded or gave up (or ctx
// ended). It reports whether ctx is still live, i.e. the outcome is final.
func (n *notifier) deliverAll(ctx context.Context, id, typ string, body []byte) bool {
	var wg sync.WaitGroup
	for _, url := range n.cfg.webhooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.deliver(ctx, id, typ, "webhook", url, func(ctx context.Context) error { return n.post(ctx, url, id, body) })
		}()
	}
	for _, prog := range n.cfg.exec {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.deliver(ctx, id, typ, "exec", prog, func(ctx context.Context) error { return n.run(ctx, prog, body) })
		}()
	}
	wg.Wait()
	return ctx.Err() == nil
}

// deliver tries once plus cfg.retries times, doubling the backoff. When
// ctx ends (this node stopped being master) it stops without counting a
// failure: the next master delivers the event.
func (n *notifier) deliver(ctx context.Context, id, typ, kind, target string, try func(context.Context) error) {
	wait := n.cfg.backoff
	for attempt := 0; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, n.cfg.timeout)
		err := try(tctx)
		cancel()
		if err == nil {
			n.log.Info("notification sent", "event", typ, "id", id, kind, target, "attempt", attempt+1)
			n.metrics.notification(kind, true)
			return
		}
		if ctx.Err() != nil {
			n.log.Info("notification delivery interrupted: no longer master, the next master resends it", "event", typ, "id", id, kind, target, "attempts", attempt+1)
			return
		}
		if attempt >= n.cfg.retries {
			n.log.Error("notification not delivered, giving up", "event", typ, "id", id, kind, target, "attempts", attempt+1, "err", err)
			n.metrics.notification(kind, false)
			return
		}
		n.log.Warn("notification failed, retrying", "event", typ, "id", id, kind, target, "attempt", attempt+1, "retry_in", wait, "err", err)
		sleepCtx(ctx, n.clock, wait)
		wait = min(2*wait, maxBackoff)
	}
}

// sign returns the signature header value for body.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (n *notifier) post(ctx context.Context, url, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "haxd/"+Version)
	req.Header.Set(EventIDHeader, id)
	req.Header.Set(DeliveredByHeader, n.self)
	if len(n.cfg.secret) > 0 {
		req.Header.Set(SignatureHeader, sign(n.cfg.secret, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

func (n *notifier) run(ctx context.Context, prog string, body []byte) error {
	cmd := osexec.CommandContext(ctx, prog)
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 200 {
			out = out[:200]
		}
		return fmt.Errorf("%w (output %q)", err, out)
	}
	return nil
}

// wait blocks until every delivery in flight ended (they end when the
// notifier's context does).
func (n *notifier) wait() {
	if n != nil {
		n.wg.Wait()
	}
}
