// Package fencedev drives external fence devices (IPMI BMCs, PDUs, ...)
// through the agents of the standard fence-agents project, configured in
// Proxmox VE's fence.cfg format.
//
// Parse reads a fence.cfg: `device NAME[:N] AGENT ARGS...` declares a fence
// device (several sub-devices N of one NAME are parallel devices, all used
// together, e.g. the two power supplies of a machine), `connect NAME[:N]
// node=NODE ARGS...` attaches a node to a (sub-)device with per-node
// arguments (plug, port). Devices are tried in the order they were
// declared, one device (level) after the other, as PVE and Pacemaker's
// fencing levels do.
//
// Runner fences a node: for each level in turn it runs every sub-device the
// node is connected to in parallel, each with the fence-agents stdin
// protocol (key=value lines on standard input, `action=off`, then
// `action=status` until the agent reports the plug off), with a per-call
// timeout and retries. A level confirms the node off only when every one of
// its sub-devices did; the first level that does ends the job. Passwords
// never appear in a log line, an error or a command line.
//
// The package imports only the standard library and package ha.
package fencedev
