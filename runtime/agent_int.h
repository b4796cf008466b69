/*
 * agent_int.h: private to runtime/ -- the agent's configuration, its job
 * journal, and the result message that travels back over OMEMO.
 * spec/agent.md and spec/result.md describe the formats declared here.
 */
#ifndef MW_AGENT_INT_H
#define MW_AGENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <sqlite3.h>

#include "omemo/mw_omemo.h"
#include "runtime/mw_runtime.h"
#include "runtime/signing.h"

/* ---- configuration (`moonwire agent -c CONFIG`) ---- */

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
};
void mw_journal_entry_free(struct mw_journal_entry *e);

int mw_journal_init(sqlite3 *db);
/* Inside the caller's open transaction: 1 found (*e filled), 0 not found,
 * -1 database error. */
int mw_journal_lookup(sqlite3 *db, const char *signer, const char *job_id,
    struct mw_journal_entry *e);
/* Inside the caller's open transaction. */
int mw_journal_accept(sqlite3 *db, const struct mw_journal_entry *e, int64_t now);
/* Own transaction (autocommit mode): state DONE with its result text. */
int mw_journal_finish(sqlite3 *db, const char *signer, const char *job_id,
    const char *result, int64_t now);
int mw_journal_mark_replied(sqlite3 *db, const char *signer, const char *job_id);
/* The server confirmed it received the result (replied 1 -> 2). */
int mw_journal_confirm(sqlite3 *db, const char *signer, const char *job_id);
/* After a lost connection or a restart: results handed to a connection but
 * never confirmed by the server are to be sent again (1 -> 0).  Returns
 * how many, or -1. */
int mw_journal_resend_unconfirmed(sqlite3 *db);
/* After a restart: every ACCEPTED job becomes DONE with an "interrupted"
 * result; returns how many, or -1. */
int mw_journal_recover(sqlite3 *db, int64_t now);
/* DONE and not replied, oldest first; *out malloc'ed array. */
int mw_journal_unreplied(sqlite3 *db, struct mw_journal_entry **out, size_t *n);
/* Counts, for tests and the log: rows per state. */
int mw_journal_count(sqlite3 *db, enum mw_journal_state st);

/* ---- the result message (spec/result.md) ---- */

#define MW_RESULT_MAGIC "moonwire-result 1"

/* Renders a sandbox result (refusal == 0) or a refusal (refusal < 0, r may
 * be NULL) as the result message text; output is cut to max_output bytes
 * (on a UTF-8 boundary, marked truncated); the whole text stays within
 * MW_OMEMO_MAX_PLAINTEXT.  malloc'ed, NUL-terminated. */
char *mw_result_message(const char *job_id, const struct mw_result *r,
    int refusal, const char *reason, uint32_t max_output);

struct mw_result_msg {
	char *job_id;
	char *status;			/* a job status name or "refused" */
	char *refusal;			/* refusal code when status is refused */
	char *error;			/* NULL if none */
	cJSON *values;			/* array */
	char *output;
	size_t output_len;
	bool output_truncated;
	struct mw_usage usage;
};
/* 0, or -1 when text is not a result message. */
int mw_result_message_parse(const char *text, size_t len, struct mw_result_msg *m);
void mw_result_msg_free(struct mw_result_msg *m);
/* JSON for `moonwire send --json` (spec/result.md); malloc'ed. */
char *mw_result_msg_json(const struct mw_result_msg *m, const char *from);
/* Exit status of `moonwire send` for one result. */
int mw_result_msg_exit(const struct mw_result_msg *m);

/* Valid UTF-8 (and with xml_safe, XML-safe) copy; result.c. */
char *mw_text_clean(const uint8_t *s, size_t n, bool xml_safe, size_t *outlen);
/* JSON array text of a sandbox result's values (result.c). */
char *mw_result_values_json(const struct mw_result *r);

#endif
