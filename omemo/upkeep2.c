/*
 * upkeep2.c: the empty OMEMO 2 messages moonwire sends of its own accord
 * (XEP-0384 v0.8, "empty OMEMO messages"), which keep sessions healthy
 * when no real message would:
 *
 *   kex-completion  a key exchange was received and, OMEMO2_COMPLETE_MS
 *                   later, nothing has been sent on that session: an empty
 *                   message tells the initiator the session is built, so
 *                   it stops attaching the key exchange;
 *   heartbeat       a message numbered OMEMO2_STALE or later in the
 *                   sender's chain arrived and nothing has been sent back
 *                   since: an empty message turns the ratchet (forward
 *                   secrecy does not wait for a reply that may never come);
 *   repair          a message of a VERIFIED device failed in the ratchet
 *                   (no session, bad MAC, unknown prekey -- never a replay):
 *                   its bundle is fetched, a new session built over the
 *                   pinned identity, and an empty message carrying the key
 *                   exchange sent.  At most one attempt per device per
 *                   OMEMO2_REPAIR_EVERY_MS, so a peer whose messages keep
 *                   failing cannot make this side loop or flood.
 *
 * message2.c records what a decrypt leaves owed; mw_omemo_tick() pays it,
 * outside any transaction.  Invariants: an empty message goes only to the
 * one device it is owed to, only over an existing version-4 session, and
 * only to a VERIFIED device (encrypt2's rule); any message encrypted to
 * that device in the meantime -- a job's result -- pays the debt
 * (omemo2_upkeep_sent, after encrypt2's commit), and the session itself is
 * read once more before paying (its sending chain's index is 0 after a DH
 * ratchet step until this side sends), so nothing is sent twice.  The
 * list is bounded (OMEMO2_UPKEEP_MAX devices); past that, new debts are
 * dropped, never old ones.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ratchet.h>
#include <session_record.h>
#include <session_state.h>

#include "omemo/omemo_int.h"

#define OMEMO2_COMPLETE_MS	1000		/* a prompt reply makes it moot */
#define OMEMO2_REPAIR_EVERY_MS	(10 * 60 * 1000)
#define OMEMO2_UPKEEP_MAX	1024

enum {
	OWE_COMPLETE = 1,
	OWE_HEARTBEAT = 2,
	OWE_REPAIR = 4,
};

struct omemo_upkeep {
	struct omemo_upkeep *next;
	char *jid;
	uint32_t dev;
	unsigned owed;			/* OWE_* */
	int64_t due_ms;			/* monotonic */
	int64_t repaired_ms;		/* last repair attempt; 0: none */
	bool fetching;			/* repair: bundle fetch in flight */
};

/* What a repair's bundle fetch is for (owned by its IQ). */
struct repair_fetch {
	char jid[OMEMO_BARE_MAX + 1];
	uint32_t dev;
};

