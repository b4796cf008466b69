/*
 * result.c: a job result for machines (JSON, spec/result.md) and for people.
 * Lua values arrive as the wire value tree; tables whose keys are exactly
 * 1..n become JSON arrays, all others objects with string keys.  Strings
 * that are not valid UTF-8 are repaired with U+FFFD so the JSON stays valid.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "runtime/result/result.h"
#include "runtime/mw_runtime.h"
#include "wire/mw_wire.h"

int
mw_exit_for_status(enum mw_job_status s)
{
	switch (s) {
	case MW_JOB_OK: return MW_EXIT_OK;
	case MW_JOB_ERROR: return MW_EXIT_ERROR;
	case MW_JOB_SYNTAX_ERROR: return MW_EXIT_SYNTAX;
	case MW_JOB_INSTRUCTION_LIMIT: case MW_JOB_MEMORY_LIMIT:
	case MW_JOB_CPU_LIMIT: case MW_JOB_WALL_LIMIT: case MW_JOB_OUTPUT_LIMIT:
	case MW_JOB_PROGRAM_TOO_LARGE: case MW_JOB_RESULT_LIMIT:
	case MW_JOB_CAPABILITY_LIMIT:
		return MW_EXIT_LIMIT;
	case MW_JOB_SANDBOX_VIOLATION: case MW_JOB_CRASHED: case MW_JOB_PROTOCOL_ERROR:
		return MW_EXIT_SANDBOX;
	case MW_JOB_CANCELLED:	/* asked for, unlike "did not return" (6) */
		return MW_EXIT_CANCELLED;
	default:
		return MW_EXIT_UNAVAILABLE;
	}
}

/* Valid UTF-8 copy of [s, s+n); invalid sequences become U+FFFD, and with
 * xml_safe also control characters other than TAB and LF (XML 1.0 cannot
 * carry them, and parsers rewrite CR). */
char *
mw_text_clean(const uint8_t *s, size_t n, bool xml_safe, size_t *outlen)
{
	char *out = malloc(n * 3 + 1), *o = out;
	if (out == NULL)
		return NULL;
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 :
		    (c >> 3) == 30 ? 4 : 0;
		bool ok = len > 0 && i + len <= n && c != 0;
		for (size_t k = 1; ok && k < len; k++)
			ok = (s[i + k] & 0xC0) == 0x80;
		if (ok && len == 2)
			ok = c >= 0xC2;
		if (ok && len == 3) {
			uint32_t cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
			ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
		}
		if (ok && len == 4) {
			uint32_t cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
			    ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
			ok = cp >= 0x10000 && cp <= 0x10FFFF;
		}
		if (ok && xml_safe && len == 1 && (c < 0x20 || c == 0x7F))
			ok = c == '\t' || c == '\n';
		if (ok && xml_safe && len == 3 && c == 0xEF && s[i + 1] == 0xBF &&
		    (s[i + 2] == 0xBE || s[i + 2] == 0xBF))
			ok = false;	/* U+FFFE, U+FFFF */
		if (!ok) {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(o, s + i, len);
		o += len;
		i += len;
	}
	*o = '\0';
	if (outlen != NULL)
		*outlen = (size_t)(o - out);
	return out;
}

static cJSON *
json_string(const uint8_t *s, size_t n)
{
	char *c = mw_text_clean(s, n, false, NULL);
	cJSON *j = c ? cJSON_CreateString(c) : NULL;
	free(c);
	return j;
}

static cJSON *json_value(struct mw_buf *b, unsigned depth);

static char *
key_text(struct mw_buf *b, unsigned depth, int64_t *ikey, bool *is_int)
{
	uint8_t tag;
	*is_int = false;
	if (mw_buf_get_u8(b, &tag) != 0)
		return NULL;
	char tmp[64];
	switch (tag) {
	case MW_V_INT: {
		uint64_t u;
		if (mw_buf_get_u64(b, &u) != 0)
			return NULL;
		*ikey = (int64_t)u;
		*is_int = true;
		snprintf(tmp, sizeof(tmp), "%lld", (long long)*ikey);
		return strdup(tmp);
	}
	case MW_V_NUMBER: {
		uint64_t u;
		double d;
		if (mw_buf_get_u64(b, &u) != 0)
			return NULL;
		memcpy(&d, &u, sizeof(d));
		snprintf(tmp, sizeof(tmp), "%.17g", d);
		return strdup(tmp);
	}
	case MW_V_STRING: {
		const uint8_t *s;
		size_t n;
		if (mw_buf_get_string_direct(b, &s, &n) != 0)
			return NULL;
		return mw_text_clean(s, n, false, NULL);
	}
	case MW_V_TRUE: return strdup("true");
	case MW_V_FALSE: return strdup("false");
	default: {
		/* A table as a key: consume it, name it by type. */
		b->off--;
		cJSON *j = json_value(b, depth);
		if (j == NULL)
			return NULL;
		cJSON_Delete(j);
		return strdup("<table>");
	}
	}
}

