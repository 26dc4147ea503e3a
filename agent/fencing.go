package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"haxd/fencedev"
	"haxd/ha"
	"haxd/store"
)

// deviceFencer runs the fence device jobs of this node's CRM while it is master:
// at most one job per node, for one lock index of that node's agent lock
// and one leadership term. The CRM polls it through env.FenceNode once per
// round; the job itself (fence agents, seconds) runs in a goroutine.
type deviceFencer struct {
	runner *fencedev.Runner
	life   context.Context
	log    *slog.Logger

	// wake is signalled when a job ends, so that the CRM runs its next
	// round at once instead of up to a crm_round later.
	wake chan struct{}

	mu   sync.Mutex
	jobs map[string]*fenceJob
}

// fenceJob is one attempt at fencing one node.
type fenceJob struct {
	lockIndex uint64
	term      uint64
	cancel    context.CancelFunc

	// Guarded by deviceFencer.mu.
	done     bool
	res      fencedev.Result
	recorded bool // the confirmation is in the store
	refused  bool // the store refused the confirmation for good
	reported bool // the failure was logged
}

// newDeviceFencer reads and checks the fence config at path; nil when path is
// empty.
func newDeviceFencer(life context.Context, path string, opts fencedev.Options, log *slog.Logger) (*deviceFencer, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fence_config: %w", err)
	}
	cfg, err := fencedev.Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("fence_config: %w", err)
	}
	r, err := fencedev.NewRunner(cfg, opts, nil, log)
	if err != nil {
		return nil, fmt.Errorf("fence_config %s: %w", path, err)
	}
	log.Info("fence devices configured", "file", path, "devices", len(cfg.Devices), "nodes", cfg.Nodes())
	return &deviceFencer{runner: r, life: life, log: log, jobs: map[string]*fenceJob{}, wake: make(chan struct{}, 1)}, nil
}

// FenceNode (ha.Env) starts and follows the fence job of node. Only the
// master CRM fences, and only a node that still holds its own agent lock:
// a free lock or one the master already took needs no proof.
func (e *env) FenceNode(node string) ha.FenceResult {
	f := e.n.devices
	if e.role != "crm" || f == nil || e.term == 0 || !f.runner.Connected(node) {
		return ha.FenceResult{Status: ha.FenceNone}
	}
	cur, held := e.n.store.Lock(store.AgentLock(node))
	if !held || cur.Owner != node {
		return ha.FenceResult{Status: ha.FenceNone}
	}
	return f.step(e, node, cur.Index)
}

func (f *deviceFencer) step(e *env, node string, lockIndex uint64) ha.FenceResult {
	f.mu.Lock()
	j := f.jobs[node]
	if j == nil || j.lockIndex != lockIndex || j.term != e.term {
		if j != nil {
			j.cancel()
		}
		ctx, cancel := context.WithCancel(f.life)
		j = &fenceJob{lockIndex: lockIndex, term: e.term, cancel: cancel}
		f.jobs[node] = j
		f.mu.Unlock()
		f.log.Info("fencing node through its fence devices", ha.KeyNode, node, "lock_index", lockIndex, "term", e.term)
		go func() {
			res := f.runner.Fence(ctx, node)
			f.mu.Lock()
			j.done, j.res = true, res
			f.mu.Unlock()
			select {
			case f.wake <- struct{}{}:
			default:
			}
		}()
		return ha.FenceResult{Status: ha.FencePending}
	}
	done, res, recorded, refused := j.done, j.res, j.recorded, j.refused
	f.mu.Unlock()
	switch {
	case !done:
		return ha.FenceResult{Status: ha.FencePending}
	case recorded:
		return ha.FenceResult{Status: ha.FenceConfirmed, Device: res.Device}
	case refused || !res.Confirmed:
		detail := "the store refused the confirmation"
		if !res.Confirmed {
			detail = res.Err.Error()
		}
		f.mu.Lock()
		report := !j.reported
		j.reported = true
		f.mu.Unlock()
		if report {
			f.log.Warn("no fence device confirmed the node off: waiting for its agent lock TTL instead", ha.KeyNode, node, "why", detail)
		}
		return ha.FenceResult{Status: ha.FenceFailed, Detail: detail}
	}
	ctx, cancel := e.ctx()
	err := e.n.store.ConfirmFence(ctx, e.term, node, res.Device, lockIndex, res.Time)
	cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		j.recorded = true
		f.log.Info("fence device confirmed the node off: recorded as proof of fencing", ha.KeyNode, node, "device", res.Device,
			"lock_index", lockIndex, "term", e.term, "confirmed_at", res.Time.Format(time.RFC3339Nano))
		return ha.FenceResult{Status: ha.FenceConfirmed, Device: res.Device}
	case errors.Is(err, store.ErrLockConflict) || errors.Is(err, store.ErrStaleTerm):
		// The node renewed its lock after the master looked (it was alive
		// then), or this master was deposed: the confirmation proves
		// nothing. A new lock index or term starts a new job.
		j.refused = true
		f.log.Warn("fence confirmation refused by the store: waiting for the agent lock TTL instead", ha.KeyNode, node, "err", err)
		return ha.FenceResult{Status: ha.FenceFailed, Detail: err.Error()}
	default:
		f.log.Debug("recording the fence confirmation failed; retrying next round", ha.KeyNode, node, "err", err)
		return ha.FenceResult{Status: ha.FencePending}
	}
}

// woken returns the channel signalled when a job ends; nil (never ready)
// without fence devices.
func (f *deviceFencer) woken() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.wake
}

// stop cancels every running job.
func (f *deviceFencer) stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		j.cancel()
	}
}