static struct omemo_upkeep *
find(struct mw_omemo *o, const char *jid, uint32_t dev, bool create)
{
	struct omemo_upkeep *e;
	size_t n = 0;

	for (e = o->upkeep; e != NULL; e = e->next, n++)
		if (e->dev == dev && strcmp(e->jid, jid) == 0)
			return e;
	if (!create || n >= OMEMO2_UPKEEP_MAX ||
	    (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if ((e->jid = strdup(jid)) == NULL) {
		free(e);
		return NULL;
	}
	e->dev = dev;
	e->next = o->upkeep;
	o->upkeep = e;
	return e;
}

static void
owe(struct mw_omemo *o, const char *jid, uint32_t dev, unsigned what,
    int64_t due_ms)
{
	struct omemo_upkeep *e = find(o, jid, dev, true);

	if (e == NULL)
		return;		/* bounded: see the invariants above */
	if (e->owed == 0 || due_ms < e->due_ms)
		e->due_ms = due_ms;
	e->owed |= what;
}

void
omemo2_upkeep_received(struct mw_omemo *o, const char *jid, uint32_t dev,
    bool kex, uint32_t counter)
{
	int64_t now = omemo_mono_ms();

	if (kex)
		owe(o, jid, dev, OWE_COMPLETE, now + (o->complete_ms > 0 ?
		    o->complete_ms : OMEMO2_COMPLETE_MS));
	if (counter >= OMEMO2_STALE)
		owe(o, jid, dev, OWE_HEARTBEAT, now);
}

void
omemo2_upkeep_sent(struct mw_omemo *o, const char *jid, uint32_t dev)
{
	struct omemo_upkeep *e = find(o, jid, dev, false);

	if (e != NULL)
		e->owed &= ~(unsigned)(OWE_COMPLETE | OWE_HEARTBEAT);
}

void
omemo2_upkeep_broken(struct mw_omemo *o, const char *jid, uint32_t dev,
    int err)
{
	struct omemo_upkeep *e;
	enum mw_omemo_trust t = MW_OMEMO_TRUST_UNDECIDED;
	uint8_t key[33];
	int64_t now = omemo_mono_ms();

	if (err != MW_OMEMO_E_NO_SESSION && err != MW_OMEMO_E_BAD_MESSAGE &&
	    err != MW_OMEMO_E_PREKEY)
		return;
	/* only a device whose pinned key the owner verified: a stranger's
	 * undecryptable message costs no fetch and no answer */
	if (omemo_device_key(o, jid, dev, key) != 0 ||
	    omemo_key_trust(o, jid, key, sizeof(key), &t) != 0 ||
	    t != MW_OMEMO_TRUST_VERIFIED)
		return;
	e = find(o, jid, dev, false);
	if (e != NULL && ((e->owed & OWE_REPAIR) || e->fetching))
		return;		/* one already on its way */
	if (e != NULL && e->repaired_ms != 0 &&
	    now - e->repaired_ms < OMEMO2_REPAIR_EVERY_MS) {
		omemo_log(o, "omemo-repair-skipped", "jid=%s device=%" PRIu32
		    " reason=\"repaired %" PRId64 " s ago; at most one repair "
		    "per device every %d s\"", jid, dev,
		    (now - e->repaired_ms) / 1000, OMEMO2_REPAIR_EVERY_MS / 1000);
		return;
	}
	owe(o, jid, dev, OWE_REPAIR, now);
}

/* Whether this side has sent nothing on the current sending chain of its
 * version-4 session with jid/dev: 1 yes, 0 no, < 0 no session / error. */
static int
nothing_sent(struct mw_omemo *o, const char *jid, uint32_t dev)
{
	signal_protocol_address a = { jid, strlen(jid), (int32_t)dev };
	session_record *rec = NULL;
	session_state *st;
	ratchet_chain_key *ck;
	int rc;

	if ((rc = signal_protocol_session_load_session(o->store4, &rec, &a,
	    OMEMO_V2)) != 0)
		return omemo_map_sg(rc);
	if (session_record_is_fresh(rec) ||
	    (st = session_record_get_state(rec)) == NULL ||
	    (ck = session_state_get_sender_chain_key(st)) == NULL)
		rc = MW_OMEMO_E_NO_SESSION;
	else
		rc = ratchet_chain_key_get_index(ck) == 0;
	SIGNAL_UNREF(rec);
	return rc;
}

static int
send_empty(struct mw_omemo *o, const char *jid, uint32_t dev,
    const char *reason)
{
	xmpp_stanza_t *st = NULL;
	int rc;

	if ((rc = mw_omemo2_encrypt_empty(o, o->xctx, jid, dev, &st)) != 0)
		return rc;
	o->send_fn(st, o->send_arg);
	xmpp_stanza_release(st);
	omemo_log(o, "omemo-empty-sent", "jid=%s device=%" PRIu32
	    " reason=%s", jid, dev, reason);
	return 0;
}

static void
repair_cb(struct mw_omemo *o, xmpp_stanza_t *reply, int err, void *arg)
{
	struct repair_fetch *f = arg;
	struct omemo_upkeep *e = find(o, f->jid, f->dev, false);

	if (e != NULL)
		e->fetching = false;
	if (err == 0)
		err = omemo_pubsub_item_is(reply, f->dev) ?
		    mw_omemo2_process_bundle(o, f->jid, f->dev, reply) :
		    MW_OMEMO_E_BUNDLE;
	if (err == 0)
		err = send_empty(o, f->jid, f->dev, "repair");
	if (err != 0)
		omemo_log(o, "omemo-repair-failed", "jid=%s device=%" PRIu32
		    " error=\"%s\"", f->jid, f->dev, mw_omemo_strerror(err));
	else
		omemo_log(o, "omemo-repaired", "jid=%s device=%" PRIu32
		    " (new session sent with its key exchange)", f->jid, f->dev);
}

static void
start_repair(struct mw_omemo *o, struct omemo_upkeep *e, int64_t now)
{
	struct repair_fetch *f;
	char item[16];
	int rc;

	e->owed = 0;		/* its empty message answers every debt */
	e->repaired_ms = now;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return;
	(void)snprintf(f->jid, sizeof(f->jid), "%s", e->jid);
	f->dev = e->dev;
	(void)snprintf(item, sizeof(item), "%" PRIu32, e->dev);
	omemo_log(o, "omemo-repair", "jid=%s device=%" PRIu32 " reason=\"its "
	    "message did not decrypt; fetching its bundle for a new session\"",
	    e->jid, e->dev);
	e->fetching = true;
	/* the own account answers without a from: ask it without a to */
	if ((rc = omemo_pep_fetch(o, strcmp(e->jid, o->jid) == 0 ? NULL :
	    e->jid, MW_OMEMO2_NODE_BUNDLES, item, repair_cb, f)) != 0) {
		e->fetching = false;
		omemo_log(o, "omemo-repair-failed", "jid=%s device=%" PRIu32
		    " error=\"%s\"", e->jid, e->dev, mw_omemo_strerror(rc));
	}
}

void
omemo2_upkeep_tick(struct mw_omemo *o, int64_t now)
{
	struct omemo_upkeep *e, **pp;

	if (o->send_fn == NULL || o->txn)
		return;
	for (e = o->upkeep; e != NULL; e = e->next) {
		if (e->owed == 0 || now < e->due_ms)
			continue;
		if (e->owed & OWE_REPAIR) {
			if (!e->fetching)
				start_repair(o, e, now);
			continue;
		}
		if (nothing_sent(o, e->jid, e->dev) == 1) {
			const char *why = (e->owed & OWE_COMPLETE) ?
			    "kex-completion" : "heartbeat";
			int rc = send_empty(o, e->jid, e->dev, why);

			/* an unverified device gets nothing: not an error */
			if (rc != 0 && rc != MW_OMEMO_E_NO_DEVICES)
				omemo_log(o, "omemo-empty-failed", "jid=%s "
				    "device=%" PRIu32 " reason=%s error=\"%s\"",
				    e->jid, e->dev, why, mw_omemo_strerror(rc));
		}
		e->owed = 0;
	}
	/* forget devices with nothing owed and no repair to remember */
	for (pp = &o->upkeep; (e = *pp) != NULL;) {
		if (e->owed == 0 && !e->fetching && (e->repaired_ms == 0 ||
		    now - e->repaired_ms >= OMEMO2_REPAIR_EVERY_MS)) {
			*pp = e->next;
			free(e->jid);
			free(e);
		} else
			pp = &e->next;
	}
}

size_t
omemo2_upkeep_owed(const struct mw_omemo *o)
{
	size_t n = 0;

	for (const struct omemo_upkeep *e = o->upkeep; e != NULL; e = e->next)
		if (e->owed != 0)
			n++;
	return n;
}

void
omemo2_upkeep_free(struct mw_omemo *o)
{
	struct omemo_upkeep *e;

	while ((e = o->upkeep) != NULL) {
		o->upkeep = e->next;
		free(e->jid);
		free(e);
	}
}
