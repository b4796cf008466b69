/*
 * message.c: the legacy OMEMO message element.  Encrypting builds
 *
 *   <message type='chat' to=JID id=UUID>
 *     <encrypted xmlns='eu.siacs.conversations.axolotl'>
 *       <header sid=OWN><key rid=DEV [prekey='true']>b64</key>...<iv>b64</iv></header>
 *       <payload>b64(AES-128-GCM ciphertext)</payload>
 *     </encrypted>
 *     <encryption xmlns='urn:xmpp:eme:0' .../><store xmlns='urn:xmpp:hints'/>
 *     <body>fallback</body>
 *   </message>
 *
 * where each <key> is a Signal message carrying key||tag (32 bytes; 16
 * bytes of key only for a key-transport message without payload).
 * Decrypting parses that element strictly, runs the ratchet inside a
 * transaction and, on success, leaves the transaction open for the caller
 * (see mw_omemo.h).  Every failure path rolls back: bad input never changes
 * the store.  Binary key material is split through struct mw_buf.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <session_record.h>

#include "omemo/omemo_int.h"
#include "wire/mw_wire.h"

#define MAX_KEY_B64	4096	/* a Signal message with 32 bytes inside is ~200 */
#define MAX_IV		64

/* ---- building ---- */

/* Encrypts keymat for jid/dev and appends <key rid=dev> to header. */
static int
add_key(struct mw_omemo *o, xmpp_ctx_t *x, xmpp_stanza_t *header,
    const char *jid, uint32_t dev, const uint8_t *keymat, size_t klen)
{
	signal_protocol_address a = { jid, strlen(jid), (int32_t)dev };
	session_cipher *c = NULL;
	ciphertext_message *cm = NULL;
	signal_buffer *ser;
	xmpp_stanza_t *k;
	char *b64 = NULL, rid[16];
	int rc;

	if ((rc = session_cipher_create(&c, o->store, &a, o->sg)) != 0)
		return omemo_map_sg(rc);
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
	    xmpp_stanza_set_attribute(k, "prekey", "true") != XMPP_EOK)) {
		xmpp_stanza_release(k);
		goto out;
	}
	rc = omemo_adopt(header, k);
out:
	free(b64);
	SIGNAL_UNREF(cm);
	return rc;
}

struct target {
	const char *jid;
	uint32_t dev;
};

