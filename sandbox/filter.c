/*
 * filter.c: the worker's seccomp policy, as data, and its compilation
 * (and the deny list of allowlisted commands, at the end).
 *
 * Why a table: a syscall's number differs between architectures, and some
 * x86-64 names (open, stat, fork, poll, select, dup2, ...) do not exist at
 * all on aarch64.  libseccomp's SCMP_SYS(name) compiles to a pseudo number
 * for a name the build architecture lacks, and a rule on it is accepted and
 * never matches: a policy name missing on the target would silently allow
 * nothing instead of failing.  So every rule names its syscall as a string,
 * resolved for the filter's architecture when the filter is built, and a
 * name the architecture lacks fails the build unless its rule says it
 * exists on one architecture only (spec/sandbox.md, "The seccomp filter";
 * tests/unit/test_filter.c checks every name on x86-64 and aarch64).
 *
 * The filter is compiled once, in the supervisor, into a BPF program that
 * each worker loads with one prctl (confine.c): a worker never runs
 * libseccomp's compiler.  Default action and bad-architecture action are
 * both KILL_PROCESS (libseccomp's default for a bad arch kills only the
 * thread), so an x32 or i386 syscall from an x86-64 worker ends it, and so
 * does any syscall made with another architecture's convention.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/seccomp.h>
#include <seccomp.h>

#include "sandbox/sandbox_int.h"

#define ARG(n, cmp, a, b) { .arg = (n), .op = (cmp), .datum_a = (a), .datum_b = (b) }

struct rule {
	const char *name;
	uint32_t only_arch;	/* 0: exists on every architecture we build for */
	unsigned argc;
	struct scmp_arg_cmp args[2];
};

/* Allowed: read/write on the worker's socket only, memory management
 * without PROT_EXEC, clocks, getrandom, its own timers, lowering
 * RLIMIT_CPU of itself, exit.  Every name exists on x86-64 and aarch64. */
static const struct rule rules[] = {
	{ "read", 0, 1, { ARG(0, SCMP_CMP_EQ, MW_WORKER_FD, 0) } },
	{ "write", 0, 1, { ARG(0, SCMP_CMP_EQ, MW_WORKER_FD, 0) } },
	{ "mmap", 0, 1, { ARG(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0) } },
	{ "munmap", 0, 0, { { 0 } } },
	{ "mremap", 0, 0, { { 0 } } },
	{ "madvise", 0, 0, { { 0 } } },
	{ "brk", 0, 0, { { 0 } } },
	{ "clock_gettime", 0, 0, { { 0 } } },
	{ "gettimeofday", 0, 0, { { 0 } } },
	{ "getrandom", 0, 0, { { 0 } } },
	{ "setitimer", 0, 1, { ARG(0, SCMP_CMP_EQ, ITIMER_PROF, 0) } },
	{ "setitimer", 0, 1, { ARG(0, SCMP_CMP_EQ, ITIMER_REAL, 0) } },
	{ "prlimit64", 0, 2, { ARG(0, SCMP_CMP_EQ, 0, 0), ARG(1, SCMP_CMP_EQ, RLIMIT_CPU, 0) } },
	{ "exit_group", 0, 0, { { 0 } } },
	{ "exit", 0, 0, { { 0 } } },
#ifdef __SANITIZE_ADDRESS__
	/* ASan's runtime needs a little more to report, never in release. */
	{ "sigaltstack", 0, 0, { { 0 } } },
	{ "rt_sigprocmask", 0, 0, { { 0 } } },
	{ "getpid", 0, 0, { { 0 } } },
	{ "gettid", 0, 0, { { 0 } } },
	{ "sched_yield", 0, 0, { { 0 } } },
	{ "futex", 0, 0, { { 0 } } },
#endif
};

const char *
mw_filter_rule_name(size_t i, uint32_t *only_arch)
{
	if (i >= sizeof(rules) / sizeof(rules[0]))
		return NULL;
	if (only_arch != NULL)
		*only_arch = rules[i].only_arch;
	return rules[i].name;
}

