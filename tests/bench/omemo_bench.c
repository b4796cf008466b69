/*
 * omemo_bench.c: what one OMEMO message costs moonwire, next to the raw
 * OpenSSL primitives it is built from.  Driven by tests/bench/run.py (which
 * compiles this file against the static libraries, like sandbox_bench.c;
 * the Makefile does not know about it).  Output: one JSON object per line.
 *
 *   omemo_bench [--dir DIR] [--n N] [--first-n N] [--crypto-n N]
 *               [--seconds S] [--size BYTES] [--stores LIST]
 *
 * Two in-process mw_omemo contexts, each with its own SQLite database, pass
 * stanzas to each other directly (no server, no serialisation: what is
 * measured is the OMEMO layer and its store, which is what the agent pays
 * per message on top of the XMPP stream).  Store variants:
 *   file_wal_full    files in DIR, WAL, synchronous=FULL (SQLite's default)
 *   file_wal_normal  files in DIR opened by mw_omemo_db_open() (WAL,
 *                    synchronous=NORMAL): what moonwire runs with
 *   memory           ":memory:" databases (no I/O at all)
 * Figures (microseconds per operation, median / p99 over many iterations):
 *   established_oneway  A encrypts, B decrypts and commits, always A -> B
 *                       (symmetric ratchet step only)
 *   established_pingpong  A -> B then B -> A, reported per message: each
 *                       message turns the DH ratchet (what a request /
 *                       reply agent does)
 *   first_contact       A processes B's bundle, encrypts a PreKey message,
 *                       B decrypts it (consuming and replacing a prekey)
 *                       and commits; sessions are deleted between rounds
 *   interleaved_oneway, interleaved_pingpong (and omemo2_ of each), and
 *                       omemo2_over_legacy: legacy and OMEMO 2 established
 *                       A -> B (and ping-pong) one message of each in turn,
 *                       and the ratios of their medians (real store only)
 *   commit_only         BEGIN IMMEDIATE; one UPDATE; COMMIT on the same
 *                       database: the transaction floor of the store
 *   x25519, aes128gcm (encrypt + decrypt of --size bytes), hmac_sha256
 *                       (32-byte key, --size bytes): raw OpenSSL 3 EVP.
 *   libsignal_curve25519  one curve25519_donna() scalar multiplication of
 *                       libsignal-protocol-c (its exported symbol), the
 *                       primitive behind every DH ratchet step.
 * The OMEMO figures also carry cpu_median_us / cpu_mean_us: the process's
 * CPU time (CLOCK_PROCESS_CPUTIME_ID, user + system) over the same timed
 * region, per message, which a loaded machine disturbs less than wall time.
 * Every call's result is checked; any failure ends the run with status 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "omemo/mw_omemo.h"

struct ep {
	char jid[64];
	char path[512];
	sqlite3 *db;
	struct mw_omemo *o;
};

static xmpp_ctx_t *X;
static double time_cap_s = 8.0;
/* OMEMO 2 (urn:xmpp:omemo:2, version-4 sessions, SCE envelope) instead of
 * legacy OMEMO: bundles, device lists and encryption of that version, and
 * every benchmark name prefixed "omemo2_" */
static bool omemo2;

static void
die(const char *what, int rc)
{
	fprintf(stderr, "omemo_bench: %s failed: %d (%s)\n", what, rc,
	    rc < 0 ? mw_omemo_strerror(rc) : "");
	exit(2);
}

#define CHECK(expr, what) do { int rc_ = (expr); if (rc_ != 0) die(what, rc_); } while (0)
#define CHECK1(expr, what) do { if ((expr) != 1) die(what, 0); } while (0)

static uint64_t
now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime", errno);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		die("clock_gettime(CPUTIME)", errno);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
median_of(uint64_t *ns, size_t n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	return n % 2 ? ns[n / 2] / 1000.0 : (ns[n / 2 - 1] + ns[n / 2]) / 2000.0;
}

/* One JSON line: {"bench":NAME,"store":STORE,n,median_us,p99_us,...}.
 * per divides every sample (a sample covering two messages); cpu, when not
 * NULL, holds each sample's CPU time (the same n samples). */
