/*
 * job.h: the runtime's job room -- what makes a signed job: envelopes v1
 * (with their signed arguments), signed cancellations (cancel.c),
 * OpenSSH signatures (SSHSIG), the
 * allowed_signers file, and the policy (policy.c; its API is in
 * mw_runtime.h, which other components use).  Private to runtime/ (the
 * agent, `moonwire sign`,
 * `verify` and `send` use it); spec/envelope.md is the authority for every
 * byte described here.
 *
 * Why natively and not by running ssh-keygen: the agent verifies every job
 * on its hot path, and it must not depend on a helper process it cannot
 * confine.  Only Ed25519 keys are accepted; the primitive is OpenSSL's.
 *
 * Invariant: a parse or verify function either returns 0 with its output
 * filled, or a negative enum mw_refusal with its output zeroed (safe to
 * free) and a one-line reason in err.
 */
#ifndef MW_SIGNING_H
#define MW_SIGNING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/mw_sandbox.h"

#define MW_JOB_NAMESPACE	"moonwire-job"	/* SSHSIG namespace of envelopes */
#define MW_ENVELOPE_MAGIC	"moonwire-job 1"	/* first line of an envelope */
#define MW_ENVELOPE_PREFIX	"moonwire-job "		/* of any version: parsed, not chat */
#define MW_ENVELOPE_MAX		(120u * 1024)	/* whole envelope text, bytes */
#define MW_JOB_ID_MAX		64	/* [A-Za-z0-9._-]{1,64} */
#define MW_JID_MAX		3071	/* RFC 7622 bound on a bare JID */
#define MW_SSH_FP_MAX		64	/* "SHA256:" + 43 base64 chars + NUL fits */

/*
 * Why a job was refused before it ran: the closed list of refusal codes
 * (spec/errors.md).  Values are negative so they never collide with
 * enum mw_job_status; names never change.
 */
enum mw_refusal {
	MW_REFUSE_NONE = 0,
	MW_REFUSE_MALFORMED = -1,		/* envelope text does not parse */
	MW_REFUSE_VERSION = -2,			/* not "moonwire-job 1" */
	MW_REFUSE_OVERSIZED = -3,		/* envelope or program over the limit */
	MW_REFUSE_BAD_SIGNATURE = -4,		/* SSHSIG malformed or does not verify */
	MW_REFUSE_UNSUPPORTED_HASH = -5,	/* hash other than sha256/sha512 */
	MW_REFUSE_UNSUPPORTED_KEY = -6,		/* key type other than ssh-ed25519 */
	MW_REFUSE_WRONG_NAMESPACE = -7,		/* SSHSIG namespace != MW_JOB_NAMESPACE */
	MW_REFUSE_UNKNOWN_SIGNER = -8,		/* key not in allowed_signers (or outside its validity/namespaces) */
	MW_REFUSE_SIGNER_NOT_ALLOWED = -9,	/* policy does not allow that principal for that JID */
	MW_REFUSE_UNTRUSTED_DEVICE = -10,	/* OMEMO sender device not verified */
	MW_REFUSE_WRONG_AUDIENCE = -11,		/* audience is not this agent's bare JID */
	MW_REFUSE_EXPIRED = -12,		/* now > not-after (no skew) */
	MW_REFUSE_NOT_YET_VALID = -13,		/* now < issued-at - skew */
	MW_REFUSE_VALIDITY_TOO_LONG = -14,	/* not-after - issued-at over the policy maximum */
	MW_REFUSE_REPLAY = -15,			/* job id already used by that signer for other bytes */
	MW_REFUSE_NOT_A_JOB = -16,		/* plain chat text and interactive mode is off */
	MW_REFUSE_RATE_LIMITED = -17,		/* sender over its rate limit */
	MW_REFUSE_STORAGE = -18,		/* the journal could not record the job */
	MW_REFUSE_BAD_LIMITS = -19,		/* requested limits line invalid */
	MW_REFUSE_BAD_ARGS = -20,		/* args line invalid, or args the policy does not allow */
	MW_REFUSE_UNKNOWN_JOB = -21,		/* cancellation: no job of that signer with that id */
	MW_REFUSE_ALREADY_FINISHED = -22,	/* cancellation: the job already has its result */
	MW_REFUSE_MIN = -22
};
const char *mw_refusal_name(int code);		/* "bad_signature", ...; "unknown" otherwise */
int mw_refusal_from_name(const char *name);	/* 0 if unknown */

/* ---- the envelope ---- */

/*
 * A job's signed arguments (spec/envelope.md `args`, spec/lua-api.md
 * `args`): at most MW_ARGS_MAX, names [a-z_][a-z0-9_]* of at most
 * MW_ARG_NAME_MAX bytes, unique and kept in ascending order; values UTF-8
 * text without control characters other than TAB, at most
 * MW_ARG_VALUE_MAX bytes.
 */
