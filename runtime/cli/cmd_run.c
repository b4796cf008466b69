/*
 * cmd_run.c: `moonwire run` -- try a program locally through exactly the
 * supervisor/worker path the agent uses -- and `moonwire __supervisor`, the
 * entry point the sandbox client execs.
 *
 * Everything the user can get wrong (flags, file, policy) is refused before
 * a supervisor exists, with a message and exit status 2: nothing runs.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"

static void
run_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire run [options] FILE.lua\n"
	    "\n"
	    "Runs FILE.lua in the sandbox exactly as the agent would, and prints the result.\n"
	    "\n"
	    "grants:\n"
	    "  --policy FILE        policy file (spec/policy.md)\n"
	    "  --profile NAME       profile of that policy to run with (default: \"default\" if present)\n"
	    "  --read DIR           allow fs.read/list/stat/tail below DIR\n"
	    "  --write DIR          allow fs.write below DIR\n"
	    "  --exec NAME          allow exec.run of command NAME (defined in the policy)\n"
	    "  --sys                allow sys.info and sys.disk\n"
	    "  --kv                 allow the kv store (scope: --kv-scope, default \"local\")\n"
	    "  --sleep DURATION     allow sleep() up to DURATION\n"
	    "limits (also `limits` in a policy):\n"
	    "  --instructions N --memory SIZE --cpu DURATION --wall DURATION --output SIZE\n"
	    "  --program SIZE --result SIZE --depth N --calls N --write-total SIZE\n"
	    "other:\n"
	    "  --json               print the result as one line of JSON (spec/result.md)\n"
	    "  --state DIR          where the kv store lives (default: $XDG_STATE_HOME/moonwire\n"
	    "                       or ~/.local/state/moonwire)\n"
	    "  --kv-scope NAME      kv scope for this run\n"
	    "  --arg NAME=VALUE     an argument the program reads as args.NAME (repeatable)\n"
	    "  --command-uids FIRST-LAST\n"
	    "                       commands run as a uid of that unused range, not nobody\n"
	    "                       (agent.conf command_uids)\n"
	    "\n"
	    "exit status: 0 ok, 1 error, 2 usage, 3 syntax error, 4 limit, 5 sandbox, 6 unavailable\n");
}

static int
read_program(const char *path, char **out, size_t *len, uint32_t max)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		fprintf(stderr, "moonwire run: %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "moonwire run: %s: not a regular file\n", path);
		fclose(f);
		return -1;
	}
	/* Read up to the hard maximum: the sandbox itself refuses what is over
	 * the job's own limit, as it would for the agent. */
	size_t cap = (size_t)max + 1;
	char *buf = malloc(cap + 1);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	size_t n = fread(buf, 1, cap, f);
	if (ferror(f)) {
		fprintf(stderr, "moonwire run: %s: read error\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (n > max) {
		fprintf(stderr, "moonwire run: %s: larger than the %u-byte maximum for any program\n",
		    path, max);
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static char *
default_state_dir(void)
{
	const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char path[PATH_MAX];
	if (x != NULL && x[0] == '/')
		snprintf(path, sizeof(path), "%s/moonwire", x);
	else if (home != NULL && home[0] == '/')
		snprintf(path, sizeof(path), "%s/.local/state/moonwire", home);
	else
		return NULL;
	return strdup(path);
}

static int
mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -1;
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return (mkdir(tmp, 0700) != 0 && errno != EEXIST) ? -1 : 0;
}

enum {
	OPT_POLICY = 256, OPT_PROFILE, OPT_READ, OPT_WRITE, OPT_EXEC, OPT_SYS, OPT_KV,
	OPT_SLEEP, OPT_JSON, OPT_STATE, OPT_KVSCOPE, OPT_LIMIT, OPT_ARG, OPT_CMDUIDS,
};

int
mw_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, OPT_POLICY },
		{ "profile", required_argument, NULL, OPT_PROFILE },
		{ "read", required_argument, NULL, OPT_READ },
		{ "write", required_argument, NULL, OPT_WRITE },
		{ "exec", required_argument, NULL, OPT_EXEC },
		{ "sys", no_argument, NULL, OPT_SYS },
		{ "kv", no_argument, NULL, OPT_KV },
		{ "sleep", required_argument, NULL, OPT_SLEEP },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "kv-scope", required_argument, NULL, OPT_KVSCOPE },
		{ "arg", required_argument, NULL, OPT_ARG },
		{ "command-uids", required_argument, NULL, OPT_CMDUIDS },
		{ "instructions", required_argument, NULL, OPT_LIMIT },
		{ "memory", required_argument, NULL, OPT_LIMIT },
		{ "cpu", required_argument, NULL, OPT_LIMIT },
		{ "wall", required_argument, NULL, OPT_LIMIT },
		{ "output", required_argument, NULL, OPT_LIMIT },
		{ "program", required_argument, NULL, OPT_LIMIT },
		{ "result", required_argument, NULL, OPT_LIMIT },
		{ "depth", required_argument, NULL, OPT_LIMIT },
		{ "calls", required_argument, NULL, OPT_LIMIT },
		{ "write-total", required_argument, NULL, OPT_LIMIT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *policy_path = NULL, *profile_name = NULL, *state = NULL;
	const char *kv_scope = "local";
	bool json = false, want_sys = false, want_kv = false;
	uint64_t sleep_ms = 0;
	uint32_t cmd_uid_first = 0, cmd_uid_count = 0;
	char *reads[64], *writes[64], *execs[64], *limit_k[32], *limit_v[32];
	int nreads = 0, nwrites = 0, nexecs = 0, nlimits = 0;
	int c, idx;
	char err[512];
	struct mw_job_args args;

	memset(&args, 0, sizeof(args));

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		switch (c) {
		case OPT_POLICY: policy_path = optarg; break;
		case OPT_PROFILE: profile_name = optarg; break;
		case OPT_READ: if (nreads < 64) reads[nreads++] = optarg; break;
		case OPT_WRITE: if (nwrites < 64) writes[nwrites++] = optarg; break;
		case OPT_EXEC: if (nexecs < 64) execs[nexecs++] = optarg; break;
		case OPT_SYS: want_sys = true; break;
		case OPT_KV: want_kv = true; break;
		case OPT_SLEEP:
			if (mw_parse_duration_ms(optarg, &sleep_ms) != 0 || sleep_ms > 3600000) {
				fprintf(stderr, "moonwire run: bad --sleep '%s'\n", optarg);
				return MW_EXIT_USAGE;
			}
			break;
		case OPT_JSON: json = true; break;
		case OPT_CMDUIDS: {
			char why[256] = "not FIRST-LAST (two uids)";

			if (mw_sandbox_command_uids_parse(optarg, &cmd_uid_first,
			    &cmd_uid_count) != 0 ||
			    mw_sandbox_command_uids_check(cmd_uid_first, cmd_uid_count, 1,
			    true, why, sizeof(why)) != 0) {
				fprintf(stderr, "moonwire run: --command-uids %s: %s\n", optarg, why);
				mw_job_args_free(&args);
				return MW_EXIT_USAGE;
			}
			break;
		}
		case OPT_STATE: state = optarg; break;
		case OPT_KVSCOPE: kv_scope = optarg; break;
		case OPT_ARG:
			if (mw_job_args_add_spec(&args, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire run: --arg: %s\n", err);
				mw_job_args_free(&args);
				return MW_EXIT_USAGE;
			}
			break;
		case OPT_LIMIT:
			if (nlimits < 32) {
				limit_k[nlimits] = (char *)(uintptr_t)opts[idx].name;
				limit_v[nlimits++] = optarg;
			}
			break;
		case 'h':
			run_usage(stdout);
			return MW_EXIT_OK;
		default:
			if (optopt != 0 && optopt < 256)
				fprintf(stderr, "moonwire run: unknown option '-%c'\n", optopt);
			else
				fprintf(stderr, "moonwire run: unknown or incomplete option '%s'\n",
				    argv[optind - 1]);
			run_usage(stderr);
			return MW_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "moonwire run: expected exactly one program file\n");
		run_usage(stderr);
		return MW_EXIT_USAGE;
	}
	const char *file = argv[optind];

	struct mw_policy policy;
	memset(&policy, 0, sizeof(policy));
	mw_limits_default(&policy.limits);
	if (policy_path != NULL && mw_policy_load(policy_path, &policy, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire run: policy: %s\n", err);
		return MW_EXIT_USAGE;
	}
	struct mw_grants grants;
	struct mw_limits limits = policy.limits;
	memset(&grants, 0, sizeof(grants));
	int rc = MW_EXIT_USAGE;
	char *program = NULL, *statedir = NULL;
	size_t program_len = 0;
	struct mw_sandbox *sb = NULL;

	const struct mw_profile *prof = NULL;
	if (profile_name != NULL) {
		if ((prof = mw_policy_profile(&policy, profile_name)) == NULL) {
			fprintf(stderr, "moonwire run: policy has no profile '%s'\n", profile_name);
			goto out;
		}
	} else {
		prof = mw_policy_profile(&policy, "default");
	}
	if (prof != NULL) {
		if (mw_grants_copy(&grants, &prof->grants) != 0)
			goto out;
		limits = prof->limits;
		for (uint32_t i = 0; i < args.n; i++)
			if (!mw_profile_accepts_arg(prof, args.name[i])) {
				fprintf(stderr, "moonwire run: --arg %s: not allowed by profile %s\n",
				    args.name[i], prof->name);
				goto out;
			}
	}
	for (int i = 0; i < nreads; i++)
		if (mw_grant_add_path(&grants, false, reads[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire run: --read: %s\n", err);
			goto out;
		}
	for (int i = 0; i < nwrites; i++)
		if (mw_grant_add_path(&grants, true, writes[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire run: --write: %s\n", err);
			goto out;
		}
	for (int i = 0; i < nexecs; i++) {
		const struct mw_command_grant *cg = mw_policy_command(&policy, execs[i]);
		if (cg == NULL) {
			fprintf(stderr, "moonwire run: --exec %s: no such command in the policy%s\n",
			    execs[i], policy_path ? "" : " (give --policy)");
			goto out;
		}
		if (mw_grant_add_command(&grants, cg) != 0)
			goto out;
	}
	for (int i = 0; i < nlimits; i++) {
		const char *key = strcmp(limit_k[i], "write-total") == 0 ? "write_total" : limit_k[i];
		if (mw_limit_set(&limits, key, limit_v[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire run: --%s: %s\n", limit_k[i], err);
			goto out;
		}
	}
	grants.sys |= want_sys;
	if (sleep_ms > 0)
		grants.sleep_max_ms = (uint32_t)sleep_ms;
	if (want_kv || grants.kv) {
		grants.kv = true;
		free(grants.kv_scope);
		if ((grants.kv_scope = strdup(kv_scope)) == NULL)
			goto out;
		statedir = state ? strdup(state) : default_state_dir();
		if (statedir == NULL || mkdir_p(statedir) != 0) {
			fprintf(stderr, "moonwire run: cannot create state directory %s\n",
			    statedir ? statedir : "(none: set --state)");
			goto out;
		}
	}

	struct mw_limits max;
	mw_limits_maximum(&max);
	if (read_program(file, &program, &program_len, max.program_bytes) != 0)
		goto out;
	if (program_len == 0 || strspn(program, " \t\r\n") == program_len) {
		fprintf(stderr, "moonwire run: %s: empty program\n", file);
		goto out;
	}

	struct mw_sandbox_config cfg = { .parallel = 1, .pool = 1, .queue_max = 1,
		.state_dir = statedir, .command_uid_first = cmd_uid_first,
		.command_uid_count = cmd_uid_count };
	if (mw_sandbox_start(&cfg, &sb) != 0) {
		fprintf(stderr, "moonwire run: cannot start the sandbox supervisor\n");
		rc = MW_EXIT_UNAVAILABLE;
		goto out;
	}
	char chunk[PATH_MAX + 2], base[PATH_MAX];
	snprintf(base, sizeof(base), "%s", file);
	snprintf(chunk, sizeof(chunk), "=%s", basename(base));
	struct mw_job_arg argv_view[MW_ARGS_MAX];
	mw_job_args_view(&args, argv_view);
	struct mw_job job = { .id = "local", .chunkname = chunk, .program = program,
		.program_len = program_len, .limits = limits, .grants = &grants,
		.args = argv_view, .n_args = args.n };
	struct mw_result res;
	if (mw_sandbox_run(sb, &job, &res) != 0) {
		fprintf(stderr, "moonwire run: the sandbox supervisor failed\n");
		rc = MW_EXIT_UNAVAILABLE;
		goto out;
	}
	if (json) {
		char *s = mw_result_to_json(&res, false);
		if (s != NULL)
			printf("%s\n", s);
		free(s);
	} else {
		mw_result_print_text(stdout, &res);
	}
	rc = mw_exit_for_status(res.status);
	mw_result_free(&res);
out:
	mw_sandbox_stop(sb);
	free(program);
	free(statedir);
	mw_grants_free(&grants);
	mw_policy_free(&policy);
	mw_job_args_free(&args);
	return rc;
}

int
mw_cmd_supervisor(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[1], "3") != 0) {
		fprintf(stderr, "moonwire: __supervisor is started by moonwire itself\n");
		return MW_EXIT_USAGE;
	}
	return mw_supervisor_main(3);
}
