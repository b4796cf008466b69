/*
 * limits.c: the values of the sandbox limits, read the one way every
 * place reads them: sizes ("64K", "32M", "1G" or bytes), durations
 * ("500ms", "2s", "1m", "1h", "7d" or seconds), and the limit keys that a
 * policy's `limits` line and an envelope's limits field share
 * (spec/policy.md, spec/envelope.md), each checked against
 * mw_limits_maximum().  Split out of policy.c: the envelope, the agent's
 * configuration and the CLI parse these too.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"

#define fail(err, errlen, ...) mw_refuse_msg(-1, err, errlen, __VA_ARGS__)

int
mw_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	uint64_t mul = 1;
	if (strcmp(end, "") == 0 || strcmp(end, "B") == 0)
		mul = 1;
	else if (strcmp(end, "K") == 0 || strcmp(end, "KiB") == 0)
		mul = 1024;
	else if (strcmp(end, "M") == 0 || strcmp(end, "MiB") == 0)
		mul = 1024 * 1024;
	else if (strcmp(end, "G") == 0 || strcmp(end, "GiB") == 0)
		mul = 1024ull * 1024 * 1024;
	else
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

int
mw_parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	double v = strtod(s, &end);
	if (errno != 0 || v < 0)
		return -1;
	double ms;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		ms = v * 1000;
	else if (strcmp(end, "ms") == 0)
		ms = v;
	else if (strcmp(end, "m") == 0)
		ms = v * 60000;
	else if (strcmp(end, "h") == 0)
		ms = v * 3600000;
	else if (strcmp(end, "d") == 0)
		ms = v * 86400000;
	else
		return -1;
	if (ms > 86400000.0 * 365)
		return -1;
	*out = (uint64_t)ms;
	return 0;
}

int
mw_limit_set(struct mw_limits *l, const char *key, const char *value,
    char *err, size_t errlen)
{
	uint64_t v;
	struct mw_limits max;
	mw_limits_maximum(&max);
#define SIZE(name, field) \
	if (strcmp(key, name) == 0) { \
		if (mw_parse_size(value, &v) != 0 || v == 0 || v > max.field) \
			return fail(err, errlen, "bad %s '%s' (1..%llu bytes)", name, value, \
			    (unsigned long long)max.field); \
		l->field = v; return 0; }
#define COUNT(name, field) \
	if (strcmp(key, name) == 0) { \
		char *e_; errno = 0; v = strtoull(value, &e_, 10); \
		if (errno || *e_ || !isdigit((unsigned char)*value) || v == 0 || v > max.field) \
			return fail(err, errlen, "bad %s '%s' (1..%llu)", name, value, \
			    (unsigned long long)max.field); \
		l->field = v; return 0; }
#define TIME(name, field) \
	if (strcmp(key, name) == 0) { \
		if (mw_parse_duration_ms(value, &v) != 0 || v == 0 || v > max.field) \
			return fail(err, errlen, "bad %s '%s' (1ms..%llums)", name, value, \
			    (unsigned long long)max.field); \
		l->field = (uint32_t)v; return 0; }
	COUNT("instructions", instructions)
	SIZE("memory", memory)
	TIME("cpu", cpu_ms)
	TIME("wall", wall_ms)
	SIZE("output", output_bytes)
	SIZE("program", program_bytes)
	SIZE("result", result_bytes)
	COUNT("depth", result_depth)
	COUNT("calls", cap_calls)
	SIZE("write_total", write_bytes)
#undef SIZE
#undef COUNT
#undef TIME
	return fail(err, errlen, "unknown limit '%s'", key);
}
