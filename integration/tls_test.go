package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/pki"
)

// An agent whose certificate is missing, of another CA, expired, or names
// another node refuses to start, saying which file and why, before it
// starts a guard or opens a port.
func TestAgentRefusesToStartWithABadCertificate(t *testing.T) {
	if built.skip != "" {
		t.Skip(built.skip)
	}
	now := time.Now()
	dir := t.TempDir()
	ca, err := pki.CreateCA(filepath.Join(dir, "ca"), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.CreateCA(filepath.Join(dir, "other"), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(c *pki.CA, sub string, opts pki.CertOptions) string {
		d := filepath.Join(dir, sub)
		if err := c.CreateCert(d, opts, now, false); err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := mk(ca, "good", pki.CertOptions{Node: "node1"})
	wrongName := mk(ca, "wrongname", pki.CertOptions{Node: "node2"})
	expired := mk(ca, "expired", pki.CertOptions{Node: "node1", NotBefore: now.Add(-72 * time.Hour), Validity: 24 * time.Hour})
	foreign := mk(other, "foreign", pki.CertOptions{Node: "node1"})
	caFile := filepath.Join(dir, "ca", pki.CAFile)
	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"missing", filepath.Join(good, "nope.pem"), filepath.Join(good, pki.KeyFile("node1")), "nope.pem: no such file"},
		{"another CA", filepath.Join(foreign, pki.CertFile("node1")), filepath.Join(foreign, pki.KeyFile("node1")), "certificate signed by unknown authority"},
		{"expired", filepath.Join(expired, pki.CertFile("node1")), filepath.Join(expired, pki.KeyFile("node1")), "certificate has expired"},
		{"another node", filepath.Join(wrongName, pki.CertFile("node2")), filepath.Join(wrongName, pki.KeyFile("node2")),
			`the certificate names node "node2", but node_name is "node1"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, built.bin, "agent", "--node-name", "node1", "--data-dir", data,
				"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--api-socket", filepath.Join(data, "api.sock"),
				"--encrypt-key", "AAAAAAAAAAAAAAAAAAAAAA==",
				"--set", "tls_ca_file="+caFile, "--set", "tls_cert_file="+tt.cert, "--set", "tls_key_file="+tt.key)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("agent started with a bad certificate; stderr:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("agent exited (%v) without saying %q; stderr:\n%s", err, tt.want, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(data, "guard.pid")); err == nil {
				t.Errorf("the agent started a guard before checking its certificate")
			}
		})
	}
}
