/*
 * test_omemo_session.c: two in-process OMEMO endpoints (two SQLite
 * databases) doing X3DH and the double ratchet through the public API and
 * real stanzas, without a network: first contact both ways, long
 * conversations, restarts, key transport, the crash-safety transaction, and
 * trust (changed identities, revocation).
 */
#include "tests/unit/omemo_testlib.h"

static struct ep A, B;

static int
setup(void **state)
{
	tl_init();
	ep_new(&A, "alice@example.org", "a");
	ep_new(&B, "bob@example.org", "b");
	return 0;
}

static int
teardown(void **state)
{
	if (A.o != NULL)
		ep_close(&A);
	if (B.o != NULL)
		ep_close(&B);
	tl_fini();
	return 0;
}

static void
test_identity(void **state)
{
	char fp[65], g[72];
	uint32_t dev = mw_omemo_device_id(A.o);

	assert_true(dev > 0 && dev <= 0x7fffffff);
	assert_int_not_equal(dev, mw_omemo_device_id(B.o));
	fp_of(&A, fp);
	assert_int_equal(strlen(fp), 64);
	assert_int_equal(strspn(fp, "0123456789abcdef"), 64);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_prekeys"), 100);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_signed_prekeys"), 1);
	assert_int_equal(count(&A, "SELECT version FROM mw_schema WHERE component='omemo'"), 3);
	/* reopening keeps the identity */
	ep_close(&A);
	ep_open(&A);
	assert_int_equal(mw_omemo_device_id(A.o), dev);
	fp_of(&A, g);
	assert_string_equal(fp, g);
	/* another JID on the same database is refused */
	{
		struct mw_omemo *o2;

		assert_int_equal(mw_omemo_open(&o2, A.db, "mallory@example.org"),
		    MW_OMEMO_E_WRONG_JID);
		assert_int_equal(mw_omemo_open(&o2, A.db, NULL), MW_OMEMO_OK);
		assert_int_equal(mw_omemo_device_id(o2), dev);
		mw_omemo_close(o2);
		/* the same JID spelled otherwise is the same account; the
		 * identity answers as stanzas carry it, also where an older
		 * release stored it as typed */
		assert_int_equal(mw_omemo_open(&o2, A.db, "Alice@Example.ORG"), MW_OMEMO_OK);
		assert_string_equal(mw_omemo_jid(o2), "alice@example.org");
		mw_omemo_close(o2);
		assert_int_equal(sqlite3_exec(A.db, "UPDATE omemo_identity SET "
		    "jid = 'ALICE@example.org'", NULL, NULL, NULL), SQLITE_OK);
		assert_int_equal(mw_omemo_open(&o2, A.db, "alice@example.org"), MW_OMEMO_OK);
		assert_string_equal(mw_omemo_jid(o2), "alice@example.org");
		assert_int_equal(mw_omemo_device_id(o2), dev);
		mw_omemo_close(o2);
	}
}

static void
test_first_contact_a_to_b(void **state)
{
	struct mw_omemo_msg m;
	char *w;

	introduce(&A, &B);
	w = enc(&A, &B, "hello bob");
	assert_non_null(strstr(w, "prekey=\"true\""));
	assert_non_null(strstr(w, "urn:xmpp:eme:0"));
	assert_non_null(strstr(w, "urn:xmpp:hints"));
	assert_non_null(strstr(w, "<body>"));
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	assert_true(m.prekey);
	assert_string_equal(m.from, "alice@example.org");
	assert_int_equal(m.device, mw_omemo_device_id(A.o));
	assert_int_equal(m.trust, MW_OMEMO_TRUST_UNDECIDED);
	assert_string_equal((char *)m.plaintext, "hello bob");
	assert_true(mw_omemo_txn_pending(B.o));
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	assert_false(mw_omemo_txn_pending(B.o));
	mw_omemo_msg_free(&m);
	free(w);
	/* the used prekey was replaced by one with a new id, and is kept
	 * marked used for its grace period */
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_prekeys WHERE used IS NULL"), 100);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_prekeys WHERE used IS NOT NULL"), 1);
	assert_int_equal(count(&B, "SELECT max(id) FROM omemo_prekeys"), 101);
	/* B answers without fetching A's bundle (session from the prekey msg) */
	know(&B, &A);
	w = enc(&B, &A, "hello alice");
	assert_null(strstr(w, "prekey="));	/* omitted, never 'false' */
	dec_expect(&A, w, "hello alice");
	free(w);
	/* A got a reply: A's messages are now plain SignalMessages */
	w = enc(&A, &B, "second");
	assert_null(strstr(w, "prekey="));
	dec_expect(&B, w, "second");
	free(w);
	{
		enum mw_omemo_trust t;
		char fp[65], afp[65];

		assert_int_equal(mw_omemo_device_trust(B.o, A.jid,
		    mw_omemo_device_id(A.o), &t, fp), 0);
		assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
		fp_of(&A, afp);
		assert_string_equal(fp, afp);
	}
}

