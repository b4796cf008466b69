/*
 * bundle.c: the PEP payloads of legacy OMEMO.  Builds this device's
 * <bundle/> (children in the order python-oldmemo validates:
 * signedPreKeyPublic, signedPreKeySignature, identityKey, prekeys) and
 * parses peers' bundles into sessions, and parses <list/> device lists into
 * the omemo_devices cache.
 *
 * Invariants: a peer bundle is fully parsed and every key decoded before
 * anything is written; session building runs in one transaction that is
 * rolled back on any failure (bad signature, changed identity).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "omemo/omemo_int.h"

#define MAX_BUNDLE_PREKEYS	1000
#define MAX_DEVICES		256

int
omemo_add_b64_elem(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name,
    const char *attr, uint32_t id, const uint8_t *p, size_t n)
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
	if (attr != NULL && xmpp_stanza_set_attribute(e, attr, ids) != XMPP_EOK) {
		xmpp_stanza_release(e);
		return MW_OMEMO_E_NOMEM;
	}
	return omemo_adopt(parent, e);
}

static int
add_pub(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name,
    const char *attr, uint32_t id, ec_public_key *k)
{
	signal_buffer *b = NULL;
	int rc;

	if (ec_public_key_serialize(&b, k) != 0)
		return MW_OMEMO_E_NOMEM;
	rc = omemo_add_b64_elem(x, parent, name, attr, id, signal_buffer_data(b),
	    signal_buffer_len(b));
	signal_buffer_free(b);
	return rc;
}

int
mw_omemo_bundle_element(struct mw_omemo *o, xmpp_ctx_t *x, xmpp_stanza_t **out)
{
	xmpp_stanza_t *bundle = NULL, *pks;
	session_signed_pre_key *spk = NULL;
	sqlite3_stmt *st = NULL;
	uint8_t ik[33];
	int64_t spk_id;
	int rc;

	*out = NULL;
	if ((rc = omemo_meta_get(o, "spk_id", &spk_id)) != 0)
		return rc == MW_OMEMO_E_NOT_FOUND ? MW_OMEMO_E_DB : rc;
	if (signal_protocol_signed_pre_key_load_key(o->store, &spk,
	    (uint32_t)spk_id) != 0)
		return MW_OMEMO_E_DB;
	if ((rc = omemo_own_identity_pub(o, ik)) != 0)
		goto out;
	rc = MW_OMEMO_E_NOMEM;
	if ((bundle = omemo_new_elem(x, "bundle", MW_OMEMO_NS)) == NULL)
		goto out;
	if ((rc = add_pub(x, bundle, "signedPreKeyPublic", "signedPreKeyId",
	    (uint32_t)spk_id, ec_key_pair_get_public(
	    session_signed_pre_key_get_key_pair(spk)))) != 0 ||
	    (rc = omemo_add_b64_elem(x, bundle, "signedPreKeySignature", NULL, 0,
	    session_signed_pre_key_get_signature(spk),
	    session_signed_pre_key_get_signature_len(spk))) != 0 ||
	    (rc = omemo_add_b64_elem(x, bundle, "identityKey", NULL, 0, ik, 33)) != 0)
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
		rc = add_pub(x, pks, "preKeyPublic", "preKeyId",
		    session_pre_key_get_id(pk),
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
	return rc;
}

/* Decodes the base64 text of e into a 33-byte public key. */
static int
decode_pub(struct mw_omemo *o, xmpp_stanza_t *e, ec_public_key **k)
{
	char *s;
	uint8_t *raw = NULL;
	size_t n = 0;
	int rc;

	*k = NULL;
	if (e == NULL || (s = xmpp_stanza_get_text(e)) == NULL)
		return MW_OMEMO_E_BUNDLE;
	rc = omemo_b64_decode(s, &raw, &n, 64);
	xmpp_free(xmpp_stanza_get_context(e), s);
	if (rc != 0)
		return rc == MW_OMEMO_E_NOMEM ? rc : MW_OMEMO_E_BUNDLE;
	if (n != 33 || curve_decode_point(k, raw, n, o->sg) != 0)
		rc = MW_OMEMO_E_BUNDLE;
	free(raw);
	return rc;
}

