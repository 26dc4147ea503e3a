package placement

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"haxd/ha"
)

// LogLine is a message the caller must log, in order, at Level.
type LogLine struct {
	// Level is the slog level (ha.LevelNotice for notice).
	Level slog.Level
	// Msg is the exact text.
	Msg string
}

func info(format string, args ...any) LogLine {
	return LogLine{Level: slog.LevelInfo, Msg: fmt.Sprintf(format, args...)}
}

func warn(format string, args ...any) LogLine {
	return LogLine{Level: slog.LevelWarn, Msg: fmt.Sprintf(format, args...)}
}

func errLine(format string, args ...any) LogLine {
	return LogLine{Level: slog.LevelError, Msg: fmt.Sprintf(format, args...)}
}

// Preference is the node preference of one selection (placement.md §6.1).
type Preference int

// Node preferences.
const (
	// PreferNone keeps the current node when it is acceptable.
	PreferNone Preference = iota
	// PreferBestScore picks the best node.
	PreferBestScore
	// PreferTryNext picks the best node not yet tried.
	PreferTryNext
)

// String returns the PVE name of the preference.
func (p Preference) String() string {
	switch p {
	case PreferNone:
		return "none"
	case PreferBestScore:
		return "best-score"
	case PreferTryNext:
		return "try-next"
	}
	return fmt.Sprintf("Preference(%d)", int(p))
}

// Options configure a Scheduler.
type Options struct {
	// LiveMigratable reports whether a service moves with "migrate" (live)
	// rather than "relocate"; nil means only type "vm" does.
	LiveMigratable func(ha.SID) bool
}

// Scheduler is the placement state of one CRM master: the compiled rules,
// the scheduler mode, the per-round usage model and the auto-rebalance hold
// counter. It is not safe for concurrent use; create a new one whenever a
// CRM becomes master.
type Scheduler struct {
	opts Options

	// compiled rules and their inputs
	inputs   *compileInputs
	ruleSet  *RuleSet
	compiled *Compiled
	failback map[ha.SID]bool

	// scheduler mode as configured (raw) and whether any was seen yet
	mode     string
	modeSeen bool
	hold     int

	// round inputs
	resources  map[ha.SID]*ha.ResourceConfig
	nodeStatus map[string]ha.NodeState
	services   map[ha.SID]*ha.ServiceStatus
	crs        ha.CRSOptions
	stats      StatsSource
	usage      *usage
	// sids caches the sorted keys of services (sortedServices).
	sids []ha.SID
}

// New returns a Scheduler for a freshly elected CRM master.
func New(opts Options) *Scheduler {
	if opts.LiveMigratable == nil {
		opts.LiveMigratable = func(sid ha.SID) bool { return sid.Type() == "vm" }
	}
	return &Scheduler{opts: opts, compiled: emptyCompiled(), failback: map[ha.SID]bool{}}
}

func emptyCompiled() *Compiled {
	return &Compiled{NodeAffinity: map[ha.SID]map[string]int{}, Positive: map[ha.SID]map[ha.SID]bool{}, Negative: map[ha.SID]map[ha.SID]bool{}}
}

// configuredMode returns crs.ha, defaulting to basic.
func configuredMode(dc *ha.Datacenter) string {
	if dc == nil || dc.CRS.Mode == "" {
		return ModeBasic
	}
	return dc.CRS.Mode
}

// UpdateMode re-reads the scheduler mode (manage round step 4) and returns
// "using scheduler mode" on the first call when the mode is not basic, and
// "switching scheduler mode" whenever it changed since the last call.
func (s *Scheduler) UpdateMode(dc *ha.Datacenter) []LogLine {
	m := configuredMode(dc)
	var out []LogLine
	switch {
	case !s.modeSeen:
		if m != ModeBasic {
			out = append(out, info("using scheduler mode '%s'", m))
		}
	case m != s.mode:
		out = append(out, info("switching scheduler mode from '%s' to '%s'", s.mode, m))
	}
	s.mode, s.modeSeen = m, true
	if dc != nil {
		s.crs = dc.CRS
	}
	return out
}

