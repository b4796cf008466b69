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
 * Why it does not go through libstrophe's stanza tree: every OMEMO 2
 * message builds one envelope and parses one, and the tree (an attribute
 * hash table per element, a parser made and torn down per string, the
 * serializer) was about a third of what the version costs over legacy per
 * message (README, "OMEMO benchmark").  The envelope is written here with
 * the one buffer API (wire/, escaped as XML 1.0 requires) and parsed by
 * expat directly, checking its shape as the elements stream past; the
 * parser is still expat, the one libstrophe uses, and no XML is parsed by
 * hand.
 *
 * Invariants on parsing: the envelope (urn:xmpp:sce:1) is the root and
 * the only element; no DTD; exactly one <content>; <rpad> present (and at
 * most one); <from jid> present and equal to the outer stanza's sender's
 * bare JID; <to jid>, when present, equal to the outer stanza's
 * recipient's bare JID (ASCII case aside; affixes are the SCE
 * namespace's, at most once each; other elements and text are ignored,
 * as XEP-0420 asks for what a later version may add; <time> is not
 * checked); at most one <body> in <content>, and it is jabber:client's;
 * elements nest at most SCE_MAX_DEPTH deep.  Anything else is
 * MW_OMEMO_E_SCE.  The body text
 * is strict UTF-8 both ways (the envelope is XML).  Memory that held the
 * plaintext, in expat's buffers as in ours, is wiped before it is freed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <expat.h>
#include <openssl/crypto.h>

#include "omemo/omemo_int.h"
#include "wire/mw_wire.h"

#define NS_CLIENT	"jabber:client"
#define RPAD_MAX	32
#define SCE_MAX_DEPTH	32	/* envelope, content, body or an extension: 3 */
#define NS_SEP		' '	/* expat's "URI local"; in neither a URI's
				 * element names nor a local name */
#define SCE(local)	OMEMO_NS_SCE " " local

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

		if (n - i >= 8) {
			/* eight bytes at a time while they are printable ASCII:
			 * no high bit, and none below 0x20 (the "has a byte less
			 * than" test, exact when no byte has its high bit) */
			uint64_t w;

			memcpy(&w, s + i, sizeof(w));
			if ((w & 0x8080808080808080ull) == 0 &&
			    ((w - 0x2020202020202020ull) & ~w &
			    0x8080808080808080ull) == 0) {
				i += 8;
				continue;
			}
		}
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

/* ---- building ---- */

/* s escaped for XML character data (attr false) or a quoted attribute value
 * (attr true).  CR is a character reference, so it survives the end-of-line
 * normalization of the receiving parser; in an attribute, TAB and LF too
 * (attribute-value normalization would turn them into spaces). */
static int
put_escaped(struct mw_buf *b, const uint8_t *s, size_t n, bool attr)
{
	size_t from = 0;

	for (size_t i = 0; i < n; i++) {
		const char *e;

		switch (s[i]) {
		case '&': e = "&amp;"; break;
		case '<': e = "&lt;"; break;
		case '>': e = "&gt;"; break;
		case '\r': e = "&#13;"; break;
		case '\'': e = attr ? "&apos;" : NULL; break;
		case '"': e = attr ? "&quot;" : NULL; break;
		case '\t': e = attr ? "&#9;" : NULL; break;
		case '\n': e = attr ? "&#10;" : NULL; break;
		default: e = NULL; break;
		}
		if (e == NULL)
			continue;
		if (mw_buf_put(b, s + from, i - from) != 0 ||
		    mw_buf_put(b, e, strlen(e)) != 0)
			return -1;
		from = i + 1;
	}
	return mw_buf_put(b, s + from, n - from) != 0 ? -1 : 0;
}

static int
put_str(struct mw_buf *b, const char *s)
{
	return mw_buf_put(b, s, strlen(s)) != 0 ? -1 : 0;
}

static int
put_jid_affix(struct mw_buf *b, const char *name, const char *jid)
{
	if (put_str(b, "<") != 0 || put_str(b, name) != 0 ||
	    put_str(b, " jid='") != 0 ||
	    put_escaped(b, (const uint8_t *)jid, strlen(jid), true) != 0 ||
	    put_str(b, "'/>") != 0)
		return -1;
	return 0;
}

