#!/bin/sh
# make demo: shows moonwire running the programs in scripts/ through the real
# supervisor/worker path, with the grants each one needs, and one hostile
# program being stopped.  (The XMPP path joins this demo with the agent.)
set -eu
MW=${1:?usage: demo.sh path/to/moonwire}
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/logs" "$tmp/state"
i=1
while [ $i -le 40 ]; do
	echo "$(date -u +%Y-%m-%dT%H:%M:%S) demo[$$]: event $i" >> "$tmp/logs/app.log"
	i=$((i + 1))
done
cat > "$tmp/policy" <<POLICY
command true-check /bin/true
profile default
  read $tmp/logs
  exec true-check
  sys
  kv
POLICY

show() {
	echo
	echo "\$ moonwire run $*"
	"$MW" run --policy "$tmp/policy" --state "$tmp/state" "$@" || echo "(exit status $?)"
}

echo "== moonwire demo: programs from scripts/ through the sandbox =="
show "$top/scripts/hello.lua"
[ -f "$top/scripts/system-status.lua" ] && show "$top/scripts/system-status.lua"
[ -f "$top/scripts/disk-report.lua" ] && show "$top/scripts/disk-report.lua"
[ -f "$top/scripts/log-tail.lua" ] && \
	sed "s#/var/log/syslog#$tmp/logs/app.log#" "$top/scripts/log-tail.lua" > "$tmp/log-tail.lua" && \
	show "$tmp/log-tail.lua"
[ -f "$top/scripts/counter.lua" ] && show "$top/scripts/counter.lua" && show --json "$top/scripts/counter.lua"
echo
echo "== a hostile program is stopped, and the sandbox keeps serving =="
printf 'while true do pcall(function() while true do end end) end\n' > "$tmp/spin.lua"
show --instructions 5000000 "$tmp/spin.lua"
printf 'return fs.read("/etc/shadow")\n' > "$tmp/steal.lua"
show "$tmp/steal.lua"
echo
echo "demo finished"
