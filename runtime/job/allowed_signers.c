/*
 * allowed_signers.c: the OpenSSH allowed_signers file (ssh-keygen(1),
 * ALLOWED SIGNERS), the list of keys whose signatures on jobs count, and
 * the OpenSSH pattern lists used in its principals and namespaces.
 *
 * Why it exists: owners already keep this file for `ssh-keygen -Y verify`;
 * moonwire reads the same file with the same meaning so that one file
 * answers "who may sign jobs" for both tools.
 *
 * Fail closed: any line we cannot parse refuses the whole file with
 * "FILE:LINE: reason".  Lines we parse but cannot use (cert-authority, key
 * types other than ssh-ed25519) are kept so the file stays valid, and they
 * never match.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/job/job.h"
#include "wire/mw_wire.h"

#define AS_FILE_MAX	(1024 * 1024)
#define AS_LINE_MAX	16384

struct as_line {
	char *principals;	/* pattern list, dequoted */
	char *namespaces;	/* pattern list; NULL: every namespace */
	bool usable;		/* ssh-ed25519 and not cert-authority */
	uint8_t key[32];
	int64_t valid_after;	/* INT64_MIN: no bound */
	int64_t valid_before;	/* INT64_MAX: no bound */
};

struct mw_allowed_signers {
	struct as_line *lines;
	size_t n;
};

/* ---- OpenSSH patterns ---- */

/* Glob with '*' and '?', as OpenSSH match_pattern; iterative with one
 * backtrack point, so O(len(s) * len(p)) and no recursion.  A '*' in the
 * pattern is always the wildcard, also where the name holds a '*'. */
static bool
glob_match(const char *s, const char *p, size_t plen)
{
	const char *pe = p + plen, *star = NULL, *mark = NULL;
	while (*s != '\0') {
		if (p < pe && *p == '*') {
			star = p++;
			mark = s;
		} else if (p < pe && (*p == '?' || *p == *s)) {
			s++;
			p++;
		} else if (star != NULL) {
			p = star + 1;
			s = ++mark;
		} else {
			return false;
		}
	}
	while (p < pe && *p == '*')
		p++;
	return p == pe;
}

/* OpenSSH match_pattern_list: 1 positive match, -1 a negated entry
 * matched (which wins), 0 no match. */
static int
match_list(const char *s, const char *list)
{
	int got = 0;
	while (*list != '\0') {
		size_t n = strcspn(list, ",");
		bool neg = n > 0 && list[0] == '!';
		const char *p = neg ? list + 1 : list;
		size_t pl = neg ? n - 1 : n;
		if (glob_match(s, p, pl)) {
			if (neg)
				return -1;
			got = 1;
		}
		list += n;
		if (*list == ',')
			list++;
	}
	return got;
}

bool
mw_principal_match(const char *principals, const char *principal)
{
	return principals != NULL && principal != NULL && match_list(principal, principals) == 1;
}

/* ---- timestamps: YYYYMMDD or YYYYMMDDHHMM[SS], then Z or UTC or not ----
 *
 * As OpenSSH's parse_absolute_time reads them: the suffix in any case;
 * without one, local time through mktime() with tm_isdst = 0 (so during
 * summer time an hour after the wall clock, as ssh-keygen has it). */

static int
parse_ssh_time(const char *s, size_t l, int64_t *out)
{
	bool utc = false;
	char b[16];
	if (l > 1 && (s[l - 1] == 'Z' || s[l - 1] == 'z')) {
		utc = true;
		l--;
	} else if (l > 3 && strncasecmp(s + l - 3, "UTC", 3) == 0) {
		utc = true;
		l -= 3;
	}
	if (l != 8 && l != 12 && l != 14)
		return -1;
	memcpy(b, s, l);
	if (l == 8)
		memcpy(b + 8, "000000", 6);
	else if (l == 12)
		memcpy(b + 12, "00", 2);
	b[14] = '\0';
	return mw_civil_time(b, utc, out);
}

/* ---- parsing ---- */

static int
line_error(char *err, size_t errlen, const char *name, size_t lineno, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int
line_error(char *err, size_t errlen, const char *name, size_t lineno, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		int k = snprintf(err, errlen, "%s:%zu: ", name, lineno);
		if (k >= 0 && (size_t)k < errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
			va_end(ap);
		}
	}
	return MW_REFUSE_MALFORMED;
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* A value of an option or the principals field: "quoted" or bare up to a
 * stop character (principals only: option values must be quoted, as
 * ssh-keygen requires).  In an option value \" escapes a quote; in the
 * principals field nothing does, as in ssh-keygen, which ends the field at
 * the first quote (`"a\",*" KEY` is then no valid line, not principals
 * that match everyone).  *pp advances past it. */
static char *
take_value(const char **pp, const char *stops, bool escapes, const char **why)
{
	const char *p = *pp;
	struct mw_buf v;
	mw_buf_init(&v, AS_LINE_MAX);
	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\0') {
				*why = "missing closing quote";
				mw_buf_free(&v);
				return NULL;
			}
			if (escapes && *p == '\\' && p[1] == '"')
				p++;
			if (mw_buf_put_u8(&v, (uint8_t)*p) != 0)
				goto nomem;
		}
		p++;
	} else {
		for (; *p != '\0' && strchr(stops, *p) == NULL; p++)
			if (mw_buf_put_u8(&v, (uint8_t)*p) != 0)
				goto nomem;
	}
	if (mw_buf_put_u8(&v, '\0') != 0)
		goto nomem;
	*pp = p;
	return (char *)v.data;	/* ownership passes to the caller */
