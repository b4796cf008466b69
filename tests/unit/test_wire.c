/*
 * test_wire.c: unit tests for wire/ -- struct mw_buf, the frame codec and
 * the value-tree walker.
 *
 * Why this exists: every byte moonwire parses from another process (a
 * possibly hostile worker, the caller, the zygote) goes through these
 * functions.  Their contract -- big-endian primitives, "a failed read
 * consumes nothing", "a writer never grows past max", frame headers
 * rejected before the payload is buffered, bounded value trees -- is what
 * the sandbox's safety arguments rest on, so each clause is pinned here.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "wire/mw_wire.h"

/* ---- buffer ---- */

static void
test_put_get_widths_big_endian(void **state)
{
	(void)state;
	struct mw_buf b;
	mw_buf_init(&b, 0);
	assert_int_equal(mw_buf_put_u8(&b, 0xa1), 0);
	assert_int_equal(mw_buf_put_u16(&b, 0xb1b2), 0);
	assert_int_equal(mw_buf_put_u32(&b, 0xc1c2c3c4u), 0);
	assert_int_equal(mw_buf_put_u64(&b, 0xd1d2d3d4d5d6d7d8ull), 0);
	assert_int_equal(mw_buf_put_string(&b, "xy\0z", 4), 0);
	assert_int_equal(mw_buf_put_cstring(&b, "hi"), 0);
	assert_int_equal(mw_buf_putf(&b, "%d-%s", 42, "ok"), 0);

	static const uint8_t want[] = {
		0xa1, 0xb1, 0xb2, 0xc1, 0xc2, 0xc3, 0xc4,
		0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
		0, 0, 0, 4, 'x', 'y', 0, 'z',
		0, 0, 0, 2, 'h', 'i',
		'4', '2', '-', 'o', 'k',
	};
	assert_int_equal(mw_buf_avail(&b), sizeof(want));
	assert_memory_equal(mw_buf_ptr(&b), want, sizeof(want));

	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	const uint8_t *p;
	size_t n;
	char *s = NULL;
	assert_int_equal(mw_buf_get_u8(&b, &u8), 0);
	assert_int_equal(u8, 0xa1);
	assert_int_equal(mw_buf_get_u16(&b, &u16), 0);
	assert_int_equal(u16, 0xb1b2);
	assert_int_equal(mw_buf_get_u32(&b, &u32), 0);
	assert_int_equal(u32, 0xc1c2c3c4u);
	assert_int_equal(mw_buf_get_u64(&b, &u64), 0);
	assert_true(u64 == 0xd1d2d3d4d5d6d7d8ull);
	assert_int_equal(mw_buf_get_string_direct(&b, &p, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(p, "xy\0z", 4);
	assert_int_equal(mw_buf_get_cstring(&b, &s, 16), 0);
	assert_string_equal(s, "hi");
	free(s);
	assert_int_equal(mw_buf_avail(&b), 5);
	assert_memory_equal(mw_buf_ptr(&b), "42-ok", 5);
	assert_int_equal(mw_buf_skip(&b, 5), 0);
	assert_int_equal(mw_buf_avail(&b), 0);
	mw_buf_free(&b);
}

static void
test_extreme_values_round_trip(void **state)
{
	(void)state;
	struct mw_buf b;
	mw_buf_init(&b, 0);
	assert_int_equal(mw_buf_put_u16(&b, 0xffff), 0);
	assert_int_equal(mw_buf_put_u32(&b, 0), 0);
	assert_int_equal(mw_buf_put_u64(&b, UINT64_MAX), 0);
	assert_int_equal(mw_buf_put_u64(&b, 1), 0);
	uint16_t a;
	uint32_t c;
	uint64_t d, e;
	assert_int_equal(mw_buf_get_u16(&b, &a), 0);
	assert_int_equal(mw_buf_get_u32(&b, &c), 0);
	assert_int_equal(mw_buf_get_u64(&b, &d), 0);
	assert_int_equal(mw_buf_get_u64(&b, &e), 0);
	assert_int_equal(a, 0xffff);
	assert_int_equal(c, 0);
	assert_true(d == UINT64_MAX);
	assert_true(e == 1);
	mw_buf_free(&b);
}

static void
test_short_reads_consume_nothing(void **state)
{
	(void)state;
	static const uint8_t raw[] = { 1, 2, 3 };
	struct mw_buf b;
	uint16_t u16 = 7;
	uint32_t u32 = 7;
	uint64_t u64 = 7;
	uint8_t dst[4] = { 9, 9, 9, 9 };
	const uint8_t *p = NULL;
	size_t n = 0;
	char *s = NULL;

	mw_buf_view(&b, raw, sizeof(raw));
	assert_int_equal(mw_buf_get_u32(&b, &u32), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_get_u64(&b, &u64), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_get(&b, dst, 4), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_skip(&b, 4), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_peek_u32(&b, 0, &u32), MW_WIRE_ESHORT);
	assert_int_equal(u32, 7);
	assert_true(u64 == 7);
	assert_int_equal(dst[0], 9);
	assert_int_equal(mw_buf_avail(&b), 3);

	/* Consume one byte: two remain, enough for a u16 but not a u32. */
	assert_int_equal(mw_buf_skip(&b, 1), 0);
	assert_int_equal(mw_buf_get_u32(&b, &u32), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), 2);
	assert_int_equal(mw_buf_get_u16(&b, &u16), 0);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(mw_buf_get_u8(&b, NULL), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_get_line(&b, &p, &n), MW_WIRE_ESHORT);

	/* A string whose declared length runs past the end. */
	static const uint8_t str[] = { 0, 0, 0, 5, 'a', 'b', 'c' };
	mw_buf_view(&b, str, sizeof(str));
	assert_int_equal(mw_buf_get_string_direct(&b, &p, &n), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), sizeof(str));
	assert_int_equal(mw_buf_get_cstring(&b, &s, 100), MW_WIRE_ESHORT);
	assert_null(s);
	assert_int_equal(mw_buf_avail(&b), sizeof(str));
	struct mw_buf v;
	assert_int_equal(mw_buf_get_string_view(&b, &v), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), sizeof(str));
	/* A length of 0xffffffff must not wrap any arithmetic. */
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	mw_buf_view(&b, huge, sizeof(huge));
	assert_int_equal(mw_buf_get_string_direct(&b, &p, &n), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), sizeof(huge));
	/* peek at an offset beyond the data, including one that would wrap. */
	assert_int_equal(mw_buf_peek_u32(&b, 2, &u32), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_peek_u32(&b, SIZE_MAX - 1, &u32), MW_WIRE_ESHORT);
}

