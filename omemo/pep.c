/*
 * pep.c: the OMEMO publication over PEP (XEP-0163).  Publishes this
 * device's bundle and device list (access_model=open, with a node
 * reconfiguration and one retry on precondition-not-met, and one retry
 * without the publish-options a server may not know on any other error),
 * confirms the publication by fetching both back (logging every failure
 * and restarting with backoff until confirmed), re-checks both
 * periodically once confirmed (mw_omemo_set_recheck), follows device-list
 * pushes (re-adding this device when an update lacks it), and runs the
 * periodic maintenance of mw_omemo_tick().  The IQ plumbing and the
 * transport are iq.c's, the sends send.c's, the OMEMO 2 nodes pep2.c's.
 *
 * Nothing here blocks: requests leave through the caller's send function
 * and answers come back through mw_omemo_handle_stanza(); IQs that are never
 * answered are failed by mw_omemo_tick().
 *
 * Invariant: answers of a superseded publication generation are ignored
 * (stale()); the own list is replaced only after it was read back.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"
#include "omemo/pubsub_int.h"

#define PUB_BACKOFF_MIN_MS 1000	/* first retry of a failed publication */
#define PUB_BACKOFF_MAX_MS 60000

/* ---- logging and the publication state ---- */

void
mw_omemo_set_log(struct mw_omemo *o, mw_omemo_log_fn fn, void *arg)
{
	if (o == NULL)
		return;
	o->log_fn = fn;
	o->log_arg = arg;
}

bool
mw_omemo_published(const struct mw_omemo *o)
{
	return o != NULL && o->pub_state == OMEMO_PUB_CONFIRMED;
}

void
mw_omemo_set_publish_backoff(struct mw_omemo *o, unsigned ms)
{
	if (o != NULL)
		o->pub_backoff_min_ms = ms;
}

void
mw_omemo_set_recheck(struct mw_omemo *o, unsigned interval_ms)
{
	if (o == NULL)
		return;
	o->recheck_ms = interval_ms;
	o->next_recheck_ms = 0;
}

/* The next periodic re-check: interval_ms, -25 % .. +25 %. */
static void
schedule_recheck(struct mw_omemo *o)
{
	int64_t d = o->recheck_ms;
	uint32_t r = 0;

	if (d <= 0) {
		o->next_recheck_ms = 0;
		return;
	}
	if (omemo_random(&r, sizeof(r)) == 0)
		d = d - d / 4 + (int64_t)(r % (uint32_t)(d / 2 + 1));
	o->next_recheck_ms = omemo_mono_ms() + (d > 0 ? d : 1);
}

static int64_t
backoff_min(const struct mw_omemo *o)
{
	return o->pub_backoff_min_ms > 0 ? o->pub_backoff_min_ms :
	    PUB_BACKOFF_MIN_MS;
}

void
omemo_log(struct mw_omemo *o, const char *event, const char *fmt, ...)
{
	char fields[512];
	va_list ap;

	if (o->log_fn == NULL)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(fields, sizeof(fields), fmt, ap);
	va_end(ap);
	o->log_fn(event, fields, o->log_arg);
}

/* Server text made safe for a quoted log field (printable ASCII only). */
static void
clean_text(char *dst, size_t size, const char *src)
{
	size_t i = 0;

	for (; src != NULL && *src != '\0' && i + 1 < size; src++)
		dst[i++] = (*src < 0x20 || *src > 0x7e || *src == '"' ||
		    *src == '\\') ? '?' : *src;
	dst[i] = '\0';
}

