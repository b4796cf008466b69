/*
 * supervisor_int.h: what the supervisor's files share (private to sandbox/).
 *
 * The supervisor is one event loop in one process; it is split along its
 * seams: supervisor.c (state, job and worker lifetimes, scheduling, the
 * loop), sv_worker.c (frames from workers, and commands running for
 * them) and sv_caller.c (frames from the caller and from the zygote).
 * All of it runs in the loop's thread; nothing here is reentrant.
 */
#ifndef MW_SUPERVISOR_INT_H
#define MW_SUPERVISOR_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/sandbox_int.h"

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
	int cmd_slot;		/* its commands' uid: cmd_uid_first + this; -1: nobody */
	char kill_error[200];
	struct sv_job *next;
};

/* The supervisor's whole state: one instance, sv (supervisor.c). */
struct sv_state {
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
};

extern struct sv_state sv;

/* supervisor.c */
void sv_logmsg(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
int sv_set_nonblock(int fd);
void sv_send_simple_result(const char *id, enum mw_job_status st, const char *err);
void sv_job_free(struct sv_job *job);
void sv_worker_kill(struct sv_worker *w);
void sv_job_complete(struct sv_job *job, struct mw_result *r, uint64_t cpu_us);
void sv_job_kill(struct sv_job *job, enum mw_job_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sv_worker_exited(pid_t pid, int wstatus, uint64_t cpu_us);
void sv_schedule(void);

/* sv_worker.c */
bool sv_worker_readable(struct sv_worker *w);
bool sv_async_has_child(const struct mw_cap_async *a);
void sv_async_complete(struct sv_job *job);
void sv_reap_children(void);
void sv_exec_pipe_readable(struct sv_job *job, int which);

/* sv_caller.c */
int sv_caller_readable(void);
void sv_zygote_readable(void);

#endif
