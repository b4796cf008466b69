/*
 * test_omemo2.c: OMEMO 2 (urn:xmpp:omemo:2) beside legacy OMEMO in one
 * endpoint: version-4 sessions kept apart from legacy ones, first contact
 * either way, restarts, empty messages, one identity and one trust for
 * both versions, and the hostile inputs of issue 12 (SCE from/to, rpad,
 * kex without key exchange, oversized key lists, a device presenting
 * another identity on the other version, 33-byte keys in OMEMO 2), each
 * refused with its typed error and no store change.
 */
#include "tests/unit/omemo_testlib.h"
#include "omemo/omemo_int.h"

static struct ep A, B, C;

static int
setup(void **state)
{
	tl_init();
	ep_new(&A, "alice@example.org", "a");
	ep_new(&B, "bob@example.org", "b");
	ep_new(&C, "carol@example.org", "c");
	return 0;
}

static int
teardown(void **state)
{
	ep_close(&A);
	ep_close(&B);
	ep_close(&C);
	tl_fini();
	return 0;
}

/* a builds a version-4 session with b, knows b's OMEMO 2 list, trusts b */
static void
introduce2(struct ep *a, struct ep *b)
{
	xmpp_stanza_t *bun = bundle2_of(b);
	char fp[65];

	assert_int_equal(mw_omemo2_process_bundle(a->o, b->jid,
	    mw_omemo_device_id(b->o), bun), MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	learn_devlist2(a, b);
	fp_of(b, fp);
	assert_int_equal(mw_omemo_trust(a->o, b->jid, fp), MW_OMEMO_OK);
}

/* b knows a's OMEMO 2 list and trusts a (no session) */
static void
know2(struct ep *b, struct ep *a)
{
	char fp[65];

	learn_devlist2(b, a);
	fp_of(a, fp);
	assert_int_equal(mw_omemo_trust(b->o, a->jid, fp), MW_OMEMO_OK);
}

static void
dec2_expect(struct ep *b, const char *wire, const char *text, bool kex)
{
	struct mw_omemo_msg m;

	assert_int_equal(dec_raw(b, wire, &m), MW_OMEMO_OK);
	assert_true(m.omemo2);
	assert_int_equal(m.prekey, kex);
	assert_int_equal(m.len, strlen(text));
	assert_memory_equal(m.plaintext, text, m.len);
	assert_int_equal(mw_omemo_commit(b->o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
}

static void
send2(struct ep *a, struct ep *b, const char *text, bool kex)
{
	char *w = enc2(a, b, text);

	assert_non_null(strstr(w, "urn:xmpp:omemo:2"));
	assert_null(strstr(w, "eu.siacs.conversations.axolotl"));
	dec2_expect(b, w, text, kex);
	free(w);
}

static void
test_bundle_shape(void **state)
{
	xmpp_stanza_t *b = bundle2_of(&A), *e;
	uint8_t *raw = NULL, ed[32];
	size_t n = 0;
	char *t;

	assert_string_equal(xmpp_stanza_get_ns(b), MW_OMEMO2_NS);
	e = xmpp_stanza_get_child_by_name(b, "ik");
	assert_non_null(e);
	t = xmpp_stanza_get_text(e);
	assert_int_equal(omemo_b64_decode(t, &raw, &n, 64), 0);
	xmpp_free(tl_x, t);
	assert_int_equal(n, 32);
	/* the Ed25519 form of the one identity, sign bit 0 */
	assert_int_equal(omemo2_own_ik(A.o, ed), 0);
	assert_memory_equal(raw, ed, 32);
	assert_int_equal(raw[31] & 0x80, 0);
	free(raw);
	assert_non_null(xmpp_stanza_get_child_by_name(b, "spk"));
	assert_non_null(xmpp_stanza_get_child_by_name(b, "spks"));
	e = xmpp_stanza_get_child_by_name(b, "prekeys");
	assert_non_null(e);
	n = 0;
	for (e = xmpp_stanza_get_children(e); e != NULL; e = xmpp_stanza_get_next(e))
		n++;
	assert_int_equal(n, MW_OMEMO_PREKEYS);
	xmpp_stanza_release(b);
}

static void
test_first_contact_and_restart(void **state)
{
	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "hello over omemo 2", true);
	send2(&B, &A, "hi back", false);
	send2(&A, &B, "established", false);
	/* both stores persist the version-4 session across a restart */
	ep_close(&A);
	ep_close(&B);
	ep_open(&A);
	ep_open(&B);
	for (int i = 0; i < 10; i++) {
		send2(&A, &B, "a to b", false);
		send2(&B, &A, "b to a", false);
	}
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions_v4"), 1);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions"), 0);
}

