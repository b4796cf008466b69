/*
 * test_agent.c: unit tests for the agent's private pieces (runtime/agent/agent.h, runtime/result/result.h):
 * the result message, the job journal, the agent configuration, and the
 * policy's `allow` / `interactive` lines.
 *
 * Why this exists: these are the parts of the agent that decide what a
 * remote sender gets back and what the agent remembers across a crash.
 *   - The result message travels in an XMPP <body>: one byte that XML 1.0
 *     cannot carry (a control character, U+FFFE, invalid UTF-8) makes the
 *     server kill the stream, and a text over MW_OMEMO_MAX_PLAINTEXT cannot
 *     be sent at all -- either way the sender never learns what happened.
 *     The parser on the `moonwire send` side must be exact, or a result can
 *     be misread (a duplicated status, a short output).
 *   - The journal is the replay cache and the crash record: a job accepted
 *     in a rolled-back transaction must leave no row, an accepted job must
 *     never run twice, and after a restart every possibly-running job must
 *     be reported as interrupted exactly once.
 *   - The configuration and the policy fail closed and name FILE:LINE: a
 *     typo must refuse the start, not silently drop a setting or a grant.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/agent/agent.h"
#include "wire/mw_wire.h"

static char tmpdir[PATH_MAX];	/* canonical, per run */

static int
setup_dir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/mw-agent-XXXXXX";
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, tmpdir) == NULL)
		return -1;
	return 0;
}

static int
teardown_dir(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
tmp_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* ---- value trees, as the sandbox encodes a job's returned values ---- */

static void
v_str(struct mw_buf *b, const char *s, size_t n)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_STRING), 0);
	assert_int_equal(mw_buf_put_string(b, s, n), 0);
}

static void
v_int(struct mw_buf *b, int64_t i)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_INT), 0);
	assert_int_equal(mw_buf_put_u64(b, (uint64_t)i), 0);
}

static void
v_num(struct mw_buf *b, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	assert_int_equal(mw_buf_put_u8(b, MW_V_NUMBER), 0);
	assert_int_equal(mw_buf_put_u64(b, u), 0);
}

static void
v_table(struct mw_buf *b, uint32_t pairs)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_TABLE), 0);
	assert_int_equal(mw_buf_put_u32(b, pairs), 0);
}

/* Result whose values are one string of n bytes of c. */
static void
result_with_string_value(struct mw_result *r, struct mw_buf *b, char c, size_t n)
{
	char *s = malloc(n);
	assert_non_null(s);
	memset(s, c, n);
	mw_buf_init(b, MW_BUF_DEFAULT_MAX);
	v_table(b, 1);
	v_int(b, 1);
	v_str(b, s, n);
	free(s);
	memset(r, 0, sizeof(*r));
	r->status = MW_JOB_OK;
	r->values = (uint8_t *)mw_buf_ptr(b);
	r->values_len = mw_buf_avail(b);
}

/*
 * XML 1.0 safe UTF-8: well-formed, no C0 control but TAB and LF, no DEL, no
 * surrogates, no U+FFFE / U+FFFF.  Returns the offset of the first bad byte
 * or -1.
 */
static long
xml_unsafe_at(const char *text, size_t n)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 :
		    (c >> 3) == 30 ? 4 : 0;
		uint32_t cp;

		if (len == 0 || i + len > n)
			return (long)i;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return (long)i;
		if (len == 1) {
			if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F)
				return (long)i;
		} else if (len == 2) {
			if (c < 0xC2)
				return (long)i;
		} else if (len == 3) {
			cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
			if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE ||
			    cp == 0xFFFF)
				return (long)i;
		} else {
			cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
			    ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
			if (cp < 0x10000 || cp > 0x10FFFF)
				return (long)i;
		}
		i += len;
	}
	return -1;
}

static void
assert_xml_safe(const char *text)
{
	long at = xml_unsafe_at(text, strlen(text));
	if (at >= 0)
		fail_msg("byte %ld of the result message is not XML-safe (0x%02x)", at,
		    (unsigned char)text[at]);
}

/* Renders, checks the invariants every message must hold, parses back. */
static char *
render_parse(const char *job_id, const struct mw_result *r, int refusal,
    const char *reason, uint32_t max_output, struct mw_result_msg *m)
{
	char *text = mw_result_message(job_id, r, refusal, reason, max_output);
	assert_non_null(text);
	assert_true(strlen(text) <= MW_OMEMO_MAX_PLAINTEXT);
	/* version 2: one summary line, then the version line */
	const char *nl = strchr(text, '\n');
	assert_non_null(nl);
	assert_true(nl - text > 0 && nl - text <= MW_RESULT_SUMMARY_MAX + 3);
	assert_memory_equal(nl + 1, MW_RESULT_MAGIC_V2 "\n", strlen(MW_RESULT_MAGIC_V2) + 1);
	assert_xml_safe(text);
	assert_int_equal(mw_result_message_parse(text, strlen(text), m), 0);
	assert_int_equal(m->version, 2);
	return text;
}

/* ---- 1. the result message ---- */

static void
test_result_ok_roundtrip(void **state)
{
	(void)state;
	struct mw_buf b;
	struct mw_result r;
	struct mw_result_msg m;
	static const char out[] = "line one\nline\ttwo\n";

	/* return "héllo", 42, 1.5, true, {10, 20}, {a = "x"} */
	mw_buf_init(&b, 4096);
	v_table(&b, 6);
	v_int(&b, 1); v_str(&b, "h\xC3\xA9llo", 6);
	v_int(&b, 2); v_int(&b, 42);
	v_int(&b, 3); v_num(&b, 1.5);
	v_int(&b, 4); assert_int_equal(mw_buf_put_u8(&b, MW_V_TRUE), 0);
	v_int(&b, 5); v_table(&b, 2); v_int(&b, 2); v_int(&b, 20); v_int(&b, 1); v_int(&b, 10);
	v_int(&b, 6); v_table(&b, 1); v_str(&b, "a", 1); v_str(&b, "x", 1);

	memset(&r, 0, sizeof(r));
	r.status = MW_JOB_OK;
	r.values = (uint8_t *)mw_buf_ptr(&b);
	r.values_len = mw_buf_avail(&b);
	r.output = (char *)out;
	r.output_len = strlen(out);
	r.usage.cpu_us = 1234;
	r.usage.wall_us = 5678;
	r.usage.instructions = 9000000000ull;	/* over 2^32: 64-bit all the way */
	r.usage.memory_peak = 65536;

	char *text = render_parse("job-1.a_b", &r, 0, NULL, 64 * 1024, &m);
	assert_non_null(strstr(text, "\nstatus: ok\n"));
	assert_null(strstr(text, "\nrefusal:"));
	assert_null(strstr(text, "\nerror:"));
	assert_string_equal(m.job_id, "job-1.a_b");
	assert_string_equal(m.status, "ok");
	assert_null(m.refusal);
	assert_null(m.error);
	assert_false(m.output_truncated);
	assert_int_equal(m.output_len, strlen(out));
	assert_memory_equal(m.output, out, strlen(out));
	assert_int_equal(m.usage.cpu_us, 1234);
	assert_int_equal(m.usage.wall_us, 5678);
	assert_true(m.usage.instructions == 9000000000ull);
	assert_int_equal(m.usage.memory_peak, 65536);
	/* version 2: the summary first, the output as a preformatted block */
	assert_memory_equal(text, "ok: \"h\xC3\xA9llo\",42,1.5,true,[10,20],{\"a\":\"x\"} (6 ms)\n",
	    strlen("ok: \"h\xC3\xA9llo\",42,1.5,true,[10,20],{\"a\":\"x\"} (6 ms)\n"));
	assert_non_null(strstr(text, "\n\n```\nline one\nline\ttwo\n```"));
	assert_string_equal(text + strlen(text) - strlen(out) - 3, "line one\nline\ttwo\n```");

	assert_true(cJSON_IsArray(m.values));
	assert_int_equal(cJSON_GetArraySize(m.values), 6);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(m.values, 0)), "h\xC3\xA9llo");
	assert_true(cJSON_GetNumberValue(cJSON_GetArrayItem(m.values, 1)) == 42.0);
	assert_true(cJSON_GetNumberValue(cJSON_GetArrayItem(m.values, 2)) == 1.5);
	assert_true(cJSON_IsTrue(cJSON_GetArrayItem(m.values, 3)));
	cJSON *arr = cJSON_GetArrayItem(m.values, 4);
	assert_true(cJSON_IsArray(arr));	/* keys 1..n in any order: an array */
	assert_true(cJSON_GetNumberValue(cJSON_GetArrayItem(arr, 0)) == 10.0);
	assert_true(cJSON_GetNumberValue(cJSON_GetArrayItem(arr, 1)) == 20.0);
	cJSON *obj = cJSON_GetArrayItem(m.values, 5);
	assert_true(cJSON_IsObject(obj));
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "a")), "x");

	/* --json: every field, from the sender */
	char *js = mw_result_msg_json(&m, "agent@example.org");
	assert_non_null(js);
	cJSON *j = cJSON_Parse(js);
	assert_non_null(j);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "from")), "agent@example.org");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "job_id")), "job-1.a_b");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "ok");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "refusal")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "error")));
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "output")), out);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "output_truncated")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "values")), 6);
	cJSON *u = cJSON_GetObjectItem(j, "usage");
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(u, "cpu_us")) == 1234.0);
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(u, "instructions")) == 9e9);
	cJSON_Delete(j);
	free(js);
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_OK);
	mw_result_msg_free(&m);
	free(text);

	/* an error result carries its error as a JSON string */
	r.status = MW_JOB_ERROR;
	r.error = (char *)"boom: \"quoted\"\nsecond line";
	text = render_parse("j2", &r, 0, NULL, 1024, &m);
	assert_string_equal(m.status, "error");
	assert_string_equal(m.error, "boom: \"quoted\"\nsecond line");
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_ERROR);
	mw_result_msg_free(&m);
	free(text);
	mw_buf_free(&b);
}

