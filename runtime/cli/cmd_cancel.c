/*
 * cmd_cancel.c: `moonwire cancel JOB`, the operator's way to stop a job
 * already sent (spec/cli.md).
 *
 * Each target of JOB that has no outcome yet in the job table (or those of
 * --to) gets a cancellation signed with the operator's key -- the key that
 * signed the job, the only one its agent accepts (spec/envelope.md,
 * "Cancellation") -- over the same fan-out connection `send` uses.  An
 * agent answers in one of two ways: the job's own result, status
 * `cancelled` (or its real outcome if it finished first), which is stored
 * as the job's result; or an answer to the cancellation (`answer-to:
 * cancel`: already finished, unknown job, refused), which is stored apart
 * and never taken for the job's result.  Either ends the wait for that
 * target.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/agent/agent.h"
#include "runtime/fleet/fleet.h"

#include "cli.h"

#define CANCEL_TTL_DEFAULT_MS	(5 * 60 * 1000)
#define CANCEL_TIMEOUT_DEFAULT_MS	(30 * 1000)

static void
cancel_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire cancel -c CONFIG [-k KEY] [--to JID ...] [--timeout DURATION]\n"
	    "           [--ttl DURATION] [--json] [--omemo VERSION] JOB\n"
	    "\n"
	    "Sends a signed cancellation of job JOB to each of its targets that has no\n"
	    "outcome yet (or to those given with --to): a running job is stopped and\n"
	    "answers `cancelled`, a job not started yet never starts.\n"
	    "\n"
	    "  -c CONFIG           the operator's account file (and its signing_key)\n"
	    "  -k KEY              the key that signed the job (default: signing_key)\n"
	    "  --to JID            only this target of the job (repeatable)\n"
	    "  --timeout DURATION  how long to wait for the answers (default 30s)\n"
	    "  --ttl DURATION      how long the cancellation is valid (default 5m)\n"
	    "  --json              JSON Lines: the answers, then a summary object\n"
	    "  --omemo VERSION     legacy or 2: speak only that OMEMO version; a target\n"
	    "                      that does not offer it gets nothing (not_sent)\n"
	    "                      (default: OMEMO 2 where the agent publishes it)\n"
	    "\n"
	    "exit status: 0 nothing of the job runs any more (cancelled or already\n"
	    "finished); 7 an agent refused the cancellation (e.g. unknown_job); 6 no\n"
	    "answer in time or not sent; 2 usage, no such job, a JID that is not a\n"
	    "target.\n");
}

enum cancel_outcome { C_CANCELLED, C_FINISHED, C_REFUSED, C_NO_ANSWER, C_NOT_SENT };

static const char *const outcome_name[] = {
	"cancelled", "already_finished", "refused", "no_answer", "not_sent",
};

/* The outcome of target i after the wait; detail: the status or refusal. */
static enum cancel_outcome
outcome_of(struct mw_fleet *f, size_t i, char *detail, size_t dl)
{
	struct mw_result_msg m;
	char *text = NULL;
	enum cancel_outcome o = C_NO_ANSWER;

	snprintf(detail, dl, "-");
	if (f->rows[i].state == MW_FLEET_RESULT && f->rows[i].result != NULL &&
	    mw_result_message_parse(f->rows[i].result, strlen(f->rows[i].result), &m) == 0) {
		snprintf(detail, dl, "%s", m.status);
		o = strcmp(m.status, "cancelled") == 0 ? C_CANCELLED : C_FINISHED;
		mw_result_msg_free(&m);
		return o;
	}
	if (f->rows[i].state != MW_FLEET_PENDING)
		return C_FINISHED;
	/* the job's row stays pending: the job was sent, its cancel was not */
	if (f->t[i].cancel_unsent)
		return C_NOT_SENT;
	if (mw_jobtable_cancel_answer_get(f->db, f->job_id, f->rows[i].jid,
	    f->cancel_since_ms, &text) == 1 &&
	    mw_result_message_parse(text, strlen(text), &m) == 0) {
		snprintf(detail, dl, "%s", m.refusal != NULL ? m.refusal : m.status);
		o = m.refusal != NULL && strcmp(m.refusal, "already_finished") == 0 ?
		    C_FINISHED : C_REFUSED;
		mw_result_msg_free(&m);
	}
	free(text);
	return o;
}

