/*
 * sshsig.c: OpenSSH signatures (SSHSIG, openssh PROTOCOL.sshsig) for job
 * envelopes -- verify, sign with an OpenSSH Ed25519 private key file or
 * through ssh-agent, armor and unarmor, and key fingerprints exactly as
 * `ssh-keygen -l` prints them.
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
#include "wire/mw_wire.h"

#define SSHSIG_MAGIC		"SSHSIG"
#define SSHSIG_VERSION		1
#define KEYTYPE_ED25519		"ssh-ed25519"
#define ED25519_BLOB_LEN	(4 + 11 + 4 + 32)
#define ED25519_SIG_LEN		64
#define KEYFILE_MAX		(64 * 1024)
#define AGENT_MSG_MAX		(256 * 1024)

#define SSH_AGENTC_REQUEST_IDENTITIES	11
#define SSH_AGENT_IDENTITIES_ANSWER	12
#define SSH_AGENTC_SIGN_REQUEST		13
#define SSH_AGENT_SIGN_RESPONSE		14
#define SSH_AGENT_FAILURE		5

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

static bool
str_is(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
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

/* The bytes the key signs: "SSHSIG" || string ns || string reserved ||
 * string hash_alg || string H(msg). */
static int
signed_data(struct mw_buf *out, const char *ns, const uint8_t *reserved,
    size_t reserved_len, const char *hashalg, const uint8_t *msg, size_t msg_len)
{
	const EVP_MD *md = strcmp(hashalg, "sha256") == 0 ? EVP_sha256() :
	    strcmp(hashalg, "sha512") == 0 ? EVP_sha512() : NULL;
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	if (md == NULL || EVP_Digest(msg, msg_len, h, &hlen, md, NULL) != 1)
		return -1;
	if (mw_buf_put(out, SSHSIG_MAGIC, 6) != 0 ||
	    mw_buf_put_cstring(out, ns) != 0 ||
	    mw_buf_put_string(out, reserved, reserved_len) != 0 ||
	    mw_buf_put_cstring(out, hashalg) != 0 ||
	    mw_buf_put_string(out, h, hlen) != 0)
		return -1;
	return 0;
}

static int
ed25519_verify(const uint8_t pub[32], const uint8_t *sig, size_t siglen,
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

/* An SSH signature blob (string "ssh-ed25519", string sig[64]) -> sig. */
static int
parse_sig_blob(const uint8_t *p, size_t n, const uint8_t **sig)
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
	if (!str_is(halg, halglen, "sha256") && !str_is(halg, halglen, "sha512"))
		return refuse(MW_REFUSE_UNSUPPORTED_HASH, err, errlen,
		    "hash algorithm is not sha256 or sha512");
	memcpy(hname, halg, halglen);
	hname[halglen] = '\0';
	if (parse_sig_blob(sblob, sbloblen, &raw) != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "malformed ssh-ed25519 signature");
	mw_buf_init(&tbs, 4096);
	if (signed_data(&tbs, ns, res, reslen, hname, msg, msg_len) != 0) {
		mw_buf_free(&tbs);
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "cannot hash the message");
	}
	r = ed25519_verify(key.ed25519, raw, ED25519_SIG_LEN, mw_buf_ptr(&tbs), mw_buf_avail(&tbs));
	mw_buf_free(&tbs);
	if (r != 0)
		return refuse(MW_REFUSE_BAD_SIGNATURE, err, errlen, "signature does not verify");
	*signer = key;
	return 0;
}

/* ---- signing keys ---- */

struct mw_ssh_signer {
	struct mw_ssh_pubkey pub;
	EVP_PKEY *pkey;		/* private key file; NULL when agent is set */
	char *agent;		/* $SSH_AUTH_SOCK when the agent signs */
};

const struct mw_ssh_pubkey *
mw_ssh_signer_pubkey(const struct mw_ssh_signer *s)
{
	return &s->pub;
}

