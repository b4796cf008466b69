/*
 * cmd_init.c: `moonwire init agent|operator`, the guided setup.
 *
 * Why this exists: setting up an agent by hand means writing three files
 * (configuration, policy, allowed_signers) and a password file with the
 * right modes, creating the OMEMO identity and copying fingerprints
 * between machines; every step is a chance for a typo that only shows at
 * the first job.  `init` writes those files from a few flags, checks them
 * exactly as `moonwire agent --check` does (the same functions, in
 * process), creates the identity as `moonwire fingerprint` does, and
 * prints the fingerprint and the `moonwire trust` line for the other side.
 *
 * All or nothing: every file is first written into a private staging
 * directory next to its destination, the staged configuration is checked,
 * the identity is created, and only then are the files renamed into
 * place.  On any error everything this run created (staged files,
 * directories, a new identity database) is removed and files that existed
 * are left as they were; an existing file is replaced only with --force,
 * and an existing identity database is never replaced (it is reused when
 * it belongs to the same JID).  No network access.
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

#include "omemo/mw_omemo.h"
#include "runtime/agent/agent.h"
#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"

#define INIT_MAX_FILES	4
#define INIT_MAX_DIRS	32
#define INIT_MAX_READ	(64 * 1024)
#define PASSWORD_MAX	1024
#define AGENT_PROFILE	"status"	/* the skeleton policy's profile */

static const char *const init_usage_text =
    "usage: moonwire init agent --jid JID --allowed-signer FILE.pub --principal NAME\n"
    "           [--operator JID] [--dir DIR] [--state-dir DIR] [--user USER]\n"
    "           [--password-file FILE] [--host HOST] [--port PORT] [--ca-file FILE]\n"
    "           [--force]\n"
    "       moonwire init operator --jid JID --signing-key KEY [--file PATH]\n"
    "           [--password-file FILE] [--host HOST] [--port PORT] [--ca-file FILE]\n"
    "           [--force]\n"
    "\n"
    "agent:    writes DIR/agent.conf, DIR/policy (profile `" AGENT_PROFILE "`: sys only;\n"
    "          `allow NAME JID " AGENT_PROFILE "` with --operator), DIR/allowed_signers (FILE.pub,\n"
    "          ssh-ed25519 only, for principal NAME) and DIR/password; DIR defaults\n"
    "          to /etc/moonwire, --state-dir (identity.db, kv store) to\n"
    "          /var/lib/moonwire.  --user (as root): the agent's service user owns\n"
    "          the password, the state directory and the identity; the other\n"
    "          files stay root's, readable by the user's group.\n"
    "operator: writes PATH (default ~/.config/moonwire/LOCALPART.conf) and its\n"
    "          password file STEM.password; the identity is STEM.db.\n"
    "Both check what they wrote with the agent's own checks (those of its\n"
    "check mode), create the OMEMO identity and print its fingerprint and\n"
    "the `moonwire trust` line for the other side.  The password is read\n"
    "from --password-file (`-`: stdin), else from the terminal, else from\n"
    "stdin.  Existing files are replaced only with --force; nothing is\n"
    "written when anything fails.  Exit status: 0 written, 2 bad input\n"
    "(nothing written), 1 a file or the identity could not be written.\n";

struct staged_file {
	char name[64];			/* file name in the destination directory */
	char *final;			/* DIR/name */
	char *tmp;			/* STAGE/name */
	char *orig;			/* STAGE/name.orig: the replaced file, kept until done */
	char *content;
	size_t len;
	bool secret;			/* wiped when freed */
	mode_t mode;
	uid_t uid;			/* (uid_t)-1: the caller's */
	gid_t gid;			/* (gid_t)-1: the caller's */
	bool placed;			/* renamed into place */
};

struct init_run {
	const char *cmd;		/* "agent" or "operator", for messages */
	bool force;
	char *dir;			/* destination of the files, absolute */
	char *stage;			/* mkdtemp'ed in dir */
	struct staged_file files[INIT_MAX_FILES];
	size_t n_files;
	char *created_dirs[INIT_MAX_DIRS];	/* in creation order */
	size_t n_created_dirs;
	char *created_db;		/* a new identity database: removed on failure */
	/* --user */
	bool as_user;
	char *user;
	uid_t uid;
	gid_t gid;
};

/* SIGINT/SIGTERM/SIGHUP/SIGQUIT while init runs: caught, so that the run
 * stops at the next step and removes what it created (and the terminal
 * gets its echo back) instead of dying half way. */
static volatile sig_atomic_t init_interrupted;

static void
on_interrupt(int sig)
{
	init_interrupted = sig;
}

static int
ifail(const struct init_run *r, const char *fmt, ...)
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
static bool
jid_ok(const char *jid)
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
static bool
principal_ok(const char *s)
{
	return word_of(s, 64, "._@+-");
}

static bool
host_ok(const char *s)
{
	return word_of(s, 253, ".-:[]");
}

