/*
 * zygote.c: the small process that forks workers.
 *
 * The supervisor holds every queued job's program and grants; a worker
 * forked from it would inherit copies of other jobs' data.  So workers are
 * forked from a zygote that the supervisor starts before it has seen any
 * job: its memory holds only the compiled seccomp filters and a pristine
 * Lua state (worker.c, mw_worker_prepare), and forking it is cheap because
 * it never grew.  It is normally the program `moonwire-zygote`
 * (zygote_main.c), which maps only what a worker needs; mw_zygote_exec
 * starts it, and mw_zygote_main is the same loop in either case.  It
 * confines itself with a seccomp filter of its own (filter.c) before it
 * forks the first worker.  The zygote hands each new worker's socket
 * and a pidfd to the supervisor (SCM_RIGHTS), reaps workers, and reports each
 * exit status with its CPU time.  The supervisor signals workers only
 * through their pidfds, so a recycled pid can never be hit.
 *
 * Zygote <-> supervisor messages are mw frames on a SOCK_SEQPACKET pair, one
 * frame per packet:
 *   ZYG_FORK   supervisor -> zygote  (empty)
 *   ZYG_WORKER zygote -> supervisor  u32 pid, with fds [socket, pidfd]
 *   ZYG_EXIT   zygote -> supervisor  u32 pid, u32 wait status, u64 cpu us
 *   ZYG_FAIL   zygote -> supervisor  u32 errno
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/seccomp.h>

#include "sandbox/sandbox_int.h"
#include "sandbox/zygote_int.h"

static int
send_packet(int fd, const struct mw_buf *b, const int *fds, int nfds)
{
	struct iovec iov = { (void *)(uintptr_t)mw_buf_ptr(b), mw_buf_avail(b) };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	ssize_t w;
	do {
		w = sendmsg(fd, &msg, MSG_NOSIGNAL);
	} while (w < 0 && errno == EINTR);
	return w == (ssize_t)mw_buf_avail(b) ? 0 : -1;
}

static int
send_small(int fd, uint8_t type, uint32_t a, uint32_t b, uint64_t c,
    const int *fds, int nfds)
{
	uint8_t raw[64] = { 0 };
	struct mw_buf out;
	size_t start;
	mw_buf_view(&out, raw, sizeof(raw));
	out.readonly = false;
	out.len = 0;
	if (mw_frame_begin(&out, type, &start) != 0 || mw_buf_put_u32(&out, a) != 0 ||
	    mw_buf_put_u32(&out, b) != 0 || mw_buf_put_u64(&out, c) != 0 ||
	    mw_frame_end(&out, start) != 0)
		return -1;
	return send_packet(fd, &out, fds, nfds);
}

int
mw_zygote_recv(int fd, struct mw_zygote_msg *m)
{
	uint8_t raw[64] = { 0 };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { raw, sizeof(raw) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t n;

	memset(m, 0, sizeof(*m));
	m->fds[0] = m->fds[1] = -1;
	do {
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? MW_WIRE_ESHORT : MW_WIRE_EIO;
	if (n == 0)
		return MW_WIRE_EEOF;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (m->nfds < 2)
				m->fds[m->nfds++] = f;
			else
				close(f);
		}
	}
	struct mw_buf in, payload;
	mw_buf_view(&in, raw, (size_t)n);
	if (mw_frame_take(&in, 32, &m->type, &payload) != 0 ||
	    mw_buf_get_u32(&payload, &m->a) != 0 ||
	    mw_buf_get_u32(&payload, &m->b) != 0 ||
	    mw_buf_get_u64(&payload, &m->c) != 0)
		return MW_WIRE_EFORMAT;
	return 0;
}

int
mw_zygote_request(int fd)
{
	return send_small(fd, ZYG_FORK, 0, 0, 0, NULL, 0);
}

static void
fork_worker(int ctl, const struct mw_filter *filter, void (*body)(int))
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		send_small(ctl, ZYG_FAIL, (uint32_t)errno, 0, 0, NULL, 0);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		send_small(ctl, ZYG_FAIL, (uint32_t)errno, 0, 0, NULL, 0);
		close(sv[0]);
		close(sv[1]);
		return;
	}
	if (pid == 0) {
		if (mw_confine_worker(sv[1], filter) != 0)
			_exit(125);
		body(MW_WORKER_FD);
		_exit(0);
	}
	close(sv[1]);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		kill(pid, SIGKILL);
		close(sv[0]);
		send_small(ctl, ZYG_FAIL, (uint32_t)errno, 0, 0, NULL, 0);
		return;
	}
	int fds[2] = { sv[0], pidfd };
	if (send_small(ctl, ZYG_WORKER, (uint32_t)pid, 0, 0, fds, 2) != 0)
		kill(pid, SIGKILL);
	close(sv[0]);
	close(pidfd);
}

static void
reap(int ctl)
{
	int st;
	struct rusage ru;
	pid_t pid;
	while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
		uint64_t cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
		    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
		send_small(ctl, ZYG_EXIT, (uint32_t)pid, (uint32_t)st, cpu, NULL, 0);
	}
}

/*
 * The capabilities the supervisor holds (permitted) are raised into its
 * inheritable and ambient sets, so that `moonwire-zygote`, which has no
 * file capabilities, keeps exactly them across the exec (no_new_privs
 * allows this: nothing is gained).  The zygote checks that it holds them
 * all (cap_arg) and clears its ambient set at once.
 */
