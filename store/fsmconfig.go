package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

// The config operations of the FSM. Each is one operator or CRM intent,
// applied under f.mu with every check it needs against the state at its
// own log position, so that no check can be outdated by a concurrent
// write (no check-then-act across entries). A rejected operation changes
// nothing.

// serviceState returns the CRM state of sid in the stored manager status,
// or "" if it has none.
func (st *state) serviceState(sid ha.SID) ha.ServiceState {
	if len(st.ManagerStatus) == 0 {
		return ""
	}
	var ms ha.ManagerStatus
	if json.Unmarshal(st.ManagerStatus, &ms) != nil {
		return ""
	}
	if sd := ms.ServiceStatus[sid]; sd != nil {
		return sd.State
	}
	return ""
}

// managerNodes returns the nodes of the stored manager status.
func (st *state) managerNodes() map[string]ha.NodeState {
	if len(st.ManagerStatus) == 0 {
		return nil
	}
	var ms ha.ManagerStatus
	if json.Unmarshal(st.ManagerStatus, &ms) != nil {
		return nil
	}
	return ms.NodeStatus
}

// groupUsers returns the resources whose group is g, sorted.
func (st *state) groupUsers(g string) []string {
	var out []string
	for _, sid := range slices.Sorted(maps.Keys(st.Resources)) {
		if st.Resources[sid].Group == g {
			out = append(out, string(sid))
		}
	}
	return out
}

// checkResourceConfig checks the operator-settable fields of rc.
func checkResourceConfig(rc *ha.ResourceConfig) error {
	if _, err := ha.ParseSID(string(rc.SID)); err != nil {
		return err
	}
	if rc.State != "" {
		if _, valid := ha.ParseRequestedState(string(rc.State)); !valid {
			return fmt.Errorf("state %q: expected started, stopped, disabled or ignored", rc.State)
		}
	}
	if rc.MaxRestart < 0 {
		return fmt.Errorf("max_restart %d: expected an integer >= 0", rc.MaxRestart)
	}
	if rc.MaxRelocate < 0 {
		return fmt.Errorf("max_relocate %d: expected an integer >= 0", rc.MaxRelocate)
	}
	if len(rc.Comment) > ha.MaxCommentLen {
		return fmt.Errorf("comment: longer than %d characters", ha.MaxCommentLen)
	}
	if rc.Group != "" {
		if err := ha.CheckConfigID("group", rc.Group); err != nil {
			return err
		}
	}
	if len(rc.Spec) > 0 && !json.Valid(rc.Spec) {
		return fmt.Errorf("spec: not valid JSON")
	}
	return nil
}

// checkGroupRef refuses a group that the groups config does not define.
func (st *state) checkGroupRef(sid ha.SID, group string) *result {
	if group == "" || slices.Contains(st.GroupIDs, group) {
		return nil
	}
	return refuse(ErrNotFound, "%s: group '%s' is not defined in the groups config", sid, group)
}

// addResource creates a resource; ErrConflict if it exists.
func (f *fsm) addResource(l *raft.Log, c *addResourceCmd) *result {
	st := f.st
	rc := c.Config
	if err := checkResourceConfig(&rc); err != nil {
		return refuse(ErrInvalid, "add resource %q: %v", rc.SID, err)
	}
	if rc.Node == "" {
		return refuse(ErrInvalid, "add resource %q: empty node", rc.SID)
	}
	if _, exists := st.Resources[rc.SID]; exists {
		return refuse(ErrConflict, "add resource: resource '%s' already defined", rc.SID)
	}
	if nodes := st.managerNodes(); len(nodes) > 0 {
		if _, known := nodes[rc.Node]; !known {
			return refuse(ErrInvalid, "add resource %q: node '%s' is not a cluster node", rc.SID, rc.Node)
		}
	}
	if r := st.checkGroupRef(rc.SID, rc.Group); r != nil {
		return r
	}
	rc.Spec = slices.Clone(rc.Spec)
	rc.Revision = l.Index
	st.Resources[rc.SID] = rc
	return ok(nil)
}

