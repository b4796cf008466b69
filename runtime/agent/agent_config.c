/*
 * agent_config.c: the agent's configuration file (spec/agent.md).
 *
 * One `key = value` file holds the XMPP account (the keys mw_omemo_account
 * reads) and the agent's own settings.  Unlike the account reader, this
 * parser knows every key: an unknown or repeated key, a bad value or a
 * missing required setting refuses the whole file with "FILE:LINE: reason"
 * and the agent does not start (fail closed: a typo must not silently
 * disable a setting).
 *
 * Paths follow the account-file rules (mw_omemo_account_path: ~ expanded,
 * relative to the file's directory).  Everything that can be checked
 * without the network is checked here, so `--check` and a start refuse the
 * same files: policy and allowed_signers readable, the directories of db
 * and state_dir existing and writable, and (by the account loader, with
 * the line) password_file readable, ca_file holding a certificate, the pin
 * 64 hex digits.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "runtime/agent/agent.h"
#include "sandbox/mw_sandbox.h"
#include "wire/mw_wire.h"

#define MAX_CONFIG_BYTES (64 * 1024)

static int
cfail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static const char *const account_keys[] = {
	"jid", "password", "password_file", "host", "port", "ca_file",
	"cert_pin_sha256", "db", "allow_plaintext", NULL
};
static const char *const agent_keys[] = {
	"allowed_signers", "policy", "state_dir", "max_output", "clock_skew",
	"parallel", "queue", "shutdown_grace", "rate_limit", "rate_burst",
	"durability", "new_session_rate", "new_session_burst",
	"new_session_rate_global", "new_session_burst_global", "omemo_recheck",
	"idle_workers", "failover", "reconnect_spread", "command_uids", NULL
};

static int
key_index(const char *const *keys, const char *k)
{
	for (int i = 0; keys[i] != NULL; i++)
		if (strcmp(keys[i], k) == 0)
			return i;
	return -1;
}

/* Whether dir is an existing directory this user may create files in. */
static int
check_dir(const char *dir, const char *what, char *why, size_t wl)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return cfail(why, wl, "%s: directory %s: %s", what, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cfail(why, wl, "%s: %s is not a directory", what, dir);
	if (access(dir, W_OK | X_OK) != 0)
		return cfail(why, wl, "%s: directory %s: %s (the agent creates files "
		    "there)", what, dir, strerror(errno));
	return 0;
}

/* The directory of path must exist and be writable; path itself, when it
 * exists, must be a regular file this user can read and write. */
static int
check_writable_file(const char *path, const char *what, char *why, size_t wl)
{
	struct stat st;
	char *d = strdup(path);
	int rc;

	if (d == NULL)
		return cfail(why, wl, "out of memory");
	rc = check_dir(dirname(d), what, why, wl);
	free(d);
	if (rc != 0)
		return rc;
	if (stat(path, &st) != 0)
		return errno == ENOENT ? 0 : cfail(why, wl, "%s: %s: %s", what, path,
		    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return cfail(why, wl, "%s: %s is not a regular file", what, path);
	if (access(path, R_OK | W_OK) != 0)
		return cfail(why, wl, "%s: %s: %s", what, path, strerror(errno));
	return 0;
}

/*
 * A path setting, resolved like every path of an account file
 * (mw_omemo_account_path: ~ expanded, relative to the file's directory).
 */
static int
set_path(char **dst, const char *file, const char *k, const char *v,
    bool must_read, char *why, size_t wl)
{
	struct stat st;
	char *p = NULL;

	if (mw_omemo_account_path(file, v, &p) != 0)
		return cfail(why, wl, "%s: '%s' is not a usable path", k, v);
	if (must_read && (stat(p, &st) != 0 || access(p, R_OK) != 0)) {
		cfail(why, wl, "%s: %s: %s", k, p, strerror(errno));
		free(p);
		return -1;
	}
	if (must_read && !S_ISREG(st.st_mode)) {
		cfail(why, wl, "%s: %s is not a regular file", k, p);
		free(p);
		return -1;
	}
	if (!must_read) {
		/* state_dir: an existing directory, or one we can create */
		if (stat(p, &st) == 0) {
			if (check_dir(p, k, why, wl) != 0) {
				free(p);
				return -1;
			}
		} else {
			char *d = strdup(p);
			int rc = d == NULL ? cfail(why, wl, "out of memory") :
			    check_dir(dirname(d), k, why, wl);

			free(d);
			if (rc != 0) {
				free(p);
				return -1;
			}
		}
	}
	*dst = p;
	return 0;
}

static int
set_uint(const char *v, uint64_t lo, uint64_t hi, uint64_t *out, char *why,
    size_t wl)
{
	char *end;

	errno = 0;
	if (*v < '0' || *v > '9')
		return cfail(why, wl, "'%s' is not a number", v);
	*out = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || *out < lo || *out > hi)
		return cfail(why, wl, "'%s' is not a number from %llu to %llu", v,
		    (unsigned long long)lo, (unsigned long long)hi);
	return 0;
}

