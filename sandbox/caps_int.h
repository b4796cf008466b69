/*
 * caps_int.h: what the capability files (caps*.c) share: the parsed
 * arguments of one request, the reply builders and the handlers that
 * caps.c dispatches to.  Private to sandbox/.
 */
#ifndef MW_CAPS_INT_H
#define MW_CAPS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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


/* ---- reply building: ok, then an array of return values ---- */

static inline int put_str(struct mw_buf *r, const void *s, size_t n)
{
	int e = mw_buf_put_u8(r, MW_V_STRING);
	return e ? e : mw_buf_put_string(r, s, n);
}
static inline int put_cstr(struct mw_buf *r, const char *s) { return put_str(r, s, strlen(s)); }
static inline int put_int(struct mw_buf *r, int64_t v)
{
	int e = mw_buf_put_u8(r, MW_V_INT);
	return e ? e : mw_buf_put_u64(r, (uint64_t)v);
}
static inline int put_num(struct mw_buf *r, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	int e = mw_buf_put_u8(r, MW_V_NUMBER);
	return e ? e : mw_buf_put_u64(r, u);
}
static inline int put_bool(struct mw_buf *r, bool b) { return mw_buf_put_u8(r, b ? MW_V_TRUE : MW_V_FALSE); }
static inline int put_table(struct mw_buf *r, uint32_t n)
{
	int e = mw_buf_put_u8(r, MW_V_TABLE);
	return e ? e : mw_buf_put_u32(r, n);
}
/* ok, then an array of nret return values follows (caller puts them with
 * put_ret_index before each). */
static inline int reply_ok(struct mw_buf *r, uint32_t nret)
{
	mw_buf_reset(r);
	int e = mw_buf_put_u8(r, 1);
	return e ? e : put_table(r, nret);
}
static inline int put_ret_index(struct mw_buf *r, int64_t i) { return put_int(r, i); }

static inline int
reply_values1_str(struct mw_buf *r, const void *s, size_t n)
{
	if (reply_ok(r, 1) || put_ret_index(r, 1) || put_str(r, s, n))
		return -1;
	return 0;
}


int cap_fs_read(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply);
int cap_fs_tail(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply);
int cap_fs_list(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply);
int cap_fs_stat(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply);
int cap_fs_write(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply);
int cap_sys_info(struct mw_buf *reply);
int cap_sys_disk(struct mw_buf *reply, struct mw_cap_async *async, uint64_t now,
    uint64_t wall_deadline);
int cap_kv(const char *op, const struct mw_grants *g, struct mw_kv *kv,
    struct cap_args *A, struct mw_buf *reply);
int cap_exec(const struct mw_cap_ctx *c, struct cap_args *A, struct mw_buf *reply,
    struct mw_cap_async *async);

#endif
