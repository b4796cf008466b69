/*
 * codec.c: payloads of the caller <-> supervisor frames (HELLO, JOB, RESULT).
 * The supervisor <-> worker payloads are small enough to live next to their
 * users.  Every decoder reads through mw_buf and owns what it returns.
 */
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox_int.h"

#define CHECK(x) do { int r_ = (x); if (r_ != 0) return r_; } while (0)
#define MAX_NAME 4096
#define MAX_LIST 256

int
mw_enc_limits(struct mw_buf *b, const struct mw_limits *l)
{
	CHECK(mw_buf_put_u64(b, l->instructions));
	CHECK(mw_buf_put_u64(b, l->memory));
	CHECK(mw_buf_put_u32(b, l->cpu_ms));
	CHECK(mw_buf_put_u32(b, l->wall_ms));
	CHECK(mw_buf_put_u32(b, l->output_bytes));
	CHECK(mw_buf_put_u32(b, l->program_bytes));
	CHECK(mw_buf_put_u32(b, l->result_bytes));
	CHECK(mw_buf_put_u32(b, l->result_depth));
	CHECK(mw_buf_put_u32(b, l->cap_calls));
	CHECK(mw_buf_put_u64(b, l->write_bytes));
	return 0;
}

int
mw_dec_limits(struct mw_buf *b, struct mw_limits *l)
{
	struct mw_limits max;
	CHECK(mw_buf_get_u64(b, &l->instructions));
	CHECK(mw_buf_get_u64(b, &l->memory));
	CHECK(mw_buf_get_u32(b, &l->cpu_ms));
	CHECK(mw_buf_get_u32(b, &l->wall_ms));
	CHECK(mw_buf_get_u32(b, &l->output_bytes));
	CHECK(mw_buf_get_u32(b, &l->program_bytes));
	CHECK(mw_buf_get_u32(b, &l->result_bytes));
	CHECK(mw_buf_get_u32(b, &l->result_depth));
	CHECK(mw_buf_get_u32(b, &l->cap_calls));
	CHECK(mw_buf_get_u64(b, &l->write_bytes));
	/* Limits above the hard maxima are clamped, never honoured.  A zero
	 * limit is malformed (no sender produces one): refusing it keeps a
	 * missing value from ever meaning "no limit". */
	mw_limits_maximum(&max);
#define CLAMP(f) if (l->f == 0) return MW_WIRE_EFORMAT; if (l->f > max.f) l->f = max.f
	CLAMP(instructions); CLAMP(memory); CLAMP(cpu_ms); CLAMP(wall_ms);
	CLAMP(output_bytes); CLAMP(program_bytes); CLAMP(result_bytes);
	CLAMP(result_depth); CLAMP(cap_calls); CLAMP(write_bytes);
#undef CLAMP
	return 0;
}

static int
enc_strv(struct mw_buf *b, char *const *v, uint32_t n)
{
	CHECK(mw_buf_put_u32(b, n));
	for (uint32_t i = 0; i < n; i++)
		CHECK(mw_buf_put_cstring(b, v[i]));
	return 0;
}

static int
dec_strv(struct mw_buf *b, char ***out, uint32_t *n)
{
	uint32_t count;
	*out = NULL;
	*n = 0;
	CHECK(mw_buf_get_u32(b, &count));
	if (count > MAX_LIST)
		return MW_WIRE_ETOOBIG;
	if (count == 0)
		return 0;
	if ((*out = calloc(count, sizeof(char *))) == NULL)
		return MW_WIRE_ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		CHECK(mw_buf_get_cstring(b, &(*out)[i], MAX_NAME));
		(*n)++;
	}
	return 0;
}

static int
enc_grants(struct mw_buf *b, const struct mw_grants *g)
{
	CHECK(enc_strv(b, g->fs_read, g->n_fs_read));
	CHECK(enc_strv(b, g->fs_write, g->n_fs_write));
	CHECK(mw_buf_put_u32(b, g->n_commands));
	for (uint32_t i = 0; i < g->n_commands; i++) {
		const struct mw_command_grant *c = &g->commands[i];
		CHECK(mw_buf_put_cstring(b, c->name));
		CHECK(enc_strv(b, c->argv, c->argc));
		CHECK(mw_buf_put_u32(b, c->max_args));
		CHECK(mw_buf_put_u32(b, c->timeout_ms));
		CHECK(mw_buf_put_u32(b, c->output_bytes));
	}
	CHECK(mw_buf_put_u8(b, g->sys));
	CHECK(mw_buf_put_u8(b, g->kv));
	CHECK(mw_buf_put_cstring(b, g->kv_scope ? g->kv_scope : ""));
	CHECK(mw_buf_put_u32(b, g->sleep_max_ms));
	return 0;
}

