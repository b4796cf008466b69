/*
 * test_omemo_curve.c: libomemo-c's X25519 really is OpenSSL's
 * (omemo/curve.c), gives RFC 7748's answers, and fails closed on low-order
 * points where the bundled donna would have returned zeros.  Its Ed25519
 * to Curve25519 conversion goes through omemo/edconv.c's cache, which only
 * ever answers what the library itself computes: RFC 8032's public keys
 * give the Curve25519 forms libsodium and python-xeddsa give, a second
 * decode is a hit with the same answer, and more keys than the cache
 * holds (evictions, collisions, the output array being the input one)
 * match the library's own function call for call.  Also: the process has
 * libomemo-c mapped and never libsignal-protocol-c (the two export the
 * same symbols; only one may be linked).
 */
#include <dlfcn.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <curve.h>
#include <openssl/rand.h>
#include <signal_protocol.h>

#include "omemo/omemo_int.h"

int curve25519_donna(uint8_t *mypublic, const uint8_t *secret, const uint8_t *basepoint);

static void
hex(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
}

/* RFC 7748 section 6.1 */
static const char *ALICE_PRIV = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
static const char *ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
static const char *BOB_PRIV = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
static const char *BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
static const char *SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

static void
test_rfc7748_vectors(void **state)
{
	uint8_t a[32], b[32], pub[32], want[32], out[32];
	static const uint8_t nine[32] = { 9 };

	(void)state;
	hex(ALICE_PRIV, a, 32);
	hex(BOB_PRIV, b, 32);
	hex(ALICE_PUB, want, 32);
	assert_int_equal(curve25519_donna(pub, a, nine), 0);
	assert_memory_equal(pub, want, 32);
	hex(SHARED, want, 32);
	assert_int_equal(curve25519_donna(out, b, pub), 0);
	assert_memory_equal(out, want, 32);
	/* and the other way round */
	hex(BOB_PUB, want, 32);
	assert_int_equal(curve25519_donna(pub, b, nine), 0);
	assert_memory_equal(pub, want, 32);
	hex(SHARED, want, 32);
	assert_int_equal(curve25519_donna(out, a, pub), 0);
	assert_memory_equal(out, want, 32);
}

static void
test_library_calls_openssl(void **state)
{
	uint8_t a[32], b[32], pub33[33], want[32];
	static const uint8_t nine[32] = { 9 };
	ec_public_key *pk = NULL;
	ec_private_key *sk = NULL;
	uint8_t *shared = NULL;
	unsigned long before;
	int n;

	(void)state;
	hex(ALICE_PRIV, a, 32);
	hex(BOB_PRIV, b, 32);
	pub33[0] = 0x05;	/* DJB_TYPE */
	assert_int_equal(curve25519_donna(pub33 + 1, a, nine), 0);
	assert_int_equal(curve_decode_point(&pk, pub33, sizeof(pub33), NULL), 0);
	assert_int_equal(curve_decode_private_point(&sk, b, 32, NULL), 0);
	before = omemo_curve_calls();
	n = curve_calculate_agreement(&shared, pk, sk);
	/* libomemo-c's call went through its PLT into curve.c, not the
	 * bundled donna */
	assert_int_equal(omemo_curve_calls(), before + 1);
	assert_int_equal(n, 32);
	hex(SHARED, want, 32);
	assert_memory_equal(shared, want, 32);
	free(shared);
	SIGNAL_UNREF(pk);
	SIGNAL_UNREF(sk);
}

static void
test_low_order_point_fails_closed(void **state)
{
	uint8_t b[32], zero33[33] = { 0x05 }, out[32];
	ec_public_key *pk = NULL;
	ec_private_key *sk = NULL;
	uint8_t *shared = NULL;

	(void)state;
	hex(BOB_PRIV, b, 32);
	memset(out, 0xAA, sizeof(out));
	/* u = 0 is of small order: X25519 gives the all-zero point */
	assert_int_equal(curve25519_donna(out, b, zero33 + 1), -1);
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(out[i], 0);
	assert_int_equal(curve_decode_point(&pk, zero33, sizeof(zero33), NULL), 0);
	assert_int_equal(curve_decode_private_point(&sk, b, 32, NULL), 0);
	assert_true(curve_calculate_agreement(&shared, pk, sk) < 0);
	assert_null(shared);
	SIGNAL_UNREF(pk);
	SIGNAL_UNREF(sk);
}

typedef int32_t fe10[10];
void fe_edy_to_montx(fe10 u, const fe10 y);

/* RFC 8032 section 7.1, tests 1 and 2; their Curve25519 forms from
 * libsodium's crypto_sign_ed25519_pk_to_curve25519 and python-xeddsa. */
static const struct {
	const char *ed, *mont;
} VECTORS[] = {
	{ "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
	  "d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e" },
	{ "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
	  "25c704c594b88afc00a76b69d1ed2b984d7e22550f3ed0802d04fbcd07d38d47" },
};

