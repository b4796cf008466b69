/*
 * fleet.h: the runtime's fleet room -- who a job goes to.  Target lists
 * (targets.c: JIDs from --to, a targets file and roster groups, checked,
 * folded and capped before anything is signed) and the operator's XMPP
 * roster as the fleet inventory (roster.c: RFC 6121 roster get/set over a
 * short libstrophe connection of the operator's account).  Private to
 * runtime/; spec/cli.md ("Targets", `moonwire fleet`) describes the rules.
 */
#ifndef MW_FLEET_H
#define MW_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "omemo/mw_omemo.h"

#define MW_FLEET_MAX_TARGETS_DEFAULT	1024	/* --max-targets, max_targets */
#define MW_FLEET_MAX_TARGETS_LIMIT	1000000	/* highest cap one may set */
#define MW_FLEET_PART_MAX		1023	/* bytes of a localpart or domain (RFC 7622) */
#define MW_FLEET_FILE_MAX		(64u * 1024 * 1024)	/* a targets file */
#define MW_FLEET_LINE_MAX		4096	/* a line of a targets file */
#define MW_FLEET_GROUP_MAX		1023	/* bytes of a roster group name */

enum {
	MW_FLEET_OK = 0,
	MW_FLEET_E_JID = -1,		/* a malformed JID (err says which and why) */
	MW_FLEET_E_NOMEM = -2,
	MW_FLEET_E_CAP = -3,		/* more targets than the cap */
	MW_FLEET_E_FILE = -4,		/* a targets file cannot be read */
	MW_FLEET_E_GROUP = -5,		/* a roster group is missing, empty or bad */
	MW_FLEET_E_XMPP = -6,		/* connection or server failure */
	MW_FLEET_E_USAGE = -7,		/* a bad argument (group name, cap) */
};

/* ---- target lists (targets.c) ---- */

/*
 * Bare JIDs in first-seen order, each once.  Invariant: every jid[i] is
 * valid (mw_fleet_jid_normalize) and in normal form, so two spellings of
 * one account are one entry.
 */
struct mw_fleet_targets {
	char **jid;
	size_t n;
	size_t given;			/* JIDs added, duplicates included */
	size_t alloc;
	size_t *slots;			/* open-addressing set: index + 1, 0 empty */
	size_t nslots;			/* a power of two, > 2 * n */
};

void mw_fleet_targets_init(struct mw_fleet_targets *t);
void mw_fleet_targets_free(struct mw_fleet_targets *t);

/*
 * Checks that s[0..n) is a bare JID local@domain (RFC 7622 shape: both
 * parts 1..1023 bytes of UTF-8 without controls or whitespace, none of
 * "&'/:<>@ in the localpart, no resource, no empty domain label) and writes
 * its normal form into out (ASCII letters lowered, as nodeprep and nameprep
 * do for ASCII; non-ASCII kept as written; a trailing '.' of the domain
 * dropped).  0, or MW_FLEET_E_JID with the reason in why.
 */
int mw_fleet_jid_normalize(const char *s, size_t n, char *out, size_t outlen,
    char *why, size_t wl);

/* Adds one JID (folding a duplicate).  MW_FLEET_OK, MW_FLEET_E_JID with
 * the reason in why, or MW_FLEET_E_NOMEM. */
int mw_fleet_targets_add(struct mw_fleet_targets *t, const char *jid,
    char *why, size_t wl);

/*
 * A targets file's text: one JID a line, surrounding blanks ignored, blank
 * lines and comments (from a '#' at the start of a line or after a blank)
 * skipped.  The first bad line stops it with "NAME:LINE: reason" in err
 * (MW_FLEET_E_JID); what came before it stays added.
 */
int mw_fleet_targets_parse(struct mw_fleet_targets *t, const char *text,
    size_t len, const char *name, char *err, size_t errlen);
/* The same from a file (a regular file up to MW_FLEET_FILE_MAX bytes);
 * "PATH: reason" in err and MW_FLEET_E_FILE when it cannot be read. */
int mw_fleet_targets_load(struct mw_fleet_targets *t, const char *path,
    char *err, size_t errlen);

