/*
 * keys.c: the own key material of an OMEMO device.  Identity key pair and
 * device id (created once), the pool of one-time prekeys (always
 * MW_OMEMO_PREKEYS of them, each replacement with a never used id), and the
 * signed prekey with its rotation schedule (old ones kept for
 * MW_OMEMO_SPK_KEEP_SECS because late PreKeySignalMessages name them).
 *
 * Invariant: functions here that write expect the caller's transaction to
 * be open (o->txn), except omemo_identity_load_or_create which runs its own.
 * Counters live in omemo_meta: next_prekey_id, spk_id, spk_created.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "omemo/omemo_int.h"

static int
load_identity_row(struct mw_omemo *o, char **jid, uint32_t *dev)
{
	sqlite3_stmt *st;
	int rc, ret;

	if (sqlite3_prepare_v2(o->db, "SELECT jid, device_id FROM omemo_identity "
	    "WHERE id = 1", -1, &st, NULL) != SQLITE_OK)
		return MW_OMEMO_E_DB;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*dev = (uint32_t)sqlite3_column_int64(st, 1);
		*jid = strdup((const char *)sqlite3_column_text(st, 0));
		ret = *jid != NULL ? 0 : MW_OMEMO_E_NOMEM;
	} else
		ret = rc == SQLITE_DONE ? MW_OMEMO_E_NOT_FOUND : MW_OMEMO_E_DB;
	sqlite3_finalize(st);
	return ret;
}

static int
new_prekey(struct mw_omemo *o, uint32_t id)
{
	ec_key_pair *kp = NULL;
	session_pre_key *pk = NULL;
	int rc;

	if (curve_generate_key_pair(o->sg, &kp) != 0)
		return MW_OMEMO_E_CRYPTO;
	rc = session_pre_key_create(&pk, id, kp);
	SIGNAL_UNREF(kp);
	if (rc != 0)
		return MW_OMEMO_E_NOMEM;
	rc = signal_protocol_pre_key_store_key(o->store, pk);
	SIGNAL_UNREF(pk);
	return rc == 0 ? 0 : MW_OMEMO_E_DB;
}

/* The next never used prekey id (ids stay below libsignal's 0xFFFFFF). */
static int
next_prekey_id(struct mw_omemo *o, uint32_t *id)
{
	int64_t v = 1;
	int rc;

	rc = omemo_meta_get(o, "next_prekey_id", &v);
	if (rc != 0 && rc != MW_OMEMO_E_NOT_FOUND)
		return rc;
	if (v < 1 || v > PRE_KEY_MEDIUM_MAX_VALUE)
		v = 1;	/* after 16M prekeys: wrap; old ids are long gone */
	*id = (uint32_t)v;
	return omemo_meta_set(o, "next_prekey_id", v + 1);
}

int
omemo_prekey_replace(struct mw_omemo *o)
{
	uint32_t id;
	int rc;

	if ((rc = next_prekey_id(o, &id)) != 0)
		return rc;
	return new_prekey(o, id);
}

static int
count_rows(struct mw_omemo *o, const char *sql, int64_t *n)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(o->db, sql, -1, &st, NULL) != SQLITE_OK)
		return MW_OMEMO_E_DB;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : MW_OMEMO_E_DB;
}

void
omemo_prekey_expiry_note(struct mw_omemo *o, int64_t at)
{
	if (o->prekey_expiry == 0 || at < o->prekey_expiry)
		o->prekey_expiry = at;
}

