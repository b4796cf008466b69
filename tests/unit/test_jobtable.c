/*
 * test_jobtable.c: the operator's job table (runtime/fleet/jobtable.c).
 *
 * Why: "nothing returned late is lost" rests on it -- the job is in the
 * database before anything is sent, a result is recorded by job id and
 * JID whichever process decrypts it, and another process sees it by
 * polling.  Each test states one of those promises against a real SQLite
 * database in WAL mode, opened as the CLI opens it (mw_omemo_db_open).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/fleet/fleet.h"

static char tmpdir[PATH_MAX];

static int
setup_dir(void **state)
{
	char tmpl[] = "/tmp/mw-jobtable-XXXXXX";

	(void)state;
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, tmpdir) == NULL)
		return -1;
	return 0;
}

static int
teardown_dir(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static sqlite3 *
open_db(const char *name)
{
	char path[PATH_MAX + 64];
	sqlite3 *db = NULL;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(mw_omemo_db_open(path, true, &db), 0);
	return db;
}

static void
exec_ok(sqlite3 *db, const char *sql)
{
	char *e = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
		fail_msg("%s: %s", sql, e ? e : "?");
}

static int64_t
query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* A version 1 result message (spec/result.md). */
static char *
result_text(const char *job_id, const char *status, const char *output)
{
	static char buf[1024];

	if (strcmp(status, "refused") == 0)
		snprintf(buf, sizeof(buf), "moonwire-result 1\njob-id: %s\nstatus: refused\n"
		    "refusal: unknown_signer\nerror: \"key not in allowed_signers\"\n"
		    "values: []\nusage: cpu_us=0 wall_us=0 instructions=0 memory_peak=0\n"
		    "output-length: 0\noutput-truncated: no\n\n", job_id);
	else
		snprintf(buf, sizeof(buf), "moonwire-result 1\njob-id: %s\nstatus: %s\n"
		    "values: [1]\nusage: cpu_us=10 wall_us=2000 instructions=0 memory_peak=5\n"
		    "output-length: %zu\noutput-truncated: no\n\n%s", job_id, status,
		    strlen(output), output);
	return buf;
}

static const uint8_t HASH[32] = { 1, 2, 3 };
static char *const JIDS[] = { "a@example.org", "b@example.org", "c@example.org" };

/* Records inside a transaction, as the decrypt does. */
static int
record(sqlite3 *db, const char *job, const char *jid, const char *status)
{
	const char *t = result_text(job, status, "hello\n");
	int rc;

	exec_ok(db, "BEGIN IMMEDIATE");
	rc = mw_jobtable_record(db, job, jid, t, strlen(t), 5000);
	exec_ok(db, rc < 0 ? "ROLLBACK" : "COMMIT");
	return rc;
}

static void
test_migration_from_current_schema(void **state)
{
	sqlite3 *db = open_db("migrate.db");
	int omemo_version;
	struct mw_omemo *o = NULL;

	(void)state;
	/* the operator database as it is today: OMEMO identity, no job table */
	assert_int_equal(mw_omemo_open(&o, db, "alice@example.org"), 0);
	mw_omemo_close(o);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE "
	    "name = 'fleet_jobs'"), 0);
	omemo_version = query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'omemo'");
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'fleet'"), 2);
	/* the OMEMO store's own schema is left as it was */
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'omemo'"), omemo_version);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1000, JIDS, 3), 0);
	/* idempotent, keeps the rows; the identity is untouched */
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets"), 3);
	assert_int_equal(mw_omemo_open(&o, db, NULL), 0);
	mw_omemo_close(o);
	/* a schema from a newer moonwire is refused, not downgraded */
	exec_ok(db, "UPDATE mw_schema SET version = 3 WHERE component = 'fleet'");
	assert_int_equal(mw_jobtable_init(db), -1);
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'fleet'"), 3);
	assert_int_equal(sqlite3_get_autocommit(db), 1);	/* no transaction left */
	mw_jobtable_close(db);
	sqlite3_close(db);
}

