/*
 * crypto.c: the OpenSSL 3 crypto provider libomemo-c calls, plus
 * the AES-128-GCM payload cipher and strict base64 of the OMEMO stanza layer.
 *
 * Everything goes through EVP / EVP_MAC; no primitive is implemented here.
 * Invariants: every callback returns 0 or a negative SG_ERR_*; contexts are
 * freed on every path; buffers that held key material or plaintext are
 * cleansed before release.  Algorithms are the handles of omemo_evp()
 * (evp_int.h), fetched once per process: no call here names an algorithm
 * (no EVP_sha512(), EVP_aes_*() or digest name in an OSSL_PARAM), and
 * every callback fails when the table could not be built.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "omemo/evp_int.h"
#include "omemo/omemo_int.h"

/* ---- the algorithm table (evp_int.h) ---- */

static CRYPTO_ONCE evp_once = CRYPTO_ONCE_STATIC_INIT;
static struct omemo_evp evp_table;
static const struct omemo_evp *evp;	/* &evp_table once complete, else NULL */

static void
evp_table_free(struct omemo_evp *t)
{
	EVP_MAC_CTX_free(t->hmac_sha256);
	EVP_MAC_CTX_free(t->hmac_sha256_zero_salt);
	EVP_MD_free(t->sha512);
	for (size_t i = 0; i < 3; i++) {
		EVP_CIPHER_free(t->aes_cbc[i]);
		EVP_CIPHER_free(t->aes_ctr[i]);
	}
	EVP_CIPHER_free(t->aes128_gcm);
	EVP_KDF_free(t->hkdf);
	memset(t, 0, sizeof(*t));
}

/* Runs once (CRYPTO_THREAD_run_once); publishes the table only when
 * every fetch succeeded. */
