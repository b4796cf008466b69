/*
 * cmd_send.c: `moonwire send`, the operator's side of a job: sign a
 * program for each target agent, encrypt it with OMEMO to the agent's
 * verified devices, send it, and wait for each result (spec/cli.md).
 *
 * Many --to run in parallel over one connection: every envelope is sent
 * at once and results are printed as they arrive, so a fleet of 50 agents
 * costs one round trip, not 50.  All envelopes of one send carry the same
 * job id (the replay cache is per agent): it names the job in the
 * operator's job table, which is committed before anything is sent.  The
 * waiting, the table and the summary are runtime/fleet's.  The exit status
 * is that of the first target (in --to order) whose result was not ok, so
 * scripts can rely on `moonwire send` like on `ssh host command`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/sha.h>
#include <strophe.h>

#include "runtime/agent/agent.h"
#include "runtime/fleet/fleet.h"
#include "wire/mw_wire.h"

#include "cli.h"

#define SEND_MAX_GROUPS 64

struct target {
	const char *jid;		/* owned by the target list */
	char job_id[MW_JOB_ID_MAX + 1];
	char *envelope;
	size_t envelope_len;
};

/* What the options ask for; runtime/fleet does the sending and waiting. */
struct sender {
	struct mw_omemo_account acct;
	struct target *t;
	size_t nt;
	bool json;
	const char *config;		/* the account file, for hints */
	enum mw_omemo_version omemo;	/* --omemo: AUTO unless forced */
};

static void
send_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire send -c CONFIG (--to JID | --targets FILE | --group NAME)...\n"
	    "                     [options] FILE.lua\n"
	    "       moonwire send -c CONFIG --to JID --envelope ENVELOPE\n"
	    "\n"
	    "Signs FILE.lua for each agent, sends it over OMEMO, waits for the results.\n"
	    "\n"
	    "  -c CONFIG           the operator's account file (and its signing_key)\n"
	    "  --to JID            an agent's bare JID; repeat for a fleet (run in parallel)\n"
	    "  --targets FILE      the agents' JIDs from FILE, one a line (# comments)\n"
	    "  --group NAME        the members of the operator's roster group NAME\n"
	    "                      (repeatable; `moonwire fleet` edits the groups)\n"
	    "  --max-targets N     refuse more than N targets (default: max_targets in\n"
	    "                      CONFIG, else 1024); duplicates are folded first\n"
	    "  -k, --key KEY       OpenSSH Ed25519 private key, or KEY.pub held by ssh-agent\n"
	    "                      (default: `signing_key` in CONFIG)\n"
	    "  --ttl DURATION      how long the job stays valid (default 5m)\n"
	    "  --limit KEY=VALUE   ask for a lower limit (repeatable)\n"
	    "  --arg NAME=VALUE    a signed argument the program reads as args.NAME (repeatable)\n"
	    "  --envelope FILE     send an envelope signed elsewhere (`moonwire sign`)\n"
	    "  --timeout DURATION  how long to wait for results (default 60s)\n"
	    "  --json              one JSON object per result, one per line, then a summary\n"
	    "  --omemo VERSION     legacy or 2: speak only that OMEMO version; a target\n"
	    "                      that does not offer it is not sent to (default: OMEMO 2\n"
	    "                      where the agent publishes it, legacy otherwise)\n"
	    "\n"
	    "With several targets a table (one line per target) and the totals follow\n"
	    "the results.  The job is recorded in CONFIG's database before anything is\n"
	    "sent; when the wait ends early (--timeout, Ctrl-C) the job id is printed:\n"
	    "`moonwire results -c CONFIG JOB` collects what returns later.\n"
	    "\n"
	    "The program is compiled locally first: a syntax error is reported with the\n"
	    "file name and nothing is signed or sent (exit 3).  A job whose send timed\n"
	    "out may still run when the agent connects, until its --ttl has passed.\n"
	    "\n"
	    "exit status: that of the first target (in --to order) whose outcome was not ok\n"
	    "(as `moonwire run`), 7 if it refused the job, 6 if it was not sent or no result\n"
	    "came in time; 0 when all are ok; 2 usage.\n");
}


