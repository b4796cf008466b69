/*
 * fleet.h: the runtime's fleet room -- who a job goes to, and what the
 * operator's side needs to send one job to many agents and never lose what
 * comes back.  Sections, one seam each:
 *   - target lists (targets.c: JIDs from --to, a targets file and roster
 *     groups, checked, folded and capped before anything is signed);
 *   - the operator's XMPP roster as the fleet inventory (roster.c: RFC 6121
 *     roster get/set over a short connection of the operator's account);
 *   - the job table (jobtable.c), outcomes and the summary (summary.c),
 *     the live line (progress.c), the wait on a job's rows (fleetconn.c),
 *     the fan-out connection (fleetsend.c) and what failures mean
 *     (explain.c).
 * Private to runtime/; spec/cli.md ("Targets", send, results, jobs,
 * `moonwire fleet`) and spec/result.md (the JSON objects) describe them.
 */
#ifndef MW_FLEET_H
#define MW_FLEET_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <sqlite3.h>
#include <strophe.h>

#include "omemo/mw_omemo.h"
#include "runtime/job/job.h"
#include "runtime/mw_runtime.h"
#include "runtime/result/result.h"

#define MW_FLEET_MAX_TARGETS_DEFAULT	1024	/* --max-targets, max_targets */
#define MW_FLEET_MAX_TARGETS_LIMIT	1000000	/* highest cap one may set */
#define MW_FLEET_PART_MAX		1023	/* bytes of a localpart or domain (RFC 7622) */
#define MW_FLEET_FILE_MAX		(64u * 1024 * 1024)	/* a targets file */
#define MW_FLEET_LINE_MAX		4096	/* a line of a targets file */
#define MW_FLEET_GROUP_MAX		1023	/* bytes of a roster group name */

enum {
	MW_FLEET_OK = 0,
	MW_FLEET_E_JID = -1,		/* a malformed JID (err says which and why) */
	MW_FLEET_E_NOMEM = -2,
	MW_FLEET_E_CAP = -3,		/* more targets than the cap */
	MW_FLEET_E_FILE = -4,		/* a targets file cannot be read */
	MW_FLEET_E_GROUP = -5,		/* a roster group is missing, empty or bad */
	MW_FLEET_E_XMPP = -6,		/* connection or server failure */
	MW_FLEET_E_USAGE = -7,		/* a bad argument (group name, cap) */
};

/* ---- target lists (targets.c) ---- */

/*
 * Bare JIDs in first-seen order, each once.  Invariant: every jid[i] is
 * valid (mw_fleet_jid_normalize) and in normal form, so two spellings of
 * one account are one entry.
 */
struct mw_fleet_targets {
	char **jid;
	size_t n;
	size_t given;			/* JIDs added, duplicates included */
	size_t alloc;
	size_t *slots;			/* open-addressing set: index + 1, 0 empty */
	size_t nslots;			/* a power of two, > 2 * n */
};

void mw_fleet_targets_init(struct mw_fleet_targets *t);
void mw_fleet_targets_free(struct mw_fleet_targets *t);

/*
 * Checks that s[0..n) is a bare JID local@domain (RFC 7622 shape: both
 * parts 1..1023 bytes of UTF-8 without controls or whitespace, none of
 * "&'/:<>@ in the localpart, no resource, no empty domain label) and writes
 * its normal form into out (ASCII letters lowered, as nodeprep and nameprep
 * do for ASCII; non-ASCII kept as written; a trailing '.' of the domain
 * dropped).  0, or MW_FLEET_E_JID with the reason in why.
 */
int mw_fleet_jid_normalize(const char *s, size_t n, char *out, size_t outlen,
    char *why, size_t wl);

/* Adds one JID (folding a duplicate).  MW_FLEET_OK, MW_FLEET_E_JID with
 * the reason in why, or MW_FLEET_E_NOMEM. */
int mw_fleet_targets_add(struct mw_fleet_targets *t, const char *jid,
    char *why, size_t wl);

/*
 * A targets file's text: one JID a line, surrounding blanks ignored, blank
 * lines and comments (from a '#' at the start of a line or after a blank)
 * skipped.  The first bad line stops it with "NAME:LINE: reason" in err
 * (MW_FLEET_E_JID); what came before it stays added.
 */
