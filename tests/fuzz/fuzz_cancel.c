/*
 * fuzz_cancel: mw_cancel_parse, what the agent runs on a decrypted message
 * body that starts with "moonwire-cancel " (any verified OMEMO device can
 * send one; the signature is checked only after parsing).
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - parse != 0 leaves the struct zeroed (safe to free); the code is one of
 *    the refusals the header documents, with a message;
 *  - parse == 0: audience and job-id are NUL-terminated and valid,
 *    not-after > issued-at, signed_bytes is the start of the input, the
 *    signature blob is non-empty;
 *  - one spelling per cancellation: mw_cancel_build() from the parsed
 *    fields reproduces signed_bytes byte for byte.
 */
#include <string.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "tests/fuzz/fuzzlib.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_cancel c;
	char err[256];
	uint8_t *text = fz_copy(data, size);
	int r = mw_cancel_parse((const char *)text, size, &c, err, sizeof(err));

	if (r != 0) {
		static const struct mw_cancel zero;
		FUZZ_CHECK(r == MW_REFUSE_MALFORMED || r == MW_REFUSE_VERSION ||
		    r == MW_REFUSE_OVERSIZED || r == MW_REFUSE_BAD_SIGNATURE);
		FUZZ_CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		free(text);
		return 0;
	}
	FUZZ_CHECK(size <= MW_CANCEL_MAX && mw_cancel_is(text, size));
	FUZZ_CHECK(memchr(c.audience, '\0', sizeof(c.audience)) != NULL);
	FUZZ_CHECK(mw_bare_jid_valid(c.audience, strlen(c.audience)));
	size_t idl = strnlen(c.job_id, sizeof(c.job_id));
	FUZZ_CHECK(idl >= 1 && idl <= MW_JOB_ID_MAX && mw_job_id_valid(c.job_id, idl));
	FUZZ_CHECK(c.not_after > c.issued_at);
	FUZZ_CHECK(c.signed_bytes == text && c.signed_len < size);
	FUZZ_CHECK(c.sig != NULL && c.sig_len > 0);
	char *built = NULL;
	size_t built_len = 0;
	FUZZ_CHECK(mw_cancel_build(c.audience, c.job_id, c.issued_at, c.not_after, &built,
	    &built_len, err, sizeof(err)) == 0);
	FUZZ_CHECK(built_len == c.signed_len && memcmp(built, c.signed_bytes, built_len) == 0);
	free(built);
	mw_cancel_free(&c);
	free(text);
	return 0;
}
