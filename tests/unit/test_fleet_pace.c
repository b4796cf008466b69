/*
 * test_fleet_pace.c: unit tests for the fan-out's pace and retries
 * (runtime/fleet/pace.c).
 *
 * Why this exists: a server that throttles the operator must slow the
 * fan-out down and see every target sent again later, never lose one; an
 * error that says "never" (no such account, forbidden) must not be retried
 * forever.  The e2e tests cannot make Prosody answer resource-constraint on
 * demand, so the decisions are pinned here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fleet/fleet.h"

static void
test_which_errors_are_retried(void **state)
{
	(void)state;
	/* "later": by type, or by a condition servers use for load */
	assert_true(mw_fleet_retriable("wait", "undefined-condition"));
	assert_true(mw_fleet_retriable("wait", NULL));
	assert_true(mw_fleet_retriable("cancel", "resource-constraint"));
	assert_true(mw_fleet_retriable(NULL, "resource-constraint"));
	assert_true(mw_fleet_retriable("modify", "policy-violation"));
	assert_true(mw_fleet_retriable("wait", "resource-constraint"));
	assert_true(mw_fleet_retriable("cancel", "remote-server-timeout"));
	assert_true(mw_fleet_retriable("cancel", "internal-server-error"));
	/* "never": retrying would only delay the clear error */
	assert_false(mw_fleet_retriable("cancel", "item-not-found"));
	assert_false(mw_fleet_retriable("auth", "forbidden"));
	assert_false(mw_fleet_retriable("cancel", "service-unavailable"));
	assert_false(mw_fleet_retriable("cancel", "remote-server-not-found"));
	assert_false(mw_fleet_retriable(NULL, NULL));
	assert_false(mw_fleet_retriable("", ""));
}

static void
test_backoff_doubles_jittered_and_capped(void **state)
{
	(void)state;
	for (unsigned tries = 1; tries <= 12; tries++) {
		uint64_t d = MW_FLEET_BACKOFF_MIN_MS;

		for (unsigned i = 1; i < tries; i++)
			d = d * 2 > MW_FLEET_BACKOFF_MAX_MS ? MW_FLEET_BACKOFF_MAX_MS : d * 2;
		/* within [d/2, d] for any random draw, both ends reachable */
		assert_int_equal(mw_fleet_backoff_ms(tries, 0), d / 2);
		assert_int_equal(mw_fleet_backoff_ms(tries, (uint32_t)(d / 2)), d);
		for (uint32_t r = 0; r < 5000; r += 37) {
			uint64_t b = mw_fleet_backoff_ms(tries, r);

			assert_true(b >= d / 2 && b <= d);
		}
		assert_true(mw_fleet_backoff_ms(tries, UINT32_MAX) <= MW_FLEET_BACKOFF_MAX_MS);
	}
	assert_int_equal(mw_fleet_backoff_ms(1, 0), MW_FLEET_BACKOFF_MIN_MS / 2);
	assert_int_equal(mw_fleet_backoff_ms(30, 4000), MW_FLEET_BACKOFF_MAX_MS);
	/* a target's tries all fit in a few send timeouts: 8 tries < 40 s */
	{
		uint64_t total = 0;

		for (unsigned t = 1; t < MW_FLEET_MAX_TRIES; t++)
			total += mw_fleet_backoff_ms(t, UINT32_MAX / 2);
		assert_true(total < 40000);
	}
}

static void
test_window_bounds_sends_in_flight(void **state)
{
	struct mw_fleet_pace p;
	unsigned started = 0;

	(void)state;
	mw_fleet_pace_init(&p, 8);
	while (mw_fleet_pace_may_start(&p, 0)) {
		mw_fleet_pace_started(&p);
		started++;
		assert_true(started <= 8);
	}
	assert_int_equal(started, 8);
	mw_fleet_pace_done(&p, true);
	assert_true(mw_fleet_pace_may_start(&p, 0));
	mw_fleet_pace_started(&p);
	assert_false(mw_fleet_pace_may_start(&p, 0));
	/* a zero window would never send: it is at least one */
	mw_fleet_pace_init(&p, 0);
	assert_true(mw_fleet_pace_may_start(&p, 0));
}

