/*
 * context.c: life cycle of struct mw_omemo, error names, and the trust and
 * device queries the CLI and the agent's policy use.
 *
 * Invariant: a context always has a loaded identity (jid, device id) and a
 * registered libsignal store; open fails otherwise and leaves nothing behind
 * but what it committed (schema, a new identity).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "omemo/omemo_int.h"

const char *
mw_omemo_strerror(int err)
{
	switch ((enum mw_omemo_err)err) {
	case MW_OMEMO_OK: return "success";
	case MW_OMEMO_DROPPED: return "key-transport message handled";
	case MW_OMEMO_E_NOMEM: return "out of memory";
	case MW_OMEMO_E_INVAL: return "invalid argument";
	case MW_OMEMO_E_DB: return "database error";
	case MW_OMEMO_E_CRYPTO: return "cryptographic library failure";
	case MW_OMEMO_E_TXN: return "transaction state does not allow this";
	case MW_OMEMO_E_NO_IDENTITY: return "no OMEMO identity in this database";
	case MW_OMEMO_E_WRONG_JID: return "database belongs to another JID";
	case MW_OMEMO_E_MALFORMED: return "malformed encrypted element";
	case MW_OMEMO_E_BASE64: return "bad base64";
	case MW_OMEMO_E_NOT_FOR_US: return "no key for this device";
	case MW_OMEMO_E_KEY_TRUNCATED: return "truncated key material";
	case MW_OMEMO_E_BAD_TAG: return "payload authentication failed (GCM tag)";
	case MW_OMEMO_E_PREKEY: return "unknown or already used prekey";
	case MW_OMEMO_E_DUPLICATE: return "duplicate or replayed message";
	case MW_OMEMO_E_BAD_MESSAGE: return "invalid Signal message";
	case MW_OMEMO_E_NO_SESSION: return "no session with the sending device";
	case MW_OMEMO_E_UNTRUSTED: return "untrusted identity (changed or revoked)";
	case MW_OMEMO_E_BUNDLE_SIG: return "bundle signature invalid";
	case MW_OMEMO_E_BUNDLE: return "malformed bundle";
	case MW_OMEMO_E_DEVICELIST: return "malformed device list";
	case MW_OMEMO_E_OVERSIZE: return "stanza or message too large";
	case MW_OMEMO_E_NO_DEVICES: return "no trusted device to encrypt to";
	case MW_OMEMO_E_OWN_DEVICE: return "message from this device";
	case MW_OMEMO_E_IQ: return "server returned an error";
	case MW_OMEMO_E_TIMEOUT: return "server did not answer in time";
	case MW_OMEMO_E_FINGERPRINT: return "malformed fingerprint";
	case MW_OMEMO_E_NOT_FOUND: return "not found";
	case MW_OMEMO_E_NOT_ENCRYPTED: return "message is not OMEMO encrypted";
	case MW_OMEMO_E_OFFLINE: return "no network transport";
	case MW_OMEMO_E_CONFIG: return "bad account settings";
	case MW_OMEMO_E_CERT_PIN: return "server certificate does not match cert_pin_sha256";
	case MW_OMEMO_E_CERT_UNTRUSTED: return "server certificate not trusted (set ca_file or cert_pin_sha256)";
	case MW_OMEMO_E_LIMIT: return "too many devices or identity keys for this JID";
	case MW_OMEMO_E_SCE: return "OMEMO 2 envelope malformed or not addressed as the stanza";
	case MW_OMEMO_E_VERSION: return "the recipient does not offer the OMEMO version asked for";
	}
	return "unknown error";
}

const char *
mw_omemo_trust_name(enum mw_omemo_trust t)
{
	switch (t) {
	case MW_OMEMO_TRUST_UNDECIDED: return "undecided";
	case MW_OMEMO_TRUST_VERIFIED: return "verified";
	case MW_OMEMO_TRUST_REVOKED: return "revoked";
	}
	return "unknown";
}

int
mw_omemo_db_open(const char *path, bool create, sqlite3 **out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool wal = false;

	*out = NULL;
	if (path == NULL)
		return MW_OMEMO_E_INVAL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    (create ? SQLITE_OPEN_CREATE : 0), NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) !=
	    SQLITE_OK)
		goto fail;
	/* The pragma answers the mode in force: anything but "wal" is a
	 * refusal (e.g. a read-only directory). */
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
		wal = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	if (sqlite3_finalize(st) != SQLITE_OK || !wal)
		goto fail;
	if (omemo_exec(db, "PRAGMA synchronous=NORMAL") != 0)
		goto fail;
	*out = db;
	return 0;
