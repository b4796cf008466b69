/*
 * cmd_send.c: `moonwire send`, the operator's side of a job: sign a
 * program for each target agent, encrypt it with OMEMO to the agent's
 * verified devices, send it, and wait for each result (spec/cli.md).
 *
 * Many --to run in parallel over one connection: every envelope is sent
 * at once and results are printed as they arrive, so a fleet of 50 agents
 * costs one round trip, not 50.  The exit status is that of the first
 * target (in --to order) whose result was not ok, so scripts can rely on
 * `moonwire send` like on `ssh host command`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <strophe.h>

#include "runtime/agent/agent.h"
#include "runtime/fleet/fleet.h"
#include "wire/mw_wire.h"

#define SEND_MAX_GROUPS 64

struct target {
	const char *jid;		/* owned by the target list */
	char job_id[MW_JOB_ID_MAX + 1];
	char *envelope;
	size_t envelope_len;
	bool sent, done;
	int exit;
	int presence;			/* 0 unknown, 1 available, -1 unavailable */
	char iq_error[64];		/* condition of the last IQ error about it */
	char iq_error_text[256];	/* and its <text>, when the server gave one */
	uint64_t running_since_ms;	/* when its composing chat state came; 0: not yet */
};

struct sender {
	struct mw_omemo_account acct;
	sqlite3 *db;
	struct mw_omemo *o;
	xmpp_ctx_t *x;
	xmpp_conn_t *conn;
	struct target *t;
	size_t nt;
	size_t remaining;
	bool json, connected, failed, pin_refused;
	bool progress_tty;		/* stderr is a terminal: show "running N s" */
	bool progress_shown;		/* a progress line is on stderr now */
	uint64_t progress_shown_s;	/* the seconds it shows */
	size_t progress_shown_running;	/* and the number of running targets */
	const char *config;		/* the account file, for hints */
};

static void
send_usage(FILE *f)
{
	fprintf(f,
	    "usage: moonwire send -c CONFIG (--to JID | --targets FILE | --group NAME)...\n"
	    "                     [options] FILE.lua\n"
	    "       moonwire send -c CONFIG --to JID --envelope ENVELOPE\n"
	    "\n"
	    "Signs FILE.lua for each agent, sends it over OMEMO, waits for the results.\n"
	    "\n"
	    "  -c CONFIG           the operator's account file (and its signing_key)\n"
	    "  --to JID            an agent's bare JID; repeat for a fleet (run in parallel)\n"
	    "  --targets FILE      the agents' JIDs from FILE, one a line (# comments)\n"
	    "  --group NAME        the members of the operator's roster group NAME\n"
	    "                      (repeatable; `moonwire fleet` edits the groups)\n"
	    "  --max-targets N     refuse more than N targets (default: max_targets in\n"
	    "                      CONFIG, else 1024); duplicates are folded first\n"
	    "  -k, --key KEY       OpenSSH Ed25519 private key, or KEY.pub held by ssh-agent\n"
	    "                      (default: `signing_key` in CONFIG)\n"
	    "  --ttl DURATION      how long the job stays valid (default 5m)\n"
	    "  --limit KEY=VALUE   ask for a lower limit (repeatable)\n"
	    "  --arg NAME=VALUE    a signed argument the program reads as args.NAME (repeatable)\n"
	    "  --envelope FILE     send an envelope signed elsewhere (`moonwire sign`)\n"
	    "  --timeout DURATION  how long to wait for results (default 60s)\n"
	    "  --json              one JSON object per result, one per line\n"
	    "\n"
	    "The program is compiled locally first: a syntax error is reported with the\n"
	    "file name and nothing is signed or sent (exit 3).  A job whose send timed\n"
	    "out may still run when the agent connects, until its --ttl has passed.\n"
	    "\n"
	    "exit status: that of the first target whose result was not ok (as `moonwire run`),\n"
	    "7 if an agent refused the job, 6 if no result came in time, 2 usage.\n");
}


