/*
 * account.c: XMPP account settings for the agent and the CLI.  Reads the
 * small `key = value` account file, and applies it to a libstrophe
 * connection with TLS mandatory unless plaintext was asked for explicitly
 * and the host is a loopback address (integration tests only).
 *
 * Invariants: xmpp_conn_set_flags() is always called (libstrophe 0.12
 * leaves stream-management state uninitialised otherwise); the password is
 * wiped when freed; a certificate pin, when set, is checked both in the
 * certfail handler (certificates that failed CA verification, before
 * login) and by mw_omemo_account_check_pin() after connecting; a refused
 * certificate is recorded so the caller reports a typed error.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "omemo/omemo_int.h"

#define MAX_LINE 4096

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
set_str(char **dst, const char *v)
{
	char *n = strdup(v);

	if (n == NULL)
		return MW_OMEMO_E_NOMEM;
	if (*dst != NULL)
		OPENSSL_clear_free(*dst, strlen(*dst));
	*dst = n;
	return 0;
}

static int
read_password_file(struct mw_omemo_account *a, const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[1024];
	size_t n;

	if (f == NULL)
		return MW_OMEMO_E_CONFIG;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f) || (n == sizeof(buf) - 1 && !feof(f))) {
		fclose(f);
		OPENSSL_cleanse(buf, sizeof(buf));
		return MW_OMEMO_E_CONFIG;
	}
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';	/* first line only */
	n = (size_t)set_str(&a->password, buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return (int)n;
}

static bool
is_loopback(const char *h)
{
	return h != NULL && (strcmp(h, "127.0.0.1") == 0 ||
	    strcmp(h, "::1") == 0 || strcmp(h, "localhost") == 0);
}

static bool
is_hex64(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return n == 64;
}

int
mw_omemo_account_load(struct mw_omemo_account *a, const char *path)
{
	FILE *f;
	char line[MAX_LINE], pwfile[MAX_LINE] = "";
	int rc = 0;

	memset(a, 0, sizeof(*a));
	if ((f = fopen(path, "re")) == NULL)
		return MW_OMEMO_E_CONFIG;
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *k, *v, *eq;

		if (strchr(line, '\n') == NULL && !feof(f)) {
			rc = MW_OMEMO_E_CONFIG;	/* overlong line */
			break;
		}
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			rc = MW_OMEMO_E_CONFIG;
			break;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if (strcmp(k, "jid") == 0)
			rc = set_str(&a->jid, v);
		else if (strcmp(k, "password") == 0)
			rc = set_str(&a->password, v);
		else if (strcmp(k, "password_file") == 0)
			snprintf(pwfile, sizeof(pwfile), "%s", v);
		else if (strcmp(k, "host") == 0)
			rc = set_str(&a->host, v);
		else if (strcmp(k, "port") == 0) {
			char *end;
			unsigned long p;

			errno = 0;
			p = strtoul(v, &end, 10);
			if (errno != 0 || *end != '\0' || p == 0 || p > 65535)
				rc = MW_OMEMO_E_CONFIG;
			a->port = (unsigned short)p;
		} else if (strcmp(k, "ca_file") == 0)
			rc = set_str(&a->ca_file, v);
		else if (strcmp(k, "cert_pin_sha256") == 0) {
			char *w = v;

			/* accept AA:BB:.. as well: drop the colons */
			for (char *r = v; *r; r++)
				if (*r != ':')
					*w++ = (char)tolower((unsigned char)*r);
			*w = '\0';
			rc = is_hex64(v) ? set_str(&a->cert_pin_sha256, v) :
			    MW_OMEMO_E_CONFIG;
		} else if (strcmp(k, "db") == 0)
			rc = set_str(&a->db, v);
		else if (strcmp(k, "allow_plaintext") == 0) {
			if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
				a->allow_plaintext = true;
			else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
				a->allow_plaintext = false;
			else
				rc = MW_OMEMO_E_CONFIG;
		}
		/* other keys belong to other components: ignored here */
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (ferror(f))
		rc = MW_OMEMO_E_CONFIG;
	fclose(f);
	if (rc == 0 && pwfile[0] != '\0')
		rc = read_password_file(a, pwfile);
	if (rc == 0 && (a->jid == NULL || strchr(a->jid, '@') == NULL ||
	    strchr(a->jid, '/') != NULL))
		rc = MW_OMEMO_E_CONFIG;
	/* plaintext only towards this machine */
	if (rc == 0 && a->allow_plaintext && !is_loopback(a->host))
		rc = MW_OMEMO_E_CONFIG;
	if (rc != 0)
		mw_omemo_account_free(a);
	return rc;
}

void
mw_omemo_account_free(struct mw_omemo_account *a)
{
	if (a->password != NULL)
		OPENSSL_clear_free(a->password, strlen(a->password));
	free(a->jid);
	free(a->host);
	free(a->ca_file);
	free(a->cert_pin_sha256);
	free(a->db);
	memset(a, 0, sizeof(*a));
}