/*
 * The zygote's own filter (mw_filter_build_zygote): every syscall the
 * zygote makes once it serves forks, the ones a fresh worker makes while
 * it confines itself, and every name of the worker's policy above, all
 * without conditions.  Anything else fails with ENOSYS: the zygote (which
 * holds the supervisor's capabilities) never needs it, and a worker's own
 * filter, stacked on this one, still kills for it (the kernel applies the
 * most severe action of all filters).
 *
 * Why it exists: when a worker loads its filter the kernel precomputes,
 * with interrupts off, which syscalls that filter always allows, by
 * running it for every syscall number of both x86-64 conventions that
 * the filters inherited always allow.  Without an inherited filter that
 * is every number (about 900 runs of the program per worker); under this
 * one it is the few dozen below, and no compat (i386) number at all.
 * Names that exist on one architecture only say which.
 */
static const struct rule zygote_rules[] = {
	/* the zygote's loop */
	{ "poll", SCMP_ARCH_X86_64, 0, { { 0 } } },
	{ "ppoll", 0, 0, { { 0 } } },
	{ "recvmsg", 0, 0, { { 0 } } },
	{ "sendmsg", 0, 0, { { 0 } } },
	{ "socketpair", 0, 0, { { 0 } } },
	{ "clone", 0, 0, { { 0 } } },
	{ "pidfd_open", 0, 0, { { 0 } } },
	{ "wait4", 0, 0, { { 0 } } },
	{ "kill", 0, 0, { { 0 } } },
	{ "close", 0, 0, { { 0 } } },
	/* a fresh worker confining itself (confine.c) */
	{ "set_robust_list", 0, 0, { { 0 } } },
	{ "rt_sigaction", 0, 0, { { 0 } } },
	{ "rt_sigprocmask", 0, 0, { { 0 } } },
	{ "openat", 0, 0, { { 0 } } },
	{ "dup2", SCMP_ARCH_X86_64, 0, { { 0 } } },
	{ "dup3", 0, 0, { { 0 } } },
	{ "fcntl", 0, 0, { { 0 } } },
	{ "close_range", 0, 0, { { 0 } } },
	{ "newfstatat", 0, 0, { { 0 } } },
	{ "fstat", 0, 0, { { 0 } } },
	{ "lseek", 0, 0, { { 0 } } },
	{ "setrlimit", 0, 0, { { 0 } } },
	{ "getuid", 0, 0, { { 0 } } },
	{ "geteuid", 0, 0, { { 0 } } },
	{ "getgid", 0, 0, { { 0 } } },
	{ "getegid", 0, 0, { { 0 } } },
	{ "setgroups", 0, 0, { { 0 } } },
	{ "setresgid", 0, 0, { { 0 } } },
	{ "setresuid", 0, 0, { { 0 } } },
	{ "capget", 0, 0, { { 0 } } },
	{ "capset", 0, 0, { { 0 } } },
	{ "prctl", 0, 0, { { 0 } } },
	{ "seccomp", 0, 0, { { 0 } } },
#ifdef __SANITIZE_ADDRESS__
	{ "mprotect", 0, 0, { { 0 } } },
	{ "getpid", 0, 0, { { 0 } } },
	{ "gettid", 0, 0, { { 0 } } },
	{ "sigaltstack", 0, 0, { { 0 } } },
	{ "sched_yield", 0, 0, { { 0 } } },
	{ "futex", 0, 0, { { 0 } } },
#endif
};

/* A context for arch (0: native) with default action dflt and
 * KILL_PROCESS for another architecture. */
