/*
 * cmd_omemo.c: `moonwire fingerprint|devices|trust|distrust`, the owner's
 * handle on the agent's OMEMO identity and on which peer keys it trusts.
 *
 * Every command works offline on the identity database, chosen by
 *   -c CONFIG   the account file (its `db` and `jid` keys; `fingerprint`
 *               creates the identity if the database has none yet), or
 *   --db PATH   an existing identity database.
 * The agent may be running: SQLite WAL and a busy timeout make that safe.
 * `devices` prints what the identity has cached (device lists, bundle keys
 * and sessions the agent saw); it does not go to the network.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/mw_omemo.h"
#include "runtime/mw_runtime.h"

struct omemo_cli {
	sqlite3 *db;
	struct mw_omemo *o;
};

static void
cli_usage(const char *cmd, const char *args)
{
	fprintf(stderr, "usage: moonwire %s (-c CONFIG | --db PATH)%s%s\n", cmd,
	    args[0] != '\0' ? " " : "", args);
}

/* Parses -c/--db, opens the database and the OMEMO state.  Returns the
 * index of the first operand, or -1 after printing why (usage: -2). */
static int
cli_open(struct omemo_cli *c, int argc, char **argv, bool create)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mw_omemo_account a;
	const char *config = NULL, *dbpath = NULL;
	char *jid = NULL, *path = NULL, err[1200];
	int ch, rc;

	memset(c, 0, sizeof(*c));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'd': dbpath = optarg; break;
		default: return -2;
		}
	}
	if ((config == NULL) == (dbpath == NULL))
		return -2;
	if (config != NULL) {
		if ((rc = mw_omemo_account_load_err(&a, config, err, sizeof(err))) != 0) {
			fprintf(stderr, "moonwire: %s\n", err);
			return -1;
		}
		if (a.db == NULL) {
			fprintf(stderr, "moonwire: %s: no `db` setting\n", config);
			mw_omemo_account_free(&a);
			return -1;
		}
		jid = strdup(a.jid);
		path = strdup(a.db);
		mw_omemo_account_free(&a);
		if (jid == NULL || path == NULL)
			goto nomem;
	} else if ((path = strdup(dbpath)) == NULL)
		goto nomem;
	if (mw_omemo_account_private_db(path, create && jid != NULL, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "moonwire: %s\n", err);
		goto fail;
	}
	if ((rc = mw_omemo_db_open(path, create && jid != NULL, &c->db)) != 0) {
		fprintf(stderr, "moonwire: %s: cannot open the identity database "
		    "(%s)\n", path, mw_omemo_strerror(rc));
		goto fail;
	}
	if ((rc = mw_omemo_open(&c->o, c->db, create ? jid : NULL)) != 0) {
		fprintf(stderr, "moonwire: %s: %s%s\n", path, mw_omemo_strerror(rc),
		    rc == MW_OMEMO_E_NO_IDENTITY ?
		    " (run `moonwire fingerprint -c CONFIG` to create it)" : "");
		goto fail;
	}
	if (jid != NULL && strcmp(jid, mw_omemo_jid(c->o)) != 0) {
		fprintf(stderr, "moonwire: %s belongs to %s, not %s\n", path,
		    mw_omemo_jid(c->o), jid);
		goto fail;
	}
	free(jid);
	free(path);
	return optind;
nomem:
	fprintf(stderr, "moonwire: out of memory\n");
fail:
	free(jid);
	free(path);
	mw_omemo_close(c->o);
	c->o = NULL;
	if (c->db != NULL)
		sqlite3_close(c->db);
	c->db = NULL;
	return -1;
}

static void
cli_close(struct omemo_cli *c)
{
	mw_omemo_close(c->o);
	if (c->db != NULL)
		sqlite3_close(c->db);
}

