/*
 * result_msg.c: the result message the agent sends back over OMEMO
 * (spec/result.md).  Version 2 is a one-line summary for people (status,
 * values or error, wall time), then text shaped like an HTTP response --
 * the version line, header lines, a blank line, then the program's output
 * as a XEP-0393 preformatted block -- so a person reading it in an
 * ordinary OMEMO chat client sees the answer first, and a program can
 * parse it exactly: every header is one line, values that may hold
 * arbitrary text are JSON, and the output is counted in bytes.  Version 1
 * (no summary, the bare output after the blank line) is still parsed.
 *
 * Invariant: the text is XML-safe UTF-8 (no control characters but TAB and
 * LF), because it travels in an XMPP <body>, and it never exceeds
 * MW_OMEMO_MAX_PLAINTEXT.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/mw_omemo.h"
#include "runtime/job/job.h"
#include "runtime/result/result.h"
#include "wire/mw_wire.h"

/* Headers without the output, generously: values are capped by the
 * sandbox's result limit, errors by the 4 KiB DONE error cap. */
#define HEADER_RESERVE 1024

/* Length of the longest prefix of s[0..n) that is at most max bytes and
 * does not split a UTF-8 sequence. */
static size_t
utf8_prefix(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return max;
}

/*
 * JSON text with the characters cJSON leaves raw but an XMPP <body> cannot
 * carry -- DEL, U+FFFE, U+FFFF -- written as \u escapes (lossless: a JSON
 * reader gets the same string).  json is valid UTF-8 and these can occur
 * only inside strings, so a byte-level rewrite is exact.  Frees json.
 */
static char *
json_xml_safe(char *json)
{
	size_t n = 0, len;
	char *out, *o;

	if (json == NULL)
		return NULL;
	len = strlen(json);
	for (size_t i = 0; i < len; i++)
		n += json[i] == 0x7F || ((unsigned char)json[i] == 0xEF && i + 2 < len &&
		    (unsigned char)json[i + 1] == 0xBF &&
		    ((unsigned char)json[i + 2] & 0xFE) == 0xBE);
	if (n == 0)
		return json;
	if ((out = malloc(len + 6 * n + 1)) == NULL) {
		free(json);
		return NULL;
	}
	o = out;
	for (size_t i = 0; i < len; i++) {
		if (json[i] == 0x7F) {
			memcpy(o, "\\u007f", 6);
			o += 6;
		} else if ((unsigned char)json[i] == 0xEF && i + 2 < len &&
		    (unsigned char)json[i + 1] == 0xBF &&
		    ((unsigned char)json[i + 2] & 0xFE) == 0xBE) {
			memcpy(o, json[i + 2] == '\xBE' ? "\\ufffe" : "\\uffff", 6);
			o += 6;
			i += 2;
		} else {
			*o++ = json[i];
		}
	}
	*o = '\0';
	free(json);
	return out;
}

/*
 * Appends s[0..n) to the summary line: TAB and LF (the only controls a
 * cleaned text has) become spaces, so the summary stays one line.
 */
static int
put_one_line(struct mw_buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (mw_buf_put_u8(b, s[i] == '\n' || s[i] == '\t' ? ' ' : (uint8_t)s[i]) != 0)
			return -1;
	return 0;
}

/*
 * The version-2 summary line, what a person sees first in a chat client:
 *   ok: 42,"x" (12 ms)             values without the brackets
 *   ok (3 ms)                      no values
 *   error: job:3: boom (5 ms)      an error instead of the values
 *   refused: replay: seen before
 * Cut to MW_RESULT_SUMMARY_MAX bytes on a character boundary, then "...".
 * vals is the JSON array text (or NULL), error the error as given (cleaned
 * here; or NULL), usage NULL for a refusal.
 */
