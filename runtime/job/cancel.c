/*
 * cancel.c: the signed cancellation v1 (spec/envelope.md, "Cancellation")
 * -- the text an operator signs to stop one job on one agent: a fixed
 * header naming the audience and the job id, with its own validity, and an
 * armored SSHSIG in the namespace MW_CANCEL_NAMESPACE.
 *
 * Why a text of its own and not an envelope with a flag: a job signature
 * must never authorise a cancellation nor the reverse.  The first line and
 * the SSHSIG namespace both differ, so neither the signed bytes nor the
 * signature of one can be taken for the other.
 *
 * Invariants: as for envelopes, exactly one spelling is accepted (fixed
 * field order, LF only, each field once); every read goes through struct
 * mw_buf; on failure the output is zeroed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "runtime/job/job.h"
#include "wire/mw_wire.h"

#define refuse mw_refuse_msg

bool
mw_cancel_is(const void *text, size_t len)
{
	static const char pre[] = "moonwire-cancel ";
	return len >= sizeof(pre) - 1 && memcmp(text, pre, sizeof(pre) - 1) == 0;
}

/* One LF-terminated line as a view; no CR or NUL in it. */
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

static const char *const fields[] = { "audience", "job-id", "issued-at", "not-after" };

static int
cancel_parse(const char *text, size_t len, struct mw_cancel *c, char *err, size_t errlen)
{
	struct mw_buf b;
	const char *line;
	size_t n;
	char t[21];
	int r;

	if (len > MW_CANCEL_MAX)
		return refuse(MW_REFUSE_OVERSIZED, err, errlen,
		    "cancellation is %zu bytes, over the %u byte limit", len, MW_CANCEL_MAX);
	mw_buf_view(&b, text, len);
	if ((r = take_line(&b, &line, &n)) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, r == -2 ?
		    "CR or NUL in the first line (LF line ends only)" : "no first line");
	if (!(n == strlen(MW_CANCEL_MAGIC) && memcmp(line, MW_CANCEL_MAGIC, n) == 0)) {
		if (mw_cancel_is(line, n))
			return refuse(MW_REFUSE_VERSION, err, errlen,
			    "unsupported cancellation version '%.*s'", (int)(n > 40 ? 40 : n) - 16,
			    line + 16);
		return refuse(MW_REFUSE_MALFORMED, err, errlen,
		    "not a cancellation (first line is not '" MW_CANCEL_MAGIC "')");
	}
	/* exactly the four fields, in order, each once */
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		size_t k = strlen(fields[f]);
		if ((r = take_line(&b, &line, &n)) != 0)
			return refuse(MW_REFUSE_MALFORMED, err, errlen, r == -2 ?
			    "CR or NUL in the header (LF line ends only)" : "header cut short");
		if (n < k + 2 || memcmp(line, fields[f], k) != 0 || line[k] != ':' ||
		    line[k + 1] != ' ')
			return refuse(MW_REFUSE_MALFORMED, err, errlen,
			    "expected field %s, found '%.*s'", fields[f], (int)(n > 40 ? 40 : n), line);
		const char *v = line + k + 2;
		size_t vlen = n - k - 2;
		switch (f) {
		case 0:
			if (!mw_bare_jid_valid(v, vlen))
				return refuse(MW_REFUSE_MALFORMED, err, errlen, "audience is not a bare JID");
			memcpy(c->audience, v, vlen);
			c->audience[vlen] = '\0';
			break;
		case 1:
			if (!mw_job_id_valid(v, vlen))
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "job-id must be 1..64 of [A-Za-z0-9._-]");
			memcpy(c->job_id, v, vlen);
			c->job_id[vlen] = '\0';
			break;
		default:
			if (vlen != 20)
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "%s is not YYYY-MM-DDTHH:MM:SSZ", fields[f]);
			memcpy(t, v, 20);
			t[20] = '\0';
			if (mw_time_parse(t, f == 2 ? &c->issued_at : &c->not_after) != 0)
				return refuse(MW_REFUSE_MALFORMED, err, errlen,
				    "%s is not YYYY-MM-DDTHH:MM:SSZ", fields[f]);
			break;
		}
	}
	if (c->not_after <= c->issued_at)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "not-after is not after issued-at");
	c->signed_bytes = (const uint8_t *)text;
	c->signed_len = b.off;
	static const char sep[] = "\n-----BEGIN SSH SIGNATURE-----\n";
	if (mw_buf_avail(&b) < sizeof(sep) - 1 || memcmp(mw_buf_ptr(&b), sep, sizeof(sep) - 1) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "the header is not followed by an "
		    "empty line and -----BEGIN SSH SIGNATURE-----");
	if (mw_buf_skip(&b, 1) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "truncated");
	return mw_signed_tail(&b, text, len, &c->sig, &c->sig_len, c->sha256, err, errlen);
}

