/*
 * test_omemo_evp.c: the crypto provider and payload ciphers of omemo/ with
 * their OpenSSL algorithms fetched once per process (omemo/evp_int.h,
 * issue 13).  Published test vectors through the very callbacks libomemo-c
 * calls (so a template context that lost its digest, a cached cipher of the
 * wrong size or a context reused with stale state shows as a wrong answer),
 * X25519 imports from a second thread, and the failure mode: in a process
 * whose OpenSSL has no algorithms at all, the table is absent and
 * everything fails closed instead of crashing or falling back.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hkdf.h>
#include <signal_protocol.h>

#include "omemo/evp_int.h"
#include "omemo/omemo_int.h"

/* libomemo-c's dispatchers to the crypto provider: exported, declared
 * only in its uninstalled signal_protocol_internal.h */
int signal_hmac_sha256_init(signal_context *ctx, void **hmac,
    const uint8_t *key, size_t key_len);
int signal_hmac_sha256_update(signal_context *ctx, void *hmac,
    const uint8_t *data, size_t len);
int signal_hmac_sha256_final(signal_context *ctx, void *hmac,
    signal_buffer **out);
void signal_hmac_sha256_cleanup(signal_context *ctx, void *hmac);
int signal_sha512_digest_init(signal_context *ctx, void **digest);
int signal_sha512_digest_update(signal_context *ctx, void *digest,
    const uint8_t *data, size_t len);
int signal_sha512_digest_final(signal_context *ctx, void *digest,
    signal_buffer **out);
void signal_sha512_digest_cleanup(signal_context *ctx, void *digest);
int signal_encrypt(signal_context *ctx, signal_buffer **out, int cipher,
    const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
    const uint8_t *pt, size_t pt_len);
int signal_decrypt(signal_context *ctx, signal_buffer **out, int cipher,
    const uint8_t *key, size_t key_len, const uint8_t *iv, size_t iv_len,
    const uint8_t *ct, size_t ct_len);

int curve25519_donna(uint8_t *mypublic, const uint8_t *secret,
    const uint8_t *basepoint);