static void
test_result_output_xml_safe(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_result_msg m;
	/* NUL, SOH, CR, ESC, DEL, a lone continuation byte, a truncated
	 * sequence, an overlong encoding, a surrogate, U+FFFE, U+FFFF */
	static const char raw[] = "a\0b\x01" "c\r\nd\x1b\x7f" "e\x80" "f\xC3" "g\xC0\xAF"
	    "h\xED\xA0\x80" "i\xEF\xBF\xBE" "j\xEF\xBF\xBF" "k\t\xC3\xA9\xF0\x9F\x98\x80";
	static const char want[] = "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\nd"
	    "\xEF\xBF\xBD\xEF\xBF\xBD" "e\xEF\xBF\xBD" "f\xEF\xBF\xBD"
	    "g\xEF\xBF\xBD\xEF\xBF\xBD" "h\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
	    "i\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "j\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
	    "k\t\xC3\xA9\xF0\x9F\x98\x80";

	memset(&r, 0, sizeof(r));
	r.status = MW_JOB_OK;
	r.output = (char *)raw;
	r.output_len = sizeof(raw) - 1;
	char *text = render_parse("x", &r, 0, NULL, 64 * 1024, &m);
	assert_int_equal(m.output_len, strlen(want));
	assert_memory_equal(m.output, want, strlen(want));
	assert_false(m.output_truncated);
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "\noutput-length: %zu\n", strlen(want));
	assert_non_null(strstr(text, hdr));
	mw_result_msg_free(&m);
	free(text);

	/* the same hostile bytes in a returned string and in the error: the
	 * headers must be XML-safe too (render_parse checks the whole text) */
	struct mw_buf b;
	mw_buf_init(&b, 4096);
	v_table(&b, 1);
	v_int(&b, 1);
	v_str(&b, raw, sizeof(raw) - 1);
	r.values = (uint8_t *)mw_buf_ptr(&b);
	r.values_len = mw_buf_avail(&b);
	r.status = MW_JOB_ERROR;
	r.error = (char *)"bad\x01\r\x7f\xEF\xBF\xBE\xEF\xBF\xBF\xff end";
	text = render_parse("x", &r, 0, NULL, 64 * 1024, &m);
	assert_int_equal(cJSON_GetArraySize(m.values), 1);
	const char *v0 = cJSON_GetStringValue(cJSON_GetArrayItem(m.values, 0));
	assert_non_null(v0);
	assert_memory_equal(v0, "a", 1);
	assert_non_null(strstr(v0, "k\t\xC3\xA9\xF0\x9F\x98\x80"));
	/* escaped, not lost: the JSON reader gets the characters back */
	assert_non_null(strstr(v0, "\x1b\x7f" "e"));
	assert_non_null(strstr(v0, "i\xEF\xBF\xBE" "j\xEF\xBF\xBF" "k"));
	assert_non_null(strstr(text, "\\u007f"));
	assert_non_null(strstr(text, "\\ufffe"));
	assert_non_null(strstr(text, "\\uffff"));
	assert_non_null(m.error);
	assert_memory_equal(m.error, "bad", 3);
	assert_non_null(strstr(m.error, " end"));
	assert_non_null(strstr(m.error, "\x7f\xEF\xBF\xBE\xEF\xBF\xBF"));
	mw_result_msg_free(&m);
	free(text);
	mw_buf_free(&b);
}

static void
test_result_truncation_utf8(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_result_msg m;
	char *text;
	/* "ab" then three 3-byte euro signs: 11 bytes */
	static const char euro[] = "ab\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC";
	/* "a" then two 4-byte emoji: 9 bytes */
	static const char emoji[] = "a\xF0\x9F\x98\x80\xF0\x9F\x98\x80";
	static const struct { const char *s; uint32_t max; size_t keep; bool trunc; } cases[] = {
		{ euro, 11, 11, false },
		{ euro, 12, 11, false },
		{ euro, 10, 8, true },	/* would split the third euro */
		{ euro, 9, 8, true },
		{ euro, 8, 8, true },
		{ euro, 7, 5, true },
		{ euro, 3, 2, true },
		{ euro, 2, 2, true },
		{ euro, 1, 1, true },
		{ euro, 0, 0, true },
		{ emoji, 9, 9, false },
		{ emoji, 8, 5, true },
		{ emoji, 5, 5, true },
		{ emoji, 4, 1, true },
		{ emoji, 2, 1, true },
	};

	memset(&r, 0, sizeof(r));
	r.status = MW_JOB_OK;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r.output = (char *)cases[i].s;
		r.output_len = strlen(cases[i].s);
		text = render_parse("t", &r, 0, NULL, cases[i].max, &m);
		if (m.output_len != cases[i].keep || m.output_truncated != cases[i].trunc)
			fail_msg("case %zu: max %u kept %zu truncated %d, want %zu %d", i,
			    cases[i].max, m.output_len, m.output_truncated, cases[i].keep,
			    cases[i].trunc);
		assert_memory_equal(m.output, cases[i].s, cases[i].keep);
		assert_non_null(strstr(text, cases[i].trunc ? "\noutput-truncated: yes\n" :
		    "\noutput-truncated: no\n"));
		mw_result_msg_free(&m);
		free(text);
	}

	/* the sandbox's own truncation flag survives even when the rest fits */
	r.output = (char *)"short";
	r.output_len = 5;
	r.output_truncated = true;
	r.status = MW_JOB_OUTPUT_LIMIT;
	text = render_parse("t", &r, 0, NULL, 1024, &m);
	assert_true(m.output_truncated);
	assert_int_equal(m.output_len, 5);
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_LIMIT);
	mw_result_msg_free(&m);
	free(text);

	/* the cut applies to the cleaned text: 100 CRs are 300 bytes of U+FFFD */
	char crs[100];
	memset(crs, '\r', sizeof(crs));
	r.output = crs;
	r.output_len = sizeof(crs);
	r.output_truncated = false;
	text = render_parse("t", &r, 0, NULL, 100, &m);
	assert_int_equal(m.output_len, 99);
	assert_true(m.output_truncated);
	mw_result_msg_free(&m);
	free(text);
}

static void
test_result_refusal_and_job_id(void **state)
{
	(void)state;
	struct mw_result_msg m;
	char *text;

	text = render_parse("job-7", NULL, MW_REFUSE_EXPIRED,
	    "not-after 2024-01-01T00:00:00Z is in the past", 64 * 1024, &m);
	assert_non_null(strstr(text, "\nstatus: refused\nrefusal: expired\n"));
	assert_string_equal(m.job_id, "job-7");
	assert_string_equal(m.status, "refused");
	assert_string_equal(m.refusal, "expired");
	assert_string_equal(m.error, "not-after 2024-01-01T00:00:00Z is in the past");
	assert_int_equal(cJSON_GetArraySize(m.values), 0);
	assert_int_equal(m.output_len, 0);
	assert_false(m.output_truncated);
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_REFUSED);
	char *js = mw_result_msg_json(&m, "a@b");
	assert_non_null(js);
	cJSON *j = cJSON_Parse(js);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "refusal")), "expired");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "refused");
	cJSON_Delete(j);
	free(js);
	mw_result_msg_free(&m);
	free(text);

	/* every refusal code renders as its name */
	for (int code = -1; code >= MW_REFUSE_BAD_LIMITS; code--) {
		text = render_parse("j", NULL, code, "why", 1024, &m);
		assert_string_equal(m.refusal, mw_refusal_name(code));
		assert_string_not_equal(m.refusal, "unknown");
		mw_result_msg_free(&m);
		free(text);
	}

	/* no job id (the envelope did not parse): "-" */
	text = render_parse(NULL, NULL, MW_REFUSE_MALFORMED, "garbage", 1024, &m);
	assert_non_null(strstr(text, "\njob-id: -\n"));
	assert_string_equal(m.job_id, "-");
	mw_result_msg_free(&m);
	free(text);
	text = render_parse("", NULL, MW_REFUSE_NOT_A_JOB, "chat", 1024, &m);
	assert_string_equal(m.job_id, "-");
	mw_result_msg_free(&m);
	free(text);

	/* no result at all: internal error, not a crash */
	text = render_parse("j", NULL, 0, NULL, 1024, &m);
	assert_string_equal(m.status, "internal_error");
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_UNAVAILABLE);
	mw_result_msg_free(&m);
	free(text);
}

