package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Timing holds every timing the HA stack uses. The same struct drives the
// real agent and the simulator. Use PVETiming or FastTiming and change
// fields from there; Validate rejects combinations that break the safety
// inequality (ha-semantics §2.1, DESIGN.md):
//
//	LockValidity + SelfFenceTime + WatchdogTimeout + ClockDriftMargin < LockTTL
type Timing struct {
	// CRMRound is the period of the master CRM's manage round; a failed
	// node's lock is taken at the first round after it expired (the
	// agent runs a round at the expiry itself, and on other events, see
	// its event_round_gap). PVE 10 s; fast 250 ms.
	CRMRound time.Duration
	// LRMRound is the period of an active LRM's round (lock renewal and
	// resource actions). PVE 10 s; fast 250 ms.
	LRMRound time.Duration
	// LRMMaintenanceRound is the LRM round while in maintenance, and the
	// sleep of an idle or lock-less LRM. PVE 5 s; fast 250 ms.
	LRMMaintenanceRound time.Duration
	// LockTTL is how long a lock stays held after its last committed
	// renewal; only after it may the CRM take a failed node's agent lock and
	// recover its services. It dominates failover time. PVE 120 s; fast
	// 1.9 s (the sum of the four terms, 1.8 s, plus 0.1 s; each term is
	// derived from a measured bound in docs/safety.md).
	LockTTL time.Duration
	// LockValidity is how long after sending an acknowledged renewal the LRM
	// still counts its lock valid and keeps feeding its watchdog. Together
	// with WatchdogTimeout it is the grace a node has after its last
	// acknowledged renewal's send: that sum must outlast a leader election
	// plus one renewal, or the node self-fences when the leader dies; the
	// validity alone should, or the LRM drops to lost_agent_lock for a
	// moment (liveness). PVE 0 (valid only at the instant of renewal);
	// fast 1 s.
	LockValidity time.Duration
	// WatchdogTimeout is how long the watchdog (or the guard) waits for a
	// feed before it kills the node's services. PVE 60 s (watchdog-mux
	// client timeout); fast 500 ms.
	WatchdogTimeout time.Duration
	// SelfFenceTime bounds how long killing every local service takes once
	// the watchdog fired. PVE 10 s (hardware watchdog reset); fast 100 ms
	// (with ClockDriftMargin it covers the guard's reaction: a service
	// measured dead at most 113 ms after the guard's deadline under load,
	// docs/safety.md).
	SelfFenceTime time.Duration
	// ClockDriftMargin absorbs clock rate differences and scheduling delay
	// between the lock holder and the leader timing the lock, and the
	// guard's timer firing late. PVE 10 s; fast 200 ms.
	ClockDriftMargin time.Duration
	// ElectionTimeout is the expected worst-case time to elect a new raft
	// leader; used only for the liveness checks of LockValidity and
	// WatchdogTimeout. PVE 0 (PVE has no leader election in its lock
	// path); fast 750 ms (raft with a 200 ms heartbeat timeout: a new
	// leader after a leader SIGKILL, p99 0.737 s of 120 runs at a load
	// average of 4-18, worst 0.757 s, docs/safety.md).
	ElectionTimeout time.Duration
	// FenceDelay is how long a node must be out of the quorate partition
	// before its services go to fence. Not part of the safety argument.
	// PVE 60 s; fast 1 s.
	FenceDelay time.Duration
	// StatusRefresh is the longest an LRM or the master leaves its status
	// unwritten while its content (all but the timestamp) is unchanged:
	// an unchanged status is a raft entry only this often, a changed one
	// is written at once. It bounds the age of a live node's status
	// timestamp, so the status view's stale bound includes it (see
	// api.StaleAfter). 0 writes every round. Not part of the safety
	// argument (no decision reads the timestamps). PVE 30 s; fast 5 s.
	StatusRefresh time.Duration
	// ServiceCheckInterval is how often the master asks the LRMs to
	// re-assert the started services they reported running (a new request
	// UID: the LRM runs the start again, which restarts a service that
	// died on its own). PVE asks every round; between two checks an idle
	// cluster's statuses do not change. Not part of the safety argument.
	// PVE 0 (every round); fast 5 s.
	ServiceCheckInterval time.Duration
	// GoneNodeDelete is how long a gone node stays in the node status.
	// PVE 1 h; fast 1 h.
	GoneNodeDelete time.Duration
	// LRMRestartGiveUp is how long an LRM asked to restart waits in
	// lost_agent_lock before giving up. PVE 90 s; fast 9 s.
	LRMRestartGiveUp time.Duration
	// LRMIdleRounds is the number of rounds without configured services
	// after which an active LRM releases its lock and watchdog. PVE 60.
	LRMIdleRounds int
	// CRMIdleRounds is the number of rounds with empty config and status
	// after which the master releases its lock. PVE 90.
	CRMIdleRounds int
}

