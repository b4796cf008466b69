/*
 * supervisor.c: the sandbox supervisor -- policy enforcement without secrets.
 *
 * It is exec'd by its caller (the agent, or `moonwire run`) before the caller
 * loads any key, talks to it over one socket, and never touches the network.
 * It keeps `pool` confined workers idle (forked by the zygote), starts at
 * most `parallel` jobs at once, queues up to `queue_max` more and answers
 * "busy" beyond that.  Each worker is assumed hostile: every frame it sends
 * is size-checked before it is buffered, every capability call is checked
 * against the job's grants, and every way it can stop -- a result, a crash,
 * a forbidden syscall, garbage, a flood, silence -- ends as exactly one
 * typed result for the caller.  The supervisor's own event loop never blocks
 * on a worker: all worker and caller sockets are non-blocking.
 *
 * This file holds the state, the lifetimes of jobs and workers, the
 * scheduler and the loop; frames from workers are read in sv_worker.c,
 * from the caller and the zygote in sv_caller.c (supervisor_int.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"
#include "sandbox/supervisor_int.h"
#include "sandbox/zygote_int.h"

struct sv_state sv;

void
sv_logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("moonwire supervisor: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int
sv_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- results to the caller ---- */

static void
send_result(const struct mw_result *r)
{
	if (mw_enc_result(&sv.cout, r) != 0)
		sv_logmsg("cannot encode result for %s", r->job_id);
}

void
sv_send_simple_result(const char *id, enum mw_job_status st, const char *err)
{
	struct mw_result r;
	memset(&r, 0, sizeof(r));
	r.job_id = (char *)(uintptr_t)id;
	r.status = st;
	r.error = (char *)(uintptr_t)err;
	send_result(&r);
}

void
sv_job_free(struct sv_job *job)
{
	mw_cap_async_abort(&job->async);
	mw_job_owned_free(&job->j);
	mw_buf_free(&job->output);
	free(job);
}

/*
 * Every kill must land (spec/sandbox.md, "Privileges as deployed"): the
 * supervisor is root, holds CAP_KILL, or runs workers under its own uid.
 * The socket is shut down as well, so that a worker blocked reading a
 * capability reply gets end-of-file and exits even if the signal were
 * ever refused; a refusal is logged, never silent.
 */
void
sv_worker_kill(struct sv_worker *w)
{
	if (w->fd >= 0)
		shutdown(w->fd, SHUT_RDWR);
	if (w->pidfd >= 0 &&
	    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0) != 0 &&
	    errno != ESRCH) {
		sv.kill_failures++;
		sv_logmsg("cannot kill worker %d: %s", (int)w->pid, strerror(errno));
	}
}

/* Ends a running job with result r (values etc. already filled in). */
void
sv_job_complete(struct sv_job *job, struct mw_result *r, uint64_t cpu_us)
{
	r->job_id = job->j.id;
	r->output = (char *)mw_buf_ptr(&job->output);
	r->output_len = mw_buf_avail(&job->output);
	r->output_truncated = job->output_trunc;
	r->usage.wall_us = mw_now_us() - job->start_us;
	r->usage.cpu_us = cpu_us;
	send_result(r);
	if (job->w != NULL) {
		job->w->job = NULL;
		sv_worker_kill(job->w);	/* done: it must not outlive its job */
	}
	sv.running--;
	sv_job_free(job);
}

void
sv_job_kill(struct sv_job *job, enum mw_job_status st, const char *fmt, ...)
{
	if (job->kill_status >= 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->kill_error, sizeof(job->kill_error), fmt, ap);
	va_end(ap);
	job->kill_status = (int)st;
	mw_cap_async_abort(&job->async);
	if (job->w != NULL)
		sv_worker_kill(job->w);
}

/* ---- workers ---- */