static int
read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	char *buf;
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "moonwire send: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "moonwire send: %s: not a regular file\n", path);
		fclose(f);
		return -1;
	}
	if ((buf = malloc(max + 2)) == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		fprintf(stderr, "moonwire send: %s: %s\n", path, ferror(f) ?
		    "read error" : "too large");
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* ---- preparing envelopes ---- */

/* Like ssh: a secret others may read is worth a warning (not a refusal). */
static void
warn_if_exposed(const char *cmd, const char *path, const char *what)
{
	struct stat st;
	size_t n = strlen(path);

	if (n > 4 && strcmp(path + n - 4, ".pub") == 0)
		return;		/* a public key; the private half is in ssh-agent */
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0077) != 0)
		fprintf(stderr, "moonwire %s: WARNING: %s %s is readable by others "
		    "(mode %04o): chmod 600 %s\n", cmd, what, path, st.st_mode & 07777, path);
}

int
cli_signing_key(const char *cmd, const char *config, const char *keypath,
    struct mw_ssh_signer **out)
{
	char *path = NULL, err[512];
	int rc = MW_EXIT_USAGE;

	*out = NULL;
	if (keypath == NULL) {
		char *v = mw_config_value(config, "signing_key");

		if (v == NULL) {
			fprintf(stderr, "moonwire %s: no key: use -k KEY or signing_key "
			    "in %s\n", cmd, config);
			return MW_EXIT_USAGE;
		}
		/* the account file's path rules: ~, relative to the file */
		if (mw_omemo_account_path(config, v, &path) != 0) {
			fprintf(stderr, "moonwire %s: %s: signing_key '%s' is not a usable "
			    "path\n", cmd, config, v);
			free(v);
			return MW_EXIT_USAGE;
		}
		free(v);
		keypath = path;
	}
	warn_if_exposed(cmd, keypath, "private key");
	if (mw_ssh_signer_load(keypath, out, err, sizeof(err)) != 0) {
		if (strstr(err, keypath) != NULL)
			fprintf(stderr, "moonwire %s: %s\n", cmd, err);
		else
			fprintf(stderr, "moonwire %s: %s: %s\n", cmd, keypath, err);
		*out = NULL;
	} else
		rc = 0;
	free(path);
	return rc;
}

/*
 * Compiles the program (text only, nothing runs) so a syntax error is
 * reported here, with the file name as `moonwire run` does, before anything
 * is signed or sent.  Returns 0, or MW_EXIT_SYNTAX / MW_EXIT_UNAVAILABLE.
 */
static int
check_syntax(const char *path, const char *program, size_t plen)
{
	char chunk[4096];
	const char *base = strrchr(path, '/');
	lua_State *L = luaL_newstate();
	int rc;

	if (L == NULL) {
		fprintf(stderr, "moonwire send: out of memory\n");
		return MW_EXIT_UNAVAILABLE;
	}
	snprintf(chunk, sizeof(chunk), "=%s", base != NULL ? base + 1 : path);
	rc = luaL_loadbufferx(L, program, plen, chunk, "t");
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);

		fprintf(stderr, "moonwire send: %s\n", rc == LUA_ERRSYNTAX && msg != NULL ?
		    msg : "cannot compile the program (out of memory)");
		fprintf(stderr, "moonwire send: nothing was signed or sent\n");
		lua_close(L);
		return rc == LUA_ERRSYNTAX ? MW_EXIT_SYNTAX : MW_EXIT_UNAVAILABLE;
	}
	lua_close(L);
	return 0;
}

