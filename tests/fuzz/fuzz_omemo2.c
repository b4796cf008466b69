/*
 * fuzz_omemo2: the OMEMO 2 parse path (issue 12), four ways, chosen by the
 * low two bits of the first byte:
 *   0 stanza: XML text with tokens %R (agent device), %S (alice device),
 *     %F (alice's full JID), %A (agent's bare JID), %K %P (key and payload
 *     base64 of alice's first message M1, a key exchange) and %k %p (of M2,
 *     a plain OMEMOAuthenticatedMessage), fed to mw_omemo_decrypt; bit 2
 *     picks the agent's store before M1 (state A) or after the exchange
 *     (state B);
 *   1 SCE envelope bytes to omemo_sce_parse (from alice, to the agent);
 *   2 protobuf bytes to proto.c's shape checks, and what passes them to
 *     libomemo-c's version-4 deserializers (bit 2: key exchange, else
 *     authenticated message);
 *   3 a <bundle xmlns='urn:xmpp:omemo:2'> text to mw_omemo2_process_bundle.
 *
 * Invariants beyond "no crash": an error leaves no transaction and the
 * store byte-identical; MW_OMEMO_OK leaves the transaction open with a
 * NUL-terminated plaintext and a rollback restores the store; a parsed SCE
 * body holds no NUL; a protobuf that passes the shape check and
 * deserializes carries a 32-byte key form only.
 * MW_FUZZ_DUMP=DIR writes the seeds (tests/fuzz/corpus/fuzz_omemo2).
 */
#include <string.h>
#include <sys/stat.h>

#include "omemo/omemo_int.h"
#include "runtime/job/job.h"
#include "tests/fuzz/omemo_fuzzlib.h"

#define AGENT "agent@fuzz.example"
#define ALICE "alice@fuzz.example"
#define ALICE_FULL ALICE "/res"

static struct fz_ep agent, alice;
static sqlite3 *snap[2];
static int cur = -1;
static char rid_s[16], sid_s[16];
static char *key_b64[2], *pl_b64[2];

static void
capture(xmpp_stanza_t *msg, int i)
{
	xmpp_stanza_t *enc = xmpp_stanza_get_child_by_name_and_ns(msg,
	    "encrypted", MW_OMEMO2_NS);
	xmpp_stanza_t *hdr = xmpp_stanza_get_child_by_name(enc, "header");
	xmpp_stanza_t *keys = xmpp_stanza_get_child_by_name(hdr, "keys");
	xmpp_stanza_t *k = xmpp_stanza_get_child_by_name(keys, "key");
	xmpp_stanza_t *pl = xmpp_stanza_get_child_by_name(enc, "payload");
	char *t;

	FUZZ_CHECK(k != NULL && pl != NULL);
	t = xmpp_stanza_get_text(k);
	key_b64[i] = strdup(t);
	xmpp_free(fz_x, t);
	t = xmpp_stanza_get_text(pl);
	pl_b64[i] = strdup(t);
	xmpp_free(fz_x, t);
	FUZZ_CHECK(key_b64[i] != NULL && pl_b64[i] != NULL);
}

static xmpp_stanza_t *
encrypt_from(struct fz_ep *from, struct fz_ep *to, const char *pt)
{
	xmpp_stanza_t *s = NULL;
	char full[128];

	FUZZ_CHECK(mw_omemo2_encrypt(from->o, fz_x, to->jid, NULL, 0, pt,
	    strlen(pt), &s) == MW_OMEMO_OK);
	snprintf(full, sizeof(full), "%s/res", from->jid);
	xmpp_stanza_set_from(s, full);
	return s;
}

/* a knows b: OMEMO 2 bundle (session), device list, trust */
static void
learn(struct fz_ep *a, struct fz_ep *b, bool session)
{
	char xml[256], fp[MW_OMEMO_FP_HEXLEN + 1];
	xmpp_stanza_t *bun = NULL, *l;

	if (session) {
		FUZZ_CHECK(mw_omemo2_bundle_element(b->o, fz_x, &bun) == 0);
		FUZZ_CHECK(mw_omemo2_process_bundle(a->o, b->jid,
		    mw_omemo_device_id(b->o), bun) == MW_OMEMO_OK);
		xmpp_stanza_release(bun);
	}
	snprintf(xml, sizeof(xml), "<devices xmlns='%s'><device id='%u'/>"
	    "</devices>", MW_OMEMO2_NS, mw_omemo_device_id(b->o));
	l = xmpp_stanza_new_from_string(fz_x, xml);
	FUZZ_CHECK(mw_omemo2_process_devicelist(a->o, b->jid, l) == 0);
	xmpp_stanza_release(l);
	FUZZ_CHECK(mw_omemo_own_fingerprint(b->o, fp) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_trust(a->o, b->jid, fp) == MW_OMEMO_OK);
}

static void
dump(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FUZZ_CHECK((f = fopen(path, "wb")) != NULL);
	FUZZ_CHECK(fwrite(p, 1, n, f) == n);
	fclose(f);
}

