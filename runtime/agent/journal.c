/*
 * journal.c: the agent's job journal and replay cache, in the identity's
 * SQLite database next to the OMEMO state.
 *
 * Why it shares the database: a job is recorded in the same transaction
 * that advances the ratchet past the message carrying it (mw_omemo_decrypt
 * leaves that transaction open).  So after any crash either both the
 * ratchet step and the job row exist, or neither does and the server's
 * redelivery decrypts again.  Invariants:
 *   - a row is ACCEPTED before its job is handed to the sandbox, and the
 *     sandbox is never given a job whose row is not committed;
 *   - ACCEPTED rows found at start-up were possibly running when the agent
 *     died: they become DONE with an "interrupted" result and never run;
 *   - (signer, job_id) is the primary key: the replay cache is the journal;
 *   - replied is 0 (to send), 1 (handed to a connection, not yet known to
 *     have reached the server) or 2 (the server answered a later ping on
 *     the same stream, so it had the result); only 2 is final.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/agent/agent.h"

static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE mw_jobs("
	" signer TEXT NOT NULL,"
	" job_id TEXT NOT NULL,"
	" envelope_sha256 BLOB NOT NULL,"
	" from_jid TEXT NOT NULL,"
	" device INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" result TEXT,"
	" replied INTEGER NOT NULL DEFAULT 0,"
	" received_at INTEGER NOT NULL,"
	" finished_at INTEGER,"
	" PRIMARY KEY (signer, job_id));"
	"CREATE INDEX mw_jobs_pending ON mw_jobs(state, replied);",
	/* 2: a signed cancellation recorded on its job's row */
	"ALTER TABLE mw_jobs ADD COLUMN cancel_sha256 BLOB;",
};

/*
 * The per-job statements stay prepared (parsing SQL was a visible part of
 * the agent's CPU per job, issue 13).  One database at a time: the agent
 * has one.  A statement is reset and its bindings cleared after every use,
 * so none holds a read transaction or points at a caller's memory between
 * calls.  mw_journal_close() finalizes them before the handle is closed.
 * The cache itself (mw_stmt_get) serves runtime/fleet/jobtable.c too.
 */
enum { J_LOOKUP, J_ACCEPT, J_FINISH, J_CANCEL, J_DELIVERY, J_N };
static const char *const cached_sql[J_N] = {
	[J_LOOKUP] = "SELECT signer, job_id, envelope_sha256, from_jid, device, "
	    "state, result, replied, cancel_sha256 FROM mw_jobs "
	    "WHERE signer = ? AND job_id = ?",
	[J_ACCEPT] = "INSERT INTO mw_jobs(signer, job_id, envelope_sha256, from_jid, "
	    "device, state, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	[J_FINISH] = "UPDATE mw_jobs SET state = ?, result = ?, finished_at = ?, "
	    "replied = ? WHERE signer = ? AND job_id = ? AND state = ?",
	[J_CANCEL] = "UPDATE mw_jobs SET cancel_sha256 = ? WHERE signer = ? AND "
	    "job_id = ? AND state = ? AND cancel_sha256 IS NULL",
	[J_DELIVERY] = "UPDATE mw_jobs SET replied = ? WHERE signer = ? AND "
	    "job_id = ? AND replied = ?",
};
static sqlite3_stmt *cached[J_N];
static struct mw_stmt_cache cache = { NULL, cached_sql, cached, J_N };

/* ---- a handle's statements kept prepared (the journal's and fleet's) ---- */

void
mw_stmt_cache_close(struct mw_stmt_cache *c, sqlite3 *db)
{
	if (db != c->db)
		return;
	for (size_t i = 0; i < c->n; i++) {
		sqlite3_finalize(c->st[i]);
		c->st[i] = NULL;
	}
	c->db = NULL;
}

sqlite3_stmt *
mw_stmt_get(struct mw_stmt_cache *c, sqlite3 *db, size_t which)
{
	if (db != c->db) {
		/* another handle: the old one's statements go (a handle
		 * closed without closing the cache is still open then) */
		mw_stmt_cache_close(c, c->db);
		c->db = db;
	}
	if (c->st[which] == NULL &&
	    sqlite3_prepare_v3(db, c->sql[which], -1, SQLITE_PREPARE_PERSISTENT,
	    &c->st[which], NULL) != SQLITE_OK) {
		c->st[which] = NULL;
		return NULL;
	}
	return c->st[which];
}

