/*
 * fleetsend.c: the operator's connection for a fleet job -- log in, hand
 * each pending target its envelope through the OMEMO layer within the
 * pace's window (pace.c), retry what the server said "later" to, turn
 * every other failure into the target's reason, and decrypt what comes
 * back into the job table (fleetconn.c waits on the table; fleet.h).
 *
 * Invariant: nothing decrypted here is shown before it is recorded: a
 * result goes into the job table in the transaction that advances the
 * ratchet past it, or the ratchet stays where it was.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/fleet/fleet.h"

/* ---- stanzas ---- */

/* A XEP-0085 chat state from a target: composing marks it running. */
static void
note_chat_state(struct mw_fleet *f, xmpp_stanza_t *st)
{
	ssize_t i;

	if (xmpp_stanza_get_child_by_name_and_ns(st, "composing",
	    "http://jabber.org/protocol/chatstates") == NULL ||
	    (i = mw_fleet_find_from(f, xmpp_stanza_get_from(st))) < 0)
		return;
	if (f->rows[i].state == MW_FLEET_PENDING &&
	    f->rows[i].seen != MW_FLEET_SEEN_RUNNING) {
		f->rows[i].seen = MW_FLEET_SEEN_RUNNING;
		f->t[i].dirty = true;
	}
}

/* The type and defined condition of st's <error/> (cond "" if none). */
static const char *
stanza_error(xmpp_stanza_t *st, char *cond, size_t condlen, char *text,
    size_t textlen)
{
	xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error"), *c;

	cond[0] = '\0';
	text[0] = '\0';
	for (c = e ? xmpp_stanza_get_children(e) : NULL; c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		const char *ns = xmpp_stanza_get_ns(c), *name = xmpp_stanza_get_name(c);

		if (name == NULL || ns == NULL ||
		    strcmp(ns, "urn:ietf:params:xml:ns:xmpp-stanzas") != 0)
			continue;
		if (strcmp(name, "text") == 0) {
			char *tx = xmpp_stanza_get_text(c);

			if (tx != NULL) {
				snprintf(text, textlen, "%s", tx);
				xmpp_free(xmpp_stanza_get_context(st), tx);
			}
		} else if (cond[0] == '\0')
			snprintf(cond, condlen, "%s", name);
	}
	return e != NULL ? xmpp_stanza_get_type(e) : NULL;
}

/* Target t goes back to the queue after a backoff; throttle: the server
 * said "later", so the whole fan-out slows down too. */
static void
requeue(struct mw_fleet *f, struct mw_fleet_target *t, bool throttle)
{
	uint64_t now = mw_fleet_mono_ms(), d = mw_fleet_backoff_ms(t->tries,
	    (uint32_t)random());

	t->retry_at_ms = now + d;
	if (!t->queued) {
		t->queued = true;
		f->queued++;
	}
	f->retries++;
	if (throttle) {
		if (f->pace.throttled == 0) {
			mw_fleet_progress_clear(&f->progress);
			fprintf(stderr, "moonwire %s: the server is throttling this account "
			    "(%s): slowing down and retrying (see `limits` / shapers in "
			    "the README)\n", f->cmd, t->iq_error[0] ? t->iq_error : "timeout");
		}
		mw_fleet_pace_throttled(&f->pace, now, d);
	}
}

/* A message of ours bounced: a "later" error sends it again (a new OMEMO
 * message; the bounced one never reached the agent), any other is the
 * target's outcome. */