static int
dec_grants(struct mw_buf *b, struct mw_grants *g)
{
	uint8_t u8;
	uint32_t n;
	CHECK(dec_strv(b, &g->fs_read, &g->n_fs_read));
	CHECK(dec_strv(b, &g->fs_write, &g->n_fs_write));
	CHECK(mw_buf_get_u32(b, &n));
	if (n > MAX_LIST)
		return MW_WIRE_ETOOBIG;
	if (n > 0 && (g->commands = calloc(n, sizeof(*g->commands))) == NULL)
		return MW_WIRE_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct mw_command_grant *c = &g->commands[i];
		g->n_commands++;
		CHECK(mw_buf_get_cstring(b, &c->name, MAX_NAME));
		CHECK(dec_strv(b, &c->argv, &c->argc));
		if (c->argc == 0 || c->argv[0][0] != '/')
			return MW_WIRE_EFORMAT;
		CHECK(mw_buf_get_u32(b, &c->max_args));
		CHECK(mw_buf_get_u32(b, &c->timeout_ms));
		CHECK(mw_buf_get_u32(b, &c->output_bytes));
	}
	CHECK(mw_buf_get_u8(b, &u8));
	g->sys = u8 != 0;
	CHECK(mw_buf_get_u8(b, &u8));
	g->kv = u8 != 0;
	CHECK(mw_buf_get_cstring(b, &g->kv_scope, MAX_NAME));
	if (g->kv && g->kv_scope[0] == '\0')
		return MW_WIRE_EFORMAT;
	CHECK(mw_buf_get_u32(b, &g->sleep_max_ms));
	return 0;
}

int
mw_enc_job(struct mw_buf *out, const struct mw_job *job)
{
	static const struct mw_grants none;
	size_t start;
	CHECK(mw_frame_begin(out, MW_F_JOB, &start));
	CHECK(mw_buf_put_cstring(out, job->id));
	CHECK(mw_buf_put_cstring(out, job->chunkname ? job->chunkname : "program"));
	CHECK(mw_buf_put_string(out, job->program, job->program_len));
	CHECK(mw_enc_limits(out, &job->limits));
	CHECK(enc_grants(out, job->grants ? job->grants : &none));
	CHECK(mw_enc_args(out, job->args, job->n_args));
	return mw_frame_end(out, start);
}

int
mw_enc_args(struct mw_buf *b, const struct mw_job_arg *args, uint32_t n)
{
	if (n > MW_ARGS_MAX)
		return MW_WIRE_ETOOBIG;
	CHECK(mw_buf_put_u32(b, n));
	for (uint32_t i = 0; i < n; i++) {
		CHECK(mw_buf_put_cstring(b, args[i].name));
		CHECK(mw_buf_put_cstring(b, args[i].value));
	}
	return 0;
}

int
mw_dec_args(struct mw_buf *b, char **names, char **values, uint32_t *n)
{
	uint32_t count;
	*n = 0;
	CHECK(mw_buf_get_u32(b, &count));
	if (count > MW_ARGS_MAX)
		return MW_WIRE_ETOOBIG;
	for (uint32_t i = 0; i < count; i++) {
		CHECK(mw_buf_get_cstring(b, &names[i], MW_ARG_NAME_MAX));
		if (names[i][0] == '\0') {
			free(names[i]);
			return MW_WIRE_EFORMAT;
		}
		int r = mw_buf_get_cstring(b, &values[i], MW_ARG_VALUE_MAX);
		if (r != 0) {
			free(names[i]);
			return r;
		}
		(*n)++;
	}
	return 0;
}

