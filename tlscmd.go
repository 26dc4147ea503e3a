package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"haxd/ha"
	"haxd/pki"
)

// TLSCmd is `haxd tls`: it makes the cluster CA and the node certificates
// of the raft port's mutual TLS, as `consul tls` does.
type TLSCmd struct {
	CA   TLSCACmd   `cmd:"" name:"ca" help:"Manage the cluster CA."`
	Cert TLSCertCmd `cmd:"" name:"cert" help:"Manage node certificates."`
}

// TLSCACmd groups the CA subcommands.
type TLSCACmd struct {
	Create TLSCACreateCmd `cmd:"" help:"Create the cluster CA: ca.pem and ca-key.pem (mode 0600)."`
}

// TLSCertCmd groups the certificate subcommands.
type TLSCertCmd struct {
	Create TLSCertCreateCmd `cmd:"" help:"Create a node certificate signed by the cluster CA: NAME.pem and NAME-key.pem (mode 0600)."`
}

// TLSCACreateCmd is `haxd tls ca create`.
type TLSCACreateCmd struct {
	Dir   string `help:"Directory to write the files to." default:"."`
	Days  int    `help:"Validity in days." default:"1825"`
	Force bool   `help:"Overwrite existing files."`
	now   func() time.Time
}

// Run creates the CA.
func (c *TLSCACreateCmd) Run() error { return c.run(os.Stdout) }

func (c *TLSCACreateCmd) run(out io.Writer) error {
	if c.Days < 1 {
		return usageError{fmt.Errorf("--days %d: expected at least 1", c.Days)}
	}
	if _, err := pki.CreateCA(c.Dir, time.Duration(c.Days)*24*time.Hour, nowOf(c.now), c.Force); err != nil {
		return err
	}
	fmt.Fprintf(out, "created %s and %s\n", filepath.Join(c.Dir, pki.CAFile), filepath.Join(c.Dir, pki.CAKeyFile))
	return nil
}

// TLSCertCreateCmd is `haxd tls cert create`.
type TLSCertCreateCmd struct {
	Node  string   `help:"Node name (the agent's node_name): the certificate's common name and DNS SAN." required:""`
	Dir   string   `help:"Directory with ca.pem and ca-key.pem; the files are written there too." default:"."`
	Days  int      `help:"Validity in days." default:"365"`
	IP    []string `help:"Extra IP address SAN (repeatable)."`
	Force bool     `help:"Overwrite existing files."`
	now   func() time.Time
}

// Run creates the certificate.
func (c *TLSCertCreateCmd) Run() error { return c.run(os.Stdout) }

func (c *TLSCertCreateCmd) run(out io.Writer) error {
	if err := ha.CheckNodeName(c.Node); err != nil {
		return usageError{fmt.Errorf("--node: %w", err)}
	}
	if c.Days < 1 {
		return usageError{fmt.Errorf("--days %d: expected at least 1", c.Days)}
	}
	var ips []net.IP
	for _, s := range c.IP {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError{fmt.Errorf("--ip %q: not an IP address", s)}
		}
		ips = append(ips, ip)
	}
	ca, err := pki.LoadCA(c.Dir)
	if err != nil {
		return fmt.Errorf("load the CA (create it with haxd tls ca create --dir %s): %w", c.Dir, err)
	}
	if err := ca.CreateCert(c.Dir, pki.CertOptions{Node: c.Node, IPs: ips, Validity: time.Duration(c.Days) * 24 * time.Hour}, nowOf(c.now), c.Force); err != nil {
		return err
	}
	fmt.Fprintf(out, "created %s and %s\n", filepath.Join(c.Dir, pki.CertFile(c.Node)), filepath.Join(c.Dir, pki.KeyFile(c.Node)))
	return nil
}

func nowOf(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}
