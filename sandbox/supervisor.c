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
#include "sandbox/zygote_int.h"

struct sv_job;

struct sv_worker {
	pid_t pid;
	int fd, pidfd;
	struct mw_buf in, out;
	struct sv_job *job;	/* NULL while idle or when its job ended */
	bool used;		/* was given a job: never reused */
	bool eof;
	struct sv_worker *next;
};

struct sv_job {
	struct mw_job_owned j;
	uint64_t start_us, deadline_us;
	struct sv_worker *w;
	struct mw_buf output;
	bool output_trunc;
	uint32_t cap_calls, exec_calls;
	uint64_t write_used;	/* bytes fs.write wrote for this job */
	struct mw_cap_async async;
	bool cap_pending;
	int kill_status;	/* -1, or the status the supervisor killed it for */
	char kill_error[200];
	struct sv_job *next;
};

static struct {
	int cfd;			/* caller */
	struct mw_buf cin, cout;
	int zfd;			/* zygote control */
	pid_t zpid;
	int sfd;			/* signalfd for SIGCHLD */
	struct sv_worker *workers;
	struct sv_job *queue_head, *queue_tail;
	unsigned queued, running, idle, forking;
	unsigned idle_failures;
	struct mw_supervisor_hello cfg;
	struct mw_protected prot[MW_MAX_PROTECTED];
	struct mw_kv *kv;
	unsigned kill_failures;
	bool hello;
	void (*body)(int);
} S;

static void
logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("moonwire supervisor: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- results to the caller ---- */

static void
send_result(const struct mw_result *r)
{
	if (mw_enc_result(&S.cout, r) != 0)
		logmsg("cannot encode result for %s", r->job_id);
}

static void
send_simple_result(const char *id, enum mw_job_status st, const char *err)
{
	struct mw_result r;
	memset(&r, 0, sizeof(r));
	r.job_id = (char *)(uintptr_t)id;
	r.status = st;
	r.error = (char *)(uintptr_t)err;
	send_result(&r);
}

static void
job_free(struct sv_job *job)
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
static void
worker_kill(struct sv_worker *w)
{
	if (w->fd >= 0)
		shutdown(w->fd, SHUT_RDWR);
	if (w->pidfd >= 0 &&
	    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0) != 0 &&
	    errno != ESRCH) {
		S.kill_failures++;
		logmsg("cannot kill worker %d: %s", (int)w->pid, strerror(errno));
	}
}

/* Ends a running job with result r (values etc. already filled in). */
static void
job_complete(struct sv_job *job, struct mw_result *r, uint64_t cpu_us)
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
		worker_kill(job->w);	/* done: it must not outlive its job */
	}
	S.running--;
	job_free(job);
}

static void
job_kill(struct sv_job *job, enum mw_job_status st, const char *fmt, ...)
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
		worker_kill(job->w);
}

/* ---- workers ---- */

