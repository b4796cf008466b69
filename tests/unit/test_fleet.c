/*
 * test_fleet.c: unit tests for target lists (runtime/fleet/targets.c) and
 * roster groups as targets (runtime/fleet/roster.c, without a server).
 *
 * Why this exists: who a job goes to is decided here, before anything is
 * signed.  A malformed line must stop a targets file with FILE:LINE, two
 * spellings of one agent must be one target (one job, not two), the order
 * must be the order given, and the cap must count targets after folding.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/fleet/fleet.h"

static int
norm(const char *in, char *out, size_t outlen, char *why, size_t wl)
{
	why[0] = '\0';
	return mw_fleet_jid_normalize(in, strlen(in), out, outlen, why, wl);
}

static void
test_normal_form(void **state)
{
	char out[2100], why[256];

	(void)state;
	assert_int_equal(norm("router7@example.org", out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, "router7@example.org");
	/* ASCII letters folded in localpart and domain */
	assert_int_equal(norm("Router7@Example.ORG", out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, "router7@example.org");
	/* a trailing dot of the domain is not part of it (RFC 7622 3.2) */
	assert_int_equal(norm("r@example.org.", out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, "r@example.org");
	/* non-ASCII kept as written (no Unicode case folding) */
	assert_int_equal(norm("J\xc3\x9cRGEN@x.org", out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, "j\xc3\x9crgen@x.org");
	/* '#' and '.' are fine in a localpart */
	assert_int_equal(norm("a#b.c@x", out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, "a#b.c@x");
	/* output too small: refused, not truncated */
	assert_int_equal(norm("abc@x", out, 5, why, sizeof(why)), MW_FLEET_E_JID);
}

static void
test_bad_jids(void **state)
{
	static const struct { const char *jid, *why; } bad[] = {
		{ "", "empty JID" },
		{ "router7", "not a bare JID (user@domain, no /resource)" },
		{ "r@x/phone", "has a resource" },
		{ "@x", "empty localpart" },
		{ "r@", "empty domain" },
		{ "r@.", "empty domain" },
		{ "a@b@c", "more than one '@'" },
		{ "r\x01@x", "control character 0x01" },
		{ "r@x\x7f", "control character 0x7f" },
		{ "r\t@x", "control character 0x09" },
		{ "r 7@x", "blank inside the JID" },
		{ "r<7@x", "'<' is not allowed in the localpart" },
		{ "r:7@x", "':' is not allowed in the localpart" },
		{ "r@x\\y", "'\\' is not allowed in the domain" },
		{ "r@a..b", "empty label in the domain" },
		{ "r@.a", "empty label in the domain" },
		{ "r@a..", "empty label in the domain" },	/* fuzz_targets found it */
		{ "r@a.b..", "empty label in the domain" },
		{ "r\xc3@x", "not valid UTF-8" },
		{ "r\xc0\x80@x", "not valid UTF-8" },
	};
	char out[2100], why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(norm(bad[i].jid, out, sizeof(out), why, sizeof(why)),
		    MW_FLEET_E_JID);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("%s: why '%s', expected '%s'", bad[i].jid, why, bad[i].why);
	}
}

static void
test_length_limits(void **state)
{
	char jid[3000], out[2100], why[256];

	(void)state;
	/* 1023-byte localpart and domain: the RFC 7622 maximum */
	memset(jid, 'a', 1023);
	jid[1023] = '@';
	memset(jid + 1024, 'b', 1023);
	jid[2047] = '\0';
	assert_int_equal(norm(jid, out, sizeof(out), why, sizeof(why)), 0);
	assert_int_equal(strlen(out), 2047);
	/* one more in the localpart */
	memset(jid, 'a', 1024);
	jid[1024] = '@';
	strcpy(jid + 1025, "x.org");
	assert_int_equal(norm(jid, out, sizeof(out), why, sizeof(why)), MW_FLEET_E_JID);
	assert_non_null(strstr(why, "localpart longer than 1023 bytes"));
	/* one more in the domain */
	strcpy(jid, "r@");
	memset(jid + 2, 'b', 1024);
	jid[1026] = '\0';
	assert_int_equal(norm(jid, out, sizeof(out), why, sizeof(why)), MW_FLEET_E_JID);
	assert_non_null(strstr(why, "domain longer than 1023 bytes"));
}

static int
parse(struct mw_fleet_targets *t, const char *text, char *err, size_t errlen)
{
	err[0] = '\0';
	return mw_fleet_targets_parse(t, text, strlen(text), "hosts.txt", err, errlen);
}

static void
test_file_format(void **state)
{
	struct mw_fleet_targets t;
	char err[512];

	(void)state;
	mw_fleet_targets_init(&t);
	assert_int_equal(parse(&t,
	    "# the web tier\n"
	    "web1@example.org\n"
	    "\n"
	    "   web2@example.org   \n"
	    "\tWEB1@Example.org\t# same as line 2\n"
	    "db1@example.org # db\r\n"
	    "a#b@example.org\n"		/* '#' inside a word is no comment */
	    "  # indented comment\n"
	    "web2@example.org\n"
	    "   \t \n"
	    "last@example.org",		/* no final newline */
	    err, sizeof(err)), 0);
	assert_int_equal(t.n, 5);
	assert_int_equal(t.given, 7);
	assert_string_equal(t.jid[0], "web1@example.org");
	assert_string_equal(t.jid[1], "web2@example.org");
	assert_string_equal(t.jid[2], "db1@example.org");
	assert_string_equal(t.jid[3], "a#b@example.org");
	assert_string_equal(t.jid[4], "last@example.org");
	mw_fleet_targets_free(&t);

	/* an empty file and a file of comments: no targets, no error */
	mw_fleet_targets_init(&t);
	assert_int_equal(parse(&t, "", err, sizeof(err)), 0);
	assert_int_equal(parse(&t, "# nothing\n\n  # yet\n", err, sizeof(err)), 0);
	assert_int_equal(t.n, 0);
	mw_fleet_targets_free(&t);
}

static void
test_file_errors_name_the_line(void **state)
{
	static const struct { const char *text, *err; } bad[] = {
		{ "a@x\nb@x\n# fine\nrouter7\n", "hosts.txt:4: not a bare JID" },
		{ "a@x\nb@x/laptop\n", "hosts.txt:2: has a resource" },
		{ "a@x b@x\n", "hosts.txt:1: more than one word: one JID a line" },
		{ "\n\n\nr\x02@x\n", "hosts.txt:4: control character 0x02" },
		{ "a@x\r\nb@x\r\n@x\r\n", "hosts.txt:3: empty localpart" },
		{ "a@x\nr\xff@x\n", "hosts.txt:2: not valid UTF-8" },
	};
	struct mw_fleet_targets t;
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mw_fleet_targets_init(&t);
		assert_int_equal(parse(&t, bad[i].text, err, sizeof(err)), MW_FLEET_E_JID);
		if (strstr(err, bad[i].err) != err)
			fail_msg("case %zu: '%s', expected '%s'", i, err, bad[i].err);
		mw_fleet_targets_free(&t);
	}
	/* a NUL byte */
	mw_fleet_targets_init(&t);
	assert_int_equal(mw_fleet_targets_parse(&t, "a@x\nb\0@x\n", 9, "f", err,
	    sizeof(err)), MW_FLEET_E_JID);
	assert_string_equal(err, "f:2: NUL byte in the line");
	mw_fleet_targets_free(&t);
	/* an over-long line */
	{
		char *big = malloc(MW_FLEET_LINE_MAX + 16);

		assert_non_null(big);
		strcpy(big, "a@x\n");
		memset(big + 4, 'a', MW_FLEET_LINE_MAX + 4);
		big[MW_FLEET_LINE_MAX + 8] = '\0';
		mw_fleet_targets_init(&t);
		assert_int_equal(parse(&t, big, err, sizeof(err)), MW_FLEET_E_JID);
		assert_non_null(strstr(err, "hosts.txt:2: line longer than"));
		mw_fleet_targets_free(&t);
		free(big);
	}
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/mw-fleet-XXXXXX", err[512];
	struct mw_fleet_targets t;
	FILE *f;
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	fputs("# two\nb@x\na@x\nB@X\n", f);
	assert_int_equal(fclose(f), 0);
	mw_fleet_targets_init(&t);
	assert_int_equal(mw_fleet_targets_load(&t, path, err, sizeof(err)), 0);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.jid[0], "b@x");
	assert_string_equal(t.jid[1], "a@x");
	mw_fleet_targets_free(&t);
	assert_int_equal(unlink(path), 0);

	mw_fleet_targets_init(&t);
	assert_int_equal(mw_fleet_targets_load(&t, path, err, sizeof(err)), MW_FLEET_E_FILE);
	assert_non_null(strstr(err, ": No such file or directory"));
	assert_int_equal(mw_fleet_targets_load(&t, "/tmp", err, sizeof(err)), MW_FLEET_E_FILE);
	assert_string_equal(err, "/tmp: not a regular file");
	mw_fleet_targets_free(&t);
}

