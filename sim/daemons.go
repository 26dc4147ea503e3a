package sim

import (
	"maps"
	"slices"

	"haxd/crm"
	"haxd/ha"
	"haxd/lrm"
)

// DefaultFactory creates the real CRM and LRM of packages crm and lrm.
func DefaultFactory() Factory {
	return Factory{
		NewCRM: func(env ha.Env, t ha.Timing) Daemon { return crm.New(env, t) },
		NewLRM: func(env ha.Env, t ha.Timing, written *bool) Daemon {
			return lrm.New(env, lrm.Options{Timing: t, StatusWritten: written})
		},
	}
}

var (
	_ crm.CommandPeeker = (*env)(nil)
	_ crm.GroupMigrator = (*env)(nil)
)

// HasCRMCommands reports whether CRM commands are queued, without
// consuming them (crm.CommandPeeker).
func (e *env) HasCRMCommands() (bool, error) {
	if err := e.cfs(); err != nil {
		return false, err
	}
	return len(e.s.crmCommands) > 0, nil
}

// WriteRules replaces the rules config (crm.GroupMigrator).
func (e *env) WriteRules(raw []byte) error {
	if err := e.cfs(); err != nil {
		return err
	}
	e.s.rules = append([]byte(nil), raw...)
	return nil
}

// MigrateResourceGroups removes the group property of every resource and
// sets failback for the listed ones (crm.GroupMigrator).
func (e *env) MigrateResourceGroups(failback map[ha.SID]bool) error {
	if err := e.cfs(); err != nil {
		return err
	}
	for _, sid := range slices.Sorted(maps.Keys(e.s.services)) {
		c := e.s.editService(sid)
		c.Group = ""
		if fb, ok := failback[sid]; ok {
			c.Failback = fb
		}
	}
	return nil
}

// DeleteGroups deletes the legacy groups file (crm.GroupMigrator).
func (e *env) DeleteGroups() error {
	if err := e.cfs(); err != nil {
		return err
	}
	e.s.groups = nil
	return nil
}
