/*
 * mw_omemo.h: legacy OMEMO (eu.siacs.conversations.axolotl) for moonwire.
 *
 * The one public header of the omemo/ component.  It wraps libomemo-c
 * (Dino's maintained fork of libsignal-protocol-c, same signal_* API; with
 * an OpenSSL 3 crypto provider) and keeps every
 * piece of state in the identity's SQLite database: identity key, device id,
 * prekeys, signed prekeys, sessions, remote identities with their trust
 * state, and cached device lists.  The agent and the operator CLI both use it.
 *
 * Ownership and threading: one struct mw_omemo per identity database, used
 * from one thread (the libstrophe event loop).  The caller opens the sqlite3
 * handle with mw_omemo_db_open() (WAL, synchronous=NORMAL) and keeps it open
 * for the life of the context; this layer only
 * creates and migrates its own omemo_* tables and the shared mw_schema table.
 *
 * Transactions (the crash-safety invariant):
 *   - Every function that changes state runs in one SQLite transaction and
 *     either commits all of it or none of it.  It requires the handle to be
 *     in autocommit mode (no caller transaction open) and fails with
 *     MW_OMEMO_E_TXN otherwise.
 *   - mw_omemo_decrypt() is the one exception: on success it returns the
 *     plaintext with its transaction STILL OPEN.  The advanced ratchet, the
 *     consumed prekey and its replacement are written but not committed.  The
 *     caller adds its own rows (journal) on the same sqlite3 handle and then
 *     calls mw_omemo_commit(); or mw_omemo_rollback(), after which the
 *     database, and therefore the ratchet, is exactly as before the call.  A
 *     crash before the commit is a rollback.  Until one of the two is called
 *     every other mw_omemo_* call that touches the store fails with
 *     MW_OMEMO_E_TXN; the caller must finish before returning to its event
 *     loop.
 *   - Every decrypt failure rolls back before returning: bad input never
 *     changes the store.
 *
 * Trust: a remote identity key (per bare JID) is UNDECIDED when first seen,
 * VERIFIED after mw_omemo_trust(), REVOKED after mw_omemo_distrust().  A
 * device is pinned to the first identity key it showed; a different key on a
 * pinned device is refused (MW_OMEMO_E_UNTRUSTED) until that new key is
 * verified.  REVOKED keys are refused for decryption and encryption.
 * Messages from UNDECIDED keys are decrypted and reported with their trust so
 * the caller's policy decides; encryption goes only to VERIFIED keys.
 */
#ifndef MW_OMEMO_H
#define MW_OMEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>
#include <strophe.h>

#define MW_OMEMO_NS		"eu.siacs.conversations.axolotl"
#define MW_OMEMO_NODE_DEVICELIST "eu.siacs.conversations.axolotl.devicelist"
#define MW_OMEMO_NODE_BUNDLES	"eu.siacs.conversations.axolotl.bundles:"
/* Advertise this feature in disco/caps to receive device-list pushes. */
#define MW_OMEMO_DEVICELIST_NOTIFY MW_OMEMO_NODE_DEVICELIST "+notify"

/* OMEMO 2 (XEP-0384 v0.8+): message namespace and PEP nodes */
#define MW_OMEMO2_NS		"urn:xmpp:omemo:2"
#define MW_OMEMO2_NODE_DEVICES	"urn:xmpp:omemo:2:devices"
#define MW_OMEMO2_NODE_BUNDLES	"urn:xmpp:omemo:2:bundles"
#define MW_OMEMO_PREKEYS	100	/* prekeys kept and published */
/* A used prekey still opens a session this long (seconds) after its first
 * use, but is no longer published: two senders that fetched the same
 * bundle at the same time (two operators, or a legacy and an OMEMO 2
 * client of one user) both get through.  Then it is deleted. */
#define MW_OMEMO_PREKEY_GRACE_SECS 300
#define MW_OMEMO_MAX_STANZA	(256u * 1024)	/* largest <message> we build or parse */
#define MW_OMEMO_MAX_PLAINTEXT	(128u * 1024)	/* fits in MW_OMEMO_MAX_STANZA */
#define MW_OMEMO_FP_HEXLEN	64	/* fingerprint: 64 lowercase hex digits */
#define MW_OMEMO_SPK_ROTATE_SECS (7 * 24 * 3600)  /* signed prekey rotation */
#define MW_OMEMO_SPK_KEEP_SECS	(30 * 24 * 3600)  /* old signed prekeys kept */
#define MW_OMEMO_IQ_TIMEOUT_MS	30000
/* Bounds on what one remote JID can make this layer store (device rows,
 * and identity keys with a trust row), whatever it sends: pinning a key
 * on a new device or recording a new key beyond them fails with
 * MW_OMEMO_E_LIMIT; a device list is stored up to this many ids. */