static void
worker_remove(struct sv_worker *w)
{
	for (struct sv_worker **pp = &S.workers; *pp != NULL; pp = &(*pp)->next)
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

static bool worker_readable(struct sv_worker *w);

static void
worker_exited(pid_t pid, int wstatus, uint64_t cpu_us)
{
	struct sv_worker *w;
	for (w = S.workers; w != NULL && w->pid != pid; w = w->next)
		;
	if (w == NULL)
		return;
	/* It is dead, so everything it wrote is in the socket: read it all
	 * first, a DONE frame may be there. */
	while (w->job != NULL && w->fd >= 0 && !w->eof && worker_readable(w))
		;
	struct sv_job *job = w->job;
	if (job == NULL) {
		if (!w->used) {
			/* Died while idle: confinement failed or it was killed. */
			S.idle--;
			S.idle_failures++;
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
	job_complete(job, &r, cpu_us);
	worker_remove(w);
}

/* ---- frames from a worker ---- */

static bool
status_worker_may_report(uint8_t st)
{
	switch (st) {
	case MW_JOB_OK: case MW_JOB_ERROR: case MW_JOB_SYNTAX_ERROR:
	case MW_JOB_INSTRUCTION_LIMIT: case MW_JOB_MEMORY_LIMIT:
	case MW_JOB_CPU_LIMIT: case MW_JOB_OUTPUT_LIMIT:
	case MW_JOB_PROGRAM_TOO_LARGE: case MW_JOB_RESULT_LIMIT:
		return true;
	}
	return false;
}

static void
worker_send_reply(struct sv_worker *w, struct mw_buf *reply)
{
	size_t start;
	if (mw_frame_begin(&w->out, MW_F_CAP_REPLY, &start) != 0 ||
	    mw_buf_put(&w->out, mw_buf_ptr(reply), mw_buf_avail(reply)) != 0 ||
	    mw_frame_end(&w->out, start) != 0)
		job_kill(w->job, MW_JOB_INTERNAL_ERROR, "capability reply too large");
}

static void
handle_done(struct sv_worker *w, struct mw_buf *p)
{
	struct sv_job *job = w->job;
	uint8_t st;
	const uint8_t *err, *vals;
	size_t errlen, vlen;
	uint64_t instr, mem, cpu;
	if (mw_buf_get_u8(p, &st) != 0 || !status_worker_may_report(st) ||
	    mw_buf_get_string_direct(p, &err, &errlen) != 0 || errlen > 4096 ||
	    mw_buf_get_string_direct(p, &vals, &vlen) != 0 ||
	    mw_buf_get_u64(p, &instr) != 0 || mw_buf_get_u64(p, &mem) != 0 ||
	    mw_buf_get_u64(p, &cpu) != 0 || mw_buf_avail(p) != 0) {
		job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed result from worker");
		return;
	}
	if (vlen > job->j.limits.result_bytes) {
		job_kill(job, MW_JOB_RESULT_LIMIT, "return value larger than %u bytes",
		    job->j.limits.result_bytes);
		return;
	}
	if (vlen > 0) {
		struct mw_buf v;
		struct mw_value_limits lim = { job->j.limits.result_depth + 1,
			MW_VALUE_MAX_ITEMS };
		mw_buf_view(&v, vals, vlen);
		if (mw_value_check_keys(&v, &lim) != 0 || mw_buf_avail(&v) != 0) {
			job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed return value from worker"
			    " (or a table with duplicate keys)");
			return;
		}
	}
	struct mw_result r;
	memset(&r, 0, sizeof(r));
	r.status = (enum mw_job_status)st;
	if (st == MW_JOB_OUTPUT_LIMIT)
		job->output_trunc = true;	/* the worker cut it (spec/errors.md) */
	char *errs = NULL;
	if (st != MW_JOB_OK) {
		errs = strndup((const char *)err, errlen);
		r.error = errs;
	}
	r.values = (uint8_t *)(uintptr_t)vals;
	r.values_len = vlen;
	r.usage.instructions = instr;
	r.usage.memory_peak = mem;
	job_complete(job, &r, cpu);
	free(errs);
}

static void
handle_cap_call(struct sv_worker *w, struct mw_buf *p)
{
	struct sv_job *job = w->job;
	struct mw_buf reply;
	/* Pending too: a reply not yet written to the worker, which cannot
	 * have read it (a worker that never reads would grow w->out). */
	if (job->cap_pending || mw_buf_avail(&w->out) > 0) {
		job_kill(job, MW_JOB_PROTOCOL_ERROR, "capability call while one is pending");
		return;
	}
	if (++job->cap_calls > job->j.limits.cap_calls) {
		job_kill(job, MW_JOB_CAPABILITY_LIMIT, "more than %u capability calls",
		    job->j.limits.cap_calls);
		return;
	}
	mw_buf_init(&reply, MW_MAX_WORKER_FRAME - 64);
	struct mw_cap_ctx ctx = {
		.grants = &job->j.grants, .kv = S.kv,
		.prot = S.prot, .n_prot = S.cfg.n_protected,
		.now_us = mw_now_us(), .wall_deadline_us = job->deadline_us,
		.exec_calls = job->exec_calls,
		.write_used = &job->write_used, .write_limit = job->j.limits.write_bytes,
	};
	int r = mw_cap_dispatch(&ctx, p, &reply, &job->async);
	if (r < 0) {
		job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed capability call");
	} else if (r == 1) {
		job->cap_pending = true;
		if (job->async.kind == MW_ASYNC_EXEC)
			job->exec_calls++;
	} else {
		worker_send_reply(w, &reply);
	}
	mw_buf_free(&reply);
}

static void
handle_output(struct sv_job *job, struct mw_buf *p)
{
	size_t n = mw_buf_avail(p);
	size_t have = mw_buf_avail(&job->output);
	if (have + n > job->j.limits.output_bytes) {
		mw_buf_put(&job->output, mw_buf_ptr(p), job->j.limits.output_bytes - have);
		job->output_trunc = true;
		job_kill(job, MW_JOB_OUTPUT_LIMIT, "output limit exceeded (%u bytes)",
		    job->j.limits.output_bytes);
		return;
	}
	if (mw_buf_put(&job->output, mw_buf_ptr(p), n) != 0)
		job_kill(job, MW_JOB_INTERNAL_ERROR, "cannot buffer output");
}

/* Returns false when nothing more can be read now (EAGAIN or end). */
static bool
worker_readable(struct sv_worker *w)
{
	/* 16 KiB reads (an OUTPUT chunk): the buffer is sized by the read,
	 * and a worker's buffer is wiped when it goes, once per job. */
	int r = mw_buf_fill(&w->in, w->fd, 16 * 1024);
	if (r == MW_WIRE_ESHORT)
		return false;
	if (r == MW_WIRE_EEOF || r == MW_WIRE_EIO) {
		w->eof = true;	/* its exit report will classify the job */
		return false;
	}
	for (;;) {
		uint8_t type;
		struct mw_buf p;
		if (w->job == NULL) {
			/* Idle, or its job already ended: nothing it says counts,
			 * and an idle worker that talks is hostile. */
			mw_buf_reset(&w->in);
			if (!w->used)
				worker_kill(w);
			return true;
		}
		r = mw_frame_take(&w->in, MW_MAX_WORKER_FRAME, &type, &p);
		if (r == MW_WIRE_ESHORT) {
			/* A legal frame is up to MW_MAX_WORKER_FRAME plus its
			 * header; only a full buffer without one is oversized. */
			if (mw_buf_avail(&w->in) >= MW_MAX_WORKER_FRAME + MW_FRAME_HEADER)
				job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "oversized frame from worker");
			break;
		}
		if (r != 0) {
			job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "%s frame from worker",
			    r == MW_WIRE_ETOOBIG ? "oversized" : "malformed");
			mw_buf_reset(&w->in);
			return true;
		}
		if (w->job->kill_status >= 0)
			continue;	/* already ending: ignore what it still says */
		switch (type) {
		case MW_F_OUTPUT:
			handle_output(w->job, &p);
			break;
		case MW_F_CAP_CALL:
			handle_cap_call(w, &p);
			break;
		case MW_F_DONE:
			handle_done(w, &p);
			mw_buf_reset(&w->in);
			return true;	/* w->job is gone */
		default:
			job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "unexpected frame type %u from worker",
			    type);
			return true;
		}
		if (w->job == NULL)
			return true;
	}
	mw_buf_compact(&w->in);
	return true;
}