int
omemo_attr_id(xmpp_stanza_t *e, const char *name, uint32_t *v)
{
	const char *s = xmpp_stanza_get_attribute(e, name);
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

/* Accepts the element named `want`, or a wrapper around it (<pubsub>,
 * <items>, <item>) up to 6 levels deep, following first children only;
 * an RSM <set> (ejabberd puts one before <items>) is skipped. */
xmpp_stanza_t *
omemo_find_named(xmpp_stanza_t *s, const char *want)
{
	const char *name;

	for (int depth = 0; s != NULL && depth < 6; depth++) {
		name = xmpp_stanza_get_name(s);
		if (name != NULL && strcmp(name, want) == 0)
			return s;
		s = xmpp_stanza_get_children(s);
		while (s != NULL && (!xmpp_stanza_is_tag(s) ||
		    (xmpp_stanza_get_ns(s) != NULL &&
		    strcmp(xmpp_stanza_get_ns(s), "http://jabber.org/protocol/rsm") == 0)))
			s = xmpp_stanza_get_next(s);
	}
	return NULL;
}

/* The <bundle xmlns=ns> in el, after the checks both versions make. */
int
omemo_bundle_find(struct mw_omemo *o, const char *jid, uint32_t dev,
    xmpp_stanza_t *el, const char *ns, xmpp_stanza_t **b)
{
	if (o == NULL || !omemo_jid_ok(jid) || dev == 0 || dev > 0x7fffffff ||
	    el == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if (strcmp(jid, o->jid) == 0 && dev == o->device_id)
		return MW_OMEMO_E_OWN_DEVICE;
	if ((*b = omemo_find_named(el, "bundle")) == NULL ||
	    xmpp_stanza_get_ns(*b) == NULL ||
	    strcmp(xmpp_stanza_get_ns(*b), ns) != 0)
		return MW_OMEMO_E_BUNDLE;
	return 0;
}

/* One prekey of the bundle's <prekeys>, uniformly at random (reservoir
 * sampling), at most MAX_BUNDLE_PREKEYS of them. */
int
omemo_bundle_pick(xmpp_stanza_t *b, const char *name, const char *idattr,
    xmpp_stanza_t **chosen, uint32_t *id)
{
	xmpp_stanza_t *pks, *e;
	size_t npk = 0;
	uint32_t r;

	*chosen = NULL;
	if ((pks = xmpp_stanza_get_child_by_name(b, "prekeys")) == NULL)
		return MW_OMEMO_E_BUNDLE;
	for (e = xmpp_stanza_get_children(pks); e != NULL;
	    e = xmpp_stanza_get_next(e)) {
		if (!xmpp_stanza_is_tag(e) ||
		    strcmp(xmpp_stanza_get_name(e), name) != 0)
			continue;
		if (++npk > MAX_BUNDLE_PREKEYS)
			return MW_OMEMO_E_BUNDLE;
		if (omemo_random(&r, sizeof(r)) != 0)
			return MW_OMEMO_E_CRYPTO;
		if (r % npk == 0)
			*chosen = e;
	}
	if (*chosen == NULL || omemo_attr_id(*chosen, idattr, id) != 0)
		return MW_OMEMO_E_BUNDLE;
	return 0;
}

/* The session of the given version with jid/dev from decoded bundle keys,
 * in one transaction (rolled back on failure). */
int
omemo_bundle_session(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t dev, uint32_t pk_id, ec_public_key *pk, uint32_t spk_id,
    ec_public_key *spk, const uint8_t *sig, size_t siglen, ec_public_key *ik)
{
	session_pre_key_bundle *bundle = NULL;
	session_builder *builder = NULL;
	signal_protocol_address a = { jid, strlen(jid), (int32_t)dev };
	int rc;

	if (session_pre_key_bundle_create(&bundle, 0, (int)dev, pk_id, pk,
	    spk_id, spk, sig, siglen, ik) != 0)
		return MW_OMEMO_E_NOMEM;
	if (session_builder_create(&builder, version == OMEMO_V2 ? o->store4 :
	    o->store, &a, o->sg) != 0) {
		rc = MW_OMEMO_E_NOMEM;
		goto out;
	}
	if (version == OMEMO_V2)
		session_builder_set_version(builder, OMEMO_V2);
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	rc = session_builder_process_pre_key_bundle(builder, bundle);
	if (rc != 0) {
		omemo_rollback(o);
		/* libsignal reports a bad signed-prekey signature as INVALID_KEY */
		rc = rc == SG_ERR_INVALID_KEY ? MW_OMEMO_E_BUNDLE_SIG :
		    omemo_map_sg(rc);
		goto out;
	}
	rc = omemo_commit(o);
out:
	if (builder != NULL)
		session_builder_free(builder);
	SIGNAL_UNREF(bundle);
	return rc;
}

int
mw_omemo_process_bundle(struct mw_omemo *o, const char *jid, uint32_t dev,
    xmpp_stanza_t *el)
{
	xmpp_stanza_t *b, *e, *chosen = NULL;
	ec_public_key *spk = NULL, *ik = NULL, *pk = NULL;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	uint32_t spk_id, pk_id = 0;
	char *s;
	int rc;

	if ((rc = omemo_bundle_find(o, jid, dev, el, MW_OMEMO_NS, &b)) != 0)
		return rc;
	e = xmpp_stanza_get_child_by_name(b, "signedPreKeyPublic");
	if (e == NULL || omemo_attr_id(e, "signedPreKeyId", &spk_id) != 0)
		return MW_OMEMO_E_BUNDLE;
	if ((rc = decode_pub(o, e, &spk)) != 0)
		goto out;
	if ((e = xmpp_stanza_get_child_by_name(b, "signedPreKeySignature")) ==
	    NULL || (s = xmpp_stanza_get_text(e)) == NULL) {
		rc = MW_OMEMO_E_BUNDLE;
		goto out;
	}
	rc = omemo_b64_decode(s, &sig, &siglen, 256);
	xmpp_free(xmpp_stanza_get_context(e), s);
	if (rc != 0 || siglen != CURVE_SIGNATURE_LEN) {
		rc = rc == MW_OMEMO_E_NOMEM ? rc : MW_OMEMO_E_BUNDLE;
		goto out;
	}
	if ((rc = decode_pub(o, xmpp_stanza_get_child_by_name(b, "identityKey"),
	    &ik)) != 0)
		goto out;
	if ((rc = omemo_bundle_pick(b, "preKeyPublic", "preKeyId", &chosen,
	    &pk_id)) != 0 || (rc = decode_pub(o, chosen, &pk)) != 0)
		goto out;
	rc = omemo_bundle_session(o, OMEMO_V_LEGACY, jid, dev, pk_id, pk,
	    spk_id, spk, sig, siglen, ik);
out:
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ik);
	SIGNAL_UNREF(pk);
	free(sig);
	return rc;
}

/* ---- device lists ---- */

int
omemo_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n)
{
	return omemo_parse_devicelist_v(el, "list", MW_OMEMO_NS, ids, n);
}

