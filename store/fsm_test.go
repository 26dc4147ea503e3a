package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"haxd/ha"
)

// recordingHooks records the FSM's lock hook calls.
type recordingHooks struct{ calls []string }

func (h *recordingHooks) lockRenewed(name string)  { h.calls = append(h.calls, "renewed "+name) }
func (h *recordingHooks) lockReleased(name string) { h.calls = append(h.calls, "released "+name) }
func (h *recordingHooks) locksRestored(names []string) {
	h.calls = append(h.calls, "restored "+mustJSON(names))
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// entry is one log entry for a table-driven FSM test.
type entry struct {
	term uint64 // term of the log entry (default 1)
	op   string
	cmd  uint64 // term carried by the command
	data any
	raw  []byte // overrides op/cmd/data
	want error  // nil: success
	val  string // expected JSON value, if set
}

// applyAll applies entries at consecutive indexes from 1 and checks each
// result.
func applyAll(t *testing.T, f *fsm, entries []entry) {
	t.Helper()
	for i, e := range entries {
		b := e.raw
		if b == nil {
			var err error
			b, err = newCommand(e.op, e.cmd, e.data)
			if err != nil {
				t.Fatalf("entry %d: %v", i+1, err)
			}
		}
		term := e.term
		if term == 0 {
			term = 1
		}
		res, isResult := f.Apply(&raft.Log{Index: uint64(i + 1), Term: term, Type: raft.LogCommand, Data: b}).(*result)
		if !isResult {
			t.Fatalf("entry %d (%s): response is not a *result", i+1, e.op)
		}
		err := res.err()
		switch {
		case e.want == nil && err != nil:
			t.Fatalf("entry %d (%s): %v", i+1, e.op, err)
		case e.want != nil && !errors.Is(err, e.want):
			t.Fatalf("entry %d (%s): err = %v, want %v", i+1, e.op, err, e.want)
		case e.val != "" && !equalJSON(res.Value, e.val):
			t.Fatalf("entry %d (%s): value %s, want %s", i+1, e.op, res.Value, e.val)
		}
	}
}

func newTestFSM(h lockHooks) *fsm { return newFSM(h, slog.New(slog.DiscardHandler)) }

func TestFSMTermFencing(t *testing.T) {
	ms := &ha.ManagerStatus{MasterNode: "n1"}
	msRaw := json.RawMessage(mustJSON(ms))
	tests := []struct {
		name    string
		entries []entry
	}{
		{"master write appended in its own term", []entry{
			{term: 3, op: opManagerStatus, cmd: 3, data: msRaw},
		}},
		{"write decided in term 3 but appended in term 4 (deposed master)", []entry{
			{term: 4, op: opManagerStatus, cmd: 3, data: msRaw, want: ErrStaleTerm},
		}},
		{"manager status without term", []entry{
			{term: 4, op: opManagerStatus, cmd: 0, data: msRaw, want: ErrStaleTerm},
		}},
		{"take commands needs a term", []entry{
			{op: opAppendCommands, data: commandsCmd{Commands: []string{"a"}}},
			{op: opTakeCommands, data: struct{}{}, want: ErrStaleTerm},
			{op: opTakeCommands, cmd: 1, data: struct{}{}, val: `["a"]`},
			{op: opTakeCommands, cmd: 1, data: struct{}{}, val: `[]`},
		}},
		{"steal service needs a term, the right source node and its agent lock", []entry{
			{op: opPutResource, data: ha.DefaultResourceConfig("vm:1", "n1")},
			{op: opStealService, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "m"}, want: ErrStaleTerm},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n3", To: "n2", Holder: "m"}, want: ErrConflict},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:9", From: "n1", To: "n2", Holder: "m"}, want: ErrNotFound},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2"}, want: ErrInvalid},
			// Nobody holds n1's lock: no proof of fencing.
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "m"}, want: ErrLockHeld},
			// n1 holds it itself: alive, not fenced.
			{op: opLock, data: lockCmd{Name: AgentLock("n1"), Holder: "n1"}},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "m"}, want: ErrLockHeld},
			// n1 gave it up with services running: still no proof.
			{op: opUnlock, data: unlockCmd{Name: AgentLock("n1"), Holder: "n1", Running: true}},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "m"}, want: ErrLockHeld},
			// n1 takes it back, and the master takes it over (after the
			// TTL, which the leader checked before appending the takeover).
			{op: opLock, data: lockCmd{Name: AgentLock("n1"), Holder: "n1", Armed: true}},
			{op: opLock, cmd: 1, data: lockCmd{Name: AgentLock("n1"), Holder: "m", Takeover: true, ExpectOwner: "n1", ExpectIndex: 11}},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "x"}, want: ErrLockHeld},
			{op: opStealService, cmd: 1, data: locationCmd{SID: "vm:1", From: "n1", To: "n2", Holder: "m"}},
		}},
		// Raft never appends a lower term after a higher one; the FSM
		// still refuses to go back, as a second line of defence.
		{"a lower term than the last master write is refused", []entry{
			{term: 5, op: opManagerStatus, cmd: 5, data: msRaw},
			{term: 4, op: opManagerStatus, cmd: 4, data: msRaw, want: ErrStaleTerm},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			applyAll(t, newTestFSM(nil), tt.entries)
		})
	}
}

