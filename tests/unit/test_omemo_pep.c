/*
 * test_omemo_pep.c: the asynchronous PEP side against an in-process fake
 * server: publishing bundle and device list (with the precondition-not-met
 * reconfigure path), +notify pushes, re-adding the own device, fetching
 * lists and bundles for mw_omemo_send(), republishing after a prekey was
 * used, trusted-only encryption, and IQ timeouts; issue 11: publish-options
 * the server does not know (ejabberd), RSM in answers, the confirmation
 * (omemo-published), and every failure logged and retried with backoff.
 *
 * The fake server keeps one PEP item per (account, node), answers pubsub
 * IQs, pushes device-list updates to every endpoint, and routes messages;
 * stanzas travel as text through a queue, as over a socket.
 */
#include "tests/unit/omemo_testlib.h"
#include "omemo/omemo_int.h"	/* omemo_begin/omemo_rollback: an open txn */

#define MAXEP 6
#define MAXQ 512
#define MAXITEMS 64

struct node_item {
	char jid[64];
	char node[128];
	char *xml;		/* the item's payload */
};

struct qent {
	int from;		/* endpoint index */
	char *text;
};

static struct {
	struct ep *ep[MAXEP];
	int n;
	struct qent q[MAXQ];
	int qh, qt;
	struct node_item items[MAXITEMS];
	int nitems;
	bool precondition_once;	/* fail the next bundle publish once */
	int configures;
	int publishes;		/* legacy bundle publishes of endpoint 1 (B) */
	bool drop_iqs;		/* never answer */
	bool refuse_max_items;	/* ejabberd 23.01: unknown publish-option */
	bool refuse_publish;	/* every publish: forbidden */
	bool rsm;		/* an RSM <set> before <items> (ejabberd) */
	bool wrong_item;	/* OMEMO 2 bundle answers carry item 999 */
	int legacy_list_fetches;	/* of B's legacy device list, by A */
	char inbox[MAXEP][8][256];
	bool inbox2[MAXEP][8];	/* ... arrived as OMEMO 2 */
	int ninbox[MAXEP];
} S;

static int done_rc[8];
static int done_calls;

static void
on_done(struct mw_omemo *o, int err, void *arg)
{
	done_rc[done_calls++ % 8] = err;
}

static void
tsend(xmpp_stanza_t *st, void *arg)
{
	int i = (int)(intptr_t)arg;
	char *buf;
	size_t n;

	assert_int_equal(xmpp_stanza_to_text(st, &buf, &n), XMPP_EOK);
	S.q[S.qt % MAXQ].from = i;
	S.q[S.qt % MAXQ].text = strdup(buf);
	S.qt++;
	xmpp_free(tl_x, buf);
}

static int
add_ep(struct ep *e)
{
	int i = S.n++;

	S.ep[i] = e;
	assert_int_equal(mw_omemo_set_transport(e->o, tl_x, tsend,
	    (void *)(intptr_t)i), 0);
	return i;
}

static struct node_item *
item_find(const char *jid, const char *node, bool create)
{
	for (int i = 0; i < S.nitems; i++)
		if (strcmp(S.items[i].jid, jid) == 0 &&
		    strcmp(S.items[i].node, node) == 0)
			return &S.items[i];
	if (!create)
		return NULL;
	assert_true(S.nitems < MAXITEMS);
	/* the fake server's fields fit every JID and node the tests use */
	assert_in_range(snprintf(S.items[S.nitems].jid, 64, "%s", jid), 0, 63);
	assert_in_range(snprintf(S.items[S.nitems].node, 128, "%s", node), 0,
	    127);
	return &S.items[S.nitems++];
}

static char *
text_of_stanza(xmpp_stanza_t *s)
{
	char *buf, *r;
	size_t n;

	assert_int_equal(xmpp_stanza_to_text(s, &buf, &n), XMPP_EOK);
	r = strdup(buf);
	xmpp_free(tl_x, buf);
	return r;
}

/* Queues text for delivery to endpoint `to` (from = -1: server). */
static void
deliver(int to, const char *text)
{
	xmpp_stanza_t *st = parse(text);
	struct ep *e = S.ep[to];
	const char *name = xmpp_stanza_get_name(st);

	if (mw_omemo_handle_stanza(e->o, st) == 0 && strcmp(name, "message") == 0) {
		struct mw_omemo_msg m;
		int rc = mw_omemo_decrypt(e->o, st, &m);

		if (rc == MW_OMEMO_OK) {
			assert_true(S.ninbox[to] < 8);
			S.inbox2[to][S.ninbox[to]] = m.omemo2;
			snprintf(S.inbox[to][S.ninbox[to]++], 256, "%s",
			    (char *)m.plaintext);
			assert_int_equal(mw_omemo_commit(e->o), 0);
		} else if (rc < 0) {
			snprintf(S.inbox[to][S.ninbox[to]++], 256, "error %d", rc);
		}
		mw_omemo_msg_free(&m);
	}
	xmpp_stanza_release(st);
}

