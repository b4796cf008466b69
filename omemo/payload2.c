/*
 * payload2.c: the OMEMO 2 payload cipher (XEP-0384 v0.8 §4.4, as
 * python-twomemo 1.0.3 implements it).  A random 32-byte key goes through
 * HKDF-SHA-256 (salt 32 zero bytes, info "OMEMO Payload") to 80 bytes:
 * encryption key (32), authentication key (32), IV (16).  The payload is
 * AES-256-CBC with PKCS#7 padding; the tag is HMAC-SHA-256 over the
 * ciphertext truncated to 16 bytes.  key||tag (48 bytes) is what the
 * ratchet carries per device.
 *
 * Everything is OpenSSL 3 (EVP_KDF, EVP_CIPHER, EVP_MAC), with the
 * algorithms fetched once per process (omemo_evp(), evp_int.h); the tag is
 * compared in constant time before anything is decrypted; derived keys are
 * cleansed on every path.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "omemo/evp_int.h"
#include "omemo/omemo_int.h"

#define DERIVED	80

/*
 * HKDF-SHA-256(key, salt = 32 zero bytes, info "OMEMO Payload") to 80 bytes,
 * in RFC 5869's two steps: the extract step, PRK = HMAC-SHA-256(salt, key),
 * through a copy of the HMAC template already keyed with the zero salt
 * (evp_int.h); the expand step by OpenSSL's HKDF in its expand-only mode.
 * OpenSSL 3.0's one-shot HKDF spent two-fifths of its time in the extract
 * step fetching HMAC and SHA-256 by name on every call (README, "OMEMO
 * benchmark").  test_omemo_evp pins the result to another implementation's.
 */
static int
derive(const uint8_t key[OMEMO2_KEY], uint8_t out[DERIVED])
{
	const struct omemo_evp *t = omemo_evp();
	EVP_MAC_CTX *m;
	EVP_KDF_CTX *c;
	uint8_t prk[32];
	size_t prklen = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;
	OSSL_PARAM p[5];

	if (t == NULL || (m = EVP_MAC_CTX_dup(t->hmac_sha256_zero_salt)) == NULL)
		return -1;
	ok = EVP_MAC_update(m, key, OMEMO2_KEY) == 1 &&
	    EVP_MAC_final(m, prk, &prklen, sizeof(prk)) == 1 &&
	    prklen == sizeof(prk);
	EVP_MAC_CTX_free(m);
	/* The digest stays a name: OpenSSL 3.0's HKDF cannot be duplicated
	 * from a template, and a KDF takes its digest only by name. */
	if (ok && (c = EVP_KDF_CTX_new(t->hkdf)) != NULL) {
		p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
		    (char *)"SHA256", 0);
		p[1] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
		p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
		    prk, sizeof(prk));
		p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
		    (void *)"OMEMO Payload", 13);
		p[4] = OSSL_PARAM_construct_end();
		ok = EVP_KDF_derive(c, out, DERIVED, p) == 1;
		EVP_KDF_CTX_free(c);
	} else
		ok = 0;
	OPENSSL_cleanse(prk, sizeof(prk));
	return ok ? 0 : -1;
}

/* HMAC-SHA-256(key, ct) truncated to OMEMO2_TAG bytes */
static int
tag_of(const uint8_t key[32], const uint8_t *ct, size_t n,
    uint8_t tag[OMEMO2_TAG])
{
	uint8_t md[32];
	size_t mdlen = 0;
	EVP_MAC_CTX *c;
	int ok;

	if ((c = omemo_hmac_sha256_new()) == NULL)
		return -1;
	ok = EVP_MAC_init(c, key, 32, NULL) == 1 &&
	    EVP_MAC_update(c, ct, n) == 1 &&
	    EVP_MAC_final(c, md, &mdlen, sizeof(md)) == 1 &&
	    mdlen == sizeof(md);
	EVP_MAC_CTX_free(c);
	if (ok)
		memcpy(tag, md, OMEMO2_TAG);
	OPENSSL_cleanse(md, sizeof(md));
	return ok ? 0 : -1;
}

