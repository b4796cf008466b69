/*
 * message2.c: the OMEMO 2 message element (XEP-0384 v0.8, urn:xmpp:omemo:2).
 * Encrypting builds
 *
 *   <message type='chat' to=JID id=UUID>
 *     <encrypted xmlns='urn:xmpp:omemo:2'>
 *       <header sid=OWN>
 *         <keys jid=RECIPIENT><key rid=DEV [kex='true']>b64</key>...</keys>
 *         <keys jid=OWN>...</keys>
 *       </header>
 *       <payload>b64(AES-256-CBC of the SCE envelope)</payload>
 *     </encrypted>
 *     <encryption xmlns='urn:xmpp:eme:0' .../><store xmlns='urn:xmpp:hints'/>
 *     <body>fallback</body>
 *   </message>
 *
 * where each <key> is an OMEMOAuthenticatedMessage (or, kex='true', an
 * OMEMOKeyExchange around one) carrying key||tag (48 bytes; 32 zero bytes
 * for an empty message, which has no <payload>), and the plaintext is the
 * XEP-0420 envelope of sce.c.  Sessions are version 4, in their own store
 * (session_store.c); identity, trust and prekeys are those of legacy OMEMO.
 *
 * Decrypting mirrors message.c: strict parse (key counts capped, kex values
 * as python-twomemo writes them, protobuf shapes checked by proto.c), the
 * ratchet in a transaction left open for the caller on success, rolled
 * back on every failure, so bad input never changes the store.  kex is
 * written only as 'true' (python-twomemo reads any present value as true).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <session_record.h>

#include "omemo/omemo_int.h"

#define MAX_KEY_B64	4096	/* a key exchange with 48 bytes inside is ~250 */
#define MAX_KEYS	1024	/* <key> elements in one message, all groups */

/* ---- building ---- */

static int
add_key2(struct mw_omemo *o, xmpp_ctx_t *x, xmpp_stanza_t *keys,
    const char *jid, uint32_t dev, const uint8_t *keymat, size_t klen)
{
	signal_protocol_address a = { jid, strlen(jid), (int32_t)dev };
	session_cipher *c = NULL;
	ciphertext_message *cm = NULL;
	signal_buffer *ser;
	xmpp_stanza_t *k;
	char *b64 = NULL, rid[16];
	int rc;

	if ((rc = session_cipher_create(&c, o->store4, &a, o->sg)) != 0)
		return omemo_map_sg(rc);
	session_cipher_set_version(c, OMEMO_V2);
	rc = session_cipher_encrypt(c, keymat, klen, &cm);
	session_cipher_free(c);
	if (rc != 0)
		return omemo_map_sg(rc);
	ser = ciphertext_message_get_serialized(cm);
	b64 = omemo_b64_encode(signal_buffer_data(ser), signal_buffer_len(ser));
	rc = MW_OMEMO_E_NOMEM;
	if (b64 == NULL || (k = omemo_text_elem(x, "key", NULL, b64)) == NULL)
		goto out;
	(void)snprintf(rid, sizeof(rid), "%u", dev);
	if (xmpp_stanza_set_attribute(k, "rid", rid) != XMPP_EOK ||
	    (ciphertext_message_get_type(cm) == CIPHERTEXT_PREKEY_TYPE &&
	    xmpp_stanza_set_attribute(k, "kex", "true") != XMPP_EOK)) {
		xmpp_stanza_release(k);
		goto out;
	}
	rc = omemo_adopt(keys, k);
out:
	free(b64);
	SIGNAL_UNREF(cm);
	return rc;
}

