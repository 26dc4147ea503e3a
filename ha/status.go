package ha

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ManagerStatus is the cluster-wide document written by the master CRM once
// per round (ha-semantics §1.5). Maps are keyed by node name or SID; code
// that iterates them for output or decisions must sort the keys.
type ManagerStatus struct {
	// MasterNode is the node whose CRM wrote this status.
	MasterNode string `json:"master_node,omitempty"`
	// Timestamp is the write time in Unix seconds.
	Timestamp int64 `json:"timestamp,omitempty"`
	// NodeStatus is the CRM's state of every known node.
	NodeStatus map[string]NodeState `json:"node_status,omitempty"`
	// ServiceStatus is the CRM's state of every managed service.
	ServiceStatus map[SID]*ServiceStatus `json:"service_status,omitempty"`
	// NodeRequest holds per-node operator requests (maintenance).
	NodeRequest map[string]*NodeRequest `json:"node_request,omitempty"`
	// Disarm is set while the HA stack is disarming or disarmed.
	Disarm *Disarm `json:"disarm,omitempty"`
}

// NodeRequest is an operator request attached to one node.
type NodeRequest struct {
	// Maintenance asks the node's LRM to enter maintenance mode.
	Maintenance bool `json:"maintenance,omitempty"`
}

// Disarm records a disarm request and its progress.
type Disarm struct {
	Mode  DisarmMode  `json:"mode"`
	State DisarmState `json:"state"`
}

// ServiceStatus is the CRM's entry for one service (ha-semantics §1.5, "sd").
type ServiceStatus struct {
	// State is the CRM service state.
	State ServiceState `json:"state"`
	// Node is the node the service is on or requested on.
	Node string `json:"node"`
	// UID ties the current request to the LRM's result.
	UID string `json:"uid,omitempty"`
	// Target is the destination of migrate, relocate and request_start_balance.
	Target string `json:"target,omitempty"`
	// Timeout is the stop timeout in seconds, only in request_stop; nil means none.
	Timeout *int `json:"timeout,omitempty"`
	// Running is set once the LRM confirmed a successful start (state started).
	Running bool `json:"running,omitempty"`
	// Cmd is a pending operator command, consumed by the started/stopped handlers.
	Cmd *ServiceCmd `json:"cmd,omitempty"`
	// FailedNodes lists the nodes where a start failed, in order, duplicates allowed.
	FailedNodes []string `json:"failed_nodes,omitempty"`
	// MaintenanceNode is the node the service left because of maintenance.
	MaintenanceNode string `json:"maintenance_node,omitempty"`
}

// Clone returns a deep copy of sd.
func (sd *ServiceStatus) Clone() *ServiceStatus {
	c := *sd
	if sd.Timeout != nil {
		t := *sd.Timeout
		c.Timeout = &t
	}
	if sd.Cmd != nil {
		cmd := *sd.Cmd
		c.Cmd = &cmd
	}
	c.FailedNodes = append([]string(nil), sd.FailedNodes...)
	if len(c.FailedNodes) == 0 {
		c.FailedNodes = nil
	}
	return &c
}

