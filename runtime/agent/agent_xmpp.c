/*
 * agent_xmpp.c: the agent's XMPP side -- sending stanzas and OMEMO
 * messages, the delivery barrier that confirms results reached the server,
 * the message/IQ/presence handlers, pings, and the connection with its
 * reconnect backoff (network errors quickly, configuration errors slowly).
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

#include "runtime/agent/agent.h"


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

void
agent_send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct agent *a = arg;

	if (a->conn != NULL && a->connected) {
		if (is_bundle_publish(st))
			agent_log("bundle-publish", NULL);
		xmpp_send(a->conn, st);
	}
}

static int add_chat_state(struct agent *a, xmpp_stanza_t *msg, const char *state);

/* Encrypts text to one device of jid and sends it, with the XEP-0085 chat
 * state `state` in the same stanza unless NULL (a result carries
 * "active").  0 when handed to the connection. */
int
agent_send_encrypted(struct agent *a, const char *jid, uint32_t device, const char *text,
    const char *state)
{
	xmpp_stanza_t *msg = NULL;
	int rc;

	if (!a->connected)
		return -1;
	rc = mw_omemo_encrypt(a->o, a->x, jid, &device, 1, text, strlen(text), &msg);
	if (rc != 0) {
		agent_log("reply-failed", "to=%s device=%u error=%s", jid, device,
		    mw_omemo_strerror(rc));
		return -1;
	}
	/* best effort: without it the result is still the result */
	if (state != NULL && add_chat_state(a, msg, state) != 0)
		agent_log("chat-state-failed", "to=%s state=%s", jid, state);
	xmpp_send(a->conn, msg);
	xmpp_stanza_release(msg);
	return 0;
}

static int
add_chat_state(struct agent *a, xmpp_stanza_t *msg, const char *state)
{
	xmpp_stanza_t *el = xmpp_stanza_new(a->x);
	int rc = -1;

	if (el != NULL && xmpp_stanza_set_name(el, state) == XMPP_EOK &&
	    xmpp_stanza_set_ns(el, MW_CHATSTATES_NS) == XMPP_EOK &&
	    xmpp_stanza_add_child(msg, el) == XMPP_EOK)
		rc = 0;
	if (el != NULL)
		xmpp_stanza_release(el);
	return rc;
}

/*
 * Sends a XEP-0085 chat state ("composing" while a job runs) to jid as a
 * stanza of its own: a plain <message type='chat'> with the state element
 * and a no-store hint, no <body>.  It carries no secret, only that a job is
 * running -- which the result message reveals anyway (spec/agent.md) -- so
 * it is not encrypted.  0 when handed to the connection.
 */