/* One agent setting. */
/*
 * `failover = HOST[:PORT] ...`: servers tried after `host` when a
 * connection attempt fails, in order and round again (spec/agent.md).
 * Separated by spaces or commas; an IPv6 address in brackets when it has
 * a port ([::1]:5222); without a port, the `port` setting (or 5222).
 */
static int
parse_failover(struct mw_agent_config *c, const char *v, char *why, size_t wl)
{
	char buf[1024], *save = NULL;

	if (strlen(v) >= sizeof(buf))
		return cfail(why, wl, "failover: too long");
	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, " \t,", &save); t != NULL; t = strtok_r(NULL, " \t,", &save)) {
		char *host = t, *port = NULL;
		uint64_t p = 0;

		if (c->n_failover == MW_AGENT_FAILOVER_MAX)
			return cfail(why, wl, "failover: at most %d servers", MW_AGENT_FAILOVER_MAX);
		if (*t == '[') {
			char *close = strchr(t, ']');
			if (close == NULL || (close[1] != '\0' && close[1] != ':'))
				return cfail(why, wl, "failover: '%s' is not [IPv6]:PORT", t);
			host = t + 1;
			*close = '\0';
			if (close[1] == ':')
				port = close + 2;
		} else if ((port = strchr(t, ':')) != NULL && strchr(port + 1, ':') != NULL) {
			port = NULL;	/* an IPv6 address without a port */
		} else if (port != NULL) {
			*port++ = '\0';
		}
		if (*host == '\0' || strpbrk(host, "/@") != NULL)
			return cfail(why, wl, "failover: '%s' is not a host name or address", t);
		if (port != NULL && set_uint(port, 1, 65535, &p, why, wl) != 0)
			return cfail(why, wl, "failover: port of '%s' is not a number from 1 to 65535",
			    host);
		if ((c->failover_host[c->n_failover] = strdup(host)) == NULL)
			return cfail(why, wl, "out of memory");
		c->failover_port[c->n_failover++] = (unsigned short)p;
	}
	if (c->n_failover == 0)
		return cfail(why, wl, "failover: no server");
	return 0;
}

static bool
loopback(const char *h)
{
	return strcmp(h, "127.0.0.1") == 0 || strcmp(h, "::1") == 0 ||
	    strcmp(h, "localhost") == 0;
}

