/*
 * buf.c: struct mw_buf, the length-checked buffer every parser in moonwire
 * reads through.
 *
 * Invariants: off <= len <= alloc, len <= max; a read-only view never
 * reallocates or frees; a failed read consumes nothing.  Freed memory is
 * wiped because buffers carry plaintext and key material in the agent
 * (glibc's explicit_bzero, which the compiler may not elide: the same
 * guarantee as OPENSSL_cleanse, without linking libcrypto into
 * moonwire-zygote, which maps as little as it can).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire/mw_wire.h"

const char *
mw_wire_strerror(int err)
{
	switch (err) {
	case MW_WIRE_OK: return "success";
	case MW_WIRE_ESHORT: return "incomplete data";
	case MW_WIRE_ETOOBIG: return "size limit exceeded";
	case MW_WIRE_ENOMEM: return "out of memory";
	case MW_WIRE_EFORMAT: return "malformed data";
	case MW_WIRE_EDEPTH: return "nesting too deep";
	case MW_WIRE_EIO: return "i/o error";
	case MW_WIRE_EEOF: return "peer closed";
	case MW_WIRE_ERDONLY: return "read-only buffer";
	}
	return "unknown error";
}

void
mw_buf_init(struct mw_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max ? max : MW_BUF_DEFAULT_MAX;
}

void
mw_buf_free(struct mw_buf *b)
{
	if (!b->readonly && b->data != NULL) {
		explicit_bzero(b->data, b->alloc);
		free(b->data);
	}
	size_t max = b->max;
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
mw_buf_reset(struct mw_buf *b)
{
	if (b->readonly) {
		b->off = b->len;
		return;
	}
	b->off = b->len = 0;
}

void
mw_buf_view(struct mw_buf *b, const void *p, size_t n)
{
	memset(b, 0, sizeof(*b));
	b->data = (uint8_t *)(uintptr_t)p;
	b->alloc = b->len = b->max = n;
	b->readonly = true;
}

size_t
mw_buf_avail(const struct mw_buf *b)
{
	return b->len - b->off;
}

const uint8_t *
mw_buf_ptr(const struct mw_buf *b)
{
	/* An empty buffer may have no allocation yet: NULL + 0 is undefined. */
	return b->data == NULL ? NULL : b->data + b->off;
}

void
mw_buf_compact(struct mw_buf *b)
{
	if (b->readonly || b->off == 0)
		return;
	memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

int
mw_buf_reserve(struct mw_buf *b, size_t n, uint8_t **dst)
{
	if (b->readonly)
		return MW_WIRE_ERDONLY;
	if (n > b->max)
		return MW_WIRE_ETOOBIG;	/* never fits, and b->max - n would wrap */
	if (b->len > b->max - n) {
		/* Consumed space at the front may be enough. */
		if (b->off > 0 && b->len - b->off <= b->max - n)
			mw_buf_compact(b);
		else
			return MW_WIRE_ETOOBIG;
	}
	if (b->len + n > b->alloc) {
		size_t want = b->alloc ? b->alloc : 256;
		while (want < b->len + n)
			want = want > b->max / 2 ? b->max : want * 2;
		uint8_t *p = malloc(want);
		if (p == NULL)
			return MW_WIRE_ENOMEM;
		if (b->data != NULL) {
			memcpy(p, b->data, b->len);
			explicit_bzero(b->data, b->alloc);
			free(b->data);
		}
		b->data = p;
		b->alloc = want;
	}
	if (dst != NULL)
		*dst = b->data + b->len;
	b->len += n;
	return 0;
}

int
mw_buf_put(struct mw_buf *b, const void *p, size_t n)
{
	uint8_t *d;
	int r = mw_buf_reserve(b, n, &d);
	if (r == 0 && n > 0)
		memcpy(d, p, n);
	return r;
}

int
mw_buf_put_u8(struct mw_buf *b, uint8_t v)
{
	return mw_buf_put(b, &v, 1);
}

int
mw_buf_put_u16(struct mw_buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	return mw_buf_put(b, x, 2);
}

int
mw_buf_put_u32(struct mw_buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };
	return mw_buf_put(b, x, 4);
}