/* MW_FLEET_OK when t->n <= max; otherwise MW_FLEET_E_CAP and "N targets
 * (G given, duplicates folded) is more than the cap of MAX" in err. */
int mw_fleet_targets_check_cap(const struct mw_fleet_targets *t, size_t max,
    char *err, size_t errlen);

/* A cap as written (decimal, 1..MW_FLEET_MAX_TARGETS_LIMIT). */
int mw_fleet_parse_cap(const char *s, size_t *out);

/* A roster group name: 1..MW_FLEET_GROUP_MAX bytes of UTF-8, no control
 * characters.  MW_FLEET_OK or MW_FLEET_E_USAGE with why. */
int mw_fleet_group_check(const char *name, char *why, size_t wl);

/* ---- the roster (roster.c) ---- */

struct mw_fleet_item {
	char *jid;			/* as the server sends it */
	char *name;			/* NULL when the item has none */
	char *subscription;		/* NULL means "none" */
	char **groups;
	size_t ngroups;
};
struct mw_fleet_roster {
	struct mw_fleet_item *items;
	size_t n;
};
void mw_fleet_roster_free(struct mw_fleet_roster *r);
/* The item of jid (compared in normal form), or NULL. */
struct mw_fleet_item *mw_fleet_roster_find(struct mw_fleet_roster *r,
    const char *jid);
bool mw_fleet_item_in_group(const struct mw_fleet_item *it, const char *group);

/*
 * A connection of the operator's account that only speaks roster IQs: no
 * presence is sent and no OMEMO runs on it.  Every call waits at most
 * timeout_ms for its answer.  Errors are for people ("login refused: ...",
 * "roster get: the server answered forbidden").
 */
struct mw_fleet_conn;
int mw_fleet_connect(const struct mw_omemo_account *a, uint64_t timeout_ms,
    struct mw_fleet_conn **out, char *err, size_t errlen);
void mw_fleet_close(struct mw_fleet_conn *c);
int mw_fleet_roster_get(struct mw_fleet_conn *c, struct mw_fleet_roster *r,
    char *err, size_t errlen);
/*
 * One roster change: item (jid, name, groups) set as the whole item,
 * replacing the server's, or with remove the roster item of item.jid
 * removed (subscription="remove").  rc and err are the outcome; id and
 * conn are mw_fleet_roster_apply's.
 */
struct mw_fleet_change {
	struct mw_fleet_item item;
	bool remove;
	bool done;
	int rc;
	char err[256];
	char id[32];
	struct mw_fleet_conn *conn;
};
/*
 * Applies changes pipelined (MW_FLEET_WINDOW roster sets in flight: one
 * round trip per set would cost a round trip plus the server's and our
 * TCP delays each), then waits for every answer.  Every change gets its
 * own outcome; returns MW_FLEET_OK when all succeeded, else the first
 * failure's rc.  The timeout runs from the last answer; a change without
 * an answer by then failed (MW_FLEET_E_XMPP), although the server may
 * still apply it.
 */
#define MW_FLEET_WINDOW 64
int mw_fleet_roster_apply(struct mw_fleet_conn *c, struct mw_fleet_change *ch,
    size_t n);

/*
 * The members of group in r (sorted by JID: the server's roster order is
 * unspecified) added to t.  MW_FLEET_E_GROUP with "roster group 'NAME' does
 * not exist or is empty" (or a member that is no bare JID) in err.
 */
int mw_fleet_targets_add_group(struct mw_fleet_targets *t,
    const struct mw_fleet_roster *r, const char *group, char *err, size_t errlen);

/*
 * For `moonwire send --group`: one roster get over a connection of a, then
 * every group's members in turn.  MW_FLEET_OK, MW_FLEET_E_GROUP or
 * MW_FLEET_E_XMPP with err.
 */
int mw_fleet_targets_add_groups(struct mw_fleet_targets *t,
    const struct mw_omemo_account *a, char *const *groups, size_t ngroups,
    uint64_t timeout_ms, char *err, size_t errlen);

#endif
