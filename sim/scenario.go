package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"haxd/ha"
)

// Scenario is a loaded scenario directory (scenario-format §1): the initial
// hardware, the initial manager status, the configuration files and the
// command list.
type Scenario struct {
	// Nodes are the node names in byte order.
	Nodes []string
	// Hardware is the initial state of every node.
	Hardware map[string]*NodeHardware
	// ManagerStatus is the initial manager status (empty when absent).
	ManagerStatus *ha.ManagerStatus
	// Services is the initial service_config.
	Services map[ha.SID]*ha.ResourceConfig
	// Rules is the raw rules_config (nil when absent).
	Rules []byte
	// Groups is the raw legacy groups file (nil when absent).
	Groups []byte
	// Datacenter holds the datacenter.cfg settings.
	Datacenter ha.Datacenter
	// StaticStats and DynamicStats are the per-service sizes, with the
	// defaults of §1.7 materialised for missing files.
	StaticStats, DynamicStats map[ha.SID]Stats
	// Running lists the services running on each node at time 0
	// (service_status_<node> files).
	Running map[string]map[ha.SID]bool
	// FenceConfig is the raw fence.cfg (nil when absent).
	FenceConfig []byte
	// Steps is the command list: steps of commands executed at one instant.
	Steps [][]Command
}

// NodeHardware is the simulated hardware of one node.
type NodeHardware struct {
	// Power and Network are the switches; a node is online when both are on.
	Power, Network bool
	// MaxCPU and MaxMem are the capacity from hardware_status, nil if absent.
	MaxCPU, MaxMem *float64
	// Version is the reported pve-manager-version.
	Version string
}

// Stats is a service's size or usage: keys maxcpu, maxmem (static) and
// cpu, mem (dynamic), in cores and bytes.
type Stats map[string]float64

// Defaults of scenario-format §1.2 and §1.7.
const (
	DefaultVersion = "9.0.0~2"
	mib            = 1024 * 1024
	defaultMaxCPU  = 24
	defaultMaxMem  = 131072 * mib
)

var (
	sidPattern      = regexp.MustCompile(`^(vm|ct|fa):[0-9]+$`)
	serviceStatusRe = regexp.MustCompile(`^service_status_(.+)$`)
)

// LoadScenario loads the scenario directory dir.
func LoadScenario(dir string) (*Scenario, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load scenario %s: not a directory", dir)
	}
	sc, err := LoadScenarioFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("load scenario %s: %w", dir, err)
	}
	return sc, nil
}

// readOptional returns the file's content, or nil and false when it does
// not exist.
func readOptional(fsys fs.FS, name string) ([]byte, bool, error) {
	b, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", name, err)
	}
	return b, true, nil
}

// LoadScenarioFS loads a scenario from the root of fsys. Errors name the
// file, field and value that are wrong.
func LoadScenarioFS(fsys fs.FS) (*Scenario, error) {
	sc := &Scenario{Running: map[string]map[ha.SID]bool{}}
	b, ok, err := readOptional(fsys, "cmdlist")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("read cmdlist: file is required")
	}
	if sc.Steps, err = ParseCmdlist(b); err != nil {
		return nil, err
	}
	if sc.Hardware, err = loadOr(fsys, "hardware_status", ParseHardwareStatus, defaultHardware); err != nil {
		return nil, err
	}
	sc.Nodes = slices.Sorted(maps.Keys(sc.Hardware))
	if sc.ManagerStatus, err = loadOr(fsys, "manager_status", ParseManagerStatus, func() *ha.ManagerStatus { return &ha.ManagerStatus{} }); err != nil {
		return nil, err
	}
	if sc.Services, err = loadOr(fsys, "service_config", ParseServiceConfig, defaultServices); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"rules_config", &sc.Rules}, {"groups", &sc.Groups}, {"fence.cfg", &sc.FenceConfig}} {
		if *f.dst, _, err = readOptional(fsys, f.name); err != nil {
			return nil, err
		}
	}
	if sc.Datacenter, err = loadOr(fsys, "datacenter.cfg", ParseDatacenter, func() ha.Datacenter { return ha.Datacenter{} }); err != nil {
		return nil, err
	}
	staticStats := func(b []byte) (map[ha.SID]Stats, error) {
		return ParseStats("static_service_stats", b, "maxcpu", "maxmem")
	}
	if sc.StaticStats, err = loadOr(fsys, "static_service_stats", staticStats, func() map[ha.SID]Stats {
		return uniformStats(sc.Services, Stats{"maxcpu": 4, "maxmem": 4096 * mib})
	}); err != nil {
		return nil, err
	}
	dynamicStats := func(b []byte) (map[ha.SID]Stats, error) {
		return ParseStats("dynamic_service_stats", b, "cpu", "mem")
	}
	if sc.DynamicStats, err = loadOr(fsys, "dynamic_service_stats", dynamicStats, func() map[ha.SID]Stats {
		return uniformStats(sc.StaticStats, Stats{"cpu": 2, "mem": 2048 * mib})
	}); err != nil {
		return nil, err
	}
	if err := sc.loadServiceStatus(fsys); err != nil {
		return nil, err
	}
	return sc, nil
}