static void
test_max_enforced(void **state)
{
	(void)state;
	struct mw_buf b;
	mw_buf_init(&b, 10);
	assert_int_equal(mw_buf_put(&b, "0123456789", 10), 0);
	assert_int_equal(mw_buf_put_u8(&b, 1), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 10);
	mw_buf_reset(&b);
	assert_int_equal(mw_buf_put(&b, "0123456789X", 11), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 0);
	assert_int_equal(mw_buf_putf(&b, "%s", "0123456789"), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_putf(&b, "%s", "012345678"), 0);
	assert_int_equal(mw_buf_avail(&b), 9);
	/* SIZE_MAX must not wrap the size check. */
	assert_int_equal(mw_buf_reserve(&b, SIZE_MAX, NULL), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 9);
	mw_buf_free(&b);

	/* Consumed space at the front is reclaimed rather than refused. */
	mw_buf_init(&b, 8);
	assert_int_equal(mw_buf_put(&b, "abcdefgh", 8), 0);
	assert_int_equal(mw_buf_skip(&b, 6), 0);
	assert_int_equal(mw_buf_put(&b, "123456", 6), 0);
	assert_int_equal(mw_buf_avail(&b), 8);
	assert_memory_equal(mw_buf_ptr(&b), "gh123456", 8);
	assert_int_equal(mw_buf_put_u8(&b, 0), MW_WIRE_ETOOBIG);
	mw_buf_free(&b);
}

static void
test_oversized_put_with_consumed_front(void **state)
{
	(void)state;
	/* A request larger than max, on a buffer with consumed bytes at the
	 * front, must be refused -- not "compacted" into a buffer longer than
	 * its maximum (or an endless growth loop). */
	struct mw_buf b;
	static uint8_t big[1000];
	alarm(10);	/* a regression here used to loop forever */
	mw_buf_init(&b, 16);
	assert_int_equal(mw_buf_put(&b, "ab", 2), 0);
	assert_int_equal(mw_buf_skip(&b, 1), 0);
	assert_int_equal(mw_buf_put(&b, big, 100), MW_WIRE_ETOOBIG);
	assert_true(b.len <= b.max);
	assert_int_equal(mw_buf_avail(&b), 1);
	assert_int_equal(mw_buf_put(&b, big, sizeof(big)), MW_WIRE_ETOOBIG);
	assert_true(b.len <= b.max);
	assert_int_equal(mw_buf_avail(&b), 1);
	assert_memory_equal(mw_buf_ptr(&b), "b", 1);
	alarm(0);
	mw_buf_free(&b);
}

static void
test_failed_writes_leave_buffer_unchanged(void **state)
{
	(void)state;
	struct mw_buf b;
	/* put_u64 that does not fit must not leave half a value behind. */
	mw_buf_init(&b, 12);
	assert_int_equal(mw_buf_put(&b, "12345678", 8), 0);
	assert_int_equal(mw_buf_put_u64(&b, 0x1122334455667788ull), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 8);
	mw_buf_free(&b);

	/* put_string whose length prefix fits only after compaction and whose
	 * bytes do not fit at all: the buffer must be exactly as before. */
	mw_buf_init(&b, 16);
	assert_int_equal(mw_buf_put(&b, "0123456789ABCD", 14), 0);
	assert_int_equal(mw_buf_skip(&b, 10), 0);
	assert_int_equal(mw_buf_put_string(&b, "xxxxxxxxx", 9), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 4);
	assert_memory_equal(mw_buf_ptr(&b), "ABCD", 4);
	/* And a string that fits after compaction is written whole. */
	assert_int_equal(mw_buf_put_string(&b, "xyz", 3), 0);
	assert_int_equal(mw_buf_avail(&b), 11);
	assert_memory_equal(mw_buf_ptr(&b), "ABCD\0\0\0\3xyz", 11);
	mw_buf_free(&b);
}

static void
put_raw_string(struct mw_buf *b, const void *p, uint32_t n)
{
	assert_int_equal(mw_buf_put_u32(b, n), 0);
	assert_int_equal(mw_buf_put(b, p, n), 0);
}

