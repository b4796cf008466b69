/*
 * agent_jobs.c: from a decrypted message to a result -- the per-sender and
 * new-session budgets (applied before decrypting), authorization of a
 * signed job (spec/agent.md, steps a-d), the journal, running it in the
 * sandbox, and storing and sending the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <strophe.h>

#include "runtime/agent/agent.h"


/* ---- rate limiting (token bucket per bare JID) ---- */

static struct rate_slot *
rate_slot_for(struct agent *a, const char *jid)
{
	struct rate_slot *oldest = &a->rate[0];

	for (size_t i = 0; i < RATE_SLOTS; i++) {
		if (a->rate[i].jid != NULL && strcmp(a->rate[i].jid, jid) == 0)
			return &a->rate[i];
		if (a->rate[i].jid == NULL || a->rate[i].last_ms < oldest->last_ms)
			oldest = &a->rate[i];
	}
	/* evict the least recently seen sender: with more than RATE_SLOTS
	 * senders a forgotten one starts again with a full burst */
	free(oldest->jid);
	memset(oldest, 0, sizeof(*oldest));
	if ((oldest->jid = strdup(jid)) == NULL)
		return NULL;
	oldest->tokens = (double)a->cfg.rate_burst;
	oldest->last_ms = agent_now_ms();
	oldest->new_sessions.tokens = (double)a->cfg.new_session_burst;
	oldest->new_sessions.last_ms = oldest->last_ms;
	return oldest;
}

/* Takes one token from b if it has one (refilled at per_minute, capped at
 * burst since last_ms). */
