/*
 * test_account_paths.c: the path rules of account files (spec/cli.md,
 * "Account file"): ~ and ~/ start at $HOME, a relative path is relative
 * to the account file's directory, an absolute one is kept; and the
 * account loader's FILE:LINE errors for the files it opens.
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

#include "omemo/mw_omemo.h"

static void
expect_path(const char *file, const char *value, const char *want)
{
	char *got = NULL;

	assert_int_equal(mw_omemo_account_path(file, value, &got), 0);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void
test_path_rules(void **state)
{
	char *got = NULL, cwd[PATH_MAX], want[2 * PATH_MAX];

	(void)state;
	assert_int_equal(setenv("HOME", "/home/alice", 1), 0);
	expect_path("/etc/moonwire/agent.conf", "/var/lib/x.db", "/var/lib/x.db");
	expect_path("/etc/moonwire/agent.conf", "password", "/etc/moonwire/password");
	expect_path("/etc/moonwire/agent.conf", "keys/ca.pem", "/etc/moonwire/keys/ca.pem");
	expect_path("/etc/moonwire/agent.conf", "~", "/home/alice");
	expect_path("/etc/moonwire/agent.conf", "~/.ssh/id_ed25519", "/home/alice/.ssh/id_ed25519");
	/* an account file named relative to the cwd: the result is absolute */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/alice.db", cwd);
	expect_path("alice.conf", "alice.db", want);
	snprintf(want, sizeof(want), "%s/conf/alice.db", cwd);
	expect_path("conf/alice.conf", "alice.db", want);
	expect_path("/a.conf", "a.db", "/a.db");
	/* ~user is not expanded: relative like any other name */
	expect_path("/etc/a.conf", "~bob/x", "/etc/~bob/x");
	assert_int_equal(mw_omemo_account_path("/etc/a.conf", "", &got),
	    MW_OMEMO_E_CONFIG);
	assert_null(got);
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void
test_load_errors_name_file_and_line(void **state)
{
	char dir[] = "/tmp/mw-account-XXXXXX", conf[PATH_MAX], pw[PATH_MAX];
	char err[3 * PATH_MAX], want[3 * PATH_MAX];
	struct mw_omemo_account a;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/alice.conf", dir);
	snprintf(pw, sizeof(pw), "%s/pw", dir);

	write_text(conf, "jid = alice@example.org\npassword_file = pw\ndb = alice.db\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)),
	    MW_OMEMO_E_CONFIG);
	snprintf(want, sizeof(want), "%s:2: password_file %s: No such file or directory",
	    conf, pw);
	assert_string_equal(err, want);

	write_text(pw, "s3cret\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)), 0);
	assert_string_equal(a.password, "s3cret");
	snprintf(want, sizeof(want), "%s/alice.db", dir);
	assert_string_equal(a.db, want);
	mw_omemo_account_free(&a);

	write_text(conf, "jid = alice@example.org\npassword = x\n\ncert_pin_sha256 = ab:cd\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)),
	    MW_OMEMO_E_CONFIG);
	snprintf(want, sizeof(want), "%s:4: cert_pin_sha256 must be 64 hex digits (the "
	    "SHA-256 of the server certificate's DER form), not 4 digits", conf);
	assert_string_equal(err, want);

	write_text(conf, "jid = alice@example.org\npassword = x\nca_file = pw\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)),
	    MW_OMEMO_E_CONFIG);
	snprintf(want, sizeof(want), "%s:3: ca_file %s: no PEM certificate in it", conf, pw);
	assert_string_equal(err, want);

	/* the JID as typed, kept as servers stamp it (ASCII case folded) */
	write_text(conf, "jid = Alice@Example.ORG\npassword = x\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)), 0);
	assert_string_equal(a.jid, "alice@example.org");
	mw_omemo_account_free(&a);

	write_text(conf, "jid = alice@example.org/phone\n");
	assert_int_equal(mw_omemo_account_load_err(&a, conf, err, sizeof(err)),
	    MW_OMEMO_E_CONFIG);
	snprintf(want, sizeof(want), "%s:1: jid must be a bare JID (user@domain)", conf);
	assert_string_equal(err, want);

	assert_int_equal(unlink(conf), 0);
	assert_int_equal(unlink(pw), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* jid.c: what folds and what does not */
static void
test_jid_fold_and_equal(void **state)
{
	char a[] = "Alice@Example.ORG/Phone", b[] = "\xc3\x84rger@X.org", n[] = "";

	(void)state;
	mw_omemo_jid_fold(a);
	assert_string_equal(a, "alice@example.org/Phone");	/* resource kept */
	mw_omemo_jid_fold(b);
	assert_string_equal(b, "\xc3\x84rger@x.org");		/* non-ASCII kept */
	mw_omemo_jid_fold(n);
	mw_omemo_jid_fold(NULL);
	assert_true(mw_omemo_jid_equal("Alice@Example.org", "alice@example.ORG"));
	assert_true(mw_omemo_jid_equal("a@x/R", "A@X/R"));
	assert_false(mw_omemo_jid_equal("a@x/R", "a@x/r"));
	assert_false(mw_omemo_jid_equal("a@x", "a@x.org"));
	assert_false(mw_omemo_jid_equal("a@x.org", "a@x"));
	assert_false(mw_omemo_jid_equal("\xc3\x84@x", "\xc3\xa4@x"));
	assert_false(mw_omemo_jid_equal("a@x", NULL));
	assert_false(mw_omemo_jid_equal(NULL, NULL));
	/* '@' + 32 is '`': only letters fold */
	assert_false(mw_omemo_jid_equal("a@x", "a`x"));
	assert_false(mw_omemo_jid_equal("a[x", "a{x"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_rules),
		cmocka_unit_test(test_load_errors_name_file_and_line),
		cmocka_unit_test(test_jid_fold_and_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