static void
test_get_cstring(void **state)
{
	(void)state;
	struct mw_buf b;
	char *s = NULL;
	mw_buf_init(&b, 0);
	put_raw_string(&b, "ab\0cd", 5);
	assert_int_equal(mw_buf_get_cstring(&b, &s, 100), MW_WIRE_EFORMAT);
	assert_null(s);
	assert_int_equal(mw_buf_avail(&b), 9);	/* nothing consumed */
	mw_buf_reset(&b);

	put_raw_string(&b, "abcdef", 6);
	assert_int_equal(mw_buf_get_cstring(&b, &s, 5), MW_WIRE_ETOOBIG);
	assert_null(s);
	assert_int_equal(mw_buf_avail(&b), 10);
	assert_int_equal(mw_buf_get_cstring(&b, &s, 6), 0);	/* exactly maxlen */
	assert_string_equal(s, "abcdef");
	assert_int_equal(mw_buf_avail(&b), 0);
	free(s);
	s = NULL;

	put_raw_string(&b, "", 0);
	assert_int_equal(mw_buf_get_cstring(&b, &s, 0), 0);
	assert_string_equal(s, "");
	free(s);
	mw_buf_free(&b);
}

static void
test_get_line(void **state)
{
	(void)state;
	static const char text[] = "one\r\ntwo\n\nthree\r\n\r\nfour";
	struct mw_buf b;
	const uint8_t *p;
	size_t n;
	mw_buf_view(&b, text, sizeof(text) - 1);
	const char *want[] = { "one", "two", "", "three", "", "four" };
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(mw_buf_get_line(&b, &p, &n), 0);
		assert_int_equal(n, strlen(want[i]));
		assert_memory_equal(p, want[i], n);
	}
	assert_int_equal(mw_buf_get_line(&b, &p, &n), MW_WIRE_ESHORT);

	/* A trailing newline does not produce an extra empty line. */
	mw_buf_view(&b, "last\n", 5);
	assert_int_equal(mw_buf_get_line(&b, &p, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(mw_buf_get_line(&b, &p, &n), MW_WIRE_ESHORT);
	/* A lone "\r" at the end of the data is stripped like "\r\n". */
	mw_buf_view(&b, "x\r", 2);
	assert_int_equal(mw_buf_get_line(&b, &p, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(p[0], 'x');
}

static void
test_view_is_read_only(void **state)
{
	(void)state;
	uint8_t raw[8] = { 'M', 'W', 1, 2, 0, 0, 0, 0 };
	struct mw_buf v;
	uint8_t *d;
	int sv[2];
	mw_buf_view(&v, raw, sizeof(raw));
	assert_true(v.readonly);
	assert_int_equal(mw_buf_put_u8(&v, 1), MW_WIRE_ERDONLY);
	assert_int_equal(mw_buf_put_u32(&v, 1), MW_WIRE_ERDONLY);
	assert_int_equal(mw_buf_putf(&v, "x"), MW_WIRE_ERDONLY);
	assert_int_equal(mw_buf_reserve(&v, 1, &d), MW_WIRE_ERDONLY);
	assert_int_equal(mw_buf_poke_u32(&v, 0, 0xffffffffu), MW_WIRE_ERDONLY);
	size_t start;
	assert_int_equal(mw_frame_begin(&v, 9, &start), MW_WIRE_ERDONLY);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "zz", 2), 2);
	assert_true(mw_buf_fill(&v, sv[0], 2) < 0);	/* full view */
	assert_memory_equal(raw, "MW\1\2\0\0\0\0", 8);

	/* Reads work; a view with consumed bytes still refuses to be filled,
	 * and compact and free leave the borrowed bytes alone. */
	assert_int_equal(mw_buf_skip(&v, 2), 0);
	assert_int_equal(mw_buf_fill(&v, sv[0], 2), MW_WIRE_ERDONLY);
	close(sv[0]);
	close(sv[1]);
	mw_buf_compact(&v);
	assert_int_equal(mw_buf_avail(&v), 6);
	assert_ptr_equal(mw_buf_ptr(&v), raw + 2);
	mw_buf_free(&v);	/* must not free() a stack array */
	assert_memory_equal(raw, "MW\1\2\0\0\0\0", 8);

	/* A string view is a view too. */
	struct mw_buf b, sview;
	mw_buf_init(&b, 0);
	assert_int_equal(mw_buf_put_string(&b, "abc", 3), 0);
	assert_int_equal(mw_buf_get_string_view(&b, &sview), 0);
	assert_int_equal(mw_buf_avail(&sview), 3);
	assert_int_equal(mw_buf_put_u8(&sview, 0), MW_WIRE_ERDONLY);
	mw_buf_free(&b);
}

static void
test_fill_and_drain(void **state)
{
	(void)state;
	int sv[2];
	struct mw_buf in, out;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	mw_buf_init(&in, 6);
	mw_buf_init(&out, 0);
	assert_int_equal(mw_buf_fill(&in, sv[0], 100), MW_WIRE_ESHORT);	/* EAGAIN */
	assert_int_equal(mw_buf_put(&out, "hello world", 11), 0);
	assert_int_equal(mw_buf_drain_fd(&out, sv[1]), 0);
	assert_int_equal(mw_buf_avail(&out), 0);
	/* fill never reads beyond the buffer's maximum. */
	assert_int_equal(mw_buf_fill(&in, sv[0], 100), 6);
	assert_memory_equal(mw_buf_ptr(&in), "hello ", 6);
	assert_int_equal(mw_buf_fill(&in, sv[0], 100), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_skip(&in, 6), 0);
	assert_int_equal(mw_buf_fill(&in, sv[0], 100), 5);
	assert_memory_equal(mw_buf_ptr(&in), "world", 5);
	close(sv[1]);
	assert_int_equal(mw_buf_fill(&in, sv[0], 100), MW_WIRE_EEOF);
	close(sv[0]);
	mw_buf_free(&in);
	mw_buf_free(&out);
}

/* ---- frames ---- */

static void
test_frame_round_trip(void **state)
{
	(void)state;
	struct mw_buf out, p;
	size_t start;
	uint8_t type = 0;
	mw_buf_init(&out, 0);
	assert_int_equal(mw_frame_begin(&out, 17, &start), 0);
	assert_int_equal(mw_buf_put_cstring(&out, "payload"), 0);
	assert_int_equal(mw_frame_end(&out, start), 0);
	assert_int_equal(mw_frame_begin(&out, 20, &start), 0);	/* empty frame */
	assert_int_equal(mw_frame_end(&out, start), 0);

	static const uint8_t hdr[] = { 'M', 'W', 1, 17, 0, 0, 0, 11 };
	assert_memory_equal(mw_buf_ptr(&out), hdr, sizeof(hdr));
	assert_int_equal(mw_buf_avail(&out), 8 + 11 + 8);

	assert_int_equal(mw_frame_take(&out, 100, &type, &p), 0);
	assert_int_equal(type, 17);
	assert_true(p.readonly);
	char *s = NULL;
	assert_int_equal(mw_buf_get_cstring(&p, &s, 100), 0);
	assert_string_equal(s, "payload");
	free(s);
	assert_int_equal(mw_buf_avail(&p), 0);
	assert_int_equal(mw_frame_take(&out, 0, &type, &p), 0);
	assert_int_equal(type, 20);
	assert_int_equal(mw_buf_avail(&p), 0);
	assert_int_equal(mw_frame_take(&out, 100, &type, &p), MW_WIRE_ESHORT);
	mw_buf_free(&out);
}

static void
test_frame_across_compaction(void **state)
{
	(void)state;
	/* A frame begun in a buffer with consumed bytes at the front, whose
	 * payload only fits once the buffer compacts itself: frame_end must
	 * still patch the right header. */
	struct mw_buf out, p;
	size_t start;
	uint8_t type;
	mw_buf_init(&out, 32);
	assert_int_equal(mw_buf_put(&out, "0123456789abcdefghijklmn", 24), 0);
	assert_int_equal(mw_buf_skip(&out, 24), 0);
	/* A writable buffer with off == len is not reset by skip; begin. */
	assert_int_equal(mw_frame_begin(&out, 5, &start), 0);
	assert_int_equal(mw_buf_put(&out, "PAYLOAD!", 8), 0);	/* compacts */
	assert_int_equal(mw_frame_end(&out, start), 0);
	assert_int_equal(mw_buf_avail(&out), 16);
	assert_int_equal(mw_frame_take(&out, 100, &type, &p), 0);
	assert_int_equal(type, 5);
	assert_int_equal(mw_buf_avail(&p), 8);
	assert_memory_equal(mw_buf_ptr(&p), "PAYLOAD!", 8);
	mw_buf_free(&out);
}

static void
test_frame_bad_magic_version(void **state)
{
	(void)state;
	struct mw_buf in, p;
	uint8_t type;
	static const uint8_t bad_magic[] = { 'M', 'X', 1, 1, 0, 0, 0, 0 };
	static const uint8_t bad_version[] = { 'M', 'W', 2, 1, 0, 0, 0, 0 };
	static const uint8_t zero_version[] = { 'M', 'W', 0, 1, 0, 0, 0, 0 };
	mw_buf_view(&in, bad_magic, sizeof(bad_magic));
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	assert_int_equal(mw_buf_avail(&in), 8);
	mw_buf_view(&in, bad_version, sizeof(bad_version));
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	mw_buf_view(&in, zero_version, sizeof(zero_version));
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	/* Rejected as soon as the offending byte is there, not after 8. */
	mw_buf_view(&in, "X", 1);
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	mw_buf_view(&in, "M\0", 2);
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	mw_buf_view(&in, "MW\2", 3);
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_EFORMAT);
	mw_buf_view(&in, "MW\1", 3);
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_ESHORT);
}