void
mw_ssh_signer_free(struct mw_ssh_signer *s)
{
	if (s == NULL)
		return;
	EVP_PKEY_free(s->pkey);
	free(s->agent);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* Reads a whole small file into a NUL-terminated, wipe-on-free buffer. */
static int
read_small_file(const char *path, struct mw_buf *out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return refuse(-1, err, errlen, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return refuse(-1, err, errlen, "%s: not a regular file", path);
	}
	mw_buf_init(out, KEYFILE_MAX + 1);
	for (;;) {
		int r = mw_buf_fill(out, fd, 4096);
		if (r == MW_WIRE_EEOF)
			break;
		if (r < 0) {
			close(fd);
			mw_buf_free(out);
			return refuse(-1, err, errlen, "%s: %s", path,
			    r == MW_WIRE_ETOOBIG ? "file too large" : "read error");
		}
	}
	close(fd);
	if (memchr(mw_buf_ptr(out), '\0', mw_buf_avail(out)) != NULL ||
	    mw_buf_put_u8(out, '\0') != 0) {
		mw_buf_free(out);
		return refuse(-1, err, errlen, "%s: not a text file", path);
	}
	return 0;
}

static int
load_pub_file(const char *path, struct mw_ssh_pubkey *pub, char *err, size_t errlen)
{
	struct mw_buf f;
	char why[200];
	if (read_small_file(path, &f, err, errlen) != 0)
		return -1;
	int r = mw_ssh_pubkey_parse_line((const char *)mw_buf_ptr(&f), pub, why, sizeof(why));
	mw_buf_free(&f);
	if (r != 0)
		return refuse(-1, err, errlen, "%s: %s", path, why);
	return 0;
}

static int agent_connect(const char *sock, char *err, size_t errlen);
static int agent_call(int fd, struct mw_buf *req, struct mw_buf *resp, uint8_t *type);

/* Asks the agent whether it holds pub; 0 if it does. */
static int
agent_has_key(const char *sock, const struct mw_ssh_pubkey *pub, char *err, size_t errlen)
{
	int fd = agent_connect(sock, err, errlen);
	if (fd < 0)
		return -1;
	struct mw_buf req, resp;
	uint8_t type = 0, blob[ED25519_BLOB_LEN];
	uint32_t nkeys;
	int rc = -1;
	mw_buf_init(&req, 64);
	mw_buf_init(&resp, AGENT_MSG_MAX);
	mw_ssh_pubkey_blob(pub, blob);
	if (mw_buf_put_u8(&req, SSH_AGENTC_REQUEST_IDENTITIES) != 0 ||
	    agent_call(fd, &req, &resp, &type) != 0 || type != SSH_AGENT_IDENTITIES_ANSWER ||
	    mw_buf_get_u32(&resp, &nkeys) != 0) {
		refuse(-1, err, errlen, "ssh-agent at %s did not list its keys", sock);
		goto out;
	}
	for (uint32_t i = 0; i < nkeys; i++) {
		const uint8_t *k, *c;
		size_t kl, cl;
		if (mw_buf_get_string_direct(&resp, &k, &kl) != 0 ||
		    mw_buf_get_string_direct(&resp, &c, &cl) != 0) {
			refuse(-1, err, errlen, "ssh-agent at %s sent a malformed key list", sock);
			goto out;
		}
		if (kl == sizeof(blob) && memcmp(k, blob, kl) == 0) {
			rc = 0;
			goto out;
		}
	}
	refuse(-1, err, errlen, "ssh-agent does not hold the key %s (ssh-add it first)", pub->fp);
out:
	close(fd);
	mw_buf_free(&req);
	mw_buf_free(&resp);
	return rc;
}

static int
signer_from_agent(const char *pubpath, struct mw_ssh_signer **out, char *err, size_t errlen)
{
	const char *sock = getenv("SSH_AUTH_SOCK");
	struct mw_ssh_signer *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return refuse(-1, err, errlen, "out of memory");
	if (load_pub_file(pubpath, &s->pub, err, errlen) != 0)
		goto fail;
	if (sock == NULL || *sock == '\0') {
		refuse(-1, err, errlen, "%s is a public key but SSH_AUTH_SOCK is not set "
		    "(start ssh-agent and ssh-add the key)", pubpath);
		goto fail;
	}
	if ((s->agent = strdup(sock)) == NULL) {
		refuse(-1, err, errlen, "out of memory");
		goto fail;
	}
	if (agent_has_key(sock, &s->pub, err, errlen) != 0)
		goto fail;
	*out = s;
	return 0;
fail:
	mw_ssh_signer_free(s);
	return -1;
}

/* PEM-like "-----BEGIN OPENSSH PRIVATE KEY-----" text -> binary in out. */
static int
dearmor_key(const char *text, struct mw_buf *out)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	static const char end[] = "-----END OPENSSH PRIVATE KEY-----";
	struct mw_buf in, b64;
	const uint8_t *line;
	size_t n;
	uint8_t *bin = NULL;
	size_t binlen = 0;
	int rc = -1;
	mw_buf_view(&in, text, strlen(text));
	mw_buf_init(&b64, KEYFILE_MAX);
	if (mw_buf_get_line(&in, &line, &n) != 0 || !str_is(line, n, begin))
		goto out;
	for (;;) {
		if (mw_buf_get_line(&in, &line, &n) != 0)
			goto out;
		if (str_is(line, n, end))
			break;
		if (mw_buf_put(&b64, line, n) != 0)
			goto out;
	}
	if (mw_b64_decode((const char *)mw_buf_ptr(&b64), mw_buf_avail(&b64), &bin, &binlen) != 0)
		goto out;
	if (mw_buf_put(out, bin, binlen) == 0)
		rc = 0;
	OPENSSL_cleanse(bin, binlen);
	free(bin);
out:
	mw_buf_free(&b64);
	return rc;
}

