/*
 * envelope.c: the job envelope v1 (spec/envelope.md) -- the text a signer
 * produces and an agent receives: a fixed header, the program, and an
 * armored SSHSIG over both -- plus the refusal names and the RFC 3339
 * timestamps the envelope uses.
 *
 * Why a text format of its own: SSHSIG signs bytes but carries no
 * audience, id or validity, so those travel inside the signed bytes; the
 * header is line-oriented so that `ssh-keygen -Y sign` can sign a prepared
 * job and a person can read what they are signing.
 *
 * Invariants: the parser accepts exactly one spelling of every envelope
 * (fixed field order, each field once, LF only, no leading zeros), so the
 * bytes that were signed are the bytes that are interpreted; every read
 * goes through struct mw_buf; on failure the output is zeroed.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "wire/mw_wire.h"

/* ---- refusal names ---- */

static const char *const refusal_names[] = {
	"none", "malformed", "version", "oversized", "bad_signature",
	"unsupported_hash", "unsupported_key", "wrong_namespace",
	"unknown_signer", "signer_not_allowed", "untrusted_device",
	"wrong_audience", "expired", "not_yet_valid", "validity_too_long",
	"replay", "not_a_job", "rate_limited", "storage", "bad_limits",
	"bad_args", "unknown_job", "already_finished",
};

const char *
mw_refusal_name(int code)
{
	if (code >= 0 || code < MW_REFUSE_MIN)
		return "unknown";
	return refusal_names[-code];
}

int
mw_refusal_from_name(const char *name)
{
	for (int i = 1; name != NULL && i <= -MW_REFUSE_MIN; i++)
		if (strcmp(name, refusal_names[i]) == 0)
			return -i;
	return 0;
}

int
mw_refuse_msg(int code, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}
#define refuse mw_refuse_msg

/* ---- time ---- */

static int
ndigits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int
mw_civil_time(const char *d14, bool utc, int64_t *out)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y = ndigits(d14, 4), mo = ndigits(d14 + 4, 2), d = ndigits(d14 + 6, 2);
	int h = ndigits(d14 + 8, 2), mi = ndigits(d14 + 10, 2), se = ndigits(d14 + 12, 2);
	struct tm tm;
	time_t t;

	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || se < 0 || se > 59)
		return -1;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	tm.tm_isdst = 0;	/* local time read as OpenSSH reads it (allowed_signers) */
	t = utc ? timegm(&tm) : mktime(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

int
mw_time_parse(const char *s, int64_t *out)
{
	char d14[15];

	/* Exactly "YYYY-MM-DDTHH:MM:SSZ", years 1970..9999. */
	if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[19] != 'Z')
		return -1;
	memcpy(d14, s, 4);
	memcpy(d14 + 4, s + 5, 2);
	memcpy(d14 + 6, s + 8, 2);
	memcpy(d14 + 8, s + 11, 2);
	memcpy(d14 + 10, s + 14, 2);
	memcpy(d14 + 12, s + 17, 2);
	d14[14] = '\0';
	return mw_civil_time(d14, true, out);
}

void
mw_time_format(int64_t t, char out[21])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t < 0 || t > 253402300799LL || gmtime_r(&tt, &tm) == NULL) {
		snprintf(out, 21, "%s", "0000-00-00T00:00:00Z");
		return;
	}
	/* Years 1970..9999 here, so the text is exactly 20 characters. */
	if (strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
		snprintf(out, 21, "%s", "0000-00-00T00:00:00Z");
}

/* ---- field syntax ---- */

bool
mw_job_id_valid(const char *s, size_t n)
{
	if (n == 0 || n > MW_JOB_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/*
 * Strict UTF-8 (no overlongs, surrogates or values over U+10FFFF); when
 * text is set, also no control characters (C0, DEL, C1) but TAB and LF.
 * Returns the offset of the first bad byte, or n when all is well.
 */
size_t
mw_utf8_check(const uint8_t *s, size_t n, bool text)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			if (text && ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f))
				return i;
			i++;
			continue;
		}
		size_t k;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
		else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
		else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
		else return i;
		if (n - i <= k)
			return i;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		if (text && cp >= 0x80 && cp <= 0x9f)
			return i;
		i += k + 1;
	}
	return n;
}

