#!/bin/sh
# run.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target for
# SECONDS on a scratch copy of tests/fuzz/corpus/<target> (the committed
# corpus is never written), prints executions and exec/s per target, and
# fails if any target found a crash (the reproducer is kept under
# BUILD_DIR/fuzz-artifacts/<target>/).
set -u
build=$1
secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
	set -- $(cd "$build/fuzz" && ls fuzz_* | grep -v '\.')
fi
# UBSan reports are fatal here too (the component libraries are built
# with -fno-sanitize-recover, but some checks recover regardless).
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS
status=0
summary=""
for t in "$@"; do
	bin="$build/fuzz/$t"
	work="$build/fuzz-work/$t"
	art="$build/fuzz-artifacts/$t"
	rm -rf "$work"
	mkdir -p "$work" "$art"
	seeds="$here/corpus/$t"
	[ -d "$seeds" ] || seeds=""
	log="$build/fuzz-work/$t.log"
	echo "== $t: ${secs}s"
	# -rss_limit_mb: the parsers cap their own allocations far below this.
	# FUZZ_SEED (default 1 in CI's smoke run) makes the input sequence
	# repeatable: a run can only stop earlier on a slower machine, never
	# wander somewhere else; 0 lets libFuzzer pick a fresh seed.
	"$bin" -seed="${FUZZ_SEED:-0}" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
	    -timeout=10 -max_len=131072 -artifact_prefix="$art/" \
	    "$work" $seeds >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	if [ $rc -ne 0 ]; then
		status=1
		echo "   FAILED (exit $rc): see $log and $art"
		grep -m3 -E 'ERROR: |invariant broken|runtime error' "$log" | sed 's/^/   /'
	fi
	line=$(printf '%-24s %12s execs %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" "$cov")
	echo "   $line"
	summary="$summary$line
"
done
echo "== fuzz summary (${secs}s per target)"
printf '%s' "$summary"
[ $status -eq 0 ] && echo "fuzz: all targets clean" || echo "fuzz: FAILURES"
exit $status
