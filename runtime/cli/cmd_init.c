/*
 * cmd_init.c: `moonwire init agent|operator`, the guided setup.
 *
 * Why this exists: setting up an agent by hand means writing three files
 * (configuration, policy, allowed_signers) and a password file with the
 * right modes, creating the OMEMO identity and copying fingerprints
 * between machines; every step is a chance for a typo that only shows at
 * the first job.  `init` writes those files from a few flags, checks them
 * exactly as `moonwire agent --check` does (the same functions, in
 * process), creates the identity as `moonwire fingerprint` does, and
 * prints the fingerprint and the `moonwire trust` line for the other side.
 *
 * All or nothing: every file is first written into a private staging
 * directory next to its destination, the staged configuration is checked,
 * the identity is created, and only then are the files renamed into
 * place.  On any error everything this run created (staged files,
 * directories, a new identity database) is removed and files that existed
 * are left as they were; an existing file is replaced only with --force,
 * and an existing identity database is never replaced (it is reused when
 * it belongs to the same JID).  No network access.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "omemo/mw_omemo.h"
#include "runtime/agent/agent.h"
#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"

#include "cli.h"

#define AGENT_PROFILE	"status"	/* the skeleton policy's profile */

static const char *const init_usage_text =
    "usage: moonwire init agent --jid JID --allowed-signer FILE.pub --principal NAME\n"
    "           [--operator JID] [--dir DIR] [--state-dir DIR] [--user USER]\n"
    "           [--password-file FILE] [--host HOST] [--port PORT] [--ca-file FILE]\n"
    "           [--force]\n"
    "       moonwire init operator --jid JID --signing-key KEY [--file PATH]\n"
    "           [--password-file FILE] [--host HOST] [--port PORT] [--ca-file FILE]\n"
    "           [--force]\n"
    "\n"
    "agent:    writes DIR/agent.conf, DIR/policy (profile `" AGENT_PROFILE "`: sys only;\n"
    "          `allow NAME JID " AGENT_PROFILE "` with --operator), DIR/allowed_signers (FILE.pub,\n"
    "          ssh-ed25519 only, for principal NAME) and DIR/password; DIR defaults\n"
    "          to /etc/moonwire, --state-dir (identity.db, kv store) to\n"
    "          /var/lib/moonwire.  --user (as root): the agent's service user owns\n"
    "          the password, the state directory and the identity; the other\n"
    "          files stay root's, readable by the user's group.\n"
    "operator: writes PATH (default ~/.config/moonwire/LOCALPART.conf) and its\n"
    "          password file STEM.password; the identity is STEM.db.\n"
    "Both check what they wrote with the agent's own checks (those of its\n"
    "check mode), create the OMEMO identity and print its fingerprint and\n"
    "the `moonwire trust` line for the other side.  The password is read\n"
    "from --password-file (`-`: stdin), else from the terminal, else from\n"
    "stdin.  Existing files are replaced only with --force; nothing is\n"
    "written when anything fails.  Exit status: 0 written, 2 bad input\n"
    "(nothing written), 1 a file or the identity could not be written.\n";
/* SIGINT/SIGTERM/SIGHUP/SIGQUIT while init runs: caught, so that the run
 * stops at the next step and removes what it created (and the terminal
 * gets its echo back) instead of dying half way. */

static void
on_interrupt(int sig)
{
	init_interrupted = sig;
}

/* ---- the agent's checks (those of `moonwire agent --check`) ---- */

static int
check_agent_config(struct init_run *r, const char *conf, size_t *n_profiles,
    size_t *n_allows)
{
	struct mw_agent_config cfg;
	struct mw_policy pol;
	struct mw_allowed_signers *as = NULL;
	struct mw_protected_path prot[MW_PROTECTED_MAX];
	size_t n_prot = 0;
	char err[1400];
	int rc = -1;

	memset(&pol, 0, sizeof(pol));
	if (mw_agent_config_load(conf, &cfg, err, sizeof(err)) != 0) {
		init_print_unstaged(r, err);
		return -1;
	}
	if (mw_policy_load(cfg.policy, &pol, err, sizeof(err)) != 0 ||
	    mw_allowed_signers_load(cfg.allowed_signers, &as, err, sizeof(err)) != 0 ||
	    mw_agent_protected_paths(conf, &cfg, prot, &n_prot, err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&pol, prot, n_prot, err, sizeof(err)) != 0) {
		init_print_unstaged(r, err);
		goto out;
	}
	*n_profiles = pol.n_profiles;
	*n_allows = pol.n_allows;
	rc = 0;
out:
	mw_protected_paths_free(prot, n_prot);
	if (as != NULL)
		mw_allowed_signers_free(as);
	mw_policy_free(&pol);
	mw_agent_config_free(&cfg);
	return rc;
}

