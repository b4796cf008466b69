/*
 * sshsig.c: OpenSSH signatures (SSHSIG, openssh PROTOCOL.sshsig) for job
 * envelopes -- verify, armor and unarmor, public keys, and key
 * fingerprints exactly as `ssh-keygen -l` prints them.  Signing, with an
 * OpenSSH Ed25519 private key file or through ssh-agent, is sshsig_sign.c.
 *
 * Why it exists: the agent verifies every job natively (no helper process
 * it cannot confine) and operators sign with the SSH keys they already
 * have.  Only Ed25519 is accepted; every primitive is OpenSSL's; every
 * binary byte (signature blobs, key files, agent frames) is read through
 * struct mw_buf, so no parser can step past its input.
 *
 * Invariants: a verify or load function either succeeds with its output
 * filled or returns a negative enum mw_refusal (or -1) with the output
 * zeroed; private key bytes live only in the EVP_PKEY and in buffers that
 * are wiped (OPENSSL_cleanse / mw_buf_free) before they are released.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "runtime/job/job.h"
#include "runtime/job/sshsig_int.h"
#include "wire/mw_wire.h"

#define refuse mw_refuse_msg

/* ---- base64 ---- */

static bool
b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
mw_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	/* Invariant: len is a non-zero multiple of 4, only alphabet
	 * characters, then at most two '=' at the very end. */
	if (len == 0 || len % 4 != 0 || len > (size_t)INT32_MAX)
		return -1;
	size_t pad = 0;
	if (s[len - 1] == '=')
		pad = (s[len - 2] == '=') ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)s[i]))
			return -1;
	uint8_t *buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return -1;
	int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outlen = (size_t)n - pad;
	return 0;
}