static void
report(const char *name, const char *store, uint64_t *ns, uint64_t *cpu,
    size_t n, unsigned per)
{
	long double sum = 0, csum = 0;
	size_t p99;
	double median;

	if (n == 0)
		die("no samples", 0);
	median = median_of(ns, n);
	for (size_t i = 0; i < n; i++)
		sum += ns[i];
	p99 = (n * 99 + 99) / 100;	/* nearest rank */
	printf("{\"bench\":\"%s%s\"%s%s%s,\"n\":%zu,\"median_us\":%.2f,"
	    "\"p99_us\":%.2f,\"mean_us\":%.2f,\"min_us\":%.2f,\"max_us\":%.2f",
	    omemo2 ? "omemo2_" : "", name, store ? ",\"store\":\"" : "", store ? store : "",
	    store ? "\"" : "", n, median / per, ns[p99 - 1] / 1000.0 / per,
	    (double)(sum / n / 1000.0L) / per, ns[0] / 1000.0 / per,
	    ns[n - 1] / 1000.0 / per);
	if (cpu != NULL) {
		for (size_t i = 0; i < n; i++)
			csum += cpu[i];
		printf(",\"cpu_median_us\":%.2f,\"cpu_mean_us\":%.2f",
		    median_of(cpu, n) / per, (double)(csum / n / 1000.0L) / per);
	}
	printf("}\n");
	fflush(stdout);
}

/* ---- two endpoints ---- */

static void
ep_open(struct ep *e, const char *dir, const char *jid, const char *name,
    const char *sync)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->jid, sizeof(e->jid), "%s", jid);
	if (dir == NULL)
		snprintf(e->path, sizeof(e->path), ":memory:");
	else if ((size_t)snprintf(e->path, sizeof(e->path), "%s/%s.db", dir,
	    name) >= sizeof(e->path))
		die("path too long", 0);
	if (dir != NULL && strcmp(sync, "NORMAL") == 0) {
		/* exactly how moonwire opens it (WAL, synchronous=NORMAL) */
		CHECK(mw_omemo_db_open(e->path, true, &e->db), "mw_omemo_db_open");
		CHECK(mw_omemo_open(&e->o, e->db, e->jid), "mw_omemo_open");
		return;
	}
	CHECK(sqlite3_open(e->path, &e->db), "sqlite3_open");
	if (dir != NULL) {
		char sql[64];

		CHECK(sqlite3_exec(e->db, "PRAGMA journal_mode=WAL", NULL, NULL,
		    NULL), "journal_mode=WAL");
		snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", sync);
		CHECK(sqlite3_exec(e->db, sql, NULL, NULL, NULL), "synchronous");
	}
	CHECK(mw_omemo_open(&e->o, e->db, e->jid), "mw_omemo_open");
}

static void
ep_close(struct ep *e)
{
	mw_omemo_close(e->o);
	CHECK(sqlite3_close(e->db), "sqlite3_close");
	if (strcmp(e->path, ":memory:") != 0) {
		char p[600];

		(void)unlink(e->path);
		snprintf(p, sizeof(p), "%s-wal", e->path);
		(void)unlink(p);
		snprintf(p, sizeof(p), "%s-shm", e->path);
		(void)unlink(p);
	}
}

/* a learns b's device list and verifies b's key (no session yet). */
static void
know(struct ep *a, struct ep *b)
{
	char xml[256], fp[MW_OMEMO_FP_HEXLEN + 1];
	xmpp_stanza_t *l;

	if (omemo2)
		snprintf(xml, sizeof(xml), "<devices xmlns='%s'><device id='%u'/>"
		    "</devices>", MW_OMEMO2_NS, mw_omemo_device_id(b->o));
	else
		snprintf(xml, sizeof(xml), "<list xmlns='%s'><device id='%u'/>"
		    "</list>", MW_OMEMO_NS, mw_omemo_device_id(b->o));
	if ((l = xmpp_stanza_new_from_string(X, xml)) == NULL)
		die("device list", 0);
	CHECK(omemo2 ? mw_omemo2_process_devicelist(a->o, b->jid, l) :
	    mw_omemo_process_devicelist(a->o, b->jid, l), "process_devicelist");
	xmpp_stanza_release(l);
	CHECK(mw_omemo_own_fingerprint(b->o, fp), "own_fingerprint");
	CHECK(mw_omemo_trust(a->o, b->jid, fp), "trust");
}

