package sim

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"haxd/ha"
)

// TestRandomScenariosAreWellFormed checks the generator: the same seed
// gives the same files, every generated command parses, the cluster has 3
// to NodesMax nodes, and a replay never ends in a harness limitation
// ("... - not implemented") - only in success or an invariant breach.
func TestRandomScenariosAreWellFormed(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		g := Generate(seed, GenOptions{NodesMax: 5})
		again := Generate(seed, GenOptions{NodesMax: 5})
		for name, b := range g.Files {
			if !bytes.Equal(b, again.Files[name]) {
				t.Fatalf("seed %d: %s differs between two generations", seed, name)
			}
		}
		sc, err := g.Scenario()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if n := len(sc.Nodes); n < 3 || n > 5 {
			t.Errorf("seed %d: %d nodes", seed, n)
		}
		for _, step := range sc.Steps {
			for _, c := range step {
				if c.ObjectErr != nil || c.Err != nil {
					t.Errorf("seed %d: generated a bad command %q: %v %v", seed, c.Raw, c.ObjectErr, c.Err)
				}
			}
		}
		res, err := Run(sc, Options{Timing: ha.FastTiming(), Seed: seed, Concurrent: true})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if res.Err != nil && !errors.Is(res.Err, ErrInvariant) {
			t.Errorf("seed %d: harness error %v", seed, res.Err)
		}
	}
}

// TestRandomRunsKeepTheInvariant replays random fault schedules with the
// real CRM and LRM; any breach of the invariant fails with the command
// that replays it.
func TestRandomRunsKeepTheInvariant(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		g := Generate(seed, GenOptions{})
		timing := ha.FastTiming()
		if seed%2 == 0 {
			timing = ha.PVETiming()
		}
		res, err := g.Run(Options{Timing: timing, Seed: seed, Concurrent: true})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if errors.Is(res.Err, ErrInvariant) {
			t.Errorf("seed %d: %v\nreplay: haxd sim random --seed %d --runs 1 --timing mixed\ncmdlist: %s",
				seed, res.Err, seed, strings.Join(strings.Fields(g.String()), " "))
		}
	}
}
