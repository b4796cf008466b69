/*
 * fuzz_omemo_encrypted: mw_omemo_decrypt, the first code that touches a
 * <message> from the network (any XMPP user can send one to the agent;
 * the sender's trust is only known after parsing and the ratchet).
 *
 * Setup, once per process: two endpoints (agent, alice) in in-memory
 * databases know and trust each other; alice's first message M1 (a
 * PreKeySignalMessage) is captured with the agent's store as it was before
 * (state A); then the agent decrypts it and replies, alice decrypts the
 * reply, and alice's second message M2 (a SignalMessage) is captured with
 * the agent's store then (state B).  Each input picks a state and either
 *   raw:        XML text with tokens %R (agent device), %S (alice device),
 *               %F (alice's full JID), %K %I %P (key, iv, payload base64 of
 *               M1) and %k %i %p (of M2), parsed by xmpp_stanza_new_from_string;
 *   structured: flags and byte strings choosing each of sid, rid, prekey,
 *               key, iv, payload, from: the real value, the real value with
 *               one byte changed, fuzz bytes (base64-encoded by the
 *               harness), or absent.
 *
 * Invariants beyond "no crash":
 *  - an error (< 0) leaves no transaction open (mw_omemo_txn_pending false,
 *    SQLite in autocommit) and the store byte-identical (digest of every
 *    row before == after);
 *  - MW_OMEMO_OK leaves the transaction open with a NUL-terminated plaintext
 *    within MW_OMEMO_MAX_PLAINTEXT, and a rollback restores the store
 *    exactly;
 *  - MW_OMEMO_DROPPED commits and leaves no transaction open.
 * MW_FUZZ_DUMP=DIR writes the seeds (tests/fuzz/corpus/fuzz_omemo_*).
 */
#include <string.h>
#include <sys/stat.h>

#include "runtime/job/job.h"
#include "tests/fuzz/omemo_fuzzlib.h"

#define AGENT "agent@fuzz.example"
#define ALICE "alice@fuzz.example"
#define ALICE_FULL ALICE "/res"

static struct fz_ep agent, alice;
static sqlite3 *snap[2];		/* states A and B of the agent's store */
static int cur = -1;			/* state now in agent.db; -1: dirty */
static char rid_s[16], sid_s[16];

struct captured {
	char *key, *iv, *payload;	/* base64 */
	uint8_t *kb, *ivb, *pb;		/* decoded */
	size_t kl, ivl, pl;
	bool prekey;
};
static struct captured m[2];

static char *
child_text(xmpp_stanza_t *parent, const char *name)
{
	xmpp_stanza_t *c = xmpp_stanza_get_child_by_name(parent, name);
	char *t = c ? xmpp_stanza_get_text(c) : NULL;
	char *r = t ? strdup(t) : NULL;
	if (t)
		xmpp_free(fz_x, t);
	FUZZ_CHECK(r != NULL);
	return r;
}

static void
capture(xmpp_stanza_t *msg, struct captured *c)
{
	xmpp_stanza_t *enc = xmpp_stanza_get_child_by_name_and_ns(msg, "encrypted", MW_OMEMO_NS);
	xmpp_stanza_t *hdr = xmpp_stanza_get_child_by_name(enc, "header");
	c->iv = child_text(hdr, "iv");
	c->payload = child_text(enc, "payload");
	for (xmpp_stanza_t *k = xmpp_stanza_get_children(hdr); k; k = xmpp_stanza_get_next(k)) {
		const char *n = xmpp_stanza_get_name(k), *r = xmpp_stanza_get_attribute(k, "rid");
		if (n && strcmp(n, "key") == 0 && r && strcmp(r, rid_s) == 0) {
			char *t = xmpp_stanza_get_text(k);
			c->key = strdup(t);
			xmpp_free(fz_x, t);
			const char *pk = xmpp_stanza_get_attribute(k, "prekey");
			c->prekey = pk && (strcmp(pk, "true") == 0 || strcmp(pk, "1") == 0);
		}
	}
	FUZZ_CHECK(c->key != NULL);
	FUZZ_CHECK(mw_b64_decode(c->key, strlen(c->key), &c->kb, &c->kl) == 0);
	FUZZ_CHECK(mw_b64_decode(c->iv, strlen(c->iv), &c->ivb, &c->ivl) == 0);
	FUZZ_CHECK(mw_b64_decode(c->payload, strlen(c->payload), &c->pb, &c->pl) == 0);
}