static int
read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	char *buf;
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "moonwire send: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "moonwire send: %s: not a regular file\n", path);
		fclose(f);
		return -1;
	}
	if ((buf = malloc(max + 2)) == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f) || n > max) {
		fprintf(stderr, "moonwire send: %s: %s\n", path, ferror(f) ?
		    "read error" : "too large");
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- progress: "accepted, running N s" on a terminal ----
 *
 * The agent sends a XEP-0085 <composing/> chat state when it starts a job
 * (spec/agent.md).  It is not encrypted, so it is only ever shown, never
 * trusted: it does not end or change any target's wait. */

static void
progress_clear(struct sender *s)
{
	if (!s->progress_shown)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	s->progress_shown = false;
}

/* Redraws the progress line in place when a job has run over a second. */
static void
progress_update(struct sender *s, uint64_t now)
{
	size_t running = 0;
	uint64_t since = 0;
	const struct target *one = NULL;

	if (!s->progress_tty)
		return;
	for (size_t i = 0; i < s->nt; i++) {
		const struct target *t = &s->t[i];
		if (t->done || t->running_since_ms == 0)
			continue;
		running++;
		one = t;
		if (since == 0 || t->running_since_ms < since)
			since = t->running_since_ms;
	}
	if (running == 0 || now < since + 1000) {
		progress_clear(s);
		return;
	}
	if (s->progress_shown && s->progress_shown_s == (now - since) / 1000 &&
	    s->progress_shown_running == running)
		return;		/* redraw only when the line changes */
	s->progress_shown_s = (now - since) / 1000;
	s->progress_shown_running = running;
	if (running == 1 && s->nt == 1)
		fprintf(stderr, "\r\033[Kmoonwire send: %s: accepted, running %" PRIu64 " s",
		    one->jid, (now - since) / 1000);
	else
		fprintf(stderr, "\r\033[Kmoonwire send: %zu of %zu accepted, running %" PRIu64 " s",
		    running, s->nt, (now - since) / 1000);
	fflush(stderr);
	s->progress_shown = true;
}

/* A <message> with a XEP-0085 chat state from a target: composing marks it
 * running.  1 when st was a chat state (it has no body to look at). */
static int
note_chat_state(struct sender *s, xmpp_stanza_t *st)
{
	xmpp_stanza_t *composing = xmpp_stanza_get_child_by_name_and_ns(st, "composing",
	    "http://jabber.org/protocol/chatstates");
	const char *from = xmpp_stanza_get_from(st);
	size_t bare_len;

	if (composing == NULL || from == NULL)
		return 0;
	bare_len = strcspn(from, "/");
	for (size_t i = 0; i < s->nt; i++) {
		struct target *t = &s->t[i];
		if (!t->done && t->sent && t->running_since_ms == 0 &&
		    strlen(t->jid) == bare_len && strncmp(t->jid, from, bare_len) == 0)
			t->running_since_ms = now_ms();
	}
	return 1;
}

/* ---- results ---- */

static void
print_result(struct sender *s, struct target *t, const struct mw_result_msg *m)
{
	if (s->json) {
		char *j = mw_result_msg_json(m, t->jid);
		if (j != NULL) {
			printf("%s\n", j);
			free(j);
		}
		fflush(stdout);
		return;
	}
	if (s->nt > 1)
		printf("== %s\n", t->jid);
	if (m->refusal != NULL)
		printf("refused: %s: %s\n", m->refusal, m->error ? m->error : "");
	else {
		printf("status: %s\n", m->status);
		if (m->error != NULL)
			printf("error: %s\n", m->error);
	}
	for (int i = 0; i < cJSON_GetArraySize(m->values); i++) {
		cJSON *v = cJSON_GetArrayItem(m->values, i);
		char *p = cJSON_IsString(v) ? NULL : cJSON_PrintUnformatted(v);
		const char *text = cJSON_IsString(v) ? cJSON_GetStringValue(v) : p;

		if (cJSON_GetArraySize(m->values) > 1)
			printf("returned #%d: %s\n", i + 1, text ? text : "?");
		else
			printf("returned: %s\n", text ? text : "?");
		free(p);
	}
	if (m->output_len > 0) {
		printf("output:\n");
		fwrite(m->output, 1, m->output_len, stdout);
		if (m->output[m->output_len - 1] != '\n')
			putchar('\n');
		if (m->output_truncated)
			printf("(output truncated)\n");
	}
	if (m->refusal == NULL)
		printf("usage: cpu %.3f ms, wall %.3f ms, %" PRIu64 " bytes peak Lua memory\n",
		    (double)m->usage.cpu_us / 1000.0, (double)m->usage.wall_us / 1000.0,
		    m->usage.memory_peak);
	fflush(stdout);
}

static void
print_no_answer(const struct target *t)
{
	cJSON *o = cJSON_CreateObject();
	char *j = NULL;

	if (o != NULL && cJSON_AddStringToObject(o, "from", t->jid) != NULL &&
	    cJSON_AddStringToObject(o, "job_id", t->job_id) != NULL &&
	    cJSON_AddStringToObject(o, "status", "no_answer") != NULL)
		j = cJSON_PrintUnformatted(o);
	if (j != NULL)
		printf("%s\n", j);
	free(j);
	cJSON_Delete(o);
	fflush(stdout);
}

static void
target_done(struct sender *s, struct target *t, int exit_status)
{
	if (t->done)
		return;
	t->done = true;
	t->exit = exit_status;
	s->remaining--;
}

static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct sender *s = arg;
	struct mw_omemo_msg m;
	struct mw_result_msg r;
	int rc;

	(void)conn;
	if (xmpp_stanza_get_child_by_name_and_ns(st, "encrypted", MW_OMEMO_NS) == NULL) {
		(void)note_chat_state(s, st);
		return 1;
	}
	rc = mw_omemo_decrypt(s->o, st, &m);
	if (rc == MW_OMEMO_OK)
		rc = mw_omemo_commit(s->o);	/* nothing of ours to add */
	if (rc != MW_OMEMO_OK) {
		/* duplicates: a result the server kept from an earlier run */
		if (rc != MW_OMEMO_DROPPED && rc != MW_OMEMO_E_DUPLICATE)
			fprintf(stderr, "moonwire send: message from %s: %s\n",
			    m.from ? m.from : "?", mw_omemo_strerror(rc));
		mw_omemo_msg_free(&m);
		return 1;
	}
	if (mw_result_message_parse((const char *)m.plaintext, m.len, &r) == 0) {
		for (size_t i = 0; i < s->nt; i++) {
			struct target *t = &s->t[i];

			if (t->done || strcmp(t->jid, m.from) != 0 ||
			    strcmp(t->job_id, r.job_id) != 0)
				continue;
			if (m.trust != MW_OMEMO_TRUST_VERIFIED) {
				fprintf(stderr, "moonwire send: result for %s from an "
				    "unverified device %u of %s: ignored\n", t->job_id,
				    m.device, m.from);
				break;
			}
			progress_clear(s);
			print_result(s, t, &r);
			target_done(s, t, mw_result_msg_exit(&r));
			break;
		}
		mw_result_msg_free(&r);
	}
	mw_omemo_msg_free(&m);
	return 1;
}

