/*
 * job_args.c: a job's signed arguments -- the `args:` line of an envelope,
 * `--arg NAME=VALUE` on the command line, and the `args` table a program
 * reads.
 *
 * Why inside the signature: one signed program can then serve two paths or
 * two services, and the agent still runs exactly what the signer meant.
 * The line has one spelling per set of arguments (names ascending, values
 * percent-encoded with upper-case hex, unreserved bytes never encoded), so
 * the signed bytes say unambiguously what the program receives.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/job/job.h"

#define ARGS_LINE_MAX	(MW_ARGS_MAX * (MW_ARG_NAME_MAX + 2 + 3 * MW_ARG_VALUE_MAX))

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool
name_valid(const char *s, size_t n)
{
	if (n == 0 || n > MW_ARG_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* UTF-8 text; TAB is the only control character allowed (no LF: a value
 * is one line of text). */
static bool
value_valid(const char *s, size_t n)
{
	return n <= MW_ARG_VALUE_MAX && memchr(s, '\n', n) == NULL &&
	    mw_utf8_check((const uint8_t *)s, n, true) == n;
}

void
mw_job_args_free(struct mw_job_args *a)
{
	for (uint32_t i = 0; i < a->n; i++) {
		free(a->name[i]);
		free(a->value[i]);
	}
	memset(a, 0, sizeof(*a));
}

/* Inserts in name order; -1 with err for a repeated name or too many. */
static int
insert(struct mw_job_args *a, const char *name, size_t nlen, const char *value,
    size_t vlen, char *err, size_t errlen)
{
	uint32_t at;
	for (uint32_t i = 0; i < a->n; i++)
		if (strlen(a->name[i]) == nlen && memcmp(a->name[i], name, nlen) == 0)
			return fail(err, errlen, "argument '%.*s' given twice", (int)nlen, name);
	if (a->n == MW_ARGS_MAX) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "more than %d arguments", MW_ARGS_MAX);
		return -1;
	}
	char *n = strndup(name, nlen), *v = strndup(value, vlen);
	if (n == NULL || v == NULL) {
		free(n);
		free(v);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* keep names ascending: find the slot by a plain comparison */
	at = 0;
	while (at < a->n && strcmp(a->name[at], n) < 0)
		at++;
	memmove(&a->name[at + 1], &a->name[at], (a->n - at) * sizeof(char *));
	memmove(&a->value[at + 1], &a->value[at], (a->n - at) * sizeof(char *));
	a->name[at] = n;
	a->value[at] = v;
	a->n++;
	return 0;
}

int
mw_job_args_add_spec(struct mw_job_args *a, const char *spec, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL)
		return fail(err, errlen, "'%.40s' is not NAME=VALUE", spec);
	size_t nlen = (size_t)(eq - spec), vlen = strlen(eq + 1);
	if (!name_valid(spec, nlen)) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "argument name '%.*s' must be [a-z_][a-z0-9_]*, at most %d "
			    "bytes", (int)(nlen > 40 ? 40 : nlen), spec, MW_ARG_NAME_MAX);
		return -1;
	}
	if (!value_valid(eq + 1, vlen)) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "argument %.*s: the value must be one line of UTF-8 text "
			    "(no control characters but TAB), at most %d bytes", (int)nlen, spec,
			    MW_ARG_VALUE_MAX);
		return -1;
	}
	return insert(a, spec, nlen, eq + 1, vlen, err, errlen);
}

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    strchr("-._~/:@,+", c) != NULL;
}

