/*
 * test_fleet_summary.c: the summary of a fleet job (runtime/fleet/summary.c)
 * -- the outcome of each target, the totals, the exit status, the table
 * and its JSON Lines form (spec/cli.md, spec/result.md).
 *
 * Why: the summary is what an operator (or a script) acts on; "failed"
 * and "did not return" must never be confused, offline must be told from
 * online-but-silent, and a single target's exit status must stay what it
 * always was.  The rows are built in memory as the job table holds them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fleet/fleet.h"

static char *
result_text(const char *status, const char *error, const char *output, uint64_t wall_us)
{
	char buf[2048], err[256] = "";

	if (strcmp(status, "refused") == 0)
		snprintf(buf, sizeof(buf), "moonwire-result 1\njob-id: J1\nstatus: refused\n"
		    "refusal: policy\nerror: \"not allowed\"\nvalues: []\n"
		    "usage: cpu_us=0 wall_us=0 instructions=0 memory_peak=0\n"
		    "output-length: 0\noutput-truncated: no\n\n");
	else {
		if (error != NULL)
			snprintf(err, sizeof(err), "error: \"%s\"\n", error);
		snprintf(buf, sizeof(buf), "moonwire-result 1\njob-id: J1\nstatus: %s\n%s"
		    "values: [42,\"x\"]\nusage: cpu_us=10 wall_us=%llu instructions=0 "
		    "memory_peak=5\noutput-length: %zu\noutput-truncated: no\n\n%s", status,
		    err, (unsigned long long)wall_us, strlen(output), output);
	}
	return strdup(buf);
}

static void
row_result(struct mw_fleet_row *r, const char *jid, const char *status,
    const char *error, const char *output, uint64_t wall_us)
{
	memset(r, 0, sizeof(*r));
	r->jid = strdup(jid);
	r->state = MW_FLEET_RESULT;
	r->status = strdup(status);
	r->result = result_text(status, error, output, wall_us);
}

static void
row_other(struct mw_fleet_row *r, const char *jid, enum mw_fleet_state st,
    enum mw_fleet_seen seen, const char *detail)
{
	memset(r, 0, sizeof(*r));
	r->jid = strdup(jid);
	r->state = st;
	r->seen = seen;
	r->detail = detail ? strdup(detail) : NULL;
}

/* ok, error, refused, not sent, offline, running, online-silent */
static struct mw_fleet_row *
mixed(size_t *n)
{
	struct mw_fleet_row *r = calloc(7, sizeof(*r));

	assert_non_null(r);
	row_result(&r[0], "ok@example.org", "ok", NULL, "up 4\nsecond line\n", 12400);
	row_result(&r[1], "err@example.org", "cpu_limit", "cpu limit exceeded", "", 1001000);
	row_result(&r[2], "ref@example.org", "refused", NULL, "", 0);
	row_other(&r[3], "unsent@example.org", MW_FLEET_UNSENT, MW_FLEET_SEEN_NOTHING,
	    "no trusted device to encrypt to: verify the agent's fingerprint first: "
	    "moonwire trust -c alice.conf unsent@example.org FINGERPRINT");
	row_other(&r[4], "off@example.org", MW_FLEET_PENDING, MW_FLEET_SEEN_NOTHING, NULL);
	row_other(&r[5], "run@example.org", MW_FLEET_PENDING, MW_FLEET_SEEN_RUNNING, NULL);
	row_other(&r[6], "quiet@example.org", MW_FLEET_PENDING, MW_FLEET_SEEN_ONLINE, NULL);
	*n = 7;
	return r;
}