static int
put_summary(struct mw_buf *b, const char *status, const char *refusal_name,
    const char *error, const char *vals, const struct mw_usage *usage)
{
	struct mw_buf line;
	char *clean_error = NULL;
	size_t clean_error_len = 0, keep;
	int rc = -1;

	mw_buf_init(&line, MW_OMEMO_MAX_PLAINTEXT);
	if (error != NULL && (clean_error = mw_text_clean((const uint8_t *)error,
	    strlen(error), true, &clean_error_len)) == NULL)
		goto out;
	if (mw_buf_putf(&line, "%s", status) != 0)
		goto out;
	if (refusal_name != NULL && mw_buf_putf(&line, ": %s", refusal_name) != 0)
		goto out;
	if (clean_error != NULL) {
		if (mw_buf_putf(&line, ": ") != 0 ||
		    put_one_line(&line, clean_error, clean_error_len) != 0)
			goto out;
	} else if (vals != NULL && strlen(vals) > 2) {
		if (mw_buf_putf(&line, ": ") != 0 ||
		    put_one_line(&line, vals + 1, strlen(vals) - 2) != 0)
			goto out;
	}
	if (usage != NULL && mw_buf_putf(&line, " (%" PRIu64 " ms)",
	    (usage->wall_us + 500) / 1000) != 0)
		goto out;
	keep = utf8_prefix((const char *)mw_buf_ptr(&line), mw_buf_avail(&line),
	    MW_RESULT_SUMMARY_MAX);
	if (mw_buf_put(b, mw_buf_ptr(&line), keep) != 0 ||
	    (keep < mw_buf_avail(&line) && mw_buf_putf(b, "...") != 0) ||
	    mw_buf_put_u8(b, '\n') != 0)
		goto out;
	rc = 0;
out:
	free(clean_error);
	mw_buf_free(&line);
	return rc;
}

char *
mw_result_message(const char *job_id, const struct mw_result *r,
    int refusal, const char *reason, uint32_t max_output)
{
	struct mw_buf b;
	char *out = NULL, *vals = NULL, *err_json = NULL, *clean = NULL;
	size_t clean_len = 0, olen;
	bool truncated = false;
	cJSON *ej = NULL;
	const char *status = refusal < 0 ? "refused" :
	    mw_job_status_name(r != NULL ? r->status : MW_JOB_INTERNAL_ERROR);
	const char *error = refusal < 0 ? reason : (r != NULL ? r->error : "no result");
	const char *summary_error = error;

	mw_buf_init(&b, MW_OMEMO_MAX_PLAINTEXT + 1);
	if (error != NULL) {
		char *e = mw_text_clean((const uint8_t *)error, strlen(error), false, NULL);
		if (e == NULL || (ej = cJSON_CreateString(e)) == NULL ||
		    (err_json = json_xml_safe(cJSON_PrintUnformatted(ej))) == NULL) {
			free(e);
			goto out;
		}
		free(e);
	}
	if (refusal >= 0 && r != NULL) {
		if ((vals = json_xml_safe(mw_result_values_json(r))) == NULL)
			goto out;
		if ((clean = mw_text_clean((const uint8_t *)(r->output ? r->output : ""),
		    r->output_len, true, &clean_len)) == NULL)
			goto out;
		truncated = r->output_truncated;
	}
	/* the values must leave room for the headers */
	if (vals != NULL && strlen(vals) > MW_OMEMO_MAX_PLAINTEXT - 2 * HEADER_RESERVE -
	    (err_json ? strlen(err_json) : 0)) {
		free(vals);
		vals = strdup("[]");
		free(err_json);
		err_json = strdup("\"returned values too large for one message\"");
		summary_error = "returned values too large for one message";
		status = mw_job_status_name(MW_JOB_RESULT_LIMIT);
		if (vals == NULL || err_json == NULL)
			goto out;
	}
	if (put_summary(&b, status, refusal < 0 ? mw_refusal_name(refusal) : NULL,
	    err_json != NULL ? summary_error : NULL, vals, refusal < 0 || r == NULL ? NULL : &r->usage) != 0)
		goto out;
	if (mw_buf_putf(&b, "%s\njob-id: %s\nstatus: %s\n", MW_RESULT_MAGIC_V2,
	    job_id != NULL && job_id[0] != '\0' ? job_id : "-", status) != 0)
		goto out;
	if (refusal < 0 && mw_buf_putf(&b, "refusal: %s\n", mw_refusal_name(refusal)) != 0)
		goto out;
	if (err_json != NULL && mw_buf_putf(&b, "error: %s\n", err_json) != 0)
		goto out;
	if (mw_buf_putf(&b, "values: %s\n", vals != NULL ? vals : "[]") != 0)
		goto out;
	if (mw_buf_putf(&b, "usage: cpu_us=%" PRIu64 " wall_us=%" PRIu64
	    " instructions=%" PRIu64 " memory_peak=%" PRIu64 "\n",
	    r != NULL ? r->usage.cpu_us : 0, r != NULL ? r->usage.wall_us : 0,
	    r != NULL ? r->usage.instructions : 0,
	    r != NULL ? r->usage.memory_peak : 0) != 0)
		goto out;
	/* the output gets what is left, up to max_output */
	olen = clean_len;
	{
		size_t room = MW_OMEMO_MAX_PLAINTEXT - mw_buf_avail(&b) - 96 -
		    2 * sizeof(MW_RESULT_FENCE) - 2;
		size_t cap = max_output < room ? max_output : room;
		size_t keep = utf8_prefix(clean ? clean : "", clean_len, cap);
		if (keep < clean_len)
			truncated = true;
		olen = keep;
	}
	if (mw_buf_putf(&b, "output-length: %zu\noutput-truncated: %s\n\n", olen,
	    truncated ? "yes" : "no") != 0 ||
	    (olen > 0 && (mw_buf_put(&b, MW_RESULT_FENCE "\n", strlen(MW_RESULT_FENCE) + 1) != 0 ||
	    mw_buf_put(&b, clean, olen) != 0 ||
	    (clean[olen - 1] != '\n' && mw_buf_put_u8(&b, '\n') != 0) ||
	    mw_buf_put(&b, MW_RESULT_FENCE, strlen(MW_RESULT_FENCE)) != 0)) ||
	    mw_buf_put_u8(&b, 0) != 0)
		goto out;
	out = strdup((const char *)mw_buf_ptr(&b));
out:
	cJSON_Delete(ej);
	free(err_json);
	free(vals);
	free(clean);
	mw_buf_free(&b);
	return out;
}