static int
agent_setting(struct mw_agent_config *c, const char *file, const char *k,
    const char *v, char *why, size_t wl)
{
	uint64_t n;

	if (strcmp(k, "allowed_signers") == 0)
		return set_path(&c->allowed_signers, file, k, v, true, why, wl);
	if (strcmp(k, "policy") == 0)
		return set_path(&c->policy, file, k, v, true, why, wl);
	if (strcmp(k, "state_dir") == 0)
		return set_path(&c->state_dir, file, k, v, false, why, wl);
	if (strcmp(k, "max_output") == 0) {
		if (mw_parse_size(v, &n) != 0 || n < 1024 || n > 96 * 1024)
			return cfail(why, wl, "max_output: '%s' is not a size from 1K to 96K", v);
		c->max_output = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "clock_skew") == 0 || strcmp(k, "shutdown_grace") == 0) {
		if (mw_parse_duration_ms(v, &n) != 0 || n > 3600 * 1000)
			return cfail(why, wl, "%s: '%s' is not a duration up to 1h", k, v);
		if (k[0] == 'c')
			c->clock_skew_s = (uint32_t)(n / 1000);
		else
			c->shutdown_grace_ms = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "parallel") == 0) {
		if (set_uint(v, 1, 64, &n, why, wl) != 0)
			return -1;
		c->parallel = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "queue") == 0) {
		if (set_uint(v, 0, 4096, &n, why, wl) != 0)
			return -1;
		c->queue_max = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "rate_limit") == 0) {
		/* jobs per minute per sender JID; 0 turns it off */
		if (set_uint(v, 0, 1000000, &n, why, wl) != 0)
			return -1;
		c->rate_per_minute = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "rate_burst") == 0) {
		if (set_uint(v, 1, 100000, &n, why, wl) != 0)
			return -1;
		c->rate_burst = (unsigned)n;
		return 0;
	}
	if (strncmp(k, "new_session_", 12) == 0) {
		/* budgets of new OMEMO sessions (X3DH, a prekey each), checked
		 * before decrypting: never off, at least 1 */
		if (set_uint(v, 1, 100000, &n, why, wl) != 0)
			return -1;
		if (strcmp(k, "new_session_rate") == 0)
			c->new_session_per_minute = (uint32_t)n;
		else if (strcmp(k, "new_session_burst") == 0)
			c->new_session_burst = (unsigned)n;
		else if (strcmp(k, "new_session_rate_global") == 0)
			c->new_session_global_per_minute = (uint32_t)n;
		else
			c->new_session_global_burst = (unsigned)n;
		return 0;
	}
	if (strcmp(k, "omemo_recheck") == 0) {
		/* how often the published device list and bundle are fetched
		 * back; `off` never */
		if (strcmp(v, "off") == 0) {
			c->omemo_recheck_ms = 0;
			return 0;
		}
		if (mw_parse_duration_ms(v, &n) != 0 || n < 1000 || n > 7 * 86400 * 1000ULL)
			return cfail(why, wl, "omemo_recheck: '%s' is not a duration from 1s to 7d, "
			    "or off", v);
		c->omemo_recheck_ms = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "reconnect_spread") == 0) {
		/* extra random delay, up to this, before reconnecting after a
		 * lost connection */
		if (mw_parse_duration_ms(v, &n) != 0 || n > 600 * 1000)
			return cfail(why, wl, "reconnect_spread: '%s' is not a duration up to 10m", v);
		c->reconnect_spread_ms = (uint32_t)n;
		return 0;
	}
	if (strcmp(k, "idle_workers") == 0) {
		/* pre-forked confined workers kept ready; 0: fork per job */
		if (set_uint(v, 0, 64, &n, why, wl) != 0)
			return -1;
		c->idle_workers = (int)n;
		return 0;
	}
	if (strcmp(k, "failover") == 0)
		return parse_failover(c, v, why, wl);
	if (strcmp(k, "command_uids") == 0) {
		/* checked against parallel and the system's accounts once the
		 * whole file is read */
		if (mw_sandbox_command_uids_parse(v, &c->command_uid_first,
		    &c->command_uid_count) != 0)
			return cfail(why, wl, "command_uids: '%s' is not FIRST-LAST (two uids)", v);
		return 0;
	}
	if (strcmp(k, "durability") == 0) {
		if (strcmp(v, "full") != 0 && strcmp(v, "normal") != 0)
			return cfail(why, wl, "durability is full or normal");
		c->durability_full = strcmp(v, "full") == 0;
		return 0;
	}
	return cfail(why, wl, "unknown setting '%s'", k);
}

static void
config_defaults(struct mw_agent_config *c)
{
	memset(c, 0, sizeof(*c));
	c->max_output = 64 * 1024;
	c->clock_skew_s = 60;
	c->parallel = 2;
	c->queue_max = 64;
	c->shutdown_grace_ms = 10000;
	c->rate_per_minute = 600;
	c->rate_burst = 60;
	c->durability_full = true;
	c->new_session_per_minute = 10;
	c->new_session_burst = 5;
	c->new_session_global_per_minute = 60;
	c->new_session_global_burst = 20;
	c->omemo_recheck_ms = 3600 * 1000;
	c->idle_workers = -1;		/* as many as parallel */
	c->reconnect_spread_ms = 0;	/* off: a lone device reconnects at once */
}

