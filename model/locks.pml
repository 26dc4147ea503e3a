/*
 * haxd's agent-lock protocol: a Promela model for SPIN.
 *
 * One service, N nodes, time discretised into ticks. The README maps every
 * step below to the Go function it stands for. Checked properties
 * (assertions):
 *   - never two nodes run the service (assert_single, at every start);
 *   - a steal (recovery) only with a proof of fencing: the master holds the
 *     node's lock and got it by a proof the FIXED rule accepts, and the node
 *     really runs nothing any more.
 *
 * Compile-time switches (spin -a -DNAME):
 *   BUG_DISARM_RELEASE  any free lock is a proof of fencing (the bug of
 *                       issue 7; the fixed store refuses a lock released
 *                       while its holder still ran services)
 *   BUG_RELEASE_LOSS    the LRM closes its watchdog although the release of
 *                       its lock was not confirmed (today's lrm.releaseLock
 *                       ignores the error)
 *   BUG_STALE_FEED      the guard accepts a feed whose validity already
 *                       ended (a feed decided before a SIGSTOP, sent after)
 *   BUG_LATE_START      a service start decided before a SIGSTOP runs after
 *                       the guard fenced (registration errors are ignored)
 *   BUG_STALE_VIEW      the LRM acts on its replica without catching up
 *                       after taking its lock back
 *   BUG_STEAL_UNCHECKED the store moves a service off a node without
 *                       checking that the master holds that node's lock by
 *                       a proof (today's opStealService checks term and
 *                       location only)
 *   BUG_ARM_AFTER_ACQUIRE retaking a lock released with services running
 *                       clears the "released" record at once. The LRM
 *                       opens its watchdog only after the acquisition was
 *                       answered in time (lrm.acquireLock, PVE's order),
 *                       so a committed acquisition answered late leaves
 *                       the lock held without a watchdog; the fixed store
 *                       keeps the record until a renewal sent with the
 *                       watchdog armed (store.AcquireOwnLock)
 *   BUG_UNVERIFIED_RENEWAL a leader answers a pure renewal from its memory
 *                       (no log entry) without first verifying that it
 *                       still leads, so a deposed leader answers a renewal
 *                       sent after the re-election and the current
 *                       leader's timer is not restarted (implies
 *                       MEMORY_RENEWAL)
 *   MEMORY_RENEWAL      model the renewal answered from the leader's
 *                       memory (the fixed form: answered only after a
 *                       quorum round that started after the request
 *                       arrived confirmed the leadership) and the nodes'
 *                       stale idea of who leads
 *   NO_CRM_UNPROTECTED  drop the CRM's own check (manager.unprotected), to
 *                       show that the store rule alone suffices
 *   ONLY_DOUBLE_ACTIVE  check only the double-active assertion (so that a
 *                       bug variant shows the double-active itself, not the
 *                       earlier unproven steal)
 * Timing (ticks), override with -DT=... etc.:
 *   V lock_validity, W watchdog_timeout, S self_fence_time,
 *   D clock drift margin, T lock_ttl. The model's safety inequality is
 *   V + W + S + D < T.
 */

#ifndef N
#define N 3
#endif
#ifndef V
#define V 1
#endif
#ifndef W
#define W 1
#endif
#ifndef S
#define S 0
#endif
#ifndef D
#define D 1
#endif
#ifndef T
#define T 4
#endif

/* lock owner */
#define FREE 0
#define SELF 1
#define MASTER 2
/* how a free lock became free */
#define R_NEVER 0
#define R_CLEAN 1
#define R_RUNNING 2
/* LRM state */
#define WAIT 0
#define ACTIVE 1
#define LOST 2
/* service state in the manager status */
#define STARTED 0
#define FENCE 1
#define RECOVERY 2
/* LRM release phase: 0 none, 1 lock released (or not), watchdog still
 * open, 2 watchdog closed, status not yet written */
/* ack */
#define NOACK 0
#define ACK_OK 1
#define ACK_REFUSED 2

#ifdef BUG_UNVERIFIED_RENEWAL
#define MEMORY_RENEWAL
#endif

