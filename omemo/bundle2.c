/*
 * bundle2.c: the OMEMO 2 bundle (urn:xmpp:omemo:2, one PEP item per
 * device).  Built from the same identity, signed prekey and prekey pool as
 * the legacy bundle; only the encodings differ:
 *
 *   <bundle xmlns='urn:xmpp:omemo:2'>
 *     <spk id>b64(32-byte X25519)</spk><spks>b64(64-byte signature)</spks>
 *     <ik>b64(32-byte Ed25519, sign bit 0)</ik>
 *     <prekeys><pk id>b64(32-byte X25519)</pk>...</prekeys>
 *   </bundle>
 *
 * The OMEMO 2 signature covers the 32-byte X25519 form of the signed
 * prekey; a signed prekey made before libomemo-c (the upgrade fixture) has
 * none and is given one here (signal_protocol_key_helper_upgrade_signed_pre_key).
 *
 * Invariants: every key has exactly its OMEMO 2 length (libomemo-c's own
 * decoders also take 33-byte legacy forms, which this profile does not);
 * everything is decoded before the session is built, in one transaction
 * on the version-4 store, rolled back on any failure.  The identity key
 * reaches the trust store as 0x05 || X25519, the same bytes the legacy
 * bundle gives, so a device is pinned to one identity across both versions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <key_helper.h>

#include "omemo/omemo_int.h"

#define MAX_BUNDLE_PREKEYS	1000

static int
add_b64(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name, bool with_id,
    uint32_t id, const uint8_t *p, size_t n)
{
	xmpp_stanza_t *e;
	char *b64, ids[16];

	if ((b64 = omemo_b64_encode(p, n)) == NULL)
		return MW_OMEMO_E_NOMEM;
	e = omemo_text_elem(x, name, NULL, b64);
	free(b64);
	if (e == NULL)
		return MW_OMEMO_E_NOMEM;
	(void)snprintf(ids, sizeof(ids), "%u", id);
	if (with_id && xmpp_stanza_set_attribute(e, "id", ids) != XMPP_EOK) {
		xmpp_stanza_release(e);
		return MW_OMEMO_E_NOMEM;
	}
	return omemo_adopt(parent, e);
}

/* 32-byte X25519 form */
static int
add_mont(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name, uint32_t id,
    ec_public_key *k)
{
	signal_buffer *b = NULL;
	int rc;

	if (ec_public_key_serialize_omemo(&b, k) != 0)
		return MW_OMEMO_E_NOMEM;
	rc = signal_buffer_len(b) == 32 ? add_b64(x, parent, name, true, id,
	    signal_buffer_data(b), 32) : MW_OMEMO_E_CRYPTO;
	signal_buffer_free(b);
	return rc;
}

int
omemo2_own_ik(struct mw_omemo *o, uint8_t ed[32])
{
	uint8_t pub[33];
	ec_public_key *k = NULL;
	signal_buffer *b;
	int rc;

	if ((rc = omemo_own_identity_pub(o, pub)) != 0)
		return rc;
	if (curve_decode_point(&k, pub, 33, o->sg) != 0)
		return MW_OMEMO_E_CRYPTO;
	b = ec_public_key_get_ed(k);
	SIGNAL_UNREF(k);
	if (b == NULL || signal_buffer_len(b) != 32) {
		signal_buffer_free(b);
		return MW_OMEMO_E_CRYPTO;
	}
	memcpy(ed, signal_buffer_data(b), 32);
	signal_buffer_free(b);
	return 0;
}

