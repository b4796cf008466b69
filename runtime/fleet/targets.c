/*
 * targets.c: target lists for `moonwire send` -- every JID checked and put
 * in normal form, duplicates folded in first-seen order, the count capped,
 * and targets files parsed with FILE:LINE errors, all before anything is
 * signed or sent (spec/cli.md "Targets").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "omemo/mw_omemo.h"
#include "runtime/fleet/fleet.h"
#include "runtime/job/job.h"
#include "wire/mw_wire.h"

static int
fail(char *why, size_t wl, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *why, size_t wl, int rc, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && wl > 0) {
		va_start(ap, fmt);
		vsnprintf(why, wl, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void
mw_fleet_targets_init(struct mw_fleet_targets *t)
{
	memset(t, 0, sizeof(*t));
}

void
mw_fleet_targets_free(struct mw_fleet_targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->jid[i]);
	free(t->jid);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

int
mw_fleet_jid_normalize(const char *s, size_t n, char *out, size_t outlen,
    char *why, size_t wl)
{
	const char *at, *dom;
	size_t local, dlen;

	if (n == 0)
		return fail(why, wl, MW_FLEET_E_JID, "empty JID");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return fail(why, wl, MW_FLEET_E_JID, "control character 0x%02x "
			    "in the JID", c);
		if (c == ' ')
			return fail(why, wl, MW_FLEET_E_JID, "blank inside the JID "
			    "(one JID a line)");
	}
	if (mw_utf8_check((const uint8_t *)s, n, true) != n)
		return fail(why, wl, MW_FLEET_E_JID, "not valid UTF-8");
	if (memchr(s, '/', n) != NULL)
		return fail(why, wl, MW_FLEET_E_JID, "has a resource: not a bare JID "
		    "(user@domain, no /resource)");
	if ((at = memchr(s, '@', n)) == NULL)
		return fail(why, wl, MW_FLEET_E_JID, "not a bare JID (user@domain, "
		    "no /resource)");
	local = (size_t)(at - s);
	dom = at + 1;
	dlen = n - local - 1;
	if (memchr(dom, '@', dlen) != NULL)
		return fail(why, wl, MW_FLEET_E_JID, "more than one '@'");
	if (local == 0)
		return fail(why, wl, MW_FLEET_E_JID, "empty localpart (user@domain)");
	if (dlen > 0 && dom[dlen - 1] == '.')
		dlen--;		/* RFC 7622 3.2: a trailing dot is not part of it */
	if (dlen == 0)
		return fail(why, wl, MW_FLEET_E_JID, "empty domain (user@domain)");
	if (local > MW_FLEET_PART_MAX || dlen > MW_FLEET_PART_MAX)
		return fail(why, wl, MW_FLEET_E_JID, "%s longer than %d bytes",
		    local > MW_FLEET_PART_MAX ? "localpart" : "domain", MW_FLEET_PART_MAX);
	for (size_t i = 0; i < local; i++)
		if (strchr("\"&'/:<>@", s[i]) != NULL)
			return fail(why, wl, MW_FLEET_E_JID, "'%c' is not allowed in "
			    "the localpart", s[i]);
	for (size_t i = 0; i < dlen; i++) {
		if (strchr("\"&'/<>@\\", dom[i]) != NULL)
			return fail(why, wl, MW_FLEET_E_JID, "'%c' is not allowed in "
			    "the domain", dom[i]);
		/* (after the one trailing dot went, a dot may not end it either) */
		if (dom[i] == '.' && (i == 0 || dom[i - 1] == '.' || i == dlen - 1))
			return fail(why, wl, MW_FLEET_E_JID, "empty label in the domain");
	}
	if (local + 1 + dlen + 1 > outlen)
		return fail(why, wl, MW_FLEET_E_JID, "JID too long");
	memcpy(out, s, local + 1 + dlen);
	out[local + 1 + dlen] = '\0';
	mw_omemo_jid_fold(out);
	return MW_FLEET_OK;
}

