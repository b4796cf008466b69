/*
 * mwclient.c: a long-lived operator client for the reliability suites
 * (tests/reliability), compiled by the tests against build/lib*.a.
 *
 * Why: `moonwire send` logs in, sends one envelope per target and exits;
 * the crash, server-fault and load suites need thousands of envelopes over
 * one connection, re-sent after faults, and every result seen (duplicates
 * included).  A python-omemo peer is far too slow for a 10,000-message
 * flood.
 *
 *   mwclient sign -k KEY --to JID --prefix P --count N --program FILE
 *                 --outdir DIR [--ttl SECONDS]
 *       N envelopes, job ids P-00000 .. ; "@ID@" in FILE becomes the job id.
 *   mwclient run -c ACCOUNT --to JID
 *       stdin commands, one per line:  send PATH   (an envelope file)
 *                                      quit
 *       stdout, one line per event:    E connected | E disconnected |
 *                                      E sent N | E decrypt-error CODE |
 *                                      R {json of the result}
 *       Reconnects 1 s after a lost connection (no stream management: what
 *       the server could not deliver is kept offline for the next login).
 *   mwclient raw -c ACCOUNT --to JID --count N
 *       N messages carrying a junk <encrypted> element (a stranger's flood).
 *   mwclient prekey-flood -c ACCOUNT --to JID --device DEV --count N
 *                 [--clone DB] [--per-sec R]
 *       N PreKeySignalMessages to device DEV of JID, each from a new
 *       session: a fresh OMEMO identity and device of ACCOUNT's JID per
 *       message (unverified devices), or with --clone a copy of the
 *       identity in DB (a verified device building session after session).
 *       The bundle of DEV is fetched once.  Prints "E sent N".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#include "omemo/mw_omemo.h"
#include "runtime/agent/agent.h"

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL) {
		if (f)
			fclose(f);
		return NULL;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static const char *
arg(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

/* ---- sign ---- */

static int
cmd_sign(int argc, char **argv)
{
	const char *keyp = arg(argc, argv, "-k", NULL), *to = arg(argc, argv, "--to", NULL);
	const char *prefix = arg(argc, argv, "--prefix", "job");
	const char *progp = arg(argc, argv, "--program", NULL);
	const char *outdir = arg(argc, argv, "--outdir", NULL);
	long count = atol(arg(argc, argv, "--count", "1"));
	long ttl = atol(arg(argc, argv, "--ttl", "3000"));
	struct mw_ssh_signer *key = NULL;
	char err[512], *tmpl;
	size_t tlen;

	if (!keyp || !to || !progp || !outdir || (tmpl = slurp(progp, &tlen)) == NULL) {
		fprintf(stderr, "mwclient sign: bad arguments\n");
		return 2;
	}
	if (mw_ssh_signer_load(keyp, &key, err, sizeof(err)) != 0) {
		fprintf(stderr, "mwclient sign: %s\n", err);
		return 2;
	}
	for (long i = 0; i < count; i++) {
		char id[80], path[4096], *prog, *part = NULL, *sig = NULL, *env = NULL;
		size_t plen = 0, partlen, siglen, envlen;
		struct mw_envelope_fields f;
		const char *p;
		FILE *o;

		snprintf(id, sizeof(id), "%s-%05ld", prefix, i);
		/* substitute @ID@ */
		if ((prog = malloc(tlen * 8 + 1)) == NULL)
			return 1;
		for (p = tmpl; *p; ) {
			if (strncmp(p, "@ID@", 4) == 0) {
				memcpy(prog + plen, id, strlen(id));
				plen += strlen(id);
				p += 4;
			} else
				prog[plen++] = *p++;
		}
		prog[plen] = '\0';
		memset(&f, 0, sizeof(f));
		f.audience = to;
		f.job_id = id;
		f.issued_at = (int64_t)time(NULL);
		f.not_after = f.issued_at + ttl;
		if (mw_envelope_build(&f, (const uint8_t *)prog, plen, &part, &partlen, NULL,
		    err, sizeof(err)) != 0 ||
		    mw_sshsig_sign(key, MW_JOB_NAMESPACE, (const uint8_t *)part, partlen,
		    &sig, &siglen, err, sizeof(err)) != 0 ||
		    mw_envelope_attach(part, partlen, sig, siglen, &env, &envlen, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "mwclient sign: %s\n", err);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/%s.job", outdir, id);
		if ((o = fopen(path, "we")) == NULL || fwrite(env, 1, envlen, o) != envlen ||
		    fclose(o) != 0) {
			fprintf(stderr, "mwclient sign: %s: %s\n", path, strerror(errno));
			return 1;
		}
		free(prog);
		free(part);
		free(sig);
		free(env);
	}
	free(tmpl);
	mw_ssh_signer_free(key);
	return 0;
}

/* ---- run ---- */

struct client {
	struct mw_omemo_account acct;
	const char *to;
	sqlite3 *db;
	struct mw_omemo *o;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	bool connected, connecting, session;	/* session: the agent's devices are known */
	uint64_t reconnect_at;
	unsigned long sent;
	/* envelopes waiting for the connection */
	char **queue;
	size_t nq, capq;
	bool raw;
	long raw_count;
	char *first;		/* the message of the first send, until it went out */
};

static void queue_push(struct client *c, char *text);

static void
out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct client *c = arg;

	if (c->conn != NULL && c->connected)
		xmpp_send(c->conn, st);
}

