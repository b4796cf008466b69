#!/bin/sh
# Installs the Debian packages named on the command line, and nothing when all
# of them are present already (make deps must be an idempotent no-op).
set -eu
missing=""
native=$(dpkg --print-architecture)
for p in "$@"; do
	case "$p" in *:*) arch=${p#*:} ;; *) arch=$native ;; esac
	# With a foreign architecture enabled (make cross), a library can be
	# installed once per architecture: only the one asked for counts
	# (PKG means the native one, PKG:ARCH that one; "all" fits either).
	dpkg-query -W -f='${Architecture} ${db:Status-Status}\n' "$p" 2>/dev/null |
		grep -Eqx "($arch|all) installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "moonwire: missing Debian packages:$missing (run make deps as root)" >&2
	exit 1
fi
echo "moonwire: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# No daemon may start from the install (ejabberd, prosody): the tests run
# private servers on free loopback ports; policy-rc.d 101 forbids starts.
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=yes
fi
rc=0
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
[ "$own_policy" = yes ] && rm -f "$policy"
[ "$rc" = 0 ] || exit "$rc"
# ...and should a system ejabberd run anyway, stop and disable it.
for svc in ejabberd; do
	case " $missing " in *" $svc "*) ;; *) continue ;; esac
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done