static bool
port_ok(const char *s)
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
		ifail(r, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		ifail(r, "%s %s: not a regular file", what, path);
		fclose(f);
		return NULL;
	}
	if ((buf = malloc(INIT_MAX_READ + 1)) == NULL) {
		ifail(r, "out of memory");
		fclose(f);
		return NULL;
	}
	len = fread(buf, 1, INIT_MAX_READ + 1, f);
	bad = ferror(f);
	fclose(f);
	if (bad || len > INIT_MAX_READ) {
		ifail(r, "%s %s: %s", what, path, bad ? "read error" : "larger than 64 KiB");
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		ifail(r, "%s %s: not a text file", what, path);
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * The first non-comment line of an OpenSSH .pub file, checked to be an
 * ssh-ed25519 key; *line gets "ssh-ed25519 BASE64" (the comment dropped).
 */
static int
read_ed25519_pub(const struct init_run *r, const char *what, const char *path,
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
		ifail(r, "%s %s: no public key in the file", what, path);
		goto out;
	}
	if (mw_ssh_pubkey_parse_line(l, &k, why, sizeof(why)) != 0) {
		ifail(r, "%s %s: %s; moonwire accepts only Ed25519 keys "
		    "(ssh-keygen -t ed25519)", what, path, why);
		goto out;
	}
	{
		size_t tl = strcspn(l, " \t");
		const char *b = l + tl + strspn(l + tl, " \t");
		size_t bl = strcspn(b, " \t\r");

		if (asprintf(line, "%.*s %.*s", (int)tl, l, (int)bl, b) < 0) {
			*line = NULL;
			ifail(r, "out of memory");
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
static int
check_signing_key(const struct init_run *r, const char *path)
{
	struct mw_ssh_signer *s = NULL;
	struct stat st;
	char err[768], *pub = NULL, *line = NULL;
	size_t n = strlen(path);
	int rc;

	if (stat(path, &st) != 0)
		return ifail(r, "--signing-key %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ifail(r, "--signing-key %s: not a regular file", path);
	if (n > 4 && strcmp(path + n - 4, ".pub") == 0) {
		rc = read_ed25519_pub(r, "--signing-key", path, &line);
		free(line);
		return rc;
	}
	if (mw_ssh_signer_load(path, &s, err, sizeof(err)) == 0) {
		mw_ssh_signer_free(s);
		return 0;
	}
	/* encrypted, or only usable through ssh-agent: its .pub decides */
	if (asprintf(&pub, "%s.pub", path) < 0)
		return ifail(r, "out of memory");
	if (strstr(err, "ncrypted") != NULL && stat(pub, &st) == 0) {
		rc = read_ed25519_pub(r, "--signing-key", pub, &line);
		free(line);
		free(pub);
		return rc;
	}
	free(pub);
	return ifail(r, "--signing-key %s: %s", path, err);
}

/* Reads the account password: --password-file FILE (`-` stdin), else the
 * terminal without echo, else stdin.  One line, not empty. */
static int
read_password(const struct init_run *r, const char *file, const char *jid,
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
			return ifail(r, "--password-file %s: %s", file, strerror(errno));
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
			ifail(r, "interrupted");
		else if (ferror(f))
			ifail(r, "reading the password: %s", strerror(errno));
		else
			ifail(r, "no password given (--password-file FILE, or one line "
			    "on stdin)");
		goto out;
	}
	if ((nl = strchr(out, '\n')) == NULL && !feof(f)) {
		ifail(r, "the password is longer than %d bytes", PASSWORD_MAX - 2);
		goto out;
	}
	out[strcspn(out, "\r\n")] = '\0';
	if (out[0] == '\0') {
		ifail(r, "the password is empty");
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
static char *
abs_dir(const struct init_run *r, const char *opt, const char *path)
{
	char *p;

	if (*path == '\0') {
		ifail(r, "%s: empty path", opt);
		return NULL;
	}
	if ((p = mw_path_canonical(path)) == NULL)
		ifail(r, "%s %s: %s", opt, path, strerror(errno));
	else if (!path_ok(p)) {
		ifail(r, "%s: a path with control characters or blanks at its ends "
		    "cannot be written into a configuration file", opt);
		free(p);
		p = NULL;
	}
	return p;
}

/* ---- what this run creates, and undoing it ---- */

/* Creates path and its missing parents (mkdir -p); the last one gets
 * mode/uid/gid, the others 0755 and the caller's ids.  Each directory
 * made is recorded for rollback. */
static int
make_dirs(struct init_run *r, const char *path, mode_t mode, uid_t uid, gid_t gid)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t n = strlen(path);

	if (n >= sizeof(buf) || path[0] != '/')
		return ifail(r, "%s: not a usable directory path", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (stat(buf, &st) == 0) {
			if (!S_ISDIR(st.st_mode))
				return ifail(r, "%s is not a directory", buf);
		} else if (errno != ENOENT) {
			return ifail(r, "%s: %s", buf, strerror(errno));
		} else {
			if (r->n_created_dirs >= INIT_MAX_DIRS)
				return ifail(r, "%s: too many directories to create", path);
			if (mkdir(buf, last ? mode : 0755) != 0)
				return ifail(r, "cannot create directory %s: %s", buf,
				    strerror(errno));
			if ((r->created_dirs[r->n_created_dirs] = strdup(buf)) == NULL) {
				(void)rmdir(buf);
				return ifail(r, "out of memory");
			}
			r->n_created_dirs++;
			/* the mode exactly, whatever the umask */
			if (chmod(buf, last ? mode : 0755) != 0 ||
			    (last && (uid != (uid_t)-1 || gid != (gid_t)-1) &&
			    chown(buf, uid, gid) != 0))
				return ifail(r, "%s: %s", buf, strerror(errno));
		}
		if (last)
			return 0;
		*p = '/';
	}
}

static struct staged_file *
stage_add(struct init_run *r, const char *name, mode_t mode, uid_t uid, gid_t gid,
    bool secret, const char *fmt, ...)
{
	struct staged_file *f;
	va_list ap;
	int n;

	if (r->n_files >= INIT_MAX_FILES || strlen(name) >= sizeof(f->name)) {
		ifail(r, "internal error: too many files");
		return NULL;
	}
	f = &r->files[r->n_files];
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->mode = mode;
	f->uid = uid;
	f->gid = gid;
	f->secret = secret;
	va_start(ap, fmt);
	n = vasprintf(&f->content, fmt, ap);
	va_end(ap);
	if (n < 0 || asprintf(&f->final, "%s/%s", r->dir, name) < 0) {
		if (n < 0)
			f->content = NULL;
		else
			f->final = NULL;
		free(f->content);
		free(f->final);
		memset(f, 0, sizeof(*f));
		ifail(r, "out of memory");
		return NULL;
	}
	f->len = (size_t)n;
	r->n_files++;
	return f;
}

/* Refuses, before anything is created, destinations that exist (unless
 * --force) or that are not regular files. */
static int
check_destinations(struct init_run *r)
{
	struct stat st;
	int bad = 0;

	for (size_t i = 0; i < r->n_files; i++) {
		if (lstat(r->files[i].final, &st) != 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			bad = ifail(r, "%s: %s", r->files[i].final, strerror(errno));
		} else if (!S_ISREG(st.st_mode))
			bad = ifail(r, "%s exists and is not a regular file; not replaced",
			    r->files[i].final);
		else if (!r->force)
			bad = ifail(r, "%s exists; not overwritten (--force replaces it)",
			    r->files[i].final);
	}
	return bad;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes every file into a new staging directory inside r->dir. */
static int
stage_write(struct init_run *r)
{
	if (asprintf(&r->stage, "%s/.moonwire-init.XXXXXX", r->dir) < 0) {
		r->stage = NULL;
		return ifail(r, "out of memory");
	}
	if (mkdtemp(r->stage) == NULL) {
		int e = errno;

		free(r->stage);
		r->stage = NULL;
		return ifail(r, "cannot write in %s: %s", r->dir, strerror(e));
	}
	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];
		int fd;

		if (asprintf(&f->tmp, "%s/%s", r->stage, f->name) < 0) {
			f->tmp = NULL;
			return ifail(r, "out of memory");
		}
		fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd < 0)
			return ifail(r, "%s: %s", f->tmp, strerror(errno));
		if (((f->uid != (uid_t)-1 || f->gid != (gid_t)-1) &&
		    fchown(fd, f->uid, f->gid) != 0) || fchmod(fd, f->mode) != 0 ||
		    write_all(fd, f->content, f->len) != 0 || fsync(fd) != 0) {
			int e = errno;

			(void)close(fd);
			return ifail(r, "%s: %s", f->tmp, strerror(e));
		}
		if (close(fd) != 0)
			return ifail(r, "%s: %s", f->tmp, strerror(errno));
	}
	return 0;
}

/*
 * Moves the staged files into place.  A file being replaced (--force) is
 * first linked aside into the staging directory, so that a failure half
 * way puts every earlier file back as it was.
 */
static int
stage_commit(struct init_run *r)
{
	struct stat st;
	int dfd;

	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];

		if (lstat(f->final, &st) != 0)
			continue;
		if (asprintf(&f->orig, "%s.orig", f->tmp) < 0) {
			f->orig = NULL;
			return ifail(r, "out of memory");
		}
		if (link(f->final, f->orig) != 0) {
			int e = errno;

			free(f->orig);
			f->orig = NULL;
			return ifail(r, "%s: cannot keep the old file aside: %s", f->final,
			    strerror(e));
		}
	}
	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];

		if (rename(f->tmp, f->final) != 0)
			return ifail(r, "%s: %s", f->final, strerror(errno));
		f->placed = true;
	}
	/* the renames themselves survive a power cut once the directory is synced */
	if ((dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		(void)close(dfd);
	}
	return 0;
}

