package store

import (
	"encoding/json"
	"time"
)

// Forwarding protocol. A node that is not the leader sends writes, lock
// requests, membership changes and read-index requests to the leader over a
// connection to the leader's store port (the raft port) that starts with
// the byte connForwardStream (persistent, see fwdPool) or connForward (one
// request). The client writes one fwdRequest as JSON, the server answers
// with one result as JSON; on a one-shot connection it then closes it. A
// request that reaches a node which is not the leader is forwarded once
// more to the leader it knows (Hops counts this), otherwise it is answered
// with code not_leader and the client retries.

// Forwarded operation names (wire protocol: never rename one).
const (
	fwdApply     = "apply"
	fwdLock      = "lock"
	fwdJoin      = "join"
	fwdAddVoter  = "add_voter"
	fwdRemove    = "remove"
	fwdReadIndex = "read_index"
)

// maxForwardSize bounds a forwarded request or response.
const maxForwardSize = 64 << 20

// retryInterval is the pause before retrying a request that found no
// leader or a node that is no longer leader.
const retryInterval = 20 * time.Millisecond

// fwdRequest is one forwarded request.
type fwdRequest struct {
	// Op is one of the fwd* names.
	Op string `json:"op"`
	// Hops counts forwards; a node forwards a request only while Hops is 0.
	Hops int `json:"hops,omitempty"`
	// TimeoutMS is the time the client waits, in milliseconds.
	TimeoutMS int64 `json:"timeout_ms"`
	// Command is the encoded command of fwdApply.
	Command json.RawMessage `json:"command,omitempty"`
	// Lock is the request of fwdLock.
	Lock *lockRequest `json:"lock,omitempty"`
	// ID and Addr name the server of fwdJoin, fwdAddVoter and fwdRemove.
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
	// idempotent marks a request that may be repeated when the outcome of
	// an attempt is unknown; it is the client's decision and not sent.
	idempotent bool
}

// lockRequest asks the leader for a lock.
type lockRequest struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Term   uint64 `json:"term,omitempty"`
	// Armed: the holder's watchdog was open when it sent this (see
	// Store.AcquireOwnLock).
	Armed bool `json:"armed,omitempty"`
}
