/*
 * cmd_sign.c: `moonwire sign` (a program -> a signed job envelope) and
 * `moonwire verify` (an envelope -> ok or a typed refusal), the operator
 * side of spec/envelope.md; `sign --cancel` writes a signed cancellation.
 *
 * Why both: `sign` is how an operator turns a Lua file into a job with the
 * SSH key they already have (key file, ssh-agent, or ssh-keygen itself via
 * --prepare/--signature); `verify` runs the agent's own signature, signer,
 * audience and time checks locally, so a job can be checked before it is
 * sent and an allowed_signers file can be tested.
 *
 * Exit statuses: 0 ok, 1 refused (verify) or signing failed, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "omemo/mw_omemo.h"
#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "wire/mw_wire.h"

#define DEFAULT_TTL	300

/* Reads a whole file ("-" is stdin) of at most max bytes; NUL-terminated.
 * Returns 0, -1 on error (message printed), -2 when over max. */
static int
read_all(const char *cmd, const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	*out = NULL;
	*len = 0;
	if (f == NULL) {
		fprintf(stderr, "moonwire %s: %s: %s\n", cmd, path, strerror(errno));
		return -1;
	}
	struct mw_buf b;
	mw_buf_init(&b, max + 2);
	int rc = 0;
	/* Invariant: b.len <= max + 1; reading a byte past max means "over". */
	for (;;) {
		uint8_t *d;
		size_t want = max + 1 - b.len < 4096 ? max + 1 - b.len : 4096;
		if (want == 0) {
			rc = -2;
			break;
		}
		if (mw_buf_reserve(&b, want, &d) != 0) {
			rc = -1;
			fprintf(stderr, "moonwire %s: out of memory\n", cmd);
			break;
		}
		size_t n = fread(d, 1, want, f);
		b.len -= want - n;	/* reserve counted want bytes as written */
		if (n == 0)
			break;
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "moonwire %s: %s: read error\n", cmd, path);
		rc = -1;
	}
	if (f != stdin)
		fclose(f);
	if (rc == 0 && (mw_buf_avail(&b) > max || mw_buf_put_u8(&b, '\0') != 0))
		rc = -2;
	if (rc != 0) {
		mw_buf_free(&b);
		return rc;
	}
	*len = b.len - 1;
	*out = (char *)b.data;
	return 0;
}

static int
write_out(const char *cmd, const char *s, size_t n)
{
	if (fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0) {
		fprintf(stderr, "moonwire %s: cannot write the output: %s\n", cmd, strerror(errno));
		return MW_EXIT_ERROR;
	}
	return MW_EXIT_OK;
}

static void
sign_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire sign -k KEY --to JID [--ttl DURATION] [--job-id ID] [--limit K=V ...]\n"
	    "                     [--arg NAME=VALUE ...] FILE.lua\n"
	    "       moonwire sign --prepare --to JID [--ttl DURATION] [--job-id ID] [--limit K=V ...]\n"
	    "                     [--arg NAME=VALUE ...] FILE.lua\n"
	    "       moonwire sign --signature FILE.sig PREPARED\n"
	    "       moonwire sign -k KEY --cancel JOB_ID --to JID [--ttl DURATION]\n"
	    "\n"
	    "Writes a signed job envelope (spec/envelope.md) for the agent JID to stdout.\n"
	    "\n"
	    "  -k, --key KEY        unencrypted OpenSSH Ed25519 private key, or a .pub file whose\n"
	    "                       private half is in ssh-agent ($SSH_AUTH_SOCK)\n"
	    "  --to JID             the agent's bare JID (the envelope's audience)\n"
	    "  --ttl DURATION       validity from now: 30s, 5m, 2h, 1d (default 5m, at most 7d)\n"
	    "  --job-id ID          1..64 of [A-Za-z0-9._-] (default: 32 random hex digits)\n"
	    "  --limit K=V          lower a limit (as in the policy: instructions, memory, cpu, wall,\n"
	    "                       output, program, result, depth, calls, write_total); repeatable\n"
	    "  --arg NAME=VALUE     a signed argument the program reads as args.NAME; repeatable\n"
	    "  --prepare            print the unsigned part instead, for\n"
	    "                       `ssh-keygen -Y sign -n " MW_JOB_NAMESPACE " -f KEY FILE`\n"
	    "  --signature FILE.sig wrap the signature ssh-keygen made over PREPARED into the envelope\n"
	    "  --cancel JOB_ID      write a signed cancellation of that job instead (namespace\n"
	    "                       " MW_CANCEL_NAMESPACE "); sign it with the key that signed the job\n");
}

