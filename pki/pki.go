// Package pki makes and loads the certificates of haxd's cluster traffic:
// one cluster CA, and one certificate per node that names the node (its
// common name and a DNS SAN are the node name). `haxd tls ca create` and
// `haxd tls cert create` write them as PEM files (ca.pem, ca-key.pem,
// NAME.pem, NAME-key.pem), as `consul tls` does. Keys are ECDSA P-256;
// only the standard library's crypto is used.
//
// The store uses the loaded material for mutual TLS 1.3 on its port: every
// connection must present a certificate of the cluster CA, and the name in
// it is checked against the raft server ID (see package store).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"haxd/ha"
)

// Default validities, as consul tls uses them: the CA for 5 years, node
// certificates for 1 year.
const (
	DefaultCAValidity   = 5 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// File names in a certificate directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CertFile and KeyFile return the file names of node's certificate and key.
func CertFile(node string) string { return node + ".pem" }

// KeyFile returns the file name of node's private key.
func KeyFile(node string) string { return node + "-key.pem" }

// CA is a loaded cluster CA with its key, able to sign node certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CreateCA makes a new CA valid from now for validity (0: the default) and
// writes ca.pem and ca-key.pem (mode 0600) into dir. It refuses to
// overwrite existing files unless force.
func CreateCA(dir string, validity time.Duration, now time.Time, force bool) (*CA, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "haxd cluster CA " + serial.Text(16)[:8], Organization: []string{"haxd"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create ca: parse: %w", err)
	}
	if err := writePair(dir, CAFile, CAKeyFile, der, key, force); err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads ca.pem and ca-key.pem from dir.
func LoadCA(dir string) (*CA, error) {
	certs, err := readCerts(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", filepath.Join(dir, CAFile))
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to %s", filepath.Join(dir, CAKeyFile), filepath.Join(dir, CAFile))
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// CertOptions shape a node certificate.
type CertOptions struct {
	// Node is the node name (the agent's node_name): the certificate's
	// common name and first DNS SAN. Required.
	Node string
	// IPs are extra IP SANs (for tools that dial by address). Optional.
	IPs []net.IP
	// NotBefore is the start of the validity. Zero: one minute before now.
	NotBefore time.Time
	// Validity is the length of the validity. 0: DefaultCertValidity.
	Validity time.Duration
}

// CreateCert signs a certificate for opts.Node, usable as TLS server and
// client, and writes NAME.pem (the certificate) and NAME-key.pem (mode
// 0600) into dir. It refuses to overwrite existing files unless force.
func (ca *CA) CreateCert(dir string, opts CertOptions, now time.Time, force bool) error {
	der, key, err := ca.sign(opts, now)
	if err != nil {
		return err
	}
	if err := writePair(dir, CertFile(opts.Node), KeyFile(opts.Node), der, key, force); err != nil {
		return fmt.Errorf("create cert for %s: %w", opts.Node, err)
	}
	return nil
}

// Sign returns a TLS certificate for opts.Node without writing files
// (tests).
func (ca *CA) Sign(opts CertOptions, now time.Time) (tls.Certificate, error) {
	der, key, err := ca.sign(opts, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.tlsCert(der, key)
}

// tlsCert pairs a signed leaf with its key and the CA into a chain.
func (ca *CA) tlsCert(der []byte, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func (ca *CA) sign(opts CertOptions, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	if err := ha.CheckNodeName(opts.Node); err != nil {
		return nil, nil, fmt.Errorf("sign cert: %w", err)
	}
	return ca.signLeaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: opts.Node, Organization: []string{"haxd"}},
		DNSNames:    []string{opts.Node},
		IPAddresses: opts.IPs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, opts.NotBefore, opts.Validity, now)
}

// signLeaf fills tmpl's key, serial and validity (notBefore zero: one
// minute before now; validity 0: DefaultCertValidity) and signs it.
func (ca *CA) signLeaf(tmpl *x509.Certificate, notBefore time.Time, validity time.Duration, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	name := tmpl.Subject.CommonName
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	if notBefore.IsZero() {
		notBefore = now.Add(-time.Minute)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("sign cert for %s: generate key: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("sign cert for %s: %w", name, err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notBefore.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign cert for %s: %w", name, err)
	}
	return der, key, nil
}

// Material is what a node (or an API client) needs for mutual TLS: its
// certificate and key, and the cluster CA to check peers against.
type Material struct {
	// Cert is this node's certificate chain and key.
	Cert tls.Certificate
	// CAs holds the cluster CA.
	CAs *x509.CertPool
	// Node is the node name in Cert; for an API client certificate
	// (LoadClient) the client's name.
	Node string
	// Role is what Cert may do on the API listener (RoleOf).
	Role Role
}

// Load reads the CA certificate, the node certificate and its key, and
// checks that the certificate is signed by the CA, is valid at now, and
// names a node. Errors name the file.
func Load(caFile, certFile, keyFile string, now time.Time) (*Material, error) {
	m, err := loadPair(caFile, certFile, keyFile, now, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if m.Node, err = NodeName(m.Cert.Leaf); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	m.Role = RoleAdmin
	return m, nil
}

// loadPair reads and checks a certificate, its key and the CA: the key
// belongs to the certificate, which is signed by the CA, valid at now and
// allowed every usage in usages.
func loadPair(caFile, certFile, keyFile string, now time.Time, usages ...x509.ExtKeyUsage) (*Material, error) {
	cas, err := readCerts(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	chain, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to %s", keyFile, certFile)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: usages}); err != nil {
		return nil, fmt.Errorf("%s: not a valid certificate of the CA in %s: %w", certFile, caFile, err)
	}
	var raw [][]byte
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	return &Material{Cert: tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf}, CAs: pool}, nil
}

// NodeName returns the node a certificate names: its common name, which
// must be a valid node name and also one of its DNS SANs. An API client
// certificate (one with a role, RoleOf) names no node.
func NodeName(c *x509.Certificate) (string, error) {
	for _, ou := range c.Subject.OrganizationalUnit {
		if strings.HasPrefix(ou, RoleOUPrefix) {
			return "", errRoleCert
		}
	}
	cn := c.Subject.CommonName
	if err := ha.CheckNodeName(cn); err != nil {
		return "", fmt.Errorf("certificate names no node: common name: %w", err)
	}
	for _, d := range c.DNSNames {
		if d == cn {
			return cn, nil
		}
	}
	return "", fmt.Errorf("certificate names no node: common name %q is not among its DNS SANs %q", cn, c.DNSNames)
}

// VerifyNode checks a peer's certificate chain (leaf first, as TLS
// presents it) against the CA pool cas for the given usage and returns
// the node its leaf names (NodeName).
func VerifyNode(chain []*x509.Certificate, cas *x509.CertPool, usage x509.ExtKeyUsage) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("certificate: none presented")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("certificate is not one of the cluster CA: %w", err)
	}
	return NodeName(chain[0])
}

// ValidClientName checks the name of an API client certificate: the same
// rules as a node name (ha.CheckNodeName).
func ValidClientName(s string) error {
	if ha.CheckNodeName(s) != nil {
		return fmt.Errorf("client name %q: %s", s, ha.NodeNameRule)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists (use --force to overwrite)", p)
			}
		}
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certPath, certPEM, 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readCerts reads every CERTIFICATE block of a PEM file (at least one).
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCerts decodes every CERTIFICATE block of PEM data; it fails on
// data with none, or with a block it cannot parse.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d: type %q, expected CERTIFICATE", n, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// readKey reads a PKCS#8, EC or PKCS#1 private key from a PEM file.
func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseKey decodes the first PEM block of b as a private key (PKCS#8, EC
// or PKCS#1).
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key found")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block type %q, expected a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
