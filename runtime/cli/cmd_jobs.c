/*
 * cmd_jobs.c: `moonwire results JOB` and `moonwire jobs`, the operator's
 * look back at jobs sent earlier (spec/cli.md).
 *
 * `results` connects like `send` does, so whatever the server kept for the
 * account while no moonwire ran (results that came back after `send`
 * stopped waiting, or after it was killed) is decrypted into the job table
 * first; then it prints the summary from the table.  `jobs` only reads the
 * table: no network, so it is quick and works offline.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/agent/agent.h"
#include "runtime/fleet/fleet.h"

#include "cli.h"

#define JOBS_DEFAULT_LIMIT 20
#define JOBS_MAX_LIMIT 100000

static void
results_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire results -c CONFIG [--json] [--wait DURATION] JOB\n"
	    "\n"
	    "Connects, collects the results the server kept for this account, and\n"
	    "prints the summary of job JOB (the id `moonwire send` printed): one line\n"
	    "per target and the totals, late results included.\n"
	    "\n"
	    "  -c CONFIG        the operator's account file\n"
	    "  --wait DURATION  then wait up to DURATION for targets still out (default 0)\n"
	    "  --json           one JSON object per target, then a summary object\n"
	    "\n"
	    "exit status: as `moonwire send` for the job (0 all ok; 6 some did not\n"
	    "return); 2 usage or no such job.\n");
}

static void
jobs_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire jobs -c CONFIG [--json] [--limit N]\n"
	    "\n"
	    "Lists the newest jobs of the account's job table with their counts (no\n"
	    "network access: `moonwire results` collects late results).  Jobs older\n"
	    "than `job_retention_days` (account file, default 30) are removed.\n"
	    "\n"
	    "  -c CONFIG    the operator's account file\n"
	    "  --limit N    at most N jobs (default 20)\n"
	    "  --json       one JSON object per job\n"
	    "\n"
	    "exit status: 0, 1 the database cannot be read, 2 usage.\n");
}

bool
cli_job_id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MW_JOB_ID_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-_.") == n;
}

int
mw_cmd_results(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_WAIT };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "wait", required_argument, NULL, OPT_WAIT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mw_omemo_account acct;
	struct mw_fleet f;
	struct mw_fleet_job_info info;
	const char *config = NULL;
	uint64_t wait_ms = 0;
	char err[512];
	bool json = false;
	int ch, rc = MW_EXIT_USAGE, found;

	memset(&acct, 0, sizeof(acct));
	memset(&f, 0, sizeof(f));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case OPT_JSON: json = true; break;
		case OPT_WAIT:
			if (mw_parse_duration_ms(optarg, &wait_ms) != 0) {
				fprintf(stderr, "moonwire results: --wait: a duration\n");
				return MW_EXIT_USAGE;
			}
			break;
		case 'h': results_usage(stdout); return MW_EXIT_OK;
		default: results_usage(stderr); return MW_EXIT_USAGE;
		}
	}
	if (config == NULL || optind != argc - 1) {
		results_usage(stderr);
		return MW_EXIT_USAGE;
	}
	if (!cli_job_id_ok(argv[optind])) {
		fprintf(stderr, "moonwire results: %s: not a job id\n", argv[optind]);
		return MW_EXIT_USAGE;
	}
	if (mw_omemo_account_load_err(&acct, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire results: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (acct.password == NULL) {
		fprintf(stderr, "moonwire results: %s: no password or password_file\n", config);
		goto out;
	}
	f.json = json;
	if (mw_fleet_open(&f, "results", config, &acct) != 0) {
		rc = MW_EXIT_UNAVAILABLE;
		goto out;
	}
	snprintf(f.job_id, sizeof(f.job_id), "%s", argv[optind]);
	if ((found = mw_jobtable_job(f.db, f.job_id, &info)) <= 0) {
		if (found == 0)
			fprintf(stderr, "moonwire results: no job %s in %s (`moonwire jobs -c "
			    "%s` lists them; jobs older than job_retention_days are removed)\n",
			    f.job_id, acct.db, config);
		else
			fprintf(stderr, "moonwire results: %s: %s\n", acct.db,
			    sqlite3_errmsg(f.db));
		rc = found == 0 ? MW_EXIT_USAGE : MW_EXIT_UNAVAILABLE;
		goto out;
	}
	rc = MW_EXIT_UNAVAILABLE;
	if (mw_fleet_load(&f) != 0)
		goto out;
	if (f.remaining > 0) {
		enum mw_fleet_stop why;

		why = mw_fleet_connect(&f) != 0 ? MW_FLEET_CONN_FAILED :
		    mw_fleet_wait(&f, wait_ms, true);
		if (why == MW_FLEET_CONN_FAILED || why == MW_FLEET_TIMEOUT)
			fprintf(stderr, "moonwire results: could not collect what the server "
			    "kept; the summary shows the job table as it is\n");
	}
	mw_fleet_summary_print(stdout, f.job_id, f.rows, f.nt, json, true);
	rc = mw_fleet_exit(f.rows, f.nt);
out:
	mw_fleet_close(&f);
	mw_omemo_account_free(&acct);
	return rc;
}

static void
print_job(const struct mw_fleet_job_info *j, bool json)
{
	time_t t = (time_t)(j->created_ms / 1000);
	struct tm tm;
	char when[32] = "?";

	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (json) {
		cJSON *o = cJSON_CreateObject();
		char *s = NULL;

		if (o != NULL && cJSON_AddStringToObject(o, "job_id", j->job_id) != NULL &&
		    cJSON_AddStringToObject(o, "created", when) != NULL &&
		    cJSON_AddNumberToObject(o, "targeted", (double)j->targeted) != NULL &&
		    cJSON_AddNumberToObject(o, "ok", (double)j->ok) != NULL &&
		    cJSON_AddNumberToObject(o, "failed", (double)j->failed) != NULL &&
		    cJSON_AddNumberToObject(o, "refused", (double)j->refused) != NULL &&
		    cJSON_AddNumberToObject(o, "did_not_return", (double)j->pending) != NULL)
			s = cJSON_PrintUnformatted(o);
		if (s != NULL)
			printf("%s\n", s);
		free(s);
		cJSON_Delete(o);
		return;
	}
	printf("%-32s  %s  %6zu  %6zu  %6zu  %7zu  %14zu\n", j->job_id, when, j->targeted,
	    j->ok, j->failed, j->refused, j->pending);
}

int
mw_cmd_jobs(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_LIMIT };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mw_omemo_account acct;
	struct mw_fleet_job_info *v = NULL;
	size_t n = 0;
	const char *config = NULL;
	sqlite3 *db = NULL;
	char err[512], *end;
	bool json = false;
	long limit = JOBS_DEFAULT_LIMIT;
	int ch, rc = MW_EXIT_USAGE, days;

	memset(&acct, 0, sizeof(acct));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case OPT_JSON: json = true; break;
		case OPT_LIMIT:
			limit = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || limit < 1 || limit > JOBS_MAX_LIMIT) {
				fprintf(stderr, "moonwire jobs: --limit: 1 to %d\n", JOBS_MAX_LIMIT);
				return MW_EXIT_USAGE;
			}
			break;
		case 'h': jobs_usage(stdout); return MW_EXIT_OK;
		default: jobs_usage(stderr); return MW_EXIT_USAGE;
		}
	}
	if (config == NULL || optind != argc) {
		jobs_usage(stderr);
		return MW_EXIT_USAGE;
	}
	if (mw_omemo_account_load_err(&acct, config, err, sizeof(err)) != 0 ||
	    (days = mw_fleet_retention_days(config, err, sizeof(err))) < 0) {
		fprintf(stderr, "moonwire jobs: %s\n", err);
		goto out;
	}
	rc = MW_EXIT_ERROR;
	if (acct.db == NULL) {
		fprintf(stderr, "moonwire jobs: %s: no `db` setting\n", config);
		goto out;
	}
	if (mw_omemo_account_private_db(acct.db, false, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire jobs: %s\n", err);
		goto out;
	}
	if (mw_omemo_db_open(acct.db, false, &db) != 0 || mw_jobtable_init(db) != 0) {
		fprintf(stderr, "moonwire jobs: %s: cannot open the job table\n", acct.db);
		goto out;
	}
	if (days > 0) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		if (mw_jobtable_prune(db, (int64_t)now.tv_sec * 1000 - (int64_t)days *
		    86400 * 1000) < 0)
			fprintf(stderr, "moonwire jobs: %s: pruning old jobs failed\n", acct.db);
	}
	if (mw_jobtable_list(db, (size_t)limit, &v, &n) != 0) {
		fprintf(stderr, "moonwire jobs: %s: %s\n", acct.db, sqlite3_errmsg(db));
		goto out;
	}
	if (!json && n > 0)
		printf("%-32s  %-20s  %6s  %6s  %6s  %7s  %14s\n", "JOB", "CREATED",
		    "TARGETS", "OK", "FAILED", "REFUSED", "DID NOT RETURN");
	for (size_t i = 0; i < n; i++)
		print_job(&v[i], json);
	fflush(stdout);
	rc = MW_EXIT_OK;
out:
	free(v);
	if (db != NULL) {
		mw_jobtable_close(db);
		sqlite3_close(db);
	}
	mw_omemo_account_free(&acct);
	return rc;
}