void
mw_stmt_done(sqlite3_stmt *st)
{
	if (st != NULL) {
		(void)sqlite3_reset(st);
		(void)sqlite3_clear_bindings(st);
	}
}

void
mw_journal_close(sqlite3 *db)
{
	mw_stmt_cache_close(&cache, db);
}

static int
exec_sql(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int
mw_journal_init(sqlite3 *db)
{
	return mw_db_migrate(db, "journal", migrations,
	    (int)(sizeof(migrations) / sizeof(migrations[0])));
}

void
mw_journal_entry_free(struct mw_journal_entry *e)
{
	free(e->signer);
	free(e->job_id);
	free(e->from_jid);
	free(e->result);
	memset(e, 0, sizeof(*e));
}

static char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t != NULL ? (const char *)t : "");
}

/* Fills e from a row of SELECT signer, job_id, envelope_sha256, from_jid,
 * device, state, result, replied, cancel_sha256. */
static int
row_entry(sqlite3_stmt *st, struct mw_journal_entry *e)
{
	const void *h = sqlite3_column_blob(st, 2);

	memset(e, 0, sizeof(*e));
	if (h != NULL && sqlite3_column_bytes(st, 2) == 32)
		memcpy(e->sha256, h, 32);
	e->signer = col_text(st, 0);
	e->job_id = col_text(st, 1);
	e->from_jid = col_text(st, 3);
	e->device = (uint32_t)sqlite3_column_int64(st, 4);
	e->state = sqlite3_column_int(st, 5) == MW_JOURNAL_DONE ?
	    MW_JOURNAL_DONE : MW_JOURNAL_ACCEPTED;
	e->result = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL : col_text(st, 6);
	e->replied = sqlite3_column_int(st, 7) != 0;
	h = sqlite3_column_blob(st, 8);
	if (h != NULL && sqlite3_column_bytes(st, 8) == 32) {
		memcpy(e->cancel_sha256, h, 32);
		e->cancel_requested = true;
	}
	if (e->signer == NULL || e->job_id == NULL || e->from_jid == NULL ||
	    (sqlite3_column_type(st, 6) != SQLITE_NULL && e->result == NULL)) {
		mw_journal_entry_free(e);
		return -1;
	}
	return 0;
}

#define ENTRY_COLUMNS "signer, job_id, envelope_sha256, from_jid, device, " \
	"state, result, replied, cancel_sha256"

int
mw_journal_lookup(sqlite3 *db, const char *signer, const char *job_id,
    struct mw_journal_entry *e)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, J_LOOKUP);
	int rc = -1;

	memset(e, 0, sizeof(*e));
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, signer, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
		goto out;
	switch (sqlite3_step(st)) {
	case SQLITE_ROW: rc = row_entry(st, e) == 0 ? 1 : -1; break;
	case SQLITE_DONE: rc = 0; break;
	default: break;
	}
out:
	mw_stmt_done(st);
	return rc;
}

int
mw_journal_accept(sqlite3 *db, const struct mw_journal_entry *e, int64_t now)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, J_ACCEPT);
	int rc = -1;

	if (st != NULL &&
	    sqlite3_bind_text(st, 1, e->signer, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, e->job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_blob(st, 3, e->sha256, 32, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 4, e->from_jid, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 5, e->device) == SQLITE_OK &&
	    sqlite3_bind_int(st, 6, MW_JOURNAL_ACCEPTED) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 7, now) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = 0;
	mw_stmt_done(st);
	return rc;
}

static int
finish(sqlite3 *db, const char *signer, const char *job_id, const char *result,
    int64_t now, int replied)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, J_FINISH);
	int rc = -1;

	if (st != NULL &&
	    sqlite3_bind_int(st, 1, MW_JOURNAL_DONE) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, result, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, now) == SQLITE_OK &&
	    sqlite3_bind_int(st, 4, replied) == SQLITE_OK &&
	    sqlite3_bind_text(st, 5, signer, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 6, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(st, 7, MW_JOURNAL_ACCEPTED) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1)
		rc = 0;
	mw_stmt_done(st);
	return rc;
}

int
mw_journal_finish(sqlite3 *db, const char *signer, const char *job_id,
    const char *result, int64_t now)
{
	return finish(db, signer, job_id, result, now, 0);
}

int
mw_journal_finish_sending(sqlite3 *db, const char *signer, const char *job_id,
    const char *result, int64_t now)
{
	return finish(db, signer, job_id, result, now, 1);
}

