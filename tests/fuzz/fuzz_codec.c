/*
 * fuzz_codec: the frames and payloads a process receives from a less
 * trusted one -- above all what the supervisor takes from a worker (a
 * worker runs hostile Lua and may be fully compromised):
 *   mode 0: a worker's byte stream as sv_worker.c reads it: mw_frame_take
 *           with MW_MAX_WORKER_FRAME, then per frame the DONE parse of
 *           handle_done() (status, error, values, usage; mw_value_walk with
 *           the job's depth limit) or mw_cap_dispatch() for CAP_CALL, with
 *           grants = read access to one fixture directory and sleep;
 *   mode 1: mw_dec_job (caller -> supervisor), mode 2: mw_dec_result
 *           (supervisor -> caller), mode 3: mw_value_walk alone,
 *   mode 4: a sequence of mw_buf reader calls chosen by the input.
 *
 * Invariants beyond "no crash":
 *  - framing is incremental: the frames taken when the stream arrives in
 *    input-chosen chunks are the frames taken from the whole stream;
 *  - a capability call never reads outside its grant: no reply contains the
 *    marker of FIXTURE/secret (beside the granted directory) or of the
 *    protected file inside it, whatever
 *    path tricks the call uses; a reply stays within MW_MAX_WORKER_FRAME;
 *    an asynchronous result can only be a sleep (no command is granted);
 *  - decode(encode(decode(x))) == decode(x) for jobs and results;
 *  - the value walk re-encoded from its events is byte-identical to the
 *    bytes it consumed;
 *  - a failed reader call consumes nothing; off <= len always.
 */
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"
#include "tests/fuzz/fuzzlib.h"

#define FIXTURE "/tmp/moonwire-fuzz-codec"
#define SECRET "MOONWIRE-FUZZ-SECRET-7f3a"

static char *granted[1] = { (char *)FIXTURE "/granted" };
/* The caller's own file inside the granted directory: never readable. */
static struct mw_protected protected_file = { (char *)FIXTURE "/granted/sub/agent.db", false, 0, 0 };
static struct mw_grants grants = {
	.fs_read = granted, .n_fs_read = 1, .sleep_max_ms = 1000,
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mkdir(FIXTURE, 0700);
	mkdir(FIXTURE "/granted", 0700);
	mkdir(FIXTURE "/granted/sub", 0700);
	FILE *f = fopen(FIXTURE "/secret", "w");
	if (f == NULL)
		abort();
	fputs(SECRET "\n", f);
	fclose(f);
	if ((f = fopen(FIXTURE "/granted/a.txt", "w")) == NULL)
		abort();
	fputs("line one\nline two\n", f);
	fclose(f);
	if ((f = fopen(FIXTURE "/granted/sub/agent.db", "w")) == NULL)
		abort();
	fputs(SECRET "\n", f);
	fclose(f);
	struct stat st;
	if (stat(FIXTURE "/granted/sub/agent.db", &st) != 0)
		abort();
	protected_file.have_id = true;
	protected_file.dev = st.st_dev;
	protected_file.ino = st.st_ino;
	unlink(FIXTURE "/granted/sub/link");
	if (symlink("../../secret", FIXTURE "/granted/sub/link") != 0)
		abort();
	return 0;
}

/* ---- mode 0: the supervisor's side of a worker ---- */

static void
sv_done(struct mw_buf *p)
{
	uint8_t st;
	const uint8_t *err, *vals;
	size_t errlen, vlen;
	uint64_t instr, mem, cpu;
	if (mw_buf_get_u8(p, &st) != 0 || st > MW_JOB_STATUS_MAX ||
	    mw_buf_get_string_direct(p, &err, &errlen) != 0 || errlen > 4096 ||
	    mw_buf_get_string_direct(p, &vals, &vlen) != 0 ||
	    mw_buf_get_u64(p, &instr) != 0 || mw_buf_get_u64(p, &mem) != 0 ||
	    mw_buf_get_u64(p, &cpu) != 0 || mw_buf_avail(p) != 0)
		return;
	FUZZ_CHECK(fz_inside(vals, vlen, p->data, p->len));
	struct mw_limits l;
	mw_limits_default(&l);
	if (vlen > 0 && vlen <= l.result_bytes) {
		struct mw_buf v;
		struct mw_value_limits lim = { l.result_depth + 1, MW_VALUE_MAX_ITEMS };
		mw_buf_view(&v, vals, vlen);
		(void)mw_value_walk(&v, &lim, NULL, NULL);
	}
}