static char *
render(const struct mw_fleet_row *rows, size_t n, bool json, bool rows_too)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	mw_fleet_summary_print(f, "J1", rows, n, json, rows_too);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void
test_outcomes_and_totals(void **state)
{
	size_t n;
	struct mw_fleet_row *r = mixed(&n);
	struct mw_fleet_totals t;
	static const enum mw_fleet_outcome want[] = { MW_FLEET_OUT_OK, MW_FLEET_OUT_FAILED,
		MW_FLEET_OUT_REFUSED, MW_FLEET_OUT_FAILED, MW_FLEET_OUT_OFFLINE, MW_FLEET_OUT_SILENT,
		MW_FLEET_OUT_SILENT };

	(void)state;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mw_fleet_outcome(&r[i], NULL), want[i]);
	mw_fleet_totals(r, n, &t);
	assert_int_equal(t.targeted, 7);
	assert_int_equal(t.ok, 1);
	assert_int_equal(t.failed, 2);
	assert_int_equal(t.refused, 1);
	assert_int_equal(t.offline, 1);
	assert_int_equal(t.silent, 2);
	/* a stored text that is not a result message counts as failed */
	free(r[0].result);
	r[0].result = strdup("garbage");
	assert_int_equal(mw_fleet_outcome(&r[0], NULL), MW_FLEET_OUT_FAILED);
	mw_fleet_rows_free(r, n);
}

static void
test_exit_status(void **state)
{
	size_t n;
	struct mw_fleet_row *r = mixed(&n);

	(void)state;
	/* the first row that is not ok decides: cpu_limit is a limit (4) */
	assert_int_equal(mw_fleet_exit(r, n), MW_EXIT_LIMIT);
	/* single targets keep their own status, as `send` always had */
	assert_int_equal(mw_fleet_exit(&r[0], 1), MW_EXIT_OK);
	assert_int_equal(mw_fleet_exit(&r[2], 1), MW_EXIT_REFUSED);
	assert_int_equal(mw_fleet_exit(&r[3], 1), MW_EXIT_UNAVAILABLE);
	assert_int_equal(mw_fleet_exit(&r[4], 1), MW_EXIT_UNAVAILABLE);
	assert_int_equal(mw_fleet_exit(&r[5], 1), MW_EXIT_UNAVAILABLE);
	assert_int_equal(mw_fleet_exit(&r[2], 5), MW_EXIT_REFUSED);
	assert_int_equal(mw_fleet_exit(r, 0), MW_EXIT_OK);
	mw_fleet_rows_free(r, n);
}

/* A job a signed cancellation ended exits 8, apart from a target that did
 * not return (6): the operator asked for this outcome. */
static void
test_exit_status_cancelled(void **state)
{
	struct mw_fleet_row r[2];

	(void)state;
	row_result(&r[0], "c@example.org", "cancelled", "cancelled by alice@ops (while "
	    "running)", "", 1000);
	row_other(&r[1], "off@example.org", MW_FLEET_PENDING, MW_FLEET_SEEN_NOTHING, NULL);
	assert_int_equal(MW_EXIT_CANCELLED, 8);
	assert_int_not_equal(MW_EXIT_CANCELLED, MW_EXIT_UNAVAILABLE);
	assert_int_equal(mw_exit_for_status(MW_JOB_CANCELLED), MW_EXIT_CANCELLED);
	assert_int_equal(mw_fleet_exit(&r[0], 1), MW_EXIT_CANCELLED);
	assert_int_equal(mw_fleet_exit(r, 2), MW_EXIT_CANCELLED);
	assert_int_equal(mw_fleet_exit(&r[1], 1), MW_EXIT_UNAVAILABLE);
	mw_fleet_row_free(&r[0]);
	mw_fleet_row_free(&r[1]);
}

