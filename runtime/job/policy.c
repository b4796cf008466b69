/*
 * policy.c: the policy file -- which commands exist, what each profile may
 * do, and the limits that apply.  Line oriented, like sshd_config, so an
 * owner can read and diff it; every error names the file and line and the
 * whole file is refused (fail closed: a half-read policy grants nothing).
 * The format is specified in spec/policy.md.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "omemo/mw_omemo.h"
#include "runtime/mw_runtime.h"
#include "runtime/job/job.h"
#include "wire/mw_wire.h"

#define MAX_TOKENS 64
#define MAX_POLICY_BYTES (1024 * 1024)

/* errors name the file and line; the message goes to err */
#define fail(err, errlen, ...) mw_refuse_msg(-1, err, errlen, __VA_ARGS__)

static int
push_str(char ***v, uint32_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (nv == NULL)
		return -1;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		return -1;
	(*n)++;
	return 0;
}

int
mw_grant_add_path(struct mw_grants *g, bool write, const char *path,
    char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;
	if (path[0] != '/')
		return fail(err, errlen, "path '%s' must be absolute", path);
	if (realpath(path, real) == NULL)
		return fail(err, errlen, "path '%s': %s", path, strerror(errno));
	if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
		return fail(err, errlen, "path '%s' is not a directory", path);
	static const char *const refused[] = { "/proc", "/sys", "/dev", NULL };
	for (size_t i = 0; refused[i]; i++) {
		size_t l = strlen(refused[i]);
		if (strncmp(real, refused[i], l) == 0 && (real[l] == '\0' || real[l] == '/'))
			return fail(err, errlen, "path '%s' is under %s, which is never granted",
			    path, refused[i]);
	}
	if (write)
		return push_str(&g->fs_write, &g->n_fs_write, real) ? fail(err, errlen, "out of memory") : 0;
	return push_str(&g->fs_read, &g->n_fs_read, real) ? fail(err, errlen, "out of memory") : 0;
}

int
mw_grant_add_command(struct mw_grants *g, const struct mw_command_grant *c)
{
	for (uint32_t i = 0; i < g->n_commands; i++)
		if (strcmp(g->commands[i].name, c->name) == 0)
			return 0;
	struct mw_command_grant *nc = realloc(g->commands, (g->n_commands + 1) * sizeof(*nc));
	if (nc == NULL)
		return -1;
	g->commands = nc;
	struct mw_command_grant *d = &nc[g->n_commands];
	memset(d, 0, sizeof(*d));
	*d = *c;
	d->name = strdup(c->name);
	d->argv = calloc(c->argc, sizeof(char *));
	d->argc = 0;
	if (d->name == NULL || d->argv == NULL) {
		free(d->name);
		free(d->argv);
		return -1;
	}
	g->n_commands++;
	for (uint32_t i = 0; i < c->argc; i++) {
		if ((d->argv[i] = strdup(c->argv[i])) == NULL)
			return -1;
		d->argc++;
	}
	return 0;
}