int
mw_cmd_fingerprint(int argc, char **argv)
{
	struct omemo_cli c;
	char fp[MW_OMEMO_FP_HEXLEN + 1], ed[MW_OMEMO_FP_HEXLEN + 1], g[72];
	int i, rc;

	if ((i = cli_open(&c, argc, argv, true)) < 0 || i != argc) {
		if (i >= 0)
			cli_close(&c);
		if (i != -1)
			cli_usage("fingerprint", "");
		return i == -1 ? MW_EXIT_ERROR : MW_EXIT_USAGE;
	}
	if ((rc = mw_omemo_own_fingerprint(c.o, fp)) != 0) {
		fprintf(stderr, "moonwire: %s\n", mw_omemo_strerror(rc));
		cli_close(&c);
		return MW_EXIT_ERROR;
	}
	mw_omemo_fp_group(fp, '-', g);
	printf("jid: %s\ndevice: %u\nfingerprint: %s\n", mw_omemo_jid(c.o),
	    mw_omemo_device_id(c.o), g);
	/* the same key as OMEMO 2 clients show it (spec/omemo.md) */
	if (mw_omemo_fp_ed25519(fp, ed) == 0) {
		mw_omemo_fp_group(ed, '-', g);
		printf("fingerprint-ed25519: %s\n", g);
	}
	cli_close(&c);
	return MW_EXIT_OK;
}

/* A peer JID operand: bare, user@domain.  Prints why not. */
static bool
bare_jid_ok(const char *cmd, const char *jid)
{
	const char *at = strchr(jid, '@'), *slash = strchr(jid, '/');

	if (slash != NULL && at != NULL && slash > at) {
		fprintf(stderr, "moonwire: %s: %s: a bare JID is expected%s: use %.*s\n",
		    cmd, jid, strcmp(cmd, "devices") == 0 ? "" : " (trust applies to "
		    "the account and all its devices)", (int)(slash - jid), jid);
		return false;
	}
	if (at == NULL || at == jid || at[1] == '\0' || slash != NULL ||
	    strpbrk(jid, " \t") != NULL) {
		fprintf(stderr, "moonwire: %s: %s: a bare JID (user@domain) is expected\n",
		    cmd, jid);
		return false;
	}
	return true;
}

int
mw_cmd_devices(int argc, char **argv)
{
	struct omemo_cli c;
	struct mw_omemo_device *d;
	size_t n;
	char g[72];
	int i, rc;

	if ((i = cli_open(&c, argc, argv, false)) < 0 || argc - i != 1) {
		if (i >= 0)
			cli_close(&c);
		if (i != -1)
			cli_usage("devices", "JID");
		return i == -1 ? MW_EXIT_ERROR : MW_EXIT_USAGE;
	}
	if (!bare_jid_ok("devices", argv[i])) {
		cli_close(&c);
		return MW_EXIT_USAGE;
	}
	mw_omemo_jid_fold(argv[i]);	/* as stanzas carry it */
	if ((rc = mw_omemo_devices(c.o, argv[i], &d, &n)) != 0) {
		fprintf(stderr, "moonwire: %s: %s\n", argv[i], mw_omemo_strerror(rc));
		cli_close(&c);
		return rc == MW_OMEMO_E_INVAL ? MW_EXIT_USAGE : MW_EXIT_ERROR;
	}
	if (n == 0)
		fprintf(stderr, "moonwire: no cached devices for %s\n", argv[i]);
	for (size_t k = 0; k < n; k++) {
		if (d[k].has_key)
			mw_omemo_fp_group(d[k].fp, '-', g);
		else
			snprintf(g, sizeof(g), "(key unknown)");
		printf("%u %s %s %s%s", d[k].id,
		    d[k].active || d[k].active2 ? "active" : "inactive",
		    d[k].has_key ? mw_omemo_trust_name(d[k].trust) : "-", g,
		    d[k].has_session ? " session" : "");
		/* a device that speaks OMEMO 2: the key as its clients show
		 * it (Ed25519), and whether a version-4 session exists */
		if (d[k].active2 || d[k].has_session2) {
			char ed[MW_OMEMO_FP_HEXLEN + 1], eg[72];

			printf(" omemo2%s", d[k].has_session2 ? " session2" : "");
			if (d[k].has_key && mw_omemo_fp_ed25519(d[k].fp, ed) == 0) {
				mw_omemo_fp_group(ed, '-', eg);
				printf(" ed25519 %s", eg);
			}
		}
		putchar('\n');
	}
	free(d);
	cli_close(&c);
	return MW_EXIT_OK;
}

