/*
 * worker.c: the Lua 5.4 runtime inside a confined worker.
 *
 * A worker serves exactly one job and then _exits.  By the time this code
 * runs, confine.c has left it with one descriptor (its socket, fd 3), no
 * environment, an unprivileged uid and a seccomp filter that allows little
 * more than reading and writing that socket.  What it adds is the Lua side:
 *
 *  - a capped allocator: the first allocation over the job's memory limit
 *    ends the job with memory_limit (sticky: no pcall can catch it);
 *  - a count hook: crossing the instruction or CPU limit ends the job from
 *    inside the hook, so a loop wrapped in pcall cannot swallow it;
 *  - text-only chunks, no io/package/require/debug/dofile/loadfile, no
 *    string.dump, os reduced to clock/date/difftime/time;
 *  - print captured under the output limit;
 *  - capability functions (fs, exec, sys, kv, sleep) that only send a
 *    request to the supervisor and wait for its answer.
 *
 * Invariant: lua_close is never called.  It would run the script's __gc
 * and __close handlers after the limits stopped applying; _exit instead.
 */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sandbox/sandbox_int.h"

#define HOOK_STEP 1000u
/* How long after the job's wall limit the worker ends itself. */
#define WALL_GRACE_US 250000u
#define CPU_CHECK_EVERY 8u
/* Longest error message sent; the supervisor refuses more than 4096 bytes. */
#define ERROR_MAX 4000u

static struct {
	lua_State *L;
	int fd;
	size_t mem_used, mem_peak, mem_limit;
	uint64_t mem_job_limit;	/* the job's own limit, for messages */
	uint64_t instructions, instr_limit;
	unsigned hook_calls, hook_step;
	uint64_t cpu_start_us, cpu_limit_us;
	uint32_t output_limit, output_total;
	uint32_t result_bytes, result_depth;
	bool running;
	struct mw_buf pending;	/* print output not yet sent */
	struct mw_buf io;	/* frame being written */
	struct mw_buf in;	/* frame being read */
} W;