/* A bare JID, [local@]domain: no resource, no whitespace or controls,
 * none of the characters RFC 7622 forbids in a localpart. */
bool
mw_bare_jid_valid(const char *s, size_t n)
{
	if (n == 0 || n > MW_JID_MAX || mw_utf8_check((const uint8_t *)s, n, true) != n)
		return false;
	const char *at = memchr(s, '@', n);
	size_t local = at ? (size_t)(at - s) : 0;
	const char *dom = at ? at + 1 : s;
	size_t dlen = n - (size_t)(dom - s);
	if ((at != NULL && local == 0) || local > 1023 || dlen == 0 || dlen > 1023)
		return false;
	for (size_t i = 0; i < local; i++)
		if (strchr(" \t\n\"&'/:<>@", s[i]) != NULL)
			return false;
	for (size_t i = 0; i < dlen; i++)
		if (strchr(" \t\n\"&'/<>@\\", dom[i]) != NULL)
			return false;
	return true;
}

/*
 * The limits value: "key=value" tokens separated by single spaces, each
 * key once, each accepted by mw_limit_set(); applied over
 * mw_limits_maximum() so that the agent can take the minimum with its
 * policy.
 */
static int
parse_limits(const char *s, size_t n, struct mw_limits *l, char *err, size_t errlen)
{
	char buf[512], why[160];
	const char *seen[16];
	size_t nseen = 0;
	mw_limits_maximum(l);
	if (n == 0 || n >= sizeof(buf))
		return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "limits line empty or longer than %zu bytes",
		    sizeof(buf) - 1);
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (buf[0] == ' ' || buf[n - 1] == ' ' || strstr(buf, "  ") != NULL)
		return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "limits are separated by single spaces");
	for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok)
			return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "limit '%.40s' is not key=value", tok);
		*eq = '\0';
		for (size_t i = 0; i < nseen; i++)
			if (strcmp(seen[i], tok) == 0)
				return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "limit '%.40s' given twice", tok);
		if (nseen == sizeof(seen) / sizeof(seen[0]))
			return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "too many limits");
		seen[nseen++] = tok;
		if (mw_limit_set(l, tok, eq + 1, why, sizeof(why)) != 0)
			return refuse(MW_REFUSE_BAD_LIMITS, err, errlen, "limits: %s", why);
	}
	return 0;
}

/* ---- parse ---- */

/* Takes one LF-terminated line as a view; a line without its LF, or with
 * a CR anywhere, is refused. */
static int
take_line(struct mw_buf *b, const char **p, size_t *n)
{
	const uint8_t *s = mw_buf_ptr(b);
	const uint8_t *nl = memchr(s, '\n', mw_buf_avail(b));
	if (nl == NULL)
		return -1;
	*p = (const char *)s;
	*n = (size_t)(nl - s);
	if (memchr(s, '\r', *n) != NULL || memchr(s, '\0', *n) != NULL)
		return -2;
	return mw_buf_skip(b, *n + 1);
}

static const char *const field_names[] = {
	"audience", "job-id", "issued-at", "not-after", "limits", "args", "program-length",
};
enum { F_AUDIENCE, F_JOB_ID, F_ISSUED, F_NOT_AFTER, F_LIMITS, F_ARGS, F_PROGLEN, F_COUNT };

/* The index of the field a header line names, F_COUNT if none; *v the value. */
static int
field_of(const char *line, size_t n, const char **v, size_t *vlen)
{
	for (int i = 0; i < F_COUNT; i++) {
		size_t k = strlen(field_names[i]);
		if (n >= k + 2 && memcmp(line, field_names[i], k) == 0 &&
		    line[k] == ':' && line[k + 1] == ' ') {
			*v = line + k + 2;
			*vlen = n - k - 2;
			return i;
		}
	}
	return F_COUNT;
}

static int
parse_time_field(const char *v, size_t n, int64_t *out)
{
	char buf[21];
	if (n != 20)
		return -1;
	memcpy(buf, v, 20);
	buf[20] = '\0';
	return mw_time_parse(buf, out);
}

