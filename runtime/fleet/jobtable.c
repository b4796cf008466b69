/*
 * jobtable.c: the operator's job table, in the identity database next to
 * the OMEMO state (fleet.h says why it lives there: a result is recorded in
 * the transaction that advances the ratchet past it).
 *
 * Schema versioning as in omemo/store.c and runtime/agent/journal.c: the
 * shared mw_schema(component, version) table has a row "fleet"; each step
 * runs in one transaction; a version newer than this build's is refused.
 * Invariants:
 *   - (job_id, jid) is unique: a result is matched by its job id and the
 *     JID that sent it, never by which process is waiting;
 *   - a row with a result keeps it (first wins: a duplicate delivery is the
 *     same bytes, byte for byte, spec/result.md) until the job is sent to
 *     that target again, which makes the row wait for the new answer;
 *   - seq grows with every change of a row, across all jobs, so a waiting
 *     process reads only what changed since its last look.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/agent/agent.h"
#include "runtime/fleet/fleet.h"


static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE fleet_jobs("
	" job_id TEXT PRIMARY KEY,"
	" envelope_sha256 BLOB NOT NULL,"
	" created_ms INTEGER NOT NULL);"
	"CREATE INDEX fleet_jobs_created ON fleet_jobs(created_ms);"
	"CREATE TABLE fleet_targets("
	" job_id TEXT NOT NULL REFERENCES fleet_jobs(job_id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL,"
	" jid TEXT NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),"
	" seen INTEGER NOT NULL DEFAULT 0,"
	" sent_ms INTEGER NOT NULL DEFAULT 0,"
	" done_ms INTEGER NOT NULL DEFAULT 0,"
	" status TEXT,"
	" detail TEXT,"
	" result TEXT,"
	" seq INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (job_id, jid));"
	"CREATE INDEX fleet_targets_order ON fleet_targets(job_id, idx);"
	"CREATE INDEX fleet_targets_job_seq ON fleet_targets(job_id, seq);"
	"CREATE INDEX fleet_targets_seq ON fleet_targets(seq);",
	/* 2: an agent's answer to a cancellation (`answer-to: cancel`), which
	 * is never the job's result; kept apart so that the target row still
	 * waits for the job's own result */
	"CREATE TABLE fleet_cancel_answers("
	" job_id TEXT NOT NULL REFERENCES fleet_jobs(job_id) ON DELETE CASCADE,"
	" jid TEXT NOT NULL,"
	" answer TEXT NOT NULL,"
	" received_ms INTEGER NOT NULL,"
	" PRIMARY KEY (job_id, jid));",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The columns read_row() reads, in its order. */
#define ROW_COLUMNS "jid, state, seen, sent_ms, done_ms, status, detail, result, seq"

/* The statements run once per target (a result, an unsent target, a
 * sighting, the changes a waiting process reads) stay prepared: parsing
 * them was 10 % of the operator's CPU in a fan-out (issue 11).
 * mw_jobtable_close() finalizes them. */
enum { T_SEQ, T_STATE, T_RESULT, T_UNSENT, T_SEEN, T_CHANGES, T_N };
static const char *const cached_sql[T_N] = {
	[T_SEQ] = "SELECT COALESCE(MAX(seq), 0) + 1 FROM fleet_targets",
	[T_STATE] = "SELECT state FROM fleet_targets WHERE job_id = ? AND jid = ?",
	[T_RESULT] = "UPDATE fleet_targets SET state = 2, status = ?, result = ?, "
	    "done_ms = ?, detail = NULL, seq = ? WHERE job_id = ? AND jid = ?",
	[T_UNSENT] = "UPDATE fleet_targets SET state = 1, detail = ?, done_ms = ?, "
	    "seq = ? WHERE job_id = ? AND jid = ? AND state = 0",
	[T_SEEN] = "UPDATE fleet_targets SET seen = ?, sent_ms = CASE WHEN ? > 0 "
	    "THEN ? ELSE sent_ms END WHERE job_id = ? AND jid = ?",
	[T_CHANGES] = "SELECT " ROW_COLUMNS " FROM fleet_targets WHERE job_id = ? "
	    "AND seq > ? ORDER BY seq",
};
static sqlite3_stmt *cached[T_N];
static struct mw_stmt_cache cache = { NULL, cached_sql, cached, T_N };