func TestFSMLockCompareAndSwap(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		hooks   []string
		owner   string // expected owner at the end, "" for free
	}{
		{"free lock is granted", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}, val: `{"name":"L","owner":"a","acquired":1,"new":true,"index":1}`},
		}, []string{"renewed L"}, "a"},
		{"owner refreshes, the index moves", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a", ExpectOwner: "a"}, val: `{"name":"L","owner":"a","acquired":1,"new":false,"index":2}`},
		}, []string{"renewed L", "renewed L"}, "a"},
		{"another holder without takeover is refused", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b"}, want: ErrLockHeld},
		}, []string{"renewed L"}, "a"},
		{"takeover of the checked renewal succeeds", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}, val: `{"name":"L","owner":"b","acquired":2,"new":true,"index":2}`},
		}, []string{"renewed L", "renewed L"}, "b"},
		{"takeover loses against a renewal committed after the check", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}, want: ErrLockConflict},
		}, []string{"renewed L", "renewed L"}, "a"},
		{"takeover loses against a release and re-acquisition (no ABA)", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}, want: ErrLockConflict},
		}, []string{"renewed L", "released L", "renewed L"}, "a"},
		{"takeover of a released lock is a conflict", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}, want: ErrLockConflict},
		}, []string{"renewed L", "released L"}, ""},
		{"a refresh by the old owner after a takeover is refused", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a", ExpectOwner: "a"}, want: ErrLockHeld},
		}, []string{"renewed L", "renewed L"}, "b"},
		{"only the owner releases", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "b"}, want: ErrLockHeld},
			{op: opUnlock, data: unlockCmd{Name: "M", Holder: "a"}, want: ErrNotFound},
		}, []string{"renewed L"}, "a"},
		{"empty holder is invalid", []entry{
			{op: opLock, data: lockCmd{Name: "L"}, want: ErrInvalid},
		}, nil, ""},
		{"a lock released with services running is refused to others", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a", Running: true}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b"}, want: ErrLockReleasedRunning},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 2}, want: ErrLockReleasedRunning},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "b"}, want: ErrLockHeld},
		}, []string{"renewed L", "released L"}, "a"},
		{"a takeover that raced with a release with services running loses", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a", Running: true}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 1}, want: ErrLockReleasedRunning},
		}, []string{"renewed L", "released L"}, "a"},
		{"its owner takes it back armed as a new lock", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a", Running: true}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a", Armed: true}, val: `{"name":"L","owner":"a","acquired":3,"new":true,"index":3}`},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 3}, val: `{"name":"L","owner":"b","acquired":4,"new":true,"index":4}`},
		}, []string{"renewed L", "released L", "renewed L", "renewed L"}, "b"},
		// The answer to an unarmed retake can be lost after it committed
		// (the LRM then never arms its watchdog): the lock stays no proof
		// until the owner asks with its watchdog armed (SPIN model,
		// BUG_ARM_AFTER_ACQUIRE).
		{"its owner takes it back unarmed: still released until an armed renewal", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a", Running: true}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}, val: `{"name":"L","owner":"a","acquired":3,"released":true,"new":true,"index":3}`},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 3}, want: ErrLockReleasedRunning},
			{op: opLock, data: lockCmd{Name: "L", Holder: "a", Armed: true}, val: `{"name":"L","owner":"a","acquired":5,"new":true,"index":5}`},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b", Takeover: true, ExpectOwner: "a", ExpectIndex: 5}, val: `{"name":"L","owner":"b","acquired":6,"new":true,"index":6}`},
		}, []string{"renewed L", "released L", "renewed L", "renewed L", "renewed L"}, "b"},
		{"its owner releases it clean later: free for anyone", []entry{
			{op: opLock, data: lockCmd{Name: "L", Holder: "a"}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a", Running: true}},
			{op: opUnlock, data: unlockCmd{Name: "L", Holder: "a"}},
			{op: opLock, data: lockCmd{Name: "L", Holder: "b"}},
		}, []string{"renewed L", "released L", "released L", "renewed L"}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &recordingHooks{}
			f := newTestFSM(h)
			applyAll(t, f, tt.entries)
			if !reflect.DeepEqual(h.calls, tt.hooks) {
				t.Errorf("hook calls = %q, want %q", h.calls, tt.hooks)
			}
			li, held := f.lock("L")
			if got := map[bool]string{true: li.Owner}[held]; got != tt.owner {
				t.Errorf("owner = %q, want %q", got, tt.owner)
			}
		})
	}
}