// loadOr parses the file name of fsys with parse, or returns def() when
// the file does not exist.
func loadOr[T any](fsys fs.FS, name string, parse func([]byte) (T, error), def func() T) (T, error) {
	b, ok, err := readOptional(fsys, name)
	if err != nil || !ok {
		return def(), err
	}
	return parse(b)
}

// defaultHardware is the hardware of a scenario without hardware_status:
// three nodes of the default size.
func defaultHardware() map[string]*NodeHardware {
	hw := map[string]*NodeHardware{}
	for _, n := range []string{"node1", "node2", "node3"} {
		c, m := float64(defaultMaxCPU), float64(defaultMaxMem)
		hw[n] = &NodeHardware{MaxCPU: &c, MaxMem: &m, Version: DefaultVersion}
	}
	return hw
}

// defaultServices is the service config of a scenario without
// service_config: vm:101..106, disabled, two on each node.
func defaultServices() map[ha.SID]*ha.ResourceConfig {
	svcs := map[ha.SID]*ha.ResourceConfig{}
	for i, n := range []string{"node1", "node2", "node3", "node1", "node2", "node3"} {
		sid := ha.SID(fmt.Sprintf("vm:%d", 101+i))
		c := ha.DefaultResourceConfig(sid, n)
		c.State = ha.RequestDisabled
		svcs[sid] = &c
	}
	return svcs
}

// uniformStats gives every service of m the same stats.
func uniformStats[V any](m map[ha.SID]V, st Stats) map[ha.SID]Stats {
	out := make(map[ha.SID]Stats, len(m))
	for sid := range m {
		out[sid] = maps.Clone(st)
	}
	return out
}

// loadServiceStatus reads every service_status_<node> file: the services
// running on that node at the start.
func (sc *Scenario) loadServiceStatus(fsys fs.FS) error {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return fmt.Errorf("read scenario directory: %w", err)
	}
	for _, e := range entries {
		m := serviceStatusRe.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		if _, known := sc.Hardware[m[1]]; !known {
			return fmt.Errorf("%s: node %q is not in hardware_status", e.Name(), m[1])
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return fmt.Errorf("read %s: %w", e.Name(), err)
		}
		if sc.Running[m[1]], err = ParseServiceStatus(e.Name(), b); err != nil {
			return err
		}
	}
	return nil
}

// decodeObject decodes a JSON object into raw members, with an error naming
// the file.
func decodeObject(file string, b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: expected a JSON object: %w", file, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: expected a JSON object, found null", file)
	}
	return m, nil
}

