/*
 * summary.c: how a fleet job is reported -- each result as it arrives,
 * then one line per target and the totals (or their JSON Lines), and the
 * exit status that follows from them (spec/cli.md, spec/result.md).
 *
 * Everything here works on job table rows, so `send` at its end and
 * `results` later print the same thing from the same data.  Each function
 * is one pass over the rows (a summary of 1,000 targets is 1,000 parses of
 * a stored result, no lookups).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fleet/fleet.h"

/* Longest detail shown in a table line, bytes (cut on a UTF-8 boundary). */
#define DETAIL_MAX 72

enum mw_fleet_outcome
mw_fleet_outcome(const struct mw_fleet_row *r, struct mw_result_msg *m)
{
	struct mw_result_msg local;
	struct mw_result_msg *p = m != NULL ? m : &local;
	enum mw_fleet_outcome o;

	memset(p, 0, sizeof(*p));
	if (r->state == MW_FLEET_UNSENT)
		return MW_FLEET_OUT_FAILED;
	if (r->state != MW_FLEET_RESULT)
		return r->seen == MW_FLEET_SEEN_NOTHING ? MW_FLEET_OUT_OFFLINE : MW_FLEET_OUT_SILENT;
	if (r->result == NULL ||
	    mw_result_message_parse(r->result, strlen(r->result), p) != 0) {
		memset(p, 0, sizeof(*p));
		return MW_FLEET_OUT_FAILED;
	}
	if (strcmp(p->status, "refused") == 0)
		o = MW_FLEET_OUT_REFUSED;
	else if (strcmp(p->status, "ok") == 0)
		o = MW_FLEET_OUT_OK;
	else
		o = MW_FLEET_OUT_FAILED;
	if (m == NULL)
		mw_result_msg_free(&local);
	return o;
}

void
mw_fleet_totals(const struct mw_fleet_row *rows, size_t n, struct mw_fleet_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->targeted = n;
	for (size_t i = 0; i < n; i++) {
		const struct mw_fleet_row *r = &rows[i];

		if (r->state == MW_FLEET_PENDING) {
			if (r->seen == MW_FLEET_SEEN_NOTHING)
				t->offline++;
			else
				t->silent++;
		} else if (r->state == MW_FLEET_UNSENT)
			t->failed++;
		else if (r->status != NULL && strcmp(r->status, "ok") == 0)
			t->ok++;
		else if (r->status != NULL && strcmp(r->status, "refused") == 0)
			t->refused++;
		else
			t->failed++;
	}
}

int
mw_fleet_exit(const struct mw_fleet_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct mw_result_msg m;
		enum mw_fleet_outcome o = mw_fleet_outcome(&rows[i], &m);
		int rc;

		if (o == MW_FLEET_OUT_OK) {
			mw_result_msg_free(&m);
			continue;
		}
		rc = m.job_id != NULL ? mw_result_msg_exit(&m) : MW_EXIT_UNAVAILABLE;
		mw_result_msg_free(&m);
		return rc == MW_EXIT_OK ? MW_EXIT_UNAVAILABLE : rc;
	}
	return MW_EXIT_OK;
}

/* ---- one result as it arrives (as `moonwire send` always printed it) ---- */