static void
test_frame_too_big_before_payload(void **state)
{
	(void)state;
	struct mw_buf in, p;
	uint8_t type;
	/* Header only: 101 bytes declared, max 100, no payload present. */
	static const uint8_t hdr[] = { 'M', 'W', 1, 3, 0, 0, 0, 101 };
	mw_buf_view(&in, hdr, sizeof(hdr));
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&in), 8);
	static const uint8_t huge[] = { 'M', 'W', 1, 3, 0xff, 0xff, 0xff, 0xff };
	mw_buf_view(&in, huge, sizeof(huge));
	assert_int_equal(mw_frame_take(&in, 0xfffffffeu, &type, &p), MW_WIRE_ETOOBIG);
	/* Exactly at the maximum: waits for the payload. */
	static const uint8_t at[] = { 'M', 'W', 1, 3, 0, 0, 0, 100 };
	mw_buf_view(&in, at, sizeof(at));
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_ESHORT);
}

static void
test_frame_partial_then_complete(void **state)
{
	(void)state;
	struct mw_buf src, in, p;
	size_t start;
	uint8_t type = 0;
	mw_buf_init(&src, 0);
	assert_int_equal(mw_frame_begin(&src, 7, &start), 0);
	assert_int_equal(mw_buf_put(&src, "0123456789", 10), 0);
	assert_int_equal(mw_frame_end(&src, start), 0);
	const uint8_t *all = mw_buf_ptr(&src);
	size_t total = mw_buf_avail(&src);

	mw_buf_init(&in, 0);
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(mw_frame_take(&in, 100, &type, &p), MW_WIRE_ESHORT);
		assert_int_equal(mw_buf_avail(&in), i);	/* nothing consumed */
		assert_int_equal(mw_buf_put_u8(&in, all[i]), 0);
	}
	assert_int_equal(mw_frame_take(&in, 100, &type, &p), 0);
	assert_int_equal(type, 7);
	assert_int_equal(mw_buf_avail(&p), 10);
	assert_memory_equal(mw_buf_ptr(&p), "0123456789", 10);
	assert_int_equal(mw_buf_avail(&in), 0);
	mw_buf_free(&in);
	mw_buf_free(&src);
}

