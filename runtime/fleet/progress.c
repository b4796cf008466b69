/*
 * progress.c: the live line a fleet wait draws on a terminal -- targeted,
 * ok, error, refused, pending (and how many of those the agent said it is
 * running), elapsed -- updated in place on stderr and erased before
 * anything else is printed.  On a pipe or file nothing of it is written.
 *
 * "Running" comes from the agent's XEP-0085 <composing/> chat state, which
 * is not encrypted: it is only ever shown, never trusted (spec/cli.md).
 * Nothing is drawn during the first second, so a quick job prints no
 * flicker; then at most one redraw per 200 ms, only when the text changes.
 */
#include <inttypes.h>
#include <string.h>

#include "runtime/fleet/fleet.h"

void
mw_fleet_progress_init(struct mw_fleet_progress *p, uint64_t now_ms)
{
	bool tty = p->tty;

	memset(p, 0, sizeof(*p));
	p->tty = tty;
	p->start_ms = now_ms;
}

void
mw_fleet_progress_clear(struct mw_fleet_progress *p)
{
	if (!p->shown)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->shown = false;
	p->last[0] = '\0';
}

void
mw_fleet_progress_update(struct mw_fleet_progress *p, const char *cmd,
    const struct mw_fleet_row *rows, size_t n, uint64_t now_ms)
{
	size_t ok = 0, error = 0, refused = 0, pending = 0, running = 0;
	char line[sizeof(p->last)];
	uint64_t s;

	if (!p->tty || now_ms < p->start_ms + 1000 ||
	    (p->shown && now_ms < p->drawn_ms + 200))
		return;
	for (size_t i = 0; i < n; i++) {
		const struct mw_fleet_row *r = &rows[i];

		if (r->state == MW_FLEET_PENDING) {
			pending++;
			if (r->seen == MW_FLEET_SEEN_RUNNING)
				running++;
		} else if (r->state == MW_FLEET_RESULT && r->status != NULL &&
		    strcmp(r->status, "ok") == 0)
			ok++;
		else if (r->state == MW_FLEET_RESULT && r->status != NULL &&
		    strcmp(r->status, "refused") == 0)
			refused++;
		else
			error++;
	}
	s = (now_ms - p->start_ms) / 1000;
	if (n == 1 && running == 1)
		snprintf(line, sizeof(line), "moonwire %s: %s: accepted, running %" PRIu64 " s",
		    cmd, rows[0].jid, s);
	else
		snprintf(line, sizeof(line), "moonwire %s: %zu targeted, %zu ok, %zu error, "
		    "%zu refused, %zu pending (%zu running), %" PRIu64 " s", cmd, n, ok,
		    error, refused, pending, running, s);
	p->drawn_ms = now_ms;
	if (p->shown && strcmp(line, p->last) == 0)
		return;
	memcpy(p->last, line, sizeof(line));
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	p->shown = true;
}
