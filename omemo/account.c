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
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* "FILE:LINE: reason" (line 0: "FILE: reason") into err; returns rc. */
static int
load_fail(char *err, size_t errlen, int rc, const char *file, unsigned line,
    const char *fmt, ...)
{
	char why[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (err != NULL && errlen > 0) {
		if (line > 0)
			snprintf(err, errlen, "%s:%u: %s", file, line, why);
		else
			snprintf(err, errlen, "%s: %s", file, why);
	}
	return rc;
}

int
mw_omemo_account_path(const char *account_file, const char *value, char **out)
{
	const char *home;
	char *dir, *d;
	int n;

	*out = NULL;
	if (value == NULL || value[0] == '\0')
		return MW_OMEMO_E_CONFIG;
	if (value[0] == '~' && (value[1] == '\0' || value[1] == '/')) {
		if ((home = getenv("HOME")) == NULL || home[0] != '/') {
			struct passwd *pw = getpwuid(getuid());

			if (pw == NULL || pw->pw_dir == NULL || pw->pw_dir[0] != '/')
				return MW_OMEMO_E_CONFIG;
			home = pw->pw_dir;
		}
		n = asprintf(out, "%s%s", home, value + 1);
		return n < 0 ? (*out = NULL, MW_OMEMO_E_NOMEM) : 0;
	}
	if (value[0] == '/' || account_file == NULL) {
		*out = strdup(value);
		return *out == NULL ? MW_OMEMO_E_NOMEM : 0;
	}
	/* relative: against the directory of the account file, made absolute
	 * (the agent hands paths to the sandbox, which takes absolute ones) */
	if ((d = strdup(account_file)) == NULL)
		return MW_OMEMO_E_NOMEM;
	dir = dirname(d);
	if (dir[0] == '/')
		n = asprintf(out, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, value);
	else {
		char cwd[4096];

		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			free(d);
			return MW_OMEMO_E_CONFIG;
		}
		n = strcmp(dir, ".") == 0 ? asprintf(out, "%s/%s", cwd, value) :
		    asprintf(out, "%s/%s/%s", cwd, dir, value);
	}
	free(d);
	if (n < 0) {
		*out = NULL;
		return MW_OMEMO_E_NOMEM;
	}
	return 0;
}

static int
set_path(char **dst, const char *file, const char *v)
{
	char *p;
	int rc;

	if ((rc = mw_omemo_account_path(file, v, &p)) != 0)
		return rc;
	free(*dst);
	*dst = p;
	return 0;
}

static int
read_password_file(struct mw_omemo_account *a, const char *path,
    const char *file, unsigned line, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char buf[1024];
	size_t n;
	int rc;

	if (f == NULL)
		return load_fail(err, errlen, MW_OMEMO_E_CONFIG, file, line,
		    "password_file %s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f) || (n == sizeof(buf) - 1 && !feof(f))) {
		bool read_error = ferror(f) != 0;

		fclose(f);
		OPENSSL_cleanse(buf, sizeof(buf));
		return load_fail(err, errlen, MW_OMEMO_E_CONFIG, file, line,
		    "password_file %s: %s", path, read_error ? "read error" :
		    "longer than 1 KiB");
	}
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';	/* first line only */
	if (buf[0] == '\0')
		return load_fail(err, errlen, MW_OMEMO_E_CONFIG, file, line,
		    "password_file %s: the first line is empty", path);
	rc = set_str(&a->password, buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

/* The CA file must hold at least one PEM certificate: libstrophe 0.12
 * crashes on a CA file it cannot load, so it is checked before use. */
int
mw_omemo_account_check_ca_file(const char *path, char *why, size_t wl)
{
	FILE *f = fopen(path, "re");
	X509 *cert;

	if (f == NULL) {
		snprintf(why, wl, "%s: %s", path, strerror(errno));
		return MW_OMEMO_E_CONFIG;
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (cert == NULL) {
		snprintf(why, wl, "%s: no PEM certificate in it", path);
		return MW_OMEMO_E_CONFIG;
	}
	X509_free(cert);
	return 0;
}

int
mw_omemo_account_private_db(const char *db, bool create, char *why, size_t wl)
{
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
	char path[4096];
	struct stat st;
	int fd;

	if (create) {
		/* created 0600 (fchmod: whatever the umask); SQLite gives the
		 * -wal, -shm and -journal files the database file's mode */
		fd = open(db, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			snprintf(why, wl, "%s: %s", db, strerror(errno));
			return MW_OMEMO_E_DB;
		}
		if (fstat(fd, &st) != 0 || ((st.st_mode & 0077) != 0 &&
		    fchmod(fd, st.st_mode & 0700) != 0)) {
			snprintf(why, wl, "%s: cannot make it private: %s", db,
			    strerror(errno));
			close(fd);
			return MW_OMEMO_E_DB;
		}
		close(fd);
	}
	/* an older version or a loose umask may have left them readable */
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		if (snprintf(path, sizeof(path), "%s%s", db, suffix[i]) >= (int)sizeof(path))
			continue;
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 0077) != 0 && chmod(path, st.st_mode & 0700) != 0) {
			snprintf(why, wl, "%s: cannot make it private: %s", path,
			    strerror(errno));
			return MW_OMEMO_E_DB;
		}
	}
	return 0;
}

