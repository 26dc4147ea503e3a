package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"
)

// GenOptions bound the random scenarios of Generate.
type GenOptions struct {
	// NodesMax is the largest cluster (at least 3); 0 means 7.
	NodesMax int
	// Steps is the number of fault steps after the power-on; 0 means a
	// random number from 6 to 14.
	Steps int
}

// Generated is a random scenario, kept as the files of a scenario
// directory so that it can be replayed and written out unchanged.
type Generated struct {
	// Seed is the seed it was generated from.
	Seed int64
	// Files maps file names to contents.
	Files           map[string][]byte
	nodes, services int
}

// Generate builds a random cluster of 3 to NodesMax nodes with vm, ct and
// fa services and a random fault schedule: power and network failures,
// partitions (some losing quorum), stalled daemons (skip-round), LRM
// restarts, CRM stops and starts (master changes), reboots and shutdowns,
// failing resources (fa ids) and operator commands
// (migrate, relocate, stop, requested states, maintenance, disarm/arm).
// The same seed always gives the same scenario.
func Generate(seed int64, o GenOptions) *Generated {
	if o.NodesMax < 3 {
		o.NodesMax = 7
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	g := &generator{r: r, busy: map[string]bool{}}
	nn := 3 + r.IntN(o.NodesMax-2)
	for i := 1; i <= nn; i++ {
		g.nodes = append(g.nodes, fmt.Sprintf("node%d", i))
	}
	g.services()
	steps := o.Steps
	if steps == 0 {
		steps = 6 + r.IntN(9)
	}
	g.schedule(steps)

	hw := map[string]map[string]string{}
	for _, n := range g.nodes {
		hw[n] = map[string]string{"power": "off", "network": "off"}
	}
	policies := []string{"conditional", "conditional", "freeze", "failover", "migrate"}
	dc := map[string]any{"ha": map[string]string{"shutdown_policy": policies[r.IntN(len(policies))]}}
	files := map[string][]byte{
		"hardware_status": mustJSON(hw),
		"service_config":  mustJSON(g.config),
		"manager_status":  []byte("{}"),
		"cmdlist":         mustJSON(g.steps),
		"datacenter.cfg":  mustJSON(dc),
		"README":          []byte(fmt.Sprintf("Random scenario, replay with: haxd sim random --seed %d --runs 1\n", seed)),
	}
	return &Generated{Seed: seed, Files: files, nodes: len(g.nodes), services: len(g.config)}
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Only maps and slices of strings are marshalled here.
		panic(fmt.Sprintf("marshal generated scenario: %v", err))
	}
	return append(b, '\n')
}

// Scenario loads the generated files.
func (g *Generated) Scenario() (*Scenario, error) {
	fsys := fstest.MapFS{}
	for name, b := range g.Files {
		fsys[name] = &fstest.MapFile{Data: b}
	}
	return LoadScenarioFS(fsys)
}

// Run loads and replays the generated scenario.
func (g *Generated) Run(opts Options) (*Result, error) {
	sc, err := g.Scenario()
	if err != nil {
		return nil, fmt.Errorf("generated scenario %d: %w", g.Seed, err)
	}
	return Run(sc, opts)
}

// WriteDir writes the scenario files into dir (created if needed).
func (g *Generated) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write scenario: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(g.Files)) {
		if err := os.WriteFile(filepath.Join(dir, name), g.Files[name], 0o644); err != nil {
			return fmt.Errorf("write scenario: %w", err)
		}
	}
	return nil
}

// Summary describes the generated cluster in a few words.
func (g *Generated) Summary() string {
	return fmt.Sprintf("%d nodes, %d services", g.nodes, g.services)
}

type generator struct {
	r      *rand.Rand
	nodes  []string
	sids   []string
	config map[string]map[string]any
	steps  [][]string
	// lrmRestartNodes may get restart-lrm; the others may get reboot and
	// shutdown (the harness does not support both on one node at once).
	lrmRestartNodes map[string]bool
	// busy marks nodes with a reboot or shutdown that may still be in
	// progress: a "power on" would clear its flag and make the harness fail
	// with "unexpected LRM exit" (scenario-format §3, §4.4), so such a node
	// is power-cycled instead.
	busy map[string]bool
}

// powerOn returns the commands that bring node up.
func (g *generator) powerOn(node string) []string {
	if g.busy[node] {
		delete(g.busy, node)
		return []string{"power " + node + " off", "power " + node + " on"}
	}
	return []string{"power " + node + " on"}
}

