// Package lrm is haxd's local resource manager: the per-node daemon that
// holds the node's agent lock, feeds the node's watchdog, and runs the
// resource actions the master CRM requests for services located on its node
// (ha-semantics §4).
//
// The LRM is a deterministic state machine. The caller (the simulator or the
// real agent) calls Step once per round and RequestShutdown when the daemon
// is asked to stop; everything the LRM observes or changes goes through
// ha.Env. The package starts no goroutines and reads no clock of its own:
// resource actions run through env.Workers(), inline when Workers().Max() is
// 0 (the simulator) and concurrently otherwise, in which case their results
// are collected on later rounds. Step never waits; the caller sleeps between
// rounds (see LRM.Interval).
//
// # Lock validity
//
// With the PVE timing profile (Timing.LockValidity == 0) the agent lock is
// valid only at the instant of a successful acquisition, so the acquisition
// attempt of each round decides whether the LRM may act. When
// Timing.LockValidity > 0 (the real agent), a renewal counts only if it
// returned within LockValidity of the moment it was sent, and the LRM treats
// the lock as lost once env.Now() is past the send time of the last
// successful renewal plus LockValidity (ha.LockGrant.ValidUntil, computed
// once by the Env, which feeds the watchdog by the same value), even if no
// renewal failed yet: an
// active or maintenance LRM in that situation goes to lost_agent_lock
// without trying to renew, and no new resource action is started. This keeps
// the safety inequality of ha.Timing: the watchdog is fed only while the
// lock is known to be held.
//
// # Self-fencing
//
// In lost_agent_lock the LRM keeps its watchdog open and stops feeding it;
// the watchdog (or haxd's guard process) kills the node's services. The LRM
// never stops services itself there.
package lrm