/* Remembers the condition of every IQ error (the OMEMO layer reports only
 * that there was one), to say what it means. */
static int
on_iq_error(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct sender *s = arg;
	xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error"), *c;
	const char *from = xmpp_stanza_get_from(st), *cond = "undefined-condition";
	xmpp_stanza_t *text_el = NULL;
	char *text = NULL;
	size_t n;

	if (from == NULL)
		return 1;	/* about our own account */
	for (c = e ? xmpp_stanza_get_children(e) : NULL; c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		const char *ns = xmpp_stanza_get_ns(c), *name = xmpp_stanza_get_name(c);

		if (name == NULL || ns == NULL ||
		    strcmp(ns, "urn:ietf:params:xml:ns:xmpp-stanzas") != 0)
			continue;
		if (strcmp(name, "text") == 0)
			text_el = c;
		else if (strcmp(cond, "undefined-condition") == 0)
			cond = name;
	}
	if (text_el != NULL)
		text = xmpp_stanza_get_text(text_el);
	/* the target's bare JID, or its domain (a server answering for it) */
	n = strcspn(from, "/");
	for (size_t i = 0; i < s->nt; i++) {
		const char *jid = s->t[i].jid, *domain = strchr(jid, '@') + 1;

		if ((strlen(jid) == n && strncmp(jid, from, n) == 0) ||
		    (strlen(domain) == n && strncmp(domain, from, n) == 0)) {
			snprintf(s->t[i].iq_error, sizeof(s->t[i].iq_error), "%s", cond);
			snprintf(s->t[i].iq_error_text, sizeof(s->t[i].iq_error_text), "%s",
			    text != NULL ? text : "");
		}
	}
	if (text != NULL)
		xmpp_free(xmpp_conn_get_context(conn), text);
	return 1;
}

/* Presence of a target, when the operator's account may see it. */
static int
on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *arg)
{
	struct sender *s = arg;
	const char *from = xmpp_stanza_get_from(st), *type = xmpp_stanza_get_type(st);
	size_t n;

	(void)conn;
	if (from == NULL)
		return 1;
	n = strcspn(from, "/");
	for (size_t i = 0; i < s->nt; i++)
		if (strlen(s->t[i].jid) == n && strncmp(s->t[i].jid, from, n) == 0) {
			if (type == NULL)
				s->t[i].presence = 1;
			else if (strcmp(type, "unavailable") == 0 && s->t[i].presence != 1)
				s->t[i].presence = -1;
		}
	return 1;
}