static void
worker_remove(struct sv_worker *w)
{
	for (struct sv_worker **pp = &sv.workers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (w->fd >= 0)
		close(w->fd);
	if (w->pidfd >= 0)
		close(w->pidfd);
	mw_buf_free(&w->in);
	mw_buf_free(&w->out);
	free(w);
}

static const char *
signame(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGABRT: return "SIGABRT";
	case SIGILL: return "SIGILL";
	case SIGTRAP: return "SIGTRAP";	/* aarch64's __builtin_trap (brk) */
	case SIGFPE: return "SIGFPE";
	case SIGKILL: return "SIGKILL";
	case SIGSYS: return "SIGSYS";
	case SIGXCPU: return "SIGXCPU";
	case SIGXFSZ: return "SIGXFSZ";
	case SIGPIPE: return "SIGPIPE";
	}
	return "signal";
}


void
sv_worker_exited(pid_t pid, int wstatus, uint64_t cpu_us)
{
	struct sv_worker *w;
	for (w = sv.workers; w != NULL && w->pid != pid; w = w->next)
		;
	if (w == NULL)
		return;
	/* It is dead, so everything it wrote is in the socket: read it all
	 * first, a DONE frame may be there. */
	while (w->job != NULL && w->fd >= 0 && !w->eof && sv_worker_readable(w))
		;
	struct sv_job *job = w->job;
	if (job == NULL) {
		if (!w->used) {
			/* Died while idle: confinement failed or it was killed. */
			sv.idle--;
			sv.idle_failures++;
		}
		worker_remove(w);
		return;
	}
	struct mw_result r;
	memset(&r, 0, sizeof(r));
	char msg[200];
	if (job->kill_status >= 0) {
		r.status = (enum mw_job_status)job->kill_status;
		snprintf(msg, sizeof(msg), "%s", job->kill_error);
	} else if (WIFSIGNALED(wstatus)) {
		int sig = WTERMSIG(wstatus);
		if (sig == SIGALRM) {
			/* The worker's own wall deadline (worker.c) fired
			 * before the supervisor's kill. */
			r.status = MW_JOB_WALL_LIMIT;
			snprintf(msg, sizeof(msg), "wall-clock limit exceeded (%u ms)",
			    job->j.limits.wall_ms);
		} else if (sig == SIGSYS) {
			r.status = MW_JOB_SANDBOX_VIOLATION;
			snprintf(msg, sizeof(msg), "worker made a forbidden system call (SIGSYS)");
		} else if (sig == SIGXCPU || sig == SIGPROF ||
		    (sig == SIGKILL && cpu_us >= (uint64_t)job->j.limits.cpu_ms * 1000u)) {
			r.status = MW_JOB_CPU_LIMIT;
			snprintf(msg, sizeof(msg), "cpu time limit exceeded (%u ms)",
			    job->j.limits.cpu_ms);
		} else {
			r.status = MW_JOB_CRASHED;
			snprintf(msg, sizeof(msg), "worker died of signal %d (%s)", sig,
			    signame(sig));
		}
	} else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 125) {
		r.status = MW_JOB_INTERNAL_ERROR;
		snprintf(msg, sizeof(msg), "worker confinement failed");
	} else {
		r.status = MW_JOB_PROTOCOL_ERROR;
		snprintf(msg, sizeof(msg), "worker exited without a result (status %d)",
		    WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
	}
	r.error = msg;
	job->w = NULL;
	w->job = NULL;
	sv_job_complete(job, &r, cpu_us);
	worker_remove(w);
}


/* ---- scheduling ---- */

static struct sv_worker *
idle_worker(void)
{
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next)
		if (w->job == NULL && !w->used && !w->eof && w->fd >= 0)
			return w;
	return NULL;
}

static int
enc_job_args(struct mw_buf *b, const struct mw_job_owned *j)
{
	struct mw_job_arg a[MW_ARGS_MAX];
	for (uint32_t i = 0; i < j->n_args; i++) {
		a[i].name = j->arg_names[i];
		a[i].value = j->arg_values[i];
	}
	return mw_enc_args(b, a, j->n_args);
}

