/*
 * confine.c: everything that takes privilege away.
 *
 * The seccomp filter itself is built in filter.c; a worker loads the
 * compiled program with one prctl, last.
 *
 * Order inside a worker matters: fds and environment first, then rlimits,
 * then the unprivileged uid (which makes RLIMIT_NPROC bite), then
 * no_new_privs, then the filter.  After the filter nothing can be undone.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/securebits.h>

#include <linux/seccomp.h>

#include "sandbox/sandbox_int.h"


#define NOBODY_UID 65534
#define NOBODY_GID 65534

static int
set_limit(int resource, rlim_t v)
{
	struct rlimit rl = { v, v };
	return setrlimit(resource, &rl);
}

/*
 * What every worker would otherwise redo, done once by the zygote before
 * its first fork (mw_confine_zygote_prepare): default dispositions for
 * every signal but SIGHUP (kept ignored in the zygote, so that a
 * terminal's hangup does not take the pool; each worker sets it back to
 * default), an empty environment, and /dev/null open on a descriptor
 * that each worker moves onto 0-2 and then closes.  The zygote never
 * installs a handler or sets a variable afterwards, so a worker forked
 * from it inherits exactly this state.  zygote_null stays -1 in any
 * other process, and mw_confine_worker then does all of it itself.
 */
static int zygote_null = -1;

static int
default_signals(int except)
{
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP || (s >= 32 && s < SIGRTMIN))
			continue;	/* not settable, or glibc's own */
		if (signal(s, s == except ? SIG_IGN : SIG_DFL) == SIG_ERR)
			return -1;
	}
	return 0;
}

int
mw_confine_zygote_prepare(void)
{
	if (default_signals(SIGHUP) != 0 || clearenv() != 0)
		return -1;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* Above 3, which each worker takes for its socket before 0-2. */
	zygote_null = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	close(fd);
	return zygote_null < 0 ? -1 : 0;
}

int
mw_confine_worker(int sock, const struct mw_filter *f)
{
	sigset_t all;
	int null;

	/* Signals: default dispositions, nothing blocked (the zygote blocks
	 * SIGCHLD for its signalfd and the mask is inherited). */
	if (zygote_null >= 0) {
		if (signal(SIGHUP, SIG_DFL) == SIG_ERR)
			return -1;
		null = zygote_null;
	} else {
		if (default_signals(0) != 0)
			return -1;
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null < 0)
			return -1;
	}
	sigemptyset(&all);
	if (sigprocmask(SIG_SETMASK, &all, NULL) != 0)
		return -1;
	/* Descriptors: /dev/null on 0-2, the socket on 3, nothing else. */
	if (sock != MW_WORKER_FD) {
		if (dup2(sock, MW_WORKER_FD) != MW_WORKER_FD)
			return -1;
	} else if (fcntl(sock, F_SETFD, 0) != 0) {
		return -1;
	}
	for (int fd = 0; fd < 3; fd++)
		if (dup2(null, fd) != fd)
			return -1;
	if (syscall(SYS_close_range, MW_WORKER_FD + 1, ~0U, 0) != 0)
		return -1;
	extern char **environ;
	if (environ != NULL && clearenv() != 0)
		return -1;
	/* The time zone is read now, before the filter: tzset() re-reads
	 * /etc/localtime if it changed since the zygote read it.  Then TZ
	 * names that same file, which glibc's tzset() takes as "unchanged"
	 * without a stat: os.date and os.time{...} (mktime calls tzset())
	 * never touch the filesystem, which the filter would punish. */
	tzset();
	if (setenv("TZ", ":/etc/localtime", 1) != 0)
		return -1;

	if (set_limit(RLIMIT_FSIZE, 0) != 0 ||
	    set_limit(RLIMIT_NOFILE, MW_WORKER_FD + 1) != 0 ||
	    set_limit(RLIMIT_CORE, 0) != 0 ||
	    set_limit(RLIMIT_MEMLOCK, 0) != 0 ||
	    set_limit(RLIMIT_MSGQUEUE, 0) != 0)
		return -1;
	struct mw_limits max;
	mw_limits_maximum(&max);
	if (set_limit(RLIMIT_CPU, max.cpu_ms / 1000 + 1) != 0)
		return -1;
#ifndef __SANITIZE_ADDRESS__
	/* The Lua heap is capped exactly by the allocator; the address-space
	 * limit is the backstop for everything else.  ASan reserves terabytes
	 * of shadow memory, so its build relies on the allocator alone. */
	if (set_limit(RLIMIT_AS, max.memory + 512ull * 1024 * 1024) != 0)
		return -1;