/* The error condition of a failed IQ (or why there is none) and its text. */
static void
describe_error(xmpp_stanza_t *reply, int err, char *cond, size_t condsize,
    char *text, size_t textsize)
{
	xmpp_stanza_t *e = reply != NULL ?
	    xmpp_stanza_get_child_by_name(reply, "error") : NULL;
	const char *stanza_cond = NULL, *app_cond = NULL;
	char *t = NULL;

	text[0] = '\0';
	if (e == NULL) {
		(void)snprintf(cond, condsize, "%s", err == MW_OMEMO_E_TIMEOUT ?
		    "timeout" : err == 0 ? "unexpected-answer" : "no-error-element");
		return;
	}
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(e); c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		const char *name = xmpp_stanza_get_name(c), *ns = xmpp_stanza_get_ns(c);

		if (name == NULL || ns == NULL || !xmpp_stanza_is_tag(c))
			continue;
		if (strcmp(ns, NS_STANZAS) == 0 && strcmp(name, "text") == 0) {
			if (t == NULL)
				t = xmpp_stanza_get_text(c);
		} else if (strcmp(ns, NS_STANZAS) == 0) {
			if (stanza_cond == NULL)
				stanza_cond = name;
		} else if (app_cond == NULL)
			app_cond = name;
	}
	(void)snprintf(cond, condsize, "%s%s%s", stanza_cond != NULL ?
	    stanza_cond : "undefined-condition", app_cond != NULL ? "/" : "",
	    app_cond != NULL ? app_cond : "");
	clean_text(text, textsize, t);
	if (t != NULL)
		xmpp_free(xmpp_stanza_get_context(e), t);
}

/*
 * A step of the publication failed: say so loudly and restart the whole
 * chain after the backoff (doubling, capped, with up to 25 % jitter).  The
 * generation moves on, so answers still in flight are ignored.
 */
static void
pub_fail(struct mw_omemo *o, const char *op, const char *node,
    const char *cond, const char *text)
{
	int64_t delay = o->pub_backoff_ms > 0 ? o->pub_backoff_ms : backoff_min(o);
	uint32_t r = 0;

	if (strncmp(node, MW_OMEMO2_NS, strlen(MW_OMEMO2_NS)) == 0) {
		/* OMEMO 2 (pep2.c) runs beside the chain and never stops it:
		 * it is tried again with the chain's next start */
		omemo_log(o, "omemo-publish-failed", "node=%s op=%s condition=%s "
		    "text=\"%s\" retry=next-publication", node, op, cond,
		    text != NULL ? text : "");
		return;
	}
	if (omemo_random(&r, sizeof(r)) == 0)
		delay += (int64_t)(r % (uint32_t)(delay / 4 + 1));
	o->pub_gen++;
	o->pub_state = OMEMO_PUB_WAIT_RETRY;
	o->pub_retry_at_ms = omemo_mono_ms() + delay;
	o->pub_backoff_ms = delay * 2 > PUB_BACKOFF_MAX_MS ? PUB_BACKOFF_MAX_MS :
	    delay * 2;
	omemo_log(o, "omemo-publish-failed", "node=%s op=%s condition=%s "
	    "text=\"%s\" retry_in_ms=%" PRId64, node, op, cond,
	    text != NULL ? text : "", delay);
}

static void
pub_fail_iq(struct mw_omemo *o, const char *op, const char *node,
    xmpp_stanza_t *reply, int err)
{
	char cond[96], text[200];

	describe_error(reply, err, cond, sizeof(cond), text, sizeof(text));
	pub_fail(o, op, node, cond, text);
}

/* Whether q belongs to a publication chain that has been superseded. */
static bool
stale(const struct mw_omemo *o, const struct omemo_iq *q)
{
	return q->chain && q->gen != o->pub_gen;
}

/* ---- publishing ---- */

static void publish_cb(struct mw_omemo *o, struct omemo_iq *q,
    xmpp_stanza_t *reply, int err);

