/*
 * agent_cancel.c: a signed cancellation reaching the agent (spec/agent.md,
 * "Cancellation") -- authorised like a job, looked up in the journal, and
 * then: a running or queued job is stopped through the supervisor (the
 * kill path of the limits) and ends with the result `cancelled`; a
 * finished job gets the typed answer `already_finished`; an unknown one
 * `unknown_job`.
 *
 * Invariants: only the key that signed a job can cancel it (the journal
 * is keyed by signer fingerprint and job id); the cancellation is
 * recorded on the job's row in the transaction that advances the ratchet
 * past it, before the supervisor is told, so a restart in between still
 * ends the job `cancelled` and never runs it; answers to a cancellation
 * that did not stop anything carry `answer-to: cancel` and are never a
 * job's result.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/agent/agent.h"

/* A refusal of (or a typed answer to) a cancellation: audit line, and the
 * answer to the sending device when that is safe. */
static void
answer(struct agent *a, const struct mw_omemo_msg *m, const char *job_id, int code,
    bool reply, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	agent_log("refused", "code=%s from=%s device=%u job=%s kind=cancel reason=\"%s\"",
	    mw_refusal_name(code), m->from, m->device, job_id[0] ? job_id : "-", reason);
	if (!reply)
		return;
	char *text = mw_result_cancel_answer(job_id, code, reason);
	if (text == NULL || agent_send_encrypted(a, m->from, m->device, text, NULL) != 0)
		agent_log("reply-failed", "job=%s to=%s device=%u kind=cancel",
		    job_id[0] ? job_id : "-", m->from, m->device);
	free(text);
}

static void
commit(struct agent *a)
{
	if (mw_omemo_commit(a->o) != 0)
		agent_log("journal-error", "op=commit error=\"%s\"", sqlite3_errmsg(a->db));
}

/* The final status named in a stored result message, for the answer. */
static void
stored_status(const char *result, char *out, size_t n)
{
	struct mw_result_msg rm;

	snprintf(out, n, "%s", "unknown");
	if (result != NULL && mw_result_message_parse(result, strlen(result), &rm) == 0) {
		snprintf(out, n, "%s", rm.status);
		mw_result_msg_free(&rm);
	}
}

