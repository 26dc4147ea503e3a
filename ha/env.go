package ha

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Log levels beyond slog's four, used for the PVE level names.
const (
	// LevelNotice sits between Info and Warn (PVE "notice").
	LevelNotice = slog.LevelInfo + 2
	// LevelTrace sits below Debug: the raft and serf libraries' TRACE
	// lines.
	LevelTrace = slog.LevelDebug - 4
)

// Log attribute keys used by the crm and lrm.
const (
	KeySID  = "sid"
	KeyNode = "node"
	// KeyAgent names the node whose agent writes the record (every record
	// of an agent carries it), so that KeyNode stays free for the node a
	// record is about.
	KeyAgent = "agent"
	KeyState = "state"
)

// Notification subjects sent through Env.Notify.
const (
	NotifyFence   = "FENCE"
	NotifySucceed = "SUCCEED"
)

// Env is the world of one CRM or one LRM instance on one node. The simulator
// gives every daemon its own Env with its own virtual clock; the real agent
// backs it with the replicated store, gossip and the watchdog.
//
// Contract: methods return promptly. Methods that talk to the cluster
// (locks, status reads and writes) may block for a bounded time (the real
// Env retries a lock for up to a few seconds, ha-semantics §1.2); none of
// them may block forever. The crm and lrm call Env only from their round
// functions, never concurrently, except the resource agent methods that a
// worker runs (see Workers).
type Env interface {
	// NodeName is the name of the node this daemon runs on.
	NodeName() string
	// Now is the current time of this daemon (virtual in the simulator).
	Now() time.Time
	// Logger receives every decision the daemon logs.
	Logger() *slog.Logger
	// Notify sends an operator notification (the simulator logs
	// "<subject>: <text>" at the email level).
	Notify(subject, text string)
	// UID returns a fresh request UID, unique cluster-wide; deterministic in
	// the simulator.
	UID() string

	// Quorate reports whether this node is in the quorate partition.
	Quorate() bool
	// UpdateClusterState refreshes the local view of the replicated state at
	// the start of a round and reports whether it is consistent; false makes
	// an active daemon skip its round.
	UpdateClusterState() bool
	// NodeInfo returns the cluster members and whether each is online. When
	// the cluster is not quorate every node is reported offline.
	NodeInfo() map[string]NodeInfo

	// AcquireManagerLock takes or refreshes the CRM master lock.
	AcquireManagerLock() bool
	// ReleaseManagerLock releases the master lock held by this node.
	ReleaseManagerLock() bool
	// AcquireAgentLock takes or refreshes the agent lock of node. An LRM
	// only ever asks for its own node; the master CRM asks for a failed
	// node's lock to prove that node fenced. Only a lock that timed out
	// for the lock TTL after it was held, or one its node released with
	// nothing running, can be taken by another node: a lock released with
	// services running (ReleaseAgentLock with running set) is refused to
	// everyone but its own node until that node takes it again.
	//
	// For its own node's lock the grant carries the end of the lock's
	// validity (LockGrant.ValidUntil), the one value both the LRM and the
	// watchdog feeder go by. An acquisition of the own lock (it was free,
	// or released by this node; not a renewal) succeeds only once this
	// node's view of the replicated state (ReadManagerStatus,
	// ReadResources, ...) shows every write committed before the lock was
	// granted: the lock may have been taken from this node meanwhile and
	// its services stolen, and an LRM acting on an older view would start
	// a service that now runs elsewhere. An implementation that cannot
	// bring its view up to date within the validity fails the acquisition.
	AcquireAgentLock(node string) (LockGrant, bool)
	// ReleaseAgentLock releases node's agent lock held by this node.
	// running tells the lock whether services of the node may still run
	// (a disarm, an LRM restart, anything but a clean stop of every
	// service); the lock then records that it was given up, not taken
	// away, and proves nothing about those services (see AcquireAgentLock
	// and AgentLockReleasedRunning).
	ReleaseAgentLock(node string, running bool) bool
	// AgentLockReleasedRunning reports whether node's agent lock was last
	// released by node with services still running and not taken since.
	// The CRM does not fence such a node: it waits until the node takes
	// its lock again, after which the lock times out as usual.
	AgentLockReleasedRunning(node string) bool
	// FenceNode fences node through its external fence devices, if it has
	// any; the master CRM calls it in every round in which node is to be
	// fenced, before AcquireAgentLock(node). It must not block: the first
	// call starts a fence job and reports FencePending, later calls report
	// its progress. FenceConfirmed means a device confirmed the node
	// powered off and the confirmation was recorded in the store, so that
	// AcquireAgentLock(node) succeeds at once instead of after the lock
	// TTL. Any other status leaves the agent lock, taken after the TTL, as
	// the only proof of fencing.
	FenceNode(node string) FenceResult

	// WatchdogOpen arms this daemon's watchdog; it must then be fed within
	// the watchdog timeout or the node is reset.
	WatchdogOpen() error
	// WatchdogUpdate feeds the watchdog.
	WatchdogUpdate() error
	// WatchdogClose disarms the watchdog gracefully.
	WatchdogClose() error

	// ReadManagerStatus returns the last written manager status (empty if
	// none was ever written).
	ReadManagerStatus() (*ManagerStatus, error)
	// WriteManagerStatus stores ms; only the master CRM calls it.
	WriteManagerStatus(ms *ManagerStatus) error
	// ReadLRMStatus returns node's LRM status (empty if never written).
	ReadLRMStatus(node string) (*LRMStatus, error)
	// WriteLRMStatus stores this node's LRM status.
	WriteLRMStatus(st *LRMStatus) error

	// ReadResources returns the resources config, keyed by SID, including
	// each resource's current location.
	ReadResources() (map[SID]*ResourceConfig, error)
	// SetRequestedState changes the requested state of sid in the resources
	// config (the CRM does so for the stop command).
	SetRequestedState(sid SID, state RequestedState) error
	// StealService moves the location of sid from a fenced node to another
	// node; the CRM's recovery is the only caller.
	StealService(sid SID, from, to string) error
	// ReadRules returns the raw rules config (section config text).
	ReadRules() ([]byte, error)
	// ReadGroups returns the raw legacy groups config (section config text).
	ReadGroups() ([]byte, error)
	// ReadDatacenter returns the datacenter settings.
	ReadDatacenter() (*Datacenter, error)
	// ReadCRMCommands returns and removes the queued CRM commands, atomically.
	ReadCRMCommands() ([]string, error)
	// NodeVersion returns the software version a node reports.
	NodeVersion(node string) string
	// StaticNodeStats returns each node's capacity (static scheduler).
	StaticNodeStats() (map[string]NodeStats, error)
	// DynamicNodeStats returns each node's capacity and current load.
	DynamicNodeStats() (map[string]NodeStats, error)
	// ServiceStats returns the size and usage of sid, and whether any is known.
	ServiceStats(sid SID) (ServiceStats, bool)

	// IsNodeShutdown reports whether the node itself is shutting down, and
	// whether that is a reboot (LRM shutdown handling, ha-semantics §4.9).
	IsNodeShutdown() (shutdown, reboot bool)
	// ResourceAgent returns the agent for a resource type, or nil.
	ResourceAgent(typ string) ResourceAgent
	// Workers runs resource actions for the LRM.
	Workers() Workers
}