static void
on_message_error(struct mw_fleet *f, xmpp_stanza_t *st)
{
	ssize_t i = mw_fleet_find_from(f, xmpp_stanza_get_from(st));
	const char *id = xmpp_stanza_get_id(st), *type;
	struct mw_fleet_target *t;
	char cond[64], text[256], why[1400];

	if (i < 0 || f->rows[i].state != MW_FLEET_PENDING)
		return;
	t = &f->t[i];
	if (t->envelope == NULL || t->msg_id[0] == '\0' || id == NULL ||
	    strcmp(id, t->msg_id) != 0 || t->unsent_why != NULL)
		return;		/* not the last message of this job to it */
	type = stanza_error(st, cond, sizeof(cond), text, sizeof(text));
	t->msg_id[0] = '\0';
	if (mw_fleet_retriable(type, cond) && t->tries < MW_FLEET_MAX_TRIES &&
	    !f->closing) {
		snprintf(t->iq_error, sizeof(t->iq_error), "%s", cond);
		t->sent = false;
		requeue(f, t, true);
		return;
	}
	if (strcmp(cond, "service-unavailable") == 0 ||
	    strcmp(cond, "item-not-found") == 0)
		snprintf(why, sizeof(why), "no such account %s: the server bounced the "
		    "job (%s%s%s)", f->rows[i].jid, cond, text[0] ? ": " : "", text);
	else
		snprintf(why, sizeof(why), "the server bounced the job (%s%s%s%s)",
		    cond[0] ? cond : "no condition", text[0] ? ": " : "", text,
		    t->tries > 1 ? ", after retries" : "");
	mw_fleet_progress_clear(&f->progress);
	fprintf(stderr, "moonwire %s: %s: %s\n", f->cmd, f->rows[i].jid, why);
	if ((t->unsent_why = strdup(why)) == NULL)
		t->unsent_why = strdup("not sent");
}

static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet *f = arg;
	struct mw_omemo_msg m;
	struct mw_result_msg r;
	int rc, rec = 0;

	(void)conn;
	if (xmpp_stanza_get_type(st) != NULL &&
	    strcmp(xmpp_stanza_get_type(st), "error") == 0) {
		on_message_error(f, st);
		return 1;
	}
	if (!mw_omemo_is_encrypted(st)) {
		note_chat_state(f, st);
		return 1;
	}
	rc = mw_omemo_decrypt(f->o, st, &m);
	if (rc != MW_OMEMO_OK) {
		/* duplicates: a message another process of this account decrypted */
		if (rc != MW_OMEMO_DROPPED && rc != MW_OMEMO_E_DUPLICATE)
			fprintf(stderr, "moonwire %s: message from %s: %s\n", f->cmd,
			    m.from ? m.from : "?", mw_omemo_strerror(rc));
		mw_omemo_msg_free(&m);
		return 1;
	}
	memset(&r, 0, sizeof(r));
	if (mw_result_message_parse((const char *)m.plaintext, m.len, &r) == 0) {
		if (m.trust != MW_OMEMO_TRUST_VERIFIED)
			fprintf(stderr, "moonwire %s: result for %s from an unverified device "
			    "%u of %s: ignored\n", f->cmd, r.job_id, m.device, m.from);
		else if (r.answer_to_cancel)	/* never the job's result */
			rec = mw_jobtable_cancel_answer(f->db, r.job_id, m.from,
			    (const char *)m.plaintext, m.len, mw_fleet_wall_ms());
		else
			rec = mw_jobtable_record(f->db, r.job_id, m.from,
			    (const char *)m.plaintext, m.len, mw_fleet_wall_ms());
	}
	if (rec < 0) {
		/* fail closed: the ratchet stays where it was, nothing is shown */
		fprintf(stderr, "moonwire %s: result for %s from %s: cannot store it: %s\n",
		    f->cmd, r.job_id, m.from, sqlite3_errmsg(f->db));
		(void)mw_omemo_rollback(f->o);
	} else if ((rc = mw_omemo_commit(f->o)) != MW_OMEMO_OK) {
		fprintf(stderr, "moonwire %s: message from %s: %s\n", f->cmd, m.from,
		    mw_omemo_strerror(rc));
	} else if (rec == 1) {
		if (strcmp(r.job_id, f->job_id) == 0)
			f->poll_now = true;
	} else if (rec == 0 && r.job_id != NULL && m.trust == MW_OMEMO_TRUST_VERIFIED) {
		mw_fleet_progress_clear(&f->progress);
		fprintf(stderr, "moonwire %s: result for job %s from %s: no such job in "
		    "this account's job table (pruned, or not sent from here): dropped\n",
		    f->cmd, r.job_id, m.from);
	}
	if (r.job_id != NULL)
		mw_result_msg_free(&r);
	mw_omemo_msg_free(&m);
	return 1;
}