#define MW_OMEMO_MAX_DEVICES_PER_JID	32
#define MW_OMEMO_MAX_KEYS_PER_JID	32
/* A used prekey makes the bundle change; republishing is coalesced to at
 * most one publish caused by changes per this many seconds (the first
 * change after a quiet window at once, later ones together when it ends;
 * the publish of mw_omemo_start() comes on top). */
#define MW_OMEMO_REPUBLISH_MIN_SECS	30

/* Every failure is one of these; mw_omemo_strerror() names it. */
enum mw_omemo_err {
	MW_OMEMO_OK = 0,
	MW_OMEMO_DROPPED = 1,		/* decrypt: key-transport message, session advanced and committed, nothing to deliver */
	MW_OMEMO_E_NOMEM = -1,
	MW_OMEMO_E_INVAL = -2,		/* bad argument from the caller */
	MW_OMEMO_E_DB = -3,		/* SQLite error */
	MW_OMEMO_E_CRYPTO = -4,		/* internal OpenSSL/libsignal failure */
	MW_OMEMO_E_TXN = -5,		/* transaction misuse (decrypt pending, caller txn open, nothing to commit) */
	MW_OMEMO_E_NO_IDENTITY = -6,	/* database has no OMEMO identity and no JID was given to create one */
	MW_OMEMO_E_WRONG_JID = -7,	/* database belongs to another JID */
	MW_OMEMO_E_MALFORMED = -10,	/* malformed <encrypted> element */
	MW_OMEMO_E_BASE64 = -11,	/* bad base64 */
	MW_OMEMO_E_NOT_FOR_US = -12,	/* no <key> for our device */
	MW_OMEMO_E_KEY_TRUNCATED = -13,	/* key material shorter than key||tag */
	MW_OMEMO_E_BAD_TAG = -14,	/* AES-GCM authentication failed */
	MW_OMEMO_E_PREKEY = -15,	/* unknown or already used prekey id */
	MW_OMEMO_E_DUPLICATE = -16,	/* replayed / already decrypted message */
	MW_OMEMO_E_BAD_MESSAGE = -17,	/* Signal message invalid (bad MAC, bad protobuf, bad version) */
	MW_OMEMO_E_NO_SESSION = -18,	/* SignalMessage without a session */
	MW_OMEMO_E_UNTRUSTED = -19,	/* identity changed on a known device, or revoked */
	MW_OMEMO_E_BUNDLE_SIG = -20,	/* bundle signed prekey signature invalid */
	MW_OMEMO_E_BUNDLE = -21,	/* malformed bundle */
	MW_OMEMO_E_DEVICELIST = -22,	/* malformed device list */
	MW_OMEMO_E_OVERSIZE = -23,	/* stanza or plaintext over the limits */
	MW_OMEMO_E_NO_DEVICES = -24,	/* no trusted device with a session to encrypt to */
	MW_OMEMO_E_OWN_DEVICE = -25,	/* message from this very device */
	MW_OMEMO_E_IQ = -26,		/* IQ error reply from the server */
	MW_OMEMO_E_TIMEOUT = -27,	/* IQ not answered in time */
	MW_OMEMO_E_FINGERPRINT = -28,	/* malformed fingerprint text */
	MW_OMEMO_E_NOT_FOUND = -29,	/* no such device / identity */
	MW_OMEMO_E_NOT_ENCRYPTED = -30,	/* stanza carries no <encrypted> element */
	MW_OMEMO_E_OFFLINE = -31,	/* needs the network but no transport attached */
	MW_OMEMO_E_CONFIG = -32,	/* bad account settings */
	MW_OMEMO_E_CERT_PIN = -33,	/* server certificate does not match cert_pin_sha256 */
	MW_OMEMO_E_CERT_UNTRUSTED = -34, /* server certificate not trusted (no CA, no pin) */
	MW_OMEMO_E_LIMIT = -35,		/* the JID has MW_OMEMO_MAX_DEVICES_PER_JID devices / MW_OMEMO_MAX_KEYS_PER_JID keys */
	MW_OMEMO_E_SCE = -36,		/* OMEMO 2: SCE envelope malformed, rpad missing, from/to not the stanza's */
	MW_OMEMO_E_VERSION = -37,	/* send: the recipient does not offer the OMEMO version forced */
};
const char *mw_omemo_strerror(int err);