/* ---- scheduling ---- */

static struct sv_worker *
idle_worker(void)
{
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next)
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

static void
job_start(struct sv_job *job, struct sv_worker *w)
{
	size_t start;
	S.idle--;
	S.running++;
	job->w = w;
	w->job = job;
	w->used = true;
	job->start_us = mw_now_us();
	job->deadline_us = job->start_us + (uint64_t)job->j.limits.wall_ms * 1000u;
	if (mw_frame_begin(&w->out, MW_F_RUN, &start) != 0 ||
	    mw_buf_put_cstring(&w->out, job->j.chunkname) != 0 ||
	    mw_buf_put_string(&w->out, job->j.program, job->j.program_len) != 0 ||
	    mw_enc_limits(&w->out, &job->j.limits) != 0 ||
	    enc_job_args(&w->out, &job->j) != 0 ||
	    mw_frame_end(&w->out, start) != 0)
		job_kill(job, MW_JOB_INTERNAL_ERROR, "cannot send job to worker");
	mw_buf_flush_some(&w->out, w->fd);
}

static void
schedule(void)
{
	while (S.queue_head != NULL && S.running < S.cfg.parallel) {
		struct sv_worker *w = idle_worker();
		if (w == NULL)
			break;
		struct sv_job *job = S.queue_head;
		S.queue_head = job->next;
		if (S.queue_head == NULL)
			S.queue_tail = NULL;
		S.queued--;
		job->next = NULL;
		job_start(job, w);
	}
	/* Keep the pool full, and fork what the waiting jobs need beyond it
	 * (pool 0: workers are forked per job); a pool that keeps dying idle
	 * is broken. */
	unsigned want = S.cfg.pool, slots = S.cfg.parallel > S.running ?
	    S.cfg.parallel - S.running : 0;
	if (want < (S.queued < slots ? S.queued : slots))
		want = S.queued < slots ? S.queued : slots;
	while (S.idle + S.forking < want && S.idle_failures < 8) {
		if (mw_zygote_request(S.zfd) != 0)
			break;
		S.forking++;
	}
	if (S.idle_failures >= 8 && S.idle == 0 && S.forking == 0) {
		while (S.queue_head != NULL) {
			struct sv_job *job = S.queue_head;
			S.queue_head = job->next;
			S.queued--;
			send_simple_result(job->j.id, MW_JOB_INTERNAL_ERROR,
			    "sandbox cannot start workers");
			job_free(job);
		}
		S.queue_tail = NULL;
	}
}