// Round holds the inputs of one manage round.
type Round struct {
	// Resources is the resources config, including each location.
	Resources map[ha.SID]*ha.ResourceConfig
	// Rules and Groups are the raw rules and legacy groups configs.
	Rules, Groups []byte
	// Datacenter holds the CRS options; nil means defaults.
	Datacenter *ha.Datacenter
	// NodeStatus is the CRM node table: its keys are the known nodes and
	// the nodes in state online are the candidates.
	NodeStatus map[string]ha.NodeState
	// Services is the live service status table. The scheduler keeps the
	// map and reads it on every call; the caller changes it in place and
	// calls ServiceChanged after every state change.
	Services map[ha.SID]*ha.ServiceStatus
	// Stats provides the static/dynamic figures (ha.Env implements it).
	Stats StatsSource
}

// Prepare starts a round (manage round step 7): it rebuilds the usage model
// from the service table and recompiles the rules when the rules, groups,
// resources or known nodes changed. It returns, in order, the usage warnings
// (unknown mode, fallback to basic, services without stats), the rule parse
// warnings and the "Drop rule" lines.
func (s *Scheduler) Prepare(r Round) []LogLine {
	s.resources, s.nodeStatus, s.services, s.stats = r.Resources, r.NodeStatus, r.Services, r.Stats
	if r.Datacenter != nil {
		s.crs = r.Datacenter.CRS
	}
	if !s.modeSeen {
		s.mode, s.modeSeen = configuredMode(r.Datacenter), true
	}
	out := s.rebuildUsage()
	out = append(out, s.recompile(r)...)
	return out
}

// sortedServices returns the SIDs of the service table, sorted. The slice
// is kept and sorted again only when the set of SIDs changed; callers must
// not modify it.
func (s *Scheduler) sortedServices() []ha.SID { return ha.SortedSIDs(&s.sids, s.services) }

// KnownNodes returns the known nodes, sorted.
func (s *Scheduler) KnownNodes() []string { return slices.Sorted(maps.Keys(s.nodeStatus)) }

// OnlineNodes returns the online nodes, sorted.
func (s *Scheduler) OnlineNodes() []string {
	var out []string
	for _, n := range s.KnownNodes() {
		if s.nodeStatus[n] == ha.NodeOnline {
			out = append(out, n)
		}
	}
	return out
}

func (s *Scheduler) rebuildUsage() []LogLine {
	var out []LogLine
	mode := s.mode
	switch mode {
	case ModeBasic, ModeStatic, ModeDynamic:
	default:
		out = append(out, warn("got unknown scheduler mode '%s', using 'basic'", mode))
		mode = ModeBasic
	}
	online := s.OnlineNodes()
	if mode == ModeBasic && s.usage != nil && s.usage.mode == ModeBasic && slices.Equal(s.usage.online, online) {
		// The basic model depends on nothing but the online nodes and the
		// service table: bring last round's model up to date instead of
		// rebuilding it.
		s.usage.syncBasic(s.services)
		return out
	}
	u, err := newUsage(mode, online, s.stats)
	if err != nil {
		out = append(out, warn("fallback to 'basic' scheduler mode, init for '%s' failed - %v", mode, err))
		u, _ = newUsage(ModeBasic, online, nil)
	}
	s.usage = u
	sids := s.sortedServices()
	u.slab = make([]usageEntry, len(sids))
	for _, sid := range sids {
		if w := u.add(sid, s.services[sid], s.stats); w != "" {
			out = append(out, warn("%s", w))
		}
	}
	return out
}

// resourceKey is the part of a resource's configuration that a rules
// compilation reads: every configured property except the location, which
// lives outside the resources config in PVE.
type resourceKey struct {
	requested               ha.RequestedState
	maxRestart, maxRelocate int
	failback                bool
	group, comment          string
}

func resourceKeyOf(cd *ha.ResourceConfig) resourceKey {
	return resourceKey{requested: cd.Requested(), maxRestart: cd.MaxRestart, maxRelocate: cd.MaxRelocate,
		failback: cd.Failback, group: cd.Group, comment: cd.Comment}
}

// compileInputs are the inputs of a rules compilation: the rules and groups
// text, the known nodes and the resources config (nil entries are not
// configured). A round whose inputs equal the last compilation's reuses it;
// the comparison is exact and costs one map lookup per resource, with no
// formatting or sorting.
type compileInputs struct {
	rules, groups []byte
	known         []string
	resources     map[ha.SID]resourceKey
}

