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

#define MW_RESULT_MAGIC "moonwire-result 1"

/* Renders a sandbox result (refusal == 0) or a refusal (refusal < 0, r may
 * be NULL) as the result message text; output is cut to max_output bytes
 * (on a UTF-8 boundary, marked truncated); the whole text stays within
 * MW_OMEMO_MAX_PLAINTEXT.  malloc'ed, NUL-terminated. */
char *mw_result_message(const char *job_id, const struct mw_result *r,
    int refusal, const char *reason, uint32_t max_output);

struct mw_result_msg {
	char *job_id;
	char *status;			/* a job status name or "refused" */
	char *refusal;			/* refusal code when status is refused */
	char *error;			/* NULL if none */
	cJSON *values;			/* array */
	char *output;
	size_t output_len;
	bool output_truncated;
	struct mw_usage usage;
};
/* 0, or -1 when text is not a result message. */
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
