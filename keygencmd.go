package main

import (
	"fmt"
	"io"
	"os"

	"haxd/gossip"
)

// KeygenCmd is `haxd keygen`: it makes a gossip encryption key.
type KeygenCmd struct {
	Out   string `short:"o" help:"Write the key to this file (mode 0600) instead of printing it."`
	Force bool   `help:"Overwrite an existing --out file."`
}

// Run prints a fresh key, or writes it to --out.
func (c *KeygenCmd) Run(env *Env) error { return c.run(env.Stdout) }

func (c *KeygenCmd) run(stdout io.Writer) error {
	key, err := gossip.GenerateKey()
	if err != nil {
		return err
	}
	if c.Out == "" {
		_, err := fmt.Fprintln(stdout, key)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if c.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(c.Out, flags, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := fmt.Fprintln(f, key); err != nil {
		f.Close()
		return fmt.Errorf("keygen: write %s: %w", c.Out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keygen: write %s: %w", c.Out, err)
	}
	return nil
}