static int
sign_with_signature(const char *sigpath, const char *prepared)
{
	char *part = NULL, *sig = NULL, *env = NULL;
	size_t part_len, sig_len, env_len;
	uint8_t *blob = NULL;
	size_t blob_len;
	char err[512];
	struct mw_ssh_pubkey signer;
	int rc = MW_EXIT_USAGE, r;

	if ((r = read_all("sign", prepared, MW_ENVELOPE_MAX, &part, &part_len)) != 0) {
		if (r == -2)
			fprintf(stderr, "moonwire sign: %s: over %u bytes\n", prepared, MW_ENVELOPE_MAX);
		goto out;
	}
	if ((r = read_all("sign", sigpath, MW_SSHSIG_ARMOR_MAX * 8, &sig, &sig_len)) != 0) {
		if (r == -2)
			fprintf(stderr, "moonwire sign: %s: too large for an SSH signature\n", sigpath);
		goto out;
	}
	if (mw_sshsig_unarmor(sig, sig_len, &blob, &blob_len) != 0) {
		fprintf(stderr, "moonwire sign: %s: not an armored SSH signature\n", sigpath);
		goto out;
	}
	rc = MW_EXIT_ERROR;
	if ((r = mw_sshsig_verify(blob, blob_len, MW_JOB_NAMESPACE, (const uint8_t *)part,
	    part_len, &signer, err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire sign: %s does not sign %s in namespace " MW_JOB_NAMESPACE
		    ": %s: %s\n", sigpath, prepared, mw_refusal_name(r), err);
		goto out;
	}
	if ((r = mw_envelope_attach(part, part_len, sig, sig_len, &env, &env_len,
	    err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire sign: %s: %s: %s\n", prepared, mw_refusal_name(r), err);
		goto out;
	}
	rc = write_out("sign", env, env_len);
out:
	free(part);
	free(sig);
	free(blob);
	free(env);
	return rc;
}

/* `sign --cancel`: the signed cancellation of job_id for the agent to. */
static int
sign_cancel(const char *key, const char *to, const char *job_id, int64_t ttl)
{
	struct mw_ssh_signer *signer = NULL;
	char err[1024], *text = NULL;
	size_t len = 0;
	int rc = MW_EXIT_USAGE;

	if (mw_ssh_signer_load(key, &signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire sign: %s\n", err);
		goto out;
	}
	time_t now = time(NULL);
	if (mw_cancel_sign(signer, to, job_id, (int64_t)now, (int64_t)now + ttl, &text, &len,
	    err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire sign: --cancel: %s\n", err);
		rc = MW_EXIT_ERROR;
		goto out;
	}
	rc = write_out("sign", text, len);
out:
	mw_ssh_signer_free(signer);
	free(text);
	return rc;
}

static int sign_program(const char *key, const char *to, const char *job_id, bool prepare,
    int64_t ttl, const char *limits, const struct mw_job_args *args, const char *file);

int
mw_cmd_sign(int argc, char **argv)
{
	enum { OPT_TO = 256, OPT_TTL, OPT_JOBID, OPT_LIMIT, OPT_PREPARE, OPT_SIGNATURE, OPT_ARG,
		OPT_CANCEL };
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "to", required_argument, NULL, OPT_TO },
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "job-id", required_argument, NULL, OPT_JOBID },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "arg", required_argument, NULL, OPT_ARG },
		{ "prepare", no_argument, NULL, OPT_PREPARE },
		{ "signature", required_argument, NULL, OPT_SIGNATURE },
		{ "cancel", required_argument, NULL, OPT_CANCEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *to = NULL, *job_id = NULL, *sigpath = NULL, *cancel = NULL;
	bool prepare = false;
	int64_t ttl = DEFAULT_TTL;
	char limits[512] = "";
	struct mw_job_args args;
	char aerr[256];
	int c;

	memset(&args, 0, sizeof(args));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+k:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case OPT_ARG:
			if (mw_job_args_add_spec(&args, optarg, aerr, sizeof(aerr)) != 0) {
				fprintf(stderr, "moonwire sign: --arg: %s\n", aerr);
				mw_job_args_free(&args);
				return MW_EXIT_USAGE;
			}
			break;
		case OPT_TO: to = optarg; mw_omemo_jid_fold(optarg); break;
		case OPT_JOBID: job_id = optarg; break;
		case OPT_PREPARE: prepare = true; break;
		case OPT_SIGNATURE: sigpath = optarg; break;
		case OPT_CANCEL: cancel = optarg; break;
		case OPT_TTL: {
			uint64_t ms;
			if (mw_parse_duration_ms(optarg, &ms) != 0 || ms < 1000 ||
			    (ttl = (int64_t)(ms / 1000)) > MW_VALIDITY_MAX) {
				fprintf(stderr, "moonwire sign: --ttl '%s': a duration from 1s to 7d "
				    "(30s, 5m, 2h, 1d)\n", optarg);
				return MW_EXIT_USAGE;
			}
			break;
		}
		case OPT_LIMIT: {
			size_t l = strlen(limits);
			if (strchr(optarg, '=') == NULL || strchr(optarg, ' ') != NULL ||
			    (size_t)snprintf(limits + l, sizeof(limits) - l, "%s%s", l ? " " : "",
			    optarg) >= sizeof(limits) - l) {
				fprintf(stderr, "moonwire sign: --limit '%s': expected KEY=VALUE "
				    "(all limits together at most %zu bytes)\n", optarg, sizeof(limits) - 1);
				return MW_EXIT_USAGE;
			}
			break;
		}
		case 'h':
			sign_usage(stdout);
			return MW_EXIT_OK;
		default:
			fprintf(stderr, "moonwire sign: unknown or incomplete option '%s'\n",
			    argv[optind - 1]);
			sign_usage(stderr);
			return MW_EXIT_USAGE;
		}
	}
	if (cancel != NULL) {
		bool other = prepare || sigpath != NULL || job_id != NULL || limits[0] != '\0' ||
		    args.n > 0;
		mw_job_args_free(&args);
		if (other || optind != argc || key == NULL || to == NULL) {
			fprintf(stderr, "moonwire sign: --cancel takes -k KEY, --to JID and "
			    "optionally --ttl, and no file\n");
			sign_usage(stderr);
			return MW_EXIT_USAGE;
		}
		return sign_cancel(key, to, cancel, ttl);
	}
	if (optind != argc - 1) {
		fprintf(stderr, "moonwire sign: expected exactly one file\n");
		sign_usage(stderr);
		return MW_EXIT_USAGE;
	}
	const char *file = argv[optind];
	if (sigpath != NULL) {
		if (key != NULL || to != NULL || prepare || job_id != NULL || limits[0] != '\0' ||
		    args.n > 0) {
			mw_job_args_free(&args);
			fprintf(stderr, "moonwire sign: --signature takes only the signature and the "
			    "prepared file (its header is already fixed)\n");
			return MW_EXIT_USAGE;
		}
		return sign_with_signature(sigpath, file);
	}
	int result = sign_program(key, to, job_id, prepare, ttl, limits, &args, file);
	mw_job_args_free(&args);
	return result;
}

static int
sign_program(const char *key, const char *to, const char *job_id, bool prepare, int64_t ttl,
    const char *limits, const struct mw_job_args *args, const char *file)
{
	if (to == NULL || (!prepare && key == NULL) || (prepare && key != NULL)) {
		fprintf(stderr, "moonwire sign: %s\n", to == NULL ? "--to JID is required" :
		    prepare ? "--prepare signs nothing: drop -k" : "-k KEY is required (or --prepare)");
		sign_usage(stderr);
		return MW_EXIT_USAGE;
	}

	char *program = NULL, *part = NULL, *armored = NULL, *env = NULL;
	size_t program_len, part_len, armored_len, env_len;
	struct mw_ssh_signer *signer = NULL;
	char err[1024];
	int rc = MW_EXIT_USAGE, r;
	if ((r = read_all("sign", file, MW_ENVELOPE_MAX, &program, &program_len)) != 0) {
		if (r == -2)
			fprintf(stderr, "moonwire sign: %s: over %u bytes\n", file, MW_ENVELOPE_MAX);
		goto out;
	}
	/* Load the key before building, so a bad key fails before any output. */
	if (key != NULL && mw_ssh_signer_load(key, &signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire sign: %s\n", err);
		goto out;
	}
	time_t now = time(NULL);
	struct mw_envelope_fields f = { .audience = to, .job_id = job_id,
		.issued_at = (int64_t)now, .not_after = (int64_t)now + ttl,
		.limits_text = limits, .args = args };
	if ((r = mw_envelope_build(&f, (const uint8_t *)program, program_len, &part, &part_len,
	    NULL, err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire sign: %s: %s\n", file, err);
		goto out;
	}
	if (prepare) {
		rc = write_out("sign", part, part_len);
		goto out;
	}
	rc = MW_EXIT_ERROR;
	if (mw_sshsig_sign(signer, MW_JOB_NAMESPACE, (const uint8_t *)part, part_len,
	    &armored, &armored_len, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire sign: %s\n", err);
		goto out;
	}
	if ((r = mw_envelope_attach(part, part_len, armored, armored_len, &env, &env_len,
	    err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire sign: %s\n", err);
		goto out;
	}
	rc = write_out("sign", env, env_len);
out:
	mw_ssh_signer_free(signer);
	free(program);
	free(part);
	free(armored);
	free(env);
	return rc;
}

static void
verify_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire verify -f ALLOWED_SIGNERS [--audience JID] [--at TIME] [ENVELOPE|-]\n"
	    "\n"
	    "Checks a job envelope as the agent does: signature (namespace " MW_JOB_NAMESPACE "),\n"
	    "signer in ALLOWED_SIGNERS (ssh-keygen format), audience if given, and the time\n"
	    "window at TIME (YYYY-MM-DDTHH:MM:SSZ, default now; %ds of clock skew on issued-at;\n"
	    "at most %d days of validity).\n"
	    "\n"
	    "exit status: 0 ok, 1 refused (\"refused: CODE: reason\" on stderr), 2 usage\n",
	    MW_CLOCK_SKEW, MW_VALIDITY_MAX / 86400);
}

static int
refused(int code, const char *why)
{
	fprintf(stderr, "refused: %s: %s\n", mw_refusal_name(code), why);
	return MW_EXIT_ERROR;
}

int
mw_cmd_verify(int argc, char **argv)
{
	enum { OPT_AUDIENCE = 256, OPT_AT };
	static const struct option opts[] = {
		{ "allowed-signers", required_argument, NULL, 'f' },
		{ "audience", required_argument, NULL, OPT_AUDIENCE },
		{ "at", required_argument, NULL, OPT_AT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *asf = NULL, *audience = NULL, *path = "-";
	int64_t now = (int64_t)time(NULL);
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': asf = optarg; break;
		case OPT_AUDIENCE: audience = optarg; break;
		case OPT_AT:
			if (mw_time_parse(optarg, &now) != 0) {
				fprintf(stderr, "moonwire verify: --at '%s': expected YYYY-MM-DDTHH:MM:SSZ\n",
				    optarg);
				return MW_EXIT_USAGE;
			}
			break;
		case 'h':
			verify_usage(stdout);
			return MW_EXIT_OK;
		default:
			fprintf(stderr, "moonwire verify: unknown or incomplete option '%s'\n",
			    argv[optind - 1]);
			verify_usage(stderr);
			return MW_EXIT_USAGE;
		}
	}
	if (asf == NULL || optind < argc - 1) {
		fprintf(stderr, "moonwire verify: %s\n", asf == NULL ?
		    "-f ALLOWED_SIGNERS is required" : "at most one envelope file");
		verify_usage(stderr);
		return MW_EXIT_USAGE;
	}
	if (optind == argc - 1)
		path = argv[optind];

	struct mw_allowed_signers *as = NULL;
	struct mw_envelope e;
	struct mw_ssh_pubkey signer;
	const char *principals = NULL;
	char err[1024], *text = NULL;
	size_t len;
	int rc = MW_EXIT_USAGE, r;
	memset(&e, 0, sizeof(e));
	if (mw_allowed_signers_load(asf, &as, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire verify: %s\n", err);
		goto out;
	}
	if ((r = read_all("verify", path, MW_ENVELOPE_MAX, &text, &len)) != 0) {
		if (r == -2) {
			char why[64];
			snprintf(why, sizeof(why), "envelope over %u bytes", MW_ENVELOPE_MAX);
			rc = refused(MW_REFUSE_OVERSIZED, why);
		}
		goto out;
	}
	/* The agent's order: parse, signature, signer, audience, time. */
	if ((r = mw_envelope_parse(text, len, &e, err, sizeof(err))) != 0 ||
	    (r = mw_envelope_verify(&e, as, now, &signer, &principals, err, sizeof(err))) != 0) {
		rc = refused(r, err);
		goto out;
	}
	if (audience != NULL && !mw_omemo_jid_equal(audience, e.audience)) {
		snprintf(err, sizeof(err), "the job is for %.200s, not %.200s", e.audience, audience);
		rc = refused(MW_REFUSE_WRONG_AUDIENCE, err);
		goto out;
	}
	if ((r = mw_envelope_check_time(&e, now, MW_CLOCK_SKEW, MW_VALIDITY_MAX, err,
	    sizeof(err))) != 0) {
		rc = refused(r, err);
		goto out;
	}
	char ia[21], na[21], hex[65];
	mw_time_format(e.issued_at, ia);
	mw_time_format(e.not_after, na);
	for (size_t i = 0; i < sizeof(e.sha256); i++)
		snprintf(hex + 2 * i, 3, "%02x", e.sha256[i]);
	printf("ok\nsigner: %s\nprincipals: %s\naudience: %s\njob-id: %s\nissued-at: %s\n"
	    "not-after: %s\n", signer.fp, principals, e.audience, e.job_id, ia, na);
	if (e.has_limits)
		printf("limits: %s\n", e.limits_text);
	for (uint32_t i = 0; i < e.args.n; i++)
		printf("arg: %s=%s\n", e.args.name[i], e.args.value[i]);
	printf("program-length: %zu\nsha256: %s\n", e.program_len, hex);
	rc = fflush(stdout) == 0 ? MW_EXIT_OK : MW_EXIT_ERROR;
out:
	mw_envelope_free(&e);
	mw_allowed_signers_free(as);
	free(text);
	return rc;
}