struct mw_job_args {
	char *name[MW_ARGS_MAX];
	char *value[MW_ARGS_MAX];
	uint32_t n;
};
void mw_job_args_free(struct mw_job_args *a);
/* Adds one "NAME=VALUE" (a command-line --arg).  0, or -1 with err. */
int mw_job_args_add_spec(struct mw_job_args *a, const char *spec, char *err, size_t errlen);
/* The `args:` header value: name=value pairs, names ascending, values
 * percent-encoded; malloc'ed, NULL when out of memory. */
char *mw_job_args_encode(const struct mw_job_args *a);
/* Parses an `args:` value.  0, or MW_REFUSE_BAD_ARGS with err. */
int mw_job_args_decode(const char *s, size_t n, struct mw_job_args *a, char *err, size_t errlen);
/* The arguments as the sandbox takes them (pointers into a). */
void mw_job_args_view(const struct mw_job_args *a, struct mw_job_arg out[MW_ARGS_MAX]);
/* Strict UTF-8; with text, no control characters but TAB and LF.  The
 * offset of the first bad byte, or n. */
size_t mw_utf8_check(const uint8_t *s, size_t n, bool text);

struct mw_envelope {
	char audience[MW_JID_MAX + 1];
	char job_id[MW_JOB_ID_MAX + 1];
	int64_t issued_at;		/* Unix seconds, UTC */
	int64_t not_after;
	bool has_limits;		/* a `limits:` line was present */
	struct mw_job_args args;	/* from the `args:` line (none: n == 0) */
	char limits_text[512];		/* its value, verbatim ("" if none) */
	struct mw_limits limits;	/* mw_limits_maximum() overridden by the line */
	const uint8_t *program;		/* into the caller's text; program_len bytes */
	size_t program_len;
	const uint8_t *signed_bytes;	/* into the caller's text: magic .. end of program */
	size_t signed_len;
	uint8_t *sig;			/* decoded SSHSIG blob (malloc) */
	size_t sig_len;
	uint8_t sha256[32];		/* SHA-256 of the envelope text without trailing blanks */
};
/*
 * Parses an envelope (spec/envelope.md).  The text must outlive *e
 * (program and signed_bytes point into it).  Does not verify the
 * signature.  Returns 0 or MW_REFUSE_MALFORMED / VERSION / OVERSIZED /
 * BAD_SIGNATURE (armor or base64 broken) / BAD_LIMITS.
 */
int mw_envelope_parse(const char *text, size_t len, struct mw_envelope *e,
    char *err, size_t errlen);
void mw_envelope_free(struct mw_envelope *e);

struct mw_envelope_fields {
	const char *audience;		/* bare JID */
	const char *job_id;		/* NULL: 32 random lowercase hex digits */
	int64_t issued_at;		/* Unix seconds */
	int64_t not_after;
	const char *limits_text;	/* NULL or "" for none; validated */
	const struct mw_job_args *args;	/* NULL or none for no `args:` line */
};
/* The signed part (magic line .. program), malloc'ed, NUL-terminated;
 * *job_id_out (optional) receives the job id used. */
int mw_envelope_build(const struct mw_envelope_fields *f,
    const uint8_t *program, size_t program_len, char **out, size_t *outlen,
    char job_id_out[MW_JOB_ID_MAX + 1], char *err, size_t errlen);
/* signed part + "\n" + armored signature ("-----BEGIN SSH SIGNATURE-----"
 * ... "-----END SSH SIGNATURE-----\n") -> the whole envelope, malloc'ed. */
int mw_envelope_attach(const char *signed_part, size_t signed_len,
    const char *armored_sig, size_t armored_len, char **out, size_t *outlen,
    char *err, size_t errlen);

/* ---- SSHSIG ---- */

struct mw_ssh_pubkey {
	uint8_t ed25519[32];
	char fp[MW_SSH_FP_MAX];		/* "SHA256:<base64 without padding>", as ssh-keygen -l */
};
/*
 * Verifies a decoded SSHSIG blob over msg: magic, version 1, ssh-ed25519
 * key, namespace == ns, hash sha256 or sha512, signature.  On success
 * *signer is the key that signed (still to be looked up in
 * allowed_signers).  Errors: BAD_SIGNATURE, UNSUPPORTED_HASH,
 * UNSUPPORTED_KEY, WRONG_NAMESPACE.
 */
int mw_sshsig_verify(const uint8_t *sig, size_t sig_len, const char *ns,
    const uint8_t *msg, size_t msg_len, struct mw_ssh_pubkey *signer,
    char *err, size_t errlen);

/* A signing key: an unencrypted OpenSSH Ed25519 private key file, or the
 * key of that public key held by ssh-agent ($SSH_AUTH_SOCK). */