static void
test_first_contact_b_to_a(void **state)
{
	introduce2(&B, &A);
	know2(&A, &B);
	send2(&B, &A, "first from b", true);
	send2(&A, &B, "reply from a", false);
}

/* one device, one session of each version, neither disturbing the other */
static void
test_both_versions_apart(void **state)
{
	/* each bundle is fetched after the other session's first message
	 * consumed its prekey: the shared pool never hands one out twice */
	introduce(&A, &B);
	know(&B, &A);
	send_recv(&A, &B, "legacy one");
	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "omemo 2 one", true);
	send_recv(&B, &A, "legacy back");
	send2(&B, &A, "omemo 2 back", false);
	for (int i = 0; i < 5; i++) {
		send2(&A, &B, "v2", false);
		send_recv(&A, &B, "v3");
	}
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions"), 1);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions_v4"), 1);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_sessions"), 1);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_sessions_v4"), 1);
}

/* a full-size plaintext fits (the envelope may exceed the plaintext
 * limit; the stanza limit bounds it); text whose escaping would not fit
 * in one stanza is refused when encrypting, nothing changed */
static void
test_size_limits(void **state)
{
	char *big = malloc(MW_OMEMO_MAX_PLAINTEXT + 1), *w;
	xmpp_stanza_t *m = NULL;
	uint8_t before[32], after[32];

	assert_non_null(big);
	introduce2(&A, &B);
	know2(&B, &A);
	memset(big, 'a', MW_OMEMO_MAX_PLAINTEXT);
	big[MW_OMEMO_MAX_PLAINTEXT] = '\0';
	w = enc2(&A, &B, big);
	dec2_expect(&B, w, big, true);
	free(w);
	memset(big, '<', 60 * 1024);	/* 4x once escaped */
	big[60 * 1024] = '\0';
	db_digest(&A, before);
	assert_int_equal(mw_omemo2_encrypt(A.o, tl_x, B.jid, NULL, 0, big,
	    strlen(big), &m), MW_OMEMO_E_OVERSIZE);
	assert_null(m);
	db_digest(&A, after);
	assert_memory_equal(before, after, 32);
	assert_int_equal(mw_omemo2_encrypt(A.o, tl_x, B.jid, NULL, 0, big,
	    MW_OMEMO_MAX_PLAINTEXT + 1, &m), MW_OMEMO_E_OVERSIZE);
	free(big);
	send2(&A, &B, "still fine", true);
}