int
mw_cancel_parse(const char *text, size_t len, struct mw_cancel *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	int r = cancel_parse(text, len, c, err, errlen);
	if (r != 0)
		mw_cancel_free(c);
	return r;
}

void
mw_cancel_free(struct mw_cancel *c)
{
	free(c->sig);
	memset(c, 0, sizeof(*c));
}

int
mw_cancel_verify(const struct mw_cancel *c, const struct mw_allowed_signers *a, int64_t now,
    struct mw_ssh_pubkey *signer, const char **principals, char *err, size_t errlen)
{
	*principals = NULL;
	int r = mw_sshsig_verify(c->sig, c->sig_len, MW_CANCEL_NAMESPACE, c->signed_bytes,
	    c->signed_len, signer, err, errlen);
	if (r != 0)
		return r;
	/* The authority to cancel is the authority to sign jobs: the key must
	 * be a job signer now (spec/envelope.md, "Cancellation"). */
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

int
mw_cancel_check_time(const struct mw_cancel *c, int64_t now, int64_t skew,
    int64_t max_validity, char *err, size_t errlen)
{
	return mw_validity_check(c->issued_at, c->not_after, now, skew, max_validity,
	    err, errlen);
}

int
mw_cancel_build(const char *audience, const char *job_id, int64_t issued_at,
    int64_t not_after, char **out, size_t *outlen, char *err, size_t errlen)
{
	char ia[21], na[21];
	struct mw_buf o;

	*out = NULL;
	*outlen = 0;
	if (audience == NULL || !mw_bare_jid_valid(audience, strlen(audience)))
		return refuse(MW_REFUSE_MALFORMED, err, errlen,
		    "audience '%.80s' is not a bare JID (user@domain, no /resource)",
		    audience ? audience : "");
	if (job_id == NULL || !mw_job_id_valid(job_id, strlen(job_id)))
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "job id must be 1..64 of [A-Za-z0-9._-]");
	if (issued_at < 0 || not_after <= issued_at || not_after > 253402300799LL)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "not-after must be after issued-at");
	mw_time_format(issued_at, ia);
	mw_time_format(not_after, na);
	mw_buf_init(&o, MW_CANCEL_MAX);
	if (mw_buf_putf(&o, MW_CANCEL_MAGIC "\naudience: %s\njob-id: %s\nissued-at: %s\n"
	    "not-after: %s\n", audience, job_id, ia, na) != 0 || mw_buf_put_u8(&o, '\0') != 0 ||
	    o.len - 1 + 1 + MW_SSHSIG_ARMOR_MAX > MW_CANCEL_MAX) {
		mw_buf_free(&o);
		return refuse(MW_REFUSE_OVERSIZED, err, errlen, "the cancellation would be over %u bytes",
		    MW_CANCEL_MAX);
	}
	*outlen = o.len - 1;
	*out = (char *)o.data;
	return 0;
}

int
mw_cancel_sign(struct mw_ssh_signer *s, const char *audience, const char *job_id,
    int64_t issued_at, int64_t not_after, char **out, size_t *outlen, char *err, size_t errlen)
{
	char *part = NULL, *armored = NULL, *armor = NULL;
	size_t part_len, armored_len, alen = 0;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	struct mw_buf o;
	struct mw_cancel c;
	int rc;

	*out = NULL;
	*outlen = 0;
	mw_buf_init(&o, MW_CANCEL_MAX);
	if ((rc = mw_cancel_build(audience, job_id, issued_at, not_after, &part, &part_len,
	    err, errlen)) != 0)
		goto out;
	if ((rc = mw_sshsig_sign(s, MW_CANCEL_NAMESPACE, (const uint8_t *)part, part_len,
	    &armored, &armored_len, err, errlen)) != 0)
		goto out;
	rc = refuse(MW_REFUSE_MALFORMED, err, errlen, "cannot assemble the cancellation");
	if (mw_sshsig_unarmor(armored, armored_len, &blob, &blob_len) != 0 ||
	    (armor = mw_sshsig_armor(blob, blob_len, &alen)) == NULL ||
	    mw_buf_put(&o, part, part_len) != 0 || mw_buf_put_u8(&o, '\n') != 0 ||
	    mw_buf_put(&o, armor, alen) != 0 || mw_buf_put_u8(&o, '\0') != 0)
		goto out;
	/* fail closed: what we hand out parses and signs exactly part */
	if ((rc = mw_cancel_parse((const char *)o.data, o.len - 1, &c, err, errlen)) != 0)
		goto out;
	bool same = c.signed_len == part_len;
	mw_cancel_free(&c);
	if (!same) {
		rc = refuse(MW_REFUSE_MALFORMED, err, errlen, "the signed part is not one cancellation");
		goto out;
	}
	*outlen = o.len - 1;
	*out = (char *)o.data;
	memset(&o, 0, sizeof(o));
	rc = 0;
out:
	free(part);
	free(armored);
	free(armor);
	free(blob);
	mw_buf_free(&o);
	return rc;
}
