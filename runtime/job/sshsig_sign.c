/*
 * sshsig_sign.c: signing job envelopes as OpenSSH does (SSHSIG, openssh
 * PROTOCOL.sshsig), with an unencrypted OpenSSH Ed25519 private key file
 * or through ssh-agent (split out of sshsig.c, which verifies).
 *
 * Why it exists: operators sign with the SSH keys they already have, and
 * `moonwire send` needs no ssh-keygen.  Every primitive is OpenSSL's;
 * every binary byte (key files, agent frames) is read through struct
 * mw_buf.  Invariants: a signature is handed out only after it verifies
 * (a corrupt key, a confused agent or a fault fails closed); private key
 * bytes live only in the EVP_PKEY and in buffers wiped before release.
 */
#include <errno.h>
#include <fcntl.h>
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

#define KEYFILE_MAX		(64 * 1024)
#define AGENT_MSG_MAX		(256 * 1024)

#define SSH_AGENTC_REQUEST_IDENTITIES	11
#define SSH_AGENT_IDENTITIES_ANSWER	12
#define SSH_AGENTC_SIGN_REQUEST		13
#define SSH_AGENT_SIGN_RESPONSE		14
#define SSH_AGENT_FAILURE		5

#define refuse mw_refuse_msg

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
	    mw_ssh_sig_blob_parse(sblob, sbloblen, &raw) != 0) {
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
	if (*ns == '\0' || mw_sshsig_signed_data(&tbs, ns, "sha512", msg, msg_len) != 0) {
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
	if (mw_ed25519_verify(s->pub.ed25519, raw, sizeof(raw), mw_buf_ptr(&tbs),
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
