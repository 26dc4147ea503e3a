package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"haxd/agent"
	"haxd/api"
	"haxd/ha"
	"haxd/pki"
)

// HACmd is `haxd ha`: the operator's command line, a thin client of an
// agent's API: the local agent's unix socket by default, or an agent's
// HTTPS API listener with --address.
type HACmd struct {
	Socket        string `help:"Path of the agent's API socket (default: api_socket of $HAXD_CONFIG or /etc/haxd/haxd.conf, else /run/haxd/haxd.sock)." env:"HAXD_SOCKET"`
	Address       string `help:"host:port of an agent's HTTPS API listener (api_addr), instead of the socket; see docs/cli.md, Remote access." env:"HAXD_ADDRESS"`
	TLSCA         string `name:"tls-ca" help:"With --address: the cluster CA certificate (ca.pem)." env:"HAXD_TLS_CA" placeholder:"FILE"`
	TLSCert       string `name:"tls-cert" help:"With --address: a client certificate (haxd tls cert create --client)." env:"HAXD_TLS_CERT" placeholder:"FILE"`
	TLSKey        string `name:"tls-key" help:"With --address: the key of --tls-cert." env:"HAXD_TLS_KEY" placeholder:"FILE"`
	TLSServerName string `name:"tls-server-name" help:"With --address: the node the agent's certificate must name (default: any node of the CA)." env:"HAXD_TLS_SERVER_NAME" placeholder:"NODE"`

	Status          HAStatusCmd      `cmd:"" help:"Show quorum, master, every LRM and every service."`
	Add             HAAddCmd         `cmd:"" help:"Add a resource to HA management."`
	Remove          HARemoveCmd      `cmd:"" help:"Remove a resource from HA management (it is neither stopped nor started)."`
	Set             HASetCmd         `cmd:"" help:"Change a resource's requested state, policy, group or spec."`
	Config          HAConfigCmd      `cmd:"" help:"Show the config of one resource, or of all."`
	Migrate         HAMigrateCmd     `cmd:"" help:"Live-migrate a service to a node."`
	Relocate        HARelocateCmd    `cmd:"" help:"Stop a service, move it to a node and start it there."`
	Stop            HAStopCmd        `cmd:"" help:"Stop a service within a timeout and keep it stopped."`
	NodeMaintenance HAMaintenanceCmd `cmd:"" name:"node-maintenance" help:"Enable or disable maintenance of a node."`
	CRMCommand      HACRMCmd         `cmd:"" name:"crm-command" help:"Disarm or arm the whole HA stack."`
	Rules           HARulesCmd       `cmd:"" help:"Show or replace the placement rules."`
	Groups          HAGroupsCmd      `cmd:"" help:"Show or replace the legacy HA groups (migrated to rules by the CRM)."`
	Node            HANodeCmd        `cmd:"" help:"Cluster node operations."`
	Datacenter      HADatacenterCmd  `cmd:"" help:"Show or change cluster-wide settings (shutdown policy, scheduler)."`

	// now is the clock the client certificate is checked against; nil:
	// time.Now.
	now func() time.Time
}

// client returns the API client: of the HTTPS listener at --address, or
// of the unix socket. Missing or bad TLS files are usage errors naming
// the flag or file.
func (h *HACmd) client() (*api.Client, error) {
	if h.Address == "" {
		return api.NewClient(h.socket()), nil
	}
	if h.Socket != "" {
		return nil, usageError{fmt.Errorf("--socket %s and --address %s: give one (HAXD_SOCKET and HAXD_ADDRESS set them too)", h.Socket, h.Address)}
	}
	if _, _, err := net.SplitHostPort(h.Address); err != nil {
		return nil, usageError{fmt.Errorf("--address %q: expected host:port: %w", h.Address, err)}
	}
	var missing []string
	for _, f := range []struct{ flag, v string }{{"--tls-ca", h.TLSCA}, {"--tls-cert", h.TLSCert}, {"--tls-key", h.TLSKey}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return nil, usageError{fmt.Errorf("--address %s needs %s: the agent's HTTPS listener accepts only clients with a certificate of the cluster CA (make one with haxd tls cert create --client NAME --role read-only|admin)",
			h.Address, strings.Join(missing, ", "))}
	}
	m, err := pki.LoadClient(h.TLSCA, h.TLSCert, h.TLSKey, nowOf(h.now))
	if err != nil {
		return nil, usageError{fmt.Errorf("client certificate: %w", err)}
	}
	return api.NewTLSClient(h.Address, api.TLSClientConfig(m, h.TLSServerName)), nil
}

