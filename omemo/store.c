/*
 * store.c: the SQLite side of OMEMO.  Versioned schema of the omemo_*
 * tables, the transaction helpers that make every state change atomic, and
 * the prekey, signed prekey and identity stores of libomemo-c (the
 * libsignal-protocol-c API) backed by those tables.
 *
 * libomemo-c hands the session store no protocol version (its
 * load_session_func has none), so omemo_sessions holds legacy (version 3)
 * sessions only and omemo_sessions_v4 the OMEMO 2 ones (schema step 2); the
 * session store callbacks live in session_store.c, the identity store and
 * the device/trust rows in identity_store.c.  test_omemo_upgrade.c
 * checks that a version-1 database migrates and what this build writes back
 * to omemo_sessions stays version 3.
 *
 * Schema versioning: the shared table mw_schema(component, version) holds
 * one row per component ("omemo" here); each component migrates its own
 * tables, named with its prefix, in one transaction per step.  Other
 * components (journal, replay cache) add their own rows the same way.
 *
 * Invariants: store callbacks never begin or end transactions (the caller of
 * libsignal has one open); a failing statement yields OMEMO_SG_EDB, which is
 * outside libsignal's error range so it maps back to MW_OMEMO_E_DB.
 */
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE omemo_identity("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  jid TEXT NOT NULL,"
	"  device_id INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 2147483647),"
	"  keypair BLOB NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE omemo_prekeys("
	"  id INTEGER PRIMARY KEY, record BLOB NOT NULL, created INTEGER NOT NULL);"
	"CREATE TABLE omemo_signed_prekeys("
	"  id INTEGER PRIMARY KEY, record BLOB NOT NULL, created INTEGER NOT NULL);"
	"CREATE TABLE omemo_sessions("
	"  jid TEXT NOT NULL, device_id INTEGER NOT NULL,"
	"  record BLOB NOT NULL, user_record BLOB, updated INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, device_id));"
	/* cached device lists, and the identity key each device is pinned to */
	"CREATE TABLE omemo_devices("
	"  jid TEXT NOT NULL, device_id INTEGER NOT NULL,"
	"  active INTEGER NOT NULL DEFAULT 1, identity_key BLOB,"
	"  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, device_id));"
	/* trust is per (jid, identity key): 0 undecided, 1 verified, 2 revoked */
	"CREATE TABLE omemo_trust("
	"  jid TEXT NOT NULL, identity_key BLOB NOT NULL,"
	"  trust INTEGER NOT NULL CHECK (trust IN (0, 1, 2)),"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, identity_key));"
	"CREATE TABLE omemo_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
	/* 2: OMEMO 2 (version-4) sessions, apart from the legacy ones in
	 * omemo_sessions, which keeps its shape and rows */
	"CREATE TABLE omemo_sessions_v4("
	"  jid TEXT NOT NULL, device_id INTEGER NOT NULL,"
	"  record BLOB NOT NULL, user_record BLOB, updated INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, device_id));"
	/* ... and whether the device is in its owner's last OMEMO 2 device
	 * list (active: the legacy list); the identity pin and trust rows
	 * stay one per device and key, shared by both versions */
	"ALTER TABLE omemo_devices ADD COLUMN active4 INTEGER NOT NULL "
	"DEFAULT 0;"
	/* the version the device last wrote in: the one it is answered in */
	"ALTER TABLE omemo_devices ADD COLUMN reply_version INTEGER NOT NULL "
	"DEFAULT 3 CHECK (reply_version IN (3, 4));",
	/* 3: when a prekey was first used (NULL: never); a used one is kept
	 * for MW_OMEMO_PREKEY_GRACE_SECS, unpublished */
	"ALTER TABLE omemo_prekeys ADD COLUMN used INTEGER;",
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int
omemo_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 :
	    MW_OMEMO_E_DB;
}

