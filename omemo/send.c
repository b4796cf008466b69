/*
 * send.c: mw_omemo_send() and mw_omemo_refresh(), split from pep.c (which
 * keeps the IQ plumbing and the publication): device lists -> missing
 * bundles -> encrypt -> send, in the OMEMO version the recipient offers
 * (mw_omemo_set_send_version).
 *
 * Phase 1 fetches the recipient's device list of the version wanted
 * first -- urn:xmpp:omemo:2:devices for AUTO and 2, the legacy list for
 * LEGACY -- and the other one only when the first does not decide (it
 * names no device, or its fetch failed): a forced version's absence is
 * then told apart from an account that publishes nothing, and an
 * established fan-out to agents offering OMEMO 2 costs one list fetch per
 * target, not two.  A refresh fetches both at once.  The own legacy list
 * is fetched once per transport when none is stored.  The version is
 * chosen when every answer is in.  Phase 2 fetches the bundles of the
 * chosen version for the devices without a session of that version
 * (legacy: node ...bundles:ID; OMEMO 2: item ID of
 * urn:xmpp:omemo:2:bundles, and an answer carrying another item is
 * refused), phase 3 encrypts and sends.  In AUTO an OMEMO 2 attempt that
 * finds no device to encrypt to goes back to phase 1 once, for legacy
 * (fetching the legacy list then if it was not), and keeps its own error
 * when the recipient offers no legacy device either.
 *
 * Invariants: a send operation outlives every IQ that names it (the IQ's
 * argument points at it, and the operation finishes only when none is
 * outstanding, or when the transport goes away, which drops the IQs
 * unanswered); its done callback runs exactly once, after it is unlinked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

struct omemo_send {
	struct omemo_send *next;
	char *to;
	uint8_t *pt;
	size_t len;
	bool refresh_only;
	bool all_bundles;		/* refresh: every device without a key too */
	enum mw_omemo_version want;	/* as set when the send started */
	uint32_t version;		/* chosen after phase 1 */
	bool offers_legacy;		/* to's legacy list names a device */
	bool offers2;			/* to's OMEMO 2 list names a device */
	bool fell_back;			/* AUTO: OMEMO 2 gave way to legacy */
	int fallback_err;		/* ... and why OMEMO 2 could not be used */
	bool asked_legacy;		/* the recipient's legacy list was asked */
	bool asked2;			/* ... its OMEMO 2 list */
	bool asked_own;			/* the own list was considered */
	mw_omemo_done_fn done;
	void *arg;
	int outstanding;
	int phase;			/* 1 device lists, 2 bundles */
	int last_err;
	int err2;			/* the OMEMO 2 list fetch's error */
};

/* What one fetch is for (owned by its IQ). */
struct fetch {
	struct omemo_send *op;
	uint32_t dev;			/* bundle fetches */
	bool own;			/* the own account's */
	bool v2;
};

static void op_step(struct mw_omemo *o, struct omemo_send *op);

void
mw_omemo_set_send_version(struct mw_omemo *o, enum mw_omemo_version v)
{
	if (o != NULL && (v == MW_OMEMO_VERSION_AUTO ||
	    v == MW_OMEMO_VERSION_LEGACY || v == MW_OMEMO_VERSION_2))
		o->send_version = v;
}

int
mw_omemo_version_parse(const char *s, enum mw_omemo_version *v)
{
	if (s == NULL || v == NULL)
		return -1;
	if (strcmp(s, "auto") == 0)
		*v = MW_OMEMO_VERSION_AUTO;
	else if (strcmp(s, "legacy") == 0)
		*v = MW_OMEMO_VERSION_LEGACY;
	else if (strcmp(s, "2") == 0)
		*v = MW_OMEMO_VERSION_2;
	else
		return -1;
	return 0;
}

static void
op_finish(struct mw_omemo *o, struct omemo_send *op, int rc)
{
	for (struct omemo_send **p = &o->sends; *p != NULL; p = &(*p)->next)
		if (*p == op) {
			*p = op->next;
			break;
		}
	if (op->done != NULL)
		op->done(o, rc, op->arg);
	if (op->pt != NULL) {
		explicit_bzero(op->pt, op->len);
		free(op->pt);
	}
	free(op->to);
	free(op);
}

