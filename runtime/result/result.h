/*
 * result.h: the runtime's result room -- how a sandbox result becomes the
 * result message that travels back over OMEMO (spec/result.md), how
 * `moonwire send` reads one, and the JSON and text renderings every
 * command prints.  Private to runtime/.
 */
#ifndef MW_RESULT_H
#define MW_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "runtime/mw_runtime.h"
#include "sandbox/mw_sandbox.h"

/* ---- the result message (spec/result.md) ---- */

/* Version 1 (older agents: headers first) is still read; version 2 (a
 * one-line summary first, the output as a XEP-0393 preformatted block) is
 * what this agent writes. */
#define MW_RESULT_MAGIC_V1 "moonwire-result 1"
#define MW_RESULT_MAGIC_V2 "moonwire-result 2"
#define MW_RESULT_FENCE "```"
/* longest summary line, in bytes, before its "..." */
#define MW_RESULT_SUMMARY_MAX 160

/* Renders a sandbox result (refusal == 0) or a refusal (refusal < 0, r may
 * be NULL) as the result message text; output is cut to max_output bytes
 * (on a UTF-8 boundary, marked truncated); the whole text stays within
 * MW_OMEMO_MAX_PLAINTEXT.  malloc'ed, NUL-terminated. */
char *mw_result_message(const char *job_id, const struct mw_result *r,
    int refusal, const char *reason, uint32_t max_output);

/* The agent's answer to a cancellation it did not carry out (refusal < 0:
 * already_finished, unknown_job, or why the cancellation was refused): a
 * refusal message with the header `answer-to: cancel`, so that a reader
 * never takes it for the result of job_id itself (spec/result.md).
 * malloc'ed. */
char *mw_result_cancel_answer(const char *job_id, int refusal, const char *reason);

struct mw_result_msg {
	int version;			/* 1 or 2 */
	char *job_id;
	char *status;			/* a job status name or "refused" */
	char *refusal;			/* refusal code when status is refused */
	char *error;			/* NULL if none */
	cJSON *values;			/* array */
	char *output;
	size_t output_len;
	bool output_truncated;
	struct mw_usage usage;
	bool answer_to_cancel;		/* `answer-to: cancel`: answers a cancellation, not the job */
};
/* 0, or -1 when text is not a result message (either version). */
int mw_result_message_parse(const char *text, size_t len, struct mw_result_msg *m);
void mw_result_msg_free(struct mw_result_msg *m);
/* JSON for `moonwire send --json` (spec/result.md); malloc'ed. */
char *mw_result_msg_json(const struct mw_result_msg *m, const char *from);
/* Exit status of `moonwire send` for one result. */
int mw_result_msg_exit(const struct mw_result_msg *m);

/* Valid UTF-8 (and with xml_safe, XML-safe) copy; result.c. */
char *mw_text_clean(const uint8_t *s, size_t n, bool xml_safe, size_t *outlen);
/* JSON array text of a sandbox result's values (result.c). */
char *mw_result_values_json(const struct mw_result *r);

#endif
