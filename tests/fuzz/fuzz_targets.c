/*
 * fuzz_targets: mw_fleet_targets_parse, a targets file for `moonwire send
 * --targets` (spec/cli.md "Targets").  The operator writes or generates
 * it, often from an inventory export, and it decides who receives a signed
 * job, so a parse that succeeds must yield exactly well-formed, distinct
 * bare JIDs, and a failure must name a line of the input.
 *
 * Invariants beyond "no crash":
 *  - failure: MW_FLEET_E_JID with "fuzz:LINE: reason", 1 <= LINE <= the
 *    input's line count; what was added before stays valid (below);
 *  - always: every entry is a bare JID already in normal form (normalize
 *    is the identity on it), no two entries are equal, n <= given;
 *  - success: the entries written one a line parse back to the same list
 *    with given == n (folding is idempotent and order-preserving).
 */
#include <string.h>

#include "runtime/fleet/fleet.h"
#include "tests/fuzz/fuzzlib.h"

static void
check_entries(const struct mw_fleet_targets *t)
{
	char norm[2 * MW_FLEET_PART_MAX + 2];

	FUZZ_CHECK(t->n <= t->given);
	for (size_t i = 0; i < t->n; i++) {
		size_t len = strlen(t->jid[i]);

		FUZZ_CHECK(mw_fleet_jid_normalize(t->jid[i], len, norm, sizeof(norm),
		    NULL, 0) == MW_FLEET_OK);
		FUZZ_CHECK(strcmp(norm, t->jid[i]) == 0);
		FUZZ_CHECK(strchr(t->jid[i], '/') == NULL && strchr(t->jid[i], ' ') == NULL);
		for (size_t k = 0; k < i; k++)
			FUZZ_CHECK(strcmp(t->jid[k], t->jid[i]) != 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_fleet_targets t, again;
	char err[512], *text = (char *)fz_copy(data, size);
	size_t lines = 1, total = 0;
	int rc;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	mw_fleet_targets_init(&t);
	err[0] = '\0';
	rc = mw_fleet_targets_parse(&t, text, size, "fuzz", err, sizeof(err));
	check_entries(&t);
	if (rc != MW_FLEET_OK) {
		unsigned long line = 0;

		FUZZ_CHECK(rc == MW_FLEET_E_JID);
		FUZZ_CHECK(strncmp(err, "fuzz:", 5) == 0);
		line = strtoul(err + 5, NULL, 10);
		FUZZ_CHECK(line >= 1 && line <= lines);
		mw_fleet_targets_free(&t);
		free(text);
		return 0;
	}
	for (size_t i = 0; i < t.n; i++)
		total += strlen(t.jid[i]) + 1;
	{
		char *out = malloc(total + 1), *p = out;

		FUZZ_CHECK(out != NULL);
		for (size_t i = 0; i < t.n; i++) {
			size_t len = strlen(t.jid[i]);

			memcpy(p, t.jid[i], len);
			p[len] = '\n';
			p += len + 1;
		}
		mw_fleet_targets_init(&again);
		FUZZ_CHECK(mw_fleet_targets_parse(&again, out, total, "again", err,
		    sizeof(err)) == MW_FLEET_OK);
		FUZZ_CHECK(again.n == t.n && again.given == t.n);
		for (size_t i = 0; i < t.n; i++)
			FUZZ_CHECK(strcmp(again.jid[i], t.jid[i]) == 0);
		mw_fleet_targets_free(&again);
		free(out);
	}
	mw_fleet_targets_free(&t);
	free(text);
	return 0;
}