/* Target i's record of the last IQ error about it. */
static void
note_iq_error(struct mw_fleet *f, size_t i, const char *cond, const char *etype,
    const char *text)
{
	snprintf(f->t[i].iq_error, sizeof(f->t[i].iq_error), "%s", cond);
	snprintf(f->t[i].iq_error_type, sizeof(f->t[i].iq_error_type), "%s",
	    etype != NULL ? etype : "");
	snprintf(f->t[i].iq_error_text, sizeof(f->t[i].iq_error_text), "%s", text);
}

/* Remembers the condition of every IQ error (the OMEMO layer reports only
 * that there was one), to say what it means. */
static int
on_iq_error(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet *f = arg;
	const char *from = xmpp_stanza_get_from(st), *etype;
	char cond[sizeof(f->t[0].iq_error)], text[sizeof(f->t[0].iq_error_text)];
	ssize_t hit;
	size_t n;

	(void)conn;
	if (from == NULL)
		return 1;	/* about our own account */
	etype = stanza_error(st, cond, sizeof(cond), text, sizeof(text));
	if (cond[0] == '\0')
		snprintf(cond, sizeof(cond), "undefined-condition");
	n = strcspn(from, "/");
	if ((hit = mw_fleet_find_from(f, from)) >= 0) {
		note_iq_error(f, (size_t)hit, cond, etype, text);
	} else if (memchr(from, '@', n) == NULL) {
		/* a server answering for its users: every target of that domain */
		for (size_t i = 0; i < f->nt; i++) {
			const char *domain = strchr(f->rows[i].jid, '@') + 1;

			if (strlen(domain) == n && strncmp(domain, from, n) == 0)
				note_iq_error(f, i, cond, etype, text);
		}
	}
	return 1;
}

/* Presence of a target, when the operator's account may see it. */
static int
on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet *f = arg;
	const char *type = xmpp_stanza_get_type(st);
	ssize_t i = mw_fleet_find_from(f, xmpp_stanza_get_from(st));
	enum mw_fleet_seen seen;

	(void)conn;
	if (i < 0 || f->rows[i].state != MW_FLEET_PENDING ||
	    f->rows[i].seen == MW_FLEET_SEEN_RUNNING)
		return 1;
	if (type == NULL)
		seen = MW_FLEET_SEEN_ONLINE;
	else if (strcmp(type, "unavailable") == 0)
		seen = MW_FLEET_SEEN_NOTHING;
	else
		return 1;
	if (f->rows[i].seen != seen) {
		f->rows[i].seen = seen;
		f->t[i].dirty = true;
	}
	return 1;
}

/* Whether jid has a cached device whose key this identity verified. */
static bool
has_verified_device(struct mw_fleet *f, const char *jid)
{
	struct mw_omemo_device *d = NULL;
	size_t n = 0;
	bool found = false;

	if (mw_omemo_devices(f->o, jid, &d, &n) != 0)
		return true;	/* unknown: do not claim otherwise */
	for (size_t k = 0; k < n; k++)
		if (d[k].has_key && d[k].trust == MW_OMEMO_TRUST_VERIFIED)
			found = true;
	free(d);
	return found;
}