fail:
	(void)sqlite3_close(db);	/* NULL is a no-op */
	return MW_OMEMO_E_DB;
}

int
mw_omemo_open(struct mw_omemo **out, sqlite3 *db, const char *own_jid)
{
	struct mw_omemo *o;
	int rc;

	*out = NULL;
	if (db == NULL || (own_jid != NULL && !omemo_jid_ok(own_jid)))
		return MW_OMEMO_E_INVAL;
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return MW_OMEMO_E_NOMEM;
	o->db = db;
	o->iq_timeout_ms = MW_OMEMO_IQ_TIMEOUT_MS;
	o->republish_ms = MW_OMEMO_REPUBLISH_MIN_SECS * 1000LL;
	if ((rc = omemo_schema(db)) != 0)
		goto fail;
	rc = MW_OMEMO_E_NOMEM;
	if (signal_context_create(&o->sg, o) != 0)
		goto fail;
	/* OpenSSL without the algorithms OMEMO needs is not a memory error */
	rc = MW_OMEMO_E_CRYPTO;
	if (omemo_crypto_provider(o->sg) != 0)
		goto fail;
	if ((rc = omemo_store_register(o)) != 0)
		goto fail;
	if ((rc = omemo_identity_load_or_create(o, own_jid)) != 0)
		goto fail;
	*out = o;
	return 0;
fail:
	mw_omemo_close(o);
	return rc;
}

void
mw_omemo_close(struct mw_omemo *o)
{
	if (o == NULL)
		return;
	omemo_rollback(o);
	omemo_net_free(o);
	omemo2_upkeep_free(o);
	omemo_stmt_cache_free(o);
	if (o->store != NULL)
		signal_protocol_store_context_destroy(o->store);
	if (o->store4 != NULL)
		signal_protocol_store_context_destroy(o->store4);
	if (o->sg != NULL)
		signal_context_destroy(o->sg);
	free(o->jid);
	free(o);
}

uint32_t
mw_omemo_device_id(const struct mw_omemo *o)
{
	return o->device_id;
}

const char *
mw_omemo_jid(const struct mw_omemo *o)
{
	return o->jid;
}

void
mw_omemo_set_iq_timeout(struct mw_omemo *o, unsigned ms)
{
	o->iq_timeout_ms = ms;
}

void
mw_omemo_set_republish_interval(struct mw_omemo *o, unsigned ms)
{
	if (o == NULL)
		return;
	o->republish_ms = ms;
	if (o->bundle_publish_pending)	/* it waits no longer than that */
		o->bundle_publish_due_ms = omemo_mono_ms() + ms;
}

void
mw_omemo_set_empty_delay(struct mw_omemo *o, unsigned ms)
{
	if (o != NULL)
		o->complete_ms = ms;
}

bool
mw_omemo_txn_pending(const struct mw_omemo *o)
{
	return o->pending_decrypt;
}

static int
put_trust(struct mw_omemo *o, const char *jid, const uint8_t key[33],
    enum mw_omemo_trust t)
{
	sqlite3_stmt *st;
	int ok;

	if (sqlite3_prepare_v2(o->db, "INSERT INTO omemo_trust(jid, "
	    "identity_key, trust, updated) VALUES (?, ?, ?, ?) ON CONFLICT(jid, "
	    "identity_key) DO UPDATE SET trust = excluded.trust, updated = "
	    "excluded.updated", -1, &st, NULL) != SQLITE_OK)
		return MW_OMEMO_E_DB;
	ok = sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_blob(st, 2, key, 33, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int(st, 3, (int)t) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 4, omemo_now()) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok ? 0 : MW_OMEMO_E_DB;
}