static cJSON *
json_value(struct mw_buf *b, unsigned depth)
{
	uint8_t tag;
	uint64_t u;
	if (depth > MW_VALUE_MAX_DEPTH || mw_buf_get_u8(b, &tag) != 0)
		return NULL;
	switch (tag) {
	case MW_V_NIL: return cJSON_CreateNull();
	case MW_V_TRUE: return cJSON_CreateTrue();
	case MW_V_FALSE: return cJSON_CreateFalse();
	case MW_V_INT:
		if (mw_buf_get_u64(b, &u) != 0)
			return NULL;
		return cJSON_CreateNumber((double)(int64_t)u);
	case MW_V_NUMBER: {
		double d;
		if (mw_buf_get_u64(b, &u) != 0)
			return NULL;
		memcpy(&d, &u, sizeof(d));
		return isfinite(d) ? cJSON_CreateNumber(d) : cJSON_CreateNull();
	}
	case MW_V_STRING: {
		const uint8_t *s;
		size_t n;
		if (mw_buf_get_string_direct(b, &s, &n) != 0)
			return NULL;
		return json_string(s, n);
	}
	case MW_V_TABLE: {
		uint32_t count;
		if (mw_buf_get_u32(b, &count) != 0 || count > mw_buf_avail(b) / 2)
			return NULL;
		cJSON **vals = calloc(count ? count : 1, sizeof(cJSON *));
		char **keys = calloc(count ? count : 1, sizeof(char *));
		int64_t *ik = calloc(count ? count : 1, sizeof(int64_t));
		bool array = true, ok = vals && keys && ik;
		uint32_t got = 0;
		for (; ok && got < count; got++) {
			bool is_int;
			keys[got] = key_text(b, depth + 1, &ik[got], &is_int);
			vals[got] = keys[got] ? json_value(b, depth + 1) : NULL;
			if (keys[got] == NULL || vals[got] == NULL) {
				ok = false;
				got++;
				break;
			}
			if (!is_int || ik[got] < 1 || ik[got] > (int64_t)count)
				array = false;
		}
		cJSON *out = NULL;
		if (ok) {
			if (array) {
				/* Keys are distinct, so 1..count each appear once. */
				cJSON **ordered = calloc(count ? count : 1, sizeof(cJSON *));
				for (uint32_t i = 0; ordered != NULL && i < count; i++) {
					if (ordered[ik[i] - 1] != NULL) {
						/* a duplicate key: refused, nothing moved */
						free(ordered);
						ordered = NULL;
						break;
					}
					ordered[ik[i] - 1] = vals[i];
				}
				if (ordered != NULL) {
					out = cJSON_CreateArray();
					for (uint32_t i = 0; out && i < count; i++)
						cJSON_AddItemToArray(out, ordered[i]);
					free(ordered);
					if (out != NULL)
						for (uint32_t i = 0; i < count; i++)
							vals[i] = NULL;
				}
			} else {
				out = cJSON_CreateObject();
				for (uint32_t i = 0; out && i < count; i++) {
					cJSON_AddItemToObject(out, keys[i], vals[i]);
					vals[i] = NULL;
				}
			}
		}
		for (uint32_t i = 0; i < got; i++) {
			if (vals && vals[i])
				cJSON_Delete(vals[i]);
			if (keys)
				free(keys[i]);
		}
		free(vals);
		free(keys);
		free(ik);
		return out;
	}
	}
	return NULL;
}

/* The values of a result as JSON; NULL for a tree no Lua program could
 * have returned (duplicate keys, nil or table keys). */
static cJSON *
json_values(const uint8_t *v, size_t len)
{
	struct mw_buf b;
	struct mw_value_limits lim = { MW_VALUE_MAX_DEPTH, MW_VALUE_MAX_ITEMS };
	mw_buf_view(&b, v, len);
	if (mw_value_check_keys(&b, &lim) != 0)
		return NULL;
	mw_buf_view(&b, v, len);
	return json_value(&b, 0);
}