int
mw_db_migrate(sqlite3 *db, const char *component, const char *const *steps, int n)
{
	sqlite3_stmt *st = NULL;
	int version = 0, rc;

	if (!sqlite3_get_autocommit(db) ||
	    omemo_exec(db, "CREATE TABLE IF NOT EXISTS mw_schema("
	    "component TEXT PRIMARY KEY, version INTEGER NOT NULL)") != 0 ||
	    omemo_exec(db, "BEGIN IMMEDIATE") != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "SELECT version FROM mw_schema WHERE component = ?",
	    -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, component, -1, SQLITE_STATIC) != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	else if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	if (version > n)
		goto fail;	/* written by a newer moonwire */
	if (version == n)
		return omemo_exec(db, "COMMIT") == 0 ? 0 :
		    ((void)omemo_exec(db, "ROLLBACK"), -1);
	for (int v = version; v < n; v++)
		if (omemo_exec(db, steps[v]) != 0)
			goto fail;
	if (sqlite3_prepare_v2(db, "INSERT INTO mw_schema(component, version) "
	    "VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET "
	    "version = excluded.version", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, component, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(st, 2, n) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	if (omemo_exec(db, "COMMIT") != 0) {
		(void)omemo_exec(db, "ROLLBACK");
		return -1;
	}
	return 0;
fail:
	sqlite3_finalize(st);
	(void)omemo_exec(db, "ROLLBACK");
	return -1;
}

int
omemo_schema(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		return MW_OMEMO_E_TXN;
	return mw_db_migrate(db, "omemo", migrations, NMIGRATIONS) == 0 ? 0 : MW_OMEMO_E_DB;
}

/* ---- transactions ---- */

/* BEGIN IMMEDIATE, COMMIT or ROLLBACK through the statement cache (one
 * message opens and ends two or three transactions; parsing them each
 * time showed in the operator's profile). */
static int
omemo_run(struct mw_omemo *o, const char *sql)
{
	sqlite3_stmt *st;
	int rc;

	if (omemo_prep(o, &st, sql) != 0)
		return MW_OMEMO_E_DB;
	rc = sqlite3_step(st);
	omemo_unprep(o, st);
	return rc == SQLITE_DONE ? 0 : MW_OMEMO_E_DB;
}

int
omemo_begin(struct mw_omemo *o)
{
	if (o->txn || !sqlite3_get_autocommit(o->db))
		return MW_OMEMO_E_TXN;
	if (omemo_run(o, "BEGIN IMMEDIATE") != 0)
		return MW_OMEMO_E_DB;
	o->txn = true;
	return 0;
}

int
omemo_commit(struct mw_omemo *o)
{
	if (!o->txn)
		return MW_OMEMO_E_TXN;
	o->txn = false;
	o->pending_decrypt = false;
	if (omemo_run(o, "COMMIT") != 0) {
		/* A failed COMMIT may leave the transaction open: end it. */
		if (!sqlite3_get_autocommit(o->db))
			(void)omemo_run(o, "ROLLBACK");
		return MW_OMEMO_E_DB;
	}
	return 0;
}

void
omemo_rollback(struct mw_omemo *o)
{
	if (!o->txn)
		return;
	o->txn = false;
	o->pending_decrypt = false;
	if (!sqlite3_get_autocommit(o->db))
		(void)omemo_run(o, "ROLLBACK");
}

/* ---- small statement helpers ---- */

/*
 * Prepared-statement cache.  Every statement here is a string literal, so
 * its address is the key: the first call prepares it (persistent), later
 * calls reuse it, and omemo_unprep() resets it (releasing every lock and clearing
 * the bindings) instead of finalizing.  A statement still in use when its
 * SQL is asked for again, or one beyond the cache's slots, is prepared and
 * finalized as before.  Parsing SQL was 16 % of the OMEMO layer's CPU
 * (make bench, omemo_bench :memory: profile).  mw_omemo_close() finalizes
 * the cache before the caller closes the database.
 */
int
omemo_prep(struct mw_omemo *o, sqlite3_stmt **st, const char *sql)
{
	struct omemo_stmt *free_slot = NULL;

	for (size_t i = 0; i < OMEMO_STMT_CACHE; i++) {
		struct omemo_stmt *c = &o->stmts[i];

		if (c->sql == sql && c->st != NULL) {
			if (c->busy)
				break;
			c->busy = true;
			*st = c->st;
			return 0;
		}
		if (c->st == NULL && free_slot == NULL)
			free_slot = c;
	}
	if (free_slot != NULL) {
		if (sqlite3_prepare_v3(o->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
		    NULL) != SQLITE_OK)
			return -1;
		free_slot->sql = sql;
		free_slot->st = *st;
		free_slot->busy = true;
		return 0;
	}
	return sqlite3_prepare_v2(o->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -1;
}

/* The end of a statement from omemo_prep(): reset if cached, else finalized. */
void
omemo_unprep(struct mw_omemo *o, sqlite3_stmt *st)
{
	for (size_t i = 0; i < OMEMO_STMT_CACHE; i++) {
		struct omemo_stmt *c = &o->stmts[i];

		if (c->st == st && st != NULL) {
			(void)sqlite3_reset(st);
			(void)sqlite3_clear_bindings(st);
			c->busy = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

void
omemo_stmt_cache_free(struct mw_omemo *o)
{
	for (size_t i = 0; i < OMEMO_STMT_CACHE; i++) {
		sqlite3_finalize(o->stmts[i].st);
		o->stmts[i].st = NULL;
		o->stmts[i].sql = NULL;
		o->stmts[i].busy = false;
	}
}

int
omemo_bind_addr(sqlite3_stmt *st, const signal_protocol_address *a)
{
	if (sqlite3_bind_text(st, 1, a->name, (int)a->name_len,
	    SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, a->device_id) != SQLITE_OK)
		return -1;
	return 0;
}

/* Runs a statement that returns no rows. */
int
omemo_step_done(struct mw_omemo *o, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	omemo_unprep(o, st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
omemo_meta_get(struct mw_omemo *o, const char *key, int64_t *v)
{
	sqlite3_stmt *st;
	int rc;

	if (omemo_prep(o, &st, "SELECT value FROM omemo_meta WHERE key = ?") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	omemo_unprep(o, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? MW_OMEMO_E_NOT_FOUND : MW_OMEMO_E_DB;
}

int
omemo_meta_set(struct mw_omemo *o, const char *key, int64_t v)
{
	sqlite3_stmt *st;

	if (omemo_prep(o, &st, "INSERT INTO omemo_meta(key, value) VALUES (?, ?) "
	    "ON CONFLICT(key) DO UPDATE SET value = excluded.value") != 0)
		return MW_OMEMO_E_DB;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, v) != SQLITE_OK) {
		omemo_unprep(o, st);
		return MW_OMEMO_E_DB;
	}
	return omemo_step_done(o, st) == 0 ? 0 : MW_OMEMO_E_DB;
}

/* Loads one BLOB column into a fresh signal_buffer: 1 found, 0 not, <0. */
int
omemo_load_blob(sqlite3_stmt *st, int col, signal_buffer **out)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return OMEMO_SG_EDB;
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		*out = NULL;
		return 0;
	}
	*out = signal_buffer_create(sqlite3_column_blob(st, col),
	    (size_t)sqlite3_column_bytes(st, col));
	return *out != NULL ? 1 : SG_ERR_NOMEM;
}

/* ---- prekey and signed prekey stores (same shape, two tables) ---- */

/* The record of key id (?1); a statement with a second parameter gets
 * `since` bound to it. */
static int
k_load(struct mw_omemo *o, const char *sql, signal_buffer **record,
    uint32_t id, int64_t since)
{
	sqlite3_stmt *st;
	int rc;

	if (omemo_prep(o, &st, sql) != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
	    (sqlite3_bind_parameter_count(st) > 1 &&
	    sqlite3_bind_int64(st, 2, since) != SQLITE_OK)) {
		omemo_unprep(o, st);
		return OMEMO_SG_EDB;
	}
	rc = omemo_load_blob(st, 0, record);
	omemo_unprep(o, st);
	if (rc == 0)
		return SG_ERR_INVALID_KEY_ID;
	return rc < 0 ? rc : SG_SUCCESS;
}

static int
k_store(struct mw_omemo *o, const char *sql, uint32_t id, uint8_t *record,
    size_t len)
{
	sqlite3_stmt *st;

	if (!o->txn)
		return OMEMO_SG_EDB;
	if (omemo_prep(o, &st, sql) != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, record, (int)len, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, omemo_now()) != SQLITE_OK) {
		omemo_unprep(o, st);
		return OMEMO_SG_EDB;
	}
	return omemo_step_done(o, st) == 0 ? 0 : OMEMO_SG_EDB;
}

static int
k_contains(struct mw_omemo *o, const char *sql, uint32_t id)
{
	sqlite3_stmt *st;
	int rc;

	if (omemo_prep(o, &st, sql) != 0)
		return 0;
	rc = sqlite3_bind_int64(st, 1, id) == SQLITE_OK ? sqlite3_step(st) :
	    SQLITE_ERROR;
	omemo_unprep(o, st);
	return rc == SQLITE_ROW ? 1 : 0;
}

static int
k_remove(struct mw_omemo *o, const char *sql, uint32_t id)
{
	sqlite3_stmt *st;

	if (!o->txn)
		return OMEMO_SG_EDB;
	if (omemo_prep(o, &st, sql) != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		omemo_unprep(o, st);
		return OMEMO_SG_EDB;
	}
	return omemo_step_done(o, st) == 0 ? 0 : OMEMO_SG_EDB;
}

/* A prekey opens sessions until MW_OMEMO_PREKEY_GRACE_SECS after its first
 * use (?2 is the oldest first use still accepted). */
static int
pk_load(signal_buffer **record, uint32_t id, void *u)
{
	return k_load(u, "SELECT record FROM omemo_prekeys WHERE id = ?1 AND "
	    "(used IS NULL OR used >= ?2)", record, id,
	    omemo_now() - MW_OMEMO_PREKEY_GRACE_SECS);
}

static int
pk_store(uint32_t id, uint8_t *record, size_t len, void *u)
{
	return k_store(u, "INSERT OR REPLACE INTO omemo_prekeys(id, record, "
	    "created) VALUES (?, ?, ?)", id, record, len);
}

static int
pk_contains(uint32_t id, void *u)
{
	signal_buffer *b = NULL;
	int rc = pk_load(&b, id, u);

	signal_buffer_free(b);
	return rc == SG_SUCCESS ? 1 : 0;
}

/*
 * libsignal removes a prekey once a PreKeySignalMessage consumed it.  It is
 * marked used instead (the first use counts) and kept, unpublished, for the
 * grace period (pk_load; omemo_prekeys_refill deletes it after, run by
 * the upkeep when that period ends: mw_omemo_maintain_due).  The
 * replacement (with a new, never used id) is generated in the same
 * transaction, and the bundle is marked for republishing.
 */
static int
pk_remove(uint32_t id, void *u)
{
	struct mw_omemo *o = u;
	sqlite3_stmt *st;
	int rc;

	if (!o->txn)
		return OMEMO_SG_EDB;
	if (omemo_prep(o, &st, "UPDATE omemo_prekeys SET used = ?2 WHERE "
	    "id = ?1 AND used IS NULL") != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, omemo_now()) != SQLITE_OK) {
		omemo_unprep(o, st);
		return OMEMO_SG_EDB;
	}
	if ((rc = omemo_step_done(o, st)) != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_changes(o->db) == 0)
		return 0;
	if (omemo_prekey_replace(o) != 0)
		return OMEMO_SG_EDB;
	o->bundle_dirty = true;
	omemo_prekey_expiry_note(o, omemo_now() + MW_OMEMO_PREKEY_GRACE_SECS + 1);
	return 0;
}

static int
spk_load(signal_buffer **record, uint32_t id, void *u)
{
	return k_load(u, "SELECT record FROM omemo_signed_prekeys WHERE id = ?",
	    record, id, 0);
}

static int
spk_store(uint32_t id, uint8_t *record, size_t len, void *u)
{
	return k_store(u, "INSERT OR REPLACE INTO omemo_signed_prekeys(id, "
	    "record, created) VALUES (?, ?, ?)", id, record, len);
}

static int
spk_contains(uint32_t id, void *u)
{
	return k_contains(u, "SELECT 1 FROM omemo_signed_prekeys WHERE id = ?",
	    id);
}

static int
spk_remove(uint32_t id, void *u)
{
	return k_remove(u, "DELETE FROM omemo_signed_prekeys WHERE id = ?", id);
}

/*
 * Two store contexts share the prekey, signed prekey and identity stores
 * (one identity, one prekey pool): o->store keeps legacy sessions, o->store4
 * OMEMO 2 ones (session_store.c), because libomemo-c's session callbacks
 * are told no version.
 */
int
omemo_store_register(struct mw_omemo *o)
{
	signal_protocol_pre_key_store pk = {
		.load_pre_key = pk_load,
		.store_pre_key = pk_store,
		.contains_pre_key = pk_contains,
		.remove_pre_key = pk_remove,
		.user_data = o,
	};
	signal_protocol_signed_pre_key_store spk = {
		.load_signed_pre_key = spk_load,
		.store_signed_pre_key = spk_store,
		.contains_signed_pre_key = spk_contains,
		.remove_signed_pre_key = spk_remove,
		.user_data = o,
	};
	signal_protocol_identity_key_store ik;
	signal_protocol_store_context **sc[2] = { &o->store, &o->store4 };
	const uint32_t version[2] = { OMEMO_V_LEGACY, OMEMO_V2 };

	omemo_identity_store(o, &ik);

	for (int i = 0; i < 2; i++) {
		signal_protocol_session_store ss;

		omemo_session_store(o, version[i], &ss);
		if (signal_protocol_store_context_create(sc[i], o->sg) != 0 ||
		    signal_protocol_store_context_set_session_store(*sc[i],
		    &ss) != 0 ||
		    signal_protocol_store_context_set_pre_key_store(*sc[i],
		    &pk) != 0 ||
		    signal_protocol_store_context_set_signed_pre_key_store(*sc[i],
		    &spk) != 0 ||
		    signal_protocol_store_context_set_identity_key_store(*sc[i],
		    &ik) != 0)
			return MW_OMEMO_E_NOMEM;
	}
	return 0;
}
