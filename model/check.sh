#!/usr/bin/env bash
# Checks the lock-protocol model with SPIN (see model/README.md):
#   1. the fixed protocol: an exhaustive search must end with no error;
#   2. the disarm-release bug of issue 7 (-DBUG_DISARM_RELEASE): the search
#      must find a double-active (two nodes run the service);
#   3. renewals answered from the leader's memory without verifying the
#      leadership (-DBUG_UNVERIFIED_RENEWAL): must find a double-active.
# With --all it also checks that every other BUG_* variant is found, and
# that the verified memory renewal (-DMEMORY_RENEWAL) is clean.
# Exit status non-zero when an assertion fails in (1), the search of (1) is
# incomplete, or a bug variant is NOT found.
#
# Environment: HAXD_SPIN_FAULTS (default 2) bounds the faults per run,
# HAXD_SPIN_HASH (default 26) is pan's -w (2^N hash slots).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
faults="${HAXD_SPIN_FAULTS:-2}"
hash="${HAXD_SPIN_HASH:-26}"
all=0
[ "${1:-}" = "--all" ] && all=1

command -v spin >/dev/null || { echo "model/check.sh: spin not installed (Debian package spin)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "model/check.sh: gcc not installed" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# run NAME SEARCH FLAGS...: generate, compile (SEARCH is -DBFS for a
# breadth-first search, which finds the shortest counterexample, or -DDFS)
# and run pan in its own directory;
# prints pan's summary and leaves the output in $work/NAME/out.
run() {
	local name="$1" search="$2"; shift 2
	mkdir -p "$work/$name"
	cp "$here/locks.pml" "$work/$name/"
	(
		cd "$work/$name"
		spin -a -DFAULTS="$faults" "$@" locks.pml >spin.out
		gcc -O2 -w -DSAFETY -DCOLLAPSE $search -o pan pan.c
		start=$(date +%s)
		./pan -m1000000 -w"$hash" >out 2>&1 || true
		echo "wall: $(( $(date +%s) - start )) s" >>out
	)
	grep -E "assertion violated|errors:|states, stored|transitions|total actual memory|elapsed time|Search not completed|max search depth|wall:" "$work/$name/out" | sed 's/^/  /'
}

fail=0
echo "-- fixed protocol (spin -a -DFAULTS=$faults locks.pml; pan -m1000000 -w$hash)"
run fixed -DDFS
out="$work/fixed/out"
if ! grep -q "errors: 0" "$out" || grep -qE "Search not completed|max search depth too small" "$out"; then
	echo "FAIL: the fixed protocol has an error or the search is incomplete"
	grep -A3 "assertion violated" "$out" || true
	fail=1
fi

# expect NAME PATTERN SEARCH FLAGS...: the variant must violate an
# assertion matching PATTERN (SEARCH: -DBFS or -DDFS, whichever finds it
# faster).
expect() {
	local name="$1" pat="$2" search="$3"; shift 3
	echo "-- $name (spin -a -DFAULTS=$faults $*; gcc $search)"
	run "$name" "$search" "$@"
	if ! grep -q "assertion violated" "$work/$name/out" || ! grep -qF "$pat" "$work/$name/out"; then
		echo "FAIL: $name was NOT found"
		fail=1
	fi
}
double='!((up[((i+1)%3)]||up[((i+2)%3)]))'
expect disarm-release "$double" -DBFS -DBUG_DISARM_RELEASE -DONLY_DOUBLE_ACTIVE
expect unverified-renewal "$double" -DDFS -DBUG_UNVERIFIED_RENEWAL
if [ "$all" = 1 ]; then
	# clean checks another model: run it like the fixed one.
	# One fault (a re-election) suffices for BUG_UNVERIFIED_RENEWAL; the
	# verified form is checked exhaustively at that bound (FAULTS=2 did
	# not finish in the time available, see README).
	echo "-- memory renewal, verified (spin -a -DFAULTS=1 -DMEMORY_RENEWAL locks.pml)"
	(faults=1 && run memory-renewal -DDFS -DMEMORY_RENEWAL)
	mout="$work/memory-renewal/out"
	if ! grep -q "errors: 0" "$mout" || grep -qE "Search not completed|max search depth too small" "$mout"; then
		echo "FAIL: the verified memory renewal has an error or the search is incomplete"
		grep -A3 "assertion violated" "$mout" || true
		fail=1
	fi
	expect release-loss "assertion violated" -DBFS -DBUG_RELEASE_LOSS
	expect arm-after-acquire "assertion violated" -DBFS -DBUG_ARM_AFTER_ACQUIRE
	expect late-start "assertion violated" -DBFS -DBUG_LATE_START
	expect stale-view "$double" -DDFS -DBUG_STALE_VIEW
	expect steal-unchecked "assertion violated" -DDFS -DBUG_STEAL_UNCHECKED
	# BUG_STALE_FEED needs W >= 2 to show; not found within 150 s at
	# W=2, T=5 (see README), so it is not part of this check.
fi
if [ "$fail" != 0 ]; then
	echo "model/check.sh: FAILED"
	exit 1
fi
echo "model/check.sh: ok"
