// Package api is haxd's local HTTP+JSON API, served by `haxd agent` on a
// unix socket (mode 0600 by default) and used by `haxd ha`. The request and
// response types here are shared by the server and the client, so both sides
// always agree on the wire format.
//
// Every request is validated before anything changes: an invalid request
// gets a 4xx response whose message names the field and the value, and the
// cluster state is left untouched.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"haxd/ha"
)

// Status is the cluster state as one node sees it, the input of `haxd ha
// status`.
type Status struct {
	// LocalNode is the node that answered.
	LocalNode string `json:"local_node"`
	// Quorate reports whether LocalNode is in the quorate partition.
	Quorate bool `json:"quorate"`
	// Now is the answering node's time in Unix seconds.
	Now int64 `json:"now"`
	// CRMMode is the scheduler mode (crs.ha); empty means basic.
	CRMMode string `json:"crs_mode,omitempty"`
	// Manager is the last written manager status.
	Manager *ha.ManagerStatus `json:"manager_status"`
	// LRM is the LRM status of every node in the manager's node status.
	LRM map[string]*ha.LRMStatus `json:"lrm_status"`
	// Resources is the resources config, keyed by SID.
	Resources map[ha.SID]*ha.ResourceConfig `json:"resources"`
	// StaleAfter is the age in seconds beyond which a manager or LRM
	// status reads as stale ("old timestamp - dead?"); it follows the
	// agent's timing (see StaleAfter). Zero means PVE's 30 s.
	StaleAfter int64 `json:"stale_after,omitempty"`
	// Commands are the CRM commands queued and not yet taken by the master.
	Commands []string `json:"commands,omitempty"`
}

// Entry is one line of the status view (ha-semantics §10.1).
type Entry struct {
	// ID is "quorum", "master", "fencing", "lrm:<node>" or "service:<sid>".
	ID string `json:"id"`
	// Type is "quorum", "master", "fencing", "lrm" or "service".
	Type string `json:"type"`
	// Node is the node the entry is about, if any.
	Node string `json:"node,omitempty"`
	// Status is the human-readable text.
	Status string `json:"status"`
	// SID, CRMState and RequestState are set for services; State is the
	// verbose state of a service, or the CRM's state of an lrm entry's node.
	SID          ha.SID `json:"sid,omitempty"`
	CRMState     string `json:"crm_state,omitempty"`
	State        string `json:"state,omitempty"`
	RequestState string `json:"request_state,omitempty"`
}

// AddResourceRequest adds an HA resource.
type AddResourceRequest struct {
	// SID is the resource id, "type:name".
	SID string `json:"sid"`
	// Node is where the resource lives now; default: the answering node.
	Node string `json:"node,omitempty"`
	// State is the requested state; default started.
	State string `json:"state,omitempty"`
	// MaxRestart, MaxRelocate default to 1; Failback to true.
	MaxRestart  *int   `json:"max_restart,omitempty"`
	MaxRelocate *int   `json:"max_relocate,omitempty"`
	Failback    *bool  `json:"failback,omitempty"`
	Comment     string `json:"comment,omitempty"`
	// Group is a legacy HA group; the CRM migrates it to a rule.
	Group string `json:"group,omitempty"`
	// Spec is the type-specific definition (for "exec": command, args...).
	Spec json.RawMessage `json:"spec,omitempty"`
	// Cores and MemoryMB are the service's size for the static and
	// dynamic schedulers (0: not declared).
	Cores    float64 `json:"cores,omitempty"`
	MemoryMB int     `json:"memory_mb,omitempty"`
}

// SetResourceRequest changes fields of a resource; nil fields stay. The
// agent applies all given fields in one atomic store operation, or none.
type SetResourceRequest struct {
	SID         string  `json:"sid"`
	State       *string `json:"state,omitempty"`
	MaxRestart  *int    `json:"max_restart,omitempty"`
	MaxRelocate *int    `json:"max_relocate,omitempty"`
	Failback    *bool   `json:"failback,omitempty"`
	Comment     *string `json:"comment,omitempty"`
	// Group sets the legacy HA group, which must exist in the groups
	// config; "" removes it.
	Group *string `json:"group,omitempty"`
	// Spec is a JSON merge patch (RFC 7386) applied to the resource's
	// spec: keys set replace, keys set to null are removed, the rest stays.
	Spec json.RawMessage `json:"spec,omitempty"`
	// ExpectRevision, when not 0, applies the change only while the
	// resource's revision (ResourceConfig.Revision) is still this one;
	// otherwise the answer is 409 and nothing changes.
	ExpectRevision uint64 `json:"expect_revision,omitempty"`
}