static int
set_trust(int argc, char **argv, const char *cmd, bool trust)
{
	struct omemo_cli c;
	struct mw_omemo_device *d = NULL;
	char in[MW_OMEMO_FP_HEXLEN + 1], fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
	size_t n = 0, matches = 0;
	bool seen;
	int i, rc;

	if ((i = cli_open(&c, argc, argv, false)) < 0 || argc - i != 2) {
		if (i >= 0)
			cli_close(&c);
		if (i != -1)
			cli_usage(cmd, "JID FINGERPRINT");
		return i == -1 ? MW_EXIT_ERROR : MW_EXIT_USAGE;
	}
	if (!bare_jid_ok(cmd, argv[i])) {
		cli_close(&c);
		return MW_EXIT_USAGE;
	}
	mw_omemo_jid_fold(argv[i]);	/* as stanzas carry it */
	/* either rendering (Curve25519 or an OMEMO 2 client's Ed25519):
	 * shown below as the Curve25519 key it names */
	if ((rc = mw_omemo_fp_parse(argv[i + 1], in)) != 0 ||
	    (rc = mw_omemo_fp_resolve(c.o, argv[i], in, fp, &seen)) != 0 ||
	    (rc = trust ? mw_omemo_trust(c.o, argv[i], fp) :
	    mw_omemo_distrust(c.o, argv[i], fp)) != 0) {
		fprintf(stderr, "moonwire: %s: %s\n", cmd, mw_omemo_strerror(rc));
		cli_close(&c);
		return rc == MW_OMEMO_E_FINGERPRINT || rc == MW_OMEMO_E_INVAL ?
		    MW_EXIT_USAGE : MW_EXIT_ERROR;
	}
	mw_omemo_fp_group(fp, '-', g);
	if (mw_omemo_devices(c.o, argv[i], &d, &n) == 0)
		for (size_t k = 0; k < n; k++)
			if (d[k].has_key && strcmp(d[k].fp, fp) == 0) {
				printf("%s device %u: %s %s\n", argv[i], d[k].id,
				    trust ? "verified" : "revoked", g);
				matches++;
			}
	if (matches == 0)
		printf("%s: %s %s (no device with this key seen yet; it applies "
		    "when one appears)\n", argv[i], trust ? "verified" : "revoked", g);
	free(d);
	cli_close(&c);
	return MW_EXIT_OK;
}

int
mw_cmd_trust(int argc, char **argv)
{
	return set_trust(argc, argv, "trust", true);
}

int
mw_cmd_distrust(int argc, char **argv)
{
	return set_trust(argc, argv, "distrust", false);
}

/*
 * `moonwire __omemo_client -c CONFIG`: a line-oriented OMEMO chat endpoint
 * for the integration tests (hidden; not an operator command).  It logs in
 * with the account file, publishes bundle and device list, and then
 *   stdin:  "send JID TEXT" | "trust JID FP" | "refresh JID" | "quit"
 *   stdout: "ready DEVICE FP" | "recv JID DEVICE TRUST TEXT" |
 *           "sent ERR" | "refreshed ERR" | "decrypt-error ERR NAME" |
 *           "dropped JID DEVICE" | "trusted ERR" |
 *           "connect-error ERR NAME" (certificate refused: pin, untrusted) |
 *           "disconnected EVENT ERROR"
 * one event per line, flushed.  The event loop never blocks for long
 * (xmpp_run_once with a short timeout, stdin polled).  MOONWIRE_TEST_REPUBLISH_MS
 * in the environment sets the bundle republish window.
 */