static void
handle_job(struct mw_buf *p)
{
	struct sv_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		send_simple_result("", MW_JOB_INTERNAL_ERROR, "out of memory");
		return;
	}
	job->kill_status = -1;
	mw_buf_init(&job->output, 0);
	int r = mw_dec_job(p, &job->j);
	if (r != 0) {
		send_simple_result(job->j.id ? job->j.id : "", MW_JOB_INTERNAL_ERROR,
		    "malformed job frame");
		job_free(job);
		return;
	}
	if (job->j.program_len > job->j.limits.program_bytes) {
		char msg[96];
		snprintf(msg, sizeof(msg), "program is %zu bytes, limit %u",
		    job->j.program_len, job->j.limits.program_bytes);
		send_simple_result(job->j.id, MW_JOB_PROGRAM_TOO_LARGE, msg);
		job_free(job);
		return;
	}
	/* Queued jobs include those about to take a free slot (jobs of one
	 * read arrive before schedule() starts any): queue_max waits beyond. */
	unsigned free_slots = S.running < S.cfg.parallel ? S.cfg.parallel - S.running : 0;
	if (S.queued >= S.cfg.queue_max + free_slots) {
		send_simple_result(job->j.id, MW_JOB_BUSY, "queue full");
		job_free(job);
		return;
	}
	if (S.queue_tail)
		S.queue_tail->next = job;
	else
		S.queue_head = job;
	S.queue_tail = job;
	S.queued++;
}

/*
 * A cancellation from the caller: a queued job never starts, a running one
 * is killed through job_kill() like a limit (its worker and, through the
 * async abort, its command's reaper); both end with one MW_JOB_CANCELLED
 * result.  An id the supervisor does not hold (already answered) is
 * ignored: its result stands.
 */
static int
handle_cancel(struct mw_buf *p)
{
	char *id = NULL, *why = NULL;
	int rc = -1;

	if (mw_buf_get_cstring(p, &id, 256) != 0 ||
	    mw_buf_get_cstring(p, &why, 256) != 0 || mw_buf_avail(p) != 0)
		goto out;
	rc = 0;
	for (struct sv_job **pp = &S.queue_head, *prev = NULL; *pp != NULL;
	    prev = *pp, pp = &(*pp)->next) {
		struct sv_job *job = *pp;
		char msg[200];

		if (strcmp(job->j.id, id) != 0)
			continue;
		*pp = job->next;
		if (S.queue_tail == job)
			S.queue_tail = prev;
		S.queued--;
		snprintf(msg, sizeof(msg), "%s (before it started)", why);
		send_simple_result(job->j.id, MW_JOB_CANCELLED, msg);
		job_free(job);
		goto out;
	}
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next)
		if (w->job != NULL && strcmp(w->job->j.id, id) == 0) {
			job_kill(w->job, MW_JOB_CANCELLED, "%s (while running)", why);
			break;
		}
out:
	free(id);
	free(why);
	return rc;
}

