/*
 * mw_wire.h: the one buffer API and the one framed codec of moonwire.
 *
 * Every byte moonwire parses (frames between its processes, SSHSIG blobs,
 * envelopes, policy lines) goes through struct mw_buf, a length-checked
 * buffer in the spirit of OpenSSH's sshbuf: a reader can never step past the
 * data it was given, and a writer can never grow past the maximum the buffer
 * was created with.  Every process boundary (agent <-> supervisor,
 * supervisor <-> worker) speaks mw frames:
 *
 *     "MW" | version u8 (=1) | type u8 | payload length u32 (big endian) | payload
 *
 * and payloads are built from the primitives below (big-endian integers,
 * u32-length-prefixed strings, and the tagged value tree used for Lua values).
 * spec/wire.md is the normative description.
 *
 * Invariant: functions return 0 (or a non-negative count) on success and a
 * negative MW_WIRE_E* code on failure; on failure a reader's offset is left
 * where it was, so a caller may retry a short read after more data arrives.
 */
#ifndef MW_WIRE_H
#define MW_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum mw_wire_err {
	MW_WIRE_OK = 0,
	MW_WIRE_ESHORT = -1,	/* not enough data yet */
	MW_WIRE_ETOOBIG = -2,	/* exceeds the buffer's or the frame's maximum */
	MW_WIRE_ENOMEM = -3,
	MW_WIRE_EFORMAT = -4,	/* malformed: bad magic, version, tag, NUL in string */
	MW_WIRE_EDEPTH = -5,	/* value nested too deeply */
	MW_WIRE_EIO = -6,	/* read/write on a descriptor failed */
	MW_WIRE_EEOF = -7,	/* peer closed */
	MW_WIRE_ERDONLY = -8,	/* write to a read-only view */
};

const char *mw_wire_strerror(int err);

/* ---- length-checked buffer ---- */

struct mw_buf {
	uint8_t *data;
	size_t alloc;	/* bytes allocated at data */
	size_t off;	/* read offset: data[off..len) is unread */
	size_t len;	/* end of written data */
	size_t max;	/* maximum len this buffer may ever reach */
	bool readonly;	/* a view over someone else's bytes */
};

#define MW_BUF_DEFAULT_MAX (64u * 1024 * 1024)

void mw_buf_init(struct mw_buf *b, size_t max);
void mw_buf_free(struct mw_buf *b);	/* wipes and releases; b becomes empty */
void mw_buf_reset(struct mw_buf *b);	/* drop all data, keep the allocation */
/* A read-only view over [p, p+n); nothing is copied or freed. */
void mw_buf_view(struct mw_buf *b, const void *p, size_t n);

size_t mw_buf_avail(const struct mw_buf *b);	/* unread bytes */
const uint8_t *mw_buf_ptr(const struct mw_buf *b);
/* Reclaims consumed space at the front of a writable buffer. */
void mw_buf_compact(struct mw_buf *b);

