/*
 * sce.c: the XEP-0420 (Stanza Content Encryption) envelope OMEMO 2
 * encrypts, in the profile XEP-0384 v0.8 §4.4 asks for:
 *
 *   <envelope xmlns='urn:xmpp:sce:1'>
 *     <content><body xmlns='jabber:client'>TEXT</body></content>
 *     <rpad>RANDOM</rpad><from jid='SENDER'/><to jid='RECIPIENT'/>
 *     <time stamp='...'/>
 *   </envelope>
 *
 * Invariants on parsing: the envelope is the root and the only element;
 * exactly one <content>; <rpad> present (and at most one); <from jid> present
 * and equal to the outer stanza's sender's bare JID; <to jid>, when present,
 * equal to the outer stanza's recipient's bare JID (affixes occur at most
 * once each).  Anything else is MW_OMEMO_E_SCE.  The body text is strict
 * UTF-8 both ways (the envelope is XML).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "omemo/omemo_int.h"

#define NS_CLIENT	"jabber:client"
#define RPAD_MAX	32

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF), and no
 * character XML 1.0 forbids: C0 controls but TAB, LF, CR; NUL. */
static bool
xml_text_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		uint32_t cp;
		size_t len;

		if (c < 0x80) {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else
			return false;
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff) ||
		    cp == 0xfffe || cp == 0xffff)) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += len;
	}
	return true;
}

static int
add_jid_affix(xmpp_ctx_t *x, xmpp_stanza_t *env, const char *name,
    const char *jid)
{
	xmpp_stanza_t *e = omemo_new_elem(x, name, NULL);

	if (e == NULL)
		return MW_OMEMO_E_NOMEM;
	if (xmpp_stanza_set_attribute(e, "jid", jid) != XMPP_EOK) {
		xmpp_stanza_release(e);
		return MW_OMEMO_E_NOMEM;
	}
	return omemo_adopt(env, e);
}

int
omemo_sce_build(xmpp_ctx_t *x, const char *from, const char *to,
    const uint8_t *body, size_t n, char **out, size_t *outlen)
{
	xmpp_stanza_t *env = NULL, *content, *b, *t;
	uint8_t r[RPAD_MAX];
	char *pad = NULL, *text = NULL, stamp[32];
	size_t padlen, tl = 0;
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (n > MW_OMEMO_MAX_PLAINTEXT)
		return MW_OMEMO_E_OVERSIZE;
	if (!xml_text_ok(body, n) || memchr(body, '\0', n) != NULL)
		return MW_OMEMO_E_INVAL;
	if ((text = malloc(n + 1)) == NULL)
		return MW_OMEMO_E_NOMEM;
	memcpy(text, body, n);
	text[n] = '\0';
	/* rpad: 1..RPAD_MAX random bytes, base64 (hides the length) */
	if (omemo_random(r, sizeof(r)) != 0) {
		rc = MW_OMEMO_E_CRYPTO;
		goto out;
	}
	padlen = 1 + r[0] % RPAD_MAX;
	rc = MW_OMEMO_E_NOMEM;
	if ((pad = omemo_b64_encode(r, padlen)) == NULL)
		goto out;
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		rc = MW_OMEMO_E_CRYPTO;
		goto out;
	}
	if ((env = omemo_new_elem(x, "envelope", OMEMO_NS_SCE)) == NULL ||
	    (rc = omemo_adopt(env, omemo_new_elem(x, "content", NULL))) != 0)
		goto out;
	content = xmpp_stanza_get_child_by_name(env, "content");
	if ((b = omemo_new_elem(x, "body", NS_CLIENT)) == NULL) {
		rc = MW_OMEMO_E_NOMEM;
		goto out;
	}
	if ((rc = omemo_adopt(content, b)) != 0)
		goto out;
	if (n > 0) {
		if ((t = xmpp_stanza_new(x)) == NULL ||
		    xmpp_stanza_set_text(t, text) != XMPP_EOK) {
			if (t != NULL)
				xmpp_stanza_release(t);
			rc = MW_OMEMO_E_NOMEM;
			goto out;
		}
		if ((rc = omemo_adopt(b, t)) != 0)
			goto out;
	}
	if ((rc = omemo_adopt(env, omemo_text_elem(x, "rpad", NULL, pad))) != 0 ||
	    (rc = add_jid_affix(x, env, "from", from)) != 0 ||
	    (rc = add_jid_affix(x, env, "to", to)) != 0)
		goto out;
	if ((t = omemo_new_elem(x, "time", NULL)) == NULL ||
	    xmpp_stanza_set_attribute(t, "stamp", stamp) != XMPP_EOK) {
		if (t != NULL)
			xmpp_stanza_release(t);
		rc = MW_OMEMO_E_NOMEM;
		goto out;
	}
	if ((rc = omemo_adopt(env, t)) != 0)
		goto out;
	{
		char *buf = NULL;

		if (xmpp_stanza_to_text(env, &buf, &tl) != XMPP_EOK) {
			rc = MW_OMEMO_E_NOMEM;
			goto out;
		}
		*out = strdup(buf);
		OPENSSL_cleanse(buf, tl);
		xmpp_free(x, buf);
		if (*out == NULL) {
			rc = MW_OMEMO_E_NOMEM;
			goto out;
		}
		*outlen = tl;
	}
	rc = 0;
