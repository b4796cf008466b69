/*
 * session_store.c: libomemo-c's session store, once per protocol version.
 * libomemo-c's load_session_func is told no version, so each version gets
 * its own store context (store.c) whose session callbacks carry the version
 * in their user data and read one table: omemo_sessions (legacy, version
 * 3) or omemo_sessions_v4 (OMEMO 2).  A device can thus hold one session of
 * each version at once, and neither can overwrite the other.
 *
 * Invariants as in store.c: callbacks never begin or end transactions;
 * writes happen only inside ours; a failing statement yields OMEMO_SG_EDB.
 */
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

/* Every SQL text is a literal: its address keys the statement cache. */
struct sess_sql {
	const char *load, *sub, *store, *contains, *del, *del_all;
};

static const struct sess_sql sql3 = {
	"SELECT record FROM omemo_sessions WHERE jid = ? AND device_id = ?",
	"SELECT device_id FROM omemo_sessions WHERE jid = ?",
	"INSERT INTO omemo_sessions(jid, device_id, record, user_record, "
	"updated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(jid, device_id) DO UPDATE "
	"SET record = excluded.record, user_record = excluded.user_record, "
	"updated = excluded.updated",
	"SELECT 1 FROM omemo_sessions WHERE jid = ? AND device_id = ?",
	"DELETE FROM omemo_sessions WHERE jid = ? AND device_id = ?",
	"DELETE FROM omemo_sessions WHERE jid = ?",
};

static const struct sess_sql sql4 = {
	"SELECT record FROM omemo_sessions_v4 WHERE jid = ? AND device_id = ?",
	"SELECT device_id FROM omemo_sessions_v4 WHERE jid = ?",
	"INSERT INTO omemo_sessions_v4(jid, device_id, record, user_record, "
	"updated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(jid, device_id) DO UPDATE "
	"SET record = excluded.record, user_record = excluded.user_record, "
	"updated = excluded.updated",
	"SELECT 1 FROM omemo_sessions_v4 WHERE jid = ? AND device_id = ?",
	"DELETE FROM omemo_sessions_v4 WHERE jid = ? AND device_id = ?",
	"DELETE FROM omemo_sessions_v4 WHERE jid = ?",
};

static const struct sess_sql *
sql_of(const struct omemo_sstore *s)
{
	return s->version == OMEMO_V2 ? &sql4 : &sql3;
}

static int
s_load(signal_buffer **record, signal_buffer **user_record,
    const signal_protocol_address *a, void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;
	int rc;

	(void)user_record;
	if (omemo_prep(s->o, &st, sql_of(s)->load) != 0)
		return OMEMO_SG_EDB;
	rc = omemo_bind_addr(st, a) == 0 ? omemo_load_blob(st, 0, record) :
	    OMEMO_SG_EDB;
	omemo_unprep(s->o, st);
	return rc;
}

static int
s_sub_devices(signal_int_list **sessions, const char *name, size_t name_len,
    void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;
	signal_int_list *l;
	int rc, n = 0;

	if ((l = signal_int_list_alloc()) == NULL)
		return SG_ERR_NOMEM;
	if (omemo_prep(s->o, &st, sql_of(s)->sub) != 0) {
		signal_int_list_free(l);
		return OMEMO_SG_EDB;
	}
	if (sqlite3_bind_text(st, 1, name, (int)name_len, SQLITE_TRANSIENT) !=
	    SQLITE_OK) {
		omemo_unprep(s->o, st);
		signal_int_list_free(l);
		return OMEMO_SG_EDB;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (signal_int_list_push_back(l, sqlite3_column_int(st, 0)) < 0) {
			rc = SQLITE_NOMEM;
			break;
		}
		n++;
	}
	omemo_unprep(s->o, st);
	if (rc != SQLITE_DONE) {
		signal_int_list_free(l);
		return OMEMO_SG_EDB;
	}
	*sessions = l;
	return n;
}

static int
s_store(const signal_protocol_address *a, uint8_t *record, size_t record_len,
    uint8_t *user_record, size_t user_record_len, void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;

	if (!s->o->txn)
		return OMEMO_SG_EDB;	/* every write happens inside our txn */
	if (omemo_prep(s->o, &st, sql_of(s)->store) != 0)
		return OMEMO_SG_EDB;
	if (omemo_bind_addr(st, a) != 0 ||
	    sqlite3_bind_blob(st, 3, record, (int)record_len, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    (user_record != NULL ? sqlite3_bind_blob(st, 4, user_record,
	    (int)user_record_len, SQLITE_STATIC) : sqlite3_bind_null(st, 4)) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(st, 5, omemo_now()) != SQLITE_OK) {
		omemo_unprep(s->o, st);
		return OMEMO_SG_EDB;
	}
	return omemo_step_done(s->o, st) == 0 ? 0 : OMEMO_SG_EDB;
}

static int
s_contains(const signal_protocol_address *a, void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;
	int rc;

	if (omemo_prep(s->o, &st, sql_of(s)->contains) != 0)
		return 0;
	rc = omemo_bind_addr(st, a) == 0 ? sqlite3_step(st) : SQLITE_ERROR;
	omemo_unprep(s->o, st);
	return rc == SQLITE_ROW ? 1 : 0;
}

static int
s_delete(const signal_protocol_address *a, void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;

	if (!s->o->txn)
		return OMEMO_SG_EDB;
	if (omemo_prep(s->o, &st, sql_of(s)->del) != 0)
		return OMEMO_SG_EDB;
	if (omemo_bind_addr(st, a) != 0) {
		omemo_unprep(s->o, st);
		return OMEMO_SG_EDB;
	}
	if (omemo_step_done(s->o, st) != 0)
		return OMEMO_SG_EDB;
	return sqlite3_changes(s->o->db) > 0 ? 1 : 0;
}

static int
s_delete_all(const char *name, size_t name_len, void *u)
{
	struct omemo_sstore *s = u;
	sqlite3_stmt *st;

	if (!s->o->txn)
		return OMEMO_SG_EDB;
	if (omemo_prep(s->o, &st, sql_of(s)->del_all) != 0)
		return OMEMO_SG_EDB;
	if (sqlite3_bind_text(st, 1, name, (int)name_len, SQLITE_TRANSIENT) !=
	    SQLITE_OK) {
		omemo_unprep(s->o, st);
		return OMEMO_SG_EDB;
	}
	if (omemo_step_done(s->o, st) != 0)
		return OMEMO_SG_EDB;
	return sqlite3_changes(s->o->db);
}

void
omemo_session_store(struct mw_omemo *o, uint32_t version,
    signal_protocol_session_store *ss)
{
	struct omemo_sstore *s = version == OMEMO_V2 ? &o->sstore[1] :
	    &o->sstore[0];

	s->o = o;
	s->version = version == OMEMO_V2 ? OMEMO_V2 : OMEMO_V_LEGACY;
	memset(ss, 0, sizeof(*ss));
	ss->load_session_func = s_load;
	ss->get_sub_device_sessions_func = s_sub_devices;
	ss->store_session_func = s_store;
	ss->contains_session_func = s_contains;
	ss->delete_session_func = s_delete;
	ss->delete_all_sessions_func = s_delete_all;
	ss->user_data = s;
}

int
omemo_has_session(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t dev)
{
	signal_protocol_address a = { jid, strlen(jid), (int32_t)dev };

	return s_contains(&a, version == OMEMO_V2 ? &o->sstore[1] :
	    &o->sstore[0]);
}
