/*
 * evp_int.h: private to omemo/.  The OpenSSL 3 algorithms omemo/ uses,
 * fetched once per process (crypto.c), because an implicit fetch
 * (EVP_sha512(), EVP_aes_*(), EVP_MAC_fetch, a digest named in an
 * OSSL_PARAM) costs a method-store lookup on every call, which on the
 * ratchet's many small HMACs was much of libcrypto's share of the agent's
 * CPU (issue 13).
 *
 * Invariants: omemo_evp() returns either NULL or a table whose every
 * handle is set; the table is built once (CRYPTO_THREAD_run_once) and
 * never changes or is freed afterwards, so any thread may read it.  A
 * failed fetch leaves it NULL for the life of the process: every caller
 * then fails (fails closed), none falls back to an implicit fetch.  The
 * handles stay reachable from a static until exit (not freed: valgrind
 * counts them "still reachable", never "definitely lost").
 */
#ifndef OMEMO_EVP_INT_H
#define OMEMO_EVP_INT_H

#include <openssl/evp.h>
#include <openssl/kdf.h>

struct omemo_evp {
	/* HMAC with SHA-256 and no key: a template that is only ever
	 * duplicated (EVP_MAC_CTX_dup), never keyed or updated itself */
	EVP_MAC_CTX *hmac_sha256;
	/* HMAC-SHA-256 keyed with 32 zero bytes: HKDF-Extract with the zero
	 * salt of the OMEMO 2 payload (payload2.c).  The key is public; the
	 * template too is only ever duplicated, never updated itself. */
	EVP_MAC_CTX *hmac_sha256_zero_salt;
	EVP_MD *sha512;
	EVP_CIPHER *aes_cbc[3];		/* 128, 192, 256-bit keys */
	EVP_CIPHER *aes_ctr[3];		/* 128, 192, 256-bit keys */
	EVP_CIPHER *aes128_gcm;
	EVP_KDF *hkdf;
};

/* The table, built on first use; NULL if a fetch failed. */
const struct omemo_evp *omemo_evp(void);
/* A fresh HMAC-SHA-256 context (a copy of the template), to be keyed with
 * EVP_MAC_init(c, key, len, NULL) and freed with EVP_MAC_CTX_free; NULL
 * on failure. */
EVP_MAC_CTX *omemo_hmac_sha256_new(void);

#endif