static void
reply(int to, const char *from, const char *id, const char *type,
    const char *inner)
{
	char *t;

	assert_int_not_equal(asprintf(&t, "<iq type='%s' id='%s'%s%s%s>%s</iq>",
	    type, id, from ? " from='" : "", from ? from : "", from ? "'" : "",
	    inner), -1);
	deliver(to, t);
	free(t);
}

static void
serve_iq(int from, xmpp_stanza_t *iq)
{
	const char *type = xmpp_stanza_get_type(iq), *id = xmpp_stanza_get_id(iq);
	const char *to = xmpp_stanza_get_to(iq);
	const char *owner = to != NULL ? to : S.ep[from]->jid;
	xmpp_stanza_t *ps;
	char *inner = NULL, key[160];

	if (S.drop_iqs)
		return;
	if ((ps = xmpp_stanza_get_child_by_ns(iq,
	    "http://jabber.org/protocol/pubsub#owner")) != NULL) {
		S.configures++;
		reply(from, NULL, id, "result", "");
		return;
	}
	ps = xmpp_stanza_get_child_by_ns(iq, "http://jabber.org/protocol/pubsub");
	assert_non_null(ps);
	if (strcmp(type, "set") == 0) {
		xmpp_stanza_t *pub = xmpp_stanza_get_child_by_name(ps, "publish");
		xmpp_stanza_t *item = xmpp_stanza_get_child_by_name(pub, "item");
		const char *node = xmpp_stanza_get_attribute(pub, "node");
		struct node_item *it;

		assert_non_null(xmpp_stanza_get_child_by_name(ps, "publish-options"));
		if (from == 1 && strncmp(node, MW_OMEMO_NODE_BUNDLES,
		    strlen(MW_OMEMO_NODE_BUNDLES)) == 0)
			S.publishes++;	/* legacy: OMEMO 2 goes out beside */
		if (S.refuse_publish) {
			reply(from, NULL, id, "error", "<error type='auth'>"
			    "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
			    "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
			    "not \"today\"</text></error>");
			return;
		}
		if (S.refuse_max_items) {
			char *opts = text_of_stanza(xmpp_stanza_get_child_by_name(ps,
			    "publish-options"));
			bool unknown = strstr(opts, "pubsub#max_items") != NULL;

			free(opts);
			if (unknown) {
				reply(from, NULL, id, "error", "<error type='wait'>"
				    "<resource-constraint xmlns='urn:ietf:params:xml:"
				    "ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:"
				    "xml:ns:xmpp-stanzas'>Unknown field 'pubsub#max_items'"
				    " of type 'http://jabber.org/protocol/pubsub#"
				    "publish-options'</text></error>");
				return;
			}
		}
		if (S.precondition_once && strstr(node, "bundles") != NULL) {
			S.precondition_once = false;
			reply(from, NULL, id, "error", "<error type='cancel'>"
			    "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
			    "<precondition-not-met xmlns='http://jabber.org/"
			    "protocol/pubsub#errors'/></error>");
			return;
		}
		/* OMEMO 2 bundles: one item per device, kept by item id */
		if (strcmp(node, MW_OMEMO2_NODE_BUNDLES) == 0) {
			(void)snprintf(key, sizeof(key), "%s/%s", node,
			    xmpp_stanza_get_attribute(item, "id"));
			node = key;
		}
		it = item_find(S.ep[from]->jid, node, true);
		free(it->xml);
		it->xml = text_of_stanza(xmpp_stanza_get_children(item));
		reply(from, NULL, id, "result", "");
		if (strcmp(node, MW_OMEMO_NODE_DEVICELIST) == 0) {
			/* +notify: every endpoint gets the push */
			for (int i = 0; i < S.n; i++) {
				char *t;

				assert_int_not_equal(asprintf(&t, "<message from='%s'>"
				    "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
				    "<items node='%s'><item id='current'>%s</item></items>"
				    "</event></message>", S.ep[from]->jid, node,
				    it->xml), -1);
				S.q[S.qt % MAXQ].from = -1 - i;
				S.q[S.qt % MAXQ].text = t;
				S.qt++;
			}
		}
		return;
	}
	{
		xmpp_stanza_t *items = xmpp_stanza_get_child_by_name(ps, "items");
		xmpp_stanza_t *want = xmpp_stanza_get_child_by_name(items, "item");
		const char *node = xmpp_stanza_get_attribute(items, "node");
		const char *item_id = "current";
		struct node_item *it;

		/* the last item, or (OMEMO 2 bundles) the one asked for */
		if (want != NULL) {
			assert_string_equal(node, MW_OMEMO2_NODE_BUNDLES);
			item_id = xmpp_stanza_get_attribute(want, "id");
			(void)snprintf(key, sizeof(key), "%s/%s", node, item_id);
			it = item_find(owner, key, false);
			if (S.wrong_item)
				item_id = "999";
		} else {
			assert_string_equal(xmpp_stanza_get_attribute(items,
			    "max_items"), "1");
			it = item_find(owner, node, false);
			if (strcmp(node, MW_OMEMO_NODE_DEVICELIST) == 0 &&
			    from == 0 && to != NULL)
				S.legacy_list_fetches++;
		}
		if (it == NULL) {
			reply(from, to, id, "error", "<error type='cancel'>"
			    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
			    "</error>");
			return;
		}
		assert_int_not_equal(asprintf(&inner, "<pubsub xmlns='http://jabber.org/"
		    "protocol/pubsub'>%s<items node='%s'><item id='%s'>%s</item>"
		    "</items></pubsub>", S.rsm ? "<set xmlns='http://jabber.org/"
		    "protocol/rsm'><count>1</count></set>" : "", node, item_id,
		    it->xml), -1);
		reply(from, to, id, "result", inner);
		free(inner);
	}
}

