/*
 * pace.c: how fast the operator's connection starts sends, and when a
 * target refused by the server for load is tried again (fleetsend.c uses
 * it; pure arithmetic, so the unit tests can drive it without a server).
 *
 * Invariants: at most p->window sends are in flight (first contact costs a
 * device-list and a bundle fetch each, answered by the server in order);
 * a throttle answer halves the window and holds new starts for a backoff,
 * each success grows it again by one per window's worth of successes
 * (additive increase, multiplicative decrease); a target is retried at
 * most MW_FLEET_MAX_TRIES times, each after a longer jittered backoff, and
 * only for errors that say "later" -- never for ones that say "never".
 */
#include <string.h>

#include "runtime/fleet/fleet.h"

void
mw_fleet_pace_init(struct mw_fleet_pace *p, unsigned max)
{
	memset(p, 0, sizeof(*p));
	p->max = max > 0 ? max : 1;
	p->window = p->max;
}

bool
mw_fleet_retriable(const char *type, const char *cond)
{
	static const char *const later[] = {
		"resource-constraint",	/* RFC 6120 8.3.3.18: busy, try later */
		"policy-violation",	/* rate limits (ejabberd, XEP-0205 DoS) */
		"remote-server-timeout",
		"internal-server-error",
	};

	if (type != NULL && strcmp(type, "wait") == 0)
		return true;
	if (cond == NULL)
		return false;
	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++)
		if (strcmp(cond, later[i]) == 0)
			return true;
	return false;
}

uint64_t
mw_fleet_backoff_ms(unsigned tries, uint32_t rnd)
{
	uint64_t d = MW_FLEET_BACKOFF_MIN_MS;

	for (unsigned i = 1; i < tries && d < MW_FLEET_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > MW_FLEET_BACKOFF_MAX_MS)
		d = MW_FLEET_BACKOFF_MAX_MS;
	/* between half and all of it: targets throttled together spread out */
	return d / 2 + rnd % (d / 2 + 1);
}

bool
mw_fleet_pace_may_start(const struct mw_fleet_pace *p, uint64_t now_ms)
{
	return p->inflight < p->window && now_ms >= p->hold_until_ms;
}

void
mw_fleet_pace_started(struct mw_fleet_pace *p)
{
	p->inflight++;
}

void
mw_fleet_pace_done(struct mw_fleet_pace *p, bool ok)
{
	if (p->inflight > 0)
		p->inflight--;
	if (!ok || p->window >= p->max)
		return;
	if (++p->credit >= p->window) {
		p->window++;
		p->credit = 0;
	}
}

void
mw_fleet_pace_throttled(struct mw_fleet_pace *p, uint64_t now_ms, uint64_t backoff_ms)
{
	p->window = p->window > 1 ? p->window / 2 : 1;
	p->credit = 0;
	if (p->hold_until_ms < now_ms + backoff_ms)
		p->hold_until_ms = now_ms + backoff_ms;
	p->throttled++;
}