static void
test_first_contact_b_to_a(void **state)
{
	introduce(&B, &A);
	send_recv(&B, &A, "from bob first");
	know(&A, &B);
	send_recv(&A, &B, "reply");
	send_recv(&B, &A, "and again");
}

static void
test_both_initiate(void **state)
{
	char *w1, *w2;

	/* both sides build from bundles at the same time */
	introduce(&A, &B);
	introduce(&B, &A);
	w1 = enc(&A, &B, "a1");
	w2 = enc(&B, &A, "b1");
	dec_expect(&B, w1, "a1");
	dec_expect(&A, w2, "b1");
	free(w1);
	free(w2);
	send_recv(&A, &B, "a2");
	send_recv(&B, &A, "b2");
	send_recv(&A, &B, "a3");
}

static void
test_hundred_alternating_with_restart(void **state)
{
	char text[64];

	introduce(&A, &B);
	know(&B, &A);
	for (int i = 0; i < 100; i++) {
		snprintf(text, sizeof(text), "message %d", i);
		if (i % 2 == 0)
			send_recv(&A, &B, text);
		else
			send_recv(&B, &A, text);
		if (i == 37) {
			ep_close(&A);
			ep_open(&A);
		}
		if (i == 62) {
			ep_close(&B);
			ep_open(&B);
		}
	}
	/* several in a row one way, out of order */
	{
		char *w[3];

		for (int i = 0; i < 3; i++) {
			snprintf(text, sizeof(text), "burst %d", i);
			w[i] = enc(&A, &B, text);
		}
		dec_expect(&B, w[2], "burst 2");
		dec_expect(&B, w[0], "burst 0");
		dec_expect(&B, w[1], "burst 1");
		for (int i = 0; i < 3; i++)
			free(w[i]);
	}
}

static void
test_key_transport(void **state)
{
	xmpp_stanza_t *m = NULL;
	struct mw_omemo_msg msg;
	uint8_t before[32], after[32];
	char *w;

	introduce(&A, &B);
	know(&B, &A);
	send_recv(&A, &B, "establish");
	assert_int_equal(mw_omemo_encrypt_key_transport(B.o, tl_x, A.jid,
	    mw_omemo_device_id(A.o), &m), MW_OMEMO_OK);
	w = wire_text(&B, m);
	xmpp_stanza_release(m);
	assert_null(strstr(w, "<payload>"));
	db_digest(&A, before);
	assert_int_equal(dec_raw(&A, w, &msg), MW_OMEMO_DROPPED);
	assert_false(mw_omemo_txn_pending(A.o));
	mw_omemo_msg_free(&msg);
	db_digest(&A, after);
	assert_memory_not_equal(before, after, 32);	/* session advanced */
	/* the same key transport again is a duplicate */
	assert_int_equal(dec_raw(&A, w, &msg), MW_OMEMO_E_DUPLICATE);
	mw_omemo_msg_free(&msg);
	free(w);
	send_recv(&B, &A, "after key transport");
	send_recv(&A, &B, "still fine");
}