static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct client *c = arg;
	struct mw_omemo_msg m;
	struct mw_result_msg r;
	int rc;

	(void)conn;
	if (c->raw || !mw_omemo_is_encrypted(st))
		return 1;
	rc = mw_omemo_decrypt(c->o, st, &m);
	if (rc == MW_OMEMO_OK)
		rc = mw_omemo_commit(c->o);
	if (rc != MW_OMEMO_OK) {
		if (rc != MW_OMEMO_DROPPED)
			out("E decrypt-error %s", mw_omemo_strerror(rc));
		mw_omemo_msg_free(&m);
		return 1;
	}
	if (mw_result_message_parse((const char *)m.plaintext, m.len, &r) == 0) {
		char *j = mw_result_msg_json(&r, m.from);

		if (j != NULL)
			out("R %s", j);
		free(j);
		mw_result_msg_free(&r);
	} else
		out("E not-a-result");
	mw_omemo_msg_free(&m);
	return 1;
}

static void
on_first_sent(struct mw_omemo *o, int err, void *arg)
{
	struct client *c = arg;

	(void)o;
	if (err == 0) {
		c->session = true;
		free(c->first);
	} else {
		/* e.g. the agent's bundle not published yet: try it again */
		out("E send-error %s", mw_omemo_strerror(err));
		queue_push(c, c->first);
	}
	c->first = NULL;
}

static void
send_one(struct client *c, const char *text)
{
	xmpp_stanza_t *msg = NULL;
	int rc;

	if (!c->session) {
		/* the first send fetches the device list and bundles */
		c->first = strdup(text);
		rc = mw_omemo_send(c->o, c->to, text, strlen(text), on_first_sent, c);
		if (rc != 0)
			out("E send-error %s", mw_omemo_strerror(rc));
	} else if ((rc = mw_omemo_encrypt(c->o, c->x, c->to, NULL, 0, text, strlen(text),
	    &msg)) != 0) {
		out("E send-error %s", mw_omemo_strerror(rc));
		return;
	} else {
		xmpp_send(c->conn, msg);
		xmpp_stanza_release(msg);
	}
	c->sent++;
}

static void
send_raw(struct client *c, long i)
{
	char buf[512];
	xmpp_stanza_t *msg = NULL;

	snprintf(buf, sizeof(buf), "<message xmlns='jabber:client' type='chat' to='%s' "
	    "id='junk%ld'><encrypted xmlns='" MW_OMEMO_NS "'><header sid='12345'>"
	    "<key rid='1'>AAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header>"
	    "<payload>AAAA</payload></encrypted><body>junk %ld</body></message>",
	    c->to, i, i);
	if ((msg = xmpp_stanza_new_from_string(c->x, buf)) != NULL) {
		xmpp_send(c->conn, msg);
		xmpp_stanza_release(msg);
	}
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct client *c = arg;
	xmpp_stanza_t *p;
	int rc;

	(void)se;
	c->connecting = false;
	if (ev != XMPP_CONN_CONNECT) {
		out("E disconnected %d", error);
		c->connected = false;
		if (!c->raw)
			mw_omemo_detach(c->o);
		c->reconnect_at = now_ms() + 1000;
		return;
	}
	c->connected = true;
	xmpp_handler_add(conn, on_message, NULL, "message", NULL, c);
	if (!c->raw && ((rc = mw_omemo_attach(c->o, conn)) != 0 ||
	    (rc = mw_omemo_start(c->o)) != 0)) {
		out("E omemo-error %s", mw_omemo_strerror(rc));
		xmpp_disconnect(conn);
		return;
	}
	if ((p = xmpp_presence_new(c->x)) != NULL) {
		xmpp_send(conn, p);
		xmpp_stanza_release(p);
	}
	out("E connected");
}