// PVETiming returns Proxmox VE's own timings, used for conformance runs.
func PVETiming() Timing {
	return Timing{
		CRMRound:            10 * time.Second,
		LRMRound:            10 * time.Second,
		LRMMaintenanceRound: 5 * time.Second,
		LockTTL:             120 * time.Second,
		LockValidity:        0,
		WatchdogTimeout:     60 * time.Second,
		SelfFenceTime:       10 * time.Second,
		ClockDriftMargin:    10 * time.Second,
		ElectionTimeout:     0,
		FenceDelay:          60 * time.Second,
		StatusRefresh:       30 * time.Second,
		GoneNodeDelete:      time.Hour,
		LRMRestartGiveUp:    90 * time.Second,
		LRMIdleRounds:       60,
		CRMIdleRounds:       90,
	}
}

// FastTiming returns haxd's default timings: failover in seconds. It keeps
// PVE's round counts and scales the durations.
func FastTiming() Timing {
	t := PVETiming()
	t.CRMRound = 250 * time.Millisecond
	t.LRMRound = 250 * time.Millisecond
	t.LRMMaintenanceRound = 250 * time.Millisecond
	t.LockTTL = 1900 * time.Millisecond
	t.LockValidity = time.Second
	t.WatchdogTimeout = 500 * time.Millisecond
	t.SelfFenceTime = 100 * time.Millisecond
	t.ClockDriftMargin = 200 * time.Millisecond
	t.ElectionTimeout = 750 * time.Millisecond
	t.FenceDelay = time.Second
	t.StatusRefresh = 5 * time.Second
	t.ServiceCheckInterval = 5 * time.Second
	t.LRMRestartGiveUp = 9 * time.Second
	return t
}

// TimingProfile returns the named profile: "pve" or "fast".
func TimingProfile(name string) (Timing, error) {
	switch name {
	case "pve":
		return PVETiming(), nil
	case "fast", "":
		return FastTiming(), nil
	}
	return Timing{}, fmt.Errorf("unknown timing profile %q: expected pve or fast", name)
}

// ErrUnsafeTiming is wrapped by Validate when the safety inequality fails.
var ErrUnsafeTiming = errors.New("unsafe timing")

// Validate checks that every duration is usable and that the safety
// inequality holds. It returns warnings (not errors) when the liveness
// margin is thin: a grace (LockValidity + WatchdogTimeout) that does not
// outlast an election plus one LRM round makes every LRM self-fence
// whenever the leader changes, and a LockValidity that does not makes it
// lose its lock for a moment (lost_agent_lock, nothing killed).
func (t Timing) Validate() (warnings []string, err error) {
	for _, f := range t.durations() {
		if f.positive && *f.v <= 0 {
			return nil, fmt.Errorf("timing %s: expected a positive duration, found %v", f.name, *f.v)
		}
		if *f.v < 0 {
			return nil, fmt.Errorf("timing %s: expected a duration >= 0, found %v", f.name, *f.v)
		}
	}
	if t.LRMIdleRounds < 1 || t.CRMIdleRounds < 1 {
		return nil, fmt.Errorf("timing lrm_idle_rounds/crm_idle_rounds: expected >= 1, found %d/%d", t.LRMIdleRounds, t.CRMIdleRounds)
	}
	sum := t.LockValidity + t.SelfFenceTime + t.WatchdogTimeout + t.ClockDriftMargin
	if sum >= t.LockTTL {
		return nil, fmt.Errorf("%w: lock_validity (%v) + self_fence_time (%v) + watchdog_timeout (%v) + clock_drift_margin (%v) = %v must be less than lock_ttl (%v)",
			ErrUnsafeTiming, t.LockValidity, t.SelfFenceTime, t.WatchdogTimeout, t.ClockDriftMargin, sum, t.LockTTL)
	}
	if t.LockValidity > 0 {
		need := t.ElectionTimeout + t.LRMRound
		grace := t.LockValidity + t.WatchdogTimeout
		switch {
		case grace < need:
			warnings = append(warnings, fmt.Sprintf("lock_validity (%v) + watchdog_timeout (%v) = %v is shorter than election_timeout (%v) + lrm_round (%v) = %v: LRMs may self-fence whenever the raft leader changes",
				t.LockValidity, t.WatchdogTimeout, grace, t.ElectionTimeout, t.LRMRound, need))
		case grace < need+need/4:
			warnings = append(warnings, fmt.Sprintf("lock_validity + watchdog_timeout (%v) leaves less than 25%% margin over election_timeout + lrm_round (%v)", grace, need))
		}
		if t.LockValidity < need {
			warnings = append(warnings, fmt.Sprintf("lock_validity (%v) is shorter than election_timeout (%v) + lrm_round (%v) = %v: LRMs may lose their lock for a moment (lost_agent_lock) whenever the raft leader changes",
				t.LockValidity, t.ElectionTimeout, t.LRMRound, need))
		}
	}
	if t.LRMRound >= t.LockTTL/2 && t.LockValidity > 0 {
		warnings = append(warnings, fmt.Sprintf("lrm_round (%v) is at least half of lock_ttl (%v): a single late renewal loses the lock", t.LRMRound, t.LockTTL))
	}
	return warnings, nil
}