enum mw_omemo_trust {
	MW_OMEMO_TRUST_UNDECIDED = 0,
	MW_OMEMO_TRUST_VERIFIED = 1,
	MW_OMEMO_TRUST_REVOKED = 2,
};
const char *mw_omemo_trust_name(enum mw_omemo_trust t);

struct mw_omemo;

/*
 * Opens the identity database the way every caller does (CLI, test client,
 * agent): SQLITE_OPEN_READWRITE (| CREATE with create), busy timeout 5 s,
 * journal_mode=WAL (verified: fails with MW_OMEMO_E_DB if SQLite refuses
 * WAL) and synchronous=NORMAL.  *out is the caller's (sqlite3_close).
 *
 * Durability of WAL + synchronous=NORMAL (spec/cli.md, "Durability"):
 * every commit is atomic, and once COMMIT returns it survives a crash or
 * kill of the process (the WAL frames are in the kernel's page cache).  The
 * WAL is fsync'ed only at checkpoints, so a power loss or kernel crash may
 * lose the transactions committed since the last checkpoint; the database
 * is then consistent but older: a ratchet or prekey state that was already
 * used may come back.  synchronous=FULL would fsync on every commit at
 * about 100 us each (make bench, commit_only).
 */
int mw_omemo_db_open(const char *path, bool create, sqlite3 **out);
/*
 * The identity database's schema versioning, shared by every component
 * that keeps tables in it (the OMEMO store, the agent's journal, the
 * operator's job table): mw_schema(component, version) has one row per
 * component; steps[v] takes it from version v to v + 1.  The missing steps
 * run and the version is set in one transaction, so a crash leaves the
 * old schema or the new one.  A version newer than n (written by a newer
 * moonwire) is refused, never downgraded.  Needs no open transaction.
 * 0, or -1 with nothing changed.
 */
int mw_db_migrate(sqlite3 *db, const char *component, const char *const *steps, int n);

/*
 * Opens the OMEMO state in db, creating/migrating the omemo_* tables.  With
 * own_jid (a bare JID) a missing identity is generated (identity key pair,
 * random non-zero 31-bit device id, signed prekey, 100 prekeys); without it
 * a missing identity is MW_OMEMO_E_NO_IDENTITY.  db stays the caller's.
 */
int mw_omemo_open(struct mw_omemo **out, sqlite3 *db, const char *own_jid);
/* Rolls back a pending decrypt transaction, fails pending sends, frees. */
void mw_omemo_close(struct mw_omemo *o);

uint32_t mw_omemo_device_id(const struct mw_omemo *o);
/* The own bare JID, as folded by mw_omemo_jid_fold(). */
const char *mw_omemo_jid(const struct mw_omemo *o);

/*
 * jid.c: a JID a user wrote, folded in place to the form servers stamp
 * (ASCII letters of the local and domain parts lower-cased; non-ASCII
 * bytes and the resource unchanged); and two JIDs compared that way.
 */
void mw_omemo_jid_fold(char *jid);
bool mw_omemo_jid_equal(const char *a, const char *b);
/* Own fingerprint, 64 lowercase hex + NUL. */
int mw_omemo_own_fingerprint(struct mw_omemo *o, char fp[MW_OMEMO_FP_HEXLEN + 1]);

/* ---- fingerprints ---- */

/*
 * Formats a 33-byte (0x05||key) or 32-byte identity key as 64 lowercase hex
 * digits.  Display form: mw_omemo_fp_group() inserts sep (e.g. '-' like
 * Profanity, ' ' like Conversations) between 8 groups of 8: out needs 72.
 */
