package crm

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"haxd/crm/placement"
	"haxd/ha"
)

// GroupMigrator is an optional extension of ha.Env: the write of the
// persistent migration of legacy HA groups to rules (ha-semantics §10.3,
// placement.md §2.3). Without it the master still uses groups as rules in
// memory every round, but reports each persistent migration attempt as
// aborted.
type GroupMigrator interface {
	// MigrateGroups writes m in one atomic step, fenced by the master's
	// term: the rules and groups configs become m.Rules and m.Groups and
	// every listed resource loses its group and gets its failback, but
	// only while the rules, the groups and the listed resources' groups
	// are still what the master read (m.RulesFrom, m.GroupsFrom,
	// MigratedResource.Group). Otherwise it fails and changes nothing, and
	// the migration is tried again later.
	MigrateGroups(m GroupMigration) error
}

// GroupMigration is one persistent group→rules migration.
type GroupMigration struct {
	// RulesFrom is the rules config read; Rules the new one.
	RulesFrom, Rules []byte
	// GroupsFrom is the groups config read; Groups the new one, holding
	// the groups no service uses yet; GroupIDs are their ids.
	GroupsFrom, Groups []byte
	GroupIDs           []string
	// Resources are the resources that had a group, sorted by SID.
	Resources []MigratedResource
}

// MigratedResource is one resource of a GroupMigration.
type MigratedResource struct {
	// SID is the resource.
	SID ha.SID
	// Group is its group as read; the write fails if it changed.
	Group string
	// Failback is the failback its group implied (placement.md §2.3).
	Failback bool
}

// Group migration timing: the first attempt in the 3rd round of a master,
// then every 6 rounds while groups remain (ha-semantics §2).
const (
	groupMigrationFirstRound = 3
	groupMigrationInterval   = 6
	// minGroupMigrationVersion is the oldest node software that understands
	// rules.
	minGroupMigrationVersion = "9.0.0~16"
)

// migrateGroups is the persistent group→rules migration, tried in step 4
// of the round (ha-semantics §10.3). Groups that no service uses yet are
// not migrated: an operator defines a group before adding services to it
// (PVE 9 refuses new groups once migrated, haxd keeps them instead), so
// such a group stays in the groups config until a service uses it, and
// only a used group is converted, exactly as PVE converts it. With no
// group in use there is nothing to migrate and nothing is logged.
func (m *manager) migrateGroups() {
	m.groupRound--
	if m.groupRound > 0 {
		return
	}
	m.groupRound = groupMigrationInterval
	raw, err := m.env.ReadGroups()
	if err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return
	}
	groups, _ := placement.ParseGroups(raw)
	if len(groups) == 0 {
		return
	}
	resources, err := m.env.ReadResources()
	if err != nil {
		return
	}
	used := false
	for _, cd := range resources {
		if cd != nil && groups[cd.Group] != nil {
			used = true
		}
	}
	if !used {
		return
	}
	m.log.notice("start ha group migration...")
	if err := m.persistGroups(raw, groups, resources); err != nil {
		m.log.err("abort ha groups migration: " + err.Error())
		m.log.err("ha groups migration failed")
		m.log.notice(fmt.Sprintf("retry ha groups migration in %d rounds (~ 60 seconds)", groupMigrationInterval))
		return
	}
	m.log.notice("ha groups migration successful")
}

