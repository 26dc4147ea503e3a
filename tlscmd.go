package main

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"haxd/ha"
	"haxd/pki"
)

// TLSCmd is `haxd tls`: it makes the cluster CA, the node certificates
// of the raft port's mutual TLS and the client certificates of the HTTPS
// API listener, as `consul tls` does.
type TLSCmd struct {
	CA   TLSCACmd   `cmd:"" name:"ca" help:"Manage the cluster CA."`
	Cert TLSCertCmd `cmd:"" name:"cert" help:"Manage node and API client certificates."`
}

// TLSCACmd groups the CA subcommands.
type TLSCACmd struct {
	Create TLSCACreateCmd `cmd:"" help:"Create the cluster CA: ca.pem and ca-key.pem (mode 0600)."`
}

// TLSCertCmd groups the certificate subcommands.
type TLSCertCmd struct {
	Create TLSCertCreateCmd `cmd:"" help:"Create a node (--node) or API client (--client, --role) certificate signed by the cluster CA: NAME.pem and NAME-key.pem (mode 0600)."`
}

// TLSCACreateCmd is `haxd tls ca create`.
type TLSCACreateCmd struct {
	Dir   string `help:"Directory to write the files to." default:"."`
	Days  int    `help:"Validity in days." default:"1825"`
	Force bool   `help:"Overwrite existing files."`
	now   func() time.Time
}

// Run creates the CA.
func (c *TLSCACreateCmd) Run(env *Env) error { return c.run(env.Stdout) }

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
	Node   string   `help:"Node name (the agent's node_name): the certificate's common name and DNS SAN."`
	Client string   `help:"Instead of --node: the name of an API client (operator, monitoring) whose certificate opens the agents' HTTPS API listener (api_addr) with --role."`
	Role   string   `help:"With --client: admin (every request) or read-only (GET requests only: status, config; writes answer 403). Written into the certificate's subject as OU haxd-role=ROLE." placeholder:"ROLE"`
	Dir    string   `help:"Directory with ca.pem and ca-key.pem; the files are written there too." default:"."`
	Days   int      `help:"Validity in days." default:"365"`
	IP     []string `help:"Extra IP address SAN (repeatable)."`
	Force  bool     `help:"Overwrite existing files."`
	now    func() time.Time
}

// Run creates the certificate.
func (c *TLSCertCreateCmd) Run(env *Env) error { return c.run(env.Stdout) }

func (c *TLSCertCreateCmd) run(out io.Writer) error {
	if c.Days < 1 {
		return usageError{fmt.Errorf("--days %d: expected at least 1", c.Days)}
	}
	validity := time.Duration(c.Days) * 24 * time.Hour
	switch {
	case c.Node != "" && c.Client != "":
		return usageError{fmt.Errorf("--node %s and --client %s: a certificate is for a node or for an API client, give one", c.Node, c.Client)}
	case c.Client != "":
		return c.createClient(out, validity)
	case c.Node == "":
		return usageError{fmt.Errorf("expected --node NAME (a node certificate) or --client NAME --role ROLE (an API client certificate)")}
	case c.Role != "":
		return usageError{fmt.Errorf("--role %s: only with --client (a node certificate has the admin role)", c.Role)}
	}
	if err := ha.CheckNodeName(c.Node); err != nil {
		return usageError{fmt.Errorf("--node: %w", err)}
	}
	var ips []net.IP
	for _, s := range c.IP {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError{fmt.Errorf("--ip %q: not an IP address", s)}
		}
		ips = append(ips, ip)
	}
	ca, err := c.loadCA()
	if err != nil {
		return err
	}
	if err := ca.CreateCert(c.Dir, pki.CertOptions{Node: c.Node, IPs: ips, Validity: validity}, nowOf(c.now), c.Force); err != nil {
		return err
	}
	return c.created(out, c.Node)
}

// createClient makes an API client certificate.
func (c *TLSCertCreateCmd) createClient(out io.Writer, validity time.Duration) error {
	if err := pki.ValidClientName(c.Client); err != nil {
		return usageError{fmt.Errorf("--client: %w", err)}
	}
	if c.Role == "" {
		return usageError{fmt.Errorf("--client %s needs --role admin or --role read-only", c.Client)}
	}
	role, err := pki.ParseRole(c.Role)
	if err != nil {
		return usageError{fmt.Errorf("--%w", err)}
	}
	if len(c.IP) > 0 {
		return usageError{fmt.Errorf("--ip: only with --node (a client certificate names no address)")}
	}
	ca, err := c.loadCA()
	if err != nil {
		return err
	}
	if err := ca.CreateClientCert(c.Dir, pki.ClientOptions{Name: c.Client, Role: role, Validity: validity}, nowOf(c.now), c.Force); err != nil {
		return err
	}
	return c.created(out, c.Client)
}

func (c *TLSCertCreateCmd) loadCA() (*pki.CA, error) {
	ca, err := pki.LoadCA(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("load the CA (create it with haxd tls ca create --dir %s): %w", c.Dir, err)
	}
	return ca, nil
}

func (c *TLSCertCreateCmd) created(out io.Writer, name string) error {
	_, err := fmt.Fprintf(out, "created %s and %s\n", filepath.Join(c.Dir, pki.CertFile(name)), filepath.Join(c.Dir, pki.KeyFile(name)))
	return err
}

func nowOf(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}
