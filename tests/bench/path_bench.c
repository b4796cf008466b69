/*
 * path_bench.c: the whole path of a moonwire job through a real XMPP server
 * (issue 5), and the floor it is compared with.  Driven by
 * tests/bench/run.py, which starts Prosody, the agents and the echo
 * responder, and compiles this file against build/lib*.a like
 * omemo_bench.c.  Output: one JSON object per line on stdout.
 *
 *   path_bench latency  --op CONF [--op CONF ...] --to JID [--n N] [--warmup N]
 *                       [--raw FILE]
 *   path_bench throughput --op CONF ... --to JID --inflight K [--seconds S]
 *                       [--warmup-s S]
 *   path_bench fanout   --op CONF --to JID [--to JID ...] [--rounds R]
 *   path_bench echo     --account CONF [--nodelay 0|1]
 *   path_bench floor    --account CONF --to JID [--n N] [--warmup N]
 *                       [--inflight K] [--seconds S]
 *
 * moonwire modes: one persistent connection per operator identity (an
 * account file with `db` and `signing_key`, as `moonwire send` reads).  A
 * job is what `moonwire send` does, in-process: mw_envelope_build +
 * mw_sshsig_sign + mw_envelope_attach, then mw_omemo_encrypt (established
 * session) or mw_omemo_send (none yet: device list and bundle fetch,
 * session building), xmpp_send; the result is mw_omemo_decrypt +
 * mw_omemo_commit + mw_result_message_parse, matched by job id.  The
 * timer of a job runs from before signing to after the result is parsed.
 *
 *   latency     one job in flight, from the first --op to --to, N timed
 *               after W untimed; --raw writes one line per timed job
 *               ("job_id e2e_us sign_us encrypt_us decrypt_us client_us")
 *               for the per-stage join with the agent's log.
 *   throughput  K jobs in flight, spread evenly over the --op identities
 *               (K must divide by their number, or use fewer); every
 *               result immediately sends that identity's next job.
 *               Counted over --seconds after --warmup-s.
 *   fanout      one job from the first --op to every --to at once; round 1
 *               goes through mw_omemo_send where no session exists yet
 *               (first contact for a fresh identity), the others through
 *               mw_omemo_encrypt.  Time until the last result is back.
 *
 * Floor modes: plain <message><body> request/reply between two minimal
 * libstrophe clients through the same server, no encryption, no job.
 *   echo        answers every <body> with the same body, to the sender's
 *               bare JID (as the agent does); prints {"bench":"echo_ready"}
 *               and runs until SIGTERM.
 *   floor       latency (one in flight) then throughput (K in flight).
 *   --pad N pads each body to N bytes; --shape omemo (give it to echo as
 *   well) wraps both directions in the elements of an OMEMO message with
 *   filler text: the server's cost for a job's stanza without the crypto.
 *
 * Nothing on the hot path waits on a timer: the loop's only block is
 * xmpp_run_once() with a 1 ms timeout, which returns as soon as data
 * arrives on any connection.  Client sockets set TCP_NODELAY (see
 * --nodelay for the echo responder, which mirrors the agent's choice).
 * Exit status 0 when every phase ran (even with lost or refused jobs,
 * which are counted), 2 when the benchmark could not run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#include "runtime/agent/agent.h"

#define MAX_OPS		16
#define MAX_TO		256
#define MAX_JOBS	512
#define PROGRAM		"return 1+1"
#define JOB_TIMEOUT_US	(10u * 1000000)

static xmpp_ctx_t *X;
static bool opt_nodelay = true;
static size_t opt_pad;		/* floor: pad each body to this many bytes */
static bool opt_shape;		/* floor/echo: OMEMO-shaped elements, no crypto */
static volatile sig_atomic_t g_stop;

