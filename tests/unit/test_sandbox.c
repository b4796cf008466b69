/*
 * test_sandbox.c: drives the real sandbox supervisor in-process.
 *
 * Why this exists: the supervisor's promise is that every way a worker can
 * end -- a result, a forbidden syscall, a crash, garbage, a flood, silence --
 * becomes exactly one typed result, and that one hostile worker cannot
 * damage the supervisor for the jobs after it.  The pytest suites see this
 * only through the CLI and the Lua runtime, which never misbehaves at the
 * frame level; here hostile worker bodies (cfg.test_worker: fork-only mode,
 * fully confined, socket on fd 3) speak raw frames and make raw syscalls,
 * and after each one the SAME supervisor must still run a well-behaved job.
 * A second part runs the real Lua worker (MOONWIRE) for scheduling and
 * admission, and a third checks confinement itself (seccomp, uid, rlimits)
 * on a directly confined child.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/sandbox_int.h"

#define TEST_TIMEOUT_S 60	/* a hang fails the suite (SIGALRM) instead of blocking it */

/* ---- the hostile worker: runs confined, acts on its program text ---- */

static void
w_send(int fd, struct mw_buf *b)
{
	if (mw_buf_drain_fd(b, fd) != 0)
		_exit(1);
}

static void
w_frame(struct mw_buf *b, uint8_t type, const void *p, size_t n)
{
	size_t start;
	if (mw_frame_begin(b, type, &start) != 0 || mw_buf_put(b, p, n) != 0 ||
	    mw_frame_end(b, start) != 0)
		_exit(1);
}

static void
w_done(struct mw_buf *b, uint8_t status, const char *err, const struct mw_buf *values)
{
	size_t start;
	if (mw_frame_begin(b, MW_F_DONE, &start) != 0 ||
	    mw_buf_put_u8(b, status) != 0 ||
	    mw_buf_put_cstring(b, err) != 0 ||
	    mw_buf_put_string(b, values ? mw_buf_ptr(values) : NULL,
	    values ? mw_buf_avail(values) : 0) != 0 ||
	    mw_buf_put_u64(b, 1000) != 0 || mw_buf_put_u64(b, 2000) != 0 ||
	    mw_buf_put_u64(b, 3000) != 0 ||
	    mw_frame_end(b, start) != 0)
		_exit(1);
}

/* A CAP_CALL with integer arguments. */
static void
w_cap_call(struct mw_buf *b, const char *name, int nargs, int64_t arg)
{
	size_t start;
	if (mw_frame_begin(b, MW_F_CAP_CALL, &start) != 0 ||
	    mw_buf_put_cstring(b, name) != 0 ||
	    mw_buf_put_u8(b, MW_V_TABLE) != 0 || mw_buf_put_u32(b, (uint32_t)nargs) != 0)
		_exit(1);
	for (int i = 0; i < nargs; i++)
		if (mw_buf_put_u8(b, MW_V_INT) != 0 || mw_buf_put_u64(b, (uint64_t)i + 1) != 0 ||
		    mw_buf_put_u8(b, MW_V_INT) != 0 || mw_buf_put_u64(b, (uint64_t)arg) != 0)
			_exit(1);
	if (mw_frame_end(b, start) != 0)
		_exit(1);
}

/* Blocks until the supervisor kills us (it never writes after RUN unless
 * we asked for something). */
static void __attribute__((noreturn))
w_wait_forever(int fd)
{
	char c;
	for (;;)
		if (read(fd, &c, 1) <= 0)
			_exit(3);
}

static void
w_spin_ms(unsigned ms)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < ms);
}

/* Under ASan the filter also allows getpid (for its reports), so the
 * "forbidden" call there is getppid, which no build allows. */
static long
forbidden_syscall(void)
{
#ifdef __SANITIZE_ADDRESS__
	return syscall(SYS_getppid);
#else
	return syscall(SYS_getpid);
#endif
}