static void
dump_text(const char *dir, const char *name, uint8_t mode, const char *t)
{
	size_t n = strlen(t);
	uint8_t *b = malloc(n + 1);

	FUZZ_CHECK(b != NULL);
	b[0] = mode;
	memcpy(b + 1, t, n);
	dump(dir, name, b, n + 1);
	free(b);
}

static void
dump_seeds(const char *dir, xmpp_stanza_t *m1)
{
	xmpp_stanza_t *bun = NULL;
	uint8_t *raw = NULL;
	size_t n = 0;
	char *t = NULL;

	mkdir(dir, 0755);
	dump_text(dir, "stanza-kex.xml", 0, "<message from='%F' to='" AGENT
	    "' type='chat'><encrypted xmlns='" MW_OMEMO2_NS "'><header "
	    "sid='%S'><keys jid='" AGENT "'><key rid='%R' kex='true'>%K</key>"
	    "</keys><keys jid='" ALICE "'><key rid='77'>AAAA</key></keys>"
	    "</header><payload>%P</payload></encrypted></message>");
	dump_text(dir, "stanza-plain.xml", 4, "<message from='%F' to='" AGENT
	    "'><encrypted xmlns='" MW_OMEMO2_NS "'><header sid='%S'><keys "
	    "jid='" AGENT "'><key rid='%R'>%k</key></keys></header><payload>"
	    "%p</payload></encrypted></message>");
	dump_text(dir, "stanza-empty.xml", 4, "<message from='%F'><encrypted "
	    "xmlns='" MW_OMEMO2_NS "'><header sid='%S'><keys jid='" AGENT
	    "'><key rid='%R'>%k</key></keys></header></encrypted></message>");
	dump_text(dir, "sce.xml", 1, "<envelope xmlns='urn:xmpp:sce:1'>"
	    "<content><body xmlns='jabber:client'>return 1</body></content>"
	    "<rpad>abc</rpad><from jid='" ALICE "'/><to jid='" AGENT "'/>"
	    "<time stamp='2026-01-01T00:00:00Z'/></envelope>");
	/* prefixes, CDATA, a foreign affix, references; a DTD (refused) */
	dump_text(dir, "sce-ns.xml", 1, "<?xml version='1.0'?><s:envelope "
	    "xmlns:s='urn:xmpp:sce:1'><s:content><body xmlns='jabber:client'>"
	    "a&amp;b&#13;<![CDATA[<c>]]><x>skip</x></body></s:content>"
	    "<s:rpad>x</s:rpad><s:from jid='" ALICE "'/><o:from xmlns:o='urn:o'"
	    " jid='m@x'/></s:envelope>");
	dump_text(dir, "sce-dtd.xml", 1, "<!DOCTYPE envelope [<!ENTITY e "
	    "'x'>]><envelope xmlns='urn:xmpp:sce:1'><content><body "
	    "xmlns='jabber:client'>&e;</body></content><rpad/><from jid='"
	    ALICE "'/></envelope>");
	FUZZ_CHECK(mw_b64_decode(key_b64[0], strlen(key_b64[0]), &raw, &n) == 0);
	{
		uint8_t *b = malloc(n + 1);

		FUZZ_CHECK(b != NULL);
		b[0] = 2 | 4;
		memcpy(b + 1, raw, n);
		dump(dir, "proto-kex", b, n + 1);
		free(b);
	}
	free(raw);
	FUZZ_CHECK(mw_b64_decode(key_b64[1], strlen(key_b64[1]), &raw, &n) == 0);
	{
		uint8_t *b = malloc(n + 1);

		FUZZ_CHECK(b != NULL);
		b[0] = 2;
		memcpy(b + 1, raw, n);
		dump(dir, "proto-auth", b, n + 1);
		free(b);
	}
	free(raw);
	FUZZ_CHECK(mw_omemo2_bundle_element(alice.o, fz_x, &bun) == 0);
	FUZZ_CHECK(xmpp_stanza_to_text(bun, &t, &n) == XMPP_EOK);
	dump_text(dir, "bundle.xml", 3, t);
	xmpp_free(fz_x, t);
	xmpp_stanza_release(bun);
	(void)m1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct mw_omemo_msg msg;
	xmpp_stanza_t *m1, *m2, *reply;
	const char *dir;

	fz_x = xmpp_ctx_new(NULL, NULL);
	fz_ep_open(&agent, AGENT);
	fz_ep_open(&alice, ALICE);
	snprintf(rid_s, sizeof(rid_s), "%u", mw_omemo_device_id(agent.o));
	snprintf(sid_s, sizeof(sid_s), "%u", mw_omemo_device_id(alice.o));
	learn(&alice, &agent, true);
	learn(&agent, &alice, false);
	m1 = encrypt_from(&alice, &agent, "return 'hello from M1'");
	capture(m1, 0);
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(sqlite3_open(":memory:", &snap[i]) == SQLITE_OK);
	fz_copy_db(snap[0], agent.db);
	FUZZ_CHECK(mw_omemo_decrypt(agent.o, m1, &msg) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_commit(agent.o) == MW_OMEMO_OK);
	mw_omemo_msg_free(&msg);
	reply = encrypt_from(&agent, &alice, "ok");
	FUZZ_CHECK(mw_omemo_decrypt(alice.o, reply, &msg) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_commit(alice.o) == MW_OMEMO_OK);
	mw_omemo_msg_free(&msg);
	xmpp_stanza_release(reply);
	m2 = encrypt_from(&alice, &agent, "return 'hello from M2'");
	capture(m2, 1);
	fz_copy_db(snap[1], agent.db);
	cur = 1;
	if ((dir = getenv("MW_FUZZ_DUMP")) != NULL)
		dump_seeds(dir, m1);
	xmpp_stanza_release(m1);
	xmpp_stanza_release(m2);
	return 0;
}