/* What an IQ error condition means for a `send` to t->jid. */
static void
explain_iq_error(const struct sender *s, const struct target *t, char *buf,
    size_t len)
{
	const char *c = t->iq_error, *jid = t->jid, *domain = strchr(jid, '@') + 1;
	const char *own_domain = strchr(s->acct.jid, '@') + 1;
	char text[300] = "";

	if (t->iq_error_text[0] != '\0')
		snprintf(text, sizeof(text), ": %s", t->iq_error_text);
	if (c[0] == '\0')
		snprintf(buf, len, "the server returned an error about %s", jid);
	else if (strcmp(domain, own_domain) != 0 &&
	    (strcmp(c, "remote-server-not-found") == 0 ||
	    strcmp(c, "remote-server-timeout") == 0 || strcmp(c, "not-allowed") == 0 ||
	    strcmp(c, "service-unavailable") == 0))
		snprintf(buf, len, "remote domain %s unreachable (%s%s): check the JID, "
		    "or the servers cannot reach each other", domain, c, text);
	else if (strcmp(c, "item-not-found") == 0 || strcmp(c, "forbidden") == 0)
		/* Prosody answers forbidden alike for an account that does not
		 * exist and one that never published OMEMO keys */
		snprintf(buf, len, "no OMEMO device list published for %s (%s): the "
		    "account does not exist, or the agent has never connected with it",
		    jid, c);
	else if (strcmp(c, "service-unavailable") == 0 ||
	    strcmp(c, "recipient-unavailable") == 0)
		snprintf(buf, len, "no such account %s (%s%s)", jid, c, text);
	else if (strcmp(c, "remote-server-not-found") == 0 ||
	    strcmp(c, "remote-server-timeout") == 0)
		snprintf(buf, len, "remote domain %s unreachable (%s%s)", domain, c, text);
	else
		snprintf(buf, len, "the server answered %s%s about %s", c, text, jid);
}

static struct sender *g_sender;	/* for on_sent's explanation */

/* Whether jid has a cached device whose key this identity verified. */
static bool
has_verified_device(struct sender *s, const char *jid)
{
	struct mw_omemo_device *d = NULL;
	size_t n = 0;
	bool found = false;

	if (mw_omemo_devices(s->o, jid, &d, &n) != 0)
		return true;	/* unknown: do not claim otherwise */
	for (size_t k = 0; k < n; k++)
		if (d[k].has_key && d[k].trust == MW_OMEMO_TRUST_VERIFIED)
			found = true;
	free(d);
	return found;
}

static void
on_sent(struct mw_omemo *o, int err, void *arg)
{
	struct target *t = arg;
	char why[1400];

	(void)o;
	if (err != 0) {
		/* an IQ error not about the target (our own device list on a
		 * first run) with nothing verified: the missing trust is the cause */
		if (err == MW_OMEMO_E_IQ && g_sender != NULL && t->iq_error[0] == '\0' &&
		    !has_verified_device(g_sender, t->jid))
			err = MW_OMEMO_E_NO_DEVICES;
		if (err == MW_OMEMO_E_IQ && g_sender != NULL)
			explain_iq_error(g_sender, t, why, sizeof(why));
		else if (err == MW_OMEMO_E_NO_DEVICES && g_sender != NULL)
			snprintf(why, sizeof(why), "%s: verify the agent's fingerprint first: "
			    "moonwire trust -c %s %s FINGERPRINT (the agent's owner reads it "
			    "with `moonwire fingerprint -c AGENT_CONFIG`)",
			    mw_omemo_strerror(err), g_sender->config, t->jid);
		else
			snprintf(why, sizeof(why), "%s%s", mw_omemo_strerror(err),
			    err == MW_OMEMO_E_NO_DEVICES ? " (verify the agent's fingerprint "
			    "with `moonwire trust` first)" : "");
		fprintf(stderr, "moonwire send: %s: %s\n", t->jid, why);
		t->exit = MW_EXIT_UNAVAILABLE;
		t->sent = false;
	} else
		t->sent = true;
}

static void
send_stanza(xmpp_stanza_t *st, void *arg)
{
	struct sender *s = arg;

	if (s->conn != NULL && s->connected)
		xmpp_send(s->conn, st);
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *arg)
{
	struct sender *s = arg;
	xmpp_stanza_t *p;
	int rc;

	if (ev != XMPP_CONN_CONNECT) {
		char why[768];

		if (!s->connected && !s->pin_refused) {
			(void)mw_omemo_account_describe_failure(&s->acct, conn, error, se, why,
			    sizeof(why));
			fprintf(stderr, "moonwire send: %s\n", why);
		} else if (s->connected && !s->failed && s->remaining > 0) {
			(void)mw_omemo_account_describe_failure(&s->acct, conn, error, se, why,
			    sizeof(why));
			fprintf(stderr, "moonwire send: connection lost: %s\n", why);
		}
		s->connected = false;
		s->failed = true;
		return;
	}
	if (mw_omemo_account_check_pin(&s->acct, conn) != 0) {
		fprintf(stderr, "moonwire send: server certificate does not match "
		    "cert_pin_sha256 (check the pin, or the server's certificate changed)\n");
		s->failed = true;
		s->pin_refused = true;
		xmpp_disconnect(conn);
		return;
	}
	s->connected = true;
	xmpp_handler_add(conn, on_message, NULL, "message", NULL, s);
	xmpp_handler_add(conn, on_iq_error, NULL, "iq", "error", s);
	xmpp_handler_add(conn, on_presence, NULL, "presence", NULL, s);
	if ((rc = mw_omemo_attach(s->o, conn)) != 0 || (rc = mw_omemo_start(s->o)) != 0) {
		fprintf(stderr, "moonwire send: omemo: %s\n", mw_omemo_strerror(rc));
		s->failed = true;
		xmpp_disconnect(conn);
		return;
	}
	if ((p = xmpp_presence_new(s->x)) != NULL) {
		xmpp_send(conn, p);
		xmpp_stanza_release(p);
	}
	for (size_t i = 0; i < s->nt; i++) {
		struct target *t = &s->t[i];

		t->exit = 0;
		rc = mw_omemo_send(s->o, t->jid, t->envelope, t->envelope_len, on_sent, t);
		if (rc != 0)
			on_sent(s->o, rc, t);
	}
}

