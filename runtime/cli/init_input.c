/*
 * init_input.c: the checks `moonwire init` applies to what the user gives
 * it (JIDs, principals, hosts, paths, keys, the password) before anything
 * is written: a value that would break the configuration file it goes
 * into, or a key the agent would refuse, stops the run with nothing
 * written.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "runtime/agent/agent.h"
#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"

#include "cli.h"

volatile sig_atomic_t init_interrupted;

int
init_fail(const struct init_run *r, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "moonwire init %s: ", r->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* ---- input checks ---- */

/* A bare JID: localpart@domain, no resource, nothing RFC 7622 forbids in
 * the localpart, no space or control character anywhere. */
bool
init_jid_ok(const char *jid)
{
	const char *at = strchr(jid, '@');
	size_t n = strlen(jid);

	if (at == NULL || at == jid || at[1] == '\0' || n > MW_JID_MAX)
		return false;
	for (const char *p = jid; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c == 0x7f || c == '/')
			return false;
		if (p < at && strchr("\"&'/:<>@", c) != NULL)
			return false;
		if (p > at && (c == '@' || c == '"' || c == '\'' || c == '<' || c == '>'))
			return false;
	}
	return at[1] != '.' && jid[n - 1] != '.';
}

/* 1..max characters, each alphanumeric or one of extra. */
static bool
word_of(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr(extra, *p) != NULL))
			return false;
	return true;
}

/* A policy/allowed_signers principal: one name, no pattern characters. */
bool
init_principal_ok(const char *s)
{
	return word_of(s, 64, "._@+-");
}

bool
init_host_ok(const char *s)
{
	return word_of(s, 253, ".-:[]");
}

bool
init_port_ok(const char *s)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && v >= 1 && v <= 65535;
}

/* A path written into a `key = value` file: no control character (a
 * newline would start another setting) and no blank at either end (the
 * reader trims those). */
static bool
path_ok(const char *s)
{
	size_t n = strlen(s);

	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return n > 0 && s[0] != ' ' && s[n - 1] != ' ';
}