/* ---- the replicated store (committed state) ---- */
byte owner[N];   /* agent lock of node i: FREE, SELF (node i), MASTER */
bool rel[N];     /* held by node i but still recorded as released with
                  * services running (LockInfo.Released): no proof */
byte why[N];     /* for a free lock: how it became free */
byte ttl[N];     /* leader's lock timer: ticks until a takeover is allowed */
byte drift[N];   /* fast ticks of the leader's clock since the timer restart */
bool proof[N];   /* the master holds the lock by a proof of fencing */
byte loc;        /* node of the service */
byte sst;        /* service state */
bool disarm;     /* manager status: disarm-ha in force */
bool repdis[N];  /* last stored LRM status of i: disarmed, lock released */

/* ---- the nodes ---- */
byte ls[N];      /* LRM state */
byte ph[N];      /* release phase (see above) */
bool rsn[N];     /* the release is a disarm (1) or an agent restart (0) */
bool waiting[N]; /* LRM blocked in AcquireAgentLock */
byte pend[N];    /* validity left counted from the send of that renewal */
bool req[N];     /* renewal in flight to the leader */
bool reqarm[N];  /* that renewal was sent with the watchdog armed */
#ifdef MEMORY_RENEWAL
bool stale[N];   /* node i still takes a deposed leader for the leader */
bool reqold[N];  /* the renewal in flight went to a deposed leader */
#define CLEARREQ(i) req[i] = 0; reqarm[i] = 0; reqold[i] = 0
#else
#define CLEARREQ(i) req[i] = 0; reqarm[i] = 0
#endif
byte ack[N];     /* answer in flight back */
byte valid[N];   /* the node's validity (feeder's validUntil), ticks left */
bool feedp[N];   /* a feed decided, not yet sent */
bool startp[N];  /* a service start decided, not yet done */
bool armed[N];   /* guard handle open */
bool gfenced[N]; /* the guard fenced this handle */
byte wd[N];      /* guard deadline, ticks left */
byte kill[N];    /* ticks until the guard's kill is complete, 0 = none */
bool paused[N];  /* agent process SIGSTOPped (the guard still runs) */
bool up[N];     /* ground truth: the service runs on node i */
#ifdef BUG_STALE_VIEW
/* Node i's replica, caught up at any time, not necessarily before the LRM
 * acts on it. */
byte vloc[N];    /* node i's replica: loc */
byte vsst[N];    /* node i's replica: sst */
bool vdis[N];    /* node i's replica: disarm */
#define VLOC(i) vloc[i]
#define VSST(i) vsst[i]
#define VDIS(i) vdis[i]
#else
/* The LRM reads a replica that caught up with the leader at its last
 * renewal (see the README: between two renewals within the validity the
 * service cannot move off the node), so it reads the committed state. */
#define VLOC(i) loc
#define VSST(i) sst
#define VDIS(i) disarm
#endif

/* Faults left: each SIGSTOP, crash, lost request or release, re-election,
 * disarm/arm and agent restart uses one. Slowness is free: any step may be
 * delayed by any number of ticks. */
#ifndef FAULTS
#define FAULTS 2
#endif
byte nf = FAULTS;

/* Recoveries (steals) left: the bound on failovers in one run. */
#ifndef RECOVERIES
#define RECOVERIES 1
#endif
byte nrec = RECOVERIES;

#ifdef NO_CRM_UNPROTECTED
#define UNPROTECTED(n) false
#else
#define UNPROTECTED(n) repdis[n]
#endif


#if N == 3
#define OTHERS_RUN(i) (up[((i)+1)%N] || up[((i)+2)%N])
#elif N == 4
#define OTHERS_RUN(i) (up[((i)+1)%N] || up[((i)+2)%N] || up[((i)+3)%N])
#else
#error "the model supports N = 3 or 4"
#endif
inline assert_single(i) {
	assert(!OTHERS_RUN(i));	/* never two nodes run the service */
}

/* The store's leader applies node i's pending renewal (store.acquireLocal
 * and the opLock case of fsm.apply): a free lock or the node's own is
 * granted and its timer restarted at the full TTL; a lock the master took
 * is refused until its timer ran out. A lock released with services
 * running and taken back by a request sent unarmed stays recorded as
 * released (no proof for the master) until a request sent armed. */