static void
test_commit_with_caller_rows_and_rollback(void **state)
{
	struct mw_omemo_msg m;
	uint8_t before[32], after[32];
	char *w;

	assert_int_equal(sqlite3_exec(B.db, "CREATE TABLE journal(t TEXT)",
	    NULL, NULL, NULL), SQLITE_OK);
	introduce(&A, &B);
	know(&B, &A);
	w = enc(&A, &B, "job 1");
	db_digest(&B, before);
	/* decrypt, add a journal row, roll back: as if it never arrived */
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	assert_int_equal(sqlite3_exec(B.db, "INSERT INTO journal VALUES('x')",
	    NULL, NULL, NULL), SQLITE_OK);
	/* while pending, nothing else may touch the store */
	{
		xmpp_stanza_t *s = NULL;
		struct mw_omemo_msg m2;

		assert_int_equal(mw_omemo_encrypt(B.o, tl_x, A.jid, NULL, 0,
		    "x", 1, &s), MW_OMEMO_E_TXN);
		assert_int_equal(dec_raw(&B, w, &m2), MW_OMEMO_E_TXN);
		mw_omemo_msg_free(&m2);
	}
	assert_int_equal(mw_omemo_rollback(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	db_digest(&B, after);
	assert_memory_equal(before, after, 32);
	assert_int_equal(count(&B, "SELECT count(*) FROM journal"), 0);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_prekeys WHERE id > 100"), 0);
	/* the same message decrypts again; commit this time */
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	assert_string_equal((char *)m.plaintext, "job 1");
	assert_int_equal(sqlite3_exec(B.db, "INSERT INTO journal VALUES('y')",
	    NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	assert_int_equal(count(&B, "SELECT count(*) FROM journal"), 1);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_E_TXN);
	free(w);
	/* a crash between decrypt and commit: the connection closes with the
	 * transaction open; after reopening the message decrypts again */
	w = enc(&A, &B, "job 2");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	ep_close(&B);	/* mw_omemo_close rolls back */
	ep_open(&B);
	dec_expect(&B, w, "job 2");
	free(w);
	send_recv(&B, &A, "reply");
	/* a caller transaction open: refused */
	assert_int_equal(sqlite3_exec(B.db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	w = enc(&A, &B, "job 3");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_E_TXN);
	mw_omemo_msg_free(&m);
	assert_int_equal(sqlite3_exec(B.db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	dec_expect(&B, w, "job 3");
	free(w);
}

static void
test_changed_identity_refused(void **state)
{
	struct ep B2;
	struct mw_omemo_msg m;
	uint8_t before[32], after[32];
	char fp2[65], *w, sql[128];
	uint32_t bdev = mw_omemo_device_id(B.o);

	introduce(&B, &A);
	know(&A, &B);
	send_recv(&B, &A, "hi from the real bob");
	send_recv(&A, &B, "hi bob");
	/* bob's database is wiped; the new identity reuses the device id */
	ep_new(&B2, "bob@example.org", "b2");
	ep_close(&B2);
	{
		sqlite3 *db;

		assert_int_equal(sqlite3_open(B2.path, &db), SQLITE_OK);
		snprintf(sql, sizeof(sql),
		    "UPDATE omemo_identity SET device_id = %u", bdev);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	ep_open(&B2);
	introduce(&B2, &A);
	w = enc(&B2, &A, "I am bob, trust me");
	db_digest(&A, before);
	assert_int_equal(dec_raw(&A, w, &m), MW_OMEMO_E_UNTRUSTED);
	fp_of(&B2, fp2);
	assert_string_equal(m.fp, fp2);	/* the refused key is named */
	mw_omemo_msg_free(&m);
	db_digest(&A, after);
	assert_memory_equal(before, after, 32);
	/* the old session still works */
	send_recv(&B, &A, "old bob still here");
	/* the owner verifies the new key: accepted and re-pinned */
	assert_int_equal(mw_omemo_trust(A.o, B2.jid, fp2), MW_OMEMO_OK);
	dec_expect(&A, w, "I am bob, trust me");
	free(w);
	{
		enum mw_omemo_trust t;
		char fp[65];

		assert_int_equal(mw_omemo_device_trust(A.o, B.jid, bdev, &t, fp), 0);
		assert_string_equal(fp, fp2);
		assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
	}
	ep_close(&B2);
}

static void
test_revoked_refused(void **state)
{
	struct mw_omemo_msg m;
	xmpp_stanza_t *s = NULL;
	char fp[65], *w;

	introduce(&A, &B);
	know(&B, &A);
	send_recv(&A, &B, "hello");
	fp_of(&A, fp);
	assert_int_equal(mw_omemo_distrust(B.o, A.jid, fp), MW_OMEMO_OK);
	w = enc(&A, &B, "after revocation");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_E_UNTRUSTED);
	mw_omemo_msg_free(&m);
	/* and B no longer encrypts to A */
	assert_int_equal(mw_omemo_encrypt(B.o, tl_x, A.jid, NULL, 0, "x", 1, &s),
	    MW_OMEMO_E_NO_DEVICES);
	/* trusted again: the held-back message decrypts */
	assert_int_equal(mw_omemo_trust(B.o, A.jid, fp), MW_OMEMO_OK);
	dec_expect(&B, w, "after revocation");
	free(w);
}

static void
test_undecided_not_encrypted_to(void **state)
{
	xmpp_stanza_t *s = NULL, *bun = bundle_of(&B);

	assert_int_equal(mw_omemo_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), bun), MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	learn_devlist(&A, &B);
	assert_int_equal(mw_omemo_encrypt(A.o, tl_x, B.jid, NULL, 0, "x", 1, &s),
	    MW_OMEMO_E_NO_DEVICES);
	{
		struct mw_omemo_device *d;
		size_t n;

		assert_int_equal(mw_omemo_devices(A.o, B.jid, &d, &n), 0);
		assert_int_equal(n, 1);
		assert_true(d[0].active && d[0].has_key && d[0].has_session);
		assert_int_equal(d[0].trust, MW_OMEMO_TRUST_UNDECIDED);
		free(d);
	}
}

static void
test_own_devices_included(void **state)
{
	struct ep A2;
	char *w;

	/* alice has a second device; messages to bob go to it as well */
	ep_new(&A2, "alice@example.org", "a2");
	introduce(&A, &B);
	introduce(&A, &A2);
	w = enc(&A, &B, "to bob and my other device");
	dec_expect(&B, w, "to bob and my other device");
	dec_expect(&A2, w, "to bob and my other device");
	free(w);
	ep_close(&A2);
}

static int
peek(struct ep *b, const char *wire, struct mw_omemo_msg *m)
{
	xmpp_stanza_t *s = parse(wire);
	int rc = mw_omemo_peek(b->o, s, m);

	xmpp_stanza_release(s);
	return rc;
}

/* The whole store of e, for "nothing was written". */
static int64_t
rows(struct ep *e)
{
	return count(e, "SELECT (SELECT count(*) FROM omemo_sessions) * 1000000 + "
	    "(SELECT count(*) FROM omemo_devices) * 10000 + (SELECT count(*) FROM "
	    "omemo_trust) * 1000 + (SELECT max(id) FROM omemo_prekeys)");
}

/* Issue 10: the sender's key and the cost of a message are known before
 * decrypting; with require_verified nothing from an unverified key reaches
 * the ratchet or the store. */
static void
test_peek_and_require_verified(void **state)
{
	struct mw_omemo_msg m;
	char *w, *w2, afp[65];
	int64_t before;

	introduce(&A, &B);
	fp_of(&A, afp);
	w = enc(&A, &B, "first");
	before = rows(&B);
	assert_int_equal(peek(&B, w, &m), 0);
	assert_true(m.prekey);
	assert_true(m.new_session);
	assert_string_equal(m.from, A.jid);
	assert_int_equal(m.device, mw_omemo_device_id(A.o));
	assert_string_equal(m.fp, afp);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_UNDECIDED);
	assert_null(m.plaintext);
	mw_omemo_msg_free(&m);
	assert_int_equal(rows(&B), before);	/* peek writes nothing */
	mw_omemo_set_require_verified(B.o, true);
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_E_UNTRUSTED);
	assert_string_equal(m.fp, afp);
	mw_omemo_msg_free(&m);
	assert_false(mw_omemo_txn_pending(B.o));
	assert_int_equal(rows(&B), before);	/* no device, session, trust row, no prekey used */
	/* verified: decrypted; a resend on the same session is no new session */
	assert_int_equal(mw_omemo_trust(B.o, A.jid, afp), 0);
	assert_int_equal(peek(&B, w, &m), 0);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_VERIFIED);
	assert_true(m.new_session);
	mw_omemo_msg_free(&m);
	dec_expect(&B, w, "first");
	w2 = enc(&A, &B, "second");
	assert_non_null(strstr(w2, "prekey=\"true\""));	/* no reply yet */
	assert_int_equal(peek(&B, w2, &m), 0);
	assert_true(m.prekey);
	assert_false(m.new_session);
	mw_omemo_msg_free(&m);
	dec_expect(&B, w2, "second");
	free(w);
	free(w2);
	/* key-transport from an unverified key is refused too */
	assert_int_equal(mw_omemo_distrust(B.o, A.jid, afp), 0);
	{
		xmpp_stanza_t *kt = NULL;

		assert_int_equal(mw_omemo_encrypt_key_transport(A.o, tl_x, B.jid,
		    mw_omemo_device_id(B.o), &kt), 0);
		w = wire_text(&A, kt);
		xmpp_stanza_release(kt);
	}
	before = rows(&B);
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_E_UNTRUSTED);
	mw_omemo_msg_free(&m);
	assert_int_equal(rows(&B), before);
	free(w);
}

/* Issue 10: one JID never gets more than MW_OMEMO_MAX_DEVICES_PER_JID device
 * rows, whatever it sends: fresh devices beyond that are refused
 * (MW_OMEMO_E_LIMIT), and a huge device list stores no more. */
static void
test_per_jid_caps(void **state)
{
	char name[32], *w, xml[64 * 40 + 128];
	struct mw_omemo_msg m;
	size_t n = 0;
	xmpp_stanza_t *l;

	for (int i = 0; i <= MW_OMEMO_MAX_DEVICES_PER_JID; i++) {
		struct ep d;
		int rc;

		snprintf(name, sizeof(name), "mal%d", i);
		ep_new(&d, "mallory@example.org", name);
		introduce(&d, &B);
		w = enc(&d, &B, "hi");
		rc = dec_raw(&B, w, &m);
		if (i < MW_OMEMO_MAX_DEVICES_PER_JID) {
			assert_int_equal(rc, MW_OMEMO_OK);
			assert_int_equal(mw_omemo_commit(B.o), 0);
		} else {
			assert_int_equal(rc, MW_OMEMO_E_LIMIT);
			assert_false(mw_omemo_txn_pending(B.o));
		}
		mw_omemo_msg_free(&m);
		free(w);
		ep_close(&d);
	}
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'mallory@example.org'"), MW_OMEMO_MAX_DEVICES_PER_JID);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_trust WHERE jid = "
	    "'mallory@example.org'"), MW_OMEMO_MAX_KEYS_PER_JID);
	/* a device list of 64 ids from another JID: at most the cap stored */
	n = (size_t)snprintf(xml, sizeof(xml), "<list xmlns='%s'>", MW_OMEMO_NS);
	for (int i = 1; i <= 64; i++)
		n += (size_t)snprintf(xml + n, sizeof(xml) - n, "<device id='%d'/>", i);
	snprintf(xml + n, sizeof(xml) - n, "</list>");
	l = parse(xml);
	assert_int_equal(mw_omemo_process_devicelist(B.o, "eve@example.org", l), 0);
	xmpp_stanza_release(l);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org'"), MW_OMEMO_MAX_DEVICES_PER_JID);
	/* the next list replaces the ones that hold nothing */
	l = parse("<list xmlns='" MW_OMEMO_NS "'><device id='999'/></list>");
	assert_int_equal(mw_omemo_process_devicelist(B.o, "eve@example.org", l), 0);
	xmpp_stanza_release(l);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org'"), 1);
}

