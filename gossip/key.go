package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// KeySize is the size in bytes of the keys GenerateKey makes (AES-256).
const KeySize = 32

// GenerateKey returns a fresh random 32-byte gossip key in the base64 form
// ParseKey reads.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// ParseKey decodes a base64 (standard encoding, padded) gossip key of 16, 24
// or 32 bytes. Surrounding white space is ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("parse gossip key: empty")
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("parse gossip key: not base64: %w", err)
	}
	if err := checkKeyLen(len(k)); err != nil {
		return nil, fmt.Errorf("parse gossip key: %w", err)
	}
	return k, nil
}

// ReadKeyFile reads a key written by `haxd keygen` from path. It refuses a
// file that other users may read.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read gossip key %s: mode %v lets other users read it, expected 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func checkKeyLen(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("key is %d bytes, expected 16, 24 or 32 (AES-128/192/256)", n)
}
