/*
 * agent_svc.h: what the agent's own files share (agent.c: start-up, the
 * loop, signals and the log; agent_xmpp.c: the connection, stanzas and the
 * delivery barrier; agent_jobs.c: budgets, authorization, running jobs).
 * Private to those three; spec/agent.md describes the behaviour.
 */
#ifndef MW_AGENT_SVC_H
#define MW_AGENT_SVC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <strophe.h>

#include "runtime/agent_int.h"

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
uint64_t now_us(void);
uint64_t now_ms(void);
void logline(const char *event, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void crash_at(const char *point);
int db_sync(struct agent *a, bool full);

/* agent_xmpp.c */
void send_stanza(xmpp_stanza_t *st, void *arg);
int send_encrypted(struct agent *a, const char *jid, uint32_t device, const char *text);
void mark_replied(struct agent *a, const char *signer, const char *job_id);
void flush_unreplied(struct agent *a);
void barrier_reset(struct agent *a);
int start_connection(struct agent *a);
void send_ping(struct agent *a);
void sent_free(struct sent_result *v, size_t n);

/* agent_jobs.c */
void handle_encrypted(struct agent *a, xmpp_stanza_t *st);
void read_results(struct agent *a);
void interrupt_all(struct agent *a, const char *why);
void running_free(struct running_job *j);
void unlink_job(struct agent *a, struct running_job *j);

#endif