static uint64_t
cpu_now_us(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
send_frame_or_die(void)
{
	if (mw_buf_drain_fd(&W.io, W.fd) != 0)
		_exit(1);	/* the supervisor is gone; nobody to tell */
}

static void
flush_output(void)
{
	size_t start;
	while (mw_buf_avail(&W.pending) > 0) {
		size_t n = mw_buf_avail(&W.pending);
		if (n > MW_OUTPUT_CHUNK)
			n = MW_OUTPUT_CHUNK;
		mw_buf_reset(&W.io);
		if (mw_frame_begin(&W.io, MW_F_OUTPUT, &start) != 0 ||
		    mw_buf_put(&W.io, mw_buf_ptr(&W.pending), n) != 0 ||
		    mw_frame_end(&W.io, start) != 0)
			_exit(1);
		send_frame_or_die();
		mw_buf_skip(&W.pending, n);
	}
	mw_buf_reset(&W.pending);
}

/* Ends the job: the last frame this worker ever writes. */
static void __attribute__((noreturn))
finish(enum mw_job_status st, const char *err, const struct mw_buf *values)
{
	size_t start, errlen = err ? strlen(err) : 0;
	char cut[ERROR_MAX + 4];
	if (errlen > ERROR_MAX) {
		/* error(("x"):rep(1e6)) is a runtime error, not a protocol
		 * error: cut it on a UTF-8 character boundary and mark it. */
		size_t n = ERROR_MAX;
		while (n > 0 && ((unsigned char)err[n] & 0xC0) == 0x80)
			n--;
		memcpy(cut, err, n);
		memcpy(cut + n, "...", 4);
		err = cut;
		errlen = n + 3;
	}
	flush_output();
	mw_buf_reset(&W.io);
	if (mw_frame_begin(&W.io, MW_F_DONE, &start) != 0 ||
	    mw_buf_put_u8(&W.io, (uint8_t)st) != 0 ||
	    mw_buf_put_string(&W.io, err ? err : "", errlen) != 0 ||
	    mw_buf_put_string(&W.io, values ? mw_buf_ptr(values) : NULL,
	    values ? mw_buf_avail(values) : 0) != 0 ||
	    mw_buf_put_u64(&W.io, W.instructions) != 0 ||
	    mw_buf_put_u64(&W.io, W.mem_peak) != 0 ||
	    mw_buf_put_u64(&W.io, cpu_now_us() - W.cpu_start_us) != 0 ||
	    mw_frame_end(&W.io, start) != 0)
		_exit(1);
	send_frame_or_die();
	_exit(0);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
finishf(enum mw_job_status st, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	finish(st, msg, NULL);
}

static void *
capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	if (ptr == NULL)
		osize = 0;	/* osize is an object type then, not a size */
	if (nsize == 0) {
		free(ptr);
		W.mem_used -= osize;
		return NULL;
	}
	if (nsize > osize && W.mem_used + (nsize - osize) > W.mem_limit) {
		if (W.running)
			finishf(MW_JOB_MEMORY_LIMIT, "memory limit exceeded (%llu bytes)",
			    (unsigned long long)W.mem_job_limit);
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (p == NULL) {
		if (W.running)
			finishf(MW_JOB_MEMORY_LIMIT, "memory limit exceeded "
			    "(allocation of %zu bytes failed)", nsize);
		return NULL;
	}
	W.mem_used = W.mem_used - osize + nsize;
	if (W.mem_used > W.mem_peak)
		W.mem_peak = W.mem_used;
	return p;
}

static void
count_hook(lua_State *L, lua_Debug *ar)
{
	(void)L;
	(void)ar;
	W.instructions += W.hook_step;
	if (W.instructions >= W.instr_limit)
		finishf(MW_JOB_INSTRUCTION_LIMIT,
		    "instruction limit exceeded (%llu instructions)",
		    (unsigned long long)W.instr_limit);
	if (++W.hook_calls % CPU_CHECK_EVERY == 0 &&
	    cpu_now_us() - W.cpu_start_us > W.cpu_limit_us)
		finishf(MW_JOB_CPU_LIMIT, "cpu time limit exceeded (%llu ms)",
		    (unsigned long long)(W.cpu_limit_us / 1000));
}

/* ---- Lua values <-> value tree ---- */

struct enc_state {
	struct mw_buf *b;
	unsigned max_depth;
	const char *what;	/* "return value" or "argument" */
	char err[160];
	enum mw_job_status err_status;
};

static int
encode_value(lua_State *L, int idx, struct enc_state *st, unsigned depth)
{
	int r = 0;
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		r = mw_buf_put_u8(st->b, MW_V_NIL);
		break;
	case LUA_TBOOLEAN:
		r = mw_buf_put_u8(st->b, lua_toboolean(L, idx) ? MW_V_TRUE : MW_V_FALSE);
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			if ((r = mw_buf_put_u8(st->b, MW_V_INT)) == 0)
				r = mw_buf_put_u64(st->b, (uint64_t)lua_tointeger(L, idx));
		} else {
			double d = lua_tonumber(L, idx);
			uint64_t u;
			memcpy(&u, &d, sizeof(u));
			if ((r = mw_buf_put_u8(st->b, MW_V_NUMBER)) == 0)
				r = mw_buf_put_u64(st->b, u);
		}
		break;
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		if ((r = mw_buf_put_u8(st->b, MW_V_STRING)) == 0)
			r = mw_buf_put_string(st->b, s, n);
		break;
	}
	case LUA_TTABLE: {
		if (depth >= st->max_depth) {
			snprintf(st->err, sizeof(st->err), "%s nested deeper than %u levels",
			    st->what, st->max_depth);
			return -1;
		}
		/* Cycle check: tables on the current path live in a registry set. */
		if (!lua_checkstack(L, 6))
			return -1;
		lua_rawgetp(L, LUA_REGISTRYINDEX, &W);
		lua_pushvalue(L, idx);
		if (lua_rawget(L, -2) != LUA_TNIL) {
			lua_pop(L, 2);
			snprintf(st->err, sizeof(st->err), "%s contains a cycle", st->what);
			return -1;
		}
		lua_pop(L, 1);
		lua_pushvalue(L, idx);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
		lua_pop(L, 1);

		uint32_t count = 0;
		size_t at = st->b->len + 1;
		if ((r = mw_buf_put_u8(st->b, MW_V_TABLE)) != 0 ||
		    (r = mw_buf_put_u32(st->b, 0)) != 0)
			break;
		lua_pushnil(L);
		while (lua_next(L, idx) != 0) {	/* raw: no __pairs, no __index */
			if (encode_value(L, -2, st, depth + 1) != 0 ||
			    encode_value(L, -1, st, depth + 1) != 0)
				return -1;
			lua_pop(L, 1);
			count++;
		}
		if ((r = mw_buf_poke_u32(st->b, at, count)) != 0)
			break;
		lua_rawgetp(L, LUA_REGISTRYINDEX, &W);
		lua_pushvalue(L, idx);
		lua_pushnil(L);
		lua_rawset(L, -3);
		lua_pop(L, 1);
		break;
	}
	default: {
		/* Functions, userdata, threads: their type name, never __tostring. */
		char tmp[32];
		int n = snprintf(tmp, sizeof(tmp), "<%s>", luaL_typename(L, idx));
		if ((r = mw_buf_put_u8(st->b, MW_V_STRING)) == 0)
			r = mw_buf_put_string(st->b, tmp, (size_t)n);
		break;
	}
	}
	if (r == MW_WIRE_ETOOBIG) {
		snprintf(st->err, sizeof(st->err), "%s larger than %zu bytes",
		    st->what, st->b->max);
		return -1;
	}
	if (r != 0) {
		snprintf(st->err, sizeof(st->err), "cannot encode %s: %s", st->what,
		    mw_wire_strerror(r));
		return -1;
	}
	return 0;
}

