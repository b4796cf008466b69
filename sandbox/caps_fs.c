/*
 * caps_fs.c: fs.read, fs.tail, fs.list, fs.stat and fs.write -- files under
 * granted directories, opened by the supervisor for a worker.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <sqlite3.h>

#include "sandbox/caps_int.h"

/* ---- paths ---- */

static bool
path_has_bad_component(const char *p)
{
	const char *c = p;
	while (*c) {
		while (*c == '/')
			c++;
		const char *e = c;
		while (*e && *e != '/')
			e++;
		size_t len = (size_t)(e - c);
		if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return true;
		c = e;
	}
	return false;
}

/* Whether canonical path p equals or lies inside canonical directory d. */
static bool
path_within(const char *p, const char *d)
{
	size_t l = strlen(d);
	if (l == 1 && d[0] == '/')
		return true;
	return strncmp(p, d, l) == 0 && (p[l] == '\0' || p[l] == '/');
}

/* The caller's own files are out of reach whatever the grants say. */
static bool
is_protected_path(const struct mw_cap_ctx *c, const char *path)
{
	for (uint32_t i = 0; i < c->n_prot; i++)
		if (path_within(path, c->prot[i].path))
			return true;
	return false;
}

static bool
is_protected_id(const struct mw_cap_ctx *c, const struct stat *st)
{
	for (uint32_t i = 0; i < c->n_prot; i++)
		if (c->prot[i].have_id && c->prot[i].dev == st->st_dev &&
		    c->prot[i].ino == st->st_ino)
			return true;
	return false;
}

static const char *
file_type_name(mode_t m)
{
	return S_ISREG(m) ? "regular file" : S_ISDIR(m) ? "directory" :
	    S_ISFIFO(m) ? "FIFO" : S_ISSOCK(m) ? "socket" : S_ISCHR(m) ? "character device" :
	    S_ISBLK(m) ? "block device" : S_ISLNK(m) ? "symbolic link" : "special file";
}

static int
openat2_beneath(int dfd, const char *rest, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	return (int)syscall(SYS_openat2, dfd, *rest ? rest : ".", &how, sizeof(how));
}

enum open_kind { OPEN_READ_FILE, OPEN_WRITE_FILE, OPEN_DIR, OPEN_ANY_PATH };

/*
 * Finds the grant covering path and opens path beneath it.  Returns an fd,
 * or -1 with a refusal/failure written to reply.
 *
 * Nothing here can block the supervisor's loop: the object is first
 * reached with O_PATH (which opens nothing: no FIFO rendezvous, no device
 * driver, no lease break) and checked by type, link count and identity on
 * that descriptor; only a regular file (or, for fs.list, a directory) is
 * then opened for real, O_NONBLOCK (a lease makes it fail with EWOULDBLOCK
 * instead of waiting), and must be the same inode as the one checked.  The
 * granted directory itself is opened without following symbolic links.
 */