/* The lowest commands' uid slot no running job holds; with count >=
 * parallel (checked at HELLO) there always is one. */
static int
free_cmd_slot(void)
{
	for (uint32_t s = 0; s < sv.cfg.cmd_uid_count; s++) {
		bool taken = false;
		for (struct sv_worker *x = sv.workers; x != NULL && !taken; x = x->next)
			taken = x->job != NULL && x->job->cmd_slot == (int)s;
		if (!taken)
			return (int)s;
	}
	return -1;
}

static void
job_start(struct sv_job *job, struct sv_worker *w)
{
	size_t start;
	job->cmd_slot = sv.cfg.cmd_uid_count != 0 ? free_cmd_slot() : -1;
	sv.idle--;
	sv.running++;
	job->w = w;
	w->job = job;
	w->used = true;
	job->start_us = mw_now_us();
	job->deadline_us = job->start_us + (uint64_t)job->j.limits.wall_ms * 1000u;
	if (sv.cfg.cmd_uid_count != 0 && job->cmd_slot < 0)
		sv_job_kill(job, MW_JOB_INTERNAL_ERROR, "no commands' uid free");
	else if (mw_frame_begin(&w->out, MW_F_RUN, &start) != 0 ||
	    mw_buf_put_cstring(&w->out, job->j.chunkname) != 0 ||
	    mw_buf_put_string(&w->out, job->j.program, job->j.program_len) != 0 ||
	    mw_enc_limits(&w->out, &job->j.limits) != 0 ||
	    enc_job_args(&w->out, &job->j) != 0 ||
	    mw_frame_end(&w->out, start) != 0)
		sv_job_kill(job, MW_JOB_INTERNAL_ERROR, "cannot send job to worker");
	mw_buf_flush_some(&w->out, w->fd);
}

void
sv_schedule(void)
{
	while (sv.queue_head != NULL && sv.running < sv.cfg.parallel) {
		struct sv_worker *w = idle_worker();
		if (w == NULL)
			break;
		struct sv_job *job = sv.queue_head;
		sv.queue_head = job->next;
		if (sv.queue_head == NULL)
			sv.queue_tail = NULL;
		sv.queued--;
		job->next = NULL;
		job_start(job, w);
	}
	/* Keep the pool full, and fork what the waiting jobs need beyond it
	 * (pool 0: workers are forked per job); a pool that keeps dying idle
	 * is broken. */
	unsigned want = sv.cfg.pool, slots = sv.cfg.parallel > sv.running ?
	    sv.cfg.parallel - sv.running : 0;
	if (want < (sv.queued < slots ? sv.queued : slots))
		want = sv.queued < slots ? sv.queued : slots;
	while (sv.idle + sv.forking < want && sv.idle_failures < 8) {
		if (mw_zygote_request(sv.zfd) != 0)
			break;
		sv.forking++;
	}
	if (sv.idle_failures >= 8 && sv.idle == 0 && sv.forking == 0) {
		while (sv.queue_head != NULL) {
			struct sv_job *job = sv.queue_head;
			sv.queue_head = job->next;
			sv.queued--;
			sv_send_simple_result(job->j.id, MW_JOB_INTERNAL_ERROR,
			    "sandbox cannot start workers");
			sv_job_free(job);
		}
		sv.queue_tail = NULL;
	}
}

