/*
 * caps.c: the capabilities a job may be granted, executed by the supervisor
 * on a worker's behalf.  The worker can only ask; this file decides.
 *
 * Invariants:
 *  - every request is checked against the job's grants before anything is
 *    touched; a refusal names the capability and the resource;
 *  - paths are absolute, contain no "." or ".." component, and are opened
 *    with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
 *    | RESOLVE_NO_XDEV) below the granted directory, so no symlink, no mount
 *    crossing (/proc, /sys, /dev are mounts) and no ".." can leave it;
 *    a regular file with more than one link is refused (hard links);
 *  - commands run from an argv named in policy, never through a shell, in
 *    their own session under a subreaper (command_reaper), with their own
 *    timeout and output cap; every process the command started -- even one
 *    that left the session -- is killed when it exits, times out or the job
 *    ends;
 *  - every reply is bounded (MW_FS_READ_MAX, per-command output caps).
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

#include "sandbox/sandbox_int.h"

#define MAX_ARGS 16
#define MAX_LIST_ENTRIES 10000
#define MAX_EXEC_CALLS 64
#define MAX_TAIL_LINES 10000

/* ---- request arguments ---- */

struct cap_arg {
	enum mw_value_tag tag;
	int64_t i;
	double n;
	const uint8_t *s;
	size_t slen;
	/* For a table argument: its string values in key order (sequences). */
	const uint8_t *list[MAX_ARGS + 1];
	size_t list_len[MAX_ARGS + 1];
	int64_t list_key[MAX_ARGS + 1];
	unsigned nlist;
	bool list_bad;
};

struct cap_args {
	struct cap_arg a[MAX_ARGS];
	unsigned n;
	int64_t pending_key;
	bool pending_key_int;
};

static int
args_visit(const struct mw_value_event *ev, void *arg)
{
	struct cap_args *A = arg;
	if (ev->end)
		return 0;
	if (ev->depth == 1) {
		if (ev->is_key)
			return 0;	/* positional: the array keys are 1..n */
		if (A->n >= MAX_ARGS)
			return MW_WIRE_ETOOBIG;
		struct cap_arg *c = &A->a[A->n++];
		c->tag = ev->tag;
		c->i = ev->i;
		c->n = ev->n;
		c->s = ev->s;
		c->slen = ev->slen;
		return 0;
	}
	if (ev->depth == 2 && A->n > 0) {
		struct cap_arg *c = &A->a[A->n - 1];
		if (ev->is_key) {
			A->pending_key_int = ev->tag == MW_V_INT;
			A->pending_key = ev->i;
			return 0;
		}
		if (ev->tag != MW_V_STRING || !A->pending_key_int || c->nlist > MAX_ARGS) {
			c->list_bad = true;
			return 0;
		}
		c->list[c->nlist] = ev->s;
		c->list_len[c->nlist] = ev->slen;
		c->list_key[c->nlist] = A->pending_key;
		c->nlist++;
		return 0;
	}
	if (A->n > 0)
		A->a[A->n - 1].list_bad = true;	/* deeper nesting is never valid */
	return 0;
}

/* ---- reply building ---- */

int
mw_cap_reply_error(struct mw_buf *reply, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mw_buf_reset(reply);
	if (mw_buf_put_u8(reply, 0) != 0 || mw_buf_put_cstring(reply, msg) != 0)
		return -1;
	return 0;
}

static int put_str(struct mw_buf *r, const void *s, size_t n)
{
	int e = mw_buf_put_u8(r, MW_V_STRING);
	return e ? e : mw_buf_put_string(r, s, n);
}
static int put_cstr(struct mw_buf *r, const char *s) { return put_str(r, s, strlen(s)); }
static int put_int(struct mw_buf *r, int64_t v)
{
	int e = mw_buf_put_u8(r, MW_V_INT);
	return e ? e : mw_buf_put_u64(r, (uint64_t)v);
}
static int put_num(struct mw_buf *r, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	int e = mw_buf_put_u8(r, MW_V_NUMBER);
	return e ? e : mw_buf_put_u64(r, u);
}
static int put_bool(struct mw_buf *r, bool b) { return mw_buf_put_u8(r, b ? MW_V_TRUE : MW_V_FALSE); }
static int put_table(struct mw_buf *r, uint32_t n)
{
	int e = mw_buf_put_u8(r, MW_V_TABLE);
	return e ? e : mw_buf_put_u32(r, n);
}
/* ok, then an array of nret return values follows (caller puts them with
 * put_ret_index before each). */
