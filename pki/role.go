package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a certificate may do on the agent's HTTPS API listener
// (api_addr).
type Role string

// The roles of the API listener.
const (
	// RoleAdmin may do everything the local API socket allows. Node
	// certificates (which carry no role) have it.
	RoleAdmin Role = "admin"
	// RoleReadOnly may only read: GET requests (status, config, rules,
	// groups, datacenter settings, members). Every write answers 403.
	RoleReadOnly Role = "read-only"
)

// RoleOUPrefix starts the organizational unit (OU) of the subject that
// names the role of an API client certificate: "haxd-role=admin" or
// "haxd-role=read-only". `openssl x509 -noout -subject` shows it.
const RoleOUPrefix = "haxd-role="

// ParseRole parses "admin" or "read-only".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleReadOnly:
		return r, nil
	}
	return "", fmt.Errorf("role %q: expected admin or read-only", s)
}

// RoleOf returns the role of a certificate the cluster CA signed: the role
// its subject's OU names (API client certificates), or RoleAdmin for a
// node certificate, which carries no role. A certificate with no role that
// names no node, with two roles, or with an unknown role has none: it is
// an error.
func RoleOf(c *x509.Certificate) (Role, error) {
	var roles []string
	for _, ou := range c.Subject.OrganizationalUnit {
		if r, ok := strings.CutPrefix(ou, RoleOUPrefix); ok {
			roles = append(roles, r)
		}
	}
	switch len(roles) {
	case 0:
		if _, err := NodeName(c); err != nil {
			return "", fmt.Errorf("certificate %q carries no role (OU %sadmin or %sread-only) and names no node: %w", c.Subject.CommonName, RoleOUPrefix, RoleOUPrefix, err)
		}
		return RoleAdmin, nil
	case 1:
		r, err := ParseRole(roles[0])
		if err != nil {
			return "", fmt.Errorf("certificate %q: %w", c.Subject.CommonName, err)
		}
		return r, nil
	}
	return "", fmt.Errorf("certificate %q carries %d roles %q, expected one", c.Subject.CommonName, len(roles), roles)
}

// ClientOptions shape an API client certificate.
type ClientOptions struct {
	// Name is the client's name (the certificate's common name): 1 to 63
	// letters, digits and '-'. Required.
	Name string
	// Role is what the client may do. Required.
	Role Role
	// NotBefore is the start of the validity. Zero: one minute before now.
	NotBefore time.Time
	// Validity is the length of the validity. 0: DefaultCertValidity.
	Validity time.Duration
}

// CreateClientCert signs an API client certificate (TLS client only, no
// DNS SAN: it can never serve as a node certificate) and writes NAME.pem
// and NAME-key.pem (mode 0600) into dir. It refuses to overwrite existing
// files unless force.
func (ca *CA) CreateClientCert(dir string, opts ClientOptions, now time.Time, force bool) error {
	der, key, err := ca.signClient(opts, now)
	if err != nil {
		return err
	}
	if err := writePair(dir, CertFile(opts.Name), KeyFile(opts.Name), der, key, force); err != nil {
		return fmt.Errorf("create client cert for %s: %w", opts.Name, err)
	}
	return nil
}

// SignClient returns an API client certificate without writing files
// (tests).
func (ca *CA) SignClient(opts ClientOptions, now time.Time) (tls.Certificate, error) {
	der, key, err := ca.signClient(opts, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.tlsCert(der, key)
}

func (ca *CA) signClient(opts ClientOptions, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	if err := ValidClientName(opts.Name); err != nil {
		return nil, nil, fmt.Errorf("sign client cert: %w", err)
	}
	if _, err := ParseRole(string(opts.Role)); err != nil {
		return nil, nil, fmt.Errorf("sign client cert for %s: %w", opts.Name, err)
	}
	return ca.signLeaf(&x509.Certificate{
		Subject: pkix.Name{CommonName: opts.Name, Organization: []string{"haxd"},
			OrganizationalUnit: []string{RoleOUPrefix + string(opts.Role)}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, opts.NotBefore, opts.Validity, now)
}

// LoadClient reads the CA certificate, an API client certificate (or a
// node certificate, which has the admin role) and its key, and checks that
// the certificate is signed by the CA, is valid at now, may authenticate a
// TLS client and carries a role. Errors name the file.
func LoadClient(caFile, certFile, keyFile string, now time.Time) (*Material, error) {
	m, err := loadPair(caFile, certFile, keyFile, now, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if m.Role, err = RoleOf(m.Cert.Leaf); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	m.Node = m.Cert.Leaf.Subject.CommonName
	return m, nil
}

// errRoleCert refuses a certificate with a role as a node certificate.
var errRoleCert = errors.New("certificate names no node: it carries an API role (an API client certificate)")