out:
	if (env != NULL)
		xmpp_stanza_release(env);
	if (text != NULL) {
		OPENSSL_cleanse(text, n);
		free(text);
	}
	free(pad);
	return rc;
}

/* The one child named name; 0 found, 1 absent, -1 more than one. */
static int
only_child(xmpp_stanza_t *env, const char *name, xmpp_stanza_t **out)
{
	int seen = 0;

	*out = NULL;
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(env); c != NULL;
	    c = xmpp_stanza_get_next(c))
		if (xmpp_stanza_is_tag(c) && xmpp_stanza_get_name(c) != NULL &&
		    strcmp(xmpp_stanza_get_name(c), name) == 0) {
			*out = c;
			seen++;
		}
	return seen == 0 ? 1 : seen == 1 ? 0 : -1;
}

static bool
jid_affix_is(xmpp_stanza_t *e, const char *want)
{
	const char *j = xmpp_stanza_get_attribute(e, "jid");

	/* the affix carries a bare JID; compared as the server stamped it */
	return j != NULL && want != NULL && strcmp(j, want) == 0;
}

int
omemo_sce_parse(xmpp_ctx_t *x, const uint8_t *xml, size_t n,
    const char *from, const char *to, uint8_t **body, size_t *bodylen)
{
	xmpp_stanza_t *env, *content, *e, *b = NULL;
	char *s;
	const char *ns;
	int rc = MW_OMEMO_E_SCE;

	*body = NULL;
	*bodylen = 0;
	if (n == 0 || n > MW_OMEMO_MAX_STANZA)
		return n == 0 ? MW_OMEMO_E_SCE : MW_OMEMO_E_OVERSIZE;
	if (memchr(xml, '\0', n) != NULL || !xml_text_ok(xml, n))
		return MW_OMEMO_E_SCE;
	if ((s = malloc(n + 1)) == NULL)
		return MW_OMEMO_E_NOMEM;
	memcpy(s, xml, n);
	s[n] = '\0';
	env = xmpp_stanza_new_from_string(x, s);
	OPENSSL_cleanse(s, n);
	free(s);
	if (env == NULL)
		return MW_OMEMO_E_SCE;
	if (xmpp_stanza_get_name(env) == NULL ||
	    strcmp(xmpp_stanza_get_name(env), "envelope") != 0 ||
	    (ns = xmpp_stanza_get_ns(env)) == NULL ||
	    strcmp(ns, OMEMO_NS_SCE) != 0)
		goto out;
	if (only_child(env, "content", &content) != 0 ||
	    only_child(env, "rpad", &e) != 0 ||
	    only_child(env, "from", &e) != 0 || !jid_affix_is(e, from))
		goto out;
	switch (only_child(env, "to", &e)) {
	case 0:
		if (!jid_affix_is(e, to))
			goto out;
		break;
	case 1:
		break;
	default:
		goto out;
	}
	if (only_child(env, "time", &e) < 0)
		goto out;
	/* the <body> of content, if any (jabber:client, as the XEP says) */
	if (only_child(content, "body", &b) < 0)
		goto out;
	if (b != NULL && ((ns = xmpp_stanza_get_ns(b)) == NULL ||
	    strcmp(ns, NS_CLIENT) != 0))
		goto out;
	rc = 0;
	if (b != NULL) {
		char *t = xmpp_stanza_get_text(b);
		size_t tl = t != NULL ? strlen(t) : 0;

		if (tl > MW_OMEMO_MAX_PLAINTEXT)
			rc = MW_OMEMO_E_OVERSIZE;
		else if ((*body = malloc(tl + 1)) == NULL)
			rc = MW_OMEMO_E_NOMEM;
		else {
			if (tl > 0)
				memcpy(*body, t, tl);
			(*body)[tl] = '\0';
			*bodylen = tl;
		}
		if (t != NULL) {
			OPENSSL_cleanse(t, tl);
			xmpp_free(x, t);
		}
	}
out:
	xmpp_stanza_release(env);
	return rc;
}