/* Encodes stack values [first, last] as an array table. */
static int
encode_array(lua_State *L, int first, int last, struct enc_state *st)
{
	uint32_t n = last >= first ? (uint32_t)(last - first + 1) : 0;
	if (mw_buf_put_u8(st->b, MW_V_TABLE) != 0 || mw_buf_put_u32(st->b, n) != 0)
		goto big;
	for (int i = first; i <= last; i++) {
		if (mw_buf_put_u8(st->b, MW_V_INT) != 0 ||
		    mw_buf_put_u64(st->b, (uint64_t)(i - first + 1)) != 0)
			goto big;
		if (encode_value(L, i, st, 1) != 0)
			return -1;
	}
	return 0;
big:
	snprintf(st->err, sizeof(st->err), "%s larger than %zu bytes", st->what,
	    st->b->max);
	return -1;
}

struct dec_state {
	lua_State *L;
};

static int
decode_visit(const struct mw_value_event *ev, void *arg)
{
	lua_State *L = ((struct dec_state *)arg)->L;
	if (!lua_checkstack(L, 4))
		return MW_WIRE_ENOMEM;
	if (!ev->end) {
		switch (ev->tag) {
		case MW_V_NIL: lua_pushnil(L); break;
		case MW_V_FALSE: lua_pushboolean(L, 0); break;
		case MW_V_TRUE: lua_pushboolean(L, 1); break;
		case MW_V_INT: lua_pushinteger(L, ev->i); break;
		case MW_V_NUMBER: lua_pushnumber(L, ev->n); break;
		case MW_V_STRING: lua_pushlstring(L, (const char *)ev->s, ev->slen); break;
		case MW_V_TABLE:
			lua_createtable(L, 0, (int)(ev->count > 64 ? 64 : ev->count));
			return 0;	/* completes at its end event */
		}
	}
	/* A value is complete: store it into its table when it is a value. */
	if (ev->depth > 0 && !ev->is_key) {
		if (lua_isnil(L, -2))
			return MW_WIRE_EFORMAT;
		lua_rawset(L, -3);
	}
	return 0;
}

/* ---- capabilities: requests to the supervisor ---- */