static int
get_bundle(struct ep *b, xmpp_stanza_t **bun)
{
	return omemo2 ? mw_omemo2_bundle_element(b->o, X, bun) :
	    mw_omemo_bundle_element(b->o, X, bun);
}

static int
take_bundle(struct ep *a, struct ep *b, xmpp_stanza_t *bun)
{
	uint32_t dev = mw_omemo_device_id(b->o);

	return omemo2 ? mw_omemo2_process_bundle(a->o, b->jid, dev, bun) :
	    mw_omemo_process_bundle(a->o, b->jid, dev, bun);
}

static void
build_session(struct ep *a, struct ep *b)
{
	xmpp_stanza_t *bun = NULL;

	CHECK(get_bundle(b, &bun), "bundle_element");
	CHECK(take_bundle(a, b, bun), "process_bundle");
	xmpp_stanza_release(bun);
}

/* from encrypts pt to `to`, `to` decrypts, checks and commits. */
static void
message(struct ep *from, struct ep *to, const uint8_t *pt, size_t len,
    bool expect_prekey)
{
	xmpp_stanza_t *m = NULL;
	struct mw_omemo_msg msg;
	char full[80];
	int rc;

	CHECK(omemo2 ? mw_omemo2_encrypt(from->o, X, to->jid, NULL, 0, pt, len,
	    &m) : mw_omemo_encrypt(from->o, X, to->jid, NULL, 0, pt, len, &m),
	    "mw_omemo_encrypt");
	snprintf(full, sizeof(full), "%s/bench", from->jid);
	if (xmpp_stanza_set_from(m, full) != XMPP_EOK)
		die("set_from", 0);
	rc = mw_omemo_decrypt(to->o, m, &msg);
	if (rc != MW_OMEMO_OK)
		die("mw_omemo_decrypt", rc);
	if (msg.len != len || memcmp(msg.plaintext, pt, len) != 0 ||
	    msg.prekey != expect_prekey)
		die("decrypted text differs", 0);
	CHECK(mw_omemo_commit(to->o), "mw_omemo_commit");
	mw_omemo_msg_free(&msg);
	xmpp_stanza_release(m);
}

/* tag names the database files, so that two pairs can be open at once */
static void
pair(struct ep *a, struct ep *b, const char *dir, const char *sync,
    const uint8_t *pt, size_t len, const char *tag)
{
	char an[32], bn[32];

	snprintf(an, sizeof(an), "alice%s", tag);
	snprintf(bn, sizeof(bn), "bob%s", tag);
	ep_open(a, dir, "alice@bench", an, sync);
	ep_open(b, dir, "bob@bench", bn, sync);
	know(a, b);
	know(b, a);
	build_session(a, b);
	message(a, b, pt, len, true);	/* first contact ... */
	message(b, a, pt, len, false);	/* ... answered: established */
}

static size_t
budget(size_t n, uint64_t t0)
{
	return (now_ns() - t0) / 1e9 > time_cap_s ? 0 : n;
}