static void
die(const char *what, int rc)
{
	fprintf(stderr, "path_bench: %s failed: %d (%s)\n", what, rc,
	    rc < 0 ? mw_omemo_strerror(rc) : "");
	exit(2);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array */
static double
pct(const uint64_t *v, size_t n, unsigned p)
{
	size_t r;

	if (n == 0)
		return -1;
	r = (n * p + 99) / 100;
	if (r == 0)
		r = 1;
	return (double)v[r - 1];
}

static double
median(uint64_t *v, size_t n)
{
	if (n == 0)
		return -1;
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* "p50_us":..,"p99_us":..,"mean_us":..,"min_us":..,"max_us":.. (sorts v) */
static void
stats_json(const char *prefix, uint64_t *v, size_t n)
{
	long double sum = 0;

	if (n == 0) {
		printf(",\"%sn\":0", prefix);
		return;
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf(",\"%sn\":%zu,\"%sp50_us\":%.1f,\"%sp99_us\":%.1f,\"%smean_us\":%.1f,"
	    "\"%smin_us\":%" PRIu64 ",\"%smax_us\":%" PRIu64, prefix, n, prefix,
	    median(v, n), prefix, pct(v, n, 99), prefix, (double)(sum / n), prefix,
	    v[0], prefix, v[n - 1]);
}

static size_t
num(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > 100000000)
		die("bad number", 0);
	return v;
}


static int
on_socket(xmpp_conn_t *conn, void *sock)
{
	int one = 1;

	if (opt_nodelay)
		(void)setsockopt(*(int *)sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return xmpp_sockopt_cb_keepalive(conn, sock);
}

/* ---- operators and jobs (moonwire modes) ---- */

struct op {
	int idx;
	struct mw_omemo_account acct;
	sqlite3 *db;
	struct mw_omemo *o;
	struct mw_ssh_signer *key;
	xmpp_conn_t *conn;
	bool connected, failed;
	unsigned quota, inflight;
	size_t next_to;			/* throughput: round-robin over targets */
};

struct job {
	bool used;
	struct op *op;
	const char *to;
	char id[MW_JOB_ID_MAX + 1];
	bool async;			/* went through mw_omemo_send */
	uint64_t t0, sign_us, encrypt_us, decrypt_us, client_us, e2e_us;
	bool done, ok;
};

static struct op ops[MAX_OPS];
static size_t nops;
static const char *tos[MAX_TO];
static size_t nto;
static struct job jobs[MAX_JOBS];

/* completion hook of the running phase */
static void (*on_done)(struct job *j);
static size_t n_sent_fail, n_bad_msg, n_unmatched;

static void
op_send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct op *op = arg;

	if (op->conn != NULL && op->connected)
		xmpp_send(op->conn, st);
}

static struct job *
job_find(const char *id)
{
	for (size_t i = 0; i < MAX_JOBS; i++)
		if (jobs[i].used && strcmp(jobs[i].id, id) == 0)
			return &jobs[i];
	return NULL;
}

static void
job_release(struct job *j)
{
	j->op->inflight--;
	j->used = false;
}

static void
on_async_sent(struct mw_omemo *o, int err, void *arg)
{
	struct job *j = arg;

	(void)o;
	if (err != 0) {
		fprintf(stderr, "path_bench: send to %s: %s\n", j->to, mw_omemo_strerror(err));
		n_sent_fail++;
		j->done = true;
		j->ok = false;
		j->e2e_us = now_us() - j->t0;
		if (on_done != NULL)
			on_done(j);
		job_release(j);
	}
}

/* Signs and sends one job; NULL when no slot (or failure counted). */
static struct job *
job_start(struct op *op, const char *to)
{
	struct mw_envelope_fields f;
	struct job *j = NULL;
	char err[512], *part = NULL, *sig = NULL, *env = NULL;
	size_t partlen, siglen, envlen;
	xmpp_stanza_t *st = NULL;
	uint64_t t1, t2;
	int64_t now;
	int rc;

	for (size_t i = 0; i < MAX_JOBS; i++)
		if (!jobs[i].used) {
			j = &jobs[i];
			break;
		}
	if (j == NULL)
		die("job table full", 0);
	memset(j, 0, sizeof(*j));
	j->used = true;
	j->op = op;
	j->to = to;
	op->inflight++;
	j->t0 = now_us();
	now = (int64_t)time(NULL);
	memset(&f, 0, sizeof(f));
	f.audience = to;
	f.issued_at = now;
	f.not_after = now + 300;
	if (mw_envelope_build(&f, (const uint8_t *)PROGRAM, strlen(PROGRAM), &part,
	    &partlen, j->id, err, sizeof(err)) != 0 ||
	    mw_sshsig_sign(op->key, MW_JOB_NAMESPACE, (const uint8_t *)part, partlen,
	    &sig, &siglen, err, sizeof(err)) != 0 ||
	    mw_envelope_attach(part, partlen, sig, siglen, &env, &envlen, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "path_bench: signing: %s\n", err);
		die("sign", 0);
	}
	free(part);
	free(sig);
	t1 = now_us();
	j->sign_us = t1 - j->t0;
	rc = mw_omemo_encrypt(op->o, X, to, NULL, 0, env, envlen, &st);
	if (rc == 0) {
		xmpp_send(op->conn, st);
		xmpp_stanza_release(st);
		t2 = now_us();
		j->encrypt_us = t2 - t1;
	} else if (rc == MW_OMEMO_E_NO_DEVICES) {
		/* no session yet: fetch the device list and bundles, build */
		j->async = true;
		rc = mw_omemo_send(op->o, to, env, envlen, on_async_sent, j);
		j->encrypt_us = now_us() - t1;
		if (rc != 0 && j->used && !j->done)
			on_async_sent(op->o, rc, j);
	} else {
		fprintf(stderr, "path_bench: encrypt to %s: %s\n", to, mw_omemo_strerror(rc));
		die("encrypt", rc);
	}
	free(env);
	return j;
}

static int
op_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct op *op = arg;
	struct mw_omemo_msg m;
	struct mw_result_msg r;
	struct job *j;
	uint64_t t_rx = now_us(), t_dec, t_end;
	int rc;

	(void)conn;
	if (!mw_omemo_is_encrypted(st))
		return 1;
	rc = mw_omemo_decrypt(op->o, st, &m);
	if (rc == MW_OMEMO_OK)
		rc = mw_omemo_commit(op->o);
	t_dec = now_us();
	if (rc != MW_OMEMO_OK) {
		if (rc != MW_OMEMO_DROPPED && rc != MW_OMEMO_E_DUPLICATE) {
			fprintf(stderr, "path_bench: message from %s: %s\n",
			    m.from ? m.from : "?", mw_omemo_strerror(rc));
			n_bad_msg++;
		}
		mw_omemo_msg_free(&m);
		return 1;
	}
	if (mw_result_message_parse((const char *)m.plaintext, m.len, &r) != 0) {
		n_bad_msg++;
		mw_omemo_msg_free(&m);
		return 1;
	}
	t_end = now_us();
	j = job_find(r.job_id);
	if (j == NULL || j->op != op || strcmp(j->to, m.from) != 0 ||
	    m.trust != MW_OMEMO_TRUST_VERIFIED) {
		n_unmatched++;
	} else {
		j->decrypt_us = t_dec - t_rx;
		j->client_us = j->sign_us + (j->async ? 0 : j->encrypt_us) + (t_end - t_rx);
		j->e2e_us = t_end - j->t0;
		j->done = true;
		j->ok = r.refusal == NULL && r.status != NULL && strcmp(r.status, "ok") == 0;
		if (!j->ok)
			fprintf(stderr, "path_bench: job %s: %s %s\n", j->id,
			    r.refusal ? r.refusal : (r.status ? r.status : "?"),
			    r.error ? r.error : "");
		if (on_done != NULL)
			on_done(j);
		job_release(j);
	}
	mw_result_msg_free(&r);
	mw_omemo_msg_free(&m);
	return 1;
}

static void
op_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct op *op = arg;
	xmpp_stanza_t *p;
	int rc;

	(void)se;
	if (ev != XMPP_CONN_CONNECT) {
		fprintf(stderr, "path_bench: %s disconnected (error %d)\n", op->acct.jid, error);
		op->connected = false;
		op->failed = true;
		return;
	}
	op->connected = true;
	xmpp_handler_add(conn, op_on_message, NULL, "message", NULL, op);
	if ((rc = mw_omemo_attach(op->o, conn)) != 0 || (rc = mw_omemo_start(op->o)) != 0)
		die("omemo start", rc);
	if ((p = xmpp_presence_new(X)) != NULL) {
		xmpp_send(conn, p);
		xmpp_stanza_release(p);
	}
}

