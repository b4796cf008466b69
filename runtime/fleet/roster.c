/*
 * roster.c: the operator's XMPP roster as the fleet inventory (RFC 6121):
 * roster groups name sets of agents, so the inventory lives in the
 * operator's account and every XMPP client shows it.  A short connection
 * of the operator's account that sends no presence and runs no OMEMO does
 * one IQ at a time and waits for its answer; `moonwire fleet` edits the
 * groups with it and `moonwire send --group` reads them before anything is
 * signed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

#include "runtime/fleet/fleet.h"

#define ROSTER_NS "jabber:iq:roster"
#define STANZAS_NS "urn:ietf:params:xml:ns:xmpp-stanzas"

struct mw_roster_conn {
	const struct mw_omemo_account *acct;	/* borrowed: outlives c */
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	uint64_t timeout_ms;
	bool connected, failed;
	char why[768];			/* why the connection ended */
	unsigned seq;
	char id[32];			/* of the IQ in flight */
	xmpp_stanza_t *reply;		/* its answer (a copy) */
};

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the roster as data ---- */

static void
item_free(struct mw_fleet_item *it)
{
	free(it->jid);
	free(it->name);
	free(it->subscription);
	for (size_t g = 0; g < it->ngroups; g++)
		free(it->groups[g]);
	free(it->groups);
	memset(it, 0, sizeof(*it));
}

void
mw_fleet_roster_free(struct mw_fleet_roster *r)
{
	for (size_t i = 0; i < r->n; i++)
		item_free(&r->items[i]);
	free(r->items);
	memset(r, 0, sizeof(*r));
}

/* jid in normal form into out, or out = "" when it is no bare JID. */
static void
normal_form(const char *jid, char *out, size_t outlen)
{
	if (mw_fleet_jid_normalize(jid, strlen(jid), out, outlen, NULL, 0) != MW_FLEET_OK)
		out[0] = '\0';
}

struct mw_fleet_item *
mw_fleet_roster_find(struct mw_fleet_roster *r, const char *jid)
{
	char want[2 * MW_FLEET_PART_MAX + 2], have[2 * MW_FLEET_PART_MAX + 2];

	normal_form(jid, want, sizeof(want));
	for (size_t i = 0; i < r->n; i++) {
		normal_form(r->items[i].jid, have, sizeof(have));
		if (want[0] != '\0' ? strcmp(want, have) == 0 :
		    strcmp(jid, r->items[i].jid) == 0)
			return &r->items[i];
	}
	return NULL;
}