static xmpp_stanza_t *
encrypt_from(struct fz_ep *from, struct fz_ep *to, const char *pt)
{
	xmpp_stanza_t *s = NULL;
	char full[128];
	FUZZ_CHECK(mw_omemo_encrypt(from->o, fz_x, to->jid, NULL, 0, pt, strlen(pt), &s) == MW_OMEMO_OK);
	snprintf(full, sizeof(full), "%s/res", from->jid);
	xmpp_stanza_set_from(s, full);
	return s;
}

static void
learn(struct fz_ep *a, struct fz_ep *b)
{
	char xml[256], fp[MW_OMEMO_FP_HEXLEN + 1];
	xmpp_stanza_t *bun = NULL, *l;
	FUZZ_CHECK(mw_omemo_bundle_element(b->o, fz_x, &bun) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_process_bundle(a->o, b->jid, mw_omemo_device_id(b->o), bun) == MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	snprintf(xml, sizeof(xml), "<list xmlns='%s'><device id='%u'/></list>", MW_OMEMO_NS,
	    mw_omemo_device_id(b->o));
	l = xmpp_stanza_new_from_string(fz_x, xml);
	FUZZ_CHECK(mw_omemo_process_devicelist(a->o, b->jid, l) == MW_OMEMO_OK);
	xmpp_stanza_release(l);
	FUZZ_CHECK(mw_omemo_own_fingerprint(b->o, fp) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_trust(a->o, b->jid, fp) == MW_OMEMO_OK);
}

static void
dump(const char *dir, const char *name, const char *text, size_t n)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	FUZZ_CHECK(f != NULL);
	fwrite(text, 1, n, f);
	fclose(f);
}