/* ---- preparing envelopes ---- */

/* Like ssh: a secret others may read is worth a warning (not a refusal). */
static void
warn_if_exposed(const char *path, const char *what)
{
	struct stat st;
	size_t n = strlen(path);

	if (n > 4 && strcmp(path + n - 4, ".pub") == 0)
		return;		/* a public key; the private half is in ssh-agent */
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0077) != 0)
		fprintf(stderr, "moonwire send: WARNING: %s %s is readable by others "
		    "(mode %04o): chmod 600 %s\n", what, path, st.st_mode & 07777, path);
}

/*
 * Compiles the program (text only, nothing runs) so a syntax error is
 * reported here, with the file name as `moonwire run` does, before anything
 * is signed or sent.  Returns 0, or MW_EXIT_SYNTAX / MW_EXIT_UNAVAILABLE.
 */
static int
check_syntax(const char *path, const char *program, size_t plen)
{
	char chunk[4096];
	const char *base = strrchr(path, '/');
	lua_State *L = luaL_newstate();
	int rc;

	if (L == NULL) {
		fprintf(stderr, "moonwire send: out of memory\n");
		return MW_EXIT_UNAVAILABLE;
	}
	snprintf(chunk, sizeof(chunk), "=%s", base != NULL ? base + 1 : path);
	rc = luaL_loadbufferx(L, program, plen, chunk, "t");
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);

		fprintf(stderr, "moonwire send: %s\n", rc == LUA_ERRSYNTAX && msg != NULL ?
		    msg : "cannot compile the program (out of memory)");
		fprintf(stderr, "moonwire send: nothing was signed or sent\n");
		lua_close(L);
		return rc == LUA_ERRSYNTAX ? MW_EXIT_SYNTAX : MW_EXIT_UNAVAILABLE;
	}
	lua_close(L);
	return 0;
}

/* Why a target may not have answered, for the operator who waited. */
static void
explain_no_answer(struct sender *s, const struct target *t)
{
	char fp[MW_OMEMO_FP_HEXLEN + 1], g[72];

	if (t->presence == -1)
		fprintf(stderr, "moonwire send: %s is offline (its presence is "
		    "unavailable): the job waits on the server until the agent connects "
		    "and may still run then, unless it expires first (--ttl)\n", t->jid);
	else if (t->presence == 1)
		fprintf(stderr, "moonwire send: %s is online but did not answer\n", t->jid);
	fprintf(stderr, "moonwire send: likely causes: the agent is offline or busy; "
	    "or it has not verified this device (it ignores jobs from unverified "
	    "devices without answering); or %s is in no `allow` line of its policy\n",
	    s->acct.jid);
	if (s->o != NULL && mw_omemo_own_fingerprint(s->o, fp) == 0) {
		mw_omemo_fp_group(fp, '-', g);
		fprintf(stderr, "moonwire send: this device: %s device %u fingerprint %s\n"
		    "moonwire send: the agent's owner verifies it with:\n"
		    "    moonwire trust -c AGENT_CONFIG %s %s\n", s->acct.jid,
		    mw_omemo_device_id(s->o), g, s->acct.jid, g);
	}
}