int
mw_agent_config_load(const char *path, struct mw_agent_config *c, char *err,
    size_t errlen)
{
	FILE *f;
	char *text = NULL, line[4096], why[512];
	size_t len;
	struct mw_buf b;
	const uint8_t *lp;
	size_t ll;
	unsigned lineno = 0;
	unsigned seen_account[16] = { 0 }, seen_agent[32] = { 0 };
	int rc;

	config_defaults(c);
	if ((f = fopen(path, "re")) == NULL)
		return cfail(err, errlen, "%s: %s", path, strerror(errno));
	if ((text = malloc(MAX_CONFIG_BYTES + 1)) == NULL) {
		fclose(f);
		return cfail(err, errlen, "%s: out of memory", path);
	}
	len = fread(text, 1, MAX_CONFIG_BYTES + 1, f);
	rc = ferror(f);
	fclose(f);
	if (rc || len > MAX_CONFIG_BYTES) {
		free(text);
		return cfail(err, errlen, "%s: %s", path, rc ? "read error" : "larger than 64 KiB");
	}
	mw_buf_view(&b, text, len);
	while (mw_buf_get_line(&b, &lp, &ll) == 0) {
		char *k, *v, *eq;
		int ai, gi;

		lineno++;
		if (ll >= sizeof(line) || memchr(lp, '\0', ll) != NULL) {
			cfail(err, errlen, "%s:%u: line too long or contains NUL", path, lineno);
			goto bad;
		}
		memcpy(line, lp, ll);
		line[ll] = '\0';
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			cfail(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
			goto bad;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if (*v == '\0') {
			cfail(err, errlen, "%s:%u: %s has no value", path, lineno, k);
			goto bad;
		}
		ai = key_index(account_keys, k);
		gi = key_index(agent_keys, k);
		if ((ai >= 0 && seen_account[ai]) || (gi >= 0 && seen_agent[gi])) {
			cfail(err, errlen, "%s:%u: %s set twice (first on line %u)", path,
			    lineno, k, ai >= 0 ? seen_account[ai] : seen_agent[gi]);
			goto bad;
		}
		if (ai >= 0) {
			seen_account[ai] = lineno;
			/* checked here to name the line; read by the account loader */
			if (strcmp(k, "jid") == 0 && (strchr(v, '@') == NULL ||
			    strchr(v, '/') != NULL || strpbrk(v, " \t") != NULL)) {
				cfail(err, errlen, "%s:%u: jid must be a bare JID (user@domain)",
				    path, lineno);
				goto bad;
			}
			if (strcmp(k, "db") == 0) {
				char *db = NULL;

				rc = mw_omemo_account_path(path, v, &db) != 0 ?
				    cfail(why, sizeof(why), "db: '%s' is not a usable path", v) :
				    check_writable_file(db, "db", why, sizeof(why));
				free(db);
				if (rc != 0) {
					cfail(err, errlen, "%s:%u: %s", path, lineno, why);
					goto bad;
				}
			}
			if (strcmp(k, "port") == 0 && set_uint(v, 1, 65535, &(uint64_t){0},
			    why, sizeof(why)) != 0) {
				cfail(err, errlen, "%s:%u: port: %s", path, lineno, why);
				goto bad;
			}
			if (strcmp(k, "allow_plaintext") == 0 && strcmp(v, "yes") != 0 &&
			    strcmp(v, "no") != 0 && strcmp(v, "true") != 0 &&
			    strcmp(v, "false") != 0) {
				cfail(err, errlen, "%s:%u: allow_plaintext is yes or no", path, lineno);
				goto bad;
			}
			continue;
		}
		if (gi < 0) {
			cfail(err, errlen, "%s:%u: unknown setting '%s'", path, lineno, k);
			goto bad;
		}
		seen_agent[gi] = lineno;
		if (agent_setting(c, path, k, v, why, sizeof(why)) != 0) {
			cfail(err, errlen, "%s:%u: %s", path, lineno, why);
			goto bad;
		}
	}
	free(text);
	text = NULL;
	if (!seen_account[key_index(account_keys, "jid")] ||
	    !seen_account[key_index(account_keys, "db")])
		return cfail(err, errlen, "%s: jid and db are required", path),
		    mw_agent_config_free(c), -1;
	if (!seen_account[key_index(account_keys, "password")] ==
	    !seen_account[key_index(account_keys, "password_file")])
		return cfail(err, errlen, "%s: set exactly one of password and password_file",
		    path), mw_agent_config_free(c), -1;
	if (c->allowed_signers == NULL || c->policy == NULL)
		return cfail(err, errlen, "%s: allowed_signers and policy are required",
		    path), mw_agent_config_free(c), -1;
	if (mw_omemo_account_load_err(&c->account, path, err, errlen) != 0)
		return mw_agent_config_free(c), -1;
	if (c->n_failover > 0 && c->account.host == NULL)
		return cfail(err, errlen, "%s:%u: failover needs host (the first server)", path,
		    seen_agent[key_index(agent_keys, "failover")]), mw_agent_config_free(c), -1;
	for (unsigned i = 0; i < c->n_failover; i++)
		if (c->account.allow_plaintext && !loopback(c->failover_host[i]))
			return cfail(err, errlen, "%s:%u: allow_plaintext = yes needs every failover "
			    "server on 127.0.0.1, ::1 or localhost (test servers only), not %s", path,
			    seen_agent[key_index(agent_keys, "failover")], c->failover_host[i]),
			    mw_agent_config_free(c), -1;
	if (c->command_uid_count != 0 && mw_sandbox_command_uids_check(c->command_uid_first,
	    c->command_uid_count, c->parallel, true, why, sizeof(why)) != 0)
		return cfail(err, errlen, "%s:%u: command_uids: %s", path,
		    seen_agent[key_index(agent_keys, "command_uids")], why),
		    mw_agent_config_free(c), -1;
	if (c->state_dir == NULL) {
		char *d = strdup(c->account.db), *dir;

		if (d == NULL)
			return cfail(err, errlen, "out of memory"), mw_agent_config_free(c), -1;
		dir = dirname(d);
		c->state_dir = strdup(dir);
		free(d);
		if (c->state_dir == NULL)
			return cfail(err, errlen, "out of memory"), mw_agent_config_free(c), -1;
	}
	return 0;
bad:
	free(text);
	mw_agent_config_free(c);
	return -1;
}

void
mw_agent_config_free(struct mw_agent_config *c)
{
	for (unsigned i = 0; i < c->n_failover; i++)
		free(c->failover_host[i]);
	c->n_failover = 0;
	mw_omemo_account_free(&c->account);
	free(c->allowed_signers);
	free(c->policy);
	free(c->state_dir);
	memset(c, 0, sizeof(*c));
}

char *
mw_config_value(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[4096], *v = NULL;

	if (f == NULL)
		return NULL;
	while (v == NULL && fgets(line, sizeof(line), f) != NULL) {
		char *k = line, *eq;

		while (*k == ' ' || *k == '\t')
			k++;
		if ((eq = strchr(k, '=')) == NULL || *k == '#')
			continue;
		*eq = '\0';
		if (strcmp(trim(k), key) != 0)
			continue;
		k = eq + 1;
		k[strcspn(k, "\r\n")] = '\0';
		v = strdup(trim(k));
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	return v;
}

void
mw_protected_paths_free(struct mw_protected_path *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].path);
		v[i].path = NULL;
	}
}

