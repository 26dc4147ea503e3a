package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentsNotifySystemd: real agents started with NOTIFY_SOCKET (as
// systemd's Type=notify does) send READY=1 once they serve their API, and
// STOPPING=1 when stopped with SIGTERM.
func TestAgentsNotifySystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	msgs := make(chan string, 64)
	go func() {
		b := make([]byte, 512)
		for {
			n, err := l.Read(b)
			if err != nil {
				return
			}
			msgs <- string(b[:n])
		}
	}()
	t.Setenv("NOTIFY_SOCKET", sock)
	h := startCluster(t)
	count := func(prefix string, want int, d time.Duration) int {
		n := 0
		deadline := time.After(d)
		for n < want {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m, prefix) {
					n++
				}
			case <-deadline:
				return n
			}
		}
		return n
	}
	if n := count("READY=1", 3, startDeadline); n != 3 {
		t.Fatalf("%d agents sent READY=1, want 3", n)
	}
	if err := h.cl.StopAgent(h.cl.Nodes[2], startDeadline); err != nil {
		t.Fatalf("stop agent: %v", err)
	}
	if n := count("STOPPING=1", 1, 10*time.Second); n != 1 {
		t.Errorf("the stopped agent sent %d STOPPING=1, want 1", n)
	}
}
