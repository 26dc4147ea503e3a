package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/pki"
)

func TestTLSCommandsMakeLoadableFiles(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := (&TLSCACreateCmd{Dir: dir, Days: 10}).run(&out); err != nil {
		t.Fatal(err)
	}
	if err := (&TLSCertCreateCmd{Node: "node1", Dir: dir, Days: 5, IP: []string{"10.0.0.1"}}).run(&out); err != nil {
		t.Fatal(err)
	}
	m, err := pki.Load(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node1.pem"), filepath.Join(dir, "node1-key.pem"), time.Now())
	if err != nil {
		t.Fatalf("load what haxd tls made: %v", err)
	}
	if m.Node != "node1" || len(m.Cert.Leaf.IPAddresses) != 1 {
		t.Errorf("node %q, IPs %v; want node1 with 10.0.0.1", m.Node, m.Cert.Leaf.IPAddresses)
	}
	if d := time.Until(m.Cert.Leaf.NotAfter); d < 4*24*time.Hour || d > 6*24*time.Hour {
		t.Errorf("certificate valid for %v more, want about 5 days", d)
	}
	if !strings.Contains(out.String(), "node1-key.pem") {
		t.Errorf("output %q does not name the key file", out.String())
	}

	if err := (&TLSCertCreateCmd{Client: "ops", Role: "read-only", Dir: dir, Days: 5}).run(&out); err != nil {
		t.Fatal(err)
	}
	cm, err := pki.LoadClient(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"), time.Now())
	if err != nil || cm.Role != pki.RoleReadOnly || cm.Node != "ops" {
		t.Fatalf("load the client certificate: %+v, %v", cm, err)
	}
	if _, err := pki.Load(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"), time.Now()); err == nil {
		t.Error("a client certificate loads as a node certificate")
	}

	for _, tt := range []struct {
		name  string
		cmd   TLSCertCreateCmd
		want  string
		usage bool
	}{
		{"bad node", TLSCertCreateCmd{Node: "a.b", Dir: dir, Days: 1}, `node name "a.b"`, true},
		{"bad ip", TLSCertCreateCmd{Node: "n2", Dir: dir, Days: 1, IP: []string{"x"}}, `--ip "x"`, true},
		{"bad days", TLSCertCreateCmd{Node: "n2", Dir: dir, Days: 0}, "--days 0", true},
		{"no CA", TLSCertCreateCmd{Node: "n2", Dir: t.TempDir(), Days: 1}, "haxd tls ca create", false},
		{"exists", TLSCertCreateCmd{Node: "node1", Dir: dir, Days: 1}, "--force", false},
		{"neither node nor client", TLSCertCreateCmd{Dir: dir, Days: 1}, "expected --node NAME", true},
		{"node and client", TLSCertCreateCmd{Node: "n2", Client: "c", Role: "admin", Dir: dir, Days: 1}, "give one", true},
		{"client without role", TLSCertCreateCmd{Client: "c", Dir: dir, Days: 1}, "needs --role", true},
		{"bad role", TLSCertCreateCmd{Client: "c", Role: "root", Dir: dir, Days: 1}, `--role "root": expected admin or read-only`, true},
		{"role of a node", TLSCertCreateCmd{Node: "n2", Role: "read-only", Dir: dir, Days: 1}, "only with --client", true},
		{"client with ip", TLSCertCreateCmd{Client: "c", Role: "admin", IP: []string{"10.0.0.1"}, Dir: dir, Days: 1}, "--ip: only with --node", true},
		{"bad client name", TLSCertCreateCmd{Client: "a b", Role: "admin", Dir: dir, Days: 1}, `--client: client name "a b"`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.run(&out)
			var ue usageError
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.As(err, &ue) != tt.usage {
				t.Errorf("run = %v, want an error with %q (usage error %v)", err, tt.want, tt.usage)
			}
		})
	}
}