static int
start_conn(struct client *c)
{
	if (c->conn != NULL)
		xmpp_conn_release(c->conn);
	if ((c->conn = xmpp_conn_new(c->x)) == NULL ||
	    mw_omemo_account_apply(&c->acct, c->conn) != 0)
		return -1;
	xmpp_conn_set_flags(c->conn, xmpp_conn_get_flags(c->conn) | XMPP_CONN_FLAG_DISABLE_SM);
	c->connecting = true;
	c->reconnect_at = 0;
	if (xmpp_connect_client(c->conn, c->acct.host, c->acct.port, on_conn, c) != XMPP_EOK) {
		c->connecting = false;
		c->reconnect_at = now_ms() + 1000;
	}
	return 0;
}

static void
queue_push(struct client *c, char *text)
{
	if (c->nq == c->capq) {
		c->capq = c->capq ? c->capq * 2 : 64;
		c->queue = realloc(c->queue, c->capq * sizeof(*c->queue));
	}
	c->queue[c->nq++] = text;
}

static int
cmd_run(int argc, char **argv, bool raw)
{
	struct client c;
	const char *config = arg(argc, argv, "-c", NULL);
	char line[8192];
	size_t linelen = 0;
	bool eof = false, quit = false;
	uint64_t quiet_until = 0;

	memset(&c, 0, sizeof(c));
	c.to = arg(argc, argv, "--to", NULL);
	c.raw = raw;
	c.raw_count = atol(arg(argc, argv, "--count", "0"));
	if (config == NULL || c.to == NULL || mw_omemo_account_load(&c.acct, config) != 0) {
		fprintf(stderr, "mwclient: bad arguments or account file\n");
		return 2;
	}
	if (!raw && (mw_omemo_db_open(c.acct.db, true, &c.db) != 0 ||
	    mw_omemo_open(&c.o, c.db, c.acct.jid) != 0)) {
		fprintf(stderr, "mwclient: cannot open %s\n", c.acct.db);
		return 1;
	}
	/* the first send builds the session that the next ones reuse with
	 * mw_omemo_encrypt, which speaks legacy OMEMO: so does the first */
	if (!raw)
		mw_omemo_set_send_version(c.o, MW_OMEMO_VERSION_LEGACY);
	xmpp_initialize();
	if ((c.x = xmpp_ctx_new(NULL, NULL)) == NULL ||
	    (!raw && mw_omemo_set_transport(c.o, c.x, send_stanza, &c) != 0))
		return 1;
	if (!raw)
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	start_conn(&c);
	while (!quit) {
		xmpp_run_once(c.x, c.nq > 0 && c.connected ? 0 : 10);
		if (!raw)
			mw_omemo_tick(c.o);
		if (!c.connected && !c.connecting && c.reconnect_at != 0 &&
		    now_ms() >= c.reconnect_at)
			start_conn(&c);
		if (raw) {
			if (c.connected && c.sent < (unsigned long)c.raw_count) {
				/* batches, so the socket is written between them */
				for (int k = 0; k < 50 && c.sent < (unsigned long)c.raw_count; k++)
					send_raw(&c, (long)c.sent++);
				if (c.sent == (unsigned long)c.raw_count) {
					out("E sent %lu", c.sent);
					quiet_until = now_ms() + 500;
				}
			}
			if (quiet_until && now_ms() > quiet_until &&
			    xmpp_conn_send_queue_len(c.conn) == 0)
				quit = true;
			continue;
		}
		/* stdin commands */
		while (!eof) {
			ssize_t n = read(0, line + linelen, sizeof(line) - 1 - linelen);
			char *nl;

			if (n == 0)
				eof = true;
			if (n <= 0)
				break;
			linelen += (size_t)n;
			line[linelen] = '\0';
			while ((nl = memchr(line, '\n', linelen)) != NULL) {
				size_t len;
				char *text;

				*nl = '\0';
				if (strncmp(line, "send ", 5) == 0) {
					if ((text = slurp(line + 5, &len)) != NULL)
						queue_push(&c, text);
					else
						out("E no-file %s", line + 5);
				} else if (strcmp(line, "quit") == 0)
					quit = true;
				linelen -= (size_t)(nl + 1 - line);
				memmove(line, nl + 1, linelen);
			}
			if (linelen == sizeof(line) - 1)
				linelen = 0;
		}
		if (c.connected && c.nq > 0) {
			/* before the session exists: one message, then wait for it */
			size_t k, max = c.session ? 100 : 1;
			static uint64_t first_at;

			if (!c.session && (c.first != NULL ||
			    (first_at != 0 && now_ms() - first_at < 1000)))
				continue;
			if (!c.session)
				first_at = now_ms();
			for (k = 0; k < max && k < c.nq; k++) {
				send_one(&c, c.queue[k]);
				free(c.queue[k]);
			}
			c.nq -= k;
			memmove(c.queue, c.queue + k, c.nq * sizeof(*c.queue));
			out("E sent %lu", c.sent);
		}
		if (eof && c.nq == 0 && xmpp_conn_send_queue_len(c.conn) == 0)
			; /* keep receiving until quit or killed */
	}
	if (c.connected) {
		xmpp_disconnect(c.conn);
		for (int i = 0; i < 20 && !xmpp_conn_is_disconnected(c.conn); i++)
			xmpp_run_once(c.x, 50);
	}
	if (c.o != NULL)
		mw_omemo_close(c.o);
	if (c.conn != NULL)
		xmpp_conn_release(c.conn);
	xmpp_ctx_free(c.x);
	xmpp_shutdown();
	if (c.db != NULL)
		sqlite3_close(c.db);
	for (size_t i = 0; i < c.nq; i++)
		free(c.queue[i]);
	free(c.queue);
	mw_omemo_account_free(&c.acct);
	return 0;
}

