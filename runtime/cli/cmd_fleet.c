/*
 * cmd_fleet.c: `moonwire fleet add|remove|list`, the fleet inventory as
 * groups of the operator's XMPP roster (spec/cli.md).  The inventory lives
 * in the operator's account, so every XMPP client shows it and `moonwire
 * send --group NAME` reaches the same agents from any machine.
 *
 * add and remove check every JID and read the roster before changing
 * anything; remove refuses a JID that is not in the group, so a typo never
 * silently succeeds.  An item leaves the roster only when remove took its
 * last group: items the operator keeps for other reasons stay.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "runtime/fleet/fleet.h"
#include "runtime/mw_runtime.h"

#define FLEET_TIMEOUT_MS 30000
#define FLEET_MAX_GROUPS 64

static void
fleet_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire fleet add -c CONFIG --group NAME [--group NAME ...] JID...\n"
	    "       moonwire fleet remove -c CONFIG --group NAME [--group NAME ...] JID...\n"
	    "       moonwire fleet list -c CONFIG [--group NAME ...] [--json]\n"
	    "\n"
	    "The fleet inventory: groups of the operator's XMPP roster, which\n"
	    "`moonwire send --group NAME` targets.\n"
	    "\n"
	    "  -c, --config CONFIG  the operator's account file (as for `moonwire send`)\n"
	    "  --group NAME         a roster group (repeatable); list: only these groups\n"
	    "  --json               list: one JSON object per member and line\n"
	    "\n"
	    "add puts each JID in the groups (adding the roster item if needed) and\n"
	    "asks it for its presence (a subscription request) unless it has it;\n"
	    "remove takes it out of them and drops the roster item when no group is\n"
	    "left; list prints each group and its members.\n"
	    "\n"
	    "exit status: 0 done, 1 a JID to remove is not in the group or a group to\n"
	    "list has no members (nothing changed), 2 usage or account file,\n"
	    "6 connection or server error.\n");
}

/* The item with groups `want` added (add) or taken out (!add), as a new
 * item whose strings point into it and want.  *changed when it differs. */
static int
edit_groups(const struct mw_fleet_item *it, char *const *want, size_t nwant,
    bool add, struct mw_fleet_item *out, bool *changed)
{
	*out = *it;
	out->groups = calloc(it->ngroups + nwant + 1, sizeof(*out->groups));
	out->ngroups = 0;
	*changed = false;
	if (out->groups == NULL)
		return -1;
	for (size_t g = 0; g < it->ngroups; g++) {
		bool drop = false;

		for (size_t w = 0; !add && w < nwant; w++)
			drop = drop || strcmp(it->groups[g], want[w]) == 0;
		if (drop)
			*changed = true;
		else
			out->groups[out->ngroups++] = it->groups[g];
	}
	for (size_t w = 0; add && w < nwant; w++) {
		bool have = false;

		for (size_t g = 0; g < out->ngroups; g++)
			have = have || strcmp(out->groups[g], want[w]) == 0;
		if (!have) {
			out->groups[out->ngroups++] = want[w];
			*changed = true;
		}
	}
	return 0;
}

/* Whether the operator's account already receives the item's presence. */
static bool
subscribed_to(const struct mw_fleet_item *it)
{
	return it != NULL && it->subscription != NULL &&
	    (strcmp(it->subscription, "to") == 0 || strcmp(it->subscription, "both") == 0);
}

/*
 * After an add: a presence subscription request to every JID now in the
 * groups (its roster set succeeded, or it was in them already) whose
 * presence the account does not receive yet, so that `send` later tells
 * offline from online but silent.  0, or -1 with the reason on stderr.
 */
static int
subscribe_missing(struct mw_roster_conn *c, struct mw_fleet_roster *r,
    const struct mw_fleet_change *ch, const bool *same,
    const struct mw_fleet_targets *jids)
{
	char **want = calloc(jids->n + 1, sizeof(*want)), err[1200];
	size_t n = 0;
	int rc;

	if (want == NULL) {
		fprintf(stderr, "moonwire fleet: out of memory\n");
		return -1;
	}
	for (size_t i = 0, k = 0; i < jids->n; i++) {
		bool in_groups = same[i] || ch[k].rc == MW_FLEET_OK;

		if (!same[i])
			k++;
		if (in_groups && !subscribed_to(mw_fleet_roster_find(r, jids->jid[i])))
			want[n++] = jids->jid[i];
	}
	rc = mw_fleet_roster_subscribe(c, want, n, err, sizeof(err));
	free(want);
	if (rc != MW_FLEET_OK) {
		fprintf(stderr, "moonwire fleet: %s (the roster items are set; `fleet "
		    "add` again asks again)\n", err);
		return -1;
	}
	return 0;
}

