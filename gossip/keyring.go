package gossip

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Key rotation, cluster-wide (each operation is a serf query answered by
// every member): InstallKey a new key everywhere, UseKey it as the primary
// (the one that encrypts), then RemoveKey the old one. With
// Config.KeyringFile set, every member persists its keyring there, so a
// restarted member still has the keys in use.

// KeyringStatus is the cluster's keyring as the members report it.
type KeyringStatus struct {
	// Keys maps each installed key (base64) to the number of members that
	// have it.
	Keys map[string]int
	// Primary maps each primary key (base64) to the number of members that
	// use it to encrypt.
	Primary map[string]int
	// Members is the number of members asked.
	Members int
}

// InstallKey adds key (base64) to every member's keyring.
func (g *Gossip) InstallKey(key string) error {
	_, err := g.keyOp("install", key, g.serf.KeyManager().InstallKey)
	return err
}

// UseKey makes the installed key (base64) every member's primary key.
func (g *Gossip) UseKey(key string) error {
	_, err := g.keyOp("use", key, g.serf.KeyManager().UseKey)
	return err
}

// RemoveKey removes key (base64) from every member's keyring; the primary
// key cannot be removed.
func (g *Gossip) RemoveKey(key string) error {
	_, err := g.keyOp("remove", key, g.serf.KeyManager().RemoveKey)
	return err
}

// ListKeys asks every member for its keys.
func (g *Gossip) ListKeys() (KeyringStatus, error) {
	r, err := g.keyOp("list", "", func(string) (*serf.KeyResponse, error) { return g.serf.KeyManager().ListKeys() })
	if r == nil {
		return KeyringStatus{}, err
	}
	return KeyringStatus{Keys: maps.Clone(r.Keys), Primary: maps.Clone(r.PrimaryKeys), Members: r.NumNodes}, err
}

func (g *Gossip) keyOp(op, key string, f func(string) (*serf.KeyResponse, error)) (*serf.KeyResponse, error) {
	if op != "list" {
		k, err := ParseKey(key)
		if err != nil {
			return nil, fmt.Errorf("%s gossip key: %w", op, err)
		}
		key = base64.StdEncoding.EncodeToString(k)
	}
	r, err := f(key)
	if r != nil && r.NumErr > 0 {
		var msgs []string
		for _, n := range slices.Sorted(maps.Keys(r.Messages)) {
			msgs = append(msgs, n+": "+r.Messages[n])
		}
		err = errors.Join(err, fmt.Errorf("%d of %d members failed: %s", r.NumErr, r.NumNodes, strings.Join(msgs, "; ")))
	}
	if err != nil {
		return r, fmt.Errorf("%s gossip key: %w", op, err)
	}
	if r != nil && r.NumResp < r.NumNodes {
		return r, fmt.Errorf("%s gossip key: only %d of %d members answered", op, r.NumResp, r.NumNodes)
	}
	return r, nil
}

// loadKeyring returns the keyring to start with: the keys in cfg's
// KeyringFile if it exists (primary first, as serf writes it), else
// cfg.Key; nil when there is neither.
func loadKeyring(cfg Config) (*memberlist.Keyring, error) {
	if cfg.KeyringFile != "" {
		b, err := os.ReadFile(cfg.KeyringFile)
		switch {
		case err == nil:
			var enc []string
			if err := json.Unmarshal(b, &enc); err != nil {
				return nil, fmt.Errorf("keyring file %s: %w", cfg.KeyringFile, err)
			}
			if len(enc) == 0 {
				return nil, fmt.Errorf("keyring file %s: no keys", cfg.KeyringFile)
			}
			keys := make([][]byte, len(enc))
			for i, e := range enc {
				if keys[i], err = ParseKey(e); err != nil {
					return nil, fmt.Errorf("keyring file %s: key %d: %w", cfg.KeyringFile, i+1, err)
				}
			}
			kr, err := memberlist.NewKeyring(keys, keys[0])
			if err != nil {
				return nil, fmt.Errorf("keyring file %s: %w", cfg.KeyringFile, err)
			}
			return kr, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("keyring file: %w", err)
		}
	}
	if len(cfg.Key) == 0 {
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(nil, slices.Clone(cfg.Key))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return kr, nil
}