/* ---- moonwire init agent ---- */

enum {
	O_JID = 256, O_SIGNER, O_PRINCIPAL, O_OPERATOR, O_DIR, O_STATE, O_USER,
	O_PWFILE, O_HOST, O_PORT, O_CA, O_FORCE, O_SIGNKEY, O_FILE, O_HELP
};

struct init_opts {
	const char *jid, *signer, *principal, *operator_jid, *dir, *state_dir;
	const char *user, *password_file, *host, *port, *ca_file, *signing_key;
	const char *file;
	bool force;
};

static int
parse_opts(int argc, char **argv, bool agent, struct init_opts *o)
{
	static const struct option agent_lo[] = {
		{ "jid", required_argument, NULL, O_JID },
		{ "allowed-signer", required_argument, NULL, O_SIGNER },
		{ "principal", required_argument, NULL, O_PRINCIPAL },
		{ "operator", required_argument, NULL, O_OPERATOR },
		{ "dir", required_argument, NULL, O_DIR },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "user", required_argument, NULL, O_USER },
		{ "password-file", required_argument, NULL, O_PWFILE },
		{ "host", required_argument, NULL, O_HOST },
		{ "port", required_argument, NULL, O_PORT },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "force", no_argument, NULL, O_FORCE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option operator_lo[] = {
		{ "jid", required_argument, NULL, O_JID },
		{ "signing-key", required_argument, NULL, O_SIGNKEY },
		{ "file", required_argument, NULL, O_FILE },
		{ "password-file", required_argument, NULL, O_PWFILE },
		{ "host", required_argument, NULL, O_HOST },
		{ "port", required_argument, NULL, O_PORT },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "force", no_argument, NULL, O_FORCE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "+", agent ? agent_lo : operator_lo,
	    NULL)) != -1) {
		switch (ch) {
		case O_JID: o->jid = optarg; mw_omemo_jid_fold(optarg); break;
		case O_SIGNER: o->signer = optarg; break;
		case O_PRINCIPAL: o->principal = optarg; break;
		case O_OPERATOR: o->operator_jid = optarg; mw_omemo_jid_fold(optarg); break;
		case O_DIR: o->dir = optarg; break;
		case O_STATE: o->state_dir = optarg; break;
		case O_USER: o->user = optarg; break;
		case O_PWFILE: o->password_file = optarg; break;
		case O_HOST: o->host = optarg; break;
		case O_PORT: o->port = optarg; break;
		case O_CA: o->ca_file = optarg; break;
		case O_FORCE: o->force = true; break;
		case O_SIGNKEY: o->signing_key = optarg; break;
		case O_FILE: o->file = optarg; break;
		case O_HELP: return 1;
		default: return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "moonwire init %s: unexpected argument '%s'\n",
		    agent ? "agent" : "operator", argv[optind]);
		return -1;
	}
	return 0;
}

/* Checks shared by both: JID, host, port, CA file (made absolute). */
static int
check_account_opts(struct init_run *r, const struct init_opts *o, char **ca_abs)
{
	char why[600];

	*ca_abs = NULL;
	if (o->jid == NULL)
		return init_fail(r, "--jid JID is required");
	if (!init_jid_ok(o->jid))
		return init_fail(r, "--jid %s: not a bare JID (user@domain, no /resource)",
		    o->jid);
	if (o->host != NULL && !init_host_ok(o->host))
		return init_fail(r, "--host %s: not a host name or address", o->host);
	if (o->port != NULL && !init_port_ok(o->port))
		return init_fail(r, "--port %s: not a port number (1-65535)", o->port);
	if (o->ca_file != NULL) {
		if ((*ca_abs = init_abs_dir(r, "--ca-file", o->ca_file)) == NULL)
			return -1;
		if (mw_omemo_account_check_ca_file(*ca_abs, why, sizeof(why)) != 0) {
			free(*ca_abs);
			*ca_abs = NULL;
			return init_fail(r, "--ca-file: %s", why);
		}
	}
	return 0;
}