void
mw_jobtable_close(sqlite3 *db)
{
	mw_stmt_cache_close(&cache, db);
}

static int
exec_sql(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int
mw_jobtable_init(sqlite3 *db)
{
	return mw_db_migrate(db, "fleet", migrations, NMIGRATIONS);
}

void
mw_fleet_row_free(struct mw_fleet_row *r)
{
	free(r->jid);
	free(r->status);
	free(r->detail);
	free(r->result);
	memset(r, 0, sizeof(*r));
}

void
mw_fleet_rows_free(struct mw_fleet_row *rows, size_t n)
{
	for (size_t i = 0; rows != NULL && i < n; i++)
		mw_fleet_row_free(&rows[i]);
	free(rows);
}

/* The next seq: one more than any row's (indexed, so O(log n)). */
static int
next_seq(sqlite3 *db, int64_t *seq)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, T_SEQ);
	int rc = -1;

	if (st != NULL && sqlite3_step(st) == SQLITE_ROW) {
		*seq = sqlite3_column_int64(st, 0);
		rc = 0;
	}
	mw_stmt_done(st);
	return rc;
}

int
mw_jobtable_create(sqlite3 *db, const char *job_id, const uint8_t envelope_sha256[32],
    int64_t now_ms, char *const *jids, size_t n)
{
	sqlite3_stmt *job = NULL, *tgt = NULL, *cnt = NULL;
	int64_t base = 0;

	if (!sqlite3_get_autocommit(db) || exec_sql(db, "BEGIN IMMEDIATE") != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "INSERT INTO fleet_jobs(job_id, envelope_sha256, "
	    "created_ms) VALUES (?, ?, ?) ON CONFLICT(job_id) DO NOTHING", -1, &job,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_text(job, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(job, 2, envelope_sha256, 32, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(job, 3, now_ms) != SQLITE_OK ||
	    sqlite3_step(job) != SQLITE_DONE)
		goto fail;
	/* targets added to a job sent again come after its first ones */
	if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(idx) + 1, 0) FROM fleet_targets "
	    "WHERE job_id = ?", -1, &cnt, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(cnt, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(cnt) != SQLITE_ROW)
		goto fail;
	base = sqlite3_column_int64(cnt, 0);
	/* the job sent to a target again is a new attempt: the row waits for
	 * its answer (an agent answers a duplicate with the stored result) */
	if (sqlite3_prepare_v2(db, "INSERT INTO fleet_targets(job_id, idx, jid) "
	    "VALUES (?, ?, ?) ON CONFLICT(job_id, jid) DO UPDATE SET state = 0, "
	    "detail = NULL, status = NULL, result = NULL, done_ms = 0, seen = 0, "
	    "sent_ms = 0", -1, &tgt,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_text(tgt, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (sqlite3_bind_int64(tgt, 2, base + (int64_t)i) != SQLITE_OK ||
		    sqlite3_bind_text(tgt, 3, jids[i], -1, SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_step(tgt) != SQLITE_DONE || sqlite3_reset(tgt) != SQLITE_OK)
			goto fail;
	}
	sqlite3_finalize(job);
	sqlite3_finalize(tgt);
	sqlite3_finalize(cnt);
	if (exec_sql(db, "COMMIT") != 0) {
		(void)exec_sql(db, "ROLLBACK");
		return -1;
	}
	return 0;
fail:
	sqlite3_finalize(job);
	sqlite3_finalize(tgt);
	sqlite3_finalize(cnt);
	(void)exec_sql(db, "ROLLBACK");
	return -1;
}

/* The status header of a result message, for the counts. */
static char *
result_status(const char *text, size_t len)
{
	struct mw_result_msg m;
	char *s;

	if (mw_result_message_parse(text, len, &m) != 0)
		return strdup("unreadable");
	s = strdup(m.status);
	mw_result_msg_free(&m);
	return s;
}

int
mw_jobtable_record(sqlite3 *db, const char *job_id, const char *jid,
    const char *text, size_t len, int64_t now_ms)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, T_STATE);
	int64_t seq;
	char *status;
	int rc = -1, state;

	if (st == NULL ||
	    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, jid, -1, SQLITE_STATIC) != SQLITE_OK) {
		mw_stmt_done(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		mw_stmt_done(st);
		return rc == SQLITE_DONE ? 0 : -1;
	}
	state = sqlite3_column_int(st, 0);
	mw_stmt_done(st);
	if (state == MW_FLEET_RESULT)
		return 2;
	if (next_seq(db, &seq) != 0 || (status = result_status(text, len)) == NULL)
		return -1;
	rc = -1;
	if ((st = mw_stmt_get(&cache, db, T_RESULT)) != NULL &&
	    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, text, (int)len, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, now_ms) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 4, seq) == SQLITE_OK &&
	    sqlite3_bind_text(st, 5, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 6, jid, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = 1;
	mw_stmt_done(st);
	free(status);
	return rc;
}

int
mw_jobtable_cancel_answer(sqlite3 *db, const char *job_id, const char *jid,
    const char *text, size_t len, int64_t now_ms)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO fleet_cancel_answers(job_id, jid, answer, "
	    "received_ms) SELECT job_id, jid, ?, ? FROM fleet_targets WHERE job_id = ? "
	    "AND jid = ? ON CONFLICT(job_id, jid) DO UPDATE SET answer = excluded.answer, "
	    "received_ms = excluded.received_ms", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, now_ms) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 4, jid, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	rc = sqlite3_step(st) == SQLITE_DONE ? (sqlite3_changes(db) > 0 ? 1 : 0) : -1;
	sqlite3_finalize(st);
	return rc;
}

int
mw_jobtable_cancel_answer_get(sqlite3 *db, const char *job_id, const char *jid,
    int64_t since_ms, char **text)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*text = NULL;
	if (sqlite3_prepare_v2(db, "SELECT answer FROM fleet_cancel_answers WHERE "
	    "job_id = ? AND jid = ? AND received_ms >= ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, since_ms) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *s = sqlite3_column_text(st, 0);

		rc = s != NULL && (*text = strdup((const char *)s)) != NULL ? 1 : -1;
	} else
		rc = rc == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

int
mw_jobtable_unsent(sqlite3 *db, const char *job_id, const char *jid,
    const char *why, int64_t now_ms)
{
	sqlite3_stmt *st = NULL;
	int64_t seq;
	int rc = -1;

	if (!sqlite3_get_autocommit(db) || exec_sql(db, "BEGIN IMMEDIATE") != 0)
		return -1;
	if (next_seq(db, &seq) == 0 &&
	    (st = mw_stmt_get(&cache, db, T_UNSENT)) != NULL &&
	    sqlite3_bind_text(st, 1, why, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, now_ms) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, seq) == SQLITE_OK &&
	    sqlite3_bind_text(st, 4, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 5, jid, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = 0;
	mw_stmt_done(st);
	if (rc == 0 && exec_sql(db, "COMMIT") == 0)
		return 0;
	(void)exec_sql(db, "ROLLBACK");
	return -1;
}

int
mw_jobtable_seen(sqlite3 *db, const char *job_id, const char *jid,
    enum mw_fleet_seen seen, int64_t sent_ms)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if ((st = mw_stmt_get(&cache, db, T_SEEN)) != NULL &&
	    sqlite3_bind_int(st, 1, (int)seen) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, sent_ms) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, sent_ms) == SQLITE_OK &&
	    sqlite3_bind_text(st, 4, job_id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_text(st, 5, jid, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE)
		rc = 0;
	mw_stmt_done(st);
	return rc;
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return sqlite3_column_type(st, i) == SQLITE_NULL || t == NULL ? NULL :
	    strdup((const char *)t);
}

/* A row of SELECT jid, state, seen, sent_ms, done_ms, status, detail,
 * result, seq. */
static int
read_row(sqlite3_stmt *st, struct mw_fleet_row *r)
{
	int state = sqlite3_column_int(st, 1), seen = sqlite3_column_int(st, 2);

	memset(r, 0, sizeof(*r));
	r->state = state == MW_FLEET_RESULT ? MW_FLEET_RESULT :
	    state == MW_FLEET_UNSENT ? MW_FLEET_UNSENT : MW_FLEET_PENDING;
	r->seen = seen >= MW_FLEET_SEEN_RUNNING ? MW_FLEET_SEEN_RUNNING :
	    seen == MW_FLEET_SEEN_ONLINE ? MW_FLEET_SEEN_ONLINE : MW_FLEET_SEEN_NOTHING;
	r->sent_ms = sqlite3_column_int64(st, 3);
	r->done_ms = sqlite3_column_int64(st, 4);
	r->seq = sqlite3_column_int64(st, 8);
	r->jid = col_dup(st, 0);
	r->status = col_dup(st, 5);
	r->detail = col_dup(st, 6);
	r->result = col_dup(st, 7);
	if (r->jid == NULL || (r->state == MW_FLEET_RESULT &&
	    (r->result == NULL || r->status == NULL))) {
		mw_fleet_row_free(r);
		return -1;
	}
	return 0;
}

int
mw_jobtable_rows(sqlite3 *db, const char *job_id, struct mw_fleet_row **rows,
    size_t *n)
{
	sqlite3_stmt *st = NULL;
	struct mw_fleet_row *v = NULL;
	size_t cap = 0, k = 0;
	int rc;

	*rows = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM fleet_targets WHERE "
	    "job_id = ? ORDER BY idx", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
		goto fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct mw_fleet_row *nv = realloc(v, ncap * sizeof(*v));

			if (nv == NULL)
				goto fail;
			v = nv;
			cap = ncap;
		}
		if (read_row(st, &v[k]) != 0)
			goto fail;
		k++;
	}
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	*rows = v;
	*n = k;
	return 0;
fail:
	sqlite3_finalize(st);
	mw_fleet_rows_free(v, k);
	return -1;
}

