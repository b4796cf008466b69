/*
 * cross-vm-init.c: PID 1 of the throwaway VM of `make cross-vm`
 * (tests/lib/cross-vm.sh).  qemu-user runs no seccomp filter, so the unit
 * tests that need the target's kernel (test_sandbox) run here instead, in
 * a real kernel of the target architecture booted from an initramfs.
 * It mounts what the tests use, runs every binary in /mw/tests in name
 * order from /mw (the tests read spec/ relative to it), prints one
 * "cross-vm: result NAME STATUS" line each, and powers the VM off.
 * Built statically for the target; nothing here runs on the host.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

static void
mount_or_say(const char *src, const char *dst, const char *type)
{
	if (mount(src, dst, type, 0, NULL) != 0)
		printf("cross-vm: cannot mount %s on %s: %m\n", type, dst);
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int
is_test(const struct dirent *d)
{
	return strncmp(d->d_name, "test_", 5) == 0;
}

int
main(void)
{
	struct dirent **names;
	int n;

	mount_or_say("proc", "/proc", "proc");
	mount_or_say("devtmpfs", "/dev", "devtmpfs");
	mount_or_say("tmpfs", "/tmp", "tmpfs");
	mount_or_say("sysfs", "/sys", "sysfs");
	if (setenv("PATH", "/mw", 1) != 0 || setenv("MOONWIRE", "/mw/moonwire", 1) != 0 ||
	    chdir("/mw") != 0) {
		printf("cross-vm: cannot set up the environment: %m\n");
		n = -1;
	} else if ((n = scandir("/mw/tests", &names, is_test, by_name)) < 0) {
		printf("cross-vm: cannot list /mw/tests: %m\n");
	}
	for (int i = 0; i < n; i++) {
		char path[512];
		int st;
		snprintf(path, sizeof(path), "/mw/tests/%s", names[i]->d_name);
		printf("cross-vm: running %s\n", names[i]->d_name);
		fflush(stdout);
		pid_t p = fork();
		if (p == 0) {
			execl(path, path, (char *)NULL);
			printf("cross-vm: cannot run %s: %m\n", path);
			_exit(127);
		}
		if (p < 0 || waitpid(p, &st, 0) != p)
			printf("cross-vm: result %s lost\n", names[i]->d_name);
		else if (WIFEXITED(st))
			printf("cross-vm: result %s exit %d\n", names[i]->d_name, WEXITSTATUS(st));
		else
			printf("cross-vm: result %s signal %d\n", names[i]->d_name, WTERMSIG(st));
		fflush(stdout);
	}
	printf("cross-vm: done\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 1;
}
