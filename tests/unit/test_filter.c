/*
 * test_filter.c: the worker's seccomp filter per architecture, without a
 * kernel.
 *
 * Why this exists: moonwire is built for x86-64 and aarch64 (make cross),
 * whose syscall numbers all differ and whose syscall names partly differ
 * (aarch64 has no open, stat, fork, poll, ...).  test_sandbox.c checks the
 * filter in a real kernel, natively; this checks the policy and the
 * compiled program for both architectures on any host, including under
 * qemu-user, which runs no guest seccomp filter (make cross-test):
 *  - every name in the policy resolves on both architectures, or its rule
 *    says which one architecture has it (the documented differences);
 *  - the x86-64 names aarch64 lacks, with what aarch64 has instead, are
 *    what libseccomp says, and none of them is in the policy unmarked;
 *  - the BPF program built for each architecture, run by a small classic
 *    BPF interpreter below on seccomp_data as the kernel would fill it,
 *    allows what spec/sandbox.md says with that architecture's numbers and
 *    kills the rest, other architectures' calls included;
 *  - the filter a build makes for itself is for the architecture it was
 *    compiled for;
 *  - spec/sandbox.md's table of numbers says what libseccomp says (the
 *    test runs from the repository root, as make unit and make cross-test
 *    run it).
 * It prints the policy's syscall table for both architectures.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include <cmocka.h>

#include "sandbox/sandbox_int.h"

static const struct {
	uint32_t token;
	const char *name;
} arches[] = {
	{ SCMP_ARCH_X86_64, "x86_64" },
	{ SCMP_ARCH_AARCH64, "aarch64" },
};
#define N_ARCHES (sizeof(arches) / sizeof(arches[0]))

/* x86-64 syscalls aarch64 does not have (it has only the *at and newer
 * forms), with the aarch64 call glibc uses instead.  A policy that needs
 * one of these on x86-64 must mark it x86-64-only and allow the
 * replacement for aarch64 (spec/sandbox.md). */
static const struct {
	const char *x86_64_only, *aarch64_uses;
} absent_on_aarch64[] = {
	{ "open", "openat" },
	{ "creat", "openat" },
	{ "stat", "newfstatat" },
	{ "lstat", "newfstatat" },
	{ "access", "faccessat" },
	{ "fork", "clone" },
	{ "vfork", "clone" },
	{ "poll", "ppoll" },
	{ "select", "pselect6" },
	{ "dup2", "dup3" },
	{ "pipe", "pipe2" },
	{ "mkdir", "mkdirat" },
	{ "rmdir", "unlinkat" },
	{ "unlink", "unlinkat" },
	{ "rename", "renameat" },
	{ "link", "linkat" },
	{ "symlink", "symlinkat" },
	{ "readlink", "readlinkat" },
	{ "chmod", "fchmodat" },
	{ "chown", "fchownat" },
	{ "lchown", "fchownat" },
	{ "getdents", "getdents64" },
	{ "epoll_create", "epoll_create1" },
	{ "epoll_wait", "epoll_pwait" },
	{ "eventfd", "eventfd2" },
	{ "signalfd", "signalfd4" },
	{ "inotify_init", "inotify_init1" },
	{ "time", "clock_gettime" },
	{ "alarm", "setitimer" },
	{ "pause", "rt_sigsuspend" },
	{ "utime", "utimensat" },
	{ "utimes", "utimensat" },
	{ "getpgrp", "getpgid" },
};

static const char *
arch_name(uint32_t token)
{
	for (size_t i = 0; i < N_ARCHES; i++)
		if (arches[i].token == token)
			return arches[i].name;
	return "?";
}

static int
nr_on(uint32_t arch, const char *name)
{
	return seccomp_syscall_resolve_name_arch(arch, name);
}

/* Under qemu-user the guest's seccomp(2) is ENOSYS, so libseccomp finds
 * API level 1, where KILL_PROCESS does not exist, and refuses to make the
 * filter at all (the supervisor then refuses to start: fail closed).  The
 * program does not depend on the running kernel, so for this test only,
 * libseccomp is told the level of a kernel that has KILL_PROCESS (4.14+). */
static int
setup(void **state)
{
	(void)state;
	unsigned api = seccomp_api_get();
	if (api < 3) {
		printf("# libseccomp API level %u here (no seccomp(2): qemu-user?); building "
		    "the programs as for API level 3, to check them, not the kernel\n", api);
		if (seccomp_api_set(3) != 0)
			return -1;
	}
	return 0;
}

/* ---- a classic BPF interpreter, for seccomp programs ---- */

#define BAD_PROGRAM 0xdeadbeefu	/* no seccomp action has this value */