int mw_omemo_fp_from_key(const uint8_t *key, size_t len, char fp[MW_OMEMO_FP_HEXLEN + 1]);
void mw_omemo_fp_group(const char fp[MW_OMEMO_FP_HEXLEN + 1], char sep, char out[72]);
/* Accepts hex with any '-', ' ', ':' separators, either case; writes the
 * canonical 64-digit form. */
int mw_omemo_fp_parse(const char *text, char fp[MW_OMEMO_FP_HEXLEN + 1]);
/*
 * The two renderings of one identity key (spec/omemo.md): the canonical
 * fingerprint is the Curve25519 key; OMEMO 2 clients show the Ed25519 form
 * (sign bit 0).  mw_omemo_fp_ed25519 gives the latter from the former.
 * mw_omemo_fp_resolve reads fp (canonical text) either way for jid: the
 * Curve25519 rendering of the key jid is known with (a pinned device or a
 * trust row), *seen true; when neither reading is known, fp itself and
 * *seen false.  mw_omemo_trust/distrust resolve the same way and, for a
 * key not seen yet, record both readings (the other reading names a point
 * nobody holds the private key of).
 */
int mw_omemo_fp_ed25519(const char fp[MW_OMEMO_FP_HEXLEN + 1],
    char ed[MW_OMEMO_FP_HEXLEN + 1]);
int mw_omemo_fp_resolve(struct mw_omemo *o, const char *jid,
    const char fp[MW_OMEMO_FP_HEXLEN + 1], char out[MW_OMEMO_FP_HEXLEN + 1],
    bool *seen);

/* ---- trust and devices ---- */

/* Sets the trust of identity key FP for jid; the key need not have been
 * seen yet (verify first, receive later).  Own-jid keys can be trusted too. */
int mw_omemo_trust(struct mw_omemo *o, const char *jid, const char *fp);
int mw_omemo_distrust(struct mw_omemo *o, const char *jid, const char *fp);

struct mw_omemo_device {
	uint32_t id;
	bool active;			/* in the last device list seen */
	bool has_key;			/* identity key known (pinned) */
	bool has_session;
	bool active2;			/* in the last OMEMO 2 device list seen */
	bool has_session2;		/* a version-4 (OMEMO 2) session */
	char fp[MW_OMEMO_FP_HEXLEN + 1];	/* "" when !has_key */
	enum mw_omemo_trust trust;
};
/* The cached devices of jid (sorted by id); *out is malloc'ed, free() it. */
int mw_omemo_devices(struct mw_omemo *o, const char *jid,
    struct mw_omemo_device **out, size_t *n);
/* Trust of one device's pinned identity (E_NOT_FOUND if no key known). */
int mw_omemo_device_trust(struct mw_omemo *o, const char *jid, uint32_t dev,
    enum mw_omemo_trust *t, char fp[MW_OMEMO_FP_HEXLEN + 1]);

/* ---- decrypt (see the transaction invariant above) ---- */

struct mw_omemo_msg {
	char *from;			/* sender's bare JID */
	uint32_t device;		/* sender's device id */
	enum mw_omemo_trust trust;	/* trust of the sender's identity key */
	char fp[MW_OMEMO_FP_HEXLEN + 1];	/* sender's identity fingerprint */
	bool prekey;			/* arrived as a PreKeySignalMessage
					 * (OMEMO 2: a kex key) */
	bool omemo2;			/* arrived as OMEMO 2 (urn:xmpp:omemo:2);
					 * answer in the same version */
	bool new_session;		/* mw_omemo_peek: decrypting would build a new
					 * session (X3DH, consume a prekey) */
	uint8_t *plaintext;		/* NUL-terminated for convenience */
	size_t len;
};
/*
 * Decrypts a <message> stanza carrying <encrypted xmlns=MW_OMEMO_NS>, or
 * <encrypted xmlns=MW_OMEMO2_NS> (msg->omemo2; the plaintext is the <body>
 * of its SCE envelope, whose from/to must name the stanza's sender and
 * recipient, else MW_OMEMO_E_SCE; an empty message or an envelope without
 * <body> is MW_OMEMO_DROPPED).
 * MW_OMEMO_OK: *msg filled, transaction open: call mw_omemo_commit() or
 *   mw_omemo_rollback().
 * MW_OMEMO_DROPPED: key-transport message; session advanced and committed.
 * < 0: typed error; nothing changed, no transaction open.  msg->from and
 *   device are set once the element was parsed; with MW_OMEMO_E_UNTRUSTED,
 *   msg->fp names the refused key (for the log and `moonwire trust`).
 * *msg is overwritten on entry; call mw_omemo_msg_free() after every call.
 */
