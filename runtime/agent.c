/*
 * agent.c: `moonwire agent -c CONFIG`, the service on a device.
 *
 * It logs in to an XMPP account, decrypts OMEMO messages, authorizes each
 * signed job (spec/agent.md: device verified, signature by a listed signer
 * the policy allows for that JID, audience, time window, unseen job id),
 * journals it in the same transaction as the ratchet step, runs it in the
 * sandbox and sends the result back over the same session.
 *
 * Process model (design.md): the sandbox supervisor is exec'd before the
 * identity database or the account password are opened, so no secret was
 * ever in its memory; this process never runs Lua.
 *
 * Event loop: libstrophe has no way to wait on other descriptors, so the
 * agent polls the XMPP socket (learnt through the sockopt callback) and the
 * supervisor's socket itself, then lets libstrophe run without blocking.
 * A sandbox result is therefore handled the moment it arrives; the only
 * timers are maintenance (pings, OMEMO upkeep, reconnect backoff).
 *
 * Log: one line per event on stderr, "moonwire-agent: EVENT key=value ...",
 * prefixed with the UTC time outside journald.
 * Refusals are audit lines: "refused code=CODE ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <strophe.h>

#include "runtime/agent_int.h"

#define PING_INTERVAL_MS	60000
#define PING_TIMEOUT_MS		30000
#define TICK_MS			1000
#define BACKOFF_INITIAL_MS	1000
#define BACKOFF_MAX_MS		120000
/* a refused login or certificate is a configuration error, not a network
 * one: retried slowly (someone must fix the file or the server first) */
#define CONFIG_BACKOFF_INITIAL_MS 60000
#define CONFIG_BACKOFF_MAX_MS	600000
#define RATE_SLOTS		256	/* senders tracked by the rate limiter */
#define BARRIER_BATCH_MAX	4096	/* results confirmed by one server ping */

struct running_job {
	struct running_job *next;
	char sandbox_id[24];
	char *signer;
	char *job_id;
	char *from_jid;
	uint32_t device;
	struct mw_grants grants;	/* kept until the job ends: the sandbox copies on submit */
	/* stage times for the `done` log line (spec/agent.md), microseconds */
	uint64_t t_received_us;		/* stanza handed to us */
	uint64_t t_decrypt_us;		/* OMEMO decrypt */
	uint64_t t_verify_us;		/* envelope, signature, policy */
	uint64_t t_commit_us;		/* journal row + ratchet commit */
	uint64_t t_submitted_us;	/* clock when handed to the sandbox */
};

/* A result handed to the connection, waiting for the server to confirm it. */
struct sent_result {
	char *signer;
	char *job_id;
};

/* A token bucket: `burst` at once, `per_minute` refilled continuously. */
struct bucket {
	double tokens;
	uint64_t last_ms;
};

struct rate_slot {
	char *jid;			/* NULL: free slot */
	double tokens;
	uint64_t last_ms;
	uint64_t refusal_reply_ms;	/* last rate_limited reply: one a minute */
	struct bucket new_sessions;	/* messages that would build a session */
};

struct agent {
	uint64_t redelivered;		/* OMEMO duplicates of handled messages (counted, not refused) */
	struct mw_agent_config cfg;
	struct mw_policy policy;
	struct mw_allowed_signers *signers;
	struct mw_sandbox *sb;
	sqlite3 *db;
	struct mw_omemo *o;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	xmpp_sm_state_t *sm;
	bool connected;
	bool stopping;
	bool pin_refused;		/* this connection failed the pin check after login */
	bool config_backoff;		/* the backoff is the configuration-error one */
	uint64_t stop_deadline_ms;
	unsigned backoff_ms;
	uint64_t reconnect_at_ms;
	uint64_t next_tick_ms;
	uint64_t next_ping_ms;
	uint64_t ping_sent_ms;		/* 0: no ping outstanding */
	char ping_id[40];
	struct running_job *jobs;
	unsigned n_jobs;
	uint64_t seq;
	struct rate_slot rate[RATE_SLOTS];
	struct bucket new_sessions;	/* all senders together */
	/* the agent's own files: no grant reaches them (policy check at
	 * start-up, and the sandbox broker at open time) */
	struct mw_protected_path protected[MW_PROTECTED_MAX];
	const char *protected_ptrs[MW_PROTECTED_MAX];
	size_t n_protected;
	/* delivery barrier: results sent since the last barrier ping, and
	 * those the outstanding barrier ping will confirm */
	struct sent_result *pending, *awaiting;
	size_t n_pending, n_awaiting;
	bool barrier_out;
	char barrier_id[48];
};

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_reload;
static int g_xmpp_fd = -1;	/* libstrophe's socket; one connection per process */

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		g_reload = 1;
	else
		g_stop = 1;
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Under systemd (JOURNAL_STREAM set) the journal stamps each line itself;
 * in the foreground (a terminal, a pipe, a file) the line starts with the
 * UTC time.
 */
static void
logline(const char *event, const char *fmt, ...)
{
	static int stamp = -1;
	char buf[2048], ts[40] = "";
	va_list ap;
	size_t n;

	if (stamp < 0)
		stamp = getenv("JOURNAL_STREAM") == NULL;
	if (stamp) {
		struct timespec now;
		struct tm tm;

		if (clock_gettime(CLOCK_REALTIME, &now) == 0 &&
		    gmtime_r(&now.tv_sec, &tm) != NULL) {
			size_t k = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

			snprintf(ts + k, sizeof(ts) - k, ".%03ldZ ", now.tv_nsec / 1000000);
		}
	}
	n = (size_t)snprintf(buf, sizeof(buf), "%smoonwire-agent: %s", ts, event);
	if (fmt != NULL && n < sizeof(buf) - 2) {
		buf[n++] = ' ';
		va_start(ap, fmt);
		vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
		va_end(ap);
	}
	/* one event, one line: newlines from peers never split it */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s\n", buf);
}

/* ---- crash points (tests) ----
 *
 * MOONWIRE_TEST_CRASH=POINT:N makes the agent kill itself with SIGKILL the
 * Nth time it passes POINT, so the crash-consistency suite can stop it
 * exactly between two steps whose order matters.  Points: after_decrypt
 * (decrypt transaction open, nothing committed), after_commit (job
 * recorded, not yet in the sandbox), mid_job (in the sandbox), after_result
 * (result stored, not yet sent), after_reply (sent, not yet marked
 * replied).  Unset, it costs one branch per point.
 */
static const char *crash_point;
static long crash_countdown;

static void
crash_init(void)
{
	const char *v = getenv("MOONWIRE_TEST_CRASH");
	const char *colon;

	if (v == NULL || (colon = strchr(v, ':')) == NULL)
		return;
	crash_countdown = strtol(colon + 1, NULL, 10);
	if (crash_countdown <= 0)
		return;
	crash_point = strndup(v, (size_t)(colon - v));
}

static void
crash_at(const char *point)
{
	if (crash_point != NULL && strcmp(crash_point, point) == 0 &&
	    --crash_countdown == 0) {
		fprintf(stderr, "moonwire-agent: test-crash point=%s\n", point);
		raise(SIGKILL);
	}
}

/* ---- durability ----
 *
 * With durability = full (the default) the two commits whose loss on power
 * failure could make a job run twice or reuse a ratchet key -- the decrypt
 * transaction that records the job, and the encrypt that advances the
 * sending chain -- are fsync'ed.  Journal updates after a run (result
 * stored, reply sent) are not: losing one turns a finished job into
 * "interrupted" after a power cut, and the WAL keeps them ordered before
 * any later fsync'ed commit.
 */