static scmp_filter_ctx
context(struct mw_filter *f, uint32_t arch, uint32_t dflt)
{
	scmp_filter_ctx ctx;
	uint32_t native = seccomp_arch_native();

	memset(f, 0, sizeof(*f));
	if (arch == 0)
		arch = native;
	f->arch = arch;
	if ((ctx = seccomp_init(dflt)) == NULL)
		return NULL;
	/* A context starts with the native architecture; a filter for another
	 * one (tests) holds that architecture only. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0 ||
	    (arch != native &&
	    (seccomp_arch_add(ctx, arch) != 0 || seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE) != 0))) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/* Adds r with action act, unless r is for another architecture; a name the
 * filter's architecture lacks fails (f->missing names it). */
static int
add_rule(struct mw_filter *f, scmp_filter_ctx ctx, const struct rule *r, uint32_t act,
    bool plain)
{
	if (r->only_arch != 0 && r->only_arch != f->arch)
		return 0;
	if (seccomp_syscall_resolve_name_arch(f->arch, r->name) < 0) {
		f->missing = r->name;
		return -1;
	}
	/* libseccomp takes the native number (or its pseudo number) and
	 * translates it by name; _exact fails instead of dropping a rule it
	 * cannot place. */
	int nr = seccomp_syscall_resolve_name(r->name);
	if (nr == __NR_SCMP_ERROR ||
	    seccomp_rule_add_exact_array(ctx, act, nr, plain ? 0 : r->argc, r->args) != 0)
		return -1;
	return 0;
}

/* ctx compiled into f->insns; ctx is released either way. */
static int
export(struct mw_filter *f, scmp_filter_ctx ctx)
{
	int rc = -1, mfd;

	if ((mfd = memfd_create("mw-filter", MFD_CLOEXEC)) < 0)
		goto out;
	if (seccomp_export_bpf(ctx, mfd) != 0)
		goto out;
	off_t size = lseek(mfd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
		goto out;
	if ((f->insns = malloc((size_t)size)) == NULL)
		goto out;
	if (pread(mfd, f->insns, (size_t)size, 0) != size) {
		free(f->insns);
		f->insns = NULL;
		goto out;
	}
	f->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	rc = 0;
out:
	if (mfd >= 0)
		close(mfd);
	seccomp_release(ctx);
	return rc;
}

/* One filter: every rule of table[0..n) (and of more[0..nmore), all
 * unconditional when plain) allowed, dflt otherwise, KILL_PROCESS for
 * another architecture. */
static int
build(struct mw_filter *f, uint32_t arch, uint32_t dflt, bool plain,
    const struct rule *table, size_t n, const struct rule *more, size_t nmore)
{
	scmp_filter_ctx ctx = context(f, arch, dflt);

	if (ctx == NULL)
		return -1;
	for (size_t i = 0; i < n + nmore; i++)
		if (add_rule(f, ctx, i < n ? &table[i] : &more[i - n], SCMP_ACT_ALLOW, plain) != 0) {
			seccomp_release(ctx);
			return -1;
		}
	return export(f, ctx);
}

int
mw_filter_build_arch(struct mw_filter *f, uint32_t arch)
{
	return build(f, arch, SCMP_ACT_KILL_PROCESS, false, rules,
	    sizeof(rules) / sizeof(rules[0]), NULL, 0);
}

int
mw_filter_build(struct mw_filter *f)
{
	return mw_filter_build_arch(f, 0);
}

int
mw_filter_build_zygote(struct mw_filter *f)
{
	/* A worker rule with conditions is allowed here without them: the
	 * zygote reads and writes other descriptors than 3; the worker's own
	 * filter keeps the conditions. */
	return build(f, 0, SCMP_ACT_ERRNO(ENOSYS), true, rules,
	    sizeof(rules) / sizeof(rules[0]), zygote_rules,
	    sizeof(zygote_rules) / sizeof(zygote_rules[0]));
}

/*
 * An allowlisted command's filter (mw_filter_build_command): commands are
 * whatever programs the owner allowlists, so this is a deny list, loaded
 * after no_new_privs right before the exec.  What it takes away is what
 * a command running as nobody could use against another job's processes
 * or the kernel: tracing and cross-process memory access, new namespaces
 * (a user namespace holds every capability over new network and mount
 * namespaces), BPF, perf events, userfaultfd, io_uring, the kernel
 * keyring, and the calls of mounting, modules, kexec, swap and reboot
 * (which need privileges it has not: belt and braces).  They fail with
 * EPERM; clone3, whose flags sit in memory a filter cannot read, fails
 * with ENOSYS, so the C library falls back to clone, whose namespace
 * flags are checked.  Another architecture's calls (i386, x32 from an
 * x86-64 process) kill the process: a deny list on native numbers alone
 * would be bypassed through them.
 */
#define CLONE_NS(flag) { "clone", 0, 1, { ARG(0, SCMP_CMP_MASKED_EQ, (flag), (flag)) } }
static const struct rule command_denied[] = {
	{ "ptrace", 0, 0, { { 0 } } },
	{ "process_vm_readv", 0, 0, { { 0 } } },
	{ "process_vm_writev", 0, 0, { { 0 } } },
	{ "kcmp", 0, 0, { { 0 } } },
	{ "pidfd_getfd", 0, 0, { { 0 } } },
	{ "unshare", 0, 0, { { 0 } } },
	{ "setns", 0, 0, { { 0 } } },
	CLONE_NS(CLONE_NEWUSER), CLONE_NS(CLONE_NEWNS), CLONE_NS(CLONE_NEWNET),
	CLONE_NS(CLONE_NEWPID), CLONE_NS(CLONE_NEWIPC), CLONE_NS(CLONE_NEWUTS),
	CLONE_NS(CLONE_NEWCGROUP), CLONE_NS(CLONE_NEWTIME),
	{ "bpf", 0, 0, { { 0 } } },
	{ "perf_event_open", 0, 0, { { 0 } } },
	{ "userfaultfd", 0, 0, { { 0 } } },
	{ "io_uring_setup", 0, 0, { { 0 } } },
	{ "io_uring_enter", 0, 0, { { 0 } } },
	{ "io_uring_register", 0, 0, { { 0 } } },
	{ "keyctl", 0, 0, { { 0 } } },
	{ "add_key", 0, 0, { { 0 } } },
	{ "request_key", 0, 0, { { 0 } } },
	{ "mount", 0, 0, { { 0 } } },
	{ "umount2", 0, 0, { { 0 } } },
	{ "pivot_root", 0, 0, { { 0 } } },
	{ "open_tree", 0, 0, { { 0 } } },
	{ "move_mount", 0, 0, { { 0 } } },
	{ "fsopen", 0, 0, { { 0 } } },
	{ "fsmount", 0, 0, { { 0 } } },
	{ "fspick", 0, 0, { { 0 } } },
	{ "fsconfig", 0, 0, { { 0 } } },
	{ "mount_setattr", 0, 0, { { 0 } } },
	{ "open_by_handle_at", 0, 0, { { 0 } } },
	{ "init_module", 0, 0, { { 0 } } },
	{ "finit_module", 0, 0, { { 0 } } },
	{ "delete_module", 0, 0, { { 0 } } },
	{ "kexec_load", 0, 0, { { 0 } } },
	{ "kexec_file_load", 0, 0, { { 0 } } },
	{ "swapon", 0, 0, { { 0 } } },
	{ "swapoff", 0, 0, { { 0 } } },
	{ "reboot", 0, 0, { { 0 } } },
	{ "acct", 0, 0, { { 0 } } },
};
static const struct rule command_clone3 = { "clone3", 0, 0, { { 0 } } };

int
mw_filter_build_command_arch(struct mw_filter *f, uint32_t arch)
{
	scmp_filter_ctx ctx = context(f, arch, SCMP_ACT_ALLOW);

	if (ctx == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(command_denied) / sizeof(command_denied[0]); i++)
		if (add_rule(f, ctx, &command_denied[i], SCMP_ACT_ERRNO(EPERM), false) != 0) {
			seccomp_release(ctx);
			return -1;
		}
	if (add_rule(f, ctx, &command_clone3, SCMP_ACT_ERRNO(ENOSYS), false) != 0) {
		seccomp_release(ctx);
		return -1;
	}
	return export(f, ctx);
}

int
mw_filter_build_command(struct mw_filter *f)
{
	return mw_filter_build_command_arch(f, 0);
}

void
mw_filter_free(struct mw_filter *f)
{
	free(f->insns);
	memset(f, 0, sizeof(*f));
}
