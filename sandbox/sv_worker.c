/*
 * sv_worker.c: the supervisor's side of a worker's socket (split from
 * supervisor.c).  Every frame a worker sends is size-checked before it is
 * buffered and every capability call is checked against the job's grants
 * (caps.c); commands started for a job (exec.run) are reaped and their
 * output collected here.  A worker is hostile: anything malformed ends its
 * job as protocol_error and kills it.
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
		sv_job_kill(w->job, MW_JOB_INTERNAL_ERROR, "capability reply too large");
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
		sv_job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed result from worker");
		return;
	}
	if (vlen > job->j.limits.result_bytes) {
		sv_job_kill(job, MW_JOB_RESULT_LIMIT, "return value larger than %u bytes",
		    job->j.limits.result_bytes);
		return;
	}
	if (vlen > 0) {
		struct mw_buf v;
		struct mw_value_limits lim = { job->j.limits.result_depth + 1,
			MW_VALUE_MAX_ITEMS };
		mw_buf_view(&v, vals, vlen);
		if (mw_value_check_keys(&v, &lim) != 0 || mw_buf_avail(&v) != 0) {
			sv_job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed return value from worker"
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
	sv_job_complete(job, &r, cpu);
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
		sv_job_kill(job, MW_JOB_PROTOCOL_ERROR, "capability call while one is pending");
		return;
	}
	if (++job->cap_calls > job->j.limits.cap_calls) {
		sv_job_kill(job, MW_JOB_CAPABILITY_LIMIT, "more than %u capability calls",
		    job->j.limits.cap_calls);
		return;
	}
	mw_buf_init(&reply, MW_MAX_WORKER_FRAME - 64);
	struct mw_cap_ctx ctx = {
		.grants = &job->j.grants, .kv = sv.kv,
		.prot = sv.prot, .n_prot = sv.cfg.n_protected,
		.now_us = mw_now_us(), .wall_deadline_us = job->deadline_us,
		.exec_calls = job->exec_calls,
		.cmd_uid = job->cmd_slot >= 0 ? (uid_t)(sv.cfg.cmd_uid_first +
		    (uint32_t)job->cmd_slot) : 0,
		.write_used = &job->write_used, .write_limit = job->j.limits.write_bytes,
	};
	int r = mw_cap_dispatch(&ctx, p, &reply, &job->async);
	if (r < 0) {
		sv_job_kill(job, MW_JOB_PROTOCOL_ERROR, "malformed capability call");
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
		sv_job_kill(job, MW_JOB_OUTPUT_LIMIT, "output limit exceeded (%u bytes)",
		    job->j.limits.output_bytes);
		return;
	}
	if (mw_buf_put(&job->output, mw_buf_ptr(p), n) != 0)
		sv_job_kill(job, MW_JOB_INTERNAL_ERROR, "cannot buffer output");
}

/* Returns false when nothing more can be read now (EAGAIN or end). */
bool
sv_worker_readable(struct sv_worker *w)
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
				sv_worker_kill(w);
			return true;
		}
		r = mw_frame_take(&w->in, MW_MAX_WORKER_FRAME, &type, &p);
		if (r == MW_WIRE_ESHORT) {
			/* A legal frame is up to MW_MAX_WORKER_FRAME plus its
			 * header; only a full buffer without one is oversized. */
			if (mw_buf_avail(&w->in) >= MW_MAX_WORKER_FRAME + MW_FRAME_HEADER)
				sv_job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "oversized frame from worker");
			break;
		}
		if (r != 0) {
			sv_job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "%s frame from worker",
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
			sv_job_kill(w->job, MW_JOB_PROTOCOL_ERROR, "unexpected frame type %u from worker",
			    type);
			return true;
		}
		if (w->job == NULL)
			return true;
	}
	mw_buf_compact(&w->in);
	return true;
}

bool
sv_async_has_child(const struct mw_cap_async *a)
{
	return a->kind == MW_ASYNC_EXEC || a->kind == MW_ASYNC_HELPER;
}

static struct sv_job *
job_by_exec_pid(pid_t pid)
{
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next)
		if (w->job != NULL && sv_async_has_child(&w->job->async) &&
		    w->job->async.pid == pid)
			return w->job;
	return NULL;
}

void
sv_async_complete(struct sv_job *job)
{
	struct mw_buf reply;
	mw_buf_init(&reply, MW_MAX_WORKER_FRAME - 64);
	if (mw_cap_finish(&job->async, &reply) != 0)
		mw_cap_reply_error(&reply, "capability failed");
	job->cap_pending = false;
	worker_send_reply(job->w, &reply);
	mw_buf_free(&reply);
}

void
sv_reap_children(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == sv.zpid) {
			sv_logmsg("zygote died");
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
			sv_async_complete(job);
	}
}

void
sv_exec_pipe_readable(struct sv_job *job, int which)
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
			sv_async_complete(job);
		return;
	}
	size_t room = a->cap_bytes - mw_buf_avail(b);
	if ((size_t)n > room) {
		*trunc = true;
		n = (ssize_t)room;
	}
	mw_buf_put(b, tmp, (size_t)n);
}
