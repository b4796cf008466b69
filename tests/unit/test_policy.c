/*
 * test_policy.c: unit tests for the policy file parser (runtime/job/policy.c).
 *
 * Why this exists: the policy is the only thing that grants a Lua program
 * access to files, commands, the kv store or sleep.  It must fail closed --
 * any malformed line refuses the whole file with "NAME:LINE: why" so the
 * owner can find it -- and a valid file must produce exactly the grants and
 * limits written, with paths canonicalised and /proc, /sys, /dev refused.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/mw_runtime.h"

static char tmpdir[PATH_MAX];	/* canonical */

static int
setup_dir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/mw-policy-XXXXXX";
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, tmpdir) == NULL)
		return -1;
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/out", tmpdir);
	return mkdir(sub, 0700);
}

static int
teardown_dir(void **state)
{
	(void)state;
	char sub[PATH_MAX + 8];
	snprintf(sub, sizeof(sub), "%s/out", tmpdir);
	rmdir(sub);
	rmdir(tmpdir);
	return 0;
}

static int
parse(const char *text, struct mw_policy *p, char *err, size_t errlen)
{
	err[0] = '\0';
	return mw_policy_parse(text, strlen(text), "test.policy", p, err, errlen);
}

/* allow and interactive JIDs match a sender as servers stamp it, however
 * the policy spells the ASCII letters */
static void
test_jids_match_without_ascii_case(void **state)
{
	char err[512];
	struct mw_policy p;

	(void)state;
	assert_int_equal(parse("profile ops\nallow alice Alice@Example.org ops\n"
	    "interactive Bob@X ops\n", &p, err, sizeof(err)), 0);
	assert_non_null(mw_policy_allowed(&p, "alice", "alice@example.org"));
	assert_null(mw_policy_allowed(&p, "alice", "alice@example.org.evil"));
	assert_null(mw_policy_allowed(&p, "mallory", "alice@example.org"));
	assert_non_null(mw_policy_interactive_for(&p, "bob@x"));
	assert_true(mw_policy_knows_jid(&p, "ALICE@example.org"));
	assert_false(mw_policy_knows_jid(&p, "carol@x"));
	mw_policy_free(&p);
	/* one account, two spellings: listed twice */
	assert_int_equal(parse("profile ops\ninteractive bob@x ops\ninteractive BOB@x ops\n",
	    &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "listed twice"));
}

