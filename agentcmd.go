package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"haxd/agent"
	"haxd/ha"
)

// AgentCmd is `haxd agent`: run the HA agent of this node.
type AgentCmd struct {
	Config          string   `short:"c" help:"Config file (key = value lines; see docs/configuration.md)." type:"existingfile"`
	NodeName        string   `name:"node-name" help:"Override node_name."`
	DataDir         string   `name:"data-dir" help:"Override data_dir."`
	GossipAddr      string   `name:"gossip-addr" help:"Override gossip_addr (host:port)."`
	RaftAddr        string   `name:"raft-addr" help:"Override raft_addr (host:port)."`
	APISocket       string   `name:"api-socket" help:"Override api_socket."`
	Join            []string `help:"Gossip address of a member to join (repeatable); overrides join."`
	BootstrapExpect int      `name:"bootstrap-expect" help:"Override bootstrap_expect." default:"-1"`
	EncryptKey      string   `name:"encrypt-key" help:"Override encrypt_key (base64, from haxd keygen)." env:"HAXD_ENCRYPT_KEY"`
	Insecure        bool     `help:"Run without gossip encryption (local tests only)."`
	Timing          string   `help:"Override the timing profile: fast or pve."`
	Set             []string `help:"Override any config key: --set key=value (repeatable)." sep:"none"`
	Check           bool     `help:"Only validate the config (file, flags, timing, key file) and exit: 0 when valid, 2 naming the bad field."`
}

// Run loads the config, applies the flags, validates and runs the agent
// until SIGTERM or SIGINT.
func (c *AgentCmd) Run(env *Env) error {
	cfg, warnings, err := c.load()
	if err != nil {
		return err
	}
	if c.Check {
		for _, w := range warnings {
			fmt.Fprintln(env.Stdout, "warning: timing:", w)
		}
		api := cfg.APISocket
		if cfg.APIAddr != "" {
			api += " and https://" + cfg.APIAddr
		}
		fmt.Fprintf(env.Stdout, "config OK: node %s, timing %s (lock_ttl %v, failover in about %v), api %s\n",
			cfg.NodeName, cfg.TimingProfile, cfg.Timing.LockTTL, cfg.Timing.LockTTL+cfg.Timing.CRMRound, api)
		return nil
	}
	logger := slog.New(newLogHandler(env.Stderr, cfg.LogFormat, cfg.LogLevel))
	for _, w := range warnings {
		logger.Warn("timing: " + w)
	}
	return c.run(cfg, logger, env.Exit)
}

// newLogHandler returns the agent's slog handler: text or json, at the
// given level, with haxd's own levels printed by name (NOTICE, TRACE)
// instead of slog's "INFO+2".
func newLogHandler(w io.Writer, format, level string) slog.Handler {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			if l, ok := a.Value.Any().(slog.Level); ok {
				a.Value = slog.StringValue(levelName(l))
			}
		}
		return a
	}}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// levelName names haxd's custom levels; the standard ones keep slog's names.
func levelName(l slog.Level) string {
	switch l {
	case ha.LevelNotice:
		return "NOTICE"
	case ha.LevelTrace:
		return "TRACE"
	}
	return l.String()
}

// load reads the config file, applies the flags and validates the result.
func (c *AgentCmd) load() (agent.Config, []string, error) {
	cfg := agent.DefaultConfig()
	if c.Config != "" {
		b, err := os.ReadFile(c.Config)
		if err != nil {
			return cfg, nil, usageError{fmt.Errorf("read config: %w", err)}
		}
		if err := agent.ParseConfig(c.Config, b, &cfg); err != nil {
			return cfg, nil, usageError{err}
		}
	}
	overrides := map[string]string{"node_name": c.NodeName, "data_dir": c.DataDir, "gossip_addr": c.GossipAddr,
		"raft_addr": c.RaftAddr, "api_socket": c.APISocket, "encrypt_key": c.EncryptKey, "timing": c.Timing}
	if len(c.Join) > 0 {
		overrides["join"] = strings.Join(c.Join, ",")
	}
	if c.BootstrapExpect >= 0 {
		overrides["bootstrap_expect"] = fmt.Sprint(c.BootstrapExpect)
	}
	if c.Insecure {
		overrides["insecure"] = "true"
	}
	for _, kv := range c.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return cfg, nil, usageError{fmt.Errorf("--set %q: expected key=value", kv)}
		}
		overrides[k] = v
	}
	for k, v := range overrides {
		if v == "" {
			continue
		}
		if err := cfg.SetOverride(k, v); err != nil {
			return cfg, nil, usageError{fmt.Errorf("flag: %w", err)}
		}
	}
	warnings, err := cfg.Finish()
	if err != nil {
		return cfg, nil, usageError{fmt.Errorf("config: %w", err)}
	}
	return cfg, warnings, nil
}

// run runs the agent until SIGTERM or SIGINT; a second signal during the
// graceful stop calls exit(1).
func (c *AgentCmd) run(cfg agent.Config, logger *slog.Logger, exit func(int)) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGUSR1 stops the agent as for a node shutdown, SIGUSR2 as for a
	// reboot: the shutdown policy applies (for init systems other than
	// systemd, whose shutdown jobs the agent asks for over D-Bus).
	var intent atomic.Int32 // 0 ask systemd, 1 shutdown, 2 reboot
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		select {
		case sig := <-usr:
			intent.Store(1)
			if sig == syscall.SIGUSR2 {
				intent.Store(2)
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	detector := agent.NewShutdownDetector(cfg.ShutdownDetectTimeout, logger.With(ha.KeyAgent, cfg.NodeName, "component", "shutdown-detect"))
	nodeShutdown := func() (bool, bool) {
		switch intent.Load() {
		case 1:
			return true, false
		case 2:
			return true, true
		}
		return detector.Detect()
	}
	go func() {
		// The graceful shutdown waits for the CRM to freeze the services,
		// which needs a master. A second signal exits at once, like a
		// crash: the guard then fences this node's services.
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
		<-again
		logger.Error("second signal during shutdown: exiting without a clean stop; the guard will fence")
		exit(1)
	}()
	agent.Version = version
	return agent.RunWith(ctx, cfg, logger, nodeShutdown)
}
