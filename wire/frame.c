/*
 * frame.c: the framed, versioned codec that every moonwire process boundary
 * speaks, and the tagged value tree carried inside frames.
 *
 * A frame is "MW" | version | type | u32 length | payload.  A reader never
 * trusts the declared length beyond the maximum it chose for that channel,
 * so a hostile peer cannot make us allocate more than that.
 */
#include <stdlib.h>
#include <string.h>

#include "wire/mw_wire.h"

/*
 * *start is the frame's position relative to the unread data, not an
 * absolute offset: a put between begin and end may compact out (move the
 * unread bytes to the front), which preserves only relative positions.
 * Nothing may be consumed from out between begin and end.
 */
int
mw_frame_begin(struct mw_buf *out, uint8_t type, size_t *start)
{
	uint8_t hdr[MW_FRAME_HEADER] = { 'M', 'W', MW_FRAME_VERSION, type, 0, 0, 0, 0 };
	int r = mw_buf_put(out, hdr, sizeof(hdr));
	if (r == 0)
		*start = mw_buf_avail(out) - MW_FRAME_HEADER;
	return r;
}

int
mw_frame_end(struct mw_buf *out, size_t rel)
{
	if (rel > mw_buf_avail(out))
		return MW_WIRE_EFORMAT;
	size_t start = out->off + rel;
	if (out->len - start < MW_FRAME_HEADER)
		return MW_WIRE_EFORMAT;
	size_t plen = out->len - start - MW_FRAME_HEADER;
	if (plen > UINT32_MAX)
		return MW_WIRE_ETOOBIG;
	return mw_buf_poke_u32(out, start + 4, (uint32_t)plen);
}

static int
frame_header(const struct mw_buf *in, size_t max_payload, uint8_t *type,
    uint32_t *plen)
{
	if (mw_buf_avail(in) < MW_FRAME_HEADER) {
		/* Reject a bad magic as early as the bytes allow. */
		const uint8_t *p = mw_buf_ptr(in);
		if ((mw_buf_avail(in) >= 1 && p[0] != 'M') ||
		    (mw_buf_avail(in) >= 2 && p[1] != 'W') ||
		    (mw_buf_avail(in) >= 3 && p[2] != MW_FRAME_VERSION))
			return MW_WIRE_EFORMAT;
		return MW_WIRE_ESHORT;
	}
	const uint8_t *p = mw_buf_ptr(in);
	if (p[0] != 'M' || p[1] != 'W' || p[2] != MW_FRAME_VERSION)
		return MW_WIRE_EFORMAT;
	*type = p[3];
	mw_buf_peek_u32(in, 4, plen);
	if (*plen > max_payload)
		return MW_WIRE_ETOOBIG;
	return 0;
}

int
mw_frame_take(struct mw_buf *in, size_t max_payload, uint8_t *type,
    struct mw_buf *payload)
{
	uint32_t plen;
	uint8_t t;
	int r = frame_header(in, max_payload, &t, &plen);
	if (r != 0)
		return r;
	if (mw_buf_avail(in) - MW_FRAME_HEADER < plen)
		return MW_WIRE_ESHORT;
	mw_buf_view(payload, mw_buf_ptr(in) + MW_FRAME_HEADER, plen);
	in->off += MW_FRAME_HEADER + plen;
	*type = t;
	return 0;
}

int
mw_frame_read_fd(int fd, struct mw_buf *in, size_t max_payload,
    uint8_t *type, struct mw_buf *payload)
{
	mw_buf_reset(in);
	for (;;) {
		int r = mw_frame_take(in, max_payload, type, payload);
		if (r != MW_WIRE_ESHORT)
			return r;
		uint32_t plen = 0;
		size_t want = MW_FRAME_HEADER - (mw_buf_avail(in) < MW_FRAME_HEADER ?
		    mw_buf_avail(in) : MW_FRAME_HEADER);
		if (want == 0) {
			mw_buf_peek_u32(in, 4, &plen);
			want = MW_FRAME_HEADER + plen - mw_buf_avail(in);
		}
		r = mw_buf_fill(in, fd, want);
		if (r < 0)
			return r == MW_WIRE_ESHORT ? MW_WIRE_EIO : r;
	}
}