static void
test_result_size_bound(void **state)
{
	(void)state;
	struct mw_buf b;
	struct mw_result r;
	struct mw_result_msg m;
	char *text, *big, *err;
	size_t biglen = 1024 * 1024;

	big = malloc(biglen);
	assert_non_null(big);
	memset(big, 'y', biglen);

	/* values far over the message size: replaced, status result_limit */
	result_with_string_value(&r, &b, 'v', 300 * 1024);
	r.output = big;
	r.output_len = biglen;
	text = render_parse("big", &r, 0, NULL, 96 * 1024, &m);
	assert_string_equal(m.status, "result_limit");
	assert_int_equal(cJSON_GetArraySize(m.values), 0);
	assert_non_null(m.error);
	assert_true(m.output_truncated);
	assert_true(m.output_len > 0 && m.output_len <= 96 * 1024);
	assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_LIMIT);
	mw_result_msg_free(&m);
	free(text);
	mw_buf_free(&b);

	/* a returned string of control characters grows 6x when escaped */
	result_with_string_value(&r, &b, '\x01', 30 * 1024);
	text = render_parse("ctl", &r, 0, NULL, 96 * 1024, &m);
	assert_string_equal(m.status, "result_limit");
	mw_result_msg_free(&m);
	free(text);
	mw_buf_free(&b);

	/* values just under the cap, the largest error the sandbox sends (all
	 * control characters), and a full output: everything must still fit,
	 * the output gives way */
	err = malloc(4097);
	assert_non_null(err);
	memset(err, '\x02', 4096);
	err[4096] = '\0';
	for (size_t vlen = 96 * 1024; vlen <= 128 * 1024; vlen += 4 * 1024) {
		result_with_string_value(&r, &b, 'v', vlen);
		r.status = MW_JOB_ERROR;
		r.error = err;
		r.output = big;
		r.output_len = biglen;
		text = render_parse("edge", &r, 0, NULL, 96 * 1024, &m);
		assert_true(strlen(text) <= MW_OMEMO_MAX_PLAINTEXT);
		assert_true(m.output_truncated);
		if (strcmp(m.status, "error") == 0) {
			assert_int_equal(cJSON_GetArraySize(m.values), 1);
			assert_int_equal(strlen(cJSON_GetStringValue(cJSON_GetArrayItem(m.values, 0))), vlen);
		} else {
			assert_string_equal(m.status, "result_limit");
		}
		assert_int_equal(strlen(m.error) > 0, 1);
		for (size_t i = 0; i < m.output_len; i++)
			if (m.output[i] != 'y')
				fail_msg("output byte %zu is 0x%02x", i, (unsigned char)m.output[i]);
		mw_result_msg_free(&m);
		free(text);
		mw_buf_free(&b);
	}

	/* an output of multibyte characters cut by the size bound, not by
	 * max_output, is still cut on a character boundary */
	char *wide = malloc(3 * 50000);
	assert_non_null(wide);
	for (size_t i = 0; i < 50000; i++)
		memcpy(wide + 3 * i, "\xE2\x82\xAC", 3);
	for (size_t vlen = 100 * 1024; vlen < 100 * 1024 + 3; vlen++) {
		result_with_string_value(&r, &b, 'v', vlen);
		r.output = wide;
		r.output_len = 3 * 50000;
		text = render_parse("wide", &r, 0, NULL, UINT32_MAX, &m);
		assert_true(m.output_truncated);
		assert_int_equal(m.output_len % 3, 0);
		assert_true(m.output_len > 0);
		mw_result_msg_free(&m);
		free(text);
		mw_buf_free(&b);
	}
	free(wide);
	free(err);
	free(big);
}

/* A valid version-1 message (what agents before version 2 send, which
 * `moonwire send` must still read) from its header lines (each without
 * "\n") and output. */
static char *
compose(const char *const *hdrs, size_t n, const char *output)
{
	size_t len = strlen(MW_RESULT_MAGIC_V1) + 2 + strlen(output);
	for (size_t i = 0; i < n; i++)
		len += strlen(hdrs[i]) + 1;
	char *t = malloc(len + 1), *p = t;
	assert_non_null(t);
	p += sprintf(p, "%s\n", MW_RESULT_MAGIC_V1);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s\n", hdrs[i]);
	p += sprintf(p, "\n%s", output);
	return t;
}

static int
parse_text(const char *t)
{
	struct mw_result_msg m;
	int rc = mw_result_message_parse(t, strlen(t), &m);
	if (rc == 0)
		mw_result_msg_free(&m);
	else	/* a failed parse leaves nothing to free */
		assert_null(m.job_id);
	return rc;
}

#define NHDR 7
static const char *const base_hdrs[NHDR] = {
	"job-id: j1",
	"status: error",
	"error: \"e\"",
	"values: [1,\"two\"]",
	"usage: cpu_us=1 wall_us=2 instructions=3 memory_peak=4",
	"output-length: 5",
	"output-truncated: no",
};

static void
test_result_parse_rejects(void **state)
{
	(void)state;
	const char *h[NHDR + 2];
	char *t;
	static const size_t required[] = { 0, 1, 3, 4, 5, 6 };	/* error is optional */

	/* the base parses, in any header order */
	t = compose(base_hdrs, NHDR, "hello");
	assert_int_equal(parse_text(t), 0);
	free(t);
	for (size_t i = 0; i < NHDR; i++)
		h[i] = base_hdrs[NHDR - 1 - i];
	t = compose(h, NHDR, "hello");
	assert_int_equal(parse_text(t), 0);
	free(t);

	/* wrong magic, no magic */
	t = compose(base_hdrs, NHDR, "hello");
	t[strlen(MW_RESULT_MAGIC_V1) - 1] = '2';
	assert_int_equal(parse_text(t), -1);
	free(t);
	assert_int_equal(parse_text("job-id: j1\n\n"), -1);
	assert_int_equal(parse_text(""), -1);

	/* each required header missing */
	for (size_t r = 0; r < sizeof(required) / sizeof(required[0]); r++) {
		size_t n = 0;
		for (size_t i = 0; i < NHDR; i++)
			if (i != required[r])
				h[n++] = base_hdrs[i];
		t = compose(h, n, "hello");
		if (parse_text(t) != -1)
			fail_msg("parsed without '%s'", base_hdrs[required[r]]);
		free(t);
	}
	/* without the optional error: fine */
	{
		size_t n = 0;
		for (size_t i = 0; i < NHDR; i++)
			if (i != 2)
				h[n++] = base_hdrs[i];
		t = compose(h, n, "hello");
		assert_int_equal(parse_text(t), 0);
		free(t);
	}

	/* each header given twice: ambiguous, refused (also with the same value) */
	static const char *const second[NHDR] = {
		"job-id: j2", "status: ok", "error: \"f\"", "values: []",
		"usage: cpu_us=9 wall_us=9 instructions=9 memory_peak=9",
		"output-length: 0", "output-truncated: yes",
	};
	for (size_t d = 0; d < NHDR; d++) {
		for (int same = 0; same < 2; same++) {
			for (size_t i = 0; i < NHDR; i++)
				h[i] = base_hdrs[i];
			h[NHDR] = same ? base_hdrs[d] : second[d];
			t = compose(h, NHDR + 1, "hello");
			if (parse_text(t) != -1)
				fail_msg("parsed with '%s' given twice", base_hdrs[d]);
			free(t);
		}
	}

	/* output-length not matching the bytes after the blank line */
	t = compose(base_hdrs, NHDR, "hell");
	assert_int_equal(parse_text(t), -1);
	free(t);
	t = compose(base_hdrs, NHDR, "hello!");
	assert_int_equal(parse_text(t), -1);
	free(t);
	static const char *const bad_len[] = {
		"output-length: -5", "output-length: 5 ", "output-length: 0x5",
		"output-length: ", "output-length: 99999999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
		for (size_t k = 0; k < NHDR; k++)
			h[k] = base_hdrs[k];
		h[5] = bad_len[i];
		t = compose(h, NHDR, "hello");
		if (parse_text(t) != -1)
			fail_msg("parsed with '%s'", bad_len[i]);
		free(t);
	}

	/* bad values of the other headers */
	static const struct { size_t at; const char *line; } bad[] = {
		{ 1, "status: bogus" },
		{ 1, "status: " },
		{ 1, "status: OK" },
		{ 1, "status: refused" },		/* refused without refusal */
		{ 2, "refusal: expired" },		/* refusal on a non-refused status */
		{ 3, "values: {\"a\":1}" },
		{ 3, "values: \"x\"" },
		{ 3, "values: 1" },
		{ 3, "values: [1,2" },
		{ 3, "values: [] trailing" },
		{ 2, "error: e" },
		{ 2, "error: 42" },
		{ 2, "error: null" },
		{ 2, "error: [\"e\"]" },
		{ 2, "error: \"e\" \"f\"" },
		{ 4, "usage: cpu_us=1 wall_us=2 instructions=3" },
		{ 4, "usage: cpu_us=x wall_us=2 instructions=3 memory_peak=4" },
		{ 4, "usage: wall_us=2 cpu_us=1 instructions=3 memory_peak=4" },
		{ 6, "output-truncated: maybe" },
		{ 6, "output-truncated: " },
		{ 0, "job-id:j1" },			/* not "key: value" */
		{ 0, "job-id" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (size_t k = 0; k < NHDR; k++)
			h[k] = base_hdrs[k];
		h[bad[i].at] = bad[i].line;
		t = compose(h, NHDR, "hello");
		if (parse_text(t) != -1)
			fail_msg("parsed with '%s'", bad[i].line);
		free(t);
	}

	/* refused with its refusal parses */
	{
		const char *rh[] = { "job-id: -", "status: refused", "refusal: replay",
		    "error: \"seen\"", "values: []",
		    "usage: cpu_us=0 wall_us=0 instructions=0 memory_peak=0",
		    "output-length: 0", "output-truncated: no" };
		struct mw_result_msg m;
		t = compose(rh, 8, "");
		assert_int_equal(mw_result_message_parse(t, strlen(t), &m), 0);
		assert_string_equal(m.refusal, "replay");
		assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_REFUSED);
		mw_result_msg_free(&m);
		free(t);
	}

	/* unknown extra headers are ignored, wherever they are */
	h[0] = "x-future: anything at all: here";
	for (size_t k = 0; k < NHDR; k++)
		h[k + 1] = base_hdrs[k];
	h[NHDR + 1] = "another-one: 1";
	t = compose(h, NHDR + 2, "hello");
	{
		struct mw_result_msg m;
		assert_int_equal(mw_result_message_parse(t, strlen(t), &m), 0);
		assert_string_equal(m.job_id, "j1");
		assert_memory_equal(m.output, "hello", 5);
		mw_result_msg_free(&m);
	}
	free(t);

	/* no blank line before the output, or headers cut off */
	assert_int_equal(parse_text(MW_RESULT_MAGIC_V1 "\njob-id: j1\nstatus: ok\n"), -1);
	t = compose(base_hdrs, NHDR, "hello");
	assert_int_equal(mw_result_message_parse(t, 60, &(struct mw_result_msg){0}), -1);
	free(t);
}