static cJSON *
result_json(const struct mw_result *r)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "job_id", r->job_id ? r->job_id : "");
	cJSON_AddStringToObject(o, "status", mw_job_status_name(r->status));
	cJSON *vals = NULL;
	if (r->values_len > 0) {
		vals = json_values(r->values, r->values_len);
	}
	if (vals == NULL || !cJSON_IsArray(vals)) {
		cJSON_Delete(vals);
		vals = cJSON_CreateArray();
	}
	cJSON_AddItemToObject(o, "values", vals);
	cJSON_AddItemToObject(o, "output", json_string((const uint8_t *)(r->output ? r->output : ""),
	    r->output_len));
	cJSON_AddBoolToObject(o, "output_truncated", r->output_truncated);
	if (r->error != NULL)
		cJSON_AddItemToObject(o, "error", json_string((const uint8_t *)r->error, strlen(r->error)));
	else
		cJSON_AddNullToObject(o, "error");
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	if (u != NULL) {
		cJSON_AddNumberToObject(u, "cpu_us", (double)r->usage.cpu_us);
		cJSON_AddNumberToObject(u, "wall_us", (double)r->usage.wall_us);
		cJSON_AddNumberToObject(u, "instructions", (double)r->usage.instructions);
		cJSON_AddNumberToObject(u, "memory_peak", (double)r->usage.memory_peak);
	}
	return o;
}

char *
mw_result_values_json(const struct mw_result *r)
{
	cJSON *vals = NULL;
	char *s;

	if (r->values_len > 0) {
		vals = json_values(r->values, r->values_len);
	}
	if (vals == NULL || !cJSON_IsArray(vals)) {
		cJSON_Delete(vals);
		if ((vals = cJSON_CreateArray()) == NULL)
			return NULL;
	}
	s = cJSON_PrintUnformatted(vals);
	cJSON_Delete(vals);
	return s;
}

char *
mw_result_to_json(const struct mw_result *r, bool pretty)
{
	cJSON *o = result_json(r);
	if (o == NULL)
		return NULL;
	char *s = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

void
mw_result_print_text(FILE *f, const struct mw_result *r)
{
	cJSON *o = result_json(r);
	fprintf(f, "status: %s\n", mw_job_status_name(r->status));
	if (r->error != NULL)
		fprintf(f, "error: %s\n", r->error);
	cJSON *vals = o ? cJSON_GetObjectItem(o, "values") : NULL;
	int n = vals ? cJSON_GetArraySize(vals) : 0;
	for (int i = 0; i < n; i++) {
		cJSON *v = cJSON_GetArrayItem(vals, i);
		char *s = cJSON_IsString(v) ? NULL : cJSON_PrintUnformatted(v);
		const char *text = cJSON_IsString(v) ? cJSON_GetStringValue(v) : s;
		bool multi = text && strchr(text, '\n') != NULL;
		if (n > 1)
			fprintf(f, "returned #%d:%s%s\n", i + 1, multi ? "\n" : " ", text ? text : "?");
		else
			fprintf(f, "returned:%s%s\n",
			    multi ? "\n" : " ", text ? text : "?");
		free(s);
	}
	if (r->output_len > 0) {
		fprintf(f, "output:\n");
		fwrite(r->output, 1, r->output_len, f);
		if (r->output[r->output_len - 1] != '\n')
			fputc('\n', f);
		if (r->output_truncated)
			fprintf(f, "(output truncated)\n");
	}
	/* The count hook adds 1,000 at a time (sandbox.md): say so rather
	 * than print "0 instructions" for every small job. */
	char instr[48];
	if (r->usage.instructions < 1000)
		snprintf(instr, sizeof(instr), "under 1000 instructions");
	else
		snprintf(instr, sizeof(instr), "%llu-%llu instructions",
		    (unsigned long long)r->usage.instructions,
		    (unsigned long long)r->usage.instructions + 999);
	fprintf(f, "usage: cpu %.3f ms, wall %.3f ms, %s, %llu bytes peak Lua memory\n",
	    (double)r->usage.cpu_us / 1000.0, (double)r->usage.wall_us / 1000.0, instr,
	    (unsigned long long)r->usage.memory_peak);
	cJSON_Delete(o);
}
