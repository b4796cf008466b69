/*
 * mw_sandbox.h: the sandbox component's one public header.
 *
 * The sandbox runs untrusted Lua 5.4 programs.  Its process model:
 *
 *   caller (agent or `moonwire run`)  --mw frames-->  supervisor
 *   supervisor  --mw frames-->  worker (one job, then _exit)
 *
 * The supervisor is started by re-executing the moonwire binary before the
 * caller loads any secret; it keeps a pool of pre-forked workers that are
 * already confined (rlimits, no_new_privs, unprivileged uid, namespaces where
 * the kernel allows, a seccomp filter compiled once), hands each job to a
 * fresh worker, brokers every capability call against the job's grants and
 * turns every way a worker can end -- result, crash, garbage, silence -- into
 * a typed result.  spec/sandbox.md and spec/lua-api.md describe the
 * behaviour; spec/wire.md the frames.
 */
#ifndef MW_SANDBOX_H
#define MW_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The closed list of job statuses (spec/errors.md).  Values are stable: they
 * travel in frames. */
enum mw_job_status {
	MW_JOB_OK = 0,
	MW_JOB_ERROR = 1,		/* the program raised a runtime error */
	MW_JOB_SYNTAX_ERROR = 2,
	MW_JOB_INSTRUCTION_LIMIT = 3,
	MW_JOB_MEMORY_LIMIT = 4,
	MW_JOB_CPU_LIMIT = 5,
	MW_JOB_WALL_LIMIT = 6,
	MW_JOB_OUTPUT_LIMIT = 7,
	MW_JOB_PROGRAM_TOO_LARGE = 8,
	MW_JOB_RESULT_LIMIT = 9,	/* returned values too large, deep or cyclic */
	MW_JOB_CAPABILITY_LIMIT = 10,	/* too many capability calls */
	MW_JOB_SANDBOX_VIOLATION = 11,	/* the worker made a forbidden syscall */
	MW_JOB_CRASHED = 12,		/* the worker died of a signal */
	MW_JOB_PROTOCOL_ERROR = 13,	/* the worker sent malformed frames */
	MW_JOB_BUSY = 14,		/* the queue was full; nothing ran */
	MW_JOB_INTERRUPTED = 15,	/* the agent stopped before the job ended */
	MW_JOB_INTERNAL_ERROR = 16,	/* the sandbox itself failed */
	MW_JOB_CANCELLED = 17,		/* a signed cancellation ended it, or it never started */
	MW_JOB_STATUS_MAX = 17
};
const char *mw_job_status_name(enum mw_job_status s);
/* Returns -1 for an unknown name. */
int mw_job_status_from_name(const char *name);

struct mw_limits {
	uint64_t instructions;	/* Lua VM instructions */
	uint64_t memory;	/* bytes of Lua heap */
	uint32_t cpu_ms;	/* CPU time */
	uint32_t wall_ms;	/* wall-clock time, sleeps and capability calls included */
	uint32_t output_bytes;	/* captured print output */
	uint32_t program_bytes;	/* program text */
	uint32_t result_bytes;	/* encoded returned values */
	uint32_t result_depth;	/* table nesting of returned values */
	uint32_t cap_calls;	/* capability calls per job */
	uint64_t write_bytes;	/* bytes fs.write may write in all, per job */
};
/* Safe defaults; the hard maxima a policy may not exceed. */
void mw_limits_default(struct mw_limits *l);
void mw_limits_maximum(struct mw_limits *l);

struct mw_command_grant {
	char *name;		/* what Lua passes to exec.run */
	char **argv;		/* absolute path first; never through a shell */
	uint32_t argc;
	uint32_t max_args;	/* extra arguments Lua may append */
	uint32_t timeout_ms;
	uint32_t output_bytes;	/* per stream */
};

struct mw_grants {
	char **fs_read;		/* absolute, canonical directory prefixes */
	uint32_t n_fs_read;
	char **fs_write;
	uint32_t n_fs_write;
	struct mw_command_grant *commands;
	uint32_t n_commands;
	bool sys;		/* sys.info, sys.disk */
	bool kv;		/* kv.* scoped to kv_scope */
	char *kv_scope;		/* the signer; NULL when kv is not granted */
	uint32_t sleep_max_ms;	/* 0: sleep not granted */
};
void mw_grants_free(struct mw_grants *g);
/* Deep copy; returns 0 or -1 on allocation failure. */
int mw_grants_copy(struct mw_grants *dst, const struct mw_grants *src);

/* A job's arguments (`args` in Lua): names [a-z_][a-z0-9_]{0,31}, values
 * UTF-8 text without control characters other than TAB, at most
 * MW_ARG_VALUE_MAX bytes; at most MW_ARGS_MAX of them. */
#define MW_ARGS_MAX		16
#define MW_ARG_NAME_MAX		32
#define MW_ARG_VALUE_MAX	1024
struct mw_job_arg {
	const char *name;
	const char *value;
};

struct mw_job {
	const char *id;
	const char *chunkname;	/* shown in error messages: "name:line: msg" */
	const char *program;
	size_t program_len;
	struct mw_limits limits;
	const struct mw_grants *grants;
	const struct mw_job_arg *args;
	uint32_t n_args;
};

struct mw_usage {
	uint64_t cpu_us;
	uint64_t wall_us;
	uint64_t instructions;
	uint64_t memory_peak;	/* bytes of Lua heap */
};

