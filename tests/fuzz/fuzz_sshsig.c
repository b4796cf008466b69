/*
 * fuzz_sshsig: the SSHSIG layer under every envelope -- the armor
 * (mw_sshsig_unarmor), the blob parser and Ed25519 check (mw_sshsig_verify,
 * over a fixed message and namespace) and the public key blob parser
 * (mw_ssh_pubkey_from_blob, mw_ssh_pubkey_parse_line).  The same input is
 * tried as armored text, as a raw signature blob, as a key blob and as a
 * .pub line.  The seed sig-valid.* is a real `ssh-keygen -Y sign -n
 * moonwire-job` signature over FIXED_MSG, so mutations start from a blob
 * that verifies.
 *
 * Invariants beyond "no crash":
 *  - unarmor == 0 gives a non-empty blob; armor(blob) unarmors to the same
 *    blob (render/parse round trip); unarmor != 0 leaves *blob NULL;
 *  - verify returns 0 or a documented refusal; 0 means a well-formed signer
 *    fingerprint ("SHA256:" + 43 base64 characters);
 *  - pubkey_from_blob == 0 means the input is exactly the 51-byte blob
 *    mw_ssh_pubkey_blob() renders, and the fingerprint is well formed;
 *    on failure the key is zeroed.
 */
#include <string.h>

#include "runtime/job/job.h"
#include "tests/fuzz/fuzzlib.h"

#define FIXED_MSG "moonwire fuzz message\n"

static void
check_fp(const char *fp)
{
	FUZZ_CHECK(strncmp(fp, "SHA256:", 7) == 0 && strlen(fp) == 7 + 43);
}

static void
verify(const uint8_t *blob, size_t len)
{
	struct mw_ssh_pubkey signer;
	char err[256];
	int r = mw_sshsig_verify(blob, len, MW_JOB_NAMESPACE,
	    (const uint8_t *)FIXED_MSG, strlen(FIXED_MSG), &signer, err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == MW_REFUSE_BAD_SIGNATURE || r == MW_REFUSE_UNSUPPORTED_HASH ||
	    r == MW_REFUSE_UNSUPPORTED_KEY || r == MW_REFUSE_WRONG_NAMESPACE);
	if (r == 0)
		check_fp(signer.fp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *in = fz_copy(data, size);
	uint8_t *blob = (uint8_t *)1, *blob2 = NULL;
	size_t blen = 0, blen2 = 0, alen = 0;

	/* as armored text */
	if (mw_sshsig_unarmor((const char *)in, size, &blob, &blen) == 0) {
		FUZZ_CHECK(blob != NULL && blen > 0);
		char *armor = mw_sshsig_armor(blob, blen, &alen);
		FUZZ_CHECK(armor != NULL && alen == strlen(armor));
		FUZZ_CHECK(mw_sshsig_unarmor(armor, alen, &blob2, &blen2) == 0);
		FUZZ_CHECK(blen2 == blen && memcmp(blob, blob2, blen) == 0);
		verify(blob, blen);
		free(armor);
		free(blob2);
		free(blob);
	} else {
		FUZZ_CHECK(blob == NULL && blen == 0);
	}

	/* as a signature blob */
	verify(in, size);

	/* as a public key blob */
	struct mw_ssh_pubkey k;
	int r = mw_ssh_pubkey_from_blob(in, size, &k);
	FUZZ_CHECK(r == 0 || r == MW_REFUSE_UNSUPPORTED_KEY || r == MW_REFUSE_MALFORMED);
	if (r == 0) {
		uint8_t out[51];
		check_fp(k.fp);
		mw_ssh_pubkey_blob(&k, out);
		FUZZ_CHECK(size == sizeof(out) && memcmp(out, in, size) == 0);
	} else {
		static const struct mw_ssh_pubkey zero;
		FUZZ_CHECK(memcmp(&k, &zero, sizeof(k)) == 0);
	}

	/* as a .pub line */
	char *line = fz_cstr(data, size), err[256];
	if (mw_ssh_pubkey_parse_line(line, &k, err, sizeof(err)) == 0)
		check_fp(k.fp);
	free(line);
	free(in);
	return 0;
}