/* the Ed25519 rendering OMEMO 2 clients show is accepted for the key */
static void
test_trust_either_rendering(void **state)
{
	char fp[65], ed[65], ik_hex[65], res[65], *w;
	uint8_t ik[32];
	struct mw_omemo_msg m;
	enum mw_omemo_trust t;
	bool seen;

	fp_of(&A, fp);
	assert_int_equal(mw_omemo_fp_ed25519(fp, ed), 0);
	assert_string_not_equal(fp, ed);
	/* it is exactly the <ik> of A's OMEMO 2 bundle */
	assert_int_equal(omemo2_own_ik(A.o, ik), 0);
	assert_int_equal(mw_omemo_fp_from_key(ik, 32, ik_hex), 0);
	assert_string_equal(ed, ik_hex);
	/* B has A's device pinned (bundle), not trusted: the Ed25519
	 * rendering resolves to it and verifies that one key */
	introduce2(&B, &A);
	assert_int_equal(mw_omemo_fp_resolve(B.o, A.jid, ed, res, &seen), 0);
	assert_true(seen);
	assert_string_equal(res, fp);
	assert_int_equal(mw_omemo_trust(B.o, A.jid, ed), MW_OMEMO_OK);
	assert_int_equal(mw_omemo_device_trust(B.o, A.jid,
	    mw_omemo_device_id(A.o), &t, res), MW_OMEMO_OK);
	assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
	assert_string_equal(res, fp);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_trust WHERE "
	    "jid = 'alice@example.org'"), 1);
	/* C verifies A by the Ed25519 rendering before ever seeing A: both
	 * readings are recorded, and A's first OMEMO 2 message is verified */
	assert_int_equal(mw_omemo_fp_resolve(C.o, A.jid, ed, res, &seen), 0);
	assert_false(seen);
	assert_int_equal(mw_omemo_trust(C.o, A.jid, ed), MW_OMEMO_OK);
	introduce2(&A, &C);
	learn_devlist2(&C, &A);
	w = enc2(&A, &C, "verified by the ed25519 rendering");
	assert_int_equal(dec_raw(&C, w, &m), MW_OMEMO_OK);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_VERIFIED);
	assert_string_equal(m.fp, fp);
	assert_int_equal(mw_omemo_commit(C.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
	/* and revoking by either rendering revokes that key */
	assert_int_equal(mw_omemo_distrust(B.o, A.jid, ed), MW_OMEMO_OK);
	assert_int_equal(mw_omemo_device_trust(B.o, A.jid,
	    mw_omemo_device_id(A.o), &t, res), MW_OMEMO_OK);
	assert_int_equal(t, MW_OMEMO_TRUST_REVOKED);
}

/* one device named: answered in the version it last wrote in */
static char *
answer(struct ep *a, struct ep *b)
{
	xmpp_stanza_t *m = NULL;
	uint32_t dev = mw_omemo_device_id(b->o);
	char *w;

	assert_int_equal(mw_omemo_encrypt(a->o, tl_x, b->jid, &dev, 1, "answer",
	    6, &m), MW_OMEMO_OK);
	w = wire_text(a, m);
	xmpp_stanza_release(m);
	return w;
}

static void
test_answer_in_version_of_request(void **state)
{
	char *w;

	introduce2(&B, &A);
	know2(&A, &B);
	send2(&B, &A, "request over omemo 2", true);
	w = answer(&A, &B);
	assert_non_null(strstr(w, MW_OMEMO2_NS));
	dec2_expect(&B, w, "answer", false);
	free(w);
	/* persisted: still so after a restart */
	ep_close(&A);
	ep_open(&A);
	w = answer(&A, &B);
	assert_non_null(strstr(w, MW_OMEMO2_NS));
	dec2_expect(&B, w, "answer", false);
	free(w);
	/* the device switches to legacy: so does the answer (the legacy
	 * bundle fetched now, after the first prekey was used) */
	introduce(&B, &A);
	know(&A, &B);
	send_recv(&B, &A, "request over legacy");
	w = answer(&A, &B);
	assert_null(strstr(w, MW_OMEMO2_NS));
	dec_expect(&B, w, "answer");
	free(w);
}

/* trust given once (one fingerprint) covers both versions */
static void
test_one_identity_one_trust(void **state)
{
	struct mw_omemo_msg m;
	char fp[65], *w;

	introduce2(&A, &B);
	learn_devlist2(&B, &A);		/* B does not trust A yet */
	w = enc2(&A, &B, "who am i");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	fp_of(&A, fp);
	assert_string_equal(m.fp, fp);	/* the legacy fingerprint */
	assert_int_equal(m.trust, MW_OMEMO_TRUST_UNDECIDED);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
	/* B trusts that one fingerprint: verified on OMEMO 2 */
	assert_int_equal(mw_omemo_trust(B.o, A.jid, fp), MW_OMEMO_OK);
	w = enc2(&A, &B, "now verified");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_VERIFIED);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
	/* and B's first legacy contact from A is verified too */
	introduce(&A, &B);
	learn_devlist(&B, &A);
	w = enc(&A, &B, "legacy now");
	assert_int_equal(dec_raw(&B, w, &m), MW_OMEMO_OK);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_VERIFIED);
	assert_false(m.omemo2);
	assert_int_equal(mw_omemo_commit(B.o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
	free(w);
}

static void
test_empty_message(void **state)
{
	xmpp_stanza_t *s = NULL;
	struct mw_omemo_msg m;
	char *w;

	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "first", true);
	/* B confirms the session with an empty message */
	assert_int_equal(mw_omemo2_encrypt_empty(B.o, tl_x, A.jid,
	    mw_omemo_device_id(A.o), &s), MW_OMEMO_OK);
	w = wire_text(&B, s);
	xmpp_stanza_release(s);
	assert_null(strstr(w, "<payload"));
	assert_int_equal(dec_raw(&A, w, &m), MW_OMEMO_DROPPED);
	assert_false(mw_omemo_txn_pending(A.o));
	mw_omemo_msg_free(&m);
	free(w);
	/* A no longer sends key exchanges */
	send2(&A, &B, "after the empty one", false);
}