char *
mw_result_cancel_answer(const char *job_id, int refusal, const char *reason)
{
	static const char hdr[] = "answer-to: cancel\n";
	char *msg = mw_result_message(job_id, NULL, refusal, reason, 0), *at, *out;
	size_t n, off;

	if (msg == NULL)
		return NULL;
	/* right after the status line: the headers are the reader's, the
	 * summary line keeps saying what happened */
	if ((at = strstr(msg, "\nstatus: ")) == NULL ||
	    (at = strchr(at + 1, '\n')) == NULL) {
		free(msg);
		return NULL;
	}
	off = (size_t)(at + 1 - msg);
	n = strlen(msg);
	if ((out = malloc(n + sizeof(hdr))) == NULL) {
		free(msg);
		return NULL;
	}
	memcpy(out, msg, off);
	memcpy(out + off, hdr, sizeof(hdr) - 1);
	memcpy(out + off + sizeof(hdr) - 1, msg + off, n - off + 1);
	free(msg);
	return out;
}

void
mw_result_msg_free(struct mw_result_msg *m)
{
	free(m->job_id);
	free(m->status);
	free(m->refusal);
	free(m->error);
	cJSON_Delete(m->values);
	free(m->output);
	memset(m, 0, sizeof(*m));
}

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && (*end == '\0' || *end == ' ') ? 0 : -1;
}