/* The Curve25519 form of an Ed25519 public key, decoded by libomemo-c. */
static void
mont_of(const uint8_t ed[32], uint8_t out[32])
{
	ec_public_key *key = NULL;
	signal_buffer *mont;

	assert_int_equal(curve_decode_point_ed(&key, ed, 32, NULL), 0);
	assert_non_null(mont = ec_public_key_get_mont(key));
	assert_int_equal(signal_buffer_len(mont), 32);
	memcpy(out, signal_buffer_data(mont), 32);
	signal_buffer_free(mont);
	SIGNAL_UNREF(key);
}

static void
test_library_decodes_through_the_cache(void **state)
{
	uint8_t ed[32], want[32], got[32];
	unsigned long h0, m0, h1, m1, h2, m2;

	(void)state;
	for (size_t i = 0; i < sizeof(VECTORS) / sizeof(VECTORS[0]); i++) {
		hex(VECTORS[i].ed, ed, 32);
		hex(VECTORS[i].mont, want, 32);
		omemo_edconv_counts(&h0, &m0);
		mont_of(ed, got);
		assert_memory_equal(got, want, 32);
		omemo_edconv_counts(&h1, &m1);
		/* libomemo-c's call went through its PLT into edconv.c */
		assert_int_equal(h1 + m1, h0 + m0 + 1);
		memset(got, 0, sizeof(got));
		mont_of(ed, got);
		assert_memory_equal(got, want, 32);
		omemo_edconv_counts(&h2, &m2);
		assert_int_equal(h2, h1 + 1);
		assert_int_equal(m2, m1);
	}
}

static void
test_cache_answers_what_the_library_computes(void **state)
{
	void (*library)(fe10, const fe10);
	enum { KEYS = 5000, ROUNDS = 3 };
	static fe10 ys[KEYS];
	unsigned long h0, m0, h1, m1;

	(void)state;
	*(void **)&library = dlsym(RTLD_NEXT, "fe_edy_to_montx");
	assert_non_null(library);
	assert_true(library != fe_edy_to_montx);
	for (size_t i = 0; i < KEYS; i++) {
		uint8_t b[32];

		assert_int_equal(RAND_bytes(b, sizeof(b)), 1);
		/* limbs as fe_frombytes leaves them: 26/25 bits, signed */
		for (int j = 0; j < 10; j++) {
			uint32_t v;

			memcpy(&v, b + 3 * j, sizeof(v));
			ys[i][j] = (int32_t)(v & ((1u << (j % 2 ? 25 : 26)) - 1)) -
			    (j == 9 ? (1 << 24) : 0);
		}
	}
	omemo_edconv_counts(&h0, &m0);
	for (int r = 0; r < ROUNDS; r++) {
		for (size_t k = 0; k < KEYS; k++) {
			/* a stride that revisits recent keys and evicts old ones */
			size_t i = (k * 7 + (size_t)r * 13) % KEYS;
			fe10 want, got;

			library(want, ys[i]);
			fe_edy_to_montx(got, ys[i]);
			assert_memory_equal(got, want, sizeof(fe10));
			/* again at once: a hit */
			memset(got, 0x55, sizeof(got));
			fe_edy_to_montx(got, ys[i]);
			assert_memory_equal(got, want, sizeof(fe10));
			/* the output array being the input one */
			memcpy(got, ys[i], sizeof(fe10));
			fe_edy_to_montx(got, got);
			assert_memory_equal(got, want, sizeof(fe10));
		}
	}
	omemo_edconv_counts(&h1, &m1);
	assert_int_equal((h1 - h0) + (m1 - m0), 3UL * KEYS * ROUNDS);
	assert_true(h1 - h0 >= 2UL * KEYS * ROUNDS);
}

struct libs_seen {
	int omemo_c;
	int signal_protocol_c;
};

static int
note_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct libs_seen *seen = arg;

	(void)size;
	if (info->dlpi_name != NULL) {
		if (strstr(info->dlpi_name, "libomemo-c.so") != NULL)
			seen->omemo_c++;
		if (strstr(info->dlpi_name, "libsignal-protocol-c") != NULL)
			seen->signal_protocol_c++;
	}
	return 0;
}

static void
test_linked_against_libomemo_c(void **state)
{
	struct libs_seen seen = { 0, 0 };

	(void)state;
	(void)dl_iterate_phdr(note_lib, &seen);
	assert_int_equal(seen.omemo_c, 1);
	assert_int_equal(seen.signal_protocol_c, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7748_vectors),
		cmocka_unit_test(test_library_calls_openssl),
		cmocka_unit_test(test_low_order_point_fails_closed),
		cmocka_unit_test(test_library_decodes_through_the_cache),
		cmocka_unit_test(test_cache_answers_what_the_library_computes),
		cmocka_unit_test(test_linked_against_libomemo_c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
