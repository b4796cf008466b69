/*
 * omemo_testlib.h: shared helpers for the OMEMO unit tests (not a test
 * itself: the Makefile builds tests/unit/test_*.c only).  Two or more
 * in-process endpoints, each with its own SQLite database in a temporary
 * directory, exchange stanzas serialized to text and parsed back, the way
 * they would cross a server.
 */
#ifndef OMEMO_TESTLIB_H
#define OMEMO_TESTLIB_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "omemo/mw_omemo.h"

struct ep {
	char jid[64];
	char path[256];
	sqlite3 *db;
	struct mw_omemo *o;
};

static char tl_dir[128];
static xmpp_ctx_t *tl_x;

static inline void
tl_init(void)
{
	snprintf(tl_dir, sizeof(tl_dir), "/tmp/mw-omemo-test-XXXXXX");
	assert_non_null(mkdtemp(tl_dir));
	tl_x = xmpp_ctx_new(NULL, NULL);
	assert_non_null(tl_x);
}

static inline void
tl_fini(void)
{
	char cmd[256];

	xmpp_ctx_free(tl_x);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tl_dir);
	assert_int_equal(system(cmd), 0);
}

static inline void
ep_open(struct ep *e)
{
	assert_int_equal(sqlite3_open(e->path, &e->db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(e->db, "PRAGMA journal_mode=WAL", NULL,
	    NULL, NULL), SQLITE_OK);
	assert_int_equal(mw_omemo_open(&e->o, e->db, e->jid), MW_OMEMO_OK);
}

static inline void
ep_close(struct ep *e)
{
	mw_omemo_close(e->o);
	e->o = NULL;
	assert_int_equal(sqlite3_close(e->db), SQLITE_OK);
	e->db = NULL;
}

static inline void
ep_new(struct ep *e, const char *jid, const char *name)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->jid, sizeof(e->jid), "%s", jid);
	snprintf(e->path, sizeof(e->path), "%s/%s.db", tl_dir, name);
	ep_open(e);
}

static inline xmpp_stanza_t *
bundle_of(struct ep *e)
{
	xmpp_stanza_t *b = NULL;

	assert_int_equal(mw_omemo_bundle_element(e->o, tl_x, &b), MW_OMEMO_OK);
	return b;
}

static inline void
fp_of(struct ep *e, char fp[65])
{
	assert_int_equal(mw_omemo_own_fingerprint(e->o, fp), MW_OMEMO_OK);
}

/* to learns from's device list (just from's device) */
static inline void
learn_devlist(struct ep *to, struct ep *from)
{
	char xml[256];
	xmpp_stanza_t *l;

	snprintf(xml, sizeof(xml), "<list xmlns='%s'><device id='%u'/></list>",
	    MW_OMEMO_NS, mw_omemo_device_id(from->o));
	l = xmpp_stanza_new_from_string(tl_x, xml);
	assert_non_null(l);
	assert_int_equal(mw_omemo_process_devicelist(to->o, from->jid, l), 0);
	xmpp_stanza_release(l);
}

/* a builds a session with b from b's bundle, knows b's list, trusts b */
static inline void
introduce(struct ep *a, struct ep *b)
{
	xmpp_stanza_t *bun = bundle_of(b);
	char fp[65];

	assert_int_equal(mw_omemo_process_bundle(a->o, b->jid,
	    mw_omemo_device_id(b->o), bun), MW_OMEMO_OK);
	xmpp_stanza_release(bun);
	learn_devlist(a, b);
	fp_of(b, fp);
	assert_int_equal(mw_omemo_trust(a->o, b->jid, fp), MW_OMEMO_OK);
}

/* a trusts b's fingerprint and knows its device list (no session) */
static inline void
know(struct ep *a, struct ep *b)
{
	char fp[65];

	learn_devlist(a, b);
	fp_of(b, fp);
	assert_int_equal(mw_omemo_trust(a->o, b->jid, fp), MW_OMEMO_OK);
}

/* Serializes to text with a server-stamped from, as the receiver sees it. */
static inline char *
wire_text(struct ep *from, xmpp_stanza_t *m)
{
	char full[128], *buf = NULL, *copy;
	size_t n = 0;

	snprintf(full, sizeof(full), "%s/res", from->jid);
	assert_int_equal(xmpp_stanza_set_from(m, full), XMPP_EOK);
	assert_int_equal(xmpp_stanza_to_text(m, &buf, &n), XMPP_EOK);
	copy = strdup(buf);
	xmpp_free(tl_x, buf);
	return copy;
}

static inline xmpp_stanza_t *
parse(const char *text)
{
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(tl_x, text);

	assert_non_null(s);
	return s;
}

/* Encrypts text from a to b; returns the wire form (free it). */
static inline char *
enc(struct ep *a, struct ep *b, const char *text)
{
	xmpp_stanza_t *m = NULL;
	char *w;

	assert_int_equal(mw_omemo_encrypt(a->o, tl_x, b->jid, NULL, 0, text,
	    strlen(text), &m), MW_OMEMO_OK);
	w = wire_text(a, m);
	xmpp_stanza_release(m);
	return w;
}