static void
ops_open(void)
{
	char err[512];
	uint64_t deadline;
	bool all;

	for (size_t i = 0; i < nops; i++) {
		struct op *op = &ops[i];
		const char *conf = op->acct.jid;	/* stashed path, see main */
		char *keypath;
		int rc;

		op->acct.jid = NULL;
		if (mw_omemo_account_load(&op->acct, conf) != 0 || op->acct.db == NULL)
			die("account file", 0);
		if ((keypath = mw_config_value(conf, "signing_key")) == NULL)
			die("signing_key in account file", 0);
		if (mw_ssh_signer_load(keypath, &op->key, err, sizeof(err)) != 0) {
			fprintf(stderr, "path_bench: %s: %s\n", keypath, err);
			die("signer", 0);
		}
		free(keypath);
		if ((rc = mw_omemo_db_open(op->acct.db, true, &op->db)) != 0 ||
		    (rc = mw_omemo_open(&op->o, op->db, op->acct.jid)) != 0)
			die("omemo open", rc);
		/* established jobs go through mw_omemo_encrypt (legacy): the
		 * first contact builds a legacy session too */
		mw_omemo_set_send_version(op->o, MW_OMEMO_VERSION_LEGACY);
		if ((op->conn = xmpp_conn_new(X)) == NULL ||
		    mw_omemo_account_apply(&op->acct, op->conn) != 0 ||
		    mw_omemo_set_transport(op->o, X, op_send_stanza, op) != 0)
			die("connection setup", 0);
		/* a client that does not resume, as `moonwire send` */
		xmpp_conn_set_flags(op->conn, xmpp_conn_get_flags(op->conn) |
		    XMPP_CONN_FLAG_DISABLE_SM);
		xmpp_conn_set_sockopt_callback(op->conn, on_socket);
		if (xmpp_connect_client(op->conn, op->acct.host, op->acct.port, op_on_conn,
		    op) != XMPP_EOK)
			die("connect", 0);
	}
	deadline = now_us() + 20000000;
	do {
		xmpp_run_once(X, 1);
		all = true;
		for (size_t i = 0; i < nops; i++) {
			if (ops[i].failed)
				die("login", 0);
			all = all && ops[i].connected;
		}
	} while (!all && now_us() < deadline);
	if (!all)
		die("login timeout", 0);
	/* let the bundle / device-list publication settle (not timed) */
	deadline = now_us() + 300000;
	while (now_us() < deadline)
		xmpp_run_once(X, 1);
}

