/*
 * fuzz_envelope: mw_envelope_parse, the first thing the agent runs on a
 * decrypted message body (any verified OMEMO device can send one; the
 * signature is checked only after parsing).
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - parse != 0 leaves the struct zeroed (safe to free); the code is one of
 *    the refusals the header documents;
 *  - parse == 0: audience and job-id are NUL-terminated within their arrays
 *    and valid, not-after > issued-at, signed_bytes is the start of the
 *    input, program lies inside signed_bytes and ends it, the signature
 *    blob is non-empty;
 *  - one spelling per envelope: mw_envelope_build() from the parsed fields
 *    and program reproduces signed_bytes byte for byte, and
 *    mw_envelope_attach() with the re-armored signature gives an envelope
 *    with the same signed part and the same signature blob (the armor
 *    itself is not signed and may be wrapped at 1..76 columns).
 */
#include <string.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "tests/fuzz/fuzzlib.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_envelope e;
	char err[256];
	uint8_t *text = fz_copy(data, size);
	int r = mw_envelope_parse((const char *)text, size, &e, err, sizeof(err));

	if (r != 0) {
		static const struct mw_envelope zero;
		FUZZ_CHECK(r == MW_REFUSE_MALFORMED || r == MW_REFUSE_VERSION ||
		    r == MW_REFUSE_OVERSIZED || r == MW_REFUSE_BAD_SIGNATURE ||
		    r == MW_REFUSE_BAD_LIMITS || r == MW_REFUSE_BAD_ARGS);
		FUZZ_CHECK(memcmp(&e, &zero, sizeof(e)) == 0);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		free(text);
		return 0;
	}
	FUZZ_CHECK(size <= MW_ENVELOPE_MAX);
	FUZZ_CHECK(memchr(e.audience, '\0', sizeof(e.audience)) != NULL);
	/* a domain-only JID (no localpart) is a bare JID too */
	FUZZ_CHECK(e.audience[0] != '\0' && strchr(e.audience, '/') == NULL);
	size_t idl = strnlen(e.job_id, sizeof(e.job_id));
	FUZZ_CHECK(idl >= 1 && idl <= MW_JOB_ID_MAX);
	FUZZ_CHECK(strspn(e.job_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == idl);
	FUZZ_CHECK(e.not_after > e.issued_at);
	FUZZ_CHECK(memchr(e.limits_text, '\0', sizeof(e.limits_text)) != NULL);
	FUZZ_CHECK(e.signed_bytes == text && e.signed_len <= size);
	FUZZ_CHECK(e.program_len > 0 && fz_inside(e.program, e.program_len, e.signed_bytes, e.signed_len));
	FUZZ_CHECK(e.program + e.program_len == e.signed_bytes + e.signed_len);
	FUZZ_CHECK(e.sig != NULL && e.sig_len > 0);

	/* render(parse(x)) == x: the signed part ... */
	struct mw_envelope_fields f = {
		.audience = e.audience, .job_id = e.job_id,
		.issued_at = e.issued_at, .not_after = e.not_after,
		.limits_text = e.has_limits ? e.limits_text : NULL,
		.args = &e.args,
	};
	/* arguments: names unique and ascending, values one line of text */
	FUZZ_CHECK(e.args.n <= MW_ARGS_MAX);
	for (uint32_t i = 0; i < e.args.n; i++) {
		FUZZ_CHECK(strlen(e.args.name[i]) <= MW_ARG_NAME_MAX);
		FUZZ_CHECK(strlen(e.args.value[i]) <= MW_ARG_VALUE_MAX);
		FUZZ_CHECK(strchr(e.args.value[i], '\n') == NULL);
		FUZZ_CHECK(i == 0 || strcmp(e.args.name[i - 1], e.args.name[i]) < 0);
	}
	char *built = NULL, *whole = NULL, *armor = NULL;
	size_t built_len = 0, whole_len = 0, alen = 0;
	int br = mw_envelope_build(&f, e.program, e.program_len, &built, &built_len,
	    NULL, err, sizeof(err));
	FUZZ_CHECK(br == 0);
	FUZZ_CHECK(built_len == e.signed_len && memcmp(built, e.signed_bytes, built_len) == 0);
	/* ... and the whole envelope. */
	armor = mw_sshsig_armor(e.sig, e.sig_len, &alen);
	FUZZ_CHECK(armor != NULL);
	br = mw_envelope_attach(built, built_len, armor, alen, &whole, &whole_len, err, sizeof(err));
	FUZZ_CHECK(br == 0);
	FUZZ_CHECK(whole_len > e.signed_len && memcmp(whole, text, e.signed_len + 1) == 0);
	struct mw_envelope e2;
	FUZZ_CHECK(mw_envelope_parse(whole, whole_len, &e2, err, sizeof(err)) == 0);
	FUZZ_CHECK(e2.sig_len == e.sig_len && memcmp(e2.sig, e.sig, e.sig_len) == 0);
	FUZZ_CHECK(e2.signed_len == e.signed_len);
	mw_envelope_free(&e2);

	/* The signature over the signed bytes: almost always a refusal. */
	struct mw_ssh_pubkey signer;
	r = mw_sshsig_verify(e.sig, e.sig_len, MW_JOB_NAMESPACE, e.signed_bytes,
	    e.signed_len, &signer, err, sizeof(err));
	FUZZ_CHECK(r <= 0 && r >= MW_REFUSE_MIN);
	(void)mw_envelope_check_time(&e, 1700000000, MW_CLOCK_SKEW, MW_VALIDITY_MAX, err, sizeof(err));

	free(built);
	free(whole);
	free(armor);
	mw_envelope_free(&e);
	free(text);
	return 0;
}