static void
dump_seeds(const char *dir, xmpp_stanza_t *m1)
{
	char *t = NULL, buf[4096];
	size_t n = 0;
	mkdir(dir, 0755);
	xmpp_stanza_to_text(m1, &t, &n);
	/* literal: parses, but its keys are those of this run's identity */
	buf[0] = 0;
	snprintf(buf, sizeof(buf), "%c%s", 0, t);
	dump(dir, "raw-literal.xml", buf, strlen(t) + 1);
	xmpp_free(fz_x, t);
	static const char *const tmpl[] = {
		"<message from='%%F' to='" AGENT "' type='chat' id='x1'><encrypted xmlns='"
		    MW_OMEMO_NS "'><header sid='%%S'><key rid='123'>AAAA</key><key rid='%%R' prekey='true'>%%K</key>"
		    "<iv>%%I</iv></header><payload>%%P</payload></encrypted>"
		    "<body>I sent you an OMEMO encrypted message</body></message>",
		"<message from='%%F'><encrypted xmlns='" MW_OMEMO_NS "'><header sid='%%S'>"
		    "<key rid='%%R'>%%k</key><iv>%%i</iv></header><payload>%%p</payload></encrypted></message>",
		"<message from='%%F'><encrypted xmlns='" MW_OMEMO_NS "'><header sid='%%S'>"
		    "<key rid='%%R'>%%k</key><iv>%%i</iv></header></encrypted></message>",
	};
	static const char *const tname[] = { "raw-prekey.xml", "raw-signal.xml", "raw-keytransport.xml" };
	for (int i = 0; i < 3; i++) {
		snprintf(buf + 1, sizeof(buf) - 1, tmpl[i], 0);
		buf[0] = (char)(i == 0 ? 0 : 2);	/* raw, state A or B */
		dump(dir, tname[i], buf, strlen(buf + 1) + 1);
	}
	/* structured: everything real (0x00 choices), state A and B */
	static const uint8_t sa[] = { 1, 0x07, 0, 0, 0 };
	static const uint8_t sb[] = { 3, 0x07, 0, 0, 0 };
	static const uint8_t sc[] = { 1, 0x07, 1, 7, 0, 0, 0 };	/* key byte 7 changed */
	static const uint8_t sd[] = { 3, 0x07, 0, 0, 3 };	/* no payload: key transport */
	dump(dir, "struct-prekey", (const char *)sa, sizeof(sa));
	dump(dir, "struct-signal", (const char *)sb, sizeof(sb));
	dump(dir, "struct-flipped-key", (const char *)sc, sizeof(sc));
	dump(dir, "struct-keytransport", (const char *)sd, sizeof(sd));
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_x = xmpp_ctx_new(NULL, NULL);
	fz_ep_open(&agent, AGENT);
	fz_ep_open(&alice, ALICE);
	snprintf(rid_s, sizeof(rid_s), "%u", mw_omemo_device_id(agent.o));
	snprintf(sid_s, sizeof(sid_s), "%u", mw_omemo_device_id(alice.o));
	learn(&alice, &agent);
	/* the agent knows alice's list and trusts her, but has no session */
	char xml[256], fp[MW_OMEMO_FP_HEXLEN + 1];
	snprintf(xml, sizeof(xml), "<list xmlns='%s'><device id='%s'/></list>", MW_OMEMO_NS, sid_s);
	xmpp_stanza_t *l = xmpp_stanza_new_from_string(fz_x, xml);
	FUZZ_CHECK(mw_omemo_process_devicelist(agent.o, ALICE, l) == MW_OMEMO_OK);
	xmpp_stanza_release(l);
	FUZZ_CHECK(mw_omemo_own_fingerprint(alice.o, fp) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_trust(agent.o, ALICE, fp) == MW_OMEMO_OK);

	xmpp_stanza_t *m1 = encrypt_from(&alice, &agent, "return 'hello from M1'");
	capture(m1, &m[0]);
	FUZZ_CHECK(m[0].prekey);
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(sqlite3_open(":memory:", &snap[i]) == SQLITE_OK);
	fz_copy_db(snap[0], agent.db);

	struct mw_omemo_msg msg;
	FUZZ_CHECK(mw_omemo_decrypt(agent.o, m1, &msg) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_commit(agent.o) == MW_OMEMO_OK);
	mw_omemo_msg_free(&msg);
	xmpp_stanza_t *reply = encrypt_from(&agent, &alice, "ok");
	FUZZ_CHECK(mw_omemo_decrypt(alice.o, reply, &msg) == MW_OMEMO_OK);
	FUZZ_CHECK(mw_omemo_commit(alice.o) == MW_OMEMO_OK);
	mw_omemo_msg_free(&msg);
	xmpp_stanza_release(reply);
	xmpp_stanza_t *m2 = encrypt_from(&alice, &agent, "return 'hello from M2'");
	capture(m2, &m[1]);
	FUZZ_CHECK(!m[1].prekey);
	fz_copy_db(snap[1], agent.db);
	cur = 1;

	const char *dir = getenv("MW_FUZZ_DUMP");
	if (dir != NULL)
		dump_seeds(dir, m1);
	xmpp_stanza_release(m1);
	xmpp_stanza_release(m2);
	return 0;
}

static int tok_state;
static const char *
subst(char c)
{
	switch (c) {
	case 'R': return rid_s;
	case 'S': return sid_s;
	case 'F': return ALICE_FULL;
	case 'K': return m[0].key;
	case 'I': return m[0].iv;
	case 'P': return m[0].payload;
	case 'k': return m[1].key;
	case 'i': return m[1].iv;
	case 'p': return m[1].payload;
	}
	return NULL;
}

/* One field: the real bytes, a changed copy, fuzz bytes, or absent (NULL). */
static char *
field(struct fz_in *in, const uint8_t *real, size_t rl, bool *absent)
{
	uint8_t how = fz_u8(in);
	const uint8_t *p = real;
	size_t n = rl;
	uint8_t *tmp = NULL;
	*absent = false;
	switch (how & 3) {
	case 0:
		break;
	case 1:		/* one byte changed */
		tmp = fz_copy(real, rl);
		if (rl > 0)
			tmp[fz_u8(in) % rl] ^= (uint8_t)(fz_u8(in) | 1);
		p = tmp;
		break;
	case 2:
		p = fz_bytes(in, 4096, &n);
		break;
	case 3:
		*absent = true;
		return NULL;
	}
	char *b = mw_b64_encode(p, n);
	free(tmp);
	FUZZ_CHECK(b != NULL);
	return b;
}

