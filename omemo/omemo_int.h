/*
 * omemo_int.h: private to omemo/.  The context structure and the internal
 * helpers shared by the files of the component.
 *
 * Invariant: o->txn is true exactly while a transaction begun by this layer
 * is open on o->db; o->pending_decrypt is true while that transaction
 * belongs to a mw_omemo_decrypt() the caller has not finished.
 */
#ifndef OMEMO_INT_H
#define OMEMO_INT_H

#include <string.h>

/* libomemo-c (pkg-config libomemo-c: -I/usr/include/omemo), never
 * libsignal-protocol-c: the two export the same symbols and cannot share a
 * process.  The guard below fails the build if the old headers are found. */
#include <signal_protocol.h>
#include <key_helper.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <protocol.h>
#include <curve.h>

#ifndef CIPHERTEXT_OMEMO_VERSION
#error "omemo/ needs libomemo-c's headers (pkg-config libomemo-c), not libsignal-protocol-c's"
#endif

#include "omemo/mw_omemo.h"

struct omemo_iq;
struct omemo_send;
struct omemo_upkeep;

#define OMEMO_STMT_CACHE 64	/* prepared statements kept (store.c) */

/* Session versions (libomemo-c): legacy OMEMO is 3, OMEMO 2 is 4. */
#define OMEMO_V_LEGACY	3u
#define OMEMO_V2	CIPHERTEXT_OMEMO_VERSION

/* The session store of one version (session_store.c). */
struct omemo_sstore {
	struct mw_omemo *o;
	uint32_t version;
};
struct omemo_stmt {
	const char *sql;		/* the literal's address is the key */
	sqlite3_stmt *st;
	bool busy;			/* handed out by prep(), not yet unprep()'d */
};

struct mw_omemo {
	sqlite3 *db;
	struct omemo_stmt stmts[OMEMO_STMT_CACHE];
	char *jid;			/* own bare JID */
	uint32_t device_id;
	signal_context *sg;
	signal_protocol_store_context *store;	/* legacy sessions */
	signal_protocol_store_context *store4;	/* OMEMO 2 sessions */
	struct omemo_sstore sstore[2];	/* their user data: [0] legacy, [1] v4 */
	bool txn;			/* our transaction is open */
	bool pending_decrypt;		/* ... and belongs to a decrypt */
	bool bundle_dirty;		/* a prekey was used: republish */
	bool require_verified;		/* decrypt only from VERIFIED sender keys */
	enum mw_omemo_version send_version;	/* mw_omemo_send()'s choice */
	/* republish deferral: a change sets bundle_publish_pending and
	 * mw_omemo_tick() publishes once, 1-5 windows (random) after the
	 * first pending change (pep.c, omemo_pep_bundle_changed) */
	int64_t republish_ms;		/* the window; tests may shorten it */
	bool bundle_publish_pending;
	int64_t bundle_publish_due_ms;	/* monotonic */

	/* network side */
	xmpp_ctx_t *xctx;
	mw_omemo_send_fn send_fn;
	void *send_arg;
	xmpp_conn_t *conn;		/* set by mw_omemo_attach */
	struct omemo_iq *iqs;		/* IQs awaiting an answer */
	struct omemo_send *sends;	/* mw_omemo_send()s awaiting bundles */
	unsigned long iq_seq;
	int64_t iq_timeout_ms;
	/* a send asked for the own device list on this transport (or it is
	 * in flight): later sends use the stored one, kept fresh by the
	 * start-up chain and pushes, instead of one fetch per send */
	bool own_list_asked;
	int64_t last_maintain;
	/* when the first used prekey's grace period ends (wall seconds; 0:
	 * none known): the upkeep runs then, not an hour later, so a spent
	 * prekey's private key is gone MW_OMEMO_PREKEY_GRACE_SECS after its
	 * first use (keys.c, store.c) */
	int64_t prekey_expiry;

