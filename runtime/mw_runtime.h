/*
 * mw_runtime.h: the runtime component's public header -- the moonwire
 * subcommands, the policy file, and the rendering of job results.
 * spec/policy.md and spec/cli.md describe what is declared here.
 */
#ifndef MW_RUNTIME_H
#define MW_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "sandbox/mw_sandbox.h"

/* Exit statuses of moonwire commands (spec/cli.md). */
enum {
	MW_EXIT_OK = 0,
	MW_EXIT_ERROR = 1,		/* the program raised an error */
	MW_EXIT_USAGE = 2,		/* bad flags, unreadable input, bad policy: nothing ran */
	MW_EXIT_SYNTAX = 3,
	MW_EXIT_LIMIT = 4,		/* a limit stopped the program */
	MW_EXIT_SANDBOX = 5,		/* violation, crash, protocol error */
	MW_EXIT_UNAVAILABLE = 6,	/* busy, interrupted, internal error */
};
int mw_exit_for_status(enum mw_job_status s);

/* Subcommands. */
int mw_cmd_run(int argc, char **argv);
int mw_cmd_supervisor(int argc, char **argv);
int mw_cmd_fingerprint(int argc, char **argv);
int mw_cmd_devices(int argc, char **argv);
int mw_cmd_trust(int argc, char **argv);
int mw_cmd_distrust(int argc, char **argv);
int mw_cmd_omemo_client(int argc, char **argv);
int mw_cmd_sign(int argc, char **argv);
int mw_cmd_verify(int argc, char **argv);

/* ---- policy ---- */

struct mw_profile {
	char *name;
	struct mw_grants grants;
	struct mw_limits limits;
};

struct mw_policy {
	struct mw_limits limits;		/* defaults for every profile */
	struct mw_command_grant *commands;	/* the allowlist */
	size_t n_commands;
	struct mw_profile *profiles;
	size_t n_profiles;
};

/* Parses a policy file.  On error returns -1 and writes "FILE:LINE: why"
 * into err. */
int mw_policy_load(const char *path, struct mw_policy *p, char *err, size_t errlen);
int mw_policy_parse(const char *text, size_t len, const char *name,
    struct mw_policy *p, char *err, size_t errlen);
void mw_policy_free(struct mw_policy *p);
const struct mw_profile *mw_policy_profile(const struct mw_policy *p, const char *name);
const struct mw_command_grant *mw_policy_command(const struct mw_policy *p, const char *name);

/* Grant helpers shared by policy lines and command-line flags. */
int mw_grant_add_path(struct mw_grants *g, bool write, const char *path,
    char *err, size_t errlen);
int mw_grant_add_command(struct mw_grants *g, const struct mw_command_grant *c);
/* "64K" "32M" "1G" or bytes; "500ms" "2s" "1m" or seconds. */
int mw_parse_size(const char *s, uint64_t *out);
int mw_parse_duration_ms(const char *s, uint64_t *out);
/* One "key=value" limit setting, as in policy `limits` lines and flags. */
int mw_limit_set(struct mw_limits *l, const char *key, const char *value,
    char *err, size_t errlen);

/* ---- results ---- */

/* The result as a JSON object (spec/result.md); caller frees the string. */
char *mw_result_to_json(const struct mw_result *r, bool pretty);
/* The result for people. */
void mw_result_print_text(FILE *f, const struct mw_result *r);

#endif
