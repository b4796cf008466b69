/*
 * sshsig_int.h: private to runtime/job/: what sshsig.c (verify, armor,
 * public keys) and sshsig_sign.c (private keys, ssh-agent, sign) share.
 */
#ifndef MW_SSHSIG_INT_H
#define MW_SSHSIG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "wire/mw_wire.h"

#define SSHSIG_MAGIC		"SSHSIG"
#define SSHSIG_VERSION		1
#define KEYTYPE_ED25519		"ssh-ed25519"
#define ED25519_BLOB_LEN	(4 + 11 + 4 + 32)
#define ED25519_SIG_LEN		64

/* The bytes the key signs: "SSHSIG" || string ns || string reserved
 * (always empty) || string hash_alg || string H(msg), appended to out;
 * hashalg is "sha256" or "sha512".  0, or -1. */
int mw_sshsig_signed_data(struct mw_buf *out, const char *ns,
    const char *hashalg, const uint8_t *msg, size_t msg_len);
/* 0 when sig is pub's Ed25519 signature over data, else -1. */
int mw_ed25519_verify(const uint8_t pub[32], const uint8_t *sig,
    size_t siglen, const uint8_t *data, size_t len);

/* An SSH signature blob (string "ssh-ed25519", string sig[64]): *sig
 * points at the 64 bytes inside p.  0, or -1. */
int mw_ssh_sig_blob_parse(const uint8_t *p, size_t n, const uint8_t **sig);

/* the n bytes at p are exactly the string s */
static inline bool
str_is(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

#endif