bool
omemo_id_listed(const uint32_t *v, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* Recipient devices first, then the own account's other devices. */
static int
collect_targets(struct mw_omemo *o, const char *to, const uint32_t *only,
    size_t nonly, struct target **out, size_t *nout, size_t *nrecipient)
{
	uint32_t *a = NULL, *b = NULL;
	size_t na = 0, nb = 0, n = 0;
	struct target *t;
	int rc;

	*out = NULL;
	*nout = *nrecipient = 0;
	if ((rc = omemo_trusted_devices(o, to, &a, &na, true, true, only,
	    nonly)) != 0)
		return rc;
	if (strcmp(to, o->jid) != 0 &&
	    (rc = omemo_trusted_devices(o, o->jid, &b, &nb, true, true, NULL,
	    0)) != 0) {
		free(a);
		return rc;
	}
	if ((t = calloc(na + nb + 1, sizeof(*t))) == NULL) {
		free(a);
		free(b);
		return MW_OMEMO_E_NOMEM;
	}
	for (size_t i = 0; i < na; i++)
		if (nonly == 0 || omemo_id_listed(only, nonly, a[i]))
			t[n++] = (struct target){ to, a[i] };
	*nrecipient = n;
	for (size_t i = 0; i < nb; i++)
		t[n++] = (struct target){ o->jid, b[i] };
	free(a);
	free(b);
	*out = t;
	*nout = n;
	return 0;
}

static int
build_message(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    const struct target *t, size_t nt, const uint8_t *keymat, size_t klen,
    const uint8_t *iv, size_t ivlen, const uint8_t *ct, size_t ctlen,
    xmpp_stanza_t **out)
{
	xmpp_stanza_t *msg = NULL, *enc, *hdr;
	char *b64 = NULL, *id = NULL, sid[16];
	int rc = MW_OMEMO_E_NOMEM;

	*out = NULL;
	if ((id = xmpp_uuid_gen(x)) == NULL ||
	    (msg = xmpp_message_new(x, "chat", to, id)) == NULL)
		goto out;
	if ((enc = omemo_new_elem(x, "encrypted", MW_OMEMO_NS)) == NULL ||
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
	for (size_t i = 0; i < nt; i++)
		if ((rc = add_key(o, x, hdr, t[i].jid, t[i].dev, keymat, klen)) != 0)
			goto out;
	rc = MW_OMEMO_E_NOMEM;
	if ((b64 = omemo_b64_encode(iv, ivlen)) == NULL ||
	    (rc = omemo_adopt(hdr, omemo_text_elem(x, "iv", NULL, b64))) != 0)
		goto out;
	if (ct != NULL) {
		free(b64);
		rc = MW_OMEMO_E_NOMEM;
		if ((b64 = omemo_b64_encode(ct, ctlen)) == NULL ||
		    (rc = omemo_adopt(enc, omemo_text_elem(x, "payload", NULL, b64))) != 0)
			goto out;
	}
	if ((rc = omemo_add_hints(x, msg, MW_OMEMO_NS, ct != NULL)) != 0)
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
encrypt_common(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    bool key_transport, xmpp_stanza_t **out)
{
	struct target *t = NULL;
	size_t nt = 0, nrcpt = 0, sz;
	uint8_t keymat[32], iv[12], *ct = NULL;
	xmpp_stanza_t *msg = NULL;
	int rc;

	*out = NULL;
	if (o == NULL || x == NULL || !omemo_jid_ok(to) ||
	    (!key_transport && pt == NULL && len > 0))
		return MW_OMEMO_E_INVAL;
	if (len > MW_OMEMO_MAX_PLAINTEXT)
		return MW_OMEMO_E_OVERSIZE;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if ((rc = collect_targets(o, to, only, nonly, &t, &nt, &nrcpt)) != 0)
		return rc;
	if (nrcpt == 0) {
		free(t);
		return MW_OMEMO_E_NO_DEVICES;
	}
	rc = MW_OMEMO_E_CRYPTO;
	if (omemo_random(keymat, 16) != 0 || omemo_random(iv, sizeof(iv)) != 0)
		goto out;
	if (!key_transport) {
		if ((ct = malloc(len + 1)) == NULL) {
			rc = MW_OMEMO_E_NOMEM;
			goto out;
		}
		if (omemo_gcm_encrypt(keymat, iv, sizeof(iv), pt, len, ct,
		    keymat + 16) != 0)
			goto out;
	}
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	rc = build_message(o, x, to, t, nt, keymat, key_transport ? 16 : 32,
	    iv, sizeof(iv), key_transport ? NULL : ct, len, &msg);
	if (rc == 0 && (rc = omemo_stanza_size(msg, &sz)) == 0 &&
	    sz > MW_OMEMO_MAX_STANZA)
		rc = MW_OMEMO_E_OVERSIZE;
	if (rc != 0) {
		omemo_rollback(o);
		goto out;
	}
	if ((rc = omemo_commit(o)) != 0)
		goto out;
	*out = msg;
	msg = NULL;
out:
	if (msg != NULL)
		xmpp_stanza_release(msg);
	OPENSSL_cleanse(keymat, sizeof(keymat));
	free(ct);
	free(t);
	return rc;
}

int
mw_omemo_encrypt(struct mw_omemo *o, xmpp_ctx_t *x, const char *to,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    xmpp_stanza_t **out)
{
	if (out == NULL)
		return MW_OMEMO_E_INVAL;
	/* one device named: answered in the version it last wrote in */
	if (o != NULL && nonly == 1 && only != NULL && omemo_jid_ok(to) &&
	    !o->txn && omemo_device_version(o, to, only[0]) == OMEMO_V2 &&
	    omemo_has_session(o, OMEMO_V2, to, only[0]) == 1)
		return mw_omemo2_encrypt(o, x, to, only, nonly, pt, len, out);
	return encrypt_common(o, x, to, only, nonly, pt, len, false, out);
}

int
mw_omemo_encrypt_key_transport(struct mw_omemo *o, xmpp_ctx_t *x,
    const char *to, uint32_t dev, xmpp_stanza_t **out)
{
	if (out == NULL)
		return MW_OMEMO_E_INVAL;
	return encrypt_common(o, x, to, &dev, 1, NULL, 0, true, out);
}

/* ---- parsing and decrypting ---- */

struct parsed {
	char *from;		/* bare */
	uint32_t sid;
	bool prekey;
	uint8_t *key;		/* the Signal message for our device */
	size_t keylen;
	uint8_t *iv;
	size_t ivlen;
	uint8_t *payload;	/* NULL: key-transport */
	size_t plen;
};

static void
parsed_free(struct parsed *p)
{
	free(p->from);
	free(p->key);
	free(p->iv);
	free(p->payload);
	memset(p, 0, sizeof(*p));
}

static const char *
text_of(xmpp_stanza_t *e, char **heap)
{
	xmpp_stanza_t *c = xmpp_stanza_get_children(e);

	*heap = NULL;
	if (c == NULL)
		return NULL;
	/* several text nodes only when the sender split them: join them */
	if (xmpp_stanza_get_next(c) == NULL && xmpp_stanza_is_text(c))
		return xmpp_stanza_get_text_ptr(c);
	*heap = xmpp_stanza_get_text(e);
	return *heap;
}

int
omemo_decode_b64_text(xmpp_stanza_t *e, uint8_t **out, size_t *n, size_t max)
{
	char *heap;
	const char *s = text_of(e, &heap);
	int rc;

	if (s == NULL)
		return MW_OMEMO_E_MALFORMED;
	rc = omemo_b64_decode(s, out, n, max);
	if (heap != NULL)
		xmpp_free(xmpp_stanza_get_context(e), heap);
	return rc;
}

static int
parse_encrypted(struct mw_omemo *o, xmpp_stanza_t *msg, struct parsed *p)
{
	xmpp_stanza_t *enc, *hdr, *c, *iv = NULL, *ours = NULL, *pl;
	xmpp_ctx_t *x = xmpp_stanza_get_context(msg);
	const char *name, *from;
	char *bare;
	size_t sz;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((name = xmpp_stanza_get_name(msg)) == NULL ||
	    strcmp(name, "message") != 0)
		return MW_OMEMO_E_INVAL;
	if ((enc = xmpp_stanza_get_child_by_name_and_ns(msg, "encrypted",
	    MW_OMEMO_NS)) == NULL)
		return MW_OMEMO_E_NOT_ENCRYPTED;
	if ((rc = omemo_stanza_size(msg, &sz)) != 0)
		return rc;
	if (sz > MW_OMEMO_MAX_STANZA)
		return MW_OMEMO_E_OVERSIZE;
	if ((from = xmpp_stanza_get_from(msg)) == NULL)
		return MW_OMEMO_E_MALFORMED;
	if ((bare = xmpp_jid_bare(x, from)) == NULL)
		return MW_OMEMO_E_NOMEM;
	p->from = strdup(bare);
	xmpp_free(x, bare);
	if (p->from == NULL)
		return MW_OMEMO_E_NOMEM;
	if (!omemo_jid_ok(p->from))
		return MW_OMEMO_E_MALFORMED;
	if ((hdr = xmpp_stanza_get_child_by_name(enc, "header")) == NULL ||
	    omemo_parse_devid(xmpp_stanza_get_attribute(hdr, "sid"), &p->sid) != 0)
		return MW_OMEMO_E_MALFORMED;
	for (c = xmpp_stanza_get_children(hdr); c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		uint32_t rid;
		const char *pk;

		if (!xmpp_stanza_is_tag(c))
			continue;
		name = xmpp_stanza_get_name(c);
		if (strcmp(name, "iv") == 0) {
			if (iv != NULL)
				return MW_OMEMO_E_MALFORMED;
			iv = c;
			continue;
		}
		if (strcmp(name, "key") != 0)
			continue;
		if (omemo_parse_devid(xmpp_stanza_get_attribute(c, "rid"), &rid) != 0)
			return MW_OMEMO_E_MALFORMED;
		if (rid != o->device_id || ours != NULL)
			continue;	/* the first key for us counts */
		ours = c;
		pk = xmpp_stanza_get_attribute(c, "prekey");
		if (pk == NULL || strcmp(pk, "false") == 0 || strcmp(pk, "0") == 0)
			p->prekey = false;
		else if (strcmp(pk, "true") == 0 || strcmp(pk, "1") == 0)
			p->prekey = true;
		else
			return MW_OMEMO_E_MALFORMED;
	}
	if (iv == NULL)
		return MW_OMEMO_E_MALFORMED;
	if ((rc = omemo_decode_b64_text(iv, &p->iv, &p->ivlen, MAX_IV)) != 0)
		return rc;
	if ((pl = xmpp_stanza_get_child_by_name(enc, "payload")) != NULL &&
	    (rc = omemo_decode_b64_text(pl, &p->payload, &p->plen,
	    MW_OMEMO_MAX_STANZA)) != 0)
		return rc;
	if (ours == NULL)
		return MW_OMEMO_E_NOT_FOR_US;
	if ((rc = omemo_decode_b64_text(ours, &p->key, &p->keylen, MAX_KEY_B64)) != 0)
		return rc;
	return 0;
}

/*
 * The sender device's identity key and what decrypting would cost, without
 * decrypting (mw_omemo_peek, and decrypt's gate with require_verified).
 * Reads the store only: no transaction is begun, nothing is written.
 */
static int
peek_parsed(struct mw_omemo *o, const struct parsed *p, struct mw_omemo_msg *m)
{
	uint8_t key[33];
	bool have = false;
	int rc;

	m->trust = MW_OMEMO_TRUST_UNDECIDED;
	m->fp[0] = '\0';
	m->new_session = false;
	if (p->prekey) {
		signal_protocol_address a = { p->from, strlen(p->from), (int32_t)p->sid };
		pre_key_signal_message *pm = NULL;
		session_record *rec = NULL;
		signal_buffer *ik = NULL;

		if ((rc = pre_key_signal_message_deserialize(&pm, p->key, p->keylen,
		    o->sg)) != 0)
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
		/* a session state built from this base key already exists: a
		 * resend before our first reply, no X3DH and no prekey */
		/* (libomemo-c's version argument only shapes the empty
		 * record made when none is stored; this one is never saved) */
		if (rc == 0)
			rc = signal_protocol_session_load_session(o->store, &rec, &a,
			    CIPHERTEXT_CURRENT_VERSION);
		if (rc == 0)
			m->new_session = session_record_has_session_state(rec,
			    pre_key_signal_message_get_message_version(pm),
			    pre_key_signal_message_get_base_key(pm)) != 1;
		if (rec != NULL)
			SIGNAL_UNREF(rec);
		SIGNAL_UNREF(pm);	/* non-NULL: deserialized above */
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
		return 0;	/* no key known: UNDECIDED, fp "" */
	if ((rc = mw_omemo_fp_from_key(key, 33, m->fp)) != 0)
		return rc;
	return omemo_key_trust(o, p->from, key, 33, &m->trust);
}

/* The common start of peek and decrypt: parse, name the sender in m, and
 * refuse this very device's own messages.  p must be freed either way. */
static int
take_incoming(struct mw_omemo *o, xmpp_stanza_t *stanza, struct parsed *p,
    struct mw_omemo_msg *m)
{
	int rc;

	if ((rc = parse_encrypted(o, stanza, p)) != 0)
		return rc;
	return omemo_take_sender(o, m, p->from, p->sid, p->prekey);
}

int
omemo_take_sender(struct mw_omemo *o, struct mw_omemo_msg *m,
    const char *from, uint32_t sid, bool prekey)
{
	if ((m->from = strdup(from)) == NULL)
		return MW_OMEMO_E_NOMEM;
	m->device = sid;
	m->prekey = prekey;
	if (strcmp(from, o->jid) == 0 && sid == o->device_id)
		return MW_OMEMO_E_OWN_DEVICE;
	return 0;
}

bool
mw_omemo_is_encrypted(xmpp_stanza_t *stanza)
{
	return stanza != NULL && (xmpp_stanza_get_child_by_name_and_ns(stanza,
	    "encrypted", MW_OMEMO_NS) != NULL ||
	    xmpp_stanza_get_child_by_name_and_ns(stanza, "encrypted",
	    MW_OMEMO2_NS) != NULL);
}

/* An OMEMO 2 message (message2.c) rather than a legacy one. */
static bool
is_omemo2(xmpp_stanza_t *stanza)
{
	return xmpp_stanza_get_child_by_name_and_ns(stanza, "encrypted",
	    MW_OMEMO2_NS) != NULL && xmpp_stanza_get_child_by_name_and_ns(
	    stanza, "encrypted", MW_OMEMO_NS) == NULL;
}

int
mw_omemo_peek(struct mw_omemo *o, xmpp_stanza_t *stanza, struct mw_omemo_msg *m)
{
	struct parsed p;
	int rc;

	if (m == NULL)
		return MW_OMEMO_E_INVAL;
	memset(m, 0, sizeof(*m));
	if (o == NULL || stanza == NULL)
		return MW_OMEMO_E_INVAL;
	if (is_omemo2(stanza))
		return omemo2_peek(o, stanza, m);
	if ((rc = take_incoming(o, stanza, &p, m)) != 0)
		goto out;
	rc = peek_parsed(o, &p, m);
out:
	parsed_free(&p);
	return rc;
}

void
mw_omemo_set_require_verified(struct mw_omemo *o, bool on)
{
	if (o != NULL)
		o->require_verified = on;
}

/* Records the sender's key fingerprint and trust into msg. */
void
omemo_sender_info(struct mw_omemo *o, struct mw_omemo_msg *m)
{
	uint8_t key[33];

	m->trust = MW_OMEMO_TRUST_UNDECIDED;
	m->fp[0] = '\0';
	if (omemo_device_key(o, m->from, m->device, key) == 0 &&
	    omemo_key_trust(o, m->from, key, 33, &m->trust) == 0)
		(void)mw_omemo_fp_from_key(key, 33, m->fp);
}

/* Runs the ratchet over the Signal message: *out = key material. */
static int
ratchet_decrypt(struct mw_omemo *o, struct parsed *p, struct mw_omemo_msg *m,
    signal_buffer **out)
{
	signal_protocol_address a = { p->from, strlen(p->from), (int32_t)p->sid };
	session_cipher *c = NULL;
	int rc;

	if (!(p->prekey ? omemo_legacy_prekey_ok(p->key, p->keylen) :
	    omemo_legacy_message_ok(p->key, p->keylen)))
		return MW_OMEMO_E_BAD_MESSAGE;
	if ((rc = session_cipher_create(&c, o->store, &a, o->sg)) != 0)
		return omemo_map_sg(rc);
	if (p->prekey) {
		pre_key_signal_message *pm = NULL;

		rc = pre_key_signal_message_deserialize(&pm, p->key, p->keylen,
		    o->sg);
		if (rc == 0) {
			signal_buffer *ik = NULL;

			/* name the key in case it is refused */
			if (ec_public_key_serialize(&ik,
			    pre_key_signal_message_get_identity_key(pm)) == 0) {
				(void)mw_omemo_fp_from_key(signal_buffer_data(ik),
				    signal_buffer_len(ik), m->fp);
				signal_buffer_free(ik);
			}
			rc = session_cipher_decrypt_pre_key_signal_message(c, pm,
			    NULL, out);
			SIGNAL_UNREF(pm);
		}
	} else {
		signal_message *sm = NULL;

		rc = signal_message_deserialize(&sm, p->key, p->keylen, o->sg);
		if (rc == 0) {
			rc = session_cipher_decrypt_signal_message(c, sm, NULL, out);
			SIGNAL_UNREF(sm);
		}
	}
	session_cipher_free(c);
	return omemo_map_sg(rc);
}

/*
 * A revoked key is refused even on an existing session: the pinned key of
 * (from, sid), when there is one, must not be REVOKED; its fingerprint
 * goes into fp.  0, MW_OMEMO_E_UNTRUSTED, or a store error.  Both
 * versions' decrypt paths start with it.
 */
int
omemo_refuse_revoked(struct mw_omemo *o, const char *from, uint32_t sid,
    char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t pinned[33];
	enum mw_omemo_trust t;
	int rc;

	if ((rc = omemo_device_key(o, from, sid, pinned)) == MW_OMEMO_E_NOT_FOUND)
		return 0;
	if (rc != 0 || (rc = omemo_key_trust(o, from, pinned, 33, &t)) != 0)
		return rc;
	(void)mw_omemo_fp_from_key(pinned, 33, fp);
	return t == MW_OMEMO_TRUST_REVOKED ? MW_OMEMO_E_UNTRUSTED : 0;
}

int
mw_omemo_decrypt(struct mw_omemo *o, xmpp_stanza_t *stanza,
    struct mw_omemo_msg *m)
{
	struct parsed p;
	signal_buffer *km = NULL;
	struct mw_buf b;
	const uint8_t *key, *tag;
	int rc;

	if (m == NULL)
		return MW_OMEMO_E_INVAL;
	memset(m, 0, sizeof(*m));
	if (o == NULL || stanza == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if (is_omemo2(stanza))
		return omemo2_decrypt(o, stanza, m);
	if ((rc = take_incoming(o, stanza, &p, m)) != 0)
		goto out;
	if ((rc = omemo_refuse_revoked(o, p.from, p.sid, m->fp)) != 0)
		goto out;
	/* the gate: with require_verified nothing from a key that is not
	 * VERIFIED reaches the ratchet or the store */
	if (o->require_verified) {
		if ((rc = peek_parsed(o, &p, m)) != 0)
			goto out;
		if (m->trust != MW_OMEMO_TRUST_VERIFIED) {
			rc = MW_OMEMO_E_UNTRUSTED;
			goto out;
		}
	}
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	if ((rc = ratchet_decrypt(o, &p, m, &km)) != 0)
		goto fail;
	mw_buf_view(&b, signal_buffer_data(km), signal_buffer_len(km));
	if (p.payload == NULL) {
		/* key-transport: >= 16 bytes of key, nothing to decrypt */
		if (mw_buf_avail(&b) < 16) {
			rc = MW_OMEMO_E_KEY_TRUNCATED;
			goto fail;
		}
		if ((rc = omemo_device_version_set(o, p.from, p.sid,
		    OMEMO_V_LEGACY)) != 0)
			goto fail;
		o->pending_decrypt = true;
		if ((rc = mw_omemo_commit(o)) != 0)
			goto out;
		rc = MW_OMEMO_DROPPED;
		goto out;
	}
	/* key || tag: 16 + 16 bytes at least */
	key = mw_buf_ptr(&b);
	if (mw_buf_skip(&b, 16) != 0 || (tag = mw_buf_ptr(&b),
	    mw_buf_skip(&b, 16)) != 0) {
		rc = MW_OMEMO_E_KEY_TRUNCATED;
		goto fail;
	}
	if ((m->plaintext = malloc(p.plen + 1)) == NULL) {
		rc = MW_OMEMO_E_NOMEM;
		goto fail;
	}
	if (omemo_gcm_decrypt(key, p.iv, p.ivlen, p.payload, p.plen, tag,
	    m->plaintext) != 0) {
		rc = MW_OMEMO_E_BAD_TAG;
		goto fail;
	}
	m->plaintext[p.plen] = '\0';
	m->len = p.plen;
	if ((rc = omemo_device_version_set(o, p.from, p.sid,
	    OMEMO_V_LEGACY)) != 0)
		goto fail;
	omemo_sender_info(o, m);
	o->pending_decrypt = true;
	rc = MW_OMEMO_OK;
	goto out;
fail:
	omemo_rollback(o);
	o->bundle_dirty = false;	/* a consumed prekey was rolled back */
	if (m->plaintext != NULL) {
		OPENSSL_clear_free(m->plaintext, p.plen + 1);
		m->plaintext = NULL;
	}
out:
	if (km != NULL)
		signal_buffer_bzero_free(km);
	parsed_free(&p);
	return rc;
}

int
mw_omemo_commit(struct mw_omemo *o)
{
	int rc;

	if (o == NULL || !o->pending_decrypt)
		return MW_OMEMO_E_TXN;
	rc = omemo_commit(o);
	if (rc == 0 && o->bundle_dirty) {
		/* a prekey was used: republish the bundle (no-op offline) */
		o->bundle_dirty = false;
		(void)omemo_pep_bundle_changed(o);
	}
	return rc;
}

int
mw_omemo_rollback(struct mw_omemo *o)
{
	if (o == NULL || !o->pending_decrypt)
		return MW_OMEMO_E_TXN;
	omemo_rollback(o);
	o->bundle_dirty = false;
	return 0;
}

void
mw_omemo_msg_free(struct mw_omemo_msg *m)
{
	if (m == NULL)
		return;
	free(m->from);
	if (m->plaintext != NULL)
		OPENSSL_clear_free(m->plaintext, m->len + 1);
	memset(m, 0, sizeof(*m));
}