static int
parse_usage(const char *v, struct mw_usage *u)
{
	static const char *const keys[] = { "cpu_us=", "wall_us=", "instructions=", "memory_peak=" };
	uint64_t *dst[] = { &u->cpu_us, &u->wall_us, &u->instructions, &u->memory_peak };

	for (size_t i = 0; i < 4; i++) {
		size_t kl = strlen(keys[i]);
		if (strncmp(v, keys[i], kl) != 0 || parse_u64(v + kl, dst[i]) != 0)
			return -1;
		v = strchr(v, ' ');
		if (i < 3) {
			if (v == NULL)		/* (v++ on NULL is undefined) */
				return -1;
			v++;
		}
	}
	return v == NULL ? 0 : -1;
}

/*
 * Where the output lies in what follows the blank line, which must be
 * exactly: version 1, the olen bytes of output; version 2, nothing when
 * olen is 0, else the fence line, the output, an LF unless the output
 * ends with one, and the closing fence (nothing after it).
 */
static int
body_output(const struct mw_buf *b, int version, uint64_t olen, const uint8_t **out)
{
	const uint8_t *p = mw_buf_ptr(b);
	size_t n = mw_buf_avail(b), fl = strlen(MW_RESULT_FENCE);

	if (version == 1 || olen == 0) {
		*out = p;
		return olen == n ? 0 : -1;
	}
	if (n < fl + 1 || memcmp(p, MW_RESULT_FENCE "\n", fl + 1) != 0)
		return -1;
	p += fl + 1;
	n -= fl + 1;
	if (olen > n)
		return -1;
	*out = p;
	p += olen;
	n -= (size_t)olen;
	if (p[-1] != '\n') {
		if (n < 1 || *p != '\n')
			return -1;
		p++;
		n--;
	}
	return n == fl && memcmp(p, MW_RESULT_FENCE, fl) == 0 ? 0 : -1;
}

int
mw_result_message_parse(const char *text, size_t len, struct mw_result_msg *m)
{
	struct mw_buf b;
	const uint8_t *lp;
	size_t ll;
	uint64_t olen = 0;
	const uint8_t *out = NULL;
	bool have_len = false, have_trunc = false, have_usage = false;
	char line[8192];
	int version;

	memset(m, 0, sizeof(*m));
	mw_buf_view(&b, text, len);
	if (mw_buf_get_line(&b, &lp, &ll) != 0)
		return -1;
	if (ll == strlen(MW_RESULT_MAGIC_V1) && memcmp(lp, MW_RESULT_MAGIC_V1, ll) == 0)
		version = 1;
	else if (ll > 0 && mw_buf_get_line(&b, &lp, &ll) == 0 &&
	    ll == strlen(MW_RESULT_MAGIC_V2) && memcmp(lp, MW_RESULT_MAGIC_V2, ll) == 0)
		version = 2;	/* line 1 was the summary, for people only */
	else
		return -1;
	for (;;) {
		char *k, *v;

		if (mw_buf_get_line(&b, &lp, &ll) != 0)
			goto bad;
		if (ll == 0)
			break;		/* end of headers */
		if (ll >= sizeof(line) && ll > MW_OMEMO_MAX_PLAINTEXT)
			goto bad;
		k = malloc(ll + 1);
		if (k == NULL)
			goto bad;
		memcpy(k, lp, ll);
		k[ll] = '\0';
		if ((v = strstr(k, ": ")) == NULL) {
			free(k);
			goto bad;
		}
		*v = '\0';
		v += 2;
		int rc = 0;
		/* a known header given twice is refused, not skipped: which one
		 * counts would be the reader's guess */
		if (strcmp(k, "job-id") == 0)
			rc = m->job_id != NULL || (m->job_id = strdup(v)) == NULL;
		else if (strcmp(k, "status") == 0)
			rc = m->status != NULL || (m->status = strdup(v)) == NULL ||
			    (strcmp(v, "refused") != 0 && mw_job_status_from_name(v) < 0);
		else if (strcmp(k, "refusal") == 0)
			rc = m->refusal != NULL || (m->refusal = strdup(v)) == NULL;
		else if (strcmp(k, "answer-to") == 0) {
			rc = m->answer_to_cancel || strcmp(v, "cancel") != 0;
			m->answer_to_cancel = true;
		}
		else if (strcmp(k, "error") == 0) {
			cJSON *e = m->error != NULL ? NULL :
			    cJSON_ParseWithOpts(v, NULL, 1);
			rc = !cJSON_IsString(e) ||
			    (m->error = strdup(cJSON_GetStringValue(e))) == NULL;
			cJSON_Delete(e);
		} else if (strcmp(k, "values") == 0) {
			rc = m->values != NULL || !cJSON_IsArray(m->values =
			    cJSON_ParseWithOpts(v, NULL, 1));
		} else if (strcmp(k, "usage") == 0) {
			rc = have_usage || parse_usage(v, &m->usage);
			have_usage = true;
		} else if (strcmp(k, "output-length") == 0) {
			rc = have_len || parse_u64(v, &olen) != 0 || strchr(v, ' ') != NULL;
			have_len = true;
		} else if (strcmp(k, "output-truncated") == 0) {
			rc = have_trunc || (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0);
			m->output_truncated = strcmp(v, "yes") == 0;
			have_trunc = true;
		}
		/* unknown headers are ignored: later minor additions stay readable */
		free(k);
		if (rc != 0)
			goto bad;
	}
	if (m->job_id == NULL || m->status == NULL || m->values == NULL ||
	    !have_len || !have_trunc || !have_usage ||
	    (strcmp(m->status, "refused") == 0) != (m->refusal != NULL) ||
	    body_output(&b, version, olen, &out) != 0)
		goto bad;
	if ((m->output = malloc(olen + 1)) == NULL)
		goto bad;
	m->version = version;
	memcpy(m->output, out, olen);
	m->output[olen] = '\0';
	m->output_len = olen;
	return 0;
bad:
	mw_result_msg_free(m);
	return -1;
}