static int
open_beneath(const struct mw_cap_ctx *c, const char *cap, char *const *grants,
    uint32_t ngrants, const struct cap_arg *a, enum open_kind kind, bool append,
    struct mw_buf *reply)
{
	char path[PATH_MAX];
	if (a->tag != MW_V_STRING || a->slen == 0 || a->slen >= sizeof(path) ||
	    memchr(a->s, '\0', a->slen) != NULL) {
		mw_cap_reply_error(reply, "%s: path must be a non-empty string", cap);
		return -1;
	}
	memcpy(path, a->s, a->slen);
	path[a->slen] = '\0';
	if (path[0] != '/') {
		mw_cap_reply_error(reply, "capability denied: %s %s: path must be absolute",
		    cap, path);
		return -1;
	}
	if (path_has_bad_component(path)) {
		mw_cap_reply_error(reply, "capability denied: %s %s: '.' and '..' are not allowed",
		    cap, path);
		return -1;
	}
	/* Repeated slashes would defeat the textual checks below. */
	for (const char *q = path; *q; q++)
		if (q[0] == '/' && q[1] == '/') {
			mw_cap_reply_error(reply, "capability denied: %s %s: empty path component",
			    cap, path);
			return -1;
		}
	const char *grant = NULL, *rest = NULL;
	size_t best = 0;
	for (uint32_t i = 0; i < ngrants; i++) {
		size_t gl = strlen(grants[i]);
		if (strcmp(grants[i], "/") == 0) {
			if (best == 0) {
				grant = grants[i];
				rest = path + 1;
				best = 1;
			}
			continue;
		}
		if (strncmp(path, grants[i], gl) == 0 && (path[gl] == '\0' || path[gl] == '/') &&
		    gl >= best) {
			grant = grants[i];
			rest = path + gl;
			best = gl;
		}
	}
	if (grant == NULL) {
		mw_cap_reply_error(reply, "capability denied: %s %s: not under a granted path",
		    cap, path);
		return -1;
	}
	if (is_protected_path(c, path)) {
		mw_cap_reply_error(reply, "capability denied: %s %s: one of the agent's own files",
		    cap, path);
		return -1;
	}
	while (*rest == '/')
		rest++;
	struct open_how dhow = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int dfd = (int)syscall(SYS_openat2, AT_FDCWD, grant, &dhow, sizeof(dhow));
	if (dfd < 0) {
		mw_cap_reply_error(reply, "%s %s: granted directory %s: %s", cap, path, grant,
		    errno == ELOOP ? "a symbolic link (not followed)" : strerror(errno));
		return -1;
	}
	int fd = -1, err = 0;
	struct stat st, st2;
	int pfd = openat2_beneath(dfd, rest, O_PATH, 0);
	if (pfd < 0 && errno == ENOENT && kind == OPEN_WRITE_FILE) {
		/* A new file: created exclusively, so it cannot be anything
		 * but a fresh regular file. */
		fd = openat2_beneath(dfd, rest, O_WRONLY | O_CREAT | O_EXCL | O_NONBLOCK |
		    (append ? O_APPEND : 0), 0640);
		err = errno;
		close(dfd);
		if (fd < 0)
			goto open_failed;
		if (fstat(fd, &st) != 0) {
			err = errno;
			close(fd);
			goto open_failed;
		}
		return fd;
	}
	err = errno;
	if (pfd < 0) {
		close(dfd);
		goto open_failed;
	}
	if (fstat(pfd, &st) != 0) {
		err = errno;
		close(pfd);
		close(dfd);
		goto open_failed;
	}
	close(pfd);
	if (is_protected_id(c, &st)) {
		close(dfd);
		mw_cap_reply_error(reply, "capability denied: %s %s: one of the agent's own files",
		    cap, path);
		return -1;
	}
	if (S_ISLNK(st.st_mode)) {
		close(dfd);
		err = ELOOP;
		goto open_failed;
	}
	bool want_dir = kind == OPEN_DIR;
	if (kind != OPEN_ANY_PATH && (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
		close(dfd);
		mw_cap_reply_error(reply, "capability denied: %s %s: a %s, not a %s", cap, path,
		    file_type_name(st.st_mode), want_dir ? "directory" : "regular file");
		return -1;
	}
	if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
		close(dfd);
		mw_cap_reply_error(reply, "capability denied: %s %s: file has %ju hard links",
		    cap, path, (uintmax_t)st.st_nlink);
		return -1;
	}
	int flags = kind == OPEN_READ_FILE ? O_RDONLY | O_NONBLOCK :
	    kind == OPEN_WRITE_FILE ? O_WRONLY | O_NONBLOCK | (append ? O_APPEND : 0) :
	    kind == OPEN_DIR ? O_RDONLY | O_DIRECTORY | O_NONBLOCK : O_PATH;
	fd = openat2_beneath(dfd, rest, flags, 0);
	err = errno;
	close(dfd);
	if (fd < 0)
		goto open_failed;
	if (fstat(fd, &st2) != 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
		close(fd);
		mw_cap_reply_error(reply, "%s %s: file changed while it was opened", cap, path);
		return -1;
	}
	return fd;
open_failed:
	if (err == ELOOP)
		mw_cap_reply_error(reply, "capability denied: %s %s: symbolic links are not followed",
		    cap, path);
	else if (err == EXDEV)
		mw_cap_reply_error(reply, "capability denied: %s %s: crosses a mount point",
		    cap, path);
	else if (err == EWOULDBLOCK)
		mw_cap_reply_error(reply, "%s %s: file is leased by another process", cap, path);
	else
		mw_cap_reply_error(reply, "%s %s: %s", cap, path, strerror(err));
	return -1;
}