static void
test_merge_and_fold(void **state)
{
	struct mw_fleet_targets t;
	char why[256];

	(void)state;
	mw_fleet_targets_init(&t);
	/* --to first, then a file: one list, first order kept */
	assert_int_equal(mw_fleet_targets_add(&t, "Z@x", why, sizeof(why)), 0);
	assert_int_equal(mw_fleet_targets_add(&t, "a@x", why, sizeof(why)), 0);
	assert_int_equal(mw_fleet_targets_parse(&t, "A@X\nm@x\nz@X.\n", 13, "f", why,
	    sizeof(why)), 0);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.given, 5);
	assert_string_equal(t.jid[0], "z@x");
	assert_string_equal(t.jid[1], "a@x");
	assert_string_equal(t.jid[2], "m@x");
	/* a bad one adds nothing */
	assert_int_equal(mw_fleet_targets_add(&t, "bad", why, sizeof(why)), MW_FLEET_E_JID);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.given, 5);
	mw_fleet_targets_free(&t);
}

static void
test_many_targets_fold_exactly(void **state)
{
	struct mw_fleet_targets t;
	char jid[64], why[256];

	(void)state;
	mw_fleet_targets_init(&t);
	/* 5,000 agents given twice (second time upper case): 5,000 targets */
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 5000; i++) {
			snprintf(jid, sizeof(jid), round ? "AGENT%d@FLEET.example" :
			    "agent%d@fleet.example", i);
			assert_int_equal(mw_fleet_targets_add(&t, jid, why, sizeof(why)), 0);
		}
	assert_int_equal(t.n, 5000);
	assert_int_equal(t.given, 10000);
	for (int i = 0; i < 5000; i++) {
		snprintf(jid, sizeof(jid), "agent%d@fleet.example", i);
		assert_string_equal(t.jid[i], jid);
	}
	mw_fleet_targets_free(&t);
}

