package store

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// The transport raft gets refuses pipelining (the deadlock in
// nopipeline.go) and keeps every optional interface of raft's network
// transport, pre-vote above all.
func TestTransportRefusesPipeliningAndKeepsPreVote(t *testing.T) {
	var tr raft.Transport = unpipelined{&raft.NetworkTransport{}}
	if _, err := tr.AppendEntriesPipeline("n2", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Errorf("AppendEntriesPipeline: err = %v, want ErrPipelineReplicationNotSupported", err)
	}
	if _, ok := tr.(raft.WithPreVote); !ok {
		t.Error("the transport lost raft.WithPreVote: elections would skip pre-vote")
	}
	if _, ok := tr.(raft.WithClose); !ok {
		t.Error("the transport lost raft.WithClose")
	}
}