static void
test_frame_end_bad_start(void **state)
{
	(void)state;
	struct mw_buf out;
	mw_buf_init(&out, 0);
	assert_int_equal(mw_buf_put(&out, "abc", 3), 0);
	assert_int_equal(mw_frame_end(&out, 0), MW_WIRE_EFORMAT);	/* no room for a header */
	assert_int_equal(mw_frame_end(&out, 100), MW_WIRE_EFORMAT);
	mw_buf_free(&out);
}

static int
frame_bytes(struct mw_buf *b, uint8_t type, const void *p, size_t n)
{
	size_t start;
	int r = mw_frame_begin(b, type, &start);
	if (r == 0)
		r = mw_buf_put(b, p, n);
	return r ? r : mw_frame_end(b, start);
}

static void
test_frame_read_fd(void **state)
{
	(void)state;
	int sv[2];
	struct mw_buf out, in, p;
	uint8_t type;
	struct timeval tv = { 5, 0 };
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* A regression that waits for bytes that never come fails, not hangs. */
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	mw_buf_init(&out, 0);
	mw_buf_init(&in, 1024);

	/* Two frames written back to back: each read takes exactly one. */
	assert_int_equal(frame_bytes(&out, 1, "first", 5), 0);
	assert_int_equal(frame_bytes(&out, 2, "second!", 7), 0);
	assert_int_equal(mw_buf_drain_fd(&out, sv[1]), 0);
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), 0);
	assert_int_equal(type, 1);
	assert_int_equal(mw_buf_avail(&p), 5);
	assert_memory_equal(mw_buf_ptr(&p), "first", 5);
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), 0);
	assert_int_equal(type, 2);
	assert_memory_equal(mw_buf_ptr(&p), "second!", 7);

	/* Written in pieces by another process. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static const uint8_t f[] = { 'M', 'W', 1, 9, 0, 0, 0, 3, 'a', 'b', 'c' };
		for (size_t i = 0; i < sizeof(f); i++) {
			if (write(sv[1], &f[i], 1) != 1)
				_exit(1);
			usleep(2000);
		}
		_exit(0);
	}
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), 0);
	assert_int_equal(type, 9);
	assert_memory_equal(mw_buf_ptr(&p), "abc", 3);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* An oversized header is refused without waiting for its payload. */
	static const uint8_t big[] = { 'M', 'W', 1, 9, 0, 0, 1, 0 };
	assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), MW_WIRE_ETOOBIG);
	/* Bad magic: refused at once. */
	assert_int_equal(write(sv[1], "XY", 2), 2);
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), MW_WIRE_EFORMAT);

	/* Peer closes mid-frame. */
	static const uint8_t part[] = { 'M', 'W', 1, 9, 0, 0, 0, 10, 'x' };
	assert_int_equal(write(sv[1], part, sizeof(part)), (ssize_t)sizeof(part));
	close(sv[1]);
	assert_int_equal(mw_frame_read_fd(sv[0], &in, 100, &type, &p), MW_WIRE_EEOF);
	close(sv[0]);
	mw_buf_free(&out);
	mw_buf_free(&in);
}

/* ---- value tree ---- */

static const struct mw_value_limits LIM = { 8, 1000 };

struct walk_log {
	char s[256];
	size_t n;
};

static int
log_visit(const struct mw_value_event *ev, void *arg)
{
	struct walk_log *l = arg;
	char c;
	if (ev->end)
		c = ')';
	else
		c = "nftidsT"[ev->tag];
	if (l->n + 3 < sizeof(l->s)) {
		l->s[l->n++] = c;
		l->s[l->n++] = (char)('0' + ev->depth);
		l->s[l->n++] = ev->is_key ? 'k' : 'v';
		l->s[l->n] = '\0';
	}
	return 0;
}

static void
put_table(struct mw_buf *b, uint32_t n)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_TABLE), 0);
	assert_int_equal(mw_buf_put_u32(b, n), 0);
}

static void
put_int(struct mw_buf *b, int64_t v)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_INT), 0);
	assert_int_equal(mw_buf_put_u64(b, (uint64_t)v), 0);
}

static void
put_str(struct mw_buf *b, const char *s)
{
	assert_int_equal(mw_buf_put_u8(b, MW_V_STRING), 0);
	assert_int_equal(mw_buf_put_cstring(b, s), 0);
}

