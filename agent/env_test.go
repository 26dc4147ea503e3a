package agent

import (
	"log/slog"
	"testing"
	"time"

	"haxd/clock"
	"haxd/ha"
)

// TestAgentLockGrantIsTheFeedersValidity: the validity the LRM gets with
// its lock (ha.LockGrant.ValidUntil) and the one the watchdog feeder goes
// by (node.validUntil) are one value, the send time plus lock_validity.
func TestAgentLockGrantIsTheFeedersValidity(t *testing.T) {
	tests := []struct {
		name      string
		timing    ha.Timing
		lock      string
		wantGrant bool // a non-zero ValidUntil
		wantFeed  bool // the feeder's validity set
	}{
		{"own lock, fast profile", ha.FastTiming(), "n1", true, true},
		{"own lock, pve profile (no validity)", ha.PVETiming(), "n1", false, true},
		{"another node's lock (the master's proof)", ha.FastTiming(), "n2", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := newTestBackend(t)
			log := slog.New(slog.DiscardHandler)
			n := &node{name: "n1", store: s, log: log, cfg: &Config{Timing: tt.timing}, fencer: &fencer{}, clock: clock.System{}, base: time.Now().Add(-time.Second)}
			e := newEnv(n, "lrm", nil)
			sent := time.Now()
			g, ok := e.AcquireAgentLock(tt.lock)
			answered := time.Now()
			if !ok {
				t.Fatal("acquisition failed")
			}
			v := tt.timing.LockValidity
			if got := !g.ValidUntil.IsZero(); got != tt.wantGrant {
				t.Fatalf("grant %v, want a validity: %v", g.ValidUntil, tt.wantGrant)
			}
			if got := n.validUntil.Load() != 0; got != tt.wantFeed {
				t.Fatalf("feeder's validity set: %v, want %v", got, tt.wantFeed)
			}
			if !tt.wantFeed {
				return
			}
			feeder := n.base.Add(time.Duration(n.validUntil.Load()))
			if feeder.Before(sent.Add(v)) || feeder.After(answered.Add(v)) {
				t.Errorf("feeder's validity ends %v after the call started, want lock_validity (%v) after the send", feeder.Sub(sent), v)
			}
			if tt.wantGrant && !g.ValidUntil.Equal(feeder) {
				t.Errorf("grant ends at %v, feeder's validity at %v: want one value", g.ValidUntil, feeder)
			}
		})
	}
}

// TestLRMStoreOperationsEndWithinTheLockValidity: an LRM round never waits
// on the store longer than its lock validity (a cut-off LRM logs its lost
// lock promptly); the CRM, and an LRM without a validity (pve), wait up to
// the lock TTL, at most 5 s.
func TestLRMStoreOperationsEndWithinTheLockValidity(t *testing.T) {
	long := ha.FastTiming()
	long.LockTTL = 20 * time.Second
	tests := []struct {
		name   string
		role   string
		timing ha.Timing
		want   time.Duration
	}{
		{"lrm, fast profile: the validity", "lrm", ha.FastTiming(), ha.FastTiming().LockValidity},
		{"crm, fast profile: the TTL", "crm", ha.FastTiming(), ha.FastTiming().LockTTL},
		{"lrm, pve profile (no validity): 5 s", "lrm", ha.PVETiming(), 5 * time.Second},
		{"crm, long TTL: 5 s", "crm", long, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &node{name: "n1", log: slog.New(slog.DiscardHandler), cfg: &Config{Timing: tt.timing}}
			if got := newEnv(n, tt.role, nil).opTimeout(); got != tt.want {
				t.Errorf("opTimeout = %v, want %v", got, tt.want)
			}
		})
	}
}
