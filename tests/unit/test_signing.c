/*
 * test_signing.c: unit tests for job envelopes, SSHSIG and allowed_signers
 * (runtime/job/envelope.c, sshsig.c, allowed_signers.c).
 *
 * Why this exists: these parsers decide whether a program from the network
 * runs.  Every malformed envelope must be refused with its exact code, a
 * signature must fail on any changed byte, and the allowed_signers file
 * must mean what it means to ssh-keygen.  The vectors under
 * tests/unit/data/signing/ were made once by ssh-keygen (gen.sh there), so
 * these tests need neither ssh-keygen nor a network.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "wire/mw_wire.h"

static char datadir[PATH_MAX];

static void
init_datadir(void)
{
	/* __FILE__ is tests/unit/test_signing.c relative to the repository,
	 * where `make unit` runs the tests. */
	snprintf(datadir, sizeof(datadir), "%s", __FILE__);
	char *slash = strrchr(datadir, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		datadir[0] = '\0';
	strncat(datadir, "data/signing/", sizeof(datadir) - strlen(datadir) - 1);
}

static char *
data_path(const char *name)
{
	static char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s%s", datadir, name);
	return p;
}

static char *
slurp(const char *name, size_t *len)
{
	FILE *f = fopen(data_path(name), "rb");
	assert_non_null(f);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

static uint8_t *
sig_blob(const char *name, size_t *len)
{
	size_t alen;
	char *a = slurp(name, &alen);
	uint8_t *blob;
	assert_int_equal(mw_sshsig_unarmor(a, alen, &blob, len), 0);
	free(a);
	return blob;
}

/* ---- refusal names, time ---- */

static void
test_refusal_names(void **state)
{
	(void)state;
	for (int c = -1; c >= MW_REFUSE_MIN; c--) {
		const char *n = mw_refusal_name(c);
		assert_string_not_equal(n, "unknown");
		assert_int_equal(mw_refusal_from_name(n), c);
	}
	assert_string_equal(mw_refusal_name(MW_REFUSE_BAD_SIGNATURE), "bad_signature");
	assert_string_equal(mw_refusal_name(MW_REFUSE_NOT_YET_VALID), "not_yet_valid");
	assert_string_equal(mw_refusal_name(MW_REFUSE_BAD_LIMITS), "bad_limits");
	assert_string_equal(mw_refusal_name(MW_REFUSE_VALIDITY_TOO_LONG), "validity_too_long");
	assert_string_equal(mw_refusal_name(0), "unknown");
	assert_string_equal(mw_refusal_name(MW_REFUSE_BAD_ARGS), "bad_args");
	assert_string_equal(mw_refusal_name(MW_REFUSE_MIN - 1), "unknown");
	assert_string_equal(mw_refusal_name(5), "unknown");
	assert_int_equal(mw_refusal_from_name("none"), 0);
	assert_int_equal(mw_refusal_from_name("Malformed"), 0);
	assert_int_equal(mw_refusal_from_name(""), 0);
	assert_int_equal(mw_refusal_from_name(NULL), 0);
}

static void
test_time(void **state)
{
	(void)state;
	int64_t t;
	char out[21];
	assert_int_equal(mw_time_parse("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(mw_time_parse("2030-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 1893456000);
	assert_int_equal(mw_time_parse("2024-02-29T23:59:59Z", &t), 0);
	mw_time_format(t, out);
	assert_string_equal(out, "2024-02-29T23:59:59Z");
	assert_int_equal(mw_time_parse("9999-12-31T23:59:59Z", &t), 0);
	mw_time_format(t, out);
	assert_string_equal(out, "9999-12-31T23:59:59Z");
	static const char *const bad[] = {
		"2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z",
		"2024-04-31T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z",
		"2024-01-01T00:00:60Z", "1969-12-31T23:59:59Z", "2024-01-01t00:00:00Z",
		"2024-01-01T00:00:00z", "2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00",
		"2024-01-01 00:00:00Z", "2024-01-01T00:00:00.5Z", "2024-1-01T00:00:00Z",
		"+024-01-01T00:00:00Z", "2024-01-01T00:00:00ZZ", "", "20240101T000000Z",
		"2024-01-0aT00:00:00Z", " 2024-01-01T00:00:00Z",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 42;
		if (mw_time_parse(bad[i], &t) == 0)
			fail_msg("accepted '%s'", bad[i]);
	}
	mw_time_format(-1, out);
	assert_string_equal(out, "0000-00-00T00:00:00Z");
	for (int64_t x = 0; x < 4102444800LL; x += 86399 * 37) {
		mw_time_format(x, out);
		assert_int_equal(mw_time_parse(out, &t), 0);
		assert_int_equal(t, x);
	}
}

static void
test_base64(void **state)
{
	(void)state;
	uint8_t *o;
	size_t n;
	assert_int_equal(mw_b64_decode("aGk=", 4, &o, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(o, "hi", 2);
	free(o);
	assert_int_equal(mw_b64_decode("aGk", 3, &o, &n), -1);
	assert_int_equal(mw_b64_decode("aG k", 4, &o, &n), -1);
	assert_int_equal(mw_b64_decode("a=k=", 4, &o, &n), -1);
	assert_int_equal(mw_b64_decode("====", 4, &o, &n), -1);
	assert_int_equal(mw_b64_decode("", 0, &o, &n), -1);
	assert_int_equal(mw_b64_decode("aGk\n", 4, &o, &n), -1);
	char *e = mw_b64_encode((const uint8_t *)"hi", 2);
	assert_string_equal(e, "aGk=");
	free(e);
}

/* ---- SSHSIG ---- */

static void
test_sshsig_vectors(void **state)
{
	(void)state;
	size_t mlen, blen;
	char *msg = slurp("msg.txt", &mlen);
	char *fp = slurp("signer.fp", NULL);
	fp[strcspn(fp, "\n")] = '\0';
	struct mw_ssh_pubkey k;
	char err[256];
	static const char *const good[] = { "msg.sha512.sig", "msg.sha256.sig" };
	for (size_t i = 0; i < 2; i++) {
		uint8_t *b = sig_blob(good[i], &blen);
		assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
		    &k, err, sizeof(err)), 0);
		assert_string_equal(k.fp, fp);
		/* Any other namespace is refused. */
		assert_int_equal(mw_sshsig_verify(b, blen, "file", (uint8_t *)msg, mlen,
		    &k, err, sizeof(err)), MW_REFUSE_WRONG_NAMESPACE);
		assert_int_equal(k.fp[0], '\0');
		/* A changed message. */
		msg[0] ^= 1;
		assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
		    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
		msg[0] ^= 1;
		assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen - 1,
		    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
		free(b);
	}
	uint8_t *b = sig_blob("msg.otherns.sig", &blen);
	assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_WRONG_NAMESPACE);
	assert_int_equal(mw_sshsig_verify(b, blen, "file", (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), 0);
	free(b);
	b = sig_blob("msg.rsa.sig", &blen);
	assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_UNSUPPORTED_KEY);
	assert_non_null(strstr(err, "ssh-rsa"));
	free(b);
	b = sig_blob("msg.ecdsa.sig", &blen);
	assert_int_equal(mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_UNSUPPORTED_KEY);
	free(b);
	free(msg);
	free(fp);
}

/* Replaces the first occurrence of from (same length as to) in blob. */
static void
patch(uint8_t *blob, size_t n, const char *from, const char *to)
{
	size_t k = strlen(from);
	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(blob + i, from, k) == 0) {
			memcpy(blob + i, to, k);
			return;
		}
	fail_msg("'%s' not in blob", from);
}