struct mw_ssh_signer;
/* path: a private key file ("openssh-key-v1", unencrypted), or a ".pub"
 * file whose private half is in ssh-agent.  An encrypted private key is
 * refused with a message pointing at ssh-agent or `ssh-keygen -Y sign`. */
int mw_ssh_signer_load(const char *path, struct mw_ssh_signer **out,
    char *err, size_t errlen);
void mw_ssh_signer_free(struct mw_ssh_signer *s);
const struct mw_ssh_pubkey *mw_ssh_signer_pubkey(const struct mw_ssh_signer *s);
/* Signs msg in namespace ns with sha512, as `ssh-keygen -Y sign` does;
 * *armored is the armored signature text (malloc'ed, ends with "\n"). */
int mw_sshsig_sign(struct mw_ssh_signer *s, const char *ns,
    const uint8_t *msg, size_t msg_len, char **armored, size_t *armored_len,
    char *err, size_t errlen);
/* Armor <-> blob (76-column base64 between the BEGIN/END lines). */
int mw_sshsig_unarmor(const char *text, size_t len, uint8_t **blob,
    size_t *blob_len);

/* ---- allowed_signers (ssh-keygen(1) ALLOWED SIGNERS) ---- */

struct mw_allowed_signers;
/* Errors name the line: "FILE:LINE: reason".  Lines with cert-authority
 * or a key type other than ssh-ed25519 are kept but can never match. */
int mw_allowed_signers_load(const char *path, struct mw_allowed_signers **out,
    char *err, size_t errlen);
int mw_allowed_signers_parse(const char *text, size_t len, const char *name,
    struct mw_allowed_signers **out, char *err, size_t errlen);
void mw_allowed_signers_free(struct mw_allowed_signers *a);
/*
 * The principals of the first line whose key is key, whose namespaces
 * option (if any) matches ns, and whose valid-after/valid-before contain
 * when (Unix seconds).  *principals points into a (comma-separated list
 * as written, valid until mw_allowed_signers_free).  MW_REFUSE_UNKNOWN_SIGNER
 * when no line matches.
 */
int mw_allowed_signers_find(const struct mw_allowed_signers *a,
    const struct mw_ssh_pubkey *key, const char *ns, int64_t when,
    const char **principals);
/* Whether principal (literal) is in a comma-separated principals list
 * where entries may be patterns (*, ?, leading ! negates, as ssh). */
bool mw_principal_match(const char *principals, const char *principal);

/* Writes the message into err (if any) and returns code: the one way the
 * signing files report a refusal. */
int mw_refuse_msg(int code, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "YYYYMMDDHHMMSS" (14 digits, years from 1970, a real calendar date) in
 * UTC or in local time -> Unix seconds; 0 or -1. */
int mw_civil_time(const char *d14, bool utc, int64_t *out);

/* RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" <-> Unix seconds. */
int mw_time_parse(const char *s, int64_t *out);
void mw_time_format(int64_t t, char out[21]);

/* ---- additions (issue 4, signing): shared by sshsig.c, allowed_signers.c,
 * envelope.c and cmd_sign.c; the agent may use them too ---- */

#define MW_CLOCK_SKEW		60	/* seconds of clock difference tolerated on issued-at */
#define MW_VALIDITY_MAX		(7 * 86400)	/* longest not-after - issued-at `sign` writes */
#define MW_SSHSIG_ARMOR_MAX	512	/* an armored Ed25519 SSHSIG is ~310 bytes */

/* Strict standard base64 (RFC 4648, padding required, no whitespace):
 * 0 and a malloc'ed *out, or -1.  Encode: malloc'ed NUL-terminated text. */
int mw_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen);
char *mw_b64_encode(const uint8_t *p, size_t n);
/* An SSH public key blob (string keytype, string key) -> *out with its
 * fingerprint.  0, MW_REFUSE_UNSUPPORTED_KEY (a well-formed blob of another
 * type) or MW_REFUSE_MALFORMED. */
int mw_ssh_pubkey_from_blob(const uint8_t *blob, size_t len,
    struct mw_ssh_pubkey *out);
/* The blob of an Ed25519 key (51 bytes) into out. */
void mw_ssh_pubkey_blob(const struct mw_ssh_pubkey *k, uint8_t out[51]);
/* A ".pub" / authorized_keys style line "ssh-ed25519 BASE64 [comment]". */
int mw_ssh_pubkey_parse_line(const char *line, struct mw_ssh_pubkey *out,
    char *err, size_t errlen);
/* Armors a blob as 76-column base64 between the BEGIN/END lines, ending
 * with "\n"; malloc'ed. */
char *mw_sshsig_armor(const uint8_t *blob, size_t blob_len, size_t *armored_len);