static int
db_sync(struct agent *a, bool full)
{
	return sqlite3_exec(a->db, full ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* ---- sending ---- */

/* Whether st publishes this agent's OMEMO bundle (for the log: a flood
 * must not turn into a publish per message, and the tests count them). */
static bool
is_bundle_publish(xmpp_stanza_t *st)
{
	xmpp_stanza_t *ps, *pub;
	const char *name = xmpp_stanza_get_name(st), *type = xmpp_stanza_get_type(st);
	const char *node;

	if (name == NULL || strcmp(name, "iq") != 0 || type == NULL ||
	    strcmp(type, "set") != 0 ||
	    (ps = xmpp_stanza_get_child_by_name(st, "pubsub")) == NULL ||
	    (pub = xmpp_stanza_get_child_by_name(ps, "publish")) == NULL ||
	    (node = xmpp_stanza_get_attribute(pub, "node")) == NULL)
		return false;
	return strncmp(node, MW_OMEMO_NODE_BUNDLES, strlen(MW_OMEMO_NODE_BUNDLES)) == 0;
}

static void
send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;

	if (a->conn != NULL && a->connected) {
		if (is_bundle_publish(st))
			logline("bundle-publish", NULL);
		xmpp_send(a->conn, st);
	}
}

/* Encrypts text to one device of jid and sends it.  0 when handed to the
 * connection. */
static int
send_encrypted(struct agent *a, const char *jid, uint32_t device, const char *text)
{
	xmpp_stanza_t *msg = NULL;
	int rc;

	if (!a->connected)
		return -1;
	rc = mw_omemo_encrypt(a->o, a->x, jid, &device, 1, text, strlen(text), &msg);
	if (rc != 0) {
		logline("reply-failed", "to=%s device=%u error=%s", jid, device,
		    mw_omemo_strerror(rc));
		return -1;
	}
	xmpp_send(a->conn, msg);
	xmpp_stanza_release(msg);
	return 0;
}

/* ---- delivery barrier ----
 *
 * A stanza handed to libstrophe may still die in its queue or on a
 * connection that is already dead, so "sent" is not "delivered".  After
 * sending results the agent pings the server; the server handles a
 * stream's stanzas in order, so its answer proves it had every result sent
 * before the ping, and those are marked confirmed (journal replied = 2).
 * Results still unconfirmed when the connection is lost, or found so at
 * start-up, are sent again; confirmed ones never are.  One barrier is in
 * flight at a time; results sent meanwhile wait for the next.
 */
static void
sent_free(struct sent_result *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].signer);
		free(v[i].job_id);
	}
	free(v);
}

static void send_barrier(struct agent *a);

static int
on_barrier_answer(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;

	(void)conn;
	(void)st;	/* result or error: either way the server got here */
	(void)db_sync(a, false);
	for (size_t i = 0; i < a->n_awaiting; i++)
		if (mw_journal_confirm(a->db, a->awaiting[i].signer,
		    a->awaiting[i].job_id) != 0)
			logline("journal-error", "job=%s op=confirm error=\"%s\"",
			    a->awaiting[i].job_id, sqlite3_errmsg(a->db));
	(void)db_sync(a, a->cfg.durability_full);
	sent_free(a->awaiting, a->n_awaiting);
	a->awaiting = NULL;
	a->n_awaiting = 0;
	a->barrier_out = false;
	if (a->n_pending > 0)
		send_barrier(a);
	return 0;
}

static void
send_barrier(struct agent *a)
{
	xmpp_stanza_t *iq, *ping;
	const char *at;

	if (a->barrier_out || a->n_pending == 0 || !a->connected)
		return;
	snprintf(a->barrier_id, sizeof(a->barrier_id), "mw-barrier-%" PRIu64, ++a->seq);
	if ((iq = xmpp_iq_new(a->x, "get", a->barrier_id)) == NULL ||
	    (ping = xmpp_stanza_new(a->x)) == NULL) {
		if (iq != NULL)
			xmpp_stanza_release(iq);
		return;
	}
	at = strchr(mw_omemo_jid(a->o), '@');
	xmpp_stanza_set_to(iq, at != NULL ? at + 1 : mw_omemo_jid(a->o));
	xmpp_stanza_set_name(ping, "ping");
	xmpp_stanza_set_ns(ping, "urn:xmpp:ping");
	xmpp_stanza_add_child_ex(iq, ping, 0);
	xmpp_id_handler_add(a->conn, on_barrier_answer, a->barrier_id, a);
	xmpp_send(a->conn, iq);
	xmpp_stanza_release(iq);
	a->awaiting = a->pending;
	a->n_awaiting = a->n_pending;
	a->pending = NULL;
	a->n_pending = 0;
	a->barrier_out = true;
}

/* The connection is gone: nothing unconfirmed can be trusted to have
 * reached the server; the journal sends it again after reconnecting. */
static void
barrier_reset(struct agent *a)
{
	int n;

	sent_free(a->pending, a->n_pending);
	sent_free(a->awaiting, a->n_awaiting);
	a->pending = a->awaiting = NULL;
	a->n_pending = a->n_awaiting = 0;
	a->barrier_out = false;
	if ((n = mw_journal_resend_unconfirmed(a->db)) > 0)
		logline("resend-scheduled", "results=%d", n);
	else if (n < 0)
		logline("journal-error", "op=resend error=\"%s\"", sqlite3_errmsg(a->db));
}

static void
mark_replied(struct agent *a, const char *signer, const char *job_id)
{
	struct sent_result *np;

	(void)db_sync(a, false);
	if (mw_journal_mark_replied(a->db, signer, job_id) != 0)
		logline("journal-error", "job=%s op=replied error=\"%s\"", job_id,
		    sqlite3_errmsg(a->db));
	(void)db_sync(a, a->cfg.durability_full);
	/* past the batch bound the row simply stays unconfirmed (resent
	 * after a lost connection): memory stays bounded under a flood */
	if (a->n_pending < BARRIER_BATCH_MAX &&
	    (np = realloc(a->pending, (a->n_pending + 1) * sizeof(*np))) != NULL) {
		a->pending = np;
		np[a->n_pending].signer = strdup(signer);
		np[a->n_pending].job_id = strdup(job_id);
		if (np[a->n_pending].signer == NULL || np[a->n_pending].job_id == NULL) {
			free(np[a->n_pending].signer);
			free(np[a->n_pending].job_id);
		} else
			a->n_pending++;
	}
	send_barrier(a);
}

/* Sends every stored result not yet handed to the server. */
static void
flush_unreplied(struct agent *a)
{
	struct mw_journal_entry *rows;
	size_t n;

	if (mw_journal_unreplied(a->db, &rows, &n) != 0) {
		logline("journal-error", "op=unreplied error=\"%s\"", sqlite3_errmsg(a->db));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (rows[i].result != NULL &&
		    send_encrypted(a, rows[i].from_jid, rows[i].device, rows[i].result) == 0) {
			mark_replied(a, rows[i].signer, rows[i].job_id);
			logline("reply-sent", "job=%s to=%s device=%u stored=yes",
			    rows[i].job_id, rows[i].from_jid, rows[i].device);
		}
		mw_journal_entry_free(&rows[i]);
	}
	free(rows);
}

/* ---- rate limiting (token bucket per bare JID) ---- */

static struct rate_slot *
rate_slot_for(struct agent *a, const char *jid)
{
	struct rate_slot *oldest = &a->rate[0];

	for (size_t i = 0; i < RATE_SLOTS; i++) {
		if (a->rate[i].jid != NULL && strcmp(a->rate[i].jid, jid) == 0)
			return &a->rate[i];
		if (a->rate[i].jid == NULL || a->rate[i].last_ms < oldest->last_ms)
			oldest = &a->rate[i];
	}
	/* evict the least recently seen sender: with more than RATE_SLOTS
	 * senders a forgotten one starts again with a full burst */
	free(oldest->jid);
	memset(oldest, 0, sizeof(*oldest));
	if ((oldest->jid = strdup(jid)) == NULL)
		return NULL;
	oldest->tokens = (double)a->cfg.rate_burst;
	oldest->last_ms = now_ms();
	oldest->new_sessions.tokens = (double)a->cfg.new_session_burst;
	oldest->new_sessions.last_ms = oldest->last_ms;
	return oldest;
}

/* Takes one token from b if it has one (refilled at per_minute, capped at
 * burst since last_ms). */
