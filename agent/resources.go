package agent

import (
	"context"
	"encoding/json"
	"fmt"

	"haxd/ha"
	"haxd/resource"
	"haxd/resource/exec"
	"haxd/resource/ocf"
)

// movingAgent wraps a resource agent whose Migrate only stops the service
// locally: after a successful move it records the new location in the store,
// as ha.ResourceAgent.Migrate promises.
type movingAgent struct {
	ha.ResourceAgent
	n *node
}

func (m movingAgent) Migrate(ctx context.Context, sid ha.SID, target string, online bool) error {
	if err := m.ResourceAgent.Migrate(ctx, sid, target, online); err != nil {
		return err
	}
	if err := m.n.store.SetLocation(ctx, sid, m.n.name, target); err != nil {
		return fmt.Errorf("record new location of %s: %w", sid, err)
	}
	return nil
}

// execSpecs reads an exec resource's spec from the replicated resources
// config and adds HAXD_NODE to its environment.
func execSpecs(n *node) resource.SpecFunc[exec.Spec] {
	return func(_ context.Context, sid ha.SID) (exec.Spec, error) {
		cd := n.store.Resources()[sid]
		if cd == nil {
			return exec.Spec{}, fmt.Errorf("resource %s is not configured", sid)
		}
		if len(cd.Spec) == 0 {
			return exec.Spec{}, fmt.Errorf("resource %s has no spec", sid)
		}
		spec, err := exec.ParseSpec(cd.Spec)
		if err != nil {
			return exec.Spec{}, fmt.Errorf("resource %s spec: %w", sid, err)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		if _, ok := spec.Env["HAXD_NODE"]; !ok {
			spec.Env["HAXD_NODE"] = n.name
		}
		return spec, nil
	}
}

// ocfSpecs reads an OCF resource's spec from the replicated resources
// config.
type ocfSpecs struct{ n *node }

// Spec implements ocf.SpecSource.
func (o ocfSpecs) Spec(_ context.Context, sid ha.SID) (ocf.Spec, error) {
	cd := o.n.store.Resources()[sid]
	if cd == nil || len(cd.Spec) == 0 {
		return ocf.Spec{}, fmt.Errorf("resource %s has no ocf spec", sid)
	}
	spec, err := ocf.ParseSpec(cd.Spec)
	if err != nil {
		return ocf.Spec{}, fmt.Errorf("resource %s spec: %w", sid, err)
	}
	return spec, nil
}

// validateSpec checks a resource's spec before it is stored.
func validateSpec(sid ha.SID, spec json.RawMessage) error {
	switch sid.Type() {
	case "ocf":
		if len(spec) == 0 {
			return fmt.Errorf("spec: an ocf resource needs a spec with an agent (provider:type)")
		}
		if _, err := ocf.ParseSpec(spec); err != nil {
			return fmt.Errorf("spec: %w", err)
		}
		return nil
	case "systemd":
		if len(spec) != 0 {
			return fmt.Errorf("spec: a systemd resource takes no spec; its name is the unit")
		}
		return nil
	case "exec":
		if len(spec) == 0 {
			return fmt.Errorf("spec: an exec resource needs a spec with a command")
		}
		if _, err := exec.ParseSpec(spec); err != nil {
			return fmt.Errorf("spec: %w", err)
		}
		return nil
	}
	return fmt.Errorf("sid %q: unknown resource type %q (known: exec, ocf, systemd)", sid, sid.Type())
}