int
omemo_sce_build(const char *from, const char *to, const uint8_t *body,
    size_t n, char **out, size_t *outlen)
{
	struct mw_buf b;
	uint8_t r[RPAD_MAX];
	char *pad = NULL, stamp[32];
	size_t padlen;
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (n > MW_OMEMO_MAX_PLAINTEXT)
		return MW_OMEMO_E_OVERSIZE;
	/* xml_text_ok refuses NUL with the other C0 controls */
	if (!xml_text_ok(body, n) ||
	    !xml_text_ok((const uint8_t *)from, strlen(from)) ||
	    !xml_text_ok((const uint8_t *)to, strlen(to)))
		return MW_OMEMO_E_INVAL;
	/* rpad: 1..RPAD_MAX random bytes, base64 (hides the length) */
	if (omemo_random(r, sizeof(r)) != 0)
		return MW_OMEMO_E_CRYPTO;
	padlen = 1 + r[0] % RPAD_MAX;
	if ((pad = omemo_b64_encode(r, padlen)) == NULL)
		return MW_OMEMO_E_NOMEM;
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		free(pad);
		return MW_OMEMO_E_CRYPTO;
	}
	/* escaped text is at most 5x the input; MW_OMEMO_MAX_PLAINTEXT x 5
	 * plus the affixes stays far below what a buffer may hold */
	mw_buf_init(&b, 6 * MW_OMEMO_MAX_PLAINTEXT + 4096);
	rc = MW_OMEMO_E_NOMEM;
	if (mw_buf_reserve(&b, n + 320 + strlen(from) + strlen(to), NULL) != 0)
		goto out;
	mw_buf_reset(&b);	/* keeps the allocation: one malloc, typically */
	if (put_str(&b, "<envelope xmlns='" OMEMO_NS_SCE "'><content>"
	    "<body xmlns='" NS_CLIENT "'>") != 0 ||
	    put_escaped(&b, body, n, false) != 0 ||
	    put_str(&b, "</body></content><rpad>") != 0 ||
	    put_str(&b, pad) != 0 || put_str(&b, "</rpad>") != 0 ||
	    put_jid_affix(&b, "from", from) != 0 ||
	    put_jid_affix(&b, "to", to) != 0 ||
	    put_str(&b, "<time stamp='") != 0 || put_str(&b, stamp) != 0 ||
	    put_str(&b, "'/></envelope>") != 0)
		goto out;
	if ((*out = malloc(mw_buf_avail(&b) + 1)) == NULL)
		goto out;
	memcpy(*out, mw_buf_ptr(&b), mw_buf_avail(&b));
	(*out)[mw_buf_avail(&b)] = '\0';
	*outlen = mw_buf_avail(&b);
	rc = 0;
out:
	mw_buf_free(&b);	/* wipes */
	free(pad);
	return rc;
}

/* ---- parsing ---- */

/*
 * expat's memory for one parse comes from an arena: a block on the
 * parser's stack frame, then malloc'ed blocks if the envelope is large.
 * Nothing is freed one by one; when the parse ends every byte handed out
 * is wiped (expat's buffers hold the decrypted envelope) and the extra
 * blocks are freed.  Making and freeing a parser this way costs a few
 * hundred instructions instead of ~20,000 through malloc.  expat's
 * allocator hooks take no context, so the arena in use is a thread's own.
 */
#define ARENA_FIRST	(16u * 1024)
#define ARENA_ALIGN	16u

struct arena_block {
	struct arena_block *next;	/* malloc'ed blocks only */
	size_t cap, used;
	uint8_t *mem;
};

struct arena {
	struct arena_block first, *cur;
	bool failed;			/* an allocation was refused */
};

static __thread struct arena *sce_arena;

/* each allocation is preceded by its size (realloc needs it) */
struct arena_hdr {
	_Alignas(ARENA_ALIGN) size_t size;	/* the payload stays aligned */
};
_Static_assert(sizeof(struct arena_hdr) % ARENA_ALIGN == 0, "arena payload alignment");