int
mw_signed_tail(struct mw_buf *b, const char *text, size_t len, uint8_t **sig,
    size_t *sig_len, uint8_t sha256[32], char *err, size_t errlen)
{
	if (mw_sshsig_unarmor((const char *)mw_buf_ptr(b), mw_buf_avail(b), sig, sig_len) != 0) {
		/* Tell garbage after the armor apart from a broken armor. */
		const char *end = memmem(mw_buf_ptr(b), mw_buf_avail(b),
		    "\n-----END SSH SIGNATURE-----", 28);
		if (end != NULL) {
			const char *stop = (const char *)mw_buf_ptr(b) + mw_buf_avail(b);
			for (const char *after = end + 28; after < stop; after++)
				if (*after != ' ' && *after != '\t' && *after != '\n')
					return refuse(MW_REFUSE_MALFORMED, err, errlen,
					    "text after -----END SSH SIGNATURE-----");
		}
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen,
		    "signature armor or base64 is broken");
	}
	/* the identity of the text for the replay cache: without the trailing
	 * blanks a transport may add or strip */
	size_t hlen = len;
	while (hlen > 0 && (text[hlen - 1] == ' ' || text[hlen - 1] == '\t' ||
	    text[hlen - 1] == '\n'))
		hlen--;
	unsigned int mdlen = 0;
	if (EVP_Digest(text, hlen, sha256, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "sha256 failed");
	return 0;
}

static int
envelope_parse(const char *text, size_t len, struct mw_envelope *e, char *err, size_t errlen)
{
	struct mw_buf b;
	const char *line, *v;
	size_t n, vlen;
	int r;

	if (len > MW_ENVELOPE_MAX)
		return refuse(MW_REFUSE_OVERSIZED, err, errlen,
		    "envelope is %zu bytes, over the %u byte limit", len, MW_ENVELOPE_MAX);
	mw_buf_view(&b, text, len);
	if ((r = take_line(&b, &line, &n)) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, r == -2 ?
		    "CR or NUL in the first line (LF line ends only)" : "no first line");
	if (!(n == strlen(MW_ENVELOPE_MAGIC) && memcmp(line, MW_ENVELOPE_MAGIC, n) == 0)) {
		if (n > 13 && memcmp(line, "moonwire-job ", 13) == 0)
			return refuse(MW_REFUSE_VERSION, err, errlen,
			    "unsupported envelope version '%.*s'", (int)(n > 40 ? 40 : n) - 13, line + 13);
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "not a moonwire job (first line is not '"
		    MW_ENVELOPE_MAGIC "')");
	}

	/* Header: fields in the order of field_names, limits optional, each
	 * once, then an empty line. */
	int next = F_AUDIENCE;
	uint64_t proglen = 0;
	for (;;) {
		if ((r = take_line(&b, &line, &n)) != 0)
			return refuse(MW_REFUSE_MALFORMED, err, errlen, r == -2 ?
			    "CR or NUL in the header (LF line ends only)" : "header not terminated by an empty line");
		if (n == 0)
			break;
		int f = field_of(line, n, &v, &vlen);
		if (f == F_COUNT)
			return refuse(MW_REFUSE_MALFORMED, err, errlen, "unknown header line '%.*s'",
			    (int)(n > 40 ? 40 : n), line);
		if (f < next)
			return refuse(MW_REFUSE_MALFORMED, err, errlen, "field %s %s", field_names[f],
			    f == next - 1 ? "given twice" : "out of order");
		/* limits and args are optional */
		for (int opt = next; opt < f; opt++)
			if (opt != F_LIMITS && opt != F_ARGS)
				return refuse(MW_REFUSE_MALFORMED, err, errlen, "field %s missing before %s",
				    field_names[opt], field_names[f]);
		next = f + 1;
		switch (f) {
		case F_AUDIENCE:
			if (!mw_bare_jid_valid(v, vlen))
				return refuse(MW_REFUSE_MALFORMED, err, errlen, "audience is not a bare JID");
			memcpy(e->audience, v, vlen);
			e->audience[vlen] = '\0';
			break;
		case F_JOB_ID:
			if (!mw_job_id_valid(v, vlen))
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "job-id must be 1..64 of [A-Za-z0-9._-]");
			memcpy(e->job_id, v, vlen);
			e->job_id[vlen] = '\0';
			break;
		case F_ISSUED:
		case F_NOT_AFTER:
			if (parse_time_field(v, vlen, f == F_ISSUED ? &e->issued_at : &e->not_after) != 0)
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "%s is not YYYY-MM-DDTHH:MM:SSZ", field_names[f]);
			if (f == F_NOT_AFTER && e->not_after <= e->issued_at)
				return refuse(MW_REFUSE_MALFORMED, err, errlen, "not-after is not after issued-at");
			break;
		case F_LIMITS:
			if ((r = parse_limits(v, vlen, &e->limits, err, errlen)) != 0)
				return r;
			e->has_limits = true;
			memcpy(e->limits_text, v, vlen);
			e->limits_text[vlen] = '\0';
			break;
		case F_ARGS:
			if ((r = mw_job_args_decode(v, vlen, &e->args, err, errlen)) != 0)
				return r;
			break;
		case F_PROGLEN:
			if (vlen == 0 || (v[0] == '0') ||
			    strspn(v, "0123456789") < vlen)
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "program-length must be a decimal number of bytes without leading zeros, at least 1");
			/* any number past the limit is oversized, however long */
			if (vlen > 7)
				return refuse(MW_REFUSE_OVERSIZED, err, errlen,
				    "program-length %.24s%s over the %u byte limit", v,
				    vlen > 24 ? "..." : "", MW_ENVELOPE_MAX);
			for (size_t i = 0; i < vlen; i++)
				proglen = proglen * 10 + (uint64_t)(v[i] - '0');
			if (proglen > MW_ENVELOPE_MAX)
				return refuse(MW_REFUSE_OVERSIZED, err, errlen,
				    "program-length %llu over the %u byte limit",
				    (unsigned long long)proglen, MW_ENVELOPE_MAX);
			break;
		}
	}
	if (next != F_COUNT)	/* program-length is the last field */
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "field %s missing",
		    field_names[next == F_LIMITS || next == F_ARGS ? F_PROGLEN : next]);
	if (!e->has_limits)
		mw_limits_maximum(&e->limits);

	/* The program: exactly program-length bytes, then "\n" and the armor. */
	if (mw_buf_avail(&b) < proglen)
		return refuse(MW_REFUSE_MALFORMED, err, errlen,
		    "program shorter than its program-length (%llu)", (unsigned long long)proglen);
	e->program = mw_buf_ptr(&b);
	e->program_len = (size_t)proglen;
	size_t bad = mw_utf8_check(e->program, e->program_len, true);
	if (bad != e->program_len)
		return refuse(MW_REFUSE_MALFORMED, err, errlen,
		    "program byte %zu is not UTF-8 text (control characters other than TAB and LF are refused)",
		    bad);
	if (mw_buf_skip(&b, e->program_len) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "program truncated");
	e->signed_bytes = (const uint8_t *)text;
	e->signed_len = b.off;

	static const char sep[] = "\n-----BEGIN SSH SIGNATURE-----\n";
	if (mw_buf_avail(&b) < sizeof(sep) - 1 || memcmp(mw_buf_ptr(&b), sep, sizeof(sep) - 1) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "the program is not followed by a newline and "
		    "-----BEGIN SSH SIGNATURE----- (program-length wrong?)");
	if (mw_buf_skip(&b, 1) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "truncated");
	return mw_signed_tail(&b, text, len, &e->sig, &e->sig_len, e->sha256, err, errlen);
}