void
mw_fleet_result_print(FILE *f, const char *jid, const struct mw_result_msg *m,
    bool json, bool multi)
{
	if (json) {
		char *j = mw_result_msg_json(m, jid);

		if (j != NULL) {
			fprintf(f, "%s\n", j);
			free(j);
		}
		fflush(f);
		return;
	}
	if (multi)
		fprintf(f, "== %s\n", jid);
	if (m->refusal != NULL)
		fprintf(f, "refused: %s: %s\n", m->refusal, m->error ? m->error : "");
	else {
		fprintf(f, "status: %s\n", m->status);
		if (m->error != NULL)
			fprintf(f, "error: %s\n", m->error);
	}
	for (int i = 0; i < cJSON_GetArraySize(m->values); i++) {
		cJSON *v = cJSON_GetArrayItem(m->values, i);
		char *p = cJSON_IsString(v) ? NULL : cJSON_PrintUnformatted(v);
		const char *text = cJSON_IsString(v) ? cJSON_GetStringValue(v) : p;

		if (cJSON_GetArraySize(m->values) > 1)
			fprintf(f, "returned #%d: %s\n", i + 1, text ? text : "?");
		else
			fprintf(f, "returned: %s\n", text ? text : "?");
		free(p);
	}
	if (m->output_len > 0) {
		fprintf(f, "output:\n");
		fwrite(m->output, 1, m->output_len, f);
		if (m->output[m->output_len - 1] != '\n')
			fputc('\n', f);
		if (m->output_truncated)
			fprintf(f, "(output truncated)\n");
	}
	if (m->refusal == NULL)
		fprintf(f, "usage: cpu %.3f ms, wall %.3f ms, %" PRIu64 " bytes peak Lua memory\n",
		    (double)m->usage.cpu_us / 1000.0, (double)m->usage.wall_us / 1000.0,
		    m->usage.memory_peak);
	fflush(f);
}

/* ---- the table ---- */

/* The first line of s (up to n bytes), cut to DETAIL_MAX on a UTF-8
 * boundary, TABs and control bytes as spaces, into out. */
