#!/bin/sh
# make demo: the main job end to end, as an owner and an operator would do it
# by hand.  A throwaway Prosody on 127.0.0.1 (temp dir, free port), an agent
# account and an operator account, an SSH signing key, allowed_signers, a
# policy, OMEMO fingerprints verified both ways, the agent started as a
# service would be, then `moonwire send` with programs from scripts/ --
# including ones the agent refuses or stops -- and everything torn down.
set -eu
MW=${1:?usage: demo.sh path/to/moonwire}
PY=/usr/bin/python3
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/moonwire-demo.XXXXXX)
agent_pid=
fleet_pids=
cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	for p in $fleet_pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	$PY "$top/tests/lib/prosody.py" stop "$tmp/prosody" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || echo "(exit status $?)"; }

say "a throwaway XMPP server on loopback, with two accounts"
server=$($PY "$top/tests/lib/prosody.py" start "$tmp/prosody" \
	--user agent:agent-pw --user alice:alice-pw \
	--user web1:web1-pw --user web2:web2-pw --user web3:web3-pw)
port=$(echo "$server" | $PY -c 'import json,sys; print(json.load(sys.stdin)["port"])')
echo "prosody on 127.0.0.1:$port (domain localhost)"

say "the device: agent account, allowed_signers, policy"
mkdir -p "$tmp/agent/state" "$tmp/alice" "$tmp/logs"
for i in 1 2 3 4 5 6; do echo "2026-11-27T05:0$i:00 app[42]: event $i" >> "$tmp/logs/app.log"; done
ssh-keygen -q -t ed25519 -N '' -C alice@ops -f "$tmp/alice/id_ed25519"
echo "alice@ops namespaces=\"moonwire-job\" $(cat "$tmp/alice/id_ed25519.pub")" > "$tmp/agent/allowed_signers"
cat > "$tmp/agent/policy" <<EOF
command uptime /usr/bin/uptime
limits memory=32M cpu=2s wall=20s

profile ops
  read $tmp/logs
  exec uptime
  sys
  kv

allow alice@ops alice@localhost ops validity=10m
EOF
cat > "$tmp/agent/agent.conf" <<EOF
jid = agent@localhost
password = agent-pw
host = 127.0.0.1
port = $port
allow_plaintext = yes
db = $tmp/agent/identity.db
allowed_signers = $tmp/agent/allowed_signers
policy = $tmp/agent/policy
state_dir = $tmp/agent/state
EOF
cat > "$tmp/alice/alice.conf" <<EOF
jid = alice@localhost
password = alice-pw
host = 127.0.0.1
port = $port
allow_plaintext = yes
db = $tmp/alice/identity.db
signing_key = $tmp/alice/id_ed25519
EOF
cat "$tmp/agent/policy"

say "OMEMO identities, and fingerprints verified both ways"
show "$MW" fingerprint -c "$tmp/agent/agent.conf"
show "$MW" fingerprint -c "$tmp/alice/alice.conf"
fp() { "$MW" fingerprint -c "$1" | sed -n 's/^fingerprint: //p'; }
show "$MW" trust -c "$tmp/agent/agent.conf" alice@localhost "$(fp "$tmp/alice/alice.conf")"
show "$MW" trust -c "$tmp/alice/alice.conf" agent@localhost "$(fp "$tmp/agent/agent.conf")"

say "the agent starts (as systemd would run it)"
"$MW" agent -c "$tmp/agent/agent.conf" > "$tmp/agent/log" 2>&1 &
agent_pid=$!
i=0
until grep -q "moonwire-agent: connected" "$tmp/agent/log"; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 "$agent_pid" 2>/dev/null; then
		cat "$tmp/agent/log"; echo "the agent did not connect"; exit 1
	fi
	sleep 0.05
done
cat "$tmp/agent/log"

send() { show "$MW" send -c "$tmp/alice/alice.conf" --to agent@localhost --timeout 20s "$@"; }

say "alice sends signed programs from scripts/; results come back over OMEMO"
send "$top/scripts/system-status.lua"
sed "s#/var/log/syslog#$tmp/logs/app.log#" "$top/scripts/log-tail.lua" > "$tmp/log-tail.lua"
send "$tmp/log-tail.lua"
send --json "$top/scripts/counter.lua"
send --json "$top/scripts/counter.lua"

say "refused or stopped: nothing unauthorized runs, the agent keeps serving"
printf 'return fs.read("/etc/shadow")\n' > "$tmp/steal.lua"
send "$tmp/steal.lua"
printf 'while true do end\n' > "$tmp/spin.lua"
send --limit cpu=200ms "$tmp/spin.lua"
"$MW" sign -k "$tmp/alice/id_ed25519" --to agent@localhost "$top/scripts/hello.lua" \
	| sed 's/local name = "moonwire"/local name = "mallory!"/' > "$tmp/tampered.job"
echo "(an envelope whose program was changed after signing)"
send --envelope "$tmp/tampered.job"

say "a small fleet: three more agents, kept as a group in alice's roster"
wait_connected() {
	i=0
	until grep -q "moonwire-agent: connected" "$1"; do
		i=$((i + 1))
		if [ $i -gt 200 ]; then cat "$1"; echo "an agent did not connect"; exit 1; fi
		sleep 0.05
	done
}
for a in web1 web2 web3; do
	mkdir -p "$tmp/$a/state"
	cp "$tmp/agent/allowed_signers" "$tmp/$a/allowed_signers"
	cp "$tmp/agent/policy" "$tmp/$a/policy"
	sed -e "s#agent@localhost#$a@localhost#" -e "s#agent-pw#$a-pw#" \
		-e "s#$tmp/agent/#$tmp/$a/#g" "$tmp/agent/agent.conf" > "$tmp/$a/agent.conf"
	afp=$(fp "$tmp/$a/agent.conf")	# creates its identity
	"$MW" trust -c "$tmp/$a/agent.conf" alice@localhost "$(fp "$tmp/alice/alice.conf")" >/dev/null
	"$MW" trust -c "$tmp/alice/alice.conf" "$a@localhost" "$afp" >/dev/null
	"$MW" agent -c "$tmp/$a/agent.conf" > "$tmp/$a/log" 2>&1 &
	fleet_pids="$fleet_pids $!"
done
for a in web1 web2 web3; do wait_connected "$tmp/$a/log"; done
echo "(web1, web2, web3: set up as above, fingerprints verified, started)"
show "$MW" fleet add -c "$tmp/alice/alice.conf" --group web \
	web1@localhost web2@localhost web3@localhost
show "$MW" fleet list -c "$tmp/alice/alice.conf"
echo "(one job to the whole group; one result block per agent, then the summary)"
show "$MW" send -c "$tmp/alice/alice.conf" --group web --timeout 20s "$top/scripts/system-status.lua"
show "$MW" jobs -c "$tmp/alice/alice.conf" --limit 3
for p in $fleet_pids; do kill -TERM "$p"; wait "$p" || true; done
fleet_pids=

say "the agent's log: one line per event, refusals as audit lines"
kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=
cat "$tmp/agent/log"
echo
echo "demo finished: server stopped, $tmp removed"