/* Writers. */
int mw_buf_reserve(struct mw_buf *b, size_t n, uint8_t **dst);
int mw_buf_put(struct mw_buf *b, const void *p, size_t n);
int mw_buf_put_u8(struct mw_buf *b, uint8_t v);
int mw_buf_put_u16(struct mw_buf *b, uint16_t v);
int mw_buf_put_u32(struct mw_buf *b, uint32_t v);
int mw_buf_put_u64(struct mw_buf *b, uint64_t v);
/* u32 length then the bytes. */
int mw_buf_put_string(struct mw_buf *b, const void *p, size_t n);
int mw_buf_put_cstring(struct mw_buf *b, const char *s);
int mw_buf_putf(struct mw_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Overwrites 4 bytes at absolute position pos (< len). */
int mw_buf_poke_u32(struct mw_buf *b, size_t pos, uint32_t v);

/* Readers: consume from the front; on error nothing is consumed. */
int mw_buf_get(struct mw_buf *b, void *dst, size_t n);
int mw_buf_skip(struct mw_buf *b, size_t n);
int mw_buf_get_u8(struct mw_buf *b, uint8_t *v);
int mw_buf_get_u16(struct mw_buf *b, uint16_t *v);
int mw_buf_get_u32(struct mw_buf *b, uint32_t *v);
int mw_buf_get_u64(struct mw_buf *b, uint64_t *v);
int mw_buf_peek_u32(const struct mw_buf *b, size_t at, uint32_t *v);
/* A string's bytes in place: *p points into b and lives as long as b. */
int mw_buf_get_string_direct(struct mw_buf *b, const uint8_t **p, size_t *n);
/* A string as a view buffer over its bytes (no copy). */
int mw_buf_get_string_view(struct mw_buf *b, struct mw_buf *view);
/* A string copied into a fresh NUL-terminated heap string; refuses embedded
 * NULs and strings longer than maxlen. */
int mw_buf_get_cstring(struct mw_buf *b, char **out, size_t maxlen);
/* Reads one line (without its '\n', a trailing '\r' removed) as a view. */
int mw_buf_get_line(struct mw_buf *b, const uint8_t **p, size_t *n);

/* Descriptor I/O.  mw_buf_fill reads once (non-blocking friendly): returns
 * bytes read, MW_WIRE_EEOF on end of file, MW_WIRE_ESHORT on EAGAIN. */
int mw_buf_fill(struct mw_buf *b, int fd, size_t want);
/* Writes all unread bytes of b to fd (blocking); consumes them. */
int mw_buf_drain_fd(struct mw_buf *b, int fd);
/* Writes what the fd takes now (non-blocking fd); returns bytes written or
 * MW_WIRE_ESHORT when nothing could be written. */
int mw_buf_flush_some(struct mw_buf *b, int fd);

/* ---- frames ---- */

#define MW_FRAME_VERSION 1
#define MW_FRAME_HEADER 8

/* Starts a frame of the given type in out; remember *start for mw_frame_end. */
int mw_frame_begin(struct mw_buf *out, uint8_t type, size_t *start);
/* Patches the payload length of the frame started at start. */
int mw_frame_end(struct mw_buf *out, size_t start);
/*
 * Takes one whole frame off the front of in.  On success *type is set and
 * payload is a read-only view of the payload (valid until in changes).
 * MW_WIRE_ESHORT: incomplete, wait for more.  MW_WIRE_EFORMAT: bad magic or
 * version.  MW_WIRE_ETOOBIG: declared payload exceeds max_payload.
 */
int mw_frame_take(struct mw_buf *in, size_t max_payload, uint8_t *type,
    struct mw_buf *payload);
/* Blocking read of exactly one frame from fd into in (in is reset first). */
int mw_frame_read_fd(int fd, struct mw_buf *in, size_t max_payload,
    uint8_t *type, struct mw_buf *payload);

/* ---- value tree (Lua values across process boundaries) ---- */

enum mw_value_tag {
	MW_V_NIL = 0,
	MW_V_FALSE = 1,
	MW_V_TRUE = 2,
	MW_V_INT = 3,		/* u64 two's complement */
	MW_V_NUMBER = 4,	/* u64 IEEE-754 bits */
	MW_V_STRING = 5,	/* string */
	MW_V_TABLE = 6,		/* u32 pair count, then key value key value ... */
};

struct mw_value_limits {
	unsigned max_depth;	/* tables nested at most this deep */
	size_t max_items;	/* total number of values */
};

/*
 * Walks one encoded value, checking structure and limits, and consumes it.
 * When visit is non-NULL it is called for each value in document order with
 * the value's depth; a table's visit is followed by its pairs and then by a
 * call with tag MW_V_TABLE and end=true.  A non-zero return from visit stops
 * the walk and is returned.
 */
struct mw_value_event {
	enum mw_value_tag tag;
	bool end;		/* closing a table */
	bool is_key;		/* this value is a table key */
	unsigned depth;
	uint32_t count;		/* pairs, for a table start */
	int64_t i;
	double n;
	const uint8_t *s;
	size_t slen;
};
typedef int (*mw_value_visit_fn)(const struct mw_value_event *ev, void *arg);
int mw_value_walk(struct mw_buf *b, const struct mw_value_limits *lim,
    mw_value_visit_fn visit, void *arg);
/* As mw_value_walk without a visitor, and also MW_WIRE_EFORMAT when a table
 * holds two equal keys (as Lua compares them: 1 and 1.0 are one key) or a
 * key that is nil, NaN or a table: a tree Lua itself could not have made. */
int mw_value_check_keys(struct mw_buf *b, const struct mw_value_limits *lim);

#endif