static void
ops_close(void)
{
	for (size_t i = 0; i < nops; i++) {
		struct op *op = &ops[i];

		if (op->connected)
			xmpp_disconnect(op->conn);
	}
	for (int k = 0; k < 200; k++) {
		bool all = true;

		for (size_t i = 0; i < nops; i++)
			all = all && xmpp_conn_is_disconnected(ops[i].conn);
		if (all)
			break;
		xmpp_run_once(X, 5);
	}
	for (size_t i = 0; i < nops; i++) {
		struct op *op = &ops[i];

		mw_omemo_close(op->o);
		xmpp_conn_release(op->conn);
		sqlite3_close(op->db);
		mw_ssh_signer_free(op->key);
		mw_omemo_account_free(&op->acct);
	}
}

/* Runs the loop until no job of ours is in flight or the deadline; the
 * jobs still out are counted lost and dropped.  Returns the number lost. */
static size_t
drain(uint64_t timeout_us)
{
	uint64_t deadline = now_us() + timeout_us, tick = now_us() + 1000000;
	size_t lost = 0;

	for (;;) {
		bool any = false;

		for (size_t i = 0; i < MAX_JOBS; i++)
			any = any || jobs[i].used;
		if (!any || now_us() >= deadline)
			break;
		xmpp_run_once(X, 1);
		if (now_us() >= tick) {
			tick = now_us() + 1000000;
			for (size_t i = 0; i < nops; i++)
				mw_omemo_tick(ops[i].o);
		}
		for (size_t i = 0; i < nops; i++)
			if (ops[i].failed)
				die("connection lost", 0);
	}
	for (size_t i = 0; i < MAX_JOBS; i++)
		if (jobs[i].used) {
			fprintf(stderr, "path_bench: job %s to %s: no result\n", jobs[i].id,
			    jobs[i].to);
			job_release(&jobs[i]);
			lost++;
		}
	return lost;
}

/* ---- latency ---- */

static struct {
	uint64_t *e2e, *sign, *enc, *dec, *client;
	size_t n, cap, not_ok;
	bool record;
	FILE *raw;
} lat;

static void
lat_done(struct job *j)
{
	if (!lat.record)
		return;
	if (!j->ok) {
		lat.not_ok++;
		return;
	}
	if (lat.n == lat.cap)
		return;
	lat.e2e[lat.n] = j->e2e_us;
	lat.sign[lat.n] = j->sign_us;
	lat.enc[lat.n] = j->encrypt_us;
	lat.dec[lat.n] = j->decrypt_us;
	lat.client[lat.n] = j->client_us;
	lat.n++;
	if (lat.raw != NULL)
		fprintf(lat.raw, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
		    "\n", j->id, j->e2e_us, j->sign_us, j->encrypt_us, j->decrypt_us,
		    j->client_us);
}

static void
run_latency(size_t n, size_t warmup, const char *raw)
{
	size_t lost = 0;
	uint64_t t_start;

	lat.cap = n;
	lat.e2e = calloc(n, sizeof(uint64_t));
	lat.sign = calloc(n, sizeof(uint64_t));
	lat.enc = calloc(n, sizeof(uint64_t));
	lat.dec = calloc(n, sizeof(uint64_t));
	lat.client = calloc(n, sizeof(uint64_t));
	if (lat.e2e == NULL || lat.sign == NULL || lat.enc == NULL || lat.dec == NULL ||
	    lat.client == NULL)
		die("calloc", 0);
	if (raw != NULL && (lat.raw = fopen(raw, "w")) == NULL)
		die("open --raw", errno);
	on_done = lat_done;
	for (size_t i = 0; i < warmup; i++) {
		job_start(&ops[0], tos[0]);
		lost += drain(JOB_TIMEOUT_US);
	}
	lat.record = true;
	t_start = now_us();
	for (size_t i = 0; i < n + lat.not_ok && lat.n < n; i++) {
		job_start(&ops[0], tos[0]);
		lost += drain(JOB_TIMEOUT_US);
		if (lost > n / 10 + 10)
			break;
	}
	printf("{\"bench\":\"latency\",\"to\":\"%s\",\"warmup\":%zu,\"lost\":%zu,"
	    "\"not_ok\":%zu,\"seconds\":%.3f", tos[0], warmup, lost, lat.not_ok,
	    (now_us() - t_start) / 1e6);
	stats_json("", lat.e2e, lat.n);
	stats_json("sign_", lat.sign, lat.n);
	stats_json("encrypt_", lat.enc, lat.n);
	stats_json("decrypt_", lat.dec, lat.n);
	stats_json("client_", lat.client, lat.n);
	printf("}\n");
	fflush(stdout);
	if (lat.raw != NULL)
		fclose(lat.raw);
}