/* 1 when the key file at path is "openssh-key-v1" with a cipher other
 * than none, 0 when unencrypted (*s filled), -1 on error. */
static int
parse_private_key(const char *path, const char *text, struct mw_ssh_signer *s,
    char *err, size_t errlen)
{
	struct mw_buf bin, b, priv;
	const uint8_t *cipher, *kdf, *kdfopt, *pubblob, *type, *pk, *sk, *comment;
	size_t cipherlen, kdflen, kdfoptlen, publen, typelen, pklen, sklen, commentlen;
	uint32_t nkeys, check1, check2;
	uint8_t magic[15];
	int rc = -1;

	mw_buf_init(&bin, KEYFILE_MAX);
	if (dearmor_key(text, &bin) != 0) {
		refuse(-1, err, errlen, "%s: not an OpenSSH private key "
		    "(expected -----BEGIN OPENSSH PRIVATE KEY----- or a .pub file)", path);
		goto out;
	}
	mw_buf_view(&b, mw_buf_ptr(&bin), mw_buf_avail(&bin));
	if (mw_buf_get(&b, magic, sizeof(magic)) != 0 ||
	    memcmp(magic, "openssh-key-v1", sizeof(magic)) != 0 ||
	    mw_buf_get_string_direct(&b, &cipher, &cipherlen) != 0 ||
	    mw_buf_get_string_direct(&b, &kdf, &kdflen) != 0 ||
	    mw_buf_get_string_direct(&b, &kdfopt, &kdfoptlen) != 0 ||
	    mw_buf_get_u32(&b, &nkeys) != 0) {
		refuse(-1, err, errlen, "%s: malformed openssh-key-v1 private key", path);
		goto out;
	}
	if (!str_is(cipher, cipherlen, "none")) {
		rc = 1;
		refuse(-1, err, errlen, "%s: the private key is encrypted; load it into "
		    "ssh-agent (ssh-add) and pass the .pub file to -k, or sign with "
		    "`moonwire sign --prepare`, `ssh-keygen -Y sign -n " MW_JOB_NAMESPACE "` "
		    "and `moonwire sign --signature`", path);
		goto out;
	}
	if (!str_is(kdf, kdflen, "none") || nkeys != 1 ||
	    mw_buf_get_string_direct(&b, &pubblob, &publen) != 0 ||
	    mw_buf_get_string_view(&b, &priv) != 0 || mw_buf_avail(&b) != 0) {
		refuse(-1, err, errlen, "%s: malformed openssh-key-v1 private key", path);
		goto out;
	}
	int r = mw_ssh_pubkey_from_blob(pubblob, publen, &s->pub);
	if (r != 0) {
		refuse(-1, err, errlen, "%s: %s", path, r == MW_REFUSE_UNSUPPORTED_KEY ?
		    "only ssh-ed25519 keys can sign jobs" : "malformed public key");
		goto out;
	}
	/* The private section: check ints (equal when decrypted correctly),
	 * key type, pub, seed||pub, comment, padding 1, 2, 3, ... */
	if (mw_buf_get_u32(&priv, &check1) != 0 || mw_buf_get_u32(&priv, &check2) != 0 ||
	    check1 != check2 ||
	    mw_buf_get_string_direct(&priv, &type, &typelen) != 0 ||
	    !str_is(type, typelen, KEYTYPE_ED25519) ||
	    mw_buf_get_string_direct(&priv, &pk, &pklen) != 0 || pklen != 32 ||
	    memcmp(pk, s->pub.ed25519, 32) != 0 ||
	    mw_buf_get_string_direct(&priv, &sk, &sklen) != 0 || sklen != 64 ||
	    memcmp(sk + 32, pk, 32) != 0 ||
	    mw_buf_get_string_direct(&priv, &comment, &commentlen) != 0) {
		refuse(-1, err, errlen, "%s: malformed or corrupt private key section", path);
		goto out;
	}
	for (uint8_t i = 1; mw_buf_avail(&priv) > 0; i++) {
		uint8_t pad;
		if (mw_buf_get_u8(&priv, &pad) != 0 || pad != i || i > 16) {
			refuse(-1, err, errlen, "%s: bad padding in the private key", path);
			goto out;
		}
	}
	s->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, 32);
	uint8_t derived[32];
	size_t dlen = sizeof(derived);
	if (s->pkey == NULL || EVP_PKEY_get_raw_public_key(s->pkey, derived, &dlen) != 1 ||
	    dlen != 32 || memcmp(derived, s->pub.ed25519, 32) != 0) {
		refuse(-1, err, errlen, "%s: private key does not match its public key", path);
		goto out;
	}
	rc = 0;