static void
test_table(void **state)
{
	size_t n;
	struct mw_fleet_row *r = mixed(&n);
	char *out = render(r, n, false, true), *line;

	(void)state;
	/* a header, one line per target in order, the totals */
	line = strtok(out, "\n");
	assert_non_null(line);
	assert_int_equal(strncmp(line, "JID ", 4), 0);
	assert_non_null(strstr(line, "STATUS"));
	assert_non_null(strstr(line, "DETAIL"));
	static const char *const want[] = {
		"ok@example.org      ok               12 ms  up 4",
		"err@example.org     cpu_limit      1001 ms  cpu limit exceeded",
		"ref@example.org     refused              -  policy: not allowed",
		"unsent@example.org  not_sent             -  no trusted device to encrypt to: verify the agent's fingerprint first: m...",
		"off@example.org     offline              -  did not return: no available presence seen (the server keeps the job for...",
		"run@example.org     silent               -  did not return: accepted, was still running",
		"quiet@example.org   silent               -  did not return: online, no answer",
	};
	for (size_t i = 0; i < n; i++) {
		line = strtok(NULL, "\n");
		assert_non_null(line);
		assert_string_equal(line, want[i]);
	}
	line = strtok(NULL, "\n");
	assert_string_equal(line, "job J1: 7 targeted, 1 ok, 2 failed, 1 refused, "
	    "3 did not return (1 offline, 2 online but silent)");
	assert_null(strtok(NULL, "\n"));
	free(out);
	/* without rows_too: the totals line only */
	out = render(r, n, false, false);
	assert_string_equal(out, "job J1: 7 targeted, 1 ok, 2 failed, 1 refused, "
	    "3 did not return (1 offline, 2 online but silent)\n");
	free(out);
	/* values when there is no output, without their brackets */
	free(r[0].result);
	r[0].result = result_text("ok", NULL, "", 3000);
	out = render(r, 1, false, true);
	assert_non_null(strstr(out, "ok@example.org  ok                3 ms  42,\"x\"\n"));
	free(out);
	mw_fleet_rows_free(r, n);
}

static void
test_json_lines(void **state)
{
	size_t n, k = 0;
	struct mw_fleet_row *r = mixed(&n);
	char *out = render(r, n, true, true), *save = NULL;
	cJSON *o;

	(void)state;
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), k++) {
		assert_null(strstr(line, "\": "));	/* compact, one line */
		assert_non_null(o = cJSON_Parse(line));
		if (k < n)
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "from")),
			    r[k].jid);
		switch (k) {
		case 0:
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "status")), "ok");
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "output")), "up 4\nsecond line\n");
			break;
		case 2:
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "refusal")), "policy");
			break;
		case 3:
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "status")), "not_sent");
			assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "error")), "no trusted device"));
			break;
		case 4: case 5: case 6:
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "status")), "no_answer");
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "job_id")), "J1");
			assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "state")), k == 4 ? "offline" : k == 5 ? "running" : "online");
			break;
		case 7:
			assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "summary")));
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "targeted")), 7);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "ok")), 1);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "failed")), 2);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "refused")), 1);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "did_not_return")), 3);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "offline")), 1);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "silent")), 2);
			assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "exit_status")), MW_EXIT_LIMIT);
			break;
		default:
			break;
		}
		cJSON_Delete(o);
	}
	assert_int_equal(k, n + 1);
	free(out);
	/* as `send` ends: results were printed on arrival, only the rest now */
	out = render(r, n, true, false);
	k = 0;
	save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		k++;
	assert_int_equal(k, 4 + 1);	/* not_sent, 3 no_answer, summary */
	free(out);
	mw_fleet_rows_free(r, n);
}

static void
test_thousand_targets(void **state)
{
	size_t n = 1000, lines = 0;
	struct mw_fleet_row *r = calloc(n, sizeof(*r));
	struct mw_fleet_totals t;
	char *out, jid[64];

	(void)state;
	assert_non_null(r);
	for (size_t i = 0; i < n; i++) {
		snprintf(jid, sizeof(jid), "agent%04zu@example.org", i);
		if (i % 10 == 9)
			row_other(&r[i], jid, MW_FLEET_PENDING, MW_FLEET_SEEN_NOTHING, NULL);
		else
			row_result(&r[i], jid, "ok", NULL, "fine\n", 1000);
	}
	out = render(r, n, false, true);
	for (char *p = out; *p != '\0'; p++)
		lines += *p == '\n';
	assert_int_equal(lines, n + 2);
	assert_non_null(strstr(out, "job J1: 1000 targeted, 900 ok, 0 failed, 0 refused, "
	    "100 did not return (100 offline, 0 online but silent)\n"));
	mw_fleet_totals(r, n, &t);
	assert_int_equal(t.ok, 900);
	assert_int_equal(mw_fleet_exit(r, n), MW_EXIT_UNAVAILABLE);
	free(out);
	mw_fleet_rows_free(r, n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes_and_totals),
		cmocka_unit_test(test_exit_status),
		cmocka_unit_test(test_exit_status_cancelled),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_json_lines),
		cmocka_unit_test(test_thousand_targets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