static void
test_job_durable_before_send(void **state)
{
	sqlite3 *db = open_db("durable.db"), *other;
	struct mw_fleet_row *rows = NULL;
	struct mw_fleet_job_info info;
	size_t n = 0;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1234, JIDS, 3), 0);
	/* committed when it returns: another connection (another process)
	 * sees the job and its targets, in order, all pending */
	other = open_db("durable.db");
	assert_int_equal(mw_jobtable_job(other, "job1", &info), 1);
	assert_string_equal(info.job_id, "job1");
	assert_int_equal(info.created_ms, 1234);
	assert_memory_equal(info.envelope_sha256, HASH, 32);
	assert_int_equal(info.targeted, 3);
	assert_int_equal(info.pending, 3);
	assert_int_equal(mw_jobtable_rows(other, "job1", &rows, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(rows[i].jid, JIDS[i]);
		assert_int_equal(rows[i].state, MW_FLEET_PENDING);
		assert_null(rows[i].result);
	}
	mw_fleet_rows_free(rows, n);
	/* the same job sent again: rows kept, a new target appended */
	{
		char *again[] = { "d@example.org" };

		assert_int_equal(mw_jobtable_create(db, "job1", HASH, 9999, again, 1), 0);
	}
	assert_int_equal(mw_jobtable_rows(other, "job1", &rows, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(rows[3].jid, "d@example.org");
	mw_fleet_rows_free(rows, n);
	assert_int_equal(mw_jobtable_job(other, "job1", &info), 1);
	assert_int_equal(info.created_ms, 1234);
	/* refused inside someone else's transaction: nothing half-written */
	exec_ok(db, "BEGIN");
	assert_int_equal(mw_jobtable_create(db, "job2", HASH, 1, JIDS, 3), -1);
	exec_ok(db, "ROLLBACK");
	assert_int_equal(mw_jobtable_job(other, "job2", &info), 0);
	mw_jobtable_close(other);
	sqlite3_close(other);
	mw_jobtable_close(db);
	sqlite3_close(db);
}

struct seen_changes {
	size_t n;
	char jids[8][32];
	int64_t seqs[8];
};

static int
collect_change(void *arg, const struct mw_fleet_row *r)
{
	struct seen_changes *c = arg;

	if (c->n < 8) {
		snprintf(c->jids[c->n], sizeof(c->jids[0]), "%s", r->jid);
		c->seqs[c->n] = r->seq;
	}
	c->n++;
	return 0;
}

static void
test_result_recorded_by_job_id(void **state)
{
	sqlite3 *db = open_db("record.db"), *waiter;
	struct mw_fleet_row *rows = NULL;
	struct seen_changes c;
	struct mw_fleet_job_info info;
	int64_t last = 0;
	size_t n = 0;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1000, JIDS, 3), 0);
	assert_int_equal(mw_jobtable_create(db, "job2", HASH, 1001, JIDS, 2), 0);
	/* the waiting process polls from seq 0 */
	waiter = open_db("record.db");
	memset(&c, 0, sizeof(c));
	assert_int_equal(mw_jobtable_changes(waiter, "job1", 0, collect_change, &c, &last), 0);
	assert_int_equal(c.n, 0);
	/* this process (which did not start job1) decrypts b's result */
	assert_int_equal(record(db, "job1", "b@example.org", "ok"), 1);
	assert_int_equal(record(db, "job2", "a@example.org", "error"), 1);
	assert_int_equal(record(db, "job1", "c@example.org", "refused"), 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mw_jobtable_changes(waiter, "job1", 0, collect_change, &c, &last), 0);
	assert_int_equal(c.n, 2);	/* job2's row is not job1's */
	assert_string_equal(c.jids[0], "b@example.org");
	assert_string_equal(c.jids[1], "c@example.org");
	assert_true(c.seqs[0] < c.seqs[1]);
	assert_int_equal(last, c.seqs[1]);
	/* polling again from there: nothing new */
	memset(&c, 0, sizeof(c));
	assert_int_equal(mw_jobtable_changes(waiter, "job1", last, collect_change, &c, &last), 0);
	assert_int_equal(c.n, 0);
	/* a duplicate delivery keeps the first result */
	assert_int_equal(record(db, "job1", "b@example.org", "error"), 2);
	assert_int_equal(mw_jobtable_rows(waiter, "job1", &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(rows[0].state, MW_FLEET_PENDING);
	assert_int_equal(rows[1].state, MW_FLEET_RESULT);
	assert_string_equal(rows[1].status, "ok");
	assert_non_null(strstr(rows[1].result, "job-id: job1\nstatus: ok\n"));
	assert_int_equal(rows[1].done_ms, 5000);
	assert_string_equal(rows[2].status, "refused");
	mw_fleet_rows_free(rows, n);
	assert_int_equal(mw_jobtable_job(waiter, "job1", &info), 1);
	assert_int_equal(info.ok, 1);
	assert_int_equal(info.refused, 1);
	assert_int_equal(info.failed, 0);
	assert_int_equal(info.pending, 1);
	assert_int_equal(mw_jobtable_job(waiter, "job2", &info), 1);
	assert_int_equal(info.failed, 1);
	/* rolled back with the ratchet: as if it never came */
	exec_ok(db, "BEGIN IMMEDIATE");
	{
		const char *t = result_text("job1", "ok", "");
		assert_int_equal(mw_jobtable_record(db, "job1", "a@example.org", t,
		    strlen(t), 6000), 1);
	}
	exec_ok(db, "ROLLBACK");
	assert_int_equal(mw_jobtable_job(waiter, "job1", &info), 1);
	assert_int_equal(info.pending, 1);
	/* a send that failed: its own state and reason, seen by the poller */
	assert_int_equal(mw_jobtable_unsent(db, "job1", "a@example.org",
	    "no trusted device", 7000), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mw_jobtable_changes(waiter, "job1", last, collect_change, &c, &last), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(mw_jobtable_rows(waiter, "job1", &rows, &n), 0);
	assert_int_equal(rows[0].state, MW_FLEET_UNSENT);
	assert_string_equal(rows[0].detail, "no trusted device");
	mw_fleet_rows_free(rows, n);
	/* the same envelope sent again to a and b (after `moonwire trust`):
	 * both wait for the new answers, c keeps its result */
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 8000, JIDS, 2), 0);
	assert_int_equal(mw_jobtable_rows(waiter, "job1", &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(rows[0].state, MW_FLEET_PENDING);
	assert_null(rows[0].detail);
	assert_int_equal(rows[1].state, MW_FLEET_PENDING);
	assert_null(rows[1].result);
	assert_int_equal(rows[2].state, MW_FLEET_RESULT);
	assert_string_equal(rows[2].status, "refused");
	mw_fleet_rows_free(rows, n);
	assert_int_equal(record(db, "job1", "b@example.org", "ok"), 1);
	mw_jobtable_close(waiter);
	sqlite3_close(waiter);
	mw_jobtable_close(db);
	sqlite3_close(db);
}

static void
test_unknown_job_id(void **state)
{
	sqlite3 *db = open_db("unknown.db");
	struct mw_fleet_row *rows = NULL;
	struct mw_fleet_job_info info;
	size_t n = 7;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1000, JIDS, 1), 0);
	/* nothing is written for a job or a JID the table does not have */
	assert_int_equal(record(db, "nosuchjob", "a@example.org", "ok"), 0);
	assert_int_equal(record(db, "job1", "b@example.org", "ok"), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets"), 1);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets WHERE "
	    "state != 0"), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_jobs"), 1);
	assert_int_equal(mw_jobtable_job(db, "nosuchjob", &info), 0);
	assert_int_equal(mw_jobtable_rows(db, "nosuchjob", &rows, &n), 0);
	assert_int_equal(n, 0);
	free(rows);
	assert_int_equal(mw_jobtable_unsent(db, "nosuchjob", "a@example.org", "x", 1), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets WHERE "
	    "state != 0"), 0);
	mw_jobtable_close(db);
	sqlite3_close(db);
}

