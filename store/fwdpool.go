package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Persistent forwarding connections. A sender opens a connection of kind
// connForwardStream; the receiver answers the kind byte with the same byte
// and then serves requests one after another on it (handleForwardStream).
// The sender keeps idle connections in a pool per address and expected
// peer, so that the forwarded lock renewals of an LRM reuse one TCP and
// TLS connection instead of paying a handshake each: on a lossy network a
// lost SYN costs TCP's initial retransmit timeout (1 s), as long as the
// fast profile's whole lock validity. A node that closes the connection
// instead of acknowledging the kind (an older haxd) is sent one-shot
// connections (connForward) for fwdLegacyRetry.
const (
	// fwdPoolIdle is how long an idle pooled connection may be reused. It
	// is well below fwdServerIdle, so that the receiver never closes a
	// connection the sender is about to reuse.
	fwdPoolIdle = 30 * time.Second
	// fwdServerIdle is how long the receiver waits for the next request
	// on a persistent connection before closing it.
	fwdServerIdle = 2 * time.Minute
	// fwdPoolMaxIdle is the number of idle connections kept per address.
	fwdPoolMaxIdle = 4
	// fwdLegacyRetry is how long a node that did not acknowledge a
	// persistent connection is sent one-shot connections.
	fwdLegacyRetry = time.Minute
)

// errUnexpectedData is what an idle connection's watcher reports when the
// receiver sent something unasked.
var errUnexpectedData = errors.New("unexpected data on an idle forwarding connection")

// fwdConn is one forwarding connection.
type fwdConn struct {
	c   net.Conn
	dec *json.Decoder
	key string
	// oneShot marks a connForward connection, closed after one request.
	oneShot bool
	// since is when the connection went idle; watch receives the result
	// of the read that watches it while idle (a timeout when woken by
	// alive, EOF when the receiver closed it).
	since time.Time
	watch chan error
}

func (fc *fwdConn) close() { fc.c.Close() }

// alive stops the idle watcher and reports whether the connection is
// still usable: not closed by the receiver and not idle for too long.
func (fc *fwdConn) alive(now time.Time) bool {
	_ = fc.c.SetReadDeadline(time.Now())
	err := <-fc.watch
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || now.Sub(fc.since) > fwdPoolIdle {
		return false
	}
	_ = fc.c.SetReadDeadline(time.Time{})
	return true
}

// fwdPool holds the idle forwarding connections of a store.
type fwdPool struct {
	tls    *TLS
	logger *slog.Logger
	// opts are the TCP options of new connections (nil: none).
	opts *sockOpts

	mu     sync.Mutex
	idle   map[string][]*fwdConn
	legacy map[string]time.Time
	closed bool
}

func newFwdPool(t *TLS, logger *slog.Logger) *fwdPool {
	return &fwdPool{tls: t, logger: logger, idle: map[string][]*fwdConn{}, legacy: map[string]time.Time{}}
}

// get returns a live idle connection to addr whose peer was checked
// against expect, or a new one.
func (p *fwdPool) get(ctx context.Context, addr, expect string, timeout time.Duration) (*fwdConn, error) {
	key := addr + "\x00" + expect
	for {
		fc := p.pop(key)
		if fc == nil {
			break
		}
		if fc.alive(time.Now()) {
			return fc, nil
		}
		fc.close()
	}
	p.mu.Lock()
	until, legacy := p.legacy[addr]
	p.mu.Unlock()
	if legacy && time.Now().Before(until) {
		return p.dialOneShot(ctx, addr, expect, key, timeout)
	}
	c, err := dialKind(ctx, addr, connForwardStream, timeout, p.tls, expect, p.opts)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	stop()
	if err == nil && b[0] != connForwardStream {
		err = fmt.Errorf("kind acknowledged with %q", b[0])
	}
	if err != nil {
		c.Close()
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("dial %s: no acknowledgement of a persistent connection: %w", addr, err)
		}
		p.logger.Info("forwarding: node closes persistent connections (older version?): using one connection per request",
			"addr", addr, "for", fwdLegacyRetry)
		p.mu.Lock()
		p.legacy[addr] = time.Now().Add(fwdLegacyRetry)
		p.mu.Unlock()
		return p.dialOneShot(ctx, addr, expect, key, timeout)
	}
	_ = c.SetReadDeadline(time.Time{})
	return &fwdConn{c: c, dec: json.NewDecoder(c), key: key}, nil
}

func (p *fwdPool) dialOneShot(ctx context.Context, addr, expect, key string, timeout time.Duration) (*fwdConn, error) {
	c, err := dialKind(ctx, addr, connForward, timeout, p.tls, expect, p.opts)
	if err != nil {
		return nil, err
	}
	return &fwdConn{c: c, dec: json.NewDecoder(io.LimitReader(c, maxForwardSize)), key: key, oneShot: true}, nil
}

// pop takes the most recently used idle connection of key.
func (p *fwdPool) pop(key string) *fwdConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[key]
	if len(l) == 0 {
		return nil
	}
	fc := l[len(l)-1]
	l[len(l)-1] = nil
	if len(l) == 1 {
		delete(p.idle, key)
	} else {
		p.idle[key] = l[:len(l)-1]
	}
	return fc
}

// put returns a connection after a complete request and answer; it is
// kept idle, watched for the receiver closing it.
func (p *fwdPool) put(fc *fwdConn) {
	if fc.oneShot {
		fc.close()
		return
	}
	fc.since = time.Now()
	fc.watch = make(chan error, 1)
	p.mu.Lock()
	if p.closed || len(p.idle[fc.key]) >= fwdPoolMaxIdle {
		p.mu.Unlock()
		fc.close()
		return
	}
	p.idle[fc.key] = append(p.idle[fc.key], fc)
	p.mu.Unlock()
	go func() {
		var b [1]byte
		_, err := fc.c.Read(b[:])
		if err == nil {
			err = errUnexpectedData
		}
		fc.watch <- err
	}()
}

// closeAll closes every idle connection and keeps no more.
func (p *fwdPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, l := range p.idle {
		for _, fc := range l {
			fc.close()
		}
		delete(p.idle, k)
	}
}