static int
cap_call(lua_State *L)
{
	const char *name = lua_tostring(L, lua_upvalueindex(1));
	struct mw_buf args;
	struct enc_state st = { .what = "argument", .max_depth = 8 };
	size_t start;
	uint8_t type, ok;
	struct mw_buf payload;
	int top = lua_gettop(L);

	mw_buf_init(&args, MW_MAX_WORKER_FRAME - 4096);
	st.b = &args;
	if (encode_array(L, 1, top, &st) != 0) {
		mw_buf_free(&args);
		return luaL_error(L, "%s: %s", name, st.err);
	}
	flush_output();	/* keep print and capability effects in order */
	mw_buf_reset(&W.io);
	if (mw_frame_begin(&W.io, MW_F_CAP_CALL, &start) != 0 ||
	    mw_buf_put_cstring(&W.io, name) != 0 ||
	    mw_buf_put(&W.io, mw_buf_ptr(&args), mw_buf_avail(&args)) != 0 ||
	    mw_frame_end(&W.io, start) != 0) {
		mw_buf_free(&args);
		return luaL_error(L, "%s: request too large", name);
	}
	mw_buf_free(&args);
	send_frame_or_die();

	if (mw_frame_read_fd(W.fd, &W.in, MW_MAX_WORKER_FRAME, &type, &payload) != 0 ||
	    type != MW_F_CAP_REPLY || mw_buf_get_u8(&payload, &ok) != 0)
		_exit(1);
	if (!ok) {
		const uint8_t *msg;
		size_t n;
		if (mw_buf_get_string_direct(&payload, &msg, &n) != 0)
			_exit(1);
		lua_pushlstring(L, (const char *)msg, n);
		luaL_where(L, 1);
		lua_insert(L, -2);
		lua_concat(L, 2);
		return lua_error(L);
	}
	struct mw_value_limits lim = { MW_VALUE_MAX_DEPTH, MW_VALUE_MAX_ITEMS };
	struct dec_state ds = { L };
	/* The reply is an array of return values: unpack it. */
	if (mw_value_walk(&payload, &lim, decode_visit, &ds) != 0 ||
	    !lua_istable(L, -1))
		_exit(1);
	int t = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, t);
	if (n > 16 || !lua_checkstack(L, (int)n + 1))
		_exit(1);
	for (lua_Integer i = 1; i <= n; i++)
		lua_rawgeti(L, t, i);
	lua_remove(L, t);
	return (int)n;
}

static void
register_caps(lua_State *L, const char *lib, const char *const *fns)
{
	char full[64];
	if (lib != NULL)
		lua_newtable(L);
	for (size_t i = 0; fns[i] != NULL; i++) {
		snprintf(full, sizeof(full), "%s%s%s", lib ? lib : "", lib ? "." : "",
		    fns[i]);
		lua_pushstring(L, full);
		lua_pushcclosure(L, cap_call, 1);
		if (lib != NULL)
			lua_setfield(L, -2, fns[i]);
		else
			lua_setglobal(L, fns[i]);
	}
	if (lib != NULL)
		lua_setglobal(L, lib);
}

/* ---- the standard library, reduced ---- */

static int
capture_print(lua_State *L)
{
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++) {
		size_t len;
		const char *s = luaL_tolstring(L, i, &len);
		if (i > 1 && mw_buf_put(&W.pending, "\t", 1) != 0)
			finish(MW_JOB_INTERNAL_ERROR, "output buffer", NULL);
		uint32_t room = W.output_limit - W.output_total;
		uint32_t need = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len) + (i > 1);
		if (need > room) {
			size_t take = room > (uint32_t)(i > 1) ? room - (i > 1) : 0;
			if (mw_buf_put(&W.pending, s, take) != 0)
				finish(MW_JOB_INTERNAL_ERROR, "output buffer", NULL);
			W.output_total = W.output_limit;
			finishf(MW_JOB_OUTPUT_LIMIT, "output limit exceeded (%u bytes)",
			    W.output_limit);
		}
		W.output_total += need;
		if (mw_buf_put(&W.pending, s, len) != 0)
			finish(MW_JOB_INTERNAL_ERROR, "output buffer", NULL);
		lua_pop(L, 1);
	}
	if (W.output_total + 1 > W.output_limit)
		finishf(MW_JOB_OUTPUT_LIMIT, "output limit exceeded (%u bytes)",
		    W.output_limit);
	W.output_total++;
	if (mw_buf_put(&W.pending, "\n", 1) != 0)
		finish(MW_JOB_INTERNAL_ERROR, "output buffer", NULL);
	if (mw_buf_avail(&W.pending) >= MW_OUTPUT_CHUNK)
		flush_output();
	return 0;
}

/* load() restricted to text chunks; the env argument still works. */
static int
text_load(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optstring(L, 2, "=(load)");
	const char *mode = luaL_optstring(L, 3, "t");
	if (strcmp(mode, "t") != 0)
		return luaL_error(L, "load: only text chunks are allowed (mode 't')");
	int env = !lua_isnone(L, 4) ? 4 : 0;
	if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
		luaL_pushfail(L);
		lua_insert(L, -2);
		return 2;
	}
	if (env != 0) {
		lua_pushvalue(L, env);
		if (!lua_setupvalue(L, -2, 1))
			lua_pop(L, 1);
	}
	return 1;
}

