//go:build linux

package store

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The store's connections, dialed and accepted, get the minimum
// retransmission timeout; where the kernel lacks the option it is logged
// once and the connection still works.
func TestSockOptsSetRTOMin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs bytes.Buffer
	opts := &sockOpts{rtoMin: 20 * time.Millisecond, logger: slog.New(slog.NewTextHandler(&logs, nil))}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			opts.apply(c)
		}
		accepted <- c
	}()
	c, err := dialKind(t.Context(), ln.Addr().String(), connForward, time.Second, nil, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	for name, conn := range map[string]net.Conn{"dialed": c, "accepted": sc} {
		got, err := rtoMinOf(conn.(*net.TCPConn))
		if errors.Is(err, syscall.ENOPROTOOPT) {
			if !strings.Contains(logs.String(), "tcp_rto_min not applied") {
				t.Errorf("the kernel has no TCP_RTO_MIN_US and nothing was logged: %q", logs.String())
			}
			t.Skipf("!!! TCP_RTO_MIN_US SKIPPED: this kernel lacks it (Linux 6.15+): %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != 20*time.Millisecond {
			t.Errorf("%s connection: TCP_RTO_MIN_US = %v, want 20ms", name, got)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("logged although the option was set: %q", logs.String())
	}
}

func rtoMinOf(c *net.TCPConn) (time.Duration, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpRTOMinUS) }); err != nil {
		return 0, err
	}
	return time.Duration(v) * time.Microsecond, gerr
}
