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

#include "sandbox/caps_int.h"

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


/* ---- dispatch ---- */

int
mw_cap_dispatch(const struct mw_cap_ctx *ctx, struct mw_buf *call, struct mw_buf *reply,
    struct mw_cap_async *async)
{
	const struct mw_grants *g = ctx->grants;
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
		r = cap_fs_read(ctx, &A, reply);
	} else if (strcmp(name, "fs.tail") == 0) {
		r = cap_fs_tail(ctx, &A, reply);
	} else if (strcmp(name, "fs.list") == 0) {
		r = cap_fs_list(ctx, &A, reply);
	} else if (strcmp(name, "fs.stat") == 0) {
		r = cap_fs_stat(ctx, &A, reply);
	} else if (strcmp(name, "fs.write") == 0) {
		r = cap_fs_write(ctx, &A, reply);
	} else if (strcmp(name, "sys.info") == 0 || strcmp(name, "sys.disk") == 0) {
		if (!g->sys)
			r = mw_cap_reply_error(reply, "capability denied: %s: sys not granted", name);
		else if (name[4] == 'i')
			r = cap_sys_info(reply);
		else
			r = cap_sys_disk(reply, async, ctx->now_us, ctx->wall_deadline_us);
	} else if (strncmp(name, "kv.", 3) == 0 && dot != NULL &&
	    (strcmp(dot + 1, "get") == 0 || strcmp(dot + 1, "put") == 0 ||
	    strcmp(dot + 1, "delete") == 0 || strcmp(dot + 1, "keys") == 0)) {
		if (!g->kv || g->kv_scope == NULL)
			r = mw_cap_reply_error(reply, "capability denied: %s: kv not granted", name);
		else
			r = cap_kv(dot + 1, g, ctx->kv, &A, reply);
	} else if (strcmp(name, "exec.run") == 0) {
		r = cap_exec(ctx, &A, reply, async);
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
			async->deadline_us = ctx->now_us + (uint64_t)(secs * 1e6);
			r = 1;
		}
	} else {
		r = mw_cap_reply_error(reply, "capability denied: %.32s: no such capability", name);
	}
	free(name);
	return r;
}
