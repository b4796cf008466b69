/*
 * test_omemo_upgrade.c: a database written by the release that linked
 * libsignal-protocol-c opens with this build (libomemo-c) and keeps working.
 *
 * Why this exists: an upgrade must not cost anyone their sessions, their
 * identity (a new key or device id is a "changed identity" to every peer)
 * or a message in flight.  tests/unit/data/omemo-legacy/ was written once by
 * main a6ecce2 (gen_fixture.c and gen.sh there); these tests open copies of
 * it and check: device id, identity key and its serialized row unchanged;
 * a stored skipped message key, messages in flight both ways and a
 * first-contact PreKeySignalMessage on the old prekeys all decrypt; the
 * established sessions carry on both ways, across restarts; a signed
 * prekey rotation by this build keeps the old one usable; the old bundle
 * (signed by the old library) still builds sessions; and the sessions this
 * build writes back stay legacy (version 3) records.
 */
#include <limits.h>
#include <time.h>

#include "tests/unit/omemo_testlib.h"
#include "omemo/omemo_int.h"
#include <session_record.h>

struct fx {
	char name[16];
	char jid[64];
	uint32_t dev;
	char fp[65];
};

static char datadir[PATH_MAX];
static struct fx FX[3];			/* alice, bob, carol */
static struct ep A, B, C;

