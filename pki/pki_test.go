package pki

import (
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
