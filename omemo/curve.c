/*
 * curve.c: X25519 for libomemo-c, computed by OpenSSL.
 *
 * Why this exists: libomemo-c (like libsignal-protocol-c, which it forks)
 * does its Diffie-Hellman (every double-ratchet turn, X3DH, key
 * generation) with its bundled 32-bit curve25519-donna, about 145 us per
 * call on the benchmark machine, against 34 us for OpenSSL's X25519 (make
 * bench).  A reply in a conversation turns the ratchet -- one key
 * generation and two agreements -- so this is most of what an OMEMO
 * message costs.  The library calls the function through its PLT (two call
 * sites in libomemo-c.so.0.5.0: curve_generate_public_key and
 * curve_calculate_agreement), so a definition exported by the moonwire
 * executable takes its place (ELF symbol interposition; the Makefile
 * exports the symbol with --export-dynamic-symbol).  No primitive is
 * written here: the scalar multiplication is OpenSSL's.  Re-measured after
 * the switch to libomemo-c (issue 12; README, "OMEMO benchmark"): still
 * 1.6x on a ping-pong message and 1.7x on first contact, so it stays.
 *
 * Contract: mypublic = X25519(secret, basepoint), the secret clamped as
 * RFC 7748 says (OpenSSL clamps; the bundled donna does not, but the
 * library clamps every private key when it generates it, so the results
 * are the same for every key it uses).  0 on success.  Unlike donna,
 * which returns the all-zero point for a low-order peer key, this fails
 * closed (-1, mypublic zeroed): the library's two callers check the
 * result and report an error, so a malicious ratchet key can never
 * produce a predictable shared secret.
 *
 * An agreement loads the private key with a placeholder public half
 * (EVP_PKEY_fromdata with both halves): EVP_PKEY_new_raw_private_key
 * would compute the public key, a second scalar multiplication that the
 * derivation never reads (X25519 derive uses only our private and the
 * peer's public key).  Issue 13: an agreement costs one scalar
 * multiplication, not two.  The key object never leaves this function.
 *
 * Keys are imported (EVP_PKEY_fromdata) through one X25519 EVP_PKEY_CTX
 * kept for the life of the process: EVP_PKEY_CTX_new_from_name and the
 * EVP_PKEY_new_raw_* calls look the key manager up in OpenSSL's method
 * store on every call, about 3 us per key on OpenSSL 3.0, and an
 * agreement imports two (issue 13, second round).  That context holds no
 * key (EVP_PKEY_fromdata leaves nothing in it) and is only used by the
 * thread that made it, one call at a time (moonwire runs libomemo-c on one
 * thread per process); a call from any other thread imports through a
 * context of its own.  If the context cannot be made, every call fails.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "omemo/omemo_int.h"

int curve25519_donna(uint8_t *mypublic, const uint8_t *secret,
    const uint8_t *basepoint);

static unsigned long curve_calls;	/* for tests: proves the interposition */

unsigned long
omemo_curve_calls(void)
{
	return curve_calls;
}

static CRYPTO_ONCE import_once = CRYPTO_ONCE_STATIC_INIT;
static EVP_PKEY_CTX *import_ctx;	/* X25519, no key; set once, never freed */
static pthread_t import_owner;		/* the only thread that uses it */

static void
import_init(void)
{
	if ((import_ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL)) !=
	    NULL)
		import_owner = pthread_self();
}

/* An X25519 key from params (selection: EVP_PKEY_KEYPAIR or
 * EVP_PKEY_PUBLIC_KEY); NULL on failure. */
static EVP_PKEY *
import_key(int selection, OSSL_PARAM *params)
{
	EVP_PKEY_CTX *ctx, *own = NULL;
	EVP_PKEY *key = NULL;

	if (CRYPTO_THREAD_run_once(&import_once, import_init) != 1 ||
	    import_ctx == NULL)
		return NULL;
	if (pthread_equal(import_owner, pthread_self()))
		ctx = import_ctx;
	else if ((ctx = own = EVP_PKEY_CTX_new_from_name(NULL, "X25519",
	    NULL)) == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, selection, params) != 1)
		key = NULL;
	EVP_PKEY_CTX_free(own);
	return key;
}

/* The key pair of secret, its public half computed by OpenSSL. */
static EVP_PKEY *
keypair(const uint8_t *secret)
{
	OSSL_PARAM params[2];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
	    (void *)(uintptr_t)secret, 32);
	params[1] = OSSL_PARAM_construct_end();
	return import_key(EVP_PKEY_KEYPAIR, params);
}

/* The private key for an agreement only; its public half is a
 * placeholder that nothing reads (see above). */
static EVP_PKEY *
agreement_key(const uint8_t *secret)
{
	static const uint8_t placeholder[32];
	OSSL_PARAM params[3];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
	    (void *)(uintptr_t)secret, 32);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    (void *)(uintptr_t)placeholder, 32);
	params[2] = OSSL_PARAM_construct_end();
	return import_key(EVP_PKEY_KEYPAIR, params);
}

static EVP_PKEY *
peer_key(const uint8_t *pub)
{
	OSSL_PARAM params[2];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
	    (void *)(uintptr_t)pub, 32);
	params[1] = OSSL_PARAM_construct_end();
	return import_key(EVP_PKEY_PUBLIC_KEY, params);
}

int
curve25519_donna(uint8_t *mypublic, const uint8_t *secret, const uint8_t *basepoint)
{
	EVP_PKEY *priv = NULL, *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t len = 32;
	uint8_t out[32];
	int rc = 0;

	static const uint8_t nine[32] = { 9 };

	curve_calls++;
	memset(out, 0, sizeof(out));
	/* public key generation: OpenSSL computed it with the private key */
	if (memcmp(basepoint, nine, 32) == 0) {
		if ((priv = keypair(secret)) == NULL ||
		    EVP_PKEY_get_raw_public_key(priv, out, &len) != 1 || len != 32)
			rc = -1;
		goto done;
	}
	if ((priv = agreement_key(secret)) == NULL ||
	    (peer = peer_key(basepoint)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new(priv, NULL)) == NULL ||
	    EVP_PKEY_derive_init(ctx) != 1 ||
	    EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) != 1 ||
	    EVP_PKEY_derive(ctx, out, &len) != 1 || len != 32)
		rc = -1;
done:
	if (rc == 0)
		memcpy(mypublic, out, 32);
	else
		memset(mypublic, 0, 32);
	OPENSSL_cleanse(out, sizeof(out));
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(priv);
	return rc;
}