int mw_fleet_targets_parse(struct mw_fleet_targets *t, const char *text,
    size_t len, const char *name, char *err, size_t errlen);
/* The same from a file (a regular file up to MW_FLEET_FILE_MAX bytes);
 * "PATH: reason" in err and MW_FLEET_E_FILE when it cannot be read. */
int mw_fleet_targets_load(struct mw_fleet_targets *t, const char *path,
    char *err, size_t errlen);

/* MW_FLEET_OK when t->n <= max; otherwise MW_FLEET_E_CAP and "N targets
 * (G given, duplicates folded) is more than the cap of MAX" in err. */
int mw_fleet_targets_check_cap(const struct mw_fleet_targets *t, size_t max,
    char *err, size_t errlen);

/* A cap as written (decimal, 1..MW_FLEET_MAX_TARGETS_LIMIT). */
int mw_fleet_parse_cap(const char *s, size_t *out);

/* A roster group name: 1..MW_FLEET_GROUP_MAX bytes of UTF-8, no control
 * characters.  MW_FLEET_OK or MW_FLEET_E_USAGE with why. */
int mw_fleet_group_check(const char *name, char *why, size_t wl);

/* ---- the roster (roster.c) ---- */

struct mw_fleet_item {
	char *jid;			/* as the server sends it */
	char *name;			/* NULL when the item has none */
	char *subscription;		/* NULL means "none" */
	char **groups;
	size_t ngroups;
};
struct mw_fleet_roster {
	struct mw_fleet_item *items;
	size_t n;
};
void mw_fleet_roster_free(struct mw_fleet_roster *r);
/* The item of jid (compared in normal form), or NULL. */
struct mw_fleet_item *mw_fleet_roster_find(struct mw_fleet_roster *r,
    const char *jid);
bool mw_fleet_item_in_group(const struct mw_fleet_item *it, const char *group);

/*
 * A connection of the operator's account that only speaks roster IQs: no
 * presence is sent and no OMEMO runs on it.  Every call waits at most
 * timeout_ms for its answer.  Errors are for people ("login refused: ...",
 * "roster get: the server answered forbidden").
 */
struct mw_roster_conn;
int mw_roster_connect(const struct mw_omemo_account *a, uint64_t timeout_ms,
    struct mw_roster_conn **out, char *err, size_t errlen);
void mw_roster_close(struct mw_roster_conn *c);
int mw_fleet_roster_get(struct mw_roster_conn *c, struct mw_fleet_roster *r,
    char *err, size_t errlen);
/*
 * One roster change: item (jid, name, groups) set as the whole item,
 * replacing the server's, or with remove the roster item of item.jid
 * removed (subscription="remove").  rc and err are the outcome; id and
 * conn are mw_fleet_roster_apply's.
 */
struct mw_fleet_change {
	struct mw_fleet_item item;
	bool remove;
	bool done;
	int rc;
	char err[256];
	char id[32];
	struct mw_roster_conn *conn;
};
/*
 * Applies changes pipelined (MW_FLEET_WINDOW roster sets in flight: one
 * round trip per set would cost a round trip plus the server's and our
 * TCP delays each), then waits for every answer.  Every change gets its
 * own outcome; returns MW_FLEET_OK when all succeeded, else the first
 * failure's rc.  The timeout runs from the last answer; a change without
 * an answer by then failed (MW_FLEET_E_XMPP), although the server may
 * still apply it.
 */
#define MW_FLEET_WINDOW 64
int mw_fleet_roster_apply(struct mw_roster_conn *c, struct mw_fleet_change *ch,
    size_t n);

/*
 * Asks each of jids for its presence (RFC 6121 3.1: a `subscribe` presence;
 * the server keeps the request for a contact that is offline, and an agent
 * approves requests from JIDs its policy names, spec/agent.md), so that the
 * operator's later connections see which targets are online (the summary's
 * offline / online but silent).  Returns once the server answered a ping
 * sent after the requests (it took them all): MW_FLEET_OK, or
 * MW_FLEET_E_XMPP / MW_FLEET_E_NOMEM with err.
 */
int mw_fleet_roster_subscribe(struct mw_roster_conn *c, char *const *jids, size_t n,
    char *err, size_t errlen);