nomem:
	*why = "out of memory";
	mw_buf_free(&v);
	return NULL;
}

static bool
opt_is(const char *p, const char *name)
{
	size_t n = strlen(name);
	return strncasecmp(p, name, n) == 0;
}

static bool
starts_option(const char *p)
{
	static const char *const names[] = { "cert-authority", "namespaces=",
	    "valid-after=", "valid-before=", NULL };
	for (size_t i = 0; names[i] != NULL; i++)
		if (opt_is(p, names[i]))
			return true;
	return false;
}

static void
free_line(struct as_line *l)
{
	free(l->principals);
	free(l->namespaces);
	memset(l, 0, sizeof(*l));
}

/* Parses one non-comment line (NUL-terminated, no newline) into *l. */
static int
parse_line(const char *line, struct as_line *l, const char *name, size_t lineno,
    char *err, size_t errlen)
{
	const char *p = line, *why = NULL;
	bool ca = false;
	memset(l, 0, sizeof(*l));
	l->valid_after = INT64_MIN;
	l->valid_before = INT64_MAX;

	if ((l->principals = take_value(&p, " \t", false, &why)) == NULL)
		return line_error(err, errlen, name, lineno, "principals: %s", why);
	if (l->principals[0] == '\0')
		return line_error(err, errlen, name, lineno, "empty principals");
	if (!is_ws(*p))
		return line_error(err, errlen, name, lineno, "missing key after the principals");
	while (is_ws(*p))
		p++;

	if (starts_option(p)) {
		for (;;) {
			if (opt_is(p, "cert-authority") && (p[14] == ',' || is_ws(p[14]) ||
			    p[14] == '\0')) {
				ca = true;
				p += 14;
			} else if (opt_is(p, "namespaces=")) {
				if (l->namespaces != NULL)
					return line_error(err, errlen, name, lineno,
					    "multiple namespaces options");
				p += 11;
				if (*p != '"')
					return line_error(err, errlen, name, lineno,
					    "namespaces: missing start quote (as ssh-keygen)");
				if ((l->namespaces = take_value(&p, ", \t", true, &why)) == NULL)
					return line_error(err, errlen, name, lineno, "namespaces: %s", why);
				if (l->namespaces[0] == '\0')
					return line_error(err, errlen, name, lineno, "empty namespaces");
			} else if (opt_is(p, "valid-after=") || opt_is(p, "valid-before=")) {
				bool after = opt_is(p, "valid-after=");
				int64_t *dst = after ? &l->valid_after : &l->valid_before;
				const char *oname = after ? "valid-after" : "valid-before";
				if (*dst != (after ? INT64_MIN : INT64_MAX))
					return line_error(err, errlen, name, lineno, "multiple %s options", oname);
				p += after ? 12 : 13;
				if (*p != '"')
					return line_error(err, errlen, name, lineno,
					    "%s: missing start quote (as ssh-keygen)", oname);
				char *v = take_value(&p, ", \t", true, &why);
				if (v == NULL)
					return line_error(err, errlen, name, lineno, "%s: %s", oname, why);
				int r = parse_ssh_time(v, strlen(v), dst);
				if (r != 0) {
					line_error(err, errlen, name, lineno, "%s: bad time '%.40s' "
					    "(YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z])", oname, v);
					free(v);
					return MW_REFUSE_MALFORMED;
				}
				free(v);
			} else {
				return line_error(err, errlen, name, lineno, "unsupported option near '%.20s'", p);
			}
			if (*p == ',') {
				p++;
				continue;
			}
			if (!is_ws(*p))
				return line_error(err, errlen, name, lineno, "missing key after the options");
			break;
		}
		while (is_ws(*p))
			p++;
	}
	if (l->valid_after != INT64_MIN && l->valid_before != INT64_MAX &&
	    l->valid_before <= l->valid_after)
		return line_error(err, errlen, name, lineno, "valid-before is not after valid-after");

	/* keytype base64 [comment] */
	size_t tl = strcspn(p, " \t");
	if (tl == 0)
		return line_error(err, errlen, name, lineno, "missing key type");
	const char *type = p;
	p += tl;
	while (is_ws(*p))
		p++;
	size_t bl = strcspn(p, " \t");
	uint8_t *blob;
	size_t blen;
	if (bl == 0)
		return line_error(err, errlen, name, lineno, "missing base64 key");
	if (mw_b64_decode(p, bl, &blob, &blen) != 0)
		return line_error(err, errlen, name, lineno, "bad base64 key");
	struct mw_buf b;
	const uint8_t *btype;
	size_t btl;
	mw_buf_view(&b, blob, blen);
	if (mw_buf_get_string_direct(&b, &btype, &btl) != 0 || btl != tl ||
	    memcmp(btype, type, tl) != 0) {
		free(blob);
		return line_error(err, errlen, name, lineno, "key blob is not of type '%.*s'",
		    (int)(tl > 40 ? 40 : tl), type);
	}
	struct mw_ssh_pubkey k;
	int r = mw_ssh_pubkey_from_blob(blob, blen, &k);
	free(blob);
	if (r == MW_REFUSE_MALFORMED)
		return line_error(err, errlen, name, lineno, "malformed ssh-ed25519 key");
	if (r == 0) {
		memcpy(l->key, k.ed25519, 32);
		l->usable = !ca;
	}
	/* Anything after the key is a comment. */
	return 0;
}

