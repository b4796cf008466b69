/*
 * test_omemo_edconv.c: libomemo-c's Ed25519-to-Curve25519 conversion goes
 * through omemo/edconv.c's cache, and the cache only ever answers what the
 * library itself computes: RFC 8032's public keys give the Curve25519 forms
 * libsodium and python-xeddsa give, a second decode is a hit with the same
 * answer, and more keys than the cache holds (evictions, collisions, the
 * output array being the input one) match the library's own function call
 * for call.
 */
#include <dlfcn.h>
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

typedef int32_t fe10[10];
void fe_edy_to_montx(fe10 u, const fe10 y);

static void
hex(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
}

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_library_decodes_through_the_cache),
		cmocka_unit_test(test_cache_answers_what_the_library_computes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