/* <keys jid> with one <key> per device; nothing when n is 0 */
static int
add_keys(struct mw_omemo *o, xmpp_ctx_t *x, xmpp_stanza_t *hdr,
    const char *jid, const uint32_t *devs, size_t n, const uint8_t *keymat,
    size_t klen)
{
	xmpp_stanza_t *keys;
	int rc;

	if (n == 0)
		return 0;
	if ((keys = omemo_new_elem(x, "keys", NULL)) == NULL)
		return MW_OMEMO_E_NOMEM;
	if (xmpp_stanza_set_attribute(keys, "jid", jid) != XMPP_EOK) {
		xmpp_stanza_release(keys);
		return MW_OMEMO_E_NOMEM;
	}
	if ((rc = omemo_adopt(hdr, keys)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = add_key2(o, x, keys, jid, devs[i], keymat, klen)) != 0)
			return rc;
	return 0;
}

static int
build2(struct mw_omemo *o, xmpp_ctx_t *x, const char *to, const uint32_t *rd,
    size_t nr, const uint32_t *od, size_t no, const uint8_t *keymat,
    size_t klen, const uint8_t *ct, size_t ctlen, xmpp_stanza_t **out)
{
	xmpp_stanza_t *msg = NULL, *enc, *hdr;
	char *b64 = NULL, *id = NULL, sid[16];
	int rc = MW_OMEMO_E_NOMEM;

	*out = NULL;
	if ((id = xmpp_uuid_gen(x)) == NULL ||
	    (msg = xmpp_message_new(x, "chat", to, id)) == NULL)
		goto out;
	if ((enc = omemo_new_elem(x, "encrypted", MW_OMEMO2_NS)) == NULL ||
	    (rc = omemo_adopt(msg, enc)) != 0)
		goto out;
	rc = MW_OMEMO_E_NOMEM;
	if ((hdr = omemo_new_elem(x, "header", NULL)) == NULL ||
	    (rc = omemo_adopt(enc, hdr)) != 0)
		goto out;
	rc = MW_OMEMO_E_NOMEM;
	(void)snprintf(sid, sizeof(sid), "%u", o->device_id);
	if (xmpp_stanza_set_attribute(hdr, "sid", sid) != XMPP_EOK)
		goto out;
	if ((rc = add_keys(o, x, hdr, to, rd, nr, keymat, klen)) != 0 ||
	    (rc = add_keys(o, x, hdr, o->jid, od, no, keymat, klen)) != 0)
		goto out;
	if (ct != NULL) {
		rc = MW_OMEMO_E_NOMEM;
		if ((b64 = omemo_b64_encode(ct, ctlen)) == NULL ||
		    (rc = omemo_adopt(enc, omemo_text_elem(x, "payload", NULL,
		    b64))) != 0)
			goto out;
	}
	if ((rc = omemo_add_hints(x, msg, MW_OMEMO2_NS, ct != NULL)) != 0)
		goto out;
	*out = msg;
	msg = NULL;
	rc = 0;
out:
	if (msg != NULL)
		xmpp_stanza_release(msg);
	if (id != NULL)
		xmpp_free(x, id);
	free(b64);
	return rc;
}

