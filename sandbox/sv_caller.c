/*
 * sv_caller.c: frames from the supervisor's caller (HELLO, JOB, CANCEL)
 * and messages from the zygote (a new worker, a worker's exit), split
 * from supervisor.c.  A job is checked and queued here; it starts in
 * supervisor.c's scheduler, never directly.
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


static void
handle_job(struct mw_buf *p)
{
	struct sv_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		sv_send_simple_result("", MW_JOB_INTERNAL_ERROR, "out of memory");
		return;
	}
	job->kill_status = -1;
	job->cmd_slot = -1;
	mw_buf_init(&job->output, 0);
	int r = mw_dec_job(p, &job->j);
	if (r != 0) {
		sv_send_simple_result(job->j.id ? job->j.id : "", MW_JOB_INTERNAL_ERROR,
		    "malformed job frame");
		sv_job_free(job);
		return;
	}
	if (job->j.program_len > job->j.limits.program_bytes) {
		char msg[96];
		snprintf(msg, sizeof(msg), "program is %zu bytes, limit %u",
		    job->j.program_len, job->j.limits.program_bytes);
		sv_send_simple_result(job->j.id, MW_JOB_PROGRAM_TOO_LARGE, msg);
		sv_job_free(job);
		return;
	}
	/* Queued jobs include those about to take a free slot (jobs of one
	 * read arrive before sv_schedule() starts any): queue_max waits beyond. */
	unsigned free_slots = sv.running < sv.cfg.parallel ? sv.cfg.parallel - sv.running : 0;
	if (sv.queued >= sv.cfg.queue_max + free_slots) {
		sv_send_simple_result(job->j.id, MW_JOB_BUSY, "queue full");
		sv_job_free(job);
		return;
	}
	if (sv.queue_tail)
		sv.queue_tail->next = job;
	else
		sv.queue_head = job;
	sv.queue_tail = job;
	sv.queued++;
}

/*
 * A cancellation from the caller: a queued job never starts, a running one
 * is killed through sv_job_kill() like a limit (its worker and, through the
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
	for (struct sv_job **pp = &sv.queue_head, *prev = NULL; *pp != NULL;
	    prev = *pp, pp = &(*pp)->next) {
		struct sv_job *job = *pp;
		char msg[200];

		if (strcmp(job->j.id, id) != 0)
			continue;
		*pp = job->next;
		if (sv.queue_tail == job)
			sv.queue_tail = prev;
		sv.queued--;
		snprintf(msg, sizeof(msg), "%s (before it started)", why);
		sv_send_simple_result(job->j.id, MW_JOB_CANCELLED, msg);
		sv_job_free(job);
		goto out;
	}
	for (struct sv_worker *w = sv.workers; w != NULL; w = w->next)
		if (w->job != NULL && strcmp(w->job->j.id, id) == 0) {
			sv_job_kill(w->job, MW_JOB_CANCELLED, "%s (while running)", why);
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
	if (mw_buf_get_u32(p, &sv.cfg.parallel) != 0 ||
	    mw_buf_get_u32(p, &sv.cfg.pool) != 0 ||
	    mw_buf_get_u32(p, &sv.cfg.queue_max) != 0 ||
	    mw_buf_get_cstring(p, &sv.cfg.state_dir, 4096) != 0 ||
	    mw_buf_get_u32(p, &sv.cfg.n_protected) != 0 ||
	    sv.cfg.n_protected > MW_MAX_PROTECTED)
		return -1;
	for (uint32_t i = 0; i < sv.cfg.n_protected; i++)
		if (mw_buf_get_cstring(p, &sv.cfg.protected_paths[i], 4096) != 0 ||
		    sv.cfg.protected_paths[i][0] != '/')
			return -1;
	if (mw_buf_get_u32(p, &sv.cfg.cmd_uid_first) != 0 ||
	    mw_buf_get_u32(p, &sv.cfg.cmd_uid_count) != 0 ||
	    mw_buf_avail(p) != 0)
		return -1;
	if (sv.cfg.cmd_uid_count != 0 && mw_sandbox_command_uids_check(sv.cfg.cmd_uid_first,
	    sv.cfg.cmd_uid_count, sv.cfg.parallel == 0 ? 2 : sv.cfg.parallel, false,
	    NULL, 0) != 0)
		return -1;
	for (uint32_t i = 0; i < sv.cfg.n_protected; i++) {
		struct stat st;
		sv.prot[i].path = sv.cfg.protected_paths[i];
		if (stat(sv.prot[i].path, &st) == 0) {
			sv.prot[i].have_id = true;
			sv.prot[i].dev = st.st_dev;
			sv.prot[i].ino = st.st_ino;
		}
	}
	if (sv.cfg.parallel == 0 || sv.cfg.parallel > 256)
		sv.cfg.parallel = 2;
	if (sv.cfg.pool == MW_SANDBOX_POOL_NONE)
		sv.cfg.pool = 0;
	else if (sv.cfg.pool == 0 || sv.cfg.pool > 256)
		sv.cfg.pool = sv.cfg.parallel;
	if (sv.cfg.queue_max > 100000)
		sv.cfg.queue_max = 100000;
	if (sv.cfg.state_dir[0] != '\0' && mw_kv_open(sv.cfg.state_dir, &sv.kv) != 0)
		sv_logmsg("kv store unavailable in %s", sv.cfg.state_dir);
	sv.hello = true;
	return 0;
}

int
sv_caller_readable(void)
{
	int r = mw_buf_fill(&sv.cin, sv.cfd, 256 * 1024);
	if (r == MW_WIRE_ESHORT)
		return 0;
	if (r < 0)
		return -1;
	for (;;) {
		uint8_t type;
		struct mw_buf p;
		r = mw_frame_take(&sv.cin, MW_MAX_CALLER_FRAME, &type, &p);
		if (r == MW_WIRE_ESHORT)
			break;
		if (r != 0)
			return -1;
		if (!sv.hello) {
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
	mw_buf_compact(&sv.cin);
	return 0;
}

void
sv_zygote_readable(void)
{
	for (;;) {
		struct mw_zygote_msg m;
		int r = mw_zygote_recv(sv.zfd, &m);
		if (r == MW_WIRE_ESHORT)
			return;
		if (r != 0) {
			sv_logmsg("zygote gone");
			exit(1);
		}
		switch (m.type) {
		case ZYG_WORKER: {
			sv.forking--;
			struct sv_worker *w = calloc(1, sizeof(*w));
			if (w == NULL || m.nfds != 2 || sv_set_nonblock(m.fds[0]) != 0) {
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
			w->next = sv.workers;
			sv.workers = w;
			sv.idle++;
			sv.idle_failures = 0;
			break;
		}
		case ZYG_EXIT:
			for (int i = 0; i < m.nfds; i++)
				close(m.fds[i]);
			sv_worker_exited((pid_t)m.a, (int)m.b, m.c);
			break;
		case ZYG_FAIL:
			sv.forking--;
			sv.idle_failures++;
			sv_logmsg("cannot fork worker: %s", strerror((int)m.a));
			break;
		default:
			for (int i = 0; i < m.nfds; i++)
				close(m.fds[i]);
			break;
		}
	}
}