int
mw_omemo2_bundle_element(struct mw_omemo *o, xmpp_ctx_t *x,
    xmpp_stanza_t **out)
{
	xmpp_stanza_t *bundle = NULL, *pks;
	session_signed_pre_key *spk = NULL;
	ratchet_identity_key_pair *ikp = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t ed[32];
	int64_t spk_id;
	int rc;

	*out = NULL;
	if ((rc = omemo_meta_get(o, "spk_id", &spk_id)) != 0)
		return rc == MW_OMEMO_E_NOT_FOUND ? MW_OMEMO_E_DB : rc;
	if (signal_protocol_signed_pre_key_load_key(o->store, &spk,
	    (uint32_t)spk_id) != 0)
		return MW_OMEMO_E_DB;
	rc = MW_OMEMO_E_CRYPTO;
	if (session_signed_pre_key_get_signature_omemo_len(spk) == 0 &&
	    (signal_protocol_identity_get_key_pair(o->store, &ikp) != 0 ||
	    signal_protocol_key_helper_upgrade_signed_pre_key(&spk, ikp,
	    o->sg) != 0))
		goto out;
	if (session_signed_pre_key_get_signature_omemo_len(spk) !=
	    CURVE_SIGNATURE_LEN || (rc = omemo2_own_ik(o, ed)) != 0) {
		rc = rc != 0 ? rc : MW_OMEMO_E_CRYPTO;
		goto out;
	}
	rc = MW_OMEMO_E_NOMEM;
	if ((bundle = omemo_new_elem(x, "bundle", MW_OMEMO2_NS)) == NULL)
		goto out;
	if ((rc = add_mont(x, bundle, "spk", (uint32_t)spk_id,
	    ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk)))) !=
	    0 ||
	    (rc = add_b64(x, bundle, "spks", false, 0,
	    session_signed_pre_key_get_signature_omemo(spk),
	    CURVE_SIGNATURE_LEN)) != 0 ||
	    (rc = add_b64(x, bundle, "ik", false, 0, ed, 32)) != 0)
		goto out;
	if ((rc = omemo_adopt(bundle, omemo_new_elem(x, "prekeys", NULL))) != 0)
		goto out;
	pks = xmpp_stanza_get_child_by_name(bundle, "prekeys");
	rc = MW_OMEMO_E_DB;
	if (sqlite3_prepare_v2(o->db, "SELECT id, record FROM omemo_prekeys "
	    "ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		session_pre_key *pk = NULL;

		if (session_pre_key_deserialize(&pk, sqlite3_column_blob(st, 1),
		    (size_t)sqlite3_column_bytes(st, 1), o->sg) != 0) {
			rc = MW_OMEMO_E_DB;
			goto out;
		}
		rc = add_mont(x, pks, "pk", session_pre_key_get_id(pk),
		    ec_key_pair_get_public(session_pre_key_get_key_pair(pk)));
		SIGNAL_UNREF(pk);
		if (rc != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		rc = MW_OMEMO_E_DB;
		goto out;
	}
	*out = bundle;
	bundle = NULL;
	rc = 0;
out:
	sqlite3_finalize(st);
	if (bundle != NULL)
		xmpp_stanza_release(bundle);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ikp);
	return rc;
}

/* The base64 text of e, exactly len bytes. */
static int
exact_b64(xmpp_stanza_t *e, uint8_t *out, size_t len)
{
	char *s;
	uint8_t *raw = NULL;
	size_t n = 0;
	int rc;

	if (e == NULL || (s = xmpp_stanza_get_text(e)) == NULL)
		return MW_OMEMO_E_BUNDLE;
	rc = omemo_b64_decode(s, &raw, &n, 128);
	xmpp_free(xmpp_stanza_get_context(e), s);
	if (rc != 0)
		return rc == MW_OMEMO_E_NOMEM ? rc : MW_OMEMO_E_BUNDLE;
	if (n != len)
		rc = MW_OMEMO_E_BUNDLE;
	else
		memcpy(out, raw, len);
	free(raw);
	return rc;
}

static int
mont_of(struct mw_omemo *o, xmpp_stanza_t *e, ec_public_key **k)
{
	uint8_t raw[32];
	int rc;

	*k = NULL;
	if ((rc = exact_b64(e, raw, 32)) != 0)
		return rc;
	return curve_decode_point_mont(k, raw, 32, o->sg) == 0 ? 0 :
	    MW_OMEMO_E_BUNDLE;
}

static int
id_attr(xmpp_stanza_t *e, uint32_t *v)
{
	const char *s = xmpp_stanza_get_attribute(e, "id");
	char *end;
	unsigned long u;

	if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 10)
		return -1;
	u = strtoul(s, &end, 10);
	if (*end != '\0' || u > 0xffffffffUL)
		return -1;
	*v = (uint32_t)u;
	return 0;
}

/* <bundle xmlns=urn:xmpp:omemo:2> itself or the first one inside up to
 * <pubsub><items><item> */
