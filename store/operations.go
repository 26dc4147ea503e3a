package store

import (
	"encoding/json"
	"slices"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

// The operation table: one small method per replicated operation, looked
// up by the command's op name (command.go). Each method runs under f.mu on
// the FSM goroutine, changes the state only after all of its checks
// passed, and returns its result and its effect beyond the state (a lock
// it granted, renewed or released), which Apply hands to the lock hooks
// after releasing f.mu. Operations live in the files of their topic
// (fencing.go, outbox.go, usage.go, fsmconfig.go); the table below names
// them all.

// operation applies one decoded command.
type operation func(f *fsm, e *applying) (*result, effect)

// effect is what an applied operation did besides changing the state:
// the name of a lock it granted or renewed, or of one it released ("" for
// none).
type effect struct {
	renewed, released string
}

// operationTable returns the table of every operation this node knows.
func operationTable() map[string]operation {
	return map[string]operation{
		opAddResource:       (*fsm).applyAddResource,
		opAppendCommands:    (*fsm).applyAppendCommands,
		opDeleteResource:    (*fsm).applyDeleteResource,
		opFenceConfirmed:    (*fsm).fenceConfirmedOp,
		opLRMStatus:         (*fsm).applyLRMStatus,
		opLock:              (*fsm).applyLock,
		opManagerStatus:     (*fsm).applyManagerStatus,
		opMigrateGroups:     (*fsm).applyMigrateGroups,
		opOutboxDone:        (*fsm).outboxOp,
		opOutboxPut:         (*fsm).outboxOp,
		opPutResource:       (*fsm).applyPutResource,
		opRemoveResource:    (*fsm).applyRemoveResource,
		opServiceUsage:      (*fsm).serviceUsageOp,
		opSetDatacenter:     (*fsm).applySetDatacenter,
		opSetGroups:         (*fsm).applySetText,
		opSetLocation:       (*fsm).applySetLocation,
		opSetRequestedState: (*fsm).applySetRequestedState,
		opSetRules:          (*fsm).applySetText,
		opStealService:      (*fsm).applySetLocation,
		opTakeCommands:      (*fsm).applyTakeCommands,
		opUnlock:            (*fsm).applyUnlock,
		opUpdateDatacenter:  (*fsm).applyUpdateDatacenter,
		opUpdateResource:    (*fsm).applyUpdateResource,
	}
}

// apply changes the state under f.mu: it dispatches cmd to its operation.
func (f *fsm) apply(l *raft.Log, cmd *command) (*result, effect) {
	op, known := f.ops[cmd.Op]
	if !known {
		return refuse(ErrInvalid, "log entry %d: unknown operation %q", l.Index, cmd.Op), effect{}
	}
	return op(f, &applying{l: l, cmd: cmd, st: f.st})
}

// applying is the log entry being applied, with its decoded command and the
// state it applies to (f.st, under f.mu).
type applying struct {
	l   *raft.Log
	cmd *command
	st  *state
}

// fenced checks the command's writer term against the term of the last
// master write and, if it is not older, records it as the new one.
func (e *applying) fenced() *result {
	if e.cmd.Term == 0 {
		return refuse(ErrStaleTerm, "%s: missing the writer's term", e.cmd.Op)
	}
	if e.cmd.Term < e.st.ManagerTerm {
		return refuse(ErrStaleTerm, "%s: term %d is older than term %d of the last master write", e.cmd.Op, e.cmd.Term, e.st.ManagerTerm)
	}
	e.st.ManagerTerm = e.cmd.Term
	return nil
}

// termOK is fenced's check without the update of ManagerTerm, for
// operations that have checks of their own to pass before they may change
// anything.
func (e *applying) termOK() *result {
	if e.cmd.Term != 0 && e.cmd.Term < e.st.ManagerTerm {
		return refuse(ErrStaleTerm, "%s: term %d is older than term %d of the last master write", e.cmd.Op, e.cmd.Term, e.st.ManagerTerm)
	}
	return nil
}

// decode decodes the command's payload into v.
func (e *applying) decode(v any) *result {
	if err := json.Unmarshal(e.cmd.Data, v); err != nil {
		return refuse(ErrInvalid, "decode %s payload", e.cmd.Op)
	}
	return nil
}

// applyManagerStatus is opManagerStatus: the master CRM's status, fenced.
func (f *fsm) applyManagerStatus(e *applying) (*result, effect) {
	var ms ha.ManagerStatus
	if r := e.decode(&ms); r != nil {
		return r, effect{}
	}
	if r := e.fenced(); r != nil {
		return r, effect{}
	}
	e.st.ManagerStatus = slices.Clone(e.cmd.Data)
	return ok(nil), effect{}
}

// applyLRMStatus is opLRMStatus: one node's LRM status.
func (f *fsm) applyLRMStatus(e *applying) (*result, effect) {
	var c lrmStatusCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	var probe ha.LRMStatus
	if c.Node == "" || json.Unmarshal(c.Status, &probe) != nil {
		return refuse(ErrInvalid, "lrm status of node %q", c.Node), effect{}
	}
	e.st.LRMStatus[c.Node] = slices.Clone(c.Status)
	return ok(nil), effect{}
}

// applyPutResource is opPutResource: a resource config written as is.
func (f *fsm) applyPutResource(e *applying) (*result, effect) {
	var rc ha.ResourceConfig
	if r := e.decode(&rc); r != nil {
		return r, effect{}
	}
	if _, err := ha.ParseSID(string(rc.SID)); err != nil {
		return refuse(ErrInvalid, "put resource %q", rc.SID), effect{}
	}
	rc.Revision = e.l.Index
	e.st.Resources[rc.SID] = rc
	return ok(nil), effect{}
}

// applyDeleteResource is opDeleteResource.
func (f *fsm) applyDeleteResource(e *applying) (*result, effect) {
	var c sidCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	if _, found := e.st.Resources[c.SID]; !found {
		return refuse(ErrNotFound, "delete resource %q", c.SID), effect{}
	}
	delete(e.st.Resources, c.SID)
	return ok(nil), effect{}
}

// applySetLocation is opSetLocation and opStealService: a service moves to
// another node; a steal is fenced and needs the source node's agent lock
// (checkStealLock).
func (f *fsm) applySetLocation(e *applying) (*result, effect) {
	var c locationCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	rc, found := e.st.Resources[c.SID]
	if !found {
		return refuse(ErrNotFound, "move resource %q", c.SID), effect{}
	}
	if c.To == "" {
		return refuse(ErrInvalid, "move resource %q: empty target node", c.SID), effect{}
	}
	if c.From != "" && rc.Node != c.From {
		return refuse(ErrConflict, "move resource %q from %q: it is on %q", c.SID, c.From, rc.Node), effect{}
	}
	if e.cmd.Op == opStealService {
		if r := e.fenced(); r != nil {
			return r, effect{}
		}
		if r := checkStealLock(e.st, &c); r != nil {
			return r, effect{}
		}
	}
	rc.Node = c.To
	rc.Revision = e.l.Index
	e.st.Resources[c.SID] = rc
	return ok(nil), effect{}
}

// applySetRequestedState is opSetRequestedState: fenced when the master
// writes it; an operator may not start a service in the error state.
func (f *fsm) applySetRequestedState(e *applying) (*result, effect) {
	var c requestedStateCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	rc, found := e.st.Resources[c.SID]
	if !found {
		return refuse(ErrNotFound, "set requested state of %q", c.SID), effect{}
	}
	if _, valid := ha.ParseRequestedState(string(c.State)); !valid {
		return refuse(ErrInvalid, "set requested state of %q to %q", c.SID, c.State), effect{}
	}
	if e.cmd.Term != 0 {
		if r := e.fenced(); r != nil {
			return r, effect{}
		}
	} else if c.State != ha.RequestDisabled && e.st.serviceState(c.SID) == ha.StateError {
		return refuse(ErrConflict, "service '%s' in error state, must be disabled and fixed first", c.SID), effect{}
	}
	rc.State = c.State
	rc.Revision = e.l.Index
	e.st.Resources[c.SID] = rc
	return ok(nil), effect{}
}

// applySetText is opSetRules and opSetGroups: a section config text.
func (f *fsm) applySetText(e *applying) (*result, effect) {
	var c textCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	if r := e.termOK(); r != nil {
		return r, effect{}
	}
	if e.cmd.Op == opSetGroups {
		if r := e.st.checkSetGroups(&c); r != nil {
			return r, effect{}
		}
	}
	if e.cmd.Term != 0 {
		_ = e.fenced()
	}
	if e.cmd.Op == opSetGroups {
		e.st.setGroups(&c)
	} else {
		e.st.Rules = c.Text
	}
	return ok(nil), effect{}
}

// applyAddResource is opAddResource (fsmconfig.go).
func (f *fsm) applyAddResource(e *applying) (*result, effect) {
	var c addResourceCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	return f.addResource(e.l, &c), effect{}
}

// applyUpdateResource is opUpdateResource (fsmconfig.go).
func (f *fsm) applyUpdateResource(e *applying) (*result, effect) {
	var c updateResourceCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	return f.updateResource(e.l, &c), effect{}
}

// applyRemoveResource is opRemoveResource (fsmconfig.go).
func (f *fsm) applyRemoveResource(e *applying) (*result, effect) {
	var c removeResourceCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	return f.removeResource(&c), effect{}
}

// applyMigrateGroups is opMigrateGroups (fsmconfig.go): fenced.
func (f *fsm) applyMigrateGroups(e *applying) (*result, effect) {
	var c migrateGroupsCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	if e.cmd.Term == 0 {
		return refuse(ErrStaleTerm, "%s: missing the writer's term", e.cmd.Op), effect{}
	}
	if r := e.termOK(); r != nil {
		return r, effect{}
	}
	if r := e.st.checkMigration(&c); r != nil {
		return r, effect{}
	}
	_ = e.fenced()
	e.st.migrateGroups(e.l, &c)
	return ok(nil), effect{}
}

// applySetDatacenter is opSetDatacenter.
func (f *fsm) applySetDatacenter(e *applying) (*result, effect) {
	var c datacenterDoc
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	e.st.Datacenter = &c
	return ok(nil), effect{}
}

// applyUpdateDatacenter is opUpdateDatacenter: a compare-and-swap of the
// datacenter settings.
func (f *fsm) applyUpdateDatacenter(e *applying) (*result, effect) {
	var c updateDatacenterCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	if mustJSONOrEmpty(e.st.Datacenter) != mustJSONOrEmpty(c.From) {
		return refuse(ErrConflict, "update datacenter settings: they changed since they were read"), effect{}
	}
	e.st.Datacenter = &c.To
	return ok(nil), effect{}
}

// applyAppendCommands is opAppendCommands: CRM commands queued.
func (f *fsm) applyAppendCommands(e *applying) (*result, effect) {
	var c commandsCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	e.st.Commands = append(e.st.Commands, c.Commands...)
	return ok(nil), effect{}
}

// applyTakeCommands is opTakeCommands: the master takes the queue, fenced.
func (f *fsm) applyTakeCommands(e *applying) (*result, effect) {
	if r := e.fenced(); r != nil {
		return r, effect{}
	}
	taken := e.st.Commands
	e.st.Commands = nil
	if taken == nil {
		taken = []string{}
	}
	return ok(taken), effect{}
}

// applyLock is opLock: an acquisition, renewal or takeover the leader
// decided (locks.go), checked again at its log position.
func (f *fsm) applyLock(e *applying) (*result, effect) {
	var c lockCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	if c.Name == "" || c.Holder == "" {
		return refuse(ErrInvalid, "lock %q for %q: empty name or holder", c.Name, c.Holder), effect{}
	}
	cur, held := e.st.Locks[c.Name]
	var out LockResult
	switch {
	case held && cur.Released && cur.Owner != c.Holder:
		return refuse(ErrLockReleasedRunning, "lock %q for %q: released by %q", c.Name, c.Holder, cur.Owner), effect{}
	case !held && !c.Takeover, held && cur.Released && !c.Takeover:
		// Free, or released by the holder itself: a new acquisition.
		// A lock released with services running stays marked so
		// until its owner asks with its watchdog armed (lockCmd.Armed).
		out = LockResult{LockInfo: LockInfo{Name: c.Name, Owner: c.Holder, Index: e.l.Index, Acquired: e.l.Index,
			Released: held && cur.Released && !c.Armed}, New: true}
	case held && !c.Takeover && cur.Owner == c.Holder:
		cur.Index = e.l.Index
		out = LockResult{LockInfo: cur}
	case held && c.Takeover && cur.Owner == c.ExpectOwner && cur.Index == c.ExpectIndex && cur.Owner != c.Holder:
		if c.Fenced {
			if r := checkFencedTakeover(e.st, e.cmd, &c); r != nil {
				return r, effect{}
			}
		}
		out = LockResult{LockInfo: LockInfo{Name: c.Name, Owner: c.Holder, Index: e.l.Index, Acquired: e.l.Index}, New: true}
	case held && !c.Takeover:
		return refuse(ErrLockHeld, "lock %q for %q: held by %q", c.Name, c.Holder, cur.Owner), effect{}
	default:
		return refuse(ErrLockConflict, "lock %q for %q: changed since the leader's check", c.Name, c.Holder), effect{}
	}
	if e.cmd.Term != 0 {
		if r := e.fenced(); r != nil {
			return r, effect{}
		}
	}
	e.st.Locks[c.Name] = out.LockInfo
	out.Index = e.l.Index
	return ok(out), effect{renewed: c.Name}
}

// applyUnlock is opUnlock: the holder gives its lock up.
func (f *fsm) applyUnlock(e *applying) (*result, effect) {
	var c unlockCmd
	if r := e.decode(&c); r != nil {
		return r, effect{}
	}
	cur, held := e.st.Locks[c.Name]
	if !held {
		return refuse(ErrNotFound, "release lock %q for %q: not held", c.Name, c.Holder), effect{}
	}
	if cur.Owner != c.Holder {
		return refuse(ErrLockHeld, "release lock %q for %q: held by %q", c.Name, c.Holder, cur.Owner), effect{}
	}
	if c.Running {
		// Keep the record: given up with services running, it is
		// free for its owner only.
		cur.Released, cur.Index = true, e.l.Index
		e.st.Locks[c.Name] = cur
		return ok(nil), effect{released: c.Name}
	}
	delete(e.st.Locks, c.Name)
	return ok(nil), effect{released: c.Name}
}

// fenceConfirmedOp is opFenceConfirmed (fencing.go).
func (f *fsm) fenceConfirmedOp(e *applying) (*result, effect) {
	return f.applyFenceConfirmed(e.l, e.cmd), effect{}
}

// outboxOp is opOutboxPut and opOutboxDone (outbox.go).
func (f *fsm) outboxOp(e *applying) (*result, effect) {
	return f.applyOutbox(e.l.Index, e.cmd), effect{}
}

// serviceUsageOp is opServiceUsage (usage.go).
func (f *fsm) serviceUsageOp(e *applying) (*result, effect) {
	return f.applyServiceUsage(e.l.Index, e.cmd), effect{}
}
