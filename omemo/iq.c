/*
 * iq.c: the pubsub IQ plumbing of omemo/, split from pep.c: every IQ this
 * layer sends (publish, configure, fetch) is recorded with its callback,
 * answered only from the entity it went to, failed when its deadline
 * passes, and dropped unanswered when the transport goes away; and the
 * transport itself (mw_omemo_attach / set_transport).
 *
 * Invariant: every pending IQ is in o->iqs exactly once and is unlinked
 * before its callback runs (callbacks may send new IQs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"
#include "omemo/pubsub_int.h"

/* ---- IQ plumbing ---- */

void
omemo_iq_free(struct omemo_iq *q)
{
	if (q->payload != NULL)
		xmpp_stanza_release(q->payload);
	free(q->jid);
	free(q->node);
	free(q->ext_arg);
	free(q);
}

void
omemo_iq_unlink(struct mw_omemo *o, struct omemo_iq *q)
{
	for (struct omemo_iq **p = &o->iqs; *p != NULL; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			q->next = NULL;
			return;
		}
}

/* Sends iq (built by the caller, consumed here) and records q. */
int
omemo_iq_send(struct mw_omemo *o, xmpp_stanza_t *iq, struct omemo_iq *q)
{
	uint32_t r = 0;

	if (o->send_fn == NULL) {
		xmpp_stanza_release(iq);
		omemo_iq_free(q);
		return MW_OMEMO_E_OFFLINE;
	}
	(void)omemo_random(&r, sizeof(r));
	(void)snprintf(q->id, sizeof(q->id), "mwomemo-%lu-%08x", ++o->iq_seq, r);
	if (xmpp_stanza_set_id(iq, q->id) != XMPP_EOK) {
		xmpp_stanza_release(iq);
		omemo_iq_free(q);
		return MW_OMEMO_E_NOMEM;
	}
	q->deadline = omemo_mono_ms() + o->iq_timeout_ms;
	q->next = o->iqs;
	o->iqs = q;
	o->send_fn(iq, o->send_arg);
	xmpp_stanza_release(iq);
	return 0;
}

struct omemo_iq *
omemo_iq_new(enum iq_kind kind, omemo_iq_cb cb, const char *jid,
    const char *node)
{
	struct omemo_iq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->kind = kind;
	q->cb = cb;
	if ((jid != NULL && (q->jid = strdup(jid)) == NULL) ||
	    (node != NULL && (q->node = strdup(node)) == NULL)) {
		omemo_iq_free(q);
		return NULL;
	}
	return q;
}

/* <iq type to?><pubsub xmlns=ns/></iq>; *ps is the pubsub child. */
xmpp_stanza_t *
omemo_iq_pubsub(struct mw_omemo *o, const char *type, const char *to,
    const char *ns, xmpp_stanza_t **ps)
{
	xmpp_stanza_t *iq = xmpp_iq_new(o->xctx, type, "x");

	if (iq == NULL)
		return NULL;
	if ((to != NULL && xmpp_stanza_set_to(iq, to) != XMPP_EOK) ||
	    (*ps = omemo_new_elem(o->xctx, "pubsub", ns)) == NULL ||
	    omemo_adopt(iq, *ps) != 0) {
		xmpp_stanza_release(iq);
		return NULL;
	}
	return iq;
}

/* <x xmlns=jabber:x:data type=submit> with FORM_TYPE and the settings */
/* many: the node keeps one item per device (OMEMO 2 bundles), so
 * max_items is "max" rather than 1 */