/* Runs the server until nothing is left to do. */
static void
pump(void)
{
	while (S.qh < S.qt) {
		struct qent e = S.q[S.qh++ % MAXQ];
		xmpp_stanza_t *st;

		if (e.from < 0) {	/* a server push for endpoint -1-from */
			deliver(-1 - e.from, e.text);
			free(e.text);
			continue;
		}
		st = parse(e.text);
		if (strcmp(xmpp_stanza_get_name(st), "iq") == 0)
			serve_iq(e.from, st);
		else {
			/* a chat message: stamp from, route to every resource */
			char full[128], *t;

			snprintf(full, sizeof(full), "%s/r%d", S.ep[e.from]->jid, e.from);
			xmpp_stanza_set_from(st, full);
			t = text_of_stanza(st);
			/* every resource of the recipient, and the sender's other
			 * devices (carbons-like) */
			for (int i = 0; i < S.n; i++)
				if (i != e.from && (strcmp(S.ep[i]->jid,
				    xmpp_stanza_get_to(st)) == 0 ||
				    strcmp(S.ep[i]->jid, S.ep[e.from]->jid) == 0))
					deliver(i, t);
			free(t);
		}
		xmpp_stanza_release(st);
		free(e.text);
	}
}

static struct ep A, B, B2;

static int
setup(void **state)
{
	memset(&S, 0, sizeof(S));
	done_calls = 0;
	tl_init();
	ep_new(&A, "alice@example.org", "a");
	ep_new(&B, "bob@example.org", "b");
	add_ep(&A);
	add_ep(&B);
	return 0;
}

static int
teardown(void **state)
{
	for (int i = 0; i < S.n; i++)
		ep_close(S.ep[i]);
	for (int i = 0; i < S.nitems; i++)
		free(S.items[i].xml);
	while (S.qh < S.qt)
		free(S.q[S.qh++ % MAXQ].text);
	tl_fini();
	return 0;
}

static void
trust_each_other(struct ep *x, struct ep *y)
{
	char fp[65];

	fp_of(y, fp);
	assert_int_equal(mw_omemo_trust(x->o, y->jid, fp), 0);
	fp_of(x, fp);
	assert_int_equal(mw_omemo_trust(y->o, x->jid, fp), 0);
}

static void
test_start_publishes(void **state)
{
	char node[128], dev[32];
	struct node_item *it;

	S.precondition_once = true;
	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	assert_int_equal(S.configures, 1);	/* reconfigured, then published */
	snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    mw_omemo_device_id(A.o));
	it = item_find(A.jid, node, false);
	assert_non_null(it);
	/* child order python-oldmemo validates */
	assert_true(strstr(it->xml, "<signedPreKeyPublic") <
	    strstr(it->xml, "<signedPreKeySignature"));
	assert_true(strstr(it->xml, "<signedPreKeySignature") <
	    strstr(it->xml, "<identityKey"));
	assert_true(strstr(it->xml, "<identityKey") < strstr(it->xml, "<prekeys"));
	{
		int n = 0;

		for (const char *p = it->xml; (p = strstr(p, "<preKeyPublic")); p++)
			n++;
		assert_int_equal(n, 100);
	}
	it = item_find(A.jid, MW_OMEMO_NODE_DEVICELIST, false);
	assert_non_null(it);
	snprintf(dev, sizeof(dev), "id=\"%u\"", mw_omemo_device_id(A.o));
	assert_non_null(strstr(it->xml, dev));
	/* a push of A's list without A's device: A puts itself back */
	free(it->xml);
	it->xml = strdup("<list xmlns='eu.siacs.conversations.axolotl'>"
	    "<device id='4242'/></list>");
	{
		char *t;

		assert_int_not_equal(asprintf(&t, "<message from='%s'><event "
		    "xmlns='http://jabber.org/protocol/pubsub#event'><items node='%s'>"
		    "<item id='current'>%s</item></items></event></message>", A.jid,
		    MW_OMEMO_NODE_DEVICELIST, it->xml), -1);
		deliver(0, t);
		free(t);
	}
	pump();
	it = item_find(A.jid, MW_OMEMO_NODE_DEVICELIST, false);
	assert_non_null(strstr(it->xml, dev));
	assert_non_null(strstr(it->xml, "4242"));
}