char *
mw_result_msg_json(const struct mw_result_msg *m, const char *from)
{
	cJSON *o = cJSON_CreateObject(), *u;
	char *s = NULL;

	if (o == NULL)
		return NULL;
	if (cJSON_AddStringToObject(o, "from", from ? from : "") == NULL ||
	    cJSON_AddStringToObject(o, "job_id", m->job_id) == NULL ||
	    cJSON_AddStringToObject(o, "status", m->status) == NULL)
		goto out;
	if (m->refusal != NULL ? cJSON_AddStringToObject(o, "refusal", m->refusal) == NULL :
	    cJSON_AddNullToObject(o, "refusal") == NULL)
		goto out;
	{
		cJSON *v = cJSON_Duplicate(m->values, 1);
		if (v == NULL || !cJSON_AddItemToObject(o, "values", v)) {
			cJSON_Delete(v);
			goto out;
		}
	}
	if (cJSON_AddStringToObject(o, "output", m->output) == NULL ||
	    cJSON_AddBoolToObject(o, "output_truncated", m->output_truncated) == NULL)
		goto out;
	if (m->error != NULL ? cJSON_AddStringToObject(o, "error", m->error) == NULL :
	    cJSON_AddNullToObject(o, "error") == NULL)
		goto out;
	if (m->answer_to_cancel && cJSON_AddStringToObject(o, "answer_to", "cancel") == NULL)
		goto out;
	if ((u = cJSON_AddObjectToObject(o, "usage")) == NULL ||
	    cJSON_AddNumberToObject(u, "cpu_us", (double)m->usage.cpu_us) == NULL ||
	    cJSON_AddNumberToObject(u, "wall_us", (double)m->usage.wall_us) == NULL ||
	    cJSON_AddNumberToObject(u, "instructions", (double)m->usage.instructions) == NULL ||
	    cJSON_AddNumberToObject(u, "memory_peak", (double)m->usage.memory_peak) == NULL)
		goto out;
	s = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return s;
}

int
mw_result_msg_exit(const struct mw_result_msg *m)
{
	int st;

	if (strcmp(m->status, "refused") == 0)
		return MW_EXIT_REFUSED;
	st = mw_job_status_from_name(m->status);
	return st < 0 ? MW_EXIT_UNAVAILABLE : mw_exit_for_status((enum mw_job_status)st);
}