static void
sv_cap_call(struct mw_buf *p)
{
	struct mw_buf reply;
	struct mw_cap_async async;
	bool call_has_secret = memmem(mw_buf_ptr(p), mw_buf_avail(p), SECRET, strlen(SECRET)) != NULL;
	memset(&async, 0, sizeof(async));
	async.out_fd = async.err_fd = -1;
	mw_buf_init(&reply, MW_MAX_WORKER_FRAME - 64);
	uint64_t written = 0;
	struct mw_cap_ctx ctx = { .grants = &grants, .prot = &protected_file, .n_prot = 1,
		.now_us = 1000000, .wall_deadline_us = 2000000, .write_used = &written,
		.write_limit = 4096 };
	int r = mw_cap_dispatch(&ctx, p, &reply, &async);
	FUZZ_CHECK(r == 0 || r == 1 || r == -1);
	if (r == 0) {
		FUZZ_CHECK(mw_buf_avail(&reply) <= MW_MAX_WORKER_FRAME - 64);
		/* (an error may echo the call's own text: the fuzzer learns the
		 * marker from this very comparison) */
		if (!call_has_secret)
			FUZZ_CHECK(memmem(mw_buf_ptr(&reply), mw_buf_avail(&reply), SECRET,
			    strlen(SECRET)) == NULL);
	} else if (r == 1) {
		FUZZ_CHECK(async.kind == MW_ASYNC_SLEEP);
		mw_cap_async_abort(&async);
	}
	mw_buf_free(&reply);
}

struct frame_rec {
	uint8_t type;
	size_t off, len;	/* payload within the stream */
};

static size_t
take_all(const uint8_t *s, size_t n, struct frame_rec *out, size_t max, bool handle)
{
	struct mw_buf in;
	size_t k = 0;
	mw_buf_view(&in, s, n);
	while (k < max) {
		uint8_t type;
		struct mw_buf p;
		size_t before = in.off;
		int r = mw_frame_take(&in, MW_MAX_WORKER_FRAME, &type, &p);
		if (r != 0) {
			FUZZ_CHECK(in.off == before);
			break;
		}
		FUZZ_CHECK(fz_inside(p.data, p.len, s, n));
		out[k].type = type;
		out[k].off = (size_t)(p.data - s);
		out[k].len = p.len;
		k++;
		if (!handle)
			continue;
		if (type == MW_F_DONE)
			sv_done(&p);
		else if (type == MW_F_CAP_CALL)
			sv_cap_call(&p);
	}
	return k;
}

static void
mode_stream(struct fz_in *in)
{
	uint8_t chunk = fz_u8(in) | 1;
	struct frame_rec whole[64];
	size_t nw = take_all(in->p, in->n, whole, 64, true);

	/* The same stream in chunks through a growing buffer. */
	struct mw_buf b;
	size_t ni = 0, fed = 0;
	mw_buf_init(&b, MW_MAX_WORKER_FRAME + MW_FRAME_HEADER);
	while (ni < 64) {
		uint8_t type;
		struct mw_buf p;
		int r = mw_frame_take(&b, MW_MAX_WORKER_FRAME, &type, &p);
		if (r == 0) {
			FUZZ_CHECK(ni < nw && whole[ni].type == type && whole[ni].len == p.len &&
			    memcmp(in->p + whole[ni].off, p.data, p.len) == 0);
			ni++;
			mw_buf_compact(&b);
			continue;
		}
		if (r != MW_WIRE_ESHORT || fed == in->n)
			break;
		size_t k = in->n - fed < chunk ? in->n - fed : chunk;
		if (mw_buf_put(&b, in->p + fed, k) != 0)
			break;
		fed += k;
	}
	FUZZ_CHECK(ni == nw || ni == 64);
	mw_buf_free(&b);
}

