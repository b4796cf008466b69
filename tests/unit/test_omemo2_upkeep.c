/*
 * test_omemo2_upkeep.c: the empty OMEMO 2 messages moonwire sends of its
 * own accord (omemo/upkeep2.c): a key exchange completed when no reply
 * followed, and not when one did; a heartbeat from the 54th unanswered
 * message of a sending chain on, once; a session repaired after a
 * verified device's message failed in the ratchet (bundle fetched over
 * the transport, new session, empty message with the key exchange that
 * the peer accepts), at most once per device per interval, and never for
 * an unverified device or a replay.
 */
#include "tests/unit/omemo_testlib.h"
#include "omemo/omemo_int.h"

static struct ep A, B;

/* what an endpoint's transport and log received: messages apart from
 * IQs (bundle republication after a used prekey, fetches) */
#define MAX_OUT 16
struct out {
	struct ep *self;
	char *st[MAX_OUT];
	size_t n;
	char *iq;		/* the last IQ */
	char log[4096];
};
static struct out outA, outB;

static void
tsend(xmpp_stanza_t *st, void *arg)
{
	struct out *o = arg;
	xmpp_stanza_t *copy = xmpp_stanza_copy(st);

	assert_non_null(copy);
	if (strcmp(xmpp_stanza_get_name(copy), "iq") == 0) {
		free(o->iq);
		o->iq = wire_text(o->self, copy);
	} else {
		assert_true(o->n < MAX_OUT);
		o->st[o->n++] = wire_text(o->self, copy);
	}
	xmpp_stanza_release(copy);
}

static void
tlog(const char *event, const char *fields, void *arg)
{
	struct out *o = arg;
	size_t l = strlen(o->log);

	snprintf(o->log + l, sizeof(o->log) - l, "%s %s\n", event, fields);
}

static void
out_clear(struct out *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->st[i]);
	o->n = 0;
	free(o->iq);
	o->iq = NULL;
	o->log[0] = '\0';
}

static void
wire_up(struct ep *e, struct out *o)
{
	memset(o, 0, sizeof(*o));
	o->self = e;
	assert_int_equal(mw_omemo_set_transport(e->o, tl_x, tsend, o), 0);
	mw_omemo_set_log(e->o, tlog, o);
	mw_omemo_set_empty_delay(e->o, 1);
}

static int
setup(void **state)
{
	tl_init();
	ep_new(&A, "alice@example.org", "a");
	ep_new(&B, "bob@example.org", "b");
	wire_up(&A, &outA);
	wire_up(&B, &outB);
	return 0;
}

static int
teardown(void **state)
{
	out_clear(&outA);
	out_clear(&outB);
	ep_close(&A);
	ep_close(&B);
	tl_fini();
	return 0;
}

/* A has a v4 session with B and verified it; both know the other's list;
 * B verified A too unless told otherwise */
static void
introduce_ab(bool b_verifies_a)
{
	xmpp_stanza_t *bun = bundle2_of(&B);
	char fp[65];

	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), bun), MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	learn_devlist2(&A, &B);
	learn_devlist2(&B, &A);
	fp_of(&B, fp);
	assert_int_equal(mw_omemo_trust(A.o, B.jid, fp), MW_OMEMO_OK);
	if (!b_verifies_a)
		return;
	fp_of(&A, fp);
	assert_int_equal(mw_omemo_trust(B.o, A.jid, fp), MW_OMEMO_OK);
}

static void
trust_each_other(void)
{
	introduce_ab(true);
}

/* a -> b, decrypted and committed; whether it carried the key exchange */
static bool
send2(struct ep *a, struct ep *b, const char *text)
{
	struct mw_omemo_msg m;
	char *w = enc2(a, b, text);
	bool kex;

	assert_int_equal(dec_raw(b, w, &m), MW_OMEMO_OK);
	assert_int_equal(m.len, strlen(text));
	assert_memory_equal(m.plaintext, text, m.len);
	assert_int_equal(mw_omemo_commit(b->o), MW_OMEMO_OK);
	kex = m.prekey;
	mw_omemo_msg_free(&m);
	free(w);
	return kex;
}

/* one tick after every grace has passed */
static void
tick(struct ep *e)
{
	usleep(5000);
	mw_omemo_tick(e->o);
}

