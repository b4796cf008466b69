#!/bin/sh
# Runs the unit tests of a cross build under qemu-user (make cross-test;
# README, "Building for arm64").  Every test binary in BUILD/tests runs,
# except the ones listed in skip_reason below, and each skip is printed with
# its reason on every run: nothing is left out silently.  A listed binary
# that no longer exists fails the run, so the list cannot go stale.
#
# The binaries run with the multiarch root as the target's root: libc6:ARCH
# puts the dynamic loader in /lib and the libraries in /usr/lib/TRIPLET,
# which the target's loader finds through /etc/ld.so.cache.
#
# Usage: cross-test.sh BUILD-DIR QEMU-BINARY
set -eu
build=$1
qemu=$2
# One binary at most this long (qemu-user is slower than native, not hung).
limit=${CROSS_TEST_TIMEOUT:-600}

if [ ! -x "$build/moonwire" ]; then
	echo "cross-test: no $build/moonwire (make cross-build ARCH=... builds it)" >&2
	exit 1
fi
command -v "$qemu" >/dev/null || { echo "cross-test: $qemu missing (make cross-deps installs qemu-user)" >&2; exit 1; }

# Every binary skip_reason names.
skipped_list="test_sandbox"

skip_reason() {
	case "$1" in
	test_sandbox)
		# Checked with qemu-aarch64 7.2 (Debian 12): the guest's seccomp(2)
		# is ENOSYS and prctl(PR_SET_SECCOMP) is EINVAL, by design (a
		# guest filter would be applied to the host's, i.e. x86-64,
		# syscalls of qemu itself).
		echo "drives the real supervisor and workers, which need a kernel that runs the" \
		     "target's seccomp filter: under qemu-user the guest has no seccomp(2)" \
		     "(ENOSYS), so libseccomp finds API level 1 (no KILL_PROCESS), the" \
		     "supervisor cannot build its filter and refuses to start (fail closed)," \
		     "and prctl(PR_SET_SECCOMP) is EINVAL; test_filter checks the target's" \
		     "filter program here, and make cross-vm runs test_sandbox in a real" \
		     "$(basename "$build" | sed 's/^build-//') kernel"
		;;
	*) return 1 ;;
	esac
}

for listed in $skipped_list; do
	if [ ! -x "$build/tests/$listed" ]; then
		echo "cross-test: $listed is listed as skipped but $build/tests/$listed does not exist" >&2
		exit 1
	fi
done

ran=0
skipped=0
failed=""
for t in "$build"/tests/test_*; do
	name=$(basename "$t")
	if reason=$(skip_reason "$name"); then
		echo "== $name: SKIPPED under $qemu: $reason"
		skipped=$((skipped + 1))
		continue
	fi
	echo "== $name (under $qemu)"
	# MW_TEST_EXEC_WRAPPER: a test that executes itself again (test_omemo_evp)
	# does so through the emulator; the host kernel cannot run the binary
	if MOONWIRE="$build/moonwire" MW_TEST_EXEC_WRAPPER="$(command -v "$qemu")" \
	    timeout "$limit" "$qemu" "$t"; then
		ran=$((ran + 1))
	else
		failed="$failed $name"
	fi
done
echo "cross-test: $ran binaries passed, $skipped skipped (reasons above)${failed:+, FAILED:$failed}"
[ -z "$failed" ]