static int
set_trust(struct mw_omemo *o, const char *jid, const char *fptext,
    enum mw_omemo_trust t)
{
	char fp[MW_OMEMO_FP_HEXLEN + 1], res[MW_OMEMO_FP_HEXLEN + 1];
	uint8_t keys[2][33];
	bool seen;
	int rc, nkeys = 1;

	if (!omemo_jid_ok(jid))
		return MW_OMEMO_E_INVAL;
	/* either rendering (spec/omemo.md): the key jid is known with, or,
	 * for a key not seen yet, both readings */
	if ((rc = mw_omemo_fp_parse(fptext, fp)) != 0 ||
	    (rc = mw_omemo_fp_resolve(o, jid, fp, res, &seen)) != 0 ||
	    (rc = omemo_fp_to_key(res, keys[0])) != 0)
		return rc;
	if (!seen && omemo_fp_ed_reading(fp, keys[1]) == 0)
		nkeys = 2;
	if ((rc = omemo_begin(o)) != 0)
		return rc;
	for (int i = 0; i < nkeys; i++)
		if ((rc = put_trust(o, jid, keys[i], t)) != 0) {
			omemo_rollback(o);
			return rc;
		}
	/*
	 * Verifying a key re-pins every device of jid that is known to show it
	 * (a device whose key changed is refused until this point; the new key
	 * is pinned when its next PreKeySignalMessage or bundle arrives).
	 */
	return omemo_commit(o);
}

int
mw_omemo_trust(struct mw_omemo *o, const char *jid, const char *fp)
{
	return set_trust(o, jid, fp, MW_OMEMO_TRUST_VERIFIED);
}

int
mw_omemo_distrust(struct mw_omemo *o, const char *jid, const char *fp)
{
	return set_trust(o, jid, fp, MW_OMEMO_TRUST_REVOKED);
}

int
mw_omemo_devices(struct mw_omemo *o, const char *jid,
    struct mw_omemo_device **out, size_t *n)
{
	sqlite3_stmt *st;
	struct mw_omemo_device *v = NULL, *nv;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (!omemo_jid_ok(jid))
		return MW_OMEMO_E_INVAL;
	if (sqlite3_prepare_v2(o->db, "SELECT d.device_id, d.active, "
	    "d.identity_key, t.trust, (SELECT count(*) FROM omemo_sessions s "
	    "WHERE s.jid = d.jid AND s.device_id = d.device_id), d.active4, "
	    "(SELECT count(*) FROM omemo_sessions_v4 s WHERE s.jid = d.jid AND "
	    "s.device_id = d.device_id) FROM "
	    "omemo_devices d LEFT JOIN omemo_trust t ON t.jid = d.jid AND "
	    "t.identity_key = d.identity_key WHERE d.jid = ? ORDER BY "
	    "d.device_id", -1, &st, NULL) != SQLITE_OK)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return MW_OMEMO_E_DB;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct mw_omemo_device *d;

		if ((nv = reallocarray(v, cnt + 1, sizeof(*v))) == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		v = nv;
		d = &v[cnt++];
		memset(d, 0, sizeof(*d));
		d->id = (uint32_t)sqlite3_column_int64(st, 0);
		d->active = sqlite3_column_int(st, 1) == 1;
		if (sqlite3_column_bytes(st, 2) == 33 &&
		    mw_omemo_fp_from_key(sqlite3_column_blob(st, 2), 33, d->fp) == 0)
			d->has_key = true;
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			d->trust = (enum mw_omemo_trust)sqlite3_column_int(st, 3);
		d->has_session = sqlite3_column_int(st, 4) > 0;
		d->active2 = sqlite3_column_int(st, 5) == 1;
		d->has_session2 = sqlite3_column_int(st, 6) > 0;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(v);
		return MW_OMEMO_E_DB;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int
mw_omemo_device_trust(struct mw_omemo *o, const char *jid, uint32_t dev,
    enum mw_omemo_trust *t, char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	uint8_t key[33];
	int rc;

	if (!omemo_jid_ok(jid))
		return MW_OMEMO_E_INVAL;
	if ((rc = omemo_device_key(o, jid, dev, key)) != 0)
		return rc;
	if ((rc = omemo_key_trust(o, jid, key, 33, t)) != 0)
		return rc;
	return fp != NULL ? mw_omemo_fp_from_key(key, 33, fp) : 0;
}