static void
test_full_valid_policy(void **state)
{
	(void)state;
	char text[3 * PATH_MAX + 1024], err[512];
	struct mw_policy p;
	snprintf(text, sizeof(text),
	    "# moonwire policy\n"
	    "limits wall=20s memory=16M\n"
	    "\n"
	    "command uptime /usr/bin/uptime\n"
	    "command echo timeout=1500ms output=4K args=3 /bin/echo \"hello world\" -n\n"
	    "   \t# indented comment\n"
	    "profile ops\n"
	    "  read %s/\n"
	    "  read %s/out/../out\n"
	    "  write %s/out\n"
	    "  exec uptime echo\n"
	    "  exec echo\n"
	    "  sys\n"
	    "  kv\n"
	    "  sleep 2s\n"
	    "  limits instructions=5000 cpu=1.5s output=128K program=1M result=1K depth=4 calls=7\n"
	    "profile minimal\r\n"
	    "  limits wall=500ms",
	    tmpdir, tmpdir, tmpdir);
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_string_equal(err, "");

	/* Top-level limits override the defaults and are inherited. */
	struct mw_limits def;
	mw_limits_default(&def);
	assert_int_equal(p.limits.wall_ms, 20000);
	assert_true(p.limits.memory == 16u * 1024 * 1024);
	assert_true(p.limits.instructions == def.instructions);

	assert_int_equal(p.n_commands, 2);
	const struct mw_command_grant *up = mw_policy_command(&p, "uptime");
	assert_non_null(up);
	assert_int_equal(up->argc, 1);
	assert_string_equal(up->argv[0], "/usr/bin/uptime");
	assert_int_equal(up->timeout_ms, 5000);		/* defaults */
	assert_int_equal(up->output_bytes, 64 * 1024);
	assert_int_equal(up->max_args, 0);
	const struct mw_command_grant *echo = mw_policy_command(&p, "echo");
	assert_non_null(echo);
	assert_int_equal(echo->timeout_ms, 1500);
	assert_int_equal(echo->output_bytes, 4096);
	assert_int_equal(echo->max_args, 3);
	assert_int_equal(echo->argc, 3);
	assert_string_equal(echo->argv[0], "/bin/echo");
	assert_string_equal(echo->argv[1], "hello world");
	assert_string_equal(echo->argv[2], "-n");
	assert_null(mw_policy_command(&p, "nope"));

	assert_int_equal(p.n_profiles, 2);
	const struct mw_profile *ops = mw_policy_profile(&p, "ops");
	assert_non_null(ops);
	assert_string_equal(ops->name, "ops");
	const struct mw_grants *g = &ops->grants;
	char out[PATH_MAX + 8];
	snprintf(out, sizeof(out), "%s/out", tmpdir);
	assert_int_equal(g->n_fs_read, 2);
	assert_string_equal(g->fs_read[0], tmpdir);	/* canonical: no trailing / */
	assert_string_equal(g->fs_read[1], out);	/* canonical: no .. */
	assert_int_equal(g->n_fs_write, 1);
	assert_string_equal(g->fs_write[0], out);
	/* exec echo twice: granted once. */
	assert_int_equal(g->n_commands, 2);
	assert_string_equal(g->commands[0].name, "uptime");
	assert_string_equal(g->commands[1].name, "echo");
	assert_int_equal(g->commands[1].argc, 3);
	assert_string_equal(g->commands[1].argv[1], "hello world");
	assert_int_equal(g->commands[1].timeout_ms, 1500);
	assert_int_equal(g->commands[1].max_args, 3);
	/* A copy, not an alias of the allowlist entry. */
	assert_ptr_not_equal(g->commands[1].argv, echo->argv);
	assert_true(g->sys);
	assert_true(g->kv);
	assert_int_equal(g->sleep_max_ms, 2000);
	const struct mw_limits *l = &ops->limits;
	assert_true(l->instructions == 5000);
	assert_int_equal(l->cpu_ms, 1500);
	assert_int_equal(l->output_bytes, 128 * 1024);
	assert_int_equal(l->program_bytes, 1024 * 1024);
	assert_int_equal(l->result_bytes, 1024);
	assert_int_equal(l->result_depth, 4);
	assert_int_equal(l->cap_calls, 7);
	assert_int_equal(l->wall_ms, 20000);		/* inherited */
	assert_true(l->memory == 16u * 1024 * 1024);

	const struct mw_profile *min = mw_policy_profile(&p, "minimal");
	assert_non_null(min);
	assert_int_equal(min->limits.wall_ms, 500);
	assert_int_equal(min->grants.n_fs_read, 0);
	assert_int_equal(min->grants.n_commands, 0);
	assert_false(min->grants.sys);
	assert_false(min->grants.kv);
	assert_int_equal(min->grants.sleep_max_ms, 0);
	assert_int_equal(min->limits.cap_calls, def.cap_calls);
	assert_null(mw_policy_profile(&p, "ops2"));

	mw_policy_free(&p);
	assert_int_equal(p.n_profiles, 0);
	assert_null(p.profiles);
}

static void
test_empty_policy(void **state)
{
	(void)state;
	char err[256];
	struct mw_policy p;
	assert_int_equal(mw_policy_parse("", 0, "e", &p, err, sizeof(err)), 0);
	assert_int_equal(p.n_profiles, 0);
	assert_int_equal(p.n_commands, 0);
	mw_policy_free(&p);
}

/* Each bad policy: the error names "test.policy:LINE:" and contains why. */
struct bad_case {
	const char *text;
	unsigned line;
	const char *why;
};

