/*
 * fuzz_omemo_bundle: the PEP parsers -- mw_omemo_process_bundle (a
 * <bundle> any contact publishes: identity key, signed prekey and its
 * signature, prekeys) and mw_omemo_process_devicelist (a <list> of device
 * ids, pushed by the server for any contact) -- on XML parsed by
 * xmpp_stanza_new_from_string.  The agent's identity is an in-memory
 * database created once; after an input that legitimately commits, the
 * pristine store is restored.
 *
 * Input: byte 0 bit 0 picks the parser (0 bundle, 1 device list), bits 1-2
 * the JID/device (alice with device 4242, the agent's own JID and device,
 * the agent's JID with another device, a JID that is not one), the rest is
 * the XML.  The seed bundle-alice.xml is a real bundle (self-signed, so it
 * verifies in any run); MW_FUZZ_DUMP=DIR writes the seeds again.
 *
 * Invariants beyond "no crash":
 *  - an error leaves no transaction open and the store byte-identical;
 *  - a bundle for the agent's own device is refused (E_OWN_DEVICE or
 *    earlier); a bundle accepted for (jid, device) leaves that device with
 *    a pinned key and a session;
 *  - after an accepted device list the cached devices of jid are sorted by
 *    id without duplicates.
 */
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/omemo_fuzzlib.h"

#define AGENT "agent@fuzz.example"
#define ALICE "alice@fuzz.example"
#define ALICE_DEV 4242

static struct fz_ep agent;
static sqlite3 *pristine;

static void
dump(const char *dir, const char *name, uint8_t mode, const char *xml)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	FUZZ_CHECK(f != NULL);
	fputc(mode, f);
	fputs(xml, f);
	fclose(f);
}

static void
dump_seeds(const char *dir)
{
	struct fz_ep alice;
	xmpp_stanza_t *b = NULL;
	char *t = NULL;
	size_t n;
	mkdir(dir, 0755);
	fz_ep_open(&alice, ALICE);
	FUZZ_CHECK(mw_omemo_bundle_element(alice.o, fz_x, &b) == MW_OMEMO_OK);
	xmpp_stanza_to_text(b, &t, &n);
	/* three prekeys are enough for a seed: cut the rest */
	char *cut = t;
	for (int i = 0; i < 4 && cut != NULL; i++)
		cut = strstr(cut + 1, "<preKeyPublic");
	char *end = strstr(t, "</prekeys>");
	if (cut != NULL && end != NULL && end > cut)
		memmove(cut, end, strlen(end) + 1);
	dump(dir, "bundle-alice.xml", 0, t);
	xmpp_free(fz_x, t);
	dump(dir, "bundle-own-device.xml", 2, "<bundle xmlns='" MW_OMEMO_NS "'/>");
	dump(dir, "list.xml", 1, "<list xmlns='" MW_OMEMO_NS "'><device id='4242'/>"
	    "<device id='1'/><device id='2147483647' label='phone'/></list>");
	dump(dir, "list-empty.xml", 1, "<list xmlns='" MW_OMEMO_NS "'/>");
	dump(dir, "list-bad.xml", 1, "<list xmlns='" MW_OMEMO_NS "'><device id='0'/>"
	    "<device id='-5'/><device/><device id='4242'/><device id='4242'/></list>");
	xmpp_stanza_release(b);
	mw_omemo_close(alice.o);
	sqlite3_close(alice.db);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_x = xmpp_ctx_new(NULL, NULL);
	fz_ep_open(&agent, AGENT);
	FUZZ_CHECK(sqlite3_open(":memory:", &pristine) == SQLITE_OK);
	fz_copy_db(pristine, agent.db);
	const char *dir = getenv("MW_FUZZ_DUMP");
	if (dir != NULL)
		dump_seeds(dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t mode = fz_u8(&in);
	char *xml = fz_cstr(in.p, in.n);
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(fz_x, xml);
	free(xml);
	if (s == NULL)
		return 0;
	const char *jid = ALICE;
	uint32_t dev = ALICE_DEV;
	switch ((mode >> 1) & 3) {
	case 1: jid = AGENT; dev = mw_omemo_device_id(agent.o); break;
	case 2: jid = AGENT; dev = ALICE_DEV; break;
	case 3: jid = "not a jid"; break;
	}
	uint8_t before[32], after[32];
	fz_store_digest(agent.db, before);
	int r = (mode & 1) ? mw_omemo_process_devicelist(agent.o, jid, s) :
	    mw_omemo_process_bundle(agent.o, jid, dev, s);
	fz_no_txn(&agent);
	if (getenv("MW_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%s: %d %s\n", mode & 1 ? "list" : "bundle", r, mw_omemo_strerror(r));
	if (r != 0) {
		FUZZ_CHECK(r < 0);
		fz_store_digest(agent.db, after);
		FUZZ_CHECK(memcmp(before, after, 32) == 0);
	} else {
		struct mw_omemo_device *d = NULL;
		size_t n = 0;
		FUZZ_CHECK(!(!(mode & 1) && strcmp(jid, AGENT) == 0 && dev == mw_omemo_device_id(agent.o)));
		FUZZ_CHECK(mw_omemo_devices(agent.o, jid, &d, &n) == MW_OMEMO_OK);
		bool found = false;
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				FUZZ_CHECK(d[i - 1].id < d[i].id);
			if (d[i].id == dev && d[i].has_key && d[i].has_session)
				found = true;
		}
		if (!(mode & 1))
			FUZZ_CHECK(found);
		free(d);
		fz_copy_db(agent.db, pristine);
	}
	xmpp_stanza_release(s);
	return 0;
}