/* Version 2 (spec/result.md): the summary line for people, the output as a
 * XEP-0393 block whose fences must be exactly where the spec puts them. */
static void
test_result_v2_format(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_result_msg m;
	char *text;
	static const char v2_head[] = "ok: 7 (1 ms)\n" MW_RESULT_MAGIC_V2 "\n"
	    "job-id: j2\nstatus: ok\nvalues: [7]\n"
	    "usage: cpu_us=1 wall_us=900 instructions=0 memory_peak=4\n";

	/* an error: status and error on one line, newlines flattened */
	memset(&r, 0, sizeof(r));
	r.status = MW_JOB_ERROR;
	r.error = (char *)"job:3: boom\nstack";
	r.usage.wall_us = 4600;
	r.output = (char *)"no newline";
	r.output_len = strlen(r.output);
	text = render_parse("j1", &r, 0, NULL, 1024, &m);
	assert_memory_equal(text, "error: job:3: boom stack (5 ms)\n",
	    strlen("error: job:3: boom stack (5 ms)\n"));
	assert_string_equal(text + strlen(text) - strlen("```\nno newline\n```"),
	    "```\nno newline\n```");
	assert_string_equal(m.output, "no newline");
	mw_result_msg_free(&m);
	free(text);

	/* a refusal: no output, no block, no time */
	text = render_parse("j1", NULL, MW_REFUSE_REPLAY, "seen before", 1024, &m);
	assert_memory_equal(text, "refused: replay: seen before\n", strlen("refused: replay: seen before\n"));
	assert_string_equal(text + strlen(text) - 2, "\n\n");
	mw_result_msg_free(&m);
	free(text);

	/* a long error is cut in the summary, whole in its header */
	{
		char err[600];
		memset(err, 'e', sizeof(err) - 1);
		err[sizeof(err) - 1] = '\0';
		r.error = err;
		text = render_parse("j1", &r, 0, NULL, 1024, &m);
		assert_true(strchr(text, '\n') - text == MW_RESULT_SUMMARY_MAX + 3);
		assert_string_equal(m.error, err);
		mw_result_msg_free(&m);
		free(text);
	}

	/* hand-made version-2 texts: the fences are exact */
	static const struct { const char *body; int rc; } cases[] = {
		{ "output-length: 2\noutput-truncated: no\n\n```\nhi\n```", 0 },
		{ "output-length: 3\noutput-truncated: no\n\n```\nhi\n```", 0 },
		{ "output-length: 0\noutput-truncated: no\n\n", 0 },
		{ "output-length: 0\noutput-truncated: no\n\n```\n```", -1 },
		{ "output-length: 2\noutput-truncated: no\n\nhi", -1 },
		{ "output-length: 2\noutput-truncated: no\n\n```\nhi```", -1 },
		{ "output-length: 2\noutput-truncated: no\n\n```\nhi\n```\n", -1 },
		{ "output-length: 2\noutput-truncated: no\n\n```\nhi\n", -1 },
		{ "output-length: 9\noutput-truncated: no\n\n```\nhi\n```", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char t[512];
		snprintf(t, sizeof(t), "%s%s", v2_head, cases[i].body);
		if (parse_text(t) != cases[i].rc)
			fail_msg("case %zu: expected %d", i, cases[i].rc);
	}
	/* no summary line, or the version line not second */
	assert_int_equal(parse_text("\n" MW_RESULT_MAGIC_V2 "\njob-id: j\n"), -1);
	assert_int_equal(parse_text("a\nb\n" MW_RESULT_MAGIC_V2 "\n"), -1);
	assert_int_equal(parse_text(MW_RESULT_MAGIC_V2 "\njob-id: j2\nstatus: ok\nvalues: []\n"
	    "usage: cpu_us=1 wall_us=900 instructions=0 memory_peak=4\n"
	    "output-length: 0\noutput-truncated: no\n\n"), -1);
	{
		char t[512];
		snprintf(t, sizeof(t), "%s%s", v2_head,
		    "output-length: 3\noutput-truncated: no\n\n```\nhi\n```");
		assert_int_equal(mw_result_message_parse(t, strlen(t), &m), 0);
		assert_int_equal(m.version, 2);
		assert_string_equal(m.output, "hi\n");
		mw_result_msg_free(&m);
	}
}

static void
test_result_exit_codes(void **state)
{
	(void)state;
	static const struct { const char *status; int exit; } cases[] = {
		{ "ok", MW_EXIT_OK },
		{ "error", MW_EXIT_ERROR },
		{ "syntax_error", MW_EXIT_SYNTAX },
		{ "instruction_limit", MW_EXIT_LIMIT },
		{ "memory_limit", MW_EXIT_LIMIT },
		{ "cpu_limit", MW_EXIT_LIMIT },
		{ "wall_limit", MW_EXIT_LIMIT },
		{ "output_limit", MW_EXIT_LIMIT },
		{ "program_too_large", MW_EXIT_LIMIT },
		{ "result_limit", MW_EXIT_LIMIT },
		{ "capability_limit", MW_EXIT_LIMIT },
		{ "sandbox_violation", MW_EXIT_SANDBOX },
		{ "crashed", MW_EXIT_SANDBOX },
		{ "protocol_error", MW_EXIT_SANDBOX },
		{ "busy", MW_EXIT_UNAVAILABLE },
		{ "interrupted", MW_EXIT_UNAVAILABLE },
		{ "internal_error", MW_EXIT_UNAVAILABLE },
		{ "refused", MW_EXIT_REFUSED },
		{ "something-new", MW_EXIT_UNAVAILABLE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mw_result_msg m;
		char st[32];
		memset(&m, 0, sizeof(m));
		snprintf(st, sizeof(st), "%s", cases[i].status);
		m.status = st;
		if (mw_result_msg_exit(&m) != cases[i].exit)
			fail_msg("status %s: exit %d, want %d", st, mw_result_msg_exit(&m),
			    cases[i].exit);
	}
	/* and through the renderer, for every job status */
	for (int s = 0; s <= MW_JOB_STATUS_MAX; s++) {
		struct mw_result r;
		struct mw_result_msg m;
		memset(&r, 0, sizeof(r));
		r.status = (enum mw_job_status)s;
		char *text = render_parse("e", &r, 0, NULL, 1024, &m);
		assert_string_equal(m.status, mw_job_status_name((enum mw_job_status)s));
		assert_int_equal(mw_result_msg_exit(&m), mw_exit_for_status((enum mw_job_status)s));
		mw_result_msg_free(&m);
		free(text);
	}
}

/* ---- 2. the journal ---- */

static sqlite3 *
open_db(const char *name)
{
	char path[PATH_MAX + 64];
	sqlite3 *db = NULL;
	char *mode = NULL;
	sqlite3_stmt *st;

	tmp_path(path, sizeof(path), name);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	mode = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	assert_string_equal(mode, "wal");
	free(mode);
	return db;
}

static void
exec_ok(sqlite3 *db, const char *sql)
{
	char *e = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
		fail_msg("%s: %s", sql, e ? e : "?");
}

static int
query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int v = -1;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
entry(struct mw_journal_entry *e, const char *signer, const char *job_id,
    const char *from, uint32_t device, uint8_t fill)
{
	memset(e, 0, sizeof(*e));
	e->signer = (char *)signer;
	e->job_id = (char *)job_id;
	e->from_jid = (char *)from;
	e->device = device;
	memset(e->sha256, fill, sizeof(e->sha256));
}

static void
accept_committed(sqlite3 *db, const char *signer, const char *job_id, int64_t now)
{
	struct mw_journal_entry e;
	entry(&e, signer, job_id, "alice@example.org", 7, 0x11);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e, now), 0);
	exec_ok(db, "COMMIT");
}

static void
test_journal_schema(void **state)
{
	(void)state;
	sqlite3 *db = open_db("schema.db");

	assert_int_equal(mw_journal_init(db), 0);
	assert_int_equal(mw_journal_init(db), 0);	/* idempotent */
	assert_true(sqlite3_get_autocommit(db));	/* no transaction left open */
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'journal'"), 2);
	assert_int_equal(query_int(db, "SELECT count(*) FROM mw_schema"), 1);
	accept_committed(db, "SHA256:k", "j", 1);
	assert_int_equal(mw_journal_init(db), 0);	/* keeps the rows */
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 1);

	/* written by a newer moonwire: refused, nothing changed */
	exec_ok(db, "UPDATE mw_schema SET version = 3 WHERE component = 'journal'");
	assert_int_equal(mw_journal_init(db), -1);
	assert_true(sqlite3_get_autocommit(db));
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'journal'"), 3);
	assert_int_equal(query_int(db, "SELECT count(*) FROM mw_jobs"), 1);
	mw_journal_close(db);
	sqlite3_close(db);

	/* the same database as the OMEMO store: both components' rows */
	db = open_db("shared.db");
	struct mw_omemo *o = NULL;
	assert_int_equal(mw_omemo_open(&o, db, "agent@example.org"), MW_OMEMO_OK);
	assert_int_equal(mw_journal_init(db), 0);
	assert_int_equal(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'journal'"), 2);
	assert_true(query_int(db, "SELECT version FROM mw_schema WHERE "
	    "component = 'omemo'") >= 1);
	mw_omemo_close(o);
	o = NULL;
	assert_int_equal(mw_omemo_open(&o, db, NULL), MW_OMEMO_OK);	/* reopen */
	assert_int_equal(mw_journal_init(db), 0);
	mw_omemo_close(o);
	mw_journal_close(db);
	sqlite3_close(db);
}