static void
bench_established(const char *store, const char *dir, const char *sync,
    size_t n, const uint8_t *pt, size_t len)
{
	struct ep a, b;
	uint64_t *ns = calloc(n, sizeof(*ns)), *cpu = calloc(n, sizeof(*cpu));
	uint64_t t0, t, c;
	size_t i;

	if (ns == NULL || cpu == NULL)
		die("calloc", 0);
	pair(&a, &b, dir, sync, pt, len, "");
	for (i = 0; i < 50; i++)	/* warm-up: caches, WAL file size */
		message(&a, &b, pt, len, false);
	t0 = now_ns();
	for (i = 0; i < n && budget(n, t0); i++) {
		c = cpu_ns();
		t = now_ns();
		message(&a, &b, pt, len, false);
		ns[i] = now_ns() - t;
		cpu[i] = cpu_ns() - c;
	}
	report("established_oneway", store, ns, cpu, i, 1);
	t0 = now_ns();
	for (i = 0; i < n && budget(n, t0); i++) {
		c = cpu_ns();
		t = now_ns();
		message(&a, &b, pt, len, false);
		message(&b, &a, pt, len, false);
		ns[i] = now_ns() - t;
		cpu[i] = cpu_ns() - c;
	}
	report("established_pingpong", store, ns, cpu, i, 2);
	/* The floor of the store: one write transaction on the same db
	 * (one changed row, so the commit really writes and syncs). */
	CHECK(sqlite3_exec(b.db, "CREATE TABLE bench_commit(x INTEGER); "
	    "INSERT INTO bench_commit VALUES (0)", NULL, NULL, NULL),
	    "bench_commit table");
	t0 = now_ns();
	for (i = 0; i < n && budget(n, t0); i++) {
		c = cpu_ns();
		t = now_ns();
		CHECK(sqlite3_exec(b.db, "BEGIN IMMEDIATE; UPDATE bench_commit "
		    "SET x = x + 1; COMMIT", NULL, NULL, NULL), "commit_only");
		ns[i] = now_ns() - t;
		cpu[i] = cpu_ns() - c;
	}
	report("commit_only", store, ns, cpu, i, 1);
	ep_close(&a);
	ep_close(&b);
	free(ns);
	free(cpu);
}

/* One sample of version v: an A -> B message, or (pingpong) A -> B and
 * B -> A.  Sets omemo2 for the duration. */
static void
sample(bool v2, struct ep *a, struct ep *b, bool pingpong, const uint8_t *pt,
    size_t len, uint64_t *ns, uint64_t *cpu)
{
	uint64_t t, c;

	omemo2 = v2;
	c = cpu_ns();
	t = now_ns();
	message(a, b, pt, len, false);
	if (pingpong)
		message(b, a, pt, len, false);
	*ns = now_ns() - t;
	*cpu = cpu_ns() - c;
	omemo2 = false;
}

static double
median_copy(const uint64_t *v, size_t n, uint64_t *scratch)
{
	memcpy(scratch, v, n * sizeof(*v));
	return median_of(scratch, n);
}

/*
 * Legacy and OMEMO 2 established sessions side by side, one message of
 * each in turn (which goes first alternates): both versions see the same
 * machine at the same moment, so their ratio holds on a VM whose speed
 * drifts by 2x between runs and within one (issue 12).  Reported as
 * interleaved_oneway / interleaved_pingpong (legacy), the same names
 * prefixed omemo2_, and one omemo2_over_legacy line with the ratios of the
 * medians (wall and CPU).
 */