int mw_omemo_decrypt(struct mw_omemo *o, xmpp_stanza_t *message,
    struct mw_omemo_msg *msg);
/* Whether a <message> carries an <encrypted> of either version (what
 * mw_omemo_decrypt reads; anything else is not OMEMO). */
bool mw_omemo_is_encrypted(xmpp_stanza_t *message);
/*
 * What a message says about its sender, learnt WITHOUT decrypting and
 * without writing anything: from, device, prekey, and the sender device's
 * identity key -- the one a PreKeySignalMessage carries (deserialized, not
 * processed), else the key pinned for that device -- as fp with its trust
 * for from (UNDECIDED and fp "" when no key is known); new_session when a
 * PreKeySignalMessage's base key matches no session state of that device
 * (decrypting it would run X3DH and consume a prekey).  0, or the parse
 * errors of mw_omemo_decrypt.  No plaintext; call mw_omemo_msg_free().
 * A caller that only acts on verified devices calls this first and drops
 * the message unless trust is VERIFIED: the store never sees it.
 */
int mw_omemo_peek(struct mw_omemo *o, xmpp_stanza_t *message,
    struct mw_omemo_msg *msg);
/* With on, mw_omemo_decrypt() refuses (MW_OMEMO_E_UNTRUSTED, nothing
 * written, before any ratchet work) every message whose sender key, as
 * mw_omemo_peek() finds it, is not VERIFIED -- key-transport messages
 * included.  Off by default (the operator CLI reads results from devices it
 * may not have verified yet). */
void mw_omemo_set_require_verified(struct mw_omemo *o, bool on);
int mw_omemo_commit(struct mw_omemo *o);
int mw_omemo_rollback(struct mw_omemo *o);
bool mw_omemo_txn_pending(const struct mw_omemo *o);
void mw_omemo_msg_free(struct mw_omemo_msg *msg);	/* wipes plaintext */

/* ---- encrypt (no network: existing sessions only) ---- */

/*
 * Builds <message type='chat' to=to_jid> with <encrypted>, EME, store hint
 * and fallback body, encrypted to every VERIFIED device of to_jid with a
 * session and every other VERIFIED own device with a session, limited to the
 * device ids in only[] when nonly > 0 (e.g. the requesting device).  Commits
 * the advanced sending chains.  *out is the caller's (xmpp_stanza_release).
 * xctx is the libstrophe context the stanza is created in.
 */
/* With exactly one device named in only[], that device is answered in the
 * version it last wrote in: OMEMO 2 (mw_omemo2_encrypt) when its last
 * decrypted message was OMEMO 2 and a version-4 session exists. */
int mw_omemo_encrypt(struct mw_omemo *o, xmpp_ctx_t *xctx, const char *to_jid,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    xmpp_stanza_t **out);
/* A key-transport message (no payload) to one device, e.g. to confirm a
 * session; to_jid's device must have a session. */
int mw_omemo_encrypt_key_transport(struct mw_omemo *o, xmpp_ctx_t *xctx,
    const char *to_jid, uint32_t device, xmpp_stanza_t **out);
/* The same over OMEMO 2: to the verified devices of to_jid (and the own
 * account's) that have a version-4 session; pt becomes the <body> of an
 * SCE envelope, so it must be UTF-8 text without control characters but
 * TAB, LF, CR (else MW_OMEMO_E_INVAL). */
int mw_omemo2_encrypt(struct mw_omemo *o, xmpp_ctx_t *xctx, const char *to_jid,
    const uint32_t *only, size_t nonly, const void *pt, size_t len,
    xmpp_stanza_t **out);
/* An empty OMEMO 2 message (no payload) to one device with a session. */
int mw_omemo2_encrypt_empty(struct mw_omemo *o, xmpp_ctx_t *xctx,
    const char *to_jid, uint32_t device, xmpp_stanza_t **out);

/* ---- PEP and the asynchronous network side ---- */

/*
 * Transport: the layer never blocks.  It hands stanzas to send_fn (which does
 * not take ownership: xmpp_send semantics) and learns the answers through
 * mw_omemo_handle_stanza(), which the caller feeds every incoming <iq> and
 * <message> with a pubsub event.  mw_omemo_attach() wires both to a
 * libstrophe connection (handlers added; call after connecting).
 */
