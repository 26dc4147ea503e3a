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
)

// Notification delivery (docs/configuration.md, "Notifications").
const (
	// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when
	// notify_webhook_secret_file is set.
	SignatureHeader = "X-Haxd-Signature-256"
	// EventIDHeader repeats the event ID, for receivers that deduplicate
	// before parsing.
	EventIDHeader = "X-Haxd-Event-Id"
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
	cfg     notifyConfig
	log     *slog.Logger
	metrics *metrics
	client  *http.Client
	ctx     context.Context
	wg      sync.WaitGroup
}

func newNotifier(ctx context.Context, cfg notifyConfig, log *slog.Logger, m *metrics) *notifier {
	return &notifier{cfg: cfg, log: log, metrics: m, client: &http.Client{Timeout: cfg.timeout}, ctx: ctx}
}

// enabled reports whether any hook is configured.
func (n *notifier) enabled() bool {
	return n != nil && (len(n.cfg.webhooks) > 0 || len(n.cfg.exec) > 0)
}

// send delivers e to every hook in the background.
func (n *notifier) send(e Event) {
	if !n.enabled() {
		return
	}
	body, err := json.Marshal(e)
	if err != nil {
		n.log.Error("encode notification", "err", err)
		return
	}
	for _, url := range n.cfg.webhooks {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.deliver(e, "webhook", url, func(ctx context.Context) error { return n.post(ctx, url, e.ID, body) })
		}()
	}
	for _, prog := range n.cfg.exec {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.deliver(e, "exec", prog, func(ctx context.Context) error { return n.run(ctx, prog, body) })
		}()
	}
}

// deliver tries once plus cfg.retries times, doubling the backoff.
func (n *notifier) deliver(e Event, kind, target string, try func(context.Context) error) {
	wait := n.cfg.backoff
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.timeout)
		err := try(ctx)
		cancel()
		if err == nil {
			n.log.Info("notification sent", "event", e.Type, "id", e.ID, kind, target, "attempt", attempt+1)
			n.metrics.notification(kind, true)
			return
		}
		if attempt >= n.cfg.retries || n.ctx.Err() != nil {
			n.log.Error("notification not delivered, giving up", "event", e.Type, "id", e.ID, kind, target, "attempts", attempt+1, "err", err)
			n.metrics.notification(kind, false)
			return
		}
		n.log.Warn("notification failed, retrying", "event", e.Type, "id", e.ID, kind, target, "attempt", attempt+1, "retry_in", wait, "err", err)
		select {
		case <-n.ctx.Done():
		case <-time.After(wait):
		}
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