/* Publishes a copy of payload as item 'current' of node. */
static int
publish(struct mw_omemo *o, const char *node, xmpp_stanza_t *payload,
    enum pub_opts opts, bool configured, bool then_list, bool chain,
    unsigned gen)
{
	xmpp_stanza_t *iq, *ps, *pub, *item, *optel;
	struct omemo_iq *q;
	bool many = strcmp(node, MW_OMEMO2_NODE_BUNDLES) == 0;
	char item_id[16] = "current";

	if (o->send_fn == NULL)
		return MW_OMEMO_E_OFFLINE;
	if (many)	/* OMEMO 2: one item per device, named by its id */
		(void)snprintf(item_id, sizeof(item_id), "%u", o->device_id);
	if ((q = omemo_iq_new(IQ_PUBLISH, publish_cb, NULL, node)) == NULL)
		return MW_OMEMO_E_NOMEM;
	q->configured = configured;
	q->opts = opts;
	q->then_list = then_list;
	q->chain = chain;
	q->gen = gen;
	if ((q->payload = xmpp_stanza_copy(payload)) == NULL ||
	    (iq = omemo_iq_pubsub(o, "set", NULL, NS_PUBSUB, &ps)) == NULL) {
		omemo_iq_free(q);
		return MW_OMEMO_E_NOMEM;
	}
	/* each element is adopted by the iq first, so failing paths free
	 * everything by releasing the iq */
	if ((pub = omemo_new_elem(o->xctx, "publish", NULL)) == NULL ||
	    omemo_adopt(ps, pub) != 0 ||
	    xmpp_stanza_set_attribute(pub, "node", node) != XMPP_EOK)
		goto fail;
	if ((item = omemo_new_elem(o->xctx, "item", NULL)) == NULL ||
	    omemo_adopt(pub, item) != 0 ||
	    xmpp_stanza_set_attribute(item, "id", item_id) != XMPP_EOK ||
	    omemo_adopt(item, xmpp_stanza_copy(payload)) != 0)
		goto fail;
	if ((optel = omemo_new_elem(o->xctx, "publish-options", NULL)) == NULL ||
	    omemo_adopt(ps, optel) != 0 ||
	    omemo_adopt(optel, omemo_data_form(o,
	    NS_PUBSUB "#publish-options", q->opts, many)) != 0)
		goto fail;
	return omemo_iq_send(o, iq, q);
fail:
	xmpp_stanza_release(iq);
	omemo_iq_free(q);
	return MW_OMEMO_E_NOMEM;
}

static void
configure_cb(struct mw_omemo *o, struct omemo_iq *q, xmpp_stanza_t *reply,
    int err)
{
	int rc;

	if (stale(o, q))
		return;
	if (err != 0) {
		pub_fail_iq(o, "configure", q->node, reply, err);
		return;
	}
	if ((rc = publish(o, q->node, q->payload, q->opts, true, q->then_list,
	    q->chain, q->gen)) != 0)
		pub_fail(o, "publish", q->node, "local-error",
		    mw_omemo_strerror(rc));
}

static int
configure(struct mw_omemo *o, struct omemo_iq *from)
{
	xmpp_stanza_t *iq, *ps, *cfg;
	struct omemo_iq *q;

	if ((q = omemo_iq_new(IQ_CONFIGURE, configure_cb, NULL, from->node)) == NULL)
		return MW_OMEMO_E_NOMEM;
	q->then_list = from->then_list;
	q->opts = from->opts;
	q->chain = from->chain;
	q->gen = from->gen;
	q->payload = from->payload;	/* moved */
	from->payload = NULL;
	if ((iq = omemo_iq_pubsub(o, "set", NULL, NS_PUBSUB_OWNER, &ps)) == NULL) {
		omemo_iq_free(q);
		return MW_OMEMO_E_NOMEM;
	}
	if ((cfg = omemo_new_elem(o->xctx, "configure", NULL)) == NULL ||
	    omemo_adopt(ps, cfg) != 0 ||
	    xmpp_stanza_set_attribute(cfg, "node", from->node) != XMPP_EOK ||
	    omemo_adopt(cfg, omemo_data_form(o, NS_PUBSUB "#node_config",
	    q->opts, strcmp(from->node, MW_OMEMO2_NODE_BUNDLES) == 0)) != 0) {
		xmpp_stanza_release(iq);
		omemo_iq_free(q);
		return MW_OMEMO_E_NOMEM;
	}
	return omemo_iq_send(o, iq, q);
}

static int fetch_own_list(struct mw_omemo *o, unsigned gen);
static int verify_start(struct mw_omemo *o, unsigned gen);
static int take_list(struct mw_omemo *o, const char *jid, const uint32_t *ids,
    size_t n, unsigned gen, bool *publishing);
static void own_list_trouble(struct mw_omemo *o, int rc);