static int
report(struct mw_fleet *f, const bool *asked, bool json)
{
	size_t n[5] = { 0 };
	char detail[128];

	for (size_t i = 0; i < f->nt; i++) {
		enum cancel_outcome o;

		if (!asked[i])
			continue;
		o = outcome_of(f, i, detail, sizeof(detail));
		n[o]++;
		if (!json)
			printf("%-30s %-17s %s\n", f->rows[i].jid, outcome_name[o], detail);
	}
	if (json) {
		cJSON *s = cJSON_CreateObject();
		char *line = NULL;

		if (s != NULL && cJSON_AddBoolToObject(s, "cancel_summary", true) != NULL &&
		    cJSON_AddStringToObject(s, "job_id", f->job_id) != NULL &&
		    cJSON_AddNumberToObject(s, "cancelled", (double)n[C_CANCELLED]) != NULL &&
		    cJSON_AddNumberToObject(s, "already_finished", (double)n[C_FINISHED]) != NULL &&
		    cJSON_AddNumberToObject(s, "refused", (double)n[C_REFUSED]) != NULL &&
		    cJSON_AddNumberToObject(s, "no_answer", (double)n[C_NO_ANSWER]) != NULL &&
		    cJSON_AddNumberToObject(s, "not_sent", (double)n[C_NOT_SENT]) != NULL)
			line = cJSON_PrintUnformatted(s);
		if (line != NULL)
			printf("%s\n", line);
		free(line);
		cJSON_Delete(s);
	} else
		printf("cancel of job %s: %zu cancelled, %zu already finished, %zu refused, "
		    "%zu no answer, %zu not sent\n", f->job_id, n[C_CANCELLED], n[C_FINISHED],
		    n[C_REFUSED], n[C_NO_ANSWER], n[C_NOT_SENT]);
	if (n[C_NO_ANSWER] > 0 || n[C_NOT_SENT] > 0)
		return MW_EXIT_UNAVAILABLE;
	return n[C_REFUSED] > 0 ? MW_EXIT_REFUSED : MW_EXIT_OK;
}