xmpp_stanza_t *
omemo_data_form(struct mw_omemo *o, const char *form_type, enum pub_opts opts,
    bool many)
{
	const char *const fields[][2] = {
		{ "pubsub#access_model", "open" },
		{ "pubsub#persist_items", "true" },
		{ "pubsub#max_items", many ? "max" : "1" },
	};
	int nfields = opts == OPTS_FULL ?
	    (int)(sizeof(fields) / sizeof(fields[0])) : 1;
	xmpp_stanza_t *x, *f;

	if ((x = omemo_new_elem(o->xctx, "x", NS_DATA)) == NULL)
		return NULL;
	if (xmpp_stanza_set_attribute(x, "type", "submit") != XMPP_EOK)
		goto fail;
	for (int i = -1; i < nfields; i++) {
		if ((f = omemo_new_elem(o->xctx, "field", NULL)) == NULL)
			goto fail;
		if (xmpp_stanza_set_attribute(f, "var", i < 0 ? "FORM_TYPE" :
		    fields[i][0]) != XMPP_EOK ||
		    (i < 0 && xmpp_stanza_set_attribute(f, "type", "hidden") !=
		    XMPP_EOK)) {
			xmpp_stanza_release(f);
			goto fail;
		}
		if (omemo_adopt(f, omemo_text_elem(o->xctx, "value", NULL,
		    i < 0 ? form_type : fields[i][1])) != 0) {
			xmpp_stanza_release(f);
			goto fail;
		}
		if (omemo_adopt(x, f) != 0)	/* f released by omemo_adopt */
			goto fail;
	}
	return x;
fail:
	xmpp_stanza_release(x);
	return NULL;
}

bool
omemo_has_error_condition(xmpp_stanza_t *reply, const char *name, const char *ns)
{
	xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(reply, "error");

	return e != NULL && xmpp_stanza_get_child_by_name_and_ns(e, name, ns) !=
	    NULL;
}

/* item NULL: max_items=1, not an item id (some clients publish legacy
 * items as '1'); else <item id=item/> (OMEMO 2 bundles: one per device) */
int
omemo_fetch_items_id(struct mw_omemo *o, const char *to, const char *node,
    const char *item, struct omemo_iq *q)
{
	xmpp_stanza_t *iq, *ps, *items, *it;

	if ((iq = omemo_iq_pubsub(o, "get", to, NS_PUBSUB, &ps)) == NULL) {
		omemo_iq_free(q);
		return MW_OMEMO_E_NOMEM;
	}
	if ((items = omemo_new_elem(o->xctx, "items", NULL)) == NULL ||
	    omemo_adopt(ps, items) != 0 ||	/* iq owns items from here */
	    xmpp_stanza_set_attribute(items, "node", node) != XMPP_EOK ||
	    (item == NULL && xmpp_stanza_set_attribute(items, "max_items",
	    "1") != XMPP_EOK))
		goto nomem;
	if (item != NULL) {
		if ((it = omemo_new_elem(o->xctx, "item", NULL)) == NULL ||
		    omemo_adopt(items, it) != 0 ||
		    xmpp_stanza_set_attribute(it, "id", item) != XMPP_EOK)
			goto nomem;
	}
	return omemo_iq_send(o, iq, q);
nomem:
	xmpp_stanza_release(iq);
	omemo_iq_free(q);
	return MW_OMEMO_E_NOMEM;
}

int
omemo_fetch_items(struct mw_omemo *o, const char *to, const char *node,
    struct omemo_iq *q)
{
	return omemo_fetch_items_id(o, to, node, NULL, q);
}

static void
ext_cb(struct mw_omemo *o, struct omemo_iq *q, xmpp_stanza_t *reply, int err)
{
	q->ext(o, reply, err, q->ext_arg);
}

int
omemo_pep_fetch(struct mw_omemo *o, const char *to, const char *node,
    const char *item, omemo_pep_cb cb, void *arg)
{
	struct omemo_iq *q = omemo_iq_new(IQ_FETCH_LIST, ext_cb, to, node);

	if (q == NULL) {
		free(arg);
		return MW_OMEMO_E_NOMEM;
	}
	q->ext = cb;
	q->ext_arg = arg;
	return omemo_fetch_items_id(o, to, node, item, q);
}

/* The item of a pubsub answer, when it is the one asked for. */
bool
omemo_pubsub_item_is(xmpp_stanza_t *reply, uint32_t dev)
{
	xmpp_stanza_t *ps, *items, *item;
	uint32_t id;

	if ((ps = xmpp_stanza_get_child_by_name(reply, "pubsub")) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ps, "items")) == NULL ||
	    (item = xmpp_stanza_get_child_by_name(items, "item")) == NULL)
		return false;
	return omemo_parse_devid(xmpp_stanza_get_attribute(item, "id"), &id) ==
	    0 && id == dev;
}