out:
	mw_buf_free(&bin);	/* wipes the decoded private section */
	return rc;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int
mw_ssh_signer_load(const char *path, struct mw_ssh_signer **out, char *err, size_t errlen)
{
	*out = NULL;
	if (ends_with(path, ".pub"))
		return signer_from_agent(path, out, err, errlen);
	struct mw_buf f;
	if (read_small_file(path, &f, err, errlen) != 0)
		return -1;
	struct mw_ssh_signer *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		mw_buf_free(&f);
		return refuse(-1, err, errlen, "out of memory");
	}
	int r = parse_private_key(path, (const char *)mw_buf_ptr(&f), s, err, errlen);
	mw_buf_free(&f);
	if (r == 0) {
		*out = s;
		return 0;
	}
	mw_ssh_signer_free(s);
	if (r == 1) {
		/* Encrypted: the agent may hold it if its .pub sits beside it. */
		char pub[4096];
		struct stat st;
		if (snprintf(pub, sizeof(pub), "%s.pub", path) < (int)sizeof(pub) &&
		    stat(pub, &st) == 0 && getenv("SSH_AUTH_SOCK") != NULL) {
			char why[512];
			if (signer_from_agent(pub, out, why, sizeof(why)) == 0)
				return 0;
			size_t l = strlen(err);
			if (l < errlen)
				snprintf(err + l, errlen - l, " (agent: %s)", why);
		}
	}
	return -1;
}

/* ---- ssh-agent ---- */