inline apply_renewal(i) {
	if
	:: owner[i] == MASTER && ttl[i] > 0 -> ack[i] = ACK_REFUSED
#ifdef MEMORY_RENEWAL
	/* a request that reached a deposed leader (the node's idea of the
	 * leader is stale): it cannot commit anything */
	:: reqold[i] && !(owner[i] == SELF && !rel[i]) -> ack[i] = ACK_REFUSED
	/* a pure renewal answered from that leader's memory */
#ifdef BUG_UNVERIFIED_RENEWAL
	:: reqold[i] && owner[i] == SELF && !rel[i] -> ack[i] = ACK_OK	/* the current leader's timer runs on */
#else
	:: reqold[i] && owner[i] == SELF && !rel[i] -> ack[i] = ACK_REFUSED	/* VerifyLeader fails */
#endif
	:: !reqold[i] && owner[i] == SELF && !rel[i] ->	/* the current leader, verified */
		ttl[i] = T; drift[i] = 0; ack[i] = ACK_OK
	:: !reqold[i] && !(owner[i] == MASTER && ttl[i] > 0) && !(owner[i] == SELF && !rel[i]) ->
#else
	:: else ->
#endif
#ifdef BUG_ARM_AFTER_ACQUIRE
		rel[i] = 0;
#else
		rel[i] = ((owner[i] == FREE && why[i] == R_RUNNING) || (owner[i] == SELF && rel[i])) && !reqarm[i];
#endif
		owner[i] = SELF; proof[i] = 0; ttl[i] = T; drift[i] = 0; why[i] = R_NEVER;
		ack[i] = ACK_OK
	fi;
	CLEARREQ(i);
	if :: !waiting[i] -> ack[i] = NOACK :: else -> skip fi	/* nobody waits for it */
}

/* Requests of one node reach the leader in order (one connection, one raft
 * log): before a release, a renewal still in flight is applied or lost. */
inline flush_renewal(i) {
	if
	:: req[i] -> apply_renewal(i); ack[i] = NOACK
	:: req[i] && nf > 0 -> CLEARREQ(i); nf--
	:: else -> skip
	fi
}

/* store.ReleaseLock and the opUnlock case of fsm.apply, fixed: the record
 * keeps whether the holder still ran services. ok is set when the release
 * was committed and confirmed. */
inline release(i, ok) {
	flush_renewal(i);
	if
	:: owner[i] == SELF ->
		owner[i] = FREE; ttl[i] = 0; drift[i] = 0; proof[i] = 0; rel[i] = 0;
		if
		:: up[i] -> why[i] = R_RUNNING
		:: else -> why[i] = R_CLEAN
		fi;
		ok = 1
	:: owner[i] != SELF -> ok = 0	/* refused */
	:: nf > 0 -> nf--; ok = 0	/* lost, or timed out */
	fi
}

/* A failed or refused renewal: lost_agent_lock from active. */
inline renewal_failed(i) {
	if :: ls[i] == ACTIVE -> ls[i] = LOST :: else -> skip fi
}

#define FENCED_VIEW(i) (VLOC(i) == i && VSST(i) == FENCE)
#define IDLE(i) (!waiting[i] && !feedp[i] && !startp[i] && ph[i] == 0)

/* Node i: its LRM (lrm.LRM.Step), the agent's feeder goroutine, and what
 * happens to the node (its messages, its replica, pause, crash). Every
 * option is one atomic step; a paused agent takes none of its own. */
