/*
 * status.c: the closed list of job statuses, default and maximum limits, and
 * the ownership helpers for grants and results.  The names here are part of
 * the wire contract (spec/errors.md): never rename one.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox/sandbox_int.h"

static const char *const status_names[MW_JOB_STATUS_MAX + 1] = {
	[MW_JOB_OK] = "ok",
	[MW_JOB_ERROR] = "error",
	[MW_JOB_SYNTAX_ERROR] = "syntax_error",
	[MW_JOB_INSTRUCTION_LIMIT] = "instruction_limit",
	[MW_JOB_MEMORY_LIMIT] = "memory_limit",
	[MW_JOB_CPU_LIMIT] = "cpu_limit",
	[MW_JOB_WALL_LIMIT] = "wall_limit",
	[MW_JOB_OUTPUT_LIMIT] = "output_limit",
	[MW_JOB_PROGRAM_TOO_LARGE] = "program_too_large",
	[MW_JOB_RESULT_LIMIT] = "result_limit",
	[MW_JOB_CAPABILITY_LIMIT] = "capability_limit",
	[MW_JOB_SANDBOX_VIOLATION] = "sandbox_violation",
	[MW_JOB_CRASHED] = "crashed",
	[MW_JOB_PROTOCOL_ERROR] = "protocol_error",
	[MW_JOB_BUSY] = "busy",
	[MW_JOB_INTERRUPTED] = "interrupted",
	[MW_JOB_INTERNAL_ERROR] = "internal_error",
	[MW_JOB_CANCELLED] = "cancelled",
};

const char *
mw_job_status_name(enum mw_job_status s)
{
	if ((unsigned)s > MW_JOB_STATUS_MAX)
		return "internal_error";
	return status_names[s];
}

int
mw_job_status_from_name(const char *name)
{
	for (int i = 0; i <= MW_JOB_STATUS_MAX; i++)
		if (strcmp(status_names[i], name) == 0)
			return i;
	return -1;
}

void
mw_limits_default(struct mw_limits *l)
{
	l->instructions = 100000000;	/* ~0.3 s of plain Lua */
	l->memory = 32u * 1024 * 1024;
	l->cpu_ms = 2000;
	l->wall_ms = 10000;
	l->output_bytes = 64u * 1024;
	l->program_bytes = 256u * 1024;
	l->result_bytes = 64u * 1024;
	l->result_depth = 16;
	l->cap_calls = 1000;
	l->write_bytes = 4u * 1024 * 1024;
}

void
mw_limits_maximum(struct mw_limits *l)
{
	l->instructions = 100000000000ull;
	l->memory = 1024ull * 1024 * 1024;
	l->cpu_ms = 600000;
	l->wall_ms = 3600000;
	l->output_bytes = 1024u * 1024;
	l->program_bytes = 4u * 1024 * 1024;
	l->result_bytes = 1024u * 1024;
	l->result_depth = 48;
	l->cap_calls = 100000;
	l->write_bytes = 1024ull * 1024 * 1024;
}

static void
free_strv(char **v, uint32_t n)
{
	for (uint32_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

void
mw_grants_free(struct mw_grants *g)
{
	free_strv(g->fs_read, g->n_fs_read);
	free_strv(g->fs_write, g->n_fs_write);
	for (uint32_t i = 0; g->commands != NULL && i < g->n_commands; i++) {
		free(g->commands[i].name);
		free_strv(g->commands[i].argv, g->commands[i].argc);
	}
	free(g->commands);
	free(g->kv_scope);
	memset(g, 0, sizeof(*g));
}

static int
copy_strv(char ***dst, char *const *src, uint32_t n)
{
	*dst = NULL;
	if (n == 0)
		return 0;
	if ((*dst = calloc(n, sizeof(char *))) == NULL)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (((*dst)[i] = strdup(src[i])) == NULL)
			return -1;
	return 0;
}

int
mw_grants_copy(struct mw_grants *dst, const struct mw_grants *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->n_fs_read = src->n_fs_read;
	dst->n_fs_write = src->n_fs_write;
	dst->sys = src->sys;
	dst->kv = src->kv;
	dst->sleep_max_ms = src->sleep_max_ms;
	if (copy_strv(&dst->fs_read, src->fs_read, src->n_fs_read) != 0 ||
	    copy_strv(&dst->fs_write, src->fs_write, src->n_fs_write) != 0)
		goto fail;
	if (src->kv_scope != NULL && (dst->kv_scope = strdup(src->kv_scope)) == NULL)
		goto fail;
	if (src->n_commands > 0) {
		dst->commands = calloc(src->n_commands, sizeof(*dst->commands));
		if (dst->commands == NULL)
			goto fail;
		dst->n_commands = src->n_commands;
		for (uint32_t i = 0; i < src->n_commands; i++) {
			struct mw_command_grant *d = &dst->commands[i];
			const struct mw_command_grant *s = &src->commands[i];
			*d = *s;
			d->name = NULL;
			d->argv = NULL;
			d->argc = s->argc;
			if ((d->name = strdup(s->name)) == NULL ||
			    copy_strv(&d->argv, s->argv, s->argc) != 0)
				goto fail;
		}
	}
	return 0;
fail:
	mw_grants_free(dst);
	return -1;
}

void
mw_result_free(struct mw_result *r)
{
	free(r->job_id);
	free(r->error);
	free(r->values);
	free(r->output);
	memset(r, 0, sizeof(*r));
}

uint64_t
mw_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