#include <poll.h>
#include <unistd.h>

struct client {
	struct mw_omemo_account acct;
	struct omemo_cli cli;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	bool ready, quit;
	char line[65536];
	size_t llen;
};

static void
c_done(struct mw_omemo *o, int err, void *arg)
{
	printf("%s %d\n", (const char *)arg, err);
	fflush(stdout);
}

static int
c_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct client *c = arg;
	struct mw_omemo_msg m;
	int rc;

	if (!mw_omemo_is_encrypted(st))
		return 1;
	rc = mw_omemo_decrypt(c->cli.o, st, &m);
	if (rc == MW_OMEMO_OK) {
		/* the caller's journal row would be inserted here */
		rc = mw_omemo_commit(c->cli.o);
		if (rc == 0)
			printf("recv %s %u %s %s\n", m.from, m.device,
			    mw_omemo_trust_name(m.trust), (char *)m.plaintext);
		else
			printf("decrypt-error %d %s\n", rc, mw_omemo_strerror(rc));
	} else if (rc == MW_OMEMO_DROPPED)
		printf("dropped %s %u\n", m.from, m.device);
	else
		printf("decrypt-error %d %s\n", rc, mw_omemo_strerror(rc));
	fflush(stdout);
	mw_omemo_msg_free(&m);
	return 1;
}

static void
c_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct client *c = arg;
	char fp[MW_OMEMO_FP_HEXLEN + 1];
	xmpp_stanza_t *pres;
	int rc;

	if (ev != XMPP_CONN_CONNECT) {
		/* A certificate refused by moonwire is reported typed. */
		if ((rc = mw_omemo_account_tls_error(conn)) != 0) {
			fprintf(stderr, "moonwire: connect: %s\n",
			    mw_omemo_strerror(rc));
			printf("connect-error %d %s\n", rc, mw_omemo_strerror(rc));
		} else if (!c->ready) {
			char why[768];

			(void)mw_omemo_account_describe_failure(&c->acct, conn, error, se,
			    why, sizeof(why));
			fprintf(stderr, "moonwire: connect: %s\n", why);
		}
		printf("disconnected %d %d\n", (int)ev, error);
		fflush(stdout);
		c->quit = true;
		return;
	}
	if ((rc = mw_omemo_account_check_pin(&c->acct, conn)) != 0) {
		/* CA-verified but not the pinned certificate: nothing is sent */
		fprintf(stderr, "moonwire: connect: %s\n", mw_omemo_strerror(rc));
		printf("connect-error %d %s\n", rc, mw_omemo_strerror(rc));
		fflush(stdout);
		xmpp_disconnect(conn);
		return;
	}
	xmpp_handler_add(conn, c_message, NULL, "message", NULL, c);
	if ((pres = xmpp_presence_new(c->x)) != NULL) {
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
	}
	if ((rc = mw_omemo_attach(c->cli.o, conn)) != 0 ||
	    (rc = mw_omemo_start(c->cli.o)) != 0 ||
	    (rc = mw_omemo_own_fingerprint(c->cli.o, fp)) != 0) {
		fprintf(stderr, "moonwire: omemo: %s\n", mw_omemo_strerror(rc));
		xmpp_disconnect(conn);
		return;
	}
	c->ready = true;
	printf("ready %u %s\n", mw_omemo_device_id(c->cli.o), fp);
	fflush(stdout);
}