static void
on_sent(struct mw_omemo *o, int err, void *arg)
{
	struct mw_fleet_target *t = arg;
	struct mw_fleet *f = t->fleet;
	size_t i = (size_t)(t - f->t);
	const char *jid = f->rows[i].jid;
	char why[1400];

	(void)o;
	if (t->inflight) {
		t->inflight = false;
		mw_fleet_pace_done(&f->pace, err == 0);
	}
	if (t->sent || t->unsent_why != NULL)
		return;		/* told once already */
	if (err == 0) {
		t->sent = true;
		f->rows[i].sent_ms = mw_fleet_wall_ms();
		t->dirty = true;
		return;
	}
	/* the server said "later" (or did not answer in time): again, slower */
	if ((err == MW_OMEMO_E_TIMEOUT || (err == MW_OMEMO_E_IQ &&
	    mw_fleet_retriable(t->iq_error_type, t->iq_error))) &&
	    t->tries < MW_FLEET_MAX_TRIES && !f->failed && !f->closing) {
		requeue(f, t, true);
		return;
	}
	/* an IQ error not about the target (our own device list on a first
	 * run) with nothing verified: the missing trust is the cause */
	if (err == MW_OMEMO_E_IQ && t->iq_error[0] == '\0' && !has_verified_device(f, jid))
		err = MW_OMEMO_E_NO_DEVICES;
	if (err == MW_OMEMO_E_IQ)
		mw_fleet_explain_iq_error(f, t, jid, why, sizeof(why));
	else if (err == MW_OMEMO_E_TIMEOUT && t->tries > 1)
		snprintf(why, sizeof(why), "%s (%u tries)", mw_omemo_strerror(err),
		    t->tries);
	else if (err == MW_OMEMO_E_NO_DEVICES)
		snprintf(why, sizeof(why), "%s: verify the agent's fingerprint first: "
		    "moonwire trust -c %s %s FINGERPRINT (the agent's owner reads it "
		    "with `moonwire fingerprint -c AGENT_CONFIG`)",
		    mw_omemo_strerror(err), f->config, jid);
	else
		snprintf(why, sizeof(why), "%s", mw_omemo_strerror(err));
	mw_fleet_progress_clear(&f->progress);
	fprintf(stderr, "moonwire %s: %s: %s\n", f->cmd, jid, why);
	if ((t->unsent_why = strdup(why)) == NULL)
		t->unsent_why = strdup("not sent");
}

static void
send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet *f = arg;
	const char *name = xmpp_stanza_get_name(st), *id = xmpp_stanza_get_id(st);
	ssize_t i;

	if (f->conn == NULL || !f->connected)
		return;
	/* the id of the job's message to a target: a bounce names it */
	if (name != NULL && strcmp(name, "message") == 0 && id != NULL &&
	    (i = mw_fleet_find_from(f, xmpp_stanza_get_to(st))) >= 0)
		snprintf(f->t[i].msg_id, sizeof(f->t[i].msg_id), "%s", id);
	xmpp_send(f->conn, st);
}

/* Starts queued targets while the pace allows: the window bounds the IQs
 * and messages in flight, so answers arrive while later targets wait
 * instead of the server queueing a thousand fetches at once. */
void
mw_fleet_pump(struct mw_fleet *f)
{
	uint64_t now;

	if (f->queued == 0 || !f->connected || f->closing || f->failed)
		return;
	now = mw_fleet_mono_ms();
	for (size_t i = 0; i < f->nt && f->queued > 0 &&
	    mw_fleet_pace_may_start(&f->pace, now); i++) {
		struct mw_fleet_target *t = &f->t[i];
		int rc;

		if (!t->queued || t->retry_at_ms > now)
			continue;
		t->queued = false;
		f->queued--;
		if (f->rows[i].state != MW_FLEET_PENDING)
			continue;	/* answered meanwhile (another process) */
		t->tries++;
		t->inflight = true;
		t->iq_error[0] = t->iq_error_type[0] = t->iq_error_text[0] = '\0';
		mw_fleet_pace_started(&f->pace);
		rc = mw_omemo_send(f->o, f->rows[i].jid, t->envelope, t->envelope_len,
		    on_sent, t);
		if (rc != 0)
			on_sent(f->o, rc, t);
	}
}

