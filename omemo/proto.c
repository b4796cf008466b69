/*
 * proto.c: strict shape checks of the protobufs of both OMEMO versions
 * before libomemo-c parses them.  Legacy: every key 33 bytes (below).
 * OMEMO 2 (XEP-0384 v0.8 §5, libomemo-c protobuf/OMEMO.proto):
 *
 *   OMEMOMessage              { 1 n: uint32; 2 pn: uint32; 3 dh_pub: 32 bytes;
 *                               4 ciphertext: bytes, optional }
 *   OMEMOAuthenticatedMessage { 1 mac: 16 bytes; 2 message: OMEMOMessage }
 *   OMEMOKeyExchange          { 1 pk_id: uint32; 2 spk_id: uint32;
 *                               3 ik: 32 bytes (Ed25519); 4 ek: 32 bytes;
 *                               5 message: OMEMOAuthenticatedMessage }
 *
 * Why: libomemo-c's version-4 decoders also take 33-byte legacy key forms
 * (curve_decode_point), so an OMEMO 2 message could smuggle a key in a
 * form the XEP does not have.  Here every required field occurs exactly
 * once with its exact length and wire type, no other field occurs, and
 * uint32 values fit; the walk reads bytes only through struct mw_buf.
 */
#include "omemo/omemo_int.h"
#include "wire/mw_wire.h"

#define MAX_FIELDS	8

struct field {
	uint64_t v;		/* varint value */
	const uint8_t *p;	/* length-delimited: bytes */
	size_t n;
	bool seen;
};

static bool
varint(struct mw_buf *b, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t c;

		if (mw_buf_get_u8(b, &c) != 0)
			return false;
		r |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			*v = r;
			return true;
		}
	}
	return false;
}

/*
 * Reads every field of one message into f[1..nf]; bytes_mask bit k: field
 * k is length-delimited (else a uint32 varint).  Unknown or repeated
 * fields, other wire types, truncation: false.
 */
static bool
walk(const uint8_t *p, size_t n, struct field f[MAX_FIELDS], unsigned nf,
    uint32_t bytes_mask)
{
	struct mw_buf b;

	memset(f, 0, sizeof(*f) * MAX_FIELDS);
	mw_buf_view(&b, p, n);
	while (mw_buf_avail(&b) > 0) {
		uint64_t key, num, len;
		unsigned wt;

		if (!varint(&b, &key))
			return false;
		num = key >> 3;
		wt = (unsigned)(key & 7);
		if (num == 0 || num > nf || f[num].seen)
			return false;
		f[num].seen = true;
		if ((bytes_mask >> num) & 1) {
			if (wt != 2 || !varint(&b, &len) ||
			    len > mw_buf_avail(&b))
				return false;
			f[num].p = mw_buf_ptr(&b);
			f[num].n = (size_t)len;
			if (mw_buf_skip(&b, (size_t)len) != 0)
				return false;
		} else {
			if (wt != 0 || !varint(&b, &f[num].v) ||
			    f[num].v > UINT32_MAX)
				return false;
		}
	}
	return true;
}

bool
omemo2_message_ok(const uint8_t *p, size_t n)
{
	struct field f[MAX_FIELDS];

	return walk(p, n, f, 4, (1u << 3) | (1u << 4)) && f[1].seen &&
	    f[2].seen && f[3].seen && f[3].n == 32;
}

bool
omemo2_authmsg_ok(const uint8_t *p, size_t n)
{
	struct field f[MAX_FIELDS];

	return walk(p, n, f, 2, (1u << 1) | (1u << 2)) && f[1].seen &&
	    f[1].n == 16 && f[2].seen && omemo2_message_ok(f[2].p, f[2].n);
}

bool
omemo2_kex_ok(const uint8_t *p, size_t n)
{
	struct field f[MAX_FIELDS];

	return walk(p, n, f, 5, (1u << 3) | (1u << 4) | (1u << 5)) &&
	    f[1].seen && f[2].seen && f[3].seen && f[3].n == 32 &&
	    f[4].seen && f[4].n == 32 && f[5].seen &&
	    omemo2_authmsg_ok(f[5].p, f[5].n);
}

/*
 * Legacy key forms.  libsignal-protocol-c decoded a key only in its 33-byte
 * form (0x05 || X25519); libomemo-c's curve_decode_point() also takes a
 * bare 32-byte key, as OMEMO 2's Ed25519 form, and converts it.  So that
 * the legacy wire stays exactly as strict as it was before the switch,
 * every key of a legacy message must be 33 bytes on the wire:
 * SignalMessage.ratchetKey (field 1), PreKeySignalMessage.baseKey (2) and
 * .identityKey (3), and the SignalMessage inside the latter (4) in turn.
 * This only walks the protobuf framing (wire types 0, 1, 2, 5; anything
 * else, or a length past the end, is malformed); libomemo-c parses the
 * message afterwards.
 */
static bool
pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		r |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = r;
			return true;
		}
	}
	return false;
}

static bool legacy_signal_message_ok(const uint8_t *m, size_t n);

/* keyfields: bit f set = length-delimited field f must be 33 bytes;
 * nested: the field number that holds a SignalMessage (0: none). */
static bool
legacy_fields_ok(const uint8_t *p, const uint8_t *end, uint32_t keyfields,
    uint64_t nested)
{
	while (p < end) {
		uint64_t key, v, field;

		if (!pb_varint(&p, end, &key))
			return false;
		field = key >> 3;
		switch (key & 7) {
		case 0:
			if (!pb_varint(&p, end, &v))
				return false;
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		case 2:
			if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			if (field < 32 && (keyfields & (UINT32_C(1) << field)) != 0 &&
			    v != 33)
				return false;
			if (nested != 0 && field == nested &&
			    !legacy_signal_message_ok(p, (size_t)v))
				return false;
			p += v;
			break;
		default:
			return false;
		}
	}
	return true;
}

/* version byte, protobuf, 8-byte truncated MAC */
static bool
legacy_signal_message_ok(const uint8_t *m, size_t n)
{
	return n > 1 + 8 && legacy_fields_ok(m + 1, m + n - 8,
	    UINT32_C(1) << 1, 0);
}

/* version byte, protobuf */
bool
omemo_legacy_prekey_ok(const uint8_t *m, size_t n)
{
	return n > 1 && legacy_fields_ok(m + 1, m + n,
	    (UINT32_C(1) << 2) | (UINT32_C(1) << 3), 4);
}

bool
omemo_legacy_message_ok(const uint8_t *m, size_t n)
{
	return legacy_signal_message_ok(m, n);
}