/* open_beneath() under the job's read grants. */
static int
open_for_reading(const struct mw_cap_ctx *c, const char *cap, struct cap_args *A,
    enum open_kind kind, struct mw_buf *reply)
{
	return open_beneath(c, cap, c->grants->fs_read, c->grants->n_fs_read, &A->a[0], kind,
	    false, reply);
}

static int
read_fd_limited(int fd, off_t from, size_t max, struct mw_buf *out)
{
	uint8_t *d;
	if (max == 0)
		return 0;
	if (mw_buf_reserve(out, max, &d) != 0)
		return -1;
	size_t got = 0;
	while (got < max) {
		ssize_t n = pread(fd, d + got, max - got, from + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			out->len -= max;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	out->len -= max - got;
	return 0;
}

int
cap_fs_read(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply)
{
	size_t max = MW_FS_READ_MAX;
	if (A->n >= 2 && A->a[1].tag == MW_V_INT && A->a[1].i > 0 &&
	    (uint64_t)A->a[1].i < max)
		max = (size_t)A->a[1].i;
	int fd = open_for_reading(c, "fs.read", A, OPEN_READ_FILE, reply);
	if (fd < 0)
		return 0;
	struct stat st;
	struct mw_buf data;
	mw_buf_init(&data, MW_FS_READ_MAX + 1);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.read %.*s: not a regular file",
		    (int)A->a[0].slen, A->a[0].s);
	}
	if (read_fd_limited(fd, 0, max + 1, &data) != 0) {
		int e = errno;
		close(fd);
		mw_buf_free(&data);
		return mw_cap_reply_error(reply, "fs.read: %s", strerror(e));
	}
	close(fd);
	bool trunc = mw_buf_avail(&data) > max;
	size_t n = trunc ? max : mw_buf_avail(&data);
	int r = (reply_ok(reply, 2) || put_ret_index(reply, 1) ||
	    put_str(reply, mw_buf_ptr(&data), n) || put_ret_index(reply, 2) ||
	    put_bool(reply, trunc)) ? -1 : 0;
	mw_buf_free(&data);
	return r;
}

int
cap_fs_tail(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply)
{
	int64_t lines = 10;
	if (A->n >= 2 && A->a[1].tag == MW_V_INT)
		lines = A->a[1].i;
	if (lines < 1 || lines > MAX_TAIL_LINES)
		return mw_cap_reply_error(reply, "fs.tail: line count must be 1..%d", MAX_TAIL_LINES);
	int fd = open_for_reading(c, "fs.read", A, OPEN_READ_FILE, reply);
	if (fd < 0)
		return 0;
	struct stat st;
	struct mw_buf data;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.tail %.*s: not a regular file",
		    (int)A->a[0].slen, A->a[0].s);
	}
	off_t from = st.st_size > (off_t)MW_FS_READ_MAX ? st.st_size - (off_t)MW_FS_READ_MAX : 0;
	mw_buf_init(&data, MW_FS_READ_MAX);
	if (read_fd_limited(fd, from, (size_t)(st.st_size - from), &data) != 0) {
		int e = errno;
		close(fd);
		mw_buf_free(&data);
		return mw_cap_reply_error(reply, "fs.tail: %s", strerror(e));
	}
	close(fd);
	const uint8_t *p = mw_buf_ptr(&data);
	size_t n = mw_buf_avail(&data), start = n;
	/* A final newline ends the last line; it does not start a new one. */
	size_t end = (n > 0 && p[n - 1] == '\n') ? n - 1 : n;
	int64_t seen = 0;
	start = 0;
	for (size_t i = end; i > 0; i--) {
		if (p[i - 1] == '\n' && ++seen == lines) {
			start = i;
			break;
		}
	}
	int r = reply_values1_str(reply, p + start, n - start);
	mw_buf_free(&data);
	return r;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
