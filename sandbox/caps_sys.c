/*
 * caps_sys.c: sys.info and sys.disk -- read-only facts about the host.
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

int
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
sys_disk_collect(struct mw_buf *reply)
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


/*
 * statvfs() of a hung network mount does not return, and the supervisor's
 * loop must never wait on the host.  So sys.disk runs in a short-lived
 * helper child that writes the finished reply payload to a pipe; the
 * supervisor collects it like a command's output, and answers with an
 * error when the helper has not finished within SYS_DISK_TIMEOUT_MS (the
 * helper is killed; a job never waits longer than that or its own wall
 * limit).
 */
#define SYS_DISK_TIMEOUT_MS 2000

int
cap_sys_disk(struct mw_buf *reply, struct mw_cap_async *async, uint64_t now,
    uint64_t wall_deadline)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
		return mw_cap_reply_error(reply, "sys.disk: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return mw_cap_reply_error(reply, "sys.disk: %s", strerror(e));
	}
	if (pid == 0) {
		struct mw_buf out;
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
			_exit(1);
		if (p[1] != 3 && (dup2(p[1], 3) != 3))
			_exit(1);
		if (syscall(SYS_close_range, 4, ~0U, 0) != 0)
			_exit(1);
		int fl = fcntl(3, F_GETFL);
		if (fl < 0 || fcntl(3, F_SETFL, fl & ~O_NONBLOCK) != 0)
			_exit(1);
		mw_buf_init(&out, MW_MAX_WORKER_FRAME / 2);
		if (sys_disk_collect(&out) != 0 || mw_buf_drain_fd(&out, 3) != 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	memset(async, 0, sizeof(*async));
	async->kind = MW_ASYNC_HELPER;
	async->pid = pid;
	async->out_fd = p[0];
	async->err_fd = -1;
	async->cap_bytes = MW_MAX_WORKER_FRAME / 2;
	mw_buf_init(&async->out, async->cap_bytes);
	mw_buf_init(&async->err, 0);
	snprintf(async->what, sizeof(async->what), "sys.disk");
	async->deadline_us = now + SYS_DISK_TIMEOUT_MS * 1000ull;
	if (async->deadline_us > wall_deadline)
		async->deadline_us = wall_deadline;
	return 1;
}
