package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Connection kinds: the first byte a dialer writes on a new connection to
// the store port. They are part of the wire protocol.
const (
	connRaft    byte = 'R'
	connForward byte = 'F'
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
	forward   func(net.Conn)
	ready     <-chan struct{}
	logger    *slog.Logger

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var _ raft.StreamLayer = (*mux)(nil)

// newMux starts accepting on ln. forward serves each forwarding connection
// and must close it; it runs also before the store is ready and must
// answer "not ready" then itself. Raft connections are handed to raft only
// once ready is closed: until then they wait (see route).
func newMux(ln net.Listener, advertise net.Addr, forward func(net.Conn), ready <-chan struct{}, logger *slog.Logger) *mux {
	m := &mux{ln: ln, advertise: advertise, raftCh: make(chan net.Conn), forward: forward, ready: ready, logger: logger, done: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
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
		m.wg.Add(1)
		go m.route(c)
	}
}

// route reads the kind byte and hands the connection on.
func (m *mux) route(c net.Conn) {
	defer m.wg.Done()
	var b [1]byte
	_ = c.SetReadDeadline(time.Now().Add(preambleTimeout))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
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
		select {
		case m.raftCh <- c:
		case <-m.done:
			c.Close()
		}
	case connForward:
		m.forward(c)
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

// Dial opens a raft connection to address.
func (m *mux) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialKind(string(address), connRaft, timeout)
}

// dialKind connects to addr and sends the connection kind.
func dialKind(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	return dialKindCtx(context.Background(), addr, kind, timeout)
}

// dialKindCtx is dialKind that also gives up when ctx ends: a forward to a
// leader that went silent must not outlive the caller's interest in it.
func dialKindCtx(ctx context.Context, addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: send connection kind: %w", addr, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}