/* the empty message at o->st[i], decrypted by e: DROPPED; its kex flag */
static bool
take_empty(struct out *o, size_t i, struct ep *e)
{
	struct mw_omemo_msg m;
	bool kex;

	assert_true(i < o->n);
	assert_null(strstr(o->st[i], "<payload"));
	assert_non_null(strstr(o->st[i], MW_OMEMO2_NS));
	assert_int_equal(dec_raw(e, o->st[i], &m), MW_OMEMO_DROPPED);
	assert_false(mw_omemo_txn_pending(e->o));
	kex = strstr(o->st[i], "kex='true'") != NULL ||
	    strstr(o->st[i], "kex=\"true\"") != NULL;
	mw_omemo_msg_free(&m);
	return kex;
}

static void
test_kex_completed_when_nothing_follows(void **state)
{
	struct ep B2;
	xmpp_stanza_t *bun;
	char fp[65], b2dev[32], *real;

	trust_each_other();
	/* B's account has a second verified device with a session: a real
	 * message would carry a key for it, an empty one must not */
	ep_new(&B2, B.jid, "b2");
	bun = bundle2_of(&B2);
	assert_int_equal(mw_omemo2_process_bundle(B.o, B2.jid,
	    mw_omemo_device_id(B2.o), bun), MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	learn_devlist2(&B, &B2);
	fp_of(&B2, fp);
	assert_int_equal(mw_omemo_trust(B.o, B2.jid, fp), MW_OMEMO_OK);
	snprintf(b2dev, sizeof(b2dev), "rid=\"%u\"", mw_omemo_device_id(B2.o));
	ep_close(&B2);
	assert_true(send2(&A, &B, "first contact"));
	assert_int_equal(omemo2_upkeep_owed(B.o), 1);
	tick(&B);
	assert_int_equal(outB.n, 1);
	assert_non_null(strstr(outB.log, "omemo-empty-sent jid=alice@example.org"));
	assert_non_null(strstr(outB.log, "reason=kex-completion"));
	/* to A's device alone: no <keys> for B's own account */
	assert_null(strstr(outB.st[0], b2dev));
	assert_false(take_empty(&outB, 0, &A));
	/* A knows the session is built: no more key exchange */
	assert_false(send2(&A, &B, "second"));
	tick(&B);
	assert_int_equal(outB.n, 1);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	/* while a real message from B carries a key for its other device */
	real = enc2(&B, &A, "a real one");
	assert_non_null(strstr(real, b2dev));
	free(real);
}

static void
test_no_completion_after_a_reply(void **state)
{
	trust_each_other();
	assert_true(send2(&A, &B, "first contact"));
	/* the reply (a job's result) completes the session itself */
	assert_false(send2(&B, &A, "the answer"));
	tick(&B);
	assert_int_equal(outB.n, 0);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	assert_false(send2(&A, &B, "next"));
}

static void
test_heartbeat_after_53_unanswered(void **state)
{
	char text[32];

	trust_each_other();
	assert_true(send2(&A, &B, "first contact"));
	tick(&B);
	assert_int_equal(outB.n, 1);
	assert_false(take_empty(&outB, 0, &A));
	/* A's next chain: messages 0..52 need no heartbeat */
	for (int i = 0; i < 53; i++) {
		snprintf(text, sizeof(text), "unanswered %d", i);
		assert_false(send2(&A, &B, text));
	}
	tick(&B);
	assert_int_equal(outB.n, 1);
	/* the 54th does */
	assert_false(send2(&A, &B, "the 54th"));
	assert_int_equal(omemo2_upkeep_owed(B.o), 1);
	tick(&B);
	assert_int_equal(outB.n, 2);
	assert_non_null(strstr(outB.log, "reason=heartbeat"));
	assert_false(take_empty(&outB, 1, &A));
	/* a 55th on the same chain, before A turned it: already answered */
	assert_false(send2(&A, &B, "the 55th"));
	tick(&B);
	assert_int_equal(outB.n, 2);
}

/* answers B's bundle fetch (the last IQ B sent) with A's bundle */
static void
answer_bundle_fetch(struct out *o, struct ep *owner)
{
	xmpp_stanza_t *q, *bun = bundle2_of(owner);
	char *bxml = NULL, xml[8192], dev[16];
	const char *id;
	size_t n = 0;

	assert_non_null(o->iq);
	q = parse(o->iq);
	id = xmpp_stanza_get_id(q);
	snprintf(dev, sizeof(dev), "%u", mw_omemo_device_id(owner->o));
	assert_string_equal(xmpp_stanza_get_name(q), "iq");
	assert_string_equal(xmpp_stanza_get_to(q), owner->jid);
	assert_non_null(strstr(o->iq, MW_OMEMO2_NODE_BUNDLES));
	assert_non_null(strstr(o->iq, dev));
	assert_int_equal(xmpp_stanza_to_text(bun, &bxml, &n), XMPP_EOK);
	snprintf(xml, sizeof(xml), "<iq type='result' id='%s' from='%s' "
	    "to='%s/res'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
	    "<items node='%s'><item id='%s'>%s</item></items></pubsub></iq>",
	    id, owner->jid, o->self->jid, MW_OMEMO2_NODE_BUNDLES, dev, bxml);
	xmpp_free(tl_x, bxml);
	xmpp_stanza_release(bun);
	xmpp_stanza_release(q);
	q = parse(xml);
	assert_int_equal(mw_omemo_handle_stanza(o->self->o, q), 1);
	xmpp_stanza_release(q);
}

static void
confirmed_session(void)
{
	trust_each_other();
	assert_true(send2(&A, &B, "first contact"));
	assert_false(send2(&B, &A, "reply"));
	assert_false(send2(&A, &B, "confirmed"));
	tick(&B);
	assert_int_equal(outB.n, 0);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
}

/* B loses its v4 sessions (a restored backup, a broken disk); A's next
 * message fails at B with want */
static void
lose_session_then_fail(const char *text, int want)
{
	struct mw_omemo_msg m;
	char *w;

	/* ... and the prekeys they were built from are past their grace */
	assert_int_equal(sqlite3_exec(B.db, "DELETE FROM omemo_sessions_v4; "
	    "DELETE FROM omemo_prekeys WHERE used IS NOT NULL", NULL, NULL, NULL),
	    SQLITE_OK);
	w = enc2(&A, &B, text);
	if (want != 0)
		assert_int_equal(dec_raw(&B, w, &m), want);
	else
		assert_int_not_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
}

static void
test_repair_after_lost_session(void **state)
{
	confirmed_session();
	lose_session_then_fail("lost", MW_OMEMO_E_NO_SESSION);
	assert_int_equal(omemo2_upkeep_owed(B.o), 1);
	tick(&B);
	assert_non_null(strstr(outB.log, "omemo-repair jid=alice@example.org"));
	assert_int_equal(outB.n, 0);
	answer_bundle_fetch(&outB, &A);
	assert_int_equal(outB.n, 1);		/* the empty message */
	assert_non_null(strstr(outB.log, "omemo-repaired jid=alice@example.org"));
	assert_true(take_empty(&outB, 0, &A));	/* with the key exchange */
	/* the new session carries A's next message */
	assert_false(send2(&A, &B, "after the repair"));
	assert_false(send2(&B, &A, "and back"));

	/* another failure at once: not repaired again (one per interval) */
	lose_session_then_fail("lost again", MW_OMEMO_E_NO_SESSION);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	assert_non_null(strstr(outB.log, "omemo-repair-skipped jid=alice@example.org"));
	tick(&B);
	assert_int_equal(outB.n, 1);
}

static void
test_no_repair_for_a_replay(void **state)
{
	struct mw_omemo_msg m;
	char *first;

	confirmed_session();
	first = enc2(&A, &B, "once");
	assert_int_equal(dec_raw(&B, first, &m), MW_OMEMO_OK);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	assert_int_equal(dec_raw(&B, first, &m), MW_OMEMO_E_DUPLICATE);
	mw_omemo_msg_free(&m);
	free(first);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	tick(&B);
	assert_int_equal(outB.n, 0);
}

static void
test_no_repair_for_an_unverified_device(void **state)
{
	struct mw_omemo_msg m;
	char fp[65], *w;

	/* A verified B; B knows A's device but never verified its key */
	introduce_ab(false);
	assert_true(send2(&A, &B, "first contact"));
	/* no completion to an unverified device either */
	tick(&B);
	assert_int_equal(outB.n, 0);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	/* A's key exchange again: its prekey is gone, the ratchet refuses */
	lose_session_then_fail("again", 0);
	assert_int_equal(omemo2_upkeep_owed(B.o), 0);
	tick(&B);
	assert_int_equal(outB.n, 0);
	assert_null(strstr(outB.log, "omemo-repair"));
	/* verified, the same failure is repaired */
	fp_of(&A, fp);
	assert_int_equal(mw_omemo_trust(B.o, A.jid, fp), MW_OMEMO_OK);
	w = enc2(&A, &B, "third");
	assert_int_not_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
	assert_int_equal(omemo2_upkeep_owed(B.o), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kex_completed_when_nothing_follows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_completion_after_a_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_after_53_unanswered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repair_after_lost_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_repair_for_a_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_repair_for_an_unverified_device, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