/* ---- throughput ---- */

static struct {
	bool counting, stopping;
	size_t done, not_ok, started;
	uint64_t *e2e;
	size_t n, cap;
} tp;

static void
tp_done(struct job *j)
{
	if (tp.counting) {
		tp.done++;
		if (!j->ok)
			tp.not_ok++;
		else if (tp.n < tp.cap)
			tp.e2e[tp.n++] = j->e2e_us;
	}
}

static void
run_throughput(unsigned inflight, double seconds, double warmup_s)
{
	uint64_t t0, t_count = 0, t_end = 0, tick;
	size_t senders = nops < inflight ? nops : inflight, lost;

	while (inflight % senders != 0)
		senders--;
	tp.cap = 4000000;
	if ((tp.e2e = calloc(tp.cap, sizeof(uint64_t))) == NULL)
		die("calloc", 0);
	on_done = tp_done;
	for (size_t i = 0; i < senders; i++)
		ops[i].quota = inflight / senders;
	t0 = now_us();
	tick = t0 + 1000000;
	for (;;) {
		uint64_t t = now_us();

		if (!tp.counting && t - t0 >= (uint64_t)(warmup_s * 1e6)) {
			tp.counting = true;
			t_count = t;
		}
		if (tp.counting && t - t_count >= (uint64_t)(seconds * 1e6)) {
			t_end = t;
			break;
		}
		for (size_t i = 0; i < senders; i++)
			while (ops[i].inflight < ops[i].quota) {
				job_start(&ops[i], tos[ops[i].next_to++ % nto]);
				tp.started++;
			}
		xmpp_run_once(X, 1);
		if (t >= tick) {
			tick = t + 1000000;
			for (size_t i = 0; i < nops; i++)
				mw_omemo_tick(ops[i].o);
		}
		for (size_t i = 0; i < nops; i++)
			if (ops[i].failed)
				die("connection lost", 0);
	}
	tp.counting = false;
	lost = drain(JOB_TIMEOUT_US);
	printf("{\"bench\":\"throughput\",\"inflight\":%u,\"senders\":%zu,"
	    "\"per_sender\":%u,\"seconds\":%.3f,\"jobs\":%zu,\"not_ok\":%zu,\"lost\":%zu,"
	    "\"jobs_per_s\":%.1f", inflight, senders, inflight / (unsigned)senders,
	    (t_end - t_count) / 1e6, tp.done, tp.not_ok, lost,
	    tp.done / ((t_end - t_count) / 1e6));
	stats_json("", tp.e2e, tp.n);
	printf("}\n");
	fflush(stdout);
	free(tp.e2e);
}

/* ---- fan-out ---- */

static struct {
	size_t done, ok;
	uint64_t last_us;
	uint64_t *each;
} fo;

static void
fo_done(struct job *j)
{
	fo.each[fo.done++] = j->e2e_us;
	if (j->ok)
		fo.ok++;
	if (j->e2e_us > fo.last_us)
		fo.last_us = j->e2e_us;
}

static void
run_fanout(size_t rounds)
{
	if ((fo.each = calloc(nto, sizeof(uint64_t))) == NULL)
		die("calloc", 0);
	on_done = fo_done;
	for (size_t r = 0; r < rounds; r++) {
		uint64_t t0 = now_us(), all_us;
		size_t lost, async = 0;

		fo.done = fo.ok = 0;
		fo.last_us = 0;
		for (size_t i = 0; i < nto; i++) {
			struct job *j = job_start(&ops[0], tos[i]);

			/* one clock for the whole round: the first job's t0 */
			j->t0 = t0;
			async += j->async;
		}
		lost = drain(30000000);
		all_us = now_us() - t0;
		printf("{\"bench\":\"fanout\",\"round\":%zu,\"kind\":\"%s\",\"agents\":%zu,"
		    "\"ok\":%zu,\"lost\":%zu,\"session_building\":%zu,\"all_us\":%" PRIu64
		    ",\"last_result_us\":%" PRIu64, r + 1, async ? "first_contact" :
		    "established", nto, fo.ok, lost, async, lost ? all_us : fo.last_us,
		    fo.last_us);
		stats_json("each_", fo.each, fo.done);
		printf("}\n");
		fflush(stdout);
	}
	free(fo.each);
}