static xmpp_stanza_t *
find_bundle2(xmpp_stanza_t *s)
{
	for (int depth = 0; s != NULL && depth < 6; depth++) {
		const char *name = xmpp_stanza_get_name(s);

		if (name != NULL && strcmp(name, "bundle") == 0)
			return s;
		s = xmpp_stanza_get_children(s);
		while (s != NULL && (!xmpp_stanza_is_tag(s) ||
		    (xmpp_stanza_get_ns(s) != NULL &&
		    strcmp(xmpp_stanza_get_ns(s),
		    "http://jabber.org/protocol/rsm") == 0)))
			s = xmpp_stanza_get_next(s);
	}
	return NULL;
}

int
mw_omemo2_process_bundle(struct mw_omemo *o, const char *jid, uint32_t dev,
    xmpp_stanza_t *el)
{
	xmpp_stanza_t *b, *e, *pks, *chosen = NULL;
	ec_public_key *spk = NULL, *ik = NULL, *pk = NULL;
	session_pre_key_bundle *bundle = NULL;
	session_builder *builder = NULL;
	uint8_t sig[CURVE_SIGNATURE_LEN], ed[32];
	size_t npk = 0;
	uint32_t spk_id, pk_id = 0, r;
	signal_protocol_address a;
	int rc;

	if (o == NULL || !omemo_jid_ok(jid) || dev == 0 || dev > 0x7fffffff ||
	    el == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if (strcmp(jid, o->jid) == 0 && dev == o->device_id)
		return MW_OMEMO_E_OWN_DEVICE;
	if ((b = find_bundle2(el)) == NULL || xmpp_stanza_get_ns(b) == NULL ||
	    strcmp(xmpp_stanza_get_ns(b), MW_OMEMO2_NS) != 0)
		return MW_OMEMO_E_BUNDLE;
	e = xmpp_stanza_get_child_by_name(b, "spk");
	if (e == NULL || id_attr(e, &spk_id) != 0)
		return MW_OMEMO_E_BUNDLE;
	if ((rc = mont_of(o, e, &spk)) != 0 ||
	    (rc = exact_b64(xmpp_stanza_get_child_by_name(b, "spks"), sig,
	    sizeof(sig))) != 0 ||
	    (rc = exact_b64(xmpp_stanza_get_child_by_name(b, "ik"), ed, 32)) != 0)
		goto out;
	if (curve_decode_point_ed(&ik, ed, 32, o->sg) != 0) {
		rc = MW_OMEMO_E_BUNDLE;
		goto out;
	}
	rc = MW_OMEMO_E_BUNDLE;
	if ((pks = xmpp_stanza_get_child_by_name(b, "prekeys")) == NULL)
		goto out;
	/* one prekey uniformly at random (reservoir sampling) */
	for (e = xmpp_stanza_get_children(pks); e != NULL;
	    e = xmpp_stanza_get_next(e)) {
		if (!xmpp_stanza_is_tag(e) ||
		    strcmp(xmpp_stanza_get_name(e), "pk") != 0)
			continue;
		if (++npk > MAX_BUNDLE_PREKEYS)
			goto out;
		if (omemo_random(&r, sizeof(r)) != 0) {
			rc = MW_OMEMO_E_CRYPTO;
			goto out;
		}
		if (r % npk == 0)
			chosen = e;
	}
	if (chosen == NULL || id_attr(chosen, &pk_id) != 0)
		goto out;
	if ((rc = mont_of(o, chosen, &pk)) != 0)
		goto out;
	if (session_pre_key_bundle_create(&bundle, 0, (int)dev, pk_id, pk,
	    spk_id, spk, sig, sizeof(sig), ik) != 0) {
		rc = MW_OMEMO_E_NOMEM;
		goto out;
	}
	a = (signal_protocol_address){ jid, strlen(jid), (int32_t)dev };
	if (session_builder_create(&builder, o->store4, &a, o->sg) != 0) {
		rc = MW_OMEMO_E_NOMEM;
		goto out;
	}
	session_builder_set_version(builder, OMEMO_V2);
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	rc = session_builder_process_pre_key_bundle(builder, bundle);
	if (rc != 0) {
		omemo_rollback(o);
		rc = rc == SG_ERR_INVALID_KEY ? MW_OMEMO_E_BUNDLE_SIG :
		    omemo_map_sg(rc);
		goto out;
	}
	rc = omemo_commit(o);
out:
	if (builder != NULL)
		session_builder_free(builder);
	SIGNAL_UNREF(bundle);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ik);
	SIGNAL_UNREF(pk);
	return rc;
}