static void
hostile_worker(int fd)
{
	struct mw_buf in, p, out;
	uint8_t type;
	char *chunk = NULL;
	const uint8_t *prog;
	size_t plen;
	char cmd[64];

	mw_buf_init(&in, 0);
	mw_buf_init(&out, 0);
	if (mw_frame_read_fd(fd, &in, MW_MAX_CALLER_FRAME, &type, &p) != 0 ||
	    type != MW_F_RUN || mw_buf_get_cstring(&p, &chunk, 4096) != 0 ||
	    mw_buf_get_string_direct(&p, &prog, &plen) != 0 || plen >= sizeof(cmd))
		_exit(2);
	memcpy(cmd, prog, plen);
	cmd[plen] = '\0';

#define IS(s) (strcmp(cmd, (s)) == 0)
	if (IS("ok")) {
		struct mw_buf v;
		mw_buf_init(&v, 0);
		/* {[1] = 42} */
		if (mw_buf_put_u8(&v, MW_V_TABLE) || mw_buf_put_u32(&v, 1) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 1) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 42))
			_exit(1);
		w_frame(&out, MW_F_OUTPUT, "hello\n", 6);
		w_done(&out, MW_JOB_OK, "", &v);
		w_send(fd, &out);
		_exit(0);
	} else if (IS("getpid")) {
		forbidden_syscall();
	} else if (IS("open")) {
		open("/etc/passwd", O_RDONLY);
	} else if (IS("write_stdout")) {
		if (write(1, "x", 1) < 0)
			_exit(1);
	} else if (IS("int80")) {
#if defined(__x86_64__)
		long ret;
		/* i386 getpid (20) through the 32-bit entry point. */
		__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
		(void)ret;
#endif
	} else if (IS("x32")) {
#if defined(__x86_64__)
		syscall(0x40000000L | SYS_getpid);
#endif
	} else if (IS("mmap_exec")) {
		mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else if (IS("segv")) {
		*(volatile int *)(uintptr_t)0 = 1;
	} else if (IS("abort")) {
		abort();
	} else if (IS("trap")) {
		__builtin_trap();
	} else if (IS("garbage")) {
		if (write(fd, "this is not a frame\n", 20) != 20)
			_exit(1);
		w_wait_forever(fd);
	} else if (IS("truncated")) {
		static const uint8_t part[] = { 'M', 'W', 1, MW_F_DONE, 0, 0, 0, 100,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
		if (write(fd, part, sizeof(part)) != (ssize_t)sizeof(part))
			_exit(1);
		_exit(0);
	} else if (IS("oversized")) {
		uint32_t n = MW_MAX_WORKER_FRAME + 1;
		uint8_t hdr[8] = { 'M', 'W', 1, MW_F_OUTPUT, (uint8_t)(n >> 24),
			(uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
		if (write(fd, hdr, 8) != 8)
			_exit(1);
		w_wait_forever(fd);	/* never sends the payload */
	} else if (IS("unknown_type")) {
		w_frame(&out, 99, "x", 1);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("reserved_type")) {
		/* A frame type that exists, but never from a worker. */
		w_frame(&out, MW_F_RESULT, "", 0);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("done_busy")) {
		w_done(&out, MW_JOB_BUSY, "", NULL);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("done_violation")) {
		w_done(&out, MW_JOB_SANDBOX_VIOLATION, "", NULL);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("done_trailing")) {
		w_done(&out, MW_JOB_OK, "", NULL);
		/* Patch in one extra payload byte: DONE must be exact. */
		uint8_t extra = 0;
		size_t hdr_at = 0;
		if (mw_buf_put(&out, &extra, 1) != 0 ||
		    mw_buf_poke_u32(&out, hdr_at + 4, (uint32_t)(mw_buf_avail(&out) - 8)) != 0)
			_exit(1);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("done_bad_values")) {
		struct mw_buf v;
		mw_buf_init(&v, 0);
		/* A table claiming 1000 pairs with 2 bytes behind it. */
		if (mw_buf_put_u8(&v, MW_V_TABLE) || mw_buf_put_u32(&v, 1000) ||
		    mw_buf_put_u8(&v, MW_V_NIL) || mw_buf_put_u8(&v, MW_V_NIL))
			_exit(1);
		w_done(&out, MW_JOB_OK, "", &v);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("done_dup_keys") || IS("done_dup_float_key")) {
		struct mw_buf v;
		mw_buf_init(&v, 0);
		/* {[1] = {[1] = 1, [1 or 1.0] = 2}}: Lua cannot make this. */
		double one = 1.0;
		uint64_t bits;
		memcpy(&bits, &one, sizeof(bits));
		if (mw_buf_put_u8(&v, MW_V_TABLE) || mw_buf_put_u32(&v, 1) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 1) ||
		    mw_buf_put_u8(&v, MW_V_TABLE) || mw_buf_put_u32(&v, 2) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 1) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 1) ||
		    mw_buf_put_u8(&v, IS("done_dup_keys") ? MW_V_INT : MW_V_NUMBER) ||
		    mw_buf_put_u64(&v, IS("done_dup_keys") ? 1 : bits) ||
		    mw_buf_put_u8(&v, MW_V_INT) || mw_buf_put_u64(&v, 2))
			_exit(1);
		w_done(&out, MW_JOB_OK, "", &v);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("flood_pending")) {
		/* An asynchronous call (sleep 2 s) and, without waiting for its
		 * reply, another call. */
		w_cap_call(&out, "sleep", 1, 2);
		w_send(fd, &out);
		w_cap_call(&out, "sleep", 1, 0);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("flood_sync")) {
		/* 50 calls in one write, never reading a reply. */
		for (int i = 0; i < 50; i++)
			w_cap_call(&out, "sys.info", 0, 0);
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("many_calls")) {
		/* Well-formed sequential calls, each reply read, beyond the limit. */
		for (int i = 0; i < 100; i++) {
			w_cap_call(&out, "sys.info", 0, 0);
			w_send(fd, &out);
			if (mw_frame_read_fd(fd, &in, MW_MAX_CALLER_FRAME, &type, &p) != 0 ||
			    type != MW_F_CAP_REPLY)
				_exit(4);
		}
		w_done(&out, MW_JOB_OK, "", NULL);
		w_send(fd, &out);
		_exit(0);
	} else if (IS("silence")) {
		w_wait_forever(fd);
	} else if (IS("output_flood")) {
		char chunk300[300];
		for (int i = 0; i < 10; i++) {
			memset(chunk300, 'a' + i, sizeof(chunk300));
			w_frame(&out, MW_F_OUTPUT, chunk300, sizeof(chunk300));
		}
		w_send(fd, &out);
		w_wait_forever(fd);
	} else if (IS("exit0")) {
		_exit(0);
	} else if (IS("max_frame")) {
		/* A DONE frame of exactly the maximum payload, its last 4 bytes
		 * sent after a pause: legal framing, so the job must end for
		 * what the frame says (values over result_bytes), not as an
		 * "oversized frame". */
		size_t vlen = MW_MAX_WORKER_FRAME - (1 + 4 + 4 + 24);
		struct mw_buf v;
		mw_buf_init(&v, 0);
		uint8_t *d;
		if (mw_buf_reserve(&v, vlen, &d) != 0)
			_exit(1);
		memset(d, 0, vlen);
		w_done(&out, MW_JOB_OK, "", &v);
		if (mw_buf_avail(&out) != MW_MAX_WORKER_FRAME + MW_FRAME_HEADER)
			_exit(5);
		size_t all = mw_buf_avail(&out);
		struct mw_buf head;
		mw_buf_view(&head, mw_buf_ptr(&out), all - 4);
		w_send(fd, &head);
		w_spin_ms(500);
		mw_buf_skip(&out, all - 4);
		w_send(fd, &out);
		w_wait_forever(fd);
	}
#undef IS
	/* Reached only when the forbidden thing was allowed after all. */
	_exit(77);
}