static void
drop(lua_State *L, const char *table, const char *const *names)
{
	if (table == NULL) {
		for (size_t i = 0; names[i] != NULL; i++) {
			lua_pushnil(L);
			lua_setglobal(L, names[i]);
		}
		return;
	}
	lua_getglobal(L, table);
	for (size_t i = 0; names[i] != NULL; i++) {
		lua_pushnil(L);
		lua_setfield(L, -2, names[i]);
	}
	lua_pop(L, 1);
}

static const luaL_Reg allowed_libs[] = {
	{ LUA_GNAME, luaopen_base },
	{ LUA_COLIBNAME, luaopen_coroutine },
	{ LUA_TABLIBNAME, luaopen_table },
	{ LUA_OSLIBNAME, luaopen_os },
	{ LUA_STRLIBNAME, luaopen_string },
	{ LUA_MATHLIBNAME, luaopen_math },
	{ LUA_UTF8LIBNAME, luaopen_utf8 },
	{ NULL, NULL }
};

static lua_State *
new_state(void)
{
	static const char *const globals[] = { "dofile", "loadfile", "require",
		"io", "debug", "package", NULL };
	static const char *const os_drop[] = { "execute", "exit", "getenv",
		"remove", "rename", "tmpname", "setlocale", NULL };
	static const char *const string_drop[] = { "dump", NULL };
	static const char *const fs_fns[] = { "read", "list", "stat", "tail",
		"write", NULL };
	static const char *const exec_fns[] = { "run", NULL };
	static const char *const sys_fns[] = { "info", "disk", NULL };
	static const char *const kv_fns[] = { "get", "put", "delete", "keys", NULL };
	static const char *const top_fns[] = { "sleep", NULL };

	lua_State *L = lua_newstate(capped_alloc, NULL);
	if (L == NULL)
		return NULL;
	for (const luaL_Reg *lib = allowed_libs; lib->func != NULL; lib++) {
		luaL_requiref(L, lib->name, lib->func, 1);
		lua_pop(L, 1);
	}
	drop(L, NULL, globals);
	drop(L, "os", os_drop);
	drop(L, "string", string_drop);
	lua_pushcfunction(L, capture_print);
	lua_setglobal(L, "print");
	lua_pushcfunction(L, text_load);
	lua_setglobal(L, "load");
	/* The shared string metatable is read-only from Lua. */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);
	register_caps(L, "fs", fs_fns);
	register_caps(L, "exec", exec_fns);
	register_caps(L, "sys", sys_fns);
	register_caps(L, "kv", kv_fns);
	register_caps(L, NULL, top_fns);
	/* The set of tables on the current encoding path. */
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &W);
	return L;
}

static int
error_handler(lua_State *L)
{
	/* Only string errors are reported as they are; never call __tostring. */
	if (lua_type(L, 1) == LUA_TSTRING)
		return 1;
	if (lua_type(L, 1) == LUA_TNUMBER) {
		lua_pushstring(L, lua_tostring(L, 1));
		return 1;
	}
	lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	return 1;
}

/*
 * The job's Lua state, built before any job exists: by the zygote, once,
 * so that every worker forked from it starts with a copy (copy-on-write:
 * what one worker changes, no other worker and not the zygote ever sees)
 * instead of building its own.  It is made of the standard library and
 * our C functions only; no Lua code has run in it, and no job data is
 * anywhere in the zygote.  A worker started otherwise builds it itself.
 */
void
mw_worker_prepare(void)
{
	struct mw_limits lim;
	if (W.L != NULL)
		return;
	memset(&W, 0, sizeof(W));
	W.fd = -1;
	mw_buf_init(&W.pending, 0);
	mw_buf_init(&W.io, MW_MAX_WORKER_FRAME);
	mw_buf_init(&W.in, MW_MAX_CALLER_FRAME);
	mw_limits_maximum(&lim);
	W.mem_limit = lim.memory;
	W.L = new_state();
}