static void
test_sshsig_tampered(void **state)
{
	(void)state;
	size_t mlen, blen;
	char *msg = slurp("msg.txt", &mlen);
	uint8_t *b = sig_blob("msg.sha512.sig", &blen);
	struct mw_ssh_pubkey k;
	char err[256];

	/* Every single-bit change anywhere in the blob fails. */
	for (size_t i = 0; i < blen; i++)
		for (int bit = 0; bit < 8; bit += 3) {
			b[i] ^= (uint8_t)(1 << bit);
			int r = mw_sshsig_verify(b, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
			    &k, err, sizeof(err));
			if (r == 0)
				fail_msg("flip of byte %zu bit %d verified", i, bit);
			assert_true(r < 0 && r >= MW_REFUSE_MIN);
			b[i] ^= (uint8_t)(1 << bit);
		}
	/* Every truncation fails, and so does a trailing byte. */
	for (size_t n = 0; n < blen; n++)
		assert_int_equal(mw_sshsig_verify(b, n, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
		    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	uint8_t *longer = malloc(blen + 1);
	memcpy(longer, b, blen);
	longer[blen] = 0;
	assert_int_equal(mw_sshsig_verify(longer, blen + 1, MW_JOB_NAMESPACE, (uint8_t *)msg,
	    mlen, &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	free(longer);

	uint8_t *c = malloc(blen);
	memcpy(c, b, blen);
	patch(c, blen, "sha512", "sha384");
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_UNSUPPORTED_HASH);
	memcpy(c, b, blen);
	patch(c, blen, "sha512", "sha256");	/* a supported hash, but not the one signed */
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	memcpy(c, b, blen);
	patch(c, blen, "moonwire-job", "moonwire-jox");
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_WRONG_NAMESPACE);
	/* a reserved field with content: ssh-keygen writes it empty and
	 * verifies over an empty one; one form only (before the signature) */
	{
		const char *ns = MW_JOB_NAMESPACE;
		uint8_t *r = malloc(blen + 1);
		size_t off = 0;

		for (size_t i = 0; i + strlen(ns) <= blen; i++)
			if (memcmp(b + i, ns, strlen(ns)) == 0) {
				off = i + strlen(ns);
				break;
			}
		assert_true(off > 0 && off + 4 <= blen);
		assert_memory_equal(b + off, "\0\0\0\0", 4);
		memcpy(r, b, off);
		memcpy(r + off, "\0\0\0\1x", 5);
		memcpy(r + off + 5, b + off + 4, blen - off - 4);
		assert_int_equal(mw_sshsig_verify(r, blen + 1, MW_JOB_NAMESPACE, (uint8_t *)msg,
		    mlen, &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
		assert_non_null(strstr(err, "reserved field is not empty"));
		free(r);
	}
	memcpy(c, b, blen);
	patch(c, blen, "SSHSIG", "SSHSIH");
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	memcpy(c, b, blen);
	c[9] = 2;	/* version */
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	memcpy(c, b, blen);
	patch(c, blen, "ssh-ed25519", "ssh-ed25518");	/* the key's type */
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_UNSUPPORTED_KEY);
	memcpy(c, b, blen);
	/* the signature's type (the second "ssh-ed25519") */
	size_t second = 0;
	for (size_t i = 20; i + 11 <= blen; i++)
		if (memcmp(c + i, "ssh-ed25519", 11) == 0)
			second = i;
	assert_true(second > 40);
	c[second + 10] = '8';
	assert_int_equal(mw_sshsig_verify(c, blen, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen,
	    &k, err, sizeof(err)), MW_REFUSE_BAD_SIGNATURE);
	free(c);
	free(b);
	free(msg);
}

static void
test_sshsig_armor(void **state)
{
	(void)state;
	size_t alen, blen, n2;
	char *a = slurp("msg.sha512.sig", &alen);
	uint8_t *b, *b2;
	assert_int_equal(mw_sshsig_unarmor(a, alen, &b, &blen), 0);
	char *re = mw_sshsig_armor(b, blen, &n2);
	assert_non_null(re);
	/* 76 columns, BEGIN/END lines, trailing newline. */
	assert_true(strncmp(re, "-----BEGIN SSH SIGNATURE-----\n", 30) == 0);
	assert_string_equal(re + n2 - 28, "-----END SSH SIGNATURE-----\n");
	const char *l = strchr(re, '\n') + 1;
	assert_int_equal(strcspn(l, "\n"), 76);
	assert_int_equal(mw_sshsig_unarmor(re, n2, &b2, &n2), 0);
	assert_int_equal(n2, blen);
	assert_memory_equal(b, b2, blen);
	free(b2);
	/* Trailing whitespace is fine, anything else or a broken armor is not. */
	char buf[2048];
	snprintf(buf, sizeof(buf), "%s \n\n\t\n", a);
	assert_int_equal(mw_sshsig_unarmor(buf, strlen(buf), &b2, &n2), 0);
	free(b2);
	static const char *const bad_suffix[] = { "x", "\n-----END SSH SIGNATURE-----\n" };
	for (size_t i = 0; i < 2; i++) {
		snprintf(buf, sizeof(buf), "%s%s", a, bad_suffix[i]);
		assert_int_equal(mw_sshsig_unarmor(buf, strlen(buf), &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
		assert_null(b2);
	}
	assert_int_equal(mw_sshsig_unarmor(a, alen - 29, &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
	assert_int_equal(mw_sshsig_unarmor(a + 1, alen - 1, &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
	snprintf(buf, sizeof(buf), "%s", a);
	buf[40] = '*';
	assert_int_equal(mw_sshsig_unarmor(buf, strlen(buf), &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
	snprintf(buf, sizeof(buf), "%s", a);
	char *nl = strchr(buf, '\n');
	nl[0] = '\r';
	assert_int_equal(mw_sshsig_unarmor(buf, strlen(buf), &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
	/* A base64 line over 76 columns. */
	char *one = mw_b64_encode(b, blen);
	snprintf(buf, sizeof(buf), "-----BEGIN SSH SIGNATURE-----\n%s\n-----END SSH SIGNATURE-----\n", one);
	assert_int_equal(mw_sshsig_unarmor(buf, strlen(buf), &b2, &n2), MW_REFUSE_BAD_SIGNATURE);
	free(one);
	free(re);
	free(b);
	free(a);
}

static void
test_sign_matches_ssh_keygen(void **state)
{
	(void)state;
	struct mw_ssh_signer *s;
	char err[512], *armored;
	size_t alen, mlen, blen, blen2;
	assert_int_equal(mw_ssh_signer_load(data_path("signer"), &s, err, sizeof(err)), 0);
	char *fp = slurp("signer.fp", NULL);
	fp[strcspn(fp, "\n")] = '\0';
	assert_string_equal(mw_ssh_signer_pubkey(s)->fp, fp);
	char *msg = slurp("msg.txt", &mlen);
	assert_int_equal(mw_sshsig_sign(s, MW_JOB_NAMESPACE, (uint8_t *)msg, mlen, &armored, &alen,
	    err, sizeof(err)), 0);
	assert_int_equal(armored[alen - 1], '\n');
	uint8_t *mine, *theirs = sig_blob("msg.sha512.sig", &blen2);
	assert_int_equal(mw_sshsig_unarmor(armored, alen, &mine, &blen), 0);
	/* Ed25519 is deterministic: the very bytes ssh-keygen wrote. */
	assert_int_equal(blen, blen2);
	assert_memory_equal(mine, theirs, blen);
	free(mine);
	free(theirs);
	free(armored);
	mw_ssh_signer_free(s);
	free(msg);
	free(fp);
}

static void
test_signer_load_refusals(void **state)
{
	(void)state;
	struct mw_ssh_signer *s = (void *)1;
	char err[1024];
	unsetenv("SSH_AUTH_SOCK");
	assert_int_not_equal(mw_ssh_signer_load(data_path("enc"), &s, err, sizeof(err)), 0);
	assert_null(s);
	assert_non_null(strstr(err, "encrypted"));
	assert_non_null(strstr(err, "ssh-agent"));
	assert_non_null(strstr(err, "--signature"));
	assert_int_not_equal(mw_ssh_signer_load(data_path("rsa"), &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "ssh-ed25519"));
	assert_int_not_equal(mw_ssh_signer_load(data_path("signer.pub"), &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "SSH_AUTH_SOCK"));
	assert_int_not_equal(mw_ssh_signer_load(data_path("rsa.pub"), &s, err, sizeof(err)), 0);
	assert_int_not_equal(mw_ssh_signer_load(data_path("nonexistent"), &s, err, sizeof(err)), 0);
	assert_int_not_equal(mw_ssh_signer_load(data_path("msg.txt"), &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not an OpenSSH private key"));
}

/* Rewrites the signer key with a change in its private section. */
static void
test_signer_load_corrupt(void **state)
{
	(void)state;
	size_t len;
	char *text = slurp("signer", &len);
	char b64[4096] = "";
	const char *p = strchr(text, '\n') + 1;
	while (strncmp(p, "-----END", 8) != 0) {
		size_t n = strcspn(p, "\n");
		strncat(b64, p, n);
		p += n + 1;
	}
	uint8_t *bin;
	size_t blen;
	assert_int_equal(mw_b64_decode(b64, strlen(b64), &bin, &blen), 0);
	/* The private section starts after: magic(15) cipher kdf kdfopts
	 * nkeys(4) pubkey(4+51) len(4). */
	size_t priv = 15 + (4 + 4) + (4 + 4) + 4 + 4 + (4 + 51) + 4;
	static const size_t offsets[] = { 4 /* check2 */, 8 + 4 + 11 + 4 + 3 /* pub */,
		8 + 15 + 36 + 4 + 40 /* pub half of priv */ };
	char tmp[] = "/tmp/mw-signer-XXXXXX";
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		bin[priv + offsets[i]] ^= 1;
		char *enc = mw_b64_encode(bin, blen);
		int fd = mkstemp(tmp);
		assert_true(fd >= 0);
		FILE *f = fdopen(fd, "w");
		fprintf(f, "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n", enc);
		fclose(f);
		struct mw_ssh_signer *s;
		char err[512];
		assert_int_not_equal(mw_ssh_signer_load(tmp, &s, err, sizeof(err)), 0);
		assert_null(s);
		unlink(tmp);
		strcpy(tmp, "/tmp/mw-signer-XXXXXX");
		free(enc);
		bin[priv + offsets[i]] ^= 1;
	}
	/* Unchanged, the same rewrite loads. */
	char *enc = mw_b64_encode(bin, blen);
	int fd = mkstemp(tmp);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----\n", enc);
	fclose(f);
	struct mw_ssh_signer *s;
	char err[512];
	assert_int_equal(mw_ssh_signer_load(tmp, &s, err, sizeof(err)), 0);
	mw_ssh_signer_free(s);
	unlink(tmp);
	free(enc);
	free(bin);
	free(text);
}

/* ---- the envelope ---- */

static const char *const HDR =
    "moonwire-job 1\n"
    "audience: agent@example.org\n"
    "job-id: j-1\n"
    "issued-at: 2030-01-01T00:00:00Z\n"
    "not-after: 2030-01-01T00:05:00Z\n";
static const char *const PROG = "return 1\n";

/* header fields (after the magic line unless with_magic) + program +
 * the vector signature armor. */
static char *
envelope_text(const char *head, const char *prog, const char *tail)
{
	size_t alen;
	char *armor = slurp("msg.sha512.sig", &alen);
	size_t n = strlen(head) + strlen(prog) + alen + 256 + (tail ? strlen(tail) : 0);
	char *t = malloc(n);
	snprintf(t, n, "%s\n%s\n%s%s", head, prog, armor, tail ? tail : "");
	free(armor);
	return t;
}

static char *
standard_head(const char *extra)
{
	static char h[512];
	snprintf(h, sizeof(h), "%s%sprogram-length: %zu\n", HDR, extra, strlen(PROG));
	return h;
}

static int
parse_text(const char *t, struct mw_envelope *e, char *err)
{
	int r = mw_envelope_parse(t, strlen(t), e, err, 256);
	if (r != 0) {
		/* Zeroed on failure. */
		assert_null(e->sig);
		assert_null(e->program);
		assert_int_equal(e->audience[0], '\0');
		assert_true(err[0] != '\0');
	}
	return r;
}

static void
test_envelope_vector(void **state)
{
	(void)state;
	size_t plen, slen;
	char *part = slurp("job.prepared", &plen);
	char *sig = slurp("job.prepared.sig", &slen);
	char *env, err[256];
	size_t elen;
	assert_int_equal(mw_envelope_attach(part, plen, sig, slen, &env, &elen, err, sizeof(err)), 0);
	struct mw_envelope e;
	assert_int_equal(mw_envelope_parse(env, elen, &e, err, sizeof(err)), 0);
	assert_string_equal(e.audience, "agent@example.org");
	assert_string_equal(e.job_id, "vector-1");
	assert_int_equal(e.issued_at, 1893456000);
	assert_int_equal(e.not_after, 1893456300);
	assert_true(e.has_limits);
	assert_string_equal(e.limits_text, "cpu=500ms instructions=1000000");
	struct mw_limits max;
	mw_limits_maximum(&max);
	assert_int_equal(e.limits.cpu_ms, 500);
	assert_int_equal(e.limits.instructions, 1000000);
	assert_int_equal(e.limits.memory, max.memory);
	assert_int_equal(e.limits.wall_ms, max.wall_ms);
	assert_int_equal(e.program_len, 13);
	assert_memory_equal(e.program, "return 1 + 1\n", 13);
	assert_ptr_equal(e.signed_bytes, env);
	assert_int_equal(e.signed_len, plen);
	uint8_t md[32];
	unsigned int mdlen;
	/* the envelope's identity: its text without the final newline */
	assert_true(elen > 0 && env[elen - 1] == '\n');
	assert_int_equal(EVP_Digest(env, elen - 1, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_memory_equal(md, e.sha256, 32);
	{
		/* more trailing blanks: the same identity */
		char *more = malloc(elen + 4);
		struct mw_envelope e2;
		assert_non_null(more);
		memcpy(more, env, elen);
		memcpy(more + elen, " \n\t\n", 4);
		assert_int_equal(mw_envelope_parse(more, elen + 4, &e2, err, sizeof(err)), 0);
		assert_memory_equal(e2.sha256, e.sha256, 32);
		mw_envelope_free(&e2);
		free(more);
	}

	struct mw_allowed_signers *as;
	char *pub = slurp("signer.pub", NULL);
	char line[1024];
	snprintf(line, sizeof(line), "signer@test %s", pub);
	assert_int_equal(mw_allowed_signers_parse(line, strlen(line), "as", &as, err, sizeof(err)), 0);
	struct mw_ssh_pubkey k;
	const char *pr;
	assert_int_equal(mw_envelope_verify(&e, as, 1893456000, &k, &pr, err, sizeof(err)), 0);
	assert_string_equal(pr, "signer@test");
	/* The same key outside its validity: unknown signer. */
	mw_allowed_signers_free(as);
	snprintf(line, sizeof(line), "signer@test valid-before=\"20291231Z\" %s", pub);
	assert_int_equal(mw_allowed_signers_parse(line, strlen(line), "as", &as, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_verify(&e, as, 1893456000, &k, &pr, err, sizeof(err)),
	    MW_REFUSE_UNKNOWN_SIGNER);
	assert_null(pr);
	mw_allowed_signers_free(as);
	/* A changed program byte. */
	mw_envelope_free(&e);
	char *p = strstr(env, "return 1 + 1");
	p[7] = '2';
	assert_int_equal(mw_envelope_parse(env, elen, &e, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_verify(&e, NULL, 1893456000, &k, &pr, err, sizeof(err)),
	    MW_REFUSE_BAD_SIGNATURE);
	mw_envelope_free(&e);
	/* Attaching to a different prepared text fails its own parse check. */
	assert_int_not_equal(mw_envelope_attach(part, plen - 1, sig, slen, &p, &elen, err,
	    sizeof(err)), 0);
	free(pub);
	free(env);
	free(part);
	free(sig);
}

struct bad_case {
	const char *head;	/* full header incl. magic, without the empty line */
	const char *prog;
	int code;
};

static void
test_envelope_malformed(void **state)
{
	(void)state;
	static const char *const base_fields =
	    "audience: agent@example.org\njob-id: j-1\nissued-at: 2030-01-01T00:00:00Z\n"
	    "not-after: 2030-01-01T00:05:00Z\n";
#define M "moonwire-job 1\n"
#define A "audience: agent@example.org\n"
#define J "job-id: j-1\n"
#define I "issued-at: 2030-01-01T00:00:00Z\n"
#define N "not-after: 2030-01-01T00:05:00Z\n"
#define P "program-length: 9\n"
	(void)base_fields;
	static const struct bad_case cases[] = {
		{ M A J I N P, "return 1\n", 0 },
		{ M A J I N "limits: cpu=1s\n" P, "return 1\n", 0 },
		{ "moonwire-job 2\n" A J I N P, "return 1\n", MW_REFUSE_VERSION },
		{ "moonwire-job 1.0\n" A J I N P, "return 1\n", MW_REFUSE_VERSION },
		{ "moonwire-jobs 1\n" A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ "moonwire-job 1\r\n" A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ "Moonwire-job 1\n" A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: agent@example.org\r\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: agent@exa\rmple.org\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 9\r\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: agent@example.org/res\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: \n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience:  agent@example.org\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience:agent@example.org\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: @example.org\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: a@b@c\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "audience: a b@c\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "Audience: agent@example.org\n" J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A "job-id: \n" I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A "job-id: a/b\n" I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A "job-id: a b\n" I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A "job-id: 0123456789012345678901234567890123456789012345678901234567890123\n"
		    I N P, "return 1\n", 0 },
		{ M A "job-id: 01234567890123456789012345678901234567890123456789012345678901234\n"
		    I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J "issued-at: 2030-01-01T00:00:00\n" N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J "issued-at: 2030-01-01 00:00:00Z\n" N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I "not-after: 2030-01-01T00:00:00Z\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I "not-after: 2029-12-31T00:00:00Z\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I "not-after: 2030-02-30T00:00:00Z\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		/* order, duplicates, missing, unknown */
		{ M J A I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A I J N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N P P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "limits: cpu=1s\nlimits: cpu=1s\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N P "limits: cpu=1s\n", "return 1\n", MW_REFUSE_MALFORMED },
		/* args: optional, after limits, canonical */
		{ M A J I N "args: path=/var/log/x\n" P, "return 1\n", 0 },
		{ M A J I N "limits: cpu=1s\nargs: a=1 b=x%20y\n" P, "return 1\n", 0 },
		{ M A J I N "args: a=1\nlimits: cpu=1s\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "args: a=1\nargs: b=1\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "args: b=1 a=1\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=1 a=2\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: A=1\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=x y\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=1  b=2\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%2f\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%2F\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%0A\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%00\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%C3%A9\n" P, "return 1\n", 0 },
		{ M A J I N "args: a=%C3\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=%2\n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: \n" P, "return 1\n", MW_REFUSE_BAD_ARGS },
		{ M A J I N "args: a=\n" P, "return 1\n", 0 },
		{ M "limits: cpu=1s\n" A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A I N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J N P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "limits: cpu=1s\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "x-extra: 1\n" P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N P "x-extra: 1\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N " " P, "return 1\n", MW_REFUSE_MALFORMED },
		{ M "\n" A J I N P, "return 1\n", MW_REFUSE_MALFORMED },
		/* limits */
		{ M A J I N "limits: bogus=1\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: memory=100G\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu=0\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu=1s cpu=2s\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu=1s  wall=2s\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu=1s \n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: \n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: =1\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		{ M A J I N "limits: cpu=1s\twall=2s\n" P, "return 1\n", MW_REFUSE_BAD_LIMITS },
		/* program-length */
		{ M A J I N "program-length: 09\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: +9\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 9 \n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 0\n", "", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: -9\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 0x9\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 8\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 10\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 9000\n", "return 1\n", MW_REFUSE_MALFORMED },
		{ M A J I N "program-length: 122881\n", "return 1\n", MW_REFUSE_OVERSIZED },
		/* any number past the limit is oversized, however many digits */
		{ M A J I N "program-length: 99999999999999999999\n", "return 1\n", MW_REFUSE_OVERSIZED },
		{ M A J I N "program-length: 12345678\n", "return 1\n", MW_REFUSE_OVERSIZED },
		/* the program itself */
		{ M A J I N P, "return\r1\n", MW_REFUSE_MALFORMED },
		{ M A J I N P, "return\0011\n", MW_REFUSE_MALFORMED },
		{ M A J I N P, "return\xc3\x28\n", MW_REFUSE_MALFORMED },
		{ M A J I N P, "return\t1\n", 0 },
		{ M A J I N "program-length: 10\n", "return \xc3\xa9\n", 0 },
	};
#undef M
#undef A
#undef J
#undef I
#undef N
#undef P
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = envelope_text(cases[i].head, cases[i].prog, NULL);
		struct mw_envelope e;
		char err[256] = "";
		int r = parse_text(t, &e, err);
		if (r != cases[i].code)
			fail_msg("case %zu: got %s (%s), want %s\n%s", i, mw_refusal_name(r), err,
			    mw_refusal_name(cases[i].code), cases[i].head);
		mw_envelope_free(&e);
		free(t);
	}
}

static void
test_envelope_tail(void **state)
{
	(void)state;
	struct { const char *tail; int code; } cases[] = {
		{ "", 0 }, { "\n", 0 }, { "\n\n  \t\n", 0 }, { " ", 0 },
		{ "x", MW_REFUSE_MALFORMED }, { "\n\nmore text\n", MW_REFUSE_MALFORMED },
		{ "\r\n", MW_REFUSE_MALFORMED },
		{ "-----BEGIN SSH SIGNATURE-----\n", MW_REFUSE_MALFORMED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = envelope_text(standard_head(""), PROG, cases[i].tail);
		struct mw_envelope e;
		char err[256] = "";
		int r = parse_text(t, &e, err);
		if (r != cases[i].code)
			fail_msg("tail %zu: got %s (%s)", i, mw_refusal_name(r), err);
		mw_envelope_free(&e);
		free(t);
	}
	/* The armor: missing newline before it, broken inside, missing END. */
	size_t alen;
	char *armor = slurp("msg.sha512.sig", &alen);
	char buf[8192];
	struct mw_envelope e;
	char err[256];
	snprintf(buf, sizeof(buf), "%s\n%s%s", standard_head(""), PROG, armor);
	assert_int_equal(parse_text(buf, &e, err), MW_REFUSE_MALFORMED);
	snprintf(buf, sizeof(buf), "%s\n%s\n\n%s", standard_head(""), PROG, armor);
	assert_int_equal(parse_text(buf, &e, err), MW_REFUSE_MALFORMED);
	snprintf(buf, sizeof(buf), "%s\n%s\n%s", standard_head(""), PROG, armor);
	char *mid = strstr(buf, "SIGNATURE-----\n") + 20;
	*mid = '!';
	assert_int_equal(parse_text(buf, &e, err), MW_REFUSE_BAD_SIGNATURE);
	snprintf(buf, sizeof(buf), "%s\n%s\n%.*s", standard_head(""), PROG, (int)alen - 28, armor);
	assert_int_equal(parse_text(buf, &e, err), MW_REFUSE_BAD_SIGNATURE);
	snprintf(buf, sizeof(buf), "%s\n%s\n%s", standard_head(""), PROG, armor);
	char *end = strstr(buf, "-----END");
	end[-1] = '\r';
	assert_int_equal(parse_text(buf, &e, err), MW_REFUSE_BAD_SIGNATURE);
	/* Every truncation of a good envelope is refused. */
	snprintf(buf, sizeof(buf), "%s\n%s\n%s", standard_head(""), PROG, armor);
	size_t full = strlen(buf) - 1;	/* drop the optional final newline */
	for (size_t n = 0; n < full; n++) {
		int r = mw_envelope_parse(buf, n, &e, err, sizeof(err));
		if (r == 0)
			fail_msg("truncation to %zu parsed", n);
	}
	free(armor);
}

static void
test_envelope_oversize(void **state)
{
	(void)state;
	size_t n = MW_ENVELOPE_MAX + 1;
	char *t = malloc(n + 1);
	memset(t, 'a', n);
	t[n] = '\0';
	struct mw_envelope e;
	char err[256];
	assert_int_equal(mw_envelope_parse(t, n, &e, err, sizeof(err)), MW_REFUSE_OVERSIZED);
	/* A legitimate envelope just over the limit because of its program. */
	size_t plen = MW_ENVELOPE_MAX - 200;
	char *prog = malloc(plen + 1);
	memset(prog, '-', plen);
	prog[plen - 1] = '\n';
	prog[plen] = '\0';
	char head[512];
	snprintf(head, sizeof(head), "%sprogram-length: %zu\n", HDR, plen);
	char *env = envelope_text(head, prog, NULL);
	assert_int_equal(mw_envelope_parse(env, strlen(env), &e, err, sizeof(err)), MW_REFUSE_OVERSIZED);
	free(env);
	free(prog);
	free(t);
}

static void
test_envelope_build(void **state)
{
	(void)state;
	struct mw_envelope_fields f = { .audience = "agent@example.org", .job_id = NULL,
		.issued_at = 1893456000, .not_after = 1893456300, .limits_text = NULL };
	char *out, id[MW_JOB_ID_MAX + 1], err[256];
	size_t len;
	const char *prog = "-- hi\r\nreturn 1\r\n";
	assert_int_equal(mw_envelope_build(&f, (const uint8_t *)prog, strlen(prog), &out, &len,
	    id, err, sizeof(err)), 0);
	assert_int_equal(strlen(id), 32);
	assert_int_equal(strspn(id, "0123456789abcdef"), 32);
	char want[512];
	snprintf(want, sizeof(want), "moonwire-job 1\naudience: agent@example.org\njob-id: %s\n"
	    "issued-at: 2030-01-01T00:00:00Z\nnot-after: 2030-01-01T00:05:00Z\n"
	    "program-length: 15\n\n-- hi\nreturn 1\n", id);
	assert_string_equal(out, want);
	assert_int_equal(len, strlen(want));
	free(out);

	/* Sign it with the vector key, attach, parse, verify. */
	f.job_id = "fixed.id_1-x";
	f.limits_text = "wall=2s calls=5";
	assert_int_equal(mw_envelope_build(&f, (const uint8_t *)"return 2", 8, &out, &len, id,
	    err, sizeof(err)), 0);
	assert_string_equal(id, "fixed.id_1-x");
	assert_non_null(strstr(out, "\nlimits: wall=2s calls=5\nprogram-length: 8\n\nreturn 2"));
	struct mw_ssh_signer *s;
	char *armored, *env;
	size_t alen, elen;
	assert_int_equal(mw_ssh_signer_load(data_path("signer"), &s, err, sizeof(err)), 0);
	assert_int_equal(mw_sshsig_sign(s, MW_JOB_NAMESPACE, (uint8_t *)out, len, &armored, &alen,
	    err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_attach(out, len, armored, alen, &env, &elen, err, sizeof(err)), 0);
	struct mw_envelope e;
	assert_int_equal(mw_envelope_parse(env, elen, &e, err, sizeof(err)), 0);
	assert_int_equal(e.limits.wall_ms, 2000);
	assert_int_equal(e.limits.cap_calls, 5);
	assert_int_equal(e.signed_len, len);
	struct mw_ssh_pubkey k;
	assert_int_equal(mw_sshsig_verify(e.sig, e.sig_len, MW_JOB_NAMESPACE, e.signed_bytes,
	    e.signed_len, &k, err, sizeof(err)), 0);
	assert_string_equal(k.fp, mw_ssh_signer_pubkey(s)->fp);
	mw_envelope_free(&e);
	/* A signature in another namespace is attached but refused on verify. */
	free(armored);
	free(env);
	assert_int_equal(mw_sshsig_sign(s, "file", (uint8_t *)out, len, &armored, &alen,
	    err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_attach(out, len, armored, alen, &env, &elen, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_parse(env, elen, &e, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_verify(&e, NULL, 1893456000, &k, &(const char *){ NULL },
	    err, sizeof(err)), MW_REFUSE_WRONG_NAMESPACE);
	mw_envelope_free(&e);
	free(armored);
	free(env);
	mw_ssh_signer_free(s);
	free(out);

	/* Refusals. */
	struct { const char *aud, *id, *limits, *prog; int64_t ia, na; int code; const char *msg; } bad[] = {
		{ "agent@example.org", NULL, NULL, "a\rb", 0, 10, MW_REFUSE_MALFORMED, "CR" },
		{ "agent@example.org", NULL, NULL, "a\001b", 0, 10, MW_REFUSE_MALFORMED, "control" },
		{ "agent@example.org", NULL, NULL, "\xff", 0, 10, MW_REFUSE_MALFORMED, "UTF-8" },
		{ "agent@example.org", NULL, NULL, "\xed\xa0\x80", 0, 10, MW_REFUSE_MALFORMED, "UTF-8" },
		{ "agent@example.org", NULL, NULL, "\xc0\xaf", 0, 10, MW_REFUSE_MALFORMED, "UTF-8" },
		{ "agent@example.org", NULL, NULL, "\xc2\x85", 0, 10, MW_REFUSE_MALFORMED, "control" },
		{ "agent@example.org", NULL, NULL, "", 0, 10, MW_REFUSE_MALFORMED, "empty" },
		{ "agent@example.org/res", NULL, NULL, "x", 0, 10, MW_REFUSE_MALFORMED, "bare JID" },
		{ "", NULL, NULL, "x", 0, 10, MW_REFUSE_MALFORMED, "bare JID" },
		{ "agent@example.org", "bad id", NULL, "x", 0, 10, MW_REFUSE_MALFORMED, "job id" },
		{ "agent@example.org", "", NULL, "x", 0, 10, MW_REFUSE_MALFORMED, "job id" },
		{ "agent@example.org", NULL, "cpu=forever", "x", 0, 10, MW_REFUSE_BAD_LIMITS, "cpu" },
		{ "agent@example.org", NULL, "nope=1", "x", 0, 10, MW_REFUSE_BAD_LIMITS, "unknown" },
		{ "agent@example.org", NULL, NULL, "x", 10, 10, MW_REFUSE_MALFORMED, "not-after" },
		{ "agent@example.org", NULL, NULL, "x", -5, 10, MW_REFUSE_MALFORMED, "not-after" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mw_envelope_fields g = { .audience = bad[i].aud, .job_id = bad[i].id,
			.issued_at = bad[i].ia, .not_after = bad[i].na, .limits_text = bad[i].limits };
		out = (char *)1;
		int r = mw_envelope_build(&g, (const uint8_t *)bad[i].prog, strlen(bad[i].prog),
		    &out, &len, NULL, err, sizeof(err));
		if (r != bad[i].code || strstr(err, bad[i].msg) == NULL)
			fail_msg("build case %zu: %d %s", i, r, err);
		assert_null(out);
	}
	/* A program too large to fit with its signature. */
	size_t big = MW_ENVELOPE_MAX - 300;
	char *p = malloc(big);
	memset(p, 'x', big);
	assert_int_equal(mw_envelope_build(&f, (uint8_t *)p, big, &out, &len, NULL, err,
	    sizeof(err)), MW_REFUSE_OVERSIZED);
	free(p);
}

/* Arguments: command-line specs -> canonical line -> parsed back. */
static void
test_job_args(void **state)
{
	(void)state;
	struct mw_job_args a, b;
	char err[256];
	memset(&a, 0, sizeof(a));
	assert_int_equal(mw_job_args_add_spec(&a, "svc=nginx ssh", err, sizeof(err)), 0);
	assert_int_equal(mw_job_args_add_spec(&a, "path=/var/log/dpkg.log", err, sizeof(err)), 0);
	assert_int_equal(mw_job_args_add_spec(&a, "note=50%\t\xc3\xa9=", err, sizeof(err)), 0);
	assert_int_equal(mw_job_args_add_spec(&a, "empty=", err, sizeof(err)), 0);
	assert_int_equal(a.n, 4);
	char *line = mw_job_args_encode(&a);
	assert_non_null(line);
	assert_string_equal(line, "empty= note=50%25%09%C3%A9%3D path=/var/log/dpkg.log svc=nginx%20ssh");
	assert_int_equal(mw_job_args_decode(line, strlen(line), &b, err, sizeof(err)), 0);
	assert_int_equal(b.n, 4);
	for (uint32_t i = 0; i < 4; i++) {
		assert_string_equal(a.name[i], b.name[i]);
		assert_string_equal(a.value[i], b.value[i]);
	}
	free(line);
	mw_job_args_free(&b);
	/* refusals with a reason */
	assert_int_equal(mw_job_args_add_spec(&a, "svc=again", err, sizeof(err)), -1);
	assert_string_equal(err, "argument 'svc' given twice");
	assert_int_equal(mw_job_args_add_spec(&a, "novalue", err, sizeof(err)), -1);
	assert_int_equal(mw_job_args_add_spec(&a, "9lives=x", err, sizeof(err)), -1);
	assert_int_equal(mw_job_args_add_spec(&a, "x=line\nbreak", err, sizeof(err)), -1);
	assert_int_equal(mw_job_args_add_spec(&a, "x=\x01", err, sizeof(err)), -1);
	char big[MW_ARG_VALUE_MAX + 8];
	memset(big, 'v', sizeof(big));
	memcpy(big, "x=", 2);
	big[MW_ARG_VALUE_MAX + 2] = '\0';
	assert_int_equal(mw_job_args_add_spec(&a, big, err, sizeof(err)), 0);
	mw_job_args_free(&a);
	big[MW_ARG_VALUE_MAX + 3] = '\0';
	big[MW_ARG_VALUE_MAX + 2] = 'v';
	assert_int_equal(mw_job_args_add_spec(&a, big, err, sizeof(err)), -1);
	for (int i = 0; i < MW_ARGS_MAX; i++) {
		char spec[16];
		snprintf(spec, sizeof(spec), "a%d=1", i);
		assert_int_equal(mw_job_args_add_spec(&a, spec, err, sizeof(err)), 0);
	}
	assert_int_equal(mw_job_args_add_spec(&a, "zz=1", err, sizeof(err)), -1);
	mw_job_args_free(&a);
}

static void
test_check_time(void **state)
{
	(void)state;
	struct mw_envelope e;
	char err[256];
	memset(&e, 0, sizeof(e));
	e.issued_at = 1000000;
	e.not_after = 1000300;
	assert_int_equal(mw_envelope_check_time(&e, 1000000 - 60, 60, 600, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_check_time(&e, 1000000 - 61, 60, 600, err, sizeof(err)),
	    MW_REFUSE_NOT_YET_VALID);
	assert_int_equal(mw_envelope_check_time(&e, 1000300, 60, 600, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_check_time(&e, 1000301, 60, 600, err, sizeof(err)),
	    MW_REFUSE_EXPIRED);
	assert_int_equal(mw_envelope_check_time(&e, 1000100, 60, 300, err, sizeof(err)), 0);
	assert_int_equal(mw_envelope_check_time(&e, 1000100, 60, 299, err, sizeof(err)),
	    MW_REFUSE_VALIDITY_TOO_LONG);
}

/* ---- allowed_signers ---- */

static char *
pubkey_of(const char *name)
{
	char *p = slurp(name, NULL);
	/* keep "type base64" */
	char *sp = strchr(p, ' ');
	sp = strchr(sp + 1, ' ');
	if (sp != NULL)
		*sp = '\0';
	p[strcspn(p, "\n")] = '\0';
	return p;
}

static void
load_key(const char *name, struct mw_ssh_pubkey *k)
{
	char *p = slurp(name, NULL);
	char err[256];
	assert_int_equal(mw_ssh_pubkey_parse_line(p, k, err, sizeof(err)), 0);
	free(p);
}

static void
test_allowed_signers_parse(void **state)
{
	(void)state;
	char *signer = pubkey_of("signer.pub"), *other = pubkey_of("other.pub");
	char *rsa = pubkey_of("rsa.pub"), *ecdsa = pubkey_of("ecdsa.pub");
	struct mw_ssh_pubkey ks, ko;
	load_key("signer.pub", &ks);
	load_key("other.pub", &ko);
	char text[16384];
	snprintf(text, sizeof(text),
	    "# moonwire signers\n"
	    "\n"
	    "   \t\n"
	    "ops@example.org %s\n"	/* rsa: kept, never matches */
	    "ca@example.org cert-authority %s\n"	/* CA: kept, never matches */
	    "dev@example.org %s\n"	/* ecdsa */
	    "alice@example.org,bob@example.org namespaces=\"git,moonwire-*\" %s alice's key\n"
	    "\"carol@example.org,dan@example.org\" VALID-AFTER=\"20300101Z\",valid-before=\"20300201000000Z\" %s\n"
	    "  # indented comment\n",
	    rsa, signer, ecdsa, signer, other);
	struct mw_allowed_signers *a;
	char err[256];
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	const char *pr;
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 0, &pr), 0);
	assert_string_equal(pr, "alice@example.org,bob@example.org");
	assert_true(mw_principal_match(pr, "bob@example.org"));
	assert_int_equal(mw_allowed_signers_find(a, &ks, "file", 0, &pr), MW_REFUSE_UNKNOWN_SIGNER);
	assert_null(pr);
	/* validity: inclusive bounds, UTC */
	assert_int_equal(mw_allowed_signers_find(a, &ko, MW_JOB_NAMESPACE, 1893456000 - 1, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	assert_int_equal(mw_allowed_signers_find(a, &ko, MW_JOB_NAMESPACE, 1893456000, &pr), 0);
	assert_string_equal(pr, "carol@example.org,dan@example.org");
	assert_int_equal(mw_allowed_signers_find(a, &ko, MW_JOB_NAMESPACE, 1896134400, &pr), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ko, MW_JOB_NAMESPACE, 1896134401, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);

	/* Only a cert-authority line for the key: never matches. */
	snprintf(text, sizeof(text), "x@y cert-authority,namespaces=\"moonwire-job\" %s\n", signer);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 0, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);
	/* First matching line wins; an expired line is skipped. */
	snprintf(text, sizeof(text), "old@y valid-before=\"19991231Z\" %s\nnew@y %s\nlast@y %s\n",
	    signer, signer, signer);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1893456000, &pr), 0);
	assert_string_equal(pr, "new@y");
	mw_allowed_signers_free(a);
	/* Empty file: nothing matches. */
	assert_int_equal(mw_allowed_signers_parse("", 0, "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 0, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);

	/* Local time without Z. */
	setenv("TZ", "EST5", 1);
	tzset();
	snprintf(text, sizeof(text), "x@y valid-after=\"203001010000\" %s\n", signer);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1893456000 + 5 * 3600 - 1,
	    &pr), MW_REFUSE_UNKNOWN_SIGNER);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1893456000 + 5 * 3600,
	    &pr), 0);
	mw_allowed_signers_free(a);
	/* in summer time, local is read as standard time, as ssh-keygen
	 * reads it (mktime with tm_isdst 0): 2030-07-01 00:00 CET */
	setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
	tzset();
	snprintf(text, sizeof(text), "x@y valid-after=\"20300701\" %s\n", signer);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1909094400 - 3600 - 1,
	    &pr), MW_REFUSE_UNKNOWN_SIGNER);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1909094400 - 3600,
	    &pr), 0);
	mw_allowed_signers_free(a);
	setenv("TZ", "UTC0", 1);
	tzset();
	/* UTC as a suffix too, in either case (OpenSSH 9) */
	setenv("TZ", "EST5", 1);
	tzset();
	snprintf(text, sizeof(text), "x@y valid-after=\"20300101UTC\",valid-before=\"203002010000utc\" %s\n",
	    signer);
	assert_int_equal(mw_allowed_signers_parse(text, strlen(text), "as", &a, err, sizeof(err)), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1893456000 - 1, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1893456000, &pr), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1896134400, &pr), 0);
	assert_int_equal(mw_allowed_signers_find(a, &ks, MW_JOB_NAMESPACE, 1896134400 + 1, &pr),
	    MW_REFUSE_UNKNOWN_SIGNER);
	mw_allowed_signers_free(a);
	setenv("TZ", "UTC0", 1);
	tzset();

	/* Errors name the line. */
	/* Errors name the line.  KEY stands for "ssh-ed25519 BASE64", B64 for
	 * the base64 alone. */
	struct { const char *line; const char *why; } bad[] = {
		{ "x@y\n", "missing key" },
		{ "x@y ssh-ed25519\n", "missing base64" },
		{ "x@y ssh-ed25519 AAAA!\n", "bad base64" },
		{ "x@y bogus-option KEY\n", "bad base64" },
		{ "x@y valid-after=\"2030\" KEY\n", "bad time" },
		{ "x@y valid-after=\"20300230\" KEY\n", "bad time" },
		{ "x@y valid-after=\"20300101\",valid-before=\"20290101\" KEY\n", "not after" },
		{ "x@y valid-after=\"20300101\",valid-after=\"20300101\" KEY\n", "multiple" },
		{ "x@y namespaces=\"a\",namespaces=\"b\" KEY\n", "multiple" },
		{ "x@y namespaces=\"a KEY\n", "quote" },
		{ "\"x@y KEY\n", "quote" },
		/* no escapes in principals (ssh-keygen ends them at the first
		 * quote): not a principal list "x@y\",*" that matches anyone */
		{ "\"x@y\\\",*\" KEY\n", "missing key after the principals" },
		{ "x@y namespaces=\"a\";cert-authority KEY\n", "missing key after the options" },
		{ "x@y namespaces=\"\" KEY\n", "empty namespaces" },
		{ "x@y namespaces=moonwire-job KEY\n", "missing start quote" },
		{ "x@y valid-after=20300101 KEY\n", "missing start quote" },
		{ "x@y ssh-rsa B64\n", "key blob is not of type 'ssh-rsa'" },
		{ "x@y ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQ==\n", "malformed ssh-ed25519" },
	};
	const char *b64 = strchr(signer, ' ') + 1;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[4096] = "";
		for (const char *q = bad[i].line; *q != '\0'; ) {
			if (strncmp(q, "KEY", 3) == 0) {
				strcat(line, signer);
				q += 3;
			} else if (strncmp(q, "B64", 3) == 0) {
				strcat(line, b64);
				q += 3;
			} else {
				strncat(line, q++, 1);
			}
		}
		snprintf(text, sizeof(text), "# header\n\nok@y %s\n%s", signer, line);
		a = (void *)1;
		err[0] = '\0';
		int r = mw_allowed_signers_parse(text, strlen(text), "signers", &a, err, sizeof(err));
		if (r != MW_REFUSE_MALFORMED || strncmp(err, "signers:4: ", 11) != 0 ||
		    strstr(err, bad[i].why) == NULL)
			fail_msg("bad case %zu: r=%d err=%s", i, r, err);
		assert_null(a);
	}
	assert_int_not_equal(mw_allowed_signers_load("/nonexistent/signers", &a, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "/nonexistent/signers"));
	free(signer);
	free(other);
	free(rsa);
	free(ecdsa);
}

static void
test_principal_match(void **state)
{
	(void)state;
	struct { const char *list, *p; bool want; } c[] = {
		{ "alice@example.org", "alice@example.org", true },
		{ "alice@example.org", "Alice@example.org", false },
		{ "alice@example.org", "alice@example.or", false },
		{ "alice@example.org", "alice@example.orgx", false },
		{ "*", "anyone", true },
		{ "*", "", true },
		{ "*@example.org", "bob@example.org", true },
		{ "*@example.org", "bob@example.com", false },
		{ "?ob@*", "bob@x", true },
		{ "?ob@*", "ob@x", false },
		{ "a,b,c", "b", true },
		{ "a,b,c", "d", false },
		{ "*,!mallory@*", "mallory@x", false },
		{ "!mallory@*,*", "mallory@x", false },
		{ "*,!mallory@*", "alice@x", true },
		{ "!mallory", "alice", false },
		{ "", "alice", false },
		{ "a*b*c*d*e*f*g*h*i*j*k", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
		{ "*a", "ba", true },
		{ "a**", "a", true },
		{ "a?", "a", false },
		/* a '*' in the pattern is the wildcard even where the name
		 * has a '*' (the negation must still exclude) */
		{ "*,!ops*", "ops*x", false },
		{ "*", "*x", true },
		{ "a*", "a*", true },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		if (mw_principal_match(c[i].list, c[i].p) != c[i].want)
			fail_msg("'%s' in '%s': want %d", c[i].p, c[i].list, c[i].want);
	assert_false(mw_principal_match(NULL, "a"));
}

static void
test_pubkey_line(void **state)
{
	(void)state;
	struct mw_ssh_pubkey k;
	char err[256];
	char *rsa = slurp("rsa.pub", NULL);
	assert_int_equal(mw_ssh_pubkey_parse_line(rsa, &k, err, sizeof(err)), MW_REFUSE_UNSUPPORTED_KEY);
	free(rsa);
	assert_int_equal(mw_ssh_pubkey_parse_line("ssh-ed25519 AAAA", &k, err, sizeof(err)),
	    MW_REFUSE_MALFORMED);
	assert_int_equal(mw_ssh_pubkey_parse_line("", &k, err, sizeof(err)), MW_REFUSE_MALFORMED);
	char *fp = slurp("signer.fp", NULL);
	fp[strcspn(fp, "\n")] = '\0';
	load_key("signer.pub", &k);
	assert_string_equal(k.fp, fp);
	uint8_t blob[51];
	mw_ssh_pubkey_blob(&k, blob);
	struct mw_ssh_pubkey k2;
	assert_int_equal(mw_ssh_pubkey_from_blob(blob, sizeof(blob), &k2), 0);
	assert_memory_equal(&k, &k2, sizeof(k));
	assert_int_equal(mw_ssh_pubkey_from_blob(blob, sizeof(blob) - 1, &k2), MW_REFUSE_MALFORMED);
	free(fp);
}

int
main(void)
{
	init_datadir();
	setenv("TZ", "UTC0", 1);
	tzset();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusal_names),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_sshsig_vectors),
		cmocka_unit_test(test_sshsig_tampered),
		cmocka_unit_test(test_sshsig_armor),
		cmocka_unit_test(test_sign_matches_ssh_keygen),
		cmocka_unit_test(test_signer_load_refusals),
		cmocka_unit_test(test_signer_load_corrupt),
		cmocka_unit_test(test_envelope_vector),
		cmocka_unit_test(test_envelope_malformed),
		cmocka_unit_test(test_envelope_tail),
		cmocka_unit_test(test_envelope_oversize),
		cmocka_unit_test(test_envelope_build),
		cmocka_unit_test(test_job_args),
		cmocka_unit_test(test_check_time),
		cmocka_unit_test(test_allowed_signers_parse),
		cmocka_unit_test(test_principal_match),
		cmocka_unit_test(test_pubkey_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