static void
test_value_walk_nested(void **state)
{
	(void)state;
	struct mw_buf b;
	struct walk_log log = { .n = 0 };
	mw_buf_init(&b, 0);
	/* {1 = "a", "t" = {true = 2.5, 3 = nil, x = false}} */
	put_table(&b, 2);
	put_int(&b, 1);
	put_str(&b, "a");
	put_str(&b, "t");
	put_table(&b, 3);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_TRUE), 0);
	double d = 2.5;
	uint64_t u;
	memcpy(&u, &d, 8);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NUMBER), 0);
	assert_int_equal(mw_buf_put_u64(&b, u), 0);
	put_int(&b, 3);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NIL), 0);
	put_str(&b, "x");
	assert_int_equal(mw_buf_put_u8(&b, MW_V_FALSE), 0);
	assert_int_equal(mw_buf_put(&b, "trailer", 7), 0);

	assert_int_equal(mw_value_walk(&b, &LIM, log_visit, &log), 0);
	assert_string_equal(log.s,
	    "T0v" "i1k" "s1v" "s1k" "T1v" "t2k" "d2v" "i2k" "n2v" "s2k" "f2v" ")1v" ")0v");
	/* Exactly the value was consumed. */
	assert_int_equal(mw_buf_avail(&b), 7);
	assert_memory_equal(mw_buf_ptr(&b), "trailer", 7);
	mw_buf_free(&b);
}

struct scalar_seen {
	int64_t i;
	double n;
	char s[16];
	uint32_t count;
};

static int
scalar_visit(const struct mw_value_event *ev, void *arg)
{
	struct scalar_seen *s = arg;
	if (ev->end)
		return 0;
	if (ev->tag == MW_V_INT)
		s->i = ev->i;
	if (ev->tag == MW_V_NUMBER)
		s->n = ev->n;
	if (ev->tag == MW_V_STRING && ev->slen < sizeof(s->s)) {
		memcpy(s->s, ev->s, ev->slen);
		s->s[ev->slen] = '\0';
	}
	if (ev->tag == MW_V_TABLE)
		s->count = ev->count;
	return 0;
}

static void
test_value_walk_scalars(void **state)
{
	(void)state;
	struct mw_buf b;
	struct scalar_seen seen;
	memset(&seen, 0, sizeof(seen));
	mw_buf_init(&b, 0);
	put_table(&b, 2);
	put_int(&b, -5);
	double d = -0.125;
	uint64_t u;
	memcpy(&u, &d, 8);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NUMBER), 0);
	assert_int_equal(mw_buf_put_u64(&b, u), 0);
	put_str(&b, "key");
	assert_int_equal(mw_buf_put_u8(&b, MW_V_TRUE), 0);
	size_t total = mw_buf_avail(&b);
	assert_int_equal(mw_value_walk(&b, &LIM, scalar_visit, &seen), 0);
	assert_true(seen.i == -5);
	assert_true(seen.n == -0.125);
	assert_string_equal(seen.s, "key");
	assert_int_equal(seen.count, 2);
	assert_int_equal(mw_buf_avail(&b), 0);
	assert_int_equal(total, b.off);
	mw_buf_free(&b);
}

static int
stop_visit(const struct mw_value_event *ev, void *arg)
{
	int *calls = arg;
	(void)ev;
	return ++*calls == 2 ? 1234 : 0;
}

static void
test_value_walk_visitor_stops(void **state)
{
	(void)state;
	struct mw_buf b;
	int calls = 0;
	mw_buf_init(&b, 0);
	put_table(&b, 1);
	put_int(&b, 1);
	put_int(&b, 2);
	assert_int_equal(mw_value_walk(&b, &LIM, stop_visit, &calls), 1234);
	assert_int_equal(calls, 2);
	assert_int_equal(mw_buf_avail(&b), 1 + 4 + 9 + 9);
	mw_buf_free(&b);
}

static void
nest(struct mw_buf *b, unsigned levels)
{
	/* levels tables, each the single value of its parent: {1={1={...}}} */
	for (unsigned i = 0; i < levels; i++) {
		put_table(b, i + 1 < levels ? 1 : 0);
		if (i + 1 < levels)
			put_int(b, 1);
	}
}

static void
test_value_walk_depth(void **state)
{
	(void)state;
	struct mw_buf b;
	struct mw_value_limits lim = { 4, 1000 };
	mw_buf_init(&b, 0);
	nest(&b, 4);
	assert_int_equal(mw_value_walk(&b, &lim, NULL, NULL), 0);
	assert_int_equal(mw_buf_avail(&b), 0);
	mw_buf_reset(&b);
	nest(&b, 5);
	size_t total = mw_buf_avail(&b);
	assert_int_equal(mw_value_walk(&b, &lim, NULL, NULL), MW_WIRE_EDEPTH);
	assert_int_equal(mw_buf_avail(&b), total);
	/* Very deep input does not recurse past the limit (no stack blow-up). */
	mw_buf_reset(&b);
	nest(&b, 100000);
	struct mw_value_limits lim64 = { 64, 1u << 20 };
	assert_int_equal(mw_value_walk(&b, &lim64, NULL, NULL), MW_WIRE_EDEPTH);
	/* A table key may be a table: it counts for depth too. */
	mw_buf_reset(&b);
	put_table(&b, 1);
	put_table(&b, 1);	/* key, depth 1 */
	put_table(&b, 0);	/* key of the key, depth 2 */
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NIL), 0);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NIL), 0);
	struct mw_value_limits lim2 = { 2, 1000 };
	assert_int_equal(mw_value_walk(&b, &lim2, NULL, NULL), MW_WIRE_EDEPTH);
	struct mw_value_limits lim3 = { 3, 1000 };
	assert_int_equal(mw_value_walk(&b, &lim3, NULL, NULL), 0);
	mw_buf_free(&b);
}

