/*
 * pep2.c: the OMEMO 2 side of the PEP publication (XEP-0384 v0.8 §5.3),
 * beside the legacy one of pep.c, which does the IQ work: this device's
 * bundle as item <device id> of urn:xmpp:omemo:2:bundles (max_items
 * "max"), then the own device list of urn:xmpp:omemo:2:devices fetched,
 * this device added when missing, and published back as item 'current'.
 * Both nodes open access, with pep.c's publish-options fallbacks
 * (node reconfiguration on precondition-not-met; access_model only when a
 * server refuses the other options).  It runs with every start of the
 * legacy publication chain and every republished bundle; a failure is
 * logged (omemo-publish-failed ... retry=next-publication) and never stops
 * or restarts the legacy chain: OMEMO 2 is tried again with its next start.
 *
 * Device-list pushes of urn:xmpp:omemo:2:devices are stored (the
 * devices' active4 flag), and an own list without this device is published
 * again with it.
 *
 * Invariant: the own OMEMO 2 list is replaced only after it was read back
 * (or pushed), so other devices of the account on it are kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"

static bool
item_not_found(xmpp_stanza_t *reply)
{
	xmpp_stanza_t *e = reply != NULL ?
	    xmpp_stanza_get_child_by_name(reply, "error") : NULL;

	return e != NULL && xmpp_stanza_get_child_by_name_and_ns(e,
	    "item-not-found", NS_STANZAS) != NULL;
}

int
omemo2_pep_publish_bundle(struct mw_omemo *o)
{
	xmpp_stanza_t *b = NULL;
	int rc;

	if (o->send_fn == NULL)
		return MW_OMEMO_E_OFFLINE;
	if ((rc = mw_omemo2_bundle_element(o, o->xctx, &b)) != 0)
		return rc;
	rc = omemo_pep_publish(o, MW_OMEMO2_NODE_BUNDLES, b);
	xmpp_stanza_release(b);
	return rc;
}

/* Stores jid's list; for the own list, publishes it back with this
 * device when it is missing. */
static void
take_list2(struct mw_omemo *o, const char *jid, const uint32_t *ids, size_t n)
{
	xmpp_stanza_t *l = NULL;
	bool present = false;
	char fields[200];
	int rc;

	if (!o->txn)	/* else the next push or publication start stores it */
		(void)omemo_store_devicelist_v(o, OMEMO_V2, jid, ids, n);
	if (strcmp(jid, o->jid) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		present = present || ids[i] == o->device_id;
	if (present)
		return;
	if ((rc = omemo2_devicelist_element(o, o->xctx, ids, n, &l)) == 0) {
		rc = omemo_pep_publish(o, MW_OMEMO2_NODE_DEVICES, l);
		xmpp_stanza_release(l);
	}
	if (rc != 0) {
		(void)snprintf(fields, sizeof(fields), "node=%s op=publish "
		    "condition=local-error text=\"%s\" retry=next-publication",
		    MW_OMEMO2_NODE_DEVICES, mw_omemo_strerror(rc));
		omemo_log(o, "omemo-publish-failed", "%s", fields);
	}
}

int
omemo2_pep_event(struct mw_omemo *o, const char *from, xmpp_stanza_t *items)
{
	uint32_t *ids = NULL;
	size_t n = 0;
	char *bare;

	bare = xmpp_jid_bare(o->xctx, from != NULL ? from : o->jid);
	if (bare == NULL)
		return 1;
	if (omemo_jid_ok(bare) && omemo2_parse_devicelist(items, &ids, &n) == 0)
		take_list2(o, bare, ids, n);
	free(ids);
	xmpp_free(o->xctx, bare);
	return 1;
}

static void
own_list_cb(struct mw_omemo *o, xmpp_stanza_t *reply, int err, void *arg)
{
	uint32_t *ids = NULL;
	size_t n = 0;
	char fields[160];

	(void)arg;
	if (err != 0 && !(err == MW_OMEMO_E_IQ && item_not_found(reply))) {
		/* do not overwrite a list that may exist; the next start of
		 * the publication tries again */
		(void)snprintf(fields, sizeof(fields), "node=%s op=fetch "
		    "condition=%s text=\"%s\" retry=next-publication",
		    MW_OMEMO2_NODE_DEVICES, err == MW_OMEMO_E_TIMEOUT ? "timeout" :
		    "error", mw_omemo_strerror(err));
		omemo_log(o, "omemo-publish-failed", "%s", fields);
		return;
	}
	if (err == 0 && omemo2_parse_devicelist(reply, &ids, &n) != 0)
		n = 0;	/* unreadable: replaced by ours */
	take_list2(o, o->jid, ids, n);
	free(ids);
}

/* Bundle first, then the list that points at it (the answers arrive in
 * the order the server handles the requests). */
int
omemo2_pep_start(struct mw_omemo *o)
{
	int rc;

	if ((rc = omemo2_pep_publish_bundle(o)) != 0)
		return rc;
	return omemo_pep_fetch(o, NULL, MW_OMEMO2_NODE_DEVICES, NULL,
	    own_list_cb, NULL);
}