static void
test_send_builds_sessions(void **state)
{
	char node[128], used[64];
	struct node_item *it;
	int pubs;

	assert_int_equal(mw_omemo_start(A.o), 0);
	assert_int_equal(mw_omemo_start(B.o), 0);
	pump();
	trust_each_other(&A, &B);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "hi bob", 6, on_done, NULL), 0);
	pump();
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_rc[0], 0);
	assert_int_equal(S.ninbox[1], 1);
	assert_string_equal(S.inbox[1][0], "hi bob");
	/* B's republish waits 30-150 s; a process about to disconnect sends
	 * it at once: the bundle without the used prekey, with id 101 */
	snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    mw_omemo_device_id(B.o));
	it = item_find(B.jid, node, false);
	assert_null(strstr(it->xml, "preKeyId=\"101\""));
	pubs = S.publishes;
	assert_int_equal(mw_omemo_publish_pending(B.o), 0);
	pump();
	assert_int_equal(S.publishes, pubs + 1);
	it = item_find(B.jid, node, false);
	assert_non_null(strstr(it->xml, "preKeyId=\"101\""));
	/* nothing waits any more: nothing more is published */
	assert_int_equal(mw_omemo_publish_pending(B.o), 0);
	mw_omemo_tick(B.o);
	pump();
	assert_int_equal(S.publishes, pubs + 1);
	{
		int64_t missing = count(&B, "SELECT min(id) FROM (WITH RECURSIVE "
		    "n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
		    "SELECT i AS id FROM n WHERE i NOT IN (SELECT id FROM "
		    "omemo_prekeys))");

		snprintf(used, sizeof(used), "preKeyId=\"%lld\"", (long long)missing);
		assert_null(strstr(it->xml, used));
	}
	/* and back, no bundle fetch needed */
	assert_int_equal(mw_omemo_send(B.o, A.jid, "hi alice", 8, on_done, NULL), 0);
	pump();
	assert_int_equal(done_rc[1], 0);
	assert_string_equal(S.inbox[0][0], "hi alice");
	/* B restarts: still works both ways */
	ep_close(&B);
	ep_open(&B);
	assert_int_equal(mw_omemo_set_transport(B.o, tl_x, tsend, (void *)1), 0);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "after restart", 13, on_done,
	    NULL), 0);
	assert_int_equal(mw_omemo_send(B.o, A.jid, "me too", 6, on_done, NULL), 0);
	pump();
	assert_string_equal(S.inbox[1][1], "after restart");
	assert_string_equal(S.inbox[0][1], "me too");
}

/* Issue 10: republishing after used prekeys is coalesced; issue 11: and
 * deferred -- no change is published at once, the first pending one and
 * every one after it go out together, once, when the window after the
 * first has passed (a fan-out of first contacts is answered before its
 * agents republish). */
static struct ep A2, A3;