// defaultSocket is the agent's default api_socket.
const defaultSocket = "/run/haxd/haxd.sock"

// socket returns --socket ($HAXD_SOCKET), else the api_socket of the
// agent config ($HAXD_CONFIG, default /etc/haxd/haxd.conf) when that file
// sets one, else the default socket.
func (h *HACmd) socket() string {
	if h.Socket != "" {
		return h.Socket
	}
	path := os.Getenv("HAXD_CONFIG")
	if path == "" {
		path = "/etc/haxd/haxd.conf"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return defaultSocket
	}
	cfg := agent.DefaultConfig()
	if err := agent.ParseConfig(path, b, &cfg); err != nil || cfg.APISocket == "" {
		return defaultSocket
	}
	return cfg.APISocket
}

// call runs one API call with the CLI's timeout on the selected client.
func (h *HACmd) call(fn func(context.Context, *api.Client) error) error {
	cl, err := h.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return fn(ctx, cl)
}

// writeJSON prints v indented, as every --json and json output does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// HAStatusCmd prints the status view.
type HAStatusCmd struct {
	Output   string        `help:"Output format: text or json (structured, schema in docs/cli.md)." enum:"text,json" default:"text"`
	Verbose  bool          `help:"Also print the full cluster state."`
	Watch    bool          `short:"w" help:"Print the status again every --interval until interrupted (json: one document per line)."`
	Interval time.Duration `help:"Refresh interval of --watch." default:"2s"`
}

// Run prints the status, once or (with --watch) until interrupted.
func (c *HAStatusCmd) Run(h *HACmd, env *Env) error {
	if c.Interval <= 0 {
		return usageError{fmt.Errorf("--interval %v: expected a positive duration", c.Interval)}
	}
	cl, err := h.client()
	if err != nil {
		return err
	}
	if !c.Watch {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return c.print(ctx, cl, env.Stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.watch(ctx, cl, env.Stdout, env.Stderr)
	return nil
}

// watch prints the status every Interval until ctx ends; an unreachable
// agent is reported and retried, not fatal.
func (c *HAStatusCmd) watch(ctx context.Context, cl *api.Client, stdout, stderr io.Writer) {
	for {
		var buf bytes.Buffer
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.print(rctx, cl, &buf)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if c.Output == "text" {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
			fmt.Fprintf(stdout, "every %v: haxd ha status    %s\n\n", c.Interval, time.Now().Format(time.DateTime))
		}
		if err != nil {
			fmt.Fprintln(stderr, "haxd:", err)
		}
		stdout.Write(buf.Bytes())
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.Interval):
		}
	}
}

func (c *HAStatusCmd) print(ctx context.Context, cl *api.Client, w io.Writer) error {
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		var out any = api.BuildView(st)
		if c.Verbose {
			out = struct {
				*api.View
				State *api.Status `json:"state"`
			}{api.BuildView(st), st}
		}
		if !c.Watch {
			return writeJSON(w, out)
		}
		return json.NewEncoder(w).Encode(out)
	}
	fmt.Fprint(w, api.Format(api.Entries(st)))
	if c.Verbose {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(w, "full cluster state:\n%s\n", b)
	}
	return nil
}

// HAAddCmd adds a resource.
type HAAddCmd struct {
	SID         string   `arg:"" help:"Resource id, type:name (e.g. exec:web)."`
	Node        string   `help:"Node the resource lives on now (default: the local node)."`
	State       string   `help:"Requested state: started, stopped, disabled, ignored." default:"started"`
	MaxRestart  *int     `name:"max-restart" help:"Local restart attempts before reporting a failed start (default 1)."`
	MaxRelocate *int     `name:"max-relocate" help:"Relocations after failed starts before entering error (default 1)."`
	Failback    *bool    `help:"Move back to a higher-priority node when it returns (default true)."`
	Comment     string   `help:"Free text."`
	Group       string   `help:"Legacy HA group (see haxd ha groups); it must exist. The CRM migrates it to a node-affinity rule."`
	Spec        string   `help:"Type-specific definition as JSON (exec: {\"command\":...,\"args\":[...]})."`
	Cores       float64  `help:"CPU cores the service needs, for the static and dynamic schedulers."`
	MemoryMB    int      `name:"memory-mb" help:"Memory the service needs in MiB, for the static and dynamic schedulers."`
	Command     []string `arg:"" optional:"" passthrough:"" help:"For exec resources: the command and its arguments, after -- (shorthand for --spec). Everything after -- belongs to the command, so give haxd's flags before --; a flag of ha add after -- is refused."`
}