static void
test_retention_pruning(void **state)
{
	sqlite3 *db = open_db("prune.db");
	struct mw_fleet_job_info *v = NULL, info;
	size_t n = 0;
	char conf[PATH_MAX + 64], err[256];
	FILE *f;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "old", HASH, 1000, JIDS, 3), 0);
	assert_int_equal(mw_jobtable_create(db, "mid", HASH, 2000, JIDS, 2), 0);
	assert_int_equal(mw_jobtable_create(db, "new", HASH, 3000, JIDS, 1), 0);
	assert_int_equal(record(db, "old", "a@example.org", "ok"), 1);
	/* newest first, at most max */
	assert_int_equal(mw_jobtable_list(db, 2, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].job_id, "new");
	assert_string_equal(v[1].job_id, "mid");
	free(v);
	/* jobs created before the cutoff go, with their rows */
	assert_int_equal(mw_jobtable_prune(db, 2000), 1);
	assert_int_equal(mw_jobtable_job(db, "old", &info), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets WHERE "
	    "job_id = 'old'"), 0);
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_targets"), 3);
	assert_int_equal(mw_jobtable_prune(db, 2000), 0);
	/* a late result of a pruned job is not recorded (and does not bring it back) */
	assert_int_equal(record(db, "old", "a@example.org", "ok"), 0);
	assert_int_equal(mw_jobtable_list(db, 10, &v, &n), 0);
	assert_int_equal(n, 2);
	free(v);
	mw_jobtable_close(db);
	sqlite3_close(db);

	/* job_retention_days in the account file */
	snprintf(conf, sizeof(conf), "%s/alice.conf", tmpdir);
	assert_non_null(f = fopen(conf, "w"));
	fputs("jid = alice@example.org\n", f);
	fclose(f);
	assert_int_equal(mw_fleet_retention_days(conf, err, sizeof(err)),
	    MW_FLEET_RETENTION_DEFAULT_DAYS);
	assert_non_null(f = fopen(conf, "a"));
	fputs("job_retention_days = 7\n", f);
	fclose(f);
	assert_int_equal(mw_fleet_retention_days(conf, err, sizeof(err)), 7);
	assert_non_null(f = fopen(conf, "w"));
	fputs("job_retention_days = 0\n", f);
	fclose(f);
	assert_int_equal(mw_fleet_retention_days(conf, err, sizeof(err)), 0);
	assert_non_null(f = fopen(conf, "w"));
	fputs("job_retention_days = 2w\n", f);
	fclose(f);
	assert_int_equal(mw_fleet_retention_days(conf, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "job_retention_days"));
	assert_non_null(f = fopen(conf, "w"));
	fputs("job_retention_days = -1\n", f);
	fclose(f);
	assert_int_equal(mw_fleet_retention_days(conf, err, sizeof(err)), -1);
}