static void
c_command(struct client *c, char *l)
{
	char *cmd = strtok(l, " "), *jid = strtok(NULL, " "), *rest = strtok(NULL, "");
	int rc;

	if (cmd == NULL)
		return;
	if (strcmp(cmd, "quit") == 0) {
		c->quit = true;
		(void)mw_omemo_publish_pending(c->cli.o);
		xmpp_disconnect(c->conn);
	} else if (strcmp(cmd, "send") == 0 && jid != NULL && rest != NULL) {
		if ((rc = mw_omemo_send(c->cli.o, jid, rest, strlen(rest), c_done,
		    (void *)"sent")) != 0)
			c_done(c->cli.o, rc, (void *)"sent");
	} else if (strcmp(cmd, "refresh") == 0 && jid != NULL) {
		if ((rc = mw_omemo_refresh(c->cli.o, jid, true, c_done,
		    (void *)"refreshed")) != 0)
			c_done(c->cli.o, rc, (void *)"refreshed");
	} else if (strcmp(cmd, "trust") == 0 && jid != NULL && rest != NULL)
		c_done(c->cli.o, mw_omemo_trust(c->cli.o, jid, rest), (void *)"trusted");
	else {
		printf("usage-error\n");
		fflush(stdout);
	}
}

static void
c_stdin(struct client *c)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	ssize_t n;
	char *nl;

	if (poll(&p, 1, 0) <= 0)
		return;
	n = read(0, c->line + c->llen, sizeof(c->line) - 1 - c->llen);
	if (n <= 0) {
		c->quit = true;
		xmpp_disconnect(c->conn);
		return;
	}
	c->llen += (size_t)n;
	c->line[c->llen] = '\0';
	while ((nl = strchr(c->line, '\n')) != NULL) {
		size_t used = (size_t)(nl - c->line) + 1;

		*nl = '\0';
		c_command(c, c->line);
		memmove(c->line, c->line + used, c->llen - used + 1);
		c->llen -= used;
	}
	if (c->llen == sizeof(c->line) - 1)
		c->llen = 0;	/* overlong line: drop it */
}

int
mw_cmd_omemo_client(int argc, char **argv)
{
	struct client *c;
	const char *config = NULL;
	int rc = MW_EXIT_ERROR;

	if (argc != 3 || strcmp(argv[1], "-c") != 0) {
		fprintf(stderr, "usage: moonwire __omemo_client -c CONFIG\n");
		return MW_EXIT_USAGE;
	}
	config = argv[2];
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return MW_EXIT_ERROR;
	{
		char err[1200];

		if (mw_omemo_account_load_err(&c->acct, config, err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire: %s\n", err);
			free(c);
			return MW_EXIT_USAGE;
		}
	}
	if (cli_open(&c->cli, argc, argv, true) < 0)
		goto out;
	{
		/* tests: a shorter bundle republish window (spec/omemo.md, "PEP") */
		const char *v = getenv("MOONWIRE_TEST_REPUBLISH_MS");
		char *end;
		unsigned long ms = v != NULL ? strtoul(v, &end, 10) : 0;

		if (v != NULL && *v != '\0' && *end == '\0' && ms <= 600000)
			mw_omemo_set_republish_interval(c->cli.o, (unsigned)ms);
	}
	xmpp_initialize();
	if ((c->x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL ||
	    (c->conn = xmpp_conn_new(c->x)) == NULL ||
	    mw_omemo_account_apply(&c->acct, c->conn) != 0)
		goto out2;
	if (xmpp_connect_client(c->conn, c->acct.host, c->acct.port, c_conn, c) !=
	    XMPP_EOK)
		goto out2;
	while (!c->quit) {
		xmpp_run_once(c->x, 50);
		mw_omemo_tick(c->cli.o);
		if (c->ready)
			c_stdin(c);
	}
	/* let the disconnect go out */
	for (int i = 0; i < 10; i++)
		xmpp_run_once(c->x, 10);
	/* never logged in (refused certificate, bad password, no server) */
	rc = c->ready ? MW_EXIT_OK : MW_EXIT_ERROR;
out2:
	cli_close(&c->cli);	/* detaches, fails pending sends */
	if (c->conn != NULL) {
		mw_omemo_account_release(c->conn);
		xmpp_conn_release(c->conn);
	}
	if (c->x != NULL)
		xmpp_ctx_free(c->x);
	xmpp_shutdown();
out:
	mw_omemo_account_free(&c->acct);
	free(c);
	return rc;
}