typedef void (*mw_omemo_send_fn)(xmpp_stanza_t *stanza, void *arg);
/*
 * Log sink for the network side: event is a word ("omemo-published",
 * "omemo-publish-failed"), fields are key=value pairs (values with spaces
 * quoted; server text sanitised).  Without a sink nothing is printed.
 */
typedef void (*mw_omemo_log_fn)(const char *event, const char *fields,
    void *arg);
void mw_omemo_set_log(struct mw_omemo *o, mw_omemo_log_fn fn, void *arg);
int mw_omemo_set_transport(struct mw_omemo *o, xmpp_ctx_t *xctx,
    mw_omemo_send_fn send_fn, void *arg);
int mw_omemo_attach(struct mw_omemo *o, xmpp_conn_t *conn);
void mw_omemo_detach(struct mw_omemo *o);
/* 1 if the stanza was an answer/event for this layer and is consumed. */
int mw_omemo_handle_stanza(struct mw_omemo *o, xmpp_stanza_t *stanza);
/* Fails IQs unanswered for MW_OMEMO_IQ_TIMEOUT_MS; runs maintenance (signed
 * prekey rotation, prekey refill, republish); sends the empty OMEMO 2
 * messages owed (key-exchange completion, heartbeat, session repair: see
 * omemo/upkeep2.c).  Call from a timer, outside transactions. */
void mw_omemo_tick(struct mw_omemo *o);
void mw_omemo_set_iq_timeout(struct mw_omemo *o, unsigned ms);	/* tests */
/* How long after a received OMEMO 2 key exchange an empty message
 * completes it when nothing else was sent on that session (default
 * 1000 ms; 0: the default). */
void mw_omemo_set_empty_delay(struct mw_omemo *o, unsigned ms);	/* tests */
/* The bundle republish window (default MW_OMEMO_REPUBLISH_MIN_SECS; a
 * change is published 1-5 windows after it); a pending republish is due
 * ms from now. */
void mw_omemo_set_republish_interval(struct mw_omemo *o, unsigned ms);	/* tests */

/*
 * Publishes the bundle, then fetches the own device list and publishes it
 * with this device added when missing, then fetches both back to confirm
 * that the list names this device and the bundle is served.  Publishes
 * carry publish-options access_model=open, persist_items=true, max_items=1;
 * on precondition-not-met the node is reconfigured and the publish retried;
 * on any other error the publish is retried once with access_model=open
 * only (servers such as ejabberd 23.01 refuse options they do not know).
 * Any failure is logged and the chain restarts with backoff from
 * mw_omemo_tick() until confirmed; a device-list push without this device
 * republishes the list and confirms again.
 */
int mw_omemo_start(struct mw_omemo *o);
/* Whether the last confirmation found list and bundle served. */
bool mw_omemo_published(const struct mw_omemo *o);
/* The first retry delay after a failed publication (default 1000 ms;
 * doubles up to 60 s). */
void mw_omemo_set_publish_backoff(struct mw_omemo *o, unsigned ms);	/* tests */
/* Once confirmed, fetch the own device list and bundle back again every
 * interval_ms (+-25 % jitter, so a fleet does not check in step; 0: never,
 * the default): `omemo-recheck device=N result=ok` when both still hold,
 * otherwise `omemo-publish-failed ... op=recheck` and the whole
 * publication starts again with its backoff. */
void mw_omemo_set_recheck(struct mw_omemo *o, unsigned interval_ms);
/* Asks for jid's device list; with fetch_bundles also fetches the bundle
 * of every device with unknown key.  done is called once. */
typedef void (*mw_omemo_done_fn)(struct mw_omemo *o, int err, void *arg);
int mw_omemo_refresh(struct mw_omemo *o, const char *jid, bool fetch_bundles,
    mw_omemo_done_fn done, void *arg);
/*
 * Which OMEMO version mw_omemo_send() speaks; the recipient's list of the
 * version wanted first is fetched, the other one only when the first names
 * no device (omemo/send.c).  AUTO (the default): OMEMO 2 when its
 * urn:xmpp:omemo:2:devices list names a device, else legacy; when no
 * OMEMO 2 device can be encrypted to (its bundles cannot be fetched or
 * used) it falls back to legacy once.  LEGACY and V2 use only that
 * version and fail with MW_OMEMO_E_VERSION when the recipient lists
 * devices of the other version only (with neither list, the fetch's error,
 * as before).
 */