// ParseCmdlist parses a cmdlist file: a JSON list of lists of command
// strings. Command syntax errors do not fail the parse; they are kept in
// the Command and are fatal when the command executes (scenario-format §3).
func ParseCmdlist(b []byte) ([][]Command, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("cmdlist: expected a JSON list of lists of strings: %w", err)
	}
	steps := make([][]Command, 0, len(raw))
	for i, r := range raw {
		var strs []string
		if err := json.Unmarshal(r, &strs); err != nil {
			return nil, fmt.Errorf("cmdlist: step %d: expected a list of strings, found %s", i+1, truncate(r))
		}
		step := make([]Command, 0, len(strs))
		for _, s := range strs {
			c, _ := ParseCommand(s)
			step = append(step, c)
		}
		steps = append(steps, step)
	}
	return steps, nil
}

func truncate(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func parseOnOff(file, node, field string, v json.RawMessage) (bool, error) {
	if len(v) == 0 {
		return false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return false, fmt.Errorf("%s: node %s: field %s: expected \"on\" or \"off\", found %s", file, node, field, truncate(v))
	}
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("%s: node %s: field %s: expected \"on\" or \"off\", found %q", file, node, field, s)
}

// ParseHardwareStatus parses a hardware_status file.
func ParseHardwareStatus(b []byte) (map[string]*NodeHardware, error) {
	const file = "hardware_status"
	m, err := decodeObject(file, b)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%s: no nodes", file)
	}
	out := map[string]*NodeHardware{}
	for _, node := range slices.Sorted(maps.Keys(m)) {
		if err := checkNodeName(node); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		fields, err := decodeObject(file+": node "+node, m[node])
		if err != nil {
			return nil, err
		}
		hw := &NodeHardware{Version: DefaultVersion}
		if hw.Power, err = parseOnOff(file, node, "power", fields["power"]); err != nil {
			return nil, err
		}
		if hw.Network, err = parseOnOff(file, node, "network", fields["network"]); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			key string
			dst **float64
		}{{"maxcpu", &hw.MaxCPU}, {"maxmem", &hw.MaxMem}} {
			if v, ok := fields[f.key]; ok {
				x, err := ha.JSONFloat(v)
				if err != nil {
					return nil, fmt.Errorf("%s: node %s: field %s: %w", file, node, f.key, err)
				}
				*f.dst = &x
			}
		}
		if v, ok := fields["pve-manager-version"]; ok {
			if err := json.Unmarshal(v, &hw.Version); err != nil {
				return nil, fmt.Errorf("%s: node %s: field pve-manager-version: expected a string, found %s", file, node, truncate(v))
			}
		}
		out[node] = hw
	}
	return out, nil
}

// checkNodeName rejects node names that cannot appear in a command line or
// a log origin.
func checkNodeName(n string) error {
	if n == "" || strings.ContainsAny(n, " \t\r\n\v\f/:") {
		return fmt.Errorf("invalid node name %q: expected a non-empty name without blanks, '/' or ':'", n)
	}
	return nil
}