	/* publication confirmation (pep.c): the start-up chain (bundle ->
	 * own list -> list -> fetch both back) runs as generation pub_gen;
	 * answers of an older generation are ignored.  On failure the chain
	 * restarts after pub_backoff_ms (doubling, capped) */
	mw_omemo_log_fn log_fn;
	void *log_arg;
	unsigned pub_gen;
	enum { OMEMO_PUB_IDLE, OMEMO_PUB_RUNNING, OMEMO_PUB_CONFIRMED,
	    OMEMO_PUB_WAIT_RETRY } pub_state;
	int64_t pub_retry_at_ms;	/* monotonic; WAIT_RETRY only */
	int64_t pub_backoff_ms;		/* the next retry's delay */
	int64_t pub_backoff_min_ms;	/* tests may shorten it */
	int verify_outstanding;		/* confirmation fetches in flight */
	/* periodic re-check of a confirmed publication (0: off); the next one
	 * is due at next_recheck_ms (monotonic; 0: none scheduled) */
	int64_t recheck_ms;
	int64_t next_recheck_ms;
	bool verify_failed;

	/* empty OMEMO 2 messages owed to peers (upkeep2.c) */
	struct omemo_upkeep *upkeep;
	int64_t complete_ms;		/* kex-completion grace; 0: default */
};

/* A store callback refusing a write over a per-JID cap (store.c); outside
 * libsignal's error range, mapped to MW_OMEMO_E_LIMIT by omemo_map_sg. */
#define OMEMO_SG_ELIMIT (SG_ERR_MINIMUM - 2)
/* A store statement failed (store.c); maps to MW_OMEMO_E_DB. */
#define OMEMO_SG_EDB (SG_ERR_MINIMUM - 1)

/* crypto.c */
int omemo_crypto_provider(signal_context *sg);
int omemo_random(void *p, size_t n);
/* AES-128-GCM; tag is 16 bytes; iv of any length > 0. */
int omemo_gcm_encrypt(const uint8_t key[16], const uint8_t *iv, size_t ivlen,
    const uint8_t *pt, size_t n, uint8_t *ct, uint8_t tag[16]);
int omemo_gcm_decrypt(const uint8_t key[16], const uint8_t *iv, size_t ivlen,
    const uint8_t *ct, size_t n, const uint8_t tag[16], uint8_t *pt);
/* Strict base64: MW_OMEMO_E_BASE64 on anything but whitespace and the
 * alphabet with correct padding.  *out is malloc'ed. */
int omemo_b64_decode(const char *s, uint8_t **out, size_t *outlen, size_t max);
char *omemo_b64_encode(const uint8_t *p, size_t n);
int64_t omemo_now(void);		/* wall clock, seconds */
int64_t omemo_mono_ms(void);		/* monotonic, milliseconds */

/* payload2.c: the OMEMO 2 payload cipher.  keymat is key (32) || tag (16);
 * *ct / *pt are malloc'ed (*pt NUL-terminated); decrypt checks the tag
 * first (MW_OMEMO_E_BAD_TAG). */
#define OMEMO2_KEY	32
#define OMEMO2_TAG	16
#define OMEMO2_KEYMAT	(OMEMO2_KEY + OMEMO2_TAG)
int omemo2_payload_encrypt(const uint8_t *pt, size_t n,
    uint8_t keymat[OMEMO2_KEYMAT], uint8_t **ct, size_t *ctlen);
int omemo2_payload_decrypt(const uint8_t keymat[OMEMO2_KEYMAT],
    const uint8_t *ct, size_t n, uint8_t **pt, size_t *ptlen);

/* sce.c: the XEP-0420 envelope.  build: body is strict UTF-8 XML text
 * (else MW_OMEMO_E_INVAL), *out malloc'ed.  parse: from/to are the outer
 * stanza's bare JIDs; *body is malloc'ed, NUL-terminated, NULL when the
 * content carries no <body>; every violation is MW_OMEMO_E_SCE. */
#define OMEMO_NS_SCE	"urn:xmpp:sce:1"
int omemo_sce_build(const char *from, const char *to, const uint8_t *body,
    size_t n, char **out, size_t *outlen);
int omemo_sce_parse(const uint8_t *xml, size_t n, const char *from,
    const char *to, uint8_t **body, size_t *bodylen);

/* proto.c: the OMEMO 2 protobufs have exactly their XEP shape; every key
 * of a legacy (Pre)SignalMessage is in its 33-byte form */
bool omemo_legacy_message_ok(const uint8_t *m, size_t n);
bool omemo_legacy_prekey_ok(const uint8_t *m, size_t n);
bool omemo2_message_ok(const uint8_t *p, size_t n);
bool omemo2_authmsg_ok(const uint8_t *p, size_t n);
bool omemo2_kex_ok(const uint8_t *p, size_t n);