/* FNV-1a: spreads JIDs over the set's slots. */
static size_t
hash_jid(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

/* The slot holding s, or the empty slot where it would go. */
static size_t *
find_slot(const struct mw_fleet_targets *t, const char *s)
{
	size_t mask = t->nslots - 1, i = hash_jid(s) & mask;

	while (t->slots[i] != 0 && strcmp(t->jid[t->slots[i] - 1], s) != 0)
		i = (i + 1) & mask;
	return &t->slots[i];
}

static int
grow(struct mw_fleet_targets *t)
{
	if (t->n == t->alloc) {
		size_t na = t->alloc ? t->alloc * 2 : 16;
		char **nj = realloc(t->jid, na * sizeof(*nj));

		if (nj == NULL)
			return MW_FLEET_E_NOMEM;
		t->jid = nj;
		t->alloc = na;
	}
	if (2 * (t->n + 1) >= t->nslots) {
		size_t ns = t->nslots ? t->nslots * 2 : 64;
		size_t *old = t->slots, oldn = t->nslots;

		if ((t->slots = calloc(ns, sizeof(*t->slots))) == NULL) {
			t->slots = old;
			return MW_FLEET_E_NOMEM;
		}
		t->nslots = ns;
		for (size_t i = 0; i < oldn; i++)
			if (old[i] != 0)
				*find_slot(t, t->jid[old[i] - 1]) = old[i];
		free(old);
	}
	return MW_FLEET_OK;
}

int
mw_fleet_targets_add(struct mw_fleet_targets *t, const char *jid, char *why,
    size_t wl)
{
	char norm[2 * MW_FLEET_PART_MAX + 2];
	size_t *slot;
	int rc;

	if ((rc = mw_fleet_jid_normalize(jid, strlen(jid), norm, sizeof(norm), why,
	    wl)) != MW_FLEET_OK)
		return rc;
	if ((rc = grow(t)) != MW_FLEET_OK)
		return fail(why, wl, rc, "out of memory");
	t->given++;
	slot = find_slot(t, norm);
	if (*slot != 0)
		return MW_FLEET_OK;	/* folded into the first */
	if ((t->jid[t->n] = strdup(norm)) == NULL)
		return fail(why, wl, MW_FLEET_E_NOMEM, "out of memory");
	*slot = ++t->n;
	return MW_FLEET_OK;
}

static bool
is_blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

int
mw_fleet_targets_parse(struct mw_fleet_targets *t, const char *text, size_t len,
    const char *name, char *err, size_t errlen)
{
	struct mw_buf b;
	const uint8_t *lp;
	size_t ll;
	unsigned long lineno = 0;
	char line[MW_FLEET_LINE_MAX], why[256];

	mw_buf_view(&b, text, len);
	while (mw_buf_get_line(&b, &lp, &ll) == 0) {
		size_t start = 0, end;
		int rc;

		lineno++;
		if (memchr(lp, '\0', ll) != NULL)
			return fail(err, errlen, MW_FLEET_E_JID, "%s:%lu: NUL byte in "
			    "the line", name, lineno);
		/* a comment starts at '#' at the line's start or after a blank */
		for (end = 0; end < ll; end++)
			if (lp[end] == '#' && (end == 0 || is_blank(lp[end - 1])))
				break;
		while (start < end && is_blank(lp[start]))
			start++;
		while (end > start && is_blank(lp[end - 1]))
			end--;
		if (start == end)
			continue;
		if (end - start >= sizeof(line))
			return fail(err, errlen, MW_FLEET_E_JID, "%s:%lu: line longer "
			    "than %d bytes", name, lineno, MW_FLEET_LINE_MAX - 1);
		for (size_t i = start; i < end; i++)
			if (is_blank(lp[i]))
				return fail(err, errlen, MW_FLEET_E_JID, "%s:%lu: more "
				    "than one word: one JID a line", name, lineno);
		memcpy(line, lp + start, end - start);
		line[end - start] = '\0';
		if ((rc = mw_fleet_targets_add(t, line, why, sizeof(why))) != MW_FLEET_OK)
			return fail(err, errlen, rc, "%s:%lu: %s", name, lineno, why);
	}
	return MW_FLEET_OK;
}

int
mw_fleet_targets_load(struct mw_fleet_targets *t, const char *path, char *err,
    size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	char *buf;
	size_t n;
	bool bad;
	int rc;

	if (f == NULL)
		return fail(err, errlen, MW_FLEET_E_FILE, "%s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return fail(err, errlen, MW_FLEET_E_FILE, "%s: not a regular file", path);
	}
	if (st.st_size > (off_t)MW_FLEET_FILE_MAX) {
		fclose(f);
		return fail(err, errlen, MW_FLEET_E_FILE, "%s: larger than %u MiB",
		    path, MW_FLEET_FILE_MAX >> 20);
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(f);
		return fail(err, errlen, MW_FLEET_E_NOMEM, "%s: out of memory", path);
	}
	n = fread(buf, 1, (size_t)st.st_size + 1, f);
	bad = ferror(f) != 0;
	fclose(f);
	if (bad || n > (size_t)st.st_size) {
		/* (a file that grows while read is refused too) */
		free(buf);
		return fail(err, errlen, MW_FLEET_E_FILE, "%s: %s", path,
		    bad ? "read error" : "changed while read");
	}
	rc = mw_fleet_targets_parse(t, buf, n, path, err, errlen);
	free(buf);
	return rc;
}

int
mw_fleet_targets_check_cap(const struct mw_fleet_targets *t, size_t max,
    char *err, size_t errlen)
{
	if (t->n <= max)
		return MW_FLEET_OK;
	return fail(err, errlen, MW_FLEET_E_CAP, "%zu targets (%zu given, duplicates "
	    "folded) is more than the cap of %zu", t->n, t->given, max);
}

int
mw_fleet_parse_cap(const char *s, size_t *out)
{
	unsigned long long v = 0;

	if (s == NULL || *s == '\0')
		return MW_FLEET_E_USAGE;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return MW_FLEET_E_USAGE;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > MW_FLEET_MAX_TARGETS_LIMIT)
			return MW_FLEET_E_USAGE;
	}
	if (v == 0)
		return MW_FLEET_E_USAGE;
	*out = (size_t)v;
	return MW_FLEET_OK;
}

int
mw_fleet_group_check(const char *name, char *why, size_t wl)
{
	size_t n = strlen(name);

	if (n == 0)
		return fail(why, wl, MW_FLEET_E_USAGE, "empty group name");
	if (n > MW_FLEET_GROUP_MAX)
		return fail(why, wl, MW_FLEET_E_USAGE, "group name longer than %d bytes",
		    MW_FLEET_GROUP_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return fail(why, wl, MW_FLEET_E_USAGE, "control character in "
			    "the group name");
	if (mw_utf8_check((const uint8_t *)name, n, true) != n)
		return fail(why, wl, MW_FLEET_E_USAGE, "group name is not valid UTF-8");
	return MW_FLEET_OK;
}