static void
check_deadlines(uint64_t now)
{
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next) {
		struct sv_job *job = w->job;
		if (job == NULL || job->kill_status >= 0)
			continue;
		if (now >= job->deadline_us) {
			sv_job_kill(job, MW_JOB_WALL_LIMIT, "wall-clock limit exceeded (%u ms)",
			    job->j.limits.wall_ms);
			continue;
		}
		if (job->cap_pending && job->async.kind == MW_ASYNC_SLEEP &&
		    now >= job->async.deadline_us)
			sv_async_complete(job);
		else if (job->cap_pending && job->async.kind == MW_ASYNC_HELPER &&
		    now >= job->async.deadline_us) {
			job->async.timed_out = true;
			sv_async_complete(job);	/* answers now; kills the helper */
		} else if (job->cap_pending && job->async.kind == MW_ASYNC_EXEC &&
		    !job->async.timed_out && now >= job->async.deadline_us) {
			job->async.timed_out = true;
			if (job->async.pid > 0)
				kill(job->async.pid, SIGTERM);	/* its reaper kills the tree */
		}
	}
}

static int
next_timeout_ms(uint64_t now)
{
	uint64_t next = UINT64_MAX;
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next) {
		struct sv_job *job = w->job;
		if (job == NULL || job->kill_status >= 0)
			continue;
		if (job->deadline_us < next)
			next = job->deadline_us;
		/* A command past its timeout is being killed by its reaper:
		 * its deadline no longer wakes the loop (no busy wait). */
		if (job->cap_pending && job->async.kind != MW_ASYNC_NONE &&
		    !job->async.timed_out && job->async.deadline_us < next)
			next = job->async.deadline_us;
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	uint64_t ms = (next - now + 999) / 1000;
	return ms > 60000 ? 60000 : (int)ms;
}

#define MAX_POLL 1024

static void
run_loop(void)
{
	struct pollfd pfd[MAX_POLL];
	struct sv_worker *who[MAX_POLL];
	int kind[MAX_POLL];	/* 0 caller, 1 zygote, 2 signal, 3 worker, 4/5 exec out/err */

	for (;;) {
		int n = 0;
		pfd[n] = (struct pollfd){ sv.cfd, POLLIN | (mw_buf_avail(&sv.cout) ? POLLOUT : 0), 0 };
		kind[n++] = 0;
		pfd[n] = (struct pollfd){ sv.zfd, POLLIN, 0 };
		kind[n++] = 1;
		pfd[n] = (struct pollfd){ sv.sfd, POLLIN, 0 };
		kind[n++] = 2;
		for (struct sv_worker *w = sv.workers; w != NULL && n < MAX_POLL - 3; w = w->next) {
			if (w->fd < 0 || w->eof)
				continue;
			pfd[n] = (struct pollfd){ w->fd, POLLIN | (mw_buf_avail(&w->out) ? POLLOUT : 0), 0 };
			who[n] = w;
			kind[n++] = 3;
			struct sv_job *job = w->job;
			if (job != NULL && job->cap_pending && sv_async_has_child(&job->async)) {
				if (job->async.out_fd >= 0) {
					pfd[n] = (struct pollfd){ job->async.out_fd, POLLIN, 0 };
					who[n] = w;
					kind[n++] = 4;
				}
				if (job->async.err_fd >= 0) {
					pfd[n] = (struct pollfd){ job->async.err_fd, POLLIN, 0 };
					who[n] = w;
					kind[n++] = 5;
				}
			}
		}
		int timeout = next_timeout_ms(mw_now_us());
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			sv_logmsg("poll: %s", strerror(errno));
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			switch (kind[i]) {
			case 0:
				if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
				    sv_caller_readable() != 0)
					return;	/* caller gone: shut down */
				if (pfd[i].revents & POLLOUT &&
				    mw_buf_flush_some(&sv.cout, sv.cfd) == MW_WIRE_EIO)
					return;
				break;
			case 1:
				sv_zygote_readable();
				break;
			case 2: {
				struct signalfd_siginfo si;
				while (read(sv.sfd, &si, sizeof(si)) == sizeof(si))
					;
				sv_reap_children();
				break;
			}
			case 3: {
				struct sv_worker *w = who[i];
				bool still = false;
				for (struct sv_worker *x = sv.workers; x; x = x->next)
					still |= x == w;
				if (!still)
					break;
				if (pfd[i].revents & POLLOUT &&
				    mw_buf_flush_some(&w->out, w->fd) == MW_WIRE_EIO)
					w->eof = true;
				if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
					sv_worker_readable(w);
				break;
			}
			case 4:
			case 5: {
				struct sv_worker *w = who[i];
				bool still = false;
				for (struct sv_worker *x = sv.workers; x; x = x->next)
					still |= x == w;
				if (still && w->job != NULL && w->job->cap_pending &&
				    sv_async_has_child(&w->job->async))
					sv_exec_pipe_readable(w->job, kind[i] == 5);
				break;
			}
			}
		}
		check_deadlines(mw_now_us());
		sv_schedule();
		for (struct sv_worker *w = sv.workers; w != NULL; w = w->next)
			if (mw_buf_avail(&w->out) && w->fd >= 0 && !w->eof)
				mw_buf_flush_some(&w->out, w->fd);
		if (mw_buf_avail(&sv.cout) &&
		    mw_buf_flush_some(&sv.cout, sv.cfd) == MW_WIRE_EIO)
			return;
	}
}