int
omemo_prekeys_refill(struct mw_omemo *o, int64_t now, bool *changed)
{
	sqlite3_stmt *st;
	int64_t n;
	int rc;

	if (omemo_prep(o, &st, "DELETE FROM omemo_prekeys WHERE used < ?") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_int64(st, 1, now - MW_OMEMO_PREKEY_GRACE_SECS) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	if (omemo_step_done(o, st) != 0)
		return MW_OMEMO_E_DB;
	if ((rc = count_rows(o, "SELECT count(*) FROM omemo_prekeys WHERE "
	    "used IS NULL", &n)) != 0)
		return rc;
	for (; n < MW_OMEMO_PREKEYS; n++) {
		if ((rc = omemo_prekey_replace(o)) != 0)
			return rc;
		*changed = true;
	}
	/* the next deletion is due when the oldest kept use's period ends */
	if ((rc = count_rows(o, "SELECT ifnull(min(used), 0) FROM omemo_prekeys "
	    "WHERE used IS NOT NULL", &n)) != 0)
		return rc;
	o->prekey_expiry = n != 0 ? n + MW_OMEMO_PREKEY_GRACE_SECS + 1 : 0;
	return 0;
}

int
omemo_spk_rotate(struct mw_omemo *o, int64_t now, bool force, bool *changed)
{
	ratchet_identity_key_pair *ikp = NULL;
	session_signed_pre_key *spk = NULL;
	int64_t id = 0, created = 0;
	sqlite3_stmt *st;
	int rc;

	rc = omemo_meta_get(o, "spk_id", &id);
	if (rc != 0 && rc != MW_OMEMO_E_NOT_FOUND)
		return rc;
	if (rc == 0 && (rc = omemo_meta_get(o, "spk_created", &created)) != 0)
		return rc;
	if (id > 0 && !force && now - created < MW_OMEMO_SPK_ROTATE_SECS &&
	    now >= created)
		return 0;
	id = id >= PRE_KEY_MEDIUM_MAX_VALUE ? 1 : id + 1;
	if (signal_protocol_identity_get_key_pair(o->store, &ikp) != 0)
		return MW_OMEMO_E_DB;
	rc = signal_protocol_key_helper_generate_signed_pre_key(&spk, ikp,
	    (uint32_t)id, (uint64_t)now * 1000, o->sg);
	SIGNAL_UNREF(ikp);
	if (rc != 0)
		return MW_OMEMO_E_CRYPTO;
	rc = signal_protocol_signed_pre_key_store_key(o->store, spk);
	SIGNAL_UNREF(spk);
	if (rc != 0)
		return MW_OMEMO_E_DB;
	if ((rc = omemo_meta_set(o, "spk_id", id)) != 0 ||
	    (rc = omemo_meta_set(o, "spk_created", now)) != 0)
		return rc;
	/* Keep the current and the previous one always, others for a while. */
	if (sqlite3_prepare_v2(o->db, "DELETE FROM omemo_signed_prekeys WHERE "
	    "created < ? AND id NOT IN (SELECT id FROM omemo_signed_prekeys "
	    "ORDER BY created DESC, id DESC LIMIT 2)", -1, &st, NULL) !=
	    SQLITE_OK)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_int64(st, 1, now - MW_OMEMO_SPK_KEEP_SECS) != SQLITE_OK) {
		sqlite3_finalize(st);
		return MW_OMEMO_E_DB;
	}
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return MW_OMEMO_E_DB;
	*changed = true;
	return 0;
}

static int
random_device_id(uint32_t *dev)
{
	uint32_t v = 0;

	do {
		if (omemo_random(&v, sizeof(v)) != 0)
			return MW_OMEMO_E_CRYPTO;
		v &= 0x7fffffffu;
	} while (v == 0);
	*dev = v;
	return 0;
}

static int
create_identity(struct mw_omemo *o, const char *jid)
{
	ratchet_identity_key_pair *kp = NULL;
	signal_buffer *ser = NULL;
	sqlite3_stmt *st = NULL;
	bool changed = false;
	int rc;

	if ((rc = random_device_id(&o->device_id)) != 0)
		return rc;
	if (signal_protocol_key_helper_generate_identity_key_pair(&kp, o->sg) != 0)
		return MW_OMEMO_E_CRYPTO;
	rc = ratchet_identity_key_pair_serialize(&ser, kp);
	SIGNAL_UNREF(kp);
	if (rc != 0)
		return MW_OMEMO_E_NOMEM;
	if ((rc = omemo_begin(o)) != 0)
		goto out;
	rc = MW_OMEMO_E_DB;
	if (sqlite3_prepare_v2(o->db, "INSERT INTO omemo_identity(id, jid, "
	    "device_id, keypair, created) VALUES (1, ?, ?, ?, ?)", -1, &st,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, o->device_id) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 3, signal_buffer_data(ser),
	    (int)signal_buffer_len(ser), SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, omemo_now()) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	if ((rc = omemo_spk_rotate(o, omemo_now(), true, &changed)) != 0 ||
	    (rc = omemo_prekeys_refill(o, omemo_now(), &changed)) != 0 ||
	    (rc = omemo_meta_set(o, "bundle_dirty", 1)) != 0)
		goto fail;
	rc = omemo_commit(o);
	goto out;
fail:
	omemo_rollback(o);
out:
	sqlite3_finalize(st);
	signal_buffer_bzero_free(ser);
	return rc;
}