static void
bench_interleaved(const char *store, const char *dir, const char *sync,
    size_t n, const uint8_t *pt, size_t len)
{
	struct ep a1, b1, a2, b2;
	uint64_t *ns[2], *cpu[2], *scratch;
	double wall_ratio[2] = { 0, 0 }, cpu_ratio[2] = { 0, 0 };
	uint64_t t0;
	size_t i, done[2] = { 0, 0 };

	for (int v = 0; v < 2; v++) {
		ns[v] = calloc(n, sizeof(uint64_t));
		cpu[v] = calloc(n, sizeof(uint64_t));
		if (ns[v] == NULL || cpu[v] == NULL)
			die("calloc", 0);
	}
	if ((scratch = calloc(n, sizeof(uint64_t))) == NULL)
		die("calloc", 0);
	omemo2 = false;
	pair(&a1, &b1, dir, sync, pt, len, "-v0");
	omemo2 = true;
	pair(&a2, &b2, dir, sync, pt, len, "-v2");
	omemo2 = false;
	for (i = 0; i < 50; i++) {	/* warm-up, as bench_established */
		sample(false, &a1, &b1, false, pt, len, &ns[0][0], &cpu[0][0]);
		sample(true, &a2, &b2, false, pt, len, &ns[1][0], &cpu[1][0]);
	}
	for (int pp = 0; pp < 2; pp++) {
		const char *name = pp ? "interleaved_pingpong" : "interleaved_oneway";

		t0 = now_ns();
		for (i = 0; i < n && budget(n, t0); i++) {
			bool first2 = i % 2;

			sample(first2, first2 ? &a2 : &a1, first2 ? &b2 : &b1,
			    pp, pt, len, &ns[first2][i], &cpu[first2][i]);
			sample(!first2, first2 ? &a1 : &a2, first2 ? &b1 : &b2,
			    pp, pt, len, &ns[!first2][i], &cpu[!first2][i]);
		}
		done[pp] = i;
		wall_ratio[pp] = median_copy(ns[1], i, scratch) /
		    median_copy(ns[0], i, scratch);
		cpu_ratio[pp] = median_copy(cpu[1], i, scratch) /
		    median_copy(cpu[0], i, scratch);
		omemo2 = false;
		report(name, store, ns[0], cpu[0], i, pp ? 2 : 1);
		omemo2 = true;
		report(name, store, ns[1], cpu[1], i, pp ? 2 : 1);
		omemo2 = false;
	}
	printf("{\"bench\":\"omemo2_over_legacy\",\"store\":\"%s\","
	    "\"n_oneway\":%zu,\"n_pingpong\":%zu,\"oneway\":%.3f,"
	    "\"oneway_cpu\":%.3f,\"pingpong\":%.3f,\"pingpong_cpu\":%.3f}\n",
	    store, done[0], done[1], wall_ratio[0], cpu_ratio[0], wall_ratio[1],
	    cpu_ratio[1]);
	fflush(stdout);
	ep_close(&a1);
	ep_close(&b1);
	ep_close(&a2);
	ep_close(&b2);
	for (int v = 0; v < 2; v++) {
		free(ns[v]);
		free(cpu[v]);
	}
	free(scratch);
}

static void
bench_first_contact(const char *store, const char *dir, const char *sync,
    size_t n, const uint8_t *pt, size_t len)
{
	struct ep a, b;
	uint64_t *ns = calloc(n, sizeof(*ns)), *cpu = calloc(n, sizeof(*cpu));
	uint64_t t0, t, c;
	xmpp_stanza_t *bun = NULL;
	size_t i;

	if (ns == NULL || cpu == NULL)
		die("calloc", 0);
	pair(&a, &b, dir, sync, pt, len, "");
	t0 = now_ns();
	for (i = 0; i < n && budget(n, t0); i++) {
		/* Outside the timing: forget both sessions, fetch B's bundle
		 * (it changed: the last round consumed and replaced a prekey). */
		CHECK(sqlite3_exec(a.db, "DELETE FROM omemo_sessions; DELETE FROM "
		    "omemo_sessions_v4", NULL, NULL, NULL), "delete sessions");
		CHECK(sqlite3_exec(b.db, "DELETE FROM omemo_sessions; DELETE FROM "
		    "omemo_sessions_v4", NULL, NULL, NULL), "delete sessions");
		CHECK(get_bundle(&b, &bun), "bundle_element");
		c = cpu_ns();
		t = now_ns();
		CHECK(take_bundle(&a, &b, bun), "process_bundle");
		message(&a, &b, pt, len, true);
		ns[i] = now_ns() - t;
		cpu[i] = cpu_ns() - c;
		xmpp_stanza_release(bun);
	}
	report("first_contact", store, ns, cpu, i, 1);
	ep_close(&a);
	ep_close(&b);
	free(ns);
	free(cpu);
}

/* ---- raw OpenSSL ---- */

static EVP_PKEY *
x25519_key(void)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *k = NULL;

	if (c == NULL || EVP_PKEY_keygen_init(c) != 1 ||
	    EVP_PKEY_keygen(c, &k) != 1)
		die("x25519 keygen", 0);
	EVP_PKEY_CTX_free(c);
	return k;
}

