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
	MW_EXIT_UNAVAILABLE = 6,	/* busy, interrupted, internal error, no answer */
	MW_EXIT_REFUSED = 7,		/* the agent refused the job: nothing ran */
	MW_EXIT_CANCELLED = 8,		/* a signed cancellation ended the job */
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
int mw_cmd_agent(int argc, char **argv);
int mw_cmd_send(int argc, char **argv);
int mw_cmd_fleet(int argc, char **argv);
int mw_cmd_results(int argc, char **argv);
int mw_cmd_jobs(int argc, char **argv);
int mw_cmd_cancel(int argc, char **argv);
int mw_cmd_sign(int argc, char **argv);
int mw_cmd_verify(int argc, char **argv);
int mw_cmd_init(int argc, char **argv);

/* ---- policy ---- */

struct mw_profile {
	char *name;
	struct mw_grants grants;
	struct mw_limits limits;
	/* `args NAME...`: the only job arguments this profile accepts; when
	 * the profile has no such line, any arguments are accepted. */
	bool args_restricted;
	char **arg_names;
	uint32_t n_arg_names;
};
/* Whether a profile accepts a job argument of that name. */
bool mw_profile_accepts_arg(const struct mw_profile *pr, const char *name);

/* `allow PRINCIPAL JID PROFILE [validity=DURATION]`: jobs signed by a key
 * whose allowed_signers principals match PRINCIPAL, arriving from JID, run
 * under PROFILE; not-after - issued-at may be at most validity. */
struct mw_policy_allow {
	char *principal;
	char *jid;			/* bare JID, compared exactly */
	size_t profile;			/* index into profiles */
	uint32_t max_validity_s;	/* default 3600, at most 7 days */
};
/* `interactive JID PROFILE`: plain Lua typed by a verified device of JID
 * runs under PROFILE (spec/threat-model.md says what that risks). */
struct mw_policy_interactive {
	char *jid;
	size_t profile;
};

/* Where one `read`/`write` grant came from: kept so that checks made after
 * parsing (mw_policy_check_protected) can name FILE:LINE.  The canonical
 * directory is profiles[profile].grants.fs_read/fs_write[index]. */
struct mw_policy_path_line {
	unsigned line;
	bool write;
	size_t profile;
	uint32_t index;
	char *given;			/* the path as written in the file */
};

struct mw_policy {
	char *file;				/* the name errors use */
	struct mw_policy_path_line *path_lines;	/* every read/write line, in file order */
	size_t n_path_lines;
	struct mw_limits limits;		/* defaults for every profile */
	struct mw_command_grant *commands;	/* the allowlist */
	size_t n_commands;
	struct mw_profile *profiles;
	size_t n_profiles;
	struct mw_policy_allow *allows;		/* in file order; first match wins */
	size_t n_allows;
	struct mw_policy_interactive *interactives;
	size_t n_interactives;
};

/* Parses a policy file.  On error returns -1 and writes "FILE:LINE: why"
 * into err. */
int mw_policy_load(const char *path, struct mw_policy *p, char *err, size_t errlen);
int mw_policy_parse(const char *text, size_t len, const char *name,
    struct mw_policy *p, char *err, size_t errlen);
void mw_policy_free(struct mw_policy *p);
const struct mw_profile *mw_policy_profile(const struct mw_policy *p, const char *name);
const struct mw_command_grant *mw_policy_command(const struct mw_policy *p, const char *name);
/* The first `allow` line for jid whose PRINCIPAL is in the signer's
 * allowed_signers principals (a comma-separated pattern list); NULL if none. */
const struct mw_policy_allow *mw_policy_allowed(const struct mw_policy *p,
    const char *signer_principals, const char *jid);
const struct mw_policy_interactive *mw_policy_interactive_for(
    const struct mw_policy *p, const char *jid);
/* Whether jid appears in any allow or interactive line (presence
 * subscriptions are approved only for those). */
bool mw_policy_knows_jid(const struct mw_policy *p, const char *jid);

/*
 * The agent's own files (identity database and its -wal/-shm, password
 * file, state directory, allowed_signers, the policy, the configuration):
 * no read or write grant may equal, contain or lie inside one of them.
 * path is absolute and canonical (mw_path_canonical); what names the file
 * in errors ("identity database").
 */
#define MW_PROTECTED_MAX 32		/* as many as a sandbox HELLO carries */
struct mw_protected_path {
	char *path;
	const char *what;
};
/* Canonical form of path: realpath() when it exists; otherwise the
 * canonical form of its directory (recursively, up to one that exists)
 * joined with its last component.  malloc'ed, or NULL with errno set
 * (EINVAL for a last component "." or ".."). */
char *mw_path_canonical(const char *path);
/* 0 when no read/write grant of any profile of p equals, contains or lies
 * inside one of paths[0..n); otherwise -1 and, for the first such grant in
 * file order, "FILE:LINE: read DIR would expose the agent's WHAT PATH". */
int mw_policy_check_protected(const struct mw_policy *p,
    const struct mw_protected_path *paths, size_t n, char *err, size_t errlen);

/* Grant helpers shared by policy lines and command-line flags. */
int mw_grant_add_path(struct mw_grants *g, bool write, const char *path,
    char *err, size_t errlen);
int mw_grant_add_command(struct mw_grants *g, const struct mw_command_grant *c);
/* "64K" "32M" "1G" or bytes; "500ms" "2s" "1m" "1h" "7d" or seconds. */
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