static int reply_ok(struct mw_buf *r, uint32_t nret)
{
	mw_buf_reset(r);
	int e = mw_buf_put_u8(r, 1);
	return e ? e : put_table(r, nret);
}
static int put_ret_index(struct mw_buf *r, int64_t i) { return put_int(r, i); }

static int
reply_values1_str(struct mw_buf *r, const void *s, size_t n)
{
	if (reply_ok(r, 1) || put_ret_index(r, 1) || put_str(r, s, n))
		return -1;
	return 0;
}

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

/*
 * Finds the grant covering path and opens path beneath it.  Returns an fd,
 * or -1 with a refusal/failure written to reply.
 */
static int
open_beneath(const char *cap, char *const *grants, uint32_t ngrants,
    const struct cap_arg *a, int flags, mode_t mode, struct mw_buf *reply)
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
	while (*rest == '/')
		rest++;
	int dfd = open(grant, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		mw_cap_reply_error(reply, "%s %s: granted directory %s: %s", cap, path, grant,
		    strerror(errno));
		return -1;
	}
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd = (int)syscall(SYS_openat2, dfd, *rest ? rest : ".", &how, sizeof(how));
	int err = errno;
	close(dfd);
	if (fd < 0) {
		if (err == ELOOP)
			mw_cap_reply_error(reply, "capability denied: %s %s: symbolic links are not followed",
			    cap, path);
		else if (err == EXDEV)
			mw_cap_reply_error(reply, "capability denied: %s %s: crosses a mount point",
			    cap, path);
		else
			mw_cap_reply_error(reply, "%s %s: %s", cap, path, strerror(err));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		mw_cap_reply_error(reply, "%s %s: %s", cap, path, strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
		mw_cap_reply_error(reply, "capability denied: %s %s: file has %ju hard links",
		    cap, path, (uintmax_t)st.st_nlink);
		close(fd);
		return -1;
	}
	return fd;
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

static int
cap_fs_read(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply)
{
	size_t max = MW_FS_READ_MAX;
	if (A->n >= 2 && A->a[1].tag == MW_V_INT && A->a[1].i > 0 &&
	    (uint64_t)A->a[1].i < max)
		max = (size_t)A->a[1].i;
	int fd = open_beneath("fs.read", g->fs_read, g->n_fs_read, &A->a[0], O_RDONLY, 0, reply);
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

static int
cap_fs_tail(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply)
{
	int64_t lines = 10;
	if (A->n >= 2 && A->a[1].tag == MW_V_INT)
		lines = A->a[1].i;
	if (lines < 1 || lines > MAX_TAIL_LINES)
		return mw_cap_reply_error(reply, "fs.tail: line count must be 1..%d", MAX_TAIL_LINES);
	int fd = open_beneath("fs.read", g->fs_read, g->n_fs_read, &A->a[0], O_RDONLY, 0, reply);
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

static int
cap_fs_list(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply)
{
	int fd = open_beneath("fs.list", g->fs_read, g->n_fs_read, &A->a[0],
	    O_RDONLY | O_DIRECTORY, 0, reply);
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

static int
cap_fs_stat(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply)
{
	int fd = open_beneath("fs.stat", g->fs_read, g->n_fs_read, &A->a[0], O_PATH, 0, reply);
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

static int
cap_fs_write(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply)
{
	if (A->n < 2 || A->a[1].tag != MW_V_STRING)
		return mw_cap_reply_error(reply, "fs.write: data must be a string");
	if (A->a[1].slen > MW_FS_READ_MAX)
		return mw_cap_reply_error(reply, "fs.write: at most %u bytes per call", MW_FS_READ_MAX);
	bool append = A->n >= 3 && A->a[2].tag == MW_V_STRING && A->a[2].slen == 1 &&
	    A->a[2].s[0] == 'a';
	int fd = open_beneath("fs.write", g->fs_write, g->n_fs_write, &A->a[0],
	    O_WRONLY | O_CREAT | (append ? O_APPEND : 0), 0640, reply);
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
	if (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_int(reply, (int64_t)done))
		return -1;
	return 0;
}

/* ---- system facts ---- */

static int64_t
meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	int64_t v = -1;
	size_t kl = strlen(key);
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static int
cap_sys_info(struct mw_buf *reply)
{
	struct utsname u;
	struct sysinfo si;
	if (uname(&u) != 0 || sysinfo(&si) != 0)
		return mw_cap_reply_error(reply, "sys.info: %s", strerror(errno));
	double scale = 1.0 / (double)(1 << SI_LOAD_SHIFT);
	int64_t avail = meminfo_kb("MemAvailable");
	uint64_t unit = si.mem_unit ? si.mem_unit : 1;
	if (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_table(reply, 7) ||
	    put_cstr(reply, "hostname") || put_cstr(reply, u.nodename) ||
	    put_cstr(reply, "kernel") || put_cstr(reply, u.release) ||
	    put_cstr(reply, "machine") || put_cstr(reply, u.machine) ||
	    put_cstr(reply, "uptime") || put_int(reply, (int64_t)si.uptime) ||
	    put_cstr(reply, "cpus") || put_int(reply, sysconf(_SC_NPROCESSORS_ONLN)) ||
	    put_cstr(reply, "load") || put_table(reply, 3) ||
	    put_int(reply, 1) || put_num(reply, (double)si.loads[0] * scale) ||
	    put_int(reply, 2) || put_num(reply, (double)si.loads[1] * scale) ||
	    put_int(reply, 3) || put_num(reply, (double)si.loads[2] * scale) ||
	    put_cstr(reply, "memory") || put_table(reply, 3) ||
	    put_cstr(reply, "total") || put_int(reply, (int64_t)(si.totalram * unit)) ||
	    put_cstr(reply, "free") || put_int(reply, (int64_t)(si.freeram * unit)) ||
	    put_cstr(reply, "available") ||
	    put_int(reply, avail >= 0 ? avail * 1024 : (int64_t)(si.freeram * unit)))
		return -1;
	return 0;
}

static bool
real_fstype(const char *t)
{
	static const char *const pseudo[] = { "proc", "sysfs", "devtmpfs", "devpts",
		"cgroup", "cgroup2", "mqueue", "securityfs", "debugfs", "tracefs",
		"pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs",
		"binfmt_misc", "nsfs", "rpc_pipefs", "efivarfs", "ramfs", NULL };
	for (size_t i = 0; pseudo[i]; i++)
		if (strcmp(t, pseudo[i]) == 0)
			return false;
	return true;
}

static int
cap_sys_disk(struct mw_buf *reply)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	if (f == NULL)
		return mw_cap_reply_error(reply, "sys.disk: %s", strerror(errno));
	struct mw_buf rows;
	mw_buf_init(&rows, MW_MAX_WORKER_FRAME / 2);
	char line[4096], dev[1024], mnt[1024], type[64];
	uint32_t n = 0;
	while (fgets(line, sizeof(line), f) != NULL && n < 256) {
		if (sscanf(line, "%1023s %1023s %63s", dev, mnt, type) != 3 || !real_fstype(type))
			continue;
		struct statvfs sv;
		if (statvfs(mnt, &sv) != 0 || sv.f_blocks == 0)
			continue;
		uint64_t bs = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
		if (put_int(&rows, n + 1) || put_table(&rows, 5) ||
		    put_cstr(&rows, "mount") || put_cstr(&rows, mnt) ||
		    put_cstr(&rows, "type") || put_cstr(&rows, type) ||
		    put_cstr(&rows, "total") || put_int(&rows, (int64_t)(sv.f_blocks * bs)) ||
		    put_cstr(&rows, "free") || put_int(&rows, (int64_t)(sv.f_bfree * bs)) ||
		    put_cstr(&rows, "available") || put_int(&rows, (int64_t)(sv.f_bavail * bs)))
			break;
		n++;
	}
	fclose(f);
	int r = (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_table(reply, n) ||
	    mw_buf_put(reply, mw_buf_ptr(&rows), mw_buf_avail(&rows))) ? -1 : 0;
	mw_buf_free(&rows);
	return r;
}

/* ---- key-value store ---- */

struct mw_kv {
	sqlite3 *db;
};

int
mw_kv_open(const char *state_dir, struct mw_kv **out)
{
	char path[PATH_MAX];
	struct mw_kv *kv = calloc(1, sizeof(*kv));
	if (kv == NULL)
		return -1;
	if (snprintf(path, sizeof(path), "%s/kv.sqlite", state_dir) >= (int)sizeof(path) ||
	    sqlite3_open_v2(path, &kv->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(kv->db, "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=2000;"
	    "CREATE TABLE IF NOT EXISTS kv(scope TEXT NOT NULL, key TEXT NOT NULL,"
	    " value BLOB NOT NULL, PRIMARY KEY(scope, key)) WITHOUT ROWID;",
	    NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_close(kv->db);
		free(kv);
		return -1;
	}
	*out = kv;
	return 0;
}

void
mw_kv_close(struct mw_kv *kv)
{
	if (kv == NULL)
		return;
	sqlite3_close(kv->db);
	free(kv);
}

static int
kv_key(struct cap_args *A, const char *cap, struct mw_buf *reply)
{
	if (A->n < 1 || A->a[0].tag != MW_V_STRING || A->a[0].slen == 0 ||
	    A->a[0].slen > MW_KV_KEY_MAX) {
		mw_cap_reply_error(reply, "%s: key must be a string of 1..%d bytes", cap,
		    MW_KV_KEY_MAX);
		return -1;
	}
	return 0;
}

static int
cap_kv(const char *op, const struct mw_grants *g, struct mw_kv *kv,
    struct cap_args *A, struct mw_buf *reply)
{
	sqlite3_stmt *st = NULL;
	int r = 0;
	if (kv == NULL)
		return mw_cap_reply_error(reply, "kv.%s: the key-value store is unavailable", op);
	const char *scope = g->kv_scope;
	if (strcmp(op, "get") == 0) {
		if (kv_key(A, "kv.get", reply) != 0)
			return 0;
		if (sqlite3_prepare_v2(kv->db, "SELECT value FROM kv WHERE scope=?1 AND key=?2",
		    -1, &st, NULL) != SQLITE_OK)
			goto dberr;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW)
			r = reply_values1_str(reply, sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0));
		else if (s == SQLITE_DONE)
			r = reply_ok(reply, 0);
		else
			goto dberr;
	} else if (strcmp(op, "put") == 0) {
		if (kv_key(A, "kv.put", reply) != 0)
			return 0;
		if (A->n < 2 || A->a[1].tag != MW_V_STRING || A->a[1].slen > MW_KV_VALUE_MAX)
			return mw_cap_reply_error(reply, "kv.put: value must be a string of at most %u bytes",
			    MW_KV_VALUE_MAX);
		if (sqlite3_exec(kv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			goto dberr;
		if (sqlite3_prepare_v2(kv->db, "SELECT coalesce(sum(length(key)+length(value)),0)"
		    " FROM kv WHERE scope=?1 AND key<>?2", -1, &st, NULL) != SQLITE_OK)
			goto rollback;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW)
			goto rollback;
		int64_t used = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		st = NULL;
		if (used + (int64_t)A->a[0].slen + (int64_t)A->a[1].slen > MW_KV_SCOPE_QUOTA) {
			sqlite3_exec(kv->db, "ROLLBACK", NULL, NULL, NULL);
			return mw_cap_reply_error(reply, "kv.put: quota of %u bytes exceeded",
			    MW_KV_SCOPE_QUOTA);
		}
		if (sqlite3_prepare_v2(kv->db, "INSERT OR REPLACE INTO kv(scope,key,value)"
		    " VALUES(?1,?2,?3)", -1, &st, NULL) != SQLITE_OK)
			goto rollback;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, A->a[1].s, (int)A->a[1].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto rollback;
		sqlite3_finalize(st);
		st = NULL;
		if (sqlite3_exec(kv->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			goto rollback;
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_bool(reply, true)) ? -1 : 0;
	} else if (strcmp(op, "delete") == 0) {
		if (kv_key(A, "kv.delete", reply) != 0)
			return 0;
		if (sqlite3_prepare_v2(kv->db, "DELETE FROM kv WHERE scope=?1 AND key=?2",
		    -1, &st, NULL) != SQLITE_OK)
			goto dberr;
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, A->a[0].s, (int)A->a[0].slen, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto dberr;
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) ||
		    put_bool(reply, sqlite3_changes(kv->db) > 0)) ? -1 : 0;
	} else {	/* keys */
		struct mw_buf rows;
		uint32_t n = 0;
		mw_buf_init(&rows, MW_MAX_WORKER_FRAME / 2);
		if (sqlite3_prepare_v2(kv->db, "SELECT key FROM kv WHERE scope=?1 ORDER BY key",
		    -1, &st, NULL) != SQLITE_OK) {
			mw_buf_free(&rows);
			goto dberr;
		}
		sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			if (put_int(&rows, n + 1) || put_str(&rows, sqlite3_column_blob(st, 0),
			    (size_t)sqlite3_column_bytes(st, 0)))
				break;
			n++;
		}
		r = (reply_ok(reply, 1) || put_ret_index(reply, 1) || put_table(reply, n) ||
		    mw_buf_put(reply, mw_buf_ptr(&rows), mw_buf_avail(&rows))) ? -1 : 0;
		mw_buf_free(&rows);
	}
	sqlite3_finalize(st);
	return r;
rollback:
	sqlite3_exec(kv->db, "ROLLBACK", NULL, NULL, NULL);
dberr:
	sqlite3_finalize(st);
	return mw_cap_reply_error(reply, "kv.%s: storage error: %s", op, sqlite3_errmsg(kv->db));
}

/* ---- commands ---- */

/*
 * A command never runs as the supervisor's direct child.  The supervisor
 * forks a reaper, which becomes a child subreaper in its own session and
 * forks the command.  Whatever the command leaves behind -- background
 * children, double-forked daemons, processes that called setsid() to leave
 * the process group -- is reparented to the reaper, not to init.  When the
 * command exits, or the reaper gets SIGTERM (timeout, job end, supervisor
 * death), the reaper SIGKILLs every process it still has until none is left,
 * and only then exits, with the command's own status (or SIGKILL when it was
 * stopped).  So when the supervisor reaps the reaper, the command's whole
 * tree is gone and its pipes are at end of file.
 */

/* SIGKILLs every live child of the reaper; returns how many it signalled. */
static int
kill_children(pid_t self)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[64], buf[512], *end;
		long pid = strtol(de->d_name, &end, 10);
		if (pid <= 0 || *end != '\0')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = '\0';
		/* "pid (comm) state ppid ...": comm may contain anything, so
		 * parse from the last ')'. */
		char *rp = strrchr(buf, ')');
		char state;
		int ppid;
		if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
			continue;
		/* Only our own children: their pid cannot be reused before we
		 * wait for them, so the signal cannot hit a stranger. */
		if (ppid == (int)self && state != 'Z' && kill((pid_t)pid, SIGKILL) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void __attribute__((noreturn))
command_reaper(char **argv, int outw, int errw)
{
	static char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", NULL };
	sigset_t wait_for, none;
	struct rlimit nocore = { 0, 0 };
	pid_t self = getpid();

	/* SIGTERM is blocked (by the supervisor, before fork); SIGCHLD too
	 * (for its signalfd).  Both stay blocked: sigwaitinfo takes them. */
	sigemptyset(&wait_for);
	sigaddset(&wait_for, SIGTERM);
	sigaddset(&wait_for, SIGCHLD);
	sigemptyset(&none);
	if (sigprocmask(SIG_BLOCK, &wait_for, NULL) != 0 ||
	    signal(SIGCHLD, SIG_DFL) == SIG_ERR ||
	    setsid() < 0 ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 ||
	    setrlimit(RLIMIT_CORE, &nocore) != 0)
		_exit(126);
	if (getppid() == 1)
		_exit(126);	/* the supervisor died before PDEATHSIG was set */
	pid_t cmd = fork();
	if (cmd < 0)
		_exit(126);
	if (cmd == 0) {
		if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
			_exit(126);
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				signal(s, SIG_DFL);
		mw_confine_command_child();
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null < 0 || dup2(null, 0) != 0 || dup2(outw, 1) != 1 ||
		    dup2(errw, 2) != 2)
			_exit(126);
		syscall(SYS_close_range, 3, ~0U, 0);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	/* Nothing of the supervisor's stays open here: sockets, kv store,
	 * and the pipes' write ends (only the command's tree holds those). */
	syscall(SYS_close_range, 3, ~0U, 0);

	int cstatus = 0;
	bool cdone = false, stopped = false;
	while (!cdone && !stopped) {
		int st;
		pid_t p = waitpid(cmd, &st, WNOHANG);
		if (p == cmd) {
			cstatus = st;
			cdone = true;
			break;
		}
		if (p < 0 && errno != EINTR)
			break;
		int sig = sigwaitinfo(&wait_for, NULL);
		if (sig == SIGTERM)
			stopped = true;
		else if (sig < 0 && errno != EINTR)
			stopped = true;
	}
	/* Kill the whole tree: children first, their orphans arrive here. */
	for (;;) {
		int st;
		pid_t p;
		int killed = kill_children(self);
		while ((p = waitpid(-1, &st, WNOHANG)) > 0)
			if (p == cmd && !cdone) {
				cstatus = st;
				cdone = true;
			}
		if (p < 0 && errno == ECHILD)
			break;
		if (killed < 0)
			kill(-cmd, SIGKILL);	/* no /proc: the group at least */
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	if (stopped || !cdone || WIFSIGNALED(cstatus)) {
		int sig = (!stopped && cdone) ? WTERMSIG(cstatus) : SIGKILL;
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, sig);
		signal(sig, SIG_DFL);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		kill(self, sig);
		kill(self, SIGKILL);	/* a signal whose default is to ignore */
	}
	_exit(WEXITSTATUS(cstatus));
}


static int
cap_exec(const struct mw_grants *g, struct cap_args *A, struct mw_buf *reply,
    struct mw_cap_async *async, uint64_t now, uint64_t wall_deadline, uint32_t calls)
{
	if (A->n < 1 || A->a[0].tag != MW_V_STRING)
		return mw_cap_reply_error(reply, "exec.run: command name must be a string");
	const struct mw_command_grant *c = NULL;
	for (uint32_t i = 0; i < g->n_commands; i++)
		if (strlen(g->commands[i].name) == A->a[0].slen &&
		    memcmp(g->commands[i].name, A->a[0].s, A->a[0].slen) == 0)
			c = &g->commands[i];
	if (c == NULL)
		return mw_cap_reply_error(reply, "capability denied: exec.run %.*s: command not granted",
		    (int)(A->a[0].slen > 64 ? 64 : A->a[0].slen), A->a[0].s);
	if (calls >= MAX_EXEC_CALLS)
		return mw_cap_reply_error(reply, "capability denied: exec.run %s: more than %d commands in one job",
		    c->name, MAX_EXEC_CALLS);
	const struct cap_arg *extra = A->n >= 2 ? &A->a[1] : NULL;
	unsigned nextra = 0;
	if (extra != NULL && extra->tag != MW_V_NIL) {
		if (extra->tag != MW_V_TABLE || extra->list_bad)
			return mw_cap_reply_error(reply, "exec.run %s: arguments must be a list of strings",
			    c->name);
		nextra = extra->nlist;
	}
	if (nextra > c->max_args)
		return mw_cap_reply_error(reply, "capability denied: exec.run %s: %u extra arguments, %u allowed",
		    c->name, nextra, c->max_args);
	/* Arguments in key order 1..n, each without NUL. */
	char *argv[64 + MAX_ARGS + 2];
	if (c->argc > 64)
		return mw_cap_reply_error(reply, "exec.run %s: argv too long", c->name);
	uint32_t ac = 0;
	for (; ac < c->argc; ac++)
		argv[ac] = c->argv[ac];
	char *owned[MAX_ARGS + 1] = { 0 };
	for (unsigned k = 1; k <= nextra; k++) {
		unsigned found = nextra;
		for (unsigned j = 0; j < nextra; j++)
			if (extra->list_key[j] == (int64_t)k)
				found = j;
		if (found == nextra || memchr(extra->list[found], '\0', extra->list_len[found])) {
			for (unsigned j = 0; j < k - 1; j++)
				free(owned[j]);
			return mw_cap_reply_error(reply, "exec.run %s: arguments must be a sequence of strings without NUL",
			    c->name);
		}
		owned[k - 1] = strndup((const char *)extra->list[found], extra->list_len[found]);
		argv[ac++] = owned[k - 1];
	}
	argv[ac] = NULL;

	int outp[2], errp[2];
	if (pipe2(outp, O_CLOEXEC | O_NONBLOCK) != 0) {
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(errno));
	}
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) != 0) {
		close(outp[0]);
		close(outp[1]);
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(errno));
	}
	/* SIGTERM stays blocked in the reaper until it waits for it. */
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &term, &old) != 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		for (unsigned j = 0; j < nextra; j++)
			free(owned[j]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(e));
	}
	pid_t pid = fork();
	if (pid == 0)
		command_reaper(argv, outp[1], errp[1]);
	int fork_errno = errno;
	if (sigprocmask(SIG_SETMASK, &old, NULL) != 0 && pid > 0) {
		fork_errno = errno;
		kill(pid, SIGTERM);	/* it cleans up; reap_children collects it */
		pid = -1;
	}
	for (unsigned j = 0; j < nextra; j++)
		free(owned[j]);
	close(outp[1]);
	close(errp[1]);
	if (pid < 0) {
		close(outp[0]);
		close(errp[0]);
		return mw_cap_reply_error(reply, "exec.run %s: %s", c->name, strerror(fork_errno));
	}
	memset(async, 0, sizeof(*async));
	async->kind = MW_ASYNC_EXEC;
	async->pid = pid;
	async->out_fd = outp[0];
	async->err_fd = errp[0];
	async->cap_bytes = c->output_bytes ? c->output_bytes : 64 * 1024;
	if (async->cap_bytes > MW_MAX_WORKER_FRAME / 4)
		async->cap_bytes = MW_MAX_WORKER_FRAME / 4;
	mw_buf_init(&async->out, async->cap_bytes);
	mw_buf_init(&async->err, async->cap_bytes);
	uint64_t t = c->timeout_ms ? c->timeout_ms : 5000;
	async->deadline_us = now + t * 1000u;
	if (async->deadline_us > wall_deadline)
		async->deadline_us = wall_deadline;
	return 1;
}

