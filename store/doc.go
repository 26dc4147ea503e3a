// Package store is haxd's replicated cluster state: hashicorp/raft with its
// log and stable store in bbolt (raft-boltdb/v2) and file snapshots, and a
// deterministic FSM holding everything the HA stack shares (ha-semantics
// §1.4): the resources config with each resource's location, the rules and
// legacy groups texts, the datacenter settings, the manager status, one LRM
// status per node, the CRM command queue, and the locks.
//
// # Writes and forwarding
//
// Every write is a versioned JSON command appended through the leader.
// A follower forwards it: each node listens on one TCP port (Config.BindAddr)
// shared by raft and the forwarding server; the first byte of a connection
// says which ('R' raft, 'S' persistent forwarding, 'F' one-shot
// forwarding). A forwarded request is one JSON object, answered by one JSON
// result; a persistent connection ('S', acknowledged with 'S') carries one
// request after another and is kept idle in a pool by the sender, so that
// lock renewals pay no TCP or TLS handshake (a lost SYN alone costs 1 s); a
// one-shot connection ('F', for nodes that do not acknowledge 'S') closes
// after its answer. A request that
// reaches a node which is no longer the leader is forwarded once more or
// answered "not leader", and the sender retries until its deadline
// (Config.ApplyTimeout at most). When an attempt's outcome is unknown (the
// leader lost leadership before committing, or the answer never came) the
// store retries only writes that a single writer makes in sequence (the
// manager status, a node's own LRM status, locks) and returns
// ErrOutcomeUnknown for the others (config changes, the command queue,
// deletes, steals): repeating a config change that was in fact committed
// could revert a change another writer made in between.
//
// A request takes one path through the store, kept in that order in
// pipeline.go: decode, route (run here on the leader or forward to it),
// check, apply through raft and the FSM's operation table
// (operations.go), answer.
//
// # Config changes
//
// The store is the only owner of config mutation: every change is one
// operation per intent, applied by the FSM with its checks at its own log
// position, so no check is outdated by a concurrent write. AddResource
// creates only; UpdateResource sets the named fields of one resource (never
// its location) and refuses a requested state other than disabled for a
// service in the error state and a group the groups config does not
// define; SetLocation and StealService move a service only from where it
// is. A change decided on a read is a compare-and-set on what was read: a
// resource's Revision (the log index of its last change), the spec a patch
// was merged into, the rules text a removal purged, and for the CRM's
// group migration (MigrateGroups) the rules and groups texts and each
// member's group.
//
// Refusals keep their sentinel error across nodes (ErrStaleTerm,
// ErrLockHeld, ...).
//
// # Start-up
//
// The port listens before raft has loaded its state. Until Open returns,
// a forwarded request is answered ErrNotReady (code not_ready, retried by
// the sender like no_leader) and a raft connection waits; nothing touches
// raft before it exists.
//
// # Mutual TLS
//
// With Config.TLS every connection on the port is TLS 1.3 and both ends
// present a certificate of the cluster CA naming a node (package pki). A
// raft connection is served only from a server of the raft configuration
// (or while it is empty), a forwarded request only from such a server,
// except a join, which a node may send for itself alone; a dialer that
// knows which node it dials checks the name in the peer's certificate.
// Refusals are logged with the peer and the reason and answered
// ErrUnauthorized where the protocol has an answer. Without Config.TLS the
// port has no authentication and no encryption: tests and explicitly
// insecure setups only.
//
// Reads are local and may lag the leader by a few milliseconds. Barrier
// makes the next reads linearizable (a no-op entry on the leader; a read
// index from the leader on a follower).
//
// # The CRM master and term fencing
//
// The CRM master is the raft leader. LeaderTerm returns the term of this
// node's leadership; the CRM passes it with every write it makes
// (WriteManagerStatus, StealService, TakeCommands, SetRequestedState,
// MigrateGroups, SetRules and SetGroups when the master writes them,
// AcquireLock of a failed node's agent lock). The FSM applies such a write
// only if the term equals the term of the log entry that carries it, that
// is, only if the writer was still the leader when its entry was appended,
// and never below the term of an earlier fenced write. A deposed master's
// late write fails with ErrStaleTerm.
//
// # Locks
//
// The FSM records each lock's owner and the log index of its last renewal
// (the renewal sequence number). Time is not replicated: the leader times
// each lock on its own monotonic clock (Config.Clock) from the moment it
// applied the last renewal, and a node that becomes leader restarts every
// lock's timer at the full Config.LockTTL, since it cannot know when the
// previous leader last saw one. The leader refuses a takeover by another
// holder until strictly more than LockTTL has passed (ErrLockHeld); the
// takeover it then commits is a compare-and-swap on owner and renewal index,
// so a renewal committed in between wins (ErrLockConflict). The holder
// counts its lock valid only until (time it sent the acknowledged renewal +
// validity), which is earlier than the leader's start of the TTL; the safety
// inequality of DESIGN.md does the rest.
//
// # Voters (autopilot)
//
// At most Config.Voters members (default 5) vote. Bootstrap makes the first
// node a voter (and given peers voters up to the limit); Join adds a node as
// a non-voter. A loop on the leader (every Config.AutopilotInterval and on
// every membership or leadership change) promotes the healthy non-voter
// with the smallest ID while voters are missing, and demotes surplus voters
// (never itself). So when a voter is removed (Remove) a non-voter takes its
// place, and a 50-node cluster keeps a 5-voter quorum with fast commits.
// Non-voters receive the whole log and can become voters at any time, but
// they do not count for quorum. The autopilot does not remove dead members:
// whoever decides that a node is gone calls Remove.
//
// # Restart
//
// A node that finds raft state in Config.DataDir (HadState) rejoins its
// cluster by itself; bootstrap and join are for new nodes only. The FSM is
// rebuilt from the last snapshot and the log, so a whole-cluster restart
// keeps config and manager status (locks too; their timers restart at the
// full TTL).
package store