/*
 * The time rules of spec/envelope.md, in the order they are checked:
 * MW_REFUSE_NOT_YET_VALID when now < issued-at - skew, MW_REFUSE_EXPIRED
 * when now > not-after (no skew: the signer's deadline is a hard one),
 * MW_REFUSE_VALIDITY_TOO_LONG when not-after - issued-at > max_validity.
 */
int mw_envelope_check_time(const struct mw_envelope *e, int64_t now,
    int64_t skew, int64_t max_validity, char *err, size_t errlen);
/*
 * Verifies e's signature in MW_JOB_NAMESPACE over e->signed_bytes, then
 * looks the signer up in a at time now.  0 with *signer and *principals
 * set, or the refusal of mw_sshsig_verify / mw_allowed_signers_find.
 */
int mw_envelope_verify(const struct mw_envelope *e,
    const struct mw_allowed_signers *a, int64_t now,
    struct mw_ssh_pubkey *signer, const char **principals,
    char *err, size_t errlen);

/* Syntax of the header fields (spec/envelope.md): a bare JID, a job id. */
bool mw_bare_jid_valid(const char *s, size_t n);
bool mw_job_id_valid(const char *s, size_t n);
/* The time rules above on a pair of bounds (envelopes and cancellations). */
int mw_validity_check(int64_t issued_at, int64_t not_after, int64_t now,
    int64_t skew, int64_t max_validity, char *err, size_t errlen);

/* ---- the signed cancellation (cancel.c; spec/envelope.md, "Cancellation") ---- */

#define MW_CANCEL_NAMESPACE	"moonwire-cancel"	/* SSHSIG namespace: never a job's */
#define MW_CANCEL_MAGIC		"moonwire-cancel 1"	/* first line */
#define MW_CANCEL_MAX		4096	/* whole cancellation text, bytes */

/*
 * The end of a signed text (an envelope or a cancellation), b positioned
 * at its "-----BEGIN SSH SIGNATURE-----" line: the armored signature into
 * *sig (malloc'ed) and the SHA-256 of the whole text without trailing
 * blanks (its identity in the replay cache).  0 or a refusal code, err
 * saying why (envelope.c).
 */
struct mw_buf;
int mw_signed_tail(struct mw_buf *b, const char *text, size_t len, uint8_t **sig,
    size_t *sig_len, uint8_t sha256[32], char *err, size_t errlen);
struct mw_cancel {
	char audience[MW_JID_MAX + 1];
	char job_id[MW_JOB_ID_MAX + 1];		/* the job to cancel */
	int64_t issued_at;
	int64_t not_after;
	const uint8_t *signed_bytes;		/* into the caller's text: magic .. not-after line */
	size_t signed_len;
	uint8_t *sig;				/* decoded SSHSIG blob (malloc) */
	size_t sig_len;
	uint8_t sha256[32];			/* of the text without trailing blanks */
};
/* Whether text starts like a cancellation ("moonwire-cancel "), any version:
 * how the agent tells a cancellation from a job before parsing. */
bool mw_cancel_is(const void *text, size_t len);
/* Parses (no signature check); the text must outlive *c.  0 or
 * MW_REFUSE_MALFORMED / VERSION / OVERSIZED / BAD_SIGNATURE (armor). */
int mw_cancel_parse(const char *text, size_t len, struct mw_cancel *c,
    char *err, size_t errlen);
void mw_cancel_free(struct mw_cancel *c);
/* SSHSIG in MW_CANCEL_NAMESPACE over c->signed_bytes (a job's signature is
 * WRONG_NAMESPACE), then the key looked up in a for MW_JOB_NAMESPACE at
 * now: only a current job signer may cancel.  As mw_envelope_verify. */
int mw_cancel_verify(const struct mw_cancel *c, const struct mw_allowed_signers *a,
    int64_t now, struct mw_ssh_pubkey *signer, const char **principals,
    char *err, size_t errlen);
/* mw_validity_check on c's bounds. */
int mw_cancel_check_time(const struct mw_cancel *c, int64_t now, int64_t skew,
    int64_t max_validity, char *err, size_t errlen);
/* The signed part (magic .. not-after line), malloc'ed, NUL-terminated. */
int mw_cancel_build(const char *audience, const char *job_id, int64_t issued_at,
    int64_t not_after, char **out, size_t *outlen, char *err, size_t errlen);
/*
 * The whole signed cancellation of job_id for the agent audience, valid
 * from issued_at to not_after (Unix seconds; `moonwire sign --cancel` uses
 * now and now + ttl), signed with s in MW_CANCEL_NAMESPACE: malloc'ed text
 * ready to send as one OMEMO message body.  0 or a refusal code with err.
 */
int mw_cancel_sign(struct mw_ssh_signer *s, const char *audience, const char *job_id,
    int64_t issued_at, int64_t not_after, char **out, size_t *outlen,
    char *err, size_t errlen);

#endif
