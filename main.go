// Command haxd is a high-availability cluster manager for Linux: run
// `haxd agent` on every node, and services come back on another node when
// one dies, never running on two at once. `haxd sim` replays failure
// scenarios deterministically.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"

	"haxd/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// CLI is the haxd command tree.
type CLI struct {
	Demo    DemoCmd    `cmd:"" help:"Start a 3-node cluster on loopback, kill a node, watch the failover."`
	Agent   AgentCmd   `cmd:"" help:"Run the HA agent of this node."`
	HA      HACmd      `cmd:"" name:"ha" help:"Operate the HA cluster through the local agent."`
	Version VersionCmd `cmd:"" help:"Print the haxd version."`
	Rules   RulesCmd   `cmd:"" help:"Inspect HA rules configs."`
	Sim     SimCmd     `cmd:"" help:"Replay failure scenarios in the deterministic simulator."`
	Guard   GuardCmd   `cmd:"" help:"Run the self-fencing guard the agent feeds."`
	Keygen  KeygenCmd  `cmd:"" help:"Generate a gossip encryption key."`
	TLS     TLSCmd     `cmd:"" name:"tls" help:"Create the cluster CA and node certificates for the raft port's mutual TLS."`

	DemoService DemoServiceCmd `cmd:"" name:"demo-service" hidden:"" help:"Run a heartbeat-recording test service."`
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println("haxd", version)
	return nil
}

func main() {
	var cli CLI
	ctx := kong.Parse(&cli, kong.Name("haxd"), kong.Description("High-availability cluster manager."),
		kong.UsageOnError(), kong.Exit(func(code int) {
			if code != 0 {
				code = 2
			}
			os.Exit(code)
		}))
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "haxd:", err)
		var ue usageError
		var ae *api.Error
		if errors.As(err, &ue) || errors.As(err, &ae) && ae.Code >= 400 && ae.Code < 500 {
			os.Exit(2) // bad input: a flag, a config file or a request the agent refused
		}
		os.Exit(1)
	}
}