/* Splits a line into whitespace-separated tokens; "double quotes" group. */
static int
tokenize(char *line, char **tok, int max)
{
	int n = 0;
	char *p = line;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			break;
		if (n == max)
			return -1;
		if (*p == '"') {
			tok[n++] = ++p;
			while (*p && *p != '"')
				p++;
			if (*p != '"')
				return -2;
			*p++ = '\0';
			continue;
		}
		tok[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

static void
command_free(struct mw_command_grant *c)
{
	free(c->name);
	for (uint32_t i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
}

void
mw_policy_free(struct mw_policy *p)
{
	for (size_t i = 0; i < p->n_commands; i++)
		command_free(&p->commands[i]);
	free(p->commands);
	for (size_t i = 0; i < p->n_profiles; i++) {
		free(p->profiles[i].name);
		mw_grants_free(&p->profiles[i].grants);
		for (uint32_t k = 0; k < p->profiles[i].n_arg_names; k++)
			free(p->profiles[i].arg_names[k]);
		free(p->profiles[i].arg_names);
	}
	free(p->profiles);
	for (size_t i = 0; i < p->n_allows; i++) {
		free(p->allows[i].principal);
		free(p->allows[i].jid);
	}
	free(p->allows);
	for (size_t i = 0; i < p->n_interactives; i++)
		free(p->interactives[i].jid);
	free(p->interactives);
	for (size_t i = 0; i < p->n_path_lines; i++)
		free(p->path_lines[i].given);
	free(p->path_lines);
	free(p->file);
	memset(p, 0, sizeof(*p));
}

const struct mw_profile *
mw_policy_profile(const struct mw_policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_profiles; i++)
		if (strcmp(p->profiles[i].name, name) == 0)
			return &p->profiles[i];
	return NULL;
}

const struct mw_command_grant *
mw_policy_command(const struct mw_policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_commands; i++)
		if (strcmp(p->commands[i].name, name) == 0)
			return &p->commands[i];
	return NULL;
}

const struct mw_policy_allow *
mw_policy_allowed(const struct mw_policy *p, const char *signer_principals,
    const char *jid)
{
	for (size_t i = 0; i < p->n_allows; i++)
		if (mw_omemo_jid_equal(p->allows[i].jid, jid) &&
		    mw_principal_match(signer_principals, p->allows[i].principal))
			return &p->allows[i];
	return NULL;
}

const struct mw_policy_interactive *
mw_policy_interactive_for(const struct mw_policy *p, const char *jid)
{
	for (size_t i = 0; i < p->n_interactives; i++)
		if (mw_omemo_jid_equal(p->interactives[i].jid, jid))
			return &p->interactives[i];
	return NULL;
}

bool
mw_policy_knows_jid(const struct mw_policy *p, const char *jid)
{
	for (size_t i = 0; i < p->n_allows; i++)
		if (mw_omemo_jid_equal(p->allows[i].jid, jid))
			return true;
	return mw_policy_interactive_for(p, jid) != NULL;
}

/* A bare JID as it may appear in policy: local@domain, no resource, no
 * spaces or control characters. */
static bool
valid_bare_jid(const char *s)
{
	const char *at = strchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    strchr(s, '/') != NULL || strlen(s) > MW_JID_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '"' || *s == '\'')
			return false;
	return true;
}

/* Profile names are resolved when the whole file has been read, so allow
 * and interactive lines may come before the profile they name. */
static int
profile_index(const struct mw_policy *p, const char *name, size_t *out)
{
	for (size_t i = 0; i < p->n_profiles; i++)
		if (strcmp(p->profiles[i].name, name) == 0) {
			*out = i;
			return 0;
		}
	return -1;
}

static int
parse_allow(struct mw_policy *p, char **tok, int n, char *err, size_t errlen)
{
	struct mw_policy_allow a;
	uint64_t v;

	memset(&a, 0, sizeof(a));
	a.max_validity_s = 3600;
	if (n < 4 || n > 5)
		return fail(err, errlen, "usage: allow PRINCIPAL JID PROFILE [validity=DURATION]");
	if (tok[1][0] == '\0' || strpbrk(tok[1], ", \t") != NULL || tok[1][0] == '!')
		return fail(err, errlen, "allow: bad principal '%s' (one name, no commas)", tok[1]);
	if (!valid_bare_jid(tok[2]))
		return fail(err, errlen, "allow: '%s' is not a bare JID", tok[2]);
	if (n == 5) {
		if (strncmp(tok[4], "validity=", 9) != 0 ||
		    mw_parse_duration_ms(tok[4] + 9, &v) != 0 || v < 1000 ||
		    v > 7ull * 24 * 3600 * 1000)
			return fail(err, errlen, "allow: bad option '%s' (validity=DURATION, 1s to 7d)", tok[4]);
		a.max_validity_s = (uint32_t)(v / 1000);
	}
	struct mw_policy_allow *na = realloc(p->allows, (p->n_allows + 1) * sizeof(*na));
	if (na == NULL)
		return fail(err, errlen, "out of memory");
	p->allows = na;
	a.principal = strdup(tok[1]);
	a.jid = strdup(tok[2]);
	if (a.principal == NULL || a.jid == NULL) {
		free(a.principal);
		free(a.jid);
		return fail(err, errlen, "out of memory");
	}
	p->allows[p->n_allows++] = a;
	return 0;
}

