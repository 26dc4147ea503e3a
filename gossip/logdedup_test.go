package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"haxd/logdedup"
)

// TestWrongKeyErrorsAreRateLimited: the error memberlist logs for every
// packet from a node with a wrong key is logged once per window (whatever
// the peer's port), then with the count of suppressed repeats; info lines
// are never suppressed.
func TestWrongKeyErrorsAreRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	w := &logWriter{logger: slog.New(slog.NewTextHandler(&buf, nil)), dedup: logdedup.New(func() time.Time { return now }, dedupWindow)}
	for i := range 20 {
		line := "[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:" + string(rune('0'+i%10)) + "4321\n"
		w.Write([]byte(line))
		w.Write([]byte("[INFO] serf: EventMemberJoin: n2 127.0.0.1\n"))
		now = now.Add(time.Second)
	}
	now = now.Add(dedupWindow)
	w.Write([]byte("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:9999\n"))
	out := buf.String()
	if n := strings.Count(out, "No installed keys"); n != 2 {
		t.Errorf("wrong-key error logged %d times, want 2 (first, then after the window):\n%s", n, out)
	}
	if n := strings.Count(out, "EventMemberJoin"); n != 20 {
		t.Errorf("info line logged %d times, want 20", n)
	}
	if !strings.Contains(out, "suppressed_repeats=19") {
		t.Errorf("no suppressed_repeats=19 on the second error:\n%s", out)
	}
}
