/*
 * fleetconn.c: the operator's side of a fleet job around its connection --
 * open the identity database and the job table, load and index the job's
 * rows, wait on them (what any process of the account records lands
 * there), write what was seen, close.  The connection itself (sending
 * each target its envelope, decrypting what comes back into the job
 * table) is fleetsend.c.
 *
 * Why results go through the table and not straight to the screen: every
 * `moonwire` process of an operator account shares one OMEMO device and
 * its ratchet, and the server hands a reply to whichever of them is
 * connected (to all of them; the first to decrypt advances the ratchet, the
 * others then see a duplicate).  So the process that decrypts a result
 * records it by job id, in the decrypt's own transaction, and each waiting
 * process shows what lands in its rows: two `send` at once both get their
 * results, a result for a job whose `send` is gone is kept for `moonwire
 * results`, and nothing is shown before it is durable.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/fleet/fleet.h"

#define POLL_MS		200	/* other processes' records: looked for this often */
#define BARRIER_MAX_MS	30000	/* collect: the server answers our ping by then */

static volatile sig_atomic_t fleet_stop;

static void
on_stop_signal(int sig)
{
	(void)sig;
	fleet_stop = 1;
}

uint64_t
mw_fleet_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
mw_fleet_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- opening ---- */

int
mw_fleet_open(struct mw_fleet *f, const char *cmd, const char *config,
    struct mw_omemo_account *acct)
{
	char err[512];
	int days;

