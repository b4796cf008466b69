/*
 * edconv.c: libomemo-c's Ed25519-to-Montgomery conversion, remembered.
 *
 * Why this exists: OMEMO 2 stores and sends identity keys in their
 * Ed25519 form, and libomemo-c turns one into its Curve25519 form
 * (u = (1 + y) / (1 - y), a field inversion: about 92,000 instructions)
 * every time it decodes one.  It decodes the local and the remote identity
 * key each time it deserializes a version-4 session record, and it does
 * that on every encrypt and every decrypt: 4-5 conversions per OMEMO 2
 * message operation, about 830,000 instructions per message, which was
 * the whole gap between OMEMO 2 and legacy (callgrind, make bench's OMEMO
 * part: 2.65 M against 1.77 M instructions per message; issue 12).  The
 * same handful of identity keys come back again and again, so the result
 * is kept.
 *
 * The library calls fe_edy_to_montx through its PLT (one call site,
 * curve_decode_point_ed, in libomemo-c.so.0.5.0), so the definition the
 * moonwire executable exports takes its place (ELF symbol interposition,
 * as omemo/curve.c does for X25519; the Makefile exports the symbol).  On
 * a miss it calls the library's own function, found with
 * dlsym(RTLD_NEXT): nothing is computed here, this file only remembers.
 *
 * Invariants: the conversion is a pure function of its ten input limbs,
 * and a cached answer is returned only for limbs equal to the ones it was
 * computed from (compared in full), so the answer is always the library's.
 * Only public keys pass through here (curve_decode_point_ed decodes public
 * points).  One cache per process, under a mutex: EDCONV_SETS sets of
 * EDCONV_WAYS entries, least recently used first out of a set.  That holds
 * an operator's own key and a 1,000-target fleet's between a fan-out and
 * its results; an agent, which talks to a few operators, touches a page or
 * two of it (the table is mapped on first use and its pages are faulted in
 * as sets fill).  If the library's function cannot be found the process
 * aborts (a conversion that returned nothing would decode a wrong key); if
 * the table cannot be mapped, every conversion is the library's, uncached.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "omemo/omemo_int.h"

/* libomemo-c's field element (ref10: ten signed limbs, radix 2^25.5). */
typedef int32_t edconv_fe[10];

void fe_edy_to_montx(edconv_fe u, const edconv_fe y);

typedef void (*edconv_fn)(edconv_fe, const edconv_fe);

#define EDCONV_SETS	512
#define EDCONV_WAYS	4

struct edconv_entry {
	edconv_fe	y;
	edconv_fe	u;
};

struct edconv_set {
	unsigned		used;		/* entries filled, from way 0 */
	struct edconv_entry	way[EDCONV_WAYS];	/* most recent first */
};

static pthread_mutex_t edconv_lock = PTHREAD_MUTEX_INITIALIZER;
static struct edconv_set *edconv_table;	/* EDCONV_SETS sets; MAP_FAILED: none */
static edconv_fn edconv_library;
static unsigned long edconv_hits, edconv_misses;

/* Under edconv_lock. */
static void
edconv_setup(void)
{
	if (edconv_library == NULL) {
		edconv_library = (edconv_fn)dlsym(RTLD_NEXT, "fe_edy_to_montx");
		if (edconv_library == NULL ||
		    edconv_library == fe_edy_to_montx) {
			fputs("moonwire: libomemo-c's fe_edy_to_montx not found\n",
			    stderr);
			abort();
		}
	}
	if (edconv_table == NULL)
		edconv_table = mmap(NULL, EDCONV_SETS * sizeof(*edconv_table),
		    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static unsigned
edconv_set_of(const edconv_fe y)
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 10; i++)
		h = (h ^ (uint32_t)y[i]) * 16777619u;
	return (h ^ (h >> 16)) % EDCONV_SETS;
}

void
fe_edy_to_montx(edconv_fe u, const edconv_fe y)
{
	struct edconv_entry e;
	struct edconv_set *set;
	unsigned i;

	memcpy(e.y, y, sizeof(edconv_fe));	/* u and y may be one array */
	if (pthread_mutex_lock(&edconv_lock) != 0)
		abort();
	edconv_setup();
	if (edconv_table == MAP_FAILED) {
		edconv_misses++;
		edconv_library(u, e.y);
		goto out;
	}
	set = &edconv_table[edconv_set_of(e.y)];
	for (i = 0; i < set->used; i++)
		if (memcmp(set->way[i].y, e.y, sizeof(edconv_fe)) == 0)
			break;
	if (i < set->used) {
		edconv_hits++;
		e = set->way[i];
	} else {
		edconv_misses++;
		edconv_library(e.u, e.y);
		if (set->used < EDCONV_WAYS)
			set->used++;
		i = set->used - 1;	/* the least recent goes */
	}
	memmove(&set->way[1], &set->way[0], i * sizeof(set->way[0]));
	set->way[0] = e;
	memcpy(u, e.u, sizeof(edconv_fe));
out:
	if (pthread_mutex_unlock(&edconv_lock) != 0)
		abort();
}

void
omemo_edconv_counts(unsigned long *hits, unsigned long *misses)
{
	if (pthread_mutex_lock(&edconv_lock) != 0)
		abort();
	*hits = edconv_hits;
	*misses = edconv_misses;
	if (pthread_mutex_unlock(&edconv_lock) != 0)
		abort();
}