char *
mw_job_args_encode(const struct mw_job_args *a)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t cap = 1;
	for (uint32_t i = 0; i < a->n; i++)
		cap += strlen(a->name[i]) + 2 + 3 * strlen(a->value[i]);
	char *out = malloc(cap), *p = out;
	if (out == NULL)
		return NULL;
	for (uint32_t i = 0; i < a->n; i++) {
		if (i > 0)
			*p++ = ' ';
		size_t nl = strlen(a->name[i]);
		memcpy(p, a->name[i], nl);
		p += nl;
		*p++ = '=';
		for (const unsigned char *v = (const unsigned char *)a->value[i]; *v; v++) {
			if (unreserved(*v)) {
				*p++ = (char)*v;
			} else {
				*p++ = '%';
				*p++ = hex[*v >> 4];
				*p++ = hex[*v & 15];
			}
		}
	}
	*p = '\0';
	return out;
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int
mw_job_args_decode(const char *s, size_t n, struct mw_job_args *a, char *err, size_t errlen)
{
	char value[MW_ARG_VALUE_MAX + 1];
	memset(a, 0, sizeof(*a));
	if (n == 0 || n > ARGS_LINE_MAX || s[0] == ' ' || s[n - 1] == ' ') {
		mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen,
		    "args line empty, too long or with outer spaces");
		goto bad;
	}
	const char *prev = NULL;
	size_t prevlen = 0;
	for (size_t i = 0; i < n;) {
		size_t tok_end = i;
		while (tok_end < n && s[tok_end] != ' ')
			tok_end++;
		const char *tok = s + i, *eq = memchr(tok, '=', tok_end - i);
		if (eq == NULL || !name_valid(tok, (size_t)(eq - tok))) {
			mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "argument '%.*s' is not name=value "
			    "with a name of [a-z_][a-z0-9_]*", (int)(tok_end - i > 40 ? 40 : tok_end - i),
			    tok);
			goto bad;
		}
		size_t nlen = (size_t)(eq - tok), vlen = 0;
		/* names strictly ascending: sorted, and each once */
		if (prev != NULL) {
			size_t m = prevlen < nlen ? prevlen : nlen;
			int c = memcmp(prev, tok, m);
			if (c > 0 || (c == 0 && prevlen >= nlen)) {
				mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "argument names must be "
				    "unique and in ascending order ('%.*s')", (int)nlen, tok);
				goto bad;
			}
		}
		for (const char *v = eq + 1; v < s + tok_end; v++) {
			unsigned char c = (unsigned char)*v;
			int hi, lo;
			if (vlen == MW_ARG_VALUE_MAX) {
				mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "argument %.*s longer than %d "
				    "bytes", (int)nlen, tok, MW_ARG_VALUE_MAX);
				goto bad;
			}
			if (c == '%' && s + tok_end - v >= 3 &&
			    (hi = hexval(v[1])) >= 0 && (lo = hexval(v[2])) >= 0 &&
			    !unreserved((unsigned char)(hi * 16 + lo))) {
				value[vlen++] = (char)(hi * 16 + lo);
				v += 2;
			} else if (unreserved(c)) {
				value[vlen++] = (char)c;
			} else {
				mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "argument %.*s is not "
				    "percent-encoded as spec/envelope.md says", (int)nlen, tok);
				goto bad;
			}
		}
		if (!value_valid(value, vlen) || memchr(value, '\0', vlen) != NULL) {
			mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "argument %.*s is not one line of "
			    "UTF-8 text", (int)nlen, tok);
			goto bad;
		}
		if (insert(a, tok, nlen, value, vlen, err, errlen) != 0) {
			mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen, "more than %d arguments",
			    MW_ARGS_MAX);
			goto bad;
		}
		prev = tok;
		prevlen = nlen;
		i = tok_end;
		if (i < n) {
			i++;	/* the single space */
			if (i == n || s[i] == ' ') {
				mw_refuse_msg(MW_REFUSE_BAD_ARGS, err, errlen,
				    "arguments are separated by single spaces");
				goto bad;
			}
		}
	}
	return 0;
bad:
	mw_job_args_free(a);
	return MW_REFUSE_BAD_ARGS;
}

void
mw_job_args_view(const struct mw_job_args *a, struct mw_job_arg out[MW_ARGS_MAX])
{
	for (uint32_t i = 0; i < a->n; i++) {
		out[i].name = a->name[i];
		out[i].value = a->value[i];
	}
}
