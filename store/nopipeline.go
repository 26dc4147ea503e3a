package store

import "github.com/hashicorp/raft"

// raftTransport is the transport a node's raft uses: unpipelined in
// production, an in-memory one in the unit tests (Config.raftTransport).
// Close releases it; raft itself closes it on shutdown too
// (raft.WithClose).
type raftTransport interface {
	raft.Transport
	Close() error
}

// unpipelined is raft's network transport without AppendEntries
// pipelining: raft then replicates one AppendEntries RPC at a time per
// follower (its "RPC" mode), which hashicorp/raft falls back to on
// ErrPipelineReplicationNotSupported without logging an error.
//
// Why: in hashicorp/raft v1.8.0 a leader whose follower answers with a
// newer term (or a failure) stops consuming the pipeline's responses
// (pipelineDecode returns), while its send loop may keep pushing entries
// until the pipeline's in-flight queue is full; the send then blocks
// forever (netPipeline.AppendEntries watches only the pipeline's own
// shutdown, which the blocked loop would close), and so does
// raft.Shutdown. Seen here as store.Close hanging for ten minutes in
// the store tests (goroutine dump: pipelineSend blocked in
// netPipeline.AppendEntries, decodeResponses blocked on doneCh, no
// pipelineDecode left). haxd's log traffic is small (lock entries and
// status writes), so one RPC in flight per follower costs nothing that
// matters: a commit still needs one round trip.
type unpipelined struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline refuses, so raft uses plain AppendEntries RPCs.
func (unpipelined) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