static int
value_walk(struct mw_buf *b, const struct mw_value_limits *lim,
    mw_value_visit_fn visit, void *arg, unsigned depth, bool is_key,
    size_t *items)
{
	struct mw_value_event ev;
	uint8_t tag;
	uint64_t u;
	int r;

	if (++*items > lim->max_items)
		return MW_WIRE_ETOOBIG;
	if ((r = mw_buf_get_u8(b, &tag)) != 0)
		return r;
	memset(&ev, 0, sizeof(ev));
	ev.tag = (enum mw_value_tag)tag;
	ev.depth = depth;
	ev.is_key = is_key;
	switch (tag) {
	case MW_V_NIL:
	case MW_V_FALSE:
	case MW_V_TRUE:
		break;
	case MW_V_INT:
		if ((r = mw_buf_get_u64(b, &u)) != 0)
			return r;
		ev.i = (int64_t)u;
		break;
	case MW_V_NUMBER:
		if ((r = mw_buf_get_u64(b, &u)) != 0)
			return r;
		memcpy(&ev.n, &u, sizeof(ev.n));
		break;
	case MW_V_STRING:
		if ((r = mw_buf_get_string_direct(b, &ev.s, &ev.slen)) != 0)
			return r;
		break;
	case MW_V_TABLE:
		if (depth >= lim->max_depth)
			return MW_WIRE_EDEPTH;
		if ((r = mw_buf_get_u32(b, &ev.count)) != 0)
			return r;
		/* Each pair needs at least two tag bytes. */
		if (ev.count > mw_buf_avail(b) / 2)
			return MW_WIRE_EFORMAT;
		break;
	default:
		return MW_WIRE_EFORMAT;
	}
	if (visit != NULL && (r = visit(&ev, arg)) != 0)
		return r;
	if (tag != MW_V_TABLE)
		return 0;
	for (uint32_t i = 0; i < ev.count; i++) {
		if ((r = value_walk(b, lim, visit, arg, depth + 1, true, items)) != 0)
			return r;
		if ((r = value_walk(b, lim, visit, arg, depth + 1, false, items)) != 0)
			return r;
	}
	ev.end = true;
	ev.is_key = is_key;
	if (visit != NULL && (r = visit(&ev, arg)) != 0)
		return r;
	return 0;
}

int
mw_value_walk(struct mw_buf *b, const struct mw_value_limits *lim,
    mw_value_visit_fn visit, void *arg)
{
	size_t items = 0, save = b->off;
	int r = value_walk(b, lim, visit, arg, 0, false, &items);
	if (r != 0)
		b->off = save;
	return r;
}

/* ---- key uniqueness: one table never holds two equal keys ---- */

struct key_entry {
	uint32_t table;
	uint8_t kind;		/* 0 bool, 1 integer (or integral float), 2 float, 3 string */
	uint64_t bits;
	const uint8_t *s;
	size_t slen;
};

struct key_check {
	struct key_entry *v;
	size_t n, cap;
	uint32_t *stack;	/* table id at each depth */
	unsigned stack_len;
	uint32_t next_table;
};

static int
key_visit(const struct mw_value_event *ev, void *arg)
{
	struct key_check *k = arg;
	if (ev->tag == MW_V_TABLE && !ev->end) {
		if (ev->is_key)
			return MW_WIRE_EFORMAT;	/* a table is never a key here */
		if (ev->depth >= k->stack_len)
			return MW_WIRE_EDEPTH;
		k->stack[ev->depth] = k->next_table++;
	}
	if (!ev->is_key || ev->end)
		return 0;
	struct key_entry e = { .table = k->stack[ev->depth - 1] };
	switch (ev->tag) {
	case MW_V_TRUE: case MW_V_FALSE:
		e.kind = 0;
		e.bits = ev->tag == MW_V_TRUE;
		break;
	case MW_V_INT:
		e.kind = 1;
		e.bits = (uint64_t)ev->i;
		break;
	case MW_V_NUMBER:
		if (ev->n != ev->n)
			return MW_WIRE_EFORMAT;	/* NaN is never a key */
		/* Lua stores a float key with an integral value as that integer. */
		if (ev->n >= -9223372036854775808.0 && ev->n < 9223372036854775808.0 &&
		    (double)(int64_t)ev->n == ev->n) {
			e.kind = 1;
			e.bits = (uint64_t)(int64_t)ev->n;
		} else {
			e.kind = 2;
			memcpy(&e.bits, &ev->n, sizeof(e.bits));
		}
		break;
	case MW_V_STRING:
		e.kind = 3;
		e.s = ev->s;
		e.slen = ev->slen;
		break;
	default:
		return MW_WIRE_EFORMAT;	/* nil is never a key */
	}
	if (k->n == k->cap) {
		size_t nc = k->cap ? k->cap * 2 : 64;
		struct key_entry *nv = realloc(k->v, nc * sizeof(*nv));
		if (nv == NULL)
			return MW_WIRE_ENOMEM;
		k->v = nv;
		k->cap = nc;
	}
	k->v[k->n++] = e;
	return 0;
}

static int
key_cmp(const void *a, const void *b)
{
	const struct key_entry *x = a, *y = b;
	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->kind == 3) {
		size_t m = x->slen < y->slen ? x->slen : y->slen;
		int c = m ? memcmp(x->s, y->s, m) : 0;
		if (c != 0)
			return c;
		return x->slen == y->slen ? 0 : x->slen < y->slen ? -1 : 1;
	}
	return x->bits == y->bits ? 0 : x->bits < y->bits ? -1 : 1;
}

int
mw_value_check_keys(struct mw_buf *b, const struct mw_value_limits *lim)
{
	struct key_check k;
	memset(&k, 0, sizeof(k));
	k.stack_len = lim->max_depth + 1;
	if ((k.stack = calloc(k.stack_len, sizeof(uint32_t))) == NULL)
		return MW_WIRE_ENOMEM;
	size_t save = b->off;
	int r = mw_value_walk(b, lim, key_visit, &k);
	if (r == 0 && k.n > 1) {
		qsort(k.v, k.n, sizeof(*k.v), key_cmp);
		for (size_t i = 1; i < k.n; i++)
			if (key_cmp(&k.v[i - 1], &k.v[i]) == 0) {
				r = MW_WIRE_EFORMAT;
				break;
			}
	}
	if (r != 0)
		b->off = save;
	free(k.v);
	free(k.stack);
	return r;
}
