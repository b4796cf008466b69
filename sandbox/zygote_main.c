/*
 * zygote_main.c: main() of `moonwire-zygote`, the zygote as a program of
 * its own (spec/sandbox.md, "Processes").
 *
 * A fork costs in proportion to what the parent has mapped.  Forked from
 * the supervisor, the zygote carried the whole moonwire binary: OpenSSL,
 * SQLite, libstrophe, libomemo-c, cJSON and their relocated data, about
 * 75 mappings, copied into every worker and torn down again at its exit.
 * Exec'd as this small program it maps liblua, libseccomp, libm and libc
 * only (39 mappings, 184 KiB of anonymous memory where the supervisor's
 * image had 76 and 736 KiB), and every worker it forks is that much
 * cheaper.  It runs exactly the code the
 * in-process zygote runs (zygote.c, confine.c, filter.c, worker.c).
 *
 * Built by the Makefile as $(BUILD)/moonwire-zygote (not part of
 * libsandbox.a), installed next to the moonwire binary, and started only
 * by the supervisor: its control socket is descriptor 3.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "sandbox/sandbox_int.h"
#include "sandbox/zygote_int.h"

int
main(int argc, char **argv)
{
	int type = 0;
	socklen_t len = sizeof(type);
	struct mw_filter filter;

	if (argc != 3 || strcmp(argv[1], MW_ZYGOTE_ARG) != 0 ||
	    getsockopt(MW_ZYGOTE_CTL_FD, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_SEQPACKET) {
		fprintf(stderr, "moonwire-zygote: part of moonwire's sandbox; "
		    "only the moonwire supervisor starts it\n");
		return 2;
	}
	/* Off descriptor 3, which each worker takes for its own socket. */
	int ctl = fcntl(MW_ZYGOTE_CTL_FD, F_DUPFD_CLOEXEC, 10);
	if (ctl < 0 || close(MW_ZYGOTE_CTL_FD) != 0)
		return 1;
	/* The supervisor raised its capabilities into the ambient set only
	 * to carry them across this exec: nothing this process could ever
	 * execute may inherit them. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return 1;
	/* Fail closed if a capability the supervisor holds did not come
	 * along: workers could not become nobody or be killed. */
	char *end;
	unsigned long long want = strtoull(argv[2], &end, 16);
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (*argv[2] == '\0' || *end != '\0' || syscall(SYS_capget, &hdr, d) != 0)
		return 1;
	uint64_t have = (uint64_t)d[1].permitted << 32 | d[0].permitted;
	if ((have & want) != want) {
		fprintf(stderr, "moonwire-zygote: capabilities %llx did not survive the exec "
		    "(have %llx)\n", want, (unsigned long long)have);
		return 1;
	}
	if (mw_filter_build(&filter) != 0) {
		fprintf(stderr, "moonwire-zygote: cannot build the seccomp filter\n");
		return 1;
	}
	mw_zygote_main(ctl, &filter, mw_worker_main);
}