static void
first_line(const char *s, size_t n, char out[DETAIL_MAX + 4])
{
	size_t k = 0;

	while (k < n && s[k] != '\n' && s[k] != '\0')
		k++;
	if (k > DETAIL_MAX) {
		size_t cut = DETAIL_MAX;

		while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
			cut--;
		memcpy(out, s, cut);
		memcpy(out + cut, "...", 4);
	} else {
		memcpy(out, s, k);
		out[k] = '\0';
	}
	for (char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* Status word, duration and detail of one row for the table. */
static void
describe(const struct mw_fleet_row *r, enum mw_fleet_outcome o,
    const struct mw_result_msg *m, const char **status, char dur[24],
    char detail[DETAIL_MAX + 4])
{
	char buf[512];

	snprintf(dur, 24, "-");
	detail[0] = '\0';
	switch (o) {
	case MW_FLEET_OUT_OFFLINE:
		*status = "offline";
		first_line("did not return: no available presence seen (the server "
		    "keeps the job for the agent)", SIZE_MAX, detail);
		return;
	case MW_FLEET_OUT_SILENT:
		*status = "silent";
		first_line(r->seen == MW_FLEET_SEEN_RUNNING ? "did not return: accepted, "
		    "was still running" : "did not return: online, no answer", SIZE_MAX,
		    detail);
		return;
	default:
		break;
	}
	if (m->job_id == NULL) {
		*status = r->state == MW_FLEET_UNSENT ? "not_sent" : "unreadable";
		first_line(r->detail != NULL ? r->detail : "unreadable result message",
		    SIZE_MAX, detail);
		return;
	}
	*status = m->status;
	if (m->refusal != NULL) {
		snprintf(buf, sizeof(buf), "%s: %s", m->refusal, m->error ? m->error : "");
		first_line(buf, SIZE_MAX, detail);
		return;
	}
	if (m->usage.wall_us >= 10000000)
		snprintf(dur, 24, "%.1f s", (double)m->usage.wall_us / 1e6);
	else
		snprintf(dur, 24, "%" PRIu64 " ms", (m->usage.wall_us + 500) / 1000);
	if (m->error != NULL)
		first_line(m->error, strlen(m->error), detail);
	else if (m->output_len > 0)
		first_line(m->output, m->output_len, detail);
	else if (cJSON_GetArraySize(m->values) > 0) {
		char *v = cJSON_PrintUnformatted(m->values);

		if (v != NULL) {
			size_t len = strlen(v);

			/* the values without their brackets, as the summary line */
			first_line(v + 1, len >= 2 ? len - 2 : 0, detail);
			free(v);
		}
	}
}

static char *
json_missing(const struct mw_fleet_row *r, const char *job_id, enum mw_fleet_outcome o)
{
	cJSON *j = cJSON_CreateObject();
	char *s = NULL;

	if (j == NULL)
		return NULL;
	if (cJSON_AddStringToObject(j, "from", r->jid) == NULL ||
	    cJSON_AddStringToObject(j, "job_id", job_id) == NULL)
		goto out;
	if (r->state == MW_FLEET_UNSENT || r->state == MW_FLEET_RESULT) {
		if (cJSON_AddStringToObject(j, "status", r->state == MW_FLEET_UNSENT ?
		    "not_sent" : "unreadable") == NULL ||
		    cJSON_AddStringToObject(j, "error", r->detail != NULL ? r->detail :
		    "unreadable result message") == NULL)
			goto out;
	} else if (cJSON_AddStringToObject(j, "status", "no_answer") == NULL ||
	    cJSON_AddStringToObject(j, "state", o == MW_FLEET_OUT_OFFLINE ? "offline" :
	    r->seen == MW_FLEET_SEEN_RUNNING ? "running" : "online") == NULL)
		goto out;
	s = cJSON_PrintUnformatted(j);
out:
	cJSON_Delete(j);
	return s;
}

static void
print_summary_json(FILE *f, const char *job_id, const struct mw_fleet_totals *t,
    int exit_status)
{
	cJSON *j = cJSON_CreateObject();
	char *s = NULL;

	if (j != NULL && cJSON_AddTrueToObject(j, "summary") != NULL &&
	    cJSON_AddStringToObject(j, "job_id", job_id) != NULL &&
	    cJSON_AddNumberToObject(j, "targeted", (double)t->targeted) != NULL &&
	    cJSON_AddNumberToObject(j, "ok", (double)t->ok) != NULL &&
	    cJSON_AddNumberToObject(j, "failed", (double)t->failed) != NULL &&
	    cJSON_AddNumberToObject(j, "refused", (double)t->refused) != NULL &&
	    cJSON_AddNumberToObject(j, "did_not_return",
	    (double)(t->offline + t->silent)) != NULL &&
	    cJSON_AddNumberToObject(j, "offline", (double)t->offline) != NULL &&
	    cJSON_AddNumberToObject(j, "silent", (double)t->silent) != NULL &&
	    cJSON_AddNumberToObject(j, "exit_status", exit_status) != NULL)
		s = cJSON_PrintUnformatted(j);
	if (s != NULL)
		fprintf(f, "%s\n", s);
	free(s);
	cJSON_Delete(j);
}

void
mw_fleet_summary_print(FILE *f, const char *job_id, const struct mw_fleet_row *rows,
    size_t n, bool json, bool rows_too)
{
	struct mw_fleet_totals t;
	int width = 3, exit_status;

	mw_fleet_totals(rows, n, &t);
	exit_status = mw_fleet_exit(rows, n);
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(rows[i].jid) > width)
			width = (int)strlen(rows[i].jid);
	if (rows_too && !json)
		fprintf(f, "%-*s  %-12s  %8s  %s\n", width, "JID", "STATUS", "TIME", "DETAIL");
	for (size_t i = 0; (rows_too || json) && i < n; i++) {
		struct mw_result_msg m;
		enum mw_fleet_outcome o = mw_fleet_outcome(&rows[i], &m);
		const char *status = "";
		char dur[24], detail[DETAIL_MAX + 4];

		if (json && m.job_id != NULL && !rows_too) {
			/* printed when it arrived */
		} else if (json) {
			char *s = m.job_id != NULL ? mw_result_msg_json(&m, rows[i].jid) :
			    json_missing(&rows[i], job_id, o);

			if (s != NULL)
				fprintf(f, "%s\n", s);
			free(s);
		} else {
			describe(&rows[i], o, &m, &status, dur, detail);
			fprintf(f, "%-*s  %-12s  %8s  %s\n", width, rows[i].jid, status, dur,
			    detail);
		}
		mw_result_msg_free(&m);
	}
	if (json)
		print_summary_json(f, job_id, &t, exit_status);
	else
		fprintf(f, "job %s: %zu targeted, %zu ok, %zu failed, %zu refused, "
		    "%zu did not return (%zu offline, %zu online but silent)\n", job_id,
		    t.targeted, t.ok, t.failed, t.refused, t.offline + t.silent, t.offline,
		    t.silent);
	fflush(f);
}