static bool
bucket_take(struct bucket *b, uint32_t per_minute, unsigned burst, uint64_t t)
{
	b->tokens += (double)(t - b->last_ms) * (double)per_minute / 60000.0;
	if (b->tokens > (double)burst)
		b->tokens = (double)burst;
	b->last_ms = t;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

/*
 * The new-session budget, checked BEFORE decrypting a message that would
 * build a session (X3DH and a consumed prekey, then a bundle republish):
 * a token from the sender JID's bucket and one from the global bucket.
 * The sender's token is spent even when the global bucket refuses, so one
 * JID cannot drain the global budget and keep its own.  Fails closed when
 * out of memory.
 */
static bool
new_session_allow(struct agent *a, const char *jid, const char **which)
{
	struct rate_slot *s = rate_slot_for(a, jid);
	uint64_t t = now_ms();

	*which = "new_session_rate";
	if (s == NULL || !bucket_take(&s->new_sessions, a->cfg.new_session_per_minute,
	    a->cfg.new_session_burst, t))
		return false;
	*which = "new_session_rate_global";
	return bucket_take(&a->new_sessions, a->cfg.new_session_global_per_minute,
	    a->cfg.new_session_global_burst, t);
}

static bool
rate_allow(struct agent *a, const char *jid)
{
	struct rate_slot *s;
	uint64_t t = now_ms();

	if (a->cfg.rate_per_minute == 0)
		return true;
	if ((s = rate_slot_for(a, jid)) == NULL)
		return false;	/* out of memory: fail closed */
	s->tokens += (double)(t - s->last_ms) * (double)a->cfg.rate_per_minute / 60000.0;
	if (s->tokens > (double)a->cfg.rate_burst)
		s->tokens = (double)a->cfg.rate_burst;
	s->last_ms = t;
	if (s->tokens < 1.0)
		return false;
	s->tokens -= 1.0;
	return true;
}

/* A flood must not make the agent encrypt a refusal per message: one
 * rate_limited reply per sender per minute. */
static bool
rate_refusal_reply_due(struct agent *a, const char *jid)
{
	struct rate_slot *s = rate_slot_for(a, jid);
	uint64_t t = now_ms();

	if (s == NULL || (s->refusal_reply_ms != 0 && t - s->refusal_reply_ms < 60000))
		return false;
	s->refusal_reply_ms = t;
	return true;
}

/* ---- authorization ---- */

struct decision {
	int refusal;			/* 0: run it */
	char reason[512];
	struct mw_envelope env;
	bool have_env;
	bool interactive;
	char signer[MW_SSH_FP_MAX + 160];	/* journal key: key fingerprint or interactive:JID */
	char job_id[MW_JOB_ID_MAX + 1];
	char kv_scope[160];
	const struct mw_profile *profile;
	struct mw_limits limits;
};

static int
refuse(struct decision *d, int code, const char *fmt, ...)
{
	va_list ap;

	d->refusal = code;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
	return code;
}

static void
limits_lower(struct mw_limits *l, const struct mw_limits *req)
{
#define LOWER(f) if (req->f < l->f) l->f = req->f
	LOWER(instructions);
	LOWER(memory);
	LOWER(cpu_ms);
	LOWER(wall_ms);
	LOWER(output_bytes);
	LOWER(program_bytes);
	LOWER(result_bytes);
	LOWER(result_depth);
	LOWER(cap_calls);
	LOWER(write_bytes);
#undef LOWER
}

/*
 * Steps (a) to (c) of spec/agent.md for a decrypted message; (d), the
 * journal lookup, is the caller's because it needs the open transaction.
 * Runs with the decrypt transaction open: no network, no waiting.
 */
static int
authorize(struct agent *a, const struct mw_omemo_msg *m, struct decision *d)
{
	const char *text = (const char *)m->plaintext;
	struct mw_ssh_pubkey key;
	const char *principals;
	const struct mw_policy_allow *allow;
	const struct mw_policy_interactive *inter;
	int64_t now = (int64_t)time(NULL);
	int rc;

	memset(d, 0, sizeof(*d));
	/* (a) the sending device is verified for that JID */
	if (m->trust != MW_OMEMO_TRUST_VERIFIED) {
		char g[72] = "unknown";

		if (m->fp[0])
			mw_omemo_fp_group(m->fp, '-', g);
		return refuse(d, MW_REFUSE_UNTRUSTED_DEVICE,
		    "device %u of %s (fingerprint %s) is %s, not verified", m->device,
		    m->from, g, mw_omemo_trust_name(m->trust));
	}
	if (!rate_allow(a, m->from)) {
		struct mw_envelope e;
		char why[128];

		/* name the job in the refusal (unverified, echoed only to this
		 * verified device) so the sender can match the reply to it */
		if (m->len >= strlen(MW_ENVELOPE_MAGIC) &&
		    memcmp(text, MW_ENVELOPE_MAGIC, strlen(MW_ENVELOPE_MAGIC)) == 0 &&
		    mw_envelope_parse(text, m->len, &e, why, sizeof(why)) == 0) {
			snprintf(d->job_id, sizeof(d->job_id), "%s", e.job_id);
			mw_envelope_free(&e);
		}
		return refuse(d, MW_REFUSE_RATE_LIMITED, "more than %u jobs a minute from %s",
		    a->cfg.rate_per_minute, m->from);
	}
	if (m->len < strlen(MW_ENVELOPE_MAGIC) ||
	    memcmp(text, MW_ENVELOPE_MAGIC, strlen(MW_ENVELOPE_MAGIC)) != 0) {
		/* plain text: interactive mode, if the policy has it for this JID */
		if ((inter = mw_policy_interactive_for(&a->policy, m->from)) == NULL)
			return refuse(d, MW_REFUSE_NOT_A_JOB,
			    "not a signed job, and interactive mode is off for %s", m->from);
		d->interactive = true;
		d->profile = &a->policy.profiles[inter->profile];
		snprintf(d->signer, sizeof(d->signer), "interactive:%s", m->from);
		snprintf(d->kv_scope, sizeof(d->kv_scope), "interactive:%s", m->from);
		{
			unsigned char r[8];
			if (RAND_bytes(r, sizeof(r)) != 1)
				return refuse(d, MW_REFUSE_STORAGE, "no randomness for a job id");
			snprintf(d->job_id, sizeof(d->job_id),
			    "chat-%02x%02x%02x%02x%02x%02x%02x%02x",
			    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
		}
		d->limits = d->profile->limits;
		if (m->len > d->limits.program_bytes)
			return refuse(d, MW_REFUSE_OVERSIZED, "program of %zu bytes, limit %u",
			    m->len, d->limits.program_bytes);
		return 0;
	}
	/* (b) the envelope parses and its signature verifies ... */
	if ((rc = mw_envelope_parse(text, m->len, &d->env, d->reason,
	    sizeof(d->reason))) != 0)
		return d->refusal = rc;
	d->have_env = true;
	snprintf(d->job_id, sizeof(d->job_id), "%s", d->env.job_id);
	/* ... by a key in allowed_signers (the rules `moonwire verify` applies) ... */
	if ((rc = mw_envelope_verify(&d->env, a->signers, now, &key, &principals,
	    d->reason, sizeof(d->reason))) != 0)
		return d->refusal = rc;
	snprintf(d->signer, sizeof(d->signer), "%s", key.fp);
	/* ... whose principal the policy allows for this JID */
	if ((allow = mw_policy_allowed(&a->policy, principals, m->from)) == NULL)
		return refuse(d, MW_REFUSE_SIGNER_NOT_ALLOWED,
		    "signer %s (%s) is not allowed for %s", principals, key.fp, m->from);
	d->profile = &a->policy.profiles[allow->profile];
	snprintf(d->kv_scope, sizeof(d->kv_scope), "%s", allow->principal);
	/* (c) audience, then the time window with this agent's skew and the
	 * allow line's maximum validity */
	if (strcmp(d->env.audience, mw_omemo_jid(a->o)) != 0)
		return refuse(d, MW_REFUSE_WRONG_AUDIENCE, "job is for %s, this agent is %s",
		    d->env.audience, mw_omemo_jid(a->o));
	if ((rc = mw_envelope_check_time(&d->env, now, (int64_t)a->cfg.clock_skew_s,
	    (int64_t)allow->max_validity_s, d->reason, sizeof(d->reason))) != 0)
		return d->refusal = rc;
	d->limits = d->profile->limits;
	limits_lower(&d->limits, &d->env.limits);
	for (uint32_t i = 0; i < d->env.args.n; i++)
		if (!mw_profile_accepts_arg(d->profile, d->env.args.name[i]))
			return refuse(d, MW_REFUSE_BAD_ARGS, "argument '%s' is not allowed by profile %s",
			    d->env.args.name[i], d->profile->name);
	if (d->env.program_len > d->limits.program_bytes)
		return refuse(d, MW_REFUSE_OVERSIZED, "program of %zu bytes, limit %u",
		    d->env.program_len, d->limits.program_bytes);
	return 0;
}

static void
decision_free(struct decision *d)
{
	if (d->have_env)
		mw_envelope_free(&d->env);
	d->have_env = false;
}

/* ---- running ---- */

static void
running_free(struct running_job *j)
{
	free(j->signer);
	free(j->job_id);
	free(j->from_jid);
	mw_grants_free(&j->grants);
	free(j);
}

struct stage_times {
	uint64_t received, decrypt, verify, commit;
};

static int
start_job(struct agent *a, const struct decision *d, const struct mw_omemo_msg *m,
    const struct stage_times *st)
{
	struct running_job *j = calloc(1, sizeof(*j));
	struct mw_job job;

	if (j == NULL)
		return -1;
	j->t_received_us = st->received;
	j->t_decrypt_us = st->decrypt;
	j->t_verify_us = st->verify;
	j->t_commit_us = st->commit;
	snprintf(j->sandbox_id, sizeof(j->sandbox_id), "%" PRIu64, ++a->seq);
	j->signer = strdup(d->signer);
	j->job_id = strdup(d->job_id);
	j->from_jid = strdup(m->from);
	j->device = m->device;
	if (j->signer == NULL || j->job_id == NULL || j->from_jid == NULL ||
	    mw_grants_copy(&j->grants, &d->profile->grants) != 0)
		goto fail;
	if (j->grants.kv) {
		free(j->grants.kv_scope);
		if ((j->grants.kv_scope = strdup(d->kv_scope)) == NULL)
			goto fail;
	}
	memset(&job, 0, sizeof(job));
	job.id = j->sandbox_id;
	job.chunkname = "=job";
	if (d->interactive) {
		job.program = (const char *)m->plaintext;
		job.program_len = m->len;
	} else {
		job.program = (const char *)d->env.program;
		job.program_len = d->env.program_len;
	}
	struct mw_job_arg args[MW_ARGS_MAX];
	if (d->have_env && !d->interactive && d->env.args.n > 0) {
		mw_job_args_view(&d->env.args, args);
		job.args = args;
		job.n_args = d->env.args.n;
	}
	job.limits = d->limits;
	job.grants = &j->grants;
	j->t_submitted_us = now_us();
	if (mw_sandbox_submit(a->sb, &job) != 0)
		goto fail;
	(void)mw_sandbox_flush(a->sb);
	crash_at("mid_job");
	j->next = a->jobs;
	a->jobs = j;
	a->n_jobs++;
	return 0;
fail:
	running_free(j);
	return -1;
}

/* Stores the terminal result of a job and sends it. */
static void
finish_job(struct agent *a, struct running_job *j, const struct mw_result *r)
{
	uint64_t t_done = now_us(), t_stored, t_sent;
	char *text = mw_result_message(j->job_id, r, 0, NULL, a->cfg.max_output);
	int rc;

	if (text == NULL) {
		logline("internal-error", "job=%s op=render", j->job_id);
		return;
	}
	(void)db_sync(a, false);
	rc = mw_journal_finish(a->db, j->signer, j->job_id, text, (int64_t)time(NULL));
	(void)db_sync(a, a->cfg.durability_full);
	t_stored = now_us();
	if (rc == 0)
		crash_at("after_result");
	if (rc != 0) {
		/* stays ACCEPTED: reported as interrupted after a restart */
		logline("journal-error", "job=%s op=finish error=\"%s\"", j->job_id,
		    sqlite3_errmsg(a->db));
		free(text);
		return;
	}
	logline("done", "job=%s from=%s device=%u status=%s cpu_us=%" PRIu64
	    " wall_us=%" PRIu64, j->job_id, j->from_jid, j->device,
	    mw_job_status_name(r->status), r->usage.cpu_us, r->usage.wall_us);
	if (send_encrypted(a, j->from_jid, j->device, text) == 0) {
		t_sent = now_us();
		crash_at("after_reply");
		mark_replied(a, j->signer, j->job_id);
		logline("reply-sent", "job=%s to=%s device=%u decrypt_us=%" PRIu64
		    " verify_us=%" PRIu64 " commit_us=%" PRIu64 " sandbox_us=%" PRIu64
		    " store_us=%" PRIu64 " encrypt_us=%" PRIu64 " agent_us=%" PRIu64,
		    j->job_id, j->from_jid, j->device, j->t_decrypt_us, j->t_verify_us,
		    j->t_commit_us, j->t_submitted_us ? t_done - j->t_submitted_us : 0,
		    t_stored - t_done, t_sent - t_stored,
		    j->t_received_us ? t_sent - j->t_received_us : 0);
	}
	free(text);
}

static void
unlink_job(struct agent *a, struct running_job *j)
{
	for (struct running_job **p = &a->jobs; *p != NULL; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			a->n_jobs--;
			return;
		}
}

static void
interrupt_all(struct agent *a, const char *why)
{
	while (a->jobs != NULL) {
		struct running_job *j = a->jobs;
		struct mw_result r;

		memset(&r, 0, sizeof(r));
		r.status = MW_JOB_INTERRUPTED;
		r.error = (char *)why;
		unlink_job(a, j);
		finish_job(a, j, &r);
		running_free(j);
	}
}

static void
read_results(struct agent *a)
{
	struct mw_result r;
	int rc;

	while ((rc = mw_sandbox_read_result(a->sb, &r)) == 1) {
		struct running_job *j;

		for (j = a->jobs; j != NULL; j = j->next)
			if (r.job_id != NULL && strcmp(j->sandbox_id, r.job_id) == 0)
				break;
		if (j == NULL) {
			logline("internal-error", "op=result unknown-sandbox-id=%s",
			    r.job_id ? r.job_id : "?");
		} else {
			unlink_job(a, j);
			finish_job(a, j, &r);
			running_free(j);
		}
		mw_result_free(&r);
	}
	if (rc < 0) {
		/* the supervisor is gone: nothing more will run */
		logline("sandbox-gone", "running=%u", a->n_jobs);
		interrupt_all(a, "the sandbox supervisor stopped");
		g_stop = 1;
		a->stop_deadline_ms = 0;
	}
}

/* ---- incoming messages ---- */

static void
reply_refusal(struct agent *a, const struct mw_omemo_msg *m, const struct decision *d)
{
	char *text = mw_result_message(d->job_id, NULL, d->refusal, d->reason,
	    a->cfg.max_output);

	if (text != NULL) {
		(void)send_encrypted(a, m->from, m->device, text);
		free(text);
	}
}

static void
audit_refusal(const struct mw_omemo_msg *m, const struct decision *d)
{
	logline("refused", "code=%s from=%s device=%u job=%s reason=\"%s\"",
	    mw_refusal_name(d->refusal), m->from, m->device,
	    d->job_id[0] ? d->job_id : "-", d->reason);
}

static void
handle_encrypted(struct agent *a, xmpp_stanza_t *st)
{
	struct mw_omemo_msg m;
	struct decision d;
	struct mw_journal_entry e, found;
	struct stage_times times;
	uint64_t t;
	int rc, seen;

	memset(&times, 0, sizeof(times));
	times.received = now_us();
	/*
	 * Before any decryption: who sent it, with which identity key, and
	 * would it build a new session?  Read-only.  A device whose key is not
	 * verified for that JID is dropped here -- no X3DH, no row, no prekey,
	 * no publish -- and so is a new session over the budget.
	 */
	rc = mw_omemo_peek(a->o, st, &m);
	if (rc != 0) {
		logline("refused", "code=omemo from=%s device=%u reason=\"%s\"",
		    m.from ? m.from : "?", m.device, mw_omemo_strerror(rc));
		mw_omemo_msg_free(&m);
		return;
	}
	if (m.trust != MW_OMEMO_TRUST_VERIFIED) {
		char g[72] = "unknown";

		if (m.fp[0])
			mw_omemo_fp_group(m.fp, '-', g);
		logline("refused", "code=untrusted_device from=%s device=%u job=- reason=\"not "
		    "decrypted: device %u of %s (fingerprint %s) is %s, not verified\"", m.from,
		    m.device, m.device, m.from, g,
		    m.fp[0] ? mw_omemo_trust_name(m.trust) : "unknown");
		mw_omemo_msg_free(&m);
		return;
	}
	if (m.new_session) {
		const char *which;

		if (!new_session_allow(a, m.from, &which)) {
			logline("refused", "code=omemo from=%s device=%u reason=\"new session "
			    "over the %s budget; not decrypted\"", m.from, m.device, which);
			mw_omemo_msg_free(&m);
			return;
		}
		logline("new-session", "from=%s device=%u", m.from, m.device);
	}
	mw_omemo_msg_free(&m);
	rc = mw_omemo_decrypt(a->o, st, &m);
	t = now_us();
	times.decrypt = t - times.received;
	if (rc == MW_OMEMO_DROPPED) {
		logline("key-transport", "from=%s device=%u", m.from ? m.from : "?", m.device);
		mw_omemo_msg_free(&m);
		return;
	}
	if (rc == MW_OMEMO_E_DUPLICATE) {
		/* The server delivering again what was already handled (stream
		 * management after a reconnect, offline storage after a
		 * restart): nothing is decrypted twice and nothing is wrong, so
		 * it is counted, with a line at the 1st, 10th, 100th, ... */
		uint64_t c = ++a->redelivered;
		while (c % 10 == 0)
			c /= 10;
		if (c == 1)
			logline("redelivered", "count=%" PRIu64 " from=%s device=%u (a message "
			    "already handled, delivered again; ignored)", a->redelivered,
			    m.from ? m.from : "?", m.device);
		mw_omemo_msg_free(&m);
		return;
	}
	if (rc != MW_OMEMO_OK) {
		char g[72] = "";

		if (m.fp[0])
			mw_omemo_fp_group(m.fp, '-', g);
		logline("refused", "code=omemo from=%s device=%u reason=\"%s\"%s%s",
		    m.from ? m.from : "?", m.device, mw_omemo_strerror(rc),
		    g[0] ? " fingerprint=" : "", g);
		mw_omemo_msg_free(&m);
		return;
	}
	/* the decrypt transaction is open from here to the commit */
	crash_at("after_decrypt");
	rc = authorize(a, &m, &d);
	times.verify = now_us() - t;
	if (rc != 0) {
		if (mw_omemo_commit(a->o) != 0)
			logline("journal-error", "op=commit error=\"%s\"", sqlite3_errmsg(a->db));
		audit_refusal(&m, &d);
		/* a reply only goes where it is safe: a verified device */
		if (d.refusal != MW_REFUSE_UNTRUSTED_DEVICE &&
		    (d.refusal != MW_REFUSE_RATE_LIMITED ||
		    rate_refusal_reply_due(a, m.from)))
			reply_refusal(a, &m, &d);
		goto out;
	}
	/* (d) the job id was never used by that signer */
	seen = mw_journal_lookup(a->db, d.signer, d.job_id, &found);
	if (seen < 0) {
		(void)mw_omemo_rollback(a->o);
		refuse(&d, MW_REFUSE_STORAGE, "journal lookup failed: %s", sqlite3_errmsg(a->db));
		audit_refusal(&m, &d);
		reply_refusal(a, &m, &d);
		goto out;
	}
	if (seen == 1) {
		bool same = d.have_env && memcmp(found.sha256, d.env.sha256, 32) == 0;

		if (mw_omemo_commit(a->o) != 0)
			logline("journal-error", "op=commit error=\"%s\"", sqlite3_errmsg(a->db));
		if (!same) {
			refuse(&d, MW_REFUSE_REPLAY, "job id %s was already used by this signer "
			    "for a different envelope", d.job_id);
			audit_refusal(&m, &d);
			reply_refusal(a, &m, &d);
		} else if (found.from_jid == NULL || strcmp(found.from_jid, m.from) != 0 ||
		    found.device != m.device) {
			/* A stored result belongs to the device that requested the
			 * job, as journaled: another device (even a verified one of
			 * the same operator) that resends the envelope gets nothing,
			 * not even a refusal naming the job's requester. */
			refuse(&d, MW_REFUSE_REPLAY, "job %s was requested by another "
			    "device; its result goes only there", d.job_id);
			audit_refusal(&m, &d);
		} else {
			logline("duplicate", "job=%s from=%s device=%u state=%s", d.job_id,
			    m.from, m.device, found.state == MW_JOURNAL_DONE ? "done" : "running");
			/* the stored result again, byte for byte; a running job
			 * answers when it ends */
			if (found.state == MW_JOURNAL_DONE && found.result != NULL)
				(void)send_encrypted(a, m.from, m.device, found.result);
		}
		mw_journal_entry_free(&found);
		goto out;
	}
	t = now_us();
	memset(&e, 0, sizeof(e));
	e.signer = d.signer;
	e.job_id = d.job_id;
	if (d.have_env)
		memcpy(e.sha256, d.env.sha256, 32);
	e.from_jid = m.from;
	e.device = m.device;
	if (mw_journal_accept(a->db, &e, (int64_t)time(NULL)) != 0 ||
	    (rc = mw_omemo_commit(a->o)) != 0) {
		const char *why = sqlite3_errmsg(a->db);

		if (mw_omemo_txn_pending(a->o))
			(void)mw_omemo_rollback(a->o);
		refuse(&d, MW_REFUSE_STORAGE, "the journal could not record the job: %s", why);
		audit_refusal(&m, &d);
		reply_refusal(a, &m, &d);
		goto out;
	}
	/* committed: from here the job is either run once or reported
	 * interrupted, never run again */
	times.commit = now_us() - t;
	crash_at("after_commit");
	logline("accepted", "job=%s from=%s device=%u signer=%s profile=%s%s", d.job_id,
	    m.from, m.device, d.signer, d.profile->name, d.interactive ? " interactive=yes" : "");
	if (start_job(a, &d, &m, &times) != 0) {
		struct running_job j;
		struct mw_result r;

		memset(&j, 0, sizeof(j));
		j.signer = d.signer;
		j.job_id = d.job_id;
		j.from_jid = m.from;
		j.device = m.device;
		memset(&r, 0, sizeof(r));
		r.status = MW_JOB_INTERNAL_ERROR;
		r.error = (char *)"the sandbox did not take the job";
		finish_job(a, &j, &r);
	}
out:
	decision_free(&d);
	mw_omemo_msg_free(&m);
}

static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;
	const char *type = xmpp_stanza_get_type(st), *from = xmpp_stanza_get_from(st);
	char *bare;

	(void)conn;
	if (type != NULL && (strcmp(type, "error") == 0 || strcmp(type, "groupchat") == 0))
		return 1;
	if (from == NULL)
		return 1;
	if (xmpp_stanza_get_child_by_name_and_ns(st, "encrypted", MW_OMEMO_NS) != NULL) {
		if ((bare = xmpp_jid_bare(a->x, from)) == NULL)
			return 1;
		/* a JID no policy line names can never run anything: not even
		 * decrypted, so strangers cannot spend our prekeys or CPU */
		if (!mw_policy_knows_jid(&a->policy, bare) &&
		    strcmp(bare, mw_omemo_jid(a->o)) != 0)
			logline("refused", "code=untrusted_device from=%s reason=\"JID not in "
			    "the policy; not decrypted\"", bare);
		else
			handle_encrypted(a, st);
		xmpp_free(a->x, bare);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name(st, "body") != NULL)
		logline("refused", "code=not_a_job from=%s reason=\"unencrypted message "
		    "ignored\"", from);
	return 1;
}

/* ---- IQ, presence ---- */

static int
on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;
	const char *type = xmpp_stanza_get_type(st);
	xmpp_stanza_t *reply = NULL, *q, *c;

	if (type == NULL || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
		return 1;	/* answers are for their id handlers */
	if (strcmp(type, "get") == 0 &&
	    xmpp_stanza_get_child_by_name_and_ns(st, "ping", "urn:xmpp:ping") != NULL) {
		reply = xmpp_stanza_reply(st);
	} else if (strcmp(type, "get") == 0 && (q = xmpp_stanza_get_child_by_name_and_ns(st,
	    "query", "http://jabber.org/protocol/disco#info")) != NULL &&
	    xmpp_stanza_get_attribute(q, "node") == NULL) {
		static const char *const features[] = {
			"http://jabber.org/protocol/disco#info", "urn:xmpp:ping",
			MW_OMEMO_NODE_DEVICELIST, MW_OMEMO_DEVICELIST_NOTIFY, NULL
		};
		if ((reply = xmpp_stanza_reply(st)) != NULL &&
		    (q = xmpp_stanza_new(a->x)) != NULL) {
			xmpp_stanza_set_name(q, "query");
			xmpp_stanza_set_ns(q, "http://jabber.org/protocol/disco#info");
			if ((c = xmpp_stanza_new(a->x)) != NULL) {
				xmpp_stanza_set_name(c, "identity");
				xmpp_stanza_set_attribute(c, "category", "client");
				xmpp_stanza_set_attribute(c, "type", "bot");
				xmpp_stanza_set_attribute(c, "name", "moonwire agent");
				xmpp_stanza_add_child_ex(q, c, 0);
			}
			for (size_t i = 0; features[i] != NULL; i++)
				if ((c = xmpp_stanza_new(a->x)) != NULL) {
					xmpp_stanza_set_name(c, "feature");
					xmpp_stanza_set_attribute(c, "var", features[i]);
					xmpp_stanza_add_child_ex(q, c, 0);
				}
			xmpp_stanza_add_child_ex(reply, q, 0);
		}
	} else {
		reply = xmpp_stanza_reply_error(st, "cancel", "service-unavailable", NULL);
	}
	if (reply != NULL) {
		/* xmpp_stanza_reply() keeps the request's type: an answer that
		 * says "get" is a new request, not a result */
		if (strcmp(xmpp_stanza_get_type(reply), "error") != 0)
			xmpp_stanza_set_type(reply, "result");
		xmpp_send(conn, reply);
		xmpp_stanza_release(reply);
	}
	return 1;
}

static int
on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;
	const char *type = xmpp_stanza_get_type(st), *from = xmpp_stanza_get_from(st);
	xmpp_stanza_t *p;
	char *bare;
	bool ok;

	if (type == NULL || from == NULL || strcmp(type, "subscribe") != 0)
		return 1;
	if ((bare = xmpp_jid_bare(a->x, from)) == NULL)
		return 1;
	ok = mw_policy_knows_jid(&a->policy, bare);
	if ((p = xmpp_presence_new(a->x)) != NULL) {
		xmpp_stanza_set_type(p, ok ? "subscribed" : "unsubscribed");
		xmpp_stanza_set_to(p, bare);
		xmpp_send(conn, p);
		xmpp_stanza_release(p);
	}
	logline("subscription", "from=%s %s", bare, ok ? "approved" : "refused");
	xmpp_free(a->x, bare);
	return 1;
}

