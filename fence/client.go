package fence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrFenced is returned by Client methods once the guard has fenced: every
// registered service was killed, and with a watchdog device the machine is
// about to reset.
var ErrFenced = errors.New("guard fenced the node")

// ErrClosed is returned after Close or Abandon.
var ErrClosed = errors.New("guard client closed")

// ioTimeout bounds every request to the guard, so a stuck guard cannot
// block the agent's round.
const ioTimeout = 2 * time.Second

// Client is the agent's watchdog handle in the guard. Opening it arms the
// handle: from then on it must be fed every GuardTimeout or the guard
// kills every service. Every arm and feed carries an expiry, the end of
// the agent's lock validity in CLOCK_MONOTONIC nanoseconds (clock.System.Mono):
// the guard's deadline is never later than one GuardTimeout after it,
// however late the feed arrives. Its methods are safe for concurrent use.
//
// When the connection breaks (the guard restarted), the next Feed or
// Register dials again, arms the new handle with the latest expiry it sent
// (so the new handle runs out when the old one would have), and registers
// every target again before it proceeds. A handle of a guard that is still
// running is not taken over: the old one expires and fences, as a watchdog
// handle closed without the magic character does.
type Client struct {
	path string

	mu      sync.Mutex
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	targets []Target
	expiry  int64
	closed  bool
}

// Open connects to the guard at path and arms a handle with expiry, the
// end of the agent's lock validity (CLOCK_MONOTONIC nanoseconds).
func Open(ctx context.Context, path string, expiry int64) (*Client, error) {
	c := &Client{path: path, expiry: expiry}
	if err := c.dial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return fmt.Errorf("connect to guard: %w", err)
	}
	conn.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		conn.Close()
		return fmt.Errorf("connect to guard %s: read greeting: %w", c.path, err)
	}
	timeout, err := parseGreeting(strings.TrimSpace(line))
	if err != nil {
		conn.Close()
		return fmt.Errorf("connect to guard %s: %w", c.path, err)
	}
	c.conn, c.r, c.timeout = conn, r, timeout
	// Known targets (after a redial) are registered before the handle is
	// armed: an expiry that is already past fences at once, and the
	// fence must find them.
	kept := c.targets[:0]
	for _, t := range c.targets {
		reply, err := c.roundTrip("register " + t.String())
		if err != nil {
			conn.Close()
			c.conn = nil
			return err
		}
		if replyErr(reply) == nil {
			kept = append(kept, t)
		}
	}
	c.targets = kept
	reply, err := c.roundTrip("arm " + strconv.FormatInt(c.expiry, 10))
	if err == nil {
		err = replyErr(reply)
	}
	if err != nil {
		conn.Close()
		c.conn = nil
		return fmt.Errorf("arm guard handle: %w", err)
	}
	return nil
}

// parseGreeting reads "haxd-guard 1 timeout_ms=N".
func parseGreeting(line string) (time.Duration, error) {
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return 0, fmt.Errorf("guard refused: %s", msg)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "haxd-guard" {
		return 0, fmt.Errorf("greeting %q: not a haxd guard", line)
	}
	if f[1] != strconv.Itoa(protocolVersion) {
		return 0, fmt.Errorf("greeting %q: protocol version %s, expected %d", line, f[1], protocolVersion)
	}
	ms, ok := strings.CutPrefix(f[2], "timeout_ms=")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || n <= 0 {
		return 0, fmt.Errorf("greeting %q: bad timeout", line)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// GuardTimeout is the guard's watchdog timeout: feed more often than this.
func (c *Client) GuardTimeout() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timeout
}

// CheckTimeout returns an error when the guard would wait longer than
// want (the agent's watchdog_timeout) before fencing: the safety
// inequality the agent checked would then not hold.
func (c *Client) CheckTimeout(want time.Duration) error {
	if got := c.GuardTimeout(); got > want {
		return fmt.Errorf("guard %s watchdog timeout %v: longer than the configured watchdog_timeout %v, which the safety inequality assumes", c.path, got, want)
	}
	return nil
}

// Feed pushes the handle's deadline one GuardTimeout into the future, but
// not beyond one GuardTimeout after expiry (the end of the lock validity
// this feed vouches for, CLOCK_MONOTONIC nanoseconds).
func (c *Client) Feed(expiry int64) error {
	c.mu.Lock()
	c.expiry = max(c.expiry, expiry)
	c.mu.Unlock()
	return c.do("feed "+strconv.FormatInt(expiry, 10), true)
}

// Expiry returns the latest expiry sent.
func (c *Client) Expiry() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expiry
}