/* <name xmlns=ns><device id/>...: the ids (a label is the owner's name
 * for the device: not used) */
int
omemo_parse_devicelist_v(xmpp_stanza_t *el, const char *name, const char *ns,
    uint32_t **ids, size_t *n)
{
	xmpp_stanza_t *l, *e;
	uint32_t *v, id;
	size_t cnt = 0;

	*ids = NULL;
	*n = 0;
	if ((l = omemo_find_named(el, name)) == NULL ||
	    xmpp_stanza_get_ns(l) == NULL ||
	    strcmp(xmpp_stanza_get_ns(l), ns) != 0)
		return MW_OMEMO_E_DEVICELIST;
	if ((v = calloc(MAX_DEVICES, sizeof(*v))) == NULL)
		return MW_OMEMO_E_NOMEM;
	for (e = xmpp_stanza_get_children(l); e != NULL;
	    e = xmpp_stanza_get_next(e)) {
		if (!xmpp_stanza_is_tag(e) ||
		    strcmp(xmpp_stanza_get_name(e), "device") != 0)
			continue;
		if (omemo_parse_devid(xmpp_stanza_get_attribute(e, "id"), &id) != 0 ||
		    cnt == MAX_DEVICES) {
			free(v);
			return MW_OMEMO_E_DEVICELIST;
		}
		v[cnt++] = id;
	}
	*ids = v;
	*n = cnt;
	return 0;
}

