/*
 * omemo_fuzzlib.h: the in-memory OMEMO endpoints the OMEMO fuzz targets
 * share (not a target).  The agent's identity lives in an in-memory SQLite
 * database created once per process; a pristine copy is kept so that an
 * input that legitimately commits (a key-transport message, a new bundle
 * or device list) can be undone and the next input starts from the same
 * store.  store_digest() hashes every row of every table: the "bad input
 * never changes the store" invariant compares it before and after.
 */
#ifndef MW_OMEMO_FUZZLIB_H
#define MW_OMEMO_FUZZLIB_H

#include <openssl/evp.h>
#include <sqlite3.h>
#include <strophe.h>

#include "omemo/mw_omemo.h"
#include "tests/fuzz/fuzzlib.h"

struct fz_ep {
	const char *jid;
	sqlite3 *db;
	struct mw_omemo *o;
};

static xmpp_ctx_t *fz_x;

static inline void
fz_ep_open(struct fz_ep *e, const char *jid)
{
	e->jid = jid;
	if (sqlite3_open(":memory:", &e->db) != SQLITE_OK ||
	    mw_omemo_open(&e->o, e->db, jid) != MW_OMEMO_OK)
		abort();
}

static inline void
fz_copy_db(sqlite3 *dst, sqlite3 *src)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	FUZZ_CHECK(b != NULL);
	FUZZ_CHECK(sqlite3_backup_step(b, -1) == SQLITE_DONE);
	FUZZ_CHECK(sqlite3_backup_finish(b) == SQLITE_OK);
}

/* SHA-256 over every row of every table, in a fixed order. */
static inline void
fz_store_digest(sqlite3 *db, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	sqlite3_stmt *t = NULL, *s = NULL;
	FUZZ_CHECK(md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
	FUZZ_CHECK(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type='table' "
	    "ORDER BY name", -1, &t, NULL) == SQLITE_OK);
	while (sqlite3_step(t) == SQLITE_ROW) {
		char q[256];
		const char *name = (const char *)sqlite3_column_text(t, 0);
		snprintf(q, sizeof(q), "SELECT * FROM \"%s\" ORDER BY 1, 2", name);
		EVP_DigestUpdate(md, name, strlen(name) + 1);
		if (sqlite3_prepare_v2(db, q, -1, &s, NULL) != SQLITE_OK) {
			snprintf(q, sizeof(q), "SELECT * FROM \"%s\" ORDER BY 1", name);
			FUZZ_CHECK(sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK);
		}
		while (sqlite3_step(s) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(s); i++) {
				const void *p = sqlite3_column_blob(s, i);
				int n = sqlite3_column_bytes(s, i);
				uint8_t type = (uint8_t)sqlite3_column_type(s, i);
				EVP_DigestUpdate(md, &type, 1);
				EVP_DigestUpdate(md, &n, sizeof(n));
				if (p != NULL && n > 0)
					EVP_DigestUpdate(md, p, (size_t)n);
			}
		}
		sqlite3_finalize(s);
	}
	sqlite3_finalize(t);
	FUZZ_CHECK(EVP_DigestFinal_ex(md, out, NULL) == 1);
	EVP_MD_CTX_free(md);
}

/* After any mw_omemo_* call that returned: no transaction left open. */
static inline void
fz_no_txn(struct fz_ep *e)
{
	FUZZ_CHECK(!mw_omemo_txn_pending(e->o));
	FUZZ_CHECK(sqlite3_get_autocommit(e->db) != 0);
}

/* text with each "%X" token replaced by subst(X) (NULL: left as is). */
static inline char *
fz_expand(const uint8_t *data, size_t size, const char *(*subst)(char))
{
	size_t cap = size * 2 + 64, n = 0;
	char *out = malloc(cap + 1);
	FUZZ_CHECK(out != NULL);
	for (size_t i = 0; i < size; i++) {
		const char *rep = NULL;
		if (data[i] == '%' && i + 1 < size && (rep = subst((char)data[i + 1])) != NULL)
			i++;
		size_t rl = rep ? strlen(rep) : 1;
		if (n + rl > cap) {
			cap = (n + rl) * 2;
			out = realloc(out, cap + 1);
			FUZZ_CHECK(out != NULL);
		}
		if (rep)
			memcpy(out + n, rep, rl);
		else
			out[n] = (char)data[i];
		n += rl;
	}
	out[n] = '\0';
	return out;
}

#endif