// addFlags returns the long flags of HAAddCmd, which after -- would be
// taken for the command's own arguments.
func addFlags() []string {
	return []string{"--node", "--state", "--max-restart", "--max-relocate", "--failback", "--no-failback", "--comment", "--group", "--spec", "--cores", "--memory-mb"}
}

// Run adds the resource.
func (c *HAAddCmd) Run(h *HACmd) error {
	req, err := c.request()
	if err != nil {
		return err
	}
	return h.call(func(ctx context.Context, cl *api.Client) error { return cl.AddResource(ctx, req) })
}

// request builds the add request from the flags and the command after --.
func (c *HAAddCmd) request() (api.AddResourceRequest, error) {
	req := api.AddResourceRequest{SID: c.SID, Node: c.Node, State: c.State, MaxRestart: c.MaxRestart,
		MaxRelocate: c.MaxRelocate, Failback: c.Failback, Comment: c.Comment, Group: c.Group, Cores: c.Cores, MemoryMB: c.MemoryMB}
	switch {
	case c.Spec != "" && len(c.Command) > 0:
		return req, usageError{fmt.Errorf("--spec and a command after -- are mutually exclusive")}
	case c.Spec != "":
		if !json.Valid([]byte(c.Spec)) {
			return req, usageError{fmt.Errorf("--spec %q: not valid JSON", c.Spec)}
		}
		req.Spec = json.RawMessage(c.Spec)
	case len(c.Command) > 0:
		cmd := c.Command
		if cmd[0] == "--" {
			cmd = cmd[1:]
		}
		if len(cmd) == 0 {
			return req, usageError{fmt.Errorf("expected a command after --")}
		}
		for _, a := range cmd[1:] {
			name, _, _ := strings.Cut(a, "=")
			if slices.Contains(addFlags(), name) {
				return req, usageError{fmt.Errorf("%s after --: everything after -- is the command and its arguments; "+
					"give haxd ha add's flags before -- (or pass the command with --spec if it really takes %s)", name, name)}
			}
		}
		b, _ := json.Marshal(map[string]any{"command": cmd[0], "args": cmd[1:]})
		req.Spec = b
	}
	return req, nil
}

// HARemoveCmd removes a resource.
type HARemoveCmd struct {
	SID   string `arg:"" help:"Resource id."`
	Purge bool   `help:"Also remove the resource from every rule." default:"true" negatable:""`
}

// Run removes the resource.
func (c *HARemoveCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.RemoveResource(ctx, api.RemoveResourceRequest{SID: c.SID, Purge: &c.Purge})
	})
}

// HASetCmd changes a resource.
type HASetCmd struct {
	SID         string  `arg:"" help:"Resource id."`
	State       *string `help:"Requested state: started, stopped, disabled, ignored."`
	MaxRestart  *int    `name:"max-restart" help:"Local restart attempts."`
	MaxRelocate *int    `name:"max-relocate" help:"Relocations after failed starts."`
	Failback    *bool   `help:"Fail back to higher-priority nodes."`
	Comment     *string `help:"Free text."`
	Group       *string `help:"Legacy HA group, which must exist (haxd ha groups set); empty removes it."`
	Spec        string  `help:"JSON file with a merge patch (RFC 7386) of the resource's spec: keys given replace, keys set to null are removed." type:"path" placeholder:"FILE"`
	// ExpectRevision makes the change a compare-and-set.
	ExpectRevision uint64 `name:"expect-revision" placeholder:"N" help:"Change only while the resource's revision (haxd ha config) is still N; otherwise nothing changes (409, exit 2)."`
}