/* ---- floor: plain request / reply ---- */

struct plain {
	struct mw_omemo_account acct;
	xmpp_conn_t *conn;
	bool connected, failed;
	const char *to;
};

static struct plain P;

static struct {
	uint64_t t0[MAX_JOBS];
	bool used[MAX_JOBS];
	unsigned inflight;
	uint64_t seq;
	uint64_t *e2e;
	size_t n, cap, done;
	bool record, counting;
} fl;

static void
plain_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct plain *p = arg;
	xmpp_stanza_t *pres;

	(void)se;
	(void)conn;
	if (ev != XMPP_CONN_CONNECT) {
		fprintf(stderr, "path_bench: %s disconnected (error %d)\n", p->acct.jid, error);
		p->connected = false;
		p->failed = true;
		return;
	}
	p->connected = true;
	if ((pres = xmpp_presence_new(X)) != NULL) {
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
	}
}

static void
plain_open(const char *conf, bool disable_sm)
{
	uint64_t deadline;

	if (mw_omemo_account_load(&P.acct, conf) != 0)
		die("account file", 0);
	if ((P.conn = xmpp_conn_new(X)) == NULL || mw_omemo_account_apply(&P.acct, P.conn) != 0)
		die("connection setup", 0);
	if (disable_sm)
		xmpp_conn_set_flags(P.conn, xmpp_conn_get_flags(P.conn) |
		    XMPP_CONN_FLAG_DISABLE_SM);
	xmpp_conn_set_sockopt_callback(P.conn, on_socket);
	if (xmpp_connect_client(P.conn, P.acct.host, P.acct.port, plain_on_conn, &P) !=
	    XMPP_EOK)
		die("connect", 0);
	deadline = now_us() + 20000000;
	while (!P.connected && !P.failed && now_us() < deadline)
		xmpp_run_once(X, 1);
	if (!P.connected)
		die("login", 0);
}

static void
plain_close(void)
{
	if (P.connected) {
		xmpp_disconnect(P.conn);
		for (int k = 0; k < 200 && !xmpp_conn_is_disconnected(P.conn); k++)
			xmpp_run_once(X, 5);
	}
	xmpp_conn_release(P.conn);
	mw_omemo_account_free(&P.acct);
}

/* Adds a child element with optional attribute and text. */
static xmpp_stanza_t *
add_child(xmpp_stanza_t *parent, const char *name, const char *ns,
    const char *attr, const char *value, const char *text)
{
	xmpp_stanza_t *c = xmpp_stanza_new(X), *t;

	if (c == NULL || xmpp_stanza_set_name(c, name) != XMPP_EOK)
		die("stanza", 0);
	if (ns != NULL)
		xmpp_stanza_set_ns(c, ns);
	if (attr != NULL)
		xmpp_stanza_set_attribute(c, attr, value);
	if (text != NULL) {
		if ((t = xmpp_stanza_new(X)) == NULL)
			die("stanza", 0);
		xmpp_stanza_set_text(t, text);
		xmpp_stanza_add_child_ex(c, t, 0);
	}
	xmpp_stanza_add_child_ex(parent, c, 0);
	return c;
}

/*
 * --shape omemo: the elements and sizes of a legacy OMEMO message (header,
 * key, iv, payload, EME, store hint, fallback body) around filler text, no
 * cryptography: what the server pays for a job's stanza beside a plain one.
 */
static void
add_omemo_shape(xmpp_stanza_t *m)
{
	static char key[161], iv[17], payload[1025];
	xmpp_stanza_t *enc, *hdr;

	if (key[0] == '\0') {
		memset(key, 'K', sizeof(key) - 1);
		memset(iv, 'I', sizeof(iv) - 1);
		memset(payload, 'P', sizeof(payload) - 1);
	}
	enc = add_child(m, "encrypted", "eu.siacs.conversations.axolotl", NULL, NULL, NULL);
	hdr = add_child(enc, "header", NULL, "sid", "123456789", NULL);
	add_child(hdr, "key", NULL, "rid", "987654321", key);
	add_child(hdr, "iv", NULL, NULL, NULL, iv);
	add_child(enc, "payload", NULL, NULL, NULL, payload);
	xmpp_stanza_set_attribute(add_child(m, "encryption", "urn:xmpp:eme:0", "namespace",
	    "eu.siacs.conversations.axolotl", NULL), "name", "OMEMO");
	add_child(m, "store", "urn:xmpp:hints", NULL, NULL, NULL);
}