int
omemo_identity_load_or_create(struct mw_omemo *o, const char *own_jid)
{
	char *jid = NULL;
	uint32_t dev = 0;
	int rc;

	/* o->jid is folded (jid.c) whatever the config or an older release
	 * wrote: stanzas carry it that way */
	rc = load_identity_row(o, &jid, &dev);
	if (rc == MW_OMEMO_E_NOT_FOUND) {
		if (own_jid == NULL)
			return MW_OMEMO_E_NO_IDENTITY;
		if ((o->jid = strdup(own_jid)) == NULL)
			return MW_OMEMO_E_NOMEM;
		mw_omemo_jid_fold(o->jid);
		return create_identity(o, o->jid);
	}
	if (rc != 0)
		return rc;
	if (own_jid != NULL && !mw_omemo_jid_equal(own_jid, jid)) {
		free(jid);
		return MW_OMEMO_E_WRONG_JID;
	}
	mw_omemo_jid_fold(jid);
	o->jid = jid;
	o->device_id = dev;
	return 0;
}

int
omemo_own_identity_pub(struct mw_omemo *o, uint8_t pub[33])
{
	ratchet_identity_key_pair *kp = NULL;
	signal_buffer *b = NULL;
	int rc;

	if (signal_protocol_identity_get_key_pair(o->store, &kp) != 0)
		return MW_OMEMO_E_DB;
	rc = ec_public_key_serialize(&b, ratchet_identity_key_pair_get_public(kp));
	SIGNAL_UNREF(kp);
	if (rc != 0)
		return MW_OMEMO_E_NOMEM;
	if (signal_buffer_len(b) != 33) {
		signal_buffer_free(b);
		return MW_OMEMO_E_CRYPTO;
	}
	memcpy(pub, signal_buffer_data(b), 33);
	signal_buffer_free(b);
	return 0;
}

int
mw_omemo_maintain(struct mw_omemo *o, int64_t now, bool *changed)
{
	int64_t dirty = 0;
	int rc;

	*changed = false;
	if ((rc = omemo_begin(o)) != 0)
		return rc;
	if ((rc = omemo_spk_rotate(o, now, false, changed)) != 0 ||
	    (rc = omemo_prekeys_refill(o, now, changed)) != 0) {
		omemo_rollback(o);
		return rc;
	}
	rc = omemo_meta_get(o, "bundle_dirty", &dirty);
	if (rc != 0 && rc != MW_OMEMO_E_NOT_FOUND) {
		omemo_rollback(o);
		return rc;
	}
	if (dirty)
		*changed = true;
	if ((rc = omemo_commit(o)) != 0)
		return rc;
	o->last_maintain = now;
	return 0;
}

int64_t
mw_omemo_maintain_due(const struct mw_omemo *o)
{
	int64_t due = o->last_maintain + MW_OMEMO_MAINTAIN_EVERY;

	return o->prekey_expiry != 0 && o->prekey_expiry < due ?
	    o->prekey_expiry : due;
}

/* ---- fingerprints ---- */

int
mw_omemo_fp_from_key(const uint8_t *key, size_t len, char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	if (len == 33 && key[0] == 0x05) {
		key++;
		len--;
	}
	if (len != 32)
		return MW_OMEMO_E_INVAL;
	for (size_t i = 0; i < 32; i++) {
		fp[2 * i] = hex[key[i] >> 4];
		fp[2 * i + 1] = hex[key[i] & 15];
	}
	fp[64] = '\0';
	return 0;
}

void
mw_omemo_fp_group(const char fp[MW_OMEMO_FP_HEXLEN + 1], char sep, char out[72])
{
	size_t w = 0;

	for (size_t i = 0; i < 64 && fp[i] != '\0'; i++) {
		if (i > 0 && i % 8 == 0)
			out[w++] = sep;
		out[w++] = fp[i];
	}
	out[w] = '\0';
}

int
mw_omemo_fp_parse(const char *text, char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	size_t n = 0;

	if (text == NULL)
		return MW_OMEMO_E_FINGERPRINT;
	for (const char *p = text; *p; p++) {
		char c = *p;

		if (c == '-' || c == ' ' || c == ':')
			continue;
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) ||
		    n == 64)
			return MW_OMEMO_E_FINGERPRINT;
		fp[n++] = c;
	}
	/* 66 digits would be the 0x05-prefixed form; we do not accept it:
	 * one canonical form avoids two spellings of one key. */
	if (n != 64)
		return MW_OMEMO_E_FINGERPRINT;
	fp[64] = '\0';
	return 0;
}

/* The 33-byte key (0x05 || 32) of a canonical fingerprint. */
int
omemo_fp_to_key(const char *fp, uint8_t key[33])
{
	key[0] = 0x05;
	for (size_t i = 0; i < 32; i++) {
		unsigned v;

		if (sscanf(fp + 2 * i, "%2x", &v) != 1)
			return MW_OMEMO_E_FINGERPRINT;
		key[1 + i] = (uint8_t)v;
	}
	return 0;
}