// persistGroups checks that every node can use rules and writes the
// converted configs. Its errors are the "abort" reasons as operators see
// them.
func (m *manager) persistGroups(raw []byte, groups map[string]*placement.Group, resources map[ha.SID]*ha.ResourceConfig) error {
	for _, node := range slices.Sorted(maps.Keys(m.nodeStatus)) {
		st := m.nodeStatus[node]
		m.log.notice(fmt.Sprintf("ha groups migration: node '%s' is in state '%s'", node, st), ha.KeyNode, node)
		if st != ha.NodeOnline {
			return fmt.Errorf("node '%s' is not online", node)
		}
		lrmState, mode := m.lrmStates[node], m.modes[node]
		m.log.notice(fmt.Sprintf("ha groups migration: lrm '%s' is in state '%s' and mode '%s'", node, lrmState, mode), ha.KeyNode, node)
		if lrmState != ha.LRMActive && lrmState != ha.LRMWaitForAgentLock {
			return fmt.Errorf("lrm '%s' is not in state 'active'", node)
		}
		if mode != ha.ModeActive {
			return fmt.Errorf("lrm '%s' is not in mode 'active'", node)
		}
		v := m.env.NodeVersion(node)
		m.log.notice(fmt.Sprintf("ha groups migration: node '%s' has version '%s'", node, v), ha.KeyNode, node)
		if compareVersions(v, minGroupMigrationVersion) < 0 {
			return fmt.Errorf("node '%s' needs at least pve-manager version '%s'", node, minGroupMigrationVersion)
		}
	}
	w, ok := m.env.(GroupMigrator)
	if !ok {
		return fmt.Errorf("this environment cannot write the rules, resources and groups configs")
	}
	rules, err := m.env.ReadRules()
	if err != nil {
		return err
	}
	mig := planGroupMigration(rules, raw, groups, resources)
	if err := w.MigrateGroups(mig); err != nil {
		return err
	}
	m.log.notice("ha groups migration: migration to rules config successful")
	m.log.notice("ha groups migration: migration to resources config successful")
	if len(mig.GroupIDs) == 0 {
		m.log.notice("ha groups migration: group config deletion successful")
	} else {
		m.log.notice(fmt.Sprintf("ha groups migration: kept group(s) '%s' that no service uses yet in the group config",
			strings.Join(mig.GroupIDs, "', '")))
	}
	return nil
}

// planGroupMigration converts the used groups to rules (placement.md §2.3)
// and lists what the write must change: every resource with a group loses
// it (a group that does not exist included, with failback forced to 1 as
// in PVE) and the groups no service uses stay.
func planGroupMigration(rules, rawGroups []byte, groups map[string]*placement.Group, resources map[ha.SID]*ha.ResourceConfig) GroupMigration {
	converted, failback := placement.ApplyGroups(&placement.RuleSet{Rules: map[string]*placement.Rule{}}, groups, resources)
	left := map[string]*placement.Group{}
	for id, g := range groups {
		if converted.Rules[placement.GroupRuleID(id)] == nil {
			left[id] = g
		}
	}
	mig := GroupMigration{RulesFrom: rules, Rules: appendGroupRules(rules, converted), GroupsFrom: rawGroups,
		GroupIDs: slices.Sorted(maps.Keys(left))}
	if len(left) > 0 {
		mig.Groups = placement.FormatGroups(left)
	}
	for _, sid := range slices.Sorted(maps.Keys(failback)) {
		mig.Resources = append(mig.Resources, MigratedResource{SID: sid, Group: resources[sid].Group, Failback: failback[sid]})
	}
	return mig
}

// appendGroupRules appends the node-affinity rules converted from groups
// (rendered by placement.RuleSet.Format, in id order: ApplyGroups numbers
// them in that order) to the rules config text.
func appendGroupRules(rules []byte, converted *placement.RuleSet) []byte {
	body, derived := bytes.TrimRight(rules, "\n"), converted.Format()
	switch {
	case len(body) == 0:
		return derived
	case len(derived) == 0:
		return append(slices.Clip(body), '\n')
	}
	return slices.Concat(body, []byte("\n\n"), derived)
}

// compareVersions compares two Debian-style version strings the way dpkg
// does: runs of non-digits compare character-wise with '~' sorting before
// everything (even the end of the string) and letters before other
// characters; runs of digits compare numerically. It returns -1, 0 or 1.
func compareVersions(a, b string) int {
	order := func(s string, i int) int {
		if i >= len(s) {
			return 0
		}
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			return 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			return int(c)
		case c == '~':
			return -1
		}
		return int(c) + 256
	}
	digit := func(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !digit(a, i)) || (j < len(b) && !digit(b, j)) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return cmpSign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		first := 0
		for digit(a, i) && digit(b, j) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if digit(a, i) {
			return 1
		}
		if digit(b, j) {
			return -1
		}
		if first != 0 {
			return cmpSign(first)
		}
	}
	return 0
}

func cmpSign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