// ParseManagerStatus parses a manager_status file in the PVE encoding
// (numbers may be strings, flags may be 0/1, unknown keys are ignored).
func ParseManagerStatus(b []byte) (*ha.ManagerStatus, error) {
	const file = "manager_status"
	m, err := decodeObject(file, b)
	if err != nil {
		return nil, err
	}
	ms := &ha.ManagerStatus{}
	if v, ok := m["master_node"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &ms.MasterNode); err != nil {
			return nil, fmt.Errorf("%s: field master_node: expected a string, found %s", file, truncate(v))
		}
	}
	if v, ok := m["timestamp"]; ok && string(v) != "null" {
		n, err := ha.JSONInt(v)
		if err != nil {
			return nil, fmt.Errorf("%s: field timestamp: %w", file, err)
		}
		ms.Timestamp = int64(n)
	}
	if v, ok := m["node_status"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &ms.NodeStatus); err != nil {
			return nil, fmt.Errorf("%s: field node_status: expected an object of node states, found %s", file, truncate(v))
		}
	}
	if v, ok := m["service_status"]; ok && string(v) != "null" {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(v, &raw); err != nil {
			return nil, fmt.Errorf("%s: field service_status: expected an object, found %s", file, truncate(v))
		}
		ms.ServiceStatus = map[ha.SID]*ha.ServiceStatus{}
		for _, k := range slices.Sorted(maps.Keys(raw)) {
			sid, err := ha.ParseSID(k)
			if err != nil {
				return nil, fmt.Errorf("%s: service_status: %w", file, err)
			}
			sd := &ha.ServiceStatus{}
			if err := json.Unmarshal(raw[k], sd); err != nil {
				return nil, fmt.Errorf("%s: service_status %s: %w", file, k, err)
			}
			ms.ServiceStatus[sid] = sd
		}
	}
	if v, ok := m["node_request"]; ok && string(v) != "null" {
		var raw map[string]map[string]json.RawMessage
		if err := json.Unmarshal(v, &raw); err != nil {
			return nil, fmt.Errorf("%s: field node_request: expected an object of objects, found %s", file, truncate(v))
		}
		ms.NodeRequest = map[string]*ha.NodeRequest{}
		for _, node := range slices.Sorted(maps.Keys(raw)) {
			nr := &ha.NodeRequest{}
			if mv, ok := raw[node]["maintenance"]; ok {
				if nr.Maintenance, err = ha.JSONBool(mv); err != nil {
					return nil, fmt.Errorf("%s: node_request %s: field maintenance: %w", file, node, err)
				}
			}
			ms.NodeRequest[node] = nr
		}
	}
	if v, ok := m["disarm"]; ok && string(v) != "null" {
		d := &ha.Disarm{}
		if err := json.Unmarshal(v, d); err != nil {
			return nil, fmt.Errorf("%s: field disarm: expected {\"mode\": ..., \"state\": ...}, found %s", file, truncate(v))
		}
		ms.Disarm = d
	}
	return ms, nil
}

// ParseServiceConfig parses a service_config file. A missing state means
// disabled; "enabled" means started; numbers may be strings.
func ParseServiceConfig(b []byte) (map[ha.SID]*ha.ResourceConfig, error) {
	const file = "service_config"
	m, err := decodeObject(file, b)
	if err != nil {
		return nil, err
	}
	out := map[ha.SID]*ha.ResourceConfig{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !sidPattern.MatchString(k) {
			return nil, fmt.Errorf("%s: invalid service id %q: expected vm:, ct: or fa: followed by digits", file, k)
		}
		sid := ha.SID(k)
		fields, err := decodeObject(file+": "+k, m[k])
		if err != nil {
			return nil, err
		}
		c := ha.DefaultResourceConfig(sid, "")
		c.State = ha.RequestDisabled
		if v, ok := fields["node"]; ok {
			if err := json.Unmarshal(v, &c.Node); err != nil {
				return nil, fmt.Errorf("%s: %s: field node: expected a string, found %s", file, k, truncate(v))
			}
		}
		if c.Node == "" {
			return nil, fmt.Errorf("%s: %s: field node: required", file, k)
		}
		if v, ok := fields["state"]; ok {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("%s: %s: field state: expected a string, found %s", file, k, truncate(v))
			}
			if rs, ok := ha.ParseRequestedState(s); ok {
				c.State = rs
			} else {
				// Kept verbatim: the CRM reports unknown states itself.
				c.State = ha.RequestedState(s)
			}
		}
		for _, f := range []struct {
			key string
			dst *int
		}{{"max_restart", &c.MaxRestart}, {"max_relocate", &c.MaxRelocate}} {
			if v, ok := fields[f.key]; ok {
				n, err := ha.JSONInt(v)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: field %s: %w", file, k, f.key, err)
				}
				*f.dst = n
			}
		}
		if v, ok := fields["failback"]; ok {
			if c.Failback, err = ha.JSONBool(v); err != nil {
				return nil, fmt.Errorf("%s: %s: field failback: %w", file, k, err)
			}
		}
		for _, f := range []struct {
			key string
			dst *string
		}{{"group", &c.Group}, {"comment", &c.Comment}, {"lock", &c.Lock}} {
			if v, ok := fields[f.key]; ok {
				if err := json.Unmarshal(v, f.dst); err != nil {
					return nil, fmt.Errorf("%s: %s: field %s: expected a string, found %s", file, k, f.key, truncate(v))
				}
			}
		}
		out[sid] = &c
	}
	return out, nil
}