func newCompileInputs(r Round, known []string) *compileInputs {
	in := &compileInputs{rules: slices.Clone(r.Rules), groups: slices.Clone(r.Groups), known: known,
		resources: make(map[ha.SID]resourceKey, len(r.Resources))}
	for sid, cd := range r.Resources {
		if cd != nil {
			in.resources[sid] = resourceKeyOf(cd)
		}
	}
	return in
}

// matches reports whether r and known are the inputs in.
func (in *compileInputs) matches(r Round, known []string) bool {
	if !bytes.Equal(in.rules, r.Rules) || !bytes.Equal(in.groups, r.Groups) || !slices.Equal(in.known, known) {
		return false
	}
	n := 0
	for sid, cd := range r.Resources {
		if cd == nil {
			continue
		}
		n++
		if k, ok := in.resources[sid]; !ok || k != resourceKeyOf(cd) {
			return false
		}
	}
	return n == len(in.resources)
}

func (s *Scheduler) recompile(r Round) []LogLine {
	known := s.KnownNodes()
	if s.ruleSet != nil && s.inputs != nil && s.inputs.matches(r, known) {
		return nil
	}
	var out []LogLine
	rs, diags := ParseRules(r.Rules)
	for _, d := range diags {
		out = append(out, warn("rules config: %s", d))
	}
	groups, gdiags := ParseGroups(r.Groups)
	for _, d := range gdiags {
		out = append(out, warn("groups config: %s", d))
	}
	withGroups, failback := ApplyGroups(rs, groups, r.Resources)
	canon, drops := Canonicalize(withGroups, known)
	for _, l := range drops {
		out = append(out, info("%s", l))
	}
	s.inputs, s.ruleSet, s.failback = newCompileInputs(r, known), canon, failback
	s.compiled = Compile(canon, known)
	return out
}

// Rules returns the rule set in effect (after groups, checks and transforms).
func (s *Scheduler) Rules() *RuleSet { return s.ruleSet }

// Compiled returns the compiled rules in effect.
func (s *Scheduler) Compiled() *Compiled { return s.compiled }

// Failback returns the failback value in effect for sid: its group's
// nofailback negated when it names a group (placement.md §2.3), else its
// own setting (default true).
func (s *Scheduler) Failback(sid ha.SID) bool {
	if fb, ok := s.failback[sid]; ok {
		return fb
	}
	if cd := s.resources[sid]; cd != nil {
		return cd.Failback
	}
	return true
}

// ServiceChanged updates the usage model after sid's entry in the service
// table changed (state, node or target) or was added or removed.
func (s *Scheduler) ServiceChanged(sid ha.SID) []LogLine {
	if s.usage == nil {
		return nil
	}
	s.usage.remove(sid)
	sd, ok := s.services[sid]
	if !ok {
		return nil
	}
	if w := s.usage.add(sid, sd, s.stats); w != "" {
		return []LogLine{warn("%s", w)}
	}
	return nil
}

// partnerNodes computes, over online nodes, the positive-partner counts and
// the nodes blocked by negative partners of sid (placement.md §4.2). The
// maps are nil (read as empty) when sid has no partners of that kind.
func (s *Scheduler) partnerNodes(sid ha.SID, isOnline map[string]bool) (together map[string]int, separate map[string]bool) {
	if pos := s.compiled.Positive[sid]; len(pos) > 0 {
		together = map[string]int{}
		for _, p := range slices.Sorted(maps.Keys(pos)) {
			cur, tgt := usedNodes(s.services[p], isOnline)
			if tgt != "" {
				together[tgt]++
			} else if cur != "" {
				together[cur]++
			}
		}
	}
	if neg := s.compiled.Negative[sid]; len(neg) > 0 {
		separate = map[string]bool{}
		for _, p := range slices.Sorted(maps.Keys(neg)) {
			cur, tgt := usedNodes(s.services[p], isOnline)
			if cur != "" {
				separate[cur] = true
			}
			if tgt != "" {
				separate[tgt] = true
			}
		}
	}
	return together, separate
}

// priorityClass returns the online nodes sid may use (allowed) and those of
// its highest online priority class (pri), placement.md §6.2 step 2. Without
// a node-affinity rule both are online itself: callers must not modify them.
func (s *Scheduler) priorityClass(sid ha.SID, online []string) (allowed, pri []string) {
	na, ok := s.compiled.NodeAffinity[sid]
	if !ok {
		return online, online
	}
	best := 0
	for _, n := range online {
		p, listed := na[n]
		if !listed {
			continue
		}
		if len(allowed) == 0 || p > best {
			best = p
		}
		allowed = append(allowed, n)
	}
	for _, n := range allowed {
		if na[n] == best {
			pri = append(pri, n)
		}
	}
	return allowed, pri
}