/* store.c */
int omemo_schema(sqlite3 *db);
int omemo_store_register(struct mw_omemo *o);
int omemo_begin(struct mw_omemo *o);
int omemo_commit(struct mw_omemo *o);
void omemo_rollback(struct mw_omemo *o);
void omemo_stmt_cache_free(struct mw_omemo *o);	/* store.c */
int omemo_exec(sqlite3 *db, const char *sql);
int omemo_meta_get(struct mw_omemo *o, const char *key, int64_t *v);
int omemo_meta_set(struct mw_omemo *o, const char *key, int64_t v);
/* Trust of (jid, key); UNDECIDED when unknown. */
int omemo_key_trust(struct mw_omemo *o, const char *jid, const uint8_t *key,
    size_t keylen, enum mw_omemo_trust *t);
/* Pinned key of jid/dev (33 bytes); 0 found, MW_OMEMO_E_NOT_FOUND. */
int omemo_device_key(struct mw_omemo *o, const char *jid, uint32_t dev,
    uint8_t key[33]);
int omemo_device_upsert(struct mw_omemo *o, const char *jid, uint32_t dev,
    int active);
/* The version jid/dev last wrote in (set inside a decrypt's transaction),
 * and read back (OMEMO_V_LEGACY when unknown or on error). */
int omemo_device_version_set(struct mw_omemo *o, const char *jid,
    uint32_t dev, uint32_t version);
uint32_t omemo_device_version(struct mw_omemo *o, const char *jid,
    uint32_t dev);
/* The same for the OMEMO 2 device list's flag (version OMEMO_V2). */
int omemo_device_upsert_v(struct mw_omemo *o, uint32_t version,
    const char *jid, uint32_t dev, int active);
/* Statement helpers for the store files: cached prepare (the SQL literal's
 * address is the key) and its release; omemo_load_blob gives 1 found, 0
 * not, < 0 error. */
int omemo_prep(struct mw_omemo *o, sqlite3_stmt **st, const char *sql);
void omemo_unprep(struct mw_omemo *o, sqlite3_stmt *st);
int omemo_step_done(struct mw_omemo *o, sqlite3_stmt *st);
int omemo_load_blob(sqlite3_stmt *st, int col, signal_buffer **out);
int omemo_bind_addr(sqlite3_stmt *st, const signal_protocol_address *a);

/* identity_store.c: fills libomemo-c's identity store for o */
void omemo_identity_store(struct mw_omemo *o,
    signal_protocol_identity_key_store *ik);

/* session_store.c */
void omemo_session_store(struct mw_omemo *o, uint32_t version,
    signal_protocol_session_store *ss);
int omemo_has_session(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t dev);
/* Device ids of jid that are active (in the last device list) or named,
 * whose pinned key is VERIFIED (need_verified) or at least not REVOKED. */
int omemo_trusted_devices(struct mw_omemo *o, const char *jid,
    uint32_t **ids, size_t *n, bool with_session, bool need_verified,
    const uint32_t *named, size_t nnamed);
/* ... of one version: its device list flag and its sessions. */
int omemo_trusted_devices_v(struct mw_omemo *o, uint32_t version,
    const char *jid, uint32_t **ids, size_t *n, bool with_session,
    bool need_verified, const uint32_t *named, size_t nnamed);

/* keys.c */
int omemo_identity_load_or_create(struct mw_omemo *o, const char *own_jid);
/* Deletes the used prekeys whose grace period ended by now, then makes
 * MW_OMEMO_PREKEYS unused ones (*changed when one was made). */
int omemo_prekeys_refill(struct mw_omemo *o, int64_t now, bool *changed);
/* A used prekey may be deleted from `at` (wall seconds): the upkeep is due
 * then at the latest (a rolled-back use only makes it run early). */
void omemo_prekey_expiry_note(struct mw_omemo *o, int64_t at);
int omemo_prekey_replace(struct mw_omemo *o);
int omemo_spk_rotate(struct mw_omemo *o, int64_t now, bool force, bool *changed);
int omemo_own_identity_pub(struct mw_omemo *o, uint8_t pub[33]);
int omemo_fp_to_key(const char *fp, uint8_t key[33]);
/* fp read as an Ed25519 key, as 0x05 || Curve25519 */
int omemo_fp_ed_reading(const char fp[MW_OMEMO_FP_HEXLEN + 1], uint8_t key[33]);

