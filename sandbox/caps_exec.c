/*
 * caps_exec.c: exec.run -- allowlisted commands, each in its own session
 * under a reaper that kills every process the command left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <sqlite3.h>

#include "sandbox/caps_int.h"

/* ---- commands ---- */

/*
 * A command never runs as the supervisor's direct child.  The supervisor
 * forks a reaper, which becomes a child subreaper in its own session and
 * forks the command.  Whatever the command leaves behind -- background
 * children, double-forked daemons, processes that called setsid() to leave
 * the process group -- is reparented to the reaper, not to init.  When the
 * command exits, or the reaper gets SIGTERM (timeout, job end, supervisor
 * death), the reaper SIGKILLs every process it still has until none is left,
 * and only then exits, with the command's own status (or SIGKILL when it was
 * stopped).  So when the supervisor reaps the reaper, the command's whole
 * tree is gone and its pipes are at end of file.
 */

/*
 * SIGKILLs every child of the reaper, whatever its state: a thread-group
 * leader whose thread exited shows 'Z' while its other threads run, and a
 * signal to a real zombie does nothing.  Our own unreaped children cannot
 * have their pid reused, so the signal cannot hit a stranger.  Returns how
 * many it signalled, or -1 when it could not list them.
 *
 * The list comes from /proc/self/task/TID/children, which a process can
 * always read about itself (a /proc mounted hidepid=2, or the unit's
 * ProtectProc=invisible, hides other uids' /proc/PID from the reaper but
 * not this); a scan of /proc/PID/stat is the fallback for a kernel
 * without it.  The reaper is single-threaded (forked), so its one task
 * has every child, orphans reparented to it included.
 */
static int
kill_children_listed(pid_t self)
{
	char path[64], buf[1024];
	long pid = 0;
	bool digits = false;
	int n = 0;
	ssize_t r;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/children", (long)self);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* "PID PID ... ": numbers may straddle two reads */
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] >= '0' && buf[i] <= '9' && pid < INT_MAX / 10) {
				pid = pid * 10 + (buf[i] - '0');
				digits = true;
				continue;
			}
			if (digits && pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
				n++;
			pid = 0;
			digits = false;
		}
	if (digits && pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
		n++;
	close(fd);
	return r < 0 ? -1 : n;
}