/* ---- helpers on the caller side ---- */

static struct mw_sandbox *hostile_sb;

static int
setup_hostile(void **state)
{
	(void)state;
	struct mw_sandbox_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.parallel = 2;
	cfg.pool = 2;
	cfg.test_worker = hostile_worker;
	return mw_sandbox_start(&cfg, &hostile_sb);
}

static int
teardown_hostile(void **state)
{
	(void)state;
	mw_sandbox_stop(hostile_sb);
	hostile_sb = NULL;
	return 0;
}

static uint64_t
now_ms(void)
{
	return mw_now_us() / 1000;
}

static void
run_job(struct mw_sandbox *sb, const char *program, const struct mw_limits *lim,
    const struct mw_grants *grants, struct mw_result *res)
{
	static unsigned seq;
	char id[64];
	struct mw_job job;
	memset(&job, 0, sizeof(job));
	snprintf(id, sizeof(id), "job-%u-%s", ++seq, program);
	job.id = id;
	job.chunkname = "test";
	job.program = program;
	job.program_len = strlen(program);
	if (lim != NULL)
		job.limits = *lim;
	else
		mw_limits_default(&job.limits);
	job.grants = grants;
	alarm(TEST_TIMEOUT_S);
	assert_int_equal(mw_sandbox_run(sb, &job, res), 0);
	alarm(0);
	assert_string_equal(res->job_id, id);
}

static void
expect_status(struct mw_result *r, enum mw_job_status want, const char *err_part)
{
	if (r->status != want)
		fail_msg("status %s (%s), want %s", mw_job_status_name(r->status),
		    r->error ? r->error : "", mw_job_status_name(want));
	if (err_part != NULL && (r->error == NULL || strstr(r->error, err_part) == NULL))
		fail_msg("error '%s' does not mention '%s'", r->error ? r->error : "(none)",
		    err_part);
}

/* The same supervisor still runs a well-behaved job, with its output and
 * value intact. */
static void
assert_still_works(void)
{
	struct mw_result r;
	run_job(hostile_sb, "ok", NULL, NULL, &r);
	expect_status(&r, MW_JOB_OK, NULL);
	assert_null(r.error);
	assert_int_equal(r.output_len, 6);
	assert_memory_equal(r.output, "hello\n", 6);
	assert_false(r.output_truncated);
	assert_true(r.usage.instructions == 1000);
	assert_true(r.usage.memory_peak == 2000);
	assert_true(r.usage.cpu_us == 3000);
	static const uint8_t want[] = { MW_V_TABLE, 0, 0, 0, 1, MW_V_INT, 0, 0, 0, 0, 0,
		0, 0, 1, MW_V_INT, 0, 0, 0, 0, 0, 0, 0, 42 };
	assert_int_equal(r.values_len, sizeof(want));
	assert_memory_equal(r.values, want, sizeof(want));
	mw_result_free(&r);
}

static void
hostile_case(const char *program, enum mw_job_status want, const char *err_part)
{
	struct mw_result r;
	run_job(hostile_sb, program, NULL, NULL, &r);
	expect_status(&r, want, err_part);
	mw_result_free(&r);
	assert_still_works();
}

/* ---- hostile workers ---- */

static void
skip_msg(const char *why) __attribute__((unused));
static void
skip_msg(const char *why)
{
	print_message("skipped: %s\n", why);
	skip();
}


static void
test_well_behaved(void **state)
{
	(void)state;
	assert_still_works();
	assert_still_works();
}