// Run changes the resource: all given fields in one atomic store
// operation, or none.
func (c *HASetCmd) Run(h *HACmd) error {
	req := api.SetResourceRequest{SID: c.SID, State: c.State, MaxRestart: c.MaxRestart,
		MaxRelocate: c.MaxRelocate, Failback: c.Failback, Comment: c.Comment, Group: c.Group, ExpectRevision: c.ExpectRevision}
	if c.Spec != "" {
		b, err := os.ReadFile(c.Spec)
		if err != nil {
			return usageError{fmt.Errorf("--spec %s: %w", c.Spec, err)}
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return usageError{fmt.Errorf("--spec %s: not valid JSON: %w", c.Spec, err)}
		}
		if _, isObject := v.(map[string]any); !isObject {
			return usageError{fmt.Errorf("--spec %s: expected a JSON object (a merge patch of the spec)", c.Spec)}
		}
		req.Spec = json.RawMessage(b)
	}
	return h.call(func(ctx context.Context, cl *api.Client) error { return cl.SetResource(ctx, req) })
}

// HAConfigCmd shows resource configs.
type HAConfigCmd struct {
	SID  string `arg:"" optional:"" help:"Resource id; all resources when omitted."`
	JSON bool   `name:"json" help:"Print JSON (the stored config, revision included) instead of text."`
}

// Run prints the config as ha-manager config does: the SID on one line,
// then tab-indented "key value" lines in key order, then a blank line.
func (c *HAConfigCmd) Run(h *HACmd, env *Env) error {
	var st *api.Status
	if err := h.call(func(ctx context.Context, cl *api.Client) (err error) { st, err = cl.Status(ctx); return err }); err != nil {
		return err
	}
	var list []*ha.ResourceConfig
	if c.SID != "" {
		sid, err := ha.ParseSID(c.SID)
		if err != nil {
			return usageError{err}
		}
		cd := st.Resources[sid]
		if cd == nil {
			return &api.Error{Code: 404, Message: fmt.Sprintf("service '%s' not configured", sid)}
		}
		list = append(list, cd)
	} else {
		for _, sid := range slices.Sorted(maps.Keys(st.Resources)) {
			list = append(list, st.Resources[sid])
		}
	}
	if c.JSON {
		if c.SID != "" {
			return writeJSON(env.Stdout, list[0])
		}
		return writeJSON(env.Stdout, list)
	}
	for _, cd := range list {
		if _, err := io.WriteString(env.Stdout, formatResourceConfig(cd)); err != nil {
			return err
		}
	}
	return nil
}

// formatResourceConfig renders one resource in the text form of `haxd ha
// config`.
func formatResourceConfig(cd *ha.ResourceConfig) string {
	kv := map[string]string{
		"node":         cd.Node,
		"state":        string(cd.Requested()),
		"max_restart":  strconv.Itoa(cd.MaxRestart),
		"max_relocate": strconv.Itoa(cd.MaxRelocate),
		"failback":     "0",
		"revision":     strconv.FormatUint(cd.Revision, 10),
	}
	if cd.Failback {
		kv["failback"] = "1"
	}
	if cd.Group != "" {
		kv["group"] = cd.Group
	}
	if cd.Comment != "" {
		kv["comment"] = cd.Comment
	}
	if cd.Lock != "" {
		kv["lock"] = cd.Lock
	}
	if len(cd.Spec) > 0 {
		var b bytes.Buffer
		if json.Compact(&b, cd.Spec) == nil {
			kv["spec"] = b.String()
		} else {
			kv["spec"] = string(cd.Spec)
		}
	}
	var b strings.Builder
	b.WriteString(string(cd.SID) + "\n")
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		fmt.Fprintf(&b, "\t%s %s\n", k, kv[k])
	}
	b.WriteString("\n")
	return b.String()
}

// moveArgs are the arguments of migrate and relocate.
type moveArgs struct {
	SID  string `arg:"" help:"Resource id."`
	Node string `arg:"" help:"Target node."`
}

// HAMigrateCmd is `haxd ha migrate SID NODE`.
type HAMigrateCmd struct {
	moveArgs `embed:""`
}

// Run queues the live migration.
func (c *HAMigrateCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.Migrate(ctx, api.MoveRequest{SID: c.SID, Node: c.Node})
	})
}

// HARelocateCmd is `haxd ha relocate SID NODE`.
type HARelocateCmd struct {
	moveArgs `embed:""`
}

// Run queues the relocation.
func (c *HARelocateCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.Relocate(ctx, api.MoveRequest{SID: c.SID, Node: c.Node})
	})
}