static uint32_t
bpf_run(const struct mw_filter *f, const struct seccomp_data *d)
{
	uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = { 0 };
	unsigned pc = 0;

	while (pc < f->len) {
		const struct sock_filter *in = &f->insns[pc++];
		uint32_t k = in->k;
		switch (in->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			if (k % 4 != 0 || k + 4 > sizeof(*d))
				return BAD_PROGRAM;
			memcpy(&A, (const char *)d + k, 4);
			break;
		case BPF_LD | BPF_IMM: A = k; break;
		case BPF_LDX | BPF_IMM: X = k; break;
		case BPF_LD | BPF_MEM:
			if (k >= BPF_MEMWORDS)
				return BAD_PROGRAM;
			A = M[k];
			break;
		case BPF_LDX | BPF_MEM:
			if (k >= BPF_MEMWORDS)
				return BAD_PROGRAM;
			X = M[k];
			break;
		case BPF_ST:
			if (k >= BPF_MEMWORDS)
				return BAD_PROGRAM;
			M[k] = A;
			break;
		case BPF_STX:
			if (k >= BPF_MEMWORDS)
				return BAD_PROGRAM;
			M[k] = X;
			break;
		case BPF_ALU | BPF_AND | BPF_K: A &= k; break;
		case BPF_ALU | BPF_OR | BPF_K: A |= k; break;
		case BPF_ALU | BPF_AND | BPF_X: A &= X; break;
		case BPF_ALU | BPF_OR | BPF_X: A |= X; break;
		case BPF_MISC | BPF_TAX: X = A; break;
		case BPF_MISC | BPF_TXA: A = X; break;
		case BPF_JMP | BPF_JA: pc += k; break;
		case BPF_JMP | BPF_JEQ | BPF_K: pc += A == k ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JGT | BPF_K: pc += A > k ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JGE | BPF_K: pc += A >= k ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JSET | BPF_K: pc += (A & k) ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JEQ | BPF_X: pc += A == X ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JGT | BPF_X: pc += A > X ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JGE | BPF_X: pc += A >= X ? in->jt : in->jf; break;
		case BPF_JMP | BPF_JSET | BPF_X: pc += (A & X) ? in->jt : in->jf; break;
		case BPF_RET | BPF_K: return k;
		case BPF_RET | BPF_A: return A;
		default:
			print_error("instruction %u: opcode %#x not interpreted\n", pc - 1,
			    in->code);
			return BAD_PROGRAM;
		}
	}
	return BAD_PROGRAM;	/* ran off the end: the kernel refuses such a program */
}

static const char *
action_name(uint32_t ret)
{
	switch (ret & SECCOMP_RET_ACTION_FULL) {
	case SECCOMP_RET_ALLOW: return "ALLOW";
	case SECCOMP_RET_KILL_PROCESS: return "KILL_PROCESS";
	case SECCOMP_RET_KILL_THREAD: return "KILL_THREAD";
	default: return ret == BAD_PROGRAM ? "(bad program)" : "(other action)";
	}
}

/* What f does with syscall `name` (resolved for data_arch) made with the
 * calling convention of data_arch. */
static uint32_t
verdict(const struct mw_filter *f, uint32_t data_arch, const char *name,
    uint64_t a0, uint64_t a1, uint64_t a2)
{
	struct seccomp_data d;
	int nr = nr_on(data_arch, name);
	if (nr < 0)
		fail_msg("%s has no syscall %s", arch_name(data_arch), name);
	memset(&d, 0, sizeof(d));
	d.nr = nr;
	d.arch = data_arch;
	d.args[0] = a0;
	d.args[1] = a1;
	d.args[2] = a2;
	return bpf_run(f, &d);
}

static void
expect(const struct mw_filter *f, uint32_t data_arch, const char *name, uint64_t a0,
    uint64_t a1, uint64_t a2, uint32_t want)
{
	uint32_t got = verdict(f, data_arch, name, a0, a1, a2);
	if ((got & SECCOMP_RET_ACTION_FULL) != want)
		fail_msg("filter for %s: %s(%#llx, %#llx, %#llx) as %s: %s, want %s",
		    arch_name(f->arch), name, (unsigned long long)a0, (unsigned long long)a1,
		    (unsigned long long)a2, arch_name(data_arch), action_name(got),
		    action_name(want));
}

/* ---- the tests ---- */

/* Every policy name, on both architectures: resolves on each, or its rule
 * says which single architecture has it, and then that is exactly true. */
