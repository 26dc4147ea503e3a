package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestSDNotify: the notifier sends to NOTIFY_SOCKET; the watchdog pings
// only while the LRM steps, and only for this process's WATCHDOG_PID.
func TestSDNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recv := func(d time.Duration) string {
		l.SetReadDeadline(time.Now().Add(d))
		b := make([]byte, 256)
		n, err := l.Read(b)
		if err != nil {
			return ""
		}
		return string(b[:n])
	}
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": strconv.Itoa(os.Getpid())}
	n := newSDNotifier(func(k string) string { return env[k] })
	if n.wdog != 100*time.Millisecond {
		t.Fatalf("watchdog interval %v, want 100ms", n.wdog)
	}
	if err := n.notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := recv(time.Second); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}

	var step atomic.Int64
	now := time.Unix(1000, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	step.Store(now.UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.watchdog(ctx, &step, func() time.Time { return time.Unix(0, clock.Load()) })
	if got := recv(time.Second); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1 while the LRM steps", got)
	}
	clock.Store(now.Add(time.Second).UnixNano()) // the LRM hangs
	for recv(60*time.Millisecond) != "" {        // drain pings sent before
	}
	if got := recv(300 * time.Millisecond); got != "" {
		t.Errorf("got %q while the LRM hangs, want no ping", got)
	}

	other := newSDNotifier(func(k string) string {
		if k == "WATCHDOG_PID" {
			return "1"
		}
		return env[k]
	})
	if other.wdog != 0 {
		t.Errorf("watchdog enabled for another process's WATCHDOG_PID")
	}
	if err := newSDNotifier(func(string) string { return "" }).notify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}