// HAStopCmd stops a service.
type HAStopCmd struct {
	SID     string        `arg:"" help:"Resource id."`
	Timeout time.Duration `help:"How long to wait for a graceful stop (whole seconds, e.g. 90s or 2m); 0 kills at once." default:"60s"`
}

// Run queues the stop.
func (c *HAStopCmd) Run(h *HACmd) error {
	secs, err := stopSeconds(c.Timeout)
	if err != nil {
		return usageError{err}
	}
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.Stop(ctx, api.StopRequest{SID: c.SID, Timeout: secs})
	})
}

// stopSeconds converts a stop timeout to the whole seconds the CRM
// command carries.
func stopSeconds(d time.Duration) (int, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("--timeout %v: expected a duration >= 0", d)
	case d%time.Second != 0:
		return 0, fmt.Errorf("--timeout %v: expected whole seconds (the stop command counts seconds)", d)
	}
	return int(d / time.Second), nil
}

// HAMaintenanceCmd toggles node maintenance.
type HAMaintenanceCmd struct {
	Action string `arg:"" enum:"enable,disable" help:"enable or disable."`
	Node   string `arg:"" help:"Node name."`
}

// Run queues the maintenance request.
func (c *HAMaintenanceCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.NodeMaintenance(ctx, api.NodeMaintenanceRequest{Node: c.Node, Enable: c.Action == "enable"})
	})
}

// HACRMCmd is `crm-command disarm-ha MODE` and `crm-command arm-ha`.
type HACRMCmd struct {
	Disarm HADisarmCmd `cmd:"" name:"disarm-ha" help:"Release every watchdog cluster-wide for planned work."`
	Arm    HAArmCmd    `cmd:"" name:"arm-ha" help:"Re-arm the HA stack."`
}

// HADisarmCmd is `haxd ha crm-command disarm-ha MODE`.
type HADisarmCmd struct {
	Mode string `arg:"" enum:"freeze,ignore" help:"freeze: services are frozen; ignore: HA stops tracking them."`
}

// Run queues the disarm.
func (c *HADisarmCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error {
		return cl.Disarm(ctx, api.DisarmRequest{Mode: c.Mode})
	})
}

// HAArmCmd is `haxd ha crm-command arm-ha`.
type HAArmCmd struct{}

// Run queues the arm.
func (HAArmCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return cl.Arm(ctx) })
}

// HARulesCmd shows or replaces the rules config.
type HARulesCmd struct {
	Show HARulesShowCmd `cmd:"" help:"Print the rules config."`
	Set  HARulesSetCmd  `cmd:"" help:"Replace the rules config with FILE after validating it."`
}

// HARulesShowCmd is `haxd ha rules show`.
type HARulesShowCmd struct{}

// Run prints the rules config.
func (HARulesShowCmd) Run(h *HACmd, env *Env) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return printText(ctx, env.Stdout, cl.Rules) })
}

// HARulesSetCmd is `haxd ha rules set FILE`.
type HARulesSetCmd struct {
	File string `arg:"" type:"existingfile" help:"Rules file (section config)."`
}

// Run replaces the rules config.
func (c *HARulesSetCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return setText(ctx, "rules", c.File, cl.SetRules) })
}

// HAGroupsCmd shows or replaces the legacy groups config.
type HAGroupsCmd struct {
	Show HAGroupsShowCmd `cmd:"" help:"Print the groups config."`
	Set  HAGroupsSetCmd  `cmd:"" help:"Replace the groups config with FILE after validating it."`
}

// HAGroupsShowCmd is `haxd ha groups show`.
type HAGroupsShowCmd struct{}

// Run prints the groups config.
func (HAGroupsShowCmd) Run(h *HACmd, env *Env) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return printText(ctx, env.Stdout, cl.Groups) })
}

// HAGroupsSetCmd is `haxd ha groups set FILE`.
type HAGroupsSetCmd struct {
	File string `arg:"" type:"existingfile" help:"Groups file (section config: group: <id> / nodes / restricted / nofailback)."`
}

// Run replaces the groups config.
func (c *HAGroupsSetCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return setText(ctx, "groups", c.File, cl.SetGroups) })
}

// printText prints a config text the agent returns.
func printText(ctx context.Context, w io.Writer, get func(context.Context) (string, error)) error {
	text, err := get(ctx)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, text)
	return err
}

// setText replaces a config text with a file's contents.
func setText(ctx context.Context, what, file string, set func(context.Context, string) error) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return set(ctx, string(b))
}