/* ---- prekey-flood ---- */

struct flood {
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	bool connected, failed;
	xmpp_stanza_t *bundle;		/* copy of DEV's <bundle> */
};

static int
on_bundle(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct flood *f = arg;
	xmpp_stanza_t *ps, *items, *item, *b;

	(void)conn;
	if ((ps = xmpp_stanza_get_child_by_name(st, "pubsub")) != NULL &&
	    (items = xmpp_stanza_get_child_by_name(ps, "items")) != NULL &&
	    (item = xmpp_stanza_get_child_by_name(items, "item")) != NULL &&
	    (b = xmpp_stanza_get_child_by_name_and_ns(item, "bundle", MW_OMEMO_NS)) != NULL)
		f->bundle = xmpp_stanza_copy(b);
	if (f->bundle == NULL)
		f->failed = true;
	return 0;
}

static void
on_flood_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct flood *f = arg;

	(void)conn;
	(void)error;
	(void)se;
	f->connected = ev == XMPP_CONN_CONNECT;
	if (!f->connected)
		f->failed = true;
}

/* One PreKeySignalMessage from a new session (fresh identity, or a copy of
 * clone's), sent over f->conn. */
static int
flood_one(struct flood *f, const struct mw_omemo_account *acct, sqlite3 *clone,
    const char *to, uint32_t dev, long i)
{
	sqlite3 *db = NULL;
	sqlite3_backup *bk;
	struct mw_omemo *o = NULL;
	xmpp_stanza_t *msg = NULL;
	enum mw_omemo_trust t;
	char fp[MW_OMEMO_FP_HEXLEN + 1], text[64];
	int rc = -1;

	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		goto out;
	if (clone != NULL) {
		if ((bk = sqlite3_backup_init(db, "main", clone, "main")) == NULL)
			goto out;
		(void)sqlite3_backup_step(bk, -1);
		if (sqlite3_backup_finish(bk) != SQLITE_OK)
			goto out;
	}
	snprintf(text, sizeof(text), "prekey flood %ld", i);
	if (mw_omemo_open(&o, db, acct->jid) != 0 ||
	    mw_omemo_process_bundle(o, to, dev, f->bundle) != 0 ||
	    mw_omemo_device_trust(o, to, dev, &t, fp) != 0 ||
	    mw_omemo_trust(o, to, fp) != 0 ||
	    mw_omemo_encrypt(o, f->x, to, &dev, 1, text, strlen(text), &msg) != 0)
		goto out;
	xmpp_send(f->conn, msg);
	xmpp_stanza_release(msg);
	rc = 0;
out:
	if (o != NULL)
		mw_omemo_close(o);
	if (db != NULL)
		sqlite3_close(db);
	return rc;
}