static void *
arena_malloc(size_t n)
{
	struct arena *a = sce_arena;
	struct arena_block *b = a->cur, *nb;
	size_t need;

	if (n > MW_OMEMO_MAX_STANZA * 4)
		goto refuse;		/* expat never needs this for us */
	need = (sizeof(struct arena_hdr) + n + ARENA_ALIGN - 1) &
	    ~(size_t)(ARENA_ALIGN - 1);
	if (b->cap - b->used < need) {
		size_t cap = need > 4 * ARENA_FIRST ? need : 4 * ARENA_FIRST;

		if ((nb = malloc(sizeof(*nb) + ARENA_ALIGN + cap)) == NULL)
			goto refuse;
		nb->next = NULL;
		nb->cap = cap;
		nb->used = 0;
		nb->mem = (uint8_t *)(((uintptr_t)(nb + 1) + ARENA_ALIGN - 1) &
		    ~(uintptr_t)(ARENA_ALIGN - 1));
		b->next = nb;
		a->cur = b = nb;
	}
	{
		struct arena_hdr *h = (struct arena_hdr *)(b->mem + b->used);

		h->size = n;
		b->used += need;
		return h + 1;
	}
refuse:
	a->failed = true;
	return NULL;
}

static void
arena_free(void *p)
{
	/* the whole arena is wiped and released after the parse */
}

static void *
arena_realloc(void *p, size_t n)
{
	struct arena_hdr *h;
	void *q;

	if (p == NULL)
		return arena_malloc(n);
	h = (struct arena_hdr *)p - 1;
	if (n <= h->size)
		return p;
	if ((q = arena_malloc(n)) == NULL)
		return NULL;	/* p stays valid, as realloc's contract says */
	memcpy(q, p, h->size);
	return q;
}

static const XML_Memory_Handling_Suite arena_suite = {
	arena_malloc, arena_realloc, arena_free
};

static void
arena_open(struct arena *a, uint8_t *first, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->first.mem = first;
	a->first.cap = cap;
	a->cur = &a->first;
	sce_arena = a;
}

static void
arena_close(struct arena *a)
{
	struct arena_block *b = a->first.next, *next;

	explicit_bzero(a->first.mem, a->first.used);
	for (; b != NULL; b = next) {
		next = b->next;
		explicit_bzero(b->mem, b->used);
		free(b);
	}
	sce_arena = NULL;
}

/* the salt of expat's hash tables: secret, drawn once per thread (expat
 * would otherwise call getrandom for every parser) */
static int
hash_salt(unsigned long *salt)
{
	static __thread unsigned long value;
	static __thread bool drawn;

	if (!drawn) {
		if (omemo_random(&value, sizeof(value)) != 0)
			return -1;
		drawn = true;
	}
	*salt = value;
	return 0;
}

struct sce_parse {
	XML_Parser p;
	const char *from, *to;	/* the outer stanza's bare JIDs */
	int rc;			/* 0, or the first refusal */
	unsigned depth;		/* elements open; the envelope is 1 */
	bool in_content;	/* the open depth-2 element is <content> */
	bool in_body;		/* the open depth-3 element is its <body> */
	unsigned n_content, n_rpad, n_from, n_to, n_time, n_body;
	struct mw_buf body;	/* <body>'s own text */
};

static void
refuse(struct sce_parse *s, int rc)
{
	if (s->rc == 0)
		s->rc = rc;
	(void)XML_StopParser(s->p, XML_FALSE);
}

static const char *
attr(const XML_Char **atts, const char *name)
{
	for (size_t i = 0; atts[i] != NULL; i += 2)
		if (strcmp(atts[i], name) == 0)
			return atts[i + 1];
	return NULL;
}

/* The affix carries a bare JID as the sending client wrote it (QXmpp
 * writes the JID its user configured): compared as jid.c compares. */
static bool
jid_is(const XML_Char **atts, const char *want)
{
	return mw_omemo_jid_equal(attr(atts, "jid"), want);
}

static void XMLCALL
sce_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct sce_parse *s = ud;
	const char *local;

	s->depth++;
	if (s->rc != 0)
		return;
	/* expat keeps every open element: depth is memory (a 256 KiB
	 * envelope of nested elements took 15 MiB) */
	if (s->depth > SCE_MAX_DEPTH) {
		refuse(s, MW_OMEMO_E_SCE);
		return;
	}
	switch (s->depth) {
	case 1:
		if (strcmp(name, SCE("envelope")) != 0)
			refuse(s, MW_OMEMO_E_SCE);
		break;
	case 2:
		if (strcmp(name, SCE("content")) == 0) {
			s->n_content++;
			s->in_content = true;
		} else if (strcmp(name, SCE("rpad")) == 0)
			s->n_rpad++;
		else if (strcmp(name, SCE("from")) == 0) {
			if (++s->n_from > 1 || !jid_is(atts, s->from))
				refuse(s, MW_OMEMO_E_SCE);
		} else if (strcmp(name, SCE("to")) == 0) {
			if (++s->n_to > 1 || !jid_is(atts, s->to))
				refuse(s, MW_OMEMO_E_SCE);
		} else if (strcmp(name, SCE("time")) == 0)
			s->n_time++;
		break;
	case 3:
		if (!s->in_content)
			break;
		/* a <body> of another namespace is refused, not skipped */
		local = strrchr(name, NS_SEP);
		local = local != NULL ? local + 1 : name;
		if (strcmp(local, "body") != 0)
			break;
		if (++s->n_body > 1 || strcmp(name, NS_CLIENT " body") != 0)
			refuse(s, MW_OMEMO_E_SCE);
		else
			s->in_body = true;
		break;
	default:
		break;
	}
}