void
agent_handle_cancel(struct agent *a, const struct mw_omemo_msg *m)
{
	struct mw_cancel c;
	struct mw_ssh_pubkey key;
	const char *principals = NULL;
	const struct mw_policy_allow *allow = NULL;
	struct mw_journal_entry found;
	char reason[512] = "", job_id[MW_JOB_ID_MAX + 1] = "";
	int64_t now = (int64_t)time(NULL);
	int code, seen;

	memset(&c, 0, sizeof(c));
	memset(&found, 0, sizeof(found));
	/* the order of a job's checks (spec/agent.md): device, rate, parse,
	 * signature and signer, policy, audience, time */
	if (m->trust != MW_OMEMO_TRUST_VERIFIED) {
		commit(a);
		answer(a, m, job_id, MW_REFUSE_UNTRUSTED_DEVICE, false,
		    "device %u of %s is %s, not verified", m->device, m->from,
		    mw_omemo_trust_name(m->trust));
		return;
	}
	if (!agent_rate_allow(a, m->from)) {
		commit(a);
		answer(a, m, job_id, MW_REFUSE_RATE_LIMITED,
		    agent_rate_refusal_reply_due(a, m->from),
		    "more than %u jobs a minute from %s", a->cfg.rate_per_minute, m->from);
		return;
	}
	code = mw_cancel_parse((const char *)m->plaintext, m->len, &c, reason, sizeof(reason));
	if (code == 0) {
		snprintf(job_id, sizeof(job_id), "%s", c.job_id);
		code = mw_cancel_verify(&c, a->signers, now, &key, &principals, reason,
		    sizeof(reason));
	}
	if (code == 0 && (allow = mw_policy_allowed(&a->policy, principals, m->from)) == NULL)
		code = mw_refuse_msg(MW_REFUSE_SIGNER_NOT_ALLOWED, reason, sizeof(reason),
		    "signer %s (%s) is not allowed for %s", principals, key.fp, m->from);
	if (code == 0 && !mw_omemo_jid_equal(c.audience, mw_omemo_jid(a->o)))
		code = mw_refuse_msg(MW_REFUSE_WRONG_AUDIENCE, reason, sizeof(reason),
		    "cancellation is for %s, this agent is %s", c.audience, mw_omemo_jid(a->o));
	if (code == 0)
		code = mw_cancel_check_time(&c, now, (int64_t)a->cfg.clock_skew_s,
		    (int64_t)allow->max_validity_s, reason, sizeof(reason));
	if (code != 0) {
		commit(a);
		answer(a, m, job_id, code, true, "%s", reason);
		goto out;
	}
	/* only the key that signed the job finds it */
	seen = mw_journal_lookup(a->db, key.fp, c.job_id, &found);
	if (seen < 0) {
		(void)mw_omemo_rollback(a->o);
		answer(a, m, job_id, MW_REFUSE_STORAGE, true, "journal lookup failed: %s",
		    sqlite3_errmsg(a->db));
		goto out;
	}
	if (seen == 0) {
		commit(a);
		answer(a, m, job_id, MW_REFUSE_UNKNOWN_JOB, true,
		    "no job %s signed by key %s on this agent", c.job_id, key.fp);
		goto out;
	}
	if (found.state == MW_JOURNAL_DONE) {
		char st[40];

		commit(a);
		stored_status(found.result, st, sizeof(st));
		answer(a, m, job_id, MW_REFUSE_ALREADY_FINISHED, true,
		    "job %s already finished with status %s; its result went to its requester",
		    c.job_id, st);
		goto out;
	}
	if (found.cancel_requested) {
		/* the same or another cancellation again while the first one is
		 * under way: its `cancelled` result is the answer */
		commit(a);
		agent_log("cancel-duplicate", "job=%s from=%s device=%u", c.job_id, m->from,
		    m->device);
		goto out;
	}
	if (mw_journal_cancel(a->db, key.fp, c.job_id, c.sha256) != 0 ||
	    mw_omemo_commit(a->o) != 0) {
		const char *why = sqlite3_errmsg(a->db);

		if (mw_omemo_txn_pending(a->o))
			(void)mw_omemo_rollback(a->o);
		answer(a, m, job_id, MW_REFUSE_STORAGE, true,
		    "the journal could not record the cancellation: %s", why);
		goto out;
	}
	/* committed: from here the job ends `cancelled`, restart or not */
	agent_crash_at("after_cancel");
	agent_log("cancel-accepted", "job=%s from=%s device=%u signer=%s requester=%s",
	    c.job_id, m->from, m->device, key.fp, found.from_jid);
	struct running_job *j;
	for (j = a->jobs; j != NULL; j = j->next)
		if (strcmp(j->signer, key.fp) == 0 && strcmp(j->job_id, c.job_id) == 0)
			break;
	snprintf(reason, sizeof(reason), "cancelled by %s", allow->principal);
	if (j != NULL) {
		free(j->cancel_from);
		if ((j->cancel_from = strdup(m->from)) == NULL ||
		    mw_sandbox_cancel(a->sb, j->sandbox_id, reason) != 0)
			agent_log("internal-error", "op=cancel job=%s (the job runs to its end; "
			    "the cancellation stays journaled)", c.job_id);
		j->cancel_device = m->device;
		goto out;
	}
	/* journaled but never handed to the sandbox (it refused the job):
	 * it ends here, without running */
	{
		struct running_job t;
		struct mw_result r;

		memset(&t, 0, sizeof(t));
		t.signer = key.fp;
		t.job_id = c.job_id;
		t.from_jid = found.from_jid;
		t.device = found.device;
		t.cancel_from = (char *)m->from;
		t.cancel_device = m->device;
		memset(&r, 0, sizeof(r));
		r.status = MW_JOB_CANCELLED;
		strncat(reason, " (before it started)", sizeof(reason) - strlen(reason) - 1);
		r.error = reason;
		agent_finish_job(a, &t, &r);
	}
out:
	mw_journal_entry_free(&found);
	mw_cancel_free(&c);
}
