/*
 * fuzz_agent_config: mw_agent_config_load, the agent's configuration file
 * (spec/agent.md), read through a memfd (/proc/self/fd/N) so nothing is
 * written to disk per input.  The loader stat()s allowed_signers and
 * policy and the account reader opens password_file: the fixture files
 * live in FIXTURE (created once, referenced by the seeds).  Inputs naming
 * /dev, /proc or /sys are skipped so the fuzzer cannot make the loader
 * block on a device or a FIFO -- that would test the harness, not the
 * parser.
 *
 * Invariants beyond "no crash":
 *  - failure: -1, a "PATH:" error, the struct zeroed;
 *  - success: jid is bare (has '@', no '/'), db, allowed_signers, policy
 *    and state_dir are absolute, exactly one password source gave a
 *    password, every numeric setting is within its documented range,
 *    allow_plaintext only with a loopback host.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/agent/agent.h"
#include "tests/fuzz/fuzzlib.h"

#define FIXTURE "/tmp/moonwire-fuzz-config"

static int cfg_fd = -1;
static char cfg_path[64];

static void
put_file(const char *name, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), FIXTURE "/%s", name);
	FILE *f = fopen(p, "w");
	if (f == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mkdir(FIXTURE, 0700);
	put_file("password", "fuzz-password\n");
	put_file("allowed_signers", "");
	put_file("policy", "");
	if ((cfg_fd = memfd_create("agent.conf", MFD_CLOEXEC)) < 0)
		abort();
	snprintf(cfg_path, sizeof(cfg_path), "/proc/self/fd/%d", cfg_fd);
	return 0;
}

static bool
loopback(const char *h)
{
	return h != NULL && (strcmp(h, "127.0.0.1") == 0 || strcmp(h, "::1") == 0 ||
	    strcmp(h, "localhost") == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mw_agent_config c;
	char err[1024];

	if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
	    memmem(data, size, "/sys", 4) || memmem(data, size, "/run", 4))
		return -1;
	if (ftruncate(cfg_fd, 0) != 0 || pwrite(cfg_fd, data, size, 0) != (ssize_t)size)
		abort();
	int r = mw_agent_config_load(cfg_path, &c, err, sizeof(err));
	if (r != 0) {
		static const struct mw_agent_config zero;
		FUZZ_CHECK(r == -1 && strncmp(err, cfg_path, strlen(cfg_path)) == 0);
		FUZZ_CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
		return 0;
	}
	const struct mw_omemo_account *a = &c.account;
	FUZZ_CHECK(a->jid != NULL && strchr(a->jid, '@') != NULL && strchr(a->jid, '/') == NULL);
	FUZZ_CHECK(a->password != NULL);
	FUZZ_CHECK(a->db != NULL && a->db[0] == '/');
	FUZZ_CHECK(c.allowed_signers != NULL && c.allowed_signers[0] == '/');
	FUZZ_CHECK(c.policy != NULL && c.policy[0] == '/');
	FUZZ_CHECK(c.state_dir != NULL && c.state_dir[0] == '/');
	FUZZ_CHECK(!a->allow_plaintext || loopback(a->host));
	FUZZ_CHECK(c.max_output >= 1024 && c.max_output <= 96 * 1024);
	FUZZ_CHECK(c.clock_skew_s <= 3600 && c.shutdown_grace_ms <= 3600 * 1000);
	FUZZ_CHECK(c.parallel >= 1 && c.parallel <= 64 && c.queue_max <= 4096);
	FUZZ_CHECK(c.rate_per_minute <= 1000000 && c.rate_burst >= 1 && c.rate_burst <= 100000);
	FUZZ_CHECK(a->cert_pin_sha256 == NULL || strlen(a->cert_pin_sha256) == 64);
	mw_agent_config_free(&c);
	return 0;
}