static int
agent_connect(const char *sock, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(sock) >= sizeof(sa.sun_path))
		return refuse(-1, err, errlen, "SSH_AUTH_SOCK path too long");
	memcpy(sa.sun_path, sock, strlen(sock));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return refuse(-1, err, errlen, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		refuse(-1, err, errlen, "cannot connect to ssh-agent at %s: %s", sock, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* One agent exchange: u32 length || body out, u32 length || type || rest
 * in.  On success resp holds the rest (after the type byte). */
static int
agent_call(int fd, struct mw_buf *req, struct mw_buf *resp, uint8_t *type)
{
	struct mw_buf frame;
	uint32_t len;
	mw_buf_init(&frame, AGENT_MSG_MAX);
	if (mw_buf_put_string(&frame, mw_buf_ptr(req), mw_buf_avail(req)) != 0 ||
	    mw_buf_drain_fd(&frame, fd) != 0) {
		mw_buf_free(&frame);
		return -1;
	}
	mw_buf_free(&frame);
	mw_buf_reset(resp);
	while (mw_buf_avail(resp) < 4)
		if (mw_buf_fill(resp, fd, 4 - mw_buf_avail(resp)) < 0)
			return -1;
	if (mw_buf_get_u32(resp, &len) != 0 || len == 0 || len > AGENT_MSG_MAX - 4)
		return -1;
	mw_buf_compact(resp);
	while (mw_buf_avail(resp) < len)
		if (mw_buf_fill(resp, fd, len - mw_buf_avail(resp)) < 0)
			return -1;
	return mw_buf_get_u8(resp, type);
}

static int
agent_sign(struct mw_ssh_signer *s, const uint8_t *data, size_t len,
    uint8_t sig[ED25519_SIG_LEN], char *err, size_t errlen)
{
	int fd = agent_connect(s->agent, err, errlen);
	if (fd < 0)
		return -1;
	struct mw_buf req, resp;
	uint8_t type = 0, blob[ED25519_BLOB_LEN];
	const uint8_t *sblob, *raw;
	size_t sbloblen;
	int rc = -1;
	mw_buf_init(&req, AGENT_MSG_MAX);
	mw_buf_init(&resp, AGENT_MSG_MAX);
	mw_ssh_pubkey_blob(&s->pub, blob);
	if (mw_buf_put_u8(&req, SSH_AGENTC_SIGN_REQUEST) != 0 ||
	    mw_buf_put_string(&req, blob, sizeof(blob)) != 0 ||
	    mw_buf_put_string(&req, data, len) != 0 ||
	    mw_buf_put_u32(&req, 0) != 0) {
		refuse(-1, err, errlen, "agent request too large");
		goto out;
	}
	if (agent_call(fd, &req, &resp, &type) != 0) {
		refuse(-1, err, errlen, "ssh-agent did not answer");
		goto out;
	}
	if (type != SSH_AGENT_SIGN_RESPONSE) {
		refuse(-1, err, errlen, "ssh-agent refused to sign with %s%s", s->pub.fp,
		    type == SSH_AGENT_FAILURE ? " (is the key still loaded? confirmation denied?)" : "");
		goto out;
	}
	if (mw_buf_get_string_direct(&resp, &sblob, &sbloblen) != 0 ||
	    parse_sig_blob(sblob, sbloblen, &raw) != 0) {
		refuse(-1, err, errlen, "ssh-agent sent a malformed signature");
		goto out;
	}
	memcpy(sig, raw, ED25519_SIG_LEN);
	rc = 0;
out:
	close(fd);
	mw_buf_free(&req);
	mw_buf_free(&resp);
	return rc;
}

/* ---- sign ---- */

int
mw_sshsig_sign(struct mw_ssh_signer *s, const char *ns, const uint8_t *msg,
    size_t msg_len, char **armored, size_t *armored_len, char *err, size_t errlen)
{
	struct mw_buf tbs, sigblob, out;
	uint8_t raw[ED25519_SIG_LEN], pubblob[ED25519_BLOB_LEN];
	size_t rawlen = sizeof(raw);
	int rc = -1;
	*armored = NULL;
	*armored_len = 0;
	mw_buf_init(&tbs, 4096);
	mw_buf_init(&sigblob, 4096);
	mw_buf_init(&out, 4096);
	if (*ns == '\0' || signed_data(&tbs, ns, NULL, 0, "sha512", msg, msg_len) != 0) {
		refuse(-1, err, errlen, "cannot hash the message");
		goto out;
	}
	if (s->agent != NULL) {
		if (agent_sign(s, mw_buf_ptr(&tbs), mw_buf_avail(&tbs), raw, err, errlen) != 0)
			goto out;
	} else {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->pkey) == 1 &&
		    EVP_DigestSign(ctx, raw, &rawlen, mw_buf_ptr(&tbs), mw_buf_avail(&tbs)) == 1 &&
		    rawlen == sizeof(raw);
		EVP_MD_CTX_free(ctx);
		if (!ok) {
			refuse(-1, err, errlen, "Ed25519 signing failed");
			goto out;
		}
	}
	/* Fail closed: never hand out a signature that does not verify
	 * (a confused agent, a corrupt key). */
	if (ed25519_verify(s->pub.ed25519, raw, sizeof(raw), mw_buf_ptr(&tbs),
	    mw_buf_avail(&tbs)) != 0) {
		refuse(-1, err, errlen, "the signature made does not verify");
		goto out;
	}
	mw_ssh_pubkey_blob(&s->pub, pubblob);
	if (mw_buf_put_cstring(&sigblob, KEYTYPE_ED25519) != 0 ||
	    mw_buf_put_string(&sigblob, raw, sizeof(raw)) != 0 ||
	    mw_buf_put(&out, SSHSIG_MAGIC, 6) != 0 ||
	    mw_buf_put_u32(&out, SSHSIG_VERSION) != 0 ||
	    mw_buf_put_string(&out, pubblob, sizeof(pubblob)) != 0 ||
	    mw_buf_put_cstring(&out, ns) != 0 ||
	    mw_buf_put_string(&out, NULL, 0) != 0 ||
	    mw_buf_put_cstring(&out, "sha512") != 0 ||
	    mw_buf_put_string(&out, mw_buf_ptr(&sigblob), mw_buf_avail(&sigblob)) != 0) {
		refuse(-1, err, errlen, "out of memory");
		goto out;
	}
	if ((*armored = mw_sshsig_armor(mw_buf_ptr(&out), mw_buf_avail(&out), armored_len)) == NULL) {
		refuse(-1, err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	mw_buf_free(&tbs);
	mw_buf_free(&sigblob);
	mw_buf_free(&out);
	return rc;
}
