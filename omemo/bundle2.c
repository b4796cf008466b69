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


/* 32-byte X25519 form */
static int
add_mont(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name, uint32_t id,
    ec_public_key *k)
{
	signal_buffer *b = NULL;
	int rc;

	if (ec_public_key_serialize_omemo(&b, k) != 0)
		return MW_OMEMO_E_NOMEM;
	rc = signal_buffer_len(b) == 32 ? omemo_add_b64_elem(x, parent, name, "id", id,
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
	    (rc = omemo_add_b64_elem(x, bundle, "spks", NULL, 0,
	    session_signed_pre_key_get_signature_omemo(spk),
	    CURVE_SIGNATURE_LEN)) != 0 ||
	    (rc = omemo_add_b64_elem(x, bundle, "ik", NULL, 0, ed, 32)) != 0)
		goto out;
	if ((rc = omemo_adopt(bundle, omemo_new_elem(x, "prekeys", NULL))) != 0)
		goto out;
	pks = xmpp_stanza_get_child_by_name(bundle, "prekeys");
	rc = MW_OMEMO_E_DB;
	if (sqlite3_prepare_v2(o->db, "SELECT id, record FROM omemo_prekeys "
	    "WHERE used IS NULL ORDER BY id", -1, &st, NULL) != SQLITE_OK)
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

int
mw_omemo2_process_bundle(struct mw_omemo *o, const char *jid, uint32_t dev,
    xmpp_stanza_t *el)
{
	xmpp_stanza_t *b, *e, *chosen = NULL;
	ec_public_key *spk = NULL, *ik = NULL, *pk = NULL;
	uint8_t sig[CURVE_SIGNATURE_LEN], ed[32];
	uint32_t spk_id, pk_id = 0;
	int rc;

	if ((rc = omemo_bundle_find(o, jid, dev, el, MW_OMEMO2_NS, &b)) != 0)
		return rc;
	e = xmpp_stanza_get_child_by_name(b, "spk");
	if (e == NULL || omemo_attr_id(e, "id", &spk_id) != 0)
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
	if ((rc = omemo_bundle_pick(b, "pk", "id", &chosen, &pk_id)) != 0 ||
	    (rc = mont_of(o, chosen, &pk)) != 0)
		goto out;
	rc = omemo_bundle_session(o, OMEMO_V2, jid, dev, pk_id, pk, spk_id,
	    spk, sig, sizeof(sig), ik);
out:
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ik);
	SIGNAL_UNREF(pk);
	return rc;
}

/* ---- the OMEMO 2 device list: <devices><device id label?/></devices> ---- */

int
omemo2_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n)
{
	return omemo_parse_devicelist_v(el, "devices", MW_OMEMO2_NS, ids, n);
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
	return omemo_devicelist_element_v(o, x, "devices", MW_OMEMO2_NS, ids, n,
	    out);
}
