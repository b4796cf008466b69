/*
 * fuzz_policy: mw_policy_parse, the agent's policy file (spec/policy.md).
 * The owner writes it, but it decides every grant, so a parse that
 * succeeds must never hand out more than the file says.  Paths it names
 * are only stat()ed and resolved, never opened for writing.
 *
 * Invariants beyond "no crash":
 *  - failure: -1 with "fuzz:LINE: reason" and the struct zeroed;
 *  - success: every allow/interactive line names a profile that exists;
 *    allow principals contain no ',' and no leading '!'; validity is 1 s..7 d;
 *    every profile's and the global limits are non-zero and within
 *    mw_limits_maximum(); every command grant's program is absolute; every
 *    read/write grant is an absolute path outside /proc, /sys and /dev;
 *    every profile's exec grants are commands of the allowlist;
 *  - the look-ups (profile by name, command by name, allowed, interactive,
 *    knows_jid) agree with the arrays they search.
 */
#include <string.h>

#include "runtime/mw_runtime.h"
#include "tests/fuzz/fuzzlib.h"

static void
check_limits(const struct mw_limits *l)
{
	struct mw_limits m;
	mw_limits_maximum(&m);
#define L(f) FUZZ_CHECK(l->f > 0 && l->f <= m.f)
	L(instructions); L(memory); L(cpu_ms); L(wall_ms); L(output_bytes);
	L(program_bytes); L(result_bytes); L(result_depth); L(cap_calls);
#undef L
}

static void
check_path(const char *p)
{
	FUZZ_CHECK(p != NULL && p[0] == '/');
	FUZZ_CHECK(strncmp(p, "/proc/", 6) != 0 && strcmp(p, "/proc") != 0);
	FUZZ_CHECK(strncmp(p, "/sys/", 5) != 0 && strcmp(p, "/sys") != 0);
	FUZZ_CHECK(strncmp(p, "/dev/", 5) != 0 && strcmp(p, "/dev") != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_policy p;
	char err[512];
	uint8_t *text = fz_copy(data, size);
	int r = mw_policy_parse((const char *)text, size, "fuzz", &p, err, sizeof(err));

	if (r != 0) {
		static const struct mw_policy zero;
		FUZZ_CHECK(r == -1 && strncmp(err, "fuzz:", 5) == 0);
		FUZZ_CHECK(memcmp(&p, &zero, sizeof(p)) == 0);
		free(text);
		return 0;
	}
	check_limits(&p.limits);
	for (size_t i = 0; i < p.n_commands; i++) {
		const struct mw_command_grant *c = &p.commands[i];
		FUZZ_CHECK(c->name != NULL && c->argc >= 1 && c->argv[0][0] == '/');
		FUZZ_CHECK(mw_policy_command(&p, c->name) != NULL);
	}
	for (size_t i = 0; i < p.n_profiles; i++) {
		const struct mw_profile *pr = &p.profiles[i];
		const struct mw_grants *g = &pr->grants;
		FUZZ_CHECK(pr->name != NULL && mw_policy_profile(&p, pr->name) != NULL);
		check_limits(&pr->limits);
		for (uint32_t j = 0; j < g->n_fs_read; j++)
			check_path(g->fs_read[j]);
		for (uint32_t j = 0; j < g->n_fs_write; j++)
			check_path(g->fs_write[j]);
		for (uint32_t j = 0; j < g->n_commands; j++) {
			FUZZ_CHECK(g->commands[j].argc >= 1 && g->commands[j].argv[0][0] == '/');
			FUZZ_CHECK(mw_policy_command(&p, g->commands[j].name) != NULL);
		}
		FUZZ_CHECK(g->sleep_max_ms <= 3600u * 1000u);
	}
	for (size_t i = 0; i < p.n_allows; i++) {
		const struct mw_policy_allow *a = &p.allows[i];
		FUZZ_CHECK(a->profile < p.n_profiles);
		FUZZ_CHECK(a->principal[0] != '\0' && a->principal[0] != '!' &&
		    strchr(a->principal, ',') == NULL);
		FUZZ_CHECK(a->max_validity_s >= 1 && a->max_validity_s <= 7 * 86400);
		FUZZ_CHECK(mw_policy_knows_jid(&p, a->jid));
		/* The first line for this JID whose principal is in the list wins. */
		const struct mw_policy_allow *w = mw_policy_allowed(&p, a->principal, a->jid);
		FUZZ_CHECK(w != NULL && w <= a);
	}
	for (size_t i = 0; i < p.n_interactives; i++) {
		FUZZ_CHECK(p.interactives[i].profile < p.n_profiles);
		FUZZ_CHECK(mw_policy_interactive_for(&p, p.interactives[i].jid) == &p.interactives[i]);
	}
	FUZZ_CHECK(mw_policy_allowed(&p, "nobody-at-all", "nobody@nowhere.invalid") == NULL ||
	    mw_policy_knows_jid(&p, "nobody@nowhere.invalid"));
	mw_policy_free(&p);
	free(text);
	return 0;
}
