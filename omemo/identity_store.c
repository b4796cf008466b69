/*
 * identity_store.c: libomemo-c's identity store and the device and trust
 * rows behind it (split out of store.c): the own key pair, the pin of each
 * device to one identity key (shared by both OMEMO versions: the key is
 * stored as 0x05 || Curve25519 whichever version brought it), trust per
 * (JID, key), the per-JID caps, the device-list flags of both versions and
 * the version each device last wrote in.
 *
 * Invariants as in store.c: callbacks never begin or end transactions;
 * writes happen only inside ours; a failing statement yields OMEMO_SG_EDB.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "omemo/omemo_int.h"

/* ---- identity store ---- */

static int
id_keypair(signal_buffer **pub, signal_buffer **priv, void *u)
{
	struct mw_omemo *o = u;
	sqlite3_stmt *st;
	signal_buffer *raw = NULL;
	ratchet_identity_key_pair *kp = NULL;
	int rc;

	if (omemo_prep(o, &st, "SELECT keypair FROM omemo_identity WHERE id = 1") != 0)
		return OMEMO_SG_EDB;
	rc = omemo_load_blob(st, 0, &raw);
	omemo_unprep(o, st);
	if (rc <= 0)
		return rc < 0 ? rc : OMEMO_SG_EDB;
	rc = ratchet_identity_key_pair_deserialize(&kp,
	    signal_buffer_data(raw), signal_buffer_len(raw), o->sg);
	signal_buffer_bzero_free(raw);
	if (rc < 0)
		return rc;
	rc = ec_public_key_serialize(pub,
	    ratchet_identity_key_pair_get_public(kp));
	if (rc >= 0) {
		rc = ec_private_key_serialize(priv,
		    ratchet_identity_key_pair_get_private(kp));
		if (rc < 0)
			signal_buffer_free(*pub);
	}
	SIGNAL_UNREF(kp);
	return rc < 0 ? rc : 0;
}

/* OMEMO bundles carry no registration id; the device id stands in. */
static int
id_regid(void *u, uint32_t *regid)
{
	struct mw_omemo *o = u;

	*regid = o->device_id;
	return 0;
}

int
omemo_key_trust(struct mw_omemo *o, const char *jid, const uint8_t *key,
    size_t keylen, enum mw_omemo_trust *t)
{
	sqlite3_stmt *st;
	int rc;

	*t = MW_OMEMO_TRUST_UNDECIDED;
	if (omemo_prep(o, &st, "SELECT trust FROM omemo_trust WHERE jid = ? AND "
	    "identity_key = ?") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, key, (int)keylen, SQLITE_TRANSIENT) !=
	    SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int v = sqlite3_column_int(st, 0);

		if (v == MW_OMEMO_TRUST_VERIFIED || v == MW_OMEMO_TRUST_REVOKED)
			*t = (enum mw_omemo_trust)v;
	}
	omemo_unprep(o, st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : MW_OMEMO_E_DB;
}

int
omemo_device_key(struct mw_omemo *o, const char *jid, uint32_t dev,
    uint8_t key[33])
{
	sqlite3_stmt *st;
	int rc, ret = MW_OMEMO_E_NOT_FOUND;

	if (omemo_prep(o, &st, "SELECT identity_key FROM omemo_devices WHERE "
	    "jid = ? AND device_id = ?") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, dev) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 33) {
		memcpy(key, sqlite3_column_blob(st, 0), 33);
		ret = 0;
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = MW_OMEMO_E_DB;
	omemo_unprep(o, st);
	return ret;
}

/*
 * Trust decision libsignal asks for before building or extending a session:
 * a revoked key never; a device's first key yes (pinned by save_identity);
 * its pinned key yes; a different key only when the owner verified it.
 */
static int
id_is_trusted(const signal_protocol_address *a, uint8_t *key, size_t len,
    void *u)
{
	struct mw_omemo *o = u;
	char *jid;
	uint8_t pinned[33];
	enum mw_omemo_trust t;
	int rc, ret = 0;

	if (len != 33 || (jid = strndup(a->name, a->name_len)) == NULL)
		return len != 33 ? 0 : SG_ERR_NOMEM;
	if (omemo_key_trust(o, jid, key, len, &t) != 0) {
		ret = OMEMO_SG_EDB;
		goto out;
	}
	if (t == MW_OMEMO_TRUST_REVOKED)
		goto out;
	rc = omemo_device_key(o, jid, (uint32_t)a->device_id, pinned);
	if (rc == MW_OMEMO_E_NOT_FOUND)
		ret = 1;
	else if (rc != 0)
		ret = OMEMO_SG_EDB;
	else if (CRYPTO_memcmp(pinned, key, 33) == 0)
		ret = 1;
	else
		ret = t == MW_OMEMO_TRUST_VERIFIED ? 1 : 0;
out:
	free(jid);
	return ret;
}