static int
kill_children(pid_t self)
{
	int n = kill_children_listed(self);
	if (n >= 0)
		return n;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return -1;
	n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[64], buf[512], *end;
		long pid = strtol(de->d_name, &end, 10);
		if (pid <= 0 || *end != '\0')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = '\0';
		/* "pid (comm) state ppid ...": comm may contain anything, so
		 * parse from the last ')'. */
		char *rp = strrchr(buf, ')');
		char state;
		int ppid;
		if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (ppid == (int)self && kill((pid_t)pid, SIGKILL) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The commands' deny-list filter (filter.c): compiled once, in the
 * supervisor, on the first exec.run; every reaper inherits it. */
static struct mw_filter command_filter;
static bool command_filter_built;

static const struct mw_filter *
command_filter_get(void)
{
	if (!command_filter_built) {
		if (mw_filter_build_command(&command_filter) != 0)
			return NULL;
		command_filter_built = true;
	}
	return &command_filter;
}

/* How long after the command's deadline its reaper ends it by itself. */
#define REAPER_GRACE_US 200000u

static void __attribute__((noreturn))
command_reaper(char **argv, int outw, int errw, uint64_t deadline_us,
    const struct mw_filter *filter, uid_t uid)
{
	static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", NULL };
	sigset_t wait_for, none;
	struct rlimit nocore = { 0, 0 };
	pid_t self = getpid();

	/* SIGTERM is blocked (by the supervisor, before fork); SIGCHLD too
	 * (for its signalfd).  Both stay blocked: sigtimedwait takes them. */
	sigemptyset(&wait_for);
	sigaddset(&wait_for, SIGTERM);
	sigaddset(&wait_for, SIGCHLD);
	sigemptyset(&none);
	if (sigprocmask(SIG_BLOCK, &wait_for, NULL) != 0 ||
	    signal(SIGCHLD, SIG_DFL) == SIG_ERR ||
	    setsid() < 0 ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 ||
	    setrlimit(RLIMIT_CORE, &nocore) != 0)
		_exit(126);
	if (getppid() == 1)
		_exit(126);	/* the supervisor died before PDEATHSIG was set */
	pid_t cmd = fork();
	if (cmd < 0)
		_exit(126);
	if (cmd == 0) {
		/* its own process group, for the reaper's last resort */
		if (sigprocmask(SIG_SETMASK, &none, NULL) != 0 || setpgid(0, 0) != 0)
			_exit(126);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				signal(s, SIG_DFL);
		mw_confine_command_child();
		/* The command: nobody where the supervisor may change uid,
		 * every capability set empty, securebits locked where
		 * CAP_SETPCAP is held, no_new_privs, a cwd every uid may
		 * use.  Fail closed: a command that cannot be confined does
		 * not run. */
		if (chdir("/") != 0 || (uid != 0 ? mw_confine_drop_privileges_to(uid,
		    (gid_t)uid) : mw_confine_drop_privileges()) != 0 ||
		    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			_exit(126);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null < 0 || dup2(null, 0) != 0 || dup2(outw, 1) != 1 ||
		    dup2(errw, 2) != 2)
			_exit(126);
		/* fail closed: the supervisor's sockets must not reach it,
		 * and it runs under its filter or not at all */
		struct sock_fprog prog = { .len = filter->len, .filter = filter->insns };
		if (syscall(SYS_close_range, 3, ~0U, 0) != 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			_exit(126);
		execve(argv[0], argv, envp);
		/* Say why on the command's stderr: a path only root can reach
		 * is the usual cause now that commands run as nobody. */
		char msg[512];
		int e = errno;
		int n = snprintf(msg, sizeof(msg), "moonwire: cannot execute %s as uid %u: %s\n",
		    argv[0], (unsigned)getuid(), strerror(e));
		if (n > 0 && write(2, msg, (size_t)n) < 0)
			_exit(127);
		_exit(127);
	}
	/* Nothing of the supervisor's stays open here: sockets, kv store,
	 * and the pipes' write ends (only the command's tree holds those).
	 * The reaper needs CAP_KILL alone (its children run as nobody). */
	(void)setpgid(cmd, 0);	/* as the child does; whichever runs first */
	if (syscall(SYS_close_range, 3, ~0U, 0) != 0 || mw_confine_keep_only_kill() != 0) {
		kill(cmd, SIGKILL);
		_exit(126);
	}

	int cstatus = 0;
	bool cdone = false, stopped = false;
	while (!cdone && !stopped) {
		int st;
		pid_t p = waitpid(cmd, &st, WNOHANG);
		if (p == cmd) {
			cstatus = st;
			cdone = true;
			break;
		}
		if (p < 0 && errno != EINTR)
			break;
		/* Its own deadline too: a stuck supervisor cannot keep a
		 * command alive past its timeout. */
		uint64_t now = mw_now_us();
		if (now >= deadline_us) {
			stopped = true;
			break;
		}
		uint64_t left = deadline_us - now;
		struct timespec ts = { (time_t)(left / 1000000u), (long)(left % 1000000u) * 1000 };
		int sig = sigtimedwait(&wait_for, NULL, &ts);
		if (sig == SIGTERM)
			stopped = true;
		else if (sig < 0 && errno != EINTR && errno != EAGAIN)
			stopped = true;
	}
	/* Kill the whole tree: children first, their orphans arrive here.
	 * Backs off (1 ms doubling to 50 ms) so that a process it cannot
	 * kill never makes it spin. */
	long pause_ns = 1000000;
	for (;;) {
		int st;
		pid_t p;
		int killed = kill_children(self);
		while ((p = waitpid(-1, &st, WNOHANG)) > 0)
			if (p == cmd && !cdone) {
				cstatus = st;
				cdone = true;
			}
		if (p < 0 && errno == ECHILD)
			break;
		if (killed < 0)
			kill(-cmd, SIGKILL);	/* no /proc at all: the command's group */
		struct timespec ts = { 0, pause_ns };
		nanosleep(&ts, NULL);
		if (pause_ns < 50000000)
			pause_ns *= 2;
	}
	if (stopped || !cdone || WIFSIGNALED(cstatus)) {
		int sig = (!stopped && cdone) ? WTERMSIG(cstatus) : SIGKILL;
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, sig);
		signal(sig, SIG_DFL);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		kill(self, sig);
		kill(self, SIGKILL);	/* a signal whose default is to ignore */
	}
	_exit(WEXITSTATUS(cstatus));
}

int
cap_exec(const struct mw_cap_ctx *ctx, struct cap_args *A, struct mw_buf *reply,
    struct mw_cap_async *async)
{
	const struct mw_grants *g = ctx->grants;
	uint32_t calls = ctx->exec_calls;
	if (A->n < 1 || A->a[0].tag != MW_V_STRING)
		return mw_cap_reply_error(reply, "exec.run: command name must be a string");
	const struct mw_command_grant *c = NULL;
	for (uint32_t i = 0; i < g->n_commands; i++)
		if (strlen(g->commands[i].name) == A->a[0].slen &&
		    memcmp(g->commands[i].name, A->a[0].s, A->a[0].slen) == 0)
			c = &g->commands[i];
	if (c == NULL)
		return mw_cap_reply_error(reply, "capability denied: exec.run %.*s: command not granted",
		    (int)(A->a[0].slen > 64 ? 64 : A->a[0].slen), A->a[0].s);
	if (calls >= MAX_EXEC_CALLS)
		return mw_cap_reply_error(reply, "capability denied: exec.run %s: more than %d commands in one job",
		    c->name, MAX_EXEC_CALLS);
	const struct cap_arg *extra = A->n >= 2 ? &A->a[1] : NULL;
	unsigned nextra = 0;
	if (extra != NULL && extra->tag != MW_V_NIL) {
		if (extra->tag != MW_V_TABLE || extra->list_bad)
			return mw_cap_reply_error(reply, "exec.run %s: arguments must be a list of strings",
			    c->name);
		nextra = extra->nlist;
	}
	if (nextra > c->max_args)
		return mw_cap_reply_error(reply, "capability denied: exec.run %s: %u extra arguments, %u allowed",
		    c->name, nextra, c->max_args);
	/* Arguments in key order 1..n, each without NUL. */
	char *argv[64 + MAX_ARGS + 2];
	if (c->argc > 64)
		return mw_cap_reply_error(reply, "exec.run %s: argv too long", c->name);
	uint32_t ac = 0;
	for (; ac < c->argc; ac++)
		argv[ac] = c->argv[ac];
	char *owned[MAX_ARGS + 1] = { 0 };
	for (unsigned k = 1; k <= nextra; k++) {
		unsigned found = nextra;
		for (unsigned j = 0; j < nextra; j++)
			if (extra->list_key[j] == (int64_t)k)
				found = j;
		if (found != nextra && extra->list_len[found] > 0 && extra->list[found][0] == '-') {
			for (unsigned j = 0; j < k - 1; j++)
				free(owned[j]);
			return mw_cap_reply_error(reply, "capability denied: exec.run %s: argument %u"
			    " starts with '-' (options come from the policy, not the job)", c->name, k);
		}
		if (found == nextra || memchr(extra->list[found], '\0', extra->list_len[found])) {
			for (unsigned j = 0; j < k - 1; j++)
				free(owned[j]);
			return mw_cap_reply_error(reply, "exec.run %s: arguments must be a sequence of strings without NUL",
			    c->name);
		}
		owned[k - 1] = strndup((const char *)extra->list[found], extra->list_len[found]);
		argv[ac++] = owned[k - 1];
	}
	argv[ac] = NULL;

	const struct mw_filter *filter = command_filter_get();
	if (filter == NULL) {
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: cannot build the commands' "
		    "seccomp filter", c->name);
	}
	int outp[2], errp[2];
	if (pipe2(outp, O_CLOEXEC | O_NONBLOCK) != 0) {
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(errno));
	}
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) != 0) {
		close(outp[0]);
		close(outp[1]);
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(errno));
	}
	/* SIGTERM stays blocked in the reaper until it waits for it. */
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &term, &old) != 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(e));
	}
	uint64_t t = c->timeout_ms ? c->timeout_ms : 5000;
	uint64_t deadline = ctx->now_us + t * 1000u;
	if (deadline > ctx->wall_deadline_us)
		deadline = ctx->wall_deadline_us;
	pid_t pid = fork();
	if (pid == 0)
		/* the reaper's own deadline is the backstop: a little after
		 * the supervisor's, whose SIGTERM normally ends the command */
		command_reaper(argv, outp[1], errp[1], deadline + REAPER_GRACE_US, filter,
		    ctx->cmd_uid);
	int fork_errno = errno;
	if (sigprocmask(SIG_SETMASK, &old, NULL) != 0 && pid > 0) {
		fork_errno = errno;
		kill(pid, SIGTERM);	/* it cleans up; reap_children collects it */
		pid = -1;
	}
	for (unsigned j = 0; j < nextra; j++)
		free(owned[j]);
	close(outp[1]);
	close(errp[1]);
	if (pid < 0) {
		close(outp[0]);
		close(errp[0]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(fork_errno));
	}
	memset(async, 0, sizeof(*async));
	async->kind = MW_ASYNC_EXEC;
	async->pid = pid;
	async->out_fd = outp[0];
	async->err_fd = errp[0];
	async->cap_bytes = c->output_bytes ? c->output_bytes : 64 * 1024;
	if (async->cap_bytes > MW_MAX_WORKER_FRAME / 4)
		async->cap_bytes = MW_MAX_WORKER_FRAME / 4;
	mw_buf_init(&async->out, async->cap_bytes);
	mw_buf_init(&async->err, async->cap_bytes);
	async->deadline_us = deadline;
	return 1;
}

