package store

import "errors"

// Sentinel errors. Every error the store returns for a refused operation
// wraps one of these, also when the refusal happened on another node and
// came back over the forwarding connection, so callers branch with
// errors.Is.
var (
	// ErrNotLeader is returned when an operation that only the leader may
	// perform reaches a node that is not (or no longer) the leader.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader is returned when no leader became known before the
	// operation's deadline.
	ErrNoLeader = errors.New("no raft leader")
	// ErrStaleTerm is returned when a term-fenced write (the CRM's) carries a
	// term other than the one of the leader that appends it: the writer was
	// deposed.
	ErrStaleTerm = errors.New("stale raft term")
	// ErrLockHeld is returned when another holder owns the lock and its TTL
	// has not run out on the leader's clock.
	ErrLockHeld = errors.New("lock held by another node")
	// ErrLockConflict is returned when the lock changed between the leader's
	// check and the commit of the acquisition (for example the owner renewed
	// it meanwhile); the acquisition was not applied.
	ErrLockConflict = errors.New("lock changed concurrently")
	// ErrLockReleasedRunning is returned when another node asks for a lock
	// its owner released while its services may still run
	// (ReleaseLock with running set): such a lock proves nothing about
	// them, so only its owner may take it again.
	ErrLockReleasedRunning = errors.New("lock released by its owner with services running")
	// ErrNotFound is returned when a write names a resource that does not
	// exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a conditional write finds another state
	// than it expects (for example stealing a service that is not on the
	// node it is stolen from).
	ErrConflict = errors.New("conflicting state")
	// ErrInvalid is returned for a malformed command or argument.
	ErrInvalid = errors.New("invalid argument")
	// ErrOutcomeUnknown is returned when a write reached the leader but its
	// outcome is unknown: the leader lost its leadership between appending
	// and committing it, or the connection to the leader broke before the
	// answer. The write may or may not take effect. Writes of a single
	// sequential writer (locks, statuses) are retried by the store itself
	// and return it only when their deadline ran out; config changes are
	// not, as a repetition could revert a concurrent change.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store closed")
	// ErrNotReady is returned by a node whose store is still starting (its
	// raft state not yet loaded) to a request forwarded to it. Nothing was
	// executed; the sender retries until its deadline.
	ErrNotReady = errors.New("store not ready")
	// ErrUnauthorized is returned when a peer with a valid certificate asks
	// for something its identity does not allow: a join under another
	// node's name, a request from a node outside the raft configuration.
	ErrUnauthorized = errors.New("peer not authorized")
)

// errorCode pairs a refusal's wire code with its sentinel.
type errorCodePair struct {
	code string
	err  error
}

// errorCodes returns the wire code of every refusal. The codes are part of
// the forwarding protocol and of the FSM's results: never rename one.
func errorCodes() []errorCodePair {
	return []errorCodePair{
		{"not_leader", ErrNotLeader},
		{"no_leader", ErrNoLeader},
		{"stale_term", ErrStaleTerm},
		{"lock_held", ErrLockHeld},
		{"lock_conflict", ErrLockConflict},
		{"lock_released_running", ErrLockReleasedRunning},
		{"not_found", ErrNotFound},
		{"conflict", ErrConflict},
		{"invalid", ErrInvalid},
		{"outcome_unknown", ErrOutcomeUnknown},
		{"closed", ErrClosed},
		{"not_ready", ErrNotReady},
		{"unauthorized", ErrUnauthorized},
	}
}

// codedError is a refusal with its wire code and full message.
type codedError struct {
	msg      string
	sentinel error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.sentinel }

// errorCode returns the wire code of err's sentinel, or "" for an error
// that wraps none of them.
func errorCode(err error) string {
	for _, c := range errorCodes() {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// decodeError rebuilds an error from its wire form. An unknown or empty
// code gives a plain error with the message.
func decodeError(code, msg string) error {
	if code == "" && msg == "" {
		return nil
	}
	for _, c := range errorCodes() {
		if c.code == code {
			return &codedError{msg: msg, sentinel: c.err}
		}
	}
	return errors.New(msg)
}
