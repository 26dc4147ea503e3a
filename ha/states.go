package ha

// ServiceState is the CRM's state of one service in the manager status
// (ha-semantics §5.1).
type ServiceState string

// Service states.
const (
	StateRequestStart        ServiceState = "request_start"
	StateRequestStartBalance ServiceState = "request_start_balance"
	StateStarted             ServiceState = "started"
	StateRequestStop         ServiceState = "request_stop"
	StateStopped             ServiceState = "stopped"
	StateMigrate             ServiceState = "migrate"
	StateRelocate            ServiceState = "relocate"
	StateFence               ServiceState = "fence"
	StateRecovery            ServiceState = "recovery"
	StateFreeze              ServiceState = "freeze"
	StateError               ServiceState = "error"
)

// Valid reports whether s is one of the service states above.
func (s ServiceState) Valid() bool {
	switch s {
	case StateRequestStart, StateRequestStartBalance, StateStarted, StateRequestStop,
		StateStopped, StateMigrate, StateRelocate, StateFence, StateRecovery,
		StateFreeze, StateError:
		return true
	}
	return false
}

// CountsActive reports whether a service in state s counts as active on its
// node (and its target) in the sense of ha-semantics §4.2: every state except
// stopped, freeze, error and request_start.
func (s ServiceState) CountsActive() bool {
	switch s {
	case StateStopped, StateFreeze, StateError, StateRequestStart:
		return false
	}
	return true
}

// RequestedState is the operator's wish for a resource (resources config
// `state`).
type RequestedState string

// Requested states. "enabled" is read as started.
const (
	RequestStarted  RequestedState = "started"
	RequestStopped  RequestedState = "stopped"
	RequestDisabled RequestedState = "disabled"
	RequestIgnored  RequestedState = "ignored"
)

// ParseRequestedState maps the accepted spellings to a RequestedState.
func ParseRequestedState(s string) (RequestedState, bool) {
	switch s {
	case "started", "enabled":
		return RequestStarted, true
	case "stopped":
		return RequestStopped, true
	case "disabled":
		return RequestDisabled, true
	case "ignored":
		return RequestIgnored, true
	}
	return "", false
}

// NodeState is the CRM's view of a node (ha-semantics §6.1).
type NodeState string

// Node states.
const (
	NodeOnline      NodeState = "online"
	NodeUnknown     NodeState = "unknown"
	NodeFence       NodeState = "fence"
	NodeGone        NodeState = "gone"
	NodeMaintenance NodeState = "maintenance"
)

// CRMState is the state of a CRM daemon (ha-semantics §3.1).
type CRMState string

// CRM daemon states.
const (
	CRMStartup         CRMState = "startup"
	CRMWaitForQuorum   CRMState = "wait_for_quorum"
	CRMSlave           CRMState = "slave"
	CRMMaster          CRMState = "master"
	CRMLostManagerLock CRMState = "lost_manager_lock"
)

// LRMState is the state of an LRM daemon (ha-semantics §4.1).
type LRMState string

// LRM daemon states.
const (
	LRMStartup          LRMState = "startup"
	LRMWaitForAgentLock LRMState = "wait_for_agent_lock"
	LRMActive           LRMState = "active"
	LRMLostAgentLock    LRMState = "lost_agent_lock"
	LRMMaintenance      LRMState = "maintenance"
)

// LRMMode is the mode an LRM reports in its status (ha-semantics §4.1).
type LRMMode string

// LRM modes.
const (
	ModeActive      LRMMode = "active"
	ModeRestart     LRMMode = "restart"
	ModeShutdown    LRMMode = "shutdown"
	ModeMaintenance LRMMode = "maintenance"
	ModeDisarm      LRMMode = "disarm"
)

// ExitCode is the result of one resource action (ha-semantics §1.7).
type ExitCode int

// Exit codes of resource actions.
const (
	ExitSuccess            ExitCode = 0
	ExitError              ExitCode = 1
	ExitTryAgain           ExitCode = 2
	ExitWrongNode          ExitCode = 3
	ExitUnknownServiceType ExitCode = 4
	ExitUnknownCommand     ExitCode = 5
	ExitInvalidParameter   ExitCode = 6
	ExitUnknownService     ExitCode = 7
	ExitIgnored            ExitCode = 8
)

// DisarmMode is how a disarmed stack treats services (ha-semantics §8.7).
type DisarmMode string

// Disarm modes.
const (
	DisarmFreeze DisarmMode = "freeze"
	DisarmIgnore DisarmMode = "ignore"
)

// DisarmState is the progress of a disarm request.
type DisarmState string

// Disarm states.
const (
	Disarming DisarmState = "disarming"
	Disarmed  DisarmState = "disarmed"
)