static void
test_republish_debounced(void **state)
{
	char node[128];
	struct node_item *it;
	int64_t used, t0;
	int pubs;

	ep_new(&A2, "alice@example.org", "a2");
	ep_new(&A3, "alice@example.org", "a3");
	add_ep(&A2);
	add_ep(&A3);
	assert_int_equal(mw_omemo_start(A.o), 0);
	assert_int_equal(mw_omemo_start(B.o), 0);
	assert_int_equal(mw_omemo_start(A2.o), 0);
	assert_int_equal(mw_omemo_start(A3.o), 0);
	pump();
	trust_each_other(&A, &B);
	trust_each_other(&A2, &B);
	trust_each_other(&A3, &B);
	snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    mw_omemo_device_id(B.o));
	pubs = S.publishes;
	/* three first contacts: prekeys replaced by 101-103, none published
	 * within the window, whatever the ticks; the first change set the
	 * republish 1-5 windows (30-150 s) away */
	t0 = omemo_mono_ms();
	assert_int_equal(mw_omemo_send(A.o, B.jid, "one", 3, on_done, NULL), 0);
	pump();
	assert_true(B.o->bundle_publish_pending);
	assert_true(B.o->bundle_publish_due_ms >= t0 + MW_OMEMO_REPUBLISH_MIN_SECS * 1000);
	assert_true(B.o->bundle_publish_due_ms <= omemo_mono_ms() +
	    5 * MW_OMEMO_REPUBLISH_MIN_SECS * 1000);
	assert_int_equal(mw_omemo_send(A2.o, B.jid, "two", 3, on_done, NULL), 0);
	pump();
	assert_int_equal(mw_omemo_send(A3.o, B.jid, "three", 5, on_done, NULL), 0);
	pump();
	mw_omemo_tick(B.o);
	pump();
	assert_int_equal(done_calls, 3);
	it = item_find(B.jid, node, false);
	assert_null(strstr(it->xml, "preKeyId=\"101\""));
	assert_null(strstr(it->xml, "preKeyId=\"102\""));
	assert_null(strstr(it->xml, "preKeyId=\"103\""));
	assert_int_equal(S.publishes, pubs);
	/* the window passes: one publish carries all of them */
	mw_omemo_set_republish_interval(B.o, 0);
	mw_omemo_tick(B.o);
	pump();
	mw_omemo_tick(B.o);
	pump();
	it = item_find(B.jid, node, false);
	/* A, A2 and A3 each picked a random prekey from the same bundle:
	 * sometimes two pick the same one, which still opens their sessions
	 * (MW_OMEMO_PREKEY_GRACE_SECS) but is replaced once.  Every first
	 * contact got through, and every replacement is published. */
	assert_int_equal(S.ninbox[1], 3);
	assert_string_equal(S.inbox[1][0], "one");
	assert_string_equal(S.inbox[1][1], "two");
	assert_string_equal(S.inbox[1][2], "three");
	used = count(&B, "SELECT count(*) FROM omemo_prekeys WHERE used IS NOT NULL");
	assert_true(used >= 1 && used <= 3);
	for (int64_t k = 1; k <= used; k++) {
		char want[32];

		snprintf(want, sizeof(want), "preKeyId=\"%lld\"", (long long)(100 + k));
		assert_non_null(strstr(it->xml, want));
	}
	assert_int_equal(S.publishes, pubs + 1);
}

static void
test_untrusted_device_skipped(void **state)
{
	int b2;

	ep_new(&B2, "bob@example.org", "b2");
	b2 = add_ep(&B2);
	assert_int_equal(mw_omemo_start(A.o), 0);
	assert_int_equal(mw_omemo_start(B.o), 0);
	pump();
	assert_int_equal(mw_omemo_start(B2.o), 0);
	pump();
	/* A trusts only B's first device */
	trust_each_other(&A, &B);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "only b1", 7, on_done, NULL), 0);
	pump();
	assert_int_equal(done_rc[0], 0);
	assert_string_equal(S.inbox[1][0], "only b1");
	/* B2 got the message but no key for it */
	assert_int_equal(S.ninbox[b2], 1);
	{
		char want[32];

		snprintf(want, sizeof(want), "error %d", MW_OMEMO_E_NOT_FOR_US);
		assert_string_equal(S.inbox[b2][0], want);
	}
	/* A knows B2's key now (bundle fetched, undecided) */
	{
		struct mw_omemo_device *d;
		size_t n;
		int undecided = 0;

		assert_int_equal(mw_omemo_devices(A.o, B.jid, &d, &n), 0);
		assert_int_equal(n, 2);
		for (size_t i = 0; i < n; i++)
			if (d[i].has_key && d[i].trust == MW_OMEMO_TRUST_UNDECIDED)
				undecided++;
		assert_int_equal(undecided, 1);
		free(d);
	}
	/* nobody trusted: nothing is sent */
	assert_int_equal(mw_omemo_send(B.o, "carol@example.org", "x", 1, on_done,
	    NULL), 0);
	pump();
	assert_int_equal(done_rc[1], MW_OMEMO_E_IQ);	/* no such list */
}

static void
test_timeout(void **state)
{
	S.drop_iqs = true;
	mw_omemo_set_iq_timeout(A.o, 0);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "lost", 4, on_done, NULL), 0);
	pump();
	assert_int_equal(done_calls, 0);
	/* an unanswered fetch times out at a tick; a fetch started by another
	 * one's timeout just as the clock passes a millisecond boundary
	 * waits for the next tick */
	for (int i = 0; i < 4 && done_calls == 0; i++) {
		mw_omemo_tick(A.o);
		usleep(2000);
	}
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_rc[0], MW_OMEMO_E_TIMEOUT);
	/* a send pending at close is failed, once */
	S.drop_iqs = true;
	mw_omemo_set_iq_timeout(A.o, 60000);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "never", 5, on_done, NULL), 0);
	pump();
	ep_close(&A);
	assert_int_equal(done_calls, 2);
	assert_int_equal(done_rc[1], MW_OMEMO_E_OFFLINE);
	ep_open(&A);
}