/* *out = 1 when jid/dev has a row, 0 when a new row fits under
 * MW_OMEMO_MAX_DEVICES_PER_JID, -1 when it would not. */
static int
device_rows(struct mw_omemo *o, const char *jid, uint32_t dev, int64_t *out)
{
	sqlite3_stmt *st;
	int64_t exists, count;

	if (omemo_prep(o, &st, "SELECT (SELECT count(*) FROM omemo_devices "
	    "WHERE jid = ?1 AND device_id = ?2), (SELECT count(*) FROM "
	    "omemo_devices WHERE jid = ?1)") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, dev) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	exists = sqlite3_column_int64(st, 0);
	count = sqlite3_column_int64(st, 1);
	omemo_unprep(o, st);
	*out = exists > 0 ? 1 : count < MW_OMEMO_MAX_DEVICES_PER_JID ? 0 : -1;
	return 0;
}

/*
 * *same = whether the devices of jid marked in this version's list are
 * exactly the set ids.  A fan-out re-reads each target's list on every
 * send, and it rarely changes: storing it again would take the write lock
 * and write the same flags back.  Lists longer than the per-JID cap never
 * match (the full store applies the cap).
 */
static int
devicelist_unchanged(struct mw_omemo *o, uint32_t version, const char *jid,
    const uint32_t *ids, size_t n, bool *same)
{
	sqlite3_stmt *st;
	size_t rows = 0, distinct = 0;
	bool all_listed = true;
	int rc;

	*same = false;
	if (n > MW_OMEMO_MAX_DEVICES_PER_JID)
		return 0;
	if (omemo_prep(o, &st, version == OMEMO_V2 ?
	    "SELECT device_id FROM omemo_devices WHERE jid = ? AND active4 = 1" :
	    "SELECT device_id FROM omemo_devices WHERE jid = ? AND active = 1") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint32_t dev = (uint32_t)sqlite3_column_int64(st, 0);
		bool listed = false;

		rows++;
		for (size_t i = 0; i < n && !listed; i++)
			listed = ids[i] == dev;
		all_listed = all_listed && listed;
	}
	omemo_unprep(o, st);
	if (rc != SQLITE_DONE)
		return MW_OMEMO_E_DB;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		for (size_t j = 0; j < i && !dup; j++)
			dup = ids[j] == ids[i];
		distinct += dup ? 0 : 1;
	}
	/* every marked device is listed, and there are as many of them as
	 * distinct ids listed: the same set */
	*same = all_listed && rows == distinct;
	return 0;
}

/* The device list of jid in this version is ids: their rows marked, the
 * others unmarked; nothing is written when that is so already
 * (omemo_devices.last_seen is then the last store that changed a flag). */