static void
test_journal_accept_lookup(void **state)
{
	(void)state;
	sqlite3 *db = open_db("accept.db");
	struct mw_journal_entry e, f;

	assert_int_equal(mw_journal_init(db), 0);

	/* crash before commit: the ratchet's transaction rolls back, and the
	 * job with it */
	entry(&e, "SHA256:abc", "job-1", "alice@example.org", 12345, 0xAB);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e, 100), 0);
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "job-1", &f), 1);	/* visible inside */
	mw_journal_entry_free(&f);
	exec_ok(db, "ROLLBACK");
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "job-1", &f), 0);
	assert_null(f.signer);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 0);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_DONE), 0);

	/* and a second connection (the restarted agent) sees nothing either */
	{
		char path[PATH_MAX + 64];
		sqlite3 *db2;
		tmp_path(path, sizeof(path), "accept.db");
		assert_int_equal(sqlite3_open(path, &db2), SQLITE_OK);
		assert_int_equal(query_int(db2, "SELECT count(*) FROM mw_jobs"), 0);
		mw_journal_close(db2);
		sqlite3_close(db2);
	}

	/* committed: found with everything it was accepted with */
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e, 100), 0);
	exec_ok(db, "COMMIT");
	exec_ok(db, "BEGIN");
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "job-1", &f), 1);
	exec_ok(db, "COMMIT");
	assert_string_equal(f.signer, "SHA256:abc");
	assert_string_equal(f.job_id, "job-1");
	assert_string_equal(f.from_jid, "alice@example.org");
	assert_int_equal(f.device, 12345);
	assert_memory_equal(f.sha256, e.sha256, 32);
	assert_int_equal(f.state, MW_JOURNAL_ACCEPTED);
	assert_null(f.result);
	assert_false(f.replied);
	mw_journal_entry_free(&f);

	/* a device id over 2^31 survives */
	struct mw_journal_entry e2;
	entry(&e2, "SHA256:abc", "job-2", "alice@example.org", 0xFFFFFFF0u, 0x01);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e2, 101), 0);
	exec_ok(db, "COMMIT");
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "job-2", &f), 1);
	assert_int_equal(f.device, 0xFFFFFFF0u);
	mw_journal_entry_free(&f);

	/* the replay cache: same (signer, job id) again fails, whatever the bytes */
	struct mw_journal_entry again;
	entry(&again, "SHA256:abc", "job-1", "bob@example.org", 1, 0xCD);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &again, 200), -1);
	exec_ok(db, "ROLLBACK");
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "job-1", &f), 1);
	assert_string_equal(f.from_jid, "alice@example.org");	/* unchanged */
	mw_journal_entry_free(&f);
	/* the same job id from another signer is another job */
	entry(&again, "SHA256:other", "job-1", "bob@example.org", 1, 0xCD);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &again, 200), 0);
	exec_ok(db, "COMMIT");
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 3);
	assert_int_equal(mw_journal_lookup(db, "SHA256:abc", "nope", &f), 0);
	assert_int_equal(mw_journal_lookup(db, "SHA256:nope", "job-1", &f), 0);
	mw_journal_close(db);
	sqlite3_close(db);
}

static void
test_journal_finish_replied(void **state)
{
	(void)state;
	sqlite3 *db = open_db("finish.db");
	struct mw_journal_entry f, *rows;
	size_t n;

	assert_int_equal(mw_journal_init(db), 0);
	accept_committed(db, "S", "a", 10);
	accept_committed(db, "S", "b", 11);
	accept_committed(db, "S", "c", 12);

	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 0);	/* ACCEPTED rows have no result to send */
	free(rows);

	/* finished out of order: c, then a */
	assert_int_equal(mw_journal_finish(db, "S", "c", "result c", 20), 0);
	assert_int_equal(mw_journal_finish(db, "S", "a", "result a", 21), 0);
	assert_true(sqlite3_get_autocommit(db));
	assert_int_equal(mw_journal_lookup(db, "S", "c", &f), 1);
	assert_int_equal(f.state, MW_JOURNAL_DONE);
	assert_string_equal(f.result, "result c");
	mw_journal_entry_free(&f);

	/* finishing twice, or a job never accepted: refused, result kept */
	assert_int_equal(mw_journal_finish(db, "S", "c", "other", 30), -1);
	assert_int_equal(mw_journal_finish(db, "S", "zzz", "other", 30), -1);
	assert_int_equal(mw_journal_finish(db, "T", "a", "other", 30), -1);
	assert_int_equal(mw_journal_lookup(db, "S", "c", &f), 1);
	assert_string_equal(f.result, "result c");
	mw_journal_entry_free(&f);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_DONE), 2);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 1);

	/* oldest finished first */
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].job_id, "c");
	assert_string_equal(rows[0].result, "result c");
	assert_string_equal(rows[1].job_id, "a");
	assert_int_equal(rows[1].state, MW_JOURNAL_DONE);
	assert_false(rows[1].replied);
	for (size_t i = 0; i < n; i++)
		mw_journal_entry_free(&rows[i]);
	free(rows);

	assert_int_equal(mw_journal_mark_replied(db, "S", "c"), 0);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].job_id, "a");
	mw_journal_entry_free(&rows[0]);
	free(rows);
	assert_int_equal(mw_journal_lookup(db, "S", "c", &f), 1);
	assert_true(f.replied);
	assert_int_equal(f.state, MW_JOURNAL_DONE);
	mw_journal_entry_free(&f);

	assert_int_equal(mw_journal_mark_replied(db, "S", "a"), 0);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 0);
	free(rows);
	/* the replay cache still holds replied jobs */
	struct mw_journal_entry e;
	entry(&e, "S", "a", "x@y", 1, 0);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e, 40), -1);
	exec_ok(db, "ROLLBACK");
	mw_journal_close(db);
	sqlite3_close(db);
}

/* sent -> confirmed by the server; only unconfirmed results are resent */
static void
test_journal_delivery_confirmation(void **state)
{
	(void)state;
	sqlite3 *db = open_db("confirm.db");
	struct mw_journal_entry *rows;
	size_t n;

	assert_int_equal(mw_journal_init(db), 0);
	accept_committed(db, "S", "a", 10);
	accept_committed(db, "S", "b", 11);
	accept_committed(db, "S", "c", 12);
	assert_int_equal(mw_journal_finish(db, "S", "a", "result a", 20), 0);
	assert_int_equal(mw_journal_finish(db, "S", "b", "result b", 21), 0);
	assert_int_equal(mw_journal_finish(db, "S", "c", "result c", 22), 0);
	/* a and b handed to a connection, only a confirmed by the server */
	assert_int_equal(mw_journal_mark_replied(db, "S", "a"), 0);
	assert_int_equal(mw_journal_mark_replied(db, "S", "b"), 0);
	assert_int_equal(mw_journal_confirm(db, "S", "a"), 0);
	/* confirming an unsent result does nothing */
	assert_int_equal(mw_journal_confirm(db, "S", "c"), 0);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].job_id, "c");
	mw_journal_entry_free(&rows[0]);
	free(rows);

	/* the connection is lost: b (sent, unconfirmed) is to be sent again,
	 * a (confirmed) never */
	assert_int_equal(mw_journal_resend_unconfirmed(db), 1);
	assert_int_equal(mw_journal_resend_unconfirmed(db), 0);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].job_id, "b");
	assert_string_equal(rows[1].job_id, "c");
	for (size_t i = 0; i < n; i++)
		mw_journal_entry_free(&rows[i]);
	free(rows);
	/* a confirmed result is not demoted by marking it sent again */
	assert_int_equal(mw_journal_mark_replied(db, "S", "a"), 0);
	assert_int_equal(mw_journal_resend_unconfirmed(db), 0);
	mw_journal_close(db);
	sqlite3_close(db);
}

/* A result stored as it is handed to a live connection (replied = 1 in the
 * same write): confirmed like a sent one, and sent again, like one, after
 * a lost connection or a restart; never listed as unsent before that. */