// LockGrant is what a successful Env.AcquireAgentLock tells its caller.
type LockGrant struct {
	// ValidUntil is the end of the lock's validity for its holder, on the
	// Now clock: the instant this node sent the request plus
	// Timing.LockValidity (a renewal answered later than that does not
	// count). The LRM's lapse check and the agent's watchdog feeder both
	// use this one value. Zero when Timing.LockValidity is 0 (the pve
	// profile) and for another node's lock.
	ValidUntil time.Time
}

// FenceStatus is the progress of fencing a node through fence devices.
type FenceStatus int

// Fence statuses reported by Env.FenceNode.
const (
	// FenceNone: no fence device is configured for the node.
	FenceNone FenceStatus = iota
	// FencePending: a fence job runs.
	FencePending
	// FenceConfirmed: a device confirmed the node off and the store holds
	// the confirmation.
	FenceConfirmed
	// FenceFailed: no device confirmed the node off (unreachable, wrong
	// password, timeout); the lock TTL remains the proof.
	FenceFailed
)

// String names the status.
func (s FenceStatus) String() string {
	switch s {
	case FenceNone:
		return "none"
	case FencePending:
		return "pending"
	case FenceConfirmed:
		return "confirmed"
	case FenceFailed:
		return "failed"
	}
	return fmt.Sprintf("FenceStatus(%d)", int(s))
}

// FenceResult is what Env.FenceNode reports.
type FenceResult struct {
	// Status is the job's progress.
	Status FenceStatus
	// Device names the fence device that confirmed (FenceConfirmed).
	Device string
	// Detail says why fencing failed (FenceFailed).
	Detail string
}

// ResourceAgent performs actions on resources of one type on the local node.
// Its methods may block up to the action's timeout; they are called from a
// worker, never concurrently for the same SID.
type ResourceAgent interface {
	// Start starts sid on this node.
	Start(ctx context.Context, sid SID) error
	// Stop stops sid; timeout bounds a graceful stop (nil: agent default,
	// 0: hard stop).
	Stop(ctx context.Context, sid SID, timeout *int) error
	// Running reports whether sid runs on this node.
	Running(ctx context.Context, sid SID) (bool, error)
	// Migrate moves sid to target, live when online is set. On success the
	// resource's location is target.
	Migrate(ctx context.Context, sid SID, target string, online bool) error
	// LiveMigratable reports whether the type supports online migration.
	LiveMigratable() bool
	// RemoveLocks removes a leftover resource lock if it is one of names and
	// returns the removed name, or "".
	RemoveLocks(sid SID, names []string) string
}

// Workers runs resource actions. With Max() == 0 the simulator runs each job
// inline, to completion, inside Start; otherwise jobs run concurrently and
// Finished reports them.
type Workers interface {
	// Max is the number of jobs that may run at once; 0 means inline.
	Max() int
	// Start runs job for sid.
	Start(sid SID, job func(ctx context.Context) ExitCode)
	// Finished returns and forgets the jobs that completed since the last call.
	Finished() map[SID]ExitCode
	// Running returns the number of jobs still running.
	Running() int
}
