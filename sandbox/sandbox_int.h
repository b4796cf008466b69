/*
 * sandbox_int.h: private declarations shared by the sandbox's files.
 * Nothing outside sandbox/ includes this.
 */
#ifndef MW_SANDBOX_INT_H
#define MW_SANDBOX_INT_H

#include <linux/filter.h>

#include "sandbox/mw_sandbox.h"
#include "wire/mw_wire.h"

/* Frame types.  Caller <-> supervisor: */
#define MW_F_HELLO	1	/* caller -> supervisor: configuration */
#define MW_F_JOB	2	/* caller -> supervisor */
#define MW_F_RESULT	3	/* supervisor -> caller */
#define MW_F_CANCEL	4	/* caller -> supervisor: cstring id, cstring why */
/* Supervisor <-> worker: */
#define MW_F_RUN	16	/* supervisor -> worker: program and limits */
#define MW_F_CAP_CALL	17	/* worker -> supervisor */
#define MW_F_CAP_REPLY	18	/* supervisor -> worker */
#define MW_F_OUTPUT	19	/* worker -> supervisor: a chunk of print output */
#define MW_F_DONE	20	/* worker -> supervisor: final status */

/* Largest frames each side accepts. */
#define MW_MAX_CALLER_FRAME	(8u * 1024 * 1024)
#define MW_MAX_WORKER_FRAME	(2u * 1024 * 1024)
#define MW_OUTPUT_CHUNK		(16u * 1024)
/* The worker's descriptor for its socket. */
#define MW_WORKER_FD		3

/* Hard ceilings on what capability replies may carry. */
#define MW_FS_READ_MAX		(1u * 1024 * 1024)
#define MW_KV_KEY_MAX		256
#define MW_KV_VALUE_MAX		(64u * 1024)
#define MW_KV_SCOPE_QUOTA	(1u * 1024 * 1024)

/* Codec for the frames above (codec.c).  Decoders return 0 or a negative
 * MW_WIRE_E* code and never read past the payload. */
int mw_enc_limits(struct mw_buf *b, const struct mw_limits *l);
int mw_dec_limits(struct mw_buf *b, struct mw_limits *l);
int mw_enc_job(struct mw_buf *out, const struct mw_job *job);
/* Decoded job: strings are heap copies owned by the struct. */
struct mw_job_owned {
	char *id;
	char *chunkname;
	char *program;
	size_t program_len;
	struct mw_limits limits;
	struct mw_grants grants;
	char *arg_names[MW_ARGS_MAX];
	char *arg_values[MW_ARGS_MAX];
	uint32_t n_args;
};
/* A job's arguments on the wire (JOB and RUN frames): u32 n, then n pairs
 * of cstrings.  The decoder refuses more than MW_ARGS_MAX, oversized or
 * empty names. */
int mw_enc_args(struct mw_buf *b, const struct mw_job_arg *args, uint32_t n);
int mw_dec_args(struct mw_buf *b, char **names, char **values, uint32_t *n);
int mw_dec_job(struct mw_buf *p, struct mw_job_owned *job);
void mw_job_owned_free(struct mw_job_owned *job);
int mw_enc_result(struct mw_buf *out, const struct mw_result *r);
int mw_dec_result(struct mw_buf *p, struct mw_result *r);

/* Most protected paths a HELLO may carry. */
#define MW_MAX_PROTECTED	32

struct mw_supervisor_hello {
	uint32_t parallel, pool, queue_max;
	char *state_dir;
	char *protected_paths[MW_MAX_PROTECTED];
	uint32_t n_protected;
	uint32_t cmd_uid_first, cmd_uid_count;	/* count 0: commands run as nobody */
};

/* The seccomp filter (filter.c).  arch is a libseccomp SCMP_ARCH_* token
 * (an AUDIT_ARCH_* value); 0 is the architecture moonwire was built for,
 * the only one a worker's filter is ever built for: other values are for
 * tests, which compare the policy across architectures.  On failure
 * because the architecture lacks a syscall of the policy, missing names it. */
struct mw_filter {
	struct sock_filter *insns;
	unsigned short len;
	uint32_t arch;
	const char *missing;
};
int mw_filter_build(struct mw_filter *f);
int mw_filter_build_arch(struct mw_filter *f, uint32_t arch);
void mw_filter_free(struct mw_filter *f);
/* The zygote's own filter (filter.c): the worker's names and what the
 * zygote and a confining worker need, unconditionally; ENOSYS for the
 * rest.  Workers inherit it under their own. */