/*
 * The members of group in r (sorted by JID: the server's roster order is
 * unspecified) added to t.  MW_FLEET_E_GROUP with "roster group 'NAME' does
 * not exist or is empty" (or a member that is no bare JID) in err.
 */
int mw_fleet_targets_add_group(struct mw_fleet_targets *t,
    const struct mw_fleet_roster *r, const char *group, char *err, size_t errlen);

/*
 * For `moonwire send --group`: one roster get over a connection of a, then
 * every group's members in turn.  MW_FLEET_OK, MW_FLEET_E_GROUP or
 * MW_FLEET_E_XMPP with err.
 */
int mw_fleet_targets_add_groups(struct mw_fleet_targets *t,
    const struct mw_omemo_account *a, char *const *groups, size_t ngroups,
    uint64_t timeout_ms, char *err, size_t errlen);

/* ==== the job table, the summary and the fan-out connection ==== */

/* ==================================================================
 * Jobs, results, progress and the summary (jobtable.c, summary.c,
 * progress.c, fleetconn.c, fleetsend.c, explain.c)
 * ================================================================== */

/* ---- the job table (jobtable.c), in the operator's identity database ----
 *
 * One row per job (fleet_jobs) and one per target (fleet_targets), written
 * and committed before the first message of the job leaves.  Every result
 * any moonwire process of the account decrypts is recorded in the same
 * transaction that advances the OMEMO ratchet past it, by (job id, sender
 * JID), whichever process started the job; the process that waits polls
 * its rows.  So a result is durable before it is shown, and one process
 * decrypting another's reply loses nothing. */

enum mw_fleet_state {
	MW_FLEET_PENDING = 0,		/* committed; sent or about to be */
	MW_FLEET_UNSENT = 1,		/* could not be sent: detail says why */
	MW_FLEET_RESULT = 2,		/* a result message is stored */
};

/* What the operator's process saw of a target (never trusted, only shown:
 * presence and chat states are not encrypted). */
enum mw_fleet_seen {
	MW_FLEET_SEEN_NOTHING = 0,	/* no available presence seen */
	MW_FLEET_SEEN_ONLINE = 1,	/* available presence */
	MW_FLEET_SEEN_RUNNING = 2,	/* its composing chat state: job accepted */
};

struct mw_fleet_row {
	char *jid;
	enum mw_fleet_state state;
	enum mw_fleet_seen seen;
	int64_t sent_ms;		/* Unix ms when handed to the connection; 0 not known */
	int64_t done_ms;		/* result recorded / send failed; 0 none */
	char *status;			/* RESULT: status name or "refused" */
	char *detail;			/* UNSENT: why */
	char *result;			/* RESULT: the result message text */
	int64_t seq;			/* bumped by every state change (polling) */
};
void mw_fleet_row_free(struct mw_fleet_row *r);

struct mw_fleet_job_info {
	char job_id[MW_JOB_ID_MAX + 1];
	int64_t created_ms;
	uint8_t envelope_sha256[32];
	size_t targeted, ok, failed, refused, pending;
};

/* An agent's answer to a cancellation of job_id (a result message with
 * `answer-to: cancel`) from jid: stored apart from the job's result, the
 * last one kept.  1 stored, 0 no such target of that job, -1 error. */
int mw_jobtable_cancel_answer(sqlite3 *db, const char *job_id, const char *jid,
    const char *text, size_t len, int64_t now_ms);
/* The answer stored since since_ms (malloc'ed): 1, 0 none, -1 error. */
int mw_jobtable_cancel_answer_get(sqlite3 *db, const char *job_id, const char *jid,
    int64_t since_ms, char **text);
/* Creates or migrates the fleet_* tables (mw_schema component "fleet").
 * 0, or -1 (a database error, or a schema from a newer moonwire). */
int mw_jobtable_init(sqlite3 *db);
/* Finalizes the statements the job table keeps prepared on db; call
 * before closing it. */
void mw_jobtable_close(sqlite3 *db);
/* The job and its targets (in this order), one transaction, committed when
 * it returns 0.  A job id already in the table (the same envelope sent
 * again) keeps its other rows, adds the targets it lacks, and makes the
 * given targets pending again (a new attempt).  envelope_sha256: of
 * the envelope when there is one for all targets, else of the program. */
