package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultDiskCheckInterval is how often the agent checks that it can
// still write to its data dir when disk_check_interval is not set.
const DefaultDiskCheckInterval = time.Second

// diskProbeSize is how much a data dir probe writes and syncs: a raft
// append of a few entries must fit where the probe fits.
const diskProbeSize = 16 << 10

// diskProbeFile is the probe's file in the data dir.
const diskProbeFile = ".write-probe"

// probeDataDir writes diskProbeSize bytes to the probe file in dir, syncs
// and removes it. An error means the node cannot persist its raft log or
// its services' state there (full, read-only, failing).
func probeDataDir(dir string) error {
	p := filepath.Join(dir, diskProbeFile)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	_, werr := f.Write(make([]byte, diskProbeSize))
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	rerr := os.Remove(p)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write %d bytes to %s: %w", diskProbeSize, p, err)
	}
	if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, rerr)
	}
	return nil
}

// standDown takes the store out of raft's leadership race because of err
// (store.StandDown; idempotent).
func (a *Agent) standDown(err error) {
	if serr := a.n.store.StandDown("data dir not writable: " + err.Error()); serr != nil {
		a.log.Warn("data dir not writable: standing down from raft leadership failed; retrying", "err", serr)
	}
}

// unwritable returns why the data dir cannot be written, or "" when it
// can (as of the last probe).
func (n *node) unwritable() string {
	if s := n.diskErr.Load(); s != nil {
		return *s
	}
	return ""
}

// watchDisk probes the data dir every interval, and at once when raft
// reports a failed write, until ctx ends; a raft write that failed within
// the last interval counts as a failed probe. A node that cannot write steps
// out cleanly instead of half-working (a leader that wins elections and
// cannot commit, an LRM whose renewals sometimes pass): while the probe
// fails it renews no agent lock, so its LRM loses the lock and its guard
// fences its services; it gossips that it stepped out, so the master
// counts it offline, fences it (takes its lock once it expired) and
// recovers its services elsewhere; its CRM does not act as master; and its
// store stands down (store.StandDown): a leader hands leadership to
// another voter, and the node stops standing for raft election, so that
// the healthy nodes elect a leader among themselves once, within about a
// raft heartbeat timeout, and their renewals go on. It stands again once a
// probe succeeds and its store is in step with the leader (a read barrier
// succeeds).
func (a *Agent) watchDisk(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := probeDataDir(a.cfg.DataDir)
		if err == nil {
			// The probe is small: a nearly full disk takes it and still
			// refuses the write with which raft's log grows.
			err = a.n.store.WriteFailedWithin(interval)
		}
		was := a.n.unwritable()
		switch {
		case err != nil && was == "":
			reason := err.Error()
			a.n.diskErr.Store(&reason)
			a.log.Error("data dir not writable: stepping out (no agent lock renewals, no CRM master role, no raft leadership or candidacy) so that this node's services are recovered elsewhere", "data_dir", a.cfg.DataDir, "err", err)
			// Out of the raft race first: gossiping the tag can wait
			// seconds for its broadcast on a loaded machine, and raft
			// makes this node a candidate within a heartbeat timeout.
			a.standDown(err)
			a.publishTags()
		case err == nil && was != "":
			// Writable again. Stand for election again first: with every
			// voter out (all disks were full) no leader could answer the
			// barrier below. But raft may have failed appends meanwhile:
			// stand for the agent lock only once this node's store is in
			// step with the leader, or it would take its lock back and be
			// given services while its own reads hang.
			if serr := a.n.store.StandAgain(); serr != nil {
				a.log.Warn("data dir writable again, but standing for raft election again failed: staying out", "err", serr)
				break
			}
			bctx, cancel := context.WithTimeout(ctx, interval)
			berr := a.n.store.Barrier(bctx)
			cancel()
			if berr != nil {
				a.log.Warn("data dir writable again, but the store is not in step with the leader: staying out", "err", berr)
				break
			}
			a.n.diskErr.Store(nil)
			a.publishTags()
			a.log.Info("data dir writable again and the store in step: standing for the agent lock and leadership again", "data_dir", a.cfg.DataDir)
		}
		if err != nil {
			// Every round: a leader elected before the stand-down took
			// effect hands over again.
			a.standDown(err)
		}
		// Raft could not write: probe now, not at the next tick (once
		// out, the ticker is enough).
		var failed <-chan struct{}
		if a.n.unwritable() == "" {
			failed = a.n.store.WriteFailed()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-failed:
		}
	}
}
