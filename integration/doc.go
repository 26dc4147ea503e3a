// Package integration holds haxd's end-to-end tests: real `haxd agent`
// processes (each with its own guard) on loopback, and in network
// namespaces joined by a bridge for partitions, started and broken by
// internal/cluster, running `haxd demo-service` test services that record
// every run with the monotonic clock. Every test injects one kind of fault
// (SIGKILL of a node, of an agent alone, of the raft leader, SIGSTOP of an
// agent, restarts, node shutdowns under a shutdown policy, migrate and
// relocate requests, a silent network partition of a node and of the raft
// leader, and its healing), asserts the outcome by
// polling the API and the heartbeats, and ends with the invariant check:
// no two runs of one service overlap.
//
// The package has only tests; run it with
//
//	go test -count=1 ./integration
//
// It builds the haxd binary once (needs the go tool) and is skipped in
// -short mode; the partition test needs root and `ip netns` (iproute2) and
// skips loudly without them.
package integration