int
omemo_device_upsert_v(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t dev, int active)
{
	sqlite3_stmt *st;
	int64_t now = omemo_now();

	/* active < 0: leave the flag as it is (a new row starts inactive) */
	if (omemo_prep(o, &st, version == OMEMO_V2 ?
	    "INSERT INTO omemo_devices(jid, device_id, active, active4, "
	    "first_seen, last_seen) VALUES (?1, ?2, 0, max(?3, 0), ?4, ?4) "
	    "ON CONFLICT(jid, device_id) DO UPDATE SET active4 = CASE WHEN "
	    "?3 < 0 THEN active4 ELSE ?3 END, last_seen = ?4" :
	    "INSERT INTO omemo_devices(jid, device_id, active, "
	    "first_seen, last_seen) VALUES (?1, ?2, max(?3, 0), ?4, ?4) "
	    "ON CONFLICT(jid, device_id) DO UPDATE SET active = CASE WHEN "
	    "?3 < 0 THEN active ELSE ?3 END, last_seen = ?4") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, dev) != SQLITE_OK ||
	    sqlite3_bind_int(st, 3, active) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, now) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	return omemo_step_done(o, st) == 0 ? 0 : MW_OMEMO_E_DB;
}

int
omemo_device_version_set(struct mw_omemo *o, const char *jid, uint32_t dev,
    uint32_t version)
{
	sqlite3_stmt *st;

	/* written only on a change: the common case costs a read */
	if (omemo_prep(o, &st, "UPDATE omemo_devices SET reply_version = ?3 "
	    "WHERE jid = ?1 AND device_id = ?2 AND reply_version != ?3") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, dev) != SQLITE_OK ||
	    sqlite3_bind_int(st, 3, version == OMEMO_V2 ? 4 : 3) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	return omemo_step_done(o, st) == 0 ? 0 : MW_OMEMO_E_DB;
}

uint32_t
omemo_device_version(struct mw_omemo *o, const char *jid, uint32_t dev)
{
	sqlite3_stmt *st;
	uint32_t v = OMEMO_V_LEGACY;

	if (omemo_prep(o, &st, "SELECT reply_version FROM omemo_devices WHERE "
	    "jid = ? AND device_id = ?") != 0)
		return v;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, dev) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 4)
		v = OMEMO_V2;
	omemo_unprep(o, st);
	return v;
}

int
omemo_device_upsert(struct mw_omemo *o, const char *jid, uint32_t dev,
    int active)
{
	return omemo_device_upsert_v(o, OMEMO_V_LEGACY, jid, dev, active);
}

/* 1 when `exists_sql` (bound to jid, then blob/int) finds a row, else the
 * count of `count_sql` rows for jid; -1 on a database error. */
static int64_t
cap_count(struct mw_omemo *o, const char *jid, const char *exists_sql,
    const char *count_sql, const uint8_t *key, size_t keylen, uint32_t dev)
{
	sqlite3_stmt *st;
	int rc;
	int64_t n;

	if (omemo_prep(o, &st, exists_sql) != 0)
		return -1;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    (key != NULL ? sqlite3_bind_blob(st, 2, key, (int)keylen,
	    SQLITE_TRANSIENT) : sqlite3_bind_int64(st, 2, dev)) != SQLITE_OK) {
		omemo_unprep(o, st);
		return -1;
	}
	rc = sqlite3_step(st);
	omemo_unprep(o, st);
	if (rc == SQLITE_ROW)
		return 0;	/* already stored: no new row, no cap */
	if (rc != SQLITE_DONE)
		return -1;
	if (omemo_prep(o, &st, count_sql) != 0)
		return -1;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		omemo_unprep(o, st);
		return -1;
	}
	n = sqlite3_column_int64(st, 0);
	omemo_unprep(o, st);
	return n;
}

/*
 * The per-JID caps: a new device row beyond MW_OMEMO_MAX_DEVICES_PER_JID or
 * a new trust row beyond MW_OMEMO_MAX_KEYS_PER_JID is refused
 * (OMEMO_SG_ELIMIT), so no sender can grow the store without bound.
 */
static int
id_caps(struct mw_omemo *o, const char *jid, uint32_t dev, const uint8_t *key,
    size_t len)
{
	int64_t n;

	n = cap_count(o, jid, "SELECT 1 FROM omemo_devices WHERE jid = ? AND "
	    "device_id = ?", "SELECT count(*) FROM omemo_devices WHERE jid = ?",
	    NULL, 0, dev);
	if (n < 0)
		return OMEMO_SG_EDB;
	if (n >= MW_OMEMO_MAX_DEVICES_PER_JID)
		return OMEMO_SG_ELIMIT;
	if (key == NULL)
		return 0;
	n = cap_count(o, jid, "SELECT 1 FROM omemo_trust WHERE jid = ? AND "
	    "identity_key = ?", "SELECT count(*) FROM omemo_trust WHERE jid = ?",
	    key, len, 0);
	if (n < 0)
		return OMEMO_SG_EDB;
	if (n >= MW_OMEMO_MAX_KEYS_PER_JID)
		return OMEMO_SG_ELIMIT;
	return 0;
}