/* ---- modes 1, 2: caller <-> supervisor payloads ---- */

static void
mode_job(struct fz_in *in)
{
	struct mw_buf p, out, p2;
	struct mw_job_owned j, j2;
	uint8_t type;
	mw_buf_view(&p, in->p, in->n);
	if (mw_dec_job(&p, &j) != 0) {
		mw_job_owned_free(&j);
		return;
	}
	struct mw_job job = {
		.id = j.id, .chunkname = j.chunkname, .program = j.program,
		.program_len = j.program_len, .limits = j.limits, .grants = &j.grants,
	};
	mw_buf_init(&out, MW_MAX_CALLER_FRAME + 64);
	FUZZ_CHECK(mw_enc_job(&out, &job) == 0);
	FUZZ_CHECK(mw_frame_take(&out, MW_MAX_CALLER_FRAME, &type, &p2) == 0 && type == MW_F_JOB);
	FUZZ_CHECK(mw_dec_job(&p2, &j2) == 0);
	FUZZ_CHECK(strcmp(j.id, j2.id) == 0 && strcmp(j.chunkname, j2.chunkname) == 0);
	FUZZ_CHECK(j.program_len == j2.program_len && memcmp(j.program, j2.program, j.program_len) == 0);
	FUZZ_CHECK(memcmp(&j.limits, &j2.limits, sizeof(j.limits)) == 0);
	FUZZ_CHECK(j.grants.n_fs_read == j2.grants.n_fs_read &&
	    j.grants.n_fs_write == j2.grants.n_fs_write &&
	    j.grants.n_commands == j2.grants.n_commands && j.grants.kv == j2.grants.kv &&
	    j.grants.sys == j2.grants.sys && j.grants.sleep_max_ms == j2.grants.sleep_max_ms);
	for (uint32_t i = 0; i < j.grants.n_commands; i++)
		FUZZ_CHECK(j2.grants.commands[i].argv[0][0] == '/' &&
		    strcmp(j.grants.commands[i].name, j2.grants.commands[i].name) == 0);
	mw_job_owned_free(&j);
	mw_job_owned_free(&j2);
	mw_buf_free(&out);
}

static void
mode_result(struct fz_in *in)
{
	struct mw_buf p, out, p2;
	struct mw_result r, r2;
	uint8_t type;
	mw_buf_view(&p, in->p, in->n);
	if (mw_dec_result(&p, &r) != 0) {
		mw_result_free(&r);
		return;
	}
	FUZZ_CHECK(r.status <= MW_JOB_STATUS_MAX && r.output != NULL);
	mw_buf_init(&out, MW_MAX_CALLER_FRAME + 64);
	FUZZ_CHECK(mw_enc_result(&out, &r) == 0);
	FUZZ_CHECK(mw_frame_take(&out, MW_MAX_CALLER_FRAME, &type, &p2) == 0 && type == MW_F_RESULT);
	FUZZ_CHECK(mw_dec_result(&p2, &r2) == 0);
	FUZZ_CHECK(strcmp(r.job_id, r2.job_id) == 0 && r.status == r2.status);
	FUZZ_CHECK((r.error == NULL) == (r2.error == NULL));
	FUZZ_CHECK(r.values_len == r2.values_len && r.output_len == r2.output_len);
	FUZZ_CHECK(memcmp(&r.usage, &r2.usage, sizeof(r.usage)) == 0);
	mw_result_free(&r);
	mw_result_free(&r2);
	mw_buf_free(&out);
}