int
mw_journal_cancel(sqlite3 *db, const char *signer, const char *job_id,
    const uint8_t cancel_sha256[32])
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, J_CANCEL);
	int rc = -1;

	if (st != NULL &&
	    sqlite3_bind_blob(st, 1, cancel_sha256, 32, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, signer, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 3, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(st, 4, MW_JOURNAL_ACCEPTED) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = sqlite3_changes(db) == 1 ? 0 : -1;
	mw_stmt_done(st);
	return rc;
}

/* Moves one job's delivery state from `from` to `to` (0 unsent, 1 sent,
 * 2 confirmed); a job in another state is left alone. */
static int
set_delivery(sqlite3 *db, const char *signer, const char *job_id, int from, int to)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, J_DELIVERY);
	int rc = -1;

	if (st != NULL &&
	    sqlite3_bind_int(st, 1, to) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, signer, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 3, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(st, 4, from) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = 0;
	mw_stmt_done(st);
	return rc;
}

int
mw_journal_mark_replied(sqlite3 *db, const char *signer, const char *job_id)
{
	return set_delivery(db, signer, job_id, 0, 1);
}

int
mw_journal_confirm(sqlite3 *db, const char *signer, const char *job_id)
{
	return set_delivery(db, signer, job_id, 1, 2);
}

int
mw_journal_resend_unconfirmed(sqlite3 *db)
{
	int rc = -1;

	if (sqlite3_exec(db, "UPDATE mw_jobs SET replied = 0 WHERE replied = 1",
	    NULL, NULL, NULL) == SQLITE_OK)
		rc = sqlite3_changes(db);
	return rc;
}

int
mw_journal_recover(sqlite3 *db, int64_t now)
{
	sqlite3_stmt *st = NULL;
	struct mw_journal_entry *rows = NULL, *nr;
	size_t n = 0;
	int rc = -1, s;

	if (exec_sql(db, "BEGIN IMMEDIATE") != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT " ENTRY_COLUMNS " FROM mw_jobs "
	    "WHERE state = ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(st, 1, MW_JOURNAL_ACCEPTED) != SQLITE_OK)
		goto out;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if ((nr = realloc(rows, (n + 1) * sizeof(*nr))) == NULL)
			goto out;
		rows = nr;
		if (row_entry(st, &rows[n]) != 0)
			goto out;
		n++;
	}
	if (s != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < n; i++) {
		struct mw_result r;
		char *text;

		memset(&r, 0, sizeof(r));
		r.status = rows[i].cancel_requested ? MW_JOB_CANCELLED : MW_JOB_INTERRUPTED;
		r.error = rows[i].cancel_requested ? (char *)"cancelled; the agent stopped before "
		    "the cancellation completed, and the job was not run again" :
		    (char *)"the agent stopped while the job was running; it was not run again";
		if ((text = mw_result_message(rows[i].job_id, &r, 0, NULL, 0)) == NULL)
			goto out;
		s = mw_journal_finish(db, rows[i].signer, rows[i].job_id, text, now);
		free(text);
		if (s != 0)
			goto out;
	}
	if (exec_sql(db, "COMMIT") == 0)
		rc = (int)n;
out:
	sqlite3_finalize(st);
	if (rc < 0)
		(void)exec_sql(db, "ROLLBACK");
	for (size_t i = 0; i < n; i++)
		mw_journal_entry_free(&rows[i]);
	free(rows);
	return rc;
}

int
mw_journal_unreplied(sqlite3 *db, struct mw_journal_entry **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	struct mw_journal_entry *rows = NULL, *nr;
	int s;

	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT " ENTRY_COLUMNS " FROM mw_jobs "
	    "WHERE state = ? AND replied = 0 ORDER BY finished_at, rowid",
	    -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(st, 1, MW_JOURNAL_DONE) != SQLITE_OK)
		goto fail;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if ((nr = realloc(rows, (*n + 1) * sizeof(*nr))) == NULL)
			goto fail;
		rows = nr;
		if (row_entry(st, &rows[*n]) != 0)
			goto fail;
		(*n)++;
	}
	if (s != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	*out = rows;
	return 0;
fail:
	sqlite3_finalize(st);
	for (size_t i = 0; i < *n; i++)
		mw_journal_entry_free(&rows[i]);
	free(rows);
	*n = 0;
	return -1;
}

int
mw_journal_count(sqlite3 *db, enum mw_journal_state state)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM mw_jobs WHERE state = ?",
	    -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_int(st, 1, state) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}