int
mw_cap_finish(struct mw_cap_async *a, struct mw_buf *reply)
{
	int r = 0;
	if (a->kind == MW_ASYNC_SLEEP) {
		r = reply_ok(reply, 0);
	} else if (a->kind == MW_ASYNC_EXEC) {
		int st = a->wstatus;
		bool exited = WIFEXITED(st), sig = WIFSIGNALED(st);
		if (reply_ok(reply, 1) || put_ret_index(reply, 1) ||
		    put_table(reply, 5) ||
		    put_cstr(reply, exited ? "code" : "signal") ||
		    put_int(reply, exited ? WEXITSTATUS(st) : sig ? WTERMSIG(st) : -1) ||
		    put_cstr(reply, "stdout") || put_str(reply, mw_buf_ptr(&a->out), mw_buf_avail(&a->out)) ||
		    put_cstr(reply, "stderr") || put_str(reply, mw_buf_ptr(&a->err), mw_buf_avail(&a->err)) ||
		    put_cstr(reply, "timed_out") || put_bool(reply, a->timed_out) ||
		    put_cstr(reply, "truncated") || put_bool(reply, a->out_trunc || a->err_trunc))
			r = -1;
	}
	mw_cap_async_abort(a);
	return r;
}

void
mw_cap_async_abort(struct mw_cap_async *a)
{
	if (a->kind == MW_ASYNC_EXEC) {
		if (a->pid > 0)
			kill(a->pid, SIGTERM);	/* its reaper kills the whole tree */
		if (a->out_fd >= 0)
			close(a->out_fd);
		if (a->err_fd >= 0)
			close(a->err_fd);
		mw_buf_free(&a->out);
		mw_buf_free(&a->err);
	}
	memset(a, 0, sizeof(*a));
	a->kind = MW_ASYNC_NONE;
	a->out_fd = a->err_fd = -1;
}

