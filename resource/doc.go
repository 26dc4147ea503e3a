// Package resource holds haxd's resource agents: the code that starts,
// stops and checks one kind of HA resource on the local node for the LRM.
// Each agent lives in a sub-package and implements ha.ResourceAgent:
//
//   - resource/exec: a supervised process (command, args, env, working
//     directory, stop signal and timeout, optional health check) that
//     survives a restart of the agent and is re-adopted by the next one.
//   - resource/systemd: a systemd unit driven through systemctl.
//
// Registry maps resource types ("exec", "systemd") to their agents; the real
// Env answers ha.Env.ResourceAgent from it.
package resource

import (
	"maps"
	"slices"

	"haxd/ha"
)

// Registry maps a resource type (the part of a SID before the colon) to the
// agent that handles it. The zero value is an empty registry.
type Registry map[string]ha.ResourceAgent

// Agent returns the agent for typ, or nil when no agent is registered, which
// the LRM reports as EUNKNOWN_SERVICE_TYPE (ha-semantics §4.7).
func (r Registry) Agent(typ string) ha.ResourceAgent {
	return r[typ]
}

// Types returns the registered resource types, sorted.
func (r Registry) Types() []string {
	return slices.Sorted(maps.Keys(r))
}