/* ---- issue 11: publication confirmed, failures logged ---- */

static char logged[32][512];
static int nlogged;

static void
log_sink(const char *event, const char *fields, void *arg)
{
	snprintf(logged[nlogged++ % 32], 512, "%s %s", event, fields);
}

/* How many log lines contain every one of the (NULL-terminated) words. */
static int
log_count(const char *w1, ...)
{
	int n = 0;

	for (int i = 0; i < nlogged && i < 32; i++) {
		va_list ap;
		bool all = strstr(logged[i], w1) != NULL;
		const char *w;

		va_start(ap, w1);
		while ((w = va_arg(ap, const char *)) != NULL)
			all = all && strstr(logged[i], w) != NULL;
		va_end(ap);
		n += all;
	}
	return n;
}

static void
own_list_without_me(void)
{
	struct node_item *it = item_find(A.jid, MW_OMEMO_NODE_DEVICELIST, false);

	assert_non_null(it);
	free(it->xml);
	it->xml = strdup("<list xmlns='eu.siacs.conversations.axolotl'>"
	    "<device id='4242'/></list>");
	deliver(0, "<message from='alice@example.org'><event xmlns='http://"
	    "jabber.org/protocol/pubsub#event'><items node='eu.siacs."
	    "conversations.axolotl.devicelist'><item id='current'><list xmlns="
	    "'eu.siacs.conversations.axolotl'><device id='4242'/></list></item>"
	    "</items></event></message>");
}

static void
test_unknown_publish_option_dropped(void **state)
{
	char node[128], dev[48];

	nlogged = 0;
	S.refuse_max_items = true;
	S.rsm = true;
	mw_omemo_set_log(A.o, log_sink, NULL);
	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	snprintf(node, sizeof(node), "%s%u", MW_OMEMO_NODE_BUNDLES,
	    mw_omemo_device_id(A.o));
	assert_non_null(item_find(A.jid, node, false));
	assert_non_null(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST, false));
	/* both refusals said what the server said, then confirmed */
	assert_int_equal(log_count("omemo-publish-refused", node,
	    "condition=resource-constraint", "Unknown field 'pubsub#max_items'",
	    NULL), 1);
	assert_int_equal(log_count("omemo-publish-refused",
	    "node=" MW_OMEMO_NODE_DEVICELIST " ", NULL), 1);
	snprintf(dev, sizeof(dev), "omemo-published device=%u",
	    mw_omemo_device_id(A.o));
	assert_int_equal(log_count(dev, NULL), 1);
	assert_int_equal(log_count("omemo-publish-failed", NULL), 0);
	assert_true(mw_omemo_published(A.o));
	/* a push that drops this device: republished, confirmed again */
	own_list_without_me();
	pump();
	assert_int_equal(log_count(dev, NULL), 2);
	assert_non_null(strstr(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST,
	    false)->xml, "4242"));
}

static void
test_publish_failure_logged_and_retried(void **state)
{
	nlogged = 0;
	S.refuse_publish = true;
	mw_omemo_set_log(A.o, log_sink, NULL);
	mw_omemo_set_publish_backoff(A.o, 1);
	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	/* once with every option, once with access_model only, then loud */
	/* (the OMEMO 2 nodes are refused beside, each logged too) */
	assert_int_equal(log_count("omemo-publish-refused", "condition=forbidden",
	    "node=" MW_OMEMO_NODE_BUNDLES, NULL), 1);
	assert_int_equal(log_count("omemo-publish-failed", "node=" MW_OMEMO_NODE_BUNDLES,
	    "op=publish", "condition=forbidden", "text=\"not ?today?\"",
	    "retry_in_ms=", NULL), 1);
	assert_false(mw_omemo_published(A.o));
	assert_null(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST, false));
	/* the server recovers: the next tick after the backoff publishes */
	S.refuse_publish = false;
	usleep(20000);
	mw_omemo_tick(A.o);
	pump();
	assert_true(mw_omemo_published(A.o));
	assert_int_equal(log_count("omemo-published", NULL), 1);

	/* an unanswered fetch is a failure too (condition=timeout) */
	nlogged = 0;
	S.drop_iqs = true;
	mw_omemo_set_iq_timeout(A.o, 0);
	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	mw_omemo_tick(A.o);
	assert_int_equal(log_count("omemo-publish-failed", "condition=timeout",
	    "node=" MW_OMEMO_NODE_BUNDLES, NULL), 1);
	assert_false(mw_omemo_published(A.o));
	S.drop_iqs = false;
	mw_omemo_set_iq_timeout(A.o, 60000);
	usleep(20000);
	mw_omemo_tick(A.o);
	pump();
	assert_true(mw_omemo_published(A.o));
}