static int
parse_interactive(struct mw_policy *p, char **tok, int n, char *err, size_t errlen)
{
	if (n != 3)
		return fail(err, errlen, "usage: interactive JID PROFILE");
	if (!valid_bare_jid(tok[1]))
		return fail(err, errlen, "interactive: '%s' is not a bare JID", tok[1]);
	if (mw_policy_interactive_for(p, tok[1]) != NULL)
		return fail(err, errlen, "interactive: %s listed twice", tok[1]);
	struct mw_policy_interactive *ni = realloc(p->interactives,
	    (p->n_interactives + 1) * sizeof(*ni));
	if (ni == NULL)
		return fail(err, errlen, "out of memory");
	p->interactives = ni;
	if ((ni[p->n_interactives].jid = strdup(tok[1])) == NULL)
		return fail(err, errlen, "out of memory");
	ni[p->n_interactives].profile = 0;
	p->n_interactives++;
	return 0;
}

static bool
valid_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static int
parse_command(struct mw_policy *p, char **tok, int n, char *err, size_t errlen)
{
	struct mw_command_grant c;
	memset(&c, 0, sizeof(c));
	c.timeout_ms = 5000;
	c.output_bytes = 64 * 1024;
	if (n < 3)
		return fail(err, errlen, "usage: command NAME [timeout=T] [output=SIZE] [args=N] /abs/path [ARG...]");
	if (!valid_name(tok[1]))
		return fail(err, errlen, "bad command name '%s'", tok[1]);
	if (mw_policy_command(p, tok[1]) != NULL)
		return fail(err, errlen, "command '%s' defined twice", tok[1]);
	int i = 2;
	for (; i < n && tok[i][0] != '/'; i++) {
		char *eq = strchr(tok[i], '=');
		uint64_t v;
		if (eq == NULL)
			return fail(err, errlen, "command %s: expected an absolute path or an option, got '%s'",
			    tok[1], tok[i]);
		*eq = '\0';
		if (strcmp(tok[i], "timeout") == 0 && mw_parse_duration_ms(eq + 1, &v) == 0 &&
		    v > 0 && v <= 3600000)
			c.timeout_ms = (uint32_t)v;
		else if (strcmp(tok[i], "output") == 0 && mw_parse_size(eq + 1, &v) == 0 &&
		    v > 0 && v <= 512 * 1024)
			c.output_bytes = (uint32_t)v;
		else if (strcmp(tok[i], "args") == 0 && mw_parse_size(eq + 1, &v) == 0 && v <= 16)
			c.max_args = (uint32_t)v;
		else
			return fail(err, errlen, "command %s: bad option %s=%s", tok[1], tok[i], eq + 1);
	}
	if (i >= n)
		return fail(err, errlen, "command %s: no absolute program path", tok[1]);
	struct stat st;
	if (stat(tok[i], &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return fail(err, errlen, "command %s: %s is not an executable file", tok[1], tok[i]);
	struct mw_command_grant *nc = realloc(p->commands, (p->n_commands + 1) * sizeof(*nc));
	if (nc == NULL)
		return fail(err, errlen, "out of memory");
	p->commands = nc;
	c.name = strdup(tok[1]);
	c.argv = calloc((size_t)(n - i), sizeof(char *));
	if (c.name == NULL || c.argv == NULL) {
		command_free(&c);
		return fail(err, errlen, "out of memory");
	}
	for (; i < n; i++)
		if ((c.argv[c.argc++] = strdup(tok[i])) == NULL) {
			command_free(&c);
			return fail(err, errlen, "out of memory");
		}
	p->commands[p->n_commands++] = c;
	return 0;
}

static int
parse_limits(struct mw_limits *l, char **tok, int n, char *err, size_t errlen)
{
	if (n < 2)
		return fail(err, errlen, "usage: limits KEY=VALUE ...");
	for (int i = 1; i < n; i++) {
		char *eq = strchr(tok[i], '=');
		if (eq == NULL)
			return fail(err, errlen, "expected KEY=VALUE, got '%s'", tok[i]);
		*eq = '\0';
		if (mw_limit_set(l, tok[i], eq + 1, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* A profile line (inside `profile NAME`). */
static int
parse_profile_line(struct mw_policy *p, struct mw_profile *pr, char **tok, int n,
    char *err, size_t errlen)
{
	const char *k = tok[0];
	uint64_t v;
	if (strcmp(k, "read") == 0 || strcmp(k, "write") == 0) {
		if (n != 2)
			return fail(err, errlen, "usage: %s /absolute/directory", k);
		return mw_grant_add_path(&pr->grants, k[0] == 'w', tok[1], err, errlen);
	}
	if (strcmp(k, "exec") == 0) {
		if (n < 2)
			return fail(err, errlen, "usage: exec COMMAND...");
		for (int i = 1; i < n; i++) {
			const struct mw_command_grant *c = mw_policy_command(p, tok[i]);
			if (c == NULL)
				return fail(err, errlen, "exec: no command '%s' is defined above", tok[i]);
			if (mw_grant_add_command(&pr->grants, c) != 0)
				return fail(err, errlen, "out of memory");
		}
		return 0;
	}
	if (strcmp(k, "sys") == 0 && n == 1) {
		pr->grants.sys = true;
		return 0;
	}
	if (strcmp(k, "kv") == 0 && n == 1) {
		pr->grants.kv = true;
		return 0;
	}
	if (strcmp(k, "sleep") == 0) {
		if (n != 2 || mw_parse_duration_ms(tok[1], &v) != 0 || v == 0 || v > 3600000)
			return fail(err, errlen, "usage: sleep DURATION (at most 1h)");
		pr->grants.sleep_max_ms = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "limits") == 0)
		return parse_limits(&pr->limits, tok, n, err, errlen);
	if (strcmp(k, "args") == 0) {
		/* `args` alone: no argument at all; `args a b`: only those */
		pr->args_restricted = true;
		for (int i = 1; i < n; i++) {
			char probe[MW_ARG_NAME_MAX + 8];
			struct mw_job_args one;
			memset(&one, 0, sizeof(one));
			snprintf(probe, sizeof(probe), "%s=", tok[i]);
			if (strlen(tok[i]) > MW_ARG_NAME_MAX ||
			    mw_job_args_add_spec(&one, probe, NULL, 0) != 0)
				return fail(err, errlen, "args: '%s' is not an argument name "
				    "([a-z_][a-z0-9_]*, at most %d bytes)", tok[i], MW_ARG_NAME_MAX);
			mw_job_args_free(&one);
			if (push_str(&pr->arg_names, &pr->n_arg_names, tok[i]) != 0)
				return fail(err, errlen, "out of memory");
		}
		return 0;
	}
	return fail(err, errlen, "unknown profile setting '%s'", k);
}

/* Records where the grant parse_profile_line() just added came from. */
static int
note_path_line(struct mw_policy *p, size_t profile, bool write, unsigned line,
    const char *given, char *err, size_t errlen)
{
	const struct mw_grants *g = &p->profiles[profile].grants;
	struct mw_policy_path_line *nl = realloc(p->path_lines,
	    (p->n_path_lines + 1) * sizeof(*nl));

	if (nl == NULL)
		return fail(err, errlen, "out of memory");
	p->path_lines = nl;
	nl = &nl[p->n_path_lines];
	nl->line = line;
	nl->write = write;
	nl->profile = profile;
	nl->index = (write ? g->n_fs_write : g->n_fs_read) - 1;
	if ((nl->given = strdup(given)) == NULL)
		return fail(err, errlen, "out of memory");
	p->n_path_lines++;
	return 0;
}

char *
mw_path_canonical(const char *path)
{
	char real[PATH_MAX], *dir, *slash, *base, *out = NULL;
	size_t dl;

	if (path == NULL || path[0] == '\0') {
		errno = EINVAL;
		return NULL;
	}
	if (realpath(path, real) != NULL)
		return strdup(real);
	if (errno != ENOENT)
		return NULL;	/* fail closed: unreadable is not "absent" */
	/* absent: canonicalise the directory, keep the last component */
	if ((dir = strdup(path)) == NULL)
		return NULL;
	while ((dl = strlen(dir)) > 1 && dir[dl - 1] == '/')
		dir[dl - 1] = '\0';
	if ((slash = strrchr(dir, '/')) == NULL) {
		/* relative, one component: it lives in the working directory */
		base = dir;
		if ((dir = strdup(".")) == NULL) {
			free(base);
			return NULL;
		}
	} else {
		*slash = '\0';
		base = strdup(slash + 1);
		if (slash == dir) {
			dir[0] = '/';
			dir[1] = '\0';
		}
	}
	if (base == NULL || base[0] == '\0' || strcmp(base, ".") == 0 ||
	    strcmp(base, "..") == 0) {
		if (base != NULL)
			errno = EINVAL;
		goto out;
	}
	{
		char *cdir = mw_path_canonical(dir);

		if (cdir == NULL)
			goto out;
		if (asprintf(&out, "%s%s%s", cdir, strcmp(cdir, "/") == 0 ? "" : "/",
		    base) < 0)
			out = NULL;
		free(cdir);
	}
out:
	free(dir);
	free(base);
	return out;
}

/* Whether canonical path `in` equals `dir` or lies below it. */
static bool
path_within(const char *in, const char *dir)
{
	size_t l = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return true;
	return strncmp(in, dir, l) == 0 && (in[l] == '\0' || in[l] == '/');
}

int
mw_policy_check_protected(const struct mw_policy *p,
    const struct mw_protected_path *paths, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->n_path_lines; i++) {
		const struct mw_policy_path_line *l = &p->path_lines[i];
		const struct mw_grants *g = &p->profiles[l->profile].grants;
		const char *grant = l->write ? g->fs_write[l->index] : g->fs_read[l->index];
		const char *kw = l->write ? "write" : "read";

		for (size_t j = 0; j < n; j++) {
			const char *pp = paths[j].path;

			if (pp == NULL || pp[0] != '/')
				return fail(err, errlen, "%s: protected path '%s' (%s) is not "
				    "absolute", p->file ? p->file : "policy", pp ? pp : "(null)",
				    paths[j].what);
			if (strcmp(grant, pp) == 0)
				return fail(err, errlen, "%s:%u: %s %s is the agent's %s %s",
				    p->file, l->line, kw, l->given, paths[j].what, pp);
			if (path_within(pp, grant))
				return fail(err, errlen, "%s:%u: %s %s would expose the agent's "
				    "%s %s", p->file, l->line, kw, l->given, paths[j].what, pp);
			if (path_within(grant, pp))
				return fail(err, errlen, "%s:%u: %s %s lies inside the agent's "
				    "%s %s", p->file, l->line, kw, l->given, paths[j].what, pp);
		}
	}
	return 0;
}

/* A profile named by an allow/interactive line, resolved at the end. */
struct profile_ref {
	bool interactive;
	size_t index;			/* into allows or interactives */
	unsigned line;
	char name[65];
};

int
mw_policy_parse(const char *text, size_t len, const char *name,
    struct mw_policy *p, char *err, size_t errlen)
{
	struct profile_ref *refs = NULL;
	size_t nrefs = 0;
	struct mw_buf b;
	const uint8_t *lp;
	size_t ll;
	unsigned lineno = 0;
	char line[4096], why[512];
	struct mw_profile *cur = NULL;
	bool limits_seen_in_profiles = false;

	memset(p, 0, sizeof(*p));
	mw_limits_default(&p->limits);
	if ((p->file = strdup(name)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -1;
	}
	mw_buf_view(&b, text, len);
	while (mw_buf_get_line(&b, &lp, &ll) == 0) {
		lineno++;
		if (ll >= sizeof(line) || memchr(lp, '\0', ll) != NULL) {
			snprintf(err, errlen, "%s:%u: line too long or contains NUL", name, lineno);
			goto bad;
		}
		memcpy(line, lp, ll);
		line[ll] = '\0';
		char *tok[MAX_TOKENS];
		int n = tokenize(line, tok, MAX_TOKENS);
		if (n < 0) {
			snprintf(err, errlen, "%s:%u: %s", name, lineno,
			    n == -1 ? "too many words" : "unterminated quote");
			goto bad;
		}
		if (n == 0)
			continue;
		int r = 0;
		if (strcmp(tok[0], "profile") == 0) {
			if (n != 2 || !valid_name(tok[1])) {
				r = fail(why, sizeof(why), "usage: profile NAME");
			} else if (mw_policy_profile(p, tok[1]) != NULL) {
				r = fail(why, sizeof(why), "profile '%s' defined twice", tok[1]);
			} else {
				struct mw_profile *np = realloc(p->profiles,
				    (p->n_profiles + 1) * sizeof(*np));
				if (np == NULL) {
					r = fail(why, sizeof(why), "out of memory");
				} else {
					p->profiles = np;
					cur = &np[p->n_profiles++];
					memset(cur, 0, sizeof(*cur));
					cur->limits = p->limits;
					if ((cur->name = strdup(tok[1])) == NULL)
						r = fail(why, sizeof(why), "out of memory");
				}
			}
		} else if (strcmp(tok[0], "allow") == 0 ||
		    strcmp(tok[0], "interactive") == 0) {
			bool inter = tok[0][0] == 'i';
			const char *pname = inter ? (n == 3 ? tok[2] : "") : (n >= 4 ? tok[3] : "");
			struct profile_ref *nr;
			r = inter ? parse_interactive(p, tok, n, why, sizeof(why)) :
			    parse_allow(p, tok, n, why, sizeof(why));
			if (r == 0 && !valid_name(pname))
				r = fail(why, sizeof(why), "bad profile name '%s'", pname);
			if (r == 0 && (nr = realloc(refs, (nrefs + 1) * sizeof(*nr))) == NULL)
				r = fail(why, sizeof(why), "out of memory");
			else if (r == 0) {
				refs = nr;
				refs[nrefs].interactive = inter;
				refs[nrefs].index = inter ? p->n_interactives - 1 : p->n_allows - 1;
				refs[nrefs].line = lineno;
				snprintf(refs[nrefs].name, sizeof(refs[nrefs].name), "%s", pname);
				nrefs++;
			}
		} else if (cur == NULL && strcmp(tok[0], "command") == 0) {
			r = parse_command(p, tok, n, why, sizeof(why));
		} else if (cur == NULL && strcmp(tok[0], "limits") == 0) {
			r = parse_limits(&p->limits, tok, n, why, sizeof(why));
		} else if (cur != NULL) {
			if (strcmp(tok[0], "command") == 0)
				r = fail(why, sizeof(why), "commands are defined before the first profile");
			else
				r = parse_profile_line(p, cur, tok, n, why, sizeof(why));
			if (r == 0 && (strcmp(tok[0], "read") == 0 ||
			    strcmp(tok[0], "write") == 0))
				r = note_path_line(p, (size_t)(cur - p->profiles),
				    tok[0][0] == 'w', lineno, tok[1], why, sizeof(why));
			limits_seen_in_profiles |= strcmp(tok[0], "limits") == 0;
		} else {
			r = fail(why, sizeof(why), "unknown setting '%s'", tok[0]);
		}
		if (r != 0) {
			snprintf(err, errlen, "%s:%u: %s", name, lineno, why);
			goto bad;
		}
	}
	(void)limits_seen_in_profiles;
	for (size_t i = 0; i < nrefs; i++) {
		size_t idx;
		if (profile_index(p, refs[i].name, &idx) != 0) {
			snprintf(err, errlen, "%s:%u: no profile '%s' in this file",
			    name, refs[i].line, refs[i].name);
			goto bad;
		}
		if (refs[i].interactive)
			p->interactives[refs[i].index].profile = idx;
		else
			p->allows[refs[i].index].profile = idx;
	}
	free(refs);
	return 0;
bad:
	free(refs);
	mw_policy_free(p);
	return -1;
}

int
mw_policy_load(const char *path, struct mw_policy *p, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	char *buf = malloc(MAX_POLICY_BYTES + 1);
	if (buf == NULL) {
		fclose(f);
		return fail(err, errlen, "out of memory");
	}
	size_t n = fread(buf, 1, MAX_POLICY_BYTES + 1, f);
	int rerr = ferror(f);
	fclose(f);
	if (rerr || n > MAX_POLICY_BYTES) {
		free(buf);
		return fail(err, errlen, "%s: %s", path, rerr ? "read error" : "larger than 1 MiB");
	}
	int r = mw_policy_parse(buf, n, path, p, err, errlen);
	free(buf);
	return r;
}

bool
mw_profile_accepts_arg(const struct mw_profile *pr, const char *name)
{
	if (!pr->args_restricted)
		return true;
	for (uint32_t i = 0; i < pr->n_arg_names; i++)
		if (strcmp(pr->arg_names[i], name) == 0)
			return true;
	return false;
}
