package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Connection kinds: the first byte a dialer writes on a new connection to
// the store port. They are part of the wire protocol.
const (
	connRaft    byte = 'R'
	connForward byte = 'F'
	// connForwardStream is a persistent forwarding connection (see
	// fwdPool); the receiver acknowledges it with the same byte.
	connForwardStream byte = 'S'
)

// preambleTimeout bounds how long an accepted connection may take to send
// its kind byte.
const preambleTimeout = 5 * time.Second

// mux shares one TCP listener between raft's transport and the forwarding
// server. It implements raft.StreamLayer for the raft side: Dial writes
// connRaft, Accept returns the connections that started with connRaft.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	raftCh    chan net.Conn
	forward   func(c net.Conn, peer string)
	// forwardStream serves a persistent forwarding connection.
	forwardStream func(c net.Conn, peer string)
	ready         <-chan struct{}
	logger        *slog.Logger
	// opts are the TCP options set on every accepted and dialed
	// connection (nil: none).
	opts *sockOpts

	// tls, when set, makes every connection mutual TLS (see TLS).
	tls       *TLS
	serverTLS *tls.Config
	// memberAt names the raft server at an address ("" if unknown), for
	// the dialer's check of the peer's certificate.
	memberAt func(addr string) string
	// raftPeerAllowed decides whether a raft connection from the node
	// named in its certificate is served.
	raftPeerAllowed func(ctx context.Context, peer, remote string) bool

	// streams counts the persistent forwarding connections accepted.
	streams atomic.Int64

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var _ raft.StreamLayer = (*mux)(nil)

// newMux returns a mux on ln; start begins accepting. forward serves each
// forwarding connection (peer is the node named by its certificate, ""
// without TLS) and must close it; it runs also before the store is ready
// and must answer "not ready" then itself. Raft connections are handed to
// raft only once ready is closed: until then they wait (see route).
func newMux(ln net.Listener, advertise net.Addr, forward func(net.Conn, string), ready <-chan struct{}, logger *slog.Logger) *mux {
	return &mux{ln: ln, advertise: advertise, raftCh: make(chan net.Conn), forward: forward, ready: ready, logger: logger, done: make(chan struct{}),
		memberAt: func(string) string { return "" }}
}

// start begins accepting connections.
func (m *mux) start() {
	if m.tls != nil {
		m.serverTLS = m.tls.serverConfig()
	}
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("store listener stopped", "err", err)
			return
		}
		m.opts.apply(c)
		m.wg.Add(1)
		go m.route(c)
	}
}

// route reads the kind byte and hands the connection on.
func (m *mux) route(c net.Conn) {
	defer m.wg.Done()
	var b [1]byte
	_ = c.SetDeadline(time.Now().Add(preambleTimeout))
	peer := ""
	if m.serverTLS != nil {
		tc := tls.Server(c, m.serverTLS)
		ctx, cancel := context.WithTimeout(context.Background(), preambleTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			m.logger.Warn("store port: refuse connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		peer, _ = peerNode(tc.ConnectionState()) // checked in the handshake
		c = tc
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch b[0] {
	case connRaft:
		// A raft connection waits for the store to be ready rather than
		// being refused: a refused RPC counts as a failure in the sender's
		// replication backoff (up to seconds), a held one is served a few
		// milliseconds later, when raft has loaded its state.
		select {
		case <-m.ready:
		case <-m.done:
			c.Close()
			return
		case <-time.After(preambleTimeout):
			m.logger.Warn("store port: drop raft connection: store not ready", "remote", c.RemoteAddr().String(), "waited", preambleTimeout)
			c.Close()
			return
		}
		if m.tls != nil {
			ctx, cancel := context.WithTimeout(context.Background(), preambleTimeout)
			ok := m.raftPeerAllowed(ctx, peer, c.RemoteAddr().String())
			cancel()
			if !ok {
				c.Close()
				return
			}
		}
		select {
		case m.raftCh <- c:
		case <-m.done:
			c.Close()
		}
	case connForward:
		m.forward(c, peer)
	case connForwardStream:
		m.streams.Add(1)
		m.forwardStream(c, peer)
	default:
		m.logger.Warn("store port: drop connection of unknown kind", "remote", c.RemoteAddr().String(), "kind", b[0])
		c.Close()
	}
}

// Accept returns the next raft connection.
func (m *mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftCh:
		return c, nil
	case <-m.done:
		return nil, fmt.Errorf("accept raft connection: %w", net.ErrClosed)
	}
}

// Close stops the listener; connections already handed out stay open.
func (m *mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

// wait waits for the accept loop and the routing goroutines to end.
func (m *mux) wait() { m.wg.Wait() }

// Addr returns the advertised address, which raft puts in its
// configuration.
func (m *mux) Addr() net.Addr { return m.advertise }

// Dial opens a raft connection to address. With TLS, the peer's
// certificate must name the raft server at that address when the member
// cache knows it.
func (m *mux) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialKind(context.Background(), string(address), connRaft, timeout, m.tls, m.memberAt(string(address)), m.opts)
}

// dialKind connects to addr, with t (nil: plain TCP) performs the TLS
// handshake expecting a certificate of node expect ("": any node of the
// CA), and sends the connection kind; opts (nil: none) are set on the TCP
// connection before anything is sent. It gives up when ctx ends: a forward
// to a leader that went silent must not outlive the caller's interest in
// it.
func dialKind(ctx context.Context, addr string, kind byte, timeout time.Duration, t *TLS, expect string, opts *sockOpts) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	opts.apply(c)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if t != nil {
		tc := tls.Client(c, t.clientConfig(expect))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("dial %s: TLS handshake: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: send connection kind: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