static void
test_journal_finish_sending(void **state)
{
	(void)state;
	sqlite3 *db = open_db("sending.db");
	struct mw_journal_entry *rows, e;
	size_t n;

	assert_int_equal(mw_journal_init(db), 0);
	accept_committed(db, "S", "a", 10);
	accept_committed(db, "S", "b", 11);
	assert_int_equal(mw_journal_finish_sending(db, "S", "a", "result a", 20), 0);
	assert_int_equal(mw_journal_finish_sending(db, "S", "b", "result b", 21), 0);
	/* only an accepted row is finished, once */
	assert_int_equal(mw_journal_finish_sending(db, "S", "a", "other", 22), -1);
	assert_int_equal(mw_journal_lookup(db, "S", "a", &e), 1);
	assert_int_equal(e.state, MW_JOURNAL_DONE);
	assert_string_equal(e.result, "result a");
	assert_true(e.replied);
	mw_journal_entry_free(&e);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 0);
	free(rows);
	/* marking it sent again changes nothing; the barrier confirms a */
	assert_int_equal(mw_journal_mark_replied(db, "S", "a"), 0);
	assert_int_equal(mw_journal_confirm(db, "S", "a"), 0);
	/* the connection is lost: b is to be sent again, a never */
	assert_int_equal(mw_journal_resend_unconfirmed(db), 1);
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].job_id, "b");
	mw_journal_entry_free(&rows[0]);
	free(rows);
	mw_journal_close(db);
	sqlite3_close(db);
}

static void
test_journal_recover(void **state)
{
	(void)state;
	sqlite3 *db = open_db("recover.db");
	struct mw_journal_entry f, *rows;
	size_t n;

	assert_int_equal(mw_journal_init(db), 0);
	assert_int_equal(mw_journal_recover(db, 5), 0);	/* empty journal */
	accept_committed(db, "S", "run-1", 10);
	accept_committed(db, "S", "run-2", 11);
	accept_committed(db, "T", "done", 12);
	assert_int_equal(mw_journal_finish(db, "T", "done", "the real result", 13), 0);
	assert_int_equal(mw_journal_mark_replied(db, "T", "done"), 0);

	assert_int_equal(mw_journal_recover(db, 50), 2);
	assert_true(sqlite3_get_autocommit(db));
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 0);
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_DONE), 3);

	/* both interrupted, waiting to be sent */
	assert_int_equal(mw_journal_unreplied(db, &rows, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		struct mw_result_msg m;
		assert_non_null(rows[i].result);
		assert_xml_safe(rows[i].result);
		assert_int_equal(mw_result_message_parse(rows[i].result,
		    strlen(rows[i].result), &m), 0);
		assert_string_equal(m.status, "interrupted");
		assert_string_equal(m.job_id, rows[i].job_id);
		assert_non_null(m.error);
		assert_int_equal(mw_result_msg_exit(&m), MW_EXIT_UNAVAILABLE);
		mw_result_msg_free(&m);
		mw_journal_entry_free(&rows[i]);
	}
	free(rows);
	/* the finished job is untouched */
	assert_int_equal(mw_journal_lookup(db, "T", "done", &f), 1);
	assert_string_equal(f.result, "the real result");
	assert_true(f.replied);
	mw_journal_entry_free(&f);

	/* idempotent: nothing left to recover, results unchanged */
	assert_int_equal(mw_journal_lookup(db, "S", "run-1", &f), 1);
	char *before = strdup(f.result);
	mw_journal_entry_free(&f);
	assert_int_equal(mw_journal_recover(db, 99), 0);
	assert_int_equal(mw_journal_lookup(db, "S", "run-1", &f), 1);
	assert_string_equal(f.result, before);
	mw_journal_entry_free(&f);
	free(before);
	/* an interrupted job is never run again: its id stays taken */
	struct mw_journal_entry e;
	entry(&e, "S", "run-1", "x@y", 1, 0);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_accept(db, &e, 100), -1);
	exec_ok(db, "ROLLBACK");

	/* recover cannot run inside someone else's transaction */
	accept_committed(db, "S", "run-3", 60);
	exec_ok(db, "BEGIN IMMEDIATE");
	assert_int_equal(mw_journal_recover(db, 70), -1);
	exec_ok(db, "ROLLBACK");
	assert_int_equal(mw_journal_count(db, MW_JOURNAL_ACCEPTED), 1);
	mw_journal_close(db);
	sqlite3_close(db);
}

/* ---- 3. agent configuration ---- */

static char signers_path[PATH_MAX + 32], policy_path[PATH_MAX + 32];
static char pwfile_path[PATH_MAX + 32], db_path[PATH_MAX + 32];

static void
config_files(void)
{
	tmp_path(signers_path, sizeof(signers_path), "allowed_signers");
	tmp_path(policy_path, sizeof(policy_path), "policy");
	tmp_path(pwfile_path, sizeof(pwfile_path), "password");
	tmp_path(db_path, sizeof(db_path), "state/agent.db");
	{
		/* the db's directory must exist (the agent checks it) */
		char dir[PATH_MAX + 32];

		tmp_path(dir, sizeof(dir), "state");
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", dir, strerror(errno));
	}
	write_file(signers_path, "alice@ops ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n");
	write_file(policy_path, "profile p\n");
	write_file(pwfile_path, "s3cret\nignored\n");
}

/* Writes text (with "%S" "%P" "%W" "%D" replaced by the paths) as a config
 * and loads it. */