static void
test_cap(void **state)
{
	struct mw_fleet_targets t;
	char jid[64], err[512];
	size_t cap;

	(void)state;
	mw_fleet_targets_init(&t);
	for (int i = 0; i < 1025; i++) {
		snprintf(jid, sizeof(jid), "a%d@x", i);
		assert_int_equal(mw_fleet_targets_add(&t, jid, err, sizeof(err)), 0);
	}
	/* duplicates do not count against the cap */
	for (int i = 0; i < 1025; i++) {
		snprintf(jid, sizeof(jid), "A%d@x", i);
		assert_int_equal(mw_fleet_targets_add(&t, jid, err, sizeof(err)), 0);
	}
	assert_int_equal(mw_fleet_targets_check_cap(&t, 1025, err, sizeof(err)), 0);
	assert_int_equal(mw_fleet_targets_check_cap(&t, MW_FLEET_MAX_TARGETS_DEFAULT, err,
	    sizeof(err)), MW_FLEET_E_CAP);
	assert_string_equal(err, "1025 targets (2050 given, duplicates folded) is more "
	    "than the cap of 1024");
	mw_fleet_targets_free(&t);

	assert_int_equal(mw_fleet_parse_cap("1", &cap), 0);
	assert_int_equal(cap, 1);
	assert_int_equal(mw_fleet_parse_cap("1000000", &cap), 0);
	assert_int_equal(cap, 1000000);
	assert_int_equal(mw_fleet_parse_cap("1000001", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap("99999999999999999999999", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap("0", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap("", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap("-5", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap("10k", &cap), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_parse_cap(" 10", &cap), MW_FLEET_E_USAGE);
}

static void
test_group_names(void **state)
{
	char why[256], big[MW_FLEET_GROUP_MAX + 2];

	(void)state;
	assert_int_equal(mw_fleet_group_check("web", why, sizeof(why)), 0);
	assert_int_equal(mw_fleet_group_check("Web servers (EU)", why, sizeof(why)), 0);
	assert_int_equal(mw_fleet_group_check("", why, sizeof(why)), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_group_check("a\nb", why, sizeof(why)), MW_FLEET_E_USAGE);
	assert_int_equal(mw_fleet_group_check("a\xff", why, sizeof(why)), MW_FLEET_E_USAGE);
	memset(big, 'g', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(mw_fleet_group_check(big, why, sizeof(why)), MW_FLEET_E_USAGE);
	big[sizeof(big) - 2] = '\0';
	assert_int_equal(mw_fleet_group_check(big, why, sizeof(why)), 0);
}

static void
test_roster_groups_as_targets(void **state)
{
	char *web[] = { "web" }, *both[] = { "web", "db" }, *none[] = { NULL };
	char *bad[] = { "web", "broken" };
	struct mw_fleet_item items[] = {
		{ .jid = "web2@x", .groups = web, .ngroups = 1 },
		{ .jid = "db1@x", .groups = both + 1, .ngroups = 1 },
		{ .jid = "web1@x", .groups = both, .ngroups = 2 },
		{ .jid = "alice@x", .groups = none, .ngroups = 0 },
		{ .jid = "x.org", .groups = bad + 1, .ngroups = 1 },
	};
	struct mw_fleet_roster r = { .items = items, .n = 5 };
	struct mw_fleet_targets t;
	char err[512];

	(void)state;
	mw_fleet_targets_init(&t);
	assert_int_equal(mw_fleet_targets_add(&t, "db1@x", err, sizeof(err)), 0);
	/* members sorted by JID, folded into what was given before */
	assert_int_equal(mw_fleet_targets_add_group(&t, &r, "web", err, sizeof(err)), 0);
	assert_int_equal(mw_fleet_targets_add_group(&t, &r, "db", err, sizeof(err)), 0);
	assert_int_equal(t.n, 3);
	assert_string_equal(t.jid[0], "db1@x");
	assert_string_equal(t.jid[1], "web1@x");
	assert_string_equal(t.jid[2], "web2@x");
	/* group names are compared as given */
	assert_int_equal(mw_fleet_targets_add_group(&t, &r, "Web", err, sizeof(err)),
	    MW_FLEET_E_GROUP);
	assert_non_null(strstr(err, "roster group 'Web' does not exist or has no members"));
	/* a member that is no bare JID (a server in the roster) */
	assert_int_equal(mw_fleet_targets_add_group(&t, &r, "broken", err, sizeof(err)),
	    MW_FLEET_E_GROUP);
	assert_non_null(strstr(err, "roster group 'broken': member 'x.org': not a bare JID"));
	assert_int_equal(t.n, 3);
	mw_fleet_targets_free(&t);

	assert_ptr_equal(mw_fleet_roster_find(&r, "WEB1@X"), &items[2]);
	assert_null(mw_fleet_roster_find(&r, "web3@x"));
	assert_true(mw_fleet_item_in_group(&items[2], "db"));
	assert_false(mw_fleet_item_in_group(&items[3], "db"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normal_form),
		cmocka_unit_test(test_bad_jids),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_file_format),
		cmocka_unit_test(test_file_errors_name_the_line),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_merge_and_fold),
		cmocka_unit_test(test_many_targets_fold_exactly),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_group_names),
		cmocka_unit_test(test_roster_groups_as_targets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