/* ---- dispatch ---- */

int
mw_cap_dispatch(const struct mw_grants *g, struct mw_kv *kv, struct mw_buf *call,
    struct mw_buf *reply, struct mw_cap_async *async, uint64_t now_us,
    uint64_t wall_deadline_us, uint32_t exec_calls)
{
	char *name = NULL;
	struct cap_args A;
	struct mw_value_limits lim = { 4, 4 * (MAX_ARGS + 2) * (MAX_ARGS + 2) };
	memset(&A, 0, sizeof(A));
	if (mw_buf_get_cstring(call, &name, 32) != 0)
		return -1;
	if (mw_value_walk(call, &lim, args_visit, &A) != 0 || mw_buf_avail(call) != 0) {
		int r = mw_cap_reply_error(reply, "%s: too many or malformed arguments", name);
		free(name);
		return r;
	}
	int r;
	const char *dot = strchr(name, '.');
	bool fs = strncmp(name, "fs.", 3) == 0;
	if (fs && A.n < 1) {
		r = mw_cap_reply_error(reply, "%s: path argument missing", name);
	} else if (strcmp(name, "fs.read") == 0) {
		r = cap_fs_read(g, &A, reply);
	} else if (strcmp(name, "fs.tail") == 0) {
		r = cap_fs_tail(g, &A, reply);
	} else if (strcmp(name, "fs.list") == 0) {
		r = cap_fs_list(g, &A, reply);
	} else if (strcmp(name, "fs.stat") == 0) {
		r = cap_fs_stat(g, &A, reply);
	} else if (strcmp(name, "fs.write") == 0) {
		r = cap_fs_write(g, &A, reply);
	} else if (strcmp(name, "sys.info") == 0 || strcmp(name, "sys.disk") == 0) {
		if (!g->sys)
			r = mw_cap_reply_error(reply, "capability denied: %s: sys not granted", name);
		else
			r = name[4] == 'i' ? cap_sys_info(reply) : cap_sys_disk(reply);
	} else if (strncmp(name, "kv.", 3) == 0 && dot != NULL &&
	    (strcmp(dot + 1, "get") == 0 || strcmp(dot + 1, "put") == 0 ||
	    strcmp(dot + 1, "delete") == 0 || strcmp(dot + 1, "keys") == 0)) {
		if (!g->kv || g->kv_scope == NULL)
			r = mw_cap_reply_error(reply, "capability denied: %s: kv not granted", name);
		else
			r = cap_kv(dot + 1, g, kv, &A, reply);
	} else if (strcmp(name, "exec.run") == 0) {
		r = cap_exec(g, &A, reply, async, now_us, wall_deadline_us, exec_calls);
	} else if (strcmp(name, "sleep") == 0) {
		double secs = A.n >= 1 ? (A.a[0].tag == MW_V_INT ? (double)A.a[0].i :
		    A.a[0].tag == MW_V_NUMBER ? A.a[0].n : -1) : -1;
		if (g->sleep_max_ms == 0)
			r = mw_cap_reply_error(reply, "capability denied: sleep: not granted");
		else if (!(secs >= 0) || secs * 1000.0 > (double)g->sleep_max_ms)
			r = mw_cap_reply_error(reply, "capability denied: sleep %g: granted maximum is %u ms",
			    secs, g->sleep_max_ms);
		else {
			memset(async, 0, sizeof(*async));
			async->kind = MW_ASYNC_SLEEP;
			async->out_fd = async->err_fd = -1;
			async->deadline_us = now_us + (uint64_t)(secs * 1e6);
			r = 1;
		}
	} else {
		r = mw_cap_reply_error(reply, "capability denied: %.32s: no such capability", name);
	}
	free(name);
	return r;
}