void
mw_job_owned_free(struct mw_job_owned *job)
{
	free(job->id);
	free(job->chunkname);
	free(job->program);
	mw_grants_free(&job->grants);
	for (uint32_t i = 0; i < job->n_args; i++) {
		free(job->arg_names[i]);
		free(job->arg_values[i]);
	}
	memset(job, 0, sizeof(*job));
}

int
mw_dec_job(struct mw_buf *p, struct mw_job_owned *job)
{
	const uint8_t *prog;
	memset(job, 0, sizeof(*job));
	CHECK(mw_buf_get_cstring(p, &job->id, MAX_NAME));
	CHECK(mw_buf_get_cstring(p, &job->chunkname, MAX_NAME));
	CHECK(mw_buf_get_string_direct(p, &prog, &job->program_len));
	if ((job->program = malloc(job->program_len + 1)) == NULL)
		return MW_WIRE_ENOMEM;
	memcpy(job->program, prog, job->program_len);
	job->program[job->program_len] = '\0';
	CHECK(mw_dec_limits(p, &job->limits));
	CHECK(dec_grants(p, &job->grants));
	CHECK(mw_dec_args(p, job->arg_names, job->arg_values, &job->n_args));
	return mw_buf_avail(p) == 0 ? 0 : MW_WIRE_EFORMAT;
}

int
mw_enc_result(struct mw_buf *out, const struct mw_result *r)
{
	size_t start;
	CHECK(mw_frame_begin(out, MW_F_RESULT, &start));
	CHECK(mw_buf_put_cstring(out, r->job_id ? r->job_id : ""));
	CHECK(mw_buf_put_u8(out, (uint8_t)r->status));
	CHECK(mw_buf_put_cstring(out, r->error ? r->error : ""));
	CHECK(mw_buf_put_string(out, r->values, r->values_len));
	CHECK(mw_buf_put_string(out, r->output, r->output_len));
	CHECK(mw_buf_put_u8(out, r->output_truncated));
	CHECK(mw_buf_put_u64(out, r->usage.cpu_us));
	CHECK(mw_buf_put_u64(out, r->usage.wall_us));
	CHECK(mw_buf_put_u64(out, r->usage.instructions));
	CHECK(mw_buf_put_u64(out, r->usage.memory_peak));
	return mw_frame_end(out, start);
}

static int
dup_bytes(const uint8_t *p, size_t n, void *outp)
{
	uint8_t **out = outp;
	if ((*out = malloc(n + 1)) == NULL)
		return MW_WIRE_ENOMEM;
	if (n > 0)
		memcpy(*out, p, n);
	(*out)[n] = '\0';
	return 0;
}

int
mw_dec_result(struct mw_buf *p, struct mw_result *r)
{
	const uint8_t *s;
	size_t n;
	uint8_t u8;
	memset(r, 0, sizeof(*r));
	CHECK(mw_buf_get_cstring(p, &r->job_id, MAX_NAME));
	CHECK(mw_buf_get_u8(p, &u8));
	if (u8 > MW_JOB_STATUS_MAX)
		return MW_WIRE_EFORMAT;
	r->status = (enum mw_job_status)u8;
	CHECK(mw_buf_get_string_direct(p, &s, &n));
	/* a cstring (spec/wire.md): an error with a NUL would be cut short */
	if (memchr(s, '\0', n) != NULL)
		return MW_WIRE_EFORMAT;
	if (n > 0)
		CHECK(dup_bytes(s, n, &r->error));
	CHECK(mw_buf_get_string_direct(p, &s, &n));
	if (n > 0) {
		CHECK(dup_bytes(s, n, &r->values));
		r->values_len = n;
	}
	CHECK(mw_buf_get_string_direct(p, &s, &n));
	CHECK(dup_bytes(s, n, &r->output));
	r->output_len = n;
	CHECK(mw_buf_get_u8(p, &u8));
	r->output_truncated = u8 != 0;
	CHECK(mw_buf_get_u64(p, &r->usage.cpu_us));
	CHECK(mw_buf_get_u64(p, &r->usage.wall_us));
	CHECK(mw_buf_get_u64(p, &r->usage.instructions));
	CHECK(mw_buf_get_u64(p, &r->usage.memory_peak));
	return mw_buf_avail(p) == 0 ? 0 : MW_WIRE_EFORMAT;
}