/* elem.c */
int omemo_map_sg(int sgerr);
int omemo_parse_devid(const char *s, uint32_t *out);
xmpp_stanza_t *omemo_new_elem(xmpp_ctx_t *x, const char *name, const char *ns);
xmpp_stanza_t *omemo_text_elem(xmpp_ctx_t *x, const char *name,
    const char *ns, const char *text);
/* parent takes child (released on failure too) */
int omemo_adopt(xmpp_stanza_t *parent, xmpp_stanza_t *child);

/* message2.c: OMEMO 2 halves of mw_omemo_decrypt / mw_omemo_peek */
int omemo2_decrypt(struct mw_omemo *o, xmpp_stanza_t *stanza,
    struct mw_omemo_msg *m);
int omemo2_peek(struct mw_omemo *o, xmpp_stanza_t *stanza,
    struct mw_omemo_msg *m);

/* bundle.c */
int omemo_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n);
int omemo_store_devicelist(struct mw_omemo *o, const char *jid,
    const uint32_t *ids, size_t n);
/* ... into the flag of one version (OMEMO_V2: active4) */
int omemo_store_devicelist_v(struct mw_omemo *o, uint32_t version,
    const char *jid, const uint32_t *ids, size_t n);
int omemo_devicelist_element(struct mw_omemo *o, xmpp_ctx_t *x,
    const uint32_t *ids, size_t n, xmpp_stanza_t **out);

/* bundle.c, shared with bundle2.c: <name>b64</name> (attr=id when attr);
 * a numeric attribute; the first element named want in s or below it
 * (first children, an RSM <set> skipped, 6 levels); the <bundle xmlns=ns>
 * of a bundle answer after the checks both versions make; one prekey of
 * its <prekeys> at random; the session of a version from decoded keys;
 * device lists of either shape */
int omemo_add_b64_elem(xmpp_ctx_t *x, xmpp_stanza_t *parent, const char *name,
    const char *attr, uint32_t id, const uint8_t *p, size_t n);
int omemo_attr_id(xmpp_stanza_t *e, const char *name, uint32_t *v);
xmpp_stanza_t *omemo_find_named(xmpp_stanza_t *s, const char *want);
int omemo_bundle_find(struct mw_omemo *o, const char *jid, uint32_t dev,
    xmpp_stanza_t *el, const char *ns, xmpp_stanza_t **b);
int omemo_bundle_pick(xmpp_stanza_t *b, const char *name, const char *idattr,
    xmpp_stanza_t **chosen, uint32_t *id);
int omemo_bundle_session(struct mw_omemo *o, uint32_t version, const char *jid,
    uint32_t dev, uint32_t pk_id, ec_public_key *pk, uint32_t spk_id,
    ec_public_key *spk, const uint8_t *sig, size_t siglen, ec_public_key *ik);
int omemo_parse_devicelist_v(xmpp_stanza_t *el, const char *name,
    const char *ns, uint32_t **ids, size_t *n);
int omemo_devicelist_element_v(struct mw_omemo *o, xmpp_ctx_t *x,
    const char *name, const char *ns, const uint32_t *ids, size_t n,
    xmpp_stanza_t **out);

/* bundle2.c: own identity key in its OMEMO 2 form (Ed25519, sign bit 0);
 * the OMEMO 2 device list parsed (ids malloc'ed) and built */
int omemo2_own_ik(struct mw_omemo *o, uint8_t ed[32]);
int omemo2_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n);
int omemo2_devicelist_element(struct mw_omemo *o, xmpp_ctx_t *x,
    const uint32_t *ids, size_t n, xmpp_stanza_t **out);

/* pep.c: doors for pep2.c and send.c (publish outside the start-up
 * chain; fetch a node's items -- the last one, or the one named item --
 * from to (NULL: the own account); cb gets the reply or NULL, the error
 * and arg, which the IQ owns: malloc'ed or NULL, freed after cb or when
 * the transport goes away without an answer) */
typedef void (*omemo_pep_cb)(struct mw_omemo *o, xmpp_stanza_t *reply,
    int err, void *arg);
int omemo_pep_publish(struct mw_omemo *o, const char *node,
    xmpp_stanza_t *payload);
int omemo_pep_fetch(struct mw_omemo *o, const char *to, const char *node,
    const char *item, omemo_pep_cb cb, void *arg);
