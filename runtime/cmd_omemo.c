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
	char *jid = NULL, *path = NULL;
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
		if ((rc = mw_omemo_account_load(&a, config)) != 0) {
			fprintf(stderr, "moonwire: %s: %s\n", config,
			    mw_omemo_strerror(rc));
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
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE |
	    (create && jid != NULL ? SQLITE_OPEN_CREATE : 0), NULL) != SQLITE_OK) {
		fprintf(stderr, "moonwire: %s: %s\n", path, c->db != NULL ?
		    sqlite3_errmsg(c->db) : "cannot open");
		goto fail;
	}
	if (sqlite3_busy_timeout(c->db, 5000) != SQLITE_OK ||
	    sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "moonwire: %s: %s\n", path, sqlite3_errmsg(c->db));
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
	char fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
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
	cli_close(&c);
	return MW_EXIT_OK;
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
		printf("%u %s %s %s%s\n", d[k].id,
		    d[k].active ? "active" : "inactive",
		    d[k].has_key ? mw_omemo_trust_name(d[k].trust) : "-", g,
		    d[k].has_session ? " session" : "");
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
	char fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
	size_t n = 0, matches = 0;
	int i, rc;

	if ((i = cli_open(&c, argc, argv, false)) < 0 || argc - i != 2) {
		if (i >= 0)
			cli_close(&c);
		if (i != -1)
			cli_usage(cmd, "JID FINGERPRINT");
		return i == -1 ? MW_EXIT_ERROR : MW_EXIT_USAGE;
	}
	if ((rc = mw_omemo_fp_parse(argv[i + 1], fp)) != 0 ||
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