enum mw_omemo_version {
	MW_OMEMO_VERSION_AUTO = 0,
	MW_OMEMO_VERSION_LEGACY = 1,
	MW_OMEMO_VERSION_2 = 2,
};
void mw_omemo_set_send_version(struct mw_omemo *o, enum mw_omemo_version v);
/* "auto", "legacy" or "2": 0; anything else -1. */
int mw_omemo_version_parse(const char *s, enum mw_omemo_version *v);
/*
 * Encrypts pt to to_jid like mw_omemo_encrypt(), first fetching device lists
 * and the bundles of devices without a session (building sessions), then
 * sends.  done(err) is called exactly once, possibly before this returns.
 */
int mw_omemo_send(struct mw_omemo *o, const char *to_jid, const void *pt,
    size_t len, mw_omemo_done_fn done, void *arg);

/* Building blocks, public for tests and tools. */
/* The <bundle xmlns=MW_OMEMO_NS> element of this device. */
int mw_omemo_bundle_element(struct mw_omemo *o, xmpp_ctx_t *xctx,
    xmpp_stanza_t **out);
/* Builds a session with jid/device from a <bundle> element (random prekey);
 * verifies the signed prekey signature; pins the identity key. */
int mw_omemo_process_bundle(struct mw_omemo *o, const char *jid,
    uint32_t device, xmpp_stanza_t *bundle);
/* OMEMO 2: the <bundle xmlns=MW_OMEMO2_NS> of this device (same keys),
 * and a version-4 session with jid/device from such a bundle (strict
 * OMEMO 2 key lengths; same identity pinning as the legacy bundle). */
int mw_omemo2_bundle_element(struct mw_omemo *o, xmpp_ctx_t *xctx,
    xmpp_stanza_t **out);
int mw_omemo2_process_bundle(struct mw_omemo *o, const char *jid,
    uint32_t device, xmpp_stanza_t *bundle);
/* Records a <devices xmlns=MW_OMEMO2_NS> device list for jid. */
int mw_omemo2_process_devicelist(struct mw_omemo *o, const char *jid,
    xmpp_stanza_t *devices);
/* Records a <list xmlns=MW_OMEMO_NS> device list for jid. */
int mw_omemo_process_devicelist(struct mw_omemo *o, const char *jid,
    xmpp_stanza_t *list);
/* Rotates the signed prekey when due and refills prekeys; *changed is set
 * when the bundle must be republished. */
int mw_omemo_maintain(struct mw_omemo *o, int64_t now, bool *changed);
/* A bundle republish still waiting for its time (30-150 s after a used
 * prekey) goes out now: for a process about to disconnect, so that a used
 * prekey is not left listed until its next login.  0 if nothing waited. */
int mw_omemo_publish_pending(struct mw_omemo *o);
/* When mw_omemo_tick runs the upkeep next (wall seconds): an hour after
 * the last, or earlier when a used prekey's MW_OMEMO_PREKEY_GRACE_SECS
 * end, so its private key is deleted then. */
#define MW_OMEMO_MAINTAIN_EVERY	3600
int64_t mw_omemo_maintain_due(const struct mw_omemo *o);

/* ---- account settings ---- */

struct mw_omemo_account {
	char *jid;
	char *password;			/* or read from password_file */
	char *host;			/* optional, NULL: SRV/domain */
	unsigned short port;		/* 0: default */
	char *ca_file;			/* optional */
	char *cert_pin_sha256;		/* optional, 64 hex digits of the DER cert's SHA-256 */
	char *db;			/* identity database path */
	bool allow_plaintext;		/* loopback tests only: TLS off */
};
/*
 * Reads a `key = value` file (# comments): jid, password, password_file,
 * host, port, ca_file, cert_pin_sha256, db, allow_plaintext (yes/no;
 * honoured only when host is 127.0.0.1, ::1 or localhost).
 */
