package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"haxd/internal/invariant"
)

func TestDowntime(t *testing.T) {
	const ms = int64(time.Millisecond)
	run := func(first, last int64) invariant.Run { return invariant.Run{First: first * ms, Last: last * ms} }
	tests := []struct {
		name     string
		runs     []invariant.Run
		from, to int64
		want     time.Duration
	}{
		{"no run: all down", nil, 0, 1000, time.Second},
		{"one run covers all", []invariant.Run{run(-10, 2000)}, 0, 1000, 0},
		{"gap between two runs", []invariant.Run{run(0, 300), run(800, 1000)}, 0, 1000, 480 * time.Millisecond},
		{"overlapping runs count once", []invariant.Run{run(0, 600), run(500, 1000)}, 0, 1000, 0},
		{"run ends early", []invariant.Run{run(0, 500)}, 0, 1000, 480 * time.Millisecond},
		{"unsorted input", []invariant.Run{run(800, 1000), run(0, 300)}, 0, 1000, 480 * time.Millisecond},
		{"empty window", []invariant.Run{run(0, 300)}, 500, 500, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := downtime(tt.runs, tt.from*ms, tt.to*ms, 20*time.Millisecond); got != tt.want {
				t.Errorf("downtime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFirstElsewhere(t *testing.T) {
	runs := []invariant.Run{
		{Node: "node1", First: 10},
		{Node: "node2", First: 5}, // before the fault
		{Node: "node3", First: 40},
		{Node: "node2", First: 30},
	}
	if got := firstElsewhere(runs, "node1", 20); got == nil || got.Node != "node2" || got.First != 30 {
		t.Errorf("firstElsewhere = %+v, want node2's run at 30", got)
	}
	if got := firstElsewhere(runs[:2], "node1", 20); got != nil {
		t.Errorf("firstElsewhere = %+v, want nil", got)
	}
}

func TestParseFlags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "haxd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-haxd", bin}, ""},
		{[]string{"-haxd", bin, "-kinds", "partition,loss5", "-nodes", "5"}, ""},
		{[]string{"-haxd", bin, "-kinds", "nope"}, `unknown fault kind "nope"`},
		{[]string{"-haxd", bin, "-nodes", "2"}, `cluster size "2"`},
		{[]string{"-haxd", bin, "-nodes", "x"}, `cluster size "x"`},
		{[]string{"-haxd", bin, "-runs", "0"}, "-runs 0"},
		{[]string{"-haxd", bin, "-bound", "-1s"}, "must be positive"},
		{[]string{"-haxd", filepath.Join(t.TempDir(), "missing")}, "not an executable file"},
		{[]string{"-haxd", bin, "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKindRow(t *testing.T) {
	rs := []result{
		{kind: "partition", nodes: 3, recoveries: []time.Duration{3 * time.Second}, worstAvail: 0.9, healthyGuard: 1},
		{kind: "partition", nodes: 5, recoveries: []time.Duration{2 * time.Second, 4 * time.Second}, worstAvail: 0.8, overlaps: 1},
		{kind: "partition", nodes: 3, skipped: "no iptables"},
	}
	got := kindRow("partition", rs)
	for _, want := range []string{"| partition | 2 (1×3n, 1×5n) | 1 | 1 (1/0) |", "80.0%", "2.00 / 3.00 / 4.00 s"} {
		if !strings.Contains(got, want) {
			t.Errorf("row %q lacks %q", got, want)
		}
	}
	if got := kindRow("asym", []result{{kind: "asym", skipped: "no iptables"}}); !strings.Contains(got, "not tested: no iptables") {
		t.Errorf("row of a skipped kind = %q", got)
	}
}
