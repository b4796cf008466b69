/*
 * fuzzlib.h: helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c).
 * Not a target itself.  A broken invariant aborts with the condition, so
 * libFuzzer records the input as a crash like any sanitizer report.
 */
#ifndef MW_FUZZLIB_H
#define MW_FUZZLIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* p lies entirely inside [base, base+n). */
static inline int
fz_inside(const void *p, size_t len, const void *base, size_t n)
{
	const uint8_t *q = p, *b = base;
	return q >= b && len <= n && q - b <= (ptrdiff_t)(n - len);
}

/* A malloc'ed copy of data, NUL-terminated (the parsers take text). */
static inline char *
fz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* A heap copy of exactly size bytes (no terminator) so ASan sees overreads. */
static inline uint8_t *
fz_copy(const uint8_t *data, size_t size)
{
	uint8_t *s = malloc(size ? size : 1);
	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	return s;
}

/* A consumer over the fuzz input for structured targets. */
struct fz_in {
	const uint8_t *p;
	size_t n;
};
static inline uint8_t
fz_u8(struct fz_in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}
static inline uint32_t
fz_u32(struct fz_in *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | fz_u8(in);
	return v;
}
/* Up to max bytes, length from one or two bytes of input. */
static inline const uint8_t *
fz_bytes(struct fz_in *in, size_t max, size_t *len)
{
	size_t want = fz_u8(in);
	if (want == 255)
		want = 255 + ((size_t)fz_u8(in) << 8 | fz_u8(in));
	if (want > max)
		want = max;
	if (want > in->n)
		want = in->n;
	const uint8_t *p = in->p;
	in->p += want;
	in->n -= want;
	*len = want;
	return p;
}

#endif