int
mw_cap_finish(struct mw_cap_async *a, struct mw_buf *reply)
{
	int r = 0;
	if (a->kind == MW_ASYNC_SLEEP) {
		r = reply_ok(reply, 0);
	} else if (a->kind == MW_ASYNC_EXEC) {
		int st = a->wstatus;
		bool exited = WIFEXITED(st), sig = WIFSIGNALED(st);
		if (reply_ok(reply, 1) || put_ret_index(reply, 1) ||
		    put_table(reply, 5) ||
		    put_cstr(reply, exited ? "code" : "signal") ||
		    put_int(reply, exited ? WEXITSTATUS(st) : sig ? WTERMSIG(st) : -1) ||
		    put_cstr(reply, "stdout") || put_str(reply, mw_buf_ptr(&a->out), mw_buf_avail(&a->out)) ||
		    put_cstr(reply, "stderr") || put_str(reply, mw_buf_ptr(&a->err), mw_buf_avail(&a->err)) ||
		    put_cstr(reply, "timed_out") || put_bool(reply, a->timed_out) ||
		    put_cstr(reply, "truncated") || put_bool(reply, a->out_trunc || a->err_trunc))
			r = -1;
	} else if (a->kind == MW_ASYNC_HELPER) {
		/* The helper wrote a whole reply payload, or it failed. */
		if (a->timed_out)
			r = mw_cap_reply_error(reply, "%s: no answer from the host within %s", a->what,
			    "its deadline (a mount or device does not respond)");
		else if (!a->exited || !WIFEXITED(a->wstatus) || WEXITSTATUS(a->wstatus) != 0 ||
		    mw_buf_avail(&a->out) == 0 || a->out_trunc)
			r = mw_cap_reply_error(reply, "%s: failed", a->what);
		else {
			mw_buf_reset(reply);
			r = mw_buf_put(reply, mw_buf_ptr(&a->out), mw_buf_avail(&a->out)) ? -1 : 0;
		}
	}
	mw_cap_async_abort(a);
	return r;
}

void
mw_cap_async_abort(struct mw_cap_async *a)
{
	if (a->kind == MW_ASYNC_EXEC || a->kind == MW_ASYNC_HELPER) {
		/* A reaper kills the command's whole tree on SIGTERM; a
		 * helper has no tree. */
		if (a->pid > 0)
			kill(a->pid, a->kind == MW_ASYNC_EXEC ? SIGTERM : SIGKILL);
		if (a->out_fd >= 0)
			close(a->out_fd);
		if (a->err_fd >= 0)
			close(a->err_fd);
		mw_buf_free(&a->out);
		mw_buf_free(&a->err);
	}
	memset(a, 0, sizeof(*a));
	a->kind = MW_ASYNC_NONE;
	a->out_fd = a->err_fd = -1;
}

