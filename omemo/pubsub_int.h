/*
 * pubsub_int.h: private to omemo/, shared by pep.c (the publication) and
 * iq.c (the IQ plumbing): one pending pubsub IQ and the helpers that build,
 * send and answer them.
 */
#ifndef OMEMO_PUBSUB_INT_H
#define OMEMO_PUBSUB_INT_H

#define NS_PUBSUB	"http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER	NS_PUBSUB "#owner"
#define NS_PUBSUB_EVENT	NS_PUBSUB "#event"
#define NS_PUBSUB_ERRORS NS_PUBSUB "#errors"
#define NS_DATA		"jabber:x:data"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"

/* publish-options / node configuration sent */
enum pub_opts {
	OPTS_FULL,		/* access_model, persist_items, max_items */
	OPTS_ACCESS_ONLY,	/* access_model=open: what every server knows */
};

enum iq_kind {
	IQ_PUBLISH,		/* payload published to node */
	IQ_CONFIGURE,		/* node reconfigured, publish follows */
	IQ_FETCH_LIST,
	IQ_FETCH_BUNDLE,
	IQ_VERIFY,		/* own list or bundle fetched back */
};

struct omemo_iq;
typedef void (*omemo_iq_cb)(struct mw_omemo *o, struct omemo_iq *q,
    xmpp_stanza_t *reply, int err);

struct omemo_iq {
	struct omemo_iq *next;
	char id[48];
	int64_t deadline;
	enum iq_kind kind;
	omemo_iq_cb cb;
	char *jid;			/* asked entity (bare); NULL: own account */
	uint32_t dev;
	char *node;
	xmpp_stanza_t *payload;		/* publish: the item payload (owned) */
	bool configured;		/* node configured already: no more */
	enum pub_opts opts;
	bool then_list;			/* publish bundle at start: list next */
	bool chain;			/* part of publication generation gen */
	unsigned gen;
	omemo_pep_cb ext;		/* omemo_pep_fetch()'s caller */
	void *ext_arg;			/* its argument, owned: freed with q */
};

void omemo_iq_free(struct omemo_iq *q);
void omemo_iq_unlink(struct mw_omemo *o, struct omemo_iq *q);
/* Sends iq (consumed) and records q (freed on failure). */
int omemo_iq_send(struct mw_omemo *o, xmpp_stanza_t *iq, struct omemo_iq *q);
struct omemo_iq *omemo_iq_new(enum iq_kind kind, omemo_iq_cb cb,
    const char *jid, const char *node);
/* <iq type to?><pubsub xmlns=ns/></iq>; *ps is the pubsub child. */
xmpp_stanza_t *omemo_iq_pubsub(struct mw_omemo *o, const char *type,
    const char *to, const char *ns, xmpp_stanza_t **ps);
/* The publish-options / configure form; many: max_items "max". */
xmpp_stanza_t *omemo_data_form(struct mw_omemo *o, const char *form_type,
    enum pub_opts opts, bool many);
bool omemo_has_error_condition(xmpp_stanza_t *reply, const char *name,
    const char *ns);
/* A get of node's items from to (NULL: own account): the last one, or the
 * item named item; q is sent or freed. */
int omemo_fetch_items_id(struct mw_omemo *o, const char *to, const char *node,
    const char *item, struct omemo_iq *q);
int omemo_fetch_items(struct mw_omemo *o, const char *to, const char *node,
    struct omemo_iq *q);
/* An <iq> result/error for a pending IQ: its callback runs; 1 consumed. */
int omemo_iq_handle(struct mw_omemo *o, xmpp_stanza_t *st);
void omemo_iq_expire(struct mw_omemo *o, int64_t now);

#endif