#endif
	if (mw_confine_drop_privileges() != 0)
		return -1;
	if (set_limit(RLIMIT_NPROC, 0) != 0)
		return -1;
	/* After the uid change, which clears it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0) != 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	struct sock_fprog prog = { .len = f->len, .filter = f->insns };
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		return -1;
	return 0;
}

/*
 * Privilege drop shared by workers and command children.
 *
 * A process becomes nobody (no supplementary groups) whenever it may: as
 * root, or as a service user holding CAP_SETUID/CAP_SETGID (the shipped
 * unit grants them).  Where CAP_SETPCAP is held (root, or the unit) it
 * first empties the bounding set and locks securebits (NOROOT,
 * NO_SETUID_FIXUP, KEEP_CAPS off, NO_CAP_AMBIENT_RAISE), so that nothing
 * it executes can gain a capability back from a uid-0 transition.  In
 * every case it then empties the ambient, inheritable, permitted and
 * effective sets.  Invariants afterwards, checked, not assumed: neither
 * the previous uid nor 0 can be regained, and no capability is held.
 * Without the privilege to change uid (an unprivileged user's `moonwire
 * run`) the process keeps the caller's uid, confined by the rest.
 */
#define LOCKED_SECUREBITS (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | \
	SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED | \
	SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | \
	SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)

static bool
have_effective_cap(int cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &hdr, d) != 0)
		return false;
	return (d[cap / 32].effective & (1u << (cap % 32))) != 0;
}

/* The kernel keeps the ambient set inside permitted and inheritable, so
 * empty permitted, effective and inheritable sets mean nothing is held. */
static int
caps_all_empty(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &hdr, d) != 0)
		return -1;
	for (int i = 0; i < 2; i++)
		if (d[i].effective || d[i].permitted || d[i].inheritable)
			return -1;
	return 0;
}

/* Set once per process; a fork inherits it with the emptied bounding set
 * and the locked securebits (the zygote does it once for all workers). */
static bool bounding_locked;

int
mw_confine_lock_bounding(void)
{
	if (bounding_locked)
		return 0;
	if (have_effective_cap(CAP_SETPCAP)) {
		for (int c = 0; c <= CAP_LAST_CAP; c++)
			if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1 &&
			    prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
				return -1;
		if (prctl(PR_SET_SECUREBITS, LOCKED_SECUREBITS, 0, 0, 0) != 0)
			return -1;
	}
	bounding_locked = true;
	return 0;
}

int
mw_confine_drop_privileges(void)
{
	return mw_confine_drop_privileges_to(NOBODY_UID, NOBODY_GID);
}

int
mw_sandbox_command_uids_parse(const char *s, uint32_t *first, uint32_t *count)
{
	unsigned long long a = 0, b = 0;
	const char *p = s;
	size_t n;

	if ((n = strspn(p, "0123456789")) == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++)
		a = a * 10 + (unsigned)(p[i] - '0');
	p += n;
	if (*p++ != '-' || (n = strspn(p, "0123456789")) == 0 || n > 10 || p[n] != '\0')
		return -1;
	for (size_t i = 0; i < n; i++)
		b = b * 10 + (unsigned)(p[i] - '0');
	if (a > b || b > 0xffffffffull || b - a + 1 > 0xffffffffull)
		return -1;
	*first = (uint32_t)a;
	*count = (uint32_t)(b - a + 1);
	return 0;
}

int
mw_sandbox_command_uids_check(uint32_t first, uint32_t count, unsigned parallel,
    bool accounts, char *why, size_t whylen)
{
	uint64_t last = (uint64_t)first + count - 1;

	if (count == 0 || count > MW_SANDBOX_COMMAND_UIDS_MAX) {
		if (why != NULL)
			snprintf(why, whylen, "%u uids: 1 to %u", count, MW_SANDBOX_COMMAND_UIDS_MAX);
		return -1;
	}
	if (count < parallel) {
		if (why != NULL)
			snprintf(why, whylen, "%u uids for %u jobs at once (parallel): one each "
			    "is needed", count, parallel);
		return -1;
	}
	if (first == 0 || last > 0x7ffffffeu || (first <= NOBODY_UID && last >= NOBODY_UID) ||
	    (first <= 65535 && last >= 65535)) {
		if (why != NULL)
			snprintf(why, whylen, "%u-%llu holds 0, 65534 (nobody), 65535 or a uid "
			    "above 2147483646", first, (unsigned long long)last);
		return -1;
	}
	for (uint64_t u = first; accounts && u <= last; u++) {
		struct passwd *pw;
		struct group *gr;

		errno = 0;
		if ((pw = getpwuid((uid_t)u)) != NULL || (gr = getgrgid((gid_t)u)) != NULL) {
			if (why != NULL)
				snprintf(why, whylen, "%s %llu is taken by '%s': the range must be "
				    "unused", pw != NULL ? "uid" : "gid", (unsigned long long)u,
				    pw != NULL ? pw->pw_name : gr->gr_name);
			return -1;
		}
	}
	return 0;
}