static void
test_forbidden_syscalls(void **state)
{
	(void)state;
	hostile_case("getpid", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
	hostile_case("open", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
	/* write is allowed on fd 3 only. */
	hostile_case("write_stdout", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
	hostile_case("mmap_exec", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
}

static void
test_foreign_arch_syscalls(void **state)
{
	(void)state;
#if defined(__x86_64__)
	/* The bad-architecture action is KILL_PROCESS: neither the i386 entry
	 * point nor x32 numbers get past the filter. */
	hostile_case("int80", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
	hostile_case("x32", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
#else
	skip_msg("int $0x80 and x32 exist on x86-64 only");
#endif
}

static void
test_crashes(void **state)
{
	(void)state;
#if defined(__aarch64__)
	/* __builtin_trap() is a brk on aarch64 (SIGTRAP), a ud2 on x86-64. */
	hostile_case("trap", MW_JOB_CRASHED, "signal 5 (SIGTRAP)");
#else
	hostile_case("trap", MW_JOB_CRASHED, "signal 4 (SIGILL)");
#endif
	/* glibc's abort() first unblocks SIGABRT with rt_sigprocmask, which
	 * the filter does not allow: a confined worker that aborts dies of
	 * SIGSYS before it can raise SIGABRT.  Pinned so that a filter change
	 * that lets it through is noticed (it would then be crashed/SIGABRT). */
	hostile_case("abort", MW_JOB_SANDBOX_VIOLATION, "SIGSYS");
}

static void
test_segv_crash(void **state)
{
	(void)state;
#ifdef __SANITIZE_ADDRESS__
	/* ASan's SIGSEGV handler reports through write(2) on fd 2, which the
	 * filter forbids: under ASan a null write ends as sandbox_violation. */
	skip_msg("SIGSEGV is caught by ASan's handler, which the filter then kills");
#else
	hostile_case("segv", MW_JOB_CRASHED, "signal 11 (SIGSEGV)");
#endif
}

static void
test_protocol_errors(void **state)
{
	(void)state;
	hostile_case("garbage", MW_JOB_PROTOCOL_ERROR, "malformed frame");
	hostile_case("truncated", MW_JOB_PROTOCOL_ERROR, "without a result");
	hostile_case("oversized", MW_JOB_PROTOCOL_ERROR, "oversized frame");
	hostile_case("unknown_type", MW_JOB_PROTOCOL_ERROR, "unexpected frame type 99");
	hostile_case("reserved_type", MW_JOB_PROTOCOL_ERROR, "unexpected frame type");
	hostile_case("done_busy", MW_JOB_PROTOCOL_ERROR, "malformed result");
	hostile_case("done_violation", MW_JOB_PROTOCOL_ERROR, "malformed result");
	hostile_case("done_trailing", MW_JOB_PROTOCOL_ERROR, "malformed result");
	hostile_case("done_bad_values", MW_JOB_PROTOCOL_ERROR, "malformed return value");
	hostile_case("exit0", MW_JOB_PROTOCOL_ERROR, "without a result (status 0)");
	hostile_case("done_dup_keys", MW_JOB_PROTOCOL_ERROR, "duplicate keys");
	hostile_case("done_dup_float_key", MW_JOB_PROTOCOL_ERROR, "duplicate keys");
}

/* A limit of 0 in a frame is malformed: it must never mean "the maximum". */
static void
test_dec_limits_refuses_zero(void **state)
{
	(void)state;
	struct mw_limits l, back;
	mw_limits_default(&l);
	for (int field = 0; field < 10; field++) {
		struct mw_limits z = l;
		switch (field) {
		case 0: z.instructions = 0; break;
		case 1: z.memory = 0; break;
		case 2: z.cpu_ms = 0; break;
		case 3: z.wall_ms = 0; break;
		case 4: z.output_bytes = 0; break;
		case 5: z.program_bytes = 0; break;
		case 6: z.result_bytes = 0; break;
		case 7: z.result_depth = 0; break;
		case 8: z.cap_calls = 0; break;
		case 9: z.write_bytes = 0; break;
		}
		struct mw_buf b;
		mw_buf_init(&b, 0);
		assert_int_equal(mw_enc_limits(&b, &z), 0);
		assert_int_equal(mw_dec_limits(&b, &back), MW_WIRE_EFORMAT);
		mw_buf_free(&b);
	}
	struct mw_buf b;
	mw_buf_init(&b, 0);
	assert_int_equal(mw_enc_limits(&b, &l), 0);
	assert_int_equal(mw_dec_limits(&b, &back), 0);
	assert_int_equal(back.write_bytes, l.write_bytes);
	mw_buf_free(&b);
}

static void
test_max_size_frame_is_legal(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_limits lim;
	mw_limits_default(&lim);
	run_job(hostile_sb, "max_frame", &lim, NULL, &r);
	expect_status(&r, MW_JOB_RESULT_LIMIT, "larger than");
	mw_result_free(&r);
	assert_still_works();
}

static void
test_capability_floods(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_grants g;
	struct mw_limits lim;
	memset(&g, 0, sizeof(g));
	g.sleep_max_ms = 5000;
	mw_limits_default(&lim);

	uint64_t t0 = now_ms();
	run_job(hostile_sb, "flood_pending", &lim, &g, &r);
	expect_status(&r, MW_JOB_PROTOCOL_ERROR, "capability call while one is pending");
	/* Killed at the second call, not after the 2 s sleep. */
	assert_true(now_ms() - t0 < 1500);
	mw_result_free(&r);
	assert_still_works();

	run_job(hostile_sb, "flood_sync", &lim, NULL, &r);
	expect_status(&r, MW_JOB_PROTOCOL_ERROR, "capability call while one is pending");
	mw_result_free(&r);
	assert_still_works();

	lim.cap_calls = 20;
	run_job(hostile_sb, "many_calls", &lim, NULL, &r);
	expect_status(&r, MW_JOB_CAPABILITY_LIMIT, "more than 20 capability calls");
	mw_result_free(&r);
	assert_still_works();
}

static void
test_silence_hits_wall_limit(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_limits lim;
	mw_limits_default(&lim);
	lim.wall_ms = 300;
	uint64_t t0 = now_ms();
	run_job(hostile_sb, "silence", &lim, NULL, &r);
	uint64_t took = now_ms() - t0;
	expect_status(&r, MW_JOB_WALL_LIMIT, "wall-clock limit exceeded (300 ms)");
	assert_true(took >= 300);
	assert_true(took < 300 + 2000);
	assert_true(r.usage.wall_us >= 300000);
	mw_result_free(&r);
	assert_still_works();
}

static void
test_output_limit(void **state)
{
	(void)state;
	struct mw_result r;
	struct mw_limits lim;
	mw_limits_default(&lim);
	lim.output_bytes = 1000;
	run_job(hostile_sb, "output_flood", &lim, NULL, &r);
	expect_status(&r, MW_JOB_OUTPUT_LIMIT, "output limit exceeded (1000 bytes)");
	assert_int_equal(r.output_len, 1000);
	assert_true(r.output_truncated);
	for (size_t i = 0; i < 1000; i++)
		if (r.output[i] != 'a' + (char)(i / 300))
			fail_msg("output byte %zu is '%c'", i, r.output[i]);
	mw_result_free(&r);
	assert_still_works();
}

/* ---- the real Lua worker ---- */

static const char *
moonwire_exe(void)
{
	const char *exe = getenv("MOONWIRE");
	if (exe == NULL || access(exe, X_OK) != 0) {
		print_message("skipped: MOONWIRE is not set to the built binary\n");
		skip();
	}
	return exe;
}

static struct mw_sandbox *
start_lua(unsigned parallel, unsigned pool, unsigned queue_max)
{
	struct mw_sandbox_config cfg;
	struct mw_sandbox *sb = NULL;
	memset(&cfg, 0, sizeof(cfg));
	cfg.parallel = parallel;
	cfg.pool = pool;
	cfg.queue_max = queue_max;
	cfg.exe = moonwire_exe();
	assert_int_equal(mw_sandbox_start(&cfg, &sb), 0);
	return sb;
}

static void
submit(struct mw_sandbox *sb, const char *id, const char *program,
    const struct mw_limits *lim, const struct mw_grants *g)
{
	struct mw_job job;
	memset(&job, 0, sizeof(job));
	job.id = id;
	job.chunkname = id;
	job.program = program;
	job.program_len = strlen(program);
	if (lim)
		job.limits = *lim;
	else
		mw_limits_default(&job.limits);
	job.grants = g;
	assert_int_equal(mw_sandbox_submit(sb, &job), 0);
}

/* Collects n results (any order) into res[], by arrival. */
static void
collect(struct mw_sandbox *sb, struct mw_result *res, int n)
{
	int got = 0;
	alarm(TEST_TIMEOUT_S);
	while (got < n) {
		struct pollfd p = { mw_sandbox_fd(sb),
			POLLIN | (mw_sandbox_want_write(sb) ? POLLOUT : 0), 0 };
		int pr = poll(&p, 1, -1);
		if (pr < 0 && errno == EINTR)
			continue;
		assert_true(pr > 0);
		if (p.revents & POLLOUT)
			assert_int_equal(mw_sandbox_flush(sb), 0);
		int r;
		while (got < n && (r = mw_sandbox_read_result(sb, &res[got])) == 1)
			got++;
		assert_true(r >= 0);
	}
	alarm(0);
}

static int64_t
single_int_result(const struct mw_result *r)
{
	/* {[1] = n}: table, count 1, int key 1, int value. */
	if (r->values_len != 23 || r->values[0] != MW_V_TABLE || r->values[14] != MW_V_INT)
		fail_msg("unexpected value tree for %s", r->job_id);
	uint64_t v = 0;
	for (int i = 15; i < 23; i++)
		v = (v << 8) | r->values[i];
	return (int64_t)v;
}

static void
test_lua_parallel_many_jobs(void **state)
{
	(void)state;
	enum { N = 24 };
	struct mw_sandbox *sb = start_lua(2, 2, 0);
	struct mw_result res[N];
	bool seen[N] = { false };
	for (int i = 0; i < N; i++) {
		char id[16], prog[96];
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(prog, sizeof(prog), "local s = 0 for k = 1, 1000 do s = s + k end "
		    "print('job', %d) return %d", i, i);
		submit(sb, id, prog, NULL, NULL);
	}
	collect(sb, res, N);
	for (int i = 0; i < N; i++) {
		int k = atoi(res[i].job_id + 1);
		expect_status(&res[i], MW_JOB_OK, NULL);
		assert_true(k >= 0 && k < N);
		assert_false(seen[k]);
		seen[k] = true;
		assert_int_equal(single_int_result(&res[i]), k);
		char want[32];
		snprintf(want, sizeof(want), "job\t%d\n", k);
		assert_int_equal(res[i].output_len, strlen(want));
		assert_memory_equal(res[i].output, want, strlen(want));
		assert_true(res[i].usage.instructions > 0);
		mw_result_free(&res[i]);
	}
	mw_sandbox_stop(sb);
}

static void
test_lua_queue_full_is_busy(void **state)
{
	(void)state;
	struct mw_sandbox *sb = start_lua(1, 1, 1);
	struct mw_grants g;
	memset(&g, 0, sizeof(g));
	g.sleep_max_ms = 2000;
	/* One job that sleeps, then three more at once: one may wait (queue_max
	 * 1), the other two must be refused at once. */
	submit(sb, "sleeper", "sleep(0.6) return 1", NULL, &g);
	submit(sb, "q1", "return 2", NULL, NULL);
	submit(sb, "q2", "return 3", NULL, NULL);
	submit(sb, "q3", "return 4", NULL, NULL);
	struct mw_result res[4];
	collect(sb, res, 4);
	int busy = 0, ok = 0;
	for (int i = 0; i < 4; i++) {
		if (res[i].status == MW_JOB_BUSY) {
			busy++;
			assert_string_equal(res[i].error, "queue full");
			assert_int_equal(res[i].output_len, 0);
			assert_int_equal(res[i].values_len, 0);
			assert_true(res[i].usage.wall_us == 0);	/* nothing ran */
			assert_true(res[i].usage.instructions == 0);
			assert_string_not_equal(res[i].job_id, "sleeper");
		} else {
			expect_status(&res[i], MW_JOB_OK, NULL);
			ok++;
		}
		mw_result_free(&res[i]);
	}
	/* parallel 1 + queue_max 1: exactly two of the four are admitted. */
	assert_int_equal(busy, 2);
	assert_int_equal(ok, 2);

	/* Once the queue drained, a new job is admitted again. */
	struct mw_result r;
	struct mw_job job;
	memset(&job, 0, sizeof(job));
	job.id = "after";
	job.program = "return 5";
	job.program_len = 8;
	mw_limits_default(&job.limits);
	alarm(TEST_TIMEOUT_S);
	assert_int_equal(mw_sandbox_run(sb, &job, &r), 0);
	alarm(0);
	expect_status(&r, MW_JOB_OK, NULL);
	assert_int_equal(single_int_result(&r), 5);
	mw_result_free(&r);
	mw_sandbox_stop(sb);
}

static void
test_lua_busy_while_running(void **state)
{
	(void)state;
	struct mw_sandbox *sb = start_lua(1, 1, 1);
	struct mw_grants g;
	memset(&g, 0, sizeof(g));
	g.sleep_max_ms = 2000;
	submit(sb, "sleeper", "sleep(0.8) return 1", NULL, &g);
	/* Let the sleeper start before the others arrive. */
	alarm(TEST_TIMEOUT_S);
	for (int i = 0; i < 50 && mw_sandbox_want_write(sb); i++) {
		mw_sandbox_flush(sb);
		usleep(10000);
	}
	usleep(300000);
	submit(sb, "q1", "return 2", NULL, NULL);
	submit(sb, "q2", "return 3", NULL, NULL);
	submit(sb, "q3", "return 4", NULL, NULL);
	struct mw_result res[4];
	collect(sb, res, 4);
	int busy = 0;
	for (int i = 0; i < 4; i++) {
		if (res[i].status == MW_JOB_BUSY)
			busy++;
		else
			expect_status(&res[i], MW_JOB_OK, NULL);
		mw_result_free(&res[i]);
	}
	assert_true(busy >= 1);
	assert_int_equal(busy, 2);
	mw_sandbox_stop(sb);
}

/* Cancellation (CANCEL frame): a queued job never starts, a running one is
 * killed with its output so far, an unknown id changes nothing; the pool
 * of 0 idle workers (MW_SANDBOX_POOL_NONE) forks per job. */
static void
test_lua_cancel(void **state)
{
	(void)state;
	struct mw_sandbox *sb = start_lua(1, MW_SANDBOX_POOL_NONE, 4);
	struct mw_grants g;
	struct mw_result res[3];
	memset(&g, 0, sizeof(g));
	g.sleep_max_ms = 5000;
	submit(sb, "runner", "print('before') sleep(3) print('after') return 1", NULL, &g);
	submit(sb, "waiter", "print('never') return 2", NULL, NULL);
	submit(sb, "other", "return 3", NULL, NULL);
	alarm(TEST_TIMEOUT_S);
	for (int i = 0; i < 50 && mw_sandbox_want_write(sb); i++) {
		mw_sandbox_flush(sb);
		usleep(10000);
	}
	usleep(400000);		/* the runner prints and sleeps */
	assert_int_equal(mw_sandbox_cancel(sb, "waiter", "cancelled by test"), 0);
	assert_int_equal(mw_sandbox_cancel(sb, "no-such-job", "cancelled by test"), 0);
	assert_int_equal(mw_sandbox_cancel(sb, "runner", "cancelled by test"), 0);
	collect(sb, res, 3);
	for (int i = 0; i < 3; i++) {
		if (strcmp(res[i].job_id, "waiter") == 0) {
			expect_status(&res[i], MW_JOB_CANCELLED,
			    "cancelled by test (before it started)");
			assert_int_equal(res[i].output_len, 0);
			assert_true(res[i].usage.wall_us == 0);
		} else if (strcmp(res[i].job_id, "runner") == 0) {
			expect_status(&res[i], MW_JOB_CANCELLED, "cancelled by test (while running)");
			assert_int_equal(res[i].output_len, 7);
			/* "after" never printed: it did not sleep out */
			assert_memory_equal(res[i].output, "before\n", 7);
		} else {
			assert_string_equal(res[i].job_id, "other");
			expect_status(&res[i], MW_JOB_OK, NULL);
			assert_int_equal(single_int_result(&res[i]), 3);
		}
		mw_result_free(&res[i]);
	}
	/* a finished job's id: nothing happens, the sandbox serves on */
	assert_int_equal(mw_sandbox_cancel(sb, "runner", "late"), 0);
	struct mw_result r;
	struct mw_job job;
	memset(&job, 0, sizeof(job));
	job.id = "after";
	job.program = "return 5";
	job.program_len = 8;
	mw_limits_default(&job.limits);
	alarm(TEST_TIMEOUT_S);
	assert_int_equal(mw_sandbox_run(sb, &job, &r), 0);
	alarm(0);
	expect_status(&r, MW_JOB_OK, NULL);
	mw_result_free(&r);
	mw_sandbox_stop(sb);
}

static void
test_lua_program_too_large(void **state)
{
	(void)state;
	struct mw_sandbox *sb = start_lua(1, 1, 0);
	struct mw_limits lim;
	mw_limits_default(&lim);
	lim.program_bytes = 100;
	char prog[201];
	memset(prog, ' ', 200);
	memcpy(prog, "return 1", 8);
	prog[200] = '\0';
	struct mw_result r;
	run_job(sb, prog, &lim, NULL, &r);
	expect_status(&r, MW_JOB_PROGRAM_TOO_LARGE, "program is 200 bytes, limit 100");
	assert_int_equal(r.values_len, 0);
	mw_result_free(&r);
	/* Exactly at the limit runs. */
	prog[100] = '\0';
	run_job(sb, prog, &lim, NULL, &r);
	expect_status(&r, MW_JOB_OK, NULL);
	assert_int_equal(single_int_result(&r), 1);
	mw_result_free(&r);
	mw_sandbox_stop(sb);
}

/* The caller's own files (HELLO's protected paths) are refused by the
 * broker whatever the grants: by name, inside a protected directory, and
 * under another spelling of the same path. */
static void
test_lua_protected_paths(void **state)
{
	(void)state;
	char top[] = "/tmp/mw-protected-XXXXXX";
	assert_non_null(mkdtemp(top));
	char granted[128], state_dir[128], db[160], pw[160], other[160];
	snprintf(granted, sizeof(granted), "%s/g", top);
	snprintf(state_dir, sizeof(state_dir), "%s/g/state", top);
	snprintf(db, sizeof(db), "%s/identity.db", state_dir);
	snprintf(pw, sizeof(pw), "%s/g/password", top);
	snprintf(other, sizeof(other), "%s/g/public.txt", top);
	assert_int_equal(mkdir(granted, 0755), 0);
	assert_int_equal(mkdir(state_dir, 0700), 0);
	const char *files[] = { db, pw, other };
	for (int i = 0; i < 3; i++) {
		FILE *f = fopen(files[i], "w");
		assert_non_null(f);
		fputs("secret\n", f);
		fclose(f);
	}
	const char *prot[] = { state_dir, pw };
	struct mw_sandbox_config cfg;
	struct mw_sandbox *sb = NULL;
	memset(&cfg, 0, sizeof(cfg));
	cfg.parallel = 1;
	cfg.pool = 1;
	cfg.exe = moonwire_exe();
	cfg.protected_paths = prot;
	cfg.n_protected = 2;
	assert_int_equal(mw_sandbox_start(&cfg, &sb), 0);
	char *rd[1] = { granted };
	struct mw_grants g;
	memset(&g, 0, sizeof(g));
	g.fs_read = rd;
	g.n_fs_read = 1;
	g.fs_write = rd;
	g.n_fs_write = 1;
	struct { const char *call; const char *path; const char *tail; const char *want; } cases[] = {
		{ "fs.read('", db, "')", "one of the agent's own files" },
		{ "fs.read('", pw, "')", "one of the agent's own files" },
		{ "fs.list('", state_dir, "')", "one of the agent's own files" },
		{ "fs.stat('", db, "')", "one of the agent's own files" },
		{ "fs.write('", pw, "', 'x')", "one of the agent's own files" },
		{ "fs.write('", state_dir, "/new', 'x')", "one of the agent's own files" },
		{ "fs.read('", NULL, "')", "empty path component" },
	};
	char dbl[200];
	snprintf(dbl, sizeof(dbl), "%s/g//state/identity.db", top);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char prog[400];
		snprintf(prog, sizeof(prog), "return %s%s%s", cases[i].call,
		    cases[i].path ? cases[i].path : dbl, cases[i].tail);
		struct mw_result r;
		run_job(sb, prog, NULL, &g, &r);
		expect_status(&r, MW_JOB_ERROR, cases[i].want);
		mw_result_free(&r);
	}
	/* the rest of the grant still works, and nothing protected changed */
	char prog[300];
	snprintf(prog, sizeof(prog), "return fs.read('%s')", other);
	struct mw_result r;
	run_job(sb, prog, NULL, &g, &r);
	expect_status(&r, MW_JOB_OK, NULL);
	mw_result_free(&r);
	struct stat st;
	assert_int_equal(stat(pw, &st), 0);
	assert_int_equal(st.st_size, 7);
	char nf[200];
	snprintf(nf, sizeof(nf), "%s/new", state_dir);
	assert_int_not_equal(access(nf, F_OK), 0);
	mw_sandbox_stop(sb);
	for (int i = 0; i < 3; i++)
		unlink(files[i]);
	rmdir(state_dir);
	rmdir(granted);
	rmdir(top);
}

/* ---- confinement itself ---- */

static long
status_field(pid_t pid, const char *key, char *out, size_t outlen)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	size_t kl = strlen(key);
	long r = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			snprintf(out, outlen, "%s", line + kl + 1);
			r = 0;
			break;
		}
	fclose(f);
	return r;
}

/*
 * A confined child's rlimit, read from outside with prlimit(2).  prlimit on a
 * process of another uid needs CAP_SYS_RESOURCE, which a container's root
 * may lack (then EPERM); /proc/PID/limits shows the same values to anyone.
 */
static void
child_limit(pid_t pid, int resource, const char *name, rlim_t *cur, rlim_t *max)
{
	struct rlimit rl;
	if (prlimit(pid, resource, NULL, &rl) == 0) {
		*cur = rl.rlim_cur;
		*max = rl.rlim_max;
		return;
	}
	assert_int_equal(errno, EPERM);
	char path[64], line[256], a[32], b[32];
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	bool found = false;
	size_t nl = strlen(name);
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, name, nl) != 0 || line[nl] != ' ')
			continue;
		assert_int_equal(sscanf(line + 26, "%31s %31s", a, b), 2);
		*cur = strcmp(a, "unlimited") == 0 ? RLIM_INFINITY : strtoull(a, NULL, 10);
		*max = strcmp(b, "unlimited") == 0 ? RLIM_INFINITY : strtoull(b, NULL, 10);
		found = true;
	}
	fclose(f);
	if (!found)
		fail_msg("no '%s' in %s", name, path);
}

