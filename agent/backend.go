package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"haxd/api"
	"haxd/crm/placement"
	"haxd/ha"
	"haxd/store"
)

// backend implements api.Backend on the agent's store. Writes go through
// the raft leader (forwarded by the store); reads are linearized with a
// barrier first, so `haxd ha status` right after a change shows it.
type backend struct{ a *Agent }

func (b *backend) st() *store.Store { return b.a.n.store }

func (b *backend) Status(ctx context.Context) (*api.Status, error) {
	_ = b.st().Barrier(ctx) // best effort: without a leader show the local replica
	ms, err := b.st().ManagerStatus()
	if err != nil {
		return nil, fmt.Errorf("read manager status: %w", err)
	}
	e := newEnv(b.a.n, "api", nil)
	out := &api.Status{LocalNode: b.a.n.name, Quorate: e.Quorate(), Now: e.Now().Unix(), Manager: ms,
		LRM: map[string]*ha.LRMStatus{}, Resources: b.st().Resources(),
		StaleAfter: api.StaleAfter(b.a.cfg.Timing), Commands: b.st().Commands()}
	if dc := b.st().Datacenter(); dc != nil {
		out.CRMMode = dc.CRS.Mode
	}
	for node := range ms.NodeStatus {
		if ls, err := b.st().LRMStatus(node); err == nil {
			out.LRM[node] = ls
		}
	}
	return out, nil
}

// casAttempts bounds the read-check-write rounds of an operator change
// whose compare-and-set lost against a concurrent write.
const casAttempts = 5

// AddResource creates the resource in one store operation that refuses an
// existing SID, an unknown node and an undefined group atomically.
func (b *backend) AddResource(ctx context.Context, cfg ha.ResourceConfig, spec json.RawMessage) error {
	if err := validateSpec(cfg.SID, spec); err != nil {
		return api.BadRequest("spec", string(spec), "%v", err)
	}
	if cfg.Node == "" {
		cfg.Node = b.a.n.name
	}
	cfg.Spec = spec
	err := b.st().AddResource(ctx, cfg)
	switch {
	case errors.Is(err, store.ErrConflict):
		return api.Conflict("resource '%s' already defined", cfg.SID)
	case errors.Is(err, store.ErrNotFound) && cfg.Group != "":
		return b.noSuchGroup(cfg.Group)
	case errors.Is(err, store.ErrInvalid) && strings.Contains(err.Error(), "is not a cluster node"):
		return api.BadRequest("node", cfg.Node, "no such cluster node")
	}
	return mapErr(err)
}

// noSuchGroup is the answer to a reference to a group the groups config
// does not define; it names the rule a migrated group became.
func (b *backend) noSuchGroup(group string) error {
	hint := "; define it with haxd ha groups set first"
	rs, _ := placement.ParseRules(b.st().Rules())
	if rid := placement.GroupRuleID(group); rs.Rules[rid] != nil {
		hint = fmt.Sprintf("; it was migrated to the node-affinity rule '%s': add the service to that rule (haxd ha rules set)", rid)
	}
	return &api.Error{Code: http.StatusNotFound, Message: fmt.Sprintf("group '%s' does not exist in the groups config%s", group, hint)}
}

// UpdateResource applies ch in one store operation. A spec patch is merged
// into the spec read after a barrier and validated; the write then applies
// only while the spec is still the one read, and is redone on a conflict.
func (b *backend) UpdateResource(ctx context.Context, sid ha.SID, ch api.ResourceChange) error {
	u := store.ResourceUpdate{ExpectRevision: ch.ExpectRevision, State: ch.State, Group: ch.Group,
		MaxRestart: ch.MaxRestart, MaxRelocate: ch.MaxRelocate, Failback: ch.Failback, Comment: ch.Comment}
	for attempt := 1; ; attempt++ {
		var read json.RawMessage
		if ch.SpecPatch != nil {
			if err := b.st().Barrier(ctx); err != nil {
				return mapErr(err)
			}
			cd := b.st().Resources()[sid]
			if cd == nil {
				return api.NotFound("service '%s' not configured", sid)
			}
			merged, err := api.MergePatch(cd.Spec, ch.SpecPatch)
			if err != nil {
				return api.BadRequest("spec", string(ch.SpecPatch), "%v", err)
			}
			if err := validateSpec(sid, merged); err != nil {
				return api.BadRequest("spec", string(merged), "patched spec: %v", err)
			}
			read = cd.Spec
			u.Spec, u.SpecFrom = merged, cd.Spec
		}
		err := b.st().UpdateResource(ctx, sid, u)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrNotFound) && ch.Group != nil && b.st().Resources()[sid] != nil:
			return b.noSuchGroup(*ch.Group)
		case errors.Is(err, store.ErrConflict) && ch.SpecPatch != nil && attempt < casAttempts:
			if berr := b.st().Barrier(ctx); berr != nil {
				return mapErr(err)
			}
			if cd := b.st().Resources()[sid]; cd != nil && !bytes.Equal(cd.Spec, read) {
				b.a.n.log.Info("spec changed concurrently: patching again", ha.KeySID, sid, "attempt", attempt)
				continue
			}
		}
		return mapErr(err)
	}
}

