package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// sdNotifier speaks systemd's notification protocol (sd_notify(3)) for a
// unit with Type=notify: READY=1 once the agent serves its API, STOPPING=1
// when it begins its graceful stop, and WATCHDOG=1 while the LRM loop
// makes progress, when the unit sets WatchdogSec. Without NOTIFY_SOCKET
// every method does nothing.
type sdNotifier struct {
	addr string        // the socket; "@..." is an abstract socket
	wdog time.Duration // WATCHDOG_USEC for this process; 0: no watchdog
}

// newSDNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from
// env (os.Getenv in production).
func newSDNotifier(env func(string) string) *sdNotifier {
	n := &sdNotifier{addr: env("NOTIFY_SOCKET")}
	if usec, err := strconv.ParseInt(env("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		pid := env("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.wdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

// notify sends one state string; errors are returned for logging only.
func (n *sdNotifier) notify(state string) error {
	if n == nil || n.addr == "" {
		return nil
	}
	addr := n.addr
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr, err)
	}
	return nil
}

// watchdog sends WATCHDOG=1 every half watchdog interval while the last
// LRM step (Unix nanoseconds in lastStep) is more recent than the
// interval, until ctx ends. A hung LRM stops the pings, and systemd
// restarts the agent (the guard fences this node's services meanwhile,
// as after any agent crash).
func (n *sdNotifier) watchdog(ctx context.Context, lastStep *atomic.Int64, now func() time.Time) {
	if n == nil || n.addr == "" || n.wdog <= 0 {
		return
	}
	t := time.NewTicker(n.wdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now().Sub(time.Unix(0, lastStep.Load())) < n.wdog {
				_ = n.notify("WATCHDOG=1")
			}
		}
	}
}