char *
mw_b64_encode(const uint8_t *p, size_t n)
{
	if (n > (size_t)INT32_MAX / 2)
		return NULL;
	char *s = malloc((n + 2) / 3 * 4 + 1);
	if (s == NULL)
		return NULL;
	if (EVP_EncodeBlock((unsigned char *)s, p, (int)n) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

/* ---- public keys ---- */

void
mw_ssh_pubkey_blob(const struct mw_ssh_pubkey *k, uint8_t out[ED25519_BLOB_LEN])
{
	static const uint8_t head[] = { 0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd',
	    '2', '5', '5', '1', '9', 0, 0, 0, 32 };
	memcpy(out, head, sizeof(head));
	memcpy(out + sizeof(head), k->ed25519, 32);
}

/* "SHA256:" + unpadded base64 of SHA-256(blob), as ssh-keygen -l. */
static int
fingerprint(const uint8_t *blob, size_t len, char fp[MW_SSH_FP_MAX])
{
	uint8_t md[32];
	unsigned int mdlen = 0;
	if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -1;
	char *b = mw_b64_encode(md, sizeof(md));
	if (b == NULL)
		return -1;
	size_t n = strlen(b);
	while (n > 0 && b[n - 1] == '=')
		n--;
	snprintf(fp, MW_SSH_FP_MAX, "SHA256:%.*s", (int)n, b);
	free(b);
	return 0;
}

int
mw_ssh_pubkey_from_blob(const uint8_t *blob, size_t len, struct mw_ssh_pubkey *out)
{
	struct mw_buf b;
	const uint8_t *type, *key;
	size_t tlen, klen;
	memset(out, 0, sizeof(*out));
	mw_buf_view(&b, blob, len);
	if (mw_buf_get_string_direct(&b, &type, &tlen) != 0)
		return MW_REFUSE_MALFORMED;
	if (!str_is(type, tlen, KEYTYPE_ED25519))
		return MW_REFUSE_UNSUPPORTED_KEY;
	if (mw_buf_get_string_direct(&b, &key, &klen) != 0 || klen != 32 ||
	    mw_buf_avail(&b) != 0)
		return MW_REFUSE_MALFORMED;
	memcpy(out->ed25519, key, 32);
	if (fingerprint(blob, len, out->fp) != 0) {
		memset(out, 0, sizeof(*out));
		return MW_REFUSE_MALFORMED;
	}
	return 0;
}

int
mw_ssh_pubkey_parse_line(const char *line, struct mw_ssh_pubkey *out,
    char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *p = line + strspn(line, " \t");
	size_t tl = strcspn(p, " \t\r\n");
	if (tl == 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "no key type");
	if (tl != strlen(KEYTYPE_ED25519) || memcmp(p, KEYTYPE_ED25519, tl) != 0)
		return refuse(MW_REFUSE_UNSUPPORTED_KEY, err, errlen,
		    "key type '%.*s' is not supported (only ssh-ed25519)", (int)(tl > 40 ? 40 : tl), p);
	p += tl;
	p += strspn(p, " \t");
	size_t bl = strcspn(p, " \t\r\n");
	uint8_t *blob;
	size_t blen;
	if (bl == 0 || mw_b64_decode(p, bl, &blob, &blen) != 0)
		return refuse(MW_REFUSE_MALFORMED, err, errlen, "bad base64 key");
	int r = mw_ssh_pubkey_from_blob(blob, blen, out);
	free(blob);
	if (r != 0)
		return refuse(r, err, errlen, "key blob does not match its type ssh-ed25519");
	return 0;
}

/* ---- armor ---- */

#define ARMOR_BEGIN	"-----BEGIN SSH SIGNATURE-----"
#define ARMOR_END	"-----END SSH SIGNATURE-----"
#define ARMOR_COLS	76

char *
mw_sshsig_armor(const uint8_t *blob, size_t blob_len, size_t *armored_len)
{
	char *b = mw_b64_encode(blob, blob_len);
	if (b == NULL)
		return NULL;
	struct mw_buf out;
	mw_buf_init(&out, 0);
	size_t n = strlen(b);
	int r = mw_buf_putf(&out, "%s\n", ARMOR_BEGIN);
	for (size_t i = 0; r == 0 && i < n; i += ARMOR_COLS) {
		size_t k = n - i < ARMOR_COLS ? n - i : ARMOR_COLS;
		if ((r = mw_buf_put(&out, b + i, k)) == 0)
			r = mw_buf_put_u8(&out, '\n');
	}
	if (r == 0)
		r = mw_buf_putf(&out, "%s\n", ARMOR_END);
	if (r == 0)
		r = mw_buf_put_u8(&out, '\0');
	free(b);
	if (r != 0) {
		mw_buf_free(&out);
		return NULL;
	}
	/* Ownership of out.data passes to the caller. */
	*armored_len = out.len - 1;
	return (char *)out.data;
}

/*
 * Armored text -> blob.  The text is the BEGIN line, lines of 1..76 base64
 * characters (ssh-keygen writes 70), the END line; LF line ends; trailing
 * whitespace after END tolerated, nothing else.
 */
int
mw_sshsig_unarmor(const char *text, size_t len, uint8_t **blob, size_t *blob_len)
{
	struct mw_buf in, b64;
	const uint8_t *line;
	size_t n;
	int rc = MW_REFUSE_BAD_SIGNATURE;
	*blob = NULL;
	*blob_len = 0;
	mw_buf_view(&in, text, len);
	mw_buf_init(&b64, MW_ENVELOPE_MAX);
	if (memchr(text, '\r', len) != NULL || memchr(text, '\0', len) != NULL)
		goto out;
	if (mw_buf_get_line(&in, &line, &n) != 0 || !str_is(line, n, ARMOR_BEGIN))
		goto out;
	for (;;) {
		if (mw_buf_get_line(&in, &line, &n) != 0)
			goto out;	/* no END line */
		if (str_is(line, n, ARMOR_END))
			break;
		if (n == 0 || n > ARMOR_COLS || mw_buf_put(&b64, line, n) != 0)
			goto out;
	}
	for (const uint8_t *p = mw_buf_ptr(&in); p < mw_buf_ptr(&in) + mw_buf_avail(&in); p++)
		if (*p != ' ' && *p != '\t' && *p != '\n')
			goto out;
	if (mw_b64_decode((const char *)mw_buf_ptr(&b64), mw_buf_avail(&b64), blob, blob_len) != 0)
		goto out;
	rc = 0;
out:
	mw_buf_free(&b64);
	return rc;
}

/* ---- verify ---- */

int
mw_sshsig_signed_data(struct mw_buf *out, const char *ns, const char *hashalg,
    const uint8_t *msg, size_t msg_len)
{
	const EVP_MD *md = strcmp(hashalg, "sha256") == 0 ? EVP_sha256() :
	    strcmp(hashalg, "sha512") == 0 ? EVP_sha512() : NULL;
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	if (md == NULL || EVP_Digest(msg, msg_len, h, &hlen, md, NULL) != 1)
		return -1;
	if (mw_buf_put(out, SSHSIG_MAGIC, 6) != 0 ||
	    mw_buf_put_cstring(out, ns) != 0 ||
	    mw_buf_put_string(out, NULL, 0) != 0 ||
	    mw_buf_put_cstring(out, hashalg) != 0 ||
	    mw_buf_put_string(out, h, hlen) != 0)
		return -1;
	return 0;
}

int
mw_ed25519_verify(const uint8_t pub[32], const uint8_t *sig, size_t siglen,
    const uint8_t *data, size_t len)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = pk != NULL && ctx != NULL &&
	    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
	    EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok ? 0 : -1;
}

int
mw_ssh_sig_blob_parse(const uint8_t *p, size_t n, const uint8_t **sig)
{
	struct mw_buf b;
	const uint8_t *type;
	size_t tlen, slen;
	mw_buf_view(&b, p, n);
	if (mw_buf_get_string_direct(&b, &type, &tlen) != 0 ||
	    !str_is(type, tlen, KEYTYPE_ED25519) ||
	    mw_buf_get_string_direct(&b, sig, &slen) != 0 ||
	    slen != ED25519_SIG_LEN || mw_buf_avail(&b) != 0)
		return -1;
	return 0;
}

int
mw_sshsig_verify(const uint8_t *sig, size_t sig_len, const char *ns,
    const uint8_t *msg, size_t msg_len, struct mw_ssh_pubkey *signer,
    char *err, size_t errlen)
{
	struct mw_buf b, tbs;
	const uint8_t *pub, *sns, *res, *halg, *sblob, *raw;
	size_t publen, snslen, reslen, halglen, sbloblen;
	uint8_t magic[6];
	uint32_t version;
	struct mw_ssh_pubkey key;
	char hname[8];
	int r;

	memset(signer, 0, sizeof(*signer));
	mw_buf_view(&b, sig, sig_len);
	if (mw_buf_get(&b, magic, 6) != 0 || memcmp(magic, SSHSIG_MAGIC, 6) != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "not an SSHSIG signature (magic)");
	if (mw_buf_get_u32(&b, &version) != 0 || version != SSHSIG_VERSION)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "unsupported SSHSIG version");
	if (mw_buf_get_string_direct(&b, &pub, &publen) != 0 ||
	    mw_buf_get_string_direct(&b, &sns, &snslen) != 0 ||
	    mw_buf_get_string_direct(&b, &res, &reslen) != 0 ||
	    mw_buf_get_string_direct(&b, &halg, &halglen) != 0 ||
	    mw_buf_get_string_direct(&b, &sblob, &sbloblen) != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "truncated SSHSIG signature");
	if (mw_buf_avail(&b) != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "trailing bytes after the SSHSIG signature");
	if ((r = mw_ssh_pubkey_from_blob(pub, publen, &key)) != 0) {
		if (r == MW_REFUSE_UNSUPPORTED_KEY) {
			struct mw_buf kb;
			const uint8_t *t = NULL;
			size_t tl = 0;
			mw_buf_view(&kb, pub, publen);
			(void)mw_buf_get_string_direct(&kb, &t, &tl);
			return refuse(r, err, errlen, "key type '%.*s' is not supported (only ssh-ed25519)",
			    (int)(tl > 40 ? 40 : tl), t ? (const char *)t : "");
		}
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "malformed public key in signature");
	}
	if (snslen == 0 || !str_is(sns, snslen, ns))
		return refuse(MW_REFUSE_WRONG_NAMESPACE, err, errlen,
		    "signature namespace is not '%s'", ns);
	/* ssh-keygen signs an empty reserved field and verifies over an
	 * empty one whatever the blob carries; one form only here */
	if (reslen != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen,
		    "the SSHSIG reserved field is not empty");
	if (!str_is(halg, halglen, "sha256") && !str_is(halg, halglen, "sha512"))
		return refuse(MW_REFUSE_UNSUPPORTED_HASH, err, errlen,
		    "hash algorithm is not sha256 or sha512");
	memcpy(hname, halg, halglen);
	hname[halglen] = '\0';
	if (mw_ssh_sig_blob_parse(sblob, sbloblen, &raw) != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "malformed ssh-ed25519 signature");
	mw_buf_init(&tbs, 4096);
	if (mw_sshsig_signed_data(&tbs, ns, hname, msg, msg_len) != 0) {
		mw_buf_free(&tbs);
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "cannot hash the message");
	}
	r = mw_ed25519_verify(key.ed25519, raw, ED25519_SIG_LEN, mw_buf_ptr(&tbs), mw_buf_avail(&tbs));
	mw_buf_free(&tbs);
	if (r != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "signature does not verify");
	*signer = key;
	return 0;
}