/* Pins address to key (re-pins after a verified change); the key's trust
 * row starts UNDECIDED.  Within the per-JID caps (id_caps). */
static int
id_save(const signal_protocol_address *a, uint8_t *key, size_t len, void *u)
{
	struct mw_omemo *o = u;
	sqlite3_stmt *st;
	char *jid;
	int ret = OMEMO_SG_EDB;

	if (!o->txn)
		return OMEMO_SG_EDB;
	if ((jid = strndup(a->name, a->name_len)) == NULL)
		return SG_ERR_NOMEM;
	if ((ret = id_caps(o, jid, (uint32_t)a->device_id, key, len)) != 0)
		goto out;
	ret = OMEMO_SG_EDB;
	/* a new device row is not in the last list seen until a list says so */
	if (omemo_device_upsert(o, jid, (uint32_t)a->device_id, -1) != 0)
		goto out;
	if (omemo_prep(o, &st, "UPDATE omemo_devices SET identity_key = ? WHERE "
	    "jid = ? AND device_id = ?") != 0)
		goto out;
	if ((key != NULL ? sqlite3_bind_blob(st, 1, key, (int)len,
	    SQLITE_STATIC) : sqlite3_bind_null(st, 1)) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, a->device_id) != SQLITE_OK) {
		omemo_unprep(o, st);
		goto out;
	}
	if (omemo_step_done(o, st) != 0)
		goto out;
	if (key != NULL) {
		if (omemo_prep(o, &st, "INSERT OR IGNORE INTO omemo_trust(jid, "
		    "identity_key, trust, updated) VALUES (?, ?, 0, ?)") != 0)
			goto out;
		if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_bind_blob(st, 2, key, (int)len, SQLITE_STATIC) !=
		    SQLITE_OK ||
		    sqlite3_bind_int64(st, 3, omemo_now()) != SQLITE_OK) {
			omemo_unprep(o, st);
			goto out;
		}
		if (omemo_step_done(o, st) != 0)
			goto out;
	}
	ret = 0;
out:
	free(jid);
	return ret;
}

int
omemo_trusted_devices_v(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t **ids, size_t *n, bool with_session, bool need_verified,
    const uint32_t *named, size_t nnamed)
{
	sqlite3_stmt *st;
	uint32_t *v = NULL, *nv;
	size_t cnt = 0;
	int rc;

	*ids = NULL;
	*n = 0;
	if (omemo_prep(o, &st, version == OMEMO_V2 ?
	    "SELECT d.device_id, t.trust, d.active4 FROM omemo_devices d "
	    "LEFT JOIN omemo_trust t ON t.jid = d.jid AND t.identity_key = "
	    "d.identity_key WHERE d.jid = ? ORDER BY d.device_id" :
	    "SELECT d.device_id, t.trust, d.active FROM omemo_devices d "
	    "LEFT JOIN omemo_trust t ON t.jid = d.jid AND t.identity_key = "
	    "d.identity_key WHERE d.jid = ? ORDER BY d.device_id") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint32_t dev = (uint32_t)sqlite3_column_int64(st, 0);
		int t = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 :
		    sqlite3_column_int(st, 1);
		bool is_named = false;

		for (size_t i = 0; i < nnamed; i++)
			if (named[i] == dev)
				is_named = true;
		/* in the last device list of this version, or asked for */
		if (sqlite3_column_int(st, 2) != 1 && !is_named)
			continue;

		if (need_verified && t != MW_OMEMO_TRUST_VERIFIED)
			continue;
		if (!need_verified && t == MW_OMEMO_TRUST_REVOKED)
			continue;
		if (strcmp(jid, o->jid) == 0 && dev == o->device_id)
			continue;
		if (with_session && !omemo_has_session(o, version, jid, dev))
			continue;
		if ((nv = reallocarray(v, cnt + 1, sizeof(*v))) == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		v = nv;
		v[cnt++] = dev;
	}
	omemo_unprep(o, st);
	if (rc != SQLITE_DONE) {
		free(v);
		return MW_OMEMO_E_DB;
	}
	*ids = v;
	*n = cnt;
	return 0;
}

int
omemo_trusted_devices(struct mw_omemo *o, const char *jid, uint32_t **ids,
    size_t *n, bool with_session, bool need_verified, const uint32_t *named,
    size_t nnamed)
{
	return omemo_trusted_devices_v(o, OMEMO_V_LEGACY, jid, ids, n,
	    with_session, need_verified, named, nnamed);
}

void
omemo_identity_store(struct mw_omemo *o, signal_protocol_identity_key_store *ik)
{
	memset(ik, 0, sizeof(*ik));
	ik->get_identity_key_pair = id_keypair;
	ik->get_local_registration_id = id_regid;
	ik->save_identity = id_save;
	ik->is_trusted_identity = id_is_trusted;
	ik->user_data = o;
}