/* A's v2 message to B, decrypted by B, replayed: unchanged store */
static void
expect_refused(struct ep *b, const char *wire, int err)
{
	struct mw_omemo_msg m;
	uint8_t before[32], after[32];

	db_digest(b, before);
	assert_int_equal(dec_raw(b, wire, &m), err);
	assert_false(mw_omemo_txn_pending(b->o));
	mw_omemo_msg_free(&m);
	db_digest(b, after);
	assert_memory_equal(before, after, 32);
}

static void
test_sce_to_mismatch(void **state)
{
	char *w, *bad;

	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "first", true);
	send2(&B, &A, "ack", false);	/* A stops sending key exchanges */
	w = enc2(&A, &B, "addressed to bob");
	/* the outer stanza is readdressed: the envelope's <to> differs */
	bad = replace(w, "to=\"bob@example.org\"", "to=\"bob@example.org.evil\"");
	expect_refused(&B, bad, MW_OMEMO_E_SCE);
	free(bad);
	/* the original still decrypts: nothing was consumed */
	dec2_expect(&B, w, "addressed to bob", false);
	free(w);
}

/* the SCE parser on its own: each rule */
#define ENV_OPEN "<envelope xmlns='urn:xmpp:sce:1'>"
#define BODY_HI "<content><body xmlns='jabber:client'>hi</body></content>"
static void
test_sce_rules(void **state)
{
	static const struct {
		const char *xml;
		int rc;
		const char *body;	/* when rc is 0; NULL: no <body> */
	} cases[] = {
		{ ENV_OPEN BODY_HI "<rpad>x</rpad><from jid='a@x'/><to jid='b@x'/></envelope>", 0, "hi" },
		{ ENV_OPEN BODY_HI "<rpad>x</rpad><from jid='a@x'/></envelope>", 0, "hi" },
		/* from another sender */
		{ ENV_OPEN BODY_HI "<rpad>x</rpad><from jid='mallory@x'/><to jid='b@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* to someone else */
		{ ENV_OPEN BODY_HI "<rpad>x</rpad><from jid='a@x'/><to jid='c@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* no rpad */
		{ ENV_OPEN BODY_HI "<from jid='a@x'/><to jid='b@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* two rpads, two froms, two tos, two times, two contents */
		{ ENV_OPEN "<content/><rpad/><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><rpad/><from jid='a@x'/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><rpad/><from jid='a@x'/><to jid='b@x'/><to jid='b@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><rpad/><from jid='a@x'/><time/><time/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><content/><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* no content; no from */
		{ ENV_OPEN "<rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><rpad/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* content without a body: nothing for the caller */
		{ ENV_OPEN "<content/><rpad/><from jid='a@x'/></envelope>", 0, NULL },
		/* wrong namespaces: the envelope, the body, an affix */
		{ "<envelope xmlns='urn:xmpp:sce:0'><content/><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content><body>hi</body></content><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN "<content/><rpad/><from xmlns='urn:other' jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* two bodies */
		{ ENV_OPEN "<content><body xmlns='jabber:client'>hi</body><body xmlns='jabber:client'>ho</body></content><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* namespaces by prefix; an affix of another namespace is
		 * skipped; body's own text only (CDATA counts, a child's
		 * text does not) */
		{ "<s:envelope xmlns:s='urn:xmpp:sce:1'><s:content><body xmlns='jabber:client'>h<b>zzz</b><![CDATA[i]]></body></s:content><s:rpad/><s:from jid='a@x'/><o:from xmlns:o='urn:other' jid='mallory@x'/></s:envelope>", 0, "hi" },
		/* the document's encoding declaration does not change UTF-8 */
		{ "<?xml version='1.0' encoding='ISO-8859-1'?>" ENV_OPEN "<content><body xmlns='jabber:client'>\xc3\xa9</body></content><rpad/><from jid='a@x'/></envelope>", 0, "\xc3\xa9" },
		/* no DTD, so no entity of the sender's */
		{ "<!DOCTYPE envelope [<!ENTITY e 'hi'>]>" ENV_OPEN "<content><body xmlns='jabber:client'>&e;</body></content><rpad/><from jid='a@x'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* not XML; not the only element */
		{ ENV_OPEN "<content>", MW_OMEMO_E_SCE, NULL },
		{ ENV_OPEN BODY_HI "<rpad/><from jid='a@x'/></envelope><envelope/>", MW_OMEMO_E_SCE, NULL },
		{ "<content xmlns='urn:xmpp:sce:1'/>", MW_OMEMO_E_SCE, NULL },
		/* JIDs as a client wrote them: ASCII case does not count
		 * (RFC 7622 case-folds what the server stamped) */
		{ ENV_OPEN BODY_HI "<rpad/><from jid='A@X'/><to jid='b@X'/></envelope>", 0, "hi" },
		{ ENV_OPEN BODY_HI "<rpad/><from jid='A@Y'/></envelope>", MW_OMEMO_E_SCE, NULL },
		/* what a later SCE may add is skipped: text, an unknown
		 * child, content in an affix, any <time> */
		{ ENV_OPEN "later" BODY_HI "<rpad>x<y/></rpad><from jid='a@x'/><future xmlns='urn:xmpp:sce:1'><z/></future><time stamp='?'/></envelope>", 0, "hi" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *body = NULL;
		size_t n = 0;
		int rc = omemo_sce_parse((const uint8_t *)cases[i].xml,
		    strlen(cases[i].xml), "a@x", "b@x", &body, &n);

		if (rc != cases[i].rc)
			fail_msg("case %zu: %d, want %d", i, rc, cases[i].rc);
		if (rc == 0 && cases[i].body == NULL)
			assert_null(body);
		if (rc == 0 && cases[i].body != NULL) {
			assert_non_null(body);
			assert_int_equal(n, strlen(cases[i].body));
			assert_string_equal((char *)body, cases[i].body);
		}
		if (rc != 0)
			assert_null(body);
		free(body);
	}
	/* nesting: expat keeps every open element, so depth is bounded
	 * (envelope and content, then 30 or 31 more levels) */
	for (int extra = 30; extra <= 31; extra++) {
		char xml[1024];
		size_t off = (size_t)sprintf(xml, ENV_OPEN "<content>");
		uint8_t *body = NULL;
		size_t n = 0;

		for (int i = 0; i < extra; i++)
			off += (size_t)sprintf(xml + off, "<x>");
		for (int i = 0; i < extra; i++)
			off += (size_t)sprintf(xml + off, "</x>");
		off += (size_t)sprintf(xml + off, "</content><rpad/><from jid='a@x'/></envelope>");
		assert_int_equal(omemo_sce_parse((uint8_t *)xml, off, "a@x", "b@x",
		    &body, &n), extra == 30 ? 0 : MW_OMEMO_E_SCE);
		assert_null(body);
	}
	/* a body past MW_OMEMO_MAX_PLAINTEXT in an envelope that fits */
	{
		size_t big = MW_OMEMO_MAX_PLAINTEXT + 1;
		char *xml = malloc(big + 256);
		uint8_t *body = (uint8_t *)"unset";
		size_t n = 0, off;

		assert_non_null(xml);
		off = (size_t)sprintf(xml, ENV_OPEN "<content><body xmlns='jabber:client'>");
		memset(xml + off, 'a', big);
		off += big;
		off += (size_t)sprintf(xml + off, "</body></content><rpad/><from jid='a@x'/></envelope>");
		assert_int_equal(omemo_sce_parse((uint8_t *)xml, off, "a@x",
		    "b@x", &body, &n), MW_OMEMO_E_OVERSIZE);
		assert_null(body);
		free(xml);
	}
	/* build -> parse round trip, and text that XML cannot carry */
	{
		char *xml = NULL;
		size_t xl = 0, n = 0;
		uint8_t *body = NULL;
		/* CR survives (a reference, not end-of-line normalized) */
		const char *t = "<&>\"' \xc3\xbc" "n\xc3\xaf" "code\n\ttab\r\nend\r";

		assert_int_equal(omemo_sce_build("a@x", "b@x",
		    (const uint8_t *)t, strlen(t), &xml, &xl), 0);
		assert_int_equal(xl, strlen(xml));
		assert_non_null(strstr(xml, "<rpad>"));
		assert_non_null(strstr(xml, "<time stamp='"));
		assert_int_equal(omemo_sce_parse((uint8_t *)xml, xl,
		    "a@x", "b@x", &body, &n), 0);
		assert_int_equal(n, strlen(t));
		assert_string_equal((char *)body, t);
		free(body);
		free(xml);
		/* a body of 120 KiB: expat's memory grows past its first
		 * block (sce.c's arena) */
		{
			size_t big = 120 * 1024;
			uint8_t *t2 = malloc(big);

			assert_non_null(t2);
			for (size_t i = 0; i < big; i++)
				t2[i] = (uint8_t)(i % 97 == 0 ? '&' : 'a' + i % 26);
			assert_int_equal(omemo_sce_build("a@x", "b@x", t2, big,
			    &xml, &xl), 0);
			assert_int_equal(omemo_sce_parse((uint8_t *)xml, xl,
			    "a@x", "b@x", &body, &n), 0);
			assert_int_equal(n, big);
			assert_memory_equal(body, t2, big);
			free(body);
			free(xml);
			free(t2);
		}
		/* a JID with a quote is escaped in its attribute */
		assert_int_equal(omemo_sce_build("o'neil@x", "b@x",
		    (const uint8_t *)"", 0, &xml, &xl), 0);
		assert_int_equal(omemo_sce_parse((uint8_t *)xml, xl,
		    "o'neil@x", "b@x", &body, &n), 0);
		assert_non_null(body);
		assert_int_equal(n, 0);
		free(body);
		free(xml);
		assert_int_equal(omemo_sce_build("a@x", "b@x",
		    (const uint8_t *)"a\x01", 2, &xml, &xl), MW_OMEMO_E_INVAL);
		assert_int_equal(omemo_sce_build("a@x", "b@x",
		    (const uint8_t *)"\xc0\xaf", 2, &xml, &xl), MW_OMEMO_E_INVAL);
		/* past the first eight bytes too (checked a word at a time) */
		{
			static const char *bad[] = {
				"0123456789\x01" "abcdef", "0123456789abcdef\x1f",
				"01234567\xed\xa0\x80" "89abcdef", "abcdefghijk\xff",
			};

			/* and NUL, short and past the first word, both ways */
			static const char nul_short[] = "ab\0cd";
			static const char nul_long[] = "0123456789\0abcdef";
			static const char env_nul[] = ENV_OPEN "<content><body "
			    "xmlns='jabber:client'>h\0i</body></content><rpad/>"
			    "<from jid='a@x'/></envelope>";
			uint8_t *nb = NULL;
			size_t nn = 0;

			for (size_t i = 0; i < 4; i++)
				assert_int_equal(omemo_sce_build("a@x", "b@x",
				    (const uint8_t *)bad[i], strlen(bad[i]), &xml,
				    &xl), MW_OMEMO_E_INVAL);
			assert_int_equal(omemo_sce_build("a@x", "b@x",
			    (const uint8_t *)nul_short, sizeof(nul_short) - 1,
			    &xml, &xl), MW_OMEMO_E_INVAL);
			assert_int_equal(omemo_sce_build("a@x", "b@x",
			    (const uint8_t *)nul_long, sizeof(nul_long) - 1,
			    &xml, &xl), MW_OMEMO_E_INVAL);
			assert_int_equal(omemo_sce_parse((const uint8_t *)env_nul,
			    sizeof(env_nul) - 1, "a@x", "b@x", &nb, &nn),
			    MW_OMEMO_E_SCE);
			assert_null(nb);
		}
	}
}

/* kex='true' on a plain message, and a key exchange without kex */
static void
test_kex_mismatch(void **state)
{
	char *first, *plain, *bad;

	introduce2(&A, &B);
	know2(&B, &A);
	first = enc2(&A, &B, "first");
	assert_non_null(strstr(first, "kex=\"true\""));
	bad = replace(first, " kex=\"true\"", "");
	expect_refused(&B, bad, MW_OMEMO_E_BAD_MESSAGE);
	free(bad);
	bad = replace(first, "kex=\"true\"", "kex=\"yes\"");
	expect_refused(&B, bad, MW_OMEMO_E_MALFORMED);
	free(bad);
	dec2_expect(&B, first, "first", true);
	send2(&B, &A, "reply", false);
	plain = enc2(&A, &B, "plain");
	assert_null(strstr(plain, "kex="));
	bad = replace(plain, "<key rid", "<key kex=\"true\" rid");
	expect_refused(&B, bad, MW_OMEMO_E_BAD_MESSAGE);
	free(bad);
	dec2_expect(&B, plain, "plain", false);
	free(first);
	free(plain);
}

static void
test_oversized_key_list(void **state)
{
	char *w, *keys, *bad, *k, *big;
	const char *open;
	size_t kl, n = 1100;

	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "first", true);
	send2(&B, &A, "ack", false);	/* A stops sending key exchanges */
	w = enc2(&A, &B, "many keys");
	open = strstr(w, "<key ");
	assert_non_null(open);
	k = between(open, "", "</key>");
	kl = strlen(k) + strlen("</key>");
	big = malloc(n * kl + 1);
	assert_non_null(big);
	big[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(big, k);
		strcat(big, "</key>");
	}
	keys = malloc(strlen(k) + 8);
	assert_non_null(keys);
	sprintf(keys, "%s</key>", k);
	bad = replace(w, keys, big);
	expect_refused(&B, bad, MW_OMEMO_E_OVERSIZE);
	free(bad);
	free(keys);
	free(big);
	free(k);
	dec2_expect(&B, w, "many keys", false);
	free(w);
}

static void
test_tampered_payload(void **state)
{
	char *w, *pl, *bad, *mod;

	introduce2(&A, &B);
	know2(&B, &A);
	send2(&A, &B, "first", true);
	send2(&B, &A, "ack", false);	/* A stops sending key exchanges */
	w = enc2(&A, &B, "integrity");
	pl = between(w, "<payload>", "</payload>");
	mod = strdup(pl);
	mod[0] = mod[0] == 'A' ? 'B' : 'A';
	bad = replace(w, pl, mod);
	expect_refused(&B, bad, MW_OMEMO_E_BAD_TAG);
	free(bad);
	dec2_expect(&B, w, "integrity", false);
	free(mod);
	free(pl);
	free(w);
}

/*
 * B's device is known (legacy, pinned).  An OMEMO 2 bundle for the same
 * device id carrying carol's identity is refused: never re-pinned, never
 * silently trusted, no session.
 */
static void
test_other_identity_on_other_version(void **state)
{
	xmpp_stanza_t *cb = bundle2_of(&C);
	uint8_t before[32], after[32];
	enum mw_omemo_trust t;
	char fp[65], bfp[65];

	introduce(&A, &B);
	send_recv(&A, &B, "pinned");
	db_digest(&A, before);
	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), cb), MW_OMEMO_E_UNTRUSTED);
	xmpp_stanza_release(cb);
	db_digest(&A, after);
	assert_memory_equal(before, after, 32);
	assert_int_equal(mw_omemo_device_trust(A.o, B.jid,
	    mw_omemo_device_id(B.o), &t, fp), MW_OMEMO_OK);
	fp_of(&B, bfp);
	assert_string_equal(fp, bfp);
	assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions_v4"), 0);
	/* the genuine OMEMO 2 bundle of B is accepted: same identity */
	cb = bundle2_of(&B);
	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), cb), MW_OMEMO_OK);
	xmpp_stanza_release(cb);
}

/* OMEMO 2 keys have exactly 32 bytes: a legacy 33-byte form is refused */
static void
test_strict_key_lengths(void **state)
{
	xmpp_stanza_t *b = bundle2_of(&B), *ik, *t;
	uint8_t key33[33], before[32], after[32];
	char *b64, *s;

	ik = xmpp_stanza_get_child_by_name(b, "ik");
	assert_int_equal(omemo_own_identity_pub(B.o, key33), 0);
	b64 = omemo_b64_encode(key33, 33);
	t = xmpp_stanza_get_children(ik);
	assert_int_equal(xmpp_stanza_set_text(t, b64), XMPP_EOK);
	free(b64);
	db_digest(&A, before);
	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), b), MW_OMEMO_E_BUNDLE);
	db_digest(&A, after);
	assert_memory_equal(before, after, 32);
	xmpp_stanza_release(b);
	/* a legacy bundle is not an OMEMO 2 bundle, and vice versa */
	b = bundle_of(&B);
	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), b), MW_OMEMO_E_BUNDLE);
	xmpp_stanza_release(b);
	b = bundle2_of(&B);
	assert_int_equal(mw_omemo_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), b), MW_OMEMO_E_BUNDLE);
	xmpp_stanza_release(b);
	/* a bad OMEMO 2 signature */
	b = bundle2_of(&B);
	s = xmpp_stanza_get_text(xmpp_stanza_get_child_by_name(b, "spks"));
	s[5] = s[5] == 'A' ? 'B' : 'A';
	assert_int_equal(xmpp_stanza_set_text(xmpp_stanza_get_children(
	    xmpp_stanza_get_child_by_name(b, "spks")), s), XMPP_EOK);
	xmpp_free(tl_x, s);
	assert_int_equal(mw_omemo2_process_bundle(A.o, B.jid,
	    mw_omemo_device_id(B.o), b), MW_OMEMO_E_BUNDLE_SIG);
	xmpp_stanza_release(b);
}

