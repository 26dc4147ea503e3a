package lrm

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"haxd/ha"
)

// job is one queued or running resource action.
type job struct {
	sid ha.SID
	// uid is the request UID; empty for the stop jobs of a node shutdown.
	uid   string
	state ha.ServiceState
	// target and timeout are the request parameters (sd.target,
	// sd.timeout).
	target  string
	timeout *int
	// tries counts the scheduling passes that saw the job queued; jobs
	// seen more often start first.
	tries int
	// running is set once the job was handed to a concurrent worker.
	running bool
	// thenStop is a node-shutdown stop job that arrived while this job was
	// running; it is queued as soon as this job finishes. Dropping it (as
	// for ordinary requests) would let the LRM release its lock with the
	// service still running, and the CRM recover it elsewhere.
	thenStop *job
}

// manageResources queues the requests of the services on this node and runs
// the workers (§4.6). It returns the number of jobs still queued or running.
func (l *LRM) manageResources() int {
	for _, sid := range slices.Sorted(maps.Keys(l.restartTries)) {
		if _, ok := l.services[sid]; !ok {
			delete(l.restartTries, sid)
		}
	}
	// Only this node's services, in SID order (sorting every service of
	// the cluster on every node each round is what a large cluster pays).
	var mine []ha.SID
	for sid, sd := range l.services {
		if sd != nil && sd.Node == l.node && sd.UID != "" {
			mine = append(mine, sid)
		}
	}
	slices.Sort(mine)
	for _, sid := range mine {
		sd := l.services[sid]
		switch sd.State {
		case ha.StateRecovery, ha.StateFreeze, ha.StateRequestStart:
			// recovery: the master decides first; freeze: hands off;
			// request_start: the master may still pick a better node.
			continue
		}
		l.queue(sid, sd.UID, sd.State, sd.Target, sd.Timeout)
	}
	return l.runWorkers()
}

// queue adds a request to the worker queue (queue_resource_command): each
// UID is executed once except for stopped, which is re-checked every round;
// a running job for the SID is never replaced, a queued one is.
func (l *LRM) queue(sid ha.SID, uid string, state ha.ServiceState, target string, timeout *int) {
	if uid != "" && state != ha.StateStopped {
		if _, done := l.results[uid]; done {
			return
		}
	}
	tries := 0
	if old := l.jobs[sid]; old != nil {
		if old.running {
			if uid == "" {
				old.thenStop = &job{sid: sid, state: state, target: target, timeout: timeout}
			}
			return
		}
		// Keep the scheduling priority of the replaced job. (Upstream
		// resets it; with inline workers the queue is always empty here,
		// so this differs only for concurrent workers.)
		tries = old.tries
	}
	var to *int
	if timeout != nil {
		t := *timeout
		to = &t
	}
	l.jobs[sid] = &job{sid: sid, uid: uid, state: state, target: target, timeout: to, tries: tries}
}

// runWorkers collects finished jobs and starts queued ones, most often
// passed-over first, then by SID, up to Workers().Max() at once (Max 0: each
// job runs inline, to completion, inside Workers().Start). Unlike upstream it
// never waits for running jobs; they are collected on later calls. It
// returns the number of jobs still queued or running.
func (l *LRM) runWorkers() int {
	n := l.startWorkers()
	l.dropStaleResults()
	return n
}

// startWorkers is runWorkers without dropping stale results.
func (l *LRM) startWorkers() int {
	w := l.env.Workers()
	maxWorkers := w.Max()
	running := l.collectFinished(w)

	var queued []*job
	for _, j := range l.jobs {
		if !j.running {
			queued = append(queued, j)
		}
	}
	if len(queued) == 0 {
		return len(l.jobs)
	}
	slices.SortFunc(queued, func(a, b *job) int {
		return cmp.Or(cmp.Compare(b.tries, a.tries), cmp.Compare(a.sid, b.sid))
	})

	resources, err := l.env.ReadResources()
	if err != nil {
		l.log.Error(fmt.Sprintf("got unexpected error - %v", err))
		return len(l.jobs)
	}
	for _, j := range queued {
		j.tries++
		if maxWorkers > 0 && running >= maxWorkers {
			continue
		}
		if l.lockLapsed() {
			// Never start an action once the lock may be gone.
			continue
		}
		run := l.newAction(j, resources[j.sid])
		if maxWorkers == 0 {
			var code ha.ExitCode
			ran := false
			w.Start(j.sid, func(ctx context.Context) ha.ExitCode {
				code = run(ctx)
				ran = true
				return code
			})
			if ran {
				l.finish(j, code)
				continue
			}
			// The Workers implementation did not run the job inline after
			// all; collect it like a concurrent one.
			j.running = true
			continue
		}
		j.running = true
		running++
		w.Start(j.sid, run)
	}
	if maxWorkers == 0 {
		// Inline results were handled above; drop their copies.
		w.Finished()
	}
	return len(l.jobs)
}