bool
mw_fleet_item_in_group(const struct mw_fleet_item *it, const char *group)
{
	for (size_t g = 0; g < it->ngroups; g++)
		if (strcmp(it->groups[g], group) == 0)
			return true;	/* RFC 6121 group names: compared as given */
	return false;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
mw_fleet_targets_add_group(struct mw_fleet_targets *t,
    const struct mw_fleet_roster *r, const char *group, char *err, size_t errlen)
{
	char **members, why[256];
	size_t n = 0;
	int rc = MW_FLEET_OK;

	if ((members = calloc(r->n + 1, sizeof(*members))) == NULL)
		return fail(err, errlen, MW_FLEET_E_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n; i++)
		if (mw_fleet_item_in_group(&r->items[i], group))
			members[n++] = r->items[i].jid;
	if (n == 0) {
		free(members);
		return fail(err, errlen, MW_FLEET_E_GROUP, "roster group '%s' does not "
		    "exist or has no members (add agents with `moonwire fleet add "
		    "--group %s JID...`)", group, group);
	}
	qsort(members, n, sizeof(*members), cmp_str);
	for (size_t i = 0; i < n && rc == MW_FLEET_OK; i++)
		if ((rc = mw_fleet_targets_add(t, members[i], why, sizeof(why))) != MW_FLEET_OK)
			rc = fail(err, errlen, rc == MW_FLEET_E_JID ? MW_FLEET_E_GROUP : rc,
			    "roster group '%s': member '%s': %s", group, members[i], why);
	free(members);
	return rc;
}

/* ---- the connection ---- */

/*
 * Whether st comes from our own account (no 'from', our bare JID or one of
 * its resources): roster answers and pushes come only from there (RFC 6121
 * 2.1.5, 2.1.6); anything else that matches an id is ignored.
 */
static bool
from_own_account(const struct mw_roster_conn *c, xmpp_stanza_t *st)
{
	const char *from = xmpp_stanza_get_from(st);
	char own[2 * MW_FLEET_PART_MAX + 2], f[2 * MW_FLEET_PART_MAX + 2];
	size_t n;

	if (from == NULL)
		return true;
	n = strcspn(from, "/");
	normal_form(c->acct->jid, own, sizeof(own));
	if (mw_fleet_jid_normalize(from, n, f, sizeof(f), NULL, 0) != MW_FLEET_OK)
		return false;
	return own[0] != '\0' && strcmp(own, f) == 0;
}

static int
on_push(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_roster_conn *c = arg;
	const char *id = xmpp_stanza_get_id(st);
	xmpp_stanza_t *res;

	if (!from_own_account(c, st))
		return 1;	/* RFC 6121 2.1.6: ignored */
	if (id != NULL && (res = xmpp_iq_new(c->x, "result", id)) != NULL) {
		xmpp_send(conn, res);
		xmpp_stanza_release(res);
	}
	return 1;
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct mw_roster_conn *c = arg;

	if (ev != XMPP_CONN_CONNECT) {
		if (!c->connected && !c->failed)
			(void)mw_omemo_account_describe_failure(c->acct, conn, error, se,
			    c->why, sizeof(c->why));
		else if (!c->failed)
			snprintf(c->why, sizeof(c->why), "connection lost");
		c->connected = false;
		c->failed = true;
		return;
	}
	if (mw_omemo_account_check_pin(c->acct, conn) != 0) {
		snprintf(c->why, sizeof(c->why), "server certificate does not match "
		    "cert_pin_sha256 (check the pin, or the server's certificate changed)");
		c->failed = true;
		xmpp_disconnect(conn);
		return;
	}
	xmpp_handler_add(conn, on_push, ROSTER_NS, "iq", "set", c);
	c->connected = true;
}

void
mw_roster_close(struct mw_roster_conn *c)
{
	if (c == NULL)
		return;
	if (c->conn != NULL && c->connected) {
		xmpp_disconnect(c->conn);
		for (int i = 0; i < 20 && !xmpp_conn_is_disconnected(c->conn); i++)
			xmpp_run_once(c->x, 50);
	}
	if (c->reply != NULL)
		xmpp_stanza_release(c->reply);
	if (c->conn != NULL) {
		mw_omemo_account_release(c->conn);
		xmpp_conn_release(c->conn);
	}
	if (c->x != NULL)
		xmpp_ctx_free(c->x);
	xmpp_shutdown();
	free(c);
}

int
mw_roster_connect(const struct mw_omemo_account *a, uint64_t timeout_ms,
    struct mw_roster_conn **out, char *err, size_t errlen)
{
	struct mw_roster_conn *c;
	uint64_t deadline;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return fail(err, errlen, MW_FLEET_E_NOMEM, "out of memory");
	c->acct = a;
	c->timeout_ms = timeout_ms;
	xmpp_initialize();
	if ((c->x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL ||
	    (c->conn = xmpp_conn_new(c->x)) == NULL ||
	    mw_omemo_account_apply(a, c->conn) != 0) {
		mw_roster_close(c);
		return fail(err, errlen, MW_FLEET_E_XMPP, "cannot set up the connection");
	}
	/* short-lived and roster-only: nothing for stream management to keep */
	xmpp_conn_set_flags(c->conn, xmpp_conn_get_flags(c->conn) |
	    XMPP_CONN_FLAG_DISABLE_SM);
	if (xmpp_connect_client(c->conn, a->host, a->port, on_conn, c) != XMPP_EOK) {
		mw_roster_close(c);
		return fail(err, errlen, MW_FLEET_E_XMPP, "cannot connect");
	}
	deadline = now_ms() + timeout_ms;
	while (!c->connected && !c->failed && now_ms() < deadline)
		xmpp_run_once(c->x, 50);
	if (!c->connected) {
		int rc = fail(err, errlen, MW_FLEET_E_XMPP, "%s", c->failed ? c->why :
		    "connecting timed out");

		mw_roster_close(c);
		return rc;
	}
	*out = c;
	return MW_FLEET_OK;
}

static int
on_reply(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_roster_conn *c = arg;

	(void)conn;
	if (!from_own_account(c, st))
		return 1;	/* not the answer: keep waiting for it */
	if (c->reply == NULL && (c->reply = xmpp_stanza_copy(st)) == NULL) {
		snprintf(c->why, sizeof(c->why), "out of memory");
		c->failed = true;
	}
	return 0;
}

/* The first defined condition of an <error/>, for people. */
static const char *
error_condition(xmpp_stanza_t *st)
{
	xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error"), *ch;

	for (ch = e ? xmpp_stanza_get_children(e) : NULL; ch != NULL;
	    ch = xmpp_stanza_get_next(ch)) {
		const char *ns = xmpp_stanza_get_ns(ch), *name = xmpp_stanza_get_name(ch);

		if (name != NULL && ns != NULL && strcmp(ns, STANZAS_NS) == 0 &&
		    strcmp(name, "text") != 0)
			return name;
	}
	return "undefined-condition";
}

/*
 * Sends iq (taking it) and waits for its answer: MW_FLEET_OK with the
 * result in c->reply (released by the next call or mw_fleet_close), or
 * MW_FLEET_E_XMPP with "WHAT: reason" in err.
 */
static int
iq_call(struct mw_roster_conn *c, xmpp_stanza_t *iq, const char *what, char *err,
    size_t errlen)
{
	uint64_t deadline = now_ms() + c->timeout_ms;
	const char *type;

	if (c->reply != NULL) {
		xmpp_stanza_release(c->reply);
		c->reply = NULL;
	}
	snprintf(c->id, sizeof(c->id), "mw-fleet-%u", ++c->seq);
	if (xmpp_stanza_set_id(iq, c->id) != XMPP_EOK) {
		xmpp_stanza_release(iq);
		return fail(err, errlen, MW_FLEET_E_NOMEM, "%s: out of memory", what);
	}
	xmpp_id_handler_add(c->conn, on_reply, c->id, c);
	xmpp_send(c->conn, iq);
	xmpp_stanza_release(iq);
	while (c->reply == NULL && !c->failed && now_ms() < deadline)
		xmpp_run_once(c->x, 50);
	if (c->reply == NULL) {
		xmpp_id_handler_delete(c->conn, on_reply, c->id);
		return fail(err, errlen, MW_FLEET_E_XMPP, "%s: %s", what, c->failed ?
		    c->why : "no answer from the server in time");
	}
	type = xmpp_stanza_get_type(c->reply);
	if (type == NULL || strcmp(type, "result") != 0)
		return fail(err, errlen, MW_FLEET_E_XMPP, "%s: the server answered %s",
		    what, type != NULL && strcmp(type, "error") == 0 ?
		    error_condition(c->reply) : "neither result nor error");
	return MW_FLEET_OK;
}

/* A new <iq type=TYPE><query xmlns=jabber:iq:roster/></iq>; the query in *q. */
static xmpp_stanza_t *
roster_iq(struct mw_roster_conn *c, const char *type, xmpp_stanza_t **q)
{
	xmpp_stanza_t *iq = xmpp_iq_new(c->x, type, "0"), *query = xmpp_stanza_new(c->x);

	if (iq == NULL || query == NULL ||
	    xmpp_stanza_set_name(query, "query") != XMPP_EOK ||
	    xmpp_stanza_set_ns(query, ROSTER_NS) != XMPP_EOK ||
	    xmpp_stanza_add_child(iq, query) != XMPP_EOK) {
		if (iq != NULL)
			xmpp_stanza_release(iq);
		if (query != NULL)
			xmpp_stanza_release(query);
		return NULL;
	}
	xmpp_stanza_release(query);	/* iq holds it */
	*q = query;
	return iq;
}

static int
parse_item(xmpp_stanza_t *el, struct mw_fleet_item *it)
{
	const char *jid = xmpp_stanza_get_attribute(el, "jid");
	const char *name = xmpp_stanza_get_attribute(el, "name");
	const char *sub = xmpp_stanza_get_attribute(el, "subscription");

	memset(it, 0, sizeof(*it));
	if (jid == NULL)
		return 1;	/* not an item: skipped */
	if ((it->jid = strdup(jid)) == NULL ||
	    (name != NULL && (it->name = strdup(name)) == NULL) ||
	    (sub != NULL && (it->subscription = strdup(sub)) == NULL))
		return -1;
	for (xmpp_stanza_t *g = xmpp_stanza_get_children(el); g != NULL;
	    g = xmpp_stanza_get_next(g)) {
		const char *gn = xmpp_stanza_get_name(g);
		char *text, **ng;

		if (gn == NULL || strcmp(gn, "group") != 0)
			continue;
		if ((text = xmpp_stanza_get_text(g)) == NULL)
			continue;	/* an empty group element names no group */
		if ((ng = realloc(it->groups, (it->ngroups + 1) * sizeof(*ng))) == NULL ||
		    (ng[it->ngroups] = strdup(text)) == NULL) {
			if (ng != NULL)
				it->groups = ng;
			xmpp_free(xmpp_stanza_get_context(g), text);
			return -1;
		}
		it->groups = ng;
		it->ngroups++;
		xmpp_free(xmpp_stanza_get_context(g), text);
	}
	return 0;
}

int
mw_fleet_roster_get(struct mw_roster_conn *c, struct mw_fleet_roster *r, char *err,
    size_t errlen)
{
	xmpp_stanza_t *q, *iq = roster_iq(c, "get", &q), *query;
	int rc;

	memset(r, 0, sizeof(*r));
	if (iq == NULL)
		return fail(err, errlen, MW_FLEET_E_NOMEM, "roster get: out of memory");
	if ((rc = iq_call(c, iq, "roster get", err, errlen)) != MW_FLEET_OK)
		return rc;
	query = xmpp_stanza_get_child_by_name_and_ns(c->reply, "query", ROSTER_NS);
	for (xmpp_stanza_t *el = query ? xmpp_stanza_get_children(query) : NULL;
	    el != NULL; el = xmpp_stanza_get_next(el)) {
		const char *n = xmpp_stanza_get_name(el);
		struct mw_fleet_item *ni;
		int prc;

		if (n == NULL || strcmp(n, "item") != 0)
			continue;
		if ((ni = realloc(r->items, (r->n + 1) * sizeof(*ni))) == NULL) {
			mw_fleet_roster_free(r);
			return fail(err, errlen, MW_FLEET_E_NOMEM, "roster get: out of memory");
		}
		r->items = ni;
		prc = parse_item(el, &r->items[r->n]);
		if (prc < 0) {
			item_free(&r->items[r->n]);
			mw_fleet_roster_free(r);
			return fail(err, errlen, MW_FLEET_E_NOMEM, "roster get: out of memory");
		}
		if (prc == 0)
			r->n++;
	}
	return MW_FLEET_OK;
}

/* A child NAME of parent holding text. */
static int
add_text_child(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name,
    const char *text)
{
	xmpp_stanza_t *el = xmpp_stanza_new(x), *t = xmpp_stanza_new(x);
	int ok = el != NULL && t != NULL &&
	    xmpp_stanza_set_name(el, name) == XMPP_EOK &&
	    xmpp_stanza_set_text(t, text) == XMPP_EOK &&
	    xmpp_stanza_add_child(el, t) == XMPP_EOK &&
	    xmpp_stanza_add_child(parent, el) == XMPP_EOK;

	if (t != NULL)
		xmpp_stanza_release(t);
	if (el != NULL)
		xmpp_stanza_release(el);
	return ok ? 0 : -1;
}

/* <item jid=JID [name=NAME] [subscription=SUB]> and its groups, in q. */
static int
add_item(struct mw_roster_conn *c, xmpp_stanza_t *q, const struct mw_fleet_item *it,
    const char *sub)
{
	xmpp_stanza_t *el = xmpp_stanza_new(c->x);
	int ok = el != NULL && xmpp_stanza_set_name(el, "item") == XMPP_EOK &&
	    xmpp_stanza_set_attribute(el, "jid", it->jid) == XMPP_EOK &&
	    (it->name == NULL || xmpp_stanza_set_attribute(el, "name", it->name) ==
	    XMPP_EOK) &&
	    (sub == NULL || xmpp_stanza_set_attribute(el, "subscription", sub) ==
	    XMPP_EOK);

	for (size_t g = 0; ok && g < it->ngroups; g++)
		ok = add_text_child(c->x, el, "group", it->groups[g]) == 0;
	ok = ok && xmpp_stanza_add_child(q, el) == XMPP_EOK;
	if (el != NULL)
		xmpp_stanza_release(el);
	return ok ? 0 : -1;
}

static int
on_change_reply(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct mw_fleet_change *ch = arg;
	const char *type = xmpp_stanza_get_type(st);

	(void)conn;
	if (!from_own_account(ch->conn, st))
		return 1;	/* not the answer: keep waiting for it */
	ch->done = true;
	if (type != NULL && strcmp(type, "result") == 0)
		ch->rc = MW_FLEET_OK;
	else
		ch->rc = fail(ch->err, sizeof(ch->err), MW_FLEET_E_XMPP, "roster %s %s: "
		    "the server answered %s", ch->remove ? "remove" : "set", ch->item.jid,
		    type != NULL && strcmp(type, "error") == 0 ? error_condition(st) :
		    "neither result nor error");
	return 0;
}

/* Sends the roster set of ch; its answer comes to on_change_reply. */
static int
change_send(struct mw_roster_conn *c, struct mw_fleet_change *ch)
{
	xmpp_stanza_t *q, *iq = roster_iq(c, "set", &q);

	snprintf(ch->id, sizeof(ch->id), "mw-fleet-%u", ++c->seq);
	if (iq == NULL || add_item(c, q, &ch->item, ch->remove ? "remove" : NULL) != 0 ||
	    xmpp_stanza_set_id(iq, ch->id) != XMPP_EOK) {
		if (iq != NULL)
			xmpp_stanza_release(iq);
		ch->done = true;
		return ch->rc = fail(ch->err, sizeof(ch->err), MW_FLEET_E_NOMEM,
		    "roster set %s: out of memory", ch->item.jid);
	}
	ch->conn = c;
	xmpp_id_handler_add(c->conn, on_change_reply, ch->id, ch);
	xmpp_send(c->conn, iq);
	xmpp_stanza_release(iq);
	return 0;
}

int
mw_fleet_roster_apply(struct mw_roster_conn *c, struct mw_fleet_change *ch, size_t n)
{
	size_t sent = 0, done = 0;
	uint64_t deadline = now_ms() + c->timeout_ms;
	int rc = MW_FLEET_OK;

	for (size_t i = 0; i < n; i++) {
		ch[i].done = false;
		ch[i].rc = MW_FLEET_E_XMPP;
		ch[i].err[0] = '\0';
		ch[i].id[0] = '\0';
	}
	/* the timeout is for the server's next answer, not for all of them: a
	 * server that stores the whole roster per set slows as it grows */
	while (done < n && !c->failed && now_ms() < deadline) {
		size_t before = done;

		while (sent < n && sent - done < MW_FLEET_WINDOW)
			(void)change_send(c, &ch[sent++]);
		xmpp_run_once(c->x, 50);
		for (done = 0; done < n && ch[done].done; done++)
			;
		if (done > before)
			deadline = now_ms() + c->timeout_ms;
	}
	for (size_t i = 0; i < n; i++) {
		if (!ch[i].done) {
			if (ch[i].id[0] != '\0')
				xmpp_id_handler_delete(c->conn, on_change_reply, ch[i].id);
			fail(ch[i].err, sizeof(ch[i].err), MW_FLEET_E_XMPP, "roster %s %s: %s",
			    ch[i].remove ? "remove" : "set", ch[i].item.jid, c->failed ?
			    c->why : "no answer from the server in time");
			ch[i].rc = MW_FLEET_E_XMPP;
		}
		if (rc == MW_FLEET_OK && ch[i].rc != MW_FLEET_OK)
			rc = ch[i].rc;
	}
	return rc;
}

/* <presence type="subscribe" to=JID/>, taken by the server without answer. */
static int
subscribe_send(struct mw_roster_conn *c, const char *jid)
{
	xmpp_stanza_t *p = xmpp_presence_new(c->x);

	if (p == NULL || xmpp_stanza_set_type(p, "subscribe") != XMPP_EOK ||
	    xmpp_stanza_set_to(p, jid) != XMPP_EOK) {
		if (p != NULL)
			xmpp_stanza_release(p);
		return -1;
	}
	xmpp_send(c->conn, p);
	xmpp_stanza_release(p);
	return 0;
}

int
mw_fleet_roster_subscribe(struct mw_roster_conn *c, char *const *jids, size_t n,
    char *err, size_t errlen)
{
	xmpp_stanza_t *iq, *ping;
	int rc;

	if (n == 0)
		return MW_FLEET_OK;
	for (size_t i = 0; i < n; i++)
		if (subscribe_send(c, jids[i]) != 0)
			return fail(err, errlen, MW_FLEET_E_NOMEM, "presence subscription "
			    "request to %s: out of memory", jids[i]);
	/* the barrier: a server handles one stream's stanzas in order, so its
	 * answer to this ping (a result, or an error from a server without
	 * XEP-0199) comes after it took every request above */
	if ((iq = xmpp_iq_new(c->x, "get", "0")) == NULL ||
	    (ping = xmpp_stanza_new(c->x)) == NULL) {
		if (iq != NULL)
			xmpp_stanza_release(iq);
		return fail(err, errlen, MW_FLEET_E_NOMEM, "ping: out of memory");
	}
	if (xmpp_stanza_set_name(ping, "ping") != XMPP_EOK ||
	    xmpp_stanza_set_ns(ping, "urn:xmpp:ping") != XMPP_EOK ||
	    xmpp_stanza_add_child(iq, ping) != XMPP_EOK) {
		xmpp_stanza_release(ping);
		xmpp_stanza_release(iq);
		return fail(err, errlen, MW_FLEET_E_NOMEM, "ping: out of memory");
	}
	xmpp_stanza_release(ping);	/* iq holds it */
	rc = iq_call(c, iq, "presence subscription requests", err, errlen);
	if (rc != MW_FLEET_OK && c->reply != NULL)
		rc = MW_FLEET_OK;	/* an error answer is an answer too */
	return rc;
}

int
mw_fleet_targets_add_groups(struct mw_fleet_targets *t,
    const struct mw_omemo_account *a, char *const *groups, size_t ngroups,
    uint64_t timeout_ms, char *err, size_t errlen)
{
	struct mw_roster_conn *c;
	struct mw_fleet_roster r;
	int rc;

	if ((rc = mw_roster_connect(a, timeout_ms, &c, err, errlen)) != MW_FLEET_OK)
		return rc;
	rc = mw_fleet_roster_get(c, &r, err, errlen);
	mw_roster_close(c);
	if (rc != MW_FLEET_OK)
		return rc;
	for (size_t i = 0; i < ngroups && rc == MW_FLEET_OK; i++)
		rc = mw_fleet_targets_add_group(t, &r, groups[i], err, errlen);
	mw_fleet_roster_free(&r);
	return rc;
}
