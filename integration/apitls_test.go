package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/internal/cluster"
	"haxd/pki"
)

// TestHAOverTheAgentsHTTPSListener: a real agent with api_addr serves
// `haxd ha --address` to client certificates of the cluster CA: a
// read-only one reads the status and is refused a write (exit 2, its
// role named, nothing changed), an admin one writes; a TLS client without
// a certificate is refused in the handshake and the agent logs why. The
// unix socket keeps working beside it.
func TestHAOverTheAgentsHTTPSListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := startClusterWith(t, func(o *cluster.Options) {
		o.NodeExtra = map[string][]string{"node1": {"api_addr=" + addr}}
	})
	h.addService("exec:svc1", "node1")
	h.waitStarted("exec:svc1", "node1", startDeadline)

	ca, err := pki.LoadCA(h.cl.TLSDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []pki.ClientOptions{{Name: "cli12-ro", Role: pki.RoleReadOnly}, {Name: "cli12-admin", Role: pki.RoleAdmin}} {
		if err := ca.CreateClientCert(h.cl.TLSDir, c, time.Now(), false); err != nil {
			t.Fatal(err)
		}
	}
	haxd := func(client string, args ...string) (int, string) {
		d := h.cl.TLSDir
		full := append([]string{"ha", "--address", addr, "--tls-ca", filepath.Join(d, pki.CAFile),
			"--tls-cert", filepath.Join(d, pki.CertFile(client)), "--tls-key", filepath.Join(d, pki.KeyFile(client))}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, built.bin, full...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("haxd %v: %v", full, err)
		}
		return code, string(out)
	}

	if code, out := haxd("cli12-ro", "status"); code != 0 || !strings.Contains(out, "service exec:svc1 (node1, ") {
		t.Fatalf("read-only status: exit %d\n%s", code, out)
	}
	code, out := haxd("cli12-ro", "set", "exec:svc1", "--comment", "from-ro")
	if code != 2 || !strings.Contains(out, `role read-only (client certificate "cli12-ro") may not PUT /v1/resources`) {
		t.Fatalf("read-only write: exit %d, want 2 naming the role\n%s", code, out)
	}
	if code, out := haxd("cli12-admin", "set", "exec:svc1", "--comment", "from-admin"); code != 0 {
		t.Fatalf("admin write: exit %d\n%s", code, out)
	}
	cfg := h.status().Resources["exec:svc1"]
	if cfg == nil || cfg.Comment != "from-admin" {
		t.Fatalf("config after the writes: %+v, want the admin's comment only", cfg)
	}

	mark := h.mark()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err == nil {
		// TLS 1.3: the server's refusal arrives with the first read.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a client without a certificate: %v, want the handshake refused with \"certificate required\"", err)
	}
	h.waitFor(10*time.Second, "the agent logs the refused handshake", func() bool {
		return len(h.grepSince("node1", mark, "TLS handshake error")) > 0
	})
	var buf bytes.Buffer
	for _, l := range h.grepSince("node1", mark, "TLS handshake error") {
		buf.WriteString(l)
	}
	if !strings.Contains(buf.String(), "component=api-tls") {
		t.Errorf("refusal log line lacks the component: %s", buf.String())
	}
}