int mw_omemo_account_load(struct mw_omemo_account *a, const char *path);
/*
 * The same, with the first problem as "FILE:LINE: reason" (or "FILE:
 * reason") in err.  Paths (db, password_file, ca_file) are resolved with
 * mw_omemo_account_path(); password_file must be readable with a non-empty
 * first line, ca_file must hold a PEM certificate, cert_pin_sha256 must be
 * 64 hex digits (':' separators allowed).
 */
int mw_omemo_account_load_err(struct mw_omemo_account *a, const char *path,
    char *err, size_t errlen);
/*
 * A path from an account file: "~" and "~/..." start at $HOME (or the
 * user's home in passwd), a relative path is relative to the directory of
 * account_file (not the current directory) and the result is absolute, an
 * absolute one is kept.
 * *out is malloc'ed.
 */
int mw_omemo_account_path(const char *account_file, const char *value,
    char **out);
/*
 * The identity database holds private keys: with create, makes sure db
 * exists as a 0600 file before SQLite opens it (SQLite gives its -wal/-shm/
 * -journal files the database's mode, so they are private too, whatever
 * the umask); in any case removes group/other bits from existing db,
 * db-wal, db-shm, db-journal.  MW_OMEMO_E_DB with "PATH: reason" in why.
 */
int mw_omemo_account_private_db(const char *db, bool create, char *why, size_t wl);
/* 0 when path is readable and holds at least one PEM certificate; else
 * MW_OMEMO_E_CONFIG with "PATH: reason" in why. */
int mw_omemo_account_check_ca_file(const char *path, char *why, size_t wl);
void mw_omemo_account_free(struct mw_omemo_account *a);	/* wipes password */
/* Sets jid, password, flags (always xmpp_conn_set_flags: MANDATORY_TLS
 * unless allow_plaintext, then DISABLE_TLS), CA file and pin check. */
int mw_omemo_account_apply(const struct mw_omemo_account *a, xmpp_conn_t *conn);
/*
 * With a pin: call from the XMPP_CONN_CONNECT handler and disconnect unless
 * it returns 0 (MW_OMEMO_E_CERT_PIN).  The certfail handler only sees
 * certificates that failed CA verification and refuses them before any
 * login unless they match the pin; a certificate that passed CA
 * verification (ca_file or the system store) is checked here, after login
 * but before anything else is sent.
 */
int mw_omemo_account_check_pin(const struct mw_omemo_account *a,
    xmpp_conn_t *conn);
/*
 * Why the last TLS handshake of conn was refused by moonwire:
 * MW_OMEMO_E_CERT_PIN (a pin is set and the certificate differs),
 * MW_OMEMO_E_CERT_UNTRUSTED (no pin, certificate not verified by ca_file
 * or the system store), or 0 (not refused for its certificate).  Call from
 * the disconnect handler to report a typed error.
 */
int mw_omemo_account_tls_error(xmpp_conn_t *conn);
/* Forgets conn's TLS state: call before xmpp_conn_release(conn).  (Applying
 * settings to a new connection of the same context forgets the old one's
 * too: one TLS connection per context.) */
void mw_omemo_account_release(xmpp_conn_t *conn);
/*
 * A logger for xmpp_ctx_new() that notes what libstrophe only logs: a
 * refused SASL login, no usable login mechanism (a server that requires
 * TLS, to a plaintext client), no TLS offered.  With MW_XMPP_DEBUG set it
 * passes everything on to libstrophe's default debug logger.
 */
const xmpp_log_t *mw_omemo_account_logger(void);
/*
 * Why the connection closed, for people: writes a message that says what to
 * do ("server certificate not trusted: set ca_file or cert_pin_sha256",
 * "login refused: wrong password for JID", "connection refused by
 * HOST:PORT", "server requires TLS ...") from the recorded TLS refusal, the
 * logger's observations, the socket error and the stream error.  Returns
 * MW_OMEMO_FAIL_CONFIG when retrying cannot help until the configuration or
 * the server changes, MW_OMEMO_FAIL_NETWORK otherwise.  Call from the
 * disconnect handler (the context must use mw_omemo_account_logger()).
 */
enum { MW_OMEMO_FAIL_NETWORK = 0, MW_OMEMO_FAIL_CONFIG = 1 };
int mw_omemo_account_describe_failure(const struct mw_omemo_account *a,
    xmpp_conn_t *conn, int error, const xmpp_stream_error_t *se, char *buf,
    size_t len);

#endif