static int
prepare_envelopes(struct sender *s, struct mw_ssh_signer *key, const char *program,
    size_t plen, const char *limits, const struct mw_job_args *args, uint64_t ttl_ms)
{
	char err[512];

	for (size_t i = 0; i < s->nt; i++) {
		struct target *t = &s->t[i];
		struct mw_envelope_fields f;
		char *part = NULL, *sig = NULL;
		size_t partlen, siglen;
		int64_t now = (int64_t)time(NULL);

		memset(&f, 0, sizeof(f));
		f.audience = t->jid;
		f.issued_at = now;
		f.not_after = now + (int64_t)(ttl_ms / 1000);
		f.limits_text = limits;
		f.args = args;
		f.job_id = i > 0 ? s->t[0].job_id : NULL;	/* one job id for all */
		if (mw_envelope_build(&f, (const uint8_t *)program, plen, &part, &partlen,
		    t->job_id, err, sizeof(err)) != 0 ||
		    mw_sshsig_sign(key, MW_JOB_NAMESPACE, (const uint8_t *)part, partlen,
		    &sig, &siglen, err, sizeof(err)) != 0 ||
		    mw_envelope_attach(part, partlen, sig, siglen, &t->envelope,
		    &t->envelope_len, err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire send: %s: %s\n", t->jid, err);
			free(part);
			free(sig);
			return -1;
		}
		free(part);
		free(sig);
	}
	return 0;
}

/*
 * The targets: --to and --targets (already in list), then the members of
 * each --group from the operator's roster, folded and capped
 * (spec/cli.md "Targets"); s->t points into list.  0, or the exit status
 * after saying why.  Nothing has been signed or sent yet.
 */
static int
send_targets(struct sender *s, struct mw_fleet_targets *list, char *const *groups,
    size_t ngroups, size_t max)
{
	char err[1400], *v = NULL;
	int rc;

	if (max == 0 && (v = mw_config_value(s->config, "max_targets")) != NULL &&
	    mw_fleet_parse_cap(v, &max) != 0) {
		fprintf(stderr, "moonwire send: %s: max_targets = %s: a number from 1 "
		    "to %d\n", s->config, v, MW_FLEET_MAX_TARGETS_LIMIT);
		free(v);
		return MW_EXIT_USAGE;
	}
	free(v);
	if (max == 0)
		max = MW_FLEET_MAX_TARGETS_DEFAULT;
	/* over the cap already: refused before connecting for the groups */
	rc = mw_fleet_targets_check_cap(list, max, err, sizeof(err));
	if (rc == 0 && ngroups > 0 && (rc = mw_fleet_targets_add_groups(list, &s->acct,
	    groups, ngroups, 30000, err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire send: %s\nmoonwire send: nothing was signed "
		    "or sent\n", err);
		return rc == MW_FLEET_E_GROUP ? MW_EXIT_USAGE : MW_EXIT_UNAVAILABLE;
	}
	if (rc == 0)
		rc = mw_fleet_targets_check_cap(list, max, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "moonwire send: %s: raise it with --max-targets N or "
		    "`max_targets = N` in %s\nmoonwire send: nothing was signed or "
		    "sent\n", err, s->config);
		return MW_EXIT_USAGE;
	}
	if ((s->t = calloc(list->n, sizeof(*s->t))) == NULL)
		return MW_EXIT_UNAVAILABLE;
	for (size_t i = 0; i < list->n; i++)
		s->t[i].jid = list->jid[i];
	s->nt = list->n;
	return 0;
}

/* A SHA-256 for the job row: of the envelope when one was given, else of
 * the program (each target's envelope differs by its audience). */
static void
job_hash(const struct sender *s, bool given_envelope, const char *program,
    size_t plen, uint8_t out[32])
{
	if (given_envelope)
		SHA256((const unsigned char *)s->t[0].envelope, s->t[0].envelope_len, out);
	else
		SHA256((const unsigned char *)program, plen, out);
}

/*
 * Records the job, sends every envelope over one connection, waits, prints
 * the summary.  The job's rows are committed before the connection is even
 * opened.  Returns the exit status.
 */
static int
run_job(struct sender *s, bool given_envelope, const char *program, size_t plen,
    uint64_t timeout_ms)
{
	struct mw_fleet f;
	enum mw_fleet_stop why;
	uint8_t hash[32];
	char **jids = NULL;
	int rc = MW_EXIT_UNAVAILABLE;
	struct timespec now;

	memset(&f, 0, sizeof(f));
	f.json = s->json;
	f.print_results = true;
	if (mw_fleet_open(&f, "send", s->config, &s->acct) != 0)
		goto out;
	mw_omemo_set_send_version(f.o, s->omemo);
	snprintf(f.job_id, sizeof(f.job_id), "%s", s->t[0].job_id);
	job_hash(s, given_envelope, program, plen, hash);
	if ((jids = calloc(s->nt, sizeof(*jids))) == NULL)
		goto out;
	for (size_t i = 0; i < s->nt; i++)
		jids[i] = (char *)s->t[i].jid;
	clock_gettime(CLOCK_REALTIME, &now);
	if (mw_jobtable_create(f.db, f.job_id, hash, (int64_t)now.tv_sec * 1000 +
	    now.tv_nsec / 1000000, jids, s->nt) != 0) {
		fprintf(stderr, "moonwire send: %s: cannot record the job: %s; nothing "
		    "was sent\n", s->acct.db, sqlite3_errmsg(f.db));
		goto out;
	}
	/* the job's rows of this send only (a job id sent before may have
	 * had other targets) */
	if (mw_fleet_load(&f) != 0 || mw_fleet_keep(&f, jids, s->nt) != 0)
		goto out;
	/* each target's envelope goes with its row (a repeated --to is one) */
	for (size_t i = 0; i < s->nt; i++) {
		ssize_t k = mw_fleet_find(&f, s->t[i].jid);

		if (k >= 0) {
			f.t[k].envelope = s->t[i].envelope;
			f.t[k].envelope_len = s->t[i].envelope_len;
		}
	}
	if (mw_fleet_connect(&f) != 0)
		goto out;
	why = mw_fleet_wait(&f, timeout_ms, false);
	if (why != MW_FLEET_ALL_DONE)
		mw_fleet_explain_missing(&f);
	if (f.json || f.nt > 1)
		mw_fleet_summary_print(stdout, f.job_id, f.rows, f.nt, f.json, !f.json);
	if (why != MW_FLEET_ALL_DONE)
		mw_fleet_hint_later(&f, why);
	rc = mw_fleet_exit(f.rows, f.nt);
out:
	free(jids);
	mw_fleet_close(&f);
	return rc;
}

int
mw_cmd_send(int argc, char **argv)
{
	enum { OPT_TO = 256, OPT_TTL, OPT_LIMIT, OPT_ENVELOPE, OPT_TIMEOUT, OPT_JSON, OPT_ARG,
	    OPT_TARGETS, OPT_GROUP, OPT_MAX_TARGETS, OPT_OMEMO };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "to", required_argument, NULL, OPT_TO },
		{ "targets", required_argument, NULL, OPT_TARGETS },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "max-targets", required_argument, NULL, OPT_MAX_TARGETS },
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "arg", required_argument, NULL, OPT_ARG },
		{ "envelope", required_argument, NULL, OPT_ENVELOPE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "omemo", required_argument, NULL, OPT_OMEMO },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sender s;
	const char *config = NULL, *envelope_path = NULL;
	char *keypath = NULL, *program = NULL, limits[512] = "", err[512];
	size_t plen = 0;
	uint64_t ttl_ms = 300000, timeout_ms = 60000;
	struct mw_ssh_signer *key = NULL;
	struct mw_job_args args;
	struct mw_fleet_targets list;	/* --to, --targets, --group: folded */
	char *groups[SEND_MAX_GROUPS];
	size_t ngroups = 0, max_targets = 0;
	bool targets_file = false;
	int ch, rc = MW_EXIT_USAGE;

	memset(&s, 0, sizeof(s));
	memset(&args, 0, sizeof(args));
	mw_fleet_targets_init(&list);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:k:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'k': free(keypath); keypath = strdup(optarg); break;
		case OPT_TO:
			if (mw_fleet_targets_add(&list, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: --to %s: %s\n", optarg, err);
				goto out;
			}
			break;
		case OPT_TARGETS:
			if (mw_fleet_targets_load(&list, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: %s\n"
				    "moonwire send: nothing was signed or sent\n", err);
				goto out;
			}
			targets_file = true;
			break;
		case OPT_GROUP:
			if (mw_fleet_group_check(optarg, err, sizeof(err)) != 0 ||
			    ngroups == SEND_MAX_GROUPS) {
				fprintf(stderr, "moonwire send: --group: %s\n", ngroups ==
				    SEND_MAX_GROUPS ? "too many" : err);
				goto out;
			}
			groups[ngroups++] = optarg;
			break;
		case OPT_MAX_TARGETS:
			if (mw_fleet_parse_cap(optarg, &max_targets) != 0) {
				fprintf(stderr, "moonwire send: --max-targets: a number from "
				    "1 to %d\n", MW_FLEET_MAX_TARGETS_LIMIT);
				goto out;
			}
			break;
		case OPT_TTL:
			if (mw_parse_duration_ms(optarg, &ttl_ms) != 0 || ttl_ms < 1000 ||
			    ttl_ms > 7ull * 24 * 3600 * 1000) {
				fprintf(stderr, "moonwire send: --ttl: 1s to 7d\n");
				goto out;
			}
			break;
		case OPT_LIMIT:
			if (strlen(limits) + strlen(optarg) + 2 > sizeof(limits)) {
				fprintf(stderr, "moonwire send: too many --limit\n");
				goto out;
			}
			if (limits[0] != '\0')
				strcat(limits, " ");
			strcat(limits, optarg);
			break;
		case OPT_ARG:
			if (mw_job_args_add_spec(&args, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: --arg: %s\n", err);
				goto out;
			}
			break;
		case OPT_ENVELOPE: envelope_path = optarg; break;
		case OPT_TIMEOUT:
			if (mw_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
				fprintf(stderr, "moonwire send: --timeout: a duration\n");
				goto out;
			}
			break;
		case OPT_JSON: s.json = true; break;
		case OPT_OMEMO:
			if (mw_omemo_version_parse(optarg, &s.omemo) != 0 ||
			    s.omemo == MW_OMEMO_VERSION_AUTO) {
				fprintf(stderr, "moonwire send: --omemo: legacy or 2\n");
				goto out;
			}
			break;
		case 'h': send_usage(stdout); rc = MW_EXIT_OK; goto out;
		default: send_usage(stderr); goto out;
		}
	}
	if (targets_file && list.given == 0 && ngroups == 0) {
		fprintf(stderr, "moonwire send: no targets: the targets file names "
		    "no JID\n");
		goto out;
	}
	if (config == NULL || (list.given == 0 && ngroups == 0) ||
	    (envelope_path == NULL) != (optind == argc - 1) ||
	    (envelope_path != NULL && optind != argc)) {
		send_usage(stderr);
		goto out;
	}
	s.config = config;
	if (mw_omemo_account_load_err(&s.acct, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire send: %s\n", err);
		goto out;
	}
	if (envelope_path != NULL && args.n > 0) {
		fprintf(stderr, "moonwire send: --arg cannot change an envelope signed elsewhere "
		    "(give the arguments to `moonwire sign`)\n");
		goto out;
	}
	if (s.acct.password == NULL) {
		fprintf(stderr, "moonwire send: %s: no password or password_file\n", config);
		goto out;
	}
	{
		char *v = mw_config_value(config, "password_file"), *pw = NULL;

		if (v != NULL && mw_omemo_account_path(config, v, &pw) == 0)
			warn_if_exposed("send", pw, "password_file");
		free(v);
		free(pw);
	}
	if ((rc = send_targets(&s, &list, groups, ngroups, max_targets)) != 0)
		goto out;
	rc = MW_EXIT_USAGE;
	if (envelope_path != NULL) {
		struct mw_envelope env;

		if (s.nt != 1) {
			fprintf(stderr, "moonwire send: --envelope goes to exactly one --to\n");
			goto out;
		}
		if (read_file(envelope_path, MW_ENVELOPE_MAX, &s.t[0].envelope,
		    &s.t[0].envelope_len) != 0)
			goto out;
		if (mw_envelope_parse(s.t[0].envelope, s.t[0].envelope_len, &env, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "moonwire send: %s: %s\n", envelope_path, err);
			goto out;
		}
		if (!mw_omemo_jid_equal(env.audience, s.t[0].jid)) {
			fprintf(stderr, "moonwire send: %s is for %s, not %s\n", envelope_path,
			    env.audience, s.t[0].jid);
			mw_envelope_free(&env);
			goto out;
		}
		snprintf(s.t[0].job_id, sizeof(s.t[0].job_id), "%s", env.job_id);
		mw_envelope_free(&env);
	} else {
		if (read_file(argv[optind], MW_ENVELOPE_MAX, &program, &plen) != 0)
			goto out;
		if ((rc = check_syntax(argv[optind], program, plen)) != 0)
			goto out;
		if ((rc = cli_signing_key("send", config, keypath, &key)) != 0)
			goto out;
		rc = MW_EXIT_USAGE;
		if (prepare_envelopes(&s, key, program, plen, limits, &args, ttl_ms) != 0)
			goto out;
	}
	rc = run_job(&s, envelope_path != NULL, program, plen, timeout_ms);
out:
	for (size_t i = 0; i < s.nt; i++)
		free(s.t[i].envelope);
	free(s.t);
	mw_fleet_targets_free(&list);
	free(program);
	free(keypath);
	mw_ssh_signer_free(key);
	mw_omemo_account_free(&s.acct);
	mw_job_args_free(&args);
	return rc;
}
