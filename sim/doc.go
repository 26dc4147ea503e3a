// Package sim is haxd's deterministic cluster simulator. It loads scenario
// directories in the format of the Proxmox VE HA manager's regression tests
// (spec/scenario-format.md), simulates the hardware (power, network, cluster
// filesystem faults, watchdogs, lease locks, quorum and resources), drives
// the real crm and lrm state machines through one ha.Env per daemon with
// per-daemon virtual clocks, and produces a byte-for-byte reproducible log.
//
// One safety invariant is checked at every virtual instant: no service runs
// on two powered nodes, and the CRM only moves a service away from a node
// whose agent lock its own node holds. A breach ends the run with an error.
//
// Nothing in this package reads the wall clock or unseeded randomness; a run
// is a pure function of the scenario, the timing and the seed.
package sim
