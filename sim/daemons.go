package sim

import (
	"bytes"
	"fmt"

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

// MigrateGroups writes the persistent group migration (crm.GroupMigrator):
// the simulated cluster file system applies it whole, and only while the
// configs are still what the master read.
func (e *env) MigrateGroups(m crm.GroupMigration) error {
	if err := e.cfs(); err != nil {
		return err
	}
	if !bytes.Equal(e.s.rules, m.RulesFrom) || !bytes.Equal(e.s.groups, m.GroupsFrom) {
		return fmt.Errorf("the rules or groups config changed since it was read")
	}
	for _, r := range m.Resources {
		if c := e.s.services[r.SID]; c == nil || c.Group != r.Group {
			return fmt.Errorf("the group of %s changed since it was read", r.SID)
		}
	}
	for _, r := range m.Resources {
		c := e.s.editService(r.SID)
		c.Group = ""
		c.Failback = r.Failback
	}
	e.s.rules = bytes.Clone(m.Rules)
	e.s.groups = bytes.Clone(m.Groups)
	return nil
}