int mw_jobtable_create(sqlite3 *db, const char *job_id,
    const uint8_t envelope_sha256[32], int64_t now_ms, char *const *jids, size_t n);
/*
 * Inside the caller's open transaction (the decrypt's): stores the result
 * message text for (job_id, jid).  1 recorded; 0 no such job or target
 * (nothing written); 2 the row already has a result (kept: a duplicate
 * delivery is the same bytes); -1 database error.
 */
int mw_jobtable_record(sqlite3 *db, const char *job_id, const char *jid,
    const char *text, size_t len, int64_t now_ms);
/* Own transaction: the target could not be sent to (why: one line). */
int mw_jobtable_unsent(sqlite3 *db, const char *job_id, const char *jid,
    const char *why, int64_t now_ms);
/* Inside the caller's transaction: what was seen of a pending target and
 * when it was sent (sent_ms 0 keeps the stored time). */
int mw_jobtable_seen(sqlite3 *db, const char *job_id, const char *jid,
    enum mw_fleet_seen seen, int64_t sent_ms);
/* 1 and *info filled, 0 no such job, -1 error. */
int mw_jobtable_job(sqlite3 *db, const char *job_id, struct mw_fleet_job_info *info);
/* The target rows of a job, in the order they were created: *rows malloc'ed
 * (mw_fleet_rows_free).  0, or -1. */
int mw_jobtable_rows(sqlite3 *db, const char *job_id, struct mw_fleet_row **rows,
    size_t *n);
void mw_fleet_rows_free(struct mw_fleet_row *rows, size_t n);
/* Rows of job_id changed after seq `after` (by any process), oldest change
 * first; *last is the highest seq seen.  cb returns 0 to go on.  0, or -1. */
int mw_jobtable_changes(sqlite3 *db, const char *job_id, int64_t after,
    int (*cb)(void *arg, const struct mw_fleet_row *r), void *arg, int64_t *last);
/* The newest jobs first, at most max, with their counts. *out malloc'ed. */
int mw_jobtable_list(sqlite3 *db, size_t max, struct mw_fleet_job_info **out,
    size_t *n);
/* Deletes jobs created before cutoff_ms, with their rows.  Count or -1. */
int mw_jobtable_prune(sqlite3 *db, int64_t cutoff_ms);

/* `job_retention_days` of an account file: days (default 30, 0 keeps jobs
 * forever); -1 with err when the value is not a number of days. */
#define MW_FLEET_RETENTION_DEFAULT_DAYS 30
#define MW_FLEET_RETENTION_MAX_DAYS 3650
int mw_fleet_retention_days(const char *config, char *err, size_t errlen);

/* ---- the summary (summary.c) ---- */

enum mw_fleet_outcome {
	MW_FLEET_OUT_OK,
	MW_FLEET_OUT_FAILED,		/* a result that is not ok, or not sent */
	MW_FLEET_OUT_REFUSED,
	MW_FLEET_OUT_OFFLINE,		/* did not return; no sign of the agent */
	MW_FLEET_OUT_SILENT,		/* did not return; online or running */
};
struct mw_fleet_totals {
	size_t targeted, ok, failed, refused, offline, silent;
};
/* The outcome of one row; with m (optional) the parsed result when there
 * is one (m->job_id NULL otherwise; mw_result_msg_free it). */
enum mw_fleet_outcome mw_fleet_outcome(const struct mw_fleet_row *r,
    struct mw_result_msg *m);
void mw_fleet_totals(const struct mw_fleet_row *rows, size_t n,
    struct mw_fleet_totals *t);
/* The exit status of a fleet: that of the first row (in target order)
 * whose outcome is not ok -- the result's (as `moonwire run`; 8 for
 * cancelled), 7 refused, 6 not sent or did not return -- or 0
 * (spec/cli.md). */
int mw_fleet_exit(const struct mw_fleet_row *rows, size_t n);
/* The table (one line per target, with rows_too) and the totals line; or
 * with json the object of each target (without rows_too only those that
 * have no result: the others were printed as they arrived) and the
 * summary object (spec/result.md).  O(n). */
void mw_fleet_summary_print(FILE *f, const char *job_id,
    const struct mw_fleet_row *rows, size_t n, bool json, bool rows_too);
/* One result as `moonwire send` prints it when it arrives: the readable
 * block (with "== JID" first when multi) or its JSON object. */