/* A peer's (or the own) device list read outside the start-up chain:
 * stored; the own list without this device is published again. */
int omemo_pep_take_list(struct mw_omemo *o, const char *jid,
    const uint32_t *ids, size_t n);

/* send.c: mw_omemo_send / mw_omemo_refresh; fails every waiting one
 * (MW_OMEMO_E_OFFLINE) when the transport goes away */
void omemo_send_fail_all(struct mw_omemo *o);

/* pep2.c: the OMEMO 2 publication beside the legacy one */
int omemo2_pep_start(struct mw_omemo *o);
int omemo2_pep_publish_bundle(struct mw_omemo *o);
/* An OMEMO 2 device-list push (from: the stanza's, NULL for the own
 * account): stored; the own list without this device is republished.
 * 1: consumed. */
int omemo2_pep_event(struct mw_omemo *o, const char *from,
    xmpp_stanza_t *items);

/* upkeep2.c: what a decrypt leaves owed (a key exchange to complete, a
 * heartbeat from message OMEMO2_STALE of a sending chain on, a repair
 * after a ratchet failure err of a VERIFIED device), paid by
 * omemo2_upkeep_tick() outside transactions; the count of devices owed */
#define OMEMO2_STALE	53
void omemo2_upkeep_received(struct mw_omemo *o, const char *jid, uint32_t dev,
    bool kex, uint32_t counter);
void omemo2_upkeep_broken(struct mw_omemo *o, const char *jid, uint32_t dev,
    int err);
/* a message to jid/dev was committed: what was owed to it is paid */
void omemo2_upkeep_sent(struct mw_omemo *o, const char *jid, uint32_t dev);
void omemo2_upkeep_tick(struct mw_omemo *o, int64_t now);
size_t omemo2_upkeep_owed(const struct mw_omemo *o);
void omemo2_upkeep_free(struct mw_omemo *o);

/* iq.c: whether a pubsub answer's (first) item is the one with id dev */
bool omemo_pubsub_item_is(xmpp_stanza_t *reply, uint32_t dev);

/* pep.c */
void omemo_net_free(struct mw_omemo *o);
/* A line to the log sink (mw_omemo_set_log): event, then printf fields. */
void omemo_log(struct mw_omemo *o, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* X25519 calls libomemo-c made through curve.c (tests: the interposition works). */
unsigned long omemo_curve_calls(void);
/* edconv.c: this thread's cache hits and misses of libomemo-c's Ed25519
 * to Curve25519 conversion (tests and the bench: the interposition works). */
void omemo_edconv_counts(unsigned long *hits, unsigned long *misses);
/* The bundle changed (prekey used, rotation): republish when online. */
int omemo_pep_bundle_changed(struct mw_omemo *o);

#define OMEMO_BARE_MAX 3071	/* RFC 7622 limits */

static inline bool
omemo_jid_ok(const char *jid)
{
	size_t n;

	if (jid == NULL || (n = strlen(jid)) == 0 || n > OMEMO_BARE_MAX)
		return false;
	return strchr(jid, '/') == NULL;
}

/* elem.c, for both message builders: a stanza's serialized size (from
 * above, never below it); the EME, store hint and fallback body (store
 * hint only without payload) */
int omemo_stanza_size(xmpp_stanza_t *s, size_t *n);
int omemo_add_hints(xmpp_ctx_t *x, xmpp_stanza_t *msg, const char *ns,
    bool payload);

/* message.c, shared with message2.c: the strict base64 of an element's
 * text (MW_OMEMO_E_MALFORMED without); whether x is in v; the sender's
 * pinned key and trust into m; m's sender fields, refusing this very
 * device (MW_OMEMO_E_OWN_DEVICE) */
int omemo_decode_b64_text(xmpp_stanza_t *e, uint8_t **out, size_t *n,
    size_t max);
bool omemo_id_listed(const uint32_t *v, size_t n, uint32_t x);
void omemo_sender_info(struct mw_omemo *o, struct mw_omemo_msg *m);
int omemo_take_sender(struct mw_omemo *o, struct mw_omemo_msg *m,
    const char *from, uint32_t sid, bool prekey);

/* message.c: refuses a device whose pinned key is revoked (both versions). */
int omemo_refuse_revoked(struct mw_omemo *o, const char *from, uint32_t sid,
    char fp[MW_OMEMO_FP_HEXLEN + 1]);

#endif