static int
prepare_envelopes(struct sender *s, struct mw_ssh_signer *key, const char *program,
    size_t plen, const char *limits, const struct mw_job_args *args, uint64_t ttl_ms)
{
	char err[512];

	for (size_t i = 0; i < s->nt; i++) {
		struct target *t = &s->t[i];
		struct mw_envelope_fields f;
		char *part = NULL, *sig = NULL;
		size_t partlen, siglen;
		int64_t now = (int64_t)time(NULL);

		memset(&f, 0, sizeof(f));
		f.audience = t->jid;
		f.issued_at = now;
		f.not_after = now + (int64_t)(ttl_ms / 1000);
		f.limits_text = limits;
		f.args = args;
		if (mw_envelope_build(&f, (const uint8_t *)program, plen, &part, &partlen,
		    t->job_id, err, sizeof(err)) != 0 ||
		    mw_sshsig_sign(key, MW_JOB_NAMESPACE, (const uint8_t *)part, partlen,
		    &sig, &siglen, err, sizeof(err)) != 0 ||
		    mw_envelope_attach(part, partlen, sig, siglen, &t->envelope,
		    &t->envelope_len, err, sizeof(err)) != 0) {
			fprintf(stderr, "moonwire send: %s: %s\n", t->jid, err);
			free(part);
			free(sig);
			return -1;
		}
		free(part);
		free(sig);
	}
	return 0;
}

/*
 * The targets: --to and --targets (already in list), then the members of
 * each --group from the operator's roster, folded and capped
 * (spec/cli.md "Targets"); s->t points into list.  0, or the exit status
 * after saying why.  Nothing has been signed or sent yet.
 */
static int
send_targets(struct sender *s, struct mw_fleet_targets *list, char *const *groups,
    size_t ngroups, size_t max)
{
	char err[1400], *v = NULL;
	int rc;

	if (max == 0 && (v = mw_config_value(s->config, "max_targets")) != NULL &&
	    mw_fleet_parse_cap(v, &max) != 0) {
		fprintf(stderr, "moonwire send: %s: max_targets = %s: a number from 1 "
		    "to %d\n", s->config, v, MW_FLEET_MAX_TARGETS_LIMIT);
		free(v);
		return MW_EXIT_USAGE;
	}
	free(v);
	if (max == 0)
		max = MW_FLEET_MAX_TARGETS_DEFAULT;
	/* over the cap already: refused before connecting for the groups */
	rc = mw_fleet_targets_check_cap(list, max, err, sizeof(err));
	if (rc == 0 && ngroups > 0 && (rc = mw_fleet_targets_add_groups(list, &s->acct,
	    groups, ngroups, 30000, err, sizeof(err))) != 0) {
		fprintf(stderr, "moonwire send: %s\nmoonwire send: nothing was signed "
		    "or sent\n", err);
		return rc == MW_FLEET_E_GROUP ? MW_EXIT_USAGE : MW_EXIT_UNAVAILABLE;
	}
	if (rc == 0)
		rc = mw_fleet_targets_check_cap(list, max, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "moonwire send: %s: raise it with --max-targets N or "
		    "`max_targets = N` in %s\nmoonwire send: nothing was signed or "
		    "sent\n", err, s->config);
		return MW_EXIT_USAGE;
	}
	if ((s->t = calloc(list->n, sizeof(*s->t))) == NULL)
		return MW_EXIT_UNAVAILABLE;
	for (size_t i = 0; i < list->n; i++)
		s->t[i].jid = list->jid[i];
	s->nt = list->n;
	return 0;
}