cap_fs_list(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply)
{
	int fd = open_for_reading(c, "fs.list", A, OPEN_DIR, reply);
	if (fd < 0)
		return 0;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.list: %s", strerror(errno));
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	bool trunc = false;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n >= MAX_LIST_ENTRIES) {
			trunc = true;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(char *));
			if (nn == NULL)
				break;
			names = nn;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			break;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(char *), cmp_str);
	int r = (reply_ok(reply, 2) || put_ret_index(reply, 1) || put_table(reply, (uint32_t)n)) ? -1 : 0;
	for (size_t i = 0; i < n; i++) {
		if (r == 0 && (put_int(reply, (int64_t)i + 1) || put_cstr(reply, names[i])))
			r = -1;
		free(names[i]);
	}
	free(names);
	if (r == 0 && (put_ret_index(reply, 2) || put_bool(reply, trunc)))
		r = -1;
	if (r != 0)
		return mw_cap_reply_error(reply, "fs.list: directory listing too large");
	return 0;
}

int
cap_fs_stat(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply)
{
	int fd = open_for_reading(c, "fs.stat", A, OPEN_ANY_PATH, reply);
	if (fd < 0)
		return 0;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.stat: %s", strerror(errno));
	}
	close(fd);
	const char *type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other";
	if (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_table(reply, 4) ||
	    put_cstr(reply, "type") || put_cstr(reply, type) ||
	    put_cstr(reply, "size") || put_int(reply, (int64_t)st.st_size) ||
	    put_cstr(reply, "mtime") || put_int(reply, (int64_t)st.st_mtime) ||
	    put_cstr(reply, "mode") || put_int(reply, (int64_t)(st.st_mode & 07777)))
		return -1;
	return 0;
}

int
cap_fs_write(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply)
{
	if (A->n < 2 || A->a[1].tag != MW_V_STRING)
		return mw_cap_reply_error(reply, "fs.write: data must be a string");
	if (A->a[1].slen > MW_FS_READ_MAX)
		return mw_cap_reply_error(reply, "fs.write: at most %u bytes per call", MW_FS_READ_MAX);
	bool append = A->n >= 3 && A->a[2].tag == MW_V_STRING && A->a[2].slen == 1 &&
	    A->a[2].s[0] == 'a';
	/* Bytes written count against the job's `write` limit (spec/sandbox.md). */
	if (c->write_used != NULL && *c->write_used + A->a[1].slen > c->write_limit)
		return mw_cap_reply_error(reply, "capability denied: fs.write: the job's write limit"
		    " of %ju bytes would be exceeded (%ju used)", (uintmax_t)c->write_limit,
		    (uintmax_t)*c->write_used);
	const struct mw_grants *g = c->grants;
	int fd = open_beneath(c, "fs.write", g->fs_write, g->n_fs_write, &A->a[0],
	    OPEN_WRITE_FILE, append, reply);
	if (fd < 0)
		return 0;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.write: not a regular file");
	}
	/* Truncate only after the link-count check in open_beneath passed. */
	if (!append && ftruncate(fd, 0) != 0) {
		close(fd);
		return mw_cap_reply_error(reply, "fs.write: %s", strerror(errno));
	}
	size_t done = 0;
	while (done < A->a[1].slen) {
		ssize_t w = write(fd, A->a[1].s + done, A->a[1].slen - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			return mw_cap_reply_error(reply, "fs.write: %s", strerror(e));
		}
		done += (size_t)w;
	}
	close(fd);
	if (c->write_used != NULL)
		*c->write_used += done;
	if (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_int(reply, (int64_t)done))
		return -1;
	return 0;
}

