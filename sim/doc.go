// Package sim is haxd's deterministic cluster simulator. It loads scenario
// directories in the format of the Proxmox VE HA manager's regression tests
// (spec/scenario-format.md), simulates the hardware (power, network, cluster
// filesystem faults, watchdogs, lease locks keyed by node name, quorum and
// the vm, ct and fa resources), drives the real crm and lrm state machines
// through one ha.Env per daemon with per-daemon virtual clocks, and produces
// a byte-for-byte reproducible log (FormatPVE is the log.expect format).
//
// Time. All times are time.Duration. The round structure of
// scenario-format §4 is scaled from the timing profile (Units): with
// ha.PVETiming a round is 20 s and a daemon step costs 1 s, exactly as in
// PVE; in general a round is 2×CRMRound, shortened to half the watchdog
// timeout when a full round would let a healthy daemon's watchdog run out
// (ha.FastTiming: 0.5 s rounds, 25 ms steps). A step costs 1/20 round,
// cmdlist steps run every 5 rounds, `delay N` waits N step units, the run
// ends 25 rounds after the last command and is forced to end after 500
// rounds. Lock TTL, watchdog timeout and fence delay come from the timing.
//
// The invariant. At every virtual instant (after every daemon step, command
// and exit) no service may run on two powered nodes, and StealService is
// only allowed while the caller's node holds the agent lock of the node the
// service leaves. A breach ends the run: Result.Err wraps ErrInvariant.
//
// Generate builds random clusters and fault schedules from a seed for
// `haxd sim random`. Nothing in this package reads the wall clock or
// unseeded randomness; a run is a pure function of the scenario, the
// timing and the seed.
package sim
