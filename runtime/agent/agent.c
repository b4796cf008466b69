/*
 * agent.c: `moonwire agent -c CONFIG`, the service on a device.
 *
 * It logs in to an XMPP account, decrypts OMEMO messages, authorizes each
 * signed job (spec/agent.md: device verified, signature by a listed signer
 * the policy allows for that JID, audience, time window, unseen job id),
 * journals it in the same transaction as the ratchet step, runs it in the
 * sandbox and sends the result back over the same session.
 *
 * Process model (design.md): the sandbox supervisor is exec'd before the
 * identity database or the account password are opened, so no secret was
 * ever in its memory; this process never runs Lua.
 *
 * Event loop: libstrophe has no way to wait on other descriptors, so the
 * agent polls the XMPP socket (learnt through the sockopt callback) and the
 * supervisor's socket itself, then lets libstrophe run without blocking.
 * A sandbox result is therefore handled the moment it arrives; the only
 * timers are maintenance (pings, OMEMO upkeep, reconnect backoff).
 *
 * Log: one line per event on stderr, "moonwire-agent: EVENT key=value ...",
 * prefixed with the UTC time outside journald.
 * Refusals are audit lines: "refused code=CODE ...".
 *
 * This file: start-up, the loop, signals (stop, reload), the log.  The
 * connection and its stanzas are agent_xmpp.c; from a decrypted message
 * to a result is agent_jobs.c; what they share is agent.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <strophe.h>

#include "runtime/agent/agent.h"


volatile sig_atomic_t mw_agent_stop;
static volatile sig_atomic_t g_reload;
int mw_agent_xmpp_fd = -1;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		g_reload = 1;
	else
		mw_agent_stop = 1;
}

uint64_t
agent_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Under systemd (JOURNAL_STREAM set) the journal stamps each line itself;
 * in the foreground (a terminal, a pipe, a file) the line starts with the
 * UTC time.
 */
void
agent_log(const char *event, const char *fmt, ...)
{
	static int stamp = -1;
	/* the date and time to the second, formatted once per second (a
	 * job logs three lines; strftime was a visible part of them) */
	static time_t stamp_sec = (time_t)-1;
	static char stamp_text[32];
	char buf[2048], ts[64] = "";
	va_list ap;
	size_t n;

	if (stamp < 0)
		stamp = getenv("JOURNAL_STREAM") == NULL;
	if (stamp) {
		struct timespec now;
		struct tm tm;

		if (clock_gettime(CLOCK_REALTIME, &now) == 0) {
			if (now.tv_sec != stamp_sec) {
				if (gmtime_r(&now.tv_sec, &tm) != NULL &&
				    strftime(stamp_text, sizeof(stamp_text),
				    "%Y-%m-%dT%H:%M:%S", &tm) > 0)
					stamp_sec = now.tv_sec;
				else
					stamp_text[0] = '\0';
			}
			if (stamp_text[0] != '\0')
				snprintf(ts, sizeof(ts), "%s.%03ldZ ", stamp_text,
				    now.tv_nsec / 1000000);
		}
	}
	n = (size_t)snprintf(buf, sizeof(buf) - 1, "%smoonwire-agent: %s", ts, event);
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	if (fmt != NULL && n < sizeof(buf) - 3) {
		int k;

		buf[n++] = ' ';
		va_start(ap, fmt);
		k = vsnprintf(buf + n, sizeof(buf) - 1 - n, fmt, ap);
		va_end(ap);
		if (k < 0)
			buf[n] = '\0';
		n = k < 0 ? n : n + (size_t)k > sizeof(buf) - 2 ? sizeof(buf) - 2 : n + (size_t)k;
	}
	/* one event, one line: newlines from peers never split it */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	/* one write of the whole line (stderr is line-buffered) */
	(void)fwrite(buf, 1, n, stderr);
}

/* ---- crash points (tests) ----
 *
 * MOONWIRE_TEST_CRASH=POINT:N makes the agent kill itself with SIGKILL the
 * Nth time it passes POINT, so the crash-consistency suite can stop it
 * exactly between two steps whose order matters.  Points: after_decrypt
 * (decrypt transaction open, nothing committed), after_commit (job
 * recorded, not yet in the sandbox), mid_job (in the sandbox), after_result
 * (result stored, not yet sent), after_reply (sent, not yet marked
 * replied).  Unset, it costs one branch per point.
 */
static const char *crash_point;
static long crash_countdown;