static void
bench_crypto(size_t n, size_t len)
{
	uint64_t *ns = calloc(n, sizeof(*ns)), t;
	uint8_t key[32], iv[12], tag[16], out[32], *pt, *ct, *back;
	EVP_PKEY *k1 = x25519_key(), *k2 = x25519_key();
	EVP_MAC *mac;
	size_t i;

	pt = malloc(len + 16);
	ct = malloc(len + 16);
	back = malloc(len + 16);
	if (ns == NULL || pt == NULL || ct == NULL || back == NULL)
		die("malloc", 0);
	CHECK1(RAND_bytes(key, sizeof(key)), "RAND_bytes");
	CHECK1(RAND_bytes(iv, sizeof(iv)), "RAND_bytes");
	CHECK1(RAND_bytes(pt, (int)len), "RAND_bytes");

	for (i = 0; i < n; i++) {
		EVP_PKEY_CTX *c;
		size_t olen = sizeof(out);

		t = now_ns();
		if ((c = EVP_PKEY_CTX_new(k1, NULL)) == NULL ||
		    EVP_PKEY_derive_init(c) != 1 ||
		    EVP_PKEY_derive_set_peer(c, k2) != 1 ||
		    EVP_PKEY_derive(c, out, &olen) != 1 || olen != 32)
			die("x25519 derive", 0);
		EVP_PKEY_CTX_free(c);
		ns[i] = now_ns() - t;
	}
	report("x25519", NULL, ns, NULL, n, 1);

	for (i = 0; i < n; i++) {
		EVP_CIPHER_CTX *c;
		int l1 = 0, l2 = 0;

		t = now_ns();
		if ((c = EVP_CIPHER_CTX_new()) == NULL ||
		    EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
		    EVP_EncryptInit_ex(c, NULL, NULL, key, iv) != 1 ||
		    EVP_EncryptUpdate(c, ct, &l1, pt, (int)len) != 1 ||
		    EVP_EncryptFinal_ex(c, ct + l1, &l2) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
			die("gcm encrypt", 0);
		EVP_CIPHER_CTX_free(c);
		if ((c = EVP_CIPHER_CTX_new()) == NULL ||
		    EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
		    EVP_DecryptInit_ex(c, NULL, NULL, key, iv) != 1 ||
		    EVP_DecryptUpdate(c, back, &l1, ct, (int)len) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
		    EVP_DecryptFinal_ex(c, back + l1, &l2) != 1)
			die("gcm decrypt", 0);
		EVP_CIPHER_CTX_free(c);
		ns[i] = now_ns() - t;
		if (memcmp(back, pt, len) != 0)
			die("gcm round trip", 0);
	}
	report("aes128gcm", NULL, ns, NULL, n, 1);

	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		die("EVP_MAC_fetch", 0);
	for (i = 0; i < n; i++) {
		OSSL_PARAM p[2] = {
			OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
			    (char *)"SHA256", 0),
			OSSL_PARAM_construct_end(),
		};
		EVP_MAC_CTX *c;
		size_t olen = 0;

		t = now_ns();
		if ((c = EVP_MAC_CTX_new(mac)) == NULL ||
		    EVP_MAC_init(c, key, sizeof(key), p) != 1 ||
		    EVP_MAC_update(c, pt, len) != 1 ||
		    EVP_MAC_final(c, out, &olen, sizeof(out)) != 1 || olen != 32)
			die("hmac", 0);
		EVP_MAC_CTX_free(c);
		ns[i] = now_ns() - t;
	}
	report("hmac_sha256", NULL, ns, NULL, n, 1);
	EVP_MAC_free(mac);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	free(pt);
	free(ct);
	free(back);
	free(ns);
}

/* libsignal-protocol-c's own X25519 (exported, not in its headers). */
extern int curve25519_donna(uint8_t *mypublic, const uint8_t *secret,
    const uint8_t *basepoint);

static void
bench_libsignal_curve(size_t n)
{
	uint64_t *ns = calloc(n, sizeof(*ns)), t;
	uint8_t sk[32], pk[32], out[32];
	static const uint8_t base[32] = { 9 };
	size_t i;

	if (ns == NULL)
		die("calloc", 0);
	CHECK1(RAND_bytes(sk, sizeof(sk)), "RAND_bytes");
	CHECK(curve25519_donna(pk, sk, base), "curve25519_donna");
	CHECK1(RAND_bytes(sk, sizeof(sk)), "RAND_bytes");
	for (i = 0; i < n; i++) {
		t = now_ns();
		CHECK(curve25519_donna(out, sk, pk), "curve25519_donna");
		ns[i] = now_ns() - t;
	}
	report("libsignal_curve25519", NULL, ns, NULL, n, 1);
	free(ns);
}