void mw_fleet_result_print(FILE *f, const char *jid, const struct mw_result_msg *m,
    bool json, bool multi);

/* ---- the live line on a terminal (progress.c) ---- */

struct mw_fleet_progress {
	bool tty;			/* stderr is a terminal: draw; else never */
	bool shown;			/* a line is on stderr now */
	uint64_t start_ms;		/* monotonic */
	uint64_t drawn_ms;		/* last redraw */
	char last[160];			/* the line drawn */
};
void mw_fleet_progress_init(struct mw_fleet_progress *p, uint64_t now_ms);
/* Redraws at most every 200 ms, and only when the line changes. */
void mw_fleet_progress_update(struct mw_fleet_progress *p, const char *cmd,
    const struct mw_fleet_row *rows, size_t n, uint64_t now_ms);
void mw_fleet_progress_clear(struct mw_fleet_progress *p);

/* ---- one connection that sends envelopes and collects results
 * (fleetconn.c: open, load, wait, close; fleetsend.c: the connection) ----
 *
 * Used by `send` (envelopes to send), `results` (nothing to send: collect
 * what the server stored) and any later command that sends a signed
 * message to a job's targets (a cancellation: other envelopes, the same
 * targets and job id).  Whatever it decrypts goes to the job table. */

/* ---- pacing and retries (pace.c) ---- */

#define MW_FLEET_SEND_WINDOW	64	/* sends in flight at most (first contact: 3 IQs each: both device lists, a bundle) */
#define MW_FLEET_MAX_TRIES	8	/* sends of one target before its error stands */
#define MW_FLEET_BACKOFF_MIN_MS	250
#define MW_FLEET_BACKOFF_MAX_MS	8000

struct mw_fleet_pace {
	unsigned max;			/* the window's ceiling */
	unsigned window;		/* sends allowed in flight now */
	unsigned inflight;
	unsigned credit;		/* successes towards the next window + 1 */
	uint64_t hold_until_ms;		/* no new start before (monotonic) */
	unsigned throttled;		/* throttle answers seen */
};
void mw_fleet_pace_init(struct mw_fleet_pace *p, unsigned max);
/* Whether a stanza error (its type attribute and defined condition, either
 * may be NULL) says "try again later": type wait, resource-constraint,
 * policy-violation, remote-server-timeout, internal-server-error. */
bool mw_fleet_retriable(const char *type, const char *cond);
/* The wait before try number tries + 1 (tries >= 1): MIN doubled per try up
 * to MAX, then jittered into [d/2, d] by rnd. */
uint64_t mw_fleet_backoff_ms(unsigned tries, uint32_t rnd);
bool mw_fleet_pace_may_start(const struct mw_fleet_pace *p, uint64_t now_ms);
void mw_fleet_pace_started(struct mw_fleet_pace *p);
/* A send finished (ok: it went out); success grows the window again. */
void mw_fleet_pace_done(struct mw_fleet_pace *p, bool ok);
/* The server throttled us: halve the window, hold starts for backoff_ms. */
void mw_fleet_pace_throttled(struct mw_fleet_pace *p, uint64_t now_ms,
    uint64_t backoff_ms);

struct mw_fleet;
/* Target i of a connection; its job table row is rows[i]. */
struct mw_fleet_target {
	struct mw_fleet *fleet;		/* for the send callback */
	const char *envelope;		/* to send on connect; NULL: collect only */
	size_t envelope_len;
	bool shown;			/* its result was printed */
	bool dirty;			/* seen/sent_ms to write to the table */
	bool sent;			/* handed to the connection */
	char *unsent_why;		/* the send failed: to record (malloc'ed) */
	char iq_error[64];		/* condition of the last IQ error about it */
	char iq_error_type[16];		/* its type (wait, cancel, ...) */
	char iq_error_text[256];
	bool cancel_answered;		/* cancel: the agent answered the cancellation */
	bool cancel_unsent;		/* cancel: the cancellation could not be sent */
	bool inflight;			/* an mw_omemo_send of it is running */
	bool queued;			/* to be (re)sent when the pace allows */
	unsigned tries;			/* sends started */
	uint64_t retry_at_ms;		/* monotonic: not before */
	char msg_id[48];		/* id of the last message sent to it */
};