static void XMLCALL
sce_end(void *ud, const XML_Char *name)
{
	struct sce_parse *s = ud;

	(void)name;
	if (s->depth == 3)
		s->in_body = false;
	else if (s->depth == 2)
		s->in_content = false;
	s->depth--;
}

static void XMLCALL
sce_text(void *ud, const XML_Char *t, int len)
{
	struct sce_parse *s = ud;

	/* only <body>'s own text, as XEP-0420 delivers it */
	if (s->rc != 0 || !s->in_body || s->depth != 3 || len <= 0)
		return;
	if (mw_buf_put(&s->body, t, (size_t)len) != 0)
		refuse(s, MW_OMEMO_E_OVERSIZE);
}

/* XMPP forbids DTDs (RFC 6120 §11.1); none is read, no entity declared */
static void XMLCALL
sce_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
    const XML_Char *pubid, int has_internal_subset)
{
	refuse(ud, MW_OMEMO_E_SCE);
}

int
omemo_sce_parse(const uint8_t *xml, size_t n, const char *from,
    const char *to, uint8_t **body, size_t *bodylen)
{
	struct sce_parse s;
	struct arena arena;
	uint8_t first[ARENA_FIRST] __attribute__((aligned(ARENA_ALIGN)));
	unsigned long salt;
	enum XML_Status st;
	int rc;

	*body = NULL;
	*bodylen = 0;
	if (n == 0 || n > MW_OMEMO_MAX_STANZA)
		return n == 0 ? MW_OMEMO_E_SCE : MW_OMEMO_E_OVERSIZE;
	if (!xml_text_ok(xml, n))	/* NUL included */
		return MW_OMEMO_E_SCE;
	if (hash_salt(&salt) != 0)
		return MW_OMEMO_E_CRYPTO;
	memset(&s, 0, sizeof(s));
	s.from = from;
	s.to = to;
	mw_buf_init(&s.body, MW_OMEMO_MAX_PLAINTEXT);
	arena_open(&arena, first, sizeof(first));
	/* UTF-8 whatever the document declares (it was checked above) */
	if ((s.p = XML_ParserCreate_MM("UTF-8", &arena_suite, " ")) == NULL) {
		arena_close(&arena);
		return MW_OMEMO_E_NOMEM;
	}
	(void)XML_SetHashSalt(s.p, salt);
	XML_SetUserData(s.p, &s);
	XML_SetElementHandler(s.p, sce_start, sce_end);
	XML_SetCharacterDataHandler(s.p, sce_text);
	XML_SetStartDoctypeDeclHandler(s.p, sce_doctype);
	st = XML_Parse(s.p, (const char *)xml, (int)n, XML_TRUE);
	if (arena.failed)
		rc = MW_OMEMO_E_NOMEM;
	else if (s.rc != 0)
		rc = s.rc;
	else if (st != XML_STATUS_OK || s.depth != 0)
		rc = MW_OMEMO_E_SCE;
	else if (s.n_content != 1 || s.n_rpad != 1 || s.n_from != 1 ||
	    s.n_to > 1 || s.n_time > 1)
		rc = MW_OMEMO_E_SCE;
	else
		rc = 0;
	XML_ParserFree(s.p);
	arena_close(&arena);
	if (rc == 0 && s.n_body == 1) {
		size_t tl = mw_buf_avail(&s.body);

		if ((*body = malloc(tl + 1)) == NULL)
			rc = MW_OMEMO_E_NOMEM;
		else {
			if (tl > 0)
				memcpy(*body, mw_buf_ptr(&s.body), tl);
			(*body)[tl] = '\0';
			*bodylen = tl;
		}
	}
	mw_buf_free(&s.body);	/* wipes */
	return rc;
}