// timingDuration is one duration field of a Timing with its config key.
type timingDuration struct {
	name     string
	v        *time.Duration
	positive bool // 0 is not allowed
}

// durations lists the duration fields of t under their config keys (the
// names Validate, EncodeTiming and DecodeTiming use).
func (t *Timing) durations() []timingDuration {
	return []timingDuration{
		{"crm_round", &t.CRMRound, true}, {"lrm_round", &t.LRMRound, true},
		{"lrm_maintenance_round", &t.LRMMaintenanceRound, true}, {"lock_ttl", &t.LockTTL, true},
		{"lock_validity", &t.LockValidity, false}, {"watchdog_timeout", &t.WatchdogTimeout, true},
		{"self_fence_time", &t.SelfFenceTime, false}, {"clock_drift_margin", &t.ClockDriftMargin, false},
		{"election_timeout", &t.ElectionTimeout, false}, {"fence_delay", &t.FenceDelay, false},
		{"gone_node_delete", &t.GoneNodeDelete, false}, {"lrm_restart_give_up", &t.LRMRestartGiveUp, false},
		{"status_refresh", &t.StatusRefresh, false}, {"service_check_interval", &t.ServiceCheckInterval, false},
	}
}

// rounds lists the round-count fields of t under their config keys.
func (t *Timing) rounds() []struct {
	name string
	v    *int
} {
	return []struct {
		name string
		v    *int
	}{{"lrm_idle_rounds", &t.LRMIdleRounds}, {"crm_idle_rounds", &t.CRMIdleRounds}}
}

// Encode serialises every field of t, as a JSON object keyed by the config
// keys with durations as Go duration strings, so that another process
// (`haxd guard`) receives exactly the timing the agent resolved and
// validated. DecodeTiming reads it back.
func (t Timing) Encode() string {
	m := map[string]any{}
	for _, f := range t.durations() {
		m[f.name] = f.v.String()
	}
	for _, f := range t.rounds() {
		m[f.name] = *f.v
	}
	b, _ := json.Marshal(m) // strings and ints always marshal
	return string(b)
}

// DecodeTiming reads a Timing written by Encode. Every field must be
// present (no field falls back to a profile) and no other key may be; the
// error names the key and the value. It does not Validate.
func DecodeTiming(s string) (Timing, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return Timing{}, fmt.Errorf("timing %q: expected a JSON object of config keys: %w", s, err)
	}
	var t Timing
	for _, f := range t.durations() {
		var v string
		if err := decodeField(raw, f.name, &v); err != nil {
			return Timing{}, err
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return Timing{}, fmt.Errorf("timing %s %q: expected a duration such as \"2.5s\"", f.name, v)
		}
		*f.v = d
	}
	for _, f := range t.rounds() {
		if err := decodeField(raw, f.name, f.v); err != nil {
			return Timing{}, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		return Timing{}, fmt.Errorf("timing: unknown key %q", k)
	}
	return t, nil
}

// decodeField decodes raw[name] into v and deletes it from raw.
func decodeField(raw map[string]json.RawMessage, name string, v any) error {
	r, ok := raw[name]
	if !ok {
		return fmt.Errorf("timing %s: missing", name)
	}
	delete(raw, name)
	if err := json.Unmarshal(r, v); err != nil {
		return fmt.Errorf("timing %s %s: %w", name, r, err)
	}
	return nil
}

// MaxDeviceTimeout is the bound a watchdog device's timeout must stay
// below: lock_ttl - lock_validity - watchdog_timeout - clock_drift_margin.
// A guard feeds its device only while no client is past its deadline, a
// deadline is never later than the lock's validity end plus
// watchdog_timeout, and if the guard freezes or dies the reset follows
// its last device feed by at most the device timeout.
func (t Timing) MaxDeviceTimeout() time.Duration {
	return t.LockTTL - t.LockValidity - t.WatchdogTimeout - t.ClockDriftMargin
}

// CheckDeviceTimeout returns an error wrapping ErrUnsafeTiming and naming
// every term when a watchdog device whose driver granted the timeout
// granted (after being asked for requested) breaks
//
//	lock_validity + watchdog_timeout + device timeout + clock_drift_margin < lock_ttl
func (t Timing) CheckDeviceTimeout(device string, requested, granted time.Duration) error {
	if granted < t.MaxDeviceTimeout() {
		return nil
	}
	sum := t.LockValidity + t.WatchdogTimeout + granted + t.ClockDriftMargin
	return fmt.Errorf("%w: watchdog device %s: requested timeout %v, granted %v: lock_validity (%v) + watchdog_timeout (%v) + device timeout (%v) + clock_drift_margin (%v) = %v must be less than lock_ttl (%v); use a timing profile with a longer lock_ttl (pve) or a device that grants a shorter timeout",
		ErrUnsafeTiming, device, requested, granted, t.LockValidity, t.WatchdogTimeout, granted, t.ClockDriftMargin, sum, t.LockTTL)
}
