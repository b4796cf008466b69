#!/bin/sh
# gen.sh: regenerates the legacy-OMEMO upgrade fixture (gen_fixture.c says
# what is in it) with an OLD moonwire build, the release that linked
# libsignal-protocol-c.  Usage:
#   git -C /work/main worktree add --detach /tmp/mw-old a6ecce2   (or any copy)
#   make -C /tmp/mw-old all
#   tests/unit/data/omemo-legacy/gen.sh /tmp/mw-old a6ecce2
# The committed files were made this way from main at a6ecce2 against
# libsignal-protocol-c 2.3.3 (Debian 2.3.3-3).  Regenerating is not needed
# to run the tests; it would only replace one old-release snapshot by another.
set -eu
old=${1:?usage: gen.sh OLD_BUILT_CHECKOUT [COMMIT]}
commit=${2:-unknown}
old=$(cd "$old" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d /tmp/mw-fixture-XXXXXX)
trap 'rm -rf "$bin"' EXIT
pkgs="libstrophe libsignal-protocol-c lua5.4 libseccomp openssl sqlite3 libcjson"
# shellcheck disable=SC2046
cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
	-I"$old" $(pkg-config --cflags $pkgs) \
	-pie -fPIE -Wl,-u,curve25519_donna -Wl,--export-dynamic-symbol=curve25519_donna \
	-o "$bin/gen_fixture" "$here/gen_fixture.c" \
	"$old/build/libruntime.a" "$old/build/libomemo.a" "$old/build/libsandbox.a" \
	"$old/build/libwire.a" $(pkg-config --libs $pkgs) -lm -lcmocka
rm -f "$here"/*.db "$here"/*.xml "$here"/fixture.txt
"$bin/gen_fixture" "$here"
ver=$(dpkg-query -W -f='${Version}' libsignal-protocol-c-dev 2>/dev/null || echo '?')
{
	echo "# made by gen.sh from moonwire $commit linked against libsignal-protocol-c $ver, $(date -u +%Y-%m-%d)"
	cat "$here/fixture.txt"
} > "$bin/fx" && mv "$bin/fx" "$here/fixture.txt"
ls -l "$here"