int
mw_envelope_parse(const char *text, size_t len, struct mw_envelope *e, char *err, size_t errlen)
{
	memset(e, 0, sizeof(*e));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	int r = envelope_parse(text, len, e, err, errlen);
	if (r != 0)
		mw_envelope_free(e);
	return r;
}

void
mw_envelope_free(struct mw_envelope *e)
{
	free(e->sig);
	mw_job_args_free(&e->args);
	memset(e, 0, sizeof(*e));
}

/* ---- build ---- */

int
mw_envelope_build(const struct mw_envelope_fields *f, const uint8_t *program,
    size_t program_len, char **out, size_t *outlen, char job_id_out[MW_JOB_ID_MAX + 1],
    char *err, size_t errlen)
{
	struct mw_buf prog, o;
	char id[MW_JOB_ID_MAX + 1], ia[21], na[21];
	struct mw_limits lim;
	int rc = MW_REFUSE_MALFORMED;
	*out = NULL;
	*outlen = 0;
	mw_buf_init(&prog, MW_ENVELOPE_MAX);
	mw_buf_init(&o, MW_ENVELOPE_MAX);

	if (f->audience == NULL || !mw_bare_jid_valid(f->audience, strlen(f->audience))) {
		refuse(rc, err, errlen, "audience '%.80s' is not a bare JID (user@domain, no /resource)",
		    f->audience ? f->audience : "");
		goto out;
	}
	if (f->job_id != NULL) {
		if (!mw_job_id_valid(f->job_id, strlen(f->job_id))) {
			refuse(rc, err, errlen, "job id must be 1..64 of [A-Za-z0-9._-]");
			goto out;
		}
		snprintf(id, sizeof(id), "%s", f->job_id);
	} else {
		uint8_t rnd[16];
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			refuse(rc, err, errlen, "no randomness for a job id");
			goto out;
		}
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	}
	if (f->issued_at < 0 || f->not_after <= f->issued_at || f->not_after > 253402300799LL) {
		refuse(rc, err, errlen, "not-after must be after issued-at");
		goto out;
	}
	if (f->limits_text != NULL && *f->limits_text != '\0' &&
	    (rc = parse_limits(f->limits_text, strlen(f->limits_text), &lim, err, errlen)) != 0)
		goto out;
	rc = MW_REFUSE_MALFORMED;

	/* CRLF -> LF; a lone CR is refused: XML parsers turn every CR into LF,
	 * so a program with one would not verify after transit. */
	for (size_t i = 0; i < program_len; i++) {
		if (program[i] == '\r') {
			if (i + 1 < program_len && program[i + 1] == '\n')
				continue;
			refuse(rc, err, errlen, "program byte %zu is a lone CR: XML turns CR into LF in "
			    "transit, which would break the signature; use LF line ends", i);
			goto out;
		}
		if (mw_buf_put_u8(&prog, program[i]) != 0) {
			refuse(MW_REFUSE_OVERSIZED, err, errlen, "program over %u bytes", MW_ENVELOPE_MAX);
			rc = MW_REFUSE_OVERSIZED;
			goto out;
		}
	}
	if (mw_buf_avail(&prog) == 0) {
		refuse(rc, err, errlen, "empty program");
		goto out;
	}
	size_t bad = mw_utf8_check(mw_buf_ptr(&prog), mw_buf_avail(&prog), true);
	if (bad != mw_buf_avail(&prog)) {
		refuse(rc, err, errlen, "program byte %zu: not UTF-8 text, or a control character other "
		    "than TAB and LF (XML cannot carry it intact, so the signature would break)", bad);
		goto out;
	}
	mw_time_format(f->issued_at, ia);
	mw_time_format(f->not_after, na);
	int r = mw_buf_putf(&o, MW_ENVELOPE_MAGIC "\naudience: %s\njob-id: %s\nissued-at: %s\n"
	    "not-after: %s\n", f->audience, id, ia, na);
	if (r == 0 && f->limits_text != NULL && *f->limits_text != '\0')
		r = mw_buf_putf(&o, "limits: %s\n", f->limits_text);
	if (r == 0 && f->args != NULL && f->args->n > 0) {
		char *line = mw_job_args_encode(f->args);
		r = line == NULL ? -1 : mw_buf_putf(&o, "args: %s\n", line);
		free(line);
	}
	if (r == 0)
		r = mw_buf_putf(&o, "program-length: %zu\n\n", mw_buf_avail(&prog));
	if (r == 0)
		r = mw_buf_put(&o, mw_buf_ptr(&prog), mw_buf_avail(&prog));
	/* Room for "\n" and the armored signature within MW_ENVELOPE_MAX. */
	if (r != 0 || o.len + 1 + MW_SSHSIG_ARMOR_MAX > MW_ENVELOPE_MAX) {
		rc = MW_REFUSE_OVERSIZED;
		refuse(rc, err, errlen, "the envelope would be over %u bytes", MW_ENVELOPE_MAX);
		goto out;
	}
	if (mw_buf_put_u8(&o, '\0') != 0) {
		rc = MW_REFUSE_OVERSIZED;
		refuse(rc, err, errlen, "the envelope would be over %u bytes", MW_ENVELOPE_MAX);
		goto out;
	}
	*outlen = o.len - 1;
	*out = (char *)o.data;	/* ownership passes to the caller */
	memset(&o, 0, sizeof(o));
	if (job_id_out != NULL)
		memcpy(job_id_out, id, sizeof(id));
	rc = 0;
