package resource

import (
	"context"
	"slices"
	"testing"

	"haxd/ha"
)

type nopAgent struct{ name string }

func (nopAgent) Start(context.Context, ha.SID) error                 { return nil }
func (nopAgent) Stop(context.Context, ha.SID, *int) error            { return nil }
func (nopAgent) Running(context.Context, ha.SID) (bool, error)       { return false, nil }
func (nopAgent) Migrate(context.Context, ha.SID, string, bool) error { return nil }
func (nopAgent) LiveMigratable() bool                                { return false }
func (nopAgent) RemoveLocks(ha.SID, []string) string                 { return "" }

func TestRegistry(t *testing.T) {
	r := Registry{"systemd": nopAgent{"s"}, "exec": nopAgent{"e"}}
	if got := r.Agent("exec"); got != (nopAgent{"e"}) {
		t.Errorf("Agent(exec) = %v", got)
	}
	if got := r.Agent("vm"); got != nil {
		t.Errorf("Agent(vm) = %v, want nil for an unknown type", got)
	}
	if got := r.Types(); !slices.Equal(got, []string{"exec", "systemd"}) {
		t.Errorf("Types = %v, want sorted", got)
	}
	var empty Registry
	if empty.Agent("exec") != nil {
		t.Error("the zero Registry returned an agent")
	}
}