/* The account lines both files share after jid and password_file. */
static int
server_lines(const struct init_opts *o, const char *ca_abs, char **out)
{
	if (asprintf(out, "%s%s%s%s%s%s%s%s%s",
	    o->host != NULL ? "host = " : "", o->host != NULL ? o->host : "",
	    o->host != NULL ? "\n" : "",
	    o->port != NULL ? "port = " : "", o->port != NULL ? o->port : "",
	    o->port != NULL ? "\n" : "",
	    ca_abs != NULL ? "ca_file = " : "", ca_abs != NULL ? ca_abs : "",
	    ca_abs != NULL ? "\n" : "") < 0) {
		*out = NULL;
		return -1;
	}
	return 0;
}

static int
init_agent(int argc, char **argv)
{
	struct init_run r = { .cmd = "agent" };
	struct init_opts o;
	struct passwd *pw;
	char pwbuf[PASSWORD_MAX], fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
	char *state = NULL, *ca_abs = NULL, *publine = NULL, *server = NULL;
	char *db = NULL, *staged_conf = NULL;
	const char *conf_final;
	uid_t fuid = (uid_t)-1, puid = (uid_t)-1;
	gid_t fgid = (gid_t)-1;
	uint32_t device = 0;
	size_t n_profiles = 0, n_allows = 0;
	int rc = MW_EXIT_USAGE, p;

	pwbuf[0] = '\0';
	if ((p = parse_opts(argc, argv, true, &o)) != 0) {
		fputs(init_usage_text, p > 0 ? stdout : stderr);
		return p > 0 ? MW_EXIT_OK : MW_EXIT_USAGE;
	}
	r.force = o.force;
	if (check_account_opts(&r, &o, &ca_abs) != 0)
		goto out;
	if (o.signer == NULL || o.principal == NULL) {
		init_fail(&r, "--allowed-signer FILE.pub and --principal NAME are required");
		goto out;
	}
	if (!init_principal_ok(o.principal)) {
		init_fail(&r, "--principal %s: 1-64 characters of A-Z a-z 0-9 . _ @ + -",
		    o.principal);
		goto out;
	}
	if (o.operator_jid != NULL && !init_jid_ok(o.operator_jid)) {
		init_fail(&r, "--operator %s: not a bare JID (user@domain, no /resource)",
		    o.operator_jid);
		goto out;
	}
	if (o.user != NULL) {
		errno = 0;
		if ((pw = getpwnam(o.user)) == NULL) {
			init_fail(&r, "--user %s: no such user", o.user);
			goto out;
		}
		if (pw->pw_uid != geteuid()) {
			if (geteuid() != 0) {
				init_fail(&r, "--user %s: only root can write files for another "
				    "user", o.user);
				goto out;
			}
			r.as_user = true;
			r.uid = pw->pw_uid;
			r.gid = pw->pw_gid;
			if ((r.user = strdup(o.user)) == NULL) {
				init_fail(&r, "out of memory");
				goto out;
			}
			/* configuration: root's, readable by the group; the
			 * password: the user's own */
			fgid = r.gid;
			puid = r.uid;
		}
	}
	if (init_read_ed25519_pub(&r, "--allowed-signer", o.signer, &publine) != 0)
		goto out;
	if ((r.dir = init_abs_dir(&r, "--dir", o.dir != NULL ? o.dir : "/etc/moonwire")) == NULL ||
	    (state = init_abs_dir(&r, "--state-dir", o.state_dir != NULL ? o.state_dir :
	    "/var/lib/moonwire")) == NULL)
		goto out;
	if (asprintf(&db, "%s/identity.db", state) < 0) {
		db = NULL;
		init_fail(&r, "out of memory");
		goto out;
	}
	if (server_lines(&o, ca_abs, &server) != 0) {
		init_fail(&r, "out of memory");
		goto out;
	}
	if (init_stage_add(&r, "agent.conf", 0640, fuid, fgid, false,
	    "# moonwire agent configuration, written by `moonwire init agent`.\n"
	    "# Every key: moonwire-agent.conf(5).  Relative paths are relative to\n"
	    "# this file's directory.  Check a change with\n"
	    "#   moonwire agent -c %s/agent.conf --check\n"
	    "jid = %s\n"
	    "password_file = password\n"
	    "%s"
	    "db = %s\n"
	    "state_dir = %s\n"
	    "allowed_signers = allowed_signers\n"
	    "policy = policy\n",
	    r.dir, o.jid, server, db, state) == NULL ||
	    init_stage_add(&r, "policy", 0640, fuid, fgid, false,
	    "# moonwire policy, written by `moonwire init agent`.  Syntax:\n"
	    "# moonwire-policy(5).  A conservative start: the profile `%s`\n"
	    "# grants system facts (sys.info, sys.disk) and nothing else.\n"
	    "limits wall=10s\n"
	    "\n"
	    "profile %s\n"
	    "  sys\n"
	    "\n"
	    "%s%s %s %s\n",
	    AGENT_PROFILE, AGENT_PROFILE,
	    o.operator_jid != NULL ? "allow " : "# allow ", o.principal,
	    o.operator_jid != NULL ? o.operator_jid : "OPERATOR_JID",
	    AGENT_PROFILE) == NULL ||
	    init_stage_add(&r, "allowed_signers", 0640, fuid, fgid, false,
	    "# who may sign jobs (ssh-keygen(1) ALLOWED SIGNERS), written by\n"
	    "# `moonwire init agent`: PRINCIPAL namespaces=\"moonwire-job\" KEY\n"
	    "%s namespaces=\"moonwire-job\" %s\n", o.principal, publine) == NULL)
		goto out;
	if (init_stage_add(&r, "password", 0600, puid, fgid, true, "%s", "") == NULL)
		goto out;
	if (init_check_destinations(&r) != 0)
		goto out;
	/* all input is read before anything is created */
	if (init_read_password(&r, o.password_file, o.jid, pwbuf) != 0)
		goto out;
	{
		struct staged_file *f = &r.files[r.n_files - 1];

		free(f->content);
		if (asprintf(&f->content, "%s\n", pwbuf) < 0) {
			f->content = NULL;
			init_fail(&r, "out of memory");
			goto out;
		}
		f->len = strlen(f->content);
		OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	}
	/* from here on files are created: a failure removes them again */
	rc = MW_EXIT_ERROR;
	if (init_make_dirs(&r, r.dir, 0750, (uid_t)-1, fgid) != 0 ||
	    init_make_dirs(&r, state, 0700, puid, fgid) != 0 ||
	    init_stage_write(&r) != 0)
		goto out;
	if (asprintf(&staged_conf, "%s/agent.conf", r.stage) < 0) {
		staged_conf = NULL;
		init_fail(&r, "out of memory");
		goto out;
	}
	conf_final = r.files[0].final;
	if (check_agent_config(&r, staged_conf, &n_profiles, &n_allows) != 0) {
		rc = MW_EXIT_USAGE;	/* as `moonwire agent --check` */
		goto out;
	}
	if ((p = init_identity_and_commit(&r, o.jid, db, &device, fp)) != 0) {
		if (p == -2)
			rc = MW_EXIT_USAGE;	/* the identity of another JID */
		goto out;
	}
	/* what `moonwire agent --check` prints for these files */
	printf("%s: configuration ok (policy: %zu profiles, %zu allow lines)\n",
	    conf_final, n_profiles, n_allows);
	for (size_t i = 0; i < r.n_files; i++)
		printf("wrote %s\n", r.files[i].final);
	printf("%s %s\n", r.created_db != NULL ? "created" : "kept the existing", db);
	init_print_identity(o.jid, device, fp);
	mw_omemo_fp_group(fp, '-', g);
	printf("\nThe operator verifies this agent's fingerprint (compare it out of "
	    "band) with:\n    moonwire trust -c OPERATOR_CONF %s %s\n", o.jid, g);
	printf("and this agent verifies the operator's device, with the fingerprint "
	    "the operator's\n`moonwire init operator` (or `moonwire fingerprint`) "
	    "prints:\n    %s%s%smoonwire trust -c %s %s OPERATOR_FINGERPRINT\n",
	    r.as_user ? "sudo -u " : "", r.as_user ? r.user : "",
	    r.as_user ? " " : "", conf_final,
	    o.operator_jid != NULL ? o.operator_jid : "OPERATOR_JID");
	if (o.operator_jid == NULL)
		printf("No --operator was given: nobody may run jobs until an `allow` "
		    "line is added to %s/policy.\n", r.dir);
	rc = fflush(stdout) == 0 ? MW_EXIT_OK : MW_EXIT_ERROR;
	init_run_finish(&r, true);
	goto out_free;
out:
	init_run_finish(&r, false);
out_free:
	OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	free(state);
	free(ca_abs);
	free(publine);
	free(server);
	free(db);
	free(staged_conf);
	return rc;
}