static void
test_confined_child(void **state)
{
	(void)state;
	int sv[2], leak[2];
	struct mw_filter f;
	alarm(TEST_TIMEOUT_S);
	assert_int_equal(mw_filter_build(&f), 0);
	assert_true(f.len > 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* Not CLOEXEC-relevant (no exec): confinement itself must close it. */
	assert_int_equal(pipe(leak), 0);
	uid_t uid0 = geteuid();

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		close(leak[0]);
		if (mw_confine_worker(sv[1], &f) != 0)
			_exit(125);
		char c = 'R';
		/* Confined: tell the parent, then wait for its go. */
		if (write(MW_WORKER_FD, &c, 1) != 1 || read(MW_WORKER_FD, &c, 1) != 1)
			_exit(2);
		if (c == 'g') {
			c = 'S';	/* about to make the forbidden call */
			if (write(MW_WORKER_FD, &c, 1) != 1)
				_exit(2);
			forbidden_syscall();
			_exit(77);
		}
		_exit(3);
	}
	close(sv[1]);
	close(leak[1]);
	mw_filter_free(&f);
	char c = 0;
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(c, 'R');

	/* The write end of the pipe it inherited is closed in the child. */
	assert_int_equal(read(leak[0], &c, 1), 0);
	close(leak[0]);

	/* rlimits, read from outside while it is blocked on its socket. */
	rlim_t cur, lmax;
	child_limit(pid, RLIMIT_NPROC, "Max processes", &cur, &lmax);
	assert_true(cur == 0 && lmax == 0);
	child_limit(pid, RLIMIT_FSIZE, "Max file size", &cur, &lmax);
	assert_true(cur == 0 && lmax == 0);
	child_limit(pid, RLIMIT_NOFILE, "Max open files", &cur, &lmax);
	assert_true(cur == MW_WORKER_FD + 1 && lmax == MW_WORKER_FD + 1);
	child_limit(pid, RLIMIT_CORE, "Max core file size", &cur, &lmax);
	assert_true(cur == 0 && lmax == 0);
	child_limit(pid, RLIMIT_MEMLOCK, "Max locked memory", &cur, &lmax);
	assert_true(cur == 0 && lmax == 0);
	child_limit(pid, RLIMIT_MSGQUEUE, "Max msgqueue size", &cur, &lmax);
	assert_true(cur == 0 && lmax == 0);
	struct mw_limits max;
	mw_limits_maximum(&max);
	child_limit(pid, RLIMIT_CPU, "Max cpu time", &cur, &lmax);
	assert_true(cur == max.cpu_ms / 1000 + 1 && lmax == cur);
#ifndef __SANITIZE_ADDRESS__
	child_limit(pid, RLIMIT_AS, "Max address space", &cur, &lmax);
	assert_true(lmax == max.memory + 512ull * 1024 * 1024);
#endif

	char val[128];
	assert_int_equal(status_field(pid, "NoNewPrivs", val, sizeof(val)), 0);
	assert_int_equal(atoi(val), 1);
	assert_int_equal(status_field(pid, "Seccomp", val, sizeof(val)), 0);
	assert_int_equal(atoi(val), 2);	/* filter mode */
	assert_int_equal(status_field(pid, "Uid", val, sizeof(val)), 0);
	unsigned r_, e_, s_, fs_;
	assert_int_equal(sscanf(val, "%u %u %u %u", &r_, &e_, &s_, &fs_), 4);
	if (uid0 == 0) {
		/* Root drops to nobody: real, effective, saved and fs uid. */
		assert_int_equal(r_, 65534);
		assert_int_equal(e_, 65534);
		assert_int_equal(s_, 65534);
		assert_int_equal(fs_, 65534);
		assert_int_equal(status_field(pid, "Gid", val, sizeof(val)), 0);
		assert_int_equal(atoi(val), 65534);
		assert_int_equal(status_field(pid, "Groups", val, sizeof(val)), 0);
		assert_int_equal(strspn(val, " \t\n"), strlen(val));	/* none */
		assert_int_equal(status_field(pid, "CapEff", val, sizeof(val)), 0);
		assert_int_equal(strtoull(val, NULL, 16), 0);
	} else {
		print_message("not root: uid drop not exercised\n");
		assert_int_equal(e_, uid0);
	}

	/* Now the forbidden call: it is killed by SIGSYS right after telling us. */
	c = 'g';
	assert_int_equal(write(sv[0], &c, 1), 1);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(c, 'S');
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st))
		fail_msg("child exited %d instead of dying", WEXITSTATUS(st));
	assert_int_equal(WTERMSIG(st), SIGSYS);
	close(sv[0]);
	alarm(0);
}