static void
init_datadir(void)
{
	/* __FILE__ is tests/unit/test_omemo_upgrade.c relative to the
	 * repository, where `make unit` runs the tests. */
	char *slash;

	snprintf(datadir, sizeof(datadir), "%s", __FILE__);
	slash = strrchr(datadir, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		datadir[0] = '\0';
	strncat(datadir, "data/omemo-legacy/", sizeof(datadir) - strlen(datadir) - 1);
}

static char *
slurp(const char *name, size_t *len)
{
	char p[PATH_MAX + 64];
	FILE *f;
	char *buf;
	size_t n;

	snprintf(p, sizeof(p), "%s%s", datadir, name);
	f = fopen(p, "rb");
	assert_non_null(f);
	buf = malloc(1 << 20);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	assert_int_equal(ferror(f), 0);
	assert_true(n < (1 << 20) - 1);
	assert_int_equal(fclose(f), 0);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

/* A stanza file: one line of XML. */
static char *
stanza_file(const char *name)
{
	char *s = slurp(name, NULL);
	char *nl = strchr(s, '\n');

	if (nl != NULL)
		*nl = '\0';
	assert_non_null(strstr(s, "eu.siacs.conversations.axolotl"));
	return s;
}

static void
load_fixture(void)
{
	char *t = slurp("fixture.txt", NULL), *save = NULL;
	int n = 0;

	for (char *line = strtok_r(t, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		assert_true(n < 3);
		assert_int_equal(sscanf(line, "%15s %63s %u %64s", FX[n].name,
		    FX[n].jid, &FX[n].dev, FX[n].fp), 4);
		n++;
	}
	assert_int_equal(n, 3);
	assert_string_equal(FX[0].name, "alice");
	assert_string_equal(FX[1].name, "bob");
	assert_string_equal(FX[2].name, "carol");
	free(t);
}

/* Copies the committed database: the tests never write the fixture. */
static void
copy_db(const char *name, const char *to)
{
	char file[32];
	size_t n;
	char *data;
	FILE *f;

	snprintf(file, sizeof(file), "%s.db", name);
	data = slurp(file, &n);
	assert_true(n > 4096);
	f = fopen(to, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	free(data);
}

/* Opens like the agent: existing database only, own JID given. */
static void
fx_open(struct ep *e)
{
	assert_int_equal(mw_omemo_db_open(e->path, false, &e->db), MW_OMEMO_OK);
	assert_int_equal(mw_omemo_open(&e->o, e->db, e->jid), MW_OMEMO_OK);
}

static void
fx_reopen(struct ep *e)
{
	mw_omemo_close(e->o);
	e->o = NULL;
	assert_int_equal(sqlite3_close(e->db), SQLITE_OK);
	e->db = NULL;
	fx_open(e);
}

static void
fx_new(struct ep *e, const struct fx *f)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->jid, sizeof(e->jid), "%s", f->jid);
	snprintf(e->path, sizeof(e->path), "%s/%s.db", tl_dir, f->name);
	copy_db(f->name, e->path);
	fx_open(e);
}

static int
setup(void **state)
{
	init_datadir();
	load_fixture();
	tl_init();
	fx_new(&A, &FX[0]);
	fx_new(&B, &FX[1]);
	fx_new(&C, &FX[2]);
	return 0;
}

static int
teardown(void **state)
{
	struct ep *all[] = { &A, &B, &C };

	for (size_t i = 0; i < 3; i++)
		if (all[i]->o != NULL)
			ep_close(all[i]);
	tl_fini();
	return 0;
}

static void
blob(struct ep *e, const char *sql, uint8_t **out, size_t *n)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(e->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	*n = (size_t)sqlite3_column_bytes(st, 0);
	*out = malloc(*n + 1);
	assert_non_null(*out);
	memcpy(*out, sqlite3_column_blob(st, 0), *n);
	sqlite3_finalize(st);
}

/* The committed file's row, read straight from it (read-only, immutable:
 * SQLite creates no -wal/-shm beside the fixture). */
static void
fixture_blob(const char *name, const char *sql, uint8_t **out, size_t *n)
{
	char uri[PATH_MAX + 64];
	struct ep tmp;

	memset(&tmp, 0, sizeof(tmp));
	snprintf(uri, sizeof(uri), "file:%s%s.db?immutable=1", datadir, name);
	assert_int_equal(sqlite3_open_v2(uri, &tmp.db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI, NULL), SQLITE_OK);
	blob(&tmp, sql, out, n);
	assert_int_equal(sqlite3_close(tmp.db), SQLITE_OK);
}

/* count() on the pristine fixture file */
static int
count_fixture(const char *name, const char *sql)
{
	char uri[PATH_MAX + 64];
	struct ep tmp;
	int n;

	memset(&tmp, 0, sizeof(tmp));
	snprintf(uri, sizeof(uri), "file:%s%s.db?immutable=1", datadir, name);
	assert_int_equal(sqlite3_open_v2(uri, &tmp.db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI, NULL), SQLITE_OK);
	n = count(&tmp, sql);
	assert_int_equal(sqlite3_close(tmp.db), SQLITE_OK);
	return n;
}

static void
dec_expect_prekey(struct ep *b, const char *wire, const char *text, bool prekey)
{
	struct mw_omemo_msg m;

	assert_int_equal(dec_raw(b, wire, &m), MW_OMEMO_OK);
	assert_int_equal(m.prekey, prekey);
	assert_int_equal(m.trust, MW_OMEMO_TRUST_VERIFIED);
	assert_int_equal(m.len, strlen(text));
	assert_memory_equal(m.plaintext, text, m.len);
	assert_int_equal(mw_omemo_commit(b->o), MW_OMEMO_OK);
	mw_omemo_msg_free(&m);
}

/* Every session record in e's store is a legacy (version 3) session. */
static void
sessions_are_legacy(struct ep *e, int64_t want)
{
	sqlite3_stmt *st;
	int64_t n = 0;

	assert_int_equal(sqlite3_prepare_v2(e->db,
	    "SELECT record FROM omemo_sessions", -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		session_record *r = NULL;

		assert_int_equal(session_record_deserialize(&r,
		    sqlite3_column_blob(st, 0),
		    (size_t)sqlite3_column_bytes(st, 0), e->o->sg), 0);
		assert_int_equal(session_record_get_version(r),
		    CIPHERTEXT_CURRENT_VERSION);
		SIGNAL_UNREF(r);
		n++;
	}
	sqlite3_finalize(st);
	assert_int_equal(n, want);
}

static void
test_identity_unchanged(void **state)
{
	struct ep *all[] = { &A, &B, &C };
	static const char *idq = "SELECT keypair FROM omemo_identity";
	static const char *spkq = "SELECT record FROM omemo_signed_prekeys";

	for (size_t i = 0; i < 3; i++) {
		struct ep *e = all[i];
		uint8_t *was, *now;
		size_t wn, nn;
		char fp[65];

		assert_int_equal(mw_omemo_device_id(e->o), FX[i].dev);
		fp_of(e, fp);
		assert_string_equal(fp, FX[i].fp);
		/* schema step 2 added the OMEMO 2 session table, empty; the
		 * legacy sessions stay where they were; step 3 the prekeys'
		 * first use */
		assert_int_equal(count(e, "SELECT version FROM mw_schema WHERE "
		    "component='omemo'"), 3);
		assert_int_equal(count(e, "SELECT count(*) FROM omemo_sessions_v4"),
		    0);
		assert_int_equal(count(e, "SELECT count(*) FROM omemo_sessions"),
		    count_fixture(FX[i].name, "SELECT count(*) FROM omemo_sessions"));
		assert_int_equal(count(e, "SELECT count(*) FROM omemo_prekeys"), 100);
		/* the identity row is byte for byte what the old release wrote */
		fixture_blob(FX[i].name, idq, &was, &wn);
		blob(e, idq, &now, &nn);
		assert_int_equal(wn, nn);
		assert_memory_equal(was, now, wn);
		free(was);
		free(now);
		/* and so is the signed prekey (no rotation, no re-signing) */
		fixture_blob(FX[i].name, spkq, &was, &wn);
		blob(e, spkq, &now, &nn);
		assert_int_equal(wn, nn);
		assert_memory_equal(was, now, wn);
		free(was);
		free(now);
		/* a restart keeps all of it */
		fx_reopen(e);
		assert_int_equal(mw_omemo_device_id(e->o), FX[i].dev);
		fp_of(e, fp);
		assert_string_equal(fp, FX[i].fp);
	}
	/* the peers' pinned keys and trust survived too */
	{
		enum mw_omemo_trust t;
		char fp[65];

		assert_int_equal(mw_omemo_device_trust(B.o, A.jid, FX[0].dev, &t,
		    fp), MW_OMEMO_OK);
		assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
		assert_string_equal(fp, FX[0].fp);
		assert_int_equal(mw_omemo_device_trust(A.o, B.jid, FX[1].dev, &t,
		    fp), MW_OMEMO_OK);
		assert_int_equal(t, MW_OMEMO_TRUST_VERIFIED);
		assert_string_equal(fp, FX[1].fp);
	}
	sessions_are_legacy(&A, 1);
	sessions_are_legacy(&B, 1);
	sessions_are_legacy(&C, 1);
}

static void
test_established_session_carries_on(void **state)
{
	char *skipped = stanza_file("a2b-skipped.xml");
	char *a2b = stanza_file("a2b-inflight.xml");
	char *b2a = stanza_file("b2a-inflight.xml");
	struct mw_omemo_msg m;
	char text[64];

	/* what was in flight at the upgrade */
	dec_expect_prekey(&B, a2b, "in flight to bob", false);
	dec_expect_prekey(&A, b2a, "in flight to alice", false);
	/* the skipped message key the old release stored */
	dec_expect_prekey(&B, skipped, "skipped by the old release", false);
	/* replays are still refused, store unchanged */
	{
		uint8_t before[32], after[32];

		db_digest(&B, before);
		assert_int_equal(dec_raw(&B, skipped, &m), MW_OMEMO_E_DUPLICATE);
		mw_omemo_msg_free(&m);
		assert_int_equal(dec_raw(&B, a2b, &m), MW_OMEMO_E_DUPLICATE);
		mw_omemo_msg_free(&m);
		db_digest(&B, after);
		assert_memory_equal(before, after, 32);
	}
	/* the same sessions go on both ways, DH ratchet turns, restarts */
	for (int i = 0; i < 12; i++) {
		snprintf(text, sizeof(text), "after the upgrade %d", i);
		if (i % 2 == 0)
			send_recv(&A, &B, text);
		else
			send_recv(&B, &A, text);
		if (i == 5)
			fx_reopen(&A);
		if (i == 8)
			fx_reopen(&B);
	}
	/* no new session was built: still the one each side had */
	assert_int_equal(count(&A, "SELECT count(*) FROM omemo_sessions"), 1);
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_sessions WHERE "
	    "jid='alice@example.org'"), 1);
	sessions_are_legacy(&A, 1);
	sessions_are_legacy(&B, 1);
	free(skipped);
	free(a2b);
	free(b2a);
}

static void
test_first_contact_on_old_prekeys(void **state)
{
	char *w = stanza_file("carol-prekey.xml");
	int64_t used;

	assert_non_null(strstr(w, "prekey="));
	/* bob's signed prekey is rotated by this build first (a week on):
	 * the old one is kept for late PreKey messages like carol's */
	{
		bool changed = false;

		assert_int_equal(mw_omemo_maintain(B.o, (int64_t)time(NULL) +
		    MW_OMEMO_SPK_ROTATE_SECS + 60, &changed), MW_OMEMO_OK);
		assert_true(changed);
		assert_int_equal(count(&B, "SELECT count(*) FROM "
		    "omemo_signed_prekeys"), 2);
	}
	/* bob's prekey and signed prekey were generated by the old release */
	dec_expect_prekey(&B, w, "first contact from carol", true);
	used = count(&B, "SELECT count(*) FROM omemo_prekeys WHERE used IS NULL");
	assert_int_equal(used, 100);	/* consumed one, made a new one */
	assert_int_equal(count(&B, "SELECT count(*) FROM omemo_prekeys WHERE used "
	    "IS NOT NULL"), 1);		/* kept for its grace period */
	send_recv(&B, &C, "bob answers carol");
	/* carol's session is confirmed: normal messages from now on */
	{
		char *n = enc(&C, &B, "carol again");

		assert_null(strstr(n, "prekey="));
		dec_expect_prekey(&B, n, "carol again", false);
		free(n);
	}
	fx_reopen(&C);
	send_recv(&C, &B, "carol after a restart");
	send_recv(&B, &C, "bob after carol's restart");
	sessions_are_legacy(&B, 2);
	sessions_are_legacy(&C, 1);
	free(w);
}

/* A device made by this build meets the old bundle, and the other way:
 * old signatures verify with libomemo-c, libomemo-c's with what the old
 * release stored. */
static void
test_old_bundle_new_device(void **state)
{
	struct ep D;

	ep_new(&D, "dave@example.org", "dave");
	introduce(&D, &B);	/* bob's bundle: old spk, old signature */
	know(&B, &D);
	send_recv(&D, &B, "dave meets the old bundle");
	send_recv(&B, &D, "bob answers dave");
	introduce(&A, &D);	/* dave's bundle: signed by libomemo-c */
	know(&D, &A);
	send_recv(&A, &D, "alice meets dave");
	send_recv(&D, &A, "dave answers alice");
	sessions_are_legacy(&A, 2);
	sessions_are_legacy(&D, 2);
	ep_close(&D);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_unchanged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_established_session_carries_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_contact_on_old_prekeys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_bundle_new_device, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