void
mw_worker_main(int fd)
{
	uint8_t type;
	struct mw_buf payload, values;
	struct mw_limits lim;
	const uint8_t *prog;
	size_t prog_len;
	char *chunk = NULL;
	char *arg_names[MW_ARGS_MAX], *arg_values[MW_ARGS_MAX];
	uint32_t n_args = 0;

	mw_worker_prepare();
	if (W.L == NULL)
		_exit(1);
	W.fd = fd;
	/* No warm-up chunk: running one in a throwaway state to take the
	 * interpreter's code-page faults before the job cost every worker
	 * more CPU than the faults it saved the job (README, "The sandbox:
	 * a cheaper worker"). */

	/* Idle until the supervisor hands us a job. */
	if (mw_frame_read_fd(fd, &W.in, MW_MAX_CALLER_FRAME, &type, &payload) != 0 ||
	    type != MW_F_RUN ||
	    mw_buf_get_cstring(&payload, &chunk, 4096) != 0 ||
	    mw_buf_get_string_direct(&payload, &prog, &prog_len) != 0 ||
	    mw_dec_limits(&payload, &lim) != 0 ||
	    mw_dec_args(&payload, arg_names, arg_values, &n_args) != 0 ||
	    mw_buf_avail(&payload) != 0)
		_exit(1);

	W.cpu_start_us = cpu_now_us();
	W.cpu_limit_us = (uint64_t)lim.cpu_ms * 1000u;
	W.instr_limit = lim.instructions;
	W.hook_step = lim.instructions < HOOK_STEP ? (unsigned)lim.instructions : HOOK_STEP;
	W.output_limit = lim.output_bytes;
	W.result_bytes = lim.result_bytes;
	W.result_depth = lim.result_depth;
	W.mem_limit = W.mem_used + lim.memory;	/* the job gets `memory` beyond the base state */
	W.mem_job_limit = lim.memory;
	W.mem_peak = 0;
	{
		/* The kernel's backstop: SIGXCPU a second after the limit. */
		uint64_t secs = (W.cpu_start_us + W.cpu_limit_us) / 1000000u + 1;
		struct rlimit rl = { secs, secs + 1 };
		if (setrlimit(RLIMIT_CPU, &rl) != 0)
			_exit(1);
		/* Precise: SIGPROF (default action: terminate) when the job's CPU
		 * time is used up, even inside a C function the hook never sees. */
		struct itimerval it = { { 0, 0 }, { (time_t)(W.cpu_limit_us / 1000000u),
			(suseconds_t)(W.cpu_limit_us % 1000000u) } };
		if (setitimer(ITIMER_PROF, &it, NULL) != 0)
			_exit(1);
		/* The worker's own wall deadline: SIGALRM (default action:
		 * terminate) shortly after the supervisor's, so that a
		 * supervisor that is stuck or cannot signal still cannot keep
		 * a job alive.  The supervisor reports it as wall_limit. */
		uint64_t wall_us = (uint64_t)lim.wall_ms * 1000u + WALL_GRACE_US;
		struct itimerval rt = { { 0, 0 }, { (time_t)(wall_us / 1000000u),
			(suseconds_t)(wall_us % 1000000u) } };
		if (setitimer(ITIMER_REAL, &rt, NULL) != 0)
			_exit(1);
	}
	if (prog_len > lim.program_bytes)
		finishf(MW_JOB_PROGRAM_TOO_LARGE, "program is %zu bytes, limit %u",
		    prog_len, lim.program_bytes);

	lua_State *L = W.L;
	/* `args`: the job's arguments, name -> string (spec/lua-api.md). */
	lua_createtable(L, 0, (int)n_args);
	for (uint32_t i = 0; i < n_args; i++) {
		lua_pushstring(L, arg_values[i]);
		lua_setfield(L, -2, arg_names[i]);
	}
	lua_setglobal(L, "args");
	lua_pushcfunction(L, error_handler);
	int handler = lua_gettop(L);
	W.running = true;
	int rc = luaL_loadbufferx(L, (const char *)prog, prog_len, chunk, "t");
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		finish(rc == LUA_ERRSYNTAX ? MW_JOB_SYNTAX_ERROR : MW_JOB_ERROR,
		    msg ? msg : "cannot load program", NULL);
	}
	lua_sethook(L, count_hook, LUA_MASKCOUNT, (int)W.hook_step);
	rc = lua_pcall(L, 0, LUA_MULTRET, handler);
	lua_sethook(L, NULL, 0, 0);
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		finish(MW_JOB_ERROR, msg ? msg : "error", NULL);
	}
	mw_buf_init(&values, W.result_bytes);
	struct enc_state st = { .b = &values, .what = "return value",
		.max_depth = W.result_depth };
	if (encode_array(L, handler + 1, lua_gettop(L), &st) != 0)
		finish(MW_JOB_RESULT_LIMIT, st.err, NULL);
	finish(MW_JOB_OK, NULL, &values);
}