static void
plain_send(const char *to, const char *body)
{
	xmpp_stanza_t *m = xmpp_message_new(X, "chat", to, NULL);

	if (m == NULL || xmpp_message_set_body(m, body) != XMPP_EOK)
		die("message", 0);
	if (opt_shape)
		add_omemo_shape(m);
	xmpp_send(P.conn, m);
	xmpp_stanza_release(m);
}

static int
echo_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	const char *from = xmpp_stanza_get_from(st), *type = xmpp_stanza_get_type(st);
	char *body, *bare;

	(void)conn;
	(void)arg;
	if (from == NULL || (type != NULL && strcmp(type, "error") == 0))
		return 1;
	if ((body = xmpp_message_get_body(st)) == NULL)
		return 1;
	if ((bare = xmpp_jid_bare(X, from)) != NULL) {
		plain_send(bare, body);
		xmpp_free(X, bare);
	}
	xmpp_free(X, body);
	return 1;
}

static void
on_term(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void
run_echo(const char *conf)
{
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	/* stream management as the server offers it, like the agent */
	plain_open(conf, false);
	xmpp_handler_add(P.conn, echo_on_message, NULL, "message", NULL, NULL);
	printf("{\"bench\":\"echo_ready\",\"jid\":\"%s\"}\n", P.acct.jid);
	fflush(stdout);
	while (!g_stop && !P.failed)
		xmpp_run_once(X, 10);
	plain_close();
}

static void
floor_send(void)
{
	char body[8192];
	size_t slot = 0;

	while (slot < MAX_JOBS && fl.used[slot])
		slot++;
	if (slot == MAX_JOBS)
		die("slots", 0);
	fl.used[slot] = true;
	fl.inflight++;
	snprintf(body, sizeof(body), "%zu %" PRIu64 " " PROGRAM, slot, ++fl.seq);
	/* --pad: the same request at the size of a job's stanza */
	if (strlen(body) + 1 < opt_pad && opt_pad < sizeof(body)) {
		size_t k = strlen(body);
		body[k++] = ' ';
		memset(body + k, 'x', opt_pad - k);
		body[opt_pad] = '\0';
	}
	fl.t0[slot] = now_us();
	plain_send(P.to, body);
}

static int
floor_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	char *body;
	unsigned long slot;
	uint64_t t;

	(void)conn;
	(void)arg;
	if ((body = xmpp_message_get_body(st)) == NULL)
		return 1;
	slot = strtoul(body, NULL, 10);
	t = now_us();
	xmpp_free(X, body);
	if (slot >= MAX_JOBS || !fl.used[slot])
		return 1;
	fl.used[slot] = false;
	fl.inflight--;
	fl.done++;
	if ((fl.record || fl.counting) && fl.n < fl.cap)
		fl.e2e[fl.n++] = t - fl.t0[slot];
	return 1;
}

static void
floor_wait(uint64_t timeout_us)
{
	uint64_t deadline = now_us() + timeout_us;

	while (fl.inflight > 0 && now_us() < deadline && !P.failed)
		xmpp_run_once(X, 1);
	if (fl.inflight > 0) {
		fprintf(stderr, "path_bench: floor: %u replies missing\n", fl.inflight);
		memset(fl.used, 0, sizeof(fl.used));
		fl.inflight = 0;
	}
}

static void
run_floor(const char *conf, const char *to, size_t n, size_t warmup, unsigned inflight,
    double seconds)
{
	uint64_t t0, t_end;
	size_t done0;

	plain_open(conf, true);
	P.to = to;
	xmpp_handler_add(P.conn, floor_on_message, NULL, "message", NULL, NULL);
	fl.cap = 4000000;
	if ((fl.e2e = calloc(fl.cap, sizeof(uint64_t))) == NULL)
		die("calloc", 0);
	for (size_t i = 0; i < warmup; i++) {
		floor_send();
		floor_wait(JOB_TIMEOUT_US);
	}
	fl.record = true;
	t0 = now_us();
	for (size_t i = 0; i < n; i++) {
		floor_send();
		floor_wait(JOB_TIMEOUT_US);
	}
	fl.record = false;
	printf("{\"bench\":\"floor_latency\",\"to\":\"%s\",\"seconds\":%.3f", to,
	    (now_us() - t0) / 1e6);
	stats_json("", fl.e2e, fl.n);
	printf("}\n");
	fflush(stdout);
	/* throughput: K in flight; 0.5 s warm-up, then counted */
	fl.n = 0;
	t0 = now_us();
	done0 = 0;
	for (;;) {
		uint64_t t = now_us();

		if (!fl.counting && t - t0 >= 500000) {
			fl.counting = true;
			done0 = fl.done;
			t0 = t;
		}
		if (fl.counting && t - t0 >= (uint64_t)(seconds * 1e6))
			break;
		while (fl.inflight < inflight)
			floor_send();
		xmpp_run_once(X, 1);
		if (P.failed)
			die("connection lost", 0);
	}
	t_end = now_us();
	fl.counting = false;
	{
		size_t done = fl.done - done0;

		floor_wait(JOB_TIMEOUT_US);
		printf("{\"bench\":\"floor_throughput\",\"inflight\":%u,\"seconds\":%.3f,"
		    "\"msgs\":%zu,\"msgs_per_s\":%.1f", inflight, (t_end - t0) / 1e6, done,
		    done / ((t_end - t0) / 1e6));
	}
	stats_json("", fl.e2e, fl.n);
	printf("}\n");
	fflush(stdout);
	free(fl.e2e);
	plain_close();
}