/* Decrypts the wire text at b; returns the mw_omemo_decrypt result. */
static inline int
dec_raw(struct ep *b, const char *wire, struct mw_omemo_msg *out)
{
	xmpp_stanza_t *s = parse(wire);
	int rc = mw_omemo_decrypt(b->o, s, out);

	xmpp_stanza_release(s);
	return rc;
}

/* Decrypts, checks the text, commits. */
static inline void
dec_expect(struct ep *b, const char *wire, const char *text)
{
	struct mw_omemo_msg m;

	assert_int_equal(dec_raw(b, wire, &m), MW_OMEMO_OK);
	assert_int_equal(m.len, strlen(text));
	assert_memory_equal(m.plaintext, text, m.len);
	assert_int_equal(mw_omemo_commit(b->o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
}

static inline void
send_recv(struct ep *a, struct ep *b, const char *text)
{
	char *w = enc(a, b, text);

	dec_expect(b, w, text);
	free(w);
}

/* SHA-256 over every omemo_* row: equal digests mean no store change. */
static inline void
db_digest(struct ep *e, uint8_t md[32])
{
	static const char *const q[] = {
		"SELECT * FROM omemo_identity",
		"SELECT * FROM omemo_prekeys ORDER BY id",
		"SELECT * FROM omemo_signed_prekeys ORDER BY id",
		"SELECT * FROM omemo_sessions ORDER BY jid, device_id",
		"SELECT * FROM omemo_sessions_v4 ORDER BY jid, device_id",
		"SELECT jid, device_id, active, identity_key FROM omemo_devices ORDER BY jid, device_id",
		"SELECT jid, identity_key, trust FROM omemo_trust ORDER BY jid, identity_key",
		"SELECT * FROM omemo_meta ORDER BY key",
	};
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;

	assert_non_null(c);
	assert_int_equal(EVP_DigestInit_ex(c, EVP_sha256(), NULL), 1);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_prepare_v2(e->db, q[i], -1, &st, NULL),
		    SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW)
			for (int col = 0; col < sqlite3_column_count(st); col++) {
				const void *p = sqlite3_column_blob(st, col);
				int len = sqlite3_column_bytes(st, col);

				if (p != NULL)
					EVP_DigestUpdate(c, p, (size_t)len);
				EVP_DigestUpdate(c, "|", 1);
			}
		sqlite3_finalize(st);
		EVP_DigestUpdate(c, "#", 1);
	}
	assert_int_equal(EVP_DigestFinal_ex(c, md, &n), 1);
	EVP_MD_CTX_free(c);
}

static inline int64_t
count(struct ep *e, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(e->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Replaces the first occurrence of from with to in s (fresh string). */
static inline char *
replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	char *r;

	assert_non_null(p);
	r = malloc(strlen(s) - strlen(from) + strlen(to) + 1);
	assert_non_null(r);
	memcpy(r, s, (size_t)(p - s));
	strcpy(r + (p - s), to);
	strcat(r, p + strlen(from));
	return r;
}

/* OMEMO 2: e's bundle element; to learns from's OMEMO 2 device list;
 * a's OMEMO 2 message to b in its wire form (free it) */
static inline xmpp_stanza_t *
bundle2_of(struct ep *e)
{
	xmpp_stanza_t *b = NULL;

	assert_int_equal(mw_omemo2_bundle_element(e->o, tl_x, &b), MW_OMEMO_OK);
	return b;
}

static inline void
learn_devlist2(struct ep *to, struct ep *from)
{
	char xml[256];
	xmpp_stanza_t *l;

	snprintf(xml, sizeof(xml), "<devices xmlns='%s'><device id='%u' "
	    "label='x'/></devices>", MW_OMEMO2_NS, mw_omemo_device_id(from->o));
	l = parse(xml);
	assert_int_equal(mw_omemo2_process_devicelist(to->o, from->jid, l), 0);
	xmpp_stanza_release(l);
}

static inline char *
enc2(struct ep *a, struct ep *b, const char *text)
{
	xmpp_stanza_t *m = NULL;
	char *w;

	assert_int_equal(mw_omemo2_encrypt(a->o, tl_x, b->jid, NULL, 0, text,
	    strlen(text), &m), MW_OMEMO_OK);
	w = wire_text(a, m);
	xmpp_stanza_release(m);
	return w;
}

/* The text between open and close tags after marker (fresh string). */
static inline char *
between(const char *s, const char *open, const char *close)
{
	const char *a = strstr(s, open), *b;
	char *r;

	assert_non_null(a);
	a += strlen(open);
	b = strstr(a, close);
	assert_non_null(b);
	r = strndup(a, (size_t)(b - a));
	assert_non_null(r);
	return r;
}

#endif
