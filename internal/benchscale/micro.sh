#!/usr/bin/env bash
# Re-runs haxd's micro-benchmarks (docs/benchmarks.md: simulator replay,
# CRM manage round, placement) on the code of this checkout, with the
# commands of docs/benchmarks.md, and prints the commit, the load average
# before and after each, and go test's benchmark lines (ns/op, B/op,
# allocs/op). COUNT runs of each (default 3); compare medians.
#
# Usage: internal/benchscale/micro.sh [COUNT]
set -euo pipefail

count=${1:-3}
case $count in
'' | *[!0-9]* | 0) echo "micro.sh: COUNT '$count': expected an integer >= 1" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
echo "commit $(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown), $(nproc) CPUs, $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%dT%H:%MZ)"

run() {
	echo
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "command: $*"
	"$@" | grep -E '^(Benchmark|ok|FAIL|---)' || { echo "micro.sh: '$*' failed" >&2; exit 1; }
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

run go test -run '^$' -bench BenchmarkReplayPVETests -benchtime 3x -count "$count" ./sim
run go test -run '^$' -bench 'BenchmarkManageRound$|BenchmarkManageRoundBasic$|BenchmarkManageRoundRules' -benchtime 1s -benchmem -count "$count" ./crm
run go test -run '^$' -bench 'BenchmarkSelect2000|BenchmarkAutoRebalance|BenchmarkRound2000' -benchtime 1s -benchmem -count "$count" ./crm/placement

# The simulator replay, one process per scenario (the second row of the
# simulator table).
bin=$(mktemp /tmp/haxd-micro.XXXXXX)
trap 'rm -f "$bin"' EXIT
go build -o "$bin" .
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: for d in ../shared/pve-tests/test-*/; do haxd sim run --log-format pve --quiet \$d; done"
if [ -d ../shared/pve-tests ]; then
	TIMEFORMAT='%R s wall, %U s user, %S s sys'
	time (for d in ../shared/pve-tests/test-*/; do "$bin" sim run --log-format pve --quiet "$d" >/dev/null; done)
else
	echo "skipped: ../shared/pve-tests not found"
fi