/* The own list arriving while a transaction is open (a decrypt not yet
 * committed) cannot be stored: logged, and the publication retried. */
static void
test_own_list_during_txn_retried(void **state)
{
	nlogged = 0;
	mw_omemo_set_log(A.o, log_sink, NULL);
	mw_omemo_set_publish_backoff(A.o, 1);
	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	assert_true(mw_omemo_published(A.o));
	assert_int_equal(omemo_begin(A.o), 0);
	own_list_without_me();
	pump();
	assert_int_equal(log_count("omemo-publish-failed", "condition=store-busy",
	    NULL), 1);
	assert_false(mw_omemo_published(A.o));
	usleep(20000);
	mw_omemo_tick(A.o);	/* still inside the transaction: waits */
	pump();
	assert_false(mw_omemo_published(A.o));
	omemo_rollback(A.o);
	mw_omemo_tick(A.o);
	pump();
	assert_true(mw_omemo_published(A.o));
	assert_non_null(strstr(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST,
	    false)->xml, "4242"));
}

static void
test_offline(void **state)
{
	struct mw_omemo *o;

	assert_int_equal(mw_omemo_open(&o, A.db, NULL), 0);
	assert_int_equal(mw_omemo_send(o, B.jid, "x", 1, on_done, NULL),
	    MW_OMEMO_E_OFFLINE);
	assert_int_equal(mw_omemo_start(o), MW_OMEMO_E_OFFLINE);
	mw_omemo_close(o);
}

/* OMEMO 2 beside legacy: both bundles and both lists published at start;
 * an OMEMO 2 list push without this device is answered by publishing it
 * again with the device added (the other device kept); a peer's push is
 * stored, and nothing of this touches the legacy list. */
static void
test_omemo2_published_and_readded(void **state)
{
	struct node_item *it;
	char dev[32], xml[512];
	const char *legacy_before;

	assert_int_equal(mw_omemo_start(A.o), 0);
	pump();
	snprintf(dev, sizeof(dev), "id=\"%u\"", mw_omemo_device_id(A.o));
	snprintf(xml, sizeof(xml), "%s/%u", MW_OMEMO2_NODE_BUNDLES,
	    mw_omemo_device_id(A.o));
	it = item_find(A.jid, xml, false);	/* item id: the device id */
	assert_non_null(it);
	assert_non_null(strstr(it->xml, "urn:xmpp:omemo:2"));
	assert_non_null(strstr(it->xml, "<ik>"));
	it = item_find(A.jid, MW_OMEMO2_NODE_DEVICES, false);
	assert_non_null(it);
	assert_non_null(strstr(it->xml, dev));
	assert_true(mw_omemo_published(A.o));
	legacy_before = strdup(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST,
	    false)->xml);
	/* another client of the account drops this device from the list */
	free(it->xml);
	it->xml = strdup("<devices xmlns='urn:xmpp:omemo:2'><device id='4242'/>"
	    "</devices>");
	deliver(0, "<message from='alice@example.org'><event xmlns='http://"
	    "jabber.org/protocol/pubsub#event'><items node='urn:xmpp:omemo:2:"
	    "devices'><item id='current'><devices xmlns='urn:xmpp:omemo:2'>"
	    "<device id='4242'/></devices></item></items></event></message>");
	pump();
	it = item_find(A.jid, MW_OMEMO2_NODE_DEVICES, false);
	assert_non_null(strstr(it->xml, dev));
	assert_non_null(strstr(it->xml, "4242"));
	assert_string_equal(item_find(A.jid, MW_OMEMO_NODE_DEVICELIST,
	    false)->xml, legacy_before);
	free((void *)legacy_before);
	/* a peer's OMEMO 2 list is stored as that version's flag */
	snprintf(xml, sizeof(xml), "<message from='bob@example.org'><event "
	    "xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:"
	    "xmpp:omemo:2:devices'><item id='current'><devices xmlns='urn:xmpp:"
	    "omemo:2'><device id='777'/></devices></item></items></event>"
	    "</message>");
	deliver(0, xml);
	pump();
	{
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_prepare_v2(A.db, "SELECT active, active4 "
		    "FROM omemo_devices WHERE jid = 'bob@example.org' AND "
		    "device_id = 777", -1, &st, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 0);
		assert_int_equal(sqlite3_column_int(st, 1), 1);
		sqlite3_finalize(st);
	}
}

