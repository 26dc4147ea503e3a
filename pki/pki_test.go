package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateAndLoad(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := CreateCA(dir, 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateCA(dir, 0, now, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second CreateCA without force: %v, want a refusal to overwrite", err)
	}
	if err := ca.CreateCert(dir, CertOptions{Node: "node1"}, now, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAKeyFile, KeyFile("node1")} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	loaded, err := LoadCA(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
	m, err := Load(filepath.Join(dir, CAFile), filepath.Join(dir, CertFile("node1")), filepath.Join(dir, KeyFile("node1")), now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if m.Node != "node1" {
		t.Errorf("node = %q, want node1", m.Node)
	}
	if got := m.Cert.Leaf.NotAfter.Sub(now); got < DefaultCertValidity-time.Hour || got > DefaultCertValidity+time.Hour {
		t.Errorf("validity %v, want about %v", got, DefaultCertValidity)
	}

	other := t.TempDir()
	oca, err := CreateCA(other, 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := oca.CreateCert(other, CertOptions{Node: "node2"}, now, false); err != nil {
		t.Fatal(err)
	}
	if err := ca.CreateCert(dir, CertOptions{Node: "old", NotBefore: now.Add(-48 * time.Hour), Validity: time.Hour}, now, false); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, CAFile)
	for _, tt := range []struct {
		name, ca, cert, key, want string
	}{
		{"other CA", caFile, filepath.Join(other, CertFile("node2")), filepath.Join(other, KeyFile("node2")), "unknown authority"},
		{"key of another cert", caFile, filepath.Join(dir, CertFile("node1")), filepath.Join(dir, KeyFile("old")), "does not belong to"},
		{"expired", caFile, filepath.Join(dir, CertFile("old")), filepath.Join(dir, KeyFile("old")), "expired"},
		{"missing file", caFile, filepath.Join(dir, "nope.pem"), filepath.Join(dir, KeyFile("node1")), "nope.pem"},
		{"key as cert", caFile, filepath.Join(dir, KeyFile("node1")), filepath.Join(dir, KeyFile("node1")), "expected CERTIFICATE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(tt.ca, tt.cert, tt.key, now); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// Sign refuses a certificate for a name the agent would refuse
// (ha.CheckNodeName, tested in ha).
func TestSignRefusesInvalidNodeName(t *testing.T) {
	if _, err := (&CA{}).Sign(CertOptions{Node: "bad name"}, time.Now()); err == nil {
		t.Error("Sign accepted an invalid node name")
	}
}

func FuzzParsePEM(f *testing.F) {
	dir := f.TempDir()
	ca, err := CreateCA(dir, 0, time.Now(), false)
	if err != nil {
		f.Fatal(err)
	}
	if err := ca.CreateCert(dir, CertOptions{Node: "n1"}, time.Now(), false); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{CAFile, CertFile("n1"), KeyFile("n1")} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if certs, err := ParseCerts(b); err == nil {
			for _, c := range certs {
				_, _ = NodeName(c)
			}
		}
		_, _ = ParseKey(b)
	})
}

// TestClientCertificatesCarryTheirRole: API client certificates carry
// their role in the subject's OU, node certificates are admins, and a
// client certificate never passes as a node certificate.
func TestClientCertificatesCarryTheirRole(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := CreateCA(dir, 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []ClientOptions{{Name: "ops", Role: RoleReadOnly}, {Name: "admin1", Role: RoleAdmin},
		{Name: "old", Role: RoleReadOnly, NotBefore: now.Add(-48 * time.Hour), Validity: time.Hour}} {
		if err := ca.CreateClientCert(dir, opts, now, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := ca.CreateCert(dir, CertOptions{Node: "node1"}, now, false); err != nil {
		t.Fatal(err)
	}
	if err := ca.CreateClientCert(dir, ClientOptions{Name: "ops", Role: RoleAdmin}, now, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("overwrite without force: %v", err)
	}
	for _, bad := range []ClientOptions{{Name: "a.b", Role: RoleAdmin}, {Name: "x", Role: "root"}, {Name: "y"}} {
		if err := ca.CreateClientCert(dir, bad, now, false); err == nil {
			t.Errorf("CreateClientCert(%+v) accepted", bad)
		}
	}
	caFile := filepath.Join(dir, CAFile)
	files := func(name string) (string, string) {
		return filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name))
	}
	for _, tt := range []struct {
		name string
		role Role
		want string // error substring; "" for success
	}{
		{"ops", RoleReadOnly, ""},
		{"admin1", RoleAdmin, ""},
		{"node1", RoleAdmin, ""},
		{"old", "", "expired"},
	} {
		cert, key := files(tt.name)
		m, err := LoadClient(caFile, cert, key, now)
		if tt.want != "" {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadClient(%s) = %v, want an error with %q", tt.name, err, tt.want)
			}
			continue
		}
		if err != nil || m.Role != tt.role || m.Node != tt.name {
			t.Errorf("LoadClient(%s): %+v %v, want role %s", tt.name, m, err, tt.role)
		}
	}
	cert, key := files("ops")
	if _, err := Load(caFile, cert, key, now); err == nil || !strings.Contains(err.Error(), "names no node") {
		t.Errorf("Load of a client certificate as a node's: %v, want a refusal", err)
	}
	// A role in a certificate that also names a node still names no node.
	tc, err := ca.SignClient(ClientOptions{Name: "node2", Role: RoleReadOnly}, now)
	if err != nil {
		t.Fatal(err)
	}
	tc.Leaf.DNSNames = []string{"node2"}
	if _, err := NodeName(tc.Leaf); err == nil {
		t.Error("NodeName accepted a certificate with a role")
	}
	tc.Leaf.Subject.OrganizationalUnit = []string{RoleOUPrefix + "root"}
	if _, err := RoleOf(tc.Leaf); err == nil || !strings.Contains(err.Error(), `"root"`) {
		t.Errorf("RoleOf with an unknown role: %v", err)
	}
	tc.Leaf.Subject.OrganizationalUnit = []string{RoleOUPrefix + "admin", RoleOUPrefix + "read-only"}
	if _, err := RoleOf(tc.Leaf); err == nil || !strings.Contains(err.Error(), "2 roles") {
		t.Errorf("RoleOf with two roles: %v", err)
	}
}

func TestVerifyNode(t *testing.T) {
	now := time.Now()
	ca, err := CreateCA(t.TempDir(), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := CreateCA(t.TempDir(), 0, now, false)
	if err != nil {
		t.Fatal(err)
	}
	chain := func(signer *CA, node string, client bool) []*x509.Certificate {
		var c tls.Certificate
		if client {
			c, err = signer.SignClient(ClientOptions{Name: node, Role: RoleAdmin}, now)
		} else {
			c, err = signer.Sign(CertOptions{Node: node}, now)
		}
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{c.Leaf}
	}
	for _, tt := range []struct {
		name  string
		chain []*x509.Certificate
		want  string // node, or "error: substring"
	}{
		{"node certificate", chain(ca, "node1", false), "node1"},
		{"none", nil, "error: none presented"},
		{"another CA", chain(other, "node1", false), "error: not one of the cluster CA"},
		{"client certificate", chain(ca, "ops", true), "error: not one of the cluster CA"}, // no server usage
	} {
		node, err := VerifyNode(tt.chain, ca.Pool(), x509.ExtKeyUsageServerAuth)
		if want, isErr := strings.CutPrefix(tt.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: VerifyNode = %q, %v; want an error with %q", tt.name, node, err, want)
			}
		} else if err != nil || node != tt.want {
			t.Errorf("%s: VerifyNode = %q, %v; want %q", tt.name, node, err, tt.want)
		}
	}
	// As a TLS client, a client certificate has the usage but names no node.
	if _, err := VerifyNode(chain(ca, "ops", true), ca.Pool(), x509.ExtKeyUsageClientAuth); err == nil || !strings.Contains(err.Error(), "names no node") {
		t.Errorf("client certificate as a node: %v", err)
	}
}