static void
crash_init(void)
{
	const char *v = getenv("MOONWIRE_TEST_CRASH");
	const char *colon;

	if (v == NULL || (colon = strchr(v, ':')) == NULL)
		return;
	crash_countdown = strtol(colon + 1, NULL, 10);
	if (crash_countdown <= 0)
		return;
	crash_point = strndup(v, (size_t)(colon - v));
}

void
agent_crash_at(const char *point)
{
	if (crash_point != NULL && strcmp(crash_point, point) == 0 &&
	    --crash_countdown == 0) {
		fprintf(stderr, "moonwire-agent: test-crash point=%s\n", point);
		raise(SIGKILL);
	}
}

/* ---- durability ----
 *
 * With durability = full (the default) the two commits whose loss on power
 * failure could make a job run twice or reuse a ratchet key -- the decrypt
 * transaction that records the job, and the encrypt that advances the
 * sending chain -- are fsync'ed.  Journal updates after a run (result
 * stored, reply sent) are not: losing one turns a finished job into
 * "interrupted" after a power cut, and the WAL keeps them ordered before
 * any later fsync'ed commit.
 *
 * The connection stays at synchronous=NORMAL; the WAL hook, which SQLite
 * calls inside sqlite3_step() right after a commit and before the caller
 * can act on it, syncs the log when a->sync_commits says so.  That is the
 * one sync synchronous=FULL adds in WAL mode (the log, SQLITE_SYNC_NORMAL),
 * without a PRAGMA: SQLite compiles a PRAGMA again on every step, and the
 * four to six switches per job cost about 4 % of the agent's CPU (perf,
 * 2026-11-29).  tests/reliability/test_durability.py counts the syncs.
 *
 * Installing the hook replaces SQLite's automatic checkpoint, so the hook
 * checkpoints as that default does, at the same size.  A failed sync is
 * an error of the statement that committed, although the commit stays:
 * the caller fails closed (no job run, no stanza sent) on a commit whose
 * durability is unknown.
 */
#define AGENT_WAL_CHECKPOINT_PAGES 1000		/* SQLite's default */

static int
agent_wal_committed(void *arg, sqlite3 *db, const char *schema, int pages)
{
	struct agent *a = arg;
	sqlite3_file *wal = NULL;
	int rc = SQLITE_OK;

	if (a->sync_commits) {
		if (sqlite3_file_control(db, schema, SQLITE_FCNTL_JOURNAL_POINTER, &wal) !=
		    SQLITE_OK || wal == NULL || wal->pMethods == NULL)
			return SQLITE_IOERR_FSYNC;
		rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
	}
	if (rc == SQLITE_OK && pages >= AGENT_WAL_CHECKPOINT_PAGES)
		(void)sqlite3_wal_checkpoint(db, schema);	/* best effort, as SQLite's own */
	return rc;
}

void
agent_sync_commits(struct agent *a, bool full)
{
	a->sync_commits = full;
}

static void
agent_db_durability(struct agent *a)
{
	(void)sqlite3_wal_hook(a->db, agent_wal_committed, a);
	agent_sync_commits(a, a->cfg.durability_full);
}

/* ---- start-up and the loop ---- */

/*
 * Like ssh with a private key: a password file readable by others is worth
 * a warning (printed by --check, logged at start).  Returns how many.
 */
static int
warn_exposed_secrets(const char *config, bool check_only)
{
	static const char *const keys[] = { "password_file", NULL };
	int warnings = 0;
	struct stat st;

	char *inline_pw = mw_config_value(config, "password");
	bool has_pw = inline_pw != NULL;

	if (inline_pw != NULL)
		OPENSSL_clear_free(inline_pw, strlen(inline_pw));
	if (stat(config, &st) == 0 && (st.st_mode & 0077) != 0 && has_pw) {
		if (check_only)
			printf("%s: WARNING: holds the password and is readable by others "
			    "(mode %04o): chmod 600 %s\n", config, st.st_mode & 07777, config);
		else
			agent_log("warning", "file=%s mode=%04o reason=\"holds the password and "
			    "is readable by others\"", config, st.st_mode & 07777);
		warnings++;
	}
	for (int i = 0; keys[i] != NULL; i++) {
		char *v = mw_config_value(config, keys[i]), *p = NULL;

		if (v != NULL && mw_omemo_account_path(config, v, &p) == 0 &&
		    stat(p, &st) == 0 && (st.st_mode & 0077) != 0) {
			if (check_only)
				printf("%s: WARNING: %s %s is readable by others (mode %04o): "
				    "chmod 600 %s\n", config, keys[i], p, st.st_mode & 07777, p);
			else
				agent_log("warning", "file=%s mode=%04o reason=\"%s readable by "
				    "others\"", p, st.st_mode & 07777, keys[i]);
			warnings++;
		}
		free(v);
		free(p);
	}
	return warnings;
}