/* the three protobuf shapes */
static void
test_protobuf_shapes(void **state)
{
	/* OMEMOMessage n=1 pn=0 dh_pub=32 bytes */
	uint8_t msg[2 + 2 + 2 + 32], auth[2 + 16 + 2 + sizeof(msg)];
	uint8_t kex[2 + 2 + 2 + 32 + 2 + 32 + 2 + sizeof(auth)];
	size_t o = 0;

	msg[o++] = 0x08; msg[o++] = 1;
	msg[o++] = 0x10; msg[o++] = 0;
	msg[o++] = 0x1a; msg[o++] = 32;
	memset(msg + o, 9, 32);
	assert_true(omemo2_message_ok(msg, sizeof(msg)));
	assert_false(omemo2_message_ok(msg, sizeof(msg) - 1));
	assert_false(omemo2_message_ok(msg + 2, sizeof(msg) - 2));	/* no n */
	o = 0;
	auth[o++] = 0x0a; auth[o++] = 16;
	memset(auth + o, 1, 16);
	o += 16;
	auth[o++] = 0x12; auth[o++] = sizeof(msg);
	memcpy(auth + o, msg, sizeof(msg));
	assert_true(omemo2_authmsg_ok(auth, sizeof(auth)));
	assert_false(omemo2_kex_ok(auth, sizeof(auth)));
	o = 0;
	kex[o++] = 0x08; kex[o++] = 5;
	kex[o++] = 0x10; kex[o++] = 7;
	kex[o++] = 0x1a; kex[o++] = 32;
	memset(kex + o, 2, 32);
	o += 32;
	kex[o++] = 0x22; kex[o++] = 32;
	memset(kex + o, 3, 32);
	o += 32;
	kex[o++] = 0x2a; kex[o++] = sizeof(auth);
	memcpy(kex + o, auth, sizeof(auth));
	assert_true(omemo2_kex_ok(kex, sizeof(kex)));
	assert_false(omemo2_authmsg_ok(kex, sizeof(kex)));
	/* a 33-byte ik */
	kex[5] = 33;
	assert_false(omemo2_kex_ok(kex, sizeof(kex)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bundle_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_b_to_a, setup, teardown),
		cmocka_unit_test_setup_teardown(test_both_versions_apart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_identity_one_trust, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_in_version_of_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trust_either_rendering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sce_to_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sce_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kex_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_key_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_identity_on_other_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strict_key_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protobuf_shapes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