// ResourceChange is a validated SetResourceRequest as the Backend applies
// it: nil fields stay.
type ResourceChange struct {
	// ExpectRevision, when not 0, makes the change a compare-and-set on
	// the resource's revision.
	ExpectRevision uint64
	// State is the requested state.
	State *ha.RequestedState
	// Group is the legacy HA group; "" removes it.
	Group *string
	// MaxRestart, MaxRelocate, Failback and Comment are the policy fields.
	MaxRestart  *int
	MaxRelocate *int
	Failback    *bool
	Comment     *string
	// SpecPatch is a JSON merge patch for the spec (RFC 7386).
	SpecPatch json.RawMessage
}

// RemoveResourceRequest removes a resource from HA management. Purge (the
// default) also removes it from every rule.
type RemoveResourceRequest struct {
	SID   string `json:"sid"`
	Purge *bool  `json:"purge,omitempty"`
}

// MoveRequest asks to migrate (live) or relocate (stop, move, start) a
// service to Node.
type MoveRequest struct {
	SID  string `json:"sid"`
	Node string `json:"node"`
}

// StopRequest asks to stop a service within Timeout seconds (0: hard stop)
// and keep it stopped.
type StopRequest struct {
	SID     string `json:"sid"`
	Timeout int    `json:"timeout"`
}

// NodeMaintenanceRequest enables or disables maintenance of a node.
type NodeMaintenanceRequest struct {
	Node   string `json:"node"`
	Enable bool   `json:"enable"`
}

// DisarmRequest disarms the HA stack; Mode is "freeze" or "ignore".
type DisarmRequest struct {
	Mode string `json:"mode"`
}

// NodeRemoveRequest removes a dead node from the cluster.
type NodeRemoveRequest struct {
	Node string `json:"node"`
}

// Rules is the rules config text (section config).
type Rules struct {
	Text string `json:"text"`
}

// DatacenterRequest changes cluster-wide settings; nil fields stay
// (ha-semantics §10.4, placement.md §7.4).
type DatacenterRequest struct {
	// ShutdownPolicy is conditional, freeze, failover or migrate.
	ShutdownPolicy *string `json:"shutdown_policy,omitempty"`
	// CRSMode is the scheduler: basic, static or dynamic.
	CRSMode *string `json:"crs_mode,omitempty"`
	// RebalanceOnStart picks the best node for a service when it starts.
	RebalanceOnStart *bool `json:"rebalance_on_start,omitempty"`
	// AutoRebalance moves services while the cluster is imbalanced.
	AutoRebalance *bool `json:"auto_rebalance,omitempty"`
	// AutoRebalanceThreshold is the imbalance that triggers it (>= 0).
	AutoRebalanceThreshold *float64 `json:"auto_rebalance_threshold,omitempty"`
	// AutoRebalanceMethod is bruteforce or topsis.
	AutoRebalanceMethod *string `json:"auto_rebalance_method,omitempty"`
	// AutoRebalanceHoldDuration is in CRM rounds (>= 0).
	AutoRebalanceHoldDuration *int `json:"auto_rebalance_hold_duration,omitempty"`
	// AutoRebalanceMargin is the improvement a move must bring (>= 0).
	AutoRebalanceMargin *float64 `json:"auto_rebalance_margin,omitempty"`
}

// Error is the body of every non-2xx response.
type Error struct {
	// Code is the HTTP status.
	Code int `json:"code"`
	// Message says what was wrong: field, value, and what was expected.
	Message string `json:"message"`
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// BadRequest returns a 400 error naming field and value.
// A value longer than 80 bytes is shortened in the message.
func BadRequest(field string, value any, format string, args ...any) *Error {
	v := fmt.Sprint(value)
	if len(v) > 80 {
		v = fmt.Sprintf("%s... (%d bytes)", v[:60], len(v))
	}
	return &Error{Code: http.StatusBadRequest, Message: fmt.Sprintf("%s %q: %s", field, v, fmt.Sprintf(format, args...))}
}

// NotFound returns a 404 error.
func NotFound(format string, args ...any) *Error {
	return &Error{Code: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict returns a 409 error (the request is valid but the state forbids it).
func Conflict(format string, args ...any) *Error {
	return &Error{Code: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}