static void
unlink_db(const char *db)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	char p[PATH_MAX + 16];

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
		if (snprintf(p, sizeof(p), "%s%s", db, sfx[i]) < (int)sizeof(p))
			(void)unlink(p);
}

/* Undoes everything this run did (ok: only the staging leftovers). */
static void
run_finish(struct init_run *r, bool ok)
{
	for (size_t i = r->n_files; i-- > 0;) {
		struct staged_file *f = &r->files[i];

		if (!ok && f->placed) {
			if (f->orig != NULL) {
				if (rename(f->orig, f->final) == 0) {
					free(f->orig);
					f->orig = NULL;
				}
			} else
				(void)unlink(f->final);
		}
		if (f->tmp != NULL)
			(void)unlink(f->tmp);
		if (f->orig != NULL)
			(void)unlink(f->orig);
	}
	if (r->stage != NULL)
		(void)rmdir(r->stage);
	if (!ok && r->created_db != NULL)
		unlink_db(r->created_db);
	if (!ok)
		for (size_t i = r->n_created_dirs; i-- > 0;)
			(void)rmdir(r->created_dirs[i]);
	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];

		if (f->secret && f->content != NULL)
			OPENSSL_cleanse(f->content, f->len);
		free(f->content);
		free(f->final);
		free(f->tmp);
		free(f->orig);
	}
	for (size_t i = 0; i < r->n_created_dirs; i++)
		free(r->created_dirs[i]);
	free(r->created_db);
	free(r->stage);
	free(r->dir);
	free(r->user);
	memset(r, 0, sizeof(*r));
}

/* Replaces the staging directory's name in a checker's message by the
 * destination directory, so that it names the file the user will have. */
static void
print_unstaged(const struct init_run *r, const char *msg)
{
	size_t sl = strlen(r->stage);
	const char *p = strstr(msg, r->stage);

	if (p == NULL)
		fprintf(stderr, "moonwire init %s: %s\n", r->cmd, msg);
	else
		fprintf(stderr, "moonwire init %s: %.*s%s%s\n", r->cmd, (int)(p - msg),
		    msg, r->dir, p + sl);
}