out:
	mw_buf_free(&prog);
	mw_buf_free(&o);
	return rc;
}

int
mw_envelope_attach(const char *signed_part, size_t signed_len, const char *armored_sig,
    size_t armored_len, char **out, size_t *outlen, char *err, size_t errlen)
{
	uint8_t *blob = NULL;
	size_t blob_len = 0, alen = 0;
	char *armor = NULL;
	struct mw_buf o;
	struct mw_envelope e;
	int rc;
	*out = NULL;
	*outlen = 0;
	mw_buf_init(&o, MW_ENVELOPE_MAX);
	if (mw_sshsig_unarmor(armored_sig, armored_len, &blob, &blob_len) != 0) {
		rc = refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "not an armored SSH signature");
		goto out;
	}
	/* Re-armored at 76 columns: one spelling of every envelope. */
	if ((armor = mw_sshsig_armor(blob, blob_len, &alen)) == NULL) {
		rc = refuse(MW_REFUSE_MALFORMED, err, errlen, "out of memory");
		goto out;
	}
	if (mw_buf_put(&o, signed_part, signed_len) != 0 || mw_buf_put_u8(&o, '\n') != 0 ||
	    mw_buf_put(&o, armor, alen) != 0 || mw_buf_put_u8(&o, '\0') != 0) {
		rc = refuse(MW_REFUSE_OVERSIZED, err, errlen, "the envelope would be over %u bytes",
		    MW_ENVELOPE_MAX);
		goto out;
	}
	/* Fail closed: what we hand out must parse, and sign exactly
	 * signed_part. */
	if ((rc = mw_envelope_parse((const char *)o.data, o.len - 1, &e, err, errlen)) != 0)
		goto out;
	bool same = e.signed_len == signed_len;
	mw_envelope_free(&e);
	if (!same) {
		rc = refuse(MW_REFUSE_MALFORMED, err, errlen, "the signed part is not one prepared envelope");
		goto out;
	}
	*outlen = o.len - 1;
	*out = (char *)o.data;
	memset(&o, 0, sizeof(o));
	rc = 0;
