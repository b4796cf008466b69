/*
 * agent.h: the runtime's agent room -- `moonwire agent`, the service on a
 * device.  Its configuration file (agent_config.c) and job journal
 * (journal.c), which `moonwire send`, `init` and the tests use too; and
 * what the service's own files share (agent.c: start-up, the loop,
 * signals and the log; agent_xmpp.c: the connection, stanzas and the
 * delivery barrier; agent_jobs.c: budgets, authorization, running jobs;
 * agent_cancel.c: signed cancellations).
 * Private to runtime/; spec/agent.md describes the behaviour.
 */
#ifndef MW_AGENT_H
#define MW_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <strophe.h>

#include <sqlite3.h>

#include "omemo/mw_omemo.h"
#include "runtime/job/job.h"
#include "runtime/mw_runtime.h"
#include "runtime/result/result.h"

/* ---- configuration (`moonwire agent -c CONFIG`) ---- */

#define MW_AGENT_FAILOVER_MAX	7	/* servers after `host` */

struct mw_agent_config {
	struct mw_omemo_account account;	/* jid, password, host, TLS, db */
	char *allowed_signers;
	char *policy;
	char *state_dir;		/* kv store; default: directory of db */
	uint32_t max_output;		/* result output cap, bytes (default 64K) */
	uint32_t clock_skew_s;		/* default 60 */
	unsigned parallel;		/* jobs running at once (default 2) */
	unsigned queue_max;		/* jobs waiting (default 64) */
	uint32_t shutdown_grace_ms;	/* SIGTERM: running jobs get this long */
	uint32_t rate_per_minute;	/* jobs per sender JID per minute (0: off) */
	unsigned rate_burst;
	bool durability_full;		/* fsync the commits that must survive power loss */
	/* token buckets for messages that would build a new OMEMO session,
	 * applied before decrypting (spec/agent.md) */
	uint32_t new_session_per_minute;	/* per sender JID (default 10) */
	unsigned new_session_burst;		/* default 5 */
	uint32_t new_session_global_per_minute;	/* all senders (default 60) */
	unsigned new_session_global_burst;	/* default 20 */
	uint32_t omemo_recheck_ms;	/* periodic publication re-check (0: off; default 1h) */
	int idle_workers;		/* sandbox pool; -1: as many as parallel */
	uint32_t reconnect_spread_ms;	/* up to this much more before the first reconnect (default 0) */
	uint32_t command_uid_first;	/* `command_uids`: the commands' own uids */
	uint32_t command_uid_count;	/* 0: commands run as nobody */
	/* `failover`: servers tried after host:port, in turn */
	char *failover_host[MW_AGENT_FAILOVER_MAX];
	unsigned short failover_port[MW_AGENT_FAILOVER_MAX];	/* 0: the `port` setting */
	unsigned n_failover;
};
/* Every error is "FILE:LINE: reason" (or "FILE: reason"); the agent does
 * not start. */
int mw_agent_config_load(const char *path, struct mw_agent_config *c,
    char *err, size_t errlen);
void mw_agent_config_free(struct mw_agent_config *c);
/* The agent's own files, canonical (mw_path_canonical), for
 * mw_policy_check_protected() and the sandbox's protected_paths: the
 * identity database and its -wal and -shm files, the password file (when
 * password_file is set), the state directory, allowed_signers, the policy
 * and the configuration file itself.  Fills out[0..*n) (each path
 * malloc'ed; mw_protected_paths_free) and returns 0, or -1 with err when a
 * path cannot be canonicalised (fail closed). */
int mw_agent_protected_paths(const char *config_path,
    const struct mw_agent_config *c, struct mw_protected_path out[MW_PROTECTED_MAX],
    size_t *n, char *err, size_t errlen);
void mw_protected_paths_free(struct mw_protected_path *v, size_t n);
/* The value of one `key = value` setting of an account-style file (e.g. the
 * operator's `signing_key`), malloc'ed, or NULL when absent/unreadable. */
char *mw_config_value(const char *path, const char *key);

/* ---- journal (same database and transaction as the ratchet) ---- */

enum mw_journal_state {
	MW_JOURNAL_ACCEPTED = 0,	/* recorded, may be running */
	MW_JOURNAL_DONE = 1,		/* terminal: result stored */
};
struct mw_journal_entry {
	char *signer;			/* SSH key fingerprint or "interactive:JID" */
	char *job_id;
	uint8_t sha256[32];		/* of the envelope text */
	char *from_jid;
	uint32_t device;
	enum mw_journal_state state;
	char *result;			/* result message text when DONE */
	bool replied;			/* handed to a connection at least once */
	bool cancel_requested;		/* a signed cancellation was accepted for it */
	uint8_t cancel_sha256[32];	/* of that cancellation's text */
};
void mw_journal_entry_free(struct mw_journal_entry *e);