/* SHA-256 of the DER form of a PEM certificate, as 64 lowercase hex. */
static int
pem_sha256(const char *pem, char out[65])
{
	BIO *bio;
	X509 *cert;
	unsigned char *der = NULL, md[32];
	unsigned int mdlen = 0;
	int len, rc = -1;

	if (pem == NULL || (bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return -1;
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (cert == NULL)
		return -1;
	if ((len = i2d_X509(cert, &der)) > 0 &&
	    EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
	    mdlen == 32) {
		for (int i = 0; i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", md[i]);
		rc = 0;
	}
	OPENSSL_free(der);
	X509_free(cert);
	return rc;
}

/*
 * Per-connection TLS state: the pin (if any) and why the last handshake was
 * refused.  libstrophe gives the certfail handler no user data, so it
 * travels in a static table.  Invariant: every connection with TLS enabled
 * has an entry (set by mw_omemo_account_apply), so a refusal is always
 * recorded.  libstrophe 0.12 hands certfail a certificate whose connection
 * is NULL (only its context is set), so an entry is found by connection
 * when libstrophe gives one, else by context; a context with more than one
 * TLS connection cannot be told apart and is refused (fail closed).
 */
#define MAX_TLS_CONNS 16
static struct {
	xmpp_conn_t *conn;
	xmpp_ctx_t *ctx;
	bool has_pin;
	char pin[65];
	int refused;		/* 0, MW_OMEMO_E_CERT_PIN, MW_OMEMO_E_CERT_UNTRUSTED */
} tls_conns[MAX_TLS_CONNS];

static int
tls_entry(const xmpp_tlscert_t *cert)
{
	xmpp_conn_t *conn = xmpp_tlscert_get_conn(cert);
	xmpp_ctx_t *ctx = xmpp_tlscert_get_ctx(cert);
	int found = -1;

	for (int i = 0; i < MAX_TLS_CONNS; i++) {
		if (tls_conns[i].conn == NULL)
			continue;
		if (conn != NULL ? tls_conns[i].conn == conn :
		    ctx != NULL && tls_conns[i].ctx == ctx) {
			if (found >= 0)
				return -2;	/* ambiguous */
			found = i;
		}
	}
	return found;
}

static int
certfail(const xmpp_tlscert_t *cert, const char *errormsg)
{
	char got[65];
	int i = tls_entry(cert);

	/* Verification failed: accept only a certificate matching the pin. */
	if (i == -2) {
		for (int k = 0; k < MAX_TLS_CONNS; k++)
			if (tls_conns[k].conn != NULL &&
			    tls_conns[k].ctx == xmpp_tlscert_get_ctx(cert))
				tls_conns[k].refused = MW_OMEMO_E_CERT_UNTRUSTED;
		return 0;
	}
	if (i < 0)
		return 0;
	if (!tls_conns[i].has_pin) {
		tls_conns[i].refused = MW_OMEMO_E_CERT_UNTRUSTED;
		return 0;
	}
	if (pem_sha256(xmpp_tlscert_get_pem(cert), got) == 0 &&
	    CRYPTO_memcmp(got, tls_conns[i].pin, 64) == 0) {
		tls_conns[i].refused = 0;
		return 1;
	}
	tls_conns[i].refused = MW_OMEMO_E_CERT_PIN;
	return 0;
}

int
mw_omemo_account_tls_error(xmpp_conn_t *conn)
{
	for (int i = 0; i < MAX_TLS_CONNS; i++)
		if (tls_conns[i].conn == conn && conn != NULL)
			return tls_conns[i].refused;
	return 0;
}

int
mw_omemo_account_check_pin(const struct mw_omemo_account *a,
    xmpp_conn_t *conn)
{
	xmpp_tlscert_t *cert;
	char got[65];
	int rc;

	if (a->cert_pin_sha256 == NULL)
		return 0;
	if ((cert = xmpp_conn_get_peer_cert(conn)) == NULL)
		return MW_OMEMO_E_CERT_PIN;	/* no TLS: a pin cannot hold */
	rc = pem_sha256(xmpp_tlscert_get_pem(cert), got);
	xmpp_tlscert_free(cert);
	if (rc != 0 || CRYPTO_memcmp(got, a->cert_pin_sha256, 64) != 0)
		return MW_OMEMO_E_CERT_PIN;
	return 0;
}

int
mw_omemo_account_apply(const struct mw_omemo_account *a, xmpp_conn_t *conn)
{
	long flags;

	if (a->jid == NULL || a->password == NULL)
		return MW_OMEMO_E_CONFIG;
	if (a->allow_plaintext && !is_loopback(a->host))
		return MW_OMEMO_E_CONFIG;
	flags = a->allow_plaintext ? XMPP_CONN_FLAG_DISABLE_TLS :
	    XMPP_CONN_FLAG_MANDATORY_TLS;
	if (xmpp_conn_set_flags(conn, flags) != XMPP_EOK)
		return MW_OMEMO_E_CONFIG;
	xmpp_conn_set_jid(conn, a->jid);
	xmpp_conn_set_pass(conn, a->password);
	if (a->ca_file != NULL)
		xmpp_conn_set_cafile(conn, a->ca_file);
	if (!a->allow_plaintext) {
		int i;

		for (i = 0; i < MAX_TLS_CONNS; i++)
			if (tls_conns[i].conn == NULL || tls_conns[i].conn == conn)
				break;
		if (i == MAX_TLS_CONNS)
			return MW_OMEMO_E_CONFIG;
		tls_conns[i].conn = conn;
		tls_conns[i].ctx = xmpp_conn_get_context(conn);
		tls_conns[i].refused = 0;
		tls_conns[i].has_pin = a->cert_pin_sha256 != NULL;
		if (tls_conns[i].has_pin)
			memcpy(tls_conns[i].pin, a->cert_pin_sha256, 65);
		xmpp_conn_set_certfail_handler(conn, certfail);
	}
	return 0;
}