static int
encrypt2(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    bool empty, xmpp_stanza_t **out)
{
	uint32_t *rd = NULL, *od = NULL;
	size_t nr = 0, no = 0, keep = 0, sz, envlen = 0, ctlen = 0;
	uint8_t keymat[OMEMO2_KEYMAT], *ct = NULL;
	char *env = NULL;
	xmpp_stanza_t *msg = NULL;
	int rc;

	*out = NULL;
	if (o == NULL || x == NULL || !omemo_jid_ok(to) ||
	    (!empty && pt == NULL && len > 0))
		return MW_OMEMO_E_INVAL;
	if (len > MW_OMEMO_MAX_PLAINTEXT)
		return MW_OMEMO_E_OVERSIZE;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	/* recipient devices (verified, with a version-4 session), then the
	 * own account's other devices of the same kind */
	if ((rc = omemo_trusted_devices_v(o, OMEMO_V2, to, &rd, &nr, true, true,
	    only, nonly)) != 0)
		return rc;
	for (size_t i = 0; i < nr; i++)
		if (nonly == 0 || omemo_id_listed(only, nonly, rd[i]))
			rd[keep++] = rd[i];
	nr = keep;
	if (nr == 0) {
		free(rd);
		return MW_OMEMO_E_NO_DEVICES;
	}
	/* an empty message is owed to one device only (upkeep2.c) */
	if (!empty && strcmp(to, o->jid) != 0 && (rc = omemo_trusted_devices_v(o,
	    OMEMO_V2, o->jid, &od, &no, true, true, NULL, 0)) != 0)
		goto out;
	memset(keymat, 0, sizeof(keymat));
	if (!empty) {
		if ((rc = omemo_sce_build(o->jid, to, pt, len, &env,
		    &envlen)) != 0)
			goto out;
		/* the payload is at least the envelope, in base64 in the
		 * stanza: refused before any ratchet work when that alone is
		 * past the limit (escaping can make 128 KiB of text 640) */
		if (envlen / 3 * 4 > MW_OMEMO_MAX_STANZA) {
			rc = MW_OMEMO_E_OVERSIZE;
			goto out;
		}
		if ((rc = omemo2_payload_encrypt((const uint8_t *)env, envlen,
		    keymat, &ct, &ctlen)) != 0)
			goto out;
	}
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	rc = build2(o, x, to, rd, nr, od, no, keymat,
	    empty ? OMEMO2_KEY : OMEMO2_KEYMAT, ct, ctlen, &msg);
	if (rc == 0 && (rc = omemo_stanza_size(msg, &sz)) == 0 &&
	    sz > MW_OMEMO_MAX_STANZA)
		rc = MW_OMEMO_E_OVERSIZE;
	if (rc != 0) {
		omemo_rollback(o);
		goto out;
	}
	if ((rc = omemo_commit(o)) != 0)
		goto out;
	for (size_t i = 0; i < nr; i++)
		omemo2_upkeep_sent(o, to, rd[i]);
	*out = msg;
	msg = NULL;
out:
	if (msg != NULL)
		xmpp_stanza_release(msg);
	OPENSSL_cleanse(keymat, sizeof(keymat));
	if (env != NULL)
		OPENSSL_clear_free(env, envlen);
	free(ct);
	free(rd);
	free(od);
	return rc;
}

int
mw_omemo2_encrypt(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    xmpp_stanza_t **out)
{
	if (out == NULL)
		return MW_OMEMO_E_INVAL;
	return encrypt2(o, x, to, only, nonly, pt, len, false, out);
}

int
mw_omemo2_encrypt_empty(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    uint32_t dev, xmpp_stanza_t **out)
{
	if (out == NULL)
		return MW_OMEMO_E_INVAL;
	return encrypt2(o, x, to, &dev, 1, NULL, 0, true, out);
}

/* ---- parsing ---- */

struct parsed2 {
	char *from;		/* bare, from the outer stanza */
	char *to;		/* bare, from the outer stanza (own JID if none) */
	uint32_t sid;
	bool kex;
	uint8_t *key;		/* our <key>'s bytes */
	size_t keylen;
	uint8_t *payload;	/* NULL: empty message */
	size_t plen;
	uint32_t counter;	/* of the message in its sending chain */
	bool ratchet_failed;	/* the ratchet, not the parse, refused it */
};

static void
parsed2_free(struct parsed2 *p)
{
	free(p->from);
	free(p->to);
	free(p->key);
	free(p->payload);
	memset(p, 0, sizeof(*p));
}

static char *
bare_of(xmpp_ctx_t *x, const char *jid)
{
	char *b = xmpp_jid_bare(x, jid), *r;

	if (b == NULL)
		return NULL;
	r = strdup(b);
	xmpp_free(x, b);
	return r;
}

