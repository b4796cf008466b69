/*
 * fuzz_allowed_signers: the allowed_signers file (mw_allowed_signers_parse)
 * and its look-ups (mw_allowed_signers_find, mw_principal_match).  The file
 * is the owner's, but it is often generated or copied from elsewhere, and
 * the pattern matcher also runs on principals from it for every job.
 *
 * Invariants beyond "no crash":
 *  - parse fails with MW_REFUSE_MALFORMED, *out NULL and an error naming
 *    "fuzz:"; or succeeds with a non-NULL list;
 *  - for every ssh-ed25519 key written in the input (base64 blob), find
 *    returns 0 with a NUL-terminated principals list, or UNKNOWN_SIGNER
 *    with principals NULL;
 *  - principal_match: a list without '!' matches each of its own literal
 *    entries (no '*' or '?'); a "!x" entry makes x never match; NULL never
 *    matches.
 *  - the matcher terminates quickly on long patterns (no exponential
 *    backtracking): libFuzzer's -timeout catches that.
 */
#include <limits.h>
#include <string.h>

#include "runtime/job/job.h"
#include "tests/fuzz/fuzzlib.h"

#define ED25519_B64_PREFIX "AAAAC3NzaC1lZDI1NTE5AAAAI"	/* 51-byte blob: 68 chars */

static void
check_entries(const char *principals)
{
	char *copy = strdup(principals), *save = NULL;
	bool has_neg = strchr(principals, '!') != NULL;
	FUZZ_CHECK(copy != NULL);
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (t[0] == '!') {
			FUZZ_CHECK(!mw_principal_match(principals, t + 1));
			continue;
		}
		if (!has_neg && strpbrk(t, "*?") == NULL)
			FUZZ_CHECK(mw_principal_match(principals, t));
	}
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_allowed_signers *a = (struct mw_allowed_signers *)1;
	char err[512];
	uint8_t *text = fz_copy(data, size);
	int r = mw_allowed_signers_parse((const char *)text, size, "fuzz", &a, err, sizeof(err));

	if (r != 0) {
		FUZZ_CHECK(r == MW_REFUSE_MALFORMED && a == NULL);
		FUZZ_CHECK(strncmp(err, "fuzz:", 5) == 0);
	} else {
		FUZZ_CHECK(a != NULL);
		/* Every key the input names, at a few times and namespaces. */
		char *s = fz_cstr(data, size);
		for (char *p = strstr(s, ED25519_B64_PREFIX); p != NULL;
		    p = strstr(p + 1, ED25519_B64_PREFIX)) {
			uint8_t *blob = NULL;
			size_t blen = 0;
			struct mw_ssh_pubkey k;
			if (strlen(p) < 68 || mw_b64_decode(p, 68, &blob, &blen) != 0)
				continue;
			if (mw_ssh_pubkey_from_blob(blob, blen, &k) == 0) {
				static const int64_t when[] = { INT64_MIN, 0, 1700000000, INT64_MAX };
				static const char *const ns[] = { MW_JOB_NAMESPACE, "file", "" };
				for (size_t i = 0; i < sizeof(when) / sizeof(when[0]); i++)
					for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
						const char *pr = (const char *)1;
						int fr = mw_allowed_signers_find(a, &k, ns[j], when[i], &pr);
						if (fr == 0) {
							FUZZ_CHECK(pr != NULL);
							check_entries(pr);
							(void)mw_principal_match(pr, "alice@example.org");
						} else {
							FUZZ_CHECK(fr == MW_REFUSE_UNKNOWN_SIGNER && pr == NULL);
						}
					}
			}
			free(blob);
		}
		free(s);
		mw_allowed_signers_free(a);
	}

	/* The matcher alone: first line a principal, the rest a pattern list. */
	char *s = fz_cstr(data, size);
	char *nl = strchr(s, '\n');
	if (nl != NULL) {
		*nl = '\0';
		(void)mw_principal_match(nl + 1, s);
		check_entries(nl + 1);
	}
	FUZZ_CHECK(!mw_principal_match(NULL, s) && !mw_principal_match(s, NULL));
	free(s);
	free(text);
	return 0;
}