int
omemo_store_devicelist_v(struct mw_omemo *o, uint32_t version,
    const char *jid, const uint32_t *ids, size_t n)
{
	sqlite3_stmt *st;
	bool same;
	int rc;

	if ((rc = devicelist_unchanged(o, version, jid, ids, n, &same)) != 0)
		return rc;
	if (same)
		return 0;
	if ((rc = omemo_begin(o)) != 0)
		return rc;
	if (omemo_prep(o, &st, version == OMEMO_V2 ?
	    "UPDATE omemo_devices SET active4 = 0 WHERE jid = ?" :
	    "UPDATE omemo_devices SET active = 0 WHERE jid = ?") != 0) {
		omemo_rollback(o);
		return MW_OMEMO_E_DB;
	}
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		omemo_unprep(o, st);
		omemo_rollback(o);
		return MW_OMEMO_E_DB;
	}
	omemo_unprep(o, st);
	/* Bounded: rows of devices that left both lists and hold nothing (no
	 * pinned key, no session of either version) are forgotten, and at most
	 * MW_OMEMO_MAX_DEVICES_PER_JID rows are kept for jid (this device
	 * always, for the own list): a list of thousands stores no more. */
	if (omemo_prep(o, &st, "DELETE FROM omemo_devices WHERE jid = ?1 "
	    "AND active = 0 AND active4 = 0 AND identity_key IS NULL AND NOT "
	    "EXISTS (SELECT 1 FROM omemo_sessions s WHERE s.jid = ?1 AND "
	    "s.device_id = omemo_devices.device_id) AND NOT EXISTS (SELECT 1 "
	    "FROM omemo_sessions_v4 s WHERE s.jid = ?1 AND s.device_id = "
	    "omemo_devices.device_id)") != 0) {
		omemo_rollback(o);
		return MW_OMEMO_E_DB;
	}
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		omemo_unprep(o, st);
		omemo_rollback(o);
		return MW_OMEMO_E_DB;
	}
	omemo_unprep(o, st);
	for (size_t i = 0; i < n; i++) {
		bool own = strcmp(jid, o->jid) == 0 && ids[i] == o->device_id;
		int64_t have = 0;

		if (!own && (rc = device_rows(o, jid, ids[i], &have)) != 0) {
			omemo_rollback(o);
			return rc;
		}
		if (have < 0)
			continue;	/* over the cap: not stored */
		if ((rc = omemo_device_upsert_v(o, version, jid, ids[i], 1)) !=
		    0) {
			omemo_rollback(o);
			return rc;
		}
	}
	return omemo_commit(o);
}

int
omemo_store_devicelist(struct mw_omemo *o, const char *jid,
    const uint32_t *ids, size_t n)
{
	return omemo_store_devicelist_v(o, OMEMO_V_LEGACY, jid, ids, n);
}

int
mw_omemo_process_devicelist(struct mw_omemo *o, const char *jid,
    xmpp_stanza_t *list)
{
	uint32_t *ids;
	size_t n;
	int rc;

	if (o == NULL || !omemo_jid_ok(jid) || list == NULL)
		return MW_OMEMO_E_INVAL;
	if (o->txn)
		return MW_OMEMO_E_TXN;
	if ((rc = omemo_parse_devicelist(list, &ids, &n)) != 0)
		return rc;
	rc = omemo_store_devicelist(o, jid, ids, n);
	free(ids);
	return rc;
}

/* <list xmlns=NS> with ids[] (this device always included). */
int
omemo_devicelist_element(struct mw_omemo *o, xmpp_ctx_t *x,
    const uint32_t *ids, size_t n, xmpp_stanza_t **out)
{
	return omemo_devicelist_element_v(o, x, "list", MW_OMEMO_NS, ids, n,
	    out);
}

/* <name xmlns=ns> with ids[] (this device always included, once). */
int
omemo_devicelist_element_v(struct mw_omemo *o, xmpp_ctx_t *x,
    const char *name, const char *ns, const uint32_t *ids, size_t n,
    xmpp_stanza_t **out)
{
	xmpp_stanza_t *l, *d;
	char buf[16];
	bool own = false;

	*out = NULL;
	if ((l = omemo_new_elem(x, name, ns)) == NULL)
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
