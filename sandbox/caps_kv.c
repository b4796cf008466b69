/*
 * caps_kv.c: the small persistent key-value store a job may be granted,
 * one scope per signer, in state_dir/kv.sqlite.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <sqlite3.h>

#include "sandbox/caps_int.h"

/* ---- key-value store ---- */

struct mw_kv {
	sqlite3 *db;
};

/* The store is created 0600 whatever the umask, and tightened when found
 * looser; SQLite gives its -wal and -shm files the same mode. */
static int
kv_file_private(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat st;
	if (fd < 0)
		return -1;
	int r = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    ((st.st_mode & 077) == 0 || fchmod(fd, st.st_mode & 0700) == 0) ? 0 : -1;
	close(fd);
	return r;
}

int
mw_kv_open(const char *state_dir, struct mw_kv **out)
{
	char path[PATH_MAX];
	struct mw_kv *kv = calloc(1, sizeof(*kv));
	if (kv == NULL)
		return -1;
	if (snprintf(path, sizeof(path), "%s/kv.sqlite", state_dir) >= (int)sizeof(path) ||
	    kv_file_private(path) != 0 ||
	    sqlite3_open_v2(path, &kv->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(kv->db, "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=2000;"
	    "CREATE TABLE IF NOT EXISTS kv(scope TEXT NOT NULL, key TEXT NOT NULL,"
	    " value BLOB NOT NULL, PRIMARY KEY(scope, key)) WITHOUT ROWID;",
	    NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(kv->db);
		free(kv);
		return -1;
	}
	*out = kv;
	return 0;
}

void
mw_kv_close(struct mw_kv *kv)
{
	if (kv == NULL)
		return;
	sqlite3_close(kv->db);
	free(kv);
}

static int
kv_key(struct cap_args *A, const char *cap, struct mw_buf *reply)
{
	if (A->n < 1 || A->a[0].tag != MW_V_STRING || A->a[0].slen == 0 ||
	    A->a[0].slen > MW_KV_KEY_MAX) {
		mw_cap_reply_error(reply, "%s: key must be a string of 1..%d bytes", cap,
		    MW_KV_KEY_MAX);
		return -1;
	}
	return 0;
}

int
cap_kv(const char *op, const struct mw_grants *g, struct mw_kv *kv,
    struct cap_args *A, struct mw_buf *reply)
{
	sqlite3_stmt *st = NULL;
	int r = 0;
	if (kv == NULL)
		return mw_cap_reply_error(reply, "kv.%s: the key-value store is unavailable", op);
	const char *scope = g->kv_scope;
	if (strcmp(op, "get") == 0) {
		if (kv_key(A, "kv.get", reply) != 0)
			return 0;
		if (sqlite3_prepare_v2(kv->db, "SELECT value FROM kv WHERE scope=?1 AND key=?2",
		    -1, &st, NULL) != SQLITE_OK)
			goto dberr;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW)
			r = reply_values1_str(reply, sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0));
		else if (s == SQLITE_DONE)
			r = reply_ok(reply, 0);
		else
			goto dberr;
	} else if (strcmp(op, "put") == 0) {
		if (kv_key(A, "kv.put", reply) != 0)
			return 0;
		if (A->n < 2 || A->a[1].tag != MW_V_STRING || A->a[1].slen > MW_KV_VALUE_MAX)
			return mw_cap_reply_error(reply, "kv.put: value must be a string of at most %u bytes",
			    MW_KV_VALUE_MAX);
		if (sqlite3_exec(kv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			goto dberr;
		if (sqlite3_prepare_v2(kv->db, "SELECT coalesce(sum(length(key)+length(value)),0)"
		    " FROM kv WHERE scope=?1 AND key<>?2", -1, &st, NULL) != SQLITE_OK)
			goto rollback;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW)
			goto rollback;
		int64_t used = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		st = NULL;
		if (used + (int64_t)A->a[0].slen + (int64_t)A->a[1].slen > MW_KV_SCOPE_QUOTA) {
			sqlite3_exec(kv->db, "ROLLBACK", NULL, NULL, NULL);
			return mw_cap_reply_error(reply, "kv.put: quota of %u bytes exceeded",
			    MW_KV_SCOPE_QUOTA);
		}
		if (sqlite3_prepare_v2(kv->db, "INSERT OR REPLACE INTO kv(scope,key,value)"
		    " VALUES(?1,?2,?3)", -1, &st, NULL) != SQLITE_OK)
			goto rollback;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, A->a[1].s, (int)A->a[1].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto rollback;
		sqlite3_finalize(st);
		st = NULL;
		if (sqlite3_exec(kv->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			goto rollback;
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_bool(reply, true)) ? -1 : 0;
	} else if (strcmp(op, "delete") == 0) {
		if (kv_key(A, "kv.delete", reply) != 0)
			return 0;
		if (sqlite3_prepare_v2(kv->db, "DELETE FROM kv WHERE scope=?1 AND key=?2",
		    -1, &st, NULL) != SQLITE_OK)
			goto dberr;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto dberr;
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) ||
		    put_bool(reply, sqlite3_changes(kv->db) > 0)) ? -1 : 0;
	} else {	/* keys */
		struct mw_buf rows;
		uint32_t n = 0;
		mw_buf_init(&rows, MW_MAX_WORKER_FRAME / 2);
		if (sqlite3_prepare_v2(kv->db, "SELECT key FROM kv WHERE scope=?1 ORDER BY key",
		    -1, &st, NULL) != SQLITE_OK) {
			mw_buf_free(&rows);
			goto dberr;
		}
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			if (put_int(&rows, n + 1) || put_str(&rows, sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0)))
				break;
			n++;
		}
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_table(reply, n) ||
		    mw_buf_put(reply, mw_buf_ptr(&rows), mw_buf_avail(&rows))) ? -1 : 0;
		mw_buf_free(&rows);
	}
	sqlite3_finalize(st);
	return r;
rollback:
	sqlite3_exec(kv->db, "ROLLBACK", NULL, NULL, NULL);
dberr:
	sqlite3_finalize(st);
	return mw_cap_reply_error(reply, "kv.%s: storage error: %s", op, sqlite3_errmsg(kv->db));
}

