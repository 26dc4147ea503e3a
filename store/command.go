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
	opFenceConfirmed    = "fence_confirmed"
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
}

// requestedStateCmd is the payload of opSetRequestedState.
type requestedStateCmd struct {
	SID   ha.SID            `json:"sid"`
	State ha.RequestedState `json:"state"`
}

// textCmd is the payload of opSetRules and opSetGroups.
type textCmd struct {
	Text string `json:"text"`
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
}

// unlockCmd is the payload of opUnlock.
type unlockCmd struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
}

// datacenterDoc is the replicated form of ha.Datacenter; it keeps
// CRSOptions.Set, which ha.Datacenter's JSON encoding drops.
type datacenterDoc struct {
	Datacenter ha.Datacenter   `json:"datacenter"`
	CRSSet     map[string]bool `json:"crs_set,omitempty"`
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
}

// LockResult is the outcome of a successful AcquireLock.
type LockResult struct {
	LockInfo
	// New is true when the lock was free or taken over, false for a
	// refresh by its owner (PVE logs "got lock" only for new ones).
	New bool `json:"new"`
}

// AgentLock returns the name of node's agent lock.
func AgentLock(node string) string { return "agent/" + node }
