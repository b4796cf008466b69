/*
 * test_cancel.c: unit tests for the signed cancellation
 * (runtime/job/cancel.c) and its journal record (runtime/agent/journal.c).
 *
 * Why this exists: a cancellation stops work on a device, so a job's
 * signature must never pass for one (nor the reverse), a changed byte must
 * break it, its validity must be enforced like a job's, only a current job
 * signer may make one, and once journaled it must outlive a restart.  The
 * keys are the committed vectors of tests/unit/data/signing/; no network,
 * no ssh-keygen.
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
#include <sqlite3.h>

#include "runtime/agent/agent.h"
#include "runtime/job/job.h"
#include "runtime/result/result.h"

#define AUD	"agent@example.org"
#define T0	1893456000	/* 2030-01-01T00:00:00Z */

static char datadir[PATH_MAX];

static const char *
data_path(const char *name)
{
	static char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s%s", datadir, name);
	return p;
}

static char *
slurp(const char *name)
{
	FILE *f = fopen(data_path(name), "rb");
	assert_non_null(f);
	char *buf = calloc(1, 1 << 16);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static struct mw_ssh_signer *
signer(const char *name)
{
	struct mw_ssh_signer *s = NULL;
	char err[256];
	assert_int_equal(mw_ssh_signer_load(data_path(name), &s, err, sizeof(err)), 0);
	return s;
}

/* allowed_signers naming the test key, with an options field */
static struct mw_allowed_signers *
signers(const char *options)
{
	char *pub = slurp("signer.pub"), text[1024], err[256];
	struct mw_allowed_signers *a = NULL;
	char *nl = strchr(pub, '\n');
	if (nl != NULL)
		*nl = '\0';
	snprintf(text, sizeof(text), "alice@ops %s%s%s\n", options, options[0] ? " " : "", pub);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err,
	    sizeof(err)), 0);
	free(pub);
	return a;
}

/* The cancellation of job-7 for AUD, valid for 5 minutes from T0. */
static char *
good_cancel(size_t *len)
{
	struct mw_ssh_signer *s = signer("signer");
	char *text = NULL, err[256];
	assert_int_equal(mw_cancel_sign(s, AUD, "job-7", T0, T0 + 300, &text, len, err,
	    sizeof(err)), 0);
	mw_ssh_signer_free(s);
	return text;
}

static int
parse_verify(const char *text, size_t len, struct mw_allowed_signers *a, int64_t now)
{
	struct mw_cancel c;
	struct mw_ssh_pubkey k;
	const char *pr;
	char err[256];
	int r = mw_cancel_parse(text, len, &c, err, sizeof(err));
	if (r == 0)
		r = mw_cancel_verify(&c, a, now, &k, &pr, err, sizeof(err));
	if (r == 0)
		r = mw_cancel_check_time(&c, now, MW_CLOCK_SKEW, 3600, err, sizeof(err));
	mw_cancel_free(&c);
	return r;
}

static void
test_cancel_round_trip(void **state)
{
	(void)state;
	size_t len;
	char *text = good_cancel(&len);
	struct mw_allowed_signers *a = signers("namespaces=\"moonwire-job\"");
	struct mw_cancel c;
	struct mw_ssh_pubkey k;
	const char *pr;
	char err[256];

	assert_true(mw_cancel_is(text, len));
	assert_int_equal(strncmp(text, MW_CANCEL_MAGIC "\naudience: " AUD "\njob-id: job-7\n"
	    "issued-at: 2030-01-01T00:00:00Z\nnot-after: 2030-01-01T00:05:00Z\n\n"
	    "-----BEGIN SSH SIGNATURE-----\n", 146), 0);
	assert_int_equal(mw_cancel_parse(text, len, &c, err, sizeof(err)), 0);
	assert_string_equal(c.audience, AUD);
	assert_string_equal(c.job_id, "job-7");
	assert_int_equal(c.issued_at, T0);
	assert_int_equal(c.not_after, T0 + 300);
	assert_int_equal(mw_cancel_verify(&c, a, T0 + 10, &k, &pr, err, sizeof(err)), 0);
	assert_string_equal(pr, "alice@ops");
	char *fp = slurp("signer.fp");
	assert_int_equal(strncmp(k.fp, fp, strlen(k.fp)), 0);
	free(fp);
	mw_cancel_free(&c);
	/* trailing blanks a transport adds change nothing, not even the hash */
	struct mw_cancel c2;
	char *padded = malloc(len + 4);
	memcpy(padded, text, len);
	memcpy(padded + len, " \n\t", 4);
	assert_int_equal(mw_cancel_parse(text, len, &c, err, sizeof(err)), 0);
	assert_int_equal(mw_cancel_parse(padded, len + 3, &c2, err, sizeof(err)), 0);
	assert_memory_equal(c.sha256, c2.sha256, 32);
	mw_cancel_free(&c);
	mw_cancel_free(&c2);
	free(padded);
	mw_allowed_signers_free(a);
	free(text);
}