static void
evp_table_init(void)
{
	static const char *const cbc[3] = {
		"AES-128-CBC", "AES-192-CBC", "AES-256-CBC" };
	static const char *const ctr[3] = {
		"AES-128-CTR", "AES-192-CTR", "AES-256-CTR" };
	struct omemo_evp *t = &evp_table;
	OSSL_PARAM params[2];
	EVP_MAC *mac;
	int ok = 1;

	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return;
	t->hmac_sha256 = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);	/* the context keeps its own reference */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (t->hmac_sha256 == NULL ||
	    EVP_MAC_CTX_set_params(t->hmac_sha256, params) != 1)
		ok = 0;
	if (ok) {
		static const uint8_t zero_salt[32];

		if ((t->hmac_sha256_zero_salt = EVP_MAC_CTX_dup(
		    t->hmac_sha256)) == NULL ||
		    EVP_MAC_init(t->hmac_sha256_zero_salt, zero_salt,
		    sizeof(zero_salt), NULL) != 1)
			ok = 0;
	}
	if ((t->sha512 = EVP_MD_fetch(NULL, "SHA512", NULL)) == NULL)
		ok = 0;
	for (size_t i = 0; i < 3; i++)
		if ((t->aes_cbc[i] = EVP_CIPHER_fetch(NULL, cbc[i], NULL)) ==
		    NULL || (t->aes_ctr[i] = EVP_CIPHER_fetch(NULL, ctr[i],
		    NULL)) == NULL)
			ok = 0;
	if ((t->aes128_gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL)) ==
	    NULL)
		ok = 0;
	if ((t->hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
		ok = 0;
	if (!ok) {
		evp_table_free(t);
		return;
	}
	evp = t;
}

const struct omemo_evp *
omemo_evp(void)
{
	if (CRYPTO_THREAD_run_once(&evp_once, evp_table_init) != 1)
		return NULL;
	return evp;
}

EVP_MAC_CTX *
omemo_hmac_sha256_new(void)
{
	const struct omemo_evp *t = omemo_evp();

	return t != NULL ? EVP_MAC_CTX_dup(t->hmac_sha256) : NULL;
}

int
omemo_random(void *p, size_t n)
{
	if (n > INT32_MAX)
		return -1;
	return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
}

static int
cb_random(uint8_t *data, size_t len, void *u)
{
	return omemo_random(data, len) == 0 ? 0 : SG_ERR_UNKNOWN;
}

/* ---- HMAC-SHA256 via EVP_MAC ---- */

static int
cb_hmac_init(void **hctx, const uint8_t *key, size_t key_len, void *u)
{
	EVP_MAC_CTX *c;

	*hctx = NULL;
	if (omemo_evp() == NULL)
		return SG_ERR_UNKNOWN;
	if ((c = omemo_hmac_sha256_new()) == NULL)
		return SG_ERR_NOMEM;
	if (EVP_MAC_init(c, key, key_len, NULL) != 1) {
		EVP_MAC_CTX_free(c);
		return SG_ERR_UNKNOWN;
	}
	*hctx = c;
	return 0;
}

static int
cb_hmac_update(void *hctx, const uint8_t *data, size_t len, void *u)
{
	return EVP_MAC_update(hctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int
cb_hmac_final(void *hctx, signal_buffer **out, void *u)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t n = 0;

	if (EVP_MAC_final(hctx, md, &n, sizeof(md)) != 1)
		return SG_ERR_UNKNOWN;
	*out = signal_buffer_create(md, n);
	OPENSSL_cleanse(md, sizeof(md));
	return *out != NULL ? 0 : SG_ERR_NOMEM;
}

static void
cb_hmac_cleanup(void *hctx, void *u)
{
	EVP_MAC_CTX_free(hctx);
}

/* ---- SHA-512 via EVP_MD ---- */

static int
cb_sha512_init(void **dctx, void *u)
{
	const struct omemo_evp *t = omemo_evp();
	EVP_MD_CTX *c;

	*dctx = NULL;
	if (t == NULL)
		return SG_ERR_UNKNOWN;
	if ((c = EVP_MD_CTX_new()) == NULL)
		return SG_ERR_NOMEM;
	if (EVP_DigestInit_ex(c, t->sha512, NULL) != 1) {
		EVP_MD_CTX_free(c);
		return SG_ERR_UNKNOWN;
	}
	*dctx = c;
	return 0;
}

static int
cb_sha512_update(void *dctx, const uint8_t *data, size_t len, void *u)
{
	return EVP_DigestUpdate(dctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

/* Finalizes and re-initializes, as libsignal expects a reusable context. */
static int
cb_sha512_final(void *dctx, signal_buffer **out, void *u)
{
	const struct omemo_evp *t = omemo_evp();
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (t == NULL || EVP_DigestFinal_ex(dctx, md, &n) != 1)
		return SG_ERR_UNKNOWN;
	if (EVP_DigestInit_ex(dctx, t->sha512, NULL) != 1)
		return SG_ERR_UNKNOWN;
	*out = signal_buffer_create(md, n);
	return *out != NULL ? 0 : SG_ERR_NOMEM;
}

static void
cb_sha512_cleanup(void *dctx, void *u)
{
	EVP_MD_CTX_free(dctx);
}

/* ---- AES-CBC/PKCS#7 and AES-CTR ---- */

static const EVP_CIPHER *
pick_cipher(const struct omemo_evp *t, int cipher, size_t key_len)
{
	size_t i;

	switch (key_len) {
	case 16: i = 0; break;
	case 24: i = 1; break;
	case 32: i = 2; break;
	default: return NULL;
	}
	if (cipher == SG_CIPHER_AES_CBC_PKCS5)
		return t->aes_cbc[i];
	if (cipher == SG_CIPHER_AES_CTR_NOPADDING)
		return t->aes_ctr[i];
	return NULL;
}

static int
aes_crypt(signal_buffer **output, int cipher, const uint8_t *key,
    size_t key_len, const uint8_t *iv, size_t iv_len, const uint8_t *in,
    size_t in_len, int enc)
{
	const struct omemo_evp *t = omemo_evp();
	const EVP_CIPHER *ev;
	EVP_CIPHER_CTX *c = NULL;
	uint8_t *buf = NULL;
	size_t cap;
	int n1 = 0, n2 = 0, ret = SG_ERR_UNKNOWN;

	*output = NULL;
	if (t == NULL)
		return SG_ERR_UNKNOWN;
	if ((ev = pick_cipher(t, cipher, key_len)) == NULL || iv_len != 16 ||
	    in_len > INT32_MAX - 32)
		return SG_ERR_INVAL;
	cap = in_len + 16;	/* one block of padding at most */
	if ((buf = malloc(cap)) == NULL)
		return SG_ERR_NOMEM;
	if ((c = EVP_CIPHER_CTX_new()) == NULL) {
		ret = SG_ERR_NOMEM;
		goto out;
	}
	if (EVP_CipherInit_ex(c, ev, NULL, key, iv, enc) != 1)
		goto out;
	if (EVP_CIPHER_CTX_set_padding(c,
	    cipher == SG_CIPHER_AES_CBC_PKCS5 ? 1 : 0) != 1)
		goto out;
	if (EVP_CipherUpdate(c, buf, &n1, in, (int)in_len) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, buf + n1, &n2) != 1)
		goto out;
	if ((*output = signal_buffer_create(buf, (size_t)n1 + (size_t)n2)) ==
	    NULL) {
		ret = SG_ERR_NOMEM;
		goto out;
	}
	ret = 0;
out:
	EVP_CIPHER_CTX_free(c);
	OPENSSL_clear_free(buf, cap);
	return ret;
}

static int
cb_encrypt(signal_buffer **output, int cipher, const uint8_t *key,
    size_t key_len, const uint8_t *iv, size_t iv_len, const uint8_t *pt,
    size_t pt_len, void *u)
{
	return aes_crypt(output, cipher, key, key_len, iv, iv_len, pt, pt_len, 1);
}

static int
cb_decrypt(signal_buffer **output, int cipher, const uint8_t *key,
    size_t key_len, const uint8_t *iv, size_t iv_len, const uint8_t *ct,
    size_t ct_len, void *u)
{
	return aes_crypt(output, cipher, key, key_len, iv, iv_len, ct, ct_len, 0);
}

int
omemo_crypto_provider(signal_context *sg)
{
	signal_crypto_provider p = {
		.random_func = cb_random,
		.hmac_sha256_init_func = cb_hmac_init,
		.hmac_sha256_update_func = cb_hmac_update,
		.hmac_sha256_final_func = cb_hmac_final,
		.hmac_sha256_cleanup_func = cb_hmac_cleanup,
		.sha512_digest_init_func = cb_sha512_init,
		.sha512_digest_update_func = cb_sha512_update,
		.sha512_digest_final_func = cb_sha512_final,
		.sha512_digest_cleanup_func = cb_sha512_cleanup,
		.encrypt_func = cb_encrypt,
		.decrypt_func = cb_decrypt,
		.user_data = NULL,
	};

	/* a context whose callbacks could only fail is not opened */
	if (omemo_evp() == NULL)
		return -1;
	return signal_context_set_crypto_provider(sg, &p);
}

/* ---- AES-128-GCM payload ---- */

static int
gcm(int enc, const uint8_t key[16], const uint8_t *iv, size_t ivlen,
    const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[16])
{
	const struct omemo_evp *t = omemo_evp();
	EVP_CIPHER_CTX *c;
	int l = 0, ret = -1;

	if (t == NULL || ivlen == 0 || ivlen > 64 || n > INT32_MAX)
		return -1;
	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	/* The IV length is set explicitly: senders use 12 or 16 bytes. */
	if (EVP_CipherInit_ex(c, t->aes128_gcm, NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, (int)ivlen, NULL) != 1 ||
	    EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1)
		goto out;
	if (n > 0 && EVP_CipherUpdate(c, out, &l, in, (int)n) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + l, &l) != 1)
		goto out;	/* decrypt: tag mismatch */
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		goto out;
	ret = 0;
out:
	EVP_CIPHER_CTX_free(c);
	if (ret != 0 && !enc && n > 0)
		OPENSSL_cleanse(out, n);
	return ret;
}

int
omemo_gcm_encrypt(const uint8_t key[16], const uint8_t *iv, size_t ivlen,
    const uint8_t *pt, size_t n, uint8_t *ct, uint8_t tag[16])
{
	return gcm(1, key, iv, ivlen, pt, n, ct, tag);
}

int
omemo_gcm_decrypt(const uint8_t key[16], const uint8_t *iv, size_t ivlen,
    const uint8_t *ct, size_t n, const uint8_t tag[16], uint8_t *pt)
{
	return gcm(0, key, iv, ivlen, ct, n, pt, (uint8_t *)tag);
}

/* ---- base64 ---- */

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/*
 * Strict decoder: whitespace is skipped; otherwise only the alphabet, with
 * '=' padding only at the end making a multiple of 4.  (A codec, not a
 * cryptographic primitive; OpenSSL's EVP_Decode* accepts too much, e.g.
 * missing padding and data after '='.)
 */
int
omemo_b64_decode(const char *s, uint8_t **out, size_t *outlen, size_t max)
{
	size_t slen, q = 0, n = 0, pad = 0;
	uint32_t acc = 0;
	uint8_t *buf;

	*out = NULL;
	*outlen = 0;
	if (s == NULL)
		return MW_OMEMO_E_BASE64;
	slen = strlen(s);
	if ((buf = malloc(slen / 4 * 3 + 3)) == NULL)
		return MW_OMEMO_E_NOMEM;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int v;

		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			continue;
		if (*p == '=') {
			pad++;
			if (pad > 2)
				goto bad;
			acc <<= 6;
			q++;
			continue;
		}
		if (pad > 0 || (v = b64val(*p)) < 0)
			goto bad;
		acc = (acc << 6) | (uint32_t)v;
		q++;
		if (q == 4) {
			buf[n++] = (uint8_t)(acc >> 16);
			buf[n++] = (uint8_t)(acc >> 8);
			buf[n++] = (uint8_t)acc;
			q = 0;
			acc = 0;
		}
	}
	if (pad > 0) {
		if (q != 4)
			goto bad;
		buf[n++] = (uint8_t)(acc >> 16);
		if (pad == 1)
			buf[n++] = (uint8_t)(acc >> 8);
		/* the unused bits of the last symbol must be zero */
		if ((pad == 1 && (acc & 0xff) != 0) ||
		    (pad == 2 && (acc & 0xffff) != 0))
			goto bad;
		q = 0;
	}
	if (q != 0 || n == 0 || n > max)
		goto bad;
	*out = buf;
	*outlen = n;
	return 0;
bad:
	OPENSSL_clear_free(buf, slen / 4 * 3 + 3);
	return MW_OMEMO_E_BASE64;
}

char *
omemo_b64_encode(const uint8_t *p, size_t n)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *s, *w;
	size_t i;

	if (n > SIZE_MAX / 2)
		return NULL;
	if ((s = malloc((n + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	w = s;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*w++ = al[v >> 18];
		*w++ = al[(v >> 12) & 63];
		*w++ = al[(v >> 6) & 63];
		*w++ = al[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*w++ = al[v >> 18];
		*w++ = al[(v >> 12) & 63];
		*w++ = '=';
		*w++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*w++ = al[v >> 18];
		*w++ = al[(v >> 12) & 63];
		*w++ = al[(v >> 6) & 63];
		*w++ = '=';
	}
	*w = '\0';
	return s;
}

int64_t
omemo_now(void)
{
	return (int64_t)time(NULL);
}

int64_t
omemo_mono_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