proctype Node(byte i) {
	bool ok;
end:	do
	/* ---- LRM ---- */
	/* send a renewal or acquisition (lrm.acquireLock ->
	 * env.AcquireAgentLock -> store.AcquireLock): wait_for_agent_lock with
	 * an active service and not disarmed, active with a valid lock, or
	 * lost_agent_lock; never when the CRM wants the node fenced */
	:: atomic { !paused[i] && IDLE(i) && !req[i] && VLOC(i) == i && VSST(i) != FENCE &&
		((ls[i] == WAIT && !VDIS(i) && VSST(i) == STARTED) ||
		 (ls[i] == ACTIVE && valid[i] > 0) || ls[i] == LOST) ->
#ifdef MEMORY_RENEWAL
		reqold[i] = stale[i];
#endif
		waiting[i] = 1; pend[i] = V; req[i] = 1; reqarm[i] = armed[i]; ack[i] = NOACK }
	/* the answer within the validity (lrm.acquireLock): success opens or
	 * feeds the watchdog (WatchdogOpen / WatchdogUpdate) */
	:: atomic { !paused[i] && waiting[i] && ack[i] != NOACK && pend[i] > 0 ->
		if
		:: ack[i] == ACK_OK ->
			valid[i] = pend[i];	/* validUntil = sent + lock_validity */
			if
			:: armed[i] && !gfenced[i] -> feedp[i] = 1; ls[i] = ACTIVE
			:: armed[i] && gfenced[i] -> armed[i] = 0; gfenced[i] = 0; renewal_failed(i)
			:: !armed[i] -> armed[i] = 1; wd[i] = W; ls[i] = ACTIVE
			fi
		:: else -> renewal_failed(i)
		fi;
		ack[i] = NOACK; waiting[i] = 0; pend[i] = 0 }
	/* no answer within lock_validity: a late answer does not count */
	:: atomic { !paused[i] && waiting[i] && pend[i] == 0 ->
		waiting[i] = 0; ack[i] = NOACK; pend[i] = 0; renewal_failed(i) }
	/* the CRM wants this node fenced, or the validity ran out
	 * (lrm.transition: loseLock; lrm.lockLapsed) */
	:: atomic { !paused[i] && IDLE(i) && ls[i] == ACTIVE && (FENCED_VIEW(i) || valid[i] == 0) -> ls[i] = LOST }
	/* disarm-ha (lrm.transition, ModeDisarm, no workers): release the
	 * lock, then close the watchdog, then write the status */
	:: atomic { !paused[i] && IDLE(i) && ls[i] == ACTIVE && VDIS(i) && valid[i] > 0 ->
		release(i, ok);
#ifdef BUG_RELEASE_LOSS
		ph[i] = 1; rsn[i] = 1	/* releaseLock ignores the error */
#else
		if :: ok -> ph[i] = 1; rsn[i] = 1 :: else -> skip fi	/* keep the watchdog, retry */
#endif
	}
	/* no service on this node any more: release the lock and close the
	 * watchdog (lrm.transition, the idle case; Go renews it for
	 * lrm_idle_rounds first) */
	:: atomic { !paused[i] && IDLE(i) && ls[i] == ACTIVE && VLOC(i) != i && valid[i] > 0 ->
		release(i, ok);
#ifdef BUG_RELEASE_LOSS
		ph[i] = 1; rsn[i] = 0
#else
		if :: ok -> ph[i] = 1; rsn[i] = 0 :: else -> skip fi
#endif
	}
	/* agent restart (lrm.shutdownRound, ModeRestart, no workers): the
	 * frozen service keeps running; the old LRM closes the watchdog and
	 * releases the lock, the new LRM starts in wait_for_agent_lock */
	:: atomic { !paused[i] && IDLE(i) && ls[i] == ACTIVE && valid[i] > 0 && nf > 0 ->
		nf--;
#ifdef BUG_RELEASE_LOSS
		armed[i] = 0; gfenced[i] = 0; wd[i] = 0; kill[i] = 0;	/* closeWatchdog first */
		release(i, ok); ph[i] = 2; rsn[i] = 0
#else
		release(i, ok);
		if :: ok -> ph[i] = 1; rsn[i] = 0 :: else -> skip fi
#endif
	}
	:: atomic { !paused[i] && ph[i] == 1 ->	/* lrm.closeWatchdog */
		armed[i] = 0; gfenced[i] = 0; wd[i] = 0; kill[i] = 0; ph[i] = 2 }
	:: atomic { !paused[i] && ph[i] == 2 ->	/* wait_for_agent_lock, lrm.writeStatus (may be lost) */
		ls[i] = WAIT; valid[i] = 0; ph[i] = 0;
		if :: repdis[i] = rsn[i] :: skip fi }
	/* the LRM's status each round (lrm.writeStatus): the CRM reads
	 * "disarmed, no lock" from mode disarm in wait_for_agent_lock */
	:: atomic { !paused[i] && IDLE(i) && repdis[i] != (ls[i] == WAIT && VDIS(i)) ->
		repdis[i] = (ls[i] == WAIT && VDIS(i)) }
	/* decide to start the service (lrm.manageResources after a renewal) */
	:: atomic { !paused[i] && IDLE(i) && ls[i] == ACTIVE && valid[i] > 0 &&
		!up[i] && VLOC(i) == i && VSST(i) == STARTED -> startp[i] = 1 }
	/* the start happens (worker; OnStart -> targets.add -> Register) */
	:: atomic { !paused[i] && startp[i] ->
		startp[i] = 0;
#ifdef BUG_LATE_START
		assert_single(i); up[i] = 1; kill[i] = 0	/* registration error ignored */
#else
		if	/* registered with the guard first: refused once fenced */
		:: armed[i] && !gfenced[i] -> assert_single(i); up[i] = 1
		:: else -> skip
		fi
#endif
	}
	/* ---- feeder (node.feedWhileValid) and guard feed ---- */
	:: atomic { !paused[i] && !feedp[i] && armed[i] && !gfenced[i] && valid[i] > 0 -> feedp[i] = 1 }
	:: atomic { !paused[i] && feedp[i] ->	/* fence.Client.Feed -> Guard.command "feed" */
		feedp[i] = 0;
		if
		:: !armed[i] -> skip
		:: armed[i] && gfenced[i] -> armed[i] = 0; gfenced[i] = 0	/* err fenced: feedFailed */
#ifdef BUG_STALE_FEED
		:: armed[i] && !gfenced[i] -> wd[i] = W
#else
		:: armed[i] && !gfenced[i] && valid[i] == 0 -> skip	/* validity over: refused */
		:: armed[i] && !gfenced[i] && valid[i] > 0 -> wd[i] = W
#endif
		fi }
	/* ---- what happens to the node ---- */
	/* the leader applies the renewal (the answer may be lost), or the
	 * request is lost */
	:: atomic { req[i] -> apply_renewal(i) }
	:: atomic { req[i] && nf > 0 -> CLEARREQ(i); nf-- }
#ifdef MEMORY_RENEWAL
	/* the node learns who leads now (raft's leader address) */
	:: atomic { stale[i] -> stale[i] = 0 }
#endif
	/* the leader's clock runs fast on this lock, within the drift margin */
	:: atomic { ttl[i] > 0 && drift[i] < D -> ttl[i]--; drift[i]++ }
	/* the node's replica catches up (raft apply on a follower) */
#ifdef BUG_STALE_VIEW
	:: atomic { vloc[i] != loc || vsst[i] != sst || vdis[i] != disarm ->
		vloc[i] = loc; vsst[i] = sst; vdis[i] = disarm }
#endif
	/* SIGSTOP / SIGCONT of the agent; the guard keeps running */
	:: atomic { !paused[i] && nf > 0 -> paused[i] = 1; nf-- }
	:: atomic { paused[i] -> paused[i] = 0 }
	/* crash and reboot: everything local is gone, the replica keeps what
	 * it had persisted, the lock stays as the store has it */
	:: atomic { nf > 0 && (ls[i] != WAIT || armed[i] || up[i] || waiting[i] || paused[i] || ph[i] != 0 || startp[i] || feedp[i]) ->
		nf--;
		up[i] = 0; ls[i] = WAIT; ph[i] = 0; waiting[i] = 0; pend[i] = 0;
		CLEARREQ(i); ack[i] = NOACK; valid[i] = 0; feedp[i] = 0; startp[i] = 0;
		armed[i] = 0; gfenced[i] = 0; wd[i] = 0; kill[i] = 0; paused[i] = 0 }
	od
}