/* Reads a small regular file (at most INIT_MAX_READ bytes) as a string. */
static char *
read_small(const struct init_run *r, const char *what, const char *path)
{
	struct stat st;
	char *buf;
	size_t len;
	FILE *f;
	int bad;

	if ((f = fopen(path, "re")) == NULL) {
		init_fail(r, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		init_fail(r, "%s %s: not a regular file", what, path);
		fclose(f);
		return NULL;
	}
	if ((buf = malloc(INIT_MAX_READ + 1)) == NULL) {
		init_fail(r, "out of memory");
		fclose(f);
		return NULL;
	}
	len = fread(buf, 1, INIT_MAX_READ + 1, f);
	bad = ferror(f);
	fclose(f);
	if (bad || len > INIT_MAX_READ) {
		init_fail(r, "%s %s: %s", what, path, bad ? "read error" : "larger than 64 KiB");
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		init_fail(r, "%s %s: not a text file", what, path);
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * The first non-comment line of an OpenSSH .pub file, checked to be an
 * ssh-ed25519 key; *line gets "ssh-ed25519 BASE64" (the comment dropped).
 */
int
init_read_ed25519_pub(const struct init_run *r, const char *what, const char *path,
    char **line)
{
	struct mw_ssh_pubkey k;
	char *text, *l, *save = NULL, why[512];
	int rc = -1;

	*line = NULL;
	if ((text = read_small(r, what, path)) == NULL)
		return -1;
	for (l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
		l += strspn(l, " \t");
		if (*l != '\0' && *l != '#' && *l != '\r')
			break;
	}
	if (l == NULL) {
		init_fail(r, "%s %s: no public key in the file", what, path);
		goto out;
	}
	if (mw_ssh_pubkey_parse_line(l, &k, why, sizeof(why)) != 0) {
		init_fail(r, "%s %s: %s; moonwire accepts only Ed25519 keys "
		    "(ssh-keygen -t ed25519)", what, path, why);
		goto out;
	}
	{
		size_t tl = strcspn(l, " \t");
		const char *b = l + tl + strspn(l + tl, " \t");
		size_t bl = strcspn(b, " \t\r");

		if (asprintf(line, "%.*s %.*s", (int)tl, l, (int)bl, b) < 0) {
			*line = NULL;
			init_fail(r, "out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	free(text);
	return rc;
}

/*
 * The operator's signing key: an unencrypted Ed25519 private key, a
 * `.pub` (its private half in ssh-agent, as `moonwire send -k` takes it),
 * or an encrypted private key whose Ed25519 `.pub` sits beside it.
 */
int
init_check_signing_key(const struct init_run *r, const char *path)
{
	struct mw_ssh_signer *s = NULL;
	struct stat st;
	char err[768], *pub = NULL, *line = NULL;
	size_t n = strlen(path);
	int rc;

	if (stat(path, &st) != 0)
		return init_fail(r, "--signing-key %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return init_fail(r, "--signing-key %s: not a regular file", path);
	if (n > 4 && strcmp(path + n - 4, ".pub") == 0) {
		rc = init_read_ed25519_pub(r, "--signing-key", path, &line);
		free(line);
		return rc;
	}
	if (mw_ssh_signer_load(path, &s, err, sizeof(err)) == 0) {
		mw_ssh_signer_free(s);
		return 0;
	}
	/* encrypted, or only usable through ssh-agent: its .pub decides */
	if (asprintf(&pub, "%s.pub", path) < 0)
		return init_fail(r, "out of memory");
	if (strstr(err, "ncrypted") != NULL && stat(pub, &st) == 0) {
		rc = init_read_ed25519_pub(r, "--signing-key", pub, &line);
		free(line);
		free(pub);
		return rc;
	}
	free(pub);
	return init_fail(r, "--signing-key %s: %s", path, err);
}

/* Reads the account password: --password-file FILE (`-` stdin), else the
 * terminal without echo, else stdin.  One line, not empty. */
int
init_read_password(const struct init_run *r, const char *file, const char *jid,
    char out[PASSWORD_MAX])
{
	FILE *f = NULL;
	struct termios old, quiet;
	bool tty = false, close_f = false;
	char *nl;
	int rc = -1;

	out[0] = '\0';
	if (file != NULL && strcmp(file, "-") != 0) {
		if ((f = fopen(file, "re")) == NULL)
			return init_fail(r, "--password-file %s: %s", file, strerror(errno));
		close_f = true;
	} else if (file == NULL && isatty(STDIN_FILENO) &&
	    (f = fopen("/dev/tty", "r+e")) != NULL) {
		close_f = true;
		if (tcgetattr(fileno(f), &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			quiet.c_lflag |= ECHONL;
			tty = tcsetattr(fileno(f), TCSAFLUSH, &quiet) == 0;
		}
		fprintf(stderr, "password of %s: ", jid);
		fflush(stderr);
	} else
		f = stdin;
	if (fgets(out, PASSWORD_MAX, f) == NULL) {
		if (init_interrupted)
			init_fail(r, "interrupted");
		else if (ferror(f))
			init_fail(r, "reading the password: %s", strerror(errno));
		else
			init_fail(r, "no password given (--password-file FILE, or one line "
			    "on stdin)");
		goto out;
	}
	if ((nl = strchr(out, '\n')) == NULL && !feof(f)) {
		init_fail(r, "the password is longer than %d bytes", PASSWORD_MAX - 2);
		goto out;
	}
	out[strcspn(out, "\r\n")] = '\0';
	if (out[0] == '\0') {
		init_fail(r, "the password is empty");
		goto out;
	}
	rc = 0;
out:
	if (tty)
		(void)tcsetattr(fileno(f), TCSAFLUSH, &old);
	if (close_f)
		fclose(f);
	if (rc != 0)
		OPENSSL_cleanse(out, PASSWORD_MAX);
	return rc;
}

/* An absolute path for a path option (canonical where it exists). */
char *
init_abs_dir(const struct init_run *r, const char *opt, const char *path)
{
	char *p;

	if (*path == '\0') {
		init_fail(r, "%s: empty path", opt);
		return NULL;
	}
	if ((p = mw_path_canonical(path)) == NULL)
		init_fail(r, "%s %s: %s", opt, path, strerror(errno));
	else if (!path_ok(p)) {
		init_fail(r, "%s: a path with control characters or blanks at its ends "
		    "cannot be written into a configuration file", opt);
		free(p);
		p = NULL;
	}
	return p;
}
