#!/bin/sh
# Installs what `make cross ARCH=...` needs (issue 14, item 5): the Debian
# architecture itself (dpkg --add-architecture), then the cross compiler,
# the target's -dev packages of every library moonwire links (multiarch,
# into /usr/lib/<triplet>) and qemu-user to run the unit tests.  Like
# install-deps.sh, a no-op when everything is there already.
# Usage: install-cross-deps.sh DEBIAN-ARCH PACKAGE...
set -eu
arch=$1
shift
if ! { dpkg --print-architecture; dpkg --print-foreign-architectures; } | grep -qx "$arch"; then
	if [ "$(id -u)" != 0 ]; then
		echo "moonwire: Debian architecture $arch is not enabled (run make cross as root, or dpkg --add-architecture $arch)" >&2
		exit 1
	fi
	echo "moonwire: dpkg --add-architecture $arch"
	dpkg --add-architecture "$arch"
fi
# install-deps.sh runs apt-get update whenever something is missing, which
# is always the case right after adding the architecture.
exec "$(dirname "$0")/install-deps.sh" "$@"