// Register adds t to what the guard kills when it fences. Register every
// service right after starting it.
func (c *Client) Register(t Target) error {
	if err := t.checkSyntax(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if err := c.do("register "+t.String(), true); err != nil {
		return fmt.Errorf("register %s: %w", t, err)
	}
	c.mu.Lock()
	if !slices.Contains(c.targets, t) {
		c.targets = append(c.targets, t)
	}
	c.mu.Unlock()
	return nil
}

// Unregister removes t, for a service that stopped cleanly.
func (c *Client) Unregister(t Target) error {
	if err := t.checkSyntax(); err != nil {
		return fmt.Errorf("unregister: %w", err)
	}
	if err := c.do("unregister "+t.String(), true); err != nil {
		return fmt.Errorf("unregister %s: %w", t, err)
	}
	c.mu.Lock()
	c.targets = slices.DeleteFunc(c.targets, func(x Target) bool { return x == t })
	c.mu.Unlock()
	return nil
}

// FenceNow makes the guard fence at once, for an agent that knows its lock
// lapsed and must not wait for the timeout.
func (c *Client) FenceNow() error { return c.do("fence", true) }

// Close disarms the handle gracefully (the magic close): the guard forgets
// its targets and will not fence for it. Only close when no service runs.
func (c *Client) Close() error {
	err := c.do("close", false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	if err != nil {
		return fmt.Errorf("disarm guard handle: %w", err)
	}
	return nil
}

// Abandon drops the connection without disarming, as a crashing agent
// would: the guard fences when the handle's deadline passes.
func (c *Client) Abandon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends one command and reads its reply. With redial, a broken
// connection is dialed again once, targets are registered again, and the
// command is retried.
func (c *Client) do(line string, redial bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.conn == nil && !redial {
		return errors.New("guard connection lost")
	}
	var reply string
	var err error
	if c.conn != nil {
		reply, err = c.roundTrip(line)
	}
	if c.conn == nil || err != nil {
		if !redial {
			return err
		}
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
		if err := c.redial(); err != nil {
			return err
		}
		if reply, err = c.roundTrip(line); err != nil {
			c.conn.Close()
			c.conn = nil
			return err
		}
	}
	return replyErr(reply)
}

// redial connects again, registers the known targets again (targets the
// new guard refuses, because their process is gone, are dropped) and arms
// the new handle with the latest expiry. c.mu is held.
func (c *Client) redial() error { return c.dial(context.Background()) }

func (c *Client) roundTrip(line string) (string, error) {
	c.conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		return "", fmt.Errorf("guard %s: send: %w", c.path, err)
	}
	reply, err := c.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("guard %s: read reply: %w", c.path, err)
	}
	return strings.TrimSpace(reply), nil
}

func replyErr(reply string) error {
	switch {
	case reply == "ok":
		return nil
	case reply == "err fenced":
		return ErrFenced
	}
	if msg, ok := strings.CutPrefix(reply, "err "); ok {
		return fmt.Errorf("guard: %s", msg)
	}
	return fmt.Errorf("guard: unexpected reply %q", reply)
}

// Probe connects to the guard at path, reads its greeting and disconnects
// without a command (which arms nothing). It fails when nothing answers or
// when the guard speaks another protocol version (a guard left running
// from an older haxd: stop the agent, then restart the guard).
func Probe(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("connect to guard: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("guard %s: read greeting: %w", path, err)
	}
	if _, err := parseGreeting(strings.TrimSpace(line)); err != nil {
		return fmt.Errorf("guard %s: %w", path, err)
	}
	return nil
}
