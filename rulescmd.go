package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"haxd/crm/placement"
)

// RulesCmd groups the rules subcommands.
type RulesCmd struct {
	Check RulesCheckCmd `cmd:"" help:"Check a rules config: print dropped rules, the resulting config and the compiled view."`
}

// RulesCheckCmd is `haxd rules check [--nodes n1,n2,n3] FILE`.
type RulesCheckCmd struct {
	Nodes string `help:"Comma-separated known cluster nodes." default:"node1,node2,node3"`
	File  string `arg:"" help:"Rules config file (section config)." type:"existingfile"`
}

// Run prints the three-part check report (Log, Config, Compiled Config).
func (c *RulesCheckCmd) Run(env *Env) error {
	raw, err := os.ReadFile(c.File)
	if err != nil {
		return fmt.Errorf("read rules file: %w", err)
	}
	var nodes []string
	for n := range strings.SplitSeq(c.Nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("--nodes %q: expected at least one node name", c.Nodes)
	}
	_, err = io.WriteString(env.Stdout, placement.CheckRulesFile(raw, nodes).String())
	return err
}
