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

#define OMEMO_STMT_CACHE 48	/* prepared statements kept (store.c) */
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
	signal_protocol_store_context *store;
	bool txn;			/* our transaction is open */
	bool pending_decrypt;		/* ... and belongs to a decrypt */
	bool bundle_dirty;		/* a prekey was used: republish */
	bool require_verified;		/* decrypt only from VERIFIED sender keys */
	/* republish debounce: at most one bundle publish per
	 * MW_OMEMO_REPUBLISH_MIN_SECS; a change inside that window sets
	 * bundle_publish_pending and mw_omemo_tick() publishes once later */
	int64_t last_bundle_publish_ms;	/* monotonic; 0: never */
	int64_t republish_ms;		/* the window; tests may shorten it */
	bool bundle_publish_pending;

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
	bool verify_failed;
};

/* A store callback refusing a write over a per-JID cap (store.c); outside
 * libsignal's error range, mapped to MW_OMEMO_E_LIMIT by omemo_map_sg. */
#define OMEMO_SG_ELIMIT (SG_ERR_MINIMUM - 2)

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
int omemo_has_session(struct mw_omemo *o, const char *jid, uint32_t dev);
/* Device ids of jid that are active (in the last device list) or named,
 * whose pinned key is VERIFIED (need_verified) or at least not REVOKED. */
int omemo_trusted_devices(struct mw_omemo *o, const char *jid,
    uint32_t **ids, size_t *n, bool with_session, bool need_verified,
    const uint32_t *named, size_t nnamed);

/* keys.c */
int omemo_identity_load_or_create(struct mw_omemo *o, const char *own_jid);
int omemo_prekeys_refill(struct mw_omemo *o, bool *changed);
int omemo_prekey_replace(struct mw_omemo *o);
int omemo_spk_rotate(struct mw_omemo *o, int64_t now, bool force, bool *changed);
int omemo_own_identity_pub(struct mw_omemo *o, uint8_t pub[33]);
int omemo_fp_to_key(const char *fp, uint8_t key[33]);

/* message.c */
int omemo_map_sg(int sgerr);
int omemo_parse_devid(const char *s, uint32_t *out);
xmpp_stanza_t *omemo_new_elem(xmpp_ctx_t *x, const char *name, const char *ns);
xmpp_stanza_t *omemo_text_elem(xmpp_ctx_t *x, const char *name,
    const char *ns, const char *text);
/* parent takes child (released on failure too) */
int omemo_adopt(xmpp_stanza_t *parent, xmpp_stanza_t *child);

/* bundle.c */
int omemo_parse_devicelist(xmpp_stanza_t *el, uint32_t **ids, size_t *n);
int omemo_store_devicelist(struct mw_omemo *o, const char *jid,
    const uint32_t *ids, size_t n);
int omemo_devicelist_element(struct mw_omemo *o, xmpp_ctx_t *x,
    const uint32_t *ids, size_t n, xmpp_stanza_t **out);

/* pep.c */
void omemo_net_free(struct mw_omemo *o);
/* X25519 calls libomemo-c made through curve.c (tests: the interposition works). */
unsigned long omemo_curve_calls(void);
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

#endif
