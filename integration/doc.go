// Package integration holds haxd's end-to-end tests: real `haxd agent`
// processes (each with its own guard) on loopback, started and broken by
// internal/cluster, running `haxd demo-service` test services that record
// every run with the monotonic clock. Every test injects one kind of fault
// (SIGKILL of a node, of an agent alone, of the raft leader, SIGSTOP of an
// agent, restarts, migrate and relocate requests), asserts the outcome by
// polling the API and the heartbeats, and ends with the invariant check:
// no two runs of one service overlap.
//
// The package has only tests; run it with
//
//	go test -count=1 ./integration
//
// It builds the haxd binary once (needs the go tool) and is skipped in
// -short mode.
package integration
