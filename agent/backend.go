package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

func (b *backend) AddResource(ctx context.Context, cfg ha.ResourceConfig, spec json.RawMessage) error {
	if err := validateSpec(cfg.SID, spec); err != nil {
		return api.BadRequest("spec", string(spec), "%v", err)
	}
	if _, ok := b.st().Resources()[cfg.SID]; ok {
		return api.Conflict("resource '%s' already defined", cfg.SID)
	}
	if cfg.Node == "" {
		cfg.Node = b.a.n.name
	}
	if ms, err := b.st().ManagerStatus(); err == nil && len(ms.NodeStatus) > 0 {
		if _, ok := ms.NodeStatus[cfg.Node]; !ok {
			return api.BadRequest("node", cfg.Node, "no such cluster node")
		}
	}
	cfg.Spec = spec
	return mapErr(b.st().PutResource(ctx, cfg))
}

func (b *backend) UpdateResource(ctx context.Context, sid ha.SID, fn func(*ha.ResourceConfig) error) error {
	cd, ok := b.st().Resources()[sid]
	if !ok {
		return api.NotFound("service '%s' not configured", sid)
	}
	c := *cd
	if err := fn(&c); err != nil {
		return err
	}
	return mapErr(b.st().PutResource(ctx, c))
}

func (b *backend) RemoveResource(ctx context.Context, sid ha.SID, purge bool) error {
	if _, ok := b.st().Resources()[sid]; !ok {
		return api.NotFound("service '%s' not configured", sid)
	}
	if purge {
		rs, _ := placement.ParseRules(b.st().Rules())
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
			if err := b.st().SetRules(ctx, rs.Format()); err != nil {
				return mapErr(err)
			}
		}
	}
	return mapErr(b.st().DeleteResource(ctx, sid))
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
	return mapErr(b.st().SetRules(ctx, []byte(text)))
}

func (b *backend) Groups(context.Context) (string, error) { return string(b.st().Groups()), nil }

// SetGroups refuses a groups text with any parse problem; the CRM migrates
// stored groups to node-affinity rules (ha-semantics §10.3).
func (b *backend) SetGroups(ctx context.Context, text string) error {
	if _, diags := placement.ParseGroups([]byte(text)); len(diags) > 0 {
		return diagError("groups", diags[0])
	}
	return mapErr(b.st().SetGroups(ctx, []byte(text)))
}

func (b *backend) Datacenter(ctx context.Context) (*ha.Datacenter, error) {
	_ = b.st().Barrier(ctx) // read what the leader has; best effort
	return b.st().Datacenter(), nil
}

func (b *backend) UpdateDatacenter(ctx context.Context, fn func(*ha.Datacenter) error) error {
	_ = b.st().Barrier(ctx)
	dc := b.st().Datacenter()
	if err := fn(dc); err != nil {
		return err
	}
	return mapErr(b.st().SetDatacenter(ctx, dc))
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
	}
	return err
}