static void
publish_cb(struct mw_omemo *o, struct omemo_iq *q, xmpp_stanza_t *reply,
    int err)
{
	char cond[96], text[200];
	int rc = 0;

	if (stale(o, q))
		return;
	if (err == 0) {
		if (q->then_list)
			rc = fetch_own_list(o, q->gen);
		else if (q->chain)
			rc = verify_start(o, q->gen);
		if (rc != 0)
			pub_fail(o, q->then_list ? "fetch" : "verify",
			    MW_OMEMO_NODE_DEVICELIST, "local-error",
			    mw_omemo_strerror(rc));
		return;
	}
	if (err == MW_OMEMO_E_IQ && !q->configured && reply != NULL &&
	    omemo_has_error_condition(reply, "precondition-not-met", NS_PUBSUB_ERRORS)) {
		if ((rc = configure(o, q)) == 0)
			return;
		pub_fail(o, "configure", q->node, "local-error",
		    mw_omemo_strerror(rc));
		return;
	}
	if (err == MW_OMEMO_E_IQ && !q->configured && q->opts == OPTS_FULL) {
		/* e.g. ejabberd 23.01: resource-constraint "Unknown field
		 * 'pubsub#max_items'": once more with access_model only */
		describe_error(reply, err, cond, sizeof(cond), text, sizeof(text));
		omemo_log(o, "omemo-publish-refused", "node=%s condition=%s "
		    "text=\"%s\" next=publish-options-access-model-only",
		    q->node, cond, text);
		if ((rc = publish(o, q->node, q->payload, OPTS_ACCESS_ONLY, false,
		    q->then_list, q->chain, q->gen)) == 0)
			return;
		pub_fail(o, "publish", q->node, "local-error",
		    mw_omemo_strerror(rc));
		return;
	}
	pub_fail_iq(o, "publish", q->node, reply, err);
}

static int
publish_bundle(struct mw_omemo *o, bool then_list, bool chain, unsigned gen)
{
	xmpp_stanza_t *b = NULL;
	char node[sizeof(MW_OMEMO_NODE_BUNDLES) + 16];
	int rc;

	if (o->send_fn == NULL)
		return MW_OMEMO_E_OFFLINE;
	if ((rc = mw_omemo_bundle_element(o, o->xctx, &b)) != 0)
		return rc;
	(void)snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    o->device_id);
	rc = publish(o, node, b, OPTS_FULL, false, then_list, chain, gen);
	xmpp_stanza_release(b);
	return rc;
}

/*
 * Deferred, spread and coalesced: a change (a used prekey, a rotation)
 * sets bundle_publish_pending and a due time between 1 and 5 windows
 * (MW_OMEMO_REPUBLISH_MIN_SECS: 30-150 s) after it, drawn at random; once
 * it has passed, mw_omemo_tick() publishes once, with every change made
 * meanwhile.  So there is at most one such publish per window, none while
 * a burst of first contacts (a fleet's fan-out, a prekey flood) is being
 * answered, and a fleet that made first contact together does not
 * republish together: 1,000 agents' bundles reach the server over two
 * minutes, not in one second.  Nothing is refused for it: a used prekey
 * still opens sessions for MW_OMEMO_PREKEY_GRACE_SECS (store.c), twice
 * the longest wait.  The bundle is read from the store when it is sent:
 * the latest state goes out.  Start-up publishes are extra.
 */
int
omemo_pep_bundle_changed(struct mw_omemo *o)
{
	int64_t now = omemo_mono_ms();

	if (o->send_fn == NULL)
		return 0;	/* published at the next mw_omemo_start() */
	if (!o->bundle_publish_pending) {
		uint32_t r = 0;

		(void)omemo_random(&r, sizeof(r));	/* 0 if it fails: the minimum */
		o->bundle_publish_pending = true;
		o->bundle_publish_due_ms = now + o->republish_ms +
		    (int64_t)(r % ((uint64_t)o->republish_ms * 4 + 1));
	}
	if (now < o->bundle_publish_due_ms)
		return 0;
	o->bundle_publish_pending = false;
	(void)omemo2_pep_publish_bundle(o);	/* failures are logged */
	return publish_bundle(o, false, false, 0);
}

int
mw_omemo_publish_pending(struct mw_omemo *o)
{
	if (o == NULL || !o->bundle_publish_pending || o->txn || o->send_fn == NULL)
		return 0;
	o->bundle_publish_due_ms = 0;	/* due now */
	return omemo_pep_bundle_changed(o);
}

