package ha

import "encoding/json"

// ResourceConfig is the operator's configuration of one HA resource
// (resources config, ha-semantics §10.2) together with the resource's
// current location, which the resource layer owns.
type ResourceConfig struct {
	// SID is the resource's id.
	SID SID `json:"sid"`
	// Node is the resource's current location ("cd.node"): the node that owns
	// it. Only a successful migrate/relocate or the CRM's recovery changes it.
	Node string `json:"node"`
	// State is the requested state; the zero value is read as started.
	State RequestedState `json:"state,omitempty"`
	// MaxRestart is how often the LRM retries a failed start on its own node
	// before reporting failure. Default 1.
	MaxRestart int `json:"max_restart"`
	// MaxRelocate is how many failed starts may move the service to another
	// node before it enters error. Default 1.
	MaxRelocate int `json:"max_relocate"`
	// Failback moves a started service back to a higher-priority node when one
	// becomes available. Default true.
	Failback bool `json:"failback"`
	// Group is the deprecated HA group name.
	Group string `json:"group,omitempty"`
	// Comment is free text for operators.
	Comment string `json:"comment,omitempty"`
	// Spec is the type-specific definition of the resource (for "exec":
	// command, arguments, environment...), interpreted by the resource agent
	// of its type. Empty for types that need none.
	Spec json.RawMessage `json:"spec,omitempty"`
	// Cores is the number of CPU cores the service needs, for the static
	// and dynamic schedulers; 0: not declared.
	Cores float64 `json:"cores,omitempty"`
	// MemoryMB is the memory the service needs in MiB, for the static and
	// dynamic schedulers; 0: not declared.
	MemoryMB int `json:"memory_mb,omitempty"`
	// Lock is a resource-level lock (e.g. "backup") that makes start, stop and
	// migrate fail; recovery removes the safe ones.
	Lock string `json:"lock,omitempty"`
	// Revision is the raft log index of the last change of this record in
	// the replicated store; 0 outside it. A compare-and-set update names
	// the revision it read.
	Revision uint64 `json:"revision,omitempty"`
}

// Requested returns State, reading the zero value as started.
func (c *ResourceConfig) Requested() RequestedState {
	if c == nil {
		return RequestDisabled
	}
	if c.State == "" {
		return RequestStarted
	}
	return c.State
}

// DefaultResourceConfig returns the defaults for a new resource.
func DefaultResourceConfig(sid SID, node string) ResourceConfig {
	return ResourceConfig{SID: sid, Node: node, State: RequestStarted, MaxRestart: 1, MaxRelocate: 1, Failback: true}
}

// ShutdownPolicy is the datacenter ha.shutdown_policy (ha-semantics §9).
type ShutdownPolicy string

// Shutdown policies.
const (
	ShutdownConditional ShutdownPolicy = "conditional"
	ShutdownFreeze      ShutdownPolicy = "freeze"
	ShutdownFailover    ShutdownPolicy = "failover"
	ShutdownMigrate     ShutdownPolicy = "migrate"
)

// Datacenter holds the cluster-wide settings the HA stack reads
// (ha-semantics §10.4).
type Datacenter struct {
	// ShutdownPolicy is ha.shutdown_policy; empty means conditional.
	ShutdownPolicy ShutdownPolicy `json:"shutdown_policy,omitempty"`
	// CRS holds the cluster resource scheduler options.
	CRS CRSOptions `json:"crs"`
	// MaxWorkers is the number of resource actions an LRM runs at once;
	// 0 means run them inline (the simulator).
	MaxWorkers int `json:"max_workers"`
}

// CRSOptions are the crs.* datacenter options (placement.md).
type CRSOptions struct {
	// Mode is crs.ha: "basic" (default), "static" or "dynamic".
	Mode string `json:"ha,omitempty"`
	// RebalanceOnStart is crs.ha-rebalance-on-start.
	RebalanceOnStart bool `json:"ha-rebalance-on-start,omitempty"`
	// AutoRebalance is crs.ha-auto-rebalance.
	AutoRebalance bool `json:"ha-auto-rebalance,omitempty"`
	// AutoRebalanceThreshold is crs.ha-auto-rebalance-threshold; default 0.3.
	AutoRebalanceThreshold float64 `json:"ha-auto-rebalance-threshold,omitempty"`
	// AutoRebalanceMethod is "bruteforce" (default) or "topsis".
	AutoRebalanceMethod string `json:"ha-auto-rebalance-method,omitempty"`
	// AutoRebalanceHoldDuration is in CRM rounds; default 3.
	AutoRebalanceHoldDuration int `json:"ha-auto-rebalance-hold-duration,omitempty"`
	// AutoRebalanceMargin defaults to 0.1.
	AutoRebalanceMargin float64 `json:"ha-auto-rebalance-margin,omitempty"`
	// Set records which of the optional numeric fields were present, so that
	// zero values can be told from absent ones.
	Set map[string]bool `json:"-"`
}

// NodeInfo is the membership view of one node.
type NodeInfo struct {
	// Online reports whether the node is in the quorate partition.
	Online bool
}

// NodeStats is a node's capacity and current load for the scheduler.
type NodeStats struct {
	// MaxCPU is the number of cores; MaxMem the memory in bytes.
	MaxCPU, MaxMem float64
	// CPU is the current CPU load in cores; Mem the used memory in bytes.
	CPU, Mem float64
}

// ServiceStats is a service's size for the scheduler.
type ServiceStats struct {
	// MaxCPU and MaxMem are the configured size (static scheduler).
	MaxCPU, MaxMem float64
	// CPU and Mem are the measured usage (dynamic scheduler).
	CPU, Mem float64
}