/* Found by tests/fuzz/fuzz_codec: RESULT's error is a cstring; one with a
 * NUL must be refused, not decoded into a string that reads shorter. */
static void
test_dec_result_refuses_nul_in_error(void **state)
{
	struct mw_buf b, p;
	struct mw_result r;
	uint8_t type;
	static const char err[] = "a\0b";

	(void)state;
	mw_buf_init(&b, 4096);
	size_t start;
	assert_int_equal(mw_frame_begin(&b, MW_F_RESULT, &start), 0);
	assert_int_equal(mw_buf_put_cstring(&b, "job"), 0);
	assert_int_equal(mw_buf_put_u8(&b, MW_JOB_ERROR), 0);
	assert_int_equal(mw_buf_put_string(&b, err, 3), 0);
	assert_int_equal(mw_buf_put_string(&b, "", 0), 0);
	assert_int_equal(mw_buf_put_string(&b, "", 0), 0);
	assert_int_equal(mw_buf_put_u8(&b, 0), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(mw_buf_put_u64(&b, 0), 0);
	assert_int_equal(mw_frame_end(&b, start), 0);
	assert_int_equal(mw_frame_take(&b, MW_MAX_CALLER_FRAME, &type, &p), 0);
	assert_int_equal(mw_dec_result(&p, &r), MW_WIRE_EFORMAT);
	mw_result_free(&r);
	mw_buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest hostile[] = {
		cmocka_unit_test(test_dec_result_refuses_nul_in_error),
		cmocka_unit_test(test_dec_limits_refuses_zero),
		cmocka_unit_test(test_lua_cancel),
		cmocka_unit_test(test_lua_protected_paths),
		cmocka_unit_test(test_well_behaved),
		cmocka_unit_test(test_forbidden_syscalls),
		cmocka_unit_test(test_foreign_arch_syscalls),
		cmocka_unit_test(test_crashes),
		cmocka_unit_test(test_segv_crash),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_max_size_frame_is_legal),
		cmocka_unit_test(test_capability_floods),
		cmocka_unit_test(test_silence_hits_wall_limit),
		cmocka_unit_test(test_output_limit),
	};
	const struct CMUnitTest lua[] = {
		cmocka_unit_test(test_lua_parallel_many_jobs),
		cmocka_unit_test(test_lua_queue_full_is_busy),
		cmocka_unit_test(test_lua_busy_while_running),
		cmocka_unit_test(test_lua_program_too_large),
	};
	const struct CMUnitTest confine[] = {
		cmocka_unit_test(test_confined_child),
	};
	int fails = 0;
	signal(SIGPIPE, SIG_IGN);
	fails += cmocka_run_group_tests_name("hostile workers", hostile, setup_hostile,
	    teardown_hostile);
	fails += cmocka_run_group_tests_name("lua workers", lua, NULL, NULL);
	fails += cmocka_run_group_tests_name("confinement", confine, NULL, NULL);
	return fails;
}