int
mw_omemo_own_fingerprint(struct mw_omemo *o, char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t pub[33];
	int rc;

	if ((rc = omemo_own_identity_pub(o, pub)) != 0)
		return rc;
	return mw_omemo_fp_from_key(pub, 33, fp);
}

/* ---- the OMEMO 2 (Ed25519) rendering of the same identity ---- */

int
mw_omemo_fp_ed25519(const char fp[MW_OMEMO_FP_HEXLEN + 1],
    char ed[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t key[33];
	ec_public_key *k = NULL;
	signal_buffer *b;
	int rc;

	if ((rc = omemo_fp_to_key(fp, key)) != 0)
		return rc;
	if (curve_decode_point(&k, key, 33, NULL) != 0)
		return MW_OMEMO_E_FINGERPRINT;
	b = ec_public_key_get_ed(k);	/* sign bit 0, as libomemo-c sends it */
	SIGNAL_UNREF(k);
	if (b == NULL)
		return MW_OMEMO_E_NOMEM;
	rc = mw_omemo_fp_from_key(signal_buffer_data(b), signal_buffer_len(b),
	    ed);
	signal_buffer_free(b);
	return rc;
}

/* fp read as an Ed25519 key: its Curve25519 rendering (any sign bit). */
static int
fp_from_ed(const char fp[MW_OMEMO_FP_HEXLEN + 1],
    char out[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t key[33];
	ec_public_key *k = NULL;
	signal_buffer *b = NULL;
	int rc;

	if ((rc = omemo_fp_to_key(fp, key)) != 0)
		return rc;
	if (curve_decode_point_ed(&k, key + 1, 32, NULL) != 0)
		return MW_OMEMO_E_FINGERPRINT;
	rc = ec_public_key_serialize(&b, k) == 0 ? mw_omemo_fp_from_key(
	    signal_buffer_data(b), signal_buffer_len(b), out) : MW_OMEMO_E_NOMEM;
	signal_buffer_free(b);
	SIGNAL_UNREF(k);
	return rc;
}

/* 1 when jid has a device pinned to, or a trust row for, the key of fp. */
static int
fp_known(struct mw_omemo *o, const char *jid,
    const char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t key[33];
	sqlite3_stmt *st;
	int rc;

	if (omemo_fp_to_key(fp, key) != 0)
		return 0;
	if (sqlite3_prepare_v2(o->db, "SELECT 1 FROM omemo_trust WHERE jid = ?1 "
	    "AND identity_key = ?2 UNION ALL SELECT 1 FROM omemo_devices WHERE "
	    "jid = ?1 AND identity_key = ?2", -1, &st, NULL) != SQLITE_OK)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, key, 33, SQLITE_STATIC) != SQLITE_OK)
		rc = MW_OMEMO_E_DB;
	else if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = 1;
	else
		rc = rc == SQLITE_DONE ? 0 : MW_OMEMO_E_DB;
	sqlite3_finalize(st);
	return rc;
}

int
mw_omemo_fp_resolve(struct mw_omemo *o, const char *jid,
    const char fp[MW_OMEMO_FP_HEXLEN + 1], char out[MW_OMEMO_FP_HEXLEN + 1],
    bool *seen)
{
	char alt[MW_OMEMO_FP_HEXLEN + 1];
	int rc;

	*seen = false;
	if (o == NULL || !omemo_jid_ok(jid))
		return MW_OMEMO_E_INVAL;
	memcpy(out, fp, MW_OMEMO_FP_HEXLEN + 1);
	if ((rc = fp_known(o, jid, fp)) < 0)
		return rc;
	if (rc == 1) {
		*seen = true;
		return 0;
	}
	if (fp_from_ed(fp, alt) != 0)
		return 0;	/* not an Ed25519 point: the Curve25519 reading */
	if ((rc = fp_known(o, jid, alt)) < 0)
		return rc;
	if (rc == 1) {
		memcpy(out, alt, sizeof(alt));
		*seen = true;
	}
	return 0;
}

int
omemo_fp_ed_reading(const char fp[MW_OMEMO_FP_HEXLEN + 1], uint8_t key[33])
{
	char alt[MW_OMEMO_FP_HEXLEN + 1];
	int rc;

	if ((rc = fp_from_ed(fp, alt)) != 0)
		return rc;
	return omemo_fp_to_key(alt, key);
}
