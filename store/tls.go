package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"haxd/pki"
)

// TLS is the mutual-TLS setup of the store port (Config.TLS). Every
// connection, raft or forwarding, in either direction, is TLS 1.3 and both
// ends present a certificate signed by the cluster CA that names a node
// (pki.NodeName). On top of the CA check:
//
//   - an accepted raft connection is served only if its certificate names a
//     server of this node's raft configuration (or the configuration is
//     still empty: a new node waiting to be bootstrapped or joined);
//   - a forwarded join sent by the joining node itself (hop 0) must name the
//     certificate's node as the server to add; every other forwarded
//     request must come from a server of the raft configuration;
//   - a dialer that knows which node it dials (the leader it forwards to,
//     the raft server at an address, the peer it joins through) refuses a
//     certificate that names another node.
type TLS struct {
	// Cert is this node's certificate chain and private key; its leaf must
	// name Config.NodeID.
	Cert tls.Certificate
	// CAs holds the cluster CA that signs every node's certificate.
	CAs *x509.CertPool
}

// validate checks that the certificate names node.
func (t *TLS) validate(node string) error {
	if t.CAs == nil {
		return errors.New("store config tls: no CA")
	}
	if len(t.Cert.Certificate) == 0 || t.Cert.PrivateKey == nil {
		return errors.New("store config tls: no certificate or key")
	}
	leaf := t.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(t.Cert.Certificate[0]); err != nil {
			return fmt.Errorf("store config tls: parse certificate: %w", err)
		}
	}
	name, err := pki.NodeName(leaf)
	if err != nil {
		return fmt.Errorf("store config tls: %w", err)
	}
	if name != node {
		return fmt.Errorf("store config tls: the certificate names node %q, expected node_id %q", name, node)
	}
	return nil
}

// serverConfig is the TLS config of accepted connections.
func (t *TLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.CAs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := peerNode(cs)
			return err
		},
	}
}

// clientConfig is the TLS config of a dial to the node expect ("" when
// the dialer does not know which node answers at the address: then only
// the CA is checked).
func (t *TLS) clientConfig(expect string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.Cert},
		ServerName:   "haxd",
		// The chain and the node name are checked in VerifyConnection: the
		// peer is identified by the node name in its certificate, not by a
		// host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: t.CAs, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("%w: peer certificate: %w", ErrUnauthorized, err)
			}
			name, err := peerNode(cs)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrUnauthorized, err)
			}
			if expect != "" && name != expect {
				return fmt.Errorf("%w: peer certificate names node %q, expected %q", ErrUnauthorized, name, expect)
			}
			return nil
		},
	}
}

// peerNode returns the node named by the peer's certificate.
func peerNode(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	name, err := pki.NodeName(cs.PeerCertificates[0])
	if err != nil {
		return "", fmt.Errorf("peer %w", err)
	}
	return name, nil
}

// members caches the raft configuration for the TLS checks: the raft
// transport's dialer runs on raft's own goroutines and must not wait for
// raft's main loop.
type members struct {
	mu     sync.Mutex
	byAddr map[string]string
	ids    map[string]bool
}

// refreshMembers reads the raft configuration into the cache.
func (s *Store) refreshMembers(ctx context.Context) error {
	f := s.raft.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	byAddr, ids := map[string]string{}, map[string]bool{}
	for _, sv := range f.Configuration().Servers {
		byAddr[string(sv.Address)] = string(sv.ID)
		ids[string(sv.ID)] = true
	}
	s.members.mu.Lock()
	s.members.byAddr, s.members.ids = byAddr, ids
	s.members.mu.Unlock()
	return nil
}

// memberAt returns the raft server ID at addr as last cached, or "".
func (s *Store) memberAt(addr string) string {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	return s.members.byAddr[addr]
}

// membership reports whether node is a server of the raft configuration
// and whether the configuration is empty, reading it again when the cache
// does not know node.
func (s *Store) membership(ctx context.Context, node string) (member, empty bool, err error) {
	s.members.mu.Lock()
	member, empty = s.members.ids[node], len(s.members.ids) == 0
	s.members.mu.Unlock()
	if member {
		return true, false, nil
	}
	if err := s.refreshMembers(ctx); err != nil {
		return false, false, err
	}
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	return s.members.ids[node], len(s.members.ids) == 0, nil
}

// raftPeerAllowed decides whether an accepted raft connection from the
// node named in its certificate is served.
func (s *Store) raftPeerAllowed(ctx context.Context, peer, remote string) bool {
	member, empty, err := s.membership(ctx, peer)
	switch {
	case err != nil:
		s.logger.Warn("store port: refuse raft connection: cannot read the raft configuration", "peer", peer, "remote", remote, "err", err)
		return false
	case member || empty:
		return true
	}
	s.logger.Warn("store port: refuse raft connection: the peer's certificate names a node outside the raft configuration",
		"peer", peer, "remote", remote)
	return false
}

// authorize checks a forwarded request against the identity of the node
// that sent it (peer, from its certificate; "" without TLS).
func (s *Store) authorize(ctx context.Context, peer string, req *fwdRequest) error {
	if s.cfg.TLS == nil {
		return nil
	}
	if req.Op == fwdJoin && req.Hops == 0 {
		if req.ID != peer {
			return fmt.Errorf("%w: %s asks to join as %q: a node may join only as itself", ErrUnauthorized, peer, req.ID)
		}
		return nil
	}
	member, _, err := s.membership(ctx, peer)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, req.Op, err)
	}
	if !member {
		return fmt.Errorf("%w: %s from %s, which is not a server of the raft configuration", ErrUnauthorized, req.Op, peer)
	}
	return nil
}

// refreshMemberCache keeps the member cache current for the raft dialer;
// it runs every AutopilotInterval.
func (s *Store) refreshMemberCache() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
	defer cancel()
	if err := s.refreshMembers(ctx); err != nil && !errors.Is(err, raft.ErrRaftShutdown) && s.ctx.Err() == nil {
		s.logger.Debug("refresh member cache", "err", err)
	}
}