int
mw_jobtable_changes(sqlite3 *db, const char *job_id, int64_t after,
    int (*cb)(void *arg, const struct mw_fleet_row *r), void *arg, int64_t *last)
{
	sqlite3_stmt *st = mw_stmt_get(&cache, db, T_CHANGES);
	int rc;

	*last = after;
	if (st == NULL ||
	    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, after) != SQLITE_OK) {
		mw_stmt_done(st);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct mw_fleet_row r;
		int stop;

		if (read_row(st, &r) != 0) {
			mw_stmt_done(st);
			return -1;
		}
		*last = r.seq;
		stop = cb(arg, &r);
		mw_fleet_row_free(&r);
		if (stop != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	mw_stmt_done(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Counts of one job: SELECT created_ms, envelope_sha256, targeted, ok,
 * refused, pending, job_id (failed = the rest). */
#define JOB_COLUMNS "j.created_ms, j.envelope_sha256, " \
	"(SELECT COUNT(*) FROM fleet_targets t WHERE t.job_id = j.job_id), " \
	"(SELECT COUNT(*) FROM fleet_targets t WHERE t.job_id = j.job_id AND t.state = 2 AND t.status = 'ok'), " \
	"(SELECT COUNT(*) FROM fleet_targets t WHERE t.job_id = j.job_id AND t.state = 2 AND t.status = 'refused'), " \
	"(SELECT COUNT(*) FROM fleet_targets t WHERE t.job_id = j.job_id AND t.state = 0), " \
	"j.job_id"

static void
read_job(sqlite3_stmt *st, struct mw_fleet_job_info *info)
{
	const void *h = sqlite3_column_blob(st, 1);
	const unsigned char *id = sqlite3_column_text(st, 6);

	memset(info, 0, sizeof(*info));
	info->created_ms = sqlite3_column_int64(st, 0);
	if (h != NULL && sqlite3_column_bytes(st, 1) == 32)
		memcpy(info->envelope_sha256, h, 32);
	info->targeted = (size_t)sqlite3_column_int64(st, 2);
	info->ok = (size_t)sqlite3_column_int64(st, 3);
	info->refused = (size_t)sqlite3_column_int64(st, 4);
	info->pending = (size_t)sqlite3_column_int64(st, 5);
	info->failed = info->targeted - info->ok - info->refused - info->pending;
	snprintf(info->job_id, sizeof(info->job_id), "%s", id ? (const char *)id : "");
}

int
mw_jobtable_job(sqlite3 *db, const char *job_id, struct mw_fleet_job_info *info)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT " JOB_COLUMNS " FROM fleet_jobs j WHERE "
	    "j.job_id = ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		read_job(st, info);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
mw_jobtable_list(sqlite3 *db, size_t max, struct mw_fleet_job_info **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	struct mw_fleet_job_info *v;
	size_t k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (max == 0)
		return 0;
	if ((v = calloc(max, sizeof(*v))) == NULL)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT " JOB_COLUMNS " FROM fleet_jobs j ORDER BY "
	    "j.created_ms DESC, j.rowid DESC LIMIT ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, (int64_t)max) != SQLITE_OK) {
		sqlite3_finalize(st);
		free(v);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && k < max)
		read_job(st, &v[k++]);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		free(v);
		return -1;
	}
	*out = v;
	*n = k;
	return 0;
}

int
mw_jobtable_prune(sqlite3 *db, int64_t cutoff_ms)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (!sqlite3_get_autocommit(db) || exec_sql(db, "BEGIN IMMEDIATE") != 0)
		return -1;
	/* the job's rows in every table that refers to it, then the job */
	for (int k = 0; k < 2; k++) {
		if (sqlite3_prepare_v2(db, k == 0 ? "DELETE FROM fleet_targets WHERE job_id "
		    "IN (SELECT job_id FROM fleet_jobs WHERE created_ms < ?)" :
		    "DELETE FROM fleet_cancel_answers WHERE job_id IN (SELECT job_id FROM "
		    "fleet_jobs WHERE created_ms < ?)", -1, &st, NULL) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 1, cutoff_ms) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_DONE)
			goto fail;
		sqlite3_finalize(st);
		st = NULL;
	}
	if (sqlite3_prepare_v2(db, "DELETE FROM fleet_jobs WHERE created_ms < ?", -1,
	    &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, cutoff_ms) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	n = sqlite3_changes(db);
	sqlite3_finalize(st);
	if (exec_sql(db, "COMMIT") != 0) {
		(void)exec_sql(db, "ROLLBACK");
		return -1;
	}
	return n;
fail:
	sqlite3_finalize(st);
	(void)exec_sql(db, "ROLLBACK");
	return -1;
}

int
mw_fleet_retention_days(const char *config, char *err, size_t errlen)
{
	char *v = mw_config_value(config, "job_retention_days"), *end;
	long d;

	if (v == NULL)
		return MW_FLEET_RETENTION_DEFAULT_DAYS;
	errno = 0;
	d = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || d < 0 ||
	    d > MW_FLEET_RETENTION_MAX_DAYS) {
		snprintf(err, errlen, "%s: job_retention_days must be 0 (keep) to %d days, "
		    "not '%s'", config, MW_FLEET_RETENTION_MAX_DAYS, v);
		free(v);
		return -1;
	}
	free(v);
	return (int)d;
}