int
mw_allowed_signers_parse(const char *text, size_t len, const char *name,
    struct mw_allowed_signers **out, char *err, size_t errlen)
{
	struct mw_buf in;
	const uint8_t *p;
	size_t n, lineno = 0;
	char *line = NULL;
	*out = NULL;
	if (len > AS_FILE_MAX)
		return line_error(err, errlen, name, 0, "file too large");
	if (memchr(text, '\0', len) != NULL)
		return line_error(err, errlen, name, 0, "NUL byte in file");
	struct mw_allowed_signers *a = calloc(1, sizeof(*a));
	if (a == NULL || (line = malloc(AS_LINE_MAX + 1)) == NULL) {
		free(a);
		return line_error(err, errlen, name, 0, "out of memory");
	}
	mw_buf_view(&in, text, len);
	while (mw_buf_get_line(&in, &p, &n) == 0) {
		lineno++;
		if (n > AS_LINE_MAX) {
			line_error(err, errlen, name, lineno, "line too long");
			goto fail;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		const char *s = line + strspn(line, " \t");
		if (*s == '\0' || *s == '#')
			continue;
		struct as_line *nl = realloc(a->lines, (a->n + 1) * sizeof(*nl));
		if (nl == NULL) {
			line_error(err, errlen, name, lineno, "out of memory");
			goto fail;
		}
		a->lines = nl;
		if (parse_line(s, &a->lines[a->n], name, lineno, err, errlen) != 0) {
			free_line(&a->lines[a->n]);
			goto fail;
		}
		a->n++;
	}
	free(line);
	*out = a;
	return 0;
fail:
	free(line);
	mw_allowed_signers_free(a);
	return MW_REFUSE_MALFORMED;
}

int
mw_allowed_signers_load(const char *path, struct mw_allowed_signers **out,
    char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return line_error(err, errlen, path, 0, "%s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return line_error(err, errlen, path, 0, "not a regular file");
	}
	struct mw_buf b;
	mw_buf_init(&b, AS_FILE_MAX + 1);
	for (;;) {
		int r = mw_buf_fill(&b, fd, 65536);
		if (r == MW_WIRE_EEOF)
			break;
		if (r < 0) {
			close(fd);
			mw_buf_free(&b);
			return line_error(err, errlen, path, 0, "%s",
			    r == MW_WIRE_ETOOBIG ? "file too large" : "read error");
		}
	}
	close(fd);
	int r = mw_allowed_signers_parse((const char *)mw_buf_ptr(&b), mw_buf_avail(&b),
	    path, out, err, errlen);
	mw_buf_free(&b);
	return r;
}

void
mw_allowed_signers_free(struct mw_allowed_signers *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		free_line(&a->lines[i]);
	free(a->lines);
	free(a);
}

int
mw_allowed_signers_find(const struct mw_allowed_signers *a,
    const struct mw_ssh_pubkey *key, const char *ns, int64_t when,
    const char **principals)
{
	*principals = NULL;
	for (size_t i = 0; a != NULL && i < a->n; i++) {
		const struct as_line *l = &a->lines[i];
		if (!l->usable || memcmp(l->key, key->ed25519, 32) != 0)
			continue;
		if (l->namespaces != NULL && match_list(ns, l->namespaces) != 1)
			continue;
		if (when < l->valid_after || when > l->valid_before)
			continue;
		*principals = l->principals;
		return 0;
	}
	return MW_REFUSE_UNKNOWN_SIGNER;
}
