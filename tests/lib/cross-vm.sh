#!/bin/sh
# Runs the unit tests that need the target's kernel (test_sandbox: the real
# supervisor, workers and seccomp filter) in a throwaway VM of the target
# architecture, where qemu-user cannot (make cross-vm; README, "Building
# for arm64").  The VM is qemu-system in TCG (no KVM across
# architectures), Debian's own kernel for the target (its "cloud" flavour,
# made for VMs; downloaded with apt-get download into BUILD/vm, once, never
# installed), and an initramfs holding only a static init
# (cross-vm-init.c), the test binaries, moonwire and moonwire-zygote, their shared libraries
# and spec/sandbox.md.  Nothing is written outside BUILD/vm.
#
# Usage: cross-vm.sh BUILD-DIR DEBIAN-ARCH [TEST...]   (default: test_filter test_sandbox)
set -eu
build=$1
arch=$2
shift 2
tests=${*:-test_filter test_sandbox}
top=$(cd "$(dirname "$0")/../.." && pwd)
limit=${CROSS_VM_TIMEOUT:-900}

case "$arch" in
arm64)
	triplet=aarch64-linux-gnu
	qemu="qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2 -m 1024"
	console=ttyAMA0
	kernel_pkg=linux-image-cloud-arm64
	;;
*)
	echo "cross-vm: no VM for $arch" >&2
	exit 1
	;;
esac
for t in "$triplet-gcc" cpio "${qemu%% *}"; do
	command -v "$t" >/dev/null || { echo "cross-vm: $t missing (make cross-deps ARCH=$arch installs it)" >&2; exit 1; }
done

vm=$build/vm
mkdir -p "$vm"

# The kernel: the package the metapackage points at today, for the target.
deb=$(ls "$vm"/linux-image-*_"$arch".deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
	pkg=$(apt-cache depends "$kernel_pkg:$arch" | awk '/Depends: linux-image-/ { print $2; exit }')
	pkg=${pkg%%:*}
	[ -n "$pkg" ] || { echo "cross-vm: apt knows no $kernel_pkg:$arch (make cross-deps ARCH=$arch runs apt-get update)" >&2; exit 1; }
	echo "cross-vm: downloading $pkg"
	(cd "$vm" && apt-get download -q "$pkg:$arch" >/dev/null)
	deb=$(ls "$vm"/linux-image-*_"$arch".deb | head -n 1)
fi
rm -rf "$vm/kernel" "$vm/root"
dpkg-deb -x "$deb" "$vm/kernel"
vmlinuz=$(ls "$vm"/kernel/boot/vmlinuz-* | head -n 1)

# The initramfs.
root=$vm/root
mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root/sys" "$root/lib/$triplet" \
	"$root/mw/tests" "$root/mw/spec"
"$triplet-gcc" -static -O2 -Wall -Wextra -Werror -Wformat=2 -o "$root/init" \
	"$top/tests/lib/cross-vm-init.c"
cp "$build/moonwire" "$build/moonwire-zygote" "$root/mw/"
for t in $tests; do
	[ -x "$build/tests/$t" ] || { echo "cross-vm: no $build/tests/$t" >&2; exit 1; }
	cp "$build/tests/$t" "$root/mw/tests/"
done
cp "$top/spec/sandbox.md" "$root/mw/spec/"
# Shared libraries, as the target's loader resolves them (under qemu-user,
# from the multiarch root).
loader=$(readelf -l "$build/moonwire" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
cp -L "$loader" "$root/lib/"
for b in "$root"/mw/moonwire "$root"/mw/moonwire-zygote "$root"/mw/tests/*; do
	"qemu-${triplet%%-*}" "$loader" --list "$b" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do cp -L "$lib" "$root/lib/$triplet/"; done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 > "$vm/initrd.gz"

echo "cross-vm: booting $(basename "$vmlinuz") ($arch, TCG) with:$(for t in $tests; do printf ' %s' "$t"; done)"
log=$vm/console.log
rc=0
# shellcheck disable=SC2086
timeout "$limit" $qemu -nographic -no-reboot -nic none -kernel "$vmlinuz" \
	-initrd "$vm/initrd.gz" -append "console=$console panic=-1 quiet" </dev/null >"$log" 2>&1 || rc=$?
# The console, without the kernel's own lines.
grep -v '^\[ *[0-9]*\.[0-9]*\]' "$log" | tr -d '\r' || true
if [ "$rc" != 0 ]; then
	echo "cross-vm: qemu ended with status $rc (124: the VM ran past ${limit} s); console: $log" >&2
	exit 1
fi
failed=""
for t in $tests; do
	r=$(tr -d '\r' < "$log" | sed -n "s/^cross-vm: result $t //p")
	[ "$r" = "exit 0" ] || failed="$failed $t(${r:-no result})"
done
if [ -n "$failed" ]; then
	echo "cross-vm: FAILED in the $arch VM:$failed (console: $log)" >&2
	exit 1
fi
echo "cross-vm: $tests passed in the $arch VM"
