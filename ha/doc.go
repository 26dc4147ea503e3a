// Package ha is haxd's shared vocabulary: service IDs, the service, node, CRM
// and LRM state names, the resource and datacenter configuration, the manager
// and LRM status documents, the timing configuration with its safety check,
// and the Env interface through which the crm and lrm state machines see the
// world.
//
// ha imports only the standard library. Everything that blocks, talks to the
// network or reads a clock lives behind Env, so the crm and lrm packages stay
// deterministic: the simulator (package sim) and the real agent implement Env.
package ha
