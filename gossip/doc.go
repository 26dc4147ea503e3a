// Package gossip is haxd's membership layer: serf on memberlist, encrypted
// with a shared key, carrying each node's name, raft and API addresses as
// tags. It tells the HA stack which nodes are online or unknown, and gives
// the gossip half of the quorum view (a strict majority of known members
// alive; the other half is a reachable raft leader, from the store).
//
// Gossip only informs: a node seen failed is not fenced by gossip. Safety
// comes from the agent locks in the store (see docs/safety.md); a false
// failure only starts the fence delay early.
package gossip
