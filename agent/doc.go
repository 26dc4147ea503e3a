// Package agent is `haxd agent`: it wires the replicated store (raft on
// bbolt), gossip membership, the self-fencing guard and the resource agents
// into an ha.Env and runs the very same crm and lrm state machines that the
// simulator runs, plus the local API.
package agent