static int
cmd_prekey_flood(int argc, char **argv)
{
	struct mw_omemo_account acct;
	struct flood f;
	const char *config = arg(argc, argv, "-c", NULL), *to = arg(argc, argv, "--to", NULL);
	const char *clone_path = arg(argc, argv, "--clone", NULL);
	long count = atol(arg(argc, argv, "--count", "1"));
	double per_sec = atof(arg(argc, argv, "--per-sec", "0"));
	uint32_t dev = (uint32_t)strtoul(arg(argc, argv, "--device", "0"), NULL, 10);
	sqlite3 *clone = NULL;
	xmpp_stanza_t *iq = NULL, *ps, *items;
	char node[128];
	uint64_t deadline, t0;
	long sent = 0, failed = 0;

	memset(&f, 0, sizeof(f));
	memset(&acct, 0, sizeof(acct));
	if (config == NULL || to == NULL || dev == 0 || count <= 0 ||
	    mw_omemo_account_load(&acct, config) != 0) {
		fprintf(stderr, "mwclient: bad arguments or account file\n");
		return 2;
	}
	if (clone_path != NULL && sqlite3_open_v2(clone_path, &clone,
	    SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "mwclient: cannot open %s\n", clone_path);
		return 1;
	}
	xmpp_initialize();
	if ((f.x = xmpp_ctx_new(NULL, NULL)) == NULL || (f.conn = xmpp_conn_new(f.x)) == NULL ||
	    mw_omemo_account_apply(&acct, f.conn) != 0 ||
	    xmpp_connect_client(f.conn, acct.host, acct.port, on_flood_conn, &f) != XMPP_EOK)
		return 1;
	for (deadline = now_ms() + 30000; !f.connected && !f.failed && now_ms() < deadline;)
		xmpp_run_once(f.x, 10);
	if (!f.connected)
		return 1;
	/* the device's bundle, once */
	snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES, dev);
	if ((iq = xmpp_iq_new(f.x, "get", "flood-bundle")) == NULL ||
	    (ps = xmpp_stanza_new(f.x)) == NULL || (items = xmpp_stanza_new(f.x)) == NULL)
		return 1;
	xmpp_stanza_set_to(iq, to);
	xmpp_stanza_set_name(ps, "pubsub");
	xmpp_stanza_set_ns(ps, "http://jabber.org/protocol/pubsub");
	xmpp_stanza_set_name(items, "items");
	xmpp_stanza_set_attribute(items, "node", node);
	xmpp_stanza_add_child_ex(ps, items, 0);
	xmpp_stanza_add_child_ex(iq, ps, 0);
	xmpp_id_handler_add(f.conn, on_bundle, "flood-bundle", &f);
	xmpp_send(f.conn, iq);
	xmpp_stanza_release(iq);
	for (deadline = now_ms() + 30000; f.bundle == NULL && !f.failed && now_ms() < deadline;)
		xmpp_run_once(f.x, 10);
	if (f.bundle == NULL) {
		out("E no-bundle");
		return 1;
	}
	t0 = now_ms();
	for (long i = 0; i < count; i++) {
		if (flood_one(&f, &acct, clone, to, dev, i) == 0)
			sent++;
		else
			failed++;
		/* let the socket drain; pace when asked */
		do
			xmpp_run_once(f.x, 0);
		while (per_sec > 0 && (double)(now_ms() - t0) < (double)(i + 1) * 1000.0 / per_sec &&
		    (usleep(2000), true));
	}
	for (deadline = now_ms() + 30000; xmpp_conn_send_queue_len(f.conn) > 0 &&
	    now_ms() < deadline;)
		xmpp_run_once(f.x, 10);
	out("E sent %ld failed %ld", sent, failed);
	xmpp_disconnect(f.conn);
	for (int i = 0; i < 20 && !xmpp_conn_is_disconnected(f.conn); i++)
		xmpp_run_once(f.x, 50);
	xmpp_stanza_release(f.bundle);
	xmpp_conn_release(f.conn);
	xmpp_ctx_free(f.x);
	xmpp_shutdown();
	if (clone != NULL)
		sqlite3_close(clone);
	mw_omemo_account_free(&acct);
	return failed == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "sign") == 0)
		return cmd_sign(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc, argv, false);
	if (argc >= 2 && strcmp(argv[1], "raw") == 0)
		return cmd_run(argc, argv, true);
	if (argc >= 2 && strcmp(argv[1], "prekey-flood") == 0)
		return cmd_prekey_flood(argc, argv);
	fprintf(stderr, "usage: mwclient sign|run|raw|prekey-flood ...\n");
	return 2;
}