/* pep2.c's doors: a publication outside the start-up chain (a failure is
 * logged, see pub_fail), and a fetch of node's items. */
int
omemo_pep_publish(struct mw_omemo *o, const char *node, xmpp_stanza_t *payload)
{
	return publish(o, node, payload, OPTS_FULL, false, false, false, 0);
}

/* A device-list answer or push for jid outside the start-up chain: stored;
 * trouble with the own list restarts the publication. */
int
omemo_pep_take_list(struct mw_omemo *o, const char *jid, const uint32_t *ids,
    size_t n)
{
	bool publishing;
	int rc = take_list(o, jid, ids, n, 0, &publishing);

	if (rc != 0 && strcmp(jid, o->jid) == 0)
		own_list_trouble(o, rc);
	return rc;
}

/* Publishes ids (this device added) as the own device list; the
 * publication (generation gen) is confirmed once it succeeded. */
static int
publish_list(struct mw_omemo *o, const uint32_t *ids, size_t n, unsigned gen)
{
	xmpp_stanza_t *l = NULL;
	int rc;

	if ((rc = omemo_devicelist_element(o, o->xctx, ids, n, &l)) != 0)
		return rc;
	rc = publish(o, MW_OMEMO_NODE_DEVICELIST, l, OPTS_FULL, false, false,
	    true, gen);
	xmpp_stanza_release(l);
	return rc;
}

/*
 * Stores jid's list; for the own account re-adds this device if missing
 * (*publishing set), as part of publication generation gen (0: a new one,
 * for a push or a fetch outside the start-up chain).  MW_OMEMO_E_TXN while
 * a transaction is open: the caller retries later.
 */
static int
take_list(struct mw_omemo *o, const char *jid, const uint32_t *ids, size_t n,
    unsigned gen, bool *publishing)
{
	bool own = strcmp(jid, o->jid) == 0, present = false;
	int rc;

	*publishing = false;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if ((rc = omemo_store_devicelist(o, jid, ids, n)) != 0)
		return rc;
	if (!own)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] == o->device_id)
			present = true;
	if (present)
		return 0;
	if (gen == 0) {
		/* this device was dropped: publish and confirm again */
		gen = ++o->pub_gen;
		o->pub_state = OMEMO_PUB_RUNNING;
	}
	if ((rc = publish_list(o, ids, n, gen)) == 0)
		*publishing = true;
	return rc;
}

/* A failure to store or republish the own list outside a chain: retry. */
static void
own_list_trouble(struct mw_omemo *o, int rc)
{
	pub_fail(o, "store", MW_OMEMO_NODE_DEVICELIST, rc == MW_OMEMO_E_TXN ?
	    "store-busy" : "local-error", mw_omemo_strerror(rc));
}

static void
own_list_cb(struct mw_omemo *o, struct omemo_iq *q, xmpp_stanza_t *reply,
    int err)
{
	uint32_t *ids = NULL;
	size_t n = 0;
	bool publishing;
	int rc;

	if (stale(o, q))
		return;
	if (err == 0 && omemo_parse_devicelist(reply, &ids, &n) != 0)
		n = 0;	/* unreadable list: replace it with ours */
	else if (err != 0 && !(err == MW_OMEMO_E_IQ && reply != NULL &&
	    omemo_has_error_condition(reply, "item-not-found", NS_STANZAS))) {
		/* server trouble: do not overwrite what may exist; retry */
		pub_fail_iq(o, "fetch", MW_OMEMO_NODE_DEVICELIST, reply, err);
		return;
	}
	rc = take_list(o, o->jid, ids, n, q->gen, &publishing);
	free(ids);
	if (rc != 0)
		own_list_trouble(o, rc);
	else if (!publishing && (rc = verify_start(o, q->gen)) != 0)
		pub_fail(o, "verify", MW_OMEMO_NODE_DEVICELIST, "local-error",
		    mw_omemo_strerror(rc));
}

static int
fetch_own_list(struct mw_omemo *o, unsigned gen)
{
	struct omemo_iq *q = omemo_iq_new(IQ_FETCH_LIST, own_list_cb, NULL,
	    MW_OMEMO_NODE_DEVICELIST);

	if (q == NULL)
		return MW_OMEMO_E_NOMEM;
	q->chain = true;
	q->gen = gen;
	return omemo_fetch_items(o, NULL, MW_OMEMO_NODE_DEVICELIST, q);
}