// sameJSON reports whether a and b encode the same JSON text, ignoring
// insignificant white space (both empty counts as equal).
func sameJSON(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// updateResource applies one operator intent to one resource.
func (f *fsm) updateResource(l *raft.Log, c *updateResourceCmd) *result {
	st := f.st
	rc, found := st.Resources[c.SID]
	if !found {
		return refuse(ErrNotFound, "update resource: service '%s' not configured", c.SID)
	}
	if c.ExpectRevision != 0 && rc.Revision != c.ExpectRevision {
		return refuse(ErrConflict, "update resource %s: revision is %d, the update expects %d", c.SID, rc.Revision, c.ExpectRevision)
	}
	if c.State != nil {
		if *c.State != ha.RequestDisabled && st.serviceState(c.SID) == ha.StateError {
			return refuse(ErrConflict, "service '%s' in error state, must be disabled and fixed first", c.SID)
		}
		rc.State = *c.State
	}
	if c.Group != nil {
		if r := st.checkGroupRef(c.SID, *c.Group); r != nil {
			return r
		}
		rc.Group = *c.Group
	}
	if c.MaxRestart != nil {
		rc.MaxRestart = *c.MaxRestart
	}
	if c.MaxRelocate != nil {
		rc.MaxRelocate = *c.MaxRelocate
	}
	if c.Failback != nil {
		rc.Failback = *c.Failback
	}
	if c.Comment != nil {
		rc.Comment = *c.Comment
	}
	if c.Spec != nil {
		if !sameJSON(rc.Spec, c.SpecFrom) {
			return refuse(ErrConflict, "update resource %s: the spec changed since it was read", c.SID)
		}
		rc.Spec = slices.Clone(c.Spec)
	}
	if err := checkResourceConfig(&rc); err != nil {
		return refuse(ErrInvalid, "update resource %s: %v", c.SID, err)
	}
	rc.Revision = l.Index
	st.Resources[c.SID] = rc
	return ok(nil)
}

// removeResource deletes a resource and, in the same entry, replaces the
// rules text it was purged from.
func (f *fsm) removeResource(c *removeResourceCmd) *result {
	st := f.st
	if _, found := st.Resources[c.SID]; !found {
		return refuse(ErrNotFound, "remove resource: service '%s' not configured", c.SID)
	}
	if c.Rules != nil {
		if st.Rules != c.RulesFrom {
			return refuse(ErrConflict, "remove resource %s: the rules changed since they were read", c.SID)
		}
		st.Rules = *c.Rules
	}
	delete(st.Resources, c.SID)
	return ok(nil)
}

// checkSetGroups refuses a groups text that drops a group a resource
// still uses, or names an invalid group id.
func (st *state) checkSetGroups(c *textCmd) *result {
	for _, g := range st.GroupIDs {
		if slices.Contains(c.GroupIDs, g) {
			continue
		}
		if users := st.groupUsers(g); len(users) > 0 {
			return refuse(ErrConflict, "set groups: group '%s' is still used by %s; remove it from them first", g, strings.Join(users, ", "))
		}
	}
	for _, g := range c.GroupIDs {
		if err := ha.CheckConfigID("group", g); err != nil {
			return refuse(ErrInvalid, "set groups: %v", err)
		}
	}
	return nil
}

// setGroups replaces the groups text after checkSetGroups.
func (st *state) setGroups(c *textCmd) {
	st.Groups = c.Text
	st.GroupIDs = slices.Compact(slices.Sorted(slices.Values(c.GroupIDs)))
}

// checkMigration refuses a group migration whose inputs changed since the
// CRM read them, or that would leave a resource with a removed group.
func (st *state) checkMigration(c *migrateGroupsCmd) *result {
	if st.Rules != c.RulesFrom {
		return refuse(ErrConflict, "migrate groups: the rules config changed since it was read")
	}
	if st.Groups != c.GroupsFrom {
		return refuse(ErrConflict, "migrate groups: the groups config changed since it was read")
	}
	for _, m := range c.Resources {
		rc, found := st.Resources[m.SID]
		if !found {
			return refuse(ErrConflict, "migrate groups: service '%s' was removed", m.SID)
		}
		if rc.Group != m.Group {
			return refuse(ErrConflict, "migrate groups: group of %s is now '%s', not '%s'", m.SID, rc.Group, m.Group)
		}
	}
	left := slices.Compact(slices.Sorted(slices.Values(c.GroupIDs)))
	for _, sid := range slices.Sorted(maps.Keys(st.Resources)) {
		g := st.Resources[sid].Group
		if g == "" || !slices.Contains(st.GroupIDs, g) || slices.Contains(left, g) {
			continue
		}
		if !slices.ContainsFunc(c.Resources, func(m migratedService) bool { return m.SID == sid }) {
			return refuse(ErrConflict, "migrate groups: group '%s' is removed but %s still uses it", g, sid)
		}
	}
	for _, g := range c.GroupIDs {
		if err := ha.CheckConfigID("group", g); err != nil {
			return refuse(ErrInvalid, "migrate groups: %v", err)
		}
	}
	return nil
}

// migrateGroups applies a group migration after checkMigration.
func (st *state) migrateGroups(l *raft.Log, c *migrateGroupsCmd) {
	left := slices.Compact(slices.Sorted(slices.Values(c.GroupIDs)))
	for _, m := range c.Resources {
		rc := st.Resources[m.SID]
		rc.Group = ""
		rc.Failback = m.Failback
		rc.Revision = l.Index
		st.Resources[m.SID] = rc
	}
	st.Rules = c.Rules
	st.Groups = c.Groups
	st.GroupIDs = left
}

// mustJSONOrEmpty encodes d for a comparison; nil and the zero settings
// compare equal, since reads return the zero value for never written.
func mustJSONOrEmpty(d *datacenterDoc) string {
	if d == nil {
		d = &datacenterDoc{}
	}
	c := *d
	if len(c.CRSSet) == 0 {
		c.CRSSet = nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	return string(b)
}