int mw_journal_init(sqlite3 *db);
/* Finalizes the journal's prepared statements on db; call before closing
 * it (a later call on another handle does it too). */
void mw_journal_close(sqlite3 *db);
/* Statements kept prepared on one database handle at a time (journal.c;
 * runtime/fleet/jobtable.c too): sql[i] is prepared on first use, reset and
 * unbound by mw_stmt_done() after every use, finalized by
 * mw_stmt_cache_close() (call before closing the handle) or when the cache
 * is used with another handle. */
struct mw_stmt_cache {
	sqlite3 *db;
	const char *const *sql;
	sqlite3_stmt **st;
	size_t n;
};
sqlite3_stmt *mw_stmt_get(struct mw_stmt_cache *c, sqlite3 *db, size_t which);
void mw_stmt_done(sqlite3_stmt *st);
void mw_stmt_cache_close(struct mw_stmt_cache *c, sqlite3 *db);
/* Inside the caller's open transaction: 1 found (*e filled), 0 not found,
 * -1 database error. */
int mw_journal_lookup(sqlite3 *db, const char *signer, const char *job_id,
    struct mw_journal_entry *e);
/* Inside the caller's open transaction. */
int mw_journal_accept(sqlite3 *db, const struct mw_journal_entry *e, int64_t now);
/* Inside the caller's open transaction: records a cancellation on an
 * ACCEPTED row not yet cancelled.  0, or -1 (no such row, or a database
 * error).  mw_journal_recover() then ends the row `cancelled`. */
int mw_journal_cancel(sqlite3 *db, const char *signer, const char *job_id,
    const uint8_t cancel_sha256[32]);
/* Own transaction (autocommit mode): state DONE with its result text. */
int mw_journal_finish(sqlite3 *db, const char *signer, const char *job_id,
    const char *result, int64_t now);
/* The same, and replied = 1 in the same row write: for a result about to be
 * handed to a live connection (one journal write instead of two; if the
 * send fails or the connection goes, the reset after the connection is
 * lost, or at start-up, sets it back to 0 and it is sent again). */
int mw_journal_finish_sending(sqlite3 *db, const char *signer, const char *job_id,
    const char *result, int64_t now);
int mw_journal_mark_replied(sqlite3 *db, const char *signer, const char *job_id);
/* The server confirmed it received the result (replied 1 -> 2). */
int mw_journal_confirm(sqlite3 *db, const char *signer, const char *job_id);
/* After a lost connection or a restart: results handed to a connection but
 * never confirmed by the server are to be sent again (1 -> 0).  Returns
 * how many, or -1. */
int mw_journal_resend_unconfirmed(sqlite3 *db);
/* After a restart: every ACCEPTED job becomes DONE with an "interrupted"
 * result (`cancelled` when a cancellation was recorded for it); returns
 * how many, or -1. */
int mw_journal_recover(sqlite3 *db, int64_t now);
/* DONE and not replied, oldest first; *out malloc'ed array. */
int mw_journal_unreplied(sqlite3 *db, struct mw_journal_entry **out, size_t *n);
/* Counts, for tests and the log: rows per state. */
int mw_journal_count(sqlite3 *db, enum mw_journal_state st);

/* ---- the service (agent.c, agent_xmpp.c, agent_jobs.c) ---- */

#define PING_INTERVAL_MS	60000
#define PING_TIMEOUT_MS		30000
#define TICK_MS			1000
#define BACKOFF_INITIAL_MS	1000
#define BACKOFF_MAX_MS		120000
/* a refused login or certificate is a configuration error, not a network
 * one: retried slowly (someone must fix the file or the server first) */
#define CONFIG_BACKOFF_INITIAL_MS 60000
#define CONFIG_BACKOFF_MAX_MS	600000
#define RATE_SLOTS		256	/* senders tracked by the rate limiter */
#define BARRIER_BATCH_MAX	4096	/* results confirmed by one server ping */

struct running_job {
	struct running_job *next;
	char sandbox_id[24];
	char *signer;
	char *job_id;
	char *from_jid;
	uint32_t device;
	struct mw_grants grants;	/* kept until the job ends: the sandbox copies on submit */
	/* stage times for the `done` log line (spec/agent.md), microseconds */
	uint64_t t_received_us;		/* stanza handed to us */
	uint64_t t_decrypt_us;		/* OMEMO decrypt */
	uint64_t t_verify_us;		/* envelope, signature, policy */
	uint64_t t_commit_us;		/* journal row + ratchet commit */
	uint64_t t_submitted_us;	/* clock when handed to the sandbox */
	uint64_t composing_due_ms;	/* send <composing/> then (0: sent, or none) */
	char *cancel_from;		/* a journaled cancellation came from this JID ... */
	uint32_t cancel_device;		/* ... and device (NULL: not cancelled) */
};