out:
	free(blob);
	free(armor);
	mw_buf_free(&o);
	return rc;
}

/* ---- checks shared by the agent and `moonwire verify` ---- */

int
mw_validity_check(int64_t issued_at, int64_t not_after, int64_t now, int64_t skew,
    int64_t max_validity, char *err, size_t errlen)
{
	char t[21];
	if (now < issued_at - skew) {
		mw_time_format(issued_at, t);
		return refuse(MW_REFUSE_NOT_YET_VALID, err, errlen,
		    "issued-at %s is in the future (more than %lld s ahead)", t, (long long)skew);
	}
	if (now > not_after) {
		mw_time_format(not_after, t);
		return refuse(MW_REFUSE_EXPIRED, err, errlen, "expired at %s", t);
	}
	if (not_after - issued_at > max_validity)
		return refuse(MW_REFUSE_VALIDITY_TOO_LONG, err, errlen,
		    "valid for %lld s, over the maximum of %lld s",
		    (long long)(not_after - issued_at), (long long)max_validity);
	return 0;
}

int
mw_envelope_check_time(const struct mw_envelope *e, int64_t now, int64_t skew,
    int64_t max_validity, char *err, size_t errlen)
{
	return mw_validity_check(e->issued_at, e->not_after, now, skew, max_validity, err, errlen);
}

int
mw_envelope_verify(const struct mw_envelope *e, const struct mw_allowed_signers *a,
    int64_t now, struct mw_ssh_pubkey *signer, const char **principals,
    char *err, size_t errlen)
{
	*principals = NULL;
	int r = mw_sshsig_verify(e->sig, e->sig_len, MW_JOB_NAMESPACE, e->signed_bytes,
	    e->signed_len, signer, err, errlen);
	if (r != 0)
		return r;
	r = mw_allowed_signers_find(a, signer, MW_JOB_NAMESPACE, now, principals);
	if (r != 0) {
		char fp[MW_SSH_FP_MAX];
		memcpy(fp, signer->fp, sizeof(fp));
		memset(signer, 0, sizeof(*signer));
		return refuse(r, err, errlen, "key %s is not in allowed_signers for namespace "
		    MW_JOB_NAMESPACE " at this time", fp);
	}
	return 0;
}
