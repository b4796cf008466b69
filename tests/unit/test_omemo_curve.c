/*
 * test_omemo_curve.c: libomemo-c's X25519 really is OpenSSL's
 * (omemo/curve.c), gives RFC 7748's answers, and fails closed on low-order
 * points where the bundled donna would have returned zeros.  Also: the
 * process has libomemo-c mapped and never libsignal-protocol-c (the two
 * export the same symbols; only one may be linked).
 */
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <curve.h>
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
static const char *BOB_PUB = "de9e5b7b19e67fa9b87e1f3d4d7cd4a3acbb0fdb5e5d5f0e2b4b1fc1a5c2e5ff";
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
	(void)BOB_PUB;
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
		cmocka_unit_test(test_linked_against_libomemo_c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