// ParseDatacenter parses the JSON datacenter.cfg of a scenario.
func ParseDatacenter(b []byte) (ha.Datacenter, error) {
	const file = "datacenter.cfg"
	var dc ha.Datacenter
	m, err := decodeObject(file, b)
	if err != nil {
		return dc, err
	}
	if v, ok := m["ha"]; ok {
		fields, err := decodeObject(file+": field ha", v)
		if err != nil {
			return dc, err
		}
		if p, ok := fields["shutdown_policy"]; ok {
			var s string
			if err := json.Unmarshal(p, &s); err != nil {
				return dc, fmt.Errorf("%s: field ha.shutdown_policy: expected a string, found %s", file, truncate(p))
			}
			// Unknown policies are kept: the LRM reports them.
			dc.ShutdownPolicy = ha.ShutdownPolicy(s)
		}
	}
	if v, ok := m["max_workers"]; ok {
		if dc.MaxWorkers, err = ha.JSONInt(v); err != nil {
			return dc, fmt.Errorf("%s: field max_workers: %w", file, err)
		}
	}
	if v, ok := m["crs"]; ok {
		fields, err := decodeObject(file+": field crs", v)
		if err != nil {
			return dc, err
		}
		crs := &dc.CRS
		crs.Set = map[string]bool{}
		for _, key := range slices.Sorted(maps.Keys(fields)) {
			v := fields[key]
			var err error
			switch key {
			case "ha", "ha-auto-rebalance-method":
				var s string
				if e := json.Unmarshal(v, &s); e != nil {
					err = fmt.Errorf("expected a string, found %s", truncate(v))
				} else if key == "ha" {
					crs.Mode = s
				} else {
					crs.AutoRebalanceMethod = s
				}
			case "ha-rebalance-on-start":
				crs.RebalanceOnStart, err = ha.JSONBool(v)
			case "ha-auto-rebalance":
				crs.AutoRebalance, err = ha.JSONBool(v)
			case "ha-auto-rebalance-threshold":
				crs.AutoRebalanceThreshold, err = ha.JSONFloat(v)
			case "ha-auto-rebalance-hold-duration":
				crs.AutoRebalanceHoldDuration, err = ha.JSONInt(v)
			case "ha-auto-rebalance-margin":
				crs.AutoRebalanceMargin, err = ha.JSONFloat(v)
			default:
				continue
			}
			if err != nil {
				return dc, fmt.Errorf("%s: field crs.%s: %w", file, key, err)
			}
			crs.Set[key] = true
		}
	}
	return dc, nil
}

// ParseStats parses a static or dynamic service stats file; keys lists the
// accepted fields.
func ParseStats(file string, b []byte, keys ...string) (map[ha.SID]Stats, error) {
	m, err := decodeObject(file, b)
	if err != nil {
		return nil, err
	}
	out := map[ha.SID]Stats{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sid, err := ha.ParseSID(k)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		fields, err := decodeObject(file+": "+k, m[k])
		if err != nil {
			return nil, err
		}
		st := Stats{}
		for _, key := range keys {
			if v, ok := fields[key]; ok {
				x, err := ha.JSONFloat(v)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: field %s: %w", file, k, key, err)
				}
				st[key] = x
			}
		}
		out[sid] = st
	}
	return out, nil
}

// ParseServiceStatus parses a service_status_<node> file: which services
// run on the node at time 0.
func ParseServiceStatus(file string, b []byte) (map[ha.SID]bool, error) {
	m, err := decodeObject(file, b)
	if err != nil {
		return nil, err
	}
	out := map[ha.SID]bool{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sid, err := ha.ParseSID(k)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		on, err := ha.JSONBool(m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, k, err)
		}
		if on {
			out[sid] = true
		}
	}
	return out, nil
}
