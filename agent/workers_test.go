package agent

import (
	"context"
	"testing"
	"time"

	"haxd/ha"
)

func TestWorkersReportResults(t *testing.T) {
	w := newWorkers(context.Background(), 2)
	release := make(chan struct{})
	w.Start("exec:a", func(context.Context) ha.ExitCode { <-release; return ha.ExitSuccess })
	w.Start("exec:b", func(context.Context) ha.ExitCode { panic("agent bug") })
	if w.Max() != 2 {
		t.Fatalf("Max = %d", w.Max())
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.Running() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("panicking job never finished")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	got := map[ha.SID]ha.ExitCode{}
	for len(got) < 2 && time.Now().Before(deadline) {
		for k, v := range w.Finished() {
			got[k] = v
		}
		time.Sleep(time.Millisecond)
	}
	if got["exec:a"] != ha.ExitSuccess || got["exec:b"] != ha.ExitError {
		t.Fatalf("results = %v, want a=0 b=1", got)
	}
	if len(w.Finished()) != 0 || w.Running() != 0 {
		t.Fatal("results reported twice or jobs left running")
	}
}