static void
test_policy_names_per_arch(void **state)
{
	(void)state;
	const char *name;
	uint32_t only;
	unsigned arch_only = 0;

	printf("# %-16s %8s %8s\n", "syscall", arches[0].name, arches[1].name);
	for (size_t i = 0; (name = mw_filter_rule_name(i, &only)) != NULL; i++) {
		int nr[N_ARCHES];
		for (size_t a = 0; a < N_ARCHES; a++)
			nr[a] = nr_on(arches[a].token, name);
		printf("# %-16s %8d %8d%s%s\n", name, nr[0], nr[1], only ? "  only on " : "",
		    only ? arch_name(only) : "");
		for (size_t a = 0; a < N_ARCHES; a++) {
			if (only == 0 && nr[a] < 0)
				fail_msg("policy syscall %s does not exist on %s: mark its rule "
				    "as existing on one architecture only (filter.c) and "
				    "document it in spec/sandbox.md", name, arches[a].name);
			if (only != 0 && (nr[a] >= 0) != (only == arches[a].token))
				fail_msg("policy syscall %s is marked %s-only but %s on %s", name,
				    arch_name(only), nr[a] >= 0 ? "exists" : "does not exist",
				    arches[a].name);
		}
		arch_only += only != 0;
	}
	/* spec/sandbox.md: no name of the policy differs between the two. */
	printf("# policy names on one architecture only: %u\n", arch_only);
	assert_int_equal(arch_only, 0);
}

/* The known differences: each x86-64-only name really is that, its
 * replacement exists on both, and the policy does not use the x86-64
 * name unmarked (test_policy_names_per_arch would catch it too, by its
 * absence on aarch64; this says what to use instead). */
static void
test_x86_64_names_aarch64_lacks(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(absent_on_aarch64) / sizeof(absent_on_aarch64[0]); i++) {
		const char *old = absent_on_aarch64[i].x86_64_only;
		const char *rep = absent_on_aarch64[i].aarch64_uses;
		printf("# %-14s x86_64 %4d, aarch64 none: aarch64 uses %s (%d; x86_64 %d)\n", old,
		    nr_on(SCMP_ARCH_X86_64, old), rep, nr_on(SCMP_ARCH_AARCH64, rep),
		    nr_on(SCMP_ARCH_X86_64, rep));
		if (nr_on(SCMP_ARCH_X86_64, old) < 0)
			fail_msg("%s is listed as an x86-64 syscall but libseccomp does not know it", old);
		if (nr_on(SCMP_ARCH_AARCH64, old) >= 0)
			fail_msg("%s is listed as absent on aarch64 but exists there", old);
		if (nr_on(SCMP_ARCH_AARCH64, rep) < 0 || nr_on(SCMP_ARCH_X86_64, rep) < 0)
			fail_msg("%s (instead of %s) must exist on both", rep, old);
		const char *name;
		uint32_t only;
		for (size_t r = 0; (name = mw_filter_rule_name(r, &only)) != NULL; r++)
			if (strcmp(name, old) == 0 && only != SCMP_ARCH_X86_64)
				fail_msg("the policy allows %s, which aarch64 does not have", old);
	}
}