// UnmarshalJSON accepts the PVE encoding, where running is 0/1 and numbers
// may be strings.
func (sd *ServiceStatus) UnmarshalJSON(b []byte) error {
	var raw struct {
		State           ServiceState    `json:"state"`
		Node            string          `json:"node"`
		UID             string          `json:"uid"`
		Target          string          `json:"target"`
		Timeout         json.RawMessage `json:"timeout"`
		Running         json.RawMessage `json:"running"`
		Cmd             *ServiceCmd     `json:"cmd"`
		FailedNodes     []string        `json:"failed_nodes"`
		MaintenanceNode string          `json:"maintenance_node"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*sd = ServiceStatus{State: raw.State, Node: raw.Node, UID: raw.UID, Target: raw.Target,
		Cmd: raw.Cmd, FailedNodes: raw.FailedNodes, MaintenanceNode: raw.MaintenanceNode}
	if len(raw.Timeout) > 0 && string(raw.Timeout) != "null" {
		n, err := JSONInt(raw.Timeout)
		if err != nil {
			return fmt.Errorf("field timeout: %w", err)
		}
		sd.Timeout = &n
	}
	if len(raw.Running) > 0 && string(raw.Running) != "null" {
		n, err := JSONBool(raw.Running)
		if err != nil {
			return fmt.Errorf("field running: %w", err)
		}
		sd.Running = n
	}
	return nil
}

// ServiceCmd is a pending operator command on a service: migrate or relocate
// to Target, or stop with Timeout. It is encoded as a JSON array
// ["migrate", "node2"] or ["stop", 10] as PVE does.
type ServiceCmd struct {
	// Name is "migrate", "relocate" or "stop" (anything else is reported as unknown).
	Name string
	// Target is the destination node of migrate/relocate.
	Target string
	// Timeout is the stop timeout in seconds.
	Timeout int
}

// MarshalJSON encodes the command as an array.
func (c ServiceCmd) MarshalJSON() ([]byte, error) {
	if c.Name == "stop" {
		return json.Marshal([]any{c.Name, c.Timeout})
	}
	return json.Marshal([]any{c.Name, c.Target})
}

// UnmarshalJSON decodes the array form.
func (c *ServiceCmd) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("cmd: expected [name, argument], found %s", b)
	}
	if len(raw) == 0 {
		return fmt.Errorf("cmd: expected [name, argument], found an empty list")
	}
	if err := json.Unmarshal(raw[0], &c.Name); err != nil {
		return fmt.Errorf("cmd: name must be a string, found %s", raw[0])
	}
	if len(raw) < 2 {
		return nil
	}
	if c.Name == "stop" {
		n, err := JSONInt(raw[1])
		if err != nil {
			return fmt.Errorf("cmd: stop timeout: %w", err)
		}
		c.Timeout = n
		return nil
	}
	if err := json.Unmarshal(raw[1], &c.Target); err != nil {
		return fmt.Errorf("cmd: target must be a string, found %s", raw[1])
	}
	return nil
}

// LRMStatus is the document each LRM writes about itself (ha-semantics §1.6).
type LRMStatus struct {
	// State is the LRM daemon state.
	State LRMState `json:"state,omitempty"`
	// Mode is the LRM mode; empty is read as active.
	Mode LRMMode `json:"mode,omitempty"`
	// Results maps a request UID to the outcome of that request.
	Results map[string]LRMResult `json:"results,omitempty"`
	// Timestamp is the write time in Unix seconds.
	Timestamp int64 `json:"timestamp,omitempty"`
}

// EffectiveMode returns Mode, or ModeActive when it is empty.
func (s *LRMStatus) EffectiveMode() LRMMode {
	if s == nil || s.Mode == "" {
		return ModeActive
	}
	return s.Mode
}

// LRMResult is the outcome of one request executed by an LRM.
type LRMResult struct {
	SID      SID          `json:"sid"`
	State    ServiceState `json:"state"`
	ExitCode ExitCode     `json:"exit_code"`
}

// JSONInt decodes a JSON number or a string holding a number, as PVE files
// use both. Fractions are truncated.
func JSONInt(b json.RawMessage) (int, error) {
	f, err := JSONFloat(b)
	return int(f), err
}

// JSONFloat decodes a JSON number or a string holding a number.
func JSONFloat(b json.RawMessage) (float64, error) {
	var f float64
	if err := json.Unmarshal(b, &f); err == nil {
		return f, nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, fmt.Errorf("expected a number, found %s", b)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("expected a number, found %q", s)
	}
	return f, nil
}

// JSONBool decodes true/false, a number (non-zero is true) or a numeric string.
func JSONBool(b json.RawMessage) (bool, error) {
	var v bool
	if err := json.Unmarshal(b, &v); err == nil {
		return v, nil
	}
	n, err := JSONFloat(b)
	if err != nil {
		return false, fmt.Errorf("expected a boolean or 0/1, found %s", b)
	}
	return n != 0, nil
}