static int
fleet_edit(struct mw_roster_conn *c, struct mw_fleet_roster *r, bool add,
    char *const *groups, size_t ngroups, const struct mw_fleet_targets *jids)
{
	struct mw_fleet_change *ch = NULL;
	bool *same = NULL;
	size_t nch = 0;
	int rc = MW_EXIT_OK;

	if (!add) {
		/* all or nothing: every JID must be in every named group */
		for (size_t i = 0; i < jids->n; i++) {
			struct mw_fleet_item *it = mw_fleet_roster_find(r, jids->jid[i]);

			for (size_t g = 0; g < ngroups; g++)
				if (it == NULL || !mw_fleet_item_in_group(it, groups[g])) {
					fprintf(stderr, "moonwire fleet: %s is not in roster "
					    "group '%s': nothing changed\n", jids->jid[i],
					    groups[g]);
					return MW_EXIT_ERROR;
				}
		}
	}
	if ((ch = calloc(jids->n + 1, sizeof(*ch))) == NULL ||
	    (same = calloc(jids->n + 1, sizeof(*same))) == NULL) {
		fprintf(stderr, "moonwire fleet: out of memory\n");
		free(ch);
		return MW_EXIT_UNAVAILABLE;
	}
	for (size_t i = 0; i < jids->n; i++) {
		struct mw_fleet_item *it = mw_fleet_roster_find(r, jids->jid[i]);
		struct mw_fleet_item fresh = { .jid = jids->jid[i] };
		bool changed;

		if (edit_groups(it != NULL ? it : &fresh, groups, ngroups, add,
		    &ch[nch].item, &changed) != 0) {
			fprintf(stderr, "moonwire fleet: out of memory\n");
			rc = MW_EXIT_UNAVAILABLE;
			goto out;
		}
		ch[nch].item.jid = jids->jid[i];	/* the folded form */
		ch[nch].remove = !add && ch[nch].item.ngroups == 0;
		if (changed || it == NULL)
			nch++;
		else {
			free(ch[nch].item.groups);
			memset(&ch[nch], 0, sizeof(ch[nch]));
			same[i] = true;
		}
	}
	(void)mw_fleet_roster_apply(c, ch, nch);
	for (size_t i = 0, k = 0; i < jids->n; i++) {
		if (same[i]) {
			printf("already in the groups: %s\n", jids->jid[i]);
			continue;
		}
		if (ch[k].rc != MW_FLEET_OK) {
			fflush(stdout);
			fprintf(stderr, "moonwire fleet: %s\n", ch[k].err);
			rc = MW_EXIT_UNAVAILABLE;
		} else
			printf("%s %s\n", add ? "added" : ch[k].remove ?
			    "removed (no group left):" : "removed:", jids->jid[i]);
		k++;
	}
	fflush(stdout);
	if (add && subscribe_missing(c, r, ch, same, jids) != 0)
		rc = MW_EXIT_UNAVAILABLE;
out:
	for (size_t i = 0; i < jids->n; i++)
		free(ch[i].item.groups);
	free(ch);
	free(same);
	return rc;
}

struct member {
	const char *group;
	const struct mw_fleet_item *it;
};

static int
cmp_member(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->group, y->group);

	return c != 0 ? c : strcmp(x->it->jid, y->it->jid);
}

static int
print_member_json(const struct member *m)
{
	cJSON *o = cJSON_CreateObject();
	char *j = NULL;

	if (o != NULL && cJSON_AddStringToObject(o, "group", m->group) != NULL &&
	    cJSON_AddStringToObject(o, "jid", m->it->jid) != NULL &&
	    (m->it->name == NULL || cJSON_AddStringToObject(o, "name", m->it->name) != NULL) &&
	    cJSON_AddStringToObject(o, "subscription", m->it->subscription ?
	    m->it->subscription : "none") != NULL)
		j = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (j == NULL)
		return -1;
	printf("%s\n", j);
	free(j);
	return 0;
}