static int
handle_hello(struct mw_buf *p)
{
	if (mw_buf_get_u32(p, &S.cfg.parallel) != 0 ||
	    mw_buf_get_u32(p, &S.cfg.pool) != 0 ||
	    mw_buf_get_u32(p, &S.cfg.queue_max) != 0 ||
	    mw_buf_get_cstring(p, &S.cfg.state_dir, 4096) != 0 ||
	    mw_buf_get_u32(p, &S.cfg.n_protected) != 0 ||
	    S.cfg.n_protected > MW_MAX_PROTECTED)
		return -1;
	for (uint32_t i = 0; i < S.cfg.n_protected; i++)
		if (mw_buf_get_cstring(p, &S.cfg.protected_paths[i], 4096) != 0 ||
		    S.cfg.protected_paths[i][0] != '/')
			return -1;
	if (mw_buf_avail(p) != 0)
		return -1;
	for (uint32_t i = 0; i < S.cfg.n_protected; i++) {
		struct stat st;
		S.prot[i].path = S.cfg.protected_paths[i];
		if (stat(S.prot[i].path, &st) == 0) {
			S.prot[i].have_id = true;
			S.prot[i].dev = st.st_dev;
			S.prot[i].ino = st.st_ino;
		}
	}
	if (S.cfg.parallel == 0 || S.cfg.parallel > 256)
		S.cfg.parallel = 2;
	if (S.cfg.pool == MW_SANDBOX_POOL_NONE)
		S.cfg.pool = 0;
	else if (S.cfg.pool == 0 || S.cfg.pool > 256)
		S.cfg.pool = S.cfg.parallel;
	if (S.cfg.queue_max > 100000)
		S.cfg.queue_max = 100000;
	if (S.cfg.state_dir[0] != '\0' && mw_kv_open(S.cfg.state_dir, &S.kv) != 0)
		logmsg("kv store unavailable in %s", S.cfg.state_dir);
	S.hello = true;
	return 0;
}

static int
caller_readable(void)
{
	int r = mw_buf_fill(&S.cin, S.cfd, 256 * 1024);
	if (r == MW_WIRE_ESHORT)
		return 0;
	if (r < 0)
		return -1;
	for (;;) {
		uint8_t type;
		struct mw_buf p;
		r = mw_frame_take(&S.cin, MW_MAX_CALLER_FRAME, &type, &p);
		if (r == MW_WIRE_ESHORT)
			break;
		if (r != 0)
			return -1;
		if (!S.hello) {
			if (type != MW_F_HELLO || handle_hello(&p) != 0)
				return -1;
			continue;
		}
		if (type == MW_F_CANCEL) {
			if (handle_cancel(&p) != 0)
				return -1;
			continue;
		}
		if (type != MW_F_JOB)
			return -1;
		handle_job(&p);
	}
	mw_buf_compact(&S.cin);
	return 0;
}

static void
zygote_readable(void)
{
	for (;;) {
		struct mw_zygote_msg m;
		int r = mw_zygote_recv(S.zfd, &m);
		if (r == MW_WIRE_ESHORT)
			return;
		if (r != 0) {
			logmsg("zygote gone");
			exit(1);
		}
		switch (m.type) {
		case ZYG_WORKER: {
			S.forking--;
			struct sv_worker *w = calloc(1, sizeof(*w));
			if (w == NULL || m.nfds != 2 || set_nonblock(m.fds[0]) != 0) {
				if (m.nfds == 2)
					syscall(SYS_pidfd_send_signal, m.fds[1], SIGKILL, NULL, 0);
				for (int i = 0; i < m.nfds; i++)
					close(m.fds[i]);
				free(w);
				break;
			}
			w->pid = (pid_t)m.a;
			w->fd = m.fds[0];
			w->pidfd = m.fds[1];
			mw_buf_init(&w->in, MW_MAX_WORKER_FRAME + MW_FRAME_HEADER);
			mw_buf_init(&w->out, MW_MAX_CALLER_FRAME + 4096);
			w->next = S.workers;
			S.workers = w;
			S.idle++;
			S.idle_failures = 0;
			break;
		}
		case ZYG_EXIT:
			for (int i = 0; i < m.nfds; i++)
				close(m.fds[i]);
			worker_exited((pid_t)m.a, (int)m.b, m.c);
			break;
		case ZYG_FAIL:
			S.forking--;
			S.idle_failures++;
			logmsg("cannot fork worker: %s", strerror((int)m.a));
			break;
		default:
			for (int i = 0; i < m.nfds; i++)
				close(m.fds[i]);
			break;
		}
	}
}

