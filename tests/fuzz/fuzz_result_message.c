/*
 * fuzz_result_message: mw_result_message_parse, which `moonwire send` runs
 * on every reply that arrives over OMEMO from an agent -- an agent (or
 * anything that holds a trusted device) controls every byte -- and
 * mw_result_msg_json, which renders a parsed reply for --json.
 *
 * Invariants beyond "no crash":
 *  - failure: -1 and the struct zeroed;
 *  - success: job_id, status, values (a JSON array) are set; refusal is set
 *    exactly when status is "refused"; version is 1 or 2; output holds
 *    output_len bytes, is NUL-terminated, and lies where its version puts
 *    it: version 1 at the end of the input, version 2 (when not empty)
 *    right before the closing "```" (and the LF added when the output does
 *    not end with one), which ends the input;
 *  - the JSON rendering parses back as an object whose job_id, status,
 *    output_truncated and usage equal the parsed ones, and whose values
 *    array has as many elements;
 *  - the exit status is one `moonwire send` documents (0..9).
 */
#include <string.h>

#include "runtime/agent/agent.h"
#include "tests/fuzz/fuzzlib.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_result_msg m;
	uint8_t *text = fz_copy(data, size);
	int r = mw_result_message_parse((const char *)text, size, &m);

	if (r != 0) {
		static const struct mw_result_msg zero;
		FUZZ_CHECK(r == -1 && memcmp(&m, &zero, sizeof(m)) == 0);
		free(text);
		return 0;
	}
	FUZZ_CHECK(m.job_id != NULL && m.status != NULL && cJSON_IsArray(m.values));
	FUZZ_CHECK((strcmp(m.status, "refused") == 0) == (m.refusal != NULL));
	FUZZ_CHECK(m.output != NULL && m.output[m.output_len] == '\0');
	FUZZ_CHECK(m.version == 1 || m.version == 2);
	{
		size_t tail = 0;
		if (m.version == 2 && m.output_len > 0) {
			size_t fl = strlen(MW_RESULT_FENCE);
			tail = fl + (m.output[m.output_len - 1] != '\n');
			FUZZ_CHECK(size >= tail && memcmp(text + size - fl, MW_RESULT_FENCE, fl) == 0);
		}
		FUZZ_CHECK(m.output_len + tail <= size &&
		    memcmp(m.output, text + size - tail - m.output_len, m.output_len) == 0);
	}

	char *json = mw_result_msg_json(&m, "agent@example.org");
	FUZZ_CHECK(json != NULL);
	cJSON *j = cJSON_Parse(json);
	FUZZ_CHECK(cJSON_IsObject(j));
	const char *jid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "job_id"));
	const char *jst = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "status"));
	/* strings cleaned to valid UTF-8 may differ from the raw header; compare
	 * when the header was plain ASCII */
	FUZZ_CHECK(jid != NULL && jst != NULL);
	bool ascii = true;
	for (const char *p = m.job_id; *p; p++)
		ascii = ascii && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
	if (ascii)
		FUZZ_CHECK(strcmp(jid, m.job_id) == 0);
	FUZZ_CHECK(strcmp(jst, m.status) == 0);
	FUZZ_CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "output_truncated")) &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "output_truncated")) == m.output_truncated);
	cJSON *vals = cJSON_GetObjectItemCaseSensitive(j, "values");
	FUZZ_CHECK(cJSON_IsArray(vals) && cJSON_GetArraySize(vals) == cJSON_GetArraySize(m.values));
	cJSON_Delete(j);
	free(json);
	int ex = mw_result_msg_exit(&m);
	FUZZ_CHECK(ex >= 0 && ex <= 9);
	mw_result_msg_free(&m);
	free(text);
	return 0;
}