static int
supervisor_run(int fd, void (*body)(int))
{
	struct mw_filter filter;
	int zsv[2];
	sigset_t mask;

	memset(&sv, 0, sizeof(sv));
	sv.cfd = fd;
	sv.body = body;
	mw_buf_init(&sv.cin, MW_MAX_CALLER_FRAME + MW_FRAME_HEADER + 256 * 1024);
	mw_buf_init(&sv.cout, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* a terminal's hangup or a reload is the caller's */
	prctl_set_pdeathsig_kill();
	mw_confine_supervisor();
	mw_confine_supervisor_caps();
	if (!mw_confine_can_kill_others()) {
		/* Workers and commands would run as nobody, out of reach of
		 * every kill: refuse rather than run jobs no limit can end. */
		sv_logmsg("refusing to start: CAP_SETUID without CAP_KILL (workers would run as "
		    "nobody and could not be killed); grant CAP_KILL as the shipped "
		    "moonwire-agent.service does, or neither");
		return 1;
	}
	if (mw_filter_build(&filter) != 0) {
		if (filter.missing != NULL)
			sv_logmsg("cannot build the seccomp filter: this architecture has no "
			    "syscall '%s'", filter.missing);
		else
			sv_logmsg("cannot build the seccomp filter");
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sv.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		return 1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, zsv) != 0)
		return 1;
	sv.zpid = fork();
	if (sv.zpid < 0)
		return 1;
	if (sv.zpid == 0) {
		close(zsv[0]);
		close(fd);
		close(sv.sfd);
		if (body == mw_worker_main) {
			/* The zygote as its own small program (zygote_main.c);
			 * if that cannot be, this very process serves. */
			const char *why = NULL;
			mw_zygote_exec(zsv[1], &why);
			sv_logmsg("%s: %s; workers are forked from the supervisor's image",
			    MW_ZYGOTE_NAME, why);
		}
		mw_zygote_main(zsv[1], &filter, body);
	}
	close(zsv[1]);
	mw_filter_free(&filter);
	sv.zfd = zsv[0];
	if (sv_set_nonblock(sv.cfd) != 0 || sv_set_nonblock(sv.zfd) != 0)
		return 1;
	run_loop();
	/* Caller gone: every worker dies with its zygote (PDEATHSIG). */
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next)
		sv_worker_kill(w);
	kill(sv.zpid, SIGKILL);
	mw_kv_close(sv.kv);
	return 0;
}

int
mw_supervisor_main(int fd)
{
	return supervisor_run(fd, mw_worker_main);
}

/* Used by client.c for the in-process test mode. */
int mw_supervisor_run_with(int fd, void (*body)(int));
int
mw_supervisor_run_with(int fd, void (*body)(int))
{
	return supervisor_run(fd, body);
}