void
omemo_send_fail_all(struct mw_omemo *o)
{
	while (o->sends != NULL)
		op_finish(o, o->sends, MW_OMEMO_E_OFFLINE);
}

static void
answered(struct mw_omemo *o, struct omemo_send *op)
{
	if (--op->outstanding == 0)
		op_step(o, op);
}

static void
list_cb(struct mw_omemo *o, xmpp_stanza_t *reply, int err, void *arg)
{
	struct fetch *f = arg;
	struct omemo_send *op = f->op;
	const char *jid = f->own ? o->jid : op->to;
	uint32_t *ids = NULL;
	size_t n = 0;

	if (err == 0) {
		err = omemo_parse_devicelist(reply, &ids, &n);
		if (err == 0)
			err = omemo_pep_take_list(o, jid, ids, n);
		free(ids);
	}
	if (err != 0 && f->own)
		o->own_list_asked = false;	/* the next send asks again */
	if (err == 0 && !f->own)
		op->offers_legacy = n > 0;
	if (err != 0)
		op->last_err = err;
	answered(o, op);
}

static void
list2_cb(struct mw_omemo *o, xmpp_stanza_t *reply, int err, void *arg)
{
	struct fetch *f = arg;
	struct omemo_send *op = f->op;
	uint32_t *ids = NULL;
	size_t n = 0;

	if (err == 0) {
		err = omemo2_parse_devicelist(reply, &ids, &n);
		/* stored when it can be; a decrypt in progress stores the
		 * next one */
		if (err == 0 && !o->txn)
			err = omemo_store_devicelist_v(o, OMEMO_V2, op->to, ids, n);
		free(ids);
	}
	if (err == 0)
		op->offers2 = n > 0;
	else
		op->err2 = err;	/* only told when nothing is offered */
	answered(o, op);
}

static void
bundle_cb(struct mw_omemo *o, xmpp_stanza_t *reply, int err, void *arg)
{
	struct fetch *f = arg;
	struct omemo_send *op = f->op;
	const char *jid = f->own ? o->jid : op->to;

	if (err == 0 && f->v2)
		err = omemo_pubsub_item_is(reply, f->dev) ?
		    mw_omemo2_process_bundle(o, jid, f->dev, reply) :
		    MW_OMEMO_E_BUNDLE;
	else if (err == 0)
		err = mw_omemo_process_bundle(o, jid, f->dev, reply);
	if (err != 0)
		op->last_err = err;
	answered(o, op);
}

static int
fetch(struct mw_omemo *o, struct omemo_send *op, bool own, bool v2,
    uint32_t dev, const char *node, const char *item, omemo_pep_cb cb)
{
	struct fetch *f = calloc(1, sizeof(*f));
	int rc;

	if (f == NULL)
		return MW_OMEMO_E_NOMEM;
	f->op = op;
	f->own = own;
	f->v2 = v2;
	f->dev = dev;
	op->outstanding++;
	/* the own account answers without a from: ask it without a to */
	if ((rc = omemo_pep_fetch(o, own || strcmp(op->to, o->jid) == 0 ?
	    NULL : op->to, node, item, cb, f)) != 0)
		op->outstanding--;
	return rc;
}

static int
fetch_bundles_for(struct mw_omemo *o, struct omemo_send *op, bool own)
{
	const char *jid = own ? o->jid : op->to;
	bool v2 = op->version == OMEMO_V2;
	uint32_t *ids = NULL;
	size_t n = 0;
	char node[sizeof(MW_OMEMO_NODE_BUNDLES) + 16], item[16];
	uint8_t key[33];
	int rc;

	/* every non-revoked device of the list without a session */
	if ((rc = omemo_trusted_devices_v(o, op->version, jid, &ids, &n, false,
	    false, NULL, 0)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (omemo_has_session(o, op->version, jid, ids[i]))
			continue;
		if (op->refresh_only && !op->all_bundles &&
		    omemo_device_key(o, jid, ids[i], key) == 0)
			continue;
		(void)snprintf(item, sizeof(item), "%u", ids[i]);
		(void)snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
		    ids[i]);
		rc = fetch(o, op, own, v2, ids[i], v2 ? MW_OMEMO2_NODE_BUNDLES :
		    node, v2 ? item : NULL, bundle_cb);
	}
	free(ids);
	return rc;
}