static int
on_ping_answer(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;

	(void)conn;
	(void)st;
	a->ping_sent_ms = 0;
	return 0;
}

static void
send_ping(struct agent *a)
{
	xmpp_stanza_t *iq, *ping;
	char *id = xmpp_uuid_gen(a->x);

	if (id == NULL)
		return;
	snprintf(a->ping_id, sizeof(a->ping_id), "%s", id);
	xmpp_free(a->x, id);
	if ((iq = xmpp_iq_new(a->x, "get", a->ping_id)) == NULL)
		return;
	{
		const char *at = strchr(mw_omemo_jid(a->o), '@');
		xmpp_stanza_set_to(iq, at != NULL ? at + 1 : mw_omemo_jid(a->o));
	}
	if ((ping = xmpp_stanza_new(a->x)) != NULL) {
		xmpp_stanza_set_name(ping, "ping");
		xmpp_stanza_set_ns(ping, "urn:xmpp:ping");
		xmpp_stanza_add_child_ex(iq, ping, 0);
	}
	xmpp_id_handler_add(a->conn, on_ping_answer, a->ping_id, a);
	xmpp_send(a->conn, iq);
	xmpp_stanza_release(iq);
	a->ping_sent_ms = now_ms();
}

/* ---- connection ---- */

/*
 * TCP_NODELAY: a reply is one write after the stream-management <a/> the
 * server asked for just before; with Nagle's algorithm the reply waited
 * for the ACK of that <a/>, which the server's delayed ACK holds for up to
 * 40 ms: every job took over 40 ms on loopback (make bench, path latency).
 * Stanzas are written whole, so there is nothing for Nagle to coalesce.
 */