// collectFinished records the jobs that completed since the last call, in
// SID order, and returns the number still running.
func (l *LRM) collectFinished(w ha.Workers) int {
	done := w.Finished()
	for _, sid := range slices.Sorted(maps.Keys(done)) {
		if j := l.jobs[sid]; j != nil && j.running {
			l.finish(j, done[sid])
		}
	}
	n := 0
	for _, j := range l.jobs {
		if j.running {
			n++
		}
	}
	return n
}

// finish records the outcome of a job (resource_command_finished,
// stop_command_finished).
func (l *LRM) finish(j *job, code ha.ExitCode) {
	delete(l.jobs, j.sid)
	if j.thenStop != nil {
		l.jobs[j.sid] = j.thenStop
	}
	if code < 0 {
		l.log.Error(fmt.Sprintf("resource agent %s finished - failed to execute", j.sid), ha.KeySID, string(j.sid))
		code = -1
	}
	if j.uid == "" {
		if code != ha.ExitSuccess {
			l.shutdownErrors++
			delete(l.shutdownStopped, j.sid)
		} else {
			l.shutdownStopped[j.sid] = true
		}
		return
	}
	// Any request after a shutdown stop may have started the service again.
	delete(l.shutdownStopped, j.sid)
	code = l.restartPolicy(j.sid, j.state, code)
	if code == ha.ExitTryAgain {
		// Tell nobody: the same UID is queued again next round.
		return
	}
	l.results[j.uid] = ha.LRMResult{SID: j.sid, State: j.state, ExitCode: code}
	l.pruneResults = true
}

// dropStaleResults forgets the results of requests that are no longer any
// service's current one, once after the jobs of a pass finished.
func (l *LRM) dropStaleResults() {
	if !l.pruneResults {
		return
	}
	l.pruneResults = false
	valid := make(map[string]bool, len(l.services))
	for _, sd := range l.services {
		if sd != nil && sd.UID != "" {
			valid[sd.UID] = true
		}
	}
	for uid := range l.results {
		if !valid[uid] {
			delete(l.results, uid)
		}
	}
}

// restartPolicy applies the LRM restart policy to the outcome of a started
// request (§7.1): a failed start is retried max_restart times on this node
// (ETRY_AGAIN) before ERROR is reported.
func (l *LRM) restartPolicy(sid ha.SID, state ha.ServiceState, code ha.ExitCode) ha.ExitCode {
	if state != ha.StateStarted {
		return code
	}
	switch code {
	case ha.ExitSuccess:
		l.restartTries[sid] = 0
	case ha.ExitError:
		maxRestart := 0
		resources, err := l.env.ReadResources()
		if err != nil {
			l.log.Error(fmt.Sprintf("got unexpected error - %v", err))
		} else if cd := resources[sid]; cd != nil {
			maxRestart = cd.MaxRestart
		}
		tries := l.restartTries[sid]
		if tries >= maxRestart {
			l.log.Error(fmt.Sprintf("unable to start service %s on local node after %d retries", sid, tries), ha.KeySID, string(sid))
			l.restartTries[sid] = 0
			return ha.ExitError
		}
		tries++
		l.restartTries[sid] = tries
		l.log.Warn(fmt.Sprintf("restart policy: retry number %d for service '%s'", tries, sid), ha.KeySID, string(sid))
		return ha.ExitTryAgain
	}
	return code
}