/* Whether phase 1 still needs a list (see the file's comment); read
 * when every answer so far is in. */
static bool
need_list2(const struct omemo_send *op)
{
	if (op->asked2)
		return false;
	if (op->refresh_only || op->want != MW_OMEMO_VERSION_LEGACY)
		return true;
	return op->asked_legacy && !op->offers_legacy;
}

static bool
need_legacy_list(const struct omemo_send *op)
{
	if (op->asked_legacy)
		return false;
	if (op->refresh_only || op->want == MW_OMEMO_VERSION_LEGACY)
		return true;
	return op->asked2 && !op->offers2;
}

/* Phase 1: the recipient's lists still needed (and the own legacy list
 * once); nothing when the answers in decide. */
static int
fetch_lists(struct mw_omemo *o, struct omemo_send *op)
{
	/* both read before either is asked: asking sets asked2, which alone
	 * must not make the legacy list look needed before the answer */
	bool want2 = need_list2(op), want_legacy = need_legacy_list(op);
	uint32_t *ids = NULL;
	size_t n = 0;
	int rc = 0;

	if (want2) {
		op->asked2 = true;
		if ((rc = fetch(o, op, false, true, 0, MW_OMEMO2_NODE_DEVICES,
		    NULL, list2_cb)) != 0)
			return rc;
	}
	if (want_legacy) {
		op->asked_legacy = true;
		if ((rc = fetch(o, op, false, false, 0,
		    MW_OMEMO_NODE_DEVICELIST, NULL, list_cb)) != 0)
			return rc;
	}
	if (op->asked_own || op->refresh_only || strcmp(op->to, o->jid) == 0)
		return 0;
	op->asked_own = true;
	/* the own list is kept fresh by start and pushes; ask once per
	 * transport (a fan-out to N peers costs N own list fetches otherwise) */
	rc = omemo_trusted_devices(o, o->jid, &ids, &n, false, false, NULL, 0);
	free(ids);
	if (rc == 0 && n == 0 && !o->own_list_asked) {
		o->own_list_asked = true;
		rc = fetch(o, op, true, false, 0, MW_OMEMO_NODE_DEVICELIST, NULL,
		    list_cb);
	}
	return rc;
}

/*
 * After phase 1: the version.  A forced version the recipient does not
 * list while it lists the other is MW_OMEMO_E_VERSION; with neither list
 * (no such account, nothing published) the fetch's own error stands.
 */
static int
choose(struct omemo_send *op)
{
	switch (op->want) {
	case MW_OMEMO_VERSION_2:
		if (!op->offers2)
			return op->offers_legacy ? MW_OMEMO_E_VERSION :
			    op->err2 != 0 ? op->err2 : op->last_err != 0 ?
			    op->last_err : MW_OMEMO_E_VERSION;
		op->version = OMEMO_V2;
		return 0;
	case MW_OMEMO_VERSION_LEGACY:
		if (!op->offers_legacy && op->offers2)
			return MW_OMEMO_E_VERSION;
		op->version = OMEMO_V_LEGACY;	/* else as before: its error */
		return 0;
	default:
		op->version = op->offers2 ? OMEMO_V2 : OMEMO_V_LEGACY;
		return 0;
	}
}