/* ---- the OMEMO 2 device list: <devices><device id label?/></devices> ---- */

#define MAX_DEVICES	256

static xmpp_stanza_t *
find_devices(xmpp_stanza_t *s)
{
	for (int depth = 0; s != NULL && depth < 6; depth++) {
		const char *name = xmpp_stanza_get_name(s);

		if (name != NULL && strcmp(name, "devices") == 0)
			return s;
		s = xmpp_stanza_get_children(s);
		while (s != NULL && (!xmpp_stanza_is_tag(s) ||
		    (xmpp_stanza_get_ns(s) != NULL &&
		    strcmp(xmpp_stanza_get_ns(s),
		    "http://jabber.org/protocol/rsm") == 0)))
			s = xmpp_stanza_get_next(s);
	}
	return NULL;
}

int
omemo2_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n)
{
	xmpp_stanza_t *l, *e;
	uint32_t *v, id;
	size_t cnt = 0;

	*ids = NULL;
	*n = 0;
	if ((l = find_devices(el)) == NULL || xmpp_stanza_get_ns(l) == NULL ||
	    strcmp(xmpp_stanza_get_ns(l), MW_OMEMO2_NS) != 0)
		return MW_OMEMO_E_DEVICELIST;
	if ((v = calloc(MAX_DEVICES, sizeof(*v))) == NULL)
		return MW_OMEMO_E_NOMEM;
	for (e = xmpp_stanza_get_children(l); e != NULL;
	    e = xmpp_stanza_get_next(e)) {
		if (!xmpp_stanza_is_tag(e) ||
		    strcmp(xmpp_stanza_get_name(e), "device") != 0)
			continue;
		/* a label is the owner's name for the device: not used */
		if (omemo_parse_devid(xmpp_stanza_get_attribute(e, "id"), &id) !=
		    0 || cnt == MAX_DEVICES) {
			free(v);
			return MW_OMEMO_E_DEVICELIST;
		}
		v[cnt++] = id;
	}
	*ids = v;
	*n = cnt;
	return 0;
}

int
mw_omemo2_process_devicelist(struct mw_omemo *o, const char *jid,
    xmpp_stanza_t *list)
{
	uint32_t *ids;
	size_t n;
	int rc;

	if (o == NULL || !omemo_jid_ok(jid) || list == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if ((rc = omemo2_parse_devicelist(list, &ids, &n)) != 0)
		return rc;
	rc = omemo_store_devicelist_v(o, OMEMO_V2, jid, ids, n);
	free(ids);
	return rc;
}

/* <devices xmlns=MW_OMEMO2_NS> with ids[] (this device always included). */
int
omemo2_devicelist_element(struct mw_omemo *o, xmpp_ctx_t *x,
    const uint32_t *ids, size_t n, xmpp_stanza_t **out)
{
	xmpp_stanza_t *l, *d;
	char buf[16];
	bool own = false;

	*out = NULL;
	if ((l = omemo_new_elem(x, "devices", MW_OMEMO2_NS)) == NULL)
		return MW_OMEMO_E_NOMEM;
	for (size_t i = 0; i <= n; i++) {
		uint32_t id;

		if (i < n)
			id = ids[i];
		else if (!own)
			id = o->device_id;
		else
			break;
		if (id == o->device_id) {
			if (own)
				continue;
			own = true;
		}
		(void)snprintf(buf, sizeof(buf), "%u", id);
		if ((d = omemo_new_elem(x, "device", NULL)) == NULL) {
			xmpp_stanza_release(l);
			return MW_OMEMO_E_NOMEM;
		}
		if (xmpp_stanza_set_attribute(d, "id", buf) != XMPP_EOK) {
			xmpp_stanza_release(d);
			xmpp_stanza_release(l);
			return MW_OMEMO_E_NOMEM;
		}
		if (omemo_adopt(l, d) != 0) {
			xmpp_stanza_release(l);
			return MW_OMEMO_E_NOMEM;
		}
	}
	*out = l;
	return 0;
}