func (g *generator) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *generator) services() {
	g.config = map[string]map[string]any{}
	n := 1 + g.r.IntN(2*len(g.nodes))
	used := map[string]bool{}
	for i := 0; i < n; i++ {
		var sid string
		switch k := g.r.IntN(10); {
		case k < 5:
			sid = fmt.Sprintf("vm:%d", 100+i)
		case k < 7:
			sid = fmt.Sprintf("ct:%d", 100+i)
		default:
			// fa:<free><start fails><migrate fails><unstoppable><exists><node>
			restrict := 0
			if g.r.IntN(3) == 0 {
				restrict = 1 + g.r.IntN(min(len(g.nodes), 9))
			}
			unstoppable := 0
			if g.r.IntN(8) == 0 {
				unstoppable = 1
			}
			sid = fmt.Sprintf("fa:%d%d%d%d1%d", 1+i%9, g.r.IntN(3), g.r.IntN(2), unstoppable, restrict)
		}
		if used[sid] {
			continue
		}
		used[sid] = true
		states := []string{"started", "started", "started", "stopped", "disabled"}
		g.config[sid] = map[string]any{"node": g.pick(g.nodes), "state": g.pick(states),
			"max_restart": g.r.IntN(3), "max_relocate": g.r.IntN(3)}
		g.sids = append(g.sids, sid)
	}
	slices.Sort(g.sids)
	g.lrmRestartNodes = map[string]bool{}
	for _, node := range g.nodes {
		g.lrmRestartNodes[node] = g.r.IntN(2) == 0
	}
}

func (g *generator) schedule(steps int) {
	var on []string
	for _, n := range g.nodes {
		on = append(on, "power "+n+" on")
	}
	g.steps = append(g.steps, on)
	for range steps {
		var step []string
		for range 1 + g.r.IntN(2) {
			step = append(step, g.fault()...)
		}
		g.steps = append(g.steps, step)
	}
	// Heal everything at the end so that recovery can be observed.
	var heal []string
	for _, n := range g.nodes {
		heal = append(heal, g.powerOn(n)...)
	}
	g.steps = append(g.steps, heal)
}

func (g *generator) fault() []string {
	node := g.pick(g.nodes)
	sid := ""
	if len(g.sids) > 0 {
		sid = g.pick(g.sids)
	}
	switch k := g.r.IntN(20); {
	case k < 3:
		delete(g.busy, node)
		return []string{"power " + node + " off"}
	case k < 5:
		return g.powerOn(node)
	case k < 7:
		return []string{"network " + node + " off"}
	case k < 8:
		return []string{"network " + node + " on"}
	case k < 9:
		// A partition: usually a minority loses the network at once,
		// sometimes a majority (the cluster loses quorum).
		var cmds []string
		perm := g.r.Perm(len(g.nodes))
		size := 1 + g.r.IntN((len(g.nodes)-1)/2)
		if g.r.IntN(4) == 0 {
			size = 1 + g.r.IntN(len(g.nodes)-1)
		}
		for _, i := range perm[:size] {
			cmds = append(cmds, "network "+g.nodes[i]+" off")
		}
		return cmds
	case k < 10:
		switch {
		case g.busy[node]:
			return g.powerOn(node)
		case g.lrmRestartNodes[node]:
			return []string{"restart-lrm " + node}
		}
		g.busy[node] = true
		return []string{g.pick([]string{"reboot ", "shutdown "}) + node}
	case k < 11:
		return []string{"crm " + node + " " + g.pick([]string{"stop", "start"})}
	case k < 12:
		return []string{"crm " + node + " " + g.pick([]string{"enable-node-maintenance", "disable-node-maintenance"})}
	case k < 13:
		if g.r.IntN(2) == 0 {
			return []string{"crm " + node + " disarm-ha " + g.pick([]string{"freeze", "ignore"})}
		}
		return []string{"crm " + node + " arm-ha"}
	case k < 14:
		if g.r.IntN(3) == 0 {
			// Stalled daemons: every CRM or every LRM skips rounds.
			return []string{fmt.Sprintf("skip-round %s %d", g.pick([]string{"crm", "lrm"}), 1+g.r.IntN(4))}
		}
		return []string{fmt.Sprintf("delay %d", 20*g.r.IntN(10))}
	}
	if sid == "" {
		return []string{"network " + node + " on"}
	}
	switch g.r.IntN(6) {
	case 0:
		return []string{"service " + sid + " migrate " + node}
	case 1:
		return []string{"service " + sid + " relocate " + node}
	case 2:
		return []string{fmt.Sprintf("service %s stop %d", sid, g.r.IntN(3)*5)}
	}
	return []string{"service " + sid + " " + g.pick([]string{"started", "started", "stopped", "disabled"})}
}

// String renders the command list compactly for reports.
func (g *Generated) String() string {
	return strings.TrimSpace(string(g.Files["cmdlist"]))
}