/* Time, the leader as a whole, the master CRM and the operator. */
proctype World() {
	byte i, j;
end:	do
	/* one tick of real time: every countdown runs, the guard fences a
	 * handle past its deadline (Guard.checkExpiry) and kills within
	 * self_fence_time */
	:: atomic {
		i = 0;
		do
		:: i < N ->
			if :: pend[i] > 0 -> pend[i]-- :: else -> skip fi;
			if :: valid[i] > 0 -> valid[i]-- :: else -> skip fi;
			if :: ttl[i] > 0 -> ttl[i]-- :: else -> skip fi;
			if
			:: kill[i] > 0 -> kill[i]--; if :: kill[i] == 0 -> up[i] = 0 :: else -> skip fi
			:: else -> skip
			fi;
			if
			:: armed[i] && !gfenced[i] ->
				wd[i]--;	/* an armed handle has wd > 0 */
				if
				:: wd[i] == 0 ->
					gfenced[i] = 1;
					if
					:: up[i] && S == 0 -> up[i] = 0
					:: up[i] && S > 0 -> kill[i] = S
					:: else -> skip
					fi
				:: else -> skip
				fi
			:: else -> skip
			fi;
			i++
		:: else -> break
		od;
		i = 0 }
	/* leader crash or partition and re-election: the new leader restarts
	 * every held lock's timer at the full TTL (store.restartLockTimers) */
	:: atomic { nf > 0 ->
		nf--; i = 0;
		do
		:: i < N -> if :: owner[i] != FREE -> ttl[i] = T; drift[i] = 0 :: else -> skip fi;
#ifdef MEMORY_RENEWAL
			/* every node still knows the old leader, and a request in
			 * flight went to it */
			stale[i] = 1; if :: req[i] -> reqold[i] = 1 :: else -> skip fi;
#endif
			i++
		:: else -> break
		od;
		i = 0 }
	/* the operator: disarm-ha / arm-ha (the CRM sets the manager status) */
	:: atomic { nf > 0 -> disarm = !disarm; nf-- }
	/* master CRM: the service's node is offline past the fence delay
	 * (services.go -> manager.fenceDelayed); not a node it believes
	 * disarmed (manager.unprotected), not while the stack is disarmed */
	:: atomic { !disarm && sst == STARTED && !UNPROTECTED(loc) && nrec > 0 -> sst = FENCE }
	/* master CRM: take the node's agent lock (manager.fenceNode ->
	 * env.AcquireAgentLock -> store.AcquireLock with the term) */
	:: atomic { !disarm && sst == FENCE ->
		j = loc;
		if
		:: owner[j] == SELF && ttl[j] == 0 && !rel[j] ->	/* timed out after being held */
			owner[j] = MASTER; ttl[j] = T; drift[j] = 0; proof[j] = 1; sst = RECOVERY
		:: owner[j] == MASTER -> ttl[j] = T; drift[j] = 0; sst = RECOVERY	/* a refresh */
		:: owner[j] == FREE && why[j] != R_RUNNING ->	/* never held, or released idle */
			owner[j] = MASTER; ttl[j] = T; drift[j] = 0; proof[j] = 1; sst = RECOVERY
#ifdef BUG_DISARM_RELEASE
		:: owner[j] == FREE && why[j] == R_RUNNING ->	/* any free lock counts */
			owner[j] = MASTER; ttl[j] = T; drift[j] = 0; proof[j] = 1; sst = RECOVERY
#endif
		:: else -> skip	/* refused: held and not timed out, or no proof */
		fi;
		j = 0 }
	/* master CRM: recovery, steal the service to another node
	 * (services.go: manager.recovery -> store.StealService) */
	:: atomic { sst == RECOVERY ->
		j = loc;
#ifndef BUG_STEAL_UNCHECKED
		if
		:: !(owner[j] == MASTER && proof[j]) -> sst = FENCE	/* refused: fence again */
		:: else ->
#endif
#ifndef ONLY_DOUBLE_ACTIVE
			assert(owner[j] == MASTER && proof[j]);	/* recovery only with a proof of fencing */
			assert(!up[j]);	/* ... and the node really runs nothing */
#endif
			if
			:: loc = (j + 1) % N
			:: loc = (j + 2) % N
			fi;
			sst = STARTED; nrec--
#ifndef BUG_STEAL_UNCHECKED
		fi
#endif
		; j = 0 }
	od
}

init {
	atomic {
		byte k = 0;
		loc = 0; sst = STARTED;
		do
		:: k < N -> run Node(k); k++
		:: else -> break
		od;
		run World()
	}
}