static int
on_socket(xmpp_conn_t *conn, void *sock)
{
	int one = 1;

	g_xmpp_fd = *(int *)sock;
	if (setsockopt(g_xmpp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		logline("sockopt-failed", "option=TCP_NODELAY error=\"%s\"", strerror(errno));
	return xmpp_sockopt_cb_keepalive(conn, sock);
}

/*
 * Exponential backoff with +-20% jitter: network errors from 1 s to 2 min;
 * configuration errors (refused login, untrusted or mismatched certificate,
 * unusable ca_file) from 1 min to 10 min, since only a change of the file
 * or the server can fix them.
 */
static void
schedule_reconnect(struct agent *a, bool config_error)
{
	unsigned char r;
	double jitter;
	unsigned cap = config_error ? CONFIG_BACKOFF_MAX_MS : BACKOFF_MAX_MS;

	if (config_error && (!a->config_backoff || a->backoff_ms < CONFIG_BACKOFF_INITIAL_MS))
		a->backoff_ms = CONFIG_BACKOFF_INITIAL_MS;
	else if (!config_error && a->config_backoff)
		a->backoff_ms = BACKOFF_INITIAL_MS;
	a->config_backoff = config_error;
	if (RAND_bytes(&r, 1) != 1)
		r = 128;
	jitter = 0.8 + 0.4 * ((double)r / 255.0);	/* +-20% */
	a->reconnect_at_ms = now_ms() + (uint64_t)((double)a->backoff_ms * jitter);
	logline("reconnect-scheduled", "in_ms=%" PRIu64 " kind=%s",
	    a->reconnect_at_ms - now_ms(), config_error ? "configuration" : "network");
	a->backoff_ms = (unsigned)((double)a->backoff_ms * (config_error ? 2.0 : 1.6));
	if (a->backoff_ms > cap)
		a->backoff_ms = cap;
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct agent *a = arg;
	xmpp_stanza_t *pres;
	int rc;

	if (ev != XMPP_CONN_CONNECT) {
		bool was = a->connected, config_error;
		char why[768];

		a->connected = false;
		g_xmpp_fd = -1;
		mw_omemo_detach(a->o);
		if (a->pin_refused) {
			snprintf(why, sizeof(why), "server certificate does not match "
			    "cert_pin_sha256 (check the pin, or the server's certificate "
			    "changed)");
			config_error = true;
		} else
			config_error = mw_omemo_account_describe_failure(&a->cfg.account,
			    conn, error, se, why, sizeof(why)) == MW_OMEMO_FAIL_CONFIG;
		a->pin_refused = false;
		/* a configuration error is named each time it happens */
		logline(was ? "disconnected" : "connect-failed",
		    "error=%d was_connected=%s reason=\"%s\"", error, was ? "yes" : "no", why);
		if (was)
			barrier_reset(a);
		if (!a->stopping) {
			/* keep the stream-management state for a resumption */
			if (a->sm != NULL)
				xmpp_free_sm_state(a->sm);
			a->sm = xmpp_conn_get_sm_state(conn);
			schedule_reconnect(a, config_error && !was);
		}
		return;
	}
	if (mw_omemo_account_check_pin(&a->cfg.account, conn) != 0) {
		logline("tls-pin-mismatch", "host=%s", a->cfg.account.host ?
		    a->cfg.account.host : "-");
		a->pin_refused = true;
		xmpp_disconnect(conn);
		return;
	}
	a->connected = true;
	a->backoff_ms = BACKOFF_INITIAL_MS;
	a->config_backoff = false;
	xmpp_handler_add(conn, on_message, NULL, "message", NULL, a);
	xmpp_handler_add(conn, on_iq, NULL, "iq", NULL, a);
	xmpp_handler_add(conn, on_presence, NULL, "presence", NULL, a);
	/* attach, then route the layer's stanzas through send_stanza(), which
	 * logs every bundle publish */
	if ((rc = mw_omemo_attach(a->o, conn)) != 0 ||
	    (rc = mw_omemo_set_transport(a->o, a->x, send_stanza, a)) != 0 ||
	    (rc = mw_omemo_start(a->o)) != 0) {
		logline("omemo-error", "op=start error=%s", mw_omemo_strerror(rc));
		xmpp_disconnect(conn);
		return;
	}
	if ((pres = xmpp_presence_new(a->x)) != NULL) {
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
	}
	a->next_ping_ms = now_ms() + PING_INTERVAL_MS;
	a->ping_sent_ms = 0;
	logline("connected", "jid=%s device=%u secured=%s", mw_omemo_jid(a->o),
	    mw_omemo_device_id(a->o), xmpp_conn_is_secured(conn) ? "yes" : "no");
	flush_unreplied(a);
}

static int
start_connection(struct agent *a)
{
	char why[1024];

	if (a->conn != NULL) {
		mw_omemo_account_release(a->conn);
		xmpp_conn_release(a->conn);
	}
	a->conn = NULL;
	a->pin_refused = false;
	if ((a->conn = xmpp_conn_new(a->x)) == NULL) {
		logline("connect-failed", "reason=\"out of memory\"");
		schedule_reconnect(a, false);
		return -1;
	}
	if (a->cfg.account.ca_file != NULL &&
	    mw_omemo_account_check_ca_file(a->cfg.account.ca_file, why, sizeof(why)) != 0) {
		/* libstrophe 0.12 crashes on a CA file it cannot load */
		logline("connect-failed", "reason=\"ca_file %s\"", why);
		schedule_reconnect(a, true);
		return -1;
	}
	if (mw_omemo_account_apply(&a->cfg.account, a->conn) != 0) {
		logline("connect-failed", "reason=\"account settings refused\"");
		schedule_reconnect(a, true);
		return -1;
	}
	xmpp_conn_set_sockopt_callback(a->conn, on_socket);
	if (a->sm != NULL) {
		/* ownership passes to the connection */
		if (xmpp_conn_set_sm_state(a->conn, a->sm) == XMPP_EOK)
			a->sm = NULL;
	}
	if (xmpp_connect_client(a->conn, a->cfg.account.host, a->cfg.account.port,
	    on_conn, a) != XMPP_EOK) {
		logline("connect-failed", "host=%s reason=\"cannot start connecting\"",
		    a->cfg.account.host ? a->cfg.account.host : "-");
		schedule_reconnect(a, false);
		return 0;
	}
	logline("connecting", "jid=%s", a->cfg.account.jid);
	return 0;
}

/* ---- start-up and the loop ---- */

/*
 * Like ssh with a private key: a password file readable by others is worth
 * a warning (printed by --check, logged at start).  Returns how many.
 */
static int
warn_exposed_secrets(const char *config, bool check_only)
{
	static const char *const keys[] = { "password_file", NULL };
	int warnings = 0;
	struct stat st;

	char *inline_pw = mw_config_value(config, "password");
	bool has_pw = inline_pw != NULL;

	if (inline_pw != NULL)
		OPENSSL_clear_free(inline_pw, strlen(inline_pw));
	if (stat(config, &st) == 0 && (st.st_mode & 0077) != 0 && has_pw) {
		if (check_only)
			printf("%s: WARNING: holds the password and is readable by others "
			    "(mode %04o): chmod 600 %s\n", config, st.st_mode & 07777, config);
		else
			logline("warning", "file=%s mode=%04o reason=\"holds the password and "
			    "is readable by others\"", config, st.st_mode & 07777);
		warnings++;
	}
	for (int i = 0; keys[i] != NULL; i++) {
		char *v = mw_config_value(config, keys[i]), *p = NULL;

		if (v != NULL && mw_omemo_account_path(config, v, &p) == 0 &&
		    stat(p, &st) == 0 && (st.st_mode & 0077) != 0) {
			if (check_only)
				printf("%s: WARNING: %s %s is readable by others (mode %04o): "
				    "chmod 600 %s\n", config, keys[i], p, st.st_mode & 07777, p);
			else
				logline("warning", "file=%s mode=%04o reason=\"%s readable by "
				    "others\"", p, st.st_mode & 07777, keys[i]);
			warnings++;
		}
		free(v);
		free(p);
	}
	return warnings;
}

static int
agent_open(struct agent *a, const char *config, bool check_only)
{
	char err[1024];
	struct mw_sandbox_config sc;
	int n, rc;

	if (mw_agent_config_load(config, &a->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (mw_policy_load(a->cfg.policy, &a->policy, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (mw_allowed_signers_load(a->cfg.allowed_signers, &a->signers, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	(void)warn_exposed_secrets(config, check_only);
	/* no read or write grant may reach the agent's own files */
	if (mw_agent_protected_paths(config, &a->cfg, a->protected, &a->n_protected,
	    err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&a->policy, a->protected, a->n_protected, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (check_only) {
		printf("%s: configuration ok (policy: %zu profiles, %zu allow lines)\n",
		    config, a->policy.n_profiles, a->policy.n_allows);
		return 0;
	}
	/* the supervisor first: it never sees the database or the keys */
	memset(&sc, 0, sizeof(sc));
	sc.parallel = a->cfg.parallel;
	sc.queue_max = a->cfg.queue_max;
	sc.state_dir = a->cfg.state_dir;
	for (size_t i = 0; i < a->n_protected; i++)
		a->protected_ptrs[i] = a->protected[i].path;
	sc.protected_paths = a->protected_ptrs;
	sc.n_protected = (unsigned)a->n_protected;
	if (mw_sandbox_start(&sc, &a->sb) != 0) {
		fprintf(stderr, "moonwire agent: the sandbox could not start\n");
		return MW_EXIT_UNAVAILABLE;
	}
	/* The supervisor holds the sandbox's privileges now; this process
	 * keeps none (ambient, inheritable, permitted, effective) before it
	 * opens the identity database or any key.  Fail closed. */
	if (mw_sandbox_drop_caller_capabilities() != 0) {
		fprintf(stderr, "moonwire agent: could not drop the agent's capabilities "
		    "after starting the sandbox: %s; refusing to run\n", strerror(errno));
		return MW_EXIT_UNAVAILABLE;
	}
	if (mw_omemo_account_private_db(a->cfg.account.db, true, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_UNAVAILABLE;
	}
	if ((rc = mw_omemo_db_open(a->cfg.account.db, true, &a->db)) != 0 ||
	    db_sync(a, a->cfg.durability_full) != 0) {
		fprintf(stderr, "moonwire agent: %s: %s\n", a->cfg.account.db,
		    a->db ? sqlite3_errmsg(a->db) : mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	if ((rc = mw_omemo_open(&a->o, a->db, a->cfg.account.jid)) != 0) {
		fprintf(stderr, "moonwire agent: %s: %s\n", a->cfg.account.db,
		    mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	/* defence in depth behind the peek in handle_encrypted(): the OMEMO
	 * layer itself decrypts nothing from a key that is not verified */
	mw_omemo_set_require_verified(a->o, true);
	a->new_sessions.tokens = (double)a->cfg.new_session_global_burst;
	a->new_sessions.last_ms = now_ms();
	if (mw_journal_init(a->db) != 0 || (n = mw_journal_recover(a->db,
	    (int64_t)time(NULL))) < 0) {
		fprintf(stderr, "moonwire agent: %s: journal: %s\n", a->cfg.account.db,
		    sqlite3_errmsg(a->db));
		return MW_EXIT_UNAVAILABLE;
	}
	if (n > 0)
		logline("recovered", "interrupted=%d", n);
	/* a crash is a lost connection too: results the server never
	 * confirmed are sent again */
	if ((n = mw_journal_resend_unconfirmed(a->db)) > 0)
		logline("resend-scheduled", "results=%d", n);
	xmpp_initialize();
	if ((a->x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL)
		return MW_EXIT_UNAVAILABLE;
	if ((rc = mw_omemo_set_transport(a->o, a->x, send_stanza, a)) != 0) {
		fprintf(stderr, "moonwire agent: omemo: %s\n", mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	a->backoff_ms = BACKOFF_INITIAL_MS;
	logline("started", "jid=%s device=%u supervisor=%d policy=%s capabilities=none",
	    a->cfg.account.jid, mw_omemo_device_id(a->o), (int)mw_sandbox_pid(a->sb),
	    a->cfg.policy);
	return 0;
}

static void
agent_close(struct agent *a)
{
	for (size_t i = 0; i < RATE_SLOTS; i++)
		free(a->rate[i].jid);
	while (a->jobs != NULL) {
		struct running_job *j = a->jobs;
		unlink_job(a, j);
		running_free(j);
	}
	/* the connection first: releasing one that is not yet disconnected
	 * runs on_conn(), which uses the OMEMO context and the database */
	if (a->conn != NULL) {
		mw_omemo_account_release(a->conn);
		xmpp_conn_release(a->conn);
	}
	a->conn = NULL;
	/* after the release: its on_conn() may still have used them */
	sent_free(a->pending, a->n_pending);
	sent_free(a->awaiting, a->n_awaiting);
	a->pending = a->awaiting = NULL;
	a->n_pending = a->n_awaiting = 0;
	if (a->o != NULL)
		mw_omemo_close(a->o);
	if (a->sm != NULL)
		xmpp_free_sm_state(a->sm);
	if (a->x != NULL) {
		xmpp_ctx_free(a->x);
		xmpp_shutdown();
	}
	if (a->db != NULL)
		sqlite3_close(a->db);
	if (a->sb != NULL)
		mw_sandbox_stop(a->sb);
	if (a->signers != NULL)
		mw_allowed_signers_free(a->signers);
	mw_policy_free(&a->policy);
	mw_protected_paths_free(a->protected, a->n_protected);
	a->n_protected = 0;
	mw_agent_config_free(&a->cfg);
}

static void
begin_stop(struct agent *a)
{
	xmpp_stanza_t *p;

	a->stopping = true;
	a->stop_deadline_ms = now_ms() + a->cfg.shutdown_grace_ms;
	logline("stopping", "running=%u grace_ms=%u", a->n_jobs, a->cfg.shutdown_grace_ms);
	/* unavailable: the server keeps new messages offline for the next start */
	if (a->connected && (p = xmpp_presence_new(a->x)) != NULL) {
		xmpp_stanza_set_type(p, "unavailable");
		xmpp_send(a->conn, p);
		xmpp_stanza_release(p);
	}
}

/*
 * SIGHUP (`systemctl reload`): the policy and allowed_signers are read
 * again.  Both must load and pass the own-files check, or the agent keeps
 * what it had and says why with FILE:LINE.  A running job keeps the grants
 * it started with (start_job copied them); the next message is decided
 * under the new files.  The configuration file itself is not re-read.
 */
static void
agent_reload(struct agent *a)
{
	struct mw_policy np;
	struct mw_allowed_signers *ns = NULL;
	char err[1024];

	memset(&np, 0, sizeof(np));
	if (mw_policy_load(a->cfg.policy, &np, err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&np, a->protected, a->n_protected, err,
	    sizeof(err)) != 0 ||
	    mw_allowed_signers_load(a->cfg.allowed_signers, &ns, err, sizeof(err)) != 0) {
		logline("reload-failed", "error=\"%s\" (the previous policy and allowed_signers "
		    "stay in force)", err);
		mw_policy_free(&np);
		return;
	}
	mw_policy_free(&a->policy);
	a->policy = np;
	mw_allowed_signers_free(a->signers);
	a->signers = ns;
	logline("reloaded", "policy=%s profiles=%zu allow=%zu allowed_signers=%s",
	    a->cfg.policy, a->policy.n_profiles, a->policy.n_allows, a->cfg.allowed_signers);
}

static void
agent_loop(struct agent *a)
{
	unsigned drain = 0;	/* extra non-blocking passes for TLS-buffered data */

	a->reconnect_at_ms = 0;
	a->next_tick_ms = now_ms() + TICK_MS;
	for (;;) {
		struct pollfd pf[2];
		nfds_t nf = 0;
		uint64_t t = now_ms();
		int timeout;

		if (g_stop && !a->stopping)
			begin_stop(a);
		if (g_reload) {
			g_reload = 0;
			agent_reload(a);
		}
		if (a->stopping && (a->n_jobs == 0 || t >= a->stop_deadline_ms)) {
			if (a->n_jobs > 0)
				interrupt_all(a, "the agent was stopped while the job ran");
			break;
		}
		if (!a->stopping && a->conn == NULL)
			(void)start_connection(a);
		else if (!a->stopping && a->reconnect_at_ms != 0 && t >= a->reconnect_at_ms) {
			a->reconnect_at_ms = 0;
			(void)start_connection(a);
		}
		if (t >= a->next_tick_ms) {
			a->next_tick_ms = t + TICK_MS;
			if (a->connected)
				mw_omemo_tick(a->o);
			if (a->connected && a->ping_sent_ms != 0 &&
			    t - a->ping_sent_ms > PING_TIMEOUT_MS) {
				logline("ping-timeout", NULL);
				a->ping_sent_ms = 0;
				xmpp_disconnect(a->conn);
			} else if (a->connected && a->ping_sent_ms == 0 && t >= a->next_ping_ms) {
				a->next_ping_ms = t + PING_INTERVAL_MS;
				send_ping(a);
			}
		}
		timeout = (int)(a->next_tick_ms - t);
		if (a->reconnect_at_ms != 0 && a->reconnect_at_ms - t < (uint64_t)timeout)
			timeout = (int)(a->reconnect_at_ms > t ? a->reconnect_at_ms - t : 0);
		pf[nf].fd = mw_sandbox_fd(a->sb);
		pf[nf].events = POLLIN | (mw_sandbox_want_write(a->sb) ? POLLOUT : 0);
		nf++;
		if (g_xmpp_fd >= 0 && a->conn != NULL && !xmpp_conn_is_disconnected(a->conn)) {
			pf[nf].fd = g_xmpp_fd;
			pf[nf].events = POLLIN;
			if (xmpp_conn_send_queue_len(a->conn) > 0 || !a->connected)
				pf[nf].events |= POLLOUT;
			nf++;
			/* while the handshake runs, libstrophe's own timeouts matter */
			if (!a->connected && timeout > 50)
				timeout = 50;
		}
		if (drain > 0)
			timeout = 0;
		if (poll(pf, nf, timeout) < 0 && errno != EINTR)
			break;
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
			read_results(a);
		if (pf[0].revents & POLLOUT)
			(void)mw_sandbox_flush(a->sb);
		if (nf > 1 && (pf[1].revents & POLLIN))
			drain = 4;
		else if (drain > 0)
			drain--;
		if (a->conn != NULL)
			xmpp_run_once(a->x, 0);
	}
}

int
mw_cmd_agent(int argc, char **argv)
{
	struct agent *a;
	struct sigaction sa;
	bool check = argc == 4 && strcmp(argv[3], "--check") == 0;
	int rc;

	if ((argc != 3 && !check) || strcmp(argv[1], "-c") != 0) {
		fprintf(stderr, "usage: moonwire agent -c CONFIG [--check]\n");
		return MW_EXIT_USAGE;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return MW_EXIT_UNAVAILABLE;
	setvbuf(stderr, NULL, _IOLBF, 0);
	crash_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if ((rc = agent_open(a, argv[2], check)) == 0 && !check) {
		agent_loop(a);
		if (a->conn != NULL && a->connected) {
			uint64_t until = now_ms() + 2000;

			xmpp_disconnect(a->conn);
			while (!xmpp_conn_is_disconnected(a->conn) && now_ms() < until)
				xmpp_run_once(a->x, 50);
		}
		logline("stopped", NULL);
	}
	agent_close(a);
	free(a);
	return rc;
}
