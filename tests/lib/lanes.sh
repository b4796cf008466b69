#!/bin/sh
# Runs make test's passes in two lanes side by side.  Run one after
# another the passes used about a quarter of this 2-core machine (45 min of
# wall time for 22 min of CPU): they mostly wait on servers, round trips
# and the timeouts the tests exercise.  Each lane is a list of make targets
# run in order and stopping at the first failure; both lanes always run to
# their end, so one failing pass does not hide the other lane's result.
#
# Lanes must not share anything a test assumes is its own: every suite
# starts its own servers on free ports in temporary directories, and the
# process markers the tests look for carry the test process's pid.  The one
# machine-wide change, the system user `make deployed` creates, is made
# before the lanes start (test_deb compares /etc/passwd before and after).
#
# Output: every line live, prefixed with its lane's name; at the end, each
# failed pass's whole log again without prefixes, then the totals.
#
# usage: lanes.sh NAME1 "TARGET..." NAME2 "TARGET..."   (MAKE from the caller)
set -u
[ $# -eq 4 ] || { echo "usage: lanes.sh NAME1 TARGETS1 NAME2 TARGETS2" >&2; exit 2; }
MAKE=${MAKE:-make}
dir=$(mktemp -d "${TMPDIR:-/tmp}/mw-lanes.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'kill 0; exit 130' INT TERM

# lane NAME TARGETS: the targets in order; writes NAME.rc (0 or the failed
# pass's status), NAME.summary, and each pass's log to NAME.TARGET.log.
lane() {
	name=$1 targets=$2 rc=0
	for t in $targets; do
		start=$(date +%s)
		echo "== [$name] $t: started $(date +%T)"
		( $MAKE --no-print-directory "$t" 2>&1; echo $? >"$dir/$name.$t.rc" ) |
			tee "$dir/$name.$t.log" | sed -u "s/^/[$name] /"
		st=$(cat "$dir/$name.$t.rc")
		secs=$(( $(date +%s) - start ))
		if [ "$st" -eq 0 ]; then
			echo "[$name] $t: passed in ${secs} s" >>"$dir/$name.summary"
		else
			echo "[$name] $t: FAILED (status $st) after ${secs} s" >>"$dir/$name.summary"
			echo "$t" >>"$dir/failed"
			rc=$st
			break
		fi
	done
	echo "$rc" >"$dir/$name.rc"
	echo "== [$name] lane done $(date +%T)"
}

lane "$1" "$2" &
p1=$!
lane "$3" "$4" &
p2=$!
wait "$p1"
wait "$p2"

status=0
if [ -s "$dir/failed" ]; then
	for n in "$1" "$3"; do
		for f in "$dir/$n".*.log; do
			t=${f#"$dir/$n."}; t=${t%.log}
			[ "$(cat "$dir/$n.$t.rc" 2>/dev/null)" = 0 ] && continue
			echo
			echo "================ $t (lane $n) failed: its whole log ================"
			cat "$f"
		done
	done
fi
echo
echo "================ lanes ================"
for n in "$1" "$3"; do
	cat "$dir/$n.summary" 2>/dev/null
	r=$(cat "$dir/$n.rc" 2>/dev/null || echo 1)
	[ "$r" = 0 ] || status=1
done
exit $status