static int
carry_capabilities(char *cap_arg, size_t n)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &hdr, d) != 0)
		return -1;
	uint64_t perm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
	d[0].inheritable = d[0].permitted;
	d[1].inheritable = d[1].permitted;
	if (perm != 0 && syscall(SYS_capset, &hdr, d) != 0)
		return -1;
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if ((perm >> c & 1) &&
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0)
			return -1;
	snprintf(cap_arg, n, "%llx", (unsigned long long)perm);
	return 0;
}

void
mw_zygote_exec(int ctl, const char **why)
{
	char self[4096], path[4096 + sizeof(MW_ZYGOTE_NAME)], caps[32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		*why = "cannot read /proc/self/exe";
		return;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL || strstr(self, " (deleted)") != NULL) {
		*why = "the moonwire binary was replaced";
		return;
	}
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/%s", self, MW_ZYGOTE_NAME);
	if (access(path, X_OK) != 0) {
		*why = "not found next to the moonwire binary";
		return;
	}
	if (carry_capabilities(caps, sizeof(caps)) != 0) {
		*why = "cannot carry the supervisor's capabilities across exec";
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		return;
	}
	if (dup2(ctl, MW_ZYGOTE_CTL_FD) == MW_ZYGOTE_CTL_FD) {
		char *const argv[] = { MW_ZYGOTE_NAME, MW_ZYGOTE_ARG, caps, NULL };
		extern char **environ;	/* the supervisor's: PATH, LD_BIND_NOW */
		execve(path, argv, environ);
		close(MW_ZYGOTE_CTL_FD);
	}
	*why = "cannot execute it";
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

void
mw_zygote_main(int ctl, const struct mw_filter *filter, void (*body)(int))
{
	sigset_t mask;
	/* Signal dispositions, environment and /dev/null: once here, not in
	 * every worker (confine.c). */
	if (mw_confine_zygote_prepare() != 0)
		_exit(1);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		_exit(1);
	prctl_set_pdeathsig_kill();
	/* Workers inherit an empty bounding set and locked securebits: done
	 * once here instead of in every worker. */
	if (mw_confine_lock_bounding() != 0)
		_exit(1);
	/* Refilling the pool is background work, and untrusted jobs should
	 * yield to the device's own services: the zygote and every worker it
	 * forks run at nice 10, so the caller and supervisor delivering a result
	 * are never queued behind a worker that is still confining itself. */
	if (setpriority(PRIO_PROCESS, 0, 10) != 0)
		_exit(1);
	/* Load /etc/localtime once: each worker's own tzset() (confine.c)
	 * then finds it unchanged and skips re-reading and parsing it. */
	tzset();
	/* Every worker starts from a copy of this state (worker.c). */
	if (body == mw_worker_main)
		mw_worker_prepare();
	/* From here on the zygote only forks: it confines itself to that
	 * (filter.c, zygote_rules), and every worker inherits the filter
	 * under its own, which makes loading the worker's cheaper. */
	struct mw_filter own;
	if (mw_filter_build_zygote(&own) != 0) {
		static const char msg[] = "moonwire zygote: cannot build its seccomp filter\n";
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(1);
	}
	struct sock_fprog prog = { .len = own.len, .filter = own.insns };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		_exit(1);
	mw_filter_free(&own);
	/* Building the filters left freed chunks in malloc's fast bins; a
	 * worker's first larger malloc would consolidate them, writing to
	 * (and so copying) every heap page it shares with the zygote.  Done
	 * once here instead. */
	malloc_trim(0);
	for (;;) {
		struct pollfd p[2] = { { ctl, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
			reap(ctl);
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			struct mw_zygote_msg m;
			int r = mw_zygote_recv(ctl, &m);
			if (r == MW_WIRE_ESHORT)
				continue;
			if (r != 0 || m.type != ZYG_FORK)
				_exit(0);	/* supervisor gone or confused */
			fork_worker(ctl, filter, body);
		}
	}
}
