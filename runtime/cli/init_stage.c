/*
 * init_stage.c: all or nothing for `moonwire init`.  Files are written
 * into a private staging directory next to their destination and renamed
 * into place only after the configuration is checked and the identity
 * exists; a run that fails removes everything it created (staged files,
 * new directories, a new identity database) and leaves existing files as
 * they were.
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

#include "cli.h"

/* ---- what this run creates, and undoing it ---- */

/* Creates path and its missing parents (mkdir -p); the last one gets
 * mode/uid/gid, the others 0755 and the caller's ids.  Each directory
 * made is recorded for rollback. */
int
init_make_dirs(struct init_run *r, const char *path, mode_t mode, uid_t uid, gid_t gid)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t n = strlen(path);

	if (n >= sizeof(buf) || path[0] != '/')
		return init_fail(r, "%s: not a usable directory path", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (stat(buf, &st) == 0) {
			if (!S_ISDIR(st.st_mode))
				return init_fail(r, "%s is not a directory", buf);
		} else if (errno != ENOENT) {
			return init_fail(r, "%s: %s", buf, strerror(errno));
		} else {
			if (r->n_created_dirs >= INIT_MAX_DIRS)
				return init_fail(r, "%s: too many directories to create", path);
			if (mkdir(buf, last ? mode : 0755) != 0)
				return init_fail(r, "cannot create directory %s: %s", buf,
				    strerror(errno));
			if ((r->created_dirs[r->n_created_dirs] = strdup(buf)) == NULL) {
				(void)rmdir(buf);
				return init_fail(r, "out of memory");
			}
			r->n_created_dirs++;
			/* the mode exactly, whatever the umask */
			if (chmod(buf, last ? mode : 0755) != 0 ||
			    (last && (uid != (uid_t)-1 || gid != (gid_t)-1) &&
			    chown(buf, uid, gid) != 0))
				return init_fail(r, "%s: %s", buf, strerror(errno));
		}
		if (last)
			return 0;
		*p = '/';
	}
}

struct staged_file *
init_stage_add(struct init_run *r, const char *name, mode_t mode, uid_t uid, gid_t gid,
    bool secret, const char *fmt, ...)
{
	struct staged_file *f;
	va_list ap;
	int n;

	if (r->n_files >= INIT_MAX_FILES || strlen(name) >= sizeof(f->name)) {
		init_fail(r, "internal error: too many files");
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
		init_fail(r, "out of memory");
		return NULL;
	}
	f->len = (size_t)n;
	r->n_files++;
	return f;
}

/* Refuses, before anything is created, destinations that exist (unless
 * --force) or that are not regular files. */
int
init_check_destinations(struct init_run *r)
{
	struct stat st;
	int bad = 0;

	for (size_t i = 0; i < r->n_files; i++) {
		if (lstat(r->files[i].final, &st) != 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			bad = init_fail(r, "%s: %s", r->files[i].final, strerror(errno));
		} else if (!S_ISREG(st.st_mode))
			bad = init_fail(r, "%s exists and is not a regular file; not replaced",
			    r->files[i].final);
		else if (!r->force)
			bad = init_fail(r, "%s exists; not overwritten (--force replaces it)",
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
int
init_stage_write(struct init_run *r)
{
	if (asprintf(&r->stage, "%s/.moonwire-init.XXXXXX", r->dir) < 0) {
		r->stage = NULL;
		return init_fail(r, "out of memory");
	}
	if (mkdtemp(r->stage) == NULL) {
		int e = errno;

		free(r->stage);
		r->stage = NULL;
		return init_fail(r, "cannot write in %s: %s", r->dir, strerror(e));
	}
	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];
		int fd;

		if (asprintf(&f->tmp, "%s/%s", r->stage, f->name) < 0) {
			f->tmp = NULL;
			return init_fail(r, "out of memory");
		}
		fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd < 0)
			return init_fail(r, "%s: %s", f->tmp, strerror(errno));
		if (((f->uid != (uid_t)-1 || f->gid != (gid_t)-1) &&
		    fchown(fd, f->uid, f->gid) != 0) || fchmod(fd, f->mode) != 0 ||
		    write_all(fd, f->content, f->len) != 0 || fsync(fd) != 0) {
			int e = errno;

			(void)close(fd);
			return init_fail(r, "%s: %s", f->tmp, strerror(e));
		}
		if (close(fd) != 0)
			return init_fail(r, "%s: %s", f->tmp, strerror(errno));
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
			return init_fail(r, "out of memory");
		}
		if (link(f->final, f->orig) != 0) {
			int e = errno;

			free(f->orig);
			f->orig = NULL;
			return init_fail(r, "%s: cannot keep the old file aside: %s", f->final,
			    strerror(e));
		}
	}
	for (size_t i = 0; i < r->n_files; i++) {
		struct staged_file *f = &r->files[i];

		if (rename(f->tmp, f->final) != 0)
			return init_fail(r, "%s: %s", f->final, strerror(errno));
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
void
init_run_finish(struct init_run *r, bool ok)
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
void
init_print_unstaged(const struct init_run *r, const char *msg)
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
			return init_fail(r, "%s exists and is not a regular file", db);
	} else if (errno == ENOENT) {
		if ((r->created_db = strdup(db)) == NULL)
			return init_fail(r, "out of memory");
	} else
		return init_fail(r, "%s: %s", db, strerror(errno));
	if (!r->as_user) {
		if ((rc = identity_open(jid, db, device, fp, why, sizeof(why))) != 0) {
			init_fail(r, "%s", why);
			return rc;
		}
		return 0;
	}
	if (pipe2(p, O_CLOEXEC) != 0)
		return init_fail(r, "pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0) {
		int e = errno;

		(void)close(p[0]);
		(void)close(p[1]);
		return init_fail(r, "fork: %s", strerror(e));
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
			return init_fail(r, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? -2 : -1;
		/* the child said why */
	{
		char hex[MW_OMEMO_FP_HEXLEN + 2];
		unsigned dev;

		if (sscanf(line, "%u %65s", &dev, hex) != 2 ||
		    strlen(hex) != MW_OMEMO_FP_HEXLEN)
			return init_fail(r, "the identity process gave no fingerprint");
		*device = dev;
		memcpy(fp, hex, MW_OMEMO_FP_HEXLEN + 1);
	}
	return 0;
}

/* The last steps of both kinds of init: the identity, then the staged
 * files moved into place -- unless interrupted before either.  0, -2 for
 * the identity of another JID, -1 otherwise (reported). */
int
init_identity_and_commit(struct init_run *r, const char *jid, const char *db, uint32_t *device,
    char fp[MW_OMEMO_FP_HEXLEN + 1])
{
	int p;

	if (init_interrupted)
		return init_fail(r, "interrupted; nothing written"), -1;
	if ((p = identity(r, jid, db, device, fp)) != 0)
		return p == -2 ? -2 : -1;
	if (init_interrupted)
		return init_fail(r, "interrupted; nothing written"), -1;
	return stage_commit(r) != 0 ? -1 : 0;
}

void
init_print_identity(const char *jid, uint32_t device, const char *fp)
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