static int
parse2(struct mw_omemo *o, xmpp_stanza_t *msg, struct parsed2 *p)
{
	xmpp_stanza_t *enc, *hdr, *g, *k, *ours = NULL, *pl;
	xmpp_ctx_t *x = xmpp_stanza_get_context(msg);
	const char *name, *from, *to;
	size_t sz, nkeys = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((name = xmpp_stanza_get_name(msg)) == NULL ||
	    strcmp(name, "message") != 0)
		return MW_OMEMO_E_INVAL;
	if ((enc = xmpp_stanza_get_child_by_name_and_ns(msg, "encrypted",
	    MW_OMEMO2_NS)) == NULL)
		return MW_OMEMO_E_NOT_ENCRYPTED;
	if ((rc = omemo_stanza_size(msg, &sz)) != 0)
		return rc;
	if (sz > MW_OMEMO_MAX_STANZA)
		return MW_OMEMO_E_OVERSIZE;
	if ((from = xmpp_stanza_get_from(msg)) == NULL)
		return MW_OMEMO_E_MALFORMED;
	to = xmpp_stanza_get_to(msg);
	if ((p->from = bare_of(x, from)) == NULL ||
	    (p->to = to != NULL ? bare_of(x, to) : strdup(o->jid)) == NULL)
		return MW_OMEMO_E_NOMEM;
	if (!omemo_jid_ok(p->from) || !omemo_jid_ok(p->to))
		return MW_OMEMO_E_MALFORMED;
	if ((hdr = xmpp_stanza_get_child_by_name(enc, "header")) == NULL ||
	    omemo_parse_devid(xmpp_stanza_get_attribute(hdr, "sid"), &p->sid) != 0)
		return MW_OMEMO_E_MALFORMED;
	for (g = xmpp_stanza_get_children(hdr); g != NULL;
	    g = xmpp_stanza_get_next(g)) {
		const char *jid;
		bool mine;

		if (!xmpp_stanza_is_tag(g) ||
		    strcmp(xmpp_stanza_get_name(g), "keys") != 0)
			continue;
		if ((jid = xmpp_stanza_get_attribute(g, "jid")) == NULL ||
		    !omemo_jid_ok(jid))
			return MW_OMEMO_E_MALFORMED;
		mine = strcmp(jid, o->jid) == 0;
		for (k = xmpp_stanza_get_children(g); k != NULL;
		    k = xmpp_stanza_get_next(k)) {
			uint32_t rid;
			const char *kex;

			if (!xmpp_stanza_is_tag(k) ||
			    strcmp(xmpp_stanza_get_name(k), "key") != 0)
				continue;
			if (++nkeys > MAX_KEYS)
				return MW_OMEMO_E_OVERSIZE;
			if (omemo_parse_devid(xmpp_stanza_get_attribute(k,
			    "rid"), &rid) != 0)
				return MW_OMEMO_E_MALFORMED;
			if (!mine || rid != o->device_id || ours != NULL)
				continue;	/* the first key for us counts */
			ours = k;
			kex = xmpp_stanza_get_attribute(k, "kex");
			if (kex == NULL || strcmp(kex, "false") == 0 ||
			    strcmp(kex, "0") == 0)
				p->kex = false;
			else if (strcmp(kex, "true") == 0 || strcmp(kex, "1") == 0)
				p->kex = true;
			else
				return MW_OMEMO_E_MALFORMED;
		}
	}
	if ((pl = xmpp_stanza_get_child_by_name(enc, "payload")) != NULL &&
	    (rc = omemo_decode_b64_text(pl, &p->payload, &p->plen,
	    MW_OMEMO_MAX_STANZA)) != 0)
		return rc;
	if (ours == NULL)
		return MW_OMEMO_E_NOT_FOR_US;
	return omemo_decode_b64_text(ours, &p->key, &p->keylen, MAX_KEY_B64);
}

/* ---- peek and decrypt ---- */