/* A job's signature is never a cancellation's, in either direction. */
static void
test_cancel_namespaces(void **state)
{
	(void)state;
	size_t len, plen, alen, elen;
	char *text = good_cancel(&len), *part = NULL, *armored = NULL, *env = NULL, err[256];
	struct mw_ssh_signer *s = signer("signer");
	struct mw_allowed_signers *a = signers("");
	char forged[8192];
	const char *armor_at = strstr(text, "-----BEGIN SSH SIGNATURE-----");
	size_t hlen = (size_t)(armor_at - text);	/* header + the empty line */

	/* the cancellation header signed in the job namespace */
	assert_int_equal(mw_cancel_build(AUD, "job-7", T0, T0 + 300, &part, &plen, err,
	    sizeof(err)), 0);
	assert_int_equal(mw_sshsig_sign(s, MW_JOB_NAMESPACE, (const uint8_t *)part, plen,
	    &armored, &alen, err, sizeof(err)), 0);
	snprintf(forged, sizeof(forged), "%s\n%s", part, armored);
	assert_int_equal(parse_verify(forged, strlen(forged), a, T0), MW_REFUSE_WRONG_NAMESPACE);
	free(part);
	free(armored);

	/* a job envelope's signature under the cancellation header */
	struct mw_envelope_fields f = { .audience = AUD, .job_id = "job-7", .issued_at = T0,
		.not_after = T0 + 300 };
	assert_int_equal(mw_envelope_build(&f, (const uint8_t *)"return 1\n", 9, &part, &plen,
	    NULL, err, sizeof(err)), 0);
	assert_int_equal(mw_sshsig_sign(s, MW_JOB_NAMESPACE, (const uint8_t *)part, plen,
	    &armored, &alen, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_attach(part, plen, armored, alen, &env, &elen, err,
	    sizeof(err)), 0);
	snprintf(forged, sizeof(forged), "%.*s%s", (int)hlen, text,
	    strstr(env, "-----BEGIN SSH SIGNATURE-----"));
	assert_int_equal(parse_verify(forged, strlen(forged), a, T0), MW_REFUSE_WRONG_NAMESPACE);

	/* the cancellation's signature under the job envelope: a job is
	 * checked in its own namespace */
	struct mw_envelope e;
	struct mw_ssh_pubkey k;
	const char *pr;
	snprintf(forged, sizeof(forged), "%.*s\n%s", (int)plen, part, armor_at);
	assert_int_equal(mw_envelope_parse(forged, strlen(forged), &e, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_verify(&e, a, T0, &k, &pr, err, sizeof(err)),
	    MW_REFUSE_WRONG_NAMESPACE);
	mw_envelope_free(&e);
	/* and a cancellation text is no envelope at all */
	assert_int_equal(mw_envelope_parse(text, len, &e, err, sizeof(err)), MW_REFUSE_MALFORMED);
	assert_false(mw_cancel_is(env, elen));

	free(part);
	free(armored);
	free(env);
	mw_ssh_signer_free(s);
	mw_allowed_signers_free(a);
	free(text);
}

static void
test_cancel_time_and_audience(void **state)
{
	(void)state;
	size_t len;
	char *text = good_cancel(&len), err[256];
	struct mw_allowed_signers *a = signers("");
	struct mw_cancel c;

	assert_int_equal(parse_verify(text, len, a, T0 + 300), 0);
	assert_int_equal(parse_verify(text, len, a, T0 + 301), MW_REFUSE_EXPIRED);
	assert_int_equal(parse_verify(text, len, a, T0 - MW_CLOCK_SKEW), 0);
	assert_int_equal(parse_verify(text, len, a, T0 - MW_CLOCK_SKEW - 1),
	    MW_REFUSE_NOT_YET_VALID);
	assert_int_equal(mw_cancel_parse(text, len, &c, err, sizeof(err)), 0);
	assert_int_equal(mw_cancel_check_time(&c, T0, MW_CLOCK_SKEW, 299, err, sizeof(err)),
	    MW_REFUSE_VALIDITY_TOO_LONG);
	mw_cancel_free(&c);

	/* the audience is signed: another agent's name breaks the signature */
	char *other = strdup(text);
	memcpy(strstr(other, "agent@"), "agenT@", 6);
	assert_int_equal(parse_verify(other, len, a, T0), MW_REFUSE_BAD_SIGNATURE);
	free(other);
	/* as is the job id */
	other = strdup(text);
	memcpy(strstr(other, "job-7"), "job-8", 5);
	assert_int_equal(parse_verify(other, len, a, T0), MW_REFUSE_BAD_SIGNATURE);
	free(other);
	mw_allowed_signers_free(a);
	free(text);
}

/* Only a current job signer may cancel. */
static void
test_cancel_signers(void **state)
{
	(void)state;
	size_t len;
	char *text = good_cancel(&len), *other = NULL, err[256];
	struct mw_allowed_signers *a;
	struct mw_ssh_signer *s = signer("other");

	a = signers("namespaces=\"moonwire-cancel\"");	/* no job signer */
	assert_int_equal(parse_verify(text, len, a, T0), MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);
	a = signers("valid-before=\"20291231Z\"");	/* no longer a signer */
	assert_int_equal(parse_verify(text, len, a, T0), MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);
	a = signers("");
	assert_int_equal(mw_cancel_sign(s, AUD, "job-7", T0, T0 + 300, &other, &len, err,
	    sizeof(err)), 0);
	assert_int_equal(parse_verify(other, len, a, T0), MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);
	mw_ssh_signer_free(s);
	free(other);
	free(text);
}

static void
test_cancel_malformed(void **state)
{
	(void)state;
	size_t len;
	char *text = good_cancel(&len), buf[8192], err[256];
	const char *armor = strstr(text, "\n-----BEGIN SSH SIGNATURE-----") + 1;
	struct mw_cancel c;
	static const struct {
		const char *header;
		int code;
	} cases[] = {
		{ "moonwire-cancel 2\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_VERSION },
		{ "moonwire-job 1\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\njob-id: j\naudience: " AUD "\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\naudience: " AUD "/res\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\naudience: " AUD "\njob-id: j k\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\r\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n",
		  MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:05:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\n", MW_REFUSE_MALFORMED },
		{ MW_CANCEL_MAGIC "\naudience: " AUD "\njob-id: j\nissued-at: 2030-01-01T00:00:00Z\n"
		  "not-after: 2030-01-01T00:05:00Z\nlimits: cpu=1s\n", MW_REFUSE_MALFORMED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s\n%s", cases[i].header, armor);
		assert_int_equal(mw_cancel_parse(buf, strlen(buf), &c, err, sizeof(err)),
		    cases[i].code);
		assert_true(err[0] != '\0');
		assert_null(c.sig);	/* zeroed on failure */
	}
	/* no signature, broken armor, text after it, oversized */
	snprintf(buf, sizeof(buf), "%.*s", (int)(armor - text), text);
	assert_int_equal(mw_cancel_parse(buf, strlen(buf), &c, err, sizeof(err)), MW_REFUSE_MALFORMED);
	snprintf(buf, sizeof(buf), "%s", text);
	buf[(size_t)(armor - text) + 40] = '!';
	assert_int_equal(mw_cancel_parse(buf, strlen(buf), &c, err, sizeof(err)),
	    MW_REFUSE_BAD_SIGNATURE);
	snprintf(buf, sizeof(buf), "%sx\n", text);
	assert_int_equal(mw_cancel_parse(buf, strlen(buf), &c, err, sizeof(err)), MW_REFUSE_MALFORMED);
	char *big = calloc(1, MW_CANCEL_MAX + 2);
	memcpy(big, text, len);
	memset(big + len, '\n', MW_CANCEL_MAX + 1 - len);
	assert_int_equal(mw_cancel_parse(big, MW_CANCEL_MAX + 1, &c, err, sizeof(err)),
	    MW_REFUSE_OVERSIZED);
	free(big);
	/* build refuses what parse would refuse */
	char *out = NULL;
	assert_int_not_equal(mw_cancel_build(AUD "/r", "j", T0, T0 + 1, &out, &len, err,
	    sizeof(err)), 0);
	assert_int_not_equal(mw_cancel_build(AUD, "", T0, T0 + 1, &out, &len, err, sizeof(err)), 0);
	assert_int_not_equal(mw_cancel_build(AUD, "j", T0, T0, &out, &len, err, sizeof(err)), 0);
	assert_null(out);
	free(text);
}

/* ---- the journal: unknown job, finished job, and a restart ---- */

static char db_path[] = "/tmp/mw-cancel-XXXXXX";

static sqlite3 *
open_db(void)
{
	char *path = db_path;
	int fd = mkstemp(path);
	sqlite3 *db = NULL;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(mw_journal_init(db), 0);
	return db;
}

static void
accept_row(sqlite3 *db, const char *signer_fp, const char *job_id)
{
	struct mw_journal_entry e;
	memset(&e, 0, sizeof(e));
	e.signer = (char *)signer_fp;
	e.job_id = (char *)job_id;
	e.from_jid = (char *)"alice@example.org";
	e.device = 7;
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(mw_journal_accept(db, &e, T0), 0);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

static void
test_cancel_journal(void **state)
{
	(void)state;
	sqlite3 *db = open_db();
	uint8_t h[32];
	struct mw_journal_entry e;

	memset(h, 0xab, sizeof(h));
	accept_row(db, "SHA256:alice", "running");
	accept_row(db, "SHA256:alice", "finished");
	accept_row(db, "SHA256:alice", "plain");
	assert_int_equal(mw_journal_finish(db, "SHA256:alice", "finished", "r", T0), 0);
	/* unknown job: no row for another signer's key, nor for another id */
	assert_int_equal(mw_journal_lookup(db, "SHA256:bob", "running", &e), 0);
	assert_int_equal(mw_journal_cancel(db, "SHA256:bob", "running", h), -1);
	assert_int_equal(mw_journal_cancel(db, "SHA256:alice", "nope", h), -1);
	/* a finished job is not cancelled */
	assert_int_equal(mw_journal_cancel(db, "SHA256:alice", "finished", h), -1);
	/* a running one is, once */
	assert_int_equal(mw_journal_cancel(db, "SHA256:alice", "running", h), 0);
	assert_int_equal(mw_journal_cancel(db, "SHA256:alice", "running", h), -1);
	assert_int_equal(mw_journal_lookup(db, "SHA256:alice", "running", &e), 1);
	assert_true(e.cancel_requested);
	assert_memory_equal(e.cancel_sha256, h, 32);
	mw_journal_entry_free(&e);
	/* a restart: the cancelled row ends cancelled, the other interrupted */
	assert_int_equal(mw_journal_recover(db, T0 + 1), 2);
	struct mw_result_msg m;
	assert_int_equal(mw_journal_lookup(db, "SHA256:alice", "running", &e), 1);
	assert_int_equal(e.state, MW_JOURNAL_DONE);
	assert_int_equal(mw_result_message_parse(e.result, strlen(e.result), &m), 0);
	assert_string_equal(m.status, "cancelled");
	mw_result_msg_free(&m);
	mw_journal_entry_free(&e);
	assert_int_equal(mw_journal_lookup(db, "SHA256:alice", "plain", &e), 1);
	assert_int_equal(mw_result_message_parse(e.result, strlen(e.result), &m), 0);
	assert_string_equal(m.status, "interrupted");
	mw_result_msg_free(&m);
	mw_journal_entry_free(&e);
	mw_journal_close(db);
	sqlite3_close(db);
	unlink(db_path);
}

/* A journal written before cancellations (version 1) is upgraded in place. */
static void
test_cancel_journal_upgrade(void **state)
{
	(void)state;
	char path[] = "/tmp/mw-cancel-up-XXXXXX";
	int fd = mkstemp(path);
	sqlite3 *db = NULL;
	uint8_t h[32] = { 1 };
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	    "CREATE TABLE mw_schema(component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
	    "INSERT INTO mw_schema VALUES ('journal', 1);"
	    "CREATE TABLE mw_jobs(signer TEXT NOT NULL, job_id TEXT NOT NULL,"
	    " envelope_sha256 BLOB NOT NULL, from_jid TEXT NOT NULL, device INTEGER NOT NULL,"
	    " state INTEGER NOT NULL, result TEXT, replied INTEGER NOT NULL DEFAULT 0,"
	    " received_at INTEGER NOT NULL, finished_at INTEGER, PRIMARY KEY (signer, job_id));"
	    "INSERT INTO mw_jobs(signer, job_id, envelope_sha256, from_jid, device, state,"
	    " received_at) VALUES ('k', 'old', x'00', 'a@b', 1, 0, 1);", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(mw_journal_init(db), 0);
	assert_int_equal(mw_journal_init(db), 0);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 1);
	assert_int_equal(mw_journal_cancel(db, "k", "old", h), 0);
	mw_journal_close(db);
	sqlite3_close(db);
	unlink(path);
}

/* Answers to a cancellation are marked, so they are never a job's result. */
static void
test_cancel_answer_message(void **state)
{
	(void)state;
	struct mw_result_msg m;
	char *t = mw_result_cancel_answer("job-7", MW_REFUSE_ALREADY_FINISHED,
	    "job job-7 already finished with status ok");
	assert_non_null(t);
	assert_int_equal(mw_result_message_parse(t, strlen(t), &m), 0);
	assert_true(m.answer_to_cancel);
	assert_string_equal(m.status, "refused");
	assert_string_equal(m.refusal, "already_finished");
	assert_string_equal(m.job_id, "job-7");
	char *json = mw_result_msg_json(&m, AUD);
	assert_non_null(strstr(json, "\"answer_to\":\"cancel\""));
	free(json);
	mw_result_msg_free(&m);
	free(t);
	t = mw_result_message("job-7", NULL, MW_REFUSE_UNKNOWN_JOB, "no job", 0);
	assert_int_equal(mw_result_message_parse(t, strlen(t), &m), 0);
	assert_false(m.answer_to_cancel);
	assert_string_equal(m.refusal, "unknown_job");
	mw_result_msg_free(&m);
	free(t);
	assert_string_equal(mw_refusal_name(MW_REFUSE_ALREADY_FINISHED), "already_finished");
	assert_int_equal(mw_refusal_from_name("unknown_job"), MW_REFUSE_UNKNOWN_JOB);
	assert_string_equal(mw_job_status_name(MW_JOB_CANCELLED), "cancelled");
}

int
main(void)
{
	snprintf(datadir, sizeof(datadir), "%s", __FILE__);
	char *slash = strrchr(datadir, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		datadir[0] = '\0';
	strncat(datadir, "data/signing/", sizeof(datadir) - strlen(datadir) - 1);
	setenv("TZ", "UTC0", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_round_trip),
		cmocka_unit_test(test_cancel_namespaces),
		cmocka_unit_test(test_cancel_time_and_audience),
		cmocka_unit_test(test_cancel_signers),
		cmocka_unit_test(test_cancel_malformed),
		cmocka_unit_test(test_cancel_journal),
		cmocka_unit_test(test_cancel_journal_upgrade),
		cmocka_unit_test(test_cancel_answer_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