/* ---- the identity ---- */

/*
 * Opens or creates the OMEMO identity of jid in db, as `moonwire
 * fingerprint -c` does.  A database of another JID is an error.
 */
static int
identity_open(const char *jid, const char *db, uint32_t *device,
    char fp[MW_OMEMO_FP_HEXLEN + 1], char *why, size_t wl)
{
	struct mw_omemo *o = NULL;
	sqlite3 *h = NULL;
	int rc;

	if (mw_omemo_account_private_db(db, true, why, wl) != 0)
		return -1;
	if ((rc = mw_omemo_db_open(db, true, &h)) != 0) {
		snprintf(why, wl, "%s: cannot open the identity database (%s)", db,
		    mw_omemo_strerror(rc));
		if (h != NULL)
			sqlite3_close(h);
		return -1;
	}
	if ((rc = mw_omemo_open(&o, h, jid)) != 0) {
		snprintf(why, wl, "%s: %s%s", db, mw_omemo_strerror(rc),
		    rc == MW_OMEMO_E_WRONG_JID ? " (an existing identity is never "
		    "replaced: remove it yourself, or choose another place)" : "");
		sqlite3_close(h);
		return rc == MW_OMEMO_E_WRONG_JID ? -2 : -1;
	}
	rc = -1;
	if (strcmp(mw_omemo_jid(o), jid) != 0) {
		snprintf(why, wl, "%s is the identity of %s, not %s (an existing "
		    "identity is never replaced: remove it yourself, or choose "
		    "another place)", db, mw_omemo_jid(o), jid);
		rc = -2;
	} else if (mw_omemo_own_fingerprint(o, fp) != 0)
		snprintf(why, wl, "%s: cannot read the own fingerprint", db);
	else {
		*device = mw_omemo_device_id(o);
		rc = 0;
	}
	mw_omemo_close(o);
	if (sqlite3_close(h) != SQLITE_OK && rc == 0) {
		snprintf(why, wl, "%s: cannot close the identity database", db);
		rc = -1;
	}
	return rc;
}

/* The identity, created as r->user when --user is given (a child process
 * that has become that user: the database and its -wal/-shm are the
 * agent's own files). */
