#!/bin/sh
# Installs the Debian packages named on the command line, and nothing when all
# of them are present already (make deps must be an idempotent no-op).
set -eu
missing=""
for p in "$@"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "moonwire: missing Debian packages:$missing (run make deps as root)" >&2
	exit 1
fi
echo "moonwire: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
