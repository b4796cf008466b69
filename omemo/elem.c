/*
 * elem.c: small helpers every stanza file of omemo/ shares: libomemo-c's
 * error codes mapped to ours, strict device ids, and building XML elements
 * with libstrophe (split out of message.c when OMEMO 2 joined it).
 *
 * Invariant: omemo_adopt() always leaves the child owned by someone: the
 * parent on success, released on failure, so callers never free it twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

int
omemo_map_sg(int e)
{
	switch (e) {
	case SG_SUCCESS: return MW_OMEMO_OK;
	case SG_ERR_NOMEM: return MW_OMEMO_E_NOMEM;
	case SG_ERR_DUPLICATE_MESSAGE: return MW_OMEMO_E_DUPLICATE;
	case SG_ERR_INVALID_KEY_ID: return MW_OMEMO_E_PREKEY;
	case SG_ERR_NO_SESSION: return MW_OMEMO_E_NO_SESSION;
	case SG_ERR_UNTRUSTED_IDENTITY: return MW_OMEMO_E_UNTRUSTED;
	case SG_ERR_INVALID_KEY:
	case SG_ERR_INVALID_MAC:
	case SG_ERR_INVALID_MESSAGE:
	case SG_ERR_INVALID_VERSION:
	case SG_ERR_LEGACY_MESSAGE:
	case SG_ERR_INVALID_PROTO_BUF:
	case SG_ERR_STALE_KEY_EXCHANGE:
		return MW_OMEMO_E_BAD_MESSAGE;
	}
	if (e == OMEMO_SG_ELIMIT)
		return MW_OMEMO_E_LIMIT;	/* store.c: per-JID caps */
	if (e < SG_ERR_MINIMUM)
		return MW_OMEMO_E_DB;	/* our store callbacks */
	return MW_OMEMO_E_CRYPTO;
}

/* Strict decimal device id: 1..2^31-1, no sign, no spaces. */
int
omemo_parse_devid(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 10)
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > 0x7fffffffUL)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* ---- building ---- */

static xmpp_stanza_t *
new_elem(xmpp_ctx_t *x, const char *name, const char *ns)
{
	xmpp_stanza_t *s = xmpp_stanza_new(x);

	if (s == NULL)
		return NULL;
	if (xmpp_stanza_set_name(s, name) != XMPP_EOK ||
	    (ns != NULL && xmpp_stanza_set_ns(s, ns) != XMPP_EOK)) {
		xmpp_stanza_release(s);
		return NULL;
	}
	return s;
}

/* Adds child to parent, parent takes the only reference. */
static int
adopt(xmpp_stanza_t *parent, xmpp_stanza_t *child)
{
	if (child == NULL)
		return MW_OMEMO_E_NOMEM;
	if (xmpp_stanza_add_child_ex(parent, child, 0) != XMPP_EOK) {
		xmpp_stanza_release(child);
		return MW_OMEMO_E_NOMEM;
	}
	return 0;
}

/* <name>text</name> */
static xmpp_stanza_t *
text_elem(xmpp_ctx_t *x, const char *name, const char *ns, const char *text)
{
	xmpp_stanza_t *e, *t;

	if (text == NULL || (e = new_elem(x, name, ns)) == NULL)
		return NULL;
	if ((t = xmpp_stanza_new(x)) == NULL ||
	    xmpp_stanza_set_text(t, text) != XMPP_EOK ||
	    xmpp_stanza_add_child_ex(e, t, 0) != XMPP_EOK) {
		if (t != NULL)
			xmpp_stanza_release(t);
		xmpp_stanza_release(e);
		return NULL;
	}
	return e;
}

xmpp_stanza_t *
omemo_text_elem(xmpp_ctx_t *x, const char *name, const char *ns,
    const char *text)
{
	return text_elem(x, name, ns, text);
}

xmpp_stanza_t *
omemo_new_elem(xmpp_ctx_t *x, const char *name, const char *ns)
{
	return new_elem(x, name, ns);
}

int
omemo_adopt(xmpp_stanza_t *parent, xmpp_stanza_t *child)
{
	return adopt(parent, child);
}