static bool
async_has_child(const struct mw_cap_async *a)
{
	return a->kind == MW_ASYNC_EXEC || a->kind == MW_ASYNC_HELPER;
}

static struct sv_job *
job_by_exec_pid(pid_t pid)
{
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next)
		if (w->job != NULL && async_has_child(&w->job->async) &&
		    w->job->async.pid == pid)
			return w->job;
	return NULL;
}

static void
async_complete(struct sv_job *job)
{
	struct mw_buf reply;
	mw_buf_init(&reply, MW_MAX_WORKER_FRAME - 64);
	if (mw_cap_finish(&job->async, &reply) != 0)
		mw_cap_reply_error(&reply, "capability failed");
	job->cap_pending = false;
	worker_send_reply(job->w, &reply);
	mw_buf_free(&reply);
}

static void
reap_children(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == S.zpid) {
			logmsg("zygote died");
			exit(1);
		}
		struct sv_job *job = job_by_exec_pid(pid);
		if (job == NULL)
			continue;
		job->async.exited = true;
		/* ended at or after its deadline: by the supervisor's SIGTERM or
		 * by its reaper's own backstop -- timed out either way */
		if (job->async.kind == MW_ASYNC_EXEC && mw_now_us() >= job->async.deadline_us)
			job->async.timed_out = true;
		job->async.wstatus = st;
		job->async.pid = -1;
		if (job->async.out_fd < 0 && job->async.err_fd < 0)
			async_complete(job);
	}
}

static void
exec_pipe_readable(struct sv_job *job, int which)
{
	struct mw_cap_async *a = &job->async;
	int *fd = which ? &a->err_fd : &a->out_fd;
	struct mw_buf *b = which ? &a->err : &a->out;
	bool *trunc = which ? &a->err_trunc : &a->out_trunc;
	char tmp[16384];
	ssize_t n = read(*fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		if (a->exited && a->out_fd < 0 && a->err_fd < 0)
			async_complete(job);
		return;
	}
	size_t room = a->cap_bytes - mw_buf_avail(b);
	if ((size_t)n > room) {
		*trunc = true;
		n = (ssize_t)room;
	}
	mw_buf_put(b, tmp, (size_t)n);
}