/* The first child element of the item in a pubsub items answer. */
static xmpp_stanza_t *
answer_payload(xmpp_stanza_t *reply)
{
	xmpp_stanza_t *ps, *items, *item, *c;

	if ((ps = xmpp_stanza_get_child_by_name_and_ns(reply, "pubsub",
	    NS_PUBSUB)) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ps, "items")) == NULL ||
	    (item = xmpp_stanza_get_child_by_name(items, "item")) == NULL)
		return NULL;
	for (c = xmpp_stanza_get_children(item); c != NULL;
	    c = xmpp_stanza_get_next(c))
		if (xmpp_stanza_is_tag(c))
			return c;
	return NULL;
}

/* Confirmation: the own list names this device, the bundle is served. */
static void
verify_cb(struct mw_omemo *o, struct omemo_iq *q, xmpp_stanza_t *reply,
    int err)
{
	bool is_list = strcmp(q->node, MW_OMEMO_NODE_DEVICELIST) == 0, ok = false;
	/* a periodic re-check runs while the publication stays confirmed */
	bool recheck = o->pub_state == OMEMO_PUB_CONFIRMED;
	xmpp_stanza_t *p;

	if (stale(o, q))
		return;
	if (err == 0 && is_list) {
		uint32_t *ids = NULL;
		size_t n = 0;

		if (omemo_parse_devicelist(reply, &ids, &n) == 0)
			for (size_t i = 0; i < n; i++)
				ok = ok || ids[i] == o->device_id;
		free(ids);
	} else if (err == 0) {
		const char *name;

		ok = (p = answer_payload(reply)) != NULL &&
		    (name = xmpp_stanza_get_name(p)) != NULL &&
		    strcmp(name, "bundle") == 0;
	}
	if (!ok) {
		const char *op = recheck ? "recheck" : "verify";

		if (err != 0)
			pub_fail_iq(o, op, q->node, reply, err);
		else
			pub_fail(o, op, q->node, is_list ?
			    "device-missing" : "bundle-missing", "");
		return;
	}
	if (--o->verify_outstanding > 0)
		return;
	o->pub_state = OMEMO_PUB_CONFIRMED;
	o->pub_backoff_ms = backoff_min(o);
	if (recheck)
		omemo_log(o, "omemo-recheck", "device=%u result=ok", o->device_id);
	else
		omemo_log(o, "omemo-published", "device=%u", o->device_id);
	schedule_recheck(o);
}

static int
verify_start(struct mw_omemo *o, unsigned gen)
{
	char node[sizeof(MW_OMEMO_NODE_BUNDLES) + 16];
	struct omemo_iq *q;
	int rc;

	(void)snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    o->device_id);
	o->verify_outstanding = 2;
	for (int i = 0; i < 2; i++) {
		const char *n = i == 0 ? MW_OMEMO_NODE_DEVICELIST : node;

		if ((q = omemo_iq_new(IQ_VERIFY, verify_cb, NULL, n)) == NULL)
			return MW_OMEMO_E_NOMEM;
		q->chain = true;
		q->gen = gen;
		if ((rc = omemo_fetch_items(o, NULL, n, q)) != 0)
			return rc;
	}
	return 0;
}

/* Starts a publication generation: bundle, own list, confirmation. */
static int
chain_start(struct mw_omemo *o)
{
	o->pub_gen++;
	o->pub_state = OMEMO_PUB_RUNNING;
	(void)omemo2_pep_start(o);	/* OMEMO 2 beside, failures logged */
	return publish_bundle(o, true, true, o->pub_gen);
}

int
mw_omemo_start(struct mw_omemo *o)
{
	bool changed;
	int rc;

	if (o == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->send_fn == NULL)
		return MW_OMEMO_E_OFFLINE;
	if ((rc = mw_omemo_maintain(o, omemo_now(), &changed)) != 0)
		return rc;
	/* bundle first, then the device list that points at it; this
	 * publish carries every pending change (it does not open a debounce
	 * window: the window is between publishes caused by changes) */
	o->bundle_publish_pending = false;
	o->pub_backoff_ms = backoff_min(o);
	if ((rc = chain_start(o)) != 0 && rc != MW_OMEMO_E_OFFLINE)
		pub_fail(o, "publish", MW_OMEMO_NODE_BUNDLES, "local-error",
		    mw_omemo_strerror(rc));
	return rc;
}

