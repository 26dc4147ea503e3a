package store

import (
	"encoding/json"
	"fmt"

	"haxd/ha"
)

// commandVersion is the version of the command and snapshot encoding. A
// node refuses (without changing state) a command of a version it does not
// know, so mixed-version clusters must upgrade the encoding in two steps.
const commandVersion = 1

// Operation names of the replicated commands. They are part of the log
// format: never rename one.
const (
	opManagerStatus     = "manager_status"
	opLRMStatus         = "lrm_status"
	opPutResource       = "put_resource"
	opDeleteResource    = "delete_resource"
	opSetLocation       = "set_location"
	opSetRequestedState = "set_requested_state"
	opStealService      = "steal_service"
	opSetRules          = "set_rules"
	opSetGroups         = "set_groups"
	opSetDatacenter     = "set_datacenter"
	opAppendCommands    = "append_commands"
	opTakeCommands      = "take_commands"
	opLock              = "lock"
	opUnlock            = "unlock"
	opAddResource       = "add_resource"
	opUpdateResource    = "update_resource"
	opRemoveResource    = "remove_resource"
	opMigrateGroups     = "migrate_groups"
	opUpdateDatacenter  = "update_datacenter"
	opFenceConfirmed    = "fence_confirmed"
	opOutboxPut         = "outbox_put"
	opOutboxDone        = "outbox_done"
	opServiceUsage      = "service_usage"
)

// command is one raft log entry: a versioned, JSON-encoded operation.
type command struct {
	// V is commandVersion.
	V int `json:"v"`
	// Op is one of the op* names.
	Op string `json:"op"`
	// Term is the fencing token of a CRM write: the raft term in which the
	// writer was leader. The FSM applies the command only if it is the term
	// of the log entry itself, i.e. the writer was still leader when its
	// entry was appended. 0 means unfenced (LRM and operator writes).
	Term uint64 `json:"term,omitempty"`
	// Data is the operation's payload.
	Data json.RawMessage `json:"data,omitempty"`
}

// newCommand encodes op with payload data.
func newCommand(op string, term uint64, data any) ([]byte, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", op, err)
	}
	b, err := json.Marshal(command{V: commandVersion, Op: op, Term: term, Data: raw})
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", op, err)
	}
	return b, nil
}

// lrmStatusCmd is the payload of opLRMStatus.
type lrmStatusCmd struct {
	Node   string          `json:"node"`
	Status json.RawMessage `json:"status"`
}

// sidCmd is the payload of opDeleteResource.
type sidCmd struct {
	SID ha.SID `json:"sid"`
}

// locationCmd is the payload of opSetLocation and opStealService: move sid
// to To, and if From is set only when it is on From now.
type locationCmd struct {
	SID  ha.SID `json:"sid"`
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// Holder is, for opStealService, the node that must hold From's agent
	// lock (the master that fenced From): a steal is the recovery of a
	// fenced node's service, and only that lock proves the fencing.
	Holder string `json:"holder,omitempty"`
}

// requestedStateCmd is the payload of opSetRequestedState.
type requestedStateCmd struct {
	SID   ha.SID            `json:"sid"`
	State ha.RequestedState `json:"state"`
}

// textCmd is the payload of opSetRules and opSetGroups.
type textCmd struct {
	Text string `json:"text"`
	// GroupIDs are the ids of the groups Text defines (opSetGroups only),
	// as the writer's parser found them; the FSM checks group references
	// against them.
	GroupIDs []string `json:"group_ids,omitempty"`
}

// addResourceCmd is the payload of opAddResource: create a resource that
// must not exist yet.
type addResourceCmd struct {
	Config ha.ResourceConfig `json:"config"`
}

// updateResourceCmd is the payload of opUpdateResource: one operator
// intent on one resource, applied atomically with its checks. Nil fields
// stay as they are; the location (Node) is never changed here.
type updateResourceCmd struct {
	SID ha.SID `json:"sid"`
	// ExpectRevision, when not 0, makes the update a compare-and-set on
	// the resource's revision.
	ExpectRevision uint64 `json:"expect_revision,omitempty"`
	// State sets the requested state; refused for a service in the error
	// state unless it is "disabled" (ha-semantics §7.4).
	State *ha.RequestedState `json:"state,omitempty"`
	// Group sets the legacy group ("" removes it); the group must be
	// defined in the groups config.
	Group       *string `json:"group,omitempty"`
	MaxRestart  *int    `json:"max_restart,omitempty"`
	MaxRelocate *int    `json:"max_relocate,omitempty"`
	Failback    *bool   `json:"failback,omitempty"`
	Comment     *string `json:"comment,omitempty"`
	// Spec replaces the spec, only while it is still SpecFrom (the spec
	// the writer read, merged and validated): a compare-and-set on the
	// spec.
	Spec     json.RawMessage `json:"spec,omitempty"`
	SpecFrom json.RawMessage `json:"spec_from,omitempty"`
}

// removeResourceCmd is the payload of opRemoveResource. With Rules set,
// the rules text becomes Rules in the same entry, only while it is still
// RulesFrom (the text the writer read and purged the SID from).
type removeResourceCmd struct {
	SID       ha.SID  `json:"sid"`
	Rules     *string `json:"rules,omitempty"`
	RulesFrom string  `json:"rules_from,omitempty"`
}