/* Sender key and trust without writing (see mw_omemo_peek). */
static int
peek2(struct mw_omemo *o, const struct parsed2 *p, struct mw_omemo_msg *m)
{
	uint8_t key[33];
	bool have = false;
	int rc;

	m->trust = MW_OMEMO_TRUST_UNDECIDED;
	m->fp[0] = '\0';
	m->new_session = false;
	if (p->kex) {
		signal_protocol_address a = { p->from, strlen(p->from),
		    (int32_t)p->sid };
		pre_key_signal_message *pm = NULL;
		session_record *rec = NULL;
		signal_buffer *ik = NULL;

		if (!omemo2_kex_ok(p->key, p->keylen))
			return MW_OMEMO_E_BAD_MESSAGE;
		if ((rc = pre_key_signal_message_deserialize_omemo(&pm, p->key,
		    p->keylen, p->sid, o->sg)) != 0)
			return omemo_map_sg(rc);
		rc = ec_public_key_serialize(&ik,
		    pre_key_signal_message_get_identity_key(pm));
		if (rc == 0 && signal_buffer_len(ik) == 33) {
			memcpy(key, signal_buffer_data(ik), 33);
			have = true;
		}
		signal_buffer_free(ik);
		if (rc == 0 && !have)
			rc = SG_ERR_INVALID_KEY;
		if (rc == 0)
			rc = signal_protocol_session_load_session(o->store4, &rec,
			    &a, OMEMO_V2);
		if (rc == 0)
			m->new_session = session_record_has_session_state(rec,
			    OMEMO_V2, pre_key_signal_message_get_base_key(pm)) !=
			    1;
		if (rec != NULL)
			SIGNAL_UNREF(rec);
		SIGNAL_UNREF(pm);
		if (rc != 0)
			return omemo_map_sg(rc);
	} else {
		rc = omemo_device_key(o, p->from, p->sid, key);
		if (rc == 0)
			have = true;
		else if (rc != MW_OMEMO_E_NOT_FOUND)
			return rc;
	}
	if (!have)
		return 0;
	if ((rc = mw_omemo_fp_from_key(key, 33, m->fp)) != 0)
		return rc;
	return omemo_key_trust(o, p->from, key, 33, &m->trust);
}

static int
take2(struct mw_omemo *o, xmpp_stanza_t *stanza, struct parsed2 *p,
    struct mw_omemo_msg *m)
{
	int rc;

	m->omemo2 = true;
	if ((rc = parse2(o, stanza, p)) != 0)
		return rc;
	return omemo_take_sender(o, m, p->from, p->sid, p->kex);
}

int
omemo2_peek(struct mw_omemo *o, xmpp_stanza_t *stanza, struct mw_omemo_msg *m)
{
	struct parsed2 p;
	int rc;

	if ((rc = take2(o, stanza, &p, m)) == 0)
		rc = peek2(o, &p, m);
	parsed2_free(&p);
	return rc;
}

/* The ratchet over our <key>: *out = key material. */
static int
ratchet2(struct mw_omemo *o, struct parsed2 *p, struct mw_omemo_msg *m,
    signal_buffer **out)
{
	signal_protocol_address a = { p->from, strlen(p->from), (int32_t)p->sid };
	session_cipher *c = NULL;
	int rc;

	/* kex='true' must hold a key exchange, and only then */
	if (!(p->kex ? omemo2_kex_ok(p->key, p->keylen) :
	    omemo2_authmsg_ok(p->key, p->keylen)))
		return MW_OMEMO_E_BAD_MESSAGE;
	if ((rc = session_cipher_create(&c, o->store4, &a, o->sg)) != 0)
		return omemo_map_sg(rc);
	session_cipher_set_version(c, OMEMO_V2);
	if (p->kex) {
		pre_key_signal_message *pm = NULL;

		rc = pre_key_signal_message_deserialize_omemo(&pm, p->key,
		    p->keylen, p->sid, o->sg);
		if (rc == 0) {
			signal_buffer *ik = NULL;

			if (ec_public_key_serialize(&ik,
			    pre_key_signal_message_get_identity_key(pm)) == 0) {
				(void)mw_omemo_fp_from_key(signal_buffer_data(ik),
				    signal_buffer_len(ik), m->fp);
				signal_buffer_free(ik);
			}
			p->counter = signal_message_get_counter(
			    pre_key_signal_message_get_signal_message(pm));
			rc = session_cipher_decrypt_pre_key_signal_message(c, pm,
			    NULL, out);
			SIGNAL_UNREF(pm);
		}
	} else {
		signal_message *sm = NULL;

		rc = signal_message_deserialize_omemo(&sm, p->key, p->keylen,
		    o->sg);
		if (rc == 0) {
			p->counter = signal_message_get_counter(sm);
			rc = session_cipher_decrypt_signal_message(c, sm, NULL, out);
			SIGNAL_UNREF(sm);
		}
	}
	session_cipher_free(c);
	p->ratchet_failed = rc != 0;
	return omemo_map_sg(rc);
}