enum mw_fleet_stop {
	MW_FLEET_ALL_DONE,		/* every target has an outcome */
	MW_FLEET_TIMEOUT,
	MW_FLEET_SIGNAL,		/* SIGINT or SIGTERM */
	MW_FLEET_CONN_FAILED,
	MW_FLEET_COLLECTED,		/* collect-only: the server's stored messages are in */
};

struct mw_fleet {
	const char *cmd;		/* "send", "results": prefix of messages */
	const char *config;		/* the account file, for hints */
	struct mw_omemo_account *acct;
	sqlite3 *db;
	struct mw_omemo *o;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	char job_id[MW_JOB_ID_MAX + 1];
	struct mw_fleet_row *rows;	/* mirrors the job table, in target order */
	struct mw_fleet_target *t;	/* t[i] goes with rows[i] */
	size_t nt;
	size_t *by_jid;			/* indexes sorted by JID, for lookups */
	size_t remaining;		/* targets without an outcome */
	int64_t seq;			/* job table changes seen */
	bool poll_now;			/* this process recorded something */
	bool json, print_results;	/* print each result as it arrives */
	bool connected, failed, pin_refused, collected;
	bool closing;			/* our own disconnect: not "connection lost" */
	char barrier_id[40];		/* collect: the ping after our presence */
	int64_t cancel_since_ms;	/* cancel: answers newer than this count; 0: not a cancel */
	struct mw_fleet_progress progress;
	struct mw_fleet_pace pace;	/* sends in flight, throttle backoff */
	size_t queued;			/* targets with t[i].queued */
	unsigned retries;		/* sends started again after a throttle */
};

/* Opens the identity database (created private if missing), the OMEMO
 * state and the job table, and prunes jobs past the retention.  0, or -1
 * with a message printed. */
int mw_fleet_open(struct mw_fleet *f, const char *cmd, const char *config,
    struct mw_omemo_account *acct);
/* Loads the rows of f->job_id (created before) into f->rows/t/nt, with
 * no envelopes, and indexes them.  0, or -1 with a message printed. */
int mw_fleet_load(struct mw_fleet *f);
/* Keeps only the targets named in jids (a command about some targets of
 * a job, e.g. a cancellation with --to), in their order.  0, or -1. */
int mw_fleet_keep(struct mw_fleet *f, char *const *jids, size_t n);
/* The index of the target with that bare JID, or -1.  O(log n). */
ssize_t mw_fleet_find(const struct mw_fleet *f, const char *jid);
/* Connects; on login every pending target with an envelope gets it.
 * 0, or -1. */
int mw_fleet_connect(struct mw_fleet *f);
/* Waits for outcomes (collect_only: until the server's stored messages
 * are in and, for rows still pending, until timeout_ms from the start) and
 * prints each result as it lands in the table.  SIGINT/SIGTERM end the
 * wait. */
enum mw_fleet_stop mw_fleet_wait(struct mw_fleet *f, uint64_t timeout_ms,
    bool collect_only);
/* Writes what was seen (presence, sent times) to the table. */
void mw_fleet_flush(struct mw_fleet *f);
/* Inside the room (fleetconn.c, fleetsend.c): the clocks (monotonic, Unix
 * ms); the target whose bare JID is that of from (a full or bare JID), or
 * -1; and fleetsend.c's start of queued targets while the pace allows (the
 * wait calls it on every turn: a backoff ends without a stanza). */
uint64_t mw_fleet_mono_ms(void);
int64_t mw_fleet_wall_ms(void);
ssize_t mw_fleet_find_from(const struct mw_fleet *f, const char *from);
void mw_fleet_pump(struct mw_fleet *f);
/* explain.c: what the server's IQ error about target t (jid) means, for
 * a send (one line into buf). */
void mw_fleet_explain_iq_error(const struct mw_fleet *f,
    const struct mw_fleet_target *t, const char *jid, char *buf, size_t len);
/* Why a target may not have answered (stderr), after a wait. */
void mw_fleet_explain_missing(struct mw_fleet *f);
/* `moonwire results -c CONFIG JOB`, the hint printed when a wait ends with
 * targets still out. */
void mw_fleet_hint_later(struct mw_fleet *f, enum mw_fleet_stop why);
void mw_fleet_close(struct mw_fleet *f);

#endif