static void
test_value_walk_items(void **state)
{
	(void)state;
	struct mw_buf b;
	mw_buf_init(&b, 0);
	put_table(&b, 10);	/* 1 + 20 = 21 values */
	for (int i = 0; i < 10; i++) {
		put_int(&b, i);
		assert_int_equal(mw_buf_put_u8(&b, MW_V_TRUE), 0);
	}
	struct mw_value_limits ok = { 4, 21 }, tight = { 4, 20 };
	assert_int_equal(mw_value_walk(&b, &tight, NULL, NULL), MW_WIRE_ETOOBIG);
	assert_int_equal(mw_buf_avail(&b), 1 + 4 + 10 * 10);
	assert_int_equal(mw_value_walk(&b, &ok, NULL, NULL), 0);
	assert_int_equal(mw_buf_avail(&b), 0);
	mw_buf_free(&b);
}

static void
test_value_walk_malformed(void **state)
{
	(void)state;
	struct mw_buf b;
	mw_buf_init(&b, 0);

	/* Unknown tag, alone and inside a table. */
	assert_int_equal(mw_buf_put_u8(&b, 7), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_EFORMAT);
	assert_int_equal(mw_buf_avail(&b), 1);
	mw_buf_reset(&b);
	put_table(&b, 1);
	put_int(&b, 1);
	assert_int_equal(mw_buf_put_u8(&b, 0xff), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_EFORMAT);
	assert_int_equal(mw_buf_avail(&b), 1 + 4 + 9 + 1);

	/* A pair count the remaining bytes cannot possibly hold: refused up
	 * front (before any per-pair work), not after walking. */
	mw_buf_reset(&b);
	put_table(&b, 0xffffffffu);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NIL), 0);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_NIL), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_EFORMAT);
	mw_buf_reset(&b);
	put_table(&b, 2);	/* 2 pairs need >= 4 bytes; 3 remain */
	assert_int_equal(mw_buf_put(&b, "\0\0\0", 3), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_EFORMAT);
	assert_int_equal(mw_buf_avail(&b), 8);

	/* Truncated string, int, number, table header. */
	mw_buf_reset(&b);
	assert_int_equal(mw_buf_put_u8(&b, MW_V_STRING), 0);
	assert_int_equal(mw_buf_put_u32(&b, 10), 0);
	assert_int_equal(mw_buf_put(&b, "abc", 3), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), 8);
	mw_buf_reset(&b);
	put_table(&b, 1);
	put_str(&b, "k");
	assert_int_equal(mw_buf_put_u8(&b, MW_V_STRING), 0);
	assert_int_equal(mw_buf_put_u32(&b, 0xfffffff0u), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);
	assert_int_equal(mw_buf_avail(&b), 5 + 6 + 5);
	mw_buf_reset(&b);
	assert_int_equal(mw_buf_put(&b, "\3\0\0\0", 4), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);
	mw_buf_reset(&b);
	assert_int_equal(mw_buf_put(&b, "\4\0", 2), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);
	mw_buf_reset(&b);
	assert_int_equal(mw_buf_put(&b, "\6\0\0", 3), 0);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);
	mw_buf_reset(&b);
	assert_int_equal(mw_value_walk(&b, &LIM, NULL, NULL), MW_WIRE_ESHORT);	/* empty */
	mw_buf_free(&b);
}

/* Found by tests/fuzz/fuzz_codec (UBSan): a buffer without an allocation
 * yet must not compute NULL + 0 when asked for its read pointer. */
static void
test_empty_buffer_ptr(void **state)
{
	struct mw_buf b;
	uint8_t type;
	struct mw_buf p;

	(void)state;
	mw_buf_init(&b, 64);
	assert_null(mw_buf_ptr(&b));
	assert_int_equal(mw_buf_avail(&b), 0);
	assert_int_equal(mw_frame_take(&b, 64, &type, &p), MW_WIRE_ESHORT);
	mw_buf_free(&b);
}

static void
test_strerror(void **state)
{
	(void)state;
	assert_string_equal(mw_wire_strerror(MW_WIRE_ESHORT), "incomplete data");
	assert_string_equal(mw_wire_strerror(MW_WIRE_ERDONLY), "read-only buffer");
	assert_string_equal(mw_wire_strerror(-99), "unknown error");
}

/* Builds {k1 = 1, k2 = 2} with keys given as (tag, bits or string). */
static void
two_keys(struct mw_buf *v, uint8_t t1, uint64_t b1, const char *s1,
    uint8_t t2, uint64_t b2, const char *s2)
{
	mw_buf_init(v, 0);
	assert_int_equal(mw_buf_put_u8(v, MW_V_TABLE), 0);
	assert_int_equal(mw_buf_put_u32(v, 2), 0);
	uint8_t t[2] = { t1, t2 };
	uint64_t b[2] = { b1, b2 };
	const char *s[2] = { s1, s2 };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(mw_buf_put_u8(v, t[i]), 0);
		if (t[i] == MW_V_STRING)
			assert_int_equal(mw_buf_put_string(v, s[i], strlen(s[i])), 0);
		else if (t[i] == MW_V_INT || t[i] == MW_V_NUMBER)
			assert_int_equal(mw_buf_put_u64(v, b[i]), 0);
		assert_int_equal(mw_buf_put_u8(v, MW_V_INT), 0);
		assert_int_equal(mw_buf_put_u64(v, (uint64_t)i + 1), 0);
	}
}