struct mw_result {
	char *job_id;
	enum mw_job_status status;
	char *error;		/* NULL when status is ok */
	uint8_t *values;	/* encoded value tree: an array table of returns */
	size_t values_len;
	char *output;		/* captured print output (not NUL-safe: use output_len) */
	size_t output_len;
	bool output_truncated;
	struct mw_usage usage;
};
void mw_result_free(struct mw_result *r);

/* ---- running a supervisor ---- */

struct mw_sandbox_config {
	unsigned parallel;	/* jobs running at once (default: 2) */
	unsigned pool;		/* idle pre-forked workers kept ready (0: as many as
				 * parallel; MW_SANDBOX_POOL_NONE: none, a worker is
				 * forked when a job needs one) */
	unsigned queue_max;	/* jobs waiting beyond those running (default: 64) */
	const char *state_dir;	/* where the kv store lives; NULL: kv unavailable */
	const char *exe;	/* binary to exec as supervisor; NULL: /proc/self/exe */
	/* The caller's own files (identity database, password file, state
	 * directory, allowed_signers, policy, configuration): absolute paths
	 * that no capability call may reach.  The broker refuses a path equal
	 * to, inside or containing one of them, and any opened file whose
	 * device and inode match one of them.  Paths that do not exist (yet)
	 * are refused by name only. */
	const char *const *protected_paths;
	unsigned n_protected;
	/* Commands' uids: each running job's allowlisted commands run as a uid
	 * (and gid) of their own, command_uid_first + a slot no other running
	 * job holds, instead of nobody.  count 0: nobody.  count must be at
	 * least parallel; the caller checks that no account uses the range. */
	uint32_t command_uid_first, command_uid_count;
	/* Tests only: fork without exec and run this in each confined worker
	 * instead of the Lua runtime. */
	void (*test_worker)(int fd);
};

#define MW_SANDBOX_POOL_NONE	0xffffffffu
#define MW_SANDBOX_COMMAND_UIDS_MAX	1024

/*
 * 0 when first..first+count-1 may be the commands' uids (and gids) of a
 * sandbox running `parallel` jobs at once: count 1..1024 and at least
 * parallel; none of them 0, 65534 (nobody), 65535 or above 2^31 - 2; and,
 * with accounts, no user or group of this system (getpwuid, getgrgid)
 * holds one.  Else -1 with the reason in why.
 */
int mw_sandbox_command_uids_check(uint32_t first, uint32_t count, unsigned parallel,
    bool accounts, char *why, size_t whylen);
/* "FIRST-LAST" (decimal, FIRST <= LAST) into first and count; 0 or -1. */
int mw_sandbox_command_uids_parse(const char *s, uint32_t *first, uint32_t *count);

struct mw_sandbox;

int mw_sandbox_start(const struct mw_sandbox_config *cfg, struct mw_sandbox **out);
/* Descriptor to poll for readability (results) in an event loop. */
int mw_sandbox_fd(const struct mw_sandbox *sb);
/* Queues a job for sending; never blocks.  0 or -1 (encoding failed). */
int mw_sandbox_submit(struct mw_sandbox *sb, const struct mw_job *job);
/*
 * Queues a cancellation of job `id` (the id given to mw_sandbox_submit);
 * never blocks.  A queued job is dropped without running; a running one is
 * killed the way a limit kills it (worker and its commands).  Either way
 * its one result has status MW_JOB_CANCELLED and error `why` (cut to 160
 * bytes), with " (before it started)" or " (while running)" added.  A job
 * the supervisor no longer has (its result is on the way) is left alone:
 * that result stands.  0 or -1 (encoding failed).
 */
int mw_sandbox_cancel(struct mw_sandbox *sb, const char *id, const char *why);
/* True when submitted bytes still wait to be written; poll for POLLOUT. */
bool mw_sandbox_want_write(const struct mw_sandbox *sb);
int mw_sandbox_flush(struct mw_sandbox *sb);
/* Reads what is available; returns 1 with a result, 0 when none is ready,
 * -1 when the supervisor is gone. */
int mw_sandbox_read_result(struct mw_sandbox *sb, struct mw_result *out);
/* Blocking: submit one job and wait for its result (timeout_ms 0: none).
 * Results of other jobs that arrive meanwhile are discarded: use only when
 * this is the only job in flight. */
int mw_sandbox_run(struct mw_sandbox *sb, const struct mw_job *job,
    struct mw_result *out);
pid_t mw_sandbox_pid(const struct mw_sandbox *sb);
void mw_sandbox_stop(struct mw_sandbox *sb);

/*
 * Privileges of the caller.  The agent calls this once the supervisor is
 * running and before it loads any key: it empties every capability set
 * (ambient, inheritable, permitted, effective) and, where it may, the
 * bounding set.  Returns 0, or -1 with errno when a set could not be
 * emptied (the agent must then refuse to continue).
 */
int mw_sandbox_drop_caller_capabilities(void);

/* Entry point of `moonwire __supervisor FD`. */
int mw_supervisor_main(int fd);

/* ---- value tree helpers for callers ---- */

/* Default limits for walking a result's value tree. */
#define MW_VALUE_MAX_DEPTH 64
#define MW_VALUE_MAX_ITEMS (1u << 20)

#endif