int
mw_agent_protected_paths(const char *config_path,
    const struct mw_agent_config *c, struct mw_protected_path out[MW_PROTECTED_MAX],
    size_t *n, char *err, size_t errlen)
{
	char *pwfile = mw_config_value(config_path, "password_file");
	char *wal = NULL, *shm = NULL;
	struct {
		const char *path;
		const char *what;
	} want[] = {
		{ c->account.db, "identity database" },
		{ NULL, "identity database WAL" },
		{ NULL, "identity database shared memory file" },
		{ pwfile, "password file" },
		{ c->state_dir, "state directory" },
		{ c->allowed_signers, "allowed_signers file" },
		{ c->policy, "policy file" },
		{ config_path, "configuration file" },
	};
	int rc = -1;

	*n = 0;
	if (asprintf(&wal, "%s-wal", c->account.db) < 0) {
		wal = NULL;
		goto nomem;
	}
	if (asprintf(&shm, "%s-shm", c->account.db) < 0) {
		shm = NULL;
		goto nomem;
	}
	want[1].path = wal;
	want[2].path = shm;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (want[i].path == NULL)
			continue;	/* no password_file: the password is in config */
		if (*n >= MW_PROTECTED_MAX)
			goto nomem;
		if ((out[*n].path = mw_path_canonical(want[i].path)) == NULL) {
			cfail(err, errlen, "%s: %s %s: %s", config_path, want[i].what,
			    want[i].path, strerror(errno));
			goto out;
		}
		out[*n].what = want[i].what;
		(*n)++;
	}
	rc = 0;
	goto out;
nomem:
	cfail(err, errlen, "%s: out of memory", config_path);
out:
	if (rc != 0) {
		mw_protected_paths_free(out, *n);
		*n = 0;
	}
	free(pwfile);
	free(wal);
	free(shm);
	return rc;
}