int
mw_cmd_send(int argc, char **argv)
{
	enum { OPT_TO = 256, OPT_TTL, OPT_LIMIT, OPT_ENVELOPE, OPT_TIMEOUT, OPT_JSON, OPT_ARG,
	    OPT_TARGETS, OPT_GROUP, OPT_MAX_TARGETS };
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "to", required_argument, NULL, OPT_TO },
		{ "targets", required_argument, NULL, OPT_TARGETS },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "max-targets", required_argument, NULL, OPT_MAX_TARGETS },
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "arg", required_argument, NULL, OPT_ARG },
		{ "envelope", required_argument, NULL, OPT_ENVELOPE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sender s;
	const char *config = NULL, *envelope_path = NULL;
	char *keypath = NULL, *program = NULL, limits[512] = "", err[512];
	size_t plen = 0;
	uint64_t ttl_ms = 300000, timeout_ms = 60000, deadline;
	struct mw_ssh_signer *key = NULL;
	struct mw_job_args args;
	struct mw_fleet_targets list;	/* --to, --targets, --group: folded */
	char *groups[SEND_MAX_GROUPS];
	size_t ngroups = 0, max_targets = 0;
	bool targets_file = false;
	int ch, rc = MW_EXIT_USAGE;

	memset(&s, 0, sizeof(s));
	memset(&args, 0, sizeof(args));
	mw_fleet_targets_init(&list);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+c:k:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'k': free(keypath); keypath = strdup(optarg); break;
		case OPT_TO:
			if (mw_fleet_targets_add(&list, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: --to %s: %s\n", optarg, err);
				goto out;
			}
			break;
		case OPT_TARGETS:
			if (mw_fleet_targets_load(&list, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: %s\n"
				    "moonwire send: nothing was signed or sent\n", err);
				goto out;
			}
			targets_file = true;
			break;
		case OPT_GROUP:
			if (mw_fleet_group_check(optarg, err, sizeof(err)) != 0 ||
			    ngroups == SEND_MAX_GROUPS) {
				fprintf(stderr, "moonwire send: --group: %s\n", ngroups ==
				    SEND_MAX_GROUPS ? "too many" : err);
				goto out;
			}
			groups[ngroups++] = optarg;
			break;
		case OPT_MAX_TARGETS:
			if (mw_fleet_parse_cap(optarg, &max_targets) != 0) {
				fprintf(stderr, "moonwire send: --max-targets: a number from "
				    "1 to %d\n", MW_FLEET_MAX_TARGETS_LIMIT);
				goto out;
			}
			break;
		case OPT_TTL:
			if (mw_parse_duration_ms(optarg, &ttl_ms) != 0 || ttl_ms < 1000 ||
			    ttl_ms > 7ull * 24 * 3600 * 1000) {
				fprintf(stderr, "moonwire send: --ttl: 1s to 7d\n");
				goto out;
			}
			break;
		case OPT_LIMIT:
			if (strlen(limits) + strlen(optarg) + 2 > sizeof(limits)) {
				fprintf(stderr, "moonwire send: too many --limit\n");
				goto out;
			}
			if (limits[0] != '\0')
				strcat(limits, " ");
			strcat(limits, optarg);
			break;
		case OPT_ARG:
			if (mw_job_args_add_spec(&args, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "moonwire send: --arg: %s\n", err);
				goto out;
			}
			break;
		case OPT_ENVELOPE: envelope_path = optarg; break;
		case OPT_TIMEOUT:
			if (mw_parse_duration_ms(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
				fprintf(stderr, "moonwire send: --timeout: a duration\n");
				goto out;
			}
			break;
		case OPT_JSON: s.json = true; break;
		case 'h': send_usage(stdout); rc = MW_EXIT_OK; goto out;
		default: send_usage(stderr); goto out;
		}
	}
	if (targets_file && list.given == 0 && ngroups == 0) {
		fprintf(stderr, "moonwire send: no targets: the targets file names "
		    "no JID\n");
		goto out;
	}
	if (config == NULL || (list.given == 0 && ngroups == 0) ||
	    (envelope_path == NULL) != (optind == argc - 1) ||
	    (envelope_path != NULL && optind != argc)) {
		send_usage(stderr);
		goto out;
	}
	s.config = config;
	if (mw_omemo_account_load_err(&s.acct, config, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire send: %s\n", err);
		goto out;
	}
	if (envelope_path != NULL && args.n > 0) {
		fprintf(stderr, "moonwire send: --arg cannot change an envelope signed elsewhere "
		    "(give the arguments to `moonwire sign`)\n");
		goto out;
	}
	if (s.acct.password == NULL) {
		fprintf(stderr, "moonwire send: %s: no password or password_file\n", config);
		goto out;
	}
	{
		char *v = mw_config_value(config, "password_file"), *pw = NULL;

		if (v != NULL && mw_omemo_account_path(config, v, &pw) == 0)
			warn_if_exposed(pw, "password_file");
		free(v);
		free(pw);
	}
	if ((rc = send_targets(&s, &list, groups, ngroups, max_targets)) != 0)
		goto out;
	rc = MW_EXIT_USAGE;
	if (envelope_path != NULL) {
		struct mw_envelope env;

		if (s.nt != 1) {
			fprintf(stderr, "moonwire send: --envelope goes to exactly one --to\n");
			goto out;
		}
		if (read_file(envelope_path, MW_ENVELOPE_MAX, &s.t[0].envelope,
		    &s.t[0].envelope_len) != 0)
			goto out;
		if (mw_envelope_parse(s.t[0].envelope, s.t[0].envelope_len, &env, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "moonwire send: %s: %s\n", envelope_path, err);
			goto out;
		}
		if (strcmp(env.audience, s.t[0].jid) != 0) {
			fprintf(stderr, "moonwire send: %s is for %s, not %s\n", envelope_path,
			    env.audience, s.t[0].jid);
			mw_envelope_free(&env);
			goto out;
		}
		snprintf(s.t[0].job_id, sizeof(s.t[0].job_id), "%s", env.job_id);
		mw_envelope_free(&env);
	} else {
		if (keypath == NULL) {
			char *v = mw_config_value(config, "signing_key");

			if (v == NULL) {
				fprintf(stderr, "moonwire send: no key: use -k KEY or "
				    "signing_key in %s\n", config);
				goto out;
			}
			/* the account file's path rules: ~, relative to the file */
			if (mw_omemo_account_path(config, v, &keypath) != 0) {
				fprintf(stderr, "moonwire send: %s: signing_key '%s' is not a "
				    "usable path\n", config, v);
				free(v);
				goto out;
			}
			free(v);
		}
		if (read_file(argv[optind], MW_ENVELOPE_MAX, &program, &plen) != 0)
			goto out;
		if ((rc = check_syntax(argv[optind], program, plen)) != 0)
			goto out;
		rc = MW_EXIT_USAGE;
		warn_if_exposed(keypath, "private key");
		if (mw_ssh_signer_load(keypath, &key, err, sizeof(err)) != 0) {
			if (strstr(err, keypath) != NULL)
				fprintf(stderr, "moonwire send: %s\n", err);
			else
				fprintf(stderr, "moonwire send: %s: %s\n", keypath, err);
			goto out;
		}
		if (prepare_envelopes(&s, key, program, plen, limits, &args, ttl_ms) != 0)
			goto out;
	}
	rc = MW_EXIT_UNAVAILABLE;
	if (s.acct.db == NULL) {
		fprintf(stderr, "moonwire send: %s: no `db` setting\n", config);
		goto out;
	}
	if (mw_omemo_account_private_db(s.acct.db, true, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire send: %s\n", err);
		goto out;
	}
	if (mw_omemo_db_open(s.acct.db, true, &s.db) != 0 ||
	    mw_omemo_open(&s.o, s.db, s.acct.jid) != 0) {
		fprintf(stderr, "moonwire send: %s: cannot open the identity database\n",
		    s.acct.db);
		goto out;
	}
	xmpp_initialize();
	g_sender = &s;
	if ((s.x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL ||
	    (s.conn = xmpp_conn_new(s.x)) == NULL ||
	    mw_omemo_account_apply(&s.acct, s.conn) != 0 ||
	    mw_omemo_set_transport(s.o, s.x, send_stanza, &s) != 0) {
		fprintf(stderr, "moonwire send: cannot set up the connection\n");
		goto out;
	}
	/* A short-lived client: without stream management the server counts a
	 * result as delivered once written to us, instead of storing unacked
	 * ones offline for the next `send` to see again. */
	xmpp_conn_set_flags(s.conn, xmpp_conn_get_flags(s.conn) | XMPP_CONN_FLAG_DISABLE_SM);
	s.remaining = s.nt;
	s.progress_tty = isatty(STDERR_FILENO) == 1;
	if (xmpp_connect_client(s.conn, s.acct.host, s.acct.port, on_conn, &s) != XMPP_EOK) {
		fprintf(stderr, "moonwire send: cannot connect\n");
		goto out;
	}
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + timeout_ms;
	}
	for (;;) {
		struct timespec ts;
		uint64_t t;

		xmpp_run_once(s.x, 100);	/* returns as soon as data arrives */
		mw_omemo_tick(s.o);
		/* a failed send is a terminal result for that target */
		for (size_t i = 0; i < s.nt; i++)
			if (!s.t[i].done && !s.t[i].sent && s.t[i].exit == MW_EXIT_UNAVAILABLE)
				target_done(&s, &s.t[i], MW_EXIT_UNAVAILABLE);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		if (s.remaining == 0 || s.failed || t >= deadline)
			break;
		progress_update(&s, t);
	}
	progress_clear(&s);
	rc = MW_EXIT_OK;
	for (size_t i = 0; i < s.nt; i++) {
		struct target *t = &s.t[i];

		if (!t->done) {
			fprintf(stderr, "moonwire send: %s: no result for job %s %s\n", t->jid,
			    t->job_id, s.failed ? "(connection failed)" : "in time");
			if (!s.failed && t->sent)
				explain_no_answer(&s, t);
			if (s.json)
				print_no_answer(t);
			t->exit = MW_EXIT_UNAVAILABLE;
		}
		if (rc == MW_EXIT_OK && t->exit != MW_EXIT_OK)
			rc = t->exit;
	}
	if (s.connected) {
		xmpp_disconnect(s.conn);
		for (int i = 0; i < 20 && !xmpp_conn_is_disconnected(s.conn); i++)
			xmpp_run_once(s.x, 50);
	}
out:
	if (s.o != NULL)
		mw_omemo_close(s.o);
	if (s.conn != NULL) {
		mw_omemo_account_release(s.conn);
		xmpp_conn_release(s.conn);
	}
	g_sender = NULL;
	if (s.x != NULL) {
		xmpp_ctx_free(s.x);
		xmpp_shutdown();
	}
	if (s.db != NULL)
		sqlite3_close(s.db);
	for (size_t i = 0; i < s.nt; i++)
		free(s.t[i].envelope);
	free(s.t);
	mw_fleet_targets_free(&list);
	free(program);
	free(keypath);
	mw_ssh_signer_free(key);
	mw_omemo_account_free(&s.acct);
	mw_job_args_free(&args);
	return rc;
}