static void
expect_bad(const char *text, unsigned line, const char *why)
{
	char err[512], prefix[64];
	struct mw_policy p;
	memset(&p, 0xa5, sizeof(p));
	int r = parse(text, &p, err, sizeof(err));
	if (r != -1)
		fail_msg("accepted: %s", text);
	snprintf(prefix, sizeof(prefix), "test.policy:%u: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, why) == NULL)
		fail_msg("policy\n%s\nerror '%s', want prefix '%s' and '%s'", text, err,
		    prefix, why);
	/* Fail closed: nothing half-parsed is left behind. */
	assert_int_equal(p.n_profiles, 0);
	assert_int_equal(p.n_commands, 0);
	assert_null(p.profiles);
	assert_null(p.commands);
}

static void
test_unknown_settings(void **state)
{
	(void)state;
	expect_bad("frobnicate yes\n", 1, "unknown setting 'frobnicate'");
	expect_bad("# c\n\nprofile a\n  read_all\n", 4, "unknown profile setting 'read_all'");
	expect_bad("profile a\nsys extra\n", 2, "unknown profile setting 'sys'");
	expect_bad("profile a\n  command x /bin/true\n", 2,
	    "commands are defined before the first profile");
	expect_bad("\n\nprofile\n", 3, "usage: profile NAME");
	expect_bad("profile bad/name\n", 1, "usage: profile NAME");
	expect_bad("limits\n", 1, "usage: limits");
	expect_bad("limits wall\n", 1, "expected KEY=VALUE");
}

static void
test_bad_commands(void **state)
{
	(void)state;
	expect_bad("command ls bin/ls\n", 1, "expected an absolute path or an option");
	expect_bad("command ls timeout=1s\n", 1, "no absolute program path");
	expect_bad("\ncommand pw /etc/passwd\n", 2, "/etc/passwd is not an executable file");
	expect_bad("command d /usr/bin\n", 1, "/usr/bin is not an executable file");
	expect_bad("command nx /nonexistent/prog\n", 1, "is not an executable file");
	expect_bad("command t timeout=0 /bin/true\n", 1, "bad option timeout=0");
	expect_bad("command t timeout=2h /bin/true\n", 1, "bad option timeout=2h");
	expect_bad("command t output=1G /bin/true\n", 1, "bad option output=1G");
	expect_bad("command t args=17 /bin/true\n", 1, "bad option args=17");
	expect_bad("command t color=red /bin/true\n", 1, "bad option color=red");
	expect_bad("command b$d /bin/true\n", 1, "bad command name");
	expect_bad("command t\n", 1, "usage: command");
	expect_bad("command t /bin/true\ncommand t /bin/false\n", 2, "command 't' defined twice");
	expect_bad("command t /bin/true\nprofile a\n  exec t u\n", 3,
	    "exec: no command 'u' is defined above");
	expect_bad("profile a\n  exec t\ncommand t /bin/true\n", 2, "no command 't'");
	expect_bad("profile a\n  exec\n", 2, "usage: exec");
}

static void
test_bad_limits(void **state)
{
	(void)state;
	expect_bad("limits color=1\n", 1, "unknown limit 'color'");
	expect_bad("profile a\n  limits wall=0\n", 2, "bad wall '0'");
	expect_bad("limits memory=0\n", 1, "bad memory '0'");
	expect_bad("limits instructions=0\n", 1, "bad instructions '0'");
	expect_bad("limits memory=2G\n", 1, "bad memory '2G'");		/* max 1 GiB */
	expect_bad("limits wall=2h\n", 1, "bad wall '2h'");		/* max 1 h */
	expect_bad("limits cpu=11m\n", 1, "bad cpu '11m'");		/* max 10 min */
	expect_bad("limits depth=49\n", 1, "bad depth '49'");
	expect_bad("limits calls=100001\n", 1, "bad calls '100001'");
	expect_bad("limits output=2M\n", 1, "bad output '2M'");
	expect_bad("limits instructions=100000000001\n", 1, "bad instructions");
	expect_bad("limits memory=16X\n", 1, "bad memory '16X'");	/* suffix */
	expect_bad("limits memory=16k\n", 1, "bad memory '16k'");
	expect_bad("limits wall=5h\n", 1, "bad wall");
	expect_bad("limits wall=5sec\n", 1, "bad wall '5sec'");
	expect_bad("limits calls=5x\n", 1, "bad calls '5x'");
	expect_bad("limits calls=-1\n", 1, "bad calls '-1'");
	expect_bad("limits calls= 5\n", 1, "bad calls ''");
	expect_bad("limits depth=+4\n", 1, "bad depth '+4'");
	/* The maxima themselves are accepted. */
	char err[256];
	struct mw_policy p;
	assert_int_equal(parse("limits memory=1G wall=60m cpu=10m depth=48 calls=100000 "
	    "output=1M program=4M result=1M instructions=100000000000\n", &p, err,
	    sizeof(err)), 0);
	assert_true(p.limits.memory == 1024ull * 1024 * 1024);
	assert_int_equal(p.limits.wall_ms, 3600000);
	assert_int_equal(p.limits.cpu_ms, 600000);
	assert_int_equal(p.limits.result_depth, 48);
	mw_policy_free(&p);
}

static void
test_bad_profiles_and_grants(void **state)
{
	(void)state;
	char text[PATH_MAX + 128];
	expect_bad("profile a\nprofile b\nprofile a\n", 3, "profile 'a' defined twice");
	expect_bad("profile a\n  read /proc\n", 2, "under /proc, which is never granted");
	expect_bad("profile a\n  read /proc/self\n", 2, "under /proc");
	expect_bad("profile a\n  write /sys/kernel\n", 2, "under /sys");
	expect_bad("profile a\n  read /dev\n", 2, "under /dev");
	expect_bad("profile a\n  read /dev/shm/../\n", 2, "under /dev");
	/* Through ".." from somewhere harmless-looking. */
	expect_bad("profile a\n  read /tmp/../proc\n", 2, "under /proc");
	expect_bad("profile a\n  read tmp\n", 2, "path 'tmp' must be absolute");
	expect_bad("profile a\n  write ./out\n", 2, "must be absolute");
	expect_bad("profile a\n  read /nonexistent-mw-dir\n", 2, "/nonexistent-mw-dir");
	expect_bad("profile a\n  read /etc/passwd\n", 2, "is not a directory");
	expect_bad("profile a\n  read /tmp /usr\n", 2, "usage: read");
	expect_bad("profile a\n  sleep 0\n", 2, "usage: sleep");
	expect_bad("profile a\n  sleep 2h\n", 2, "usage: sleep");
	expect_bad("profile a\n  sleep soon\n", 2, "usage: sleep");
	/* A good profile before the bad line is discarded too. */
	snprintf(text, sizeof(text), "profile a\n  read %s\nprofile b\n  read /sys\n", tmpdir);
	expect_bad(text, 4, "under /sys");
}

static void
test_tokenizer_errors(void **state)
{
	(void)state;
	expect_bad("command e /bin/echo \"unterminated\n", 1, "unterminated quote");
	expect_bad("# one\n# two\nprofile \"a\n", 3, "unterminated quote");
	/* 65 words on a line. */
	char text[512] = "command many /bin/echo";
	for (int i = 0; i < 62; i++)
		strcat(text, " x");
	strcat(text, "\n");
	expect_bad(text, 1, "too many words");
	/* Embedded NUL. */
	char err[256];
	struct mw_policy p;
	static const char nul[] = "profile a\nprofile\0b\n";
	assert_int_equal(mw_policy_parse(nul, sizeof(nul) - 1, "test.policy", &p, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "test.policy:2: "));
	/* Over-long line. */
	size_t n = 5000;
	char *longl = malloc(n + 16);
	assert_non_null(longl);
	memcpy(longl, "profile a\n#", 11);
	memset(longl + 11, 'x', n);
	longl[11 + n] = '\0';
	expect_bad(longl, 2, "line too long");
	free(longl);
}

static void
test_line_numbers_crlf(void **state)
{
	(void)state;
	/* CRLF line ends count as one line each and are not part of tokens. */
	expect_bad("profile a\r\n  sys\r\n  kv\r\n  bogus\r\n", 4, "unknown profile setting 'bogus'");
}

static void
test_parse_size(void **state)
{
	(void)state;
	uint64_t v = 12345;
	assert_int_equal(mw_parse_size("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(mw_parse_size("17", &v), 0);
	assert_true(v == 17);
	assert_int_equal(mw_parse_size("17B", &v), 0);
	assert_true(v == 17);
	assert_int_equal(mw_parse_size("64K", &v), 0);
	assert_true(v == 65536);
	assert_int_equal(mw_parse_size("2KiB", &v), 0);
	assert_true(v == 2048);
	assert_int_equal(mw_parse_size("32M", &v), 0);
	assert_true(v == 32u * 1024 * 1024);
	assert_int_equal(mw_parse_size("3MiB", &v), 0);
	assert_true(v == 3u * 1024 * 1024);
	assert_int_equal(mw_parse_size("1G", &v), 0);
	assert_true(v == 1024ull * 1024 * 1024);
	assert_int_equal(mw_parse_size("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);

	v = 777;
	const char *bad[] = { "", "K", "-1", "+1", " 1", "1 ", "1k", "1KB", "1T",
		"1.5M", "0x10", "18446744073709551616", "17179869184G", "1e3", NULL };
	for (int i = 0; bad[i] != NULL; i++) {
		if (mw_parse_size(bad[i], &v) != -1)
			fail_msg("mw_parse_size accepted '%s'", bad[i]);
		assert_true(v == 777);	/* untouched on failure */
	}
}

static void
test_parse_duration(void **state)
{
	(void)state;
	uint64_t v = 1;
	assert_int_equal(mw_parse_duration_ms("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(mw_parse_duration_ms("2", &v), 0);	/* bare: seconds */
	assert_true(v == 2000);
	assert_int_equal(mw_parse_duration_ms("2s", &v), 0);
	assert_true(v == 2000);
	assert_int_equal(mw_parse_duration_ms("250ms", &v), 0);
	assert_true(v == 250);
	assert_int_equal(mw_parse_duration_ms("1.5s", &v), 0);
	assert_true(v == 1500);
	assert_int_equal(mw_parse_duration_ms("3m", &v), 0);
	assert_true(v == 180000);
	assert_int_equal(mw_parse_duration_ms("0.5ms", &v), 0);
	assert_true(v == 0);	/* rounds down; callers refuse 0 */
	assert_int_equal(mw_parse_duration_ms("31536000s", &v), 0);	/* one year */
	assert_true(v == 31536000000ull);

	v = 777;
	assert_int_equal(mw_parse_duration_ms("2h", &v), 0);
	assert_true(v == 7200000);
	assert_int_equal(mw_parse_duration_ms("7d", &v), 0);
	assert_true(v == 604800000ull);
	v = 777;
	const char *bad[] = { "", "s", "-1s", "+1s", " 1s", "1s ", "1H", "1D", "366d", "1S", "1 s",
		"1ms1", "31536001s", "525601m", "1e400", "nan", "inf", ".5s", NULL };
	for (int i = 0; bad[i] != NULL; i++) {
		if (mw_parse_duration_ms(bad[i], &v) != -1)
			fail_msg("mw_parse_duration_ms accepted '%s'", bad[i]);
		assert_true(v == 777);
	}
}

static void
test_limit_set(void **state)
{
	(void)state;
	struct mw_limits l;
	char err[256];
	mw_limits_default(&l);
	assert_int_equal(mw_limit_set(&l, "wall", "750ms", err, sizeof(err)), 0);
	assert_int_equal(l.wall_ms, 750);
	assert_int_equal(mw_limit_set(&l, "calls", "3", err, sizeof(err)), 0);
	assert_int_equal(l.cap_calls, 3);
	struct mw_limits before = l;
	assert_int_equal(mw_limit_set(&l, "calls", "0", err, sizeof(err)), -1);
	assert_string_equal(err, "bad calls '0' (1..100000)");
	assert_int_equal(mw_limit_set(&l, "wall", "0.1ms", err, sizeof(err)), -1);
	assert_int_equal(mw_limit_set(&l, "nope", "1", err, sizeof(err)), -1);
	assert_string_equal(err, "unknown limit 'nope'");
	assert_memory_equal(&l, &before, sizeof(l));
}

static void
test_policy_load(void **state)
{
	(void)state;
	char path[PATH_MAX + 16], err[512];
	struct mw_policy p;
	snprintf(path, sizeof(path), "%s/p.conf", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("profile a\n  sys\n  sleep 100ms\n", f);
	fclose(f);
	assert_int_equal(mw_policy_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(p.n_profiles, 1);
	assert_int_equal(p.profiles[0].grants.sleep_max_ms, 100);
	mw_policy_free(&p);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("profile a\n\n  read relative\n", f);
	fclose(f);
	assert_int_equal(mw_policy_load(path, &p, err, sizeof(err)), -1);
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s:3: ", path);
	assert_memory_equal(err, want, strlen(want));
	unlink(path);

	assert_int_equal(mw_policy_load(path, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
}

/* The agent's own files (issue 10): a read/write grant that equals,
 * contains or lies inside one is refused with FILE:LINE naming it; paths
 * are compared canonically (symlinks resolved, absent files by their
 * directory). */
static void
test_protected_paths(void **state)
{
	(void)state;
	char agent[PATH_MAX + 16], state_dir[PATH_MAX + 32], link[PATH_MAX + 16];
	char db[PATH_MAX + 32], text[4 * PATH_MAX], err[2048], want[3 * PATH_MAX];
	char *c, *wal;
	struct mw_policy p;

	snprintf(agent, sizeof(agent), "%s/agent", tmpdir);
	snprintf(state_dir, sizeof(state_dir), "%s/state", agent);
	snprintf(db, sizeof(db), "%s/identity.db", agent);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	assert_int_equal(mkdir(agent, 0700), 0);
	assert_int_equal(mkdir(state_dir, 0700), 0);
	assert_int_equal(symlink(agent, link), 0);

	/* canonical forms: existing, absent (its directory resolved), through
	 * a symlink, and an absent directory chain */
	assert_non_null(c = mw_path_canonical(agent));
	assert_string_equal(c, agent);
	free(c);
	char via[PATH_MAX + 64];
	snprintf(via, sizeof(via), "%s/./identity.db-wal", link);
	assert_non_null(wal = mw_path_canonical(via));
	snprintf(want, sizeof(want), "%s-wal", db);
	assert_string_equal(wal, want);
	snprintf(via, sizeof(via), "%s/no/such/dir/f", link);
	assert_non_null(c = mw_path_canonical(via));
	snprintf(want, sizeof(want), "%s/no/such/dir/f", agent);
	assert_string_equal(c, want);
	free(c);
	assert_non_null(c = mw_path_canonical("/tmp/.."));	/* exists: resolved */
	assert_string_equal(c, "/");
	free(c);
	snprintf(via, sizeof(via), "%s/absent/..", tmpdir);
	assert_null(mw_path_canonical(via));

	struct mw_protected_path prot[] = {
		{ db, "identity database" },
		{ wal, "identity database WAL" },
		{ state_dir, "state directory" },
	};
	/* read / contains everything: refused on its line, naming the first
	 * protected file */
	snprintf(text, sizeof(text), "profile ok\n  sys\nprofile bad\n  read /\n");
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_int_equal(mw_policy_check_protected(&p, prot, 3, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "test.policy:4: read / would expose the agent's "
	    "identity database %s", db);
	assert_string_equal(err, want);
	mw_policy_free(&p);
	/* through a symlink: the grant is canonical, the message shows it as
	 * written */
	snprintf(text, sizeof(text), "profile a\n  read %s/out\n  write %s\n",
	    tmpdir, link);
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_int_equal(mw_policy_check_protected(&p, prot, 3, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "test.policy:3: write %s would expose the agent's "
	    "identity database %s", link, db);
	assert_string_equal(err, want);
	mw_policy_free(&p);
	/* equal to, and inside, the state directory */
	snprintf(text, sizeof(text), "profile a\n  read %s\n", state_dir);
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_int_equal(mw_policy_check_protected(&p, prot, 3, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "test.policy:2: read %s is the agent's state "
	    "directory %s", state_dir, state_dir);
	assert_string_equal(err, want);
	mw_policy_free(&p);
	char inner[PATH_MAX + 64];
	snprintf(inner, sizeof(inner), "%s/kv", state_dir);
	assert_int_equal(mkdir(inner, 0700), 0);
	snprintf(text, sizeof(text), "profile a\n\n  write %s\n", inner);
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_int_equal(mw_policy_check_protected(&p, prot, 3, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "test.policy:3: write %s lies inside the agent's "
	    "state directory %s", inner, state_dir);
	assert_string_equal(err, want);
	mw_policy_free(&p);
	/* a sibling with a common prefix is not inside: accepted */
	char sib[PATH_MAX + 64];
	snprintf(sib, sizeof(sib), "%s/state2", agent);
	assert_int_equal(mkdir(sib, 0700), 0);
	snprintf(text, sizeof(text), "profile a\n  read %s\n  write %s/out\n", sib, tmpdir);
	assert_int_equal(parse(text, &p, err, sizeof(err)), 0);
	assert_int_equal(mw_policy_check_protected(&p, prot, 3, err, sizeof(err)), 0);
	/* a relative protected path is a caller error, refused */
	struct mw_protected_path rel = { (char *)"relative", "policy file" };
	assert_int_equal(mw_policy_check_protected(&p, &rel, 1, err, sizeof(err)), -1);
	mw_policy_free(&p);

	rmdir(sib);
	rmdir(inner);
	unlink(link);
	rmdir(state_dir);
	rmdir(agent);
	free(wal);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_valid_policy),
		cmocka_unit_test(test_jids_match_without_ascii_case),
		cmocka_unit_test(test_empty_policy),
		cmocka_unit_test(test_unknown_settings),
		cmocka_unit_test(test_bad_commands),
		cmocka_unit_test(test_bad_limits),
		cmocka_unit_test(test_bad_profiles_and_grants),
		cmocka_unit_test(test_tokenizer_errors),
		cmocka_unit_test(test_line_numbers_crlf),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_limit_set),
		cmocka_unit_test(test_policy_load),
		cmocka_unit_test(test_protected_paths),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