static int
cbc(int enc, const uint8_t key[32], const uint8_t iv[16], const uint8_t *in,
    size_t n, uint8_t *out, size_t *outlen)
{
	const struct omemo_evp *t = omemo_evp();
	EVP_CIPHER_CTX *c;
	int l1 = 0, l2 = 0, ret = -1;

	if (t == NULL || n > INT32_MAX - 32 || (c = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	if (EVP_CipherInit_ex(c, t->aes_cbc[2] /* 256 */, NULL, key, iv,
	    enc) != 1)
		goto out;
	if (n > 0 && EVP_CipherUpdate(c, out, &l1, in, (int)n) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + l1, &l2) != 1)
		goto out;	/* decrypt: bad padding */
	*outlen = (size_t)l1 + (size_t)l2;
	ret = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return ret;
}

int
omemo2_payload_encrypt(const uint8_t *pt, size_t n,
    uint8_t keymat[OMEMO2_KEYMAT], uint8_t **ct, size_t *ctlen)
{
	uint8_t d[DERIVED], *out;
	size_t len = 0;
	int rc = MW_OMEMO_E_CRYPTO;

	*ct = NULL;
	*ctlen = 0;
	/* the envelope (up to MW_OMEMO_MAX_PLAINTEXT of body, escaped, plus
	 * affixes) is bounded by what fits in one stanza */
	if (n > MW_OMEMO_MAX_STANZA)
		return MW_OMEMO_E_OVERSIZE;
	if ((out = malloc(n + 16)) == NULL)
		return MW_OMEMO_E_NOMEM;
	if (omemo_random(keymat, OMEMO2_KEY) != 0 || derive(keymat, d) != 0 ||
	    cbc(1, d, d + 64, pt, n, out, &len) != 0 ||
	    tag_of(d + 32, out, len, keymat + OMEMO2_KEY) != 0) {
		free(out);
		OPENSSL_cleanse(keymat, OMEMO2_KEYMAT);
		goto done;
	}
	*ct = out;
	*ctlen = len;
	rc = 0;
done:
	OPENSSL_cleanse(d, sizeof(d));
	return rc;
}

int
omemo2_payload_decrypt(const uint8_t keymat[OMEMO2_KEYMAT], const uint8_t *ct,
    size_t n, uint8_t **pt, size_t *ptlen)
{
	uint8_t d[DERIVED], tag[OMEMO2_TAG], *out = NULL;
	size_t len = 0;
	int rc;

	*pt = NULL;
	*ptlen = 0;
	if (n == 0 || n % 16 != 0)
		return MW_OMEMO_E_MALFORMED;
	if (n > MW_OMEMO_MAX_STANZA)
		return MW_OMEMO_E_OVERSIZE;
	if (derive(keymat, d) != 0 || tag_of(d + 32, ct, n, tag) != 0) {
		rc = MW_OMEMO_E_CRYPTO;
		goto done;
	}
	if (CRYPTO_memcmp(tag, keymat + OMEMO2_KEY, OMEMO2_TAG) != 0) {
		rc = MW_OMEMO_E_BAD_TAG;
		goto done;
	}
	/* +1: room for the NUL the caller adds */
	if ((out = malloc(n + 1)) == NULL) {
		rc = MW_OMEMO_E_NOMEM;
		goto done;
	}
	if (cbc(0, d, d + 64, ct, n, out, &len) != 0) {
		OPENSSL_cleanse(out, n + 1);
		free(out);
		rc = MW_OMEMO_E_BAD_TAG;	/* authenticated, yet bad padding */
		goto done;
	}
	out[len] = '\0';
	*pt = out;
	*ptlen = len;
	rc = 0;
done:
	OPENSSL_cleanse(d, sizeof(d));
	return rc;
}