static bool
is_loopback(const char *h)
{
	return h != NULL && (strcmp(h, "127.0.0.1") == 0 ||
	    strcmp(h, "::1") == 0 || strcmp(h, "localhost") == 0);
}

static size_t
hex_digits(const char *s, bool *only_hex)
{
	size_t n = 0;

	*only_hex = true;
	for (; *s; s++, n++)
		if (!isxdigit((unsigned char)*s))
			*only_hex = false;
	return n;
}

int
mw_omemo_account_load(struct mw_omemo_account *a, const char *path)
{
	return mw_omemo_account_load_err(a, path, NULL, 0);
}

int
mw_omemo_account_load_err(struct mw_omemo_account *a, const char *path,
    char *err, size_t errlen)
{
	FILE *f;
	char line[MAX_LINE], pwfile[MAX_LINE] = "", why[MAX_LINE + 128];
	unsigned lineno = 0, pw_line = 0, ca_line = 0, plain_line = 0;
	int rc = 0;

	memset(a, 0, sizeof(*a));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((f = fopen(path, "re")) == NULL)
		return load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, 0, "%s",
		    strerror(errno));
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *k, *v, *eq;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, lineno,
			    "line too long");
			break;
		}
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, lineno,
			    "expected 'key = value'");
			break;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if (strcmp(k, "jid") == 0) {
			if (strchr(v, '@') == NULL || strchr(v, '/') != NULL ||
			    strpbrk(v, " \t") != NULL)
				rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path,
				    lineno, "jid must be a bare JID (user@domain)");
			else if ((rc = set_str(&a->jid, v)) == 0)
				mw_omemo_jid_fold(a->jid);	/* as servers stamp it */
		} else if (strcmp(k, "password") == 0)
			rc = set_str(&a->password, v);
		else if (strcmp(k, "password_file") == 0) {
			char *p = NULL;

			if ((rc = mw_omemo_account_path(path, v, &p)) == 0) {
				snprintf(pwfile, sizeof(pwfile), "%s", p);
				pw_line = lineno;
			} else
				rc = load_fail(err, errlen, rc, path, lineno,
				    "password_file: '%s' is not a usable path", v);
			free(p);
		} else if (strcmp(k, "host") == 0)
			rc = set_str(&a->host, v);
		else if (strcmp(k, "port") == 0) {
			char *end;
			unsigned long p;

			errno = 0;
			p = strtoul(v, &end, 10);
			if (errno != 0 || *end != '\0' || p == 0 || p > 65535 ||
			    !isdigit((unsigned char)v[0]))
				rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path,
				    lineno, "port: '%s' is not a number from 1 to 65535", v);
			a->port = (unsigned short)p;
		} else if (strcmp(k, "ca_file") == 0) {
			if ((rc = set_path(&a->ca_file, path, v)) != 0)
				rc = load_fail(err, errlen, rc, path, lineno,
				    "ca_file: '%s' is not a usable path", v);
			ca_line = lineno;
		} else if (strcmp(k, "cert_pin_sha256") == 0) {
			char *w = v;
			bool only_hex;
			size_t n;

			/* accept AA:BB:.. as well: drop the colons */
			for (char *r = v; *r; r++)
				if (*r != ':')
					*w++ = (char)tolower((unsigned char)*r);
			*w = '\0';
			n = hex_digits(v, &only_hex);
			if (only_hex && n == 64)
				rc = set_str(&a->cert_pin_sha256, v);
			else
				rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path,
				    lineno, "cert_pin_sha256 must be 64 hex digits (the "
				    "SHA-256 of the server certificate's DER form), not %s",
				    only_hex ? (snprintf(why, sizeof(why), "%zu digits", n), why) :
				    "text with other characters");
		} else if (strcmp(k, "db") == 0) {
			if ((rc = set_path(&a->db, path, v)) != 0)
				rc = load_fail(err, errlen, rc, path, lineno,
				    "db: '%s' is not a usable path", v);
		} else if (strcmp(k, "allow_plaintext") == 0) {
			plain_line = lineno;
			if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
				a->allow_plaintext = true;
			else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
				a->allow_plaintext = false;
			else
				rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path,
				    lineno, "allow_plaintext is yes or no");
		}
		/* other keys belong to other components: ignored here */
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (rc == 0 && ferror(f))
		rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, 0, "read error");
	fclose(f);
	if (rc == 0 && pwfile[0] != '\0')
		rc = read_password_file(a, pwfile, path, pw_line, err, errlen);
	if (rc == 0 && a->ca_file != NULL &&
	    mw_omemo_account_check_ca_file(a->ca_file, why, sizeof(why)) != 0)
		rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, ca_line,
		    "ca_file %s", why);
	if (rc == 0 && a->jid == NULL)
		rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, 0,
		    "no jid setting");
	/* plaintext only towards this machine */
	if (rc == 0 && a->allow_plaintext && !is_loopback(a->host))
		rc = load_fail(err, errlen, MW_OMEMO_E_CONFIG, path, plain_line,
		    "allow_plaintext = yes needs host = 127.0.0.1, ::1 or localhost "
		    "(test servers only)");
	if (rc != 0 && err != NULL && errlen > 0 && err[0] == '\0')
		load_fail(err, errlen, rc, path, 0, "%s", mw_omemo_strerror(rc));
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