int
main(int argc, char **argv)
{
	const char *mode, *account = NULL, *raw = NULL;
	size_t n = 2000, warmup = 100, rounds = 5;
	unsigned inflight = 8;
	double seconds = 5, warmup_s = 1;

	if (argc < 2)
		die("usage: path_bench MODE [options]", 0);
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];

		if (i + 1 >= argc)
			die("missing value for an option", 0);
		if (strcmp(o, "--op") == 0) {
			if (nops == MAX_OPS)
				die("too many --op", 0);
			ops[nops].idx = (int)nops;
			ops[nops++].acct.jid = argv[++i];	/* the path until ops_open */
		} else if (strcmp(o, "--to") == 0) {
			if (nto == MAX_TO)
				die("too many --to", 0);
			tos[nto++] = argv[++i];
		} else if (strcmp(o, "--account") == 0)
			account = argv[++i];
		else if (strcmp(o, "--n") == 0)
			n = num(argv[++i]);
		else if (strcmp(o, "--warmup") == 0)
			warmup = num(argv[++i]);
		else if (strcmp(o, "--inflight") == 0)
			inflight = (unsigned)num(argv[++i]);
		else if (strcmp(o, "--seconds") == 0)
			seconds = atof(argv[++i]);
		else if (strcmp(o, "--warmup-s") == 0)
			warmup_s = atof(argv[++i]);
		else if (strcmp(o, "--rounds") == 0)
			rounds = num(argv[++i]);
		else if (strcmp(o, "--raw") == 0)
			raw = argv[++i];
		else if (strcmp(o, "--nodelay") == 0)
			opt_nodelay = num(argv[++i]) != 0;
		else if (strcmp(o, "--pad") == 0)
			opt_pad = num(argv[++i]);
		else if (strcmp(o, "--shape") == 0)
			opt_shape = strcmp(argv[++i], "omemo") == 0;
		else
			die("unknown option", 0);
	}
	if (inflight == 0 || inflight > MAX_JOBS / 2 || n == 0)
		die("bad --inflight or --n", 0);
	signal(SIGPIPE, SIG_IGN);
	xmpp_initialize();
	if ((X = xmpp_ctx_new(NULL, NULL)) == NULL)
		die("xmpp_ctx_new", 0);
	if (strcmp(mode, "echo") == 0 || strcmp(mode, "floor") == 0) {
		if (account == NULL)
			die("--account", 0);
		if (strcmp(mode, "echo") == 0)
			run_echo(account);
		else {
			if (nto != 1)
				die("floor wants one --to", 0);
			run_floor(account, tos[0], n, warmup, inflight, seconds);
		}
	} else {
		if (nops == 0 || nto == 0)
			die("--op and --to", 0);
		ops_open();
		printf("{\"bench\":\"connected\",\"mode\":\"%s\",\"operators\":%zu,"
		    "\"targets\":%zu}\n", mode, nops, nto);
		fflush(stdout);
		if (strcmp(mode, "latency") == 0)
			run_latency(n, warmup, raw);
		else if (strcmp(mode, "throughput") == 0)
			run_throughput(inflight, seconds, warmup_s);
		else if (strcmp(mode, "fanout") == 0)
			run_fanout(rounds);
		else
			die("unknown mode", 0);
		if (n_sent_fail || n_bad_msg || n_unmatched)
			printf("{\"bench\":\"anomalies\",\"send_failed\":%zu,\"bad_messages\":%zu,"
			    "\"unmatched\":%zu}\n", n_sent_fail, n_bad_msg, n_unmatched);
		ops_close();
	}
	xmpp_ctx_free(X);
	xmpp_shutdown();
	return 0;
}
