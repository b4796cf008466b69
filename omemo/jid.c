/*
 * jid.c: JIDs compared as XMPP compares them, as far as this code can
 * without PRECIS.  A server stamps addresses prepared (RFC 7622: local and
 * domain parts case-folded), while a user types Alice@Example.org into a
 * config, a policy line or --to, and a client writes its own JID as
 * configured into an SCE envelope.  Byte comparison made such a user's
 * every job a refusal.
 *
 * Invariant: only ASCII letters before the first '/' fold; every other
 * byte (non-ASCII, the resource) is compared exactly.  A non-ASCII JID
 * must therefore be written as the server prepares it -- the safe side,
 * since a wrong fold could make two JIDs one.
 */
#include <stdbool.h>

#include "omemo/mw_omemo.h"

static unsigned char
fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

void
mw_omemo_jid_fold(char *jid)
{
	if (jid == NULL)
		return;
	for (; *jid != '\0' && *jid != '/'; jid++)
		*jid = (char)fold((unsigned char)*jid);
}

bool
mw_omemo_jid_equal(const char *a, const char *b)
{
	bool resource = false;

	if (a == NULL || b == NULL)
		return false;
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (!resource) {
			x = fold(x);
			y = fold(y);
		}
		if (x != y)
			return false;
		if (x == '\0')
			return true;
		resource = resource || x == '/';
	}
}