func TestFSMRefusesMalformedEntriesWithoutChangingState(t *testing.T) {
	tests := []struct {
		name  string
		entry entry
	}{
		{"undecodable", entry{raw: []byte("{"), want: ErrInvalid}},
		{"unknown version", entry{raw: []byte(`{"v":2,"op":"set_rules","data":{"text":"x"}}`), want: ErrInvalid}},
		{"unknown operation", entry{raw: []byte(`{"v":1,"op":"format_disk"}`), want: ErrInvalid}},
		{"bad payload", entry{raw: []byte(`{"v":1,"op":"set_rules","data":[1]}`), want: ErrInvalid}},
		{"bad sid", entry{op: opPutResource, data: ha.ResourceConfig{SID: "VM 1"}, want: ErrInvalid}},
		{"bad requested state", entry{op: opSetRequestedState, data: requestedStateCmd{SID: "vm:1", State: "running"}, want: ErrInvalid}},
		{"lrm status without node", entry{op: opLRMStatus, data: lrmStatusCmd{Status: json.RawMessage(`{}`)}, want: ErrInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(nil)
			applyAll(t, f, []entry{{op: opPutResource, data: ha.DefaultResourceConfig("vm:1", "n1")}, tt.entry})
			before := newTestFSM(nil)
			applyAll(t, before, []entry{{op: opPutResource, data: ha.DefaultResourceConfig("vm:1", "n1")}})
			if !reflect.DeepEqual(f.st, before.st) {
				t.Errorf("state changed: %+v, want %+v", f.st, before.st)
			}
		})
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	src := newTestFSM(nil)
	applyAll(t, src, []entry{
		{op: opPutResource, data: ha.ResourceConfig{SID: "vm:1", Node: "n1", MaxRestart: 3, Failback: true, Lock: "backup"}},
		{op: opManagerStatus, cmd: 1, data: json.RawMessage(`{"master_node":"n1","node_status":{"n1":"online"},"service_status":{"vm:1":{"state":"started","node":"n1","running":1}}}`)},
		{op: opLRMStatus, data: lrmStatusCmd{Node: "n1", Status: json.RawMessage(`{"state":"active","timestamp":7}`)}},
		{op: opSetRules, data: textCmd{Text: "rules"}},
		{op: opSetGroups, data: textCmd{Text: "groups"}},
		{op: opSetDatacenter, data: datacenterDoc{Datacenter: ha.Datacenter{MaxWorkers: 2}, CRSSet: map[string]bool{"x": true}}},
		{op: opAppendCommands, data: commandsCmd{Commands: []string{"c1", "c2"}}},
		{op: opLock, data: lockCmd{Name: "agent/n1", Holder: "n1"}},
		{op: opLock, data: lockCmd{Name: "agent/n2", Holder: "n1"}},
	})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// A write after Snapshot must not leak into the persisted snapshot.
	applyAll(t, src, []entry{{op: opSetRules, data: textCmd{Text: "later"}}})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	h := &recordingHooks{}
	dst := newTestFSM(h)
	applyAll(t, dst, []entry{{op: opSetRules, data: textCmd{Text: "overwritten"}}})
	if err := dst.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	src.st.Rules = "rules"
	if !reflect.DeepEqual(dst.st, src.st) {
		t.Errorf("restored state = %+v\nwant %+v", dst.st, src.st)
	}
	if want := []string{`restored ["agent/n1","agent/n2"]`}; !reflect.DeepEqual(h.calls, want) {
		t.Errorf("hooks = %q, want %q", h.calls, want)
	}
	if dc := dst.datacenter(); !dc.CRS.Set["x"] || dc.MaxWorkers != 2 {
		t.Errorf("datacenter after restore = %+v, want CRS.Set kept", dc)
	}
	if err := newTestFSM(nil).Restore(io.NopCloser(bytes.NewReader([]byte(`{"version":9}`)))); err == nil {
		t.Errorf("restore of unknown snapshot version: no error")
	}
}

func TestFSMReadsReturnCopies(t *testing.T) {
	f := newTestFSM(nil)
	applyAll(t, f, []entry{
		{op: opPutResource, data: ha.ResourceConfig{SID: "vm:1", Node: "n1", Spec: json.RawMessage(`{"a":1}`)}},
		{op: opSetDatacenter, data: datacenterDoc{CRSSet: map[string]bool{"x": true}}},
		{op: opAppendCommands, data: commandsCmd{Commands: []string{"c"}}},
		{op: opManagerStatus, cmd: 1, data: json.RawMessage(`{"node_status":{"n1":"online"}}`)},
	})
	r := f.resources()["vm:1"]
	r.Node = "n2"
	r.Spec[2] = 'b'
	f.datacenter().CRS.Set["y"] = true
	f.commands()[0] = "changed"
	ms, err := f.managerStatus()
	if err != nil {
		t.Fatal(err)
	}
	ms.NodeStatus["n1"] = "fence"

	if got := f.resources()["vm:1"]; got.Node != "n1" || string(got.Spec) != `{"a":1}` {
		t.Errorf("resource changed through a read copy: %+v", got)
	}
	if got := f.datacenter().CRS.Set; len(got) != 1 {
		t.Errorf("datacenter changed through a read copy: %v", got)
	}
	if got := f.commands(); got[0] != "c" {
		t.Errorf("commands changed through a read copy: %q", got)
	}
	if ms2, _ := f.managerStatus(); ms2.NodeStatus["n1"] != "online" {
		t.Errorf("manager status changed through a read copy: %+v", ms2)
	}
}

// equalJSON reports whether got and want encode the same value, whatever
// the order of their keys.
func equalJSON(got []byte, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}