int
omemo2_decrypt(struct mw_omemo *o, xmpp_stanza_t *stanza,
    struct mw_omemo_msg *m)
{
	struct parsed2 p;
	signal_buffer *km = NULL;
	uint8_t *env = NULL;
	size_t envlen = 0;
	int rc;

	if ((rc = take2(o, stanza, &p, m)) != 0)
		goto out;
	if ((rc = omemo_refuse_revoked(o, p.from, p.sid, m->fp)) != 0)
		goto out;
	if (o->require_verified) {
		if ((rc = peek2(o, &p, m)) != 0)
			goto out;
		if (m->trust != MW_OMEMO_TRUST_VERIFIED) {
			rc = MW_OMEMO_E_UNTRUSTED;
			goto out;
		}
	}
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	if ((rc = ratchet2(o, &p, m, &km)) != 0)
		goto fail;
	if (p.payload == NULL) {
		/* empty message: 32 (zero) bytes of key, nothing to decrypt */
		if (signal_buffer_len(km) < OMEMO2_KEY) {
			rc = MW_OMEMO_E_KEY_TRUNCATED;
			goto fail;
		}
		if ((rc = omemo_device_version_set(o, p.from, p.sid,
		    OMEMO_V2)) != 0)
			goto fail;
		o->pending_decrypt = true;
		if ((rc = mw_omemo_commit(o)) != 0)
			goto out;
		omemo2_upkeep_received(o, p.from, p.sid, p.kex, p.counter);
		rc = MW_OMEMO_DROPPED;
		goto out;
	}
	if (signal_buffer_len(km) != OMEMO2_KEYMAT) {
		rc = MW_OMEMO_E_KEY_TRUNCATED;
		goto fail;
	}
	if ((rc = omemo2_payload_decrypt(signal_buffer_data(km), p.payload,
	    p.plen, &env, &envlen)) != 0)
		goto fail;
	if ((rc = omemo_sce_parse(env, envlen,
	    p.from, p.to, &m->plaintext, &m->len)) != 0 ||
	    (rc = omemo_device_version_set(o, p.from, p.sid, OMEMO_V2)) != 0)
		goto fail;
	omemo_sender_info(o, m);
	o->pending_decrypt = true;
	/* owed only if the caller commits: the tick reads the session then */
	omemo2_upkeep_received(o, p.from, p.sid, p.kex, p.counter);
	if (m->plaintext == NULL) {
		/* an envelope without <body> (e.g. a chat state): nothing
		 * for the caller, the ratchet step is kept */
		if ((rc = mw_omemo_commit(o)) != 0)
			goto out;
		rc = MW_OMEMO_DROPPED;
		goto out;
	}
	rc = MW_OMEMO_OK;
	goto out;
fail:
	omemo_rollback(o);
	o->bundle_dirty = false;	/* a consumed prekey was rolled back */
	if (p.ratchet_failed && rc != MW_OMEMO_E_DUPLICATE)
		omemo2_upkeep_broken(o, p.from, p.sid, rc);
	if (m->plaintext != NULL) {
		OPENSSL_clear_free(m->plaintext, m->len + 1);
		m->plaintext = NULL;
		m->len = 0;
	}
out:
	if (env != NULL)
		OPENSSL_clear_free(env, envlen + 1);
	if (km != NULL)
		signal_buffer_bzero_free(km);
	parsed2_free(&p);
	return rc;
}