static uint64_t
dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static void
test_value_check_keys(void **state)
{
	(void)state;
	struct mw_value_limits lim = { 8, 1000 };
	struct {
		uint8_t t1; uint64_t b1; const char *s1;
		uint8_t t2; uint64_t b2; const char *s2;
		int want;
	} cases[] = {
		{ MW_V_INT, 1, NULL, MW_V_INT, 2, NULL, 0 },
		{ MW_V_INT, 1, NULL, MW_V_INT, 1, NULL, MW_WIRE_EFORMAT },
		{ MW_V_INT, 1, NULL, MW_V_NUMBER, dbits(1.0), NULL, MW_WIRE_EFORMAT },
		{ MW_V_NUMBER, dbits(1.5), NULL, MW_V_NUMBER, dbits(1.5), NULL, MW_WIRE_EFORMAT },
		{ MW_V_NUMBER, dbits(1.5), NULL, MW_V_INT, 1, NULL, 0 },
		{ MW_V_STRING, 0, "a", MW_V_STRING, 0, "a", MW_WIRE_EFORMAT },
		{ MW_V_STRING, 0, "a", MW_V_STRING, 0, "ab", 0 },
		{ MW_V_STRING, 0, "1", MW_V_INT, 1, NULL, 0 },
		{ MW_V_TRUE, 0, NULL, MW_V_TRUE, 0, NULL, MW_WIRE_EFORMAT },
		{ MW_V_TRUE, 0, NULL, MW_V_FALSE, 0, NULL, 0 },
		{ MW_V_NIL, 0, NULL, MW_V_INT, 1, NULL, MW_WIRE_EFORMAT },
		{ MW_V_NUMBER, dbits(0.0 / 0.0), NULL, MW_V_INT, 1, NULL, MW_WIRE_EFORMAT },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mw_buf v;
		two_keys(&v, cases[i].t1, cases[i].b1, cases[i].s1, cases[i].t2, cases[i].b2,
		    cases[i].s2);
		size_t before = v.off;
		int r = mw_value_check_keys(&v, &lim);
		if (r != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, r, cases[i].want);
		/* a refusal consumes nothing; a pass consumes the tree */
		assert_true(r != 0 ? v.off == before : mw_buf_avail(&v) == 0);
		mw_buf_free(&v);
	}
	/* equal keys in different tables are fine: {[1] = {[1] = 1}, [2] = {[1] = 1}} */
	struct mw_buf v;
	mw_buf_init(&v, 0);
	assert_int_equal(mw_buf_put_u8(&v, MW_V_TABLE) | mw_buf_put_u32(&v, 2), 0);
	for (uint64_t k = 1; k <= 2; k++)
		assert_int_equal(mw_buf_put_u8(&v, MW_V_INT) | mw_buf_put_u64(&v, k) |
		    mw_buf_put_u8(&v, MW_V_TABLE) | mw_buf_put_u32(&v, 1) |
		    mw_buf_put_u8(&v, MW_V_INT) | mw_buf_put_u64(&v, 1) |
		    mw_buf_put_u8(&v, MW_V_INT) | mw_buf_put_u64(&v, 1), 0);
	assert_int_equal(mw_value_check_keys(&v, &lim), 0);
	mw_buf_free(&v);
	/* a table as a key is refused */
	mw_buf_init(&v, 0);
	assert_int_equal(mw_buf_put_u8(&v, MW_V_TABLE) | mw_buf_put_u32(&v, 1) |
	    mw_buf_put_u8(&v, MW_V_TABLE) | mw_buf_put_u32(&v, 0) |
	    mw_buf_put_u8(&v, MW_V_INT) | mw_buf_put_u64(&v, 1), 0);
	assert_int_equal(mw_value_check_keys(&v, &lim), MW_WIRE_EFORMAT);
	mw_buf_free(&v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_buffer_ptr),
		cmocka_unit_test(test_put_get_widths_big_endian),
		cmocka_unit_test(test_extreme_values_round_trip),
		cmocka_unit_test(test_short_reads_consume_nothing),
		cmocka_unit_test(test_max_enforced),
		cmocka_unit_test(test_oversized_put_with_consumed_front),
		cmocka_unit_test(test_failed_writes_leave_buffer_unchanged),
		cmocka_unit_test(test_get_cstring),
		cmocka_unit_test(test_get_line),
		cmocka_unit_test(test_view_is_read_only),
		cmocka_unit_test(test_fill_and_drain),
		cmocka_unit_test(test_frame_round_trip),
		cmocka_unit_test(test_frame_across_compaction),
		cmocka_unit_test(test_frame_bad_magic_version),
		cmocka_unit_test(test_frame_too_big_before_payload),
		cmocka_unit_test(test_frame_partial_then_complete),
		cmocka_unit_test(test_frame_end_bad_start),
		cmocka_unit_test(test_frame_read_fd),
		cmocka_unit_test(test_value_walk_nested),
		cmocka_unit_test(test_value_walk_scalars),
		cmocka_unit_test(test_value_walk_visitor_stops),
		cmocka_unit_test(test_value_walk_depth),
		cmocka_unit_test(test_value_walk_items),
		cmocka_unit_test(test_value_walk_malformed),
		cmocka_unit_test(test_value_check_keys),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