// migrateGroupsCmd is the payload of opMigrateGroups, the CRM's persistent
// group→rules migration in one term-fenced entry. It is a compare-and-set
// on everything the CRM's decision read: the rules and groups texts, and
// the group of every resource it migrates.
type migrateGroupsCmd struct {
	RulesFrom  string `json:"rules_from"`
	Rules      string `json:"rules"`
	GroupsFrom string `json:"groups_from"`
	Groups     string `json:"groups"`
	// GroupIDs are the ids of the groups left in Groups.
	GroupIDs  []string          `json:"group_ids,omitempty"`
	Resources []migratedService `json:"resources,omitempty"`
}

// migratedService is one resource of a group migration: its group, which
// must still be Group, is removed and its failback set.
type migratedService struct {
	SID      ha.SID `json:"sid"`
	Group    string `json:"group"`
	Failback bool   `json:"failback"`
}

// commandsCmd is the payload of opAppendCommands.
type commandsCmd struct {
	Commands []string `json:"commands"`
}

// lockCmd is the payload of opLock. The leader builds it after checking the
// lock's timer; the FSM applies it as a compare-and-swap, so that a renewal
// or release committed between the check and this entry makes it fail.
type lockCmd struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	// Takeover asks to take the lock from ExpectOwner, whose last renewal
	// must still be the entry at ExpectIndex.
	Takeover    bool   `json:"takeover,omitempty"`
	ExpectOwner string `json:"expect_owner,omitempty"`
	ExpectIndex uint64 `json:"expect_index,omitempty"`
	// Fenced marks a takeover before the TTL on a fence device's
	// confirmation: the FSM checks that the recorded confirmation matches
	// ExpectOwner's lock at ExpectIndex (see fencing.go).
	Fenced bool `json:"fenced,omitempty"`
	// Armed says that the holder's watchdog was open when it asked. A
	// lock released with services running that its owner takes back
	// stays marked released until a request of the owner with Armed set:
	// until then no watchdog may stand behind it (the answer to the
	// retake can be lost, and the LRM arms its watchdog only on an
	// answer), so it must not turn into a proof of fencing.
	Armed bool `json:"armed,omitempty"`
}

// unlockCmd is the payload of opUnlock.
type unlockCmd struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	// Running says that the holder's services may still run: the lock is
	// kept as released (LockInfo.Released) instead of deleted.
	Running bool `json:"running,omitempty"`
}

// datacenterDoc is the replicated form of ha.Datacenter; it keeps
// CRSOptions.Set, which ha.Datacenter's JSON encoding drops.
type datacenterDoc struct {
	Datacenter ha.Datacenter   `json:"datacenter"`
	CRSSet     map[string]bool `json:"crs_set,omitempty"`
}

// updateDatacenterCmd is the payload of opUpdateDatacenter: the settings
// become To, only while they are still From (the settings the writer read
// and changed; nil for never written).
type updateDatacenterCmd struct {
	From *datacenterDoc `json:"from,omitempty"`
	To   datacenterDoc  `json:"to"`
}

// result is what the FSM returns for every command, locally through
// raft's ApplyFuture.Response and remotely in a forwarded response.
type result struct {
	// Code is the wire code of the refusal (see errorCodes); empty on
	// success.
	Code string `json:"code,omitempty"`
	// Msg is the refusal's message.
	Msg string `json:"msg,omitempty"`
	// Value is the operation's JSON-encoded return value, if any.
	Value json.RawMessage `json:"value,omitempty"`
}

// err returns the refusal as an error wrapping its sentinel, or nil.
func (r *result) err() error {
	if r == nil || (r.Code == "" && r.Msg == "") {
		return nil
	}
	return decodeError(r.Code, r.Msg)
}

// LockInfo describes a held lock.
type LockInfo struct {
	// Name is the lock's name, e.g. AgentLock("node1").
	Name string `json:"name"`
	// Owner is the node that holds the lock.
	Owner string `json:"owner"`
	// Index is the raft log index of the last committed renewal (or the
	// acquisition); it serves as the lock's renewal sequence number.
	Index uint64 `json:"index"`
	// Acquired is the raft log index at which Owner acquired the lock.
	Acquired uint64 `json:"acquired"`
	// Released is set when Owner released the lock while its services may
	// still run (ReleaseLock with running set). The lock is then free for
	// Owner only: anyone else gets ErrLockReleasedRunning, however long
	// ago it was released, because a lock given up proves nothing about
	// what its owner still runs. Only a lock that timed out after it was
	// held proves that its owner fenced itself.
	Released bool `json:"released,omitempty"`
}

// LockResult is the outcome of a successful AcquireLock.
type LockResult struct {
	LockInfo
	// New is true when the lock was free or taken over, false for a
	// refresh by its owner (PVE logs "got lock" only for new ones).
	New bool `json:"new"`
	// Index is the raft index the requester's replica must have applied
	// before it acts on the lock (Store.WaitApplied): for a request that
	// went through the log, the index of its committed entry, so that the
	// replica then shows every write committed before the lock was
	// granted (a steal of the holder's service, above all); for a renewal
	// answered from the leader's memory, the leader's commit index. It
	// shadows LockInfo.Index in JSON; for a logged request the two are
	// equal.
	Index uint64 `json:"index,omitempty"`
}

// AgentLock returns the name of node's agent lock.
func AgentLock(node string) string { return "agent/" + node }
