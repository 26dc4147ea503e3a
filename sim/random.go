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
	// NodesMax is the largest cluster (3 to 29); 0 means 29. Half of the
	// clusters have 3 to min(7, NodesMax) nodes, the other half 3 to
	// NodesMax, so that small clusters, where every node matters for
	// quorum, stay frequent.
	NodesMax int
	// Steps is the number of fault steps after the power-on; 0 means a
	// random number from 10 to 40.
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
// fa services, a random shutdown policy, scheduler mode (basic, static,
// dynamic, with or without rebalancing) and placement rules, and a random
// fault schedule: power and network failures, partitions (some losing
// quorum), stalled daemons (skip-round; long stalls fire watchdogs), LRM
// restarts, CRM stops and starts (master changes), reboots and shutdowns,
// cluster filesystem faults (cfs rw/update), failing resources (fa ids),
// resource locks, services added, deleted, ignored and moved by hand, and
// operator commands (migrate, relocate, stop, requested states,
// maintenance, disarm/arm, service stats). The same seed always gives the
// same scenario.
func Generate(seed int64, o GenOptions) *Generated {
	if o.NodesMax == 0 {
		o.NodesMax = 29
	}
	o.NodesMax = min(max(o.NodesMax, 3), 29)
	r := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	g := &generator{r: r, busy: map[string]bool{}}
	hi := o.NodesMax
	if r.IntN(2) == 0 {
		hi = min(7, hi)
	}
	nn := 3 + r.IntN(hi-2)
	for i := 1; i <= nn; i++ {
		g.nodes = append(g.nodes, fmt.Sprintf("node%d", i))
	}
	policies := []string{"conditional", "conditional", "freeze", "failover", "migrate"}
	policy := policies[r.IntN(len(policies))]
	// An LRM in maintenance that cannot read the manager status ends (a
	// PVE harness quirk the simulator keeps, scenario-format §4.4), so
	// cfs read/write faults go only into schedules without maintenance.
	g.cfsRW = policy != "migrate" && r.IntN(2) == 0
	g.services()
	steps := o.Steps
	if steps == 0 {
		steps = 10 + r.IntN(31)
	}
	g.schedule(steps)

	crs := map[string]any{}
	scheduler := []string{"basic", "basic", "static", "dynamic"}[r.IntN(4)]
	if scheduler != "basic" {
		crs["ha"] = scheduler
		if r.IntN(2) == 0 {
			crs["ha-rebalance-on-start"] = 1
		}
		if r.IntN(3) == 0 {
			crs["ha-auto-rebalance"] = 1
		}
	}
	hw := map[string]map[string]any{}
	for _, n := range g.nodes {
		hw[n] = map[string]any{"power": "off", "network": "off"}
		if scheduler != "basic" {
			hw[n]["maxcpu"] = 8 + 8*r.IntN(4)
			hw[n]["maxmem"] = (16 + 16*r.IntN(8)) << 30
		}
	}
	dc := map[string]any{"ha": map[string]string{"shutdown_policy": policy}}
	if len(crs) > 0 {
		dc["crs"] = crs
	}
	files := map[string][]byte{
		"hardware_status": mustJSON(hw),
		"service_config":  mustJSON(g.config),
		"manager_status":  []byte("{}"),
		"cmdlist":         mustJSON(g.steps),
		"datacenter.cfg":  mustJSON(dc),
		"README":          []byte(fmt.Sprintf("Random scenario %d (haxd sim random).\n", seed)),
	}
	if rules := g.rules(); rules != "" {
		files["rules_config"] = []byte(rules)
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
	// cfsRW allows cfs rw faults (see Generate).
	cfsRW bool
	// nextID numbers the services added during the run.
	nextID int
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

// newSID returns a fresh service id: a vm, a ct, or a failure-injecting fa
// (fa:<free><start fails><migrate fails><unstoppable><exists><node>).
func (g *generator) newSID() string {
	i := g.nextID
	g.nextID++
	switch k := g.r.IntN(10); {
	case k < 5:
		return fmt.Sprintf("vm:%d", 100+i)
	case k < 7:
		return fmt.Sprintf("ct:%d", 100+i)
	}
	restrict := 0
	if g.r.IntN(3) == 0 {
		restrict = 1 + g.r.IntN(min(len(g.nodes), 9))
	}
	unstoppable := 0
	if g.r.IntN(8) == 0 {
		unstoppable = 1
	}
	return fmt.Sprintf("fa:%d%d%d%d1%d", 1+i%9, g.r.IntN(3), g.r.IntN(2), unstoppable, restrict)
}

func (g *generator) services() {
	g.config = map[string]map[string]any{}
	n := 1 + g.r.IntN(2*len(g.nodes))
	for range n {
		sid := g.newSID()
		if _, dup := g.config[sid]; dup {
			continue
		}
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

// rules returns a rules_config with up to three node-affinity and
// resource-affinity rules over the initial services, or "".
func (g *generator) rules() string {
	if len(g.sids) < 2 || g.r.IntN(2) == 0 {
		return ""
	}
	var b strings.Builder
	for i := range 1 + g.r.IntN(3) {
		perm := g.r.Perm(len(g.sids))
		res := []string{g.sids[perm[0]], g.sids[perm[1]]}
		if g.r.IntN(2) == 0 {
			var nodes []string
			for j, k := range g.r.Perm(len(g.nodes))[:1+g.r.IntN(min(3, len(g.nodes)))] {
				nodes = append(nodes, fmt.Sprintf("%s:%d", g.nodes[k], j%2))
			}
			fmt.Fprintf(&b, "node-affinity: na%d\n\tresources %s\n\tnodes %s\n\tstrict %d\n\n",
				i, strings.Join(res[:1+g.r.IntN(2)], ","), strings.Join(nodes, ","), g.r.IntN(2))
			continue
		}
		fmt.Fprintf(&b, "resource-affinity: ra%d\n\tresources %s\n\taffinity %s\n\n",
			i, strings.Join(res, ","), g.pick([]string{"positive", "negative"}))
	}
	return b.String()
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
		heal = append(heal, "cfs "+n+" rw work", "cfs "+n+" update work")
	}
	g.steps = append(g.steps, heal)
}

// fault draws one fault or operator action: on a node (17 of 26 draws),
// else on a service.
func (g *generator) fault() []string {
	node := g.pick(g.nodes)
	if k := g.r.IntN(26); k < 17 {
		return g.nodeFault(node, k)
	}
	return g.serviceFault(node)
}

// nodeFault is a fault or operator action of kind k (0..16) on node.
func (g *generator) nodeFault(node string, k int) []string {
	switch {
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
		return g.partition()
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
		if g.cfsRW {
			return []string{"network " + node + " on"}
		}
		return []string{"crm " + node + " " + g.pick([]string{"enable-node-maintenance", "disable-node-maintenance"})}
	case k < 13:
		if g.r.IntN(2) == 0 {
			return []string{"crm " + node + " disarm-ha " + g.pick([]string{"freeze", "ignore"})}
		}
		return []string{"crm " + node + " arm-ha"}
	case k < 14:
		if g.r.IntN(3) == 0 {
			// Stalled daemons: every CRM or every LRM skips rounds;
			// long LRM stalls fire watchdogs.
			return []string{fmt.Sprintf("skip-round %s %d", g.pick([]string{"crm", "lrm"}), 1+g.r.IntN(6))}
		}
		return []string{fmt.Sprintf("delay %d", 20*g.r.IntN(10))}
	case k < 16:
		// Cluster filesystem faults, healed later or at the end.
		kinds := []string{"update"}
		if g.cfsRW {
			kinds = append(kinds, "rw")
		}
		return []string{"cfs " + node + " " + g.pick(kinds) + " " + g.pick([]string{"fail", "fail", "work"})}
	default:
		// A new service.
		sid := g.newSID()
		if _, dup := g.config[sid]; dup || slices.Contains(g.sids, sid) {
			return []string{"network " + node + " on"}
		}
		g.sids = append(g.sids, sid)
		return []string{fmt.Sprintf("service %s add %s %s", sid, node,
			g.pick([]string{"started", "started", "stopped", "disabled"}))}
	}
}

// partition cuts the network of several nodes at once: usually a
// minority, sometimes a majority (the cluster loses quorum).
func (g *generator) partition() []string {
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
}

// serviceFault is an operator action on a random service, with node as
// the target of a move.
func (g *generator) serviceFault(node string) []string {
	if len(g.sids) == 0 {
		return []string{"network " + node + " on"}
	}
	sid := g.pick(g.sids)
	switch g.r.IntN(12) {
	case 0:
		return []string{"service " + sid + " migrate " + node}
	case 1:
		return []string{"service " + sid + " relocate " + node}
	case 2:
		return []string{fmt.Sprintf("service %s stop %d", sid, g.r.IntN(3)*5)}
	case 3:
		if g.r.IntN(2) == 0 {
			return []string{"service " + sid + " lock " + g.pick([]string{"backup", "migrate", "snapshot"})}
		}
		return []string{"service " + sid + " unlock"}
	case 4:
		// The operator takes a service out of HA and moves it by hand
		// (it stops where it ran), or only takes it out.
		if g.r.IntN(2) == 0 {
			return []string{"service " + sid + " ignored", "service " + sid + " manual-migrate " + node}
		}
		return []string{"service " + sid + " ignored"}
	case 5:
		// Removed from HA for good: it may keep running where it is,
		// so its id is never used again.
		g.sids = slices.DeleteFunc(g.sids, func(s string) bool { return s == sid })
		return []string{"service " + sid + " delete"}
	case 6:
		if g.r.IntN(2) == 0 {
			return []string{fmt.Sprintf("service %s set-static-stats maxcpu %d maxmem %d", sid, 1+g.r.IntN(8), 512*(1+g.r.IntN(16)))}
		}
		return []string{fmt.Sprintf("service %s set-dynamic-stats cpu %d mem %d", sid, g.r.IntN(8), 256*(1+g.r.IntN(16)))}
	}
	return []string{"service " + sid + " " + g.pick([]string{"started", "started", "stopped", "disabled"})}
}

// String renders the command list compactly for reports.
func (g *Generated) String() string {
	return strings.TrimSpace(string(g.Files["cmdlist"]))
}