int
agent_send_chat_state(struct agent *a, const char *jid, const char *state)
{
	xmpp_stanza_t *msg = NULL, *state_el = NULL, *hint = NULL;
	int rc = -1;

	if (!a->connected || a->conn == NULL)
		return -1;
	if ((msg = xmpp_message_new(a->x, "chat", jid, NULL)) == NULL ||
	    (state_el = xmpp_stanza_new(a->x)) == NULL ||
	    (hint = xmpp_stanza_new(a->x)) == NULL)
		goto out;
	if (xmpp_stanza_set_name(state_el, state) != XMPP_EOK ||
	    xmpp_stanza_set_ns(state_el, MW_CHATSTATES_NS) != XMPP_EOK ||
	    xmpp_stanza_add_child(msg, state_el) != XMPP_EOK ||
	    xmpp_stanza_set_name(hint, "no-store") != XMPP_EOK ||
	    xmpp_stanza_set_ns(hint, "urn:xmpp:hints") != XMPP_EOK ||
	    xmpp_stanza_add_child(msg, hint) != XMPP_EOK)
		goto out;
	xmpp_send(a->conn, msg);
	rc = 0;
out:
	if (hint != NULL)
		xmpp_stanza_release(hint);
	if (state_el != NULL)
		xmpp_stanza_release(state_el);
	if (msg != NULL)
		xmpp_stanza_release(msg);
	return rc;
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
void
agent_sent_free(struct sent_result *v, size_t n)
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
	agent_sync_commits(a, false);
	for (size_t i = 0; i < a->n_awaiting; i++)
		if (mw_journal_confirm(a->db, a->awaiting[i].signer,
		    a->awaiting[i].job_id) != 0)
			agent_log("journal-error", "job=%s op=confirm error=\"%s\"",
			    a->awaiting[i].job_id, sqlite3_errmsg(a->db));
	agent_sync_commits(a, a->cfg.durability_full);
	agent_sent_free(a->awaiting, a->n_awaiting);
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
void
agent_barrier_reset(struct agent *a)
{
	int n;

	agent_sent_free(a->pending, a->n_pending);
	agent_sent_free(a->awaiting, a->n_awaiting);
	a->pending = a->awaiting = NULL;
	a->n_pending = a->n_awaiting = 0;
	a->barrier_out = false;
	if ((n = mw_journal_resend_unconfirmed(a->db)) > 0)
		agent_log("resend-scheduled", "results=%d", n);
	else if (n < 0)
		agent_log("journal-error", "op=resend error=\"%s\"", sqlite3_errmsg(a->db));
}

void
agent_mark_replied(struct agent *a, const char *signer, const char *job_id)
{
	agent_sync_commits(a, false);
	if (mw_journal_mark_replied(a->db, signer, job_id) != 0)
		agent_log("journal-error", "job=%s op=replied error=\"%s\"", job_id,
		    sqlite3_errmsg(a->db));
	agent_sync_commits(a, a->cfg.durability_full);
	agent_await_barrier(a, signer, job_id);
}

/* A result whose row says replied = 1: confirmed by the next barrier. */
void
agent_await_barrier(struct agent *a, const char *signer, const char *job_id)
{
	struct sent_result *np;

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
void
agent_flush_unreplied(struct agent *a)
{
	struct mw_journal_entry *rows;
	size_t n;

	if (mw_journal_unreplied(a->db, &rows, &n) != 0) {
		agent_log("journal-error", "op=unreplied error=\"%s\"", sqlite3_errmsg(a->db));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (rows[i].result != NULL &&
		    agent_send_encrypted(a, rows[i].from_jid, rows[i].device, rows[i].result, NULL) == 0) {
			agent_mark_replied(a, rows[i].signer, rows[i].job_id);
			agent_log("reply-sent", "job=%s to=%s device=%u stored=yes",
			    rows[i].job_id, rows[i].from_jid, rows[i].device);
		}
		mw_journal_entry_free(&rows[i]);
	}
	free(rows);
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
	/* legacy OMEMO or OMEMO 2: mw_omemo_decrypt takes either, and the
	 * answer goes out in the version the device wrote in */
	if (xmpp_stanza_get_child_by_name_and_ns(st, "encrypted", MW_OMEMO_NS) != NULL ||
	    xmpp_stanza_get_child_by_name_and_ns(st, "encrypted", MW_OMEMO2_NS) != NULL) {
		if ((bare = xmpp_jid_bare(a->x, from)) == NULL)
			return 1;
		/* a JID no policy line names can never run anything: not even
		 * decrypted, so strangers cannot spend our prekeys or CPU */
		if (!mw_policy_knows_jid(&a->policy, bare) &&
		    strcmp(bare, mw_omemo_jid(a->o)) != 0)
			agent_log("refused", "code=untrusted_device from=%s reason=\"JID not in "
			    "the policy; not decrypted\"", bare);
		else
			agent_handle_encrypted(a, st);
		xmpp_free(a->x, bare);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name(st, "body") != NULL)
		agent_log("refused", "code=not_a_job from=%s reason=\"unencrypted message "
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
			MW_OMEMO_NODE_DEVICELIST, MW_OMEMO_DEVICELIST_NOTIFY,
			MW_OMEMO2_NODE_DEVICES, MW_OMEMO2_NODE_DEVICES "+notify", NULL
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
	agent_log("subscription", "from=%s %s", bare, ok ? "approved" : "refused");
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

void
agent_send_ping(struct agent *a)
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
	a->ping_sent_ms = agent_now_ms();
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

	mw_agent_xmpp_fd = *(int *)sock;
	if (setsockopt(mw_agent_xmpp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		agent_log("sockopt-failed", "option=TCP_NODELAY error=\"%s\"", strerror(errno));
	return xmpp_sockopt_cb_keepalive(conn, sock);
}

/*
 * Exponential backoff with +-20% jitter: network errors from 1 s to 2 min;
 * configuration errors (refused login, untrusted or mismatched certificate,
 * unusable ca_file) from 1 min to 10 min, since only a change of the file
 * or the server can fix them.  The first attempt after a connection that
 * was up is lost waits up to reconnect_spread more, drawn uniformly: when
 * a server restarts, its whole fleet loses the connection in the same
 * instant, and the spread keeps it from coming back in the same second.
 */
static void
schedule_reconnect(struct agent *a, bool config_error, bool lost)
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
	a->reconnect_at_ms = agent_now_ms() + (uint64_t)((double)a->backoff_ms * jitter);
	if (lost && a->cfg.reconnect_spread_ms > 0) {
		uint32_t u;

		if (RAND_bytes((unsigned char *)&u, sizeof(u)) != 1)
			u = 0x7fffffffu;
		a->reconnect_at_ms += (uint64_t)u % ((uint64_t)a->cfg.reconnect_spread_ms + 1);
	}
	agent_log("reconnect-scheduled", "in_ms=%" PRIu64 " kind=%s",
	    a->reconnect_at_ms - agent_now_ms(), config_error ? "configuration" : "network");
	a->backoff_ms = (unsigned)((double)a->backoff_ms * (config_error ? 2.0 : 1.6));
	if (a->backoff_ms > cap)
		a->backoff_ms = cap;
}

/*
 * Failover (spec/agent.md): an attempt that did not get connected moves
 * on to the next server of host + failover, round and round; the delay
 * between attempts stays the jittered backoff, so a fleet whose server
 * restarts spreads its reconnections and the next server does not get
 * every agent in the same second.  A lost connection tries its own server
 * once more first (the session may resume there).
 */
static void
current_server(const struct agent *a, const char **host, unsigned short *port)
{
	*host = a->cfg.account.host;
	*port = a->cfg.account.port;
	if (a->server_idx > 0 && a->server_idx <= a->cfg.n_failover) {
		*host = a->cfg.failover_host[a->server_idx - 1];
		if (a->cfg.failover_port[a->server_idx - 1] != 0)
			*port = a->cfg.failover_port[a->server_idx - 1];
	}
}

static void
next_server(struct agent *a)
{
	unsigned n = a->cfg.n_failover + 1;

	if (n < 2)
		return;
	const char *host;
	unsigned short port;

	a->server_idx = (a->server_idx + 1) % n;
	current_server(a, &host, &port);
	agent_log("server-failover", "next=%s:%u", host, port ? port : 5222);
}

/* The OMEMO layer's PEP log lines, in the agent's log format. */
static void
omemo_log(const char *event, const char *fields, void *arg)
{
	agent_log(event, "%s", fields);
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
		mw_agent_xmpp_fd = -1;
		mw_omemo_detach(a->o);
		if (a->pin_refused) {
			snprintf(why, sizeof(why), "server certificate does not match "
			    "cert_pin_sha256 (check the pin, or the server's certificate "
			    "changed)");
			config_error = true;
		} else {
			/* named after the server this attempt went to */
			struct mw_omemo_account acc = a->cfg.account;
			const char *h;

			current_server(a, &h, &acc.port);
			acc.host = (char *)h;
			config_error = mw_omemo_account_describe_failure(&acc,
			    conn, error, se, why, sizeof(why)) == MW_OMEMO_FAIL_CONFIG;
		}
		a->pin_refused = false;
		/* a configuration error is named each time it happens */
		agent_log(was ? "disconnected" : "connect-failed",
		    "error=%d was_connected=%s reason=\"%s\"", error, was ? "yes" : "no", why);
		if (was)
			agent_barrier_reset(a);
		if (!a->stopping) {
			/* keep the stream-management state for a resumption */
			if (a->sm != NULL)
				xmpp_free_sm_state(a->sm);
			a->sm = xmpp_conn_get_sm_state(conn);
			if (!was)
				next_server(a);
			schedule_reconnect(a, config_error && !was, was);
		}
		return;
	}
	if (mw_omemo_account_check_pin(&a->cfg.account, conn) != 0) {
		agent_log("tls-pin-mismatch", "host=%s", a->cfg.account.host ?
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
	/* attach, then route the layer's stanzas through agent_send_stanza(), which
	 * logs every bundle publish; the layer logs its publication outcome
	 * (omemo-published / omemo-publish-failed) through omemo_log() */
	mw_omemo_set_log(a->o, omemo_log, NULL);
	if ((rc = mw_omemo_attach(a->o, conn)) != 0 ||
	    (rc = mw_omemo_set_transport(a->o, a->x, agent_send_stanza, a)) != 0 ||
	    (rc = mw_omemo_start(a->o)) != 0) {
		agent_log("omemo-error", "op=start error=%s", mw_omemo_strerror(rc));
		xmpp_disconnect(conn);
		return;
	}
	if ((pres = xmpp_presence_new(a->x)) != NULL) {
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
	}
	a->next_ping_ms = agent_now_ms() + PING_INTERVAL_MS;
	a->ping_sent_ms = 0;
	agent_log("connected", "jid=%s device=%u secured=%s", mw_omemo_jid(a->o),
	    mw_omemo_device_id(a->o), xmpp_conn_is_secured(conn) ? "yes" : "no");
	agent_flush_unreplied(a);
}

int
agent_start_connection(struct agent *a)
{
	char why[1024];

	if (a->conn != NULL) {
		mw_omemo_account_release(a->conn);
		xmpp_conn_release(a->conn);
	}
	a->conn = NULL;
	a->pin_refused = false;
	if ((a->conn = xmpp_conn_new(a->x)) == NULL) {
		agent_log("connect-failed", "reason=\"out of memory\"");
		schedule_reconnect(a, false, false);
		return -1;
	}
	if (a->cfg.account.ca_file != NULL &&
	    mw_omemo_account_check_ca_file(a->cfg.account.ca_file, why, sizeof(why)) != 0) {
		/* libstrophe 0.12 crashes on a CA file it cannot load */
		agent_log("connect-failed", "reason=\"ca_file %s\"", why);
		schedule_reconnect(a, true, false);
		return -1;
	}
	if (mw_omemo_account_apply(&a->cfg.account, a->conn) != 0) {
		agent_log("connect-failed", "reason=\"account settings refused\"");
		schedule_reconnect(a, true, false);
		return -1;
	}
	xmpp_conn_set_sockopt_callback(a->conn, on_socket);
	if (a->sm != NULL) {
		/* ownership passes to the connection */
		if (xmpp_conn_set_sm_state(a->conn, a->sm) == XMPP_EOK)
			a->sm = NULL;
	}
	const char *host;
	unsigned short port;
	current_server(a, &host, &port);
	if (xmpp_connect_client(a->conn, host, port, on_conn, a) != XMPP_EOK) {
		agent_log("connect-failed", "host=%s reason=\"cannot start connecting\"",
		    host ? host : "-");
		next_server(a);
		schedule_reconnect(a, false, false);
		return 0;
	}
	if (a->cfg.n_failover > 0)
		agent_log("connecting", "jid=%s server=%s:%u", a->cfg.account.jid, host,
		    port ? port : 5222);
	else
		agent_log("connecting", "jid=%s", a->cfg.account.jid);
	return 0;
}

