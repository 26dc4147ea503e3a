#!/usr/bin/env bash
# Random-schedule benchmark of the simulator: replays RUNS random fault
# schedules (default 100000) of 3 to 29 nodes, half with the pve timing
# (even seeds) and half with the fast one (odd seeds), with the one
# invariant checked at every virtual instant, and reports runs, failures
# and time. Failing runs are written as scenario directories to
# $HAXD_SIMBENCH_DUMP (default /tmp/haxd-simbench-failures).
#
# Usage: internal/simbench/run.sh [RUNS [SEED [JOBS]]]
#   RUNS  number of schedules (default 100000)
#   SEED  seed of the first schedule; schedule i uses SEED+i (default 1)
#   JOBS  schedules replayed in parallel (default: one per CPU)
set -euo pipefail

runs=${1:-100000}
seed=${2:-1}
jobs=${3:-0}
dump=${HAXD_SIMBENCH_DUMP:-/tmp/haxd-simbench-failures}

cd "$(dirname "$0")/../.."
bin=$(mktemp /tmp/haxd-simbench.XXXXXX)
trap 'rm -f "$bin"' EXIT
go build -o "$bin" .

echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "command: haxd sim random --seed $seed --runs $runs --nodes-max 29 --timing mixed --jobs $jobs --dump $dump"
TIMEFORMAT='%R %U %S'
rc=0
{ time "$bin" sim random --seed "$seed" --runs "$runs" --nodes-max 29 --timing mixed \
    --jobs "$jobs" --dump "$dump" >"$bin.out" 2>"$bin.err" || rc=$?; } 2>"$bin.time"
grep '^FAIL' "$bin.out" || true
summary=$(tail -n 1 "$bin.out")
read -r wall user sys <"$bin.time"
failed=$(awk '/ runs, .* failed$/ {print $3}' <<<"$summary")
echo "runs: $runs ($(( (runs + 1 - seed % 2) / 2 )) pve, $(( runs - (runs + 1 - seed % 2) / 2 )) fast), failed: ${failed:-?}"
echo "wall: ${wall} s, cpu: user ${user} s + sys ${sys} s"
rm -f "$bin.out" "$bin.err" "$bin.time"
exit "$rc"