static int
load_config(const char *tmpl, struct mw_agent_config *c, char *path, size_t plen,
    char *err, size_t errlen)
{
	char text[8192], *o = text;

	for (const char *p = tmpl; *p; p++) {
		const char *sub = NULL;
		if (p[0] == '%' && p[1] == 'S')
			sub = signers_path;
		else if (p[0] == '%' && p[1] == 'P')
			sub = policy_path;
		else if (p[0] == '%' && p[1] == 'W')
			sub = pwfile_path;
		else if (p[0] == '%' && p[1] == 'D')
			sub = db_path;
		if (sub != NULL) {
			o += sprintf(o, "%s", sub);
			p++;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	tmp_path(path, plen, "agent.conf");
	write_file(path, text);
	err[0] = '\0';
	return mw_agent_config_load(path, c, err, errlen);
}

#define BASE_CONFIG \
	"jid = agent@example.org\n" \
	"password = hunter2\n" \
	"db = %D\n" \
	"host = 127.0.0.1\n" \
	"allow_plaintext = yes\n" \
	"allowed_signers = %S\n" \
	"policy = %P\n"

static void
test_config_valid(void **state)
{
	(void)state;
	struct mw_agent_config c;
	char path[PATH_MAX + 32], err[1024], want[PATH_MAX + 64];

	config_files();
	if (load_config("# the agent\n\n" BASE_CONFIG, &c, path, sizeof(path), err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.account.jid, "agent@example.org");
	assert_string_equal(c.account.password, "hunter2");
	assert_string_equal(c.account.db, db_path);
	assert_string_equal(c.account.host, "127.0.0.1");
	assert_true(c.account.allow_plaintext);
	assert_string_equal(c.allowed_signers, signers_path);
	assert_string_equal(c.policy, policy_path);
	assert_int_equal(c.max_output, 64 * 1024);
	assert_int_equal(c.clock_skew_s, 60);
	assert_int_equal(c.parallel, 2);
	assert_int_equal(c.queue_max, 64);
	snprintf(want, sizeof(want), "%s/state", tmpdir);
	assert_string_equal(c.state_dir, want);
	mw_agent_config_free(&c);
	assert_null(c.state_dir);

	/* every setting, with spaces, tabs and CRLF */
	if (load_config(
	    "jid=agent@example.org\r\n"
	    "  password_file =\t%W  \r\n"
	    "db = %D\n"
	    "port = 5222\n"
	    "allowed_signers = %S\n"
	    "policy = %P\n"
	    "state_dir = /var/lib/mw\n"
	    "max_output = 8K\n"
	    "clock_skew = 2m\n"
	    "parallel = 4\n"
	    "queue = 0\n"
	    "shutdown_grace = 1500ms\n"
	    "rate_limit = 0\n"
	    "rate_burst = 3\n", &c, path, sizeof(path), err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.account.password, "s3cret");
	assert_int_equal(c.account.port, 5222);
	assert_false(c.account.allow_plaintext);
	assert_string_equal(c.state_dir, "/var/lib/mw");
	assert_int_equal(c.max_output, 8192);
	assert_int_equal(c.clock_skew_s, 120);
	assert_int_equal(c.parallel, 4);
	assert_int_equal(c.queue_max, 0);
	assert_int_equal(c.shutdown_grace_ms, 1500);
	assert_int_equal(c.rate_per_minute, 0);
	assert_int_equal(c.rate_burst, 3);
	mw_agent_config_free(&c);

	/* the last line needs no newline */
	if (load_config(BASE_CONFIG "parallel = 5", &c, path, sizeof(path), err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.parallel, 5);
	/* fleet settings: defaults */
	assert_int_equal(c.omemo_recheck_ms, 3600 * 1000);
	assert_int_equal(c.idle_workers, -1);
	assert_int_equal(c.n_failover, 0);
	assert_int_equal(c.reconnect_spread_ms, 0);
	mw_agent_config_free(&c);

	/* fleet settings: failover servers, re-check, idle pool */
	if (load_config(BASE_CONFIG "failover = localhost, 127.0.0.1:5299 [::1]:5300 ::1\n"
	    "omemo_recheck = 90s\nidle_workers = 0\nreconnect_spread = 1m\n", &c, path, sizeof(path), err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.n_failover, 4);
	assert_string_equal(c.failover_host[0], "localhost");
	assert_int_equal(c.failover_port[0], 0);
	assert_string_equal(c.failover_host[1], "127.0.0.1");
	assert_int_equal(c.failover_port[1], 5299);
	assert_string_equal(c.failover_host[2], "::1");
	assert_int_equal(c.failover_port[2], 5300);
	assert_string_equal(c.failover_host[3], "::1");	/* an address without a port */
	assert_int_equal(c.omemo_recheck_ms, 90000);
	assert_int_equal(c.idle_workers, 0);
	assert_int_equal(c.reconnect_spread_ms, 60000);
	assert_int_equal(c.command_uid_count, 0);	/* default: nobody */
	mw_agent_config_free(&c);
	if (load_config(BASE_CONFIG "parallel = 3\ncommand_uids = 2000000000-2000000003\n", &c, path,
	    sizeof(path), err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.command_uid_first, 2000000000u);
	assert_int_equal(c.command_uid_count, 4);
	mw_agent_config_free(&c);
	assert_int_equal(c.n_failover, 0);
	if (load_config(BASE_CONFIG "omemo_recheck = off\n", &c, path, sizeof(path), err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.omemo_recheck_ms, 0);
	mw_agent_config_free(&c);
}

static void
test_config_errors(void **state)
{
	(void)state;
	struct mw_agent_config c;
	char path[PATH_MAX + 32], err[1024], want[PATH_MAX + 64];
	static const struct { const char *text; unsigned line; const char *why; } cases[] = {
		{ BASE_CONFIG "colour = blue\n", 8, "colour" },
		{ BASE_CONFIG "Policy = %P\n", 8, "Policy" },
		{ BASE_CONFIG "\n# again\njid = other@example.org\n", 10, "line 1" },
		{ BASE_CONFIG "parallel = 3\nparallel = 3\n", 9, "line 8" },
		{ "db = %D\n" BASE_CONFIG, 4, "line 1" },
		{ BASE_CONFIG "parallel 3\n", 8, "key = value" },
		{ BASE_CONFIG "parallel =\n", 8, "parallel" },
		{ BASE_CONFIG "parallel =   \t\n", 8, "parallel" },
		/* relative paths are relative to the file's directory: checked there */
		{ "jid = agent@example.org\npassword = x\ndb = relative/agent.db\n", 3,
		  "relative: No such file or directory" },
		{ BASE_CONFIG "port = 0\n", 8, "port" },
		{ BASE_CONFIG "port = 65536\n", 8, "port" },
		{ BASE_CONFIG "port = 52x\n", 8, "port" },
		{ BASE_CONFIG "max_output = lots\n", 8, "max_output" },
		{ BASE_CONFIG "max_output = 1M\n", 8, "max_output" },
		{ BASE_CONFIG "max_output = 100\n", 8, "max_output" },
		{ BASE_CONFIG "clock_skew = soon\n", 8, "clock_skew" },
		{ BASE_CONFIG "clock_skew = 5h\n", 8, "clock_skew" },
		{ BASE_CONFIG "shutdown_grace = -1s\n", 8, "shutdown_grace" },
		{ BASE_CONFIG "shutdown_grace = 2d\n", 8, "shutdown_grace" },
		{ BASE_CONFIG "parallel = 0\n", 8, "" },
		{ BASE_CONFIG "parallel = 65\n", 8, "" },
		{ BASE_CONFIG "parallel = -1\n", 8, "" },
		{ BASE_CONFIG "rate_burst = 0\n", 8, "" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\n"
		  "allowed_signers = missing_signers\npolicy = %P\n", 4,
		  "missing_signers: No such file or directory" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\n"
		  "allowed_signers = %S\npolicy = /nonexistent/mw/policy\n", 5,
		  "/nonexistent/mw/policy" },
		{ "jid = agent@example.org/laptop\n", 1, "bare JID" },
		{ "jid = agent\n", 1, "bare JID" },
		{ BASE_CONFIG "allow_plaintext = maybe\n", 8, "allow_plaintext" },
		{ "jid = agent@example.org\ndb = %D\nallowed_signers = %S\npolicy = %P\n"
		  "password_file = relative\n", 5, "relative: No such file or directory" },
		{ BASE_CONFIG "state_dir = var/mw\n", 8, "var: No such file or directory" },
		/* plaintext only towards this machine */
		{ "jid = agent@example.org\npassword = x\ndb = %D\nallowed_signers = %S\n"
		  "policy = %P\nhost = xmpp.example.org\nallow_plaintext = yes\n", 7, "plaintext" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\nallowed_signers = %S\n"
		  "policy = %P\nallow_plaintext = true\n", 6, "plaintext" },
		{ "jid = agent@example.org\npassword_file = /nonexistent/pw\ndb = %D\n"
		  "allowed_signers = %S\npolicy = %P\n", 2, "password_file /nonexistent/pw" },
		{ BASE_CONFIG "cert_pin_sha256 = abcdef\n", 8, "64 hex digits" },
		{ BASE_CONFIG "ca_file = /nonexistent/ca.pem\n", 8, "/nonexistent/ca.pem" },
		{ "jid = agent@example.org\npassword = x\ndb = /nonexistent/dir/x.db\n", 3,
		  "directory /nonexistent/dir" },
		{ BASE_CONFIG "queue = 4097\n", 8, "4097" },
		{ BASE_CONFIG "failover = a:0\n", 8, "failover: port" },
		{ BASE_CONFIG "failover = [::1]5222\n", 8, "IPv6" },
		{ BASE_CONFIG "failover = [::1\n", 8, "IPv6" },
		{ BASE_CONFIG "failover = , ,\n", 8, "no server" },
		{ BASE_CONFIG "failover = a@b\n", 8, "host name" },
		{ BASE_CONFIG "failover = a b c d e f g h\n", 8, "at most 7" },
		{ BASE_CONFIG "failover = xmpp.example.org\n", 8, "every failover server" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\nallowed_signers = %S\n"
		  "policy = %P\nfailover = 127.0.0.1\n", 6, "needs host" },
		{ BASE_CONFIG "omemo_recheck = 0s\n", 8, "omemo_recheck" },
		{ BASE_CONFIG "omemo_recheck = 8d\n", 8, "omemo_recheck" },
		{ BASE_CONFIG "idle_workers = 65\n", 8, "" },
		{ BASE_CONFIG "reconnect_spread = 11m\n", 8, "reconnect_spread" },
		/* commands' uids: shape, enough for parallel, no special or
		 * taken uid (0 is root's) */
		{ BASE_CONFIG "command_uids = 2000000000\n", 8, "not FIRST-LAST" },
		{ BASE_CONFIG "command_uids = 2000000003-2000000000\n", 8, "not FIRST-LAST" },
		{ BASE_CONFIG "command_uids = 2000000000-2000000000\n", 8, "1 uids for 2 jobs" },
		{ BASE_CONFIG "command_uids = 65000-66000\n", 8, "65534 (nobody)" },
		{ BASE_CONFIG "command_uids = 2000000000-2000002000\n", 8, "1 to 1024" },
		{ BASE_CONFIG "command_uids = 1-4\n", 8, "uid 1 is taken by 'daemon'" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\n"
		  "allowed_signers = /nonexistent/mw/signers\npolicy = %P\n", 4,
		  "/nonexistent/mw/signers" },
	};

	config_files();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&c, 0x5A, sizeof(c));
		if (load_config(cases[i].text, &c, path, sizeof(path), err, sizeof(err)) != -1)
			fail_msg("case %zu loaded", i);
		snprintf(want, sizeof(want), "%s:%u: ", path, cases[i].line);
		if (strncmp(err, want, strlen(want)) != 0 || strstr(err, cases[i].why) == NULL)
			fail_msg("case %zu: got '%s', want '%s...%s'", i, err, want, cases[i].why);
		/* refused means nothing left to free */
		assert_null(c.allowed_signers);
		assert_null(c.policy);
		assert_null(c.account.jid);
	}

	/* whole-file errors: "FILE: reason" */
	static const struct { const char *text; const char *why; } whole[] = {
		{ "password = x\ndb = %D\nallowed_signers = %S\npolicy = %P\n", "jid" },
		{ "jid = agent@example.org\npassword = x\nallowed_signers = %S\npolicy = %P\n", "db" },
		{ BASE_CONFIG "password_file = %W\n", "password" },
		{ "jid = agent@example.org\ndb = %D\nallowed_signers = %S\npolicy = %P\n", "password" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\npolicy = %P\n", "allowed_signers" },
		{ "jid = agent@example.org\npassword = x\ndb = %D\nallowed_signers = %S\n", "policy" },
	};
	for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
		memset(&c, 0x5A, sizeof(c));
		if (load_config(whole[i].text, &c, path, sizeof(path), err, sizeof(err)) != -1)
			fail_msg("whole case %zu loaded", i);
		snprintf(want, sizeof(want), "%s: ", path);
		if (strncmp(err, want, strlen(want)) != 0 || strstr(err, whole[i].why) == NULL)
			fail_msg("whole case %zu: got '%s', want '%s...%s'", i, err, want,
			    whole[i].why);
		assert_null(c.allowed_signers);
		assert_null(c.policy);
		assert_null(c.state_dir);
		assert_null(c.account.jid);
	}

	/* a missing file names it */
	tmp_path(path, sizeof(path), "no-such.conf");
	assert_int_equal(mw_agent_config_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
}

/* ---- 4. policy: allow and interactive ---- */

static int
parse_policy(const char *text, struct mw_policy *p, char *err, size_t errlen)
{
	err[0] = '\0';
	return mw_policy_parse(text, strlen(text), "test.policy", p, err, errlen);
}

static void
test_policy_allow_lines(void **state)
{
	(void)state;
	struct mw_policy p;
	char err[512];
	static const char text[] =
	    "# who may run what\n"
	    "allow alice@ops alice@example.org admin validity=10m\n"	/* before the profile */
	    "allow deploy@ci ci@example.org readonly\n"
	    "interactive alice@example.org readonly\n"
	    "profile readonly\n"
	    "  kv\n"
	    "allow alice@ops phone@example.org readonly validity=10080m\n"	/* inside a profile section */
	    "profile admin\n"
	    "  sys\n"
	    "  kv\n"
	    "allow ops-team alice@example.org readonly\n"
	    "allow bob@ops alice@example.org admin validity=1s\n"
	    "interactive bob@example.org admin\n";

	if (parse_policy(text, &p, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(p.n_profiles, 2);
	assert_int_equal(p.n_allows, 5);
	assert_int_equal(p.n_interactives, 2);
	/* the profile lines after an allow line still belong to their profile */
	assert_true(p.profiles[0].grants.kv);
	assert_false(p.profiles[0].grants.sys);
	assert_true(p.profiles[1].grants.sys);

	assert_string_equal(p.allows[0].principal, "alice@ops");
	assert_string_equal(p.allows[0].jid, "alice@example.org");
	assert_string_equal(p.profiles[p.allows[0].profile].name, "admin");
	assert_int_equal(p.allows[0].max_validity_s, 600);
	assert_string_equal(p.profiles[p.allows[1].profile].name, "readonly");
	assert_int_equal(p.allows[1].max_validity_s, 3600);	/* default */
	assert_int_equal(p.allows[2].max_validity_s, 7 * 24 * 3600);
	assert_string_equal(p.profiles[p.allows[2].profile].name, "readonly");
	assert_int_equal(p.allows[4].max_validity_s, 1);
	assert_string_equal(p.profiles[p.interactives[0].profile].name, "readonly");
	assert_string_equal(p.profiles[p.interactives[1].profile].name, "admin");

	/* first matching line wins; the JID must match as XMPP compares:
	 * ASCII letters in either case, nothing else differing */
	const struct mw_policy_allow *a;
	a = mw_policy_allowed(&p, "alice@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[0]);
	a = mw_policy_allowed(&p, "alice@ops", "phone@example.org");
	assert_ptr_equal(a, &p.allows[2]);
	assert_null(mw_policy_allowed(&p, "alice@ops", "ci@example.org"));
	assert_ptr_equal(mw_policy_allowed(&p, "alice@ops", "Alice@Example.org"), &p.allows[0]);
	assert_null(mw_policy_allowed(&p, "alice@ops", "alice@example.org/phone"));
	assert_null(mw_policy_allowed(&p, "alice@ops", "alice@example.or"));
	assert_null(mw_policy_allowed(&p, "alice@ops", "lice@example.org"));
	assert_null(mw_policy_allowed(&p, "alice@ops", ""));
	a = mw_policy_allowed(&p, "deploy@ci", "ci@example.org");
	assert_ptr_equal(a, &p.allows[1]);
	assert_null(mw_policy_allowed(&p, "deploy@ci", "alice@example.org"));
	assert_null(mw_policy_allowed(&p, "mallory@ops", "alice@example.org"));
	assert_null(mw_policy_allowed(&p, NULL, "alice@example.org"));
	assert_null(mw_policy_allowed(&p, "", "alice@example.org"));
	/* a key listed with several principals: any of them, first line wins */
	a = mw_policy_allowed(&p, "ops-team,bob@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[3]);
	a = mw_policy_allowed(&p, "bob@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[4]);
	/* principal patterns, as allowed_signers writes them */
	a = mw_policy_allowed(&p, "*@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[0]);
	a = mw_policy_allowed(&p, "!alice@ops,*@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[4]);	/* bob@ops */
	a = mw_policy_allowed(&p, "!mallory@ops,*@ops", "alice@example.org");
	assert_ptr_equal(a, &p.allows[0]);
	assert_null(mw_policy_allowed(&p, "!*@ops,*@ops,!ops-team", "alice@example.org"));
	assert_null(mw_policy_allowed(&p, "*@ci", "alice@example.org"));
	a = mw_policy_allowed(&p, "*@ci", "ci@example.org");
	assert_ptr_equal(a, &p.allows[1]);
	a = mw_policy_allowed(&p, "deploy@c?", "ci@example.org");
	assert_ptr_equal(a, &p.allows[1]);
	assert_null(mw_policy_allowed(&p, "deploy@?", "ci@example.org"));

	/* interactive and presence */
	assert_ptr_equal(mw_policy_interactive_for(&p, "alice@example.org"), &p.interactives[0]);
	assert_ptr_equal(mw_policy_interactive_for(&p, "bob@example.org"), &p.interactives[1]);
	assert_null(mw_policy_interactive_for(&p, "ci@example.org"));
	assert_null(mw_policy_interactive_for(&p, "bob@example.org/x"));
	assert_true(mw_policy_knows_jid(&p, "alice@example.org"));
	assert_true(mw_policy_knows_jid(&p, "ci@example.org"));
	assert_true(mw_policy_knows_jid(&p, "phone@example.org"));
	assert_true(mw_policy_knows_jid(&p, "bob@example.org"));	/* interactive only */
	assert_false(mw_policy_knows_jid(&p, "mallory@example.org"));
	assert_false(mw_policy_knows_jid(&p, "alice@ops"));	/* a principal, not a JID */
	assert_true(mw_policy_knows_jid(&p, "ALICE@example.org"));	/* ASCII case aside */
	assert_false(mw_policy_knows_jid(&p, "alice@example.org.evil"));
	assert_false(mw_policy_knows_jid(&p, ""));
	mw_policy_free(&p);

	/* no allow lines: nobody */
	if (parse_policy("profile p\n", &p, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_null(mw_policy_allowed(&p, "*", "alice@example.org"));
	assert_null(mw_policy_interactive_for(&p, "alice@example.org"));
	assert_false(mw_policy_knows_jid(&p, "alice@example.org"));
	mw_policy_free(&p);
}

static void
test_policy_allow_errors(void **state)
{
	(void)state;
	struct mw_policy p;
	char err[512], want[64];
	static const struct { const char *text; unsigned line; const char *why; } cases[] = {
		/* the unknown profile is reported on the line that names it */
		{ "profile a\n\nallow x@y u@example.org nosuch\nprofile b\n", 3, "nosuch" },
		{ "allow x@y u@example.org b\nprofile a\ninteractive v@example.org c\n", 1, "'b'" },
		{ "profile a\ninteractive v@example.org zzz\n", 2, "zzz" },
		{ "profile a\nallow x@y u@example.org/phone a\n", 2, "bare JID" },
		{ "profile a\nallow x@y example.org a\n", 2, "bare JID" },
		{ "profile a\nallow x@y @example.org a\n", 2, "bare JID" },
		{ "profile a\nallow x@y u@ a\n", 2, "bare JID" },
		{ "profile a\nallow x@y u@v@example.org a\n", 2, "bare JID" },
		{ "profile a\ninteractive u@example.org/res a\n", 2, "bare JID" },
		{ "profile a\ninteractive nobody a\n", 2, "bare JID" },
		{ "profile a\nallow x@y,z@y u@example.org a\n", 2, "principal" },
		{ "profile a\nallow !x@y u@example.org a\n", 2, "principal" },
		{ "profile a\nallow \"\" u@example.org a\n", 2, "principal" },
		{ "profile a\nallow x@y u@example.org a validity=0s\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org a validity=500ms\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org a validity=8d\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org a validity=10081m\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org a validity=\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org a expires=1h\n", 2, "validity" },
		{ "profile a\nallow x@y u@example.org\n", 2, "usage" },
		{ "profile a\nallow x@y u@example.org a/b\n", 2, "profile" },
		{ "profile a\nallow x@y u@example.org a validity=1h extra\n", 2, "usage" },
		{ "profile a\ninteractive u@example.org\n", 2, "usage" },
		{ "profile a\ninteractive u@example.org a b\n", 2, "usage" },
		{ "profile a\ninteractive u@example.org a\n\ninteractive u@example.org a\n", 4, "twice" },
		{ "interactive u@example.org a\nprofile a\ninteractive u@example.org b\nprofile b\n", 3, "twice" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (parse_policy(cases[i].text, &p, err, sizeof(err)) != -1)
			fail_msg("case %zu parsed", i);
		snprintf(want, sizeof(want), "test.policy:%u: ", cases[i].line);
		if (strncmp(err, want, strlen(want)) != 0 || strstr(err, cases[i].why) == NULL)
			fail_msg("case %zu: got '%s', want '%s...%s'", i, err, want, cases[i].why);
		assert_int_equal(p.n_allows, 0);	/* refused: nothing kept */
		assert_null(p.allows);
		assert_null(p.interactives);
	}

	/* the same JID in several allow lines is fine (different signers) */
	if (parse_policy("profile a\nallow x@y u@example.org a\nallow z@y u@example.org a\n"
	    "interactive u@example.org a\n", &p, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(p.n_allows, 2);
	mw_policy_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_result_ok_roundtrip),
		cmocka_unit_test(test_result_output_xml_safe),
		cmocka_unit_test(test_result_truncation_utf8),
		cmocka_unit_test(test_result_refusal_and_job_id),
		cmocka_unit_test(test_result_size_bound),
		cmocka_unit_test(test_result_parse_rejects),
		cmocka_unit_test(test_result_v2_format),
		cmocka_unit_test(test_result_exit_codes),
		cmocka_unit_test(test_journal_schema),
		cmocka_unit_test(test_journal_accept_lookup),
		cmocka_unit_test(test_journal_finish_replied),
		cmocka_unit_test(test_journal_delivery_confirmation),
		cmocka_unit_test(test_journal_finish_sending),
		cmocka_unit_test(test_journal_recover),
		cmocka_unit_test(test_config_valid),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_policy_allow_lines),
		cmocka_unit_test(test_policy_allow_errors),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