static xmpp_stanza_t *
structured(struct fz_in *in, int st)
{
	uint8_t flags = fz_u8(in);
	char sid[16], rid[16];
	bool nokey, noiv, nopl;
	const struct captured *c = &m[st];
	snprintf(sid, sizeof(sid), "%s", sid_s);
	snprintf(rid, sizeof(rid), "%s", rid_s);
	if (!(flags & 1))
		snprintf(sid, sizeof(sid), "%u", fz_u32(in));
	if (!(flags & 4))
		snprintf(rid, sizeof(rid), "%u", fz_u32(in));
	const char *prekey = (flags & 2) ? (c->prekey ? " prekey='true'" : "") :
	    (flags & 8) ? " prekey='true'" : " prekey='false'";
	const char *from = (flags & 16) ? AGENT "/self" : (flags & 32) ? "bob@fuzz.example/x" : ALICE_FULL;
	if (flags & 16 && flags & 32)
		from = "not a jid@@/";
	char *key = field(in, c->kb, c->kl, &nokey);
	char *iv = field(in, c->ivb, c->ivl, &noiv);
	char *pl = field(in, c->pb, c->pl, &nopl);
	size_t cap = 1024 + (key ? strlen(key) : 0) + (iv ? strlen(iv) : 0) + (pl ? strlen(pl) : 0);
	char *xml = malloc(cap);
	FUZZ_CHECK(xml != NULL);
	snprintf(xml, cap, "<message from='%s' type='chat'><encrypted xmlns='%s'><header sid='%s'>"
	    "%s%s%s%s%s%s%s%s%s%s</header>%s%s%s</encrypted></message>",
	    from, MW_OMEMO_NS, sid,
	    nokey ? "" : "<key rid='", nokey ? "" : rid, nokey ? "" : "'",
	    nokey ? "" : prekey, nokey ? "" : ">", nokey ? "" : key, nokey ? "" : "</key>",
	    noiv ? "" : "<iv>", noiv ? "" : iv, noiv ? "" : "</iv>",
	    nopl ? "" : "<payload>", nopl ? "" : pl, nopl ? "" : "</payload>");
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(fz_x, xml);
	/* the whole <message> wrapper minus the payload must parse */
	FUZZ_CHECK(s != NULL);
	free(xml);
	free(key);
	free(iv);
	free(pl);
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t mode = fz_u8(&in);
	int st = (mode >> 1) & 1;
	xmpp_stanza_t *s;

	(void)tok_state;
	if (cur != st) {
		fz_copy_db(agent.db, snap[st]);
		cur = st;
	}
	if (mode & 1) {
		s = structured(&in, st);
	} else {
		char *text = fz_expand(in.p, in.n, subst);
		s = xmpp_stanza_new_from_string(fz_x, text);
		free(text);
		if (s == NULL)
			return 0;
	}
	uint8_t before[32], after[32];
	struct mw_omemo_msg msg;
	fz_store_digest(agent.db, before);
	int r = mw_omemo_decrypt(agent.o, s, &msg);
	if (getenv("MW_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "decrypt: %d %s\n", r, r < 0 ? mw_omemo_strerror(r) : "");
	if (r == MW_OMEMO_OK) {
		FUZZ_CHECK(mw_omemo_txn_pending(agent.o));
		FUZZ_CHECK(msg.plaintext != NULL && msg.len <= MW_OMEMO_MAX_PLAINTEXT &&
		    msg.plaintext[msg.len] == '\0');
		FUZZ_CHECK(msg.from != NULL && strchr(msg.from, '/') == NULL);
		FUZZ_CHECK(mw_omemo_rollback(agent.o) == MW_OMEMO_OK);
		fz_no_txn(&agent);
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	} else if (r == MW_OMEMO_DROPPED) {
		fz_no_txn(&agent);
		cur = -1;	/* committed: restore before the next input */
	} else {
		FUZZ_CHECK(r < 0);
		fz_no_txn(&agent);
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	}
	mw_omemo_msg_free(&msg);
	xmpp_stanza_release(s);
	return 0;
}