static void
op_step(struct mw_omemo *o, struct omemo_send *op)
{
	xmpp_stanza_t *msg = NULL;
	int rc = 0;

	if (op->phase == 0)
		op->phase = 1;
	if (op->phase == 1) {
		if ((rc = fetch_lists(o, op)) != 0) {
			op->last_err = rc;
			if (op->outstanding > 0)
				return;	/* the answers finish it */
			op_finish(o, op, rc);
			return;
		}
		if (op->outstanding > 0)
			return;	/* answered() comes back here */
		op->phase = 2;
		if (op->fell_back && !op->offers_legacy) {
			/* no legacy device either: OMEMO 2's reason stands */
			op_finish(o, op, op->fallback_err);
			return;
		}
		if (op->refresh_only)
			op->version = op->offers2 && !op->offers_legacy ?
			    OMEMO_V2 : OMEMO_V_LEGACY;
		else if ((rc = choose(op)) != 0) {
			op_finish(o, op, rc);
			return;
		}
		rc = fetch_bundles_for(o, op, false);
		if (rc == 0 && !op->refresh_only && strcmp(op->to, o->jid) != 0)
			rc = fetch_bundles_for(o, op, true);
		if (rc != 0)
			op->last_err = rc;
		if (op->outstanding > 0)
			return;
	}
	/* phase 2 done: every answer is in */
	if (op->refresh_only) {
		op_finish(o, op, op->last_err == MW_OMEMO_E_NOMEM ?
		    MW_OMEMO_E_NOMEM : 0);
		return;
	}
	if (op->version == OMEMO_V2)
		rc = mw_omemo2_encrypt(o, o->xctx, op->to, NULL, 0, op->pt,
		    op->len, &msg);
	else
		rc = mw_omemo_encrypt(o, o->xctx, op->to, NULL, 0, op->pt,
		    op->len, &msg);
	if (rc == MW_OMEMO_E_NO_DEVICES && op->version == OMEMO_V2 &&
	    op->want == MW_OMEMO_VERSION_AUTO && !op->fell_back &&
	    (op->offers_legacy || !op->asked_legacy)) {
		/* no OMEMO 2 device usable (bundles missing or broken): the
		 * same devices over legacy, if the recipient offers them */
		op->fell_back = true;
		op->fallback_err = op->last_err != 0 &&
		    op->last_err != MW_OMEMO_E_NO_DEVICES ? op->last_err : rc;
		op->offers2 = false;
		op->last_err = 0;
		op->phase = 1;
		op_step(o, op);
		return;
	}
	if (rc == 0) {
		o->send_fn(msg, o->send_arg);
		xmpp_stanza_release(msg);
	} else if (rc == MW_OMEMO_E_NO_DEVICES && op->last_err != 0 &&
	    op->last_err != MW_OMEMO_E_NO_DEVICES)
		rc = op->last_err;	/* say why there was no device */
	op_finish(o, op, rc);
}

static int
op_start(struct mw_omemo *o, const char *to, const void *pt, size_t len,
    bool refresh_only, bool all_bundles, mw_omemo_done_fn done, void *arg)
{
	struct omemo_send *op;

	if (o == NULL || !omemo_jid_ok(to) || (pt == NULL && len > 0))
		return MW_OMEMO_E_INVAL;
	if (len > MW_OMEMO_MAX_PLAINTEXT)
		return MW_OMEMO_E_OVERSIZE;
	if (o->send_fn == NULL)
		return MW_OMEMO_E_OFFLINE;
	if ((op = calloc(1, sizeof(*op))) == NULL)
		return MW_OMEMO_E_NOMEM;
	if ((op->to = strdup(to)) == NULL ||
	    (len > 0 && (op->pt = malloc(len)) == NULL)) {
		free(op->to);
		free(op);
		return MW_OMEMO_E_NOMEM;
	}
	if (len > 0)
		memcpy(op->pt, pt, len);
	op->len = len;
	op->refresh_only = refresh_only;
	op->all_bundles = all_bundles;
	op->want = refresh_only ? MW_OMEMO_VERSION_AUTO : o->send_version;
	op->done = done;
	op->arg = arg;
	op->next = o->sends;
	o->sends = op;
	op_step(o, op);
	return 0;
}

int
mw_omemo_send(struct mw_omemo *o, const char *to, const void *pt, size_t len,
    mw_omemo_done_fn done, void *arg)
{
	return op_start(o, to, pt, len, false, false, done, arg);
}

int
mw_omemo_refresh(struct mw_omemo *o, const char *jid, bool fetch_bundles,
    mw_omemo_done_fn done, void *arg)
{
	return op_start(o, jid, NULL, 0, true, fetch_bundles, done, arg);
}