static size_t
hex(const char *h, uint8_t *out)
{
	size_t n = strlen(h) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;

		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void
assert_hex(const uint8_t *p, size_t n, const char *want)
{
	uint8_t w[128];

	assert_int_equal(hex(want, w), n);
	assert_memory_equal(p, w, n);
}

static signal_context *
provider_context(void)
{
	signal_context *sg = NULL;

	assert_int_equal(signal_context_create(&sg, NULL), 0);
	assert_int_equal(omemo_crypto_provider(sg), 0);
	return sg;
}

/* ---- HMAC-SHA-256 (RFC 4231) ---- */

#define RFC4231_2_MAC \
	"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
#define RFC4231_6_DATA "Test Using Larger Than Block-Size Key - Hash Key First"
#define RFC4231_6_MAC \
	"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"

static void
test_hmac_vectors_interleaved(void **state)
{
	signal_context *sg = provider_context();
	uint8_t long_key[131];
	void *a = NULL, *b = NULL;
	signal_buffer *ma = NULL, *mb = NULL;
	const char *da = "what do ya want for nothing?";

	(void)state;
	memset(long_key, 0xaa, sizeof(long_key));
	/* two live contexts from the one template: neither sees the other's
	 * key, and the template itself is never keyed */
	assert_int_equal(signal_hmac_sha256_init(sg, &a, (const uint8_t *)"Jefe",
	    4), 0);
	assert_int_equal(signal_hmac_sha256_init(sg, &b, long_key,
	    sizeof(long_key)), 0);
	assert_int_equal(signal_hmac_sha256_update(sg, a, (const uint8_t *)da,
	    10), 0);
	assert_int_equal(signal_hmac_sha256_update(sg, b,
	    (const uint8_t *)RFC4231_6_DATA, strlen(RFC4231_6_DATA)), 0);
	assert_int_equal(signal_hmac_sha256_update(sg, a,
	    (const uint8_t *)da + 10, strlen(da) - 10), 0);
	assert_int_equal(signal_hmac_sha256_final(sg, b, &mb), 0);
	assert_int_equal(signal_hmac_sha256_final(sg, a, &ma), 0);
	assert_int_equal(signal_buffer_len(ma), 32);
	assert_hex(signal_buffer_data(ma), 32, RFC4231_2_MAC);
	assert_int_equal(signal_buffer_len(mb), 32);
	assert_hex(signal_buffer_data(mb), 32, RFC4231_6_MAC);
	signal_hmac_sha256_cleanup(sg, a);
	signal_hmac_sha256_cleanup(sg, b);
	signal_buffer_free(ma);
	signal_buffer_free(mb);
	signal_context_destroy(sg);
}

/* HKDF-SHA-256 as libomemo-c computes it from the HMAC callbacks
 * (RFC 5869, test case 1). */
static void
test_hkdf_rfc5869(void **state)
{
	signal_context *sg = provider_context();
	hkdf_context *kdf = NULL;
	uint8_t ikm[22], salt[13], info[10], *okm = NULL;
	ssize_t n;

	(void)state;
	memset(ikm, 0x0b, sizeof(ikm));
	for (size_t i = 0; i < sizeof(salt); i++)
		salt[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(info); i++)
		info[i] = (uint8_t)(0xf0 + i);
	assert_int_equal(hkdf_create(&kdf, 3, sg), 0);
	n = hkdf_derive_secrets(kdf, &okm, ikm, sizeof(ikm), salt, sizeof(salt),
	    info, sizeof(info), 42);
	assert_int_equal(n, 42);
	assert_hex(okm, 42, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5d"
	    "b02d56ecc4c5bf34007208d5b887185865");
	free(okm);
	SIGNAL_UNREF(kdf);
	signal_context_destroy(sg);
}

/* ---- SHA-512: the context is reused after final (libsignal's contract) */

static void
test_sha512_reused_context(void **state)
{
	static const char *abc = "ddaf35a193617abacc417349ae20413112e6fa4e89a97e"
	    "a20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e"
	    "2a9ac94fa54ca49f";
	signal_context *sg = provider_context();
	signal_buffer *d = NULL;
	void *c = NULL;

	(void)state;
	assert_int_equal(signal_sha512_digest_init(sg, &c), 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(signal_sha512_digest_update(sg, c,
		    (const uint8_t *)"abc", 3), 0);
		assert_int_equal(signal_sha512_digest_final(sg, c, &d), 0);
		assert_int_equal(signal_buffer_len(d), 64);
		assert_hex(signal_buffer_data(d), 64, abc);
		signal_buffer_free(d);
		d = NULL;
	}
	signal_sha512_digest_cleanup(sg, c);
	signal_context_destroy(sg);
}

/* ---- AES-CBC / AES-CTR at every key size (NIST SP 800-38A F.2, F.5) */

static const char *PT1 = "6bc1bee22e409f96e93d7e117393172a";
static const char *CBC_IV = "000102030405060708090a0b0c0d0e0f";
static const char *CTR_IV = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
static const struct {
	const char *key, *cbc, *ctr;
} AES[] = {
	{ "2b7e151628aed2a6abf7158809cf4f3c",
	  "7649abac8119b246cee98e9b12e9197d",
	  "874d6191b620e3261bef6864990db6ce" },
	{ "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
	  "4f021db243bc633d7178183a9fa071e8",
	  "1abc932417521ca24f2b0459fe7e6e0b" },
	{ "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
	  "f58c4c04d6e5f1ba779eabfb5f7bfbd6",
	  "601ec313775789a5b7a7f504bbf3d228" },
};

static void
test_aes_cbc_ctr_vectors(void **state)
{
	signal_context *sg = provider_context();
	uint8_t key[32], iv[16], pt[16];
	signal_buffer *ct = NULL, *back = NULL;

	(void)state;
	hex(PT1, pt);
	for (size_t i = 0; i < sizeof(AES) / sizeof(AES[0]); i++) {
		size_t klen = hex(AES[i].key, key);

		/* CBC with PKCS#7: the vector's block, then a padding block */
		hex(CBC_IV, iv);
		assert_int_equal(signal_encrypt(sg, &ct, SG_CIPHER_AES_CBC_PKCS5,
		    key, klen, iv, 16, pt, 16), 0);
		assert_int_equal(signal_buffer_len(ct), 32);
		assert_hex(signal_buffer_data(ct), 16, AES[i].cbc);
		assert_int_equal(signal_decrypt(sg, &back, SG_CIPHER_AES_CBC_PKCS5,
		    key, klen, iv, 16, signal_buffer_data(ct), 32), 0);
		assert_int_equal(signal_buffer_len(back), 16);
		assert_memory_equal(signal_buffer_data(back), pt, 16);
		signal_buffer_free(ct);
		signal_buffer_free(back);

		hex(CTR_IV, iv);
		assert_int_equal(signal_encrypt(sg, &ct,
		    SG_CIPHER_AES_CTR_NOPADDING, key, klen, iv, 16, pt, 16), 0);
		assert_int_equal(signal_buffer_len(ct), 16);
		assert_hex(signal_buffer_data(ct), 16, AES[i].ctr);
		signal_buffer_free(ct);
	}
	/* a key of no AES size is refused, not truncated */
	assert_true(signal_encrypt(sg, &ct, SG_CIPHER_AES_CBC_PKCS5, key, 20,
	    iv, 16, pt, 16) < 0);
	signal_context_destroy(sg);
}

/* ---- AES-128-GCM payload (McGrew & Viega, test case 2) ---- */

static void
test_gcm_vector_and_tag(void **state)
{
	uint8_t key[16] = { 0 }, iv[12] = { 0 }, pt[16] = { 0 }, ct[16], tag[16],
	    back[16];

	(void)state;
	assert_int_equal(omemo_gcm_encrypt(key, iv, sizeof(iv), pt, 16, ct, tag),
	    0);
	assert_hex(ct, 16, "0388dace60b6a392f328c2b971b2fe78");
	assert_hex(tag, 16, "ab6e47d42cec13bdf53a67b21257bddf");
	assert_int_equal(omemo_gcm_decrypt(key, iv, sizeof(iv), ct, 16, tag,
	    back), 0);
	assert_memory_equal(back, pt, 16);
	tag[0] ^= 1;
	assert_int_equal(omemo_gcm_decrypt(key, iv, sizeof(iv), ct, 16, tag,
	    back), -1);
}

/* ---- OMEMO 2 payload: round trip, and a changed tag is refused ---- */

static void
test_payload2_round_trip(void **state)
{
	static const char msg[] = "<envelope xmlns='urn:xmpp:sce:1'/>";
	uint8_t keymat[OMEMO2_KEYMAT], *ct = NULL, *pt = NULL;
	size_t ctlen = 0, ptlen = 0;

	(void)state;
	for (int round = 0; round < 3; round++) {
		assert_int_equal(omemo2_payload_encrypt((const uint8_t *)msg,
		    strlen(msg), keymat, &ct, &ctlen), 0);
		assert_int_equal(ctlen % 16, 0);
		assert_int_equal(omemo2_payload_decrypt(keymat, ct, ctlen, &pt,
		    &ptlen), 0);
		assert_int_equal(ptlen, strlen(msg));
		assert_memory_equal(pt, msg, ptlen);
		free(pt);
		keymat[OMEMO2_KEY] ^= 1;
		assert_int_equal(omemo2_payload_decrypt(keymat, ct, ctlen, &pt,
		    &ptlen), MW_OMEMO_E_BAD_TAG);
		assert_null(pt);
		free(ct);
	}
}

/* ---- OMEMO 2 payload: a known answer from another implementation ----
 * Made with python3-cryptography (HKDF, AES-CBC + PKCS#7, HMAC) as XEP-0384
 * v0.8 section 4.4 says: key = 00 01 .. 1f, HKDF-SHA-256 with 32 zero bytes
 * of salt and info "OMEMO Payload" to 80 bytes, AES-256-CBC, the first 16
 * bytes of HMAC-SHA-256 over the ciphertext.  Pins the key derivation. */
static void
test_payload2_known_answer(void **state)
{
	static const uint8_t ct[48] =
	    "\xde\x87\x12\x02\xa1\xb7\x4d\xaa\xf0\x31\x9e\x2c\x09\x0c\x84\xc8"
	    "\x95\x46\x3a\x59\x8b\xb0\x4b\x76\xad\xed\xd0\x77\xf1\xa5\x22\xfe"
	    "\xce\x13\xd4\x36\x1d\xd8\x9f\x20\xbb\xda\x37\x78\x10\xbd\x00\xa3";
	static const uint8_t tag[OMEMO2_TAG] =
	    "\xf9\x6e\xff\x94\xa4\x51\x36\x81\xf0\xa3\x72\x58\x79\x7c\xc5\x17";
	static const char msg[] = "moonwire: an OMEMO 2 payload, known answer";
	uint8_t keymat[OMEMO2_KEYMAT], *pt = NULL;
	size_t ptlen = 0;

	(void)state;
	for (int i = 0; i < OMEMO2_KEY; i++)
		keymat[i] = (uint8_t)i;
	memcpy(keymat + OMEMO2_KEY, tag, OMEMO2_TAG);
	for (int round = 0; round < 2; round++) {	/* templates reused */
		assert_int_equal(omemo2_payload_decrypt(keymat, ct, sizeof(ct),
		    &pt, &ptlen), 0);
		assert_int_equal(ptlen, strlen(msg));
		assert_memory_equal(pt, msg, ptlen);
		free(pt);
		pt = NULL;
	}
	keymat[0] ^= 1;		/* another key: another MAC key, refused */
	assert_int_equal(omemo2_payload_decrypt(keymat, ct, sizeof(ct), &pt,
	    &ptlen), MW_OMEMO_E_BAD_TAG);
}

/* ---- X25519 from the owner thread and from another (RFC 7748 6.1) ---- */

static const char *ALICE_PRIV =
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
static const char *ALICE_PUB =
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
static const char *BOB_PRIV =
    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
static const char *BOB_PUB =
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
static const char *SHARED =
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

/* 0 when every answer is RFC 7748's, else the step that differed */
static int
x25519_answers(void)
{
	static const uint8_t nine[32] = { 9 };
	uint8_t a[32], b[32], pa[32], pb[32], want[32], s1[32], s2[32];

	hex(ALICE_PRIV, a);
	hex(BOB_PRIV, b);
	if (curve25519_donna(pa, a, nine) != 0 || curve25519_donna(pb, b, nine) != 0)
		return 1;
	hex(ALICE_PUB, want);
	if (memcmp(pa, want, 32) != 0)
		return 2;
	hex(BOB_PUB, want);
	if (memcmp(pb, want, 32) != 0)
		return 2;
	/* alternating keys through the one import context: nothing of the
	 * previous key may carry over */
	if (curve25519_donna(s1, a, pb) != 0 || curve25519_donna(s2, b, pa) != 0)
		return 3;
	hex(SHARED, want);
	if (memcmp(s1, want, 32) != 0 || memcmp(s2, want, 32) != 0)
		return 4;
	return 0;
}

static void *
x25519_thread(void *arg)
{
	*(int *)arg = x25519_answers();
	return NULL;
}

static void
test_x25519_owner_and_other_thread(void **state)
{
	pthread_t t;
	int rc = -1;

	(void)state;
	assert_int_equal(x25519_answers(), 0);
	assert_int_equal(pthread_create(&t, NULL, x25519_thread, &rc), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(rc, 0);
	assert_int_equal(x25519_answers(), 0);
}

/* ---- no algorithms: everything fails closed ---- */

/* Runs in a fresh process whose OpenSSL loads only the null provider
 * (OPENSSL_CONF): no fetch can succeed.  Exit status: 0, or the number of
 * the check that did not fail closed. */
static int
child_without_algorithms(void)
{
	static const uint8_t nine[32] = { 9 };
	uint8_t key[16] = { 0 }, iv[12] = { 0 }, pt[16] = { 0 }, out[32], tag[16],
	    keymat[OMEMO2_KEYMAT], *ct = NULL;
	size_t ctlen = 0;
	struct mw_omemo *o = NULL;
	signal_context *sg = NULL;
	sqlite3 *db = NULL;

	if (omemo_evp() != NULL || omemo_evp() != NULL)
		return 1;
	if (omemo_hmac_sha256_new() != NULL)
		return 2;
	if (omemo_gcm_encrypt(key, iv, sizeof(iv), pt, 16, out, tag) != -1)
		return 3;
	memset(out, 0xAA, sizeof(out));
	if (curve25519_donna(out, pt, nine) != -1)
		return 4;
	for (size_t i = 0; i < sizeof(out); i++)
		if (out[i] != 0)
			return 5;
	if (omemo2_payload_encrypt(pt, sizeof(pt), keymat, &ct, &ctlen) == 0 ||
	    ct != NULL)
		return 6;
	if (signal_context_create(&sg, NULL) != 0)
		return 7;
	if (omemo_crypto_provider(sg) == 0)
		return 8;
	signal_context_destroy(sg);
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		return 9;
	if (mw_omemo_open(&o, db, "evp@example.org") != MW_OMEMO_E_CRYPTO ||
	    o != NULL)
		return 10;
	sqlite3_close(db);
	return 0;
}

static void
test_no_algorithms_fails_closed(void **state)
{
	char conf[] = "/tmp/mw-evp-null-XXXXXX";
	static const char cnf[] = "openssl_conf = openssl_init\n"
	    "[openssl_init]\nproviders = provider_sect\n"
	    "[provider_sect]\nnull = null_sect\n"
	    "[null_sect]\nactivate = 1\n";
	char self[4096];
	ssize_t len;
	int fd, status = -1;
	pid_t pid;

	(void)state;
	/* readlink, not exec of /proc/self/exe: under valgrind the link
	 * names this program, the exec would start valgrind */
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(len > 0 && (size_t)len < sizeof(self) - 1);
	self[len] = '\0';
	/* this process has its algorithms: the child's failures are the
	 * null provider's doing */
	assert_non_null(omemo_evp());
	assert_true((fd = mkstemp(conf)) >= 0);
	assert_int_equal(write(fd, cnf, sizeof(cnf) - 1), (ssize_t)sizeof(cnf) - 1);
	assert_int_equal(close(fd), 0);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		/* under qemu-user (make cross-test) the host kernel cannot
		 * run this binary itself: cross-test.sh names the emulator */
		const char *emu = getenv("MW_TEST_EXEC_WRAPPER");
		char *argv[] = { (char *)"test_omemo_evp", NULL };
		char *wrapped[] = { (char *)emu, self, NULL };

		if (setenv("OPENSSL_CONF", conf, 1) != 0 ||
		    setenv("MW_TEST_EVP_CHILD", "1", 1) != 0)
			_exit(100);
		if (emu != NULL && *emu != '\0')
			execv(emu, wrapped);
		else
			execv(self, argv);
		_exit(101);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	(void)unlink(conf);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmac_vectors_interleaved),
		cmocka_unit_test(test_hkdf_rfc5869),
		cmocka_unit_test(test_sha512_reused_context),
		cmocka_unit_test(test_aes_cbc_ctr_vectors),
		cmocka_unit_test(test_gcm_vector_and_tag),
		cmocka_unit_test(test_payload2_round_trip),
		cmocka_unit_test(test_payload2_known_answer),
		cmocka_unit_test(test_x25519_owner_and_other_thread),
		cmocka_unit_test(test_no_algorithms_fails_closed),
	};

	if (getenv("MW_TEST_EVP_CHILD") != NULL)
		return child_without_algorithms();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