static void
store_list(struct ep *e, bool v2, const char *jid, const char *devices)
{
	char xml[512];
	xmpp_stanza_t *l;

	snprintf(xml, sizeof(xml), v2 ? "<devices xmlns='%s'>%s</devices>" :
	    "<list xmlns='%s'>%s</list>", v2 ? MW_OMEMO2_NS : MW_OMEMO_NS, devices);
	l = parse(xml);
	assert_int_equal(v2 ? mw_omemo2_process_devicelist(e->o, jid, l) :
	    mw_omemo_process_devicelist(e->o, jid, l), 0);
	xmpp_stanza_release(l);
}

/* Issue 11: a fan-out stores each target's device list on every send; a
 * list that names the same devices as before (in any order, repeated)
 * writes nothing, any change is stored, and the two versions' lists are
 * told apart. */
static void
test_unchanged_devicelist_writes_nothing(void **state)
{
	const char *eve = "eve@example.org";
	int before;

	store_list(&B, false, eve, "<device id='5'/><device id='7'/>");
	before = sqlite3_total_changes(B.db);
	store_list(&B, false, eve, "<device id='7'/><device id='5'/><device id='7'/>");
	assert_int_equal(sqlite3_total_changes(B.db), before);
	/* the same ids in the OMEMO 2 list are news: active4 */
	store_list(&B, true, eve, "<device id='5'/><device id='7'/>");
	assert_true(sqlite3_total_changes(B.db) > before);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND active = 1 AND active4 = 1"), 2);
	before = sqlite3_total_changes(B.db);
	store_list(&B, true, eve, "<device id='7'/><device id='5'/>");
	assert_int_equal(sqlite3_total_changes(B.db), before);
	/* a device gone, one fewer, one more: each stored */
	store_list(&B, false, eve, "<device id='5'/>");
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND active = 1"), 1);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND device_id = 7 AND active = 0 AND active4 = 1"), 1);
	store_list(&B, false, eve, "<device id='5'/><device id='9'/>");
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND active = 1"), 2);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND device_id = 9 AND active = 1 AND active4 = 0"), 1);
	/* a subset of the marked ones with a stranger in it is a change too */
	store_list(&B, true, eve, "<device id='5'/><device id='11'/>");
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND active4 = 1"), 2);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND device_id = 11 AND active4 = 1"), 1);
	/* an empty list unmarks them all */
	store_list(&B, true, eve, "");
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_devices WHERE jid = "
	    "'eve@example.org' AND active4 = 1"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_a_to_b, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_b_to_a, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_initiate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hundred_alternating_with_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_transport, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_with_caller_rows_and_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_identity_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoked_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undecided_not_encrypted_to, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_devices_included, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peek_and_require_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_jid_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_devicelist_writes_nothing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
