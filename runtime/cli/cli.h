/*
 * cli.h: what the commands of runtime/cli share.  The operator's signing
 * key (cmd_send.c, used by send and cancel), and the parts of `moonwire
 * init` (cmd_init.c, the two commands; init_input.c, checking what the
 * user gave; init_stage.c, staging files and the identity, and undoing a
 * failed run).  Private to runtime/cli.
 */
#ifndef MW_CLI_H
#define MW_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "omemo/mw_omemo.h"
#include "runtime/job/job.h"

/*
 * The operator's signing key: keypath (-k) when given, else `signing_key`
 * of the account file config (its path rules: ~, relative to the file).
 * 0, or the exit status after saying why on stderr ("moonwire CMD: ...").
 */
int cli_signing_key(const char *cmd, const char *config, const char *keypath,
    struct mw_ssh_signer **out);
/* A job id as `moonwire send` makes and the job table keeps: 1 to
 * MW_JOB_ID_MAX characters of A-Za-z0-9-_. (cmd_jobs.c). */
bool cli_job_id_ok(const char *s);

#define INIT_MAX_FILES	4
#define INIT_MAX_DIRS	32
#define INIT_MAX_READ	(64 * 1024)
#define PASSWORD_MAX	1024

struct staged_file {
	char name[64];			/* file name in the destination directory */
	char *final;			/* DIR/name */
	char *tmp;			/* STAGE/name */
	char *orig;			/* STAGE/name.orig: the replaced file, kept until done */
	char *content;
	size_t len;
	bool secret;			/* wiped when freed */
	mode_t mode;
	uid_t uid;			/* (uid_t)-1: the caller's */
	gid_t gid;			/* (gid_t)-1: the caller's */
	bool placed;			/* renamed into place */
};

struct init_run {
	const char *cmd;		/* "agent" or "operator", for messages */
	bool force;
	char *dir;			/* destination of the files, absolute */
	char *stage;			/* mkdtemp'ed in dir */
	struct staged_file files[INIT_MAX_FILES];
	size_t n_files;
	char *created_dirs[INIT_MAX_DIRS];	/* in creation order */
	size_t n_created_dirs;
	char *created_db;		/* a new identity database: removed on failure */
	/* --user */
	bool as_user;
	char *user;
	uid_t uid;
	gid_t gid;
};

/* Set by the signal handler of mw_cmd_init: the run stops at its next
 * step and removes what it created. */
extern volatile sig_atomic_t init_interrupted;

/* Prints "moonwire init KIND: MESSAGE" on stderr; returns -1. */
int init_fail(const struct init_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

bool init_jid_ok(const char *jid);
bool init_principal_ok(const char *s);
bool init_host_ok(const char *s);
bool init_port_ok(const char *s);
int init_read_ed25519_pub(const struct init_run *r, const char *what, const char
    *path, char **line);
int init_check_signing_key(const struct init_run *r, const char *path);
int init_read_password(const struct init_run *r, const char *file, const char
    *jid, char out[PASSWORD_MAX]);
char *init_abs_dir(const struct init_run *r, const char *opt, const char *path);
int init_make_dirs(struct init_run *r, const char *path, mode_t mode, uid_t uid,
    gid_t gid);
struct staged_file *init_stage_add(struct init_run *r, const char *name, mode_t
    mode, uid_t uid, gid_t gid, bool secret, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
int init_check_destinations(struct init_run *r);
int init_stage_write(struct init_run *r);
void init_run_finish(struct init_run *r, bool ok);
void init_print_unstaged(const struct init_run *r, const char *msg);
int init_identity_and_commit(struct init_run *r, const char *jid, const char
    *db, uint32_t *device, char fp[MW_OMEMO_FP_HEXLEN + 1]);
void init_print_identity(const char *jid, uint32_t device, const char *fp);

#endif