static int
fleet_list(const struct mw_fleet_roster *r, char *const *groups, size_t ngroups,
    bool json)
{
	struct member *m;
	size_t n = 0, total = 0;

	for (size_t i = 0; i < r->n; i++)
		total += r->items[i].ngroups;
	if ((m = calloc(total + 1, sizeof(*m))) == NULL) {
		fprintf(stderr, "moonwire fleet: out of memory\n");
		return MW_EXIT_UNAVAILABLE;
	}
	for (size_t i = 0; i < r->n; i++)
		for (size_t g = 0; g < r->items[i].ngroups; g++) {
			bool want = ngroups == 0;

			for (size_t k = 0; k < ngroups; k++)
				want = want || strcmp(groups[k], r->items[i].groups[g]) == 0;
			if (want)
				m[n++] = (struct member){ r->items[i].groups[g], &r->items[i] };
		}
	for (size_t k = 0; k < ngroups; k++) {
		bool found = false;

		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(m[i].group, groups[k]) == 0;
		if (!found) {
			fprintf(stderr, "moonwire fleet: roster group '%s' does not exist or "
			    "has no members\n", groups[k]);
			free(m);
			return MW_EXIT_ERROR;
		}
	}
	qsort(m, n, sizeof(*m), cmp_member);
	for (size_t i = 0; i < n; i++) {
		if (json) {
			if (print_member_json(&m[i]) != 0) {
				free(m);
				return MW_EXIT_UNAVAILABLE;
			}
			continue;
		}
		if (i == 0 || strcmp(m[i].group, m[i - 1].group) != 0) {
			size_t count = 0;

			for (size_t k = i; k < n && strcmp(m[k].group, m[i].group) == 0; k++)
				count++;
			printf("%s (%zu)\n", m[i].group, count);
		}
		printf("  %s\n", m[i].it->jid);
	}
	fflush(stdout);
	free(m);
	return MW_EXIT_OK;
}

int
mw_cmd_fleet(int argc, char **argv)
{
	enum { OPT_GROUP = 256, OPT_JSON };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *action;
	char *groups[FLEET_MAX_GROUPS], err[1200];
	size_t ngroups = 0;
	bool json = false;
	struct mw_omemo_account acct;
	struct mw_fleet_targets jids;
	struct mw_roster_conn *c = NULL;
	struct mw_fleet_roster r;
	int ch, rc = MW_EXIT_USAGE;

	memset(&acct, 0, sizeof(acct));
	memset(&r, 0, sizeof(r));
	mw_fleet_targets_init(&jids);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fleet_usage(stdout);
		return MW_EXIT_OK;
	}
	if (argc < 2 || (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "remove") != 0 &&
	    strcmp(argv[1], "list") != 0)) {
		fleet_usage(stderr);
		return MW_EXIT_USAGE;
	}
	action = argv[1];
	argc--;
	argv++;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case OPT_GROUP:
			if (mw_fleet_group_check(optarg, err, sizeof(err)) != MW_FLEET_OK) {
				fprintf(stderr, "moonwire fleet: --group: %s\n", err);
				goto out;
			}
			if (ngroups == FLEET_MAX_GROUPS) {
				fprintf(stderr, "moonwire fleet: at most %d --group\n",
				    FLEET_MAX_GROUPS);
				goto out;
			}
			groups[ngroups++] = optarg;
			break;
		case OPT_JSON: json = true; break;
		case 'h': fleet_usage(stdout); rc = MW_EXIT_OK; goto out;
		default: fleet_usage(stderr); goto out;
		}
	}
	if (config == NULL || (strcmp(action, "list") == 0) != (optind == argc) ||
	    (strcmp(action, "list") != 0 && (ngroups == 0 || json))) {
		fleet_usage(stderr);
		goto out;
	}
	for (int i = optind; i < argc; i++)
		if (mw_fleet_targets_add(&jids, argv[i], err, sizeof(err)) != MW_FLEET_OK) {
			fprintf(stderr, "moonwire fleet: %s: %s\n", argv[i], err);
			goto out;
		}
	if (mw_omemo_account_load_err(&acct, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire fleet: %s\n", err);
		goto out;
	}
	if (acct.password == NULL) {
		fprintf(stderr, "moonwire fleet: %s: no password or password_file\n", config);
		goto out;
	}
	rc = MW_EXIT_UNAVAILABLE;
	if (mw_roster_connect(&acct, FLEET_TIMEOUT_MS, &c, err, sizeof(err)) != MW_FLEET_OK ||
	    mw_fleet_roster_get(c, &r, err, sizeof(err)) != MW_FLEET_OK) {
		fprintf(stderr, "moonwire fleet: %s\n", err);
		goto out;
	}
	if (strcmp(action, "list") == 0)
		rc = fleet_list(&r, groups, ngroups, json);
	else
		rc = fleet_edit(c, &r, strcmp(action, "add") == 0, groups, ngroups, &jids);
out:
	mw_roster_close(c);
	mw_fleet_roster_free(&r);
	mw_fleet_targets_free(&jids);
	mw_omemo_account_free(&acct);
	return rc;
}