static bool
bucket_take(struct bucket *b, uint32_t per_minute, unsigned burst, uint64_t t)
{
	b->tokens += (double)(t - b->last_ms) * (double)per_minute / 60000.0;
	if (b->tokens > (double)burst)
		b->tokens = (double)burst;
	b->last_ms = t;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

/*
 * The new-session budget, checked BEFORE decrypting a message that would
 * build a session (X3DH and a consumed prekey, then a bundle republish):
 * a token from the sender JID's bucket and one from the global bucket.
 * The sender's token is spent even when the global bucket refuses, so one
 * JID cannot drain the global budget and keep its own.  Fails closed when
 * out of memory.
 */
static bool
new_session_allow(struct agent *a, const char *jid, const char **which)
{
	struct rate_slot *s = rate_slot_for(a, jid);
	uint64_t t = agent_now_ms();

	*which = "new_session_rate";
	if (s == NULL || !bucket_take(&s->new_sessions, a->cfg.new_session_per_minute,
	    a->cfg.new_session_burst, t))
		return false;
	*which = "new_session_rate_global";
	return bucket_take(&a->new_sessions, a->cfg.new_session_global_per_minute,
	    a->cfg.new_session_global_burst, t);
}

bool
agent_rate_allow(struct agent *a, const char *jid)
{
	struct rate_slot *s;
	uint64_t t = agent_now_ms();

	if (a->cfg.rate_per_minute == 0)
		return true;
	if ((s = rate_slot_for(a, jid)) == NULL)
		return false;	/* out of memory: fail closed */
	s->tokens += (double)(t - s->last_ms) * (double)a->cfg.rate_per_minute / 60000.0;
	if (s->tokens > (double)a->cfg.rate_burst)
		s->tokens = (double)a->cfg.rate_burst;
	s->last_ms = t;
	if (s->tokens < 1.0)
		return false;
	s->tokens -= 1.0;
	return true;
}

/* A flood must not make the agent encrypt a refusal per message: one
 * rate_limited reply per sender per minute. */
bool
agent_rate_refusal_reply_due(struct agent *a, const char *jid)
{
	struct rate_slot *s = rate_slot_for(a, jid);
	uint64_t t = agent_now_ms();

	if (s == NULL || (s->refusal_reply_ms != 0 && t - s->refusal_reply_ms < 60000))
		return false;
	s->refusal_reply_ms = t;
	return true;
}

/* ---- authorization ---- */

struct decision {
	int refusal;			/* 0: run it */
	char reason[512];
	struct mw_envelope env;
	bool have_env;
	bool interactive;
	char signer[MW_SSH_FP_MAX + 160];	/* journal key: key fingerprint or interactive:JID */
	char job_id[MW_JOB_ID_MAX + 1];
	char kv_scope[160];
	const struct mw_profile *profile;
	struct mw_limits limits;
};

static int
refuse(struct decision *d, int code, const char *fmt, ...)
{
	va_list ap;

	d->refusal = code;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
	return code;
}

static void
limits_lower(struct mw_limits *l, const struct mw_limits *req)
{
#define LOWER(f) if (req->f < l->f) l->f = req->f
	LOWER(instructions);
	LOWER(memory);
	LOWER(cpu_ms);
	LOWER(wall_ms);
	LOWER(output_bytes);
	LOWER(program_bytes);
	LOWER(result_bytes);
	LOWER(result_depth);
	LOWER(cap_calls);
	LOWER(write_bytes);
#undef LOWER
}

/*
 * Steps (a) to (c) of spec/agent.md for a decrypted message; (d), the
 * journal lookup, is the caller's because it needs the open transaction.
 * Runs with the decrypt transaction open: no network, no waiting.
 */
static int
authorize(struct agent *a, const struct mw_omemo_msg *m, struct decision *d)
{
	const char *text = (const char *)m->plaintext;
	struct mw_ssh_pubkey key;
	const char *principals;
	const struct mw_policy_allow *allow;
	const struct mw_policy_interactive *inter;
	int64_t now = (int64_t)time(NULL);
	int rc;

	memset(d, 0, sizeof(*d));
	/* (a) the sending device is verified for that JID */
	if (m->trust != MW_OMEMO_TRUST_VERIFIED) {
		char g[72] = "unknown";

		if (m->fp[0])
			mw_omemo_fp_group(m->fp, '-', g);
		return refuse(d, MW_REFUSE_UNTRUSTED_DEVICE,
		    "device %u of %s (fingerprint %s) is %s, not verified", m->device,
		    m->from, g, mw_omemo_trust_name(m->trust));
	}
	if (!agent_rate_allow(a, m->from)) {
		struct mw_envelope e;
		char why[128];

		/* name the job in the refusal (unverified, echoed only to this
		 * verified device) so the sender can match the reply to it */
		if (m->len >= strlen(MW_ENVELOPE_PREFIX) &&
		    memcmp(text, MW_ENVELOPE_PREFIX, strlen(MW_ENVELOPE_PREFIX)) == 0 &&
		    mw_envelope_parse(text, m->len, &e, why, sizeof(why)) == 0) {
			snprintf(d->job_id, sizeof(d->job_id), "%s", e.job_id);
			mw_envelope_free(&e);
		}
		return refuse(d, MW_REFUSE_RATE_LIMITED, "more than %u jobs a minute from %s",
		    a->cfg.rate_per_minute, m->from);
	}
	/* any "moonwire-job " line is an envelope: another version gets the
	 * `version` refusal from the parser, not interactive mode */
	if (m->len < strlen(MW_ENVELOPE_PREFIX) ||
	    memcmp(text, MW_ENVELOPE_PREFIX, strlen(MW_ENVELOPE_PREFIX)) != 0) {
		/* plain text: interactive mode, if the policy has it for this JID */
		if ((inter = mw_policy_interactive_for(&a->policy, m->from)) == NULL)
			return refuse(d, MW_REFUSE_NOT_A_JOB,
			    "not a signed job, and interactive mode is off for %s", m->from);
		d->interactive = true;
		d->profile = &a->policy.profiles[inter->profile];
		snprintf(d->signer, sizeof(d->signer), "interactive:%s", m->from);
		snprintf(d->kv_scope, sizeof(d->kv_scope), "interactive:%s", m->from);
		{
			unsigned char r[8];
			if (RAND_bytes(r, sizeof(r)) != 1)
				return refuse(d, MW_REFUSE_STORAGE, "no randomness for a job id");
			snprintf(d->job_id, sizeof(d->job_id),
			    "chat-%02x%02x%02x%02x%02x%02x%02x%02x",
			    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
		}
		d->limits = d->profile->limits;
		if (m->len > d->limits.program_bytes)
			return refuse(d, MW_REFUSE_OVERSIZED, "program of %zu bytes, limit %u",
			    m->len, d->limits.program_bytes);
		return 0;
	}
	/* (b) the envelope parses and its signature verifies ... */
	if ((rc = mw_envelope_parse(text, m->len, &d->env, d->reason,
	    sizeof(d->reason))) != 0)
		return d->refusal = rc;
	d->have_env = true;
	snprintf(d->job_id, sizeof(d->job_id), "%s", d->env.job_id);
	/* ... by a key in allowed_signers (the rules `moonwire verify` applies) ... */
	if ((rc = mw_envelope_verify(&d->env, a->signers, now, &key, &principals,
	    d->reason, sizeof(d->reason))) != 0)
		return d->refusal = rc;
	snprintf(d->signer, sizeof(d->signer), "%s", key.fp);
	/* ... whose principal the policy allows for this JID */
	if ((allow = mw_policy_allowed(&a->policy, principals, m->from)) == NULL)
		return refuse(d, MW_REFUSE_SIGNER_NOT_ALLOWED,
		    "signer %s (%s) is not allowed for %s", principals, key.fp, m->from);
	d->profile = &a->policy.profiles[allow->profile];
	snprintf(d->kv_scope, sizeof(d->kv_scope), "%s", allow->principal);
	/* (c) audience, then the time window with this agent's skew and the
	 * allow line's maximum validity */
	if (!mw_omemo_jid_equal(d->env.audience, mw_omemo_jid(a->o)))
		return refuse(d, MW_REFUSE_WRONG_AUDIENCE, "job is for %s, this agent is %s",
		    d->env.audience, mw_omemo_jid(a->o));
	if ((rc = mw_envelope_check_time(&d->env, now, (int64_t)a->cfg.clock_skew_s,
	    (int64_t)allow->max_validity_s, d->reason, sizeof(d->reason))) != 0)
		return d->refusal = rc;
	d->limits = d->profile->limits;
	limits_lower(&d->limits, &d->env.limits);
	for (uint32_t i = 0; i < d->env.args.n; i++)
		if (!mw_profile_accepts_arg(d->profile, d->env.args.name[i]))
			return refuse(d, MW_REFUSE_BAD_ARGS, "argument '%s' is not allowed by profile %s",
			    d->env.args.name[i], d->profile->name);
	if (d->env.program_len > d->limits.program_bytes)
		return refuse(d, MW_REFUSE_OVERSIZED, "program of %zu bytes, limit %u",
		    d->env.program_len, d->limits.program_bytes);
	return 0;
}

static void
decision_free(struct decision *d)
{
	if (d->have_env)
		mw_envelope_free(&d->env);
	d->have_env = false;
}

/* ---- running ---- */

void
agent_running_free(struct running_job *j)
{
	free(j->signer);
	free(j->job_id);
	free(j->from_jid);
	free(j->cancel_from);
	mw_grants_free(&j->grants);
	free(j);
}

struct stage_times {
	uint64_t received, decrypt, verify, commit;
};

static int
start_job(struct agent *a, const struct decision *d, const struct mw_omemo_msg *m,
    const struct stage_times *st)
{
	struct running_job *j = calloc(1, sizeof(*j));
	struct mw_job job;

	if (j == NULL)
		return -1;
	j->t_received_us = st->received;
	j->t_decrypt_us = st->decrypt;
	j->t_verify_us = st->verify;
	j->t_commit_us = st->commit;
	snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%" PRIu64, ++a->seq);
	j->signer = strdup(d->signer);
	j->job_id = strdup(d->job_id);
	j->from_jid = strdup(m->from);
	j->device = m->device;
	if (j->signer == NULL || j->job_id == NULL || j->from_jid == NULL ||
	    mw_grants_copy(&j->grants, &d->profile->grants) != 0)
		goto fail;
	if (j->grants.kv) {
		free(j->grants.kv_scope);
		if ((j->grants.kv_scope = strdup(d->kv_scope)) == NULL)
			goto fail;
	}
	memset(&job, 0, sizeof(job));
	job.id = j->sandbox_id;
	job.chunkname = "=job";
	if (d->interactive) {
		job.program = (const char *)m->plaintext;
		job.program_len = m->len;
	} else {
		job.program = (const char *)d->env.program;
		job.program_len = d->env.program_len;
	}
	struct mw_job_arg args[MW_ARGS_MAX];
	if (d->have_env && !d->interactive && d->env.args.n > 0) {
		mw_job_args_view(&d->env.args, args);
		job.args = args;
		job.n_args = d->env.args.n;
	}
	job.limits = d->limits;
	job.grants = &j->grants;
	j->t_submitted_us = agent_now_us();
	if (mw_sandbox_submit(a->sb, &job) != 0)
		goto fail;
	(void)mw_sandbox_flush(a->sb);
	/* a sign of life for the requester if the job is still running
	 * then (agent_chat_states_due); a short job's result comes first */
	j->composing_due_ms = agent_now_ms() + COMPOSING_AFTER_MS;
	agent_crash_at("mid_job");
	j->next = a->jobs;
	a->jobs = j;
	a->n_jobs++;
	return 0;
fail:
	agent_running_free(j);
	return -1;
}

/* Stores the terminal result of a job and sends it (also to the device
 * that cancelled it, when that is not the requester). */
void
agent_finish_job(struct agent *a, struct running_job *j, const struct mw_result *r)
{
	uint64_t t_done = agent_now_us(), t_stored, t_sent;
	char *text = mw_result_message(j->job_id, r, 0, NULL, a->cfg.max_output);
	/* on a live connection the row says "handed over" (replied = 1) from
	 * the start: one journal write for the result, not two */
	bool sending = a->connected;
	int rc;

	if (text == NULL) {
		agent_log("internal-error", "job=%s op=render", j->job_id);
		return;
	}
	agent_sync_commits(a, false);
	rc = (sending ? mw_journal_finish_sending : mw_journal_finish)(a->db, j->signer,
	    j->job_id, text, (int64_t)time(NULL));
	agent_sync_commits(a, a->cfg.durability_full);
	t_stored = agent_now_us();
	if (rc == 0)
		agent_crash_at("after_result");
	if (rc != 0) {
		/* stays ACCEPTED: reported as interrupted after a restart */
		agent_log("journal-error", "job=%s op=finish error=\"%s\"", j->job_id,
		    sqlite3_errmsg(a->db));
		free(text);
		return;
	}
	agent_log("done", "job=%s from=%s device=%u status=%s cpu_us=%" PRIu64
	    " wall_us=%" PRIu64, j->job_id, j->from_jid, j->device,
	    mw_job_status_name(r->status), r->usage.cpu_us, r->usage.wall_us);
	if (r->status == MW_JOB_CANCELLED)
		agent_log("cancelled", "job=%s from=%s device=%u started=%s", j->job_id,
		    j->from_jid, j->device, r->usage.wall_us > 0 ? "yes" : "no");
	if (j->cancel_from != NULL && (strcmp(j->cancel_from, j->from_jid) != 0 ||
	    j->cancel_device != j->device) &&
	    agent_send_encrypted(a, j->cancel_from, j->cancel_device, text, NULL) != 0)
		agent_log("reply-failed", "job=%s to=%s device=%u (the cancelling device)",
		    j->job_id, j->cancel_from, j->cancel_device);
	/* the result carries "active": the job is no longer running */
	if (agent_send_encrypted(a, j->from_jid, j->device, text, "active") == 0) {
		t_sent = agent_now_us();
		agent_crash_at("after_reply");
		if (sending)
			agent_await_barrier(a, j->signer, j->job_id);
		else
			agent_mark_replied(a, j->signer, j->job_id);
		agent_log("reply-sent", "job=%s to=%s device=%u decrypt_us=%" PRIu64
		    " verify_us=%" PRIu64 " commit_us=%" PRIu64 " sandbox_us=%" PRIu64
		    " store_us=%" PRIu64 " encrypt_us=%" PRIu64 " agent_us=%" PRIu64,
		    j->job_id, j->from_jid, j->device, j->t_decrypt_us, j->t_verify_us,
		    j->t_commit_us, j->t_submitted_us ? t_done - j->t_submitted_us : 0,
		    t_stored - t_done, t_sent - t_stored,
		    j->t_received_us ? t_sent - j->t_received_us : 0);
	}
	free(text);
}

/*
 * Signs of life (XEP-0085): <composing/> to the requester of each job that
 * has been running COMPOSING_AFTER_MS, once.  Best effort: a lost chat
 * state changes nothing but a progress line.  Returns the clock (ms) when
 * the next one is due, 0 for none.
 */
uint64_t
agent_chat_states_due(struct agent *a, uint64_t now_ms)
{
	uint64_t next = 0;

	for (struct running_job *j = a->jobs; j != NULL; j = j->next) {
		if (j->composing_due_ms == 0)
			continue;
		if (j->composing_due_ms <= now_ms) {
			if (!a->connected)
				continue;	/* its result goes later anyway */
			j->composing_due_ms = 0;
			if (agent_send_chat_state(a, j->from_jid, "composing") != 0)
				agent_log("chat-state-failed", "job=%s state=composing", j->job_id);
		} else if (next == 0 || j->composing_due_ms < next)
			next = j->composing_due_ms;
	}
	return next;
}

void
agent_unlink_job(struct agent *a, struct running_job *j)
{
	for (struct running_job **p = &a->jobs; *p != NULL; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			a->n_jobs--;
			return;
		}
}

void
agent_interrupt_all(struct agent *a, const char *why)
{
	while (a->jobs != NULL) {
		struct running_job *j = a->jobs;
		struct mw_result r;

		memset(&r, 0, sizeof(r));
		/* a job whose cancellation is journaled ends as cancelled,
		 * as it would after a restart */
		r.status = j->cancel_from != NULL ? MW_JOB_CANCELLED : MW_JOB_INTERRUPTED;
		r.error = j->cancel_from != NULL ? (char *)"cancelled; the agent stopped before "
		    "the cancellation completed" : (char *)why;
		agent_unlink_job(a, j);
		agent_finish_job(a, j, &r);
		agent_running_free(j);
	}
}

void
agent_read_results(struct agent *a)
{
	struct mw_result r;
	int rc;

	while ((rc = mw_sandbox_read_result(a->sb, &r)) == 1) {
		struct running_job *j;

		for (j = a->jobs; j != NULL; j = j->next)
			if (r.job_id != NULL && strcmp(j->sandbox_id, r.job_id) == 0)
				break;
		if (j == NULL) {
			agent_log("internal-error", "op=result unknown-sandbox-id=%s",
			    r.job_id ? r.job_id : "?");
		} else {
			agent_unlink_job(a, j);
			agent_finish_job(a, j, &r);
			agent_running_free(j);
		}
		mw_result_free(&r);
	}
	if (rc < 0) {
		/* the supervisor is gone: nothing more will run */
		agent_log("sandbox-gone", "running=%u", a->n_jobs);
		agent_interrupt_all(a, "the sandbox supervisor stopped");
		mw_agent_stop = 1;
		a->stop_deadline_ms = 0;
	}
}

/* ---- incoming messages ---- */

static void
reply_refusal(struct agent *a, const struct mw_omemo_msg *m, const struct decision *d)
{
	char *text = mw_result_message(d->job_id, NULL, d->refusal, d->reason,
	    a->cfg.max_output);

	if (text != NULL) {
		(void)agent_send_encrypted(a, m->from, m->device, text, NULL);
		free(text);
	}
}

static void
audit_refusal(const struct mw_omemo_msg *m, const struct decision *d)
{
	agent_log("refused", "code=%s from=%s device=%u job=%s reason=\"%s\"",
	    mw_refusal_name(d->refusal), m->from, m->device,
	    d->job_id[0] ? d->job_id : "-", d->reason);
}

void
agent_handle_encrypted(struct agent *a, xmpp_stanza_t *st)
{
	struct mw_omemo_msg m;
	struct decision d;
	struct mw_journal_entry e, found;
	struct stage_times times;
	uint64_t t;
	int rc, seen;

	memset(&times, 0, sizeof(times));
	times.received = agent_now_us();
	/*
	 * Before any decryption: who sent it, with which identity key, and
	 * would it build a new session?  Read-only.  A device whose key is not
	 * verified for that JID is dropped here -- no X3DH, no row, no prekey,
	 * no publish -- and so is a new session over the budget.
	 */
	rc = mw_omemo_peek(a->o, st, &m);
	if (rc != 0) {
		agent_log("refused", "code=omemo from=%s device=%u reason=\"%s\"",
		    m.from ? m.from : "?", m.device, mw_omemo_strerror(rc));
		mw_omemo_msg_free(&m);
		return;
	}
	if (m.trust != MW_OMEMO_TRUST_VERIFIED) {
		char g[72] = "unknown";

		if (m.fp[0])
			mw_omemo_fp_group(m.fp, '-', g);
		agent_log("refused", "code=untrusted_device from=%s device=%u job=- reason=\"not "
		    "decrypted: device %u of %s (fingerprint %s) is %s, not verified\"", m.from,
		    m.device, m.device, m.from, g,
		    m.fp[0] ? mw_omemo_trust_name(m.trust) : "unknown");
		mw_omemo_msg_free(&m);
		return;
	}
	if (m.new_session) {
		const char *which;

		if (!new_session_allow(a, m.from, &which)) {
			agent_log("refused", "code=omemo from=%s device=%u reason=\"new session "
			    "over the %s budget; not decrypted\"", m.from, m.device, which);
			mw_omemo_msg_free(&m);
			return;
		}
		agent_log("new-session", "from=%s device=%u", m.from, m.device);
	}
	mw_omemo_msg_free(&m);
	rc = mw_omemo_decrypt(a->o, st, &m);
	t = agent_now_us();
	times.decrypt = t - times.received;
	if (rc == MW_OMEMO_DROPPED) {
		agent_log("key-transport", "from=%s device=%u", m.from ? m.from : "?", m.device);
		mw_omemo_msg_free(&m);
		return;
	}
	if (rc == MW_OMEMO_E_DUPLICATE) {
		/* The server delivering again what was already handled (stream
		 * management after a reconnect, offline storage after a
		 * restart): nothing is decrypted twice and nothing is wrong, so
		 * it is counted, with a line at the 1st, 10th, 100th, ... */
		uint64_t c = ++a->redelivered;
		while (c % 10 == 0)
			c /= 10;
		if (c == 1)
			agent_log("redelivered", "count=%" PRIu64 " from=%s device=%u (a message "
			    "already handled, delivered again; ignored)", a->redelivered,
			    m.from ? m.from : "?", m.device);
		mw_omemo_msg_free(&m);
		return;
	}
	if (rc != MW_OMEMO_OK) {
		char g[72] = "";

		if (m.fp[0])
			mw_omemo_fp_group(m.fp, '-', g);
		agent_log("refused", "code=omemo from=%s device=%u reason=\"%s\"%s%s",
		    m.from ? m.from : "?", m.device, mw_omemo_strerror(rc),
		    g[0] ? " fingerprint=" : "", g);
		mw_omemo_msg_free(&m);
		return;
	}
	/* the decrypt transaction is open from here to the commit */
	agent_crash_at("after_decrypt");
	if (mw_cancel_is(m.plaintext, m.len)) {
		agent_handle_cancel(a, &m);	/* commits or rolls back */
		mw_omemo_msg_free(&m);
		return;
	}
	rc = authorize(a, &m, &d);
	times.verify = agent_now_us() - t;
	if (rc != 0) {
		if (mw_omemo_commit(a->o) != 0)
			agent_log("journal-error", "op=commit error=\"%s\"", sqlite3_errmsg(a->db));
		audit_refusal(&m, &d);
		/* a reply only goes where it is safe: a verified device */
		if (d.refusal != MW_REFUSE_UNTRUSTED_DEVICE &&
		    (d.refusal != MW_REFUSE_RATE_LIMITED ||
		    agent_rate_refusal_reply_due(a, m.from)))
			reply_refusal(a, &m, &d);
		goto out;
	}
	/* (d) the job id was never used by that signer */
	seen = mw_journal_lookup(a->db, d.signer, d.job_id, &found);
	if (seen < 0) {
		(void)mw_omemo_rollback(a->o);
		refuse(&d, MW_REFUSE_STORAGE, "journal lookup failed: %s", sqlite3_errmsg(a->db));
		audit_refusal(&m, &d);
		reply_refusal(a, &m, &d);
		goto out;
	}
	if (seen == 1) {
		bool same = d.have_env && memcmp(found.sha256, d.env.sha256, 32) == 0;

		if (mw_omemo_commit(a->o) != 0)
			agent_log("journal-error", "op=commit error=\"%s\"", sqlite3_errmsg(a->db));
		if (!same) {
			refuse(&d, MW_REFUSE_REPLAY, "job id %s was already used by this signer "
			    "for a different envelope", d.job_id);
			audit_refusal(&m, &d);
			reply_refusal(a, &m, &d);
		} else if (found.from_jid == NULL || strcmp(found.from_jid, m.from) != 0 ||
		    found.device != m.device) {
			/* A stored result belongs to the device that requested the
			 * job, as journaled: another device (even a verified one of
			 * the same operator) that resends the envelope gets nothing,
			 * not even a refusal naming the job's requester. */
			refuse(&d, MW_REFUSE_REPLAY, "job %s was requested by another "
			    "device; its result goes only there", d.job_id);
			audit_refusal(&m, &d);
		} else {
			agent_log("duplicate", "job=%s from=%s device=%u state=%s", d.job_id,
			    m.from, m.device, found.state == MW_JOURNAL_DONE ? "done" : "running");
			/* the stored result again, byte for byte; a running job
			 * answers when it ends */
			if (found.state == MW_JOURNAL_DONE && found.result != NULL)
				(void)agent_send_encrypted(a, m.from, m.device, found.result, NULL);
		}
		mw_journal_entry_free(&found);
		goto out;
	}
	t = agent_now_us();
	memset(&e, 0, sizeof(e));
	e.signer = d.signer;
	e.job_id = d.job_id;
	if (d.have_env)
		memcpy(e.sha256, d.env.sha256, 32);
	e.from_jid = m.from;
	e.device = m.device;
	if (mw_journal_accept(a->db, &e, (int64_t)time(NULL)) != 0 ||
	    (rc = mw_omemo_commit(a->o)) != 0) {
		const char *why = sqlite3_errmsg(a->db);

		if (mw_omemo_txn_pending(a->o))
			(void)mw_omemo_rollback(a->o);
		refuse(&d, MW_REFUSE_STORAGE, "the journal could not record the job: %s", why);
		audit_refusal(&m, &d);
		reply_refusal(a, &m, &d);
		goto out;
	}
	/* committed: from here the job is either run once or reported
	 * interrupted, never run again */
	times.commit = agent_now_us() - t;
	agent_crash_at("after_commit");
	agent_log("accepted", "job=%s from=%s device=%u signer=%s profile=%s%s", d.job_id,
	    m.from, m.device, d.signer, d.profile->name, d.interactive ? " interactive=yes" : "");
	if (start_job(a, &d, &m, &times) != 0) {
		struct running_job j;
		struct mw_result r;

		memset(&j, 0, sizeof(j));
		j.signer = d.signer;
		j.job_id = d.job_id;
		j.from_jid = m.from;
		j.device = m.device;
		memset(&r, 0, sizeof(r));
		r.status = MW_JOB_INTERNAL_ERROR;
		r.error = (char *)"the sandbox did not take the job";
		agent_finish_job(a, &j, &r);
	}
out:
	decision_free(&d);
	mw_omemo_msg_free(&m);
}