static void
test_throttle_halves_holds_and_recovers(void **state)
{
	struct mw_fleet_pace p;

	(void)state;
	mw_fleet_pace_init(&p, 64);
	for (int i = 0; i < 10; i++)
		mw_fleet_pace_started(&p);
	mw_fleet_pace_throttled(&p, 1000, 500);
	assert_int_equal(p.window, 32);
	assert_int_equal(p.throttled, 1);
	/* nothing new starts until the hold passes, even with room */
	assert_false(mw_fleet_pace_may_start(&p, 1000));
	assert_false(mw_fleet_pace_may_start(&p, 1499));
	assert_true(mw_fleet_pace_may_start(&p, 1500));
	/* a shorter backoff later never shortens the hold */
	mw_fleet_pace_throttled(&p, 1100, 100);
	assert_false(mw_fleet_pace_may_start(&p, 1400));
	assert_int_equal(p.window, 16);
	for (int i = 0; i < 10; i++)
		mw_fleet_pace_throttled(&p, 2000, 1);
	assert_int_equal(p.window, 1);		/* never below one */
	/* successes grow it back by one per window's worth, up to the max */
	for (int i = 0; i < 10000; i++) {
		mw_fleet_pace_started(&p);
		mw_fleet_pace_done(&p, true);
	}
	assert_int_equal(p.window, 64);
	assert_int_equal(p.inflight, 10);	/* the 10 started before */
	/* failures do not grow it; done never underflows */
	mw_fleet_pace_throttled(&p, 3000, 1);
	for (int i = 0; i < 100; i++)
		mw_fleet_pace_done(&p, false);
	assert_int_equal(p.window, 32);
	assert_int_equal(p.inflight, 0);
}

/* A simulated fan-out: a server that throttles every third first try
 * still sees each target sent, and never more than the window at once. */
static void
test_simulated_throttled_fanout_loses_nothing(void **state)
{
	enum { N = 1000 };
	static unsigned tries[N];
	static uint64_t retry_at[N];
	static int done[N], inflight_until[N];
	struct mw_fleet_pace p;
	uint64_t now = 0;
	size_t finished = 0;

	(void)state;
	memset(tries, 0, sizeof(tries));
	memset(retry_at, 0, sizeof(retry_at));
	memset(done, 0, sizeof(done));
	memset(inflight_until, 0, sizeof(inflight_until));
	mw_fleet_pace_init(&p, MW_FLEET_SEND_WINDOW);
	while (finished < N) {
		assert_true(now < 600000);	/* ten simulated minutes at most */
		/* answers due now: every third target's first two tries throttled */
		for (size_t i = 0; i < N; i++) {
			if (inflight_until[i] == 0 || (uint64_t)inflight_until[i] > now)
				continue;
			inflight_until[i] = 0;
			if (i % 3 == 0 && tries[i] <= 2) {
				uint64_t d = mw_fleet_backoff_ms(tries[i], (uint32_t)i);

				mw_fleet_pace_done(&p, false);
				mw_fleet_pace_throttled(&p, now, d);
				retry_at[i] = now + d;
			} else {
				mw_fleet_pace_done(&p, true);
				done[i] = 1;
				finished++;
			}
		}
		for (size_t i = 0; i < N && mw_fleet_pace_may_start(&p, now); i++) {
			if (done[i] || inflight_until[i] != 0 || retry_at[i] > now)
				continue;
			tries[i]++;
			assert_true(tries[i] <= MW_FLEET_MAX_TRIES);
			mw_fleet_pace_started(&p);
			assert_true(p.inflight <= MW_FLEET_SEND_WINDOW);
			inflight_until[i] = (int)(now + 5);	/* a 5 ms round trip */
		}
		now++;
	}
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(done[i], 1);
		assert_int_equal(tries[i], i % 3 == 0 ? 3 : 1);
	}
	assert_int_equal(p.inflight, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_which_errors_are_retried),
		cmocka_unit_test(test_backoff_doubles_jittered_and_capped),
		cmocka_unit_test(test_window_bounds_sends_in_flight),
		cmocka_unit_test(test_throttle_halves_holds_and_recovers),
		cmocka_unit_test(test_simulated_throttled_fanout_loses_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
