package store

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"haxd/ha"
	"haxd/pki"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newCA makes a cluster CA in a temp dir.
func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.CreateCA(t.TempDir(), 0, time.Now(), false)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	return ca
}

func signCert(t *testing.T, ca *pki.CA, opts pki.CertOptions) tls.Certificate {
	t.Helper()
	c, err := ca.Sign(opts, time.Now())
	if err != nil {
		t.Fatalf("sign %s: %v", opts.Node, err)
	}
	return c
}

// tlsCluster is a cluster whose nodes use mutual TLS with ca, logging to
// logs as well.
func tlsCluster(t *testing.T, n int, ca *pki.CA, logs *logBuffer) *cluster {
	t.Helper()
	c := &cluster{t: t, clock: newFakeClock()}
	tw := &testWriter{w: t.Output()}
	t.Cleanup(tw.close)
	c.logger = slog.New(slog.NewTextHandler(io.MultiWriter(tw, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	base := t.TempDir()
	for i := range n {
		cfg := LocalConfig(fmt.Sprintf("n%d", i+1), fmt.Sprintf("%s/n%d", base, i+1))
		cfg.BindAddr = freePort(t)
		cfg.NoSync = true
		cfg.Clock = c.clock
		cfg.TLS = &TLS{Cert: signCert(t, ca, pki.CertOptions{Node: cfg.NodeID}), CAs: ca.Pool()}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.nodes = make([]*Store, n)
	for i := range n {
		c.open(i)
	}
	t.Cleanup(c.closeAll)
	return c
}

func TestTLSClusterFormsForwardsAndRefusesAForeignName(t *testing.T) {
	var logs logBuffer
	ca := newCA(t)
	c := tlsCluster(t, 3, ca, &logs)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	f := c.follower(l)
	ctx := c.ctx(10 * time.Second)
	rc := ha.DefaultResourceConfig("vm:101", c.nodes[f].NodeID())
	if err := c.nodes[f].PutResource(ctx, rc); err != nil {
		t.Fatalf("put resource from a follower over TLS: %v", err)
	}
	if err := c.nodes[f].Barrier(ctx); err != nil {
		t.Fatalf("barrier over TLS: %v", err)
	}
	// A dialer that expects another node at an address refuses the
	// certificate it gets there.
	other := c.follower(l, f)
	err := c.nodes[f].JoinPeer(c.ctx(2*time.Second), Peer{ID: "n9", Addr: c.nodes[other].Addr()})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("names node %q, expected %q", c.nodes[other].NodeID(), "n9")) {
		t.Errorf("join through %s expecting n9: %v, want a refusal naming both nodes", c.nodes[other].NodeID(), err)
	}
}

func TestStoreConfigRefusesACertificateOfAnotherNode(t *testing.T) {
	ca := newCA(t)
	cfg := LocalConfig("n1", t.TempDir())
	cfg.TLS = &TLS{Cert: signCert(t, ca, pki.CertOptions{Node: "n2"}), CAs: ca.Pool()}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `names node "n2", expected node_id "n1"`) {
		t.Errorf("Validate() = %v, want a refusal of n2's certificate on n1", err)
	}
}

// attacker is a process on the cluster network: plain TCP, or TLS with
// some certificate.
type attacker struct {
	name string
	// tls is the attacker's client config; nil: plain TCP.
	tls *tls.Config
	// join is the node name the attacker asks to join as.
	join string
	// log is a line the attacked node must log, "" for none.
	log string
	// joinOnly: the attacker holds a member's certificate, which may write
	// and speak raft; only its join under another name is refused.
	joinOnly bool
}

func (a attacker) dial(addr string, kind byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if a.tls != nil {
		tc := tls.Client(c, a.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// forward sends a forwarded request and returns the answer's error, or the
// transport error when there was no answer.
func (a attacker) forward(addr string, req fwdRequest) error {
	c, err := a.dial(addr, connForward)
	if err != nil {
		return fmt.Errorf("no connection: %w", err)
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var res result
	if err := json.NewDecoder(c).Decode(&res); err != nil {
		return fmt.Errorf("no answer: %w", err)
	}
	return res.err()
}

// attackStream is the raft StreamLayer of an attacker's fake leader.
type attackStream struct {
	a      attacker
	closed chan struct{}
}

func (s *attackStream) Dial(addr raft.ServerAddress, _ time.Duration) (net.Conn, error) {
	return s.a.dial(string(addr), connRaft)
}
func (s *attackStream) Accept() (net.Conn, error) { <-s.closed; return nil, net.ErrClosed }
func (s *attackStream) Close() error              { return nil }
func (s *attackStream) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// appendEntries sends raw AppendEntries with a term far above the
// target's, as a fake leader "evil" would.
func (a attacker) appendEntries(target *Store) error {
	stream := &attackStream{a: a, closed: make(chan struct{})}
	defer close(stream.closed)
	trans := raft.NewNetworkTransport(stream, 1, 2*time.Second, io.Discard)
	defer trans.Close()
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:1")},
		Term:      target.raft.CurrentTerm() + 100, Leader: []byte("127.0.0.1:1"),
	}
	var resp raft.AppendEntriesResponse
	return trans.AppendEntries(raft.ServerID(target.NodeID()), raft.ServerAddress(target.Addr()), req, &resp)
}

// attack replays issue 9's three attacks on a 3-node cluster and returns
// what each one got.
func attack(t *testing.T, c *cluster, a attacker) (apply, join, appendErr error) {
	t.Helper()
	l := c.leader()
	rc := ha.DefaultResourceConfig("exec:pwn", c.nodes[l].NodeID())
	rc.Spec = json.RawMessage(`{"command":"/bin/sh","args":["-c","id > /tmp/pwned"]}`)
	cmd, err := newCommand(opPutResource, 0, rc)
	if err != nil {
		t.Fatal(err)
	}
	join = a.forward(c.nodes[l].Addr(), fwdRequest{Op: fwdJoin, TimeoutMS: 2000, ID: a.join, Addr: "127.0.0.1:1"})
	if a.joinOnly {
		return nil, join, nil
	}
	apply = a.forward(c.nodes[l].Addr(), fwdRequest{Op: fwdApply, TimeoutMS: 2000, Command: cmd})
	for i := range 5 {
		if err := a.appendEntries(c.nodes[i%len(c.nodes)]); err != nil || appendErr == nil {
			appendErr = err
		}
	}
	return apply, join, appendErr
}

// The three attacks of issue 9 (a forwarded apply of put_resource, a
// forwarded join of node "evil", raw AppendEntries with a higher term from
// a non-member), replayed against a real 3-node cluster with mutual TLS by
// a peer without a certificate, with a certificate of another CA, with an
// expired certificate of the cluster CA, with a valid certificate of a
// node outside the cluster, and by a member asking to join under another
// name: every attack is refused, and the terms, the resources and the
// servers stay as they were. Without TLS (the control) the same attacks
// succeed, so the test does detect them.
func TestTLSRefusesTheAttacksOfIssue9(t *testing.T) {
	ca := newCA(t)
	otherCA := newCA(t)
	tlsWith := func(cert tls.Certificate) *tls.Config {
		// Always send the certificate, also when the server asks for
		// another CA's (Go's client would then send none).
		return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
	}
	past := time.Now().Add(-48 * time.Hour)
	attackers := []attacker{
		{name: "plain TCP", join: "evil", log: "TLS handshake failed"},
		{name: "TLS without a certificate", tls: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, join: "evil",
			log: "TLS handshake failed"},
		{name: "certificate of another CA", tls: tlsWith(signCert(t, otherCA, pki.CertOptions{Node: "evil"})), join: "evil",
			log: "certificate signed by unknown authority"},
		{name: "expired certificate", tls: tlsWith(signCert(t, ca, pki.CertOptions{Node: "evil", NotBefore: past, Validity: time.Hour})), join: "evil",
			log: "certificate has expired"},
		{name: "valid certificate of a non-member", tls: tlsWith(signCert(t, ca, pki.CertOptions{Node: "evil"})), join: "",
			log: "outside the raft configuration"},
		{name: "member joining under another name", tls: tlsWith(signCert(t, ca, pki.CertOptions{Node: "n2"})), join: "evil",
			log: "a node may join only as itself", joinOnly: true},
	}
	var logs logBuffer
	c := tlsCluster(t, 3, ca, &logs)
	c.form()
	l := c.leader()
	c.waitServers(l, 3, 0)
	terms := func() []uint64 {
		var out []uint64
		for _, s := range c.nodes {
			out = append(out, s.raft.CurrentTerm())
		}
		return out
	}
	// Wait until every node has heard from the leader of this term.
	eventually(10*time.Second, func() bool { ts := terms(); return ts[0] == ts[1] && ts[1] == ts[2] })
	before := terms()
	for _, a := range attackers {
		t.Run(a.name, func(t *testing.T) {
			mark := len(logs.String())
			apply, join, appendErr := attack(t, c, a)
			if apply == nil && !a.joinOnly {
				t.Errorf("forwarded apply of put_resource accepted")
			}
			if a.join != "" && join == nil {
				t.Errorf("forwarded join of %q accepted", a.join)
			}
			if appendErr == nil && !a.joinOnly {
				t.Errorf("AppendEntries from a fake leader accepted")
			}
			t.Logf("apply: %v; join: %v; append entries: %v", apply, join, appendErr)
			if got := logs.String()[mark:]; !strings.Contains(got, a.log) {
				t.Errorf("no log line with %q; logged:\n%s", a.log, got)
			}
		})
	}
	// The fake leader sends term+100. A natural election on a loaded
	// machine may add a term or two, never dozens.
	for i, after := range terms() {
		if after >= before[i]+50 {
			t.Errorf("%s: raft term went from %d to %d: a fake leader's term was accepted", c.nodes[i].NodeID(), before[i], after)
		} else if after != before[i] {
			t.Logf("%s: raft term %d -> %d (an election meanwhile)", c.nodes[i].NodeID(), before[i], after)
		}
	}
	l = c.leader()
	if err := c.nodes[l].Barrier(c.ctx(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if res := c.nodes[l].Resources(); len(res) != 0 {
		t.Errorf("resources after the attacks: %v, want none", res)
	}
	servers, err := c.nodes[l].Servers()
	if err != nil || len(servers) != 3 {
		t.Errorf("servers after the attacks: %+v (%v), want n1..n3", servers, err)
	}

	t.Run("control without TLS", func(t *testing.T) {
		p := newTCPCluster(t, 3, nil)
		p.form()
		pl := p.leader()
		p.waitServers(pl, 3, 0)
		term := p.nodes[pl].raft.CurrentTerm()
		apply, join, appendErr := attack(t, p, attacker{name: "plain", join: "evil"})
		if apply != nil || join != nil || appendErr != nil {
			t.Fatalf("attacks on a cluster without TLS: apply %v, join %v, append entries %v; want all accepted", apply, join, appendErr)
		}
		if got := p.nodes[pl].raft.CurrentTerm(); got <= term {
			t.Errorf("term %d after a fake leader's AppendEntries, want above %d", got, term)
		}
	})
}
