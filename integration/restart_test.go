package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"haxd/internal/cluster"
	"haxd/pki"
)

// memberTLS returns the TLS client config of a cluster member (node's
// certificate), as another node's store dials with it.
func memberTLS(t *testing.T, cl *cluster.Cluster, node string) *tls.Config {
	t.Helper()
	m, err := pki.Load(filepath.Join(cl.TLSDir, pki.CAFile), filepath.Join(cl.TLSDir, pki.CertFile(node)),
		filepath.Join(cl.TLSDir, pki.KeyFile(node)), time.Now())
	if err != nil {
		t.Fatalf("load %s's certificate: %v", node, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{m.Cert}, RootCAs: m.CAs, ServerName: "unused",
		InsecureSkipVerify: true} // the test trusts the node it starts
}

// forwardReadIndex sends one forwarded read_index request to a store port,
// as another node's store does (Hops 1: the receiver must not forward it
// again), and returns the answer's code ("" for success) or an error when
// no answer came.
func forwardReadIndex(addr string, tc *tls.Config) (string, error) {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: time.Second}
	if tc != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(`F{"op":"read_index","hops":1,"timeout_ms":300}` + "\n")); err != nil {
		return "", err
	}
	var res struct {
		Code string `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&res); err != nil {
		return "", err
	}
	return res.Code, nil
}

// The raft leader's agent is restarted (SIGTERM, start) while the port it
// listens on is hammered with forwarded read_index requests, as the other
// nodes do when they still take it for their leader: the agent starts,
// answers them ("not ready" while its store starts, then normally) and
// never crashes.
func TestAgentStartsWhileForwardedRequestsHammerItsPort(t *testing.T) {
	h := startCluster(t)
	peerTLS := memberTLS(t, h.cl, "node2") // a member: its requests pass the TLS checks
	var leader string
	h.waitFor(startDeadline, "a raft leader", func() bool {
		for _, n := range h.cl.Nodes {
			if code, err := forwardReadIndex(n.Raft, peerTLS); err == nil && code == "" {
				leader = n.Name
				return true
			}
		}
		return false
	})
	n := h.cl.Node(leader)
	mark := h.mark()
	if err := h.cl.StopAgent(n, failoverDeadline); err != nil {
		t.Fatalf("stop %s: %v", leader, err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answers sync.Map // code -> *atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, err := forwardReadIndex(n.Raft, peerTLS)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				v, _ := answers.LoadOrStore(code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	time.Sleep(200 * time.Millisecond) // the hammer runs before the agent starts
	if err := h.cl.StartAgent(n); err != nil {
		t.Fatalf("restart %s: %v", leader, err)
	}
	if err := h.cl.WaitReady(h.ctx, n); err != nil {
		t.Fatalf("restart %s under forwarded requests: %v", leader, err)
	}
	// Keep hammering the running agent for a while: it must stay up.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n.Exited() {
			t.Fatalf("agent %s exited while serving forwarded requests; see %s", leader, n.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n.Exited() {
		t.Fatalf("agent %s exited; see %s", leader, n.Log)
	}
	for _, l := range linesSince(n.Log, mark[n.Log]) {
		if strings.Contains(l, "panic") || strings.Contains(l, "nil pointer") {
			t.Errorf("%s logged a crash: %s", leader, l)
		}
	}
	total := int64(0)
	answers.Range(func(k, v any) bool {
		c := v.(*atomic.Int64).Load()
		total += c
		t.Logf("answers with code %q: %d", k, c)
		return true
	})
	if total == 0 {
		t.Errorf("the restarted %s answered no forwarded request", leader)
	}
}