static int
agent_open(struct agent *a, const char *config, bool check_only)
{
	char err[1024];
	struct mw_sandbox_config sc;
	int n, rc;

	if (mw_agent_config_load(config, &a->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (mw_policy_load(a->cfg.policy, &a->policy, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (mw_allowed_signers_load(a->cfg.allowed_signers, &a->signers, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	(void)warn_exposed_secrets(config, check_only);
	/* no read or write grant may reach the agent's own files */
	if (mw_agent_protected_paths(config, &a->cfg, a->protected, &a->n_protected,
	    err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&a->policy, a->protected, a->n_protected, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_USAGE;
	}
	if (check_only) {
		printf("%s: configuration ok (policy: %zu profiles, %zu allow lines)\n",
		    config, a->policy.n_profiles, a->policy.n_allows);
		return 0;
	}
	/* the supervisor first: it never sees the database or the keys */
	memset(&sc, 0, sizeof(sc));
	sc.parallel = a->cfg.parallel;
	sc.pool = a->cfg.idle_workers < 0 ? 0 : a->cfg.idle_workers == 0 ?
	    MW_SANDBOX_POOL_NONE : (unsigned)a->cfg.idle_workers;
	sc.queue_max = a->cfg.queue_max;
	sc.state_dir = a->cfg.state_dir;
	sc.command_uid_first = a->cfg.command_uid_first;
	sc.command_uid_count = a->cfg.command_uid_count;
	for (size_t i = 0; i < a->n_protected; i++)
		a->protected_ptrs[i] = a->protected[i].path;
	sc.protected_paths = a->protected_ptrs;
	sc.n_protected = (unsigned)a->n_protected;
	if (mw_sandbox_start(&sc, &a->sb) != 0) {
		fprintf(stderr, "moonwire agent: the sandbox could not start\n");
		return MW_EXIT_UNAVAILABLE;
	}
	/* The supervisor holds the sandbox's privileges now; this process
	 * keeps none (ambient, inheritable, permitted, effective) before it
	 * opens the identity database or any key.  Fail closed. */
	if (mw_sandbox_drop_caller_capabilities() != 0) {
		fprintf(stderr, "moonwire agent: could not drop the agent's capabilities "
		    "after starting the sandbox: %s; refusing to run\n", strerror(errno));
		return MW_EXIT_UNAVAILABLE;
	}
	if (mw_omemo_account_private_db(a->cfg.account.db, true, err, sizeof(err)) != 0) {
		fprintf(stderr, "moonwire agent: %s\n", err);
		return MW_EXIT_UNAVAILABLE;
	}
	if ((rc = mw_omemo_db_open(a->cfg.account.db, true, &a->db)) != 0) {
		fprintf(stderr, "moonwire agent: %s: %s\n", a->cfg.account.db,
		    mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	agent_db_durability(a);
	if ((rc = mw_omemo_open(&a->o, a->db, a->cfg.account.jid)) != 0) {
		fprintf(stderr, "moonwire agent: %s: %s\n", a->cfg.account.db,
		    mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	mw_omemo_set_recheck(a->o, a->cfg.omemo_recheck_ms);
	/* defence in depth behind the peek in agent_handle_encrypted(): the OMEMO
	 * layer itself decrypts nothing from a key that is not verified */
	mw_omemo_set_require_verified(a->o, true);
	a->new_sessions.tokens = (double)a->cfg.new_session_global_burst;
	a->new_sessions.last_ms = agent_now_ms();
	if (mw_journal_init(a->db) != 0 || (n = mw_journal_recover(a->db,
	    (int64_t)time(NULL))) < 0) {
		fprintf(stderr, "moonwire agent: %s: journal: %s\n", a->cfg.account.db,
		    sqlite3_errmsg(a->db));
		return MW_EXIT_UNAVAILABLE;
	}
	if (n > 0)
		agent_log("recovered", "interrupted=%d", n);
	/* a crash is a lost connection too: results the server never
	 * confirmed are sent again */
	if ((n = mw_journal_resend_unconfirmed(a->db)) > 0)
		agent_log("resend-scheduled", "results=%d", n);
	xmpp_initialize();
	if ((a->x = xmpp_ctx_new(NULL, mw_omemo_account_logger())) == NULL)
		return MW_EXIT_UNAVAILABLE;
	if ((rc = mw_omemo_set_transport(a->o, a->x, agent_send_stanza, a)) != 0) {
		fprintf(stderr, "moonwire agent: omemo: %s\n", mw_omemo_strerror(rc));
		return MW_EXIT_UNAVAILABLE;
	}
	a->backoff_ms = BACKOFF_INITIAL_MS;
	agent_log("started", "jid=%s device=%u supervisor=%d policy=%s capabilities=none",
	    a->cfg.account.jid, mw_omemo_device_id(a->o), (int)mw_sandbox_pid(a->sb),
	    a->cfg.policy);
	return 0;
}

static void
agent_close(struct agent *a)
{
	for (size_t i = 0; i < RATE_SLOTS; i++)
		free(a->rate[i].jid);
	while (a->jobs != NULL) {
		struct running_job *j = a->jobs;
		agent_unlink_job(a, j);
		agent_running_free(j);
	}
	/* the connection first: releasing one that is not yet disconnected
	 * runs on_conn(), which uses the OMEMO context and the database */
	if (a->conn != NULL) {
		mw_omemo_account_release(a->conn);
		xmpp_conn_release(a->conn);
	}
	a->conn = NULL;
	/* after the release: its on_conn() may still have used them */
	agent_sent_free(a->pending, a->n_pending);
	agent_sent_free(a->awaiting, a->n_awaiting);
	a->pending = a->awaiting = NULL;
	a->n_pending = a->n_awaiting = 0;
	if (a->o != NULL)
		mw_omemo_close(a->o);
	if (a->sm != NULL)
		xmpp_free_sm_state(a->sm);
	if (a->x != NULL) {
		xmpp_ctx_free(a->x);
		xmpp_shutdown();
	}
	if (a->db != NULL) {
		mw_journal_close(a->db);
		sqlite3_close(a->db);
	}
	if (a->sb != NULL)
		mw_sandbox_stop(a->sb);
	if (a->signers != NULL)
		mw_allowed_signers_free(a->signers);
	mw_policy_free(&a->policy);
	mw_protected_paths_free(a->protected, a->n_protected);
	a->n_protected = 0;
	mw_agent_config_free(&a->cfg);
}

static void
begin_stop(struct agent *a)
{
	xmpp_stanza_t *p;

	a->stopping = true;
	a->stop_deadline_ms = agent_now_ms() + a->cfg.shutdown_grace_ms;
	agent_log("stopping", "running=%u grace_ms=%u", a->n_jobs, a->cfg.shutdown_grace_ms);
	/* a used prekey must not stay listed while the agent is away */
	if (a->connected)
		(void)mw_omemo_publish_pending(a->o);
	/* unavailable: the server keeps new messages offline for the next start */
	if (a->connected && (p = xmpp_presence_new(a->x)) != NULL) {
		xmpp_stanza_set_type(p, "unavailable");
		xmpp_send(a->conn, p);
		xmpp_stanza_release(p);
	}
}

/*
 * SIGHUP (`systemctl reload`): the policy and allowed_signers are read
 * again.  Both must load and pass the own-files check, or the agent keeps
 * what it had and says why with FILE:LINE.  A running job keeps the grants
 * it started with (start_job copied them); the next message is decided
 * under the new files.  The configuration file itself is not re-read.
 */
static void
agent_reload(struct agent *a)
{
	struct mw_policy np;
	struct mw_allowed_signers *ns = NULL;
	char err[1024];

	memset(&np, 0, sizeof(np));
	if (mw_policy_load(a->cfg.policy, &np, err, sizeof(err)) != 0 ||
	    mw_policy_check_protected(&np, a->protected, a->n_protected, err,
	    sizeof(err)) != 0 ||
	    mw_allowed_signers_load(a->cfg.allowed_signers, &ns, err, sizeof(err)) != 0) {
		agent_log("reload-failed", "error=\"%s\" (the previous policy and allowed_signers "
		    "stay in force)", err);
		mw_policy_free(&np);
		return;
	}
	mw_policy_free(&a->policy);
	a->policy = np;
	mw_allowed_signers_free(a->signers);
	a->signers = ns;
	agent_log("reloaded", "policy=%s profiles=%zu allow=%zu allowed_signers=%s",
	    a->cfg.policy, a->policy.n_profiles, a->policy.n_allows, a->cfg.allowed_signers);
}

static void
agent_loop(struct agent *a)
{
	unsigned drain = 0;	/* extra non-blocking passes for TLS-buffered data */

	a->reconnect_at_ms = 0;
	a->next_tick_ms = agent_now_ms() + TICK_MS;
	for (;;) {
		struct pollfd pf[2];
		nfds_t nf = 0;
		uint64_t t = agent_now_ms(), due;
		int timeout;

		if (mw_agent_stop && !a->stopping)
			begin_stop(a);
		if (g_reload) {
			g_reload = 0;
			agent_reload(a);
		}
		if (a->stopping && (a->n_jobs == 0 || t >= a->stop_deadline_ms)) {
			if (a->n_jobs > 0)
				agent_interrupt_all(a, "the agent was stopped while the job ran");
			break;
		}
		if (!a->stopping && a->conn == NULL)
			(void)agent_start_connection(a);
		else if (!a->stopping && a->reconnect_at_ms != 0 && t >= a->reconnect_at_ms) {
			a->reconnect_at_ms = 0;
			(void)agent_start_connection(a);
		}
		if (t >= a->next_tick_ms) {
			a->next_tick_ms = t + TICK_MS;
			if (a->connected)
				mw_omemo_tick(a->o);
			if (a->connected && a->ping_sent_ms != 0 &&
			    t - a->ping_sent_ms > PING_TIMEOUT_MS) {
				agent_log("ping-timeout", NULL);
				a->ping_sent_ms = 0;
				xmpp_disconnect(a->conn);
			} else if (a->connected && a->ping_sent_ms == 0 && t >= a->next_ping_ms) {
				a->next_ping_ms = t + PING_INTERVAL_MS;
				agent_send_ping(a);
			}
		}
		timeout = (int)(a->next_tick_ms - t);
		if ((due = agent_chat_states_due(a, t)) != 0 && due - t < (uint64_t)timeout)
			timeout = (int)(due > t ? due - t : 0);
		if (a->reconnect_at_ms != 0 && a->reconnect_at_ms - t < (uint64_t)timeout)
			timeout = (int)(a->reconnect_at_ms > t ? a->reconnect_at_ms - t : 0);
		pf[nf].fd = mw_sandbox_fd(a->sb);
		pf[nf].events = POLLIN | (mw_sandbox_want_write(a->sb) ? POLLOUT : 0);
		nf++;
		if (mw_agent_xmpp_fd >= 0 && a->conn != NULL && !xmpp_conn_is_disconnected(a->conn)) {
			pf[nf].fd = mw_agent_xmpp_fd;
			pf[nf].events = POLLIN;
			if (xmpp_conn_send_queue_len(a->conn) > 0 || !a->connected)
				pf[nf].events |= POLLOUT;
			nf++;
			/* while the handshake runs, libstrophe's own timeouts matter */
			if (!a->connected && timeout > 50)
				timeout = 50;
		}
		if (drain > 0)
			timeout = 0;
		if (poll(pf, nf, timeout) < 0 && errno != EINTR)
			break;
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
			agent_read_results(a);
		if (pf[0].revents & POLLOUT)
			(void)mw_sandbox_flush(a->sb);
		if (nf > 1 && (pf[1].revents & POLLIN))
			drain = 4;
		else if (drain > 0)
			drain--;
		if (a->conn != NULL)
			xmpp_run_once(a->x, 0);
	}
}

int
mw_cmd_agent(int argc, char **argv)
{
	struct agent *a;
	struct sigaction sa;
	bool check = argc == 4 && strcmp(argv[3], "--check") == 0;
	int rc;

	if ((argc != 3 && !check) || strcmp(argv[1], "-c") != 0) {
		fprintf(stderr, "usage: moonwire agent -c CONFIG [--check]\n");
		return MW_EXIT_USAGE;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return MW_EXIT_UNAVAILABLE;
	setvbuf(stderr, NULL, _IOLBF, 0);
	crash_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if ((rc = agent_open(a, argv[2], check)) == 0 && !check) {
		agent_loop(a);
		if (a->conn != NULL && a->connected) {
			uint64_t until = agent_now_ms() + 2000;

			xmpp_disconnect(a->conn);
			while (!xmpp_conn_is_disconnected(a->conn) && agent_now_ms() < until)
				xmpp_run_once(a->x, 50);
		}
		agent_log("stopped", NULL);
	}
	agent_close(a);
	free(a);
	return rc;
}