/* ---- moonwire init operator ---- */

static int
init_operator(int argc, char **argv)
{
	struct init_run r = { .cmd = "operator" };
	struct init_opts o;
	struct mw_omemo_account acct;
	char pwbuf[PASSWORD_MAX], fp[MW_OMEMO_FP_HEXLEN + 1], g[72], err[1400];
	char *ca_abs = NULL, *server = NULL, *file = NULL, *key = NULL;
	char *stem = NULL, *db = NULL, *staged = NULL, *def = NULL, *tmp = NULL;
	const char *base;
	uint32_t device = 0;
	size_t bl;
	int rc = MW_EXIT_USAGE, p;

	pwbuf[0] = '\0';
	if ((p = parse_opts(argc, argv, false, &o)) != 0) {
		fputs(init_usage_text, p > 0 ? stdout : stderr);
		return p > 0 ? MW_EXIT_OK : MW_EXIT_USAGE;
	}
	r.force = o.force;
	if (check_account_opts(&r, &o, &ca_abs) != 0)
		goto out;
	if (o.signing_key == NULL) {
		init_fail(&r, "--signing-key KEY is required (an Ed25519 key: ssh-keygen "
		    "-t ed25519)");
		goto out;
	}
	if (init_check_signing_key(&r, o.signing_key) != 0)
		goto out;
	if ((key = init_abs_dir(&r, "--signing-key", o.signing_key)) == NULL)
		goto out;
	if (o.file == NULL) {
		/* ~/.config/moonwire/LOCALPART.conf */
		if (asprintf(&def, "~/.config/moonwire/%.*s.conf",
		    (int)(strchr(o.jid, '@') - o.jid), o.jid) < 0) {
			def = NULL;
			init_fail(&r, "out of memory");
			goto out;
		}
		if (mw_omemo_account_path("/", def, &tmp) != 0) {
			init_fail(&r, "cannot find the home directory for %s (give --file)", def);
			goto out;
		}
	}
	if ((file = init_abs_dir(&r, "--file", o.file != NULL ? o.file : tmp)) == NULL)
		goto out;
	/* dir and stem: PATH = DIR/STEM.conf (or DIR/STEM) */
	if ((r.dir = strdup(file)) == NULL || (stem = strdup(file)) == NULL) {
		init_fail(&r, "out of memory");
		goto out;
	}
	base = strrchr(file, '/') + 1;
	bl = strlen(base);
	if (bl == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		init_fail(&r, "--file %s: not a file name", file);
		goto out;
	}
	*strrchr(r.dir, '/') = '\0';
	if (r.dir[0] == '\0')
		strcpy(r.dir, "/");
	free(stem);
	if ((stem = strndup(base, bl > 5 && strcmp(base + bl - 5, ".conf") == 0 ?
	    bl - 5 : bl)) == NULL) {
		init_fail(&r, "out of memory");
		goto out;
	}
	if (asprintf(&db, "%s/%s.db", strcmp(r.dir, "/") == 0 ? "" : r.dir, stem) < 0) {
		db = NULL;
		init_fail(&r, "out of memory");
		goto out;
	}
	if (server_lines(&o, ca_abs, &server) != 0) {
		init_fail(&r, "out of memory");
		goto out;
	}
	{
		char pwname[64];

		if (snprintf(pwname, sizeof(pwname), "%s.password", stem) >=
		    (int)sizeof(pwname) || strlen(base) >= sizeof(pwname)) {
			init_fail(&r, "--file %s: the file name is too long", file);
			goto out;
		}
		if (init_stage_add(&r, base, 0600, (uid_t)-1, (gid_t)-1, false,
		    "# moonwire operator account, written by `moonwire init operator`.\n"
		    "# Keys: moonwire(1), \"Account file\".  Relative paths are relative\n"
		    "# to this file's directory.\n"
		    "jid = %s\n"
		    "password_file = %s\n"
		    "%s"
		    "db = %s.db\n"
		    "signing_key = %s\n",
		    o.jid, pwname, server, stem, key) == NULL ||
		    init_stage_add(&r, pwname, 0600, (uid_t)-1, (gid_t)-1, true, "%s", "") == NULL)
			goto out;
	}
	if (init_check_destinations(&r) != 0)
		goto out;
	if (init_read_password(&r, o.password_file, o.jid, pwbuf) != 0)
		goto out;
	{
		struct staged_file *f = &r.files[1];

		free(f->content);
		if (asprintf(&f->content, "%s\n", pwbuf) < 0) {
			f->content = NULL;
			init_fail(&r, "out of memory");
			goto out;
		}
		f->len = strlen(f->content);
		OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	}
	/* from here on files are created: a failure removes them again */
	rc = MW_EXIT_ERROR;
	if (init_make_dirs(&r, r.dir, 0700, (uid_t)-1, (gid_t)-1) != 0 || init_stage_write(&r) != 0)
		goto out;
	if (asprintf(&staged, "%s/%s", r.stage, base) < 0) {
		staged = NULL;
		init_fail(&r, "out of memory");
		goto out;
	}
	/* what every command reads of an account file */
	if (mw_omemo_account_load_err(&acct, staged, err, sizeof(err)) != 0) {
		init_print_unstaged(&r, err);
		rc = MW_EXIT_USAGE;
		goto out;
	}
	mw_omemo_account_free(&acct);
	if ((p = init_identity_and_commit(&r, o.jid, db, &device, fp)) != 0) {
		if (p == -2)
			rc = MW_EXIT_USAGE;	/* the identity of another JID */
		goto out;
	}
	for (size_t i = 0; i < r.n_files; i++)
		printf("wrote %s\n", r.files[i].final);
	printf("%s %s\n", r.created_db != NULL ? "created" : "kept the existing", db);
	printf("%s: account ok\n", file);
	init_print_identity(o.jid, device, fp);
	mw_omemo_fp_group(fp, '-', g);
	printf("\nThe agent's owner verifies this device's fingerprint (compare it out "
	    "of band) with:\n    moonwire trust -c AGENT_CONF %s %s\n", o.jid, g);
	printf("and you verify the agent's, printed by `moonwire init agent`:\n"
	    "    moonwire trust -c %s AGENT_JID AGENT_FINGERPRINT\n", file);
	{
		size_t kl = strlen(key);
		bool is_pub = kl > 4 && strcmp(key + kl - 4, ".pub") == 0;

		printf("The agent's owner needs your public key, %s%s, for `moonwire "
		    "init agent --allowed-signer`.\n", key, is_pub ? "" : ".pub");
	}
	rc = fflush(stdout) == 0 ? MW_EXIT_OK : MW_EXIT_ERROR;
	init_run_finish(&r, true);
	goto out_free;
out:
	init_run_finish(&r, false);
out_free:
	OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	free(ca_abs);
	free(server);
	free(file);
	free(key);
	free(stem);
	free(db);
	free(staged);
	free(def);
	free(tmp);
	return rc;
}

int
mw_cmd_init(int argc, char **argv)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "agent") == 0 ||
	    strcmp(argv[1], "operator") == 0)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_interrupt;	/* no SA_RESTART: a prompt returns */
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			if (sigaction(sigs[i], &sa, NULL) != 0) {
				fprintf(stderr, "moonwire init: sigaction: %s\n", strerror(errno));
				return MW_EXIT_ERROR;
			}
		rc = argv[1][0] == 'a' ? init_agent(argc - 1, argv + 1) :
		    init_operator(argc - 1, argv + 1);
		if (init_interrupted && rc == MW_EXIT_OK)
			return rc;	/* it came after everything was in place */
		return init_interrupted ? 128 + init_interrupted : rc;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(init_usage_text, stdout);
		return MW_EXIT_OK;
	}
	if (argc >= 2)
		fprintf(stderr, "moonwire init: unknown kind '%s' (agent or operator)\n",
		    argv[1]);
	fputs(init_usage_text, stderr);
	return MW_EXIT_USAGE;
}