int
mw_buf_put_u64(struct mw_buf *b, uint64_t v)
{
	uint8_t x[8];
	for (int i = 0; i < 8; i++)
		x[i] = (uint8_t)(v >> (56 - 8 * i));
	return mw_buf_put(b, x, 8);	/* all or nothing */
}

int
mw_buf_put_string(struct mw_buf *b, const void *p, size_t n)
{
	uint8_t *d;
	if (n > UINT32_MAX)
		return MW_WIRE_ETOOBIG;
	/* One reservation: a failure leaves b as it was (a rollback to an
	 * earlier len would be wrong if the first write compacted b). */
	int r = mw_buf_reserve(b, 4 + n, &d);
	if (r != 0)
		return r;
	d[0] = (uint8_t)(n >> 24);
	d[1] = (uint8_t)(n >> 16);
	d[2] = (uint8_t)(n >> 8);
	d[3] = (uint8_t)n;
	if (n > 0)
		memcpy(d + 4, p, n);
	return 0;
}

int
mw_buf_put_cstring(struct mw_buf *b, const char *s)
{
	return mw_buf_put_string(b, s, s ? strlen(s) : 0);
}

int
mw_buf_putf(struct mw_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return MW_WIRE_EFORMAT;
	uint8_t *d;
	int r = mw_buf_reserve(b, (size_t)n + 1, &d);
	if (r != 0)
		return r;
	va_start(ap, fmt);
	vsnprintf((char *)d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len--;	/* the NUL is not part of the data */
	return 0;
}

int
mw_buf_poke_u32(struct mw_buf *b, size_t pos, uint32_t v)
{
	if (b->readonly)
		return MW_WIRE_ERDONLY;
	if (pos > b->len || b->len - pos < 4)
		return MW_WIRE_ETOOBIG;
	b->data[pos] = (uint8_t)(v >> 24);
	b->data[pos + 1] = (uint8_t)(v >> 16);
	b->data[pos + 2] = (uint8_t)(v >> 8);
	b->data[pos + 3] = (uint8_t)v;
	return 0;
}

int
mw_buf_get(struct mw_buf *b, void *dst, size_t n)
{
	if (mw_buf_avail(b) < n)
		return MW_WIRE_ESHORT;
	if (dst != NULL && n > 0)
		memcpy(dst, b->data + b->off, n);
	b->off += n;
	return 0;
}

int
mw_buf_skip(struct mw_buf *b, size_t n)
{
	return mw_buf_get(b, NULL, n);
}

int
mw_buf_get_u8(struct mw_buf *b, uint8_t *v)
{
	return mw_buf_get(b, v, 1);
}

int
mw_buf_get_u16(struct mw_buf *b, uint16_t *v)
{
	uint8_t x[2];
	int r = mw_buf_get(b, x, 2);
	if (r == 0 && v != NULL)
		*v = (uint16_t)((x[0] << 8) | x[1]);
	return r;
}

int
mw_buf_peek_u32(const struct mw_buf *b, size_t at, uint32_t *v)
{
	if (mw_buf_avail(b) < 4 || mw_buf_avail(b) - 4 < at)
		return MW_WIRE_ESHORT;
	const uint8_t *x = b->data + b->off + at;
	*v = ((uint32_t)x[0] << 24) | ((uint32_t)x[1] << 16) |
	    ((uint32_t)x[2] << 8) | x[3];
	return 0;
}

int
mw_buf_get_u32(struct mw_buf *b, uint32_t *v)
{
	uint32_t x;
	int r = mw_buf_peek_u32(b, 0, &x);
	if (r != 0)
		return r;
	b->off += 4;
	if (v != NULL)
		*v = x;
	return 0;
}

int
mw_buf_get_u64(struct mw_buf *b, uint64_t *v)
{
	uint32_t hi = 0, lo = 0;
	if (mw_buf_avail(b) < 8)
		return MW_WIRE_ESHORT;
	mw_buf_get_u32(b, &hi);
	mw_buf_get_u32(b, &lo);
	if (v != NULL)
		*v = ((uint64_t)hi << 32) | lo;
	return 0;
}

int
mw_buf_get_string_direct(struct mw_buf *b, const uint8_t **p, size_t *n)
{
	uint32_t len;
	int r = mw_buf_peek_u32(b, 0, &len);
	if (r != 0)
		return r;
	if (mw_buf_avail(b) - 4 < len)
		return MW_WIRE_ESHORT;
	b->off += 4;
	if (p != NULL)
		*p = b->data + b->off;
	if (n != NULL)
		*n = len;
	b->off += len;
	return 0;
}

int
mw_buf_get_string_view(struct mw_buf *b, struct mw_buf *view)
{
	const uint8_t *p;
	size_t n;
	int r = mw_buf_get_string_direct(b, &p, &n);
	if (r == 0)
		mw_buf_view(view, p, n);
	return r;
}

int
mw_buf_get_cstring(struct mw_buf *b, char **out, size_t maxlen)
{
	const uint8_t *p;
	size_t n;
	size_t save = b->off;
	int r = mw_buf_get_string_direct(b, &p, &n);
	if (r != 0)
		return r;
	if (n > maxlen) {
		b->off = save;
		return MW_WIRE_ETOOBIG;
	}
	if (memchr(p, '\0', n) != NULL) {
		b->off = save;
		return MW_WIRE_EFORMAT;
	}
	char *s = malloc(n + 1);
	if (s == NULL) {
		b->off = save;
		return MW_WIRE_ENOMEM;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return 0;
}

int
mw_buf_get_line(struct mw_buf *b, const uint8_t **p, size_t *n)
{
	size_t avail = mw_buf_avail(b);
	if (avail == 0)
		return MW_WIRE_ESHORT;
	const uint8_t *start = mw_buf_ptr(b);
	const uint8_t *nl = memchr(start, '\n', avail);
	size_t linelen = nl ? (size_t)(nl - start) : avail;
	b->off += nl ? linelen + 1 : linelen;
	if (linelen > 0 && start[linelen - 1] == '\r')
		linelen--;
	*p = start;
	*n = linelen;
	return 0;
}

int
mw_buf_fill(struct mw_buf *b, int fd, size_t want)
{
	uint8_t *d;
	size_t room = b->max - (b->len - b->off);
	if (want > room)
		want = room;
	if (want == 0)
		return MW_WIRE_ETOOBIG;
	int r = mw_buf_reserve(b, want, &d);
	if (r != 0)
		return r;
	b->len -= want;
	ssize_t got;
	do {
		got = read(fd, d, want);
	} while (got < 0 && errno == EINTR);
	if (got < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ?
		    MW_WIRE_ESHORT : MW_WIRE_EIO;
	if (got == 0)
		return MW_WIRE_EEOF;
	b->len += (size_t)got;
	return (int)got;
}

int
mw_buf_drain_fd(struct mw_buf *b, int fd)
{
	while (mw_buf_avail(b) > 0) {
		ssize_t w = write(fd, mw_buf_ptr(b), mw_buf_avail(b));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return MW_WIRE_EIO;
		b->off += (size_t)w;
	}
	mw_buf_reset(b);
	return 0;
}

int
mw_buf_flush_some(struct mw_buf *b, int fd)
{
	if (mw_buf_avail(b) == 0)
		return 0;
	ssize_t w;
	do {
		w = write(fd, mw_buf_ptr(b), mw_buf_avail(b));
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ?
		    MW_WIRE_ESHORT : MW_WIRE_EIO;
	b->off += (size_t)w;
	if (b->off == b->len)
		mw_buf_reset(b);
	return (int)w;
}