static int
on_barrier(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet *f = arg;

	(void)conn;
	(void)st;
	f->collected = true;
	return 0;
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct mw_fleet *f = arg;
	xmpp_stanza_t *p, *ping;
	int rc;

	if (ev != XMPP_CONN_CONNECT) {
		char why[768];

		if (!f->connected && !f->pin_refused) {
			(void)mw_omemo_account_describe_failure(f->acct, conn, error, se, why,
			    sizeof(why));
			mw_fleet_progress_clear(&f->progress);
			fprintf(stderr, "moonwire %s: %s\n", f->cmd, why);
		} else if (f->connected && !f->failed && !f->closing && f->remaining > 0) {
			(void)mw_omemo_account_describe_failure(f->acct, conn, error, se, why,
			    sizeof(why));
			mw_fleet_progress_clear(&f->progress);
			fprintf(stderr, "moonwire %s: connection lost: %s\n", f->cmd, why);
		}
		f->connected = false;
		f->failed = true;
		return;
	}
	if (mw_omemo_account_check_pin(f->acct, conn) != 0) {
		fprintf(stderr, "moonwire %s: server certificate does not match "
		    "cert_pin_sha256 (check the pin, or the server's certificate changed)\n",
		    f->cmd);
		f->failed = true;
		f->pin_refused = true;
		xmpp_disconnect(conn);
		return;
	}
	f->connected = true;
	xmpp_handler_add(conn, on_message, NULL, "message", NULL, f);
	xmpp_handler_add(conn, on_iq_error, NULL, "iq", "error", f);
	xmpp_handler_add(conn, on_presence, NULL, "presence", NULL, f);
	if ((rc = mw_omemo_attach(f->o, conn)) != 0 || (rc = mw_omemo_start(f->o)) != 0) {
		fprintf(stderr, "moonwire %s: omemo: %s\n", f->cmd, mw_omemo_strerror(rc));
		f->failed = true;
		xmpp_disconnect(conn);
		return;
	}
	/* initial presence: the server delivers what it stored for us now,
	 * before it answers the ping that follows */
	if ((p = xmpp_presence_new(f->x)) != NULL) {
		xmpp_send(conn, p);
		xmpp_stanza_release(p);
	}
	snprintf(f->barrier_id, sizeof(f->barrier_id), "mw-collect-%ld", (long)getpid());
	if ((ping = xmpp_iq_new(f->x, "get", f->barrier_id)) != NULL) {
		xmpp_stanza_t *q = xmpp_stanza_new(f->x);

		if (q != NULL && xmpp_stanza_set_name(q, "ping") == XMPP_EOK &&
		    xmpp_stanza_set_ns(q, "urn:xmpp:ping") == XMPP_EOK &&
		    xmpp_stanza_add_child(ping, q) == XMPP_EOK) {
			xmpp_id_handler_add(conn, on_barrier, f->barrier_id, f);
			xmpp_send(conn, ping);
		}
		if (q != NULL)
			xmpp_stanza_release(q);
		xmpp_stanza_release(ping);
	}
	for (size_t i = 0; i < f->nt; i++) {
		struct mw_fleet_target *t = &f->t[i];

		if (t->envelope == NULL || f->rows[i].state != MW_FLEET_PENDING ||
		    t->queued)
			continue;
		t->queued = true;
		f->queued++;
	}
	mw_fleet_pump(f);
}

int
mw_fleet_connect(struct mw_fleet *f)
{
	mw_fleet_pace_init(&f->pace, MW_FLEET_SEND_WINDOW);
	srandom((unsigned)getpid() ^ (unsigned)mw_fleet_mono_ms());
	xmpp_initialize();
	if ((f->x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL ||
	    (f->conn = xmpp_conn_new(f->x)) == NULL ||
	    mw_omemo_account_apply(f->acct, f->conn) != 0 ||
	    mw_omemo_set_transport(f->o, f->x, send_stanza, f) != 0) {
		fprintf(stderr, "moonwire %s: cannot set up the connection\n", f->cmd);
		return -1;
	}
	/* A short-lived client: without stream management the server counts a
	 * message as delivered once written to us, instead of keeping unacked
	 * ones for a later connection to see again; a result is durable in the
	 * job table as soon as it is decrypted. */
	xmpp_conn_set_flags(f->conn, xmpp_conn_get_flags(f->conn) |
	    XMPP_CONN_FLAG_DISABLE_SM);
	if (xmpp_connect_client(f->conn, f->acct->host, f->acct->port, on_conn, f) !=
	    XMPP_EOK) {
		fprintf(stderr, "moonwire %s: cannot connect\n", f->cmd);
		return -1;
	}
	return 0;
}