void
mw_omemo_account_release(xmpp_conn_t *conn)
{
	for (int i = 0; i < MAX_TLS_CONNS; i++)
		if (conn != NULL && tls_conns[i].conn == conn)
			memset(&tls_conns[i], 0, sizeof(tls_conns[i]));
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

/*
 * What libstrophe said about the login of the current connection.  It has
 * no event for a refused login or a stream without a usable mechanism, only
 * log messages; the logger below watches for them (one connection attempt
 * at a time per process: mw_omemo_account_apply resets it).
 */
static struct {
	bool sasl_failed;	/* "SASL %s auth failed" */
	bool no_mechanism;	/* "Cannot authenticate with known methods" */
	bool tls_missing;	/* "TLS is not supported, but set as mandatory" */
	int socket_error;	/* "connection failed, error %d" (0.12 passes 0 on) */
} login_seen;

static void
watch_log(void *userdata, xmpp_log_level_t level, const char *area,
    const char *msg)
{
	const xmpp_log_t *chained = userdata;

	/* prefixes only: this sees every debug line, stanzas included */
	if (msg != NULL) {
		if (strncmp(msg, "SASL ", 5) == 0 && strlen(msg) < 80 &&
		    strstr(msg, " auth failed") != NULL)
			login_seen.sasl_failed = true;
		else if (strncmp(msg, "Cannot authenticate with known methods", 38) == 0)
			login_seen.no_mechanism = true;
		else if (strncmp(msg, "TLS is not supported, but set as mandatory", 42) == 0)
			login_seen.tls_missing = true;
		else if (strncmp(msg, "connection failed, error ", 25) == 0)
			login_seen.socket_error = atoi(msg + 25);
	}
	if (chained != NULL && chained->handler != NULL)
		chained->handler(chained->userdata, level, area, msg);
}

const xmpp_log_t *
mw_omemo_account_logger(void)
{
	static xmpp_log_t log = { watch_log, NULL };

	/* MW_XMPP_DEBUG=1: libstrophe's own debug log on stderr as well */
	if (getenv("MW_XMPP_DEBUG") != NULL)
		log.userdata = xmpp_get_default_logger(XMPP_LEVEL_DEBUG);
	return &log;
}

int
mw_omemo_account_describe_failure(const struct mw_omemo_account *a,
    xmpp_conn_t *conn, int error, const xmpp_stream_error_t *se, char *buf,
    size_t len)
{
	const char *host = a->host;
	char hostbuf[512];
	unsigned port = a->port != 0 ? a->port : 5222;
	int tls = mw_omemo_account_tls_error(conn);

	if (error == 0)
		error = login_seen.socket_error;
	if (host == NULL && a->jid != NULL && strchr(a->jid, '@') != NULL)
		host = strchr(a->jid, '@') + 1;
	snprintf(hostbuf, sizeof(hostbuf), "%s:%u", host != NULL ? host : "?", port);
	if (tls == MW_OMEMO_E_CERT_PIN) {
		snprintf(buf, len, "server certificate does not match cert_pin_sha256 "
		    "(%s; check the pin, or the server's certificate changed)", hostbuf);
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (tls == MW_OMEMO_E_CERT_UNTRUSTED) {
		snprintf(buf, len, "server certificate not trusted: set ca_file or "
		    "cert_pin_sha256 (%s)", hostbuf);
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (login_seen.sasl_failed) {
		snprintf(buf, len, "login refused: wrong password for %s (or no such "
		    "account on the server)", a->jid != NULL ? a->jid : "?");
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (login_seen.tls_missing) {
		snprintf(buf, len, "server does not offer TLS (%s); allow_plaintext = "
		    "yes is only for a test server on this machine", hostbuf);
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (login_seen.no_mechanism) {
		if (a->allow_plaintext)
			snprintf(buf, len, "server requires TLS (%s): remove "
			    "allow_plaintext and set ca_file or cert_pin_sha256", hostbuf);
		else
			snprintf(buf, len, "login refused: the server offers no "
			    "login method moonwire supports (%s)", hostbuf);
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (se != NULL && se->type == XMPP_SE_NOT_AUTHORIZED) {
		snprintf(buf, len, "login refused: wrong password for %s", a->jid ?
		    a->jid : "?");
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (se != NULL && se->type == XMPP_SE_HOST_UNKNOWN) {
		snprintf(buf, len, "the server %s does not serve the domain of %s",
		    hostbuf, a->jid ? a->jid : "?");
		return MW_OMEMO_FAIL_CONFIG;
	}
	if (se != NULL && se->type == XMPP_SE_CONFLICT) {
		snprintf(buf, len, "replaced by another login of %s", a->jid ?
		    a->jid : "?");
		return MW_OMEMO_FAIL_NETWORK;
	}
	if (error == ECONNREFUSED) {
		snprintf(buf, len, "connection refused by %s (is the XMPP server "
		    "running, and host/port right?)", hostbuf);
		return MW_OMEMO_FAIL_NETWORK;
	}
	if (error == ETIMEDOUT) {
		snprintf(buf, len, "connection to %s timed out", hostbuf);
		return MW_OMEMO_FAIL_NETWORK;
	}
	if (error == ECONNABORTED && !a->allow_plaintext) {
		snprintf(buf, len, "TLS handshake with %s failed", hostbuf);
		return MW_OMEMO_FAIL_NETWORK;
	}
	if (error != 0) {
		snprintf(buf, len, "connection to %s failed: %s", hostbuf,
		    strerror(error));
		return MW_OMEMO_FAIL_NETWORK;
	}
	if (se != NULL) {
		snprintf(buf, len, "the server %s closed the stream (%s%s%s)", hostbuf,
		    se->stanza != NULL && xmpp_stanza_get_children(se->stanza) != NULL &&
		    xmpp_stanza_get_name(xmpp_stanza_get_children(se->stanza)) != NULL ?
		    xmpp_stanza_get_name(xmpp_stanza_get_children(se->stanza)) :
		    "stream error", se->text != NULL ? ": " : "",
		    se->text != NULL ? se->text : "");
		return MW_OMEMO_FAIL_NETWORK;
	}
	snprintf(buf, len, "connection to %s closed", hostbuf);
	return MW_OMEMO_FAIL_NETWORK;
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
	memset(&login_seen, 0, sizeof(login_seen));
	xmpp_conn_set_jid(conn, a->jid);
	xmpp_conn_set_pass(conn, a->password);
	if (a->ca_file != NULL) {
		char why[MAX_LINE];

		/* checked again: it may have gone since the file was read */
		if (mw_omemo_account_check_ca_file(a->ca_file, why, sizeof(why)) != 0)
			return MW_OMEMO_E_CONFIG;
		xmpp_conn_set_cafile(conn, a->ca_file);
	}
	if (!a->allow_plaintext) {
		int i;

		/*
		 * One TLS connection per libstrophe context: an entry of the
		 * same context belongs to a connection the caller replaced
		 * (released or abandoned), whose pointer may even be reused.
		 * Left in place, it made every later certfail ambiguous and a
		 * pin-only client never reconnected.
		 */
		for (i = 0; i < MAX_TLS_CONNS; i++)
			if (tls_conns[i].conn != NULL && tls_conns[i].conn != conn &&
			    tls_conns[i].ctx == xmpp_conn_get_context(conn))
				memset(&tls_conns[i], 0, sizeof(tls_conns[i]));
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
