// Command haxd is a high-availability cluster manager for Linux: run
// `haxd agent` on every node, and services come back on another node when
// one dies, never running on two at once. `haxd sim` replays failure
// scenarios deterministically.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"

	"haxd/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes of every haxd command (docs/cli.md, "Exit codes").
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: the command failed (agent unreachable, a write not
	// committed, a service that failed, an internal error).
	ExitFailure = 1
	// ExitUsage: bad input: an unknown command or flag, a bad flag value,
	// a config file with an error, or a request the agent refused as
	// invalid or not allowed now (a 4xx answer).
	ExitUsage = 2
)

// CLI is the haxd command tree.
type CLI struct {
	VersionFlag kong.VersionFlag `name:"version" help:"Print the haxd version and exit."`

	Demo       DemoCmd       `cmd:"" help:"Start a 3-node cluster on loopback, kill a node, watch the failover."`
	Agent      AgentCmd      `cmd:"" help:"Run the HA agent of this node."`
	HA         HACmd         `cmd:"" name:"ha" help:"Operate the HA cluster through the local agent."`
	Version    VersionCmd    `cmd:"" help:"Print the haxd version."`
	Rules      RulesCmd      `cmd:"" help:"Inspect HA rules configs."`
	Sim        SimCmd        `cmd:"" help:"Replay failure scenarios in the deterministic simulator."`
	Guard      GuardCmd      `cmd:"" help:"Run the self-fencing guard the agent feeds."`
	Keygen     KeygenCmd     `cmd:"" help:"Generate a gossip encryption key."`
	TLS        TLSCmd        `cmd:"" name:"tls" help:"Create the cluster CA, node certificates (raft port) and API client certificates (HTTPS API listener)."`
	Completion CompletionCmd `cmd:"" help:"Print a shell completion script (bash or zsh)."`

	DemoService DemoServiceCmd `cmd:"" name:"demo-service" hidden:"" help:"Run a heartbeat-recording test service."`
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprintln(env.Stdout, "haxd", version)
	return err
}

// Env is what every command's Run gets besides its own flags: where to
// write its output, and how to end the process at once. main passes the
// process's; tests pass buffers.
type Env struct {
	// Stdout gets the command's output.
	Stdout io.Writer
	// Stderr gets diagnostics a command prints while it goes on.
	Stderr io.Writer
	// Exit ends the process at once without returning from Run: only the
	// agent's second stop signal uses it (exit like a crash, the guard
	// fences). main passes os.Exit.
	Exit func(code int)
}

// usageError marks errors caused by bad input; main exits with code 2
// (ExitUsage).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// exitError ends a command with a given exit code. err is printed as
// any error is; nil when the command already said why on its own
// output (haxd sim).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

// kongOptions are the parser options of main and of the tests.
func kongOptions() []kong.Option {
	return []kong.Option{kong.Name("haxd"), kong.Description("High-availability cluster manager."),
		kong.Vars{"version": "haxd " + version}}
}

// exitCode carries an exit code out of kong's Exit callback.
type exitCode int

// run parses args, runs the command and returns the process exit code. A
// usage error prints one short usage line and the error, not the whole
// help.
func run(args []string, stdout, stderr io.Writer) (code int) {
	var cli CLI
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	opts := append(kongOptions(), kong.Writers(stdout, stderr), kong.Exit(func(c int) {
		if c != 0 {
			c = ExitUsage
		}
		panic(exitCode(c))
	}))
	parser, err := kong.New(&cli, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "haxd:", err)
		return ExitFailure
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "haxd: %v\nRun \"%s --help\" for usage.\n", err, helpPath(err))
		return ExitUsage
	}
	if err := ctx.Run(&Env{Stdout: stdout, Stderr: stderr, Exit: os.Exit}); err != nil {
		var ee exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintln(stderr, "haxd:", err)
		}
		return exitCodeOf(err)
	}
	return ExitOK
}

// helpPath is the command whose --help fits a parse error: "haxd ha" for
// a typo after "haxd ha".
func helpPath(err error) string {
	parts := []string{"haxd"}
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		for _, p := range pe.Context.Path {
			if p.Command != nil {
				parts = append(parts, p.Command.Name)
			}
		}
	}
	return strings.Join(parts, " ")
}

// exitCodeOf maps a command's error to its exit code: the one an
// exitError carries, ExitUsage for bad input (a usageError, a 4xx answer
// of the agent), else ExitFailure.
func exitCodeOf(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	var ae *api.Error
	if errors.As(err, &ue) || errors.As(err, &ae) && ae.Code >= 400 && ae.Code < 500 {
		return ExitUsage
	}
	return ExitFailure
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