static void
test_seen_and_sent_times(void **state)
{
	sqlite3 *db = open_db("seen.db");
	struct mw_fleet_row *rows = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1000, JIDS, 2), 0);
	assert_int_equal(mw_jobtable_seen(db, "job1", "a@example.org",
	    MW_FLEET_SEEN_RUNNING, 1500), 0);
	assert_int_equal(mw_jobtable_seen(db, "job1", "b@example.org",
	    MW_FLEET_SEEN_ONLINE, 1600), 0);
	/* 0 keeps the sent time; what was seen is the latest view */
	assert_int_equal(mw_jobtable_seen(db, "job1", "b@example.org",
	    MW_FLEET_SEEN_NOTHING, 0), 0);
	assert_int_equal(mw_jobtable_rows(db, "job1", &rows, &n), 0);
	assert_int_equal(rows[0].seen, MW_FLEET_SEEN_RUNNING);
	assert_int_equal(rows[0].sent_ms, 1500);
	assert_int_equal(rows[1].seen, MW_FLEET_SEEN_NOTHING);
	assert_int_equal(rows[1].sent_ms, 1600);
	/* not a change a poller needs: seq stays */
	assert_int_equal(rows[0].seq, 0);
	mw_fleet_rows_free(rows, n);
	mw_jobtable_close(db);
	sqlite3_close(db);
}