/* ---- mode 3: the value tree, re-encoded from its events ---- */

static int
reencode(const struct mw_value_event *ev, void *arg)
{
	struct mw_buf *o = arg;
	uint64_t u;
	if (ev->end)
		return 0;
	if (mw_buf_put_u8(o, (uint8_t)ev->tag) != 0)
		return MW_WIRE_ENOMEM;
	switch (ev->tag) {
	case MW_V_INT:
		return mw_buf_put_u64(o, (uint64_t)ev->i);
	case MW_V_NUMBER:
		memcpy(&u, &ev->n, sizeof(u));
		return mw_buf_put_u64(o, u);
	case MW_V_STRING:
		return mw_buf_put_string(o, ev->s, ev->slen);
	case MW_V_TABLE:
		return mw_buf_put_u32(o, ev->count);
	default:
		return 0;
	}
}

static void
mode_value(struct fz_in *in)
{
	struct mw_buf v, o;
	struct mw_value_limits lim = { 1 + fz_u8(in) % 40, 1 + fz_u32(in) % 4096 };
	mw_buf_view(&v, in->p, in->n);
	mw_buf_init(&o, MW_BUF_DEFAULT_MAX);
	if (mw_value_walk(&v, &lim, reencode, &o) == 0)
		FUZZ_CHECK(mw_buf_avail(&o) == v.off && memcmp(mw_buf_ptr(&o), in->p, v.off) == 0);
	else
		FUZZ_CHECK(v.off == 0);
	mw_buf_free(&o);
}

/* ---- mode 4: reader calls ---- */

static void
mode_reader(struct fz_in *in)
{
	uint8_t *copy = fz_copy(in->p, in->n);
	size_t n = in->n;
	struct mw_buf b, view;
	mw_buf_view(&b, copy, n);
	for (int i = 0; i < 64 && in->n > 0; i++) {
		uint8_t op = fz_u8(in);
		size_t before = b.off;
		int r = 0;
		uint64_t u64;
		uint32_t u32;
		uint16_t u16;
		uint8_t u8, tmp[16];
		const uint8_t *p;
		size_t len;
		char *s = NULL;
		switch (op % 10) {
		case 0: r = mw_buf_get_u8(&b, &u8); break;
		case 1: r = mw_buf_get_u16(&b, &u16); break;
		case 2: r = mw_buf_get_u32(&b, &u32); break;
		case 3: r = mw_buf_get_u64(&b, &u64); break;
		case 4: r = mw_buf_get(&b, tmp, op % 17); break;
		case 5: r = mw_buf_skip(&b, op); break;
		case 6:
			r = mw_buf_get_string_direct(&b, &p, &len);
			if (r == 0)
				FUZZ_CHECK(fz_inside(p, len, copy, n));
			break;
		case 7:
			r = mw_buf_get_cstring(&b, &s, op);
			if (r == 0)
				FUZZ_CHECK(s != NULL && strlen(s) <= op);
			free(s);
			break;
		case 8:
			r = mw_buf_get_line(&b, &p, &len);
			if (r == 0)
				FUZZ_CHECK(fz_inside(p, len, copy, n) && memchr(p, '\n', len) == NULL);
			break;
		case 9:
			r = mw_buf_get_string_view(&b, &view);
			if (r == 0) {
				FUZZ_CHECK(fz_inside(view.data, view.len, copy, n));
				FUZZ_CHECK(mw_buf_put_u8(&view, 0) != 0);	/* read-only */
			}
			break;
		}
		if (r != 0)
			FUZZ_CHECK(b.off == before);
		FUZZ_CHECK(b.off <= b.len && b.len == n);
	}
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	switch (fz_u8(&in) % 5) {
	case 0: mode_stream(&in); break;
	case 1: mode_job(&in); break;
	case 2: mode_result(&in); break;
	case 3: mode_value(&in); break;
	case 4: mode_reader(&in); break;
	}
	return 0;
}