/* Is from (as stamped by the server) the entity q was sent to? */
static bool
from_matches(struct mw_omemo *o, struct omemo_iq *q, const char *from)
{
	char *bare;
	bool ok;

	if (from == NULL)
		return q->jid == NULL;	/* own account answers without from */
	if ((bare = xmpp_jid_bare(o->xctx, from)) == NULL)
		return false;
	ok = strcmp(bare, q->jid != NULL ? q->jid : o->jid) == 0;
	/* the own account may also answer from the full JID of this session */
	xmpp_free(o->xctx, bare);
	return ok;
}

int
omemo_iq_handle(struct mw_omemo *o, xmpp_stanza_t *st)
{
	const char *type = xmpp_stanza_get_type(st), *id = xmpp_stanza_get_id(st);
	struct omemo_iq *q;

	if (type == NULL || id == NULL ||
	    (strcmp(type, "result") != 0 && strcmp(type, "error") != 0))
		return 0;
	for (q = o->iqs; q != NULL; q = q->next)
		if (strcmp(q->id, id) == 0)
			break;
	if (q == NULL || !from_matches(o, q, xmpp_stanza_get_from(st)))
		return 0;
	omemo_iq_unlink(o, q);
	q->cb(o, q, st, strcmp(type, "result") == 0 ? 0 : MW_OMEMO_E_IQ);
	omemo_iq_free(q);
	return 1;
}

/* Fails the IQs whose deadline has passed (MW_OMEMO_E_TIMEOUT). */
void
omemo_iq_expire(struct mw_omemo *o, int64_t now)
{
	struct omemo_iq *q, *next;

	/* one at a time: callbacks may add or complete others */
	for (q = o->iqs; q != NULL; q = next) {
		next = q->next;
		if (q->deadline <= now) {
			omemo_iq_unlink(o, q);
			q->cb(o, q, NULL, MW_OMEMO_E_TIMEOUT);
			omemo_iq_free(q);
			next = o->iqs;	/* the list may have changed */
		}
	}
}

/* ---- transport ---- */

int
mw_omemo_set_transport(struct mw_omemo *o, xmpp_ctx_t *xctx,
    mw_omemo_send_fn send_fn, void *arg)
{
	if (o == NULL || (send_fn != NULL && xctx == NULL))
		return MW_OMEMO_E_INVAL;
	o->xctx = xctx;
	o->send_fn = send_fn;
	o->send_arg = arg;
	o->own_list_asked = false;	/* a new stream: ask once again */
	return 0;
}

static void
conn_send(xmpp_stanza_t *st, void *arg)
{
	xmpp_send(arg, st);
}

static int
h_stanza(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	(void)mw_omemo_handle_stanza(arg, st);
	return 1;	/* stay registered */
}

int
mw_omemo_attach(struct mw_omemo *o, xmpp_conn_t *conn)
{
	if (o == NULL || conn == NULL)
		return MW_OMEMO_E_INVAL;
	mw_omemo_detach(o);
	o->conn = conn;
	xmpp_handler_add(conn, h_stanza, NULL, "iq", NULL, o);
	xmpp_handler_add(conn, h_stanza, NS_PUBSUB_EVENT, "message", NULL, o);
	return mw_omemo_set_transport(o, xmpp_conn_get_context(conn), conn_send,
	    conn);
}

void
mw_omemo_detach(struct mw_omemo *o)
{
	if (o == NULL || o->conn == NULL)
		return;
	xmpp_handler_delete(o->conn, h_stanza);
	o->conn = NULL;
	(void)mw_omemo_set_transport(o, NULL, NULL, NULL);
}

void
omemo_net_free(struct mw_omemo *o)
{
	struct omemo_iq *q;

	/* fail waiting sends first (their IQs are dropped below) */
	omemo_send_fail_all(o);
	mw_omemo_detach(o);
	while ((q = o->iqs) != NULL) {
		o->iqs = q->next;
		omemo_iq_free(q);
	}
}
