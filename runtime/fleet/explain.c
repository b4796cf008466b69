/*
 * explain.c: what the operator is told when a fleet wait ends with
 * targets out -- what a server's error about a target means, why a target
 * may not have answered, and the exact command that collects the job
 * later.  Words only: nothing here changes a row (fleetconn.c and
 * fleetsend.c do).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fleet/fleet.h"

/* What an IQ error condition means for a send to jid. */
void
mw_fleet_explain_iq_error(const struct mw_fleet *f, const struct mw_fleet_target *t,
    const char *jid, char *buf, size_t len)
{
	const char *c = t->iq_error, *domain = strchr(jid, '@') + 1;
	const char *own_domain = strchr(f->acct->jid, '@') + 1;
	char text[300] = "";

	if (t->iq_error_text[0] != '\0')
		snprintf(text, sizeof(text), ": %s", t->iq_error_text);
	if (c[0] == '\0')
		snprintf(buf, len, "the server returned an error about %s", jid);
	else if (strcmp(domain, own_domain) != 0 &&
	    (strcmp(c, "remote-server-not-found") == 0 ||
	    strcmp(c, "remote-server-timeout") == 0 || strcmp(c, "not-allowed") == 0 ||
	    strcmp(c, "service-unavailable") == 0))
		snprintf(buf, len, "remote domain %s unreachable (%s%s): check the JID, "
		    "or the servers cannot reach each other", domain, c, text);
	else if (strcmp(c, "item-not-found") == 0 || strcmp(c, "forbidden") == 0)
		/* Prosody answers forbidden alike for an account that does not
		 * exist and one that never published OMEMO keys */
		/* the reason first: the summary table shows its first words */
		snprintf(buf, len, "no such account or no OMEMO device list (%s): %s "
		    "does not exist, or no agent has ever connected with it", c, jid);
	else if (strcmp(c, "service-unavailable") == 0 ||
	    strcmp(c, "recipient-unavailable") == 0)
		snprintf(buf, len, "no such account %s (%s%s)", jid, c, text);
	else if (strcmp(c, "remote-server-not-found") == 0 ||
	    strcmp(c, "remote-server-timeout") == 0)
		snprintf(buf, len, "remote domain %s unreachable (%s%s)", domain, c, text);
	else
		snprintf(buf, len, "the server answered %s%s about %s", c, text, jid);
}

void
mw_fleet_explain_missing(struct mw_fleet *f)
{
	char fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
	bool any_sent = false;

	for (size_t i = 0; i < f->nt; i++) {
		const struct mw_fleet_row *r = &f->rows[i];

		if (r->state != MW_FLEET_PENDING)
			continue;
		fprintf(stderr, "moonwire %s: %s: no result for job %s %s\n", f->cmd, r->jid,
		    f->job_id, f->failed ? "(connection failed)" : "in time");
		if (f->failed || !f->t[i].sent)
			continue;
		any_sent = true;
		if (r->seen == MW_FLEET_SEEN_RUNNING)
			fprintf(stderr, "moonwire %s: %s accepted the job and was still "
			    "running it\n", f->cmd, r->jid);
		else if (r->seen == MW_FLEET_SEEN_ONLINE)
			fprintf(stderr, "moonwire %s: %s is online but did not answer\n",
			    f->cmd, r->jid);
	}
	if (!any_sent)
		return;
	fprintf(stderr, "moonwire %s: likely causes: the agent is offline or busy; "
	    "or it has not verified this device (it ignores jobs from unverified "
	    "devices without answering); or %s is in no `allow` line of its policy\n",
	    f->cmd, f->acct->jid);
	if (mw_omemo_own_fingerprint(f->o, fp) == 0) {
		mw_omemo_fp_group(fp, '-', g);
		fprintf(stderr, "moonwire %s: this device: %s device %u fingerprint %s\n"
		    "moonwire %s: the agent's owner verifies it with:\n"
		    "    moonwire trust -c AGENT_CONFIG %s %s\n", f->cmd, f->acct->jid,
		    mw_omemo_device_id(f->o), g, f->cmd, f->acct->jid, g);
	}
}

/* path as one shell word (single quotes when it needs any). */
static void
shell_word(const char *s, char *out, size_t len)
{
	size_t k = 0;

	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789/._-+@:,=") == strlen(s)) {
		snprintf(out, len, "%s", s);
		return;
	}
	if (len < 3)
		return;
	out[k++] = '\'';
	for (; *s != '\0' && k + 6 < len; s++) {
		if (*s == '\'') {
			memcpy(out + k, "'\\''", 4);
			k += 4;
		} else
			out[k++] = *s;
	}
	out[k++] = '\'';
	out[k] = '\0';
}

void
mw_fleet_hint_later(struct mw_fleet *f, enum mw_fleet_stop why)
{
	char abs[PATH_MAX], word[2 * PATH_MAX + 8];
	size_t out = 0;

	for (size_t i = 0; i < f->nt; i++)
		if (f->rows[i].state == MW_FLEET_PENDING)
			out++;
	if (out == 0)
		return;
	shell_word(realpath(f->config, abs) != NULL ? abs : f->config, word, sizeof(word));
	fprintf(stderr, "moonwire %s: job %s: %zu of %zu targets did not return %s; "
	    "the job may still run on them (until its --ttl passes)\n", f->cmd,
	    f->job_id, out, f->nt, why == MW_FLEET_SIGNAL ? "before the wait was "
	    "interrupted" : why == MW_FLEET_CONN_FAILED ? "before the connection failed" :
	    "in time");
	fprintf(stderr, "moonwire %s: collect the results later with: moonwire results "
	    "-c %s %s\n", f->cmd, word, f->job_id);
}