static const char *
subst(char c)
{
	switch (c) {
	case 'R': return rid_s;
	case 'S': return sid_s;
	case 'F': return ALICE_FULL;
	case 'A': return AGENT;
	case 'K': return key_b64[0];
	case 'P': return pl_b64[0];
	case 'k': return key_b64[1];
	case 'p': return pl_b64[1];
	}
	return NULL;
}

static void
use_state(int st)
{
	if (cur != st) {
		fz_copy_db(agent.db, snap[st]);
		cur = st;
	}
}

static void
one_stanza(const uint8_t *p, size_t n, int st)
{
	uint8_t before[32], after[32];
	struct mw_omemo_msg msg;
	char *text = fz_expand(p, n, subst);
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(fz_x, text);
	int r;

	free(text);
	if (s == NULL)
		return;
	use_state(st);
	fz_store_digest(agent.db, before);
	r = mw_omemo_decrypt(agent.o, s, &msg);
	if (getenv("MW_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "decrypt: %d %s\n", r, r < 0 ?
		    mw_omemo_strerror(r) : "");
	if (r == MW_OMEMO_OK) {
		FUZZ_CHECK(mw_omemo_txn_pending(agent.o));
		FUZZ_CHECK(msg.omemo2 && msg.plaintext != NULL &&
		    msg.len <= MW_OMEMO_MAX_PLAINTEXT &&
		    msg.plaintext[msg.len] == '\0');
		FUZZ_CHECK(msg.from != NULL && strchr(msg.from, '/') == NULL);
		FUZZ_CHECK(mw_omemo_rollback(agent.o) == MW_OMEMO_OK);
		fz_no_txn(&agent);
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	} else if (r == MW_OMEMO_DROPPED) {
		fz_no_txn(&agent);
		cur = -1;
	} else {
		FUZZ_CHECK(r < 0);
		fz_no_txn(&agent);
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	}
	mw_omemo_msg_free(&msg);
	xmpp_stanza_release(s);
}

static void
one_sce(const uint8_t *p, size_t n)
{
	uint8_t *copy = fz_copy(p, n), *body = NULL;
	size_t bl = 0;
	int r = omemo_sce_parse(copy, n, ALICE, AGENT, &body, &bl);

	if (r == 0 && body != NULL)
		FUZZ_CHECK(body[bl] == '\0' && strlen((char *)body) == bl);
	else
		FUZZ_CHECK(body == NULL);
	free(body);
	free(copy);
}

static void
one_proto(const uint8_t *p, size_t n, bool kex)
{
	uint8_t *copy = fz_copy(p, n);

	if (kex) {
		pre_key_signal_message *pm = NULL;

		if (omemo2_kex_ok(copy, n) &&
		    pre_key_signal_message_deserialize_omemo(&pm, copy, n, 1,
		    agent.o->sg) == 0) {
			signal_buffer *ik = NULL;

			FUZZ_CHECK(ec_public_key_serialize(&ik,
			    pre_key_signal_message_get_identity_key(pm)) == 0);
			FUZZ_CHECK(signal_buffer_len(ik) == 33);
			signal_buffer_free(ik);
			SIGNAL_UNREF(pm);
		}
	} else {
		signal_message *sm = NULL;

		(void)omemo2_message_ok(copy, n);
		if (omemo2_authmsg_ok(copy, n) &&
		    signal_message_deserialize_omemo(&sm, copy, n,
		    agent.o->sg) == 0)
			SIGNAL_UNREF(sm);
	}
	free(copy);
}

static void
one_bundle(const uint8_t *p, size_t n)
{
	uint8_t before[32], after[32];
	char *text = fz_cstr(p, n);
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(fz_x, text);
	int r;

	free(text);
	if (s == NULL)
		return;
	use_state(0);
	fz_store_digest(agent.db, before);
	r = mw_omemo2_process_bundle(agent.o, "carol@fuzz.example", 4242, s);
	if (getenv("MW_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "bundle: %d\n", r);
	fz_no_txn(&agent);
	if (r == MW_OMEMO_OK)
		cur = -1;
	else {
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	}
	xmpp_stanza_release(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t mode;

	if (size == 0)
		return 0;
	mode = data[0];
	data++;
	size--;
	switch (mode & 3) {
	case 0:
		one_stanza(data, size, (mode >> 2) & 1);
		break;
	case 1:
		one_sce(data, size);
		break;
	case 2:
		one_proto(data, size, (mode & 4) != 0);
		break;
	default:
		one_bundle(data, size);
		break;
	}
	return 0;
}