// HANodeCmd holds node operations.
type HANodeCmd struct {
	List   HANodeListCmd   `cmd:"" help:"List the cluster members: gossip status, raft role, CRM state."`
	Remove HANodeRemoveCmd `cmd:"" help:"Remove a dead node from the cluster (its state becomes gone)."`
}

// HANodeListCmd lists the members.
type HANodeListCmd struct {
	Output string `help:"Output format: text or json." enum:"text,json" default:"text"`
}

// Run prints the members.
func (c *HANodeListCmd) Run(h *HACmd, env *Env) error {
	var ms []api.Member
	if err := h.call(func(ctx context.Context, cl *api.Client) (err error) { ms, err = cl.Members(ctx); return err }); err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSON(env.Stdout, ms)
	}
	_, err := io.WriteString(env.Stdout, formatMembers(ms))
	return err
}

// formatMembers renders members as an aligned table.
func formatMembers(ms []api.Member) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tGOSSIP\tRAFT\tCRM STATE\tADDRESS\tVERSION")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, m := range ms {
		raft := dash(m.Raft)
		if m.Leader {
			raft += " (leader)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, dash(m.Gossip), raft, dash(string(m.State)), dash(m.Addr), dash(m.Version))
	}
	tw.Flush()
	return b.String()
}

// HANodeRemoveCmd removes a dead node.
type HANodeRemoveCmd struct {
	Node string `arg:"" help:"Node to remove; it must be down."`
}

// Run removes the node.
func (c *HANodeRemoveCmd) Run(h *HACmd) error {
	return h.call(func(ctx context.Context, cl *api.Client) error { return cl.RemoveNode(ctx, c.Node) })
}

// HADatacenterCmd shows or changes the cluster-wide settings.
type HADatacenterCmd struct {
	Show HADatacenterShowCmd `cmd:"" help:"Print the settings as JSON."`
	Set  HADatacenterSetCmd  `cmd:"" help:"Change the given settings; the others stay."`
}

// HADatacenterShowCmd is `haxd ha datacenter show`.
type HADatacenterShowCmd struct{}

// Run prints the settings as JSON.
func (HADatacenterShowCmd) Run(h *HACmd, env *Env) error {
	var dc *ha.Datacenter
	if err := h.call(func(ctx context.Context, cl *api.Client) (err error) { dc, err = cl.Datacenter(ctx); return err }); err != nil {
		return err
	}
	return writeJSON(env.Stdout, dc)
}

// HADatacenterSetCmd is `haxd ha datacenter set`.
type HADatacenterSetCmd struct {
	ShutdownPolicy            *string  `name:"shutdown-policy" help:"conditional, freeze, failover or migrate."`
	CRSMode                   *string  `name:"crs-mode" help:"Scheduler: basic, static or dynamic."`
	RebalanceOnStart          *bool    `name:"rebalance-on-start" negatable:"" help:"Choose the best node when a service starts."`
	AutoRebalance             *bool    `name:"auto-rebalance" negatable:"" help:"Move services while the cluster is imbalanced."`
	AutoRebalanceThreshold    *float64 `name:"auto-rebalance-threshold" help:"Imbalance that triggers rebalancing (default 0.3)."`
	AutoRebalanceMethod       *string  `name:"auto-rebalance-method" help:"bruteforce or topsis."`
	AutoRebalanceHoldDuration *int     `name:"auto-rebalance-hold-duration" help:"Rounds the imbalance must last (default 3)."`
	AutoRebalanceMargin       *float64 `name:"auto-rebalance-margin" help:"Improvement a move must bring (default 0.1)."`
}

// Run changes the given settings.
func (s *HADatacenterSetCmd) Run(h *HACmd) error {
	req := api.DatacenterRequest{ShutdownPolicy: s.ShutdownPolicy, CRSMode: s.CRSMode,
		RebalanceOnStart: s.RebalanceOnStart, AutoRebalance: s.AutoRebalance, AutoRebalanceThreshold: s.AutoRebalanceThreshold,
		AutoRebalanceMethod: s.AutoRebalanceMethod, AutoRebalanceHoldDuration: s.AutoRebalanceHoldDuration, AutoRebalanceMargin: s.AutoRebalanceMargin}
	return h.call(func(ctx context.Context, cl *api.Client) error { return cl.SetDatacenter(ctx, req) })
}