static int
identity(struct init_run *r, const char *jid, const char *db, uint32_t *device,
    char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	char why[1024], line[128];
	struct stat st;
	int p[2], status, rc;
	ssize_t n;
	pid_t pid;

	if (lstat(db, &st) == 0) {
		if (!S_ISREG(st.st_mode))
			return ifail(r, "%s exists and is not a regular file", db);
	} else if (errno == ENOENT) {
		if ((r->created_db = strdup(db)) == NULL)
			return ifail(r, "out of memory");
	} else
		return ifail(r, "%s: %s", db, strerror(errno));
	if (!r->as_user) {
		if ((rc = identity_open(jid, db, device, fp, why, sizeof(why))) != 0) {
			ifail(r, "%s", why);
			return rc;
		}
		return 0;
	}
	if (pipe2(p, O_CLOEXEC) != 0)
		return ifail(r, "pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0) {
		int e = errno;

		(void)close(p[0]);
		(void)close(p[1]);
		return ifail(r, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		(void)close(p[0]);
		if (initgroups(r->user, r->gid) != 0 || setgid(r->gid) != 0 ||
		    setuid(r->uid) != 0 || getuid() != r->uid || geteuid() != r->uid ||
		    getegid() != r->gid) {
			fprintf(stderr, "moonwire init %s: cannot become %s: %s\n", r->cmd,
			    r->user, strerror(errno));
			_exit(1);
		}
		if ((rc = identity_open(jid, db, device, fp, why, sizeof(why))) != 0) {
			fprintf(stderr, "moonwire init %s: %s (as user %s)\n", r->cmd, why,
			    r->user);
			_exit(rc == -2 ? 2 : 1);
		}
		n = snprintf(line, sizeof(line), "%u %s\n", *device, fp);
		_exit(n > 0 && n < (ssize_t)sizeof(line) &&
		    write_all(p[1], line, (size_t)n) == 0 ? 0 : 1);
	}
	(void)close(p[1]);
	n = 0;
	for (;;) {
		ssize_t k = read(p[0], line + n, sizeof(line) - 1 - (size_t)n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += k;
		if ((size_t)n >= sizeof(line) - 1)
			break;
	}
	(void)close(p[0]);
	line[n] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return ifail(r, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? -2 : -1;
		/* the child said why */
	{
		char hex[MW_OMEMO_FP_HEXLEN + 2];
		unsigned dev;

		if (sscanf(line, "%u %65s", &dev, hex) != 2 ||
		    strlen(hex) != MW_OMEMO_FP_HEXLEN)
			return ifail(r, "the identity process gave no fingerprint");
		*device = dev;
		memcpy(fp, hex, MW_OMEMO_FP_HEXLEN + 1);
	}
	return 0;
}

/* The last steps of both kinds of init: the identity, then the staged
 * files moved into place -- unless interrupted before either.  0, -2 for
 * the identity of another JID, -1 otherwise (reported). */
static int
identity_and_commit(struct init_run *r, const char *jid, const char *db, uint32_t *device,
    char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	int p;

	if (init_interrupted)
		return ifail(r, "interrupted; nothing written"), -1;
	if ((p = identity(r, jid, db, device, fp)) != 0)
		return p == -2 ? -2 : -1;
	if (init_interrupted)
		return ifail(r, "interrupted; nothing written"), -1;
	return stage_commit(r) != 0 ? -1 : 0;
}

static void
print_identity(const char *jid, uint32_t device, const char *fp)
{
	char g[72], ed[MW_OMEMO_FP_HEXLEN + 1];

	mw_omemo_fp_group(fp, '-', g);
	printf("jid: %s\ndevice: %u\nfingerprint: %s\n", jid, device, g);
	/* as `moonwire fingerprint` prints it: the OMEMO 2 rendering too */
	if (mw_omemo_fp_ed25519(fp, ed) == 0) {
		mw_omemo_fp_group(ed, '-', g);
		printf("fingerprint-ed25519: %s\n", g);
	}
}

/* ---- the agent's checks (those of `moonwire agent --check`) ---- */

static int
check_agent_config(struct init_run *r, const char *conf, size_t *n_profiles,
    size_t *n_allows)
{
	struct mw_agent_config cfg;
	struct mw_policy pol;
	struct mw_allowed_signers *as = NULL;
	struct mw_protected_path prot[MW_PROTECTED_MAX];
	size_t n_prot = 0;
	char err[1400];
	int rc = -1;

	memset(&pol, 0, sizeof(pol));
	if (mw_agent_config_load(conf, &cfg, err, sizeof(err)) != 0) {
		print_unstaged(r, err);
		return -1;
	}
	if (mw_policy_load(cfg.policy, &pol, err, sizeof(err)) != 0 ||
	    mw_allowed_signers_load(cfg.allowed_signers, &as, err, sizeof(err)) != 0 ||
	    mw_agent_protected_paths(conf, &cfg, prot, &n_prot, err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&pol, prot, n_prot, err, sizeof(err)) != 0) {
		print_unstaged(r, err);
		goto out;
	}
	*n_profiles = pol.n_profiles;
	*n_allows = pol.n_allows;
	rc = 0;
out:
	mw_protected_paths_free(prot, n_prot);
	if (as != NULL)
		mw_allowed_signers_free(as);
	mw_policy_free(&pol);
	mw_agent_config_free(&cfg);
	return rc;
}

/* ---- moonwire init agent ---- */

enum {
	O_JID = 256, O_SIGNER, O_PRINCIPAL, O_OPERATOR, O_DIR, O_STATE, O_USER,
	O_PWFILE, O_HOST, O_PORT, O_CA, O_FORCE, O_SIGNKEY, O_FILE, O_HELP
};

struct init_opts {
	const char *jid, *signer, *principal, *operator_jid, *dir, *state_dir;
	const char *user, *password_file, *host, *port, *ca_file, *signing_key;
	const char *file;
	bool force;
};

static int
parse_opts(int argc, char **argv, bool agent, struct init_opts *o)
{
	static const struct option agent_lo[] = {
		{ "jid", required_argument, NULL, O_JID },
		{ "allowed-signer", required_argument, NULL, O_SIGNER },
		{ "principal", required_argument, NULL, O_PRINCIPAL },
		{ "operator", required_argument, NULL, O_OPERATOR },
		{ "dir", required_argument, NULL, O_DIR },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "user", required_argument, NULL, O_USER },
		{ "password-file", required_argument, NULL, O_PWFILE },
		{ "host", required_argument, NULL, O_HOST },
		{ "port", required_argument, NULL, O_PORT },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "force", no_argument, NULL, O_FORCE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option operator_lo[] = {
		{ "jid", required_argument, NULL, O_JID },
		{ "signing-key", required_argument, NULL, O_SIGNKEY },
		{ "file", required_argument, NULL, O_FILE },
		{ "password-file", required_argument, NULL, O_PWFILE },
		{ "host", required_argument, NULL, O_HOST },
		{ "port", required_argument, NULL, O_PORT },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "force", no_argument, NULL, O_FORCE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "+", agent ? agent_lo : operator_lo,
	    NULL)) != -1) {
		switch (ch) {
		case O_JID: o->jid = optarg; break;
		case O_SIGNER: o->signer = optarg; break;
		case O_PRINCIPAL: o->principal = optarg; break;
		case O_OPERATOR: o->operator_jid = optarg; break;
		case O_DIR: o->dir = optarg; break;
		case O_STATE: o->state_dir = optarg; break;
		case O_USER: o->user = optarg; break;
		case O_PWFILE: o->password_file = optarg; break;
		case O_HOST: o->host = optarg; break;
		case O_PORT: o->port = optarg; break;
		case O_CA: o->ca_file = optarg; break;
		case O_FORCE: o->force = true; break;
		case O_SIGNKEY: o->signing_key = optarg; break;
		case O_FILE: o->file = optarg; break;
		case O_HELP: return 1;
		default: return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "moonwire init %s: unexpected argument '%s'\n",
		    agent ? "agent" : "operator", argv[optind]);
		return -1;
	}
	return 0;
}

/* Checks shared by both: JID, host, port, CA file (made absolute). */
static int
check_account_opts(struct init_run *r, const struct init_opts *o, char **ca_abs)
{
	char why[600];

	*ca_abs = NULL;
	if (o->jid == NULL)
		return ifail(r, "--jid JID is required");
	if (!jid_ok(o->jid))
		return ifail(r, "--jid %s: not a bare JID (user@domain, no /resource)",
		    o->jid);
	if (o->host != NULL && !host_ok(o->host))
		return ifail(r, "--host %s: not a host name or address", o->host);
	if (o->port != NULL && !port_ok(o->port))
		return ifail(r, "--port %s: not a port number (1-65535)", o->port);
	if (o->ca_file != NULL) {
		if ((*ca_abs = abs_dir(r, "--ca-file", o->ca_file)) == NULL)
			return -1;
		if (mw_omemo_account_check_ca_file(*ca_abs, why, sizeof(why)) != 0) {
			free(*ca_abs);
			*ca_abs = NULL;
			return ifail(r, "--ca-file: %s", why);
		}
	}
	return 0;
}

/* The account lines both files share after jid and password_file. */
static int
server_lines(const struct init_opts *o, const char *ca_abs, char **out)
{
	if (asprintf(out, "%s%s%s%s%s%s%s%s%s",
	    o->host != NULL ? "host = " : "", o->host != NULL ? o->host : "",
	    o->host != NULL ? "\n" : "",
	    o->port != NULL ? "port = " : "", o->port != NULL ? o->port : "",
	    o->port != NULL ? "\n" : "",
	    ca_abs != NULL ? "ca_file = " : "", ca_abs != NULL ? ca_abs : "",
	    ca_abs != NULL ? "\n" : "") < 0) {
		*out = NULL;
		return -1;
	}
	return 0;
}

static int
init_agent(int argc, char **argv)
{
	struct init_run r = { .cmd = "agent" };
	struct init_opts o;
	struct passwd *pw;
	char pwbuf[PASSWORD_MAX], fp[MW_OMEMO_FP_HEXLEN + 1], g[72];
	char *state = NULL, *ca_abs = NULL, *publine = NULL, *server = NULL;
	char *db = NULL, *staged_conf = NULL;
	const char *conf_final;
	uid_t fuid = (uid_t)-1, puid = (uid_t)-1;
	gid_t fgid = (gid_t)-1;
	uint32_t device = 0;
	size_t n_profiles = 0, n_allows = 0;
	int rc = MW_EXIT_USAGE, p;

	pwbuf[0] = '\0';
	if ((p = parse_opts(argc, argv, true, &o)) != 0) {
		fputs(init_usage_text, p > 0 ? stdout : stderr);
		return p > 0 ? MW_EXIT_OK : MW_EXIT_USAGE;
	}
	r.force = o.force;
	if (check_account_opts(&r, &o, &ca_abs) != 0)
		goto out;
	if (o.signer == NULL || o.principal == NULL) {
		ifail(&r, "--allowed-signer FILE.pub and --principal NAME are required");
		goto out;
	}
	if (!principal_ok(o.principal)) {
		ifail(&r, "--principal %s: 1-64 characters of A-Z a-z 0-9 . _ @ + -",
		    o.principal);
		goto out;
	}
	if (o.operator_jid != NULL && !jid_ok(o.operator_jid)) {
		ifail(&r, "--operator %s: not a bare JID (user@domain, no /resource)",
		    o.operator_jid);
		goto out;
	}
	if (o.user != NULL) {
		errno = 0;
		if ((pw = getpwnam(o.user)) == NULL) {
			ifail(&r, "--user %s: no such user", o.user);
			goto out;
		}
		if (pw->pw_uid != geteuid()) {
			if (geteuid() != 0) {
				ifail(&r, "--user %s: only root can write files for another "
				    "user", o.user);
				goto out;
			}
			r.as_user = true;
			r.uid = pw->pw_uid;
			r.gid = pw->pw_gid;
			if ((r.user = strdup(o.user)) == NULL) {
				ifail(&r, "out of memory");
				goto out;
			}
			/* configuration: root's, readable by the group; the
			 * password: the user's own */
			fgid = r.gid;
			puid = r.uid;
		}
	}
	if (read_ed25519_pub(&r, "--allowed-signer", o.signer, &publine) != 0)
		goto out;
	if ((r.dir = abs_dir(&r, "--dir", o.dir != NULL ? o.dir : "/etc/moonwire")) == NULL ||
	    (state = abs_dir(&r, "--state-dir", o.state_dir != NULL ? o.state_dir :
	    "/var/lib/moonwire")) == NULL)
		goto out;
	if (asprintf(&db, "%s/identity.db", state) < 0) {
		db = NULL;
		ifail(&r, "out of memory");
		goto out;
	}
	if (server_lines(&o, ca_abs, &server) != 0) {
		ifail(&r, "out of memory");
		goto out;
	}
	if (stage_add(&r, "agent.conf", 0640, fuid, fgid, false,
	    "# moonwire agent configuration, written by `moonwire init agent`.\n"
	    "# Every key: moonwire-agent.conf(5).  Relative paths are relative to\n"
	    "# this file's directory.  Check a change with\n"
	    "#   moonwire agent -c %s/agent.conf --check\n"
	    "jid = %s\n"
	    "password_file = password\n"
	    "%s"
	    "db = %s\n"
	    "state_dir = %s\n"
	    "allowed_signers = allowed_signers\n"
	    "policy = policy\n",
	    r.dir, o.jid, server, db, state) == NULL ||
	    stage_add(&r, "policy", 0640, fuid, fgid, false,
	    "# moonwire policy, written by `moonwire init agent`.  Syntax:\n"
	    "# moonwire-policy(5).  A conservative start: the profile `%s`\n"
	    "# grants system facts (sys.info, sys.disk) and nothing else.\n"
	    "limits wall=10s\n"
	    "\n"
	    "profile %s\n"
	    "  sys\n"
	    "\n"
	    "%s%s %s %s\n",
	    AGENT_PROFILE, AGENT_PROFILE,
	    o.operator_jid != NULL ? "allow " : "# allow ", o.principal,
	    o.operator_jid != NULL ? o.operator_jid : "OPERATOR_JID",
	    AGENT_PROFILE) == NULL ||
	    stage_add(&r, "allowed_signers", 0640, fuid, fgid, false,
	    "# who may sign jobs (ssh-keygen(1) ALLOWED SIGNERS), written by\n"
	    "# `moonwire init agent`: PRINCIPAL namespaces=\"moonwire-job\" KEY\n"
	    "%s namespaces=\"moonwire-job\" %s\n", o.principal, publine) == NULL)
		goto out;
	if (stage_add(&r, "password", 0600, puid, fgid, true, "%s", "") == NULL)
		goto out;
	if (check_destinations(&r) != 0)
		goto out;
	/* all input is read before anything is created */
	if (read_password(&r, o.password_file, o.jid, pwbuf) != 0)
		goto out;
	{
		struct staged_file *f = &r.files[r.n_files - 1];

		free(f->content);
		if (asprintf(&f->content, "%s\n", pwbuf) < 0) {
			f->content = NULL;
			ifail(&r, "out of memory");
			goto out;
		}
		f->len = strlen(f->content);
		OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	}
	/* from here on files are created: a failure removes them again */
	rc = MW_EXIT_ERROR;
	if (make_dirs(&r, r.dir, 0750, (uid_t)-1, fgid) != 0 ||
	    make_dirs(&r, state, 0700, puid, fgid) != 0 ||
	    stage_write(&r) != 0)
		goto out;
	if (asprintf(&staged_conf, "%s/agent.conf", r.stage) < 0) {
		staged_conf = NULL;
		ifail(&r, "out of memory");
		goto out;
	}
	conf_final = r.files[0].final;
	if (check_agent_config(&r, staged_conf, &n_profiles, &n_allows) != 0) {
		rc = MW_EXIT_USAGE;	/* as `moonwire agent --check` */
		goto out;
	}
	if ((p = identity_and_commit(&r, o.jid, db, &device, fp)) != 0) {
		if (p == -2)
			rc = MW_EXIT_USAGE;	/* the identity of another JID */
		goto out;
	}
	/* what `moonwire agent --check` prints for these files */
	printf("%s: configuration ok (policy: %zu profiles, %zu allow lines)\n",
	    conf_final, n_profiles, n_allows);
	for (size_t i = 0; i < r.n_files; i++)
		printf("wrote %s\n", r.files[i].final);
	printf("%s %s\n", r.created_db != NULL ? "created" : "kept the existing", db);
	print_identity(o.jid, device, fp);
	mw_omemo_fp_group(fp, '-', g);
	printf("\nThe operator verifies this agent's fingerprint (compare it out of "
	    "band) with:\n    moonwire trust -c OPERATOR_CONF %s %s\n", o.jid, g);
	printf("and this agent verifies the operator's device, with the fingerprint "
	    "the operator's\n`moonwire init operator` (or `moonwire fingerprint`) "
	    "prints:\n    %s%s%smoonwire trust -c %s %s OPERATOR_FINGERPRINT\n",
	    r.as_user ? "sudo -u " : "", r.as_user ? r.user : "",
	    r.as_user ? " " : "", conf_final,
	    o.operator_jid != NULL ? o.operator_jid : "OPERATOR_JID");
	if (o.operator_jid == NULL)
		printf("No --operator was given: nobody may run jobs until an `allow` "
		    "line is added to %s/policy.\n", r.dir);
	rc = fflush(stdout) == 0 ? MW_EXIT_OK : MW_EXIT_ERROR;
	run_finish(&r, true);
	goto out_free;
out:
	run_finish(&r, false);
out_free:
	OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	free(state);
	free(ca_abs);
	free(publine);
	free(server);
	free(db);
	free(staged_conf);
	return rc;
}

/* ---- moonwire init operator ---- */

static int
init_operator(int argc, char **argv)
{
	struct init_run r = { .cmd = "operator" };
	struct init_opts o;
	struct mw_omemo_account acct;
	char pwbuf[PASSWORD_MAX], fp[MW_OMEMO_FP_HEXLEN + 1], g[72], err[1400];
	char *ca_abs = NULL, *server = NULL, *file = NULL, *key = NULL;
	char *stem = NULL, *db = NULL, *staged = NULL, *def = NULL, *tmp = NULL;
	const char *base;
	uint32_t device = 0;
	size_t bl;
	int rc = MW_EXIT_USAGE, p;

	pwbuf[0] = '\0';
	if ((p = parse_opts(argc, argv, false, &o)) != 0) {
		fputs(init_usage_text, p > 0 ? stdout : stderr);
		return p > 0 ? MW_EXIT_OK : MW_EXIT_USAGE;
	}
	r.force = o.force;
	if (check_account_opts(&r, &o, &ca_abs) != 0)
		goto out;
	if (o.signing_key == NULL) {
		ifail(&r, "--signing-key KEY is required (an Ed25519 key: ssh-keygen "
		    "-t ed25519)");
		goto out;
	}
	if (check_signing_key(&r, o.signing_key) != 0)
		goto out;
	if ((key = abs_dir(&r, "--signing-key", o.signing_key)) == NULL)
		goto out;
	if (o.file == NULL) {
		/* ~/.config/moonwire/LOCALPART.conf */
		if (asprintf(&def, "~/.config/moonwire/%.*s.conf",
		    (int)(strchr(o.jid, '@') - o.jid), o.jid) < 0) {
			def = NULL;
			ifail(&r, "out of memory");
			goto out;
		}
		if (mw_omemo_account_path("/", def, &tmp) != 0) {
			ifail(&r, "cannot find the home directory for %s (give --file)", def);
			goto out;
		}
	}
	if ((file = abs_dir(&r, "--file", o.file != NULL ? o.file : tmp)) == NULL)
		goto out;
	/* dir and stem: PATH = DIR/STEM.conf (or DIR/STEM) */
	if ((r.dir = strdup(file)) == NULL || (stem = strdup(file)) == NULL) {
		ifail(&r, "out of memory");
		goto out;
	}
	base = strrchr(file, '/') + 1;
	bl = strlen(base);
	if (bl == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		ifail(&r, "--file %s: not a file name", file);
		goto out;
	}
	*strrchr(r.dir, '/') = '\0';
	if (r.dir[0] == '\0')
		strcpy(r.dir, "/");
	free(stem);
	if ((stem = strndup(base, bl > 5 && strcmp(base + bl - 5, ".conf") == 0 ?
	    bl - 5 : bl)) == NULL) {
		ifail(&r, "out of memory");
		goto out;
	}
	if (asprintf(&db, "%s/%s.db", strcmp(r.dir, "/") == 0 ? "" : r.dir, stem) < 0) {
		db = NULL;
		ifail(&r, "out of memory");
		goto out;
	}
	if (server_lines(&o, ca_abs, &server) != 0) {
		ifail(&r, "out of memory");
		goto out;
	}
	{
		char pwname[64];

		if (snprintf(pwname, sizeof(pwname), "%s.password", stem) >=
		    (int)sizeof(pwname) || strlen(base) >= sizeof(pwname)) {
			ifail(&r, "--file %s: the file name is too long", file);
			goto out;
		}
		if (stage_add(&r, base, 0600, (uid_t)-1, (gid_t)-1, false,
		    "# moonwire operator account, written by `moonwire init operator`.\n"
		    "# Keys: moonwire(1), \"Account file\".  Relative paths are relative\n"
		    "# to this file's directory.\n"
		    "jid = %s\n"
		    "password_file = %s\n"
		    "%s"
		    "db = %s.db\n"
		    "signing_key = %s\n",
		    o.jid, pwname, server, stem, key) == NULL ||
		    stage_add(&r, pwname, 0600, (uid_t)-1, (gid_t)-1, true, "%s", "") == NULL)
			goto out;
	}
	if (check_destinations(&r) != 0)
		goto out;
	if (read_password(&r, o.password_file, o.jid, pwbuf) != 0)
		goto out;
	{
		struct staged_file *f = &r.files[1];

		free(f->content);
		if (asprintf(&f->content, "%s\n", pwbuf) < 0) {
			f->content = NULL;
			ifail(&r, "out of memory");
			goto out;
		}
		f->len = strlen(f->content);
		OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	}
	/* from here on files are created: a failure removes them again */
	rc = MW_EXIT_ERROR;
	if (make_dirs(&r, r.dir, 0700, (uid_t)-1, (gid_t)-1) != 0 || stage_write(&r) != 0)
		goto out;
	if (asprintf(&staged, "%s/%s", r.stage, base) < 0) {
		staged = NULL;
		ifail(&r, "out of memory");
		goto out;
	}
	/* what every command reads of an account file */
	if (mw_omemo_account_load_err(&acct, staged, err, sizeof(err)) != 0) {
		print_unstaged(&r, err);
		rc = MW_EXIT_USAGE;
		goto out;
	}
	mw_omemo_account_free(&acct);
	if ((p = identity_and_commit(&r, o.jid, db, &device, fp)) != 0) {
		if (p == -2)
			rc = MW_EXIT_USAGE;	/* the identity of another JID */
		goto out;
	}
	for (size_t i = 0; i < r.n_files; i++)
		printf("wrote %s\n", r.files[i].final);
	printf("%s %s\n", r.created_db != NULL ? "created" : "kept the existing", db);
	printf("%s: account ok\n", file);
	print_identity(o.jid, device, fp);
	mw_omemo_fp_group(fp, '-', g);
	printf("\nThe agent's owner verifies this device's fingerprint (compare it out "
	    "of band) with:\n    moonwire trust -c AGENT_CONF %s %s\n", o.jid, g);
	printf("and you verify the agent's, printed by `moonwire init agent`:\n"
	    "    moonwire trust -c %s AGENT_JID AGENT_FINGERPRINT\n", file);
	{
		size_t kl = strlen(key);
		bool is_pub = kl > 4 && strcmp(key + kl - 4, ".pub") == 0;

		printf("The agent's owner needs your public key, %s%s, for `moonwire "
		    "init agent --allowed-signer`.\n", key, is_pub ? "" : ".pub");
	}
	rc = fflush(stdout) == 0 ? MW_EXIT_OK : MW_EXIT_ERROR;
	run_finish(&r, true);
	goto out_free;
out:
	run_finish(&r, false);
out_free:
	OPENSSL_cleanse(pwbuf, sizeof(pwbuf));
	free(ca_abs);
	free(server);
	free(file);
	free(key);
	free(stem);
	free(db);
	free(staged);
	free(def);
	free(tmp);
	return rc;
}

int
mw_cmd_init(int argc, char **argv)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "agent") == 0 ||
	    strcmp(argv[1], "operator") == 0)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_interrupt;	/* no SA_RESTART: a prompt returns */
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			if (sigaction(sigs[i], &sa, NULL) != 0) {
				fprintf(stderr, "moonwire init: sigaction: %s\n", strerror(errno));
				return MW_EXIT_ERROR;
			}
		rc = argv[1][0] == 'a' ? init_agent(argc - 1, argv + 1) :
		    init_operator(argc - 1, argv + 1);
		if (init_interrupted && rc == MW_EXIT_OK)
			return rc;	/* it came after everything was in place */
		return init_interrupted ? 128 + init_interrupted : rc;
	}
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(init_usage_text, stdout);
		return MW_EXIT_OK;
	}
	if (argc >= 2)
		fprintf(stderr, "moonwire init: unknown kind '%s' (agent or operator)\n",
		    argv[1]);
	fputs(init_usage_text, stderr);
	return MW_EXIT_USAGE;
}