static void
test_fleet_load_keep_find(void **state)
{
	struct mw_omemo_account acct;
	struct mw_fleet f;
	char conf[PATH_MAX + 64], db[PATH_MAX + 64];
	char *big[1000], *some[3];
	FILE *cf;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/op.conf", tmpdir);
	snprintf(db, sizeof(db), "%s/op.db", tmpdir);
	assert_non_null(cf = fopen(conf, "w"));
	fprintf(cf, "jid = op@example.org\ndb = %s\n", db);
	fclose(cf);
	memset(&acct, 0, sizeof(acct));
	acct.jid = "op@example.org";
	acct.db = db;
	memset(&f, 0, sizeof(f));
	/* the job table of a new account, as `send` opens it */
	assert_int_equal(mw_fleet_open(&f, "send", conf, &acct), 0);
	for (size_t i = 0; i < 1000; i++)
		assert_true(asprintf(&big[i], "agent%04zu@example.org", 999 - i) > 0);
	assert_int_equal(mw_jobtable_create(f.db, "fleetjob", HASH, 1, big, 1000), 0);
	snprintf(f.job_id, sizeof(f.job_id), "fleetjob");
	assert_int_equal(mw_fleet_load(&f), 0);
	assert_int_equal(f.nt, 1000);
	assert_int_equal(f.remaining, 1000);
	assert_string_equal(f.rows[0].jid, "agent0999@example.org");	/* target order */
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(mw_fleet_find(&f, big[i]), (ssize_t)i);
	assert_int_equal(mw_fleet_find(&f, "agent0999@example.or"), -1);
	assert_int_equal(mw_fleet_find(&f, "nobody@example.org"), -1);
	/* some of the targets (a command with --to), in target order */
	some[0] = big[10];
	some[1] = big[3];
	some[2] = "nobody@example.org";
	assert_int_equal(mw_fleet_keep(&f, some, 3), 0);
	assert_int_equal(f.nt, 2);
	assert_int_equal(f.remaining, 2);
	assert_string_equal(f.rows[0].jid, big[3]);
	assert_string_equal(f.rows[1].jid, big[10]);
	assert_int_equal(mw_fleet_find(&f, big[10]), 1);
	assert_int_equal(mw_fleet_find(&f, big[4]), -1);
	mw_fleet_close(&f);
	for (size_t i = 0; i < 1000; i++)
		free(big[i]);
}

/* An answer to a cancellation is kept apart from the job's result: the
 * row stays pending, the answer is found for that target only, and only
 * when it came after the cancel started. */
static void
test_cancel_answers_apart(void **state)
{
	sqlite3 *db = open_db("cancel.db");
	char *text = NULL;

	(void)state;
	assert_int_equal(mw_jobtable_init(db), 0);
	assert_int_equal(mw_jobtable_create(db, "job1", HASH, 1000, JIDS, 3), 0);
	assert_int_equal(mw_jobtable_cancel_answer(db, "job1", JIDS[1], "answer", 6, 5000), 1);
	assert_int_equal(mw_jobtable_cancel_answer(db, "job1", "nobody@example.org",
	    "answer", 6, 5000), 0);
	assert_int_equal(mw_jobtable_cancel_answer(db, "nojob", JIDS[1], "answer", 6, 5000), 0);
	assert_int_equal(query_int(db, "SELECT state FROM fleet_targets WHERE jid = 'b@example.org'"),
	    MW_FLEET_PENDING);
	assert_int_equal(mw_jobtable_cancel_answer_get(db, "job1", JIDS[1], 4000, &text), 1);
	assert_string_equal(text, "answer");
	free(text);
	assert_int_equal(mw_jobtable_cancel_answer_get(db, "job1", JIDS[1], 6000, &text), 0);
	assert_null(text);
	assert_int_equal(mw_jobtable_cancel_answer_get(db, "job1", JIDS[0], 0, &text), 0);
	/* pruning the job takes its answers too */
	assert_int_equal(mw_jobtable_prune(db, 2000), 1);	/* one job */
	assert_int_equal(query_int(db, "SELECT COUNT(*) FROM fleet_cancel_answers"), 0);
	mw_jobtable_close(db);
	sqlite3_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migration_from_current_schema),
		cmocka_unit_test(test_job_durable_before_send),
		cmocka_unit_test(test_result_recorded_by_job_id),
		cmocka_unit_test(test_unknown_job_id),
		cmocka_unit_test(test_retention_pruning),
		cmocka_unit_test(test_seen_and_sent_times),
		cmocka_unit_test(test_fleet_load_keep_find),
		cmocka_unit_test(test_cancel_answers_apart),
	};

	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