	f->cmd = cmd;
	f->config = config;
	f->acct = acct;
	f->progress.tty = isatty(STDERR_FILENO) == 1;
	if ((days = mw_fleet_retention_days(config, err, sizeof(err))) < 0) {
		fprintf(stderr, "moonwire %s: %s\n", cmd, err);
		return -1;
	}
	if (acct->db == NULL) {
		fprintf(stderr, "moonwire %s: %s: no `db` setting\n", cmd, config);
		return -1;
	}
	if (mw_omemo_account_private_db(acct->db, true, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire %s: %s\n", cmd, err);
		return -1;
	}
	if (mw_omemo_db_open(acct->db, true, &f->db) != 0 ||
	    mw_omemo_open(&f->o, f->db, acct->jid) != 0) {
		fprintf(stderr, "moonwire %s: %s: cannot open the identity database\n", cmd,
		    acct->db);
		return -1;
	}
	if (mw_jobtable_init(f->db) != 0) {
		fprintf(stderr, "moonwire %s: %s: cannot create or read the job table "
		    "(%s)\n", cmd, acct->db, sqlite3_errmsg(f->db));
		return -1;
	}
	if (days > 0 && mw_jobtable_prune(f->db, mw_fleet_wall_ms() -
	    (int64_t)days * 86400 * 1000) < 0)
		fprintf(stderr, "moonwire %s: %s: pruning old jobs failed (%s)\n", cmd,
		    acct->db, sqlite3_errmsg(f->db));
	return 0;
}

static int
by_jid_cmp(const void *a, const void *b, void *arg)
{
	const struct mw_fleet *f = arg;

	return strcmp(f->rows[*(const size_t *)a].jid, f->rows[*(const size_t *)b].jid);
}

static int
build_index(struct mw_fleet *f)
{
	free(f->by_jid);
	if ((f->by_jid = calloc(f->nt ? f->nt : 1, sizeof(*f->by_jid))) == NULL)
		return -1;
	for (size_t i = 0; i < f->nt; i++)
		f->by_jid[i] = i;
	qsort_r(f->by_jid, f->nt, sizeof(*f->by_jid), by_jid_cmp, f);
	f->remaining = 0;
	for (size_t i = 0; i < f->nt; i++) {
		f->t[i].fleet = f;
		if (f->rows[i].state == MW_FLEET_PENDING)
			f->remaining++;
	}
	return 0;
}

int
mw_fleet_load(struct mw_fleet *f)
{
	struct mw_fleet_row *rows = NULL;
	size_t n = 0;

	if (mw_jobtable_rows(f->db, f->job_id, &rows, &n) != 0 ||
	    (f->t = calloc(n ? n : 1, sizeof(*f->t))) == NULL) {
		fprintf(stderr, "moonwire %s: %s: cannot read job %s\n", f->cmd,
		    f->acct->db, f->job_id);
		mw_fleet_rows_free(rows, n);
		return -1;
	}
	f->rows = rows;
	f->nt = n;
	for (size_t i = 0; i < n; i++)
		if (rows[i].seq > f->seq)
			f->seq = rows[i].seq;
	if (build_index(f) != 0) {
		fprintf(stderr, "moonwire %s: out of memory\n", f->cmd);
		return -1;
	}
	return 0;
}

/* The target whose JID is the bare part of from (n bytes), or -1. */
static ssize_t
find(const struct mw_fleet *f, const char *from, size_t n)
{
	size_t lo = 0, hi = f->nt;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *jid = f->rows[f->by_jid[mid]].jid;
		int c = strncmp(jid, from, n);

		if (c == 0)
			c = jid[n] == '\0' ? 0 : 1;
		if (c == 0)
			return (ssize_t)f->by_jid[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

ssize_t
mw_fleet_find(const struct mw_fleet *f, const char *jid)
{
	return find(f, jid, strlen(jid));
}

ssize_t
mw_fleet_find_from(const struct mw_fleet *f, const char *from)
{
	return from == NULL ? -1 : find(f, from, strcspn(from, "/"));
}

int
mw_fleet_keep(struct mw_fleet *f, char *const *jids, size_t n)
{
	bool *keep = calloc(f->nt ? f->nt : 1, sizeof(*keep));
	size_t k = 0;

	if (keep == NULL)
		return -1;
	for (size_t j = 0; j < n; j++) {
		ssize_t i = mw_fleet_find(f, jids[j]);

		if (i >= 0)
			keep[i] = true;
	}
	for (size_t i = 0; i < f->nt; i++) {
		if (!keep[i]) {
			mw_fleet_row_free(&f->rows[i]);
			free(f->t[i].unsent_why);
			continue;
		}
		f->rows[k] = f->rows[i];
		f->t[k] = f->t[i];
		k++;
	}
	free(keep);
	f->nt = k;
	return build_index(f);
}

/* ---- what lands in the table ---- */

/* A changed row of our job, from any process: take it, print a result. */
static int
on_change(void *arg, const struct mw_fleet_row *r)
{
	struct mw_fleet *f = arg;
	ssize_t i = find(f, r->jid, strlen(r->jid));
	struct mw_fleet_row *mine;
	struct mw_result_msg m;

	if (i < 0)
		return 0;	/* a target added by a later send of the same job */
	mine = &f->rows[i];
	if (mine->state != MW_FLEET_PENDING || r->state == MW_FLEET_PENDING)
		return 0;
	free(mine->status);
	free(mine->detail);
	free(mine->result);
	mine->status = r->status ? strdup(r->status) : NULL;
	mine->detail = r->detail ? strdup(r->detail) : NULL;
	mine->result = r->result ? strdup(r->result) : NULL;
	mine->done_ms = r->done_ms;
	mine->state = r->state;
	if ((r->status != NULL && mine->status == NULL) ||
	    (r->detail != NULL && mine->detail == NULL) ||
	    (r->result != NULL && mine->result == NULL)) {
		/* out of memory: the row is in the table; show it as unreadable */
		free(mine->result);
		mine->result = NULL;
	}
	if (!f->t[i].cancel_answered)
		f->remaining--;
	if (f->print_results && mine->state == MW_FLEET_RESULT && !f->t[i].shown &&
	    mine->result != NULL &&
	    mw_result_message_parse(mine->result, strlen(mine->result), &m) == 0) {
		mw_fleet_progress_clear(&f->progress);
		mw_fleet_result_print(stdout, mine->jid, &m, f->json, f->nt > 1);
		mw_result_msg_free(&m);
		f->t[i].shown = true;
	}
	return 0;
}

/*
 * A cancel: a target whose agent answered the cancellation itself
 * (already finished, unknown job, refused) has its outcome for this wait,
 * though its row still waits for the job's result.  The answer is in the
 * table whichever process of the account decrypted it.
 */
static void
poll_cancel_answers(struct mw_fleet *f)
{
	for (size_t i = 0; i < f->nt; i++) {
		struct mw_fleet_target *t = &f->t[i];
		struct mw_result_msg m;
		char *text = NULL;

		if (t->cancel_answered || t->envelope == NULL ||
		    f->rows[i].state != MW_FLEET_PENDING)
			continue;
		if (mw_jobtable_cancel_answer_get(f->db, f->job_id, f->rows[i].jid,
		    f->cancel_since_ms, &text) != 1)
			continue;
		t->cancel_answered = true;
		f->remaining--;
		if (f->print_results && mw_result_message_parse(text, strlen(text), &m) == 0) {
			mw_fleet_progress_clear(&f->progress);
			mw_fleet_result_print(stdout, f->rows[i].jid, &m, f->json, f->nt > 1);
			mw_result_msg_free(&m);
		}
		free(text);
	}
}

static void
poll_table(struct mw_fleet *f)
{
	int64_t last;

	f->poll_now = false;
	if (mw_jobtable_changes(f->db, f->job_id, f->seq, on_change, f, &last) != 0) {
		fprintf(stderr, "moonwire %s: reading the job table: %s\n", f->cmd,
		    sqlite3_errmsg(f->db));
		return;
	}
	f->seq = last;
	if (f->cancel_since_ms != 0)
		poll_cancel_answers(f);
}

/* Send failures noted by on_sent, into the table (outside any omemo
 * transaction: on_sent may run inside one).  A cancellation that could
 * not be sent ends the wait for its target but leaves the job's row alone:
 * the job itself was sent, and its result may still come. */
static void
record_unsent(struct mw_fleet *f)
{
	for (size_t i = 0; i < f->nt; i++) {
		struct mw_fleet_target *t = &f->t[i];

		if (t->unsent_why == NULL || f->rows[i].state != MW_FLEET_PENDING)
			continue;
		if (f->cancel_since_ms != 0) {
			if (!t->cancel_answered && !t->cancel_unsent)
				f->remaining--;
			t->cancel_unsent = t->cancel_answered = true;
			free(t->unsent_why);
			t->unsent_why = NULL;
			t->dirty = false;
			continue;
		}
		if (mw_jobtable_unsent(f->db, f->job_id, f->rows[i].jid, t->unsent_why,
		    mw_fleet_wall_ms()) != 0)
			fprintf(stderr, "moonwire %s: %s: cannot record the failed send: %s\n",
			    f->cmd, f->rows[i].jid, sqlite3_errmsg(f->db));
		f->poll_now = true;
		free(t->unsent_why);
		t->unsent_why = NULL;
		t->dirty = false;
	}
}

void
mw_fleet_flush(struct mw_fleet *f)
{
	bool any = false;

	for (size_t i = 0; i < f->nt && !any; i++)
		any = f->t[i].dirty;
	if (!any || !sqlite3_get_autocommit(f->db))
		return;
	if (sqlite3_exec(f->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return;
	for (size_t i = 0; i < f->nt; i++) {
		if (!f->t[i].dirty)
			continue;
		if (mw_jobtable_seen(f->db, f->job_id, f->rows[i].jid, f->rows[i].seen,
		    f->rows[i].sent_ms) != 0) {
			(void)sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL);
			return;
		}
	}
	if (sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		(void)sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL);
		return;
	}
	for (size_t i = 0; i < f->nt; i++)
		f->t[i].dirty = false;
}

enum mw_fleet_stop
mw_fleet_wait(struct mw_fleet *f, uint64_t timeout_ms, bool collect_only)
{
	struct sigaction sa, old_int, old_term;
	uint64_t start = mw_fleet_mono_ms(), deadline = start + timeout_ms, next_poll = 0;
	enum mw_fleet_stop why;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESETHAND;	/* a second Ctrl-C ends the process */
	sigemptyset(&sa.sa_mask);
	fleet_stop = 0;
	(void)sigaction(SIGINT, &sa, &old_int);
	(void)sigaction(SIGTERM, &sa, &old_term);
	mw_fleet_progress_init(&f->progress, start);
	for (;;) {
		uint64_t now;

		xmpp_run_once(f->x, 100);	/* returns as soon as data arrives */
		mw_omemo_tick(f->o);
		mw_fleet_pump(f);
		record_unsent(f);
		now = mw_fleet_mono_ms();
		if (f->poll_now || now >= next_poll) {
			poll_table(f);
			mw_fleet_flush(f);
			next_poll = now + POLL_MS;
		}
		if (!collect_only && f->remaining == 0) {
			why = MW_FLEET_ALL_DONE;
			break;
		}
		if (collect_only && f->collected && (f->remaining == 0 || now >= deadline)) {
			why = MW_FLEET_COLLECTED;
			break;
		}
		if (f->failed) {
			why = MW_FLEET_CONN_FAILED;
			break;
		}
		if (fleet_stop) {
			why = MW_FLEET_SIGNAL;
			break;
		}
		if (now >= deadline && (!collect_only || now >= start + BARRIER_MAX_MS)) {
			why = MW_FLEET_TIMEOUT;
			break;
		}
		mw_fleet_progress_update(&f->progress, f->cmd, f->rows, f->nt, now);
	}
	(void)sigaction(SIGINT, &old_int, NULL);
	(void)sigaction(SIGTERM, &old_term, NULL);
	record_unsent(f);
	poll_table(f);
	mw_fleet_flush(f);
	mw_fleet_progress_clear(&f->progress);
	return why;
}

void
mw_fleet_close(struct mw_fleet *f)
{
	if (f->connected) {
		f->closing = true;
		(void)mw_omemo_publish_pending(f->o);	/* before the stream ends */
		xmpp_disconnect(f->conn);
		for (int i = 0; i < 20 && !xmpp_conn_is_disconnected(f->conn); i++)
			xmpp_run_once(f->x, 50);
	}
	if (f->o != NULL)
		mw_omemo_close(f->o);
	if (f->conn != NULL) {
		mw_omemo_account_release(f->conn);
		xmpp_conn_release(f->conn);
	}
	if (f->x != NULL) {
		xmpp_ctx_free(f->x);
		xmpp_shutdown();
	}
	if (f->db != NULL) {
		mw_jobtable_close(f->db);
		sqlite3_close(f->db);
	}
	for (size_t i = 0; f->t != NULL && i < f->nt; i++)
		free(f->t[i].unsent_why);
	mw_fleet_rows_free(f->rows, f->nt);
	free(f->t);
	free(f->by_jid);
	memset(f, 0, sizeof(*f));
}