static size_t
num(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > 10000000)
		die("bad number", 0);
	return v;
}

int
main(int argc, char **argv)
{
	const char *dir = NULL, *stores = "file_wal_full,file_wal_normal,memory";
	size_t n = 2000, first_n = 300, crypto_n = 20000, len = 256;
	char tmpl[] = "/tmp/mw-omemo-bench-XXXXXX", sub[600];
	uint8_t *pt;
	bool own_dir = false;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			die("missing value for an option", 0);
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[++i];
		else if (strcmp(argv[i], "--n") == 0)
			n = num(argv[++i]);
		else if (strcmp(argv[i], "--first-n") == 0)
			first_n = num(argv[++i]);
		else if (strcmp(argv[i], "--crypto-n") == 0)
			crypto_n = num(argv[++i]);
		else if (strcmp(argv[i], "--seconds") == 0)
			time_cap_s = (double)num(argv[++i]);
		else if (strcmp(argv[i], "--stores") == 0)
			stores = argv[++i];
		else if (strcmp(argv[i], "--size") == 0)
			len = num(argv[++i]);
		else
			die("unknown option", 0);
	}
	if (len > MW_OMEMO_MAX_PLAINTEXT)
		die("--size too large", 0);
	if (dir == NULL) {
		if (mkdtemp(tmpl) == NULL)
			die("mkdtemp", errno);
		dir = tmpl;
		own_dir = true;
	}
	snprintf(sub, sizeof(sub), "%s/omemo-bench-%ld", dir, (long)getpid());
	if (mkdir(sub, 0700) != 0)
		die("mkdir", errno);
	if ((pt = malloc(len)) == NULL)
		die("malloc", 0);
	for (size_t i = 0; i < len; i++)	/* text: what a result looks like */
		pt[i] = (uint8_t)('a' + i % 26);

	xmpp_initialize();
	if ((X = xmpp_ctx_new(NULL, NULL)) == NULL)
		die("xmpp_ctx_new", 0);
	printf("{\"bench\":\"config\",\"size\":%zu,\"n\":%zu,\"first_n\":%zu,"
	    "\"crypto_n\":%zu,\"dir\":\"%s\"}\n", len, n, first_n, crypto_n, sub);
	bench_crypto(crypto_n, len);
	bench_libsignal_curve(crypto_n / 10 + 1);
	if (strstr(stores, "file_wal_full") != NULL)
		bench_established("file_wal_full", sub, "FULL", n, pt, len);
	if (strstr(stores, "file_wal_normal") != NULL)
		bench_established("file_wal_normal", sub, "NORMAL", n, pt, len);
	if (strstr(stores, "memory") != NULL)
		bench_established("memory", NULL, NULL, n, pt, len);
	if (strstr(stores, "file_wal_full") != NULL)
		bench_first_contact("file_wal_full", sub, "FULL", first_n, pt, len);
	if (strstr(stores, "file_wal_normal") != NULL)
		bench_first_contact("file_wal_normal", sub, "NORMAL", first_n, pt, len);
	if (strstr(stores, "memory") != NULL)
		bench_first_contact("memory", NULL, NULL, first_n, pt, len);
	/* OMEMO 2 beside, in the same run, on the real store */
	if (strstr(stores, "file_wal_normal") != NULL) {
		omemo2 = true;
		bench_established("file_wal_normal", sub, "NORMAL", n, pt, len);
		bench_first_contact("file_wal_normal", sub, "NORMAL", first_n, pt,
		    len);
		omemo2 = false;
		bench_interleaved("file_wal_normal", sub, "NORMAL", n, pt, len);
	}
	xmpp_ctx_free(X);
	xmpp_shutdown();
	free(pt);
	if (rmdir(sub) != 0)
		die("rmdir", errno);
	if (own_dir && rmdir(dir) != 0)
		die("rmdir", errno);
	return 0;
}