/* A result handed to the connection, waiting for the server to confirm it. */
struct sent_result {
	char *signer;
	char *job_id;
};

/* A token bucket: `burst` at once, `per_minute` refilled continuously. */
struct bucket {
	double tokens;
	uint64_t last_ms;
};

struct rate_slot {
	char *jid;			/* NULL: free slot */
	double tokens;
	uint64_t last_ms;
	uint64_t refusal_reply_ms;	/* last rate_limited reply: one a minute */
	struct bucket new_sessions;	/* messages that would build a session */
};

struct agent {
	uint64_t redelivered;		/* OMEMO duplicates of handled messages (counted, not refused) */
	struct mw_agent_config cfg;
	struct mw_policy policy;
	struct mw_allowed_signers *signers;
	struct mw_sandbox *sb;
	sqlite3 *db;
	bool sync_commits;		/* commits sync the WAL (agent_sync_commits) */
	struct mw_omemo *o;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	xmpp_sm_state_t *sm;
	bool connected;
	bool stopping;
	bool pin_refused;		/* this connection failed the pin check after login */
	bool config_backoff;		/* the backoff is the configuration-error one */
	uint64_t stop_deadline_ms;
	unsigned backoff_ms;
	uint64_t reconnect_at_ms;
	/* which server the next attempt goes to: 0 `host`, i > 0 failover
	 * server i - 1; moves on after a failed attempt, stays after success */
	unsigned server_idx;
	uint64_t next_tick_ms;
	uint64_t next_ping_ms;
	uint64_t ping_sent_ms;		/* 0: no ping outstanding */
	char ping_id[40];
	struct running_job *jobs;
	unsigned n_jobs;
	uint64_t seq;
	struct rate_slot rate[RATE_SLOTS];
	struct bucket new_sessions;	/* all senders together */
	/* the agent's own files: no grant reaches them (policy check at
	 * start-up, and the sandbox broker at open time) */
	struct mw_protected_path protected[MW_PROTECTED_MAX];
	const char *protected_ptrs[MW_PROTECTED_MAX];
	size_t n_protected;
	/* delivery barrier: results sent since the last barrier ping, and
	 * those the outstanding barrier ping will confirm */
	struct sent_result *pending, *awaiting;
	size_t n_pending, n_awaiting;
	bool barrier_out;
	char barrier_id[48];
};

/* libstrophe's socket, learnt in on_socket(); one connection per process */
extern int mw_agent_xmpp_fd;
/* set by SIGTERM/SIGINT, or when the sandbox is gone: the loop stops */
extern volatile sig_atomic_t mw_agent_stop;

/* agent.c */
uint64_t agent_now_us(void);
uint64_t agent_now_ms(void);
void agent_log(const char *event, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void agent_crash_at(const char *point);
void agent_sync_commits(struct agent *a, bool full);

/* agent_xmpp.c */
void agent_send_stanza(xmpp_stanza_t *st, void *arg);
int agent_send_encrypted(struct agent *a, const char *jid, uint32_t device, const char *text,
    const char *state);
/* XEP-0085: "composing" once a job has run COMPOSING_AFTER_MS (a short
 * job's result comes first), "active" in its result message */
#define MW_CHATSTATES_NS "http://jabber.org/protocol/chatstates"
int agent_send_chat_state(struct agent *a, const char *jid, const char *state);
#define COMPOSING_AFTER_MS	1000
void agent_mark_replied(struct agent *a, const char *signer, const char *job_id);
void agent_await_barrier(struct agent *a, const char *signer, const char *job_id);
void agent_flush_unreplied(struct agent *a);
void agent_barrier_reset(struct agent *a);
int agent_start_connection(struct agent *a);
void agent_send_ping(struct agent *a);
void agent_sent_free(struct sent_result *v, size_t n);

/* agent_jobs.c */
void agent_handle_encrypted(struct agent *a, xmpp_stanza_t *st);
void agent_read_results(struct agent *a);
void agent_interrupt_all(struct agent *a, const char *why);
void agent_running_free(struct running_job *j);
void agent_unlink_job(struct agent *a, struct running_job *j);
uint64_t agent_chat_states_due(struct agent *a, uint64_t now_ms);
void agent_finish_job(struct agent *a, struct running_job *j, const struct mw_result *r);
bool agent_rate_allow(struct agent *a, const char *jid);
bool agent_rate_refusal_reply_due(struct agent *a, const char *jid);

/* agent_cancel.c: a decrypted signed cancellation (spec/agent.md,
 * "Cancellation"), with the decrypt transaction open; commits or rolls
 * it back. */
void agent_handle_cancel(struct agent *a, const struct mw_omemo_msg *m);

#endif
