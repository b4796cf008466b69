/* zygote_int.h: the zygote's interface to the supervisor (private). */
#ifndef MW_ZYGOTE_INT_H
#define MW_ZYGOTE_INT_H

#include <stdint.h>
#include <sys/prctl.h>
#include <signal.h>

#include "sandbox/sandbox_int.h"

#define ZYG_FORK	40
#define ZYG_WORKER	41
#define ZYG_EXIT	42
#define ZYG_FAIL	43

struct mw_zygote_msg {
	uint8_t type;
	uint32_t a, b;
	uint64_t c;
	int fds[2];
	int nfds;
};

static inline void
prctl_set_pdeathsig_kill(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* `moonwire-zygote` (zygote_main.c): its one argument, and the descriptor
 * of its control socket. */
#define MW_ZYGOTE_NAME		"moonwire-zygote"
#define MW_ZYGOTE_ARG		"__zygote"
#define MW_ZYGOTE_CTL_FD	3
/* In the supervisor's freshly forked child: exec `moonwire-zygote` from
 * the directory of the running moonwire binary, with ctl as its control
 * socket and the supervisor's capabilities carried across.  Returns only
 * when that is impossible (the caller then runs mw_zygote_main itself);
 * why is in *why. */
void mw_zygote_exec(int ctl, const char **why);

/* Never returns. ctl is a SOCK_SEQPACKET socket to the supervisor. */
void mw_zygote_main(int ctl, const struct mw_filter *filter, void (*body)(int))
	__attribute__((noreturn));
int mw_zygote_request(int ctl);
/* Non-blocking receive of one message; MW_WIRE_ESHORT when none is there. */
int mw_zygote_recv(int ctl, struct mw_zygote_msg *m);

#endif