int mw_filter_build_zygote(struct mw_filter *f);
/* An allowlisted command's filter (filter.c): a deny list, EPERM. */
int mw_filter_build_command(struct mw_filter *f);
int mw_filter_build_command_arch(struct mw_filter *f, uint32_t arch);
/* The policy's i-th rule's syscall name, NULL past the last; *only_arch is
 * 0, or the one architecture that has the syscall (the rule is left out
 * elsewhere).  A name may occur in several rules. */
const char *mw_filter_rule_name(size_t i, uint32_t *only_arch);

/* Confinement (confine.c). */
/* In a freshly forked worker: keep only sock (as MW_WORKER_FD), clear the
 * environment, set rlimits, drop privileges, no_new_privs, load the filter.
 * Returns 0 or -1; on -1 the worker must _exit. */
int mw_confine_worker(int sock, const struct mw_filter *f);
/* In the zygote, once, before its first fork: the part of
 * mw_confine_worker that every worker would repeat (confine.c). */
int mw_confine_zygote_prepare(void);
/* In the supervisor at start-up: private namespaces where allowed.  Keeps
 * descriptors of the original namespaces so command children can return. */
void mw_confine_supervisor(void);
void mw_confine_command_child(void);
/* Drops to nobody where allowed, empties every capability set (bounding
 * set and locked securebits where CAP_SETPCAP is held) and verifies it.
 * For workers and command children; 0 or -1 (the caller must _exit). */
int mw_confine_drop_privileges(void);
int mw_confine_drop_privileges_to(uid_t uid, gid_t gid);
/* Empties the bounding set and locks securebits where CAP_SETPCAP is held;
 * once per process (the zygote does it for every worker it forks). */
int mw_confine_lock_bounding(void);
/* In the supervisor at start: no capability passes an execve. */
void mw_confine_supervisor_caps(void);
/* Whether kills of workers and commands (which run as nobody when the
 * supervisor may change uid) can land: root, CAP_KILL, or no uid change. */
bool mw_confine_can_kill_others(void);
/* A command's reaper: keeps CAP_KILL (if held) and nothing else. */
int mw_confine_keep_only_kill(void);
const char *mw_confine_namespaces(void);

/* The Lua runtime inside a worker (worker.c).  Never returns. */
void mw_worker_main(int fd) __attribute__((noreturn));
/* Builds the worker's Lua state ahead of any job (the zygote calls it
 * before it forks workers); mw_worker_main does it when nobody did. */
void mw_worker_prepare(void);

/* Capabilities (caps*.c), executed by the supervisor. */
struct mw_kv;
int mw_kv_open(const char *state_dir, struct mw_kv **out);
void mw_kv_close(struct mw_kv *kv);

/* A protected path (the caller's own files): refused by name, and by
 * device and inode once it exists. */
struct mw_protected {
	char *path;
	bool have_id;
	dev_t dev;
	ino_t ino;
};

/* Everything one capability call may consult or charge. */
struct mw_cap_ctx {
	const struct mw_grants *grants;
	struct mw_kv *kv;
	const struct mw_protected *prot;
	uint32_t n_prot;
	uint64_t now_us, wall_deadline_us;	/* monotonic */
	uint32_t exec_calls;			/* commands this job already ran */
	uid_t cmd_uid;				/* the job's commands run as; 0: nobody */
	uint64_t *write_used;			/* bytes this job wrote so far */
	uint64_t write_limit;			/* the job's `write` limit */
};

/* Result of a synchronous capability: reply frame payload written to out.
 * Returns 0 when out holds the reply, 1 when the call continues
 * asynchronously (exec, sleep, sys.disk; *async describes it), -1 on
 * internal error. */
struct mw_cap_async {
	enum { MW_ASYNC_NONE, MW_ASYNC_SLEEP, MW_ASYNC_EXEC, MW_ASYNC_HELPER } kind;
	uint64_t deadline_us;		/* monotonic */
	pid_t pid;			/* exec reaper or helper child */
	int out_fd, err_fd;		/* exec pipes; a helper's reply on out_fd */
	struct mw_buf out, err;
	uint32_t cap_bytes;
	bool out_trunc, err_trunc, timed_out;
	int wstatus;
	bool exited;
	char what[16];			/* helper: the capability's name */
};
int mw_cap_dispatch(const struct mw_cap_ctx *ctx, struct mw_buf *call,
    struct mw_buf *reply, struct mw_cap_async *async);
/* Completes an async capability into a reply payload. */
int mw_cap_finish(struct mw_cap_async *a, struct mw_buf *reply);
void mw_cap_async_abort(struct mw_cap_async *a);
/* Builds a reply payload for a denied/failed call. */
int mw_cap_reply_error(struct mw_buf *reply, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

uint64_t mw_now_us(void);

#endif