int
mw_cmd_cancel(int argc, char **argv)
{
	enum { OPT_TO = 256, OPT_TIMEOUT, OPT_TTL, OPT_JSON, OPT_OMEMO };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "to", required_argument, NULL, OPT_TO },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "omemo", required_argument, NULL, OPT_OMEMO },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mw_omemo_account acct;
	struct mw_fleet f;
	struct mw_fleet_job_info info;
	struct mw_ssh_signer *key = NULL;
	const char *config = NULL, *keypath = NULL;
	char **to = NULL, **sigs = NULL, err[512];
	bool *asked = NULL, json = false;
	enum mw_omemo_version omemo = MW_OMEMO_VERSION_AUTO;
	size_t nto = 0, pending = 0;
	uint64_t timeout_ms = CANCEL_TIMEOUT_DEFAULT_MS, ttl_ms = CANCEL_TTL_DEFAULT_MS;
	int ch, rc = MW_EXIT_USAGE, found;
	time_t now;

	memset(&acct, 0, sizeof(acct));
	memset(&f, 0, sizeof(f));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:k:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'k': keypath = optarg; break;
		case OPT_TO: {
			char norm[2 * MW_FLEET_PART_MAX + 2], why[160], **v;

			if (mw_fleet_jid_normalize(optarg, strlen(optarg), norm, sizeof(norm),
			    why, sizeof(why)) != 0) {
				fprintf(stderr, "moonwire cancel: --to %s: %s\n", optarg, why);
				goto out;
			}
			if ((v = realloc(to, (nto + 1) * sizeof(*to))) == NULL ||
			    (v[nto] = strdup(norm)) == NULL) {
				if (v != NULL)
					to = v;
				rc = MW_EXIT_UNAVAILABLE;
				goto out;
			}
			to = v;
			nto++;
			break;
		}
		case OPT_TIMEOUT:
		case OPT_TTL:
			if (mw_parse_duration_ms(optarg, ch == OPT_TTL ? &ttl_ms : &timeout_ms) != 0 ||
			    (ch == OPT_TTL && ttl_ms < 1000)) {
				fprintf(stderr, "moonwire cancel: --%s: a duration%s\n",
				    ch == OPT_TTL ? "ttl" : "timeout",
				    ch == OPT_TTL ? " of at least 1s" : "");
				goto out;
			}
			break;
		case OPT_JSON: json = true; break;
		case OPT_OMEMO:
			if (mw_omemo_version_parse(optarg, &omemo) != 0 ||
			    omemo == MW_OMEMO_VERSION_AUTO) {
				fprintf(stderr, "moonwire cancel: --omemo: legacy or 2\n");
				goto out;
			}
			break;
		case 'h': cancel_usage(stdout); rc = MW_EXIT_OK; goto out;
		default: cancel_usage(stderr); goto out;
		}
	}
	if (config == NULL || optind != argc - 1) {
		cancel_usage(stderr);
		goto out;
	}
	if (!cli_job_id_ok(argv[optind])) {
		fprintf(stderr, "moonwire cancel: %s: not a job id\n", argv[optind]);
		goto out;
	}
	if (mw_omemo_account_load_err(&acct, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire cancel: %s\n", err);
		goto out;
	}
	if (acct.password == NULL) {
		fprintf(stderr, "moonwire cancel: %s: no password or password_file\n", config);
		goto out;
	}
	if ((rc = cli_signing_key("cancel", config, keypath, &key)) != 0)
		goto out;
	rc = MW_EXIT_UNAVAILABLE;
	f.json = json;
	f.print_results = true;
	if (mw_fleet_open(&f, "cancel", config, &acct) != 0)
		goto out;
	mw_omemo_set_send_version(f.o, omemo);
	snprintf(f.job_id, sizeof(f.job_id), "%s", argv[optind]);
	if ((found = mw_jobtable_job(f.db, f.job_id, &info)) <= 0) {
		if (found == 0)
			fprintf(stderr, "moonwire cancel: no job %s in %s (`moonwire jobs -c %s` "
			    "lists them)\n", f.job_id, acct.db, config);
		rc = found == 0 ? MW_EXIT_USAGE : MW_EXIT_UNAVAILABLE;
		goto out;
	}
	if (mw_fleet_load(&f) != 0)
		goto out;
	for (size_t i = 0; i < nto; i++)
		if (mw_fleet_find(&f, to[i]) < 0) {
			fprintf(stderr, "moonwire cancel: %s is not a target of job %s\n", to[i],
			    f.job_id);
			rc = MW_EXIT_USAGE;
			goto out;
		}
	if (nto > 0 && mw_fleet_keep(&f, to, nto) != 0)
		goto out;
	if ((sigs = calloc(f.nt, sizeof(*sigs))) == NULL ||
	    (asked = calloc(f.nt, sizeof(*asked))) == NULL)
		goto out;
	now = time(NULL);
	for (size_t i = 0; i < f.nt; i++) {
		size_t len;

		if (f.rows[i].state != MW_FLEET_PENDING) {
			if (!json)
				fprintf(stderr, "moonwire cancel: %s: nothing to cancel, the job "
				    "already has its outcome (%s)\n", f.rows[i].jid,
				    f.rows[i].status != NULL ? f.rows[i].status : "not sent");
			continue;
		}
		if (mw_cancel_sign(key, f.rows[i].jid, f.job_id, (int64_t)now,
		    (int64_t)now + (int64_t)(ttl_ms / 1000), &sigs[i], &len, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "moonwire cancel: %s: %s\n", f.rows[i].jid, err);
			goto out;
		}
		f.t[i].envelope = sigs[i];
		f.t[i].envelope_len = len;
		asked[i] = true;
		pending++;
	}
	if (pending == 0) {
		rc = MW_EXIT_OK;
		goto out;
	}
	f.cancel_since_ms = (int64_t)now * 1000;
	if (mw_fleet_connect(&f) != 0)
		goto out;
	(void)mw_fleet_wait(&f, timeout_ms, false);
	rc = report(&f, asked, json);
out:
	for (size_t i = 0; sigs != NULL && i < f.nt; i++)
		free(sigs[i]);
	free(sigs);
	free(asked);
	for (size_t i = 0; i < nto; i++)
		free(to[i]);
	free(to);
	mw_fleet_close(&f);
	mw_ssh_signer_free(key);
	mw_omemo_account_free(&acct);
	return rc;
}