/* The program for each architecture, as the kernel would run it. */
static void
test_program_per_arch(void **state)
{
	(void)state;
	const uint32_t ALLOW = SECCOMP_RET_ALLOW, KILL = SECCOMP_RET_KILL_PROCESS;

	for (size_t a = 0; a < N_ARCHES; a++) {
		uint32_t t = arches[a].token, other = arches[(a + 1) % N_ARCHES].token;
		struct mw_filter f;
		if (mw_filter_build_arch(&f, t) != 0)
			fail_msg("cannot build the filter for %s (missing syscall: %s)",
			    arches[a].name, f.missing ? f.missing : "none");
		assert_int_equal(f.arch, t);
		printf("# %s: %u BPF instructions\n", arches[a].name, f.len);

		/* The policy, with this architecture's numbers. */
		expect(&f, t, "read", MW_WORKER_FD, 0, 0, ALLOW);
		expect(&f, t, "read", 0, 0, 0, KILL);
		expect(&f, t, "write", MW_WORKER_FD, 0, 0, ALLOW);
		expect(&f, t, "write", 1, 0, 0, KILL);
		expect(&f, t, "mmap", 0, 4096, PROT_READ | PROT_WRITE, ALLOW);
		expect(&f, t, "mmap", 0, 4096, PROT_READ | PROT_EXEC, KILL);
		expect(&f, t, "setitimer", ITIMER_PROF, 0, 0, ALLOW);
		expect(&f, t, "setitimer", ITIMER_REAL, 0, 0, ALLOW);
		expect(&f, t, "setitimer", ITIMER_VIRTUAL, 0, 0, KILL);
		expect(&f, t, "prlimit64", 0, RLIMIT_CPU, 0, ALLOW);
		expect(&f, t, "prlimit64", 0, RLIMIT_NOFILE, 0, KILL);
		expect(&f, t, "prlimit64", 1, RLIMIT_CPU, 0, KILL);
		static const char *unconditional[] = { "munmap", "mremap", "madvise", "brk",
			"clock_gettime", "gettimeofday", "getrandom", "exit", "exit_group" };
		for (size_t i = 0; i < sizeof(unconditional) / sizeof(unconditional[0]); i++)
			expect(&f, t, unconditional[i], 0, 0, 0, ALLOW);
		static const char *absent[] = { "openat", "mprotect", "clone", "execve",
			"socket", "kill", "ptrace", "getppid", "ioctl", "ppoll", "uname" };
		for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
			expect(&f, t, absent[i], 0, 0, 0, KILL);

		/* Another architecture's convention is killed whatever the call. */
		expect(&f, other, "read", MW_WORKER_FD, 0, 0, KILL);
		expect(&f, other, "exit_group", 0, 0, 0, KILL);
		/* A number means this architecture's syscall: the other's read
		 * number made here is some other call, not allowed. */
		struct seccomp_data d;
		memset(&d, 0, sizeof(d));
		d.arch = t;
		d.nr = nr_on(other, "read");
		d.args[0] = MW_WORKER_FD;
		uint32_t got = bpf_run(&f, &d);
		char *here = seccomp_syscall_resolve_num_arch(t, d.nr);	/* malloc'd */
		printf("# %s: number %d (read on %s) is %s here: %s\n", arches[a].name, d.nr,
		    arch_name(other), here != NULL ? here : "nothing", action_name(got));
		free(here);
		assert_int_equal(got & SECCOMP_RET_ACTION_FULL, KILL);
		if (t == SCMP_ARCH_X86_64) {
			/* x32 uses the x86-64 audit arch with bit 30 set in nr. */
			d.nr = 0x40000000 | nr_on(t, "read");
			assert_int_equal(bpf_run(&f, &d) & SECCOMP_RET_ACTION_FULL, KILL);
		}
		mw_filter_free(&f);
	}
}

/* A build makes its filter for the architecture it was compiled for, and
 * the same program as the explicit build for that architecture. */
static void
test_native_filter_is_for_build_arch(void **state)
{
	(void)state;
#if defined(__x86_64__)
	const uint32_t want = SCMP_ARCH_X86_64;
#elif defined(__aarch64__)
	const uint32_t want = SCMP_ARCH_AARCH64;
#else
	const uint32_t want = 0;
	skip_msg("moonwire is built and tested for x86-64 and aarch64 only");
#endif
	struct mw_filter n, e;
	printf("# this build: %s\n", arch_name(seccomp_arch_native()));
	assert_int_equal(seccomp_arch_native(), want);
	assert_int_equal(mw_filter_build(&n), 0);
	assert_int_equal(n.arch, want);
	assert_int_equal(mw_filter_build_arch(&e, want), 0);
	assert_int_equal(n.len, e.len);
	assert_memory_equal(n.insns, e.insns, n.len * sizeof(*n.insns));
	mw_filter_free(&n);
	mw_filter_free(&e);
}

/* The commands' deny list: every name exists on both architectures, and
 * loaded in a child it refuses what it lists and nothing else. */
static void
test_command_filter(void **state)
{
	struct mw_filter f;
	pid_t pid;
	int st;

	(void)state;
	assert_int_equal(mw_filter_build_command_arch(&f, SCMP_ARCH_X86_64), 0);
	mw_filter_free(&f);
	assert_int_equal(mw_filter_build_command_arch(&f, SCMP_ARCH_AARCH64), 0);
	mw_filter_free(&f);
	assert_int_equal(mw_filter_build_command(&f), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sock_fprog prog = { .len = f.len, .filter = f.insns };
		pid_t c;
		int cst;

		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			_exit(10);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			_exit(errno == EINVAL ? 9 : 10);	/* 9: qemu-user runs no filter */
		if (unshare(CLONE_NEWUSER) != -1 || errno != EPERM)
			_exit(11);
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != -1 || errno != EPERM)
			_exit(12);
		if (syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0) != -1 || errno != EPERM)
			_exit(13);
#ifdef SYS_clone3
		if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
			_exit(14);
