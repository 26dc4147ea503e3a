package store

import (
	"encoding/json"
	"io"
	"reflect"
	"testing"

	"haxd/ha"
)

func ev(id string) OutboxEvent {
	return OutboxEvent{ID: id, Body: json.RawMessage(`{"id":"` + id + `"}`)}
}

func TestFSMOutbox(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		want    []string // queued IDs at the end, oldest first
	}{
		{"enqueue needs a term", []entry{
			{op: opOutboxPut, data: outboxPutCmd{Events: []OutboxEvent{ev("a")}, Max: 10}, want: ErrStaleTerm},
		}, nil},
		{"enqueue and remove", []entry{
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a"), ev("b")}, Max: 10}, val: `{}`},
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("c")}, Max: 10}},
			{op: opOutboxDone, cmd: 1, data: outboxDoneCmd{IDs: []string{"b", "unknown"}}},
		}, []string{"a", "c"}},
		{"a retried enqueue does not queue an ID twice", []entry{
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a")}, Max: 10}},
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a"), ev("b")}, Max: 10}},
		}, []string{"a", "b"}},
		{"overflow drops the oldest and reports them", []entry{
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a"), ev("b")}, Max: 3}},
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("c"), ev("d"), ev("e")}, Max: 3}, val: `{"dropped":["a","b"]}`},
		}, []string{"c", "d", "e"}},
		{"a deposed master can neither add nor remove", []entry{
			{term: 2, op: opOutboxPut, cmd: 2, data: outboxPutCmd{Events: []OutboxEvent{ev("a")}, Max: 10}},
			{term: 3, op: opOutboxPut, cmd: 3, data: outboxPutCmd{Events: []OutboxEvent{ev("b")}, Max: 10}},
			{term: 3, op: opOutboxDone, cmd: 2, data: outboxDoneCmd{IDs: []string{"a"}}, want: ErrStaleTerm},
			{term: 3, op: opOutboxPut, cmd: 2, data: outboxPutCmd{Events: []OutboxEvent{ev("c")}, Max: 10}, want: ErrStaleTerm},
			// A newer master's manager status write fences the older term too.
			{term: 4, op: opManagerStatus, cmd: 4, data: json.RawMessage(`{}`)},
			{term: 4, op: opOutboxDone, cmd: 3, data: outboxDoneCmd{IDs: []string{"a"}}, want: ErrStaleTerm},
			{term: 4, op: opOutboxDone, cmd: 4, data: outboxDoneCmd{IDs: []string{"a"}}},
		}, []string{"b"}},
		{"bad input", []entry{
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a")}}, want: ErrInvalid},
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{{ID: "", Body: json.RawMessage(`{}`)}}, Max: 1}, want: ErrInvalid},
			{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a"), {ID: "x"}}, Max: 1}, want: ErrInvalid},
			{op: opOutboxDone, cmd: 1, data: "not an object", want: ErrInvalid},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(nil)
			applyAll(t, f, tt.entries)
			var got []string
			for _, e := range f.st.Outbox {
				got = append(got, e.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("outbox %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFSMServiceUsage(t *testing.T) {
	u := func(cpu, mem float64) ServiceUsage { return ServiceUsage{CPU: cpu, Mem: mem} }
	tests := []struct {
		name    string
		entries []entry
		want    map[string]map[ha.SID]ServiceUsage
	}{
		{"each node's publication replaces its last one", []entry{
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"vm:1": u(1, 2), "vm:2": u(0, 1)}}},
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n2", Services: map[ha.SID]ServiceUsage{"vm:3": u(0.5, 1)}}},
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"vm:2": u(2, 3)}}},
		}, map[string]map[ha.SID]ServiceUsage{"n1": {"vm:2": u(2, 3)}, "n2": {"vm:3": u(0.5, 1)}}},
		{"a node with no services left", []entry{
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"vm:1": u(1, 2)}}},
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1"}},
		}, map[string]map[ha.SID]ServiceUsage{"n1": nil}},
		{"bad input changes nothing", []entry{
			{op: opServiceUsage, data: serviceUsageCmd{Services: map[ha.SID]ServiceUsage{"vm:1": u(1, 2)}}, want: ErrInvalid},
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"bad sid": u(1, 2)}}, want: ErrInvalid},
			{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"vm:1": u(-1, 2)}}, want: ErrInvalid},
		}, map[string]map[ha.SID]ServiceUsage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(nil)
			applyAll(t, f, tt.entries)
			got := map[string]map[ha.SID]ServiceUsage{}
			for n, nu := range f.st.ServiceUsage {
				got[n] = nu.Services
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("usage %v, want %v", got, tt.want)
			}
		})
	}
}

// TestFSMOutboxAndUsageSurviveASnapshot: the queue and the measured
// usage are part of the snapshot, so a new master restored from one
// still finds the undelivered events.
func TestFSMOutboxAndUsageSurviveASnapshot(t *testing.T) {
	src := newTestFSM(nil)
	applyAll(t, src, []entry{
		{op: opOutboxPut, cmd: 1, data: outboxPutCmd{Events: []OutboxEvent{ev("a"), ev("b")}, Max: 10}},
		{op: opServiceUsage, data: serviceUsageCmd{Node: "n1", Services: map[ha.SID]ServiceUsage{"vm:1": {CPU: 1.5, Mem: 1 << 30}}}},
	})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	dst := newTestFSM(nil)
	if err := dst.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst.st.Outbox, src.st.Outbox) || !reflect.DeepEqual(dst.st.ServiceUsage, src.st.ServiceUsage) {
		t.Errorf("restored outbox %+v usage %+v, want %+v %+v", dst.st.Outbox, dst.st.ServiceUsage, src.st.Outbox, src.st.ServiceUsage)
	}
}