// Select chooses a node for sid with the given preference (placement.md
// §6.2). It returns "" when there is no admissible node. The log lines report
// a service that could not be scored.
func (s *Scheduler) Select(sid ha.SID, pref Preference) (string, []LogLine) {
	sd := s.services[sid]
	if sd == nil || s.usage == nil {
		return "", nil
	}
	online := s.usage.online
	isOnline := s.usage.isOnline
	current := sd.Node
	if pref == PreferNone && isOnline[current] && len(s.compiled.Positive[sid]) == 0 && len(s.compiled.Negative[sid]) == 0 {
		if _, ok := s.compiled.NodeAffinity[sid]; !ok {
			// The common case, and exactly what the steps below give for
			// it: without rules allowed and pri are the online nodes,
			// which include current, and no partner counts or blocks.
			if s.Failback(sid) && sd.MaintenanceNode != "" && isOnline[sd.MaintenanceNode] {
				return sd.MaintenanceNode, nil
			}
			return current, nil
		}
	}
	allowed, pri := s.priorityClass(sid, online)
	if len(pri) == 0 {
		return "", nil
	}
	together, separate := s.partnerNodes(sid, isOnline)
	if pref == PreferNone && !s.Failback(sid) && slices.Contains(allowed, current) &&
		(together[current] > 0 || !separate[current]) {
		return current, nil
	}
	// pri may be online itself: work on a copy from here on.
	pri = slices.Clone(pri)
	if pref == PreferTryNext {
		pri = slices.DeleteFunc(pri, func(n string) bool { return slices.Contains(sd.FailedNodes, n) })
	}
	pri = slices.DeleteFunc(pri, func(n string) bool { return separate[n] })
	bestNode, bestCount := "", 0
	for _, n := range pri {
		if c := together[n]; c > bestCount {
			bestNode, bestCount = n, c
		}
	}
	if bestNode != "" {
		pri = []string{bestNode}
	}
	if sd.MaintenanceNode != "" && slices.Contains(pri, sd.MaintenanceNode) {
		return sd.MaintenanceNode, nil
	}
	if pref == PreferNone && slices.Contains(pri, current) {
		return current, nil
	}
	var logs []LogLine
	scores, err := s.usage.scores(sid, s.stats)
	if err != nil {
		logs = append(logs, errLine("unable to score nodes according to %s usage for service '%s' - %v", s.usage.mode, sid, err))
		scores = map[string]float64{}
	}
	slices.SortStableFunc(pri, func(a, b string) int {
		if scores[a] < scores[b] {
			return -1
		}
		if scores[a] > scores[b] {
			return 1
		}
		return strings.Compare(a, b)
	})
	if len(pri) == 0 {
		return "", logs
	}
	if pref == PreferTryNext {
		if i := slices.Index(pri, current); i >= 0 && i+1 < len(pri) {
			return pri[i+1], logs
		}
	}
	return pri[0], logs
}

// RebalanceOnStart runs the start-time balancing of placement.md §8 for a
// service in request_start: it returns the node to start on (the current
// node when nothing better or nothing admissible exists) and the log line
// "service <sid>: re-balance selected ... node ... for startup". When the
// result differs from the current node, the caller enters
// request_start_balance with that target.
func (s *Scheduler) RebalanceOnStart(sid ha.SID) (string, []LogLine) {
	sd := s.services[sid]
	if sd == nil {
		return "", nil
	}
	n, logs := s.Select(sid, PreferBestScore)
	if n == "" {
		return sd.Node, append(logs, info("service %s: re-balance found no admissible node, starting on current node %s", sid, sd.Node))
	}
	if n == sd.Node {
		return n, append(logs, info("service %s: re-balance selected current node %s for startup", sid, n))
	}
	return n, append(logs, info("service %s: re-balance selected new node %s for startup", sid, n))
}

// RebalanceOnStartEnabled reports whether crs.ha-rebalance-on-start is set.
func (s *Scheduler) RebalanceOnStartEnabled() bool { return s.crs.RebalanceOnStart }
