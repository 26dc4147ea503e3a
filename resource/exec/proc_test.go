//go:build linux

package exec

import (
	"strings"
	"testing"

	"haxd/ha"
)

func TestParseProcStatCountsFieldsFromTheLastParen(t *testing.T) {
	tail := " 1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100"
	tests := []struct {
		name string
		stat string
		want procStat
	}{
		{"plain", "42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100",
			procStat{pid: 42, state: 'S', pgrp: 42, session: 42, start: 12345}},
		{"name with blanks and parens", "7 (a) b (c) Z" + tail, procStat{pid: 7, state: 'Z', pgrp: 2, session: 3, start: 98765}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.want.pid, []byte(tt.stat))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseProcStat = %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "42 sleep S 1", "42 (sleep) S 1 2 3"} {
		if _, err := parseProcStat(42, []byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded, want an error", bad)
		}
	}
}

func TestZombieCountsAsDead(t *testing.T) {
	for _, s := range []byte("ZXx") {
		if !(procStat{state: s}).dead() {
			t.Errorf("state %c is not dead", s)
		}
	}
	for _, s := range []byte("RSDT") {
		if (procStat{state: s}).dead() {
			t.Errorf("state %c is dead", s)
		}
	}
}

func TestEscapeSIDIsSafeAndOneToOne(t *testing.T) {
	tests := []struct {
		sid  ha.SID
		want string
	}{
		{"exec:web", "exec%3Aweb"},
		{"exec:a.b-c_d", "exec%3Aa.b-c_d"},
		{"exec:../../etc", "exec%3A..%2F..%2Fetc"},
		{"exec:a%3Ab", "exec%3Aa%253Ab"},
	}
	for _, tt := range tests {
		got, err := escapeSID(tt.sid)
		if err != nil || got != tt.want {
			t.Errorf("escapeSID(%q) = %q, %v; want %q", tt.sid, got, err, tt.want)
		}
		if strings.Contains(got, "/") {
			t.Errorf("escapeSID(%q) = %q contains a slash", tt.sid, got)
		}
	}
	if _, err := escapeSID(ha.SID("exec:" + strings.Repeat("x", 300))); err == nil {
		t.Error("escapeSID accepted a name too long for a file name")
	}
}
