// Package ocf is the resource agent for type "ocf": an HA service managed by
// an OCF resource agent script (Open Cluster Framework, the agents of
// Debian's resource-agents package such as ocf:heartbeat:IPaddr2 or
// ocf:heartbeat:anything), run without pacemaker.
//
// Each service has a Spec naming the OCF agent ("heartbeat:IPaddr2") and its
// parameters. Start, Stop and Running run the agent's start, stop and
// monitor actions with the OCF environment (OCF_ROOT, OCF_RA_VERSION_*,
// OCF_RESOURCE_INSTANCE = the SID's name, OCF_RESKEY_<param>, the meta
// timeout) and map the OCF exit codes. The failure reason an agent prints as
// "ocf-exit-reason:<text>" on stderr ends up in the returned error.
package ocf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"haxd/resource/exec"
)

// DefaultActionTimeout is the default timeout of start, stop and monitor
// (the meta-data default of most heartbeat agents).
const DefaultActionTimeout = 20 * time.Second

// Spec describes one OCF service.
type Spec struct {
	// Agent is the OCF agent as "provider:type", e.g. "heartbeat:IPaddr2"
	// (the script $OCF_ROOT/resource.d/heartbeat/IPaddr2). A leading "ocf:"
	// is accepted and dropped. Required.
	Agent string `json:"agent"`
	// Params are the agent's instance parameters, passed as
	// OCF_RESKEY_<name>=<value>. Names are letters, digits and '_'.
	// Default none.
	Params map[string]string `json:"params,omitempty"`
	// StartTimeout bounds the start action (also passed to the agent as
	// OCF_RESKEY_CRM_meta_timeout). Default 20 s.
	StartTimeout exec.Duration `json:"start_timeout,omitempty"`
	// StopTimeout bounds the stop action when Stop is given no timeout.
	// OCF agents have no hard stop, so a Stop timeout of 0 uses this too.
	// Default 20 s.
	StopTimeout exec.Duration `json:"stop_timeout,omitempty"`
	// MonitorTimeout bounds the monitor action that Running runs.
	// Default 20 s.
	MonitorTimeout exec.Duration `json:"monitor_timeout,omitempty"`
}

// Provider returns the provider part of Agent ("heartbeat").
func (s Spec) Provider() string {
	p, _, _ := strings.Cut(strings.TrimPrefix(s.Agent, "ocf:"), ":")
	return p
}

// Type returns the agent script name ("IPaddr2").
func (s Spec) Type() string {
	_, t, _ := strings.Cut(strings.TrimPrefix(s.Agent, "ocf:"), ":")
	return t
}

// Normalize applies the defaults, checks every field and returns the spec
// with Agent as "provider:type". Errors are *exec.FieldError.
func (s Spec) Normalize() (Spec, error) {
	s.Agent = strings.TrimPrefix(strings.TrimSpace(s.Agent), "ocf:")
	prov, typ, ok := strings.Cut(s.Agent, ":")
	if s.Agent == "" {
		return Spec{}, &exec.FieldError{Field: "agent", Value: s.Agent, Reason: "required"}
	}
	if !ok || !safeName(prov) || !safeName(typ) {
		return Spec{}, &exec.FieldError{Field: "agent", Value: s.Agent, Reason: "want provider:type, e.g. heartbeat:IPaddr2"}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if !paramName(k) {
			return Spec{}, &exec.FieldError{Field: "params", Value: k, Reason: "parameter names are letters, digits and '_'"}
		}
		if strings.IndexByte(s.Params[k], 0) >= 0 {
			return Spec{}, &exec.FieldError{Field: "params", Value: k, Reason: "value contains a NUL byte"}
		}
	}
	for _, f := range []struct {
		name string
		d    *exec.Duration
	}{{"start_timeout", &s.StartTimeout}, {"stop_timeout", &s.StopTimeout}, {"monitor_timeout", &s.MonitorTimeout}} {
		if *f.d == 0 {
			*f.d = exec.Duration(DefaultActionTimeout)
		}
		if *f.d < exec.Duration(time.Second) || f.d.D() > time.Hour {
			return Spec{}, &exec.FieldError{Field: f.name, Value: f.d.D().String(), Reason: "must be between 1s and 1h"}
		}
	}
	return s, nil
}

func safeName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func paramName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// ParseSpec reads a Spec from a JSON object with the field names of the
// Spec's json tags (as the API stores it); unknown fields are errors. The
// result is normalised and validated.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("parse ocf spec: %w", err)
	}
	if dec.More() {
		return Spec{}, errors.New("parse ocf spec: trailing data after the JSON object")
	}
	n, err := s.Normalize()
	if err != nil {
		return Spec{}, fmt.Errorf("ocf spec: %w", err)
	}
	return n, nil
}