/* The version mw_omemo_send() picks: OMEMO 2 where offered, legacy
 * otherwise or when forced; a forced version not offered is refused; a
 * bundle answer for another device is refused and AUTO falls back. */
static void
test_send_version(void **state)
{
	struct node_item *it;
	int fetches;

	assert_int_equal(mw_omemo_start(A.o), 0);
	assert_int_equal(mw_omemo_start(B.o), 0);
	pump();
	trust_each_other(&A, &B);
	/* the server answers the OMEMO 2 bundle fetch with another item */
	S.wrong_item = true;
	mw_omemo_set_send_version(A.o, MW_OMEMO_VERSION_2);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "nope", 4, on_done, NULL), 0);
	pump();
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_rc[0], MW_OMEMO_E_BUNDLE);
	assert_int_equal(S.ninbox[1], 0);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions_v4"), 0);
	/* AUTO: no usable OMEMO 2 device, so legacy */
	mw_omemo_set_send_version(A.o, MW_OMEMO_VERSION_AUTO);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "fallback", 8, on_done,
	    NULL), 0);
	pump();
	assert_int_equal(done_rc[1], 0);
	assert_int_equal(S.ninbox[1], 1);
	assert_string_equal(S.inbox[1][0], "fallback");
	assert_false(S.inbox2[1][0]);
	S.wrong_item = false;
	/* AUTO with B's OMEMO 2 bundle served: OMEMO 2, and B's legacy list
	 * is not asked for (the OMEMO 2 one decides) */
	fetches = S.legacy_list_fetches;
	assert_int_equal(mw_omemo_send(A.o, B.jid, "two", 3, on_done, NULL), 0);
	pump();
	assert_int_equal(done_rc[2], 0);
	assert_string_equal(S.inbox[1][1], "two");
	assert_true(S.inbox2[1][1]);
	assert_int_equal(S.legacy_list_fetches, fetches);
	/* forced legacy beside it */
	mw_omemo_set_send_version(A.o, MW_OMEMO_VERSION_LEGACY);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "old", 3, on_done, NULL), 0);
	pump();
	assert_int_equal(done_rc[3], 0);
	assert_string_equal(S.inbox[1][2], "old");
	assert_false(S.inbox2[1][2]);
	/* B's OMEMO 2 list gone: forced 2 is refused, nothing sent */
	it = item_find(B.jid, MW_OMEMO2_NODE_DEVICES, false);
	assert_non_null(it);
	snprintf(it->node, 128, "gone");
	mw_omemo_set_send_version(A.o, MW_OMEMO_VERSION_2);
	assert_int_equal(mw_omemo_send(A.o, B.jid, "x", 1, on_done, NULL), 0);
	pump();
	assert_int_equal(done_rc[4], MW_OMEMO_E_VERSION);
	assert_int_equal(S.ninbox[1], 3);
	/* ... and AUTO goes legacy, asking for the legacy list then */
	mw_omemo_set_send_version(A.o, MW_OMEMO_VERSION_AUTO);
	fetches = S.legacy_list_fetches;
	assert_int_equal(mw_omemo_send(A.o, B.jid, "auto", 4, on_done, NULL), 0);
	pump();
	assert_int_equal(S.legacy_list_fetches, fetches + 1);
	assert_int_equal(done_rc[5], 0);
	assert_string_equal(S.inbox[1][3], "auto");
	assert_false(S.inbox2[1][3]);
}

static void
test_version_parse(void **state)
{
	enum mw_omemo_version v;

	assert_int_equal(mw_omemo_version_parse("2", &v), 0);
	assert_int_equal(v, MW_OMEMO_VERSION_2);
	assert_int_equal(mw_omemo_version_parse("legacy", &v), 0);
	assert_int_equal(v, MW_OMEMO_VERSION_LEGACY);
	assert_int_equal(mw_omemo_version_parse("auto", &v), 0);
	assert_int_equal(v, MW_OMEMO_VERSION_AUTO);
	assert_int_equal(mw_omemo_version_parse("1", &v), -1);
	assert_int_equal(mw_omemo_version_parse("", &v), -1);
	assert_int_equal(mw_omemo_version_parse(NULL, &v), -1);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_start_publishes),
		T(test_republish_debounced),
		T(test_send_builds_sessions),
		T(test_untrusted_device_skipped),
		T(test_timeout),
		T(test_offline),
		T(test_unknown_publish_option_dropped),
		T(test_publish_failure_logged_and_retried),
		T(test_own_list_during_txn_retried),
		T(test_omemo2_published_and_readded),
		T(test_send_version),
		T(test_version_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
