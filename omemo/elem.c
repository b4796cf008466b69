/*
 * elem.c: small helpers every stanza file of omemo/ shares: libomemo-c's
 * error codes mapped to ours, strict device ids, and building XML elements
 * with libstrophe (split out of message.c when OMEMO 2 joined it), and the
 * two things both message builders do to a finished <message>: measure it
 * and add the hints around the payload.
 *
 * Invariant: omemo_adopt() always leaves the child owned by someone: the
 * parent on success, released on failure, so callers never free it twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omemo/omemo_int.h"

#define NS_EME		"urn:xmpp:eme:0"
#define NS_HINTS	"urn:xmpp:hints"
#define FALLBACK_BODY	"I sent you an OMEMO encrypted message but your client " \
			"doesn't seem to support that."

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

/* Text as serialized, at most: every character XML may escape counted as
 * its longest escape (&quot; / &apos;: 6 bytes). */
static size_t
escaped_len_max(const char *t)
{
	size_t n = 0, k;

	for (;;) {
		k = strcspn(t, "&<>\"'");
		n += k;
		t += k;
		if (*t == '\0')
			return n;
		n += 6;
		t++;
	}
}

#define STANZA_MAX_DEPTH	64	/* OMEMO stanzas nest 6 deep */

/* Adds the serialized size of s and its subtree to *n, stopping once it
 * passes cap.  Deeper than STANZA_MAX_DEPTH is MW_OMEMO_E_MALFORMED (the
 * recursion stays bounded whatever the parser built). */
static int
stanza_size_add(xmpp_stanza_t *s, size_t cap, unsigned depth, size_t *n)
{
	const char *name, *local[2 * 8], **attrs = local;
	int na, rc = 0;

	if (*n > cap)
		return 0;
	if (depth > STANZA_MAX_DEPTH)
		return MW_OMEMO_E_MALFORMED;
	if (xmpp_stanza_is_text(s)) {
		const char *t = xmpp_stanza_get_text_ptr(s);

		*n += t != NULL ? escaped_len_max(t) : 0;
		return 0;
	}
	if ((name = xmpp_stanza_get_name(s)) == NULL)
		return 0;
	/* <name attrs> children </name>, or <name attrs/> */
	*n += 2 * strlen(name) + 5;
	if ((na = xmpp_stanza_get_attribute_count(s)) < 0)
		return MW_OMEMO_E_MALFORMED;
	if (na > 8 && (attrs = calloc(2 * (size_t)na, sizeof(*attrs))) == NULL)
		return MW_OMEMO_E_NOMEM;
	na = xmpp_stanza_get_attributes(s, attrs, 2 * na);
	for (int i = 0; i + 1 < na; i += 2)
		*n += strlen(attrs[i]) + escaped_len_max(attrs[i + 1]) + 4;
	if (attrs != local)
		free(attrs);
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(s); c != NULL &&
	    rc == 0 && *n <= cap; c = xmpp_stanza_get_next(c))
		rc = stanza_size_add(c, cap, depth + 1, n);
	return rc;
}

/*
 * The stanza's serialized size, from above: names, attributes and text
 * counted as written, each character XML may escape as its longest escape.
 * Exact for what moonwire builds (base64 and fixed text); never below the
 * real size, so a size check on it refuses everything over the limit.
 * Stops counting past MW_OMEMO_MAX_STANZA; a tree nested deeper than
 * STANZA_MAX_DEPTH is MW_OMEMO_E_MALFORMED.  (Serializing the stanza to
 * measure it cost ~120,000 instructions per message.)
 */
int
omemo_stanza_size(xmpp_stanza_t *s, size_t *n)
{
	*n = 0;
	return stanza_size_add(s, MW_OMEMO_MAX_STANZA, 0, n);
}

/* <encryption xmlns=EME name=OMEMO namespace=ns/>, <store/> and the
 * fallback <body> of a message with a payload; only <store/> without. */
int
omemo_add_hints(xmpp_ctx_t *x, xmpp_stanza_t *msg, const char *ns,
    bool payload)
{
	xmpp_stanza_t *e;
	int rc;

	if (payload) {
		if ((e = omemo_new_elem(x, "encryption", NS_EME)) == NULL)
			return MW_OMEMO_E_NOMEM;
		if (xmpp_stanza_set_attribute(e, "name", "OMEMO") != XMPP_EOK ||
		    xmpp_stanza_set_attribute(e, "namespace", ns) != XMPP_EOK) {
			xmpp_stanza_release(e);
			return MW_OMEMO_E_NOMEM;
		}
		if ((rc = omemo_adopt(msg, e)) != 0)
			return rc;
	}
	if ((rc = omemo_adopt(msg, omemo_new_elem(x, "store", NS_HINTS))) != 0)
		return rc;
	return payload ? omemo_adopt(msg, omemo_text_elem(x, "body", NULL,
	    FALLBACK_BODY)) : 0;
}