#endif
		/* ordinary work goes on: a fork (clone without namespaces) */
		if ((c = fork()) == 0)
			_exit(0);
		if (c < 0 || waitpid(c, &cst, 0) != c || cst != 0)
			_exit(15);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	mw_filter_free(&f);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 9) {
		printf("# skipped: seccomp filters cannot be loaded here (qemu-user)\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* spec/sandbox.md, "One architecture per filter": one row per policy
 * name, "| name | x86-64 number | aarch64 number |". */
static void
test_spec_table(void **state)
{
	(void)state;
	FILE *fp = fopen("spec/sandbox.md", "r");
	if (fp == NULL)
		fail_msg("spec/sandbox.md: %s (run from the repository root)", strerror(errno));
	static char spec[256 * 1024];
	size_t n = fread(spec, 1, sizeof(spec) - 1, fp);
	assert_false(ferror(fp));
	assert_true(feof(fp));
	fclose(fp);
	spec[n] = '\0';

	const char *name;
	for (size_t i = 0; (name = mw_filter_rule_name(i, NULL)) != NULL; i++) {
#ifdef __SANITIZE_ADDRESS__
		/* The ASan-only rules are listed in the spec by name only. */
		if (strcmp(name, "sigaltstack") == 0 || strcmp(name, "rt_sigprocmask") == 0 ||
		    strcmp(name, "getpid") == 0 || strcmp(name, "gettid") == 0 ||
		    strcmp(name, "sched_yield") == 0 || strcmp(name, "futex") == 0)
			continue;
#endif
		char row[128];
		snprintf(row, sizeof(row), "\n| %s | %d | %d |\n", name,
		    nr_on(SCMP_ARCH_X86_64, name), nr_on(SCMP_ARCH_AARCH64, name));
		if (strstr(spec, row) == NULL)
			fail_msg("spec/sandbox.md has no row '%.*s' (its table of numbers per "
			    "architecture is out of date)", (int)strlen(row) - 2, row + 1);
	}
}

/* The zygote's own filter (filter.c, zygote_rules), for the build's
 * architecture: what the zygote and a confining worker call is allowed
 * without conditions, every name of the worker's policy too (a worker
 * runs under both), anything else fails with ENOSYS, and another
 * architecture's convention kills. */
static void
test_zygote_filter(void **state)
{
	(void)state;
	struct mw_filter z;
	uint32_t a = seccomp_arch_native();
	const uint32_t other = a == SCMP_ARCH_X86_64 ? SCMP_ARCH_AARCH64 : SCMP_ARCH_X86_64;
	const char *name;
	assert_int_equal(mw_filter_build_zygote(&z), 0);
	assert_int_equal(z.arch, a);
	/* the worker's names, without the worker's conditions */
	for (size_t i = 0; (name = mw_filter_rule_name(i, NULL)) != NULL; i++)
		expect(&z, a, name, 7, 0, PROT_EXEC, SECCOMP_RET_ALLOW);
	static const char *const zygote[] = { "clone", "socketpair", "sendmsg", "recvmsg",
		"pidfd_open", "wait4", "kill", "close", "ppoll", "setresuid", "setresgid",
		"setgroups", "capset", "capget", "prctl", "seccomp", "rt_sigaction",
		"rt_sigprocmask", "openat", "dup3", "close_range", "setrlimit", NULL };
	for (size_t i = 0; zygote[i] != NULL; i++)
		expect(&z, a, zygote[i], 0, 0, 0, SECCOMP_RET_ALLOW);
	/* never needed: refused with ENOSYS, the zygote lives on */
	static const char *const refused[] = { "execve", "execveat", "ptrace", "socket",
		"connect", "mount", "unshare", "setns", "bpf", "mprotect", "process_vm_writev",
		"pidfd_getfd", "init_module", "io_uring_setup", NULL };
	for (size_t i = 0; refused[i] != NULL; i++) {
#ifdef __SANITIZE_ADDRESS__
		if (strcmp(refused[i], "mprotect") == 0)
			continue;
#endif
		uint32_t got = verdict(&z, a, refused[i], 0, 0, 0);
		if (got != (SECCOMP_RET_ERRNO | ENOSYS))
			fail_msg("zygote filter: %s: %#x, want ERRNO(ENOSYS)", refused[i], got);
	}
	/* the other architecture's convention */
	expect(&z, other, "read", 3, 0, 0, SECCOMP_RET_KILL_PROCESS);
	mw_filter_free(&z);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_names_per_arch),
		cmocka_unit_test(test_x86_64_names_aarch64_lacks),
		cmocka_unit_test(test_program_per_arch),
		cmocka_unit_test(test_native_filter_is_for_build_arch),
		cmocka_unit_test(test_spec_table),
		cmocka_unit_test(test_zygote_filter),
		cmocka_unit_test(test_command_filter),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