/* ---- incoming ---- */

static int
handle_event(struct mw_omemo *o, xmpp_stanza_t *st)
{
	xmpp_stanza_t *ev, *items;
	const char *node, *from = xmpp_stanza_get_from(st);
	uint32_t *ids = NULL;
	size_t n = 0;
	char *bare;
	int rc;

	if ((ev = xmpp_stanza_get_child_by_name_and_ns(st, "event",
	    NS_PUBSUB_EVENT)) == NULL ||
	    (items = xmpp_stanza_get_child_by_name(ev, "items")) == NULL ||
	    (node = xmpp_stanza_get_attribute(items, "node")) == NULL)
		return 0;
	if (strcmp(node, MW_OMEMO2_NODE_DEVICES) == 0)
		return omemo2_pep_event(o, from, items);	/* pep2.c */
	if (strcmp(node, MW_OMEMO_NODE_DEVICELIST) != 0)
		return 0;
	if (from == NULL)
		bare = xmpp_jid_bare(o->xctx, o->jid);
	else
		bare = xmpp_jid_bare(o->xctx, from);
	if (bare == NULL)
		return 1;
	if (omemo_jid_ok(bare) && omemo_parse_devicelist(items, &ids, &n) == 0) {
		bool publishing;

		rc = take_list(o, bare, ids, n, 0, &publishing);
		/* a peer's push we cannot store is retried by the next one;
		 * the own list is fetched again by a restarted publication */
		if (rc != 0 && strcmp(bare, o->jid) == 0)
			own_list_trouble(o, rc);
	}
	free(ids);
	xmpp_free(o->xctx, bare);
	return 1;
}

int
mw_omemo_handle_stanza(struct mw_omemo *o, xmpp_stanza_t *st)
{
	const char *name;

	if (o == NULL || st == NULL || (name = xmpp_stanza_get_name(st)) == NULL)
		return 0;
	if (strcmp(name, "iq") == 0)
		return omemo_iq_handle(o, st);
	if (strcmp(name, "message") == 0)
		return handle_event(o, st);
	return 0;
}

void
mw_omemo_tick(struct mw_omemo *o)
{
	int64_t now = omemo_mono_ms();
	bool changed = false;

	if (o == NULL)
		return;
	omemo_iq_expire(o, now);
	omemo2_upkeep_tick(o, now);
	if (!o->txn && omemo_now() >= mw_omemo_maintain_due(o) &&
	    mw_omemo_maintain(o, omemo_now(), &changed) == 0 && changed)
		(void)omemo_pep_bundle_changed(o);
	/* a change held back goes out once its time has come */
	if (o->bundle_publish_pending && !o->txn && now >= o->bundle_publish_due_ms)
		(void)omemo_pep_bundle_changed(o);
	/* the periodic re-check of a confirmed publication: fetch both back;
	 * a failure restarts the publication (verify_cb) */
	if (o->pub_state == OMEMO_PUB_CONFIRMED && o->next_recheck_ms != 0 &&
	    o->send_fn != NULL && !o->txn && now >= o->next_recheck_ms) {
		int rc;

		o->next_recheck_ms = 0;
		o->pub_gen++;
		if ((rc = verify_start(o, o->pub_gen)) != 0 && rc != MW_OMEMO_E_OFFLINE)
			pub_fail(o, "recheck", MW_OMEMO_NODE_DEVICELIST, "local-error",
			    mw_omemo_strerror(rc));
	}
	/* a failed publication starts over once its backoff has passed */
	if (o->pub_state == OMEMO_PUB_WAIT_RETRY && o->send_fn != NULL &&
	    !o->txn && now >= o->pub_retry_at_ms) {
		int rc = chain_start(o);

		if (rc != 0 && rc != MW_OMEMO_E_OFFLINE)
			pub_fail(o, "publish", MW_OMEMO_NODE_BUNDLES,
			    "local-error", mw_omemo_strerror(rc));
	}
}