// RemoveResource deletes sid; with purge, its rule memberships go in the
// same store operation, which applies only while the rules are the ones
// read (redone on a conflict).
func (b *backend) RemoveResource(ctx context.Context, sid ha.SID, purge bool) error {
	for attempt := 1; ; attempt++ {
		if err := b.st().Barrier(ctx); err != nil {
			return mapErr(err)
		}
		if _, ok := b.st().Resources()[sid]; !ok {
			return api.NotFound("service '%s' not configured", sid)
		}
		var rules *string
		from := string(b.st().Rules())
		if purge {
			rs, _ := placement.ParseRules([]byte(from))
			changed := false
			for _, id := range slices.Sorted(maps.Keys(rs.Rules)) {
				r := rs.Rules[id]
				if r.Resources[sid] {
					delete(r.Resources, sid)
					changed = true
					if len(r.Resources) == 0 {
						delete(rs.Rules, id)
					}
				}
			}
			if changed {
				text := string(rs.Format())
				rules = &text
			}
		}
		err := b.st().RemoveResource(ctx, sid, rules, from)
		if errors.Is(err, store.ErrConflict) && attempt < casAttempts {
			b.a.n.log.Info("rules changed concurrently: purging again", ha.KeySID, sid, "attempt", attempt)
			continue
		}
		return mapErr(err)
	}
}

func (b *backend) QueueCRMCommand(ctx context.Context, line string) error {
	return mapErr(b.st().AppendCommands(ctx, line))
}

func (b *backend) Rules(context.Context) (string, error) { return string(b.st().Rules()), nil }

// SetRules refuses a rules text with any parse problem, naming line, key
// and value; rules that parse but fail the feasibility checks are stored
// and reported by the CRM as disabled, with the reason (as PVE does).
func (b *backend) SetRules(ctx context.Context, text string) error {
	if _, diags := placement.ParseRules([]byte(text)); len(diags) > 0 {
		return diagError("rules", diags[0])
	}
	return mapErr(b.st().SetRules(ctx, 0, []byte(text)))
}

func (b *backend) Groups(context.Context) (string, error) { return string(b.st().Groups()), nil }

// SetGroups refuses a groups text with any parse problem; the CRM migrates
// stored groups to node-affinity rules (ha-semantics §10.3).
func (b *backend) SetGroups(ctx context.Context, text string) error {
	groups, diags := placement.ParseGroups([]byte(text))
	if len(diags) > 0 {
		return diagError("groups", diags[0])
	}
	return mapErr(b.st().SetGroups(ctx, 0, []byte(text), slices.Sorted(maps.Keys(groups))))
}

func (b *backend) Datacenter(ctx context.Context) (*ha.Datacenter, error) {
	_ = b.st().Barrier(ctx) // read what the leader has; best effort
	return b.st().Datacenter(), nil
}

// UpdateDatacenter applies fn to the settings read after a barrier and
// writes them as a compare-and-set on what was read, redone on a conflict,
// so a concurrent change of other settings is kept.
func (b *backend) UpdateDatacenter(ctx context.Context, fn func(*ha.Datacenter) error) error {
	for attempt := 1; ; attempt++ {
		if err := b.st().Barrier(ctx); err != nil {
			return mapErr(err)
		}
		from := b.st().Datacenter()
		dc := b.st().Datacenter()
		if err := fn(dc); err != nil {
			return err
		}
		err := b.st().UpdateDatacenter(ctx, from, dc)
		if errors.Is(err, store.ErrConflict) && attempt < casAttempts {
			b.a.n.log.Info("datacenter settings changed concurrently: applying the change again", "attempt", attempt)
			continue
		}
		return mapErr(err)
	}
}

func (b *backend) RemoveNode(ctx context.Context, node string) error {
	if node == b.a.n.name {
		return api.Conflict("node '%s' is the answering node; remove it from another node", node)
	}
	known := false
	for _, m := range b.a.n.gossip.Members() {
		if m.Name == node && m.State == "online" {
			return api.Conflict("node '%s' is online; stop its agent before removing it", node)
		}
		known = known || m.Name == node
	}
	if servers, err := b.st().Servers(); err == nil {
		known = known || slices.ContainsFunc(servers, func(s store.Server) bool { return s.ID == node })
	}
	if ms, err := b.st().ManagerStatus(); err == nil {
		_, inStatus := ms.NodeStatus[node]
		known = known || inStatus
	}
	if !known {
		return api.NotFound("node '%s' is not a cluster member (see haxd ha node list)", node)
	}
	return mapErr(b.st().Remove(ctx, node))
}

// diagError turns a section-config diagnostic into a 400 naming the
// line, section and key.
func diagError(what string, d placement.Diagnostic) error {
	where := fmt.Sprintf("line %d", d.Line)
	if d.Section != "" {
		where += ", section " + d.Section
	}
	if d.Key != "" {
		where += ", key " + d.Key
	}
	// The CRM ignores a bad section of a stored file; the API refuses the
	// whole text instead, so "section ignored" would not say what happened.
	msg := strings.TrimSuffix(d.Msg, ", section ignored")
	return api.BadRequest(what, where, "%s; nothing was changed (fix the file and set it again)", msg)
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return api.NotFound("%v", err)
	case errors.Is(err, store.ErrInvalid):
		return &api.Error{Code: 400, Message: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return api.Conflict("%v", err)
	case errors.Is(err, store.ErrOutcomeUnknown):
		return &api.Error{Code: http.StatusServiceUnavailable,
			Message: fmt.Sprintf("%v; the change may or may not have been applied: check the state (haxd ha config) and repeat it if needed", err)}
	}
	return err
}