/* The same to uid/gid (a job's own command uid, spec/sandbox.md). */
int
mw_confine_drop_privileges_to(uid_t uid, gid_t gid)
{
	uid_t before = geteuid();
	bool dropped = false;
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct none[2];

	if (uid == 0 || gid == 0 || mw_confine_lock_bounding() != 0)
		return -1;
	if (before != uid) {
		if (setgroups(0, NULL) == 0) {
			if (setresgid(gid, gid, gid) != 0 ||
			    setresuid(uid, uid, uid) != 0)
				return -1;	/* half-dropped: fail closed */
			dropped = true;
		} else if (before == 0 || errno != EPERM || uid != NOBODY_UID)
			return -1;
		/* else: no privilege to drop to nobody; keep the caller's uid
		 * (a uid of its own asked for and not granted: fail) */
	}
	memset(none, 0, sizeof(none));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 ||
	    syscall(SYS_capset, &hdr, none) != 0)
		return -1;
	if (dropped && (setresuid(before, before, before) == 0 || setresuid(0, 0, 0) == 0))
		return -1;	/* must be impossible now */
	if (caps_all_empty() != 0)
		return -1;
	return 0;
}

void
mw_confine_supervisor_caps(void)
{
	/* Nothing the supervisor starts inherits a capability by execve: the
	 * ambient set is for the caller's exec of the supervisor only.  The
	 * permitted set stays: dropping workers and commands to nobody
	 * (SETUID/SETGID), killing them under that uid (KILL), and locking
	 * their bounding set and securebits (SETPCAP). */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

int
mw_confine_keep_only_kill(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &hdr, d) != 0)
		return -1;
	uint32_t kill_bit = 1u << CAP_KILL;	/* CAP_KILL < 32 */
	d[0].permitted &= kill_bit;
	d[0].effective &= kill_bit;
	d[0].inheritable = 0;
	d[1].permitted = d[1].effective = d[1].inheritable = 0;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return -1;
	return syscall(SYS_capset, &hdr, d) == 0 ? 0 : -1;
}

bool
mw_confine_can_kill_others(void)
{
	return geteuid() == 0 || have_effective_cap(CAP_KILL) ||
	    !have_effective_cap(CAP_SETUID);
}

/* Namespaces the supervisor entered, and the originals to return to. */
static int orig_ns_fd[3] = { -1, -1, -1 };
static const int ns_flags[3] = { CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS };
static const char *const ns_names[3] = { "net", "ipc", "uts" };
static char ns_entered[32] = "none";

void
mw_confine_supervisor(void)
{
	/*
	 * Workers inherit these namespaces at fork at no per-job cost: no network
	 * interface but a down loopback, no SysV IPC shared with the host.  The
	 * supervisor itself only ever talks over inherited socketpairs.  Where
	 * the kernel or our privileges refuse, we carry on without: the seccomp
	 * filter already forbids socket(), so this is depth, not the wall.
	 */
	size_t used = 0;
	ns_entered[0] = '\0';
	for (int i = 0; i < 3; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns_names[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (unshare(ns_flags[i]) != 0) {
			close(fd);
			continue;
		}
		orig_ns_fd[i] = fd;
		used += (size_t)snprintf(ns_entered + used, sizeof(ns_entered) - used,
		    "%s%s", used ? "," : "", ns_names[i]);
	}
	if (used == 0)
		snprintf(ns_entered, sizeof(ns_entered), "none");
}

const char *
mw_confine_namespaces(void)
{
	return ns_entered;
}

void
mw_confine_command_child(void)
{
	/* Allowlisted commands run in the host's namespaces, as configured by
	 * the owner; failing to return is fatal for the child only. */
	for (int i = 0; i < 3; i++)
		if (orig_ns_fd[i] >= 0 && setns(orig_ns_fd[i], ns_flags[i]) != 0)
			_exit(126);
}

int
mw_sandbox_drop_caller_capabilities(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct none[2];

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return -1;
	/* The bounding set can only shrink with CAP_SETPCAP; without it the
	 * emptied permitted set and no_new_privs already keep execve from
	 * granting anything. */
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EPERM)
			return -1;
	memset(none, 0, sizeof(none));
	if (syscall(SYS_capset, &hdr, none) != 0)
		return -1;
	return 0;
}