static void
check_deadlines(uint64_t now)
{
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next) {
		struct sv_job *job = w->job;
		if (job == NULL || job->kill_status >= 0)
			continue;
		if (now >= job->deadline_us) {
			job_kill(job, MW_JOB_WALL_LIMIT, "wall-clock limit exceeded (%u ms)",
			    job->j.limits.wall_ms);
			continue;
		}
		if (job->cap_pending && job->async.kind == MW_ASYNC_SLEEP &&
		    now >= job->async.deadline_us)
			async_complete(job);
		else if (job->cap_pending && job->async.kind == MW_ASYNC_HELPER &&
		    now >= job->async.deadline_us) {
			job->async.timed_out = true;
			async_complete(job);	/* answers now; kills the helper */
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
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next) {
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
		pfd[n] = (struct pollfd){ S.cfd, POLLIN | (mw_buf_avail(&S.cout) ? POLLOUT : 0), 0 };
		kind[n++] = 0;
		pfd[n] = (struct pollfd){ S.zfd, POLLIN, 0 };
		kind[n++] = 1;
		pfd[n] = (struct pollfd){ S.sfd, POLLIN, 0 };
		kind[n++] = 2;
		for (struct sv_worker *w = S.workers; w != NULL && n < MAX_POLL - 3; w = w->next) {
			if (w->fd < 0 || w->eof)
				continue;
			pfd[n] = (struct pollfd){ w->fd, POLLIN | (mw_buf_avail(&w->out) ? POLLOUT : 0), 0 };
			who[n] = w;
			kind[n++] = 3;
			struct sv_job *job = w->job;
			if (job != NULL && job->cap_pending && async_has_child(&job->async)) {
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
			logmsg("poll: %s", strerror(errno));
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			switch (kind[i]) {
			case 0:
				if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
				    caller_readable() != 0)
					return;	/* caller gone: shut down */
				if (pfd[i].revents & POLLOUT &&
				    mw_buf_flush_some(&S.cout, S.cfd) == MW_WIRE_EIO)
					return;
				break;
			case 1:
				zygote_readable();
				break;
			case 2: {
				struct signalfd_siginfo si;
				while (read(S.sfd, &si, sizeof(si)) == sizeof(si))
					;
				reap_children();
				break;
			}
			case 3: {
				struct sv_worker *w = who[i];
				bool still = false;
				for (struct sv_worker *x = S.workers; x; x = x->next)
					still |= x == w;
				if (!still)
					break;
				if (pfd[i].revents & POLLOUT &&
				    mw_buf_flush_some(&w->out, w->fd) == MW_WIRE_EIO)
					w->eof = true;
				if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
					worker_readable(w);
				break;
			}
			case 4:
			case 5: {
				struct sv_worker *w = who[i];
				bool still = false;
				for (struct sv_worker *x = S.workers; x; x = x->next)
					still |= x == w;
				if (still && w->job != NULL && w->job->cap_pending &&
				    async_has_child(&w->job->async))
					exec_pipe_readable(w->job, kind[i] == 5);
				break;
			}
			}
		}
		check_deadlines(mw_now_us());
		schedule();
		for (struct sv_worker *w = S.workers; w != NULL; w = w->next)
			if (mw_buf_avail(&w->out) && w->fd >= 0 && !w->eof)
				mw_buf_flush_some(&w->out, w->fd);
		if (mw_buf_avail(&S.cout) &&
		    mw_buf_flush_some(&S.cout, S.cfd) == MW_WIRE_EIO)
			return;
	}
}

static int
supervisor_run(int fd, void (*body)(int))
{
	struct mw_filter filter;
	int zsv[2];
	sigset_t mask;

	memset(&S, 0, sizeof(S));
	S.cfd = fd;
	S.body = body;
	mw_buf_init(&S.cin, MW_MAX_CALLER_FRAME + MW_FRAME_HEADER + 256 * 1024);
	mw_buf_init(&S.cout, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* a terminal's hangup or a reload is the caller's */
	prctl_set_pdeathsig_kill();
	mw_confine_supervisor();
	mw_confine_supervisor_caps();
	if (!mw_confine_can_kill_others()) {
		/* Workers and commands would run as nobody, out of reach of
		 * every kill: refuse rather than run jobs no limit can end. */
		logmsg("refusing to start: CAP_SETUID without CAP_KILL (workers would run as "
		    "nobody and could not be killed); grant CAP_KILL as the shipped "
		    "moonwire-agent.service does, or neither");
		return 1;
	}
	if (mw_filter_build(&filter) != 0) {
		if (filter.missing != NULL)
			logmsg("cannot build the seccomp filter: this architecture has no "
			    "syscall '%s'", filter.missing);
		else
			logmsg("cannot build the seccomp filter");
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (S.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		return 1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, zsv) != 0)
		return 1;
	S.zpid = fork();
	if (S.zpid < 0)
		return 1;
	if (S.zpid == 0) {
		close(zsv[0]);
		close(fd);
		close(S.sfd);
		if (body == mw_worker_main) {
			/* The zygote as its own small program (zygote_main.c);
			 * if that cannot be, this very process serves. */
			const char *why = NULL;
			mw_zygote_exec(zsv[1], &why);
			logmsg("%s: %s; workers are forked from the supervisor's image",
			    MW_ZYGOTE_NAME, why);
		}
		mw_zygote_main(zsv[1], &filter, body);
	}
	close(zsv[1]);
	mw_filter_free(&filter);
	S.zfd = zsv[0];
	if (set_nonblock(S.cfd) != 0 || set_nonblock(S.zfd) != 0)
		return 1;
	run_loop();
	/* Caller gone: every worker dies with its zygote (PDEATHSIG). */
	for (struct sv_worker *w = S.workers; w != NULL; w = w->next)
		worker_kill(w);
	kill(S.zpid, SIGKILL);
	mw_kv_close(S.kv);
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
