/*
 * client.c: the caller's side of the sandbox -- starting a supervisor and
 * exchanging jobs and results with it.
 *
 * The supervisor is started by fork + exec of the moonwire binary itself, so
 * its address space is fresh: whatever the caller holds (keys, sessions)
 * never exists in the process that forks Lua workers.  The exec'd supervisor
 * inherits only its socket (fd 3), /dev/null on stdin and the caller's
 * stdout/stderr, and an environment with nothing but PATH (and LD_BIND_NOW).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

int mw_supervisor_run_with(int fd, void (*body)(int));

struct mw_sandbox {
	int fd;
	pid_t pid;
	struct mw_buf in, out;
};

static int
put_protected(struct mw_buf *b, const struct mw_sandbox_config *cfg)
{
	if (cfg->n_protected > MW_MAX_PROTECTED ||
	    mw_buf_put_u32(b, cfg->n_protected) != 0)
		return -1;
	for (unsigned i = 0; i < cfg->n_protected; i++)
		if (cfg->protected_paths[i] == NULL || cfg->protected_paths[i][0] != '/' ||
		    mw_buf_put_cstring(b, cfg->protected_paths[i]) != 0)
			return -1;
	return 0;
}

int
mw_sandbox_start(const struct mw_sandbox_config *cfg, struct mw_sandbox **out)
{
	int sv[2];
	char self[4096];
	const char *exe = cfg->exe;
	if (exe == NULL) {
		/* readlink, not exec of /proc/self/exe: under valgrind or another
		 * loader the latter names the loader, not moonwire. */
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return -1;
		self[n] = '\0';
		exe = self;
	}
	struct mw_sandbox *sb = calloc(1, sizeof(*sb));
	if (sb == NULL)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		free(sb);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		free(sb);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		if (cfg->test_worker != NULL)
			_exit(mw_supervisor_run_with(sv[1], cfg->test_worker));
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) != 0)
			_exit(126);
		if (sv[1] != 3) {
			if (dup2(sv[1], 3) != 3)
				_exit(126);
		} else if (fcntl(3, F_SETFD, 0) != 0) {
			_exit(126);
		}
		if (syscall(SYS_close_range, 4, ~0U, 0) != 0)
			_exit(126);	/* nothing of the caller's may reach it */
		char *const argv[] = { "moonwire", "__supervisor", "3", NULL };
		/* LD_BIND_NOW: resolve every library symbol once, here, so the
		 * workers forked later (from the zygote) do not each redo the
		 * lazy PLT binding of liblua & co. on their first calls. */
		char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"LD_BIND_NOW=1", NULL };
		execve(exe, argv, envp);
		_exit(127);
	}
	close(sv[1]);
	sb->fd = sv[0];
	sb->pid = pid;
	mw_buf_init(&sb->in, MW_MAX_CALLER_FRAME + MW_FRAME_HEADER + 64 * 1024);
	mw_buf_init(&sb->out, 0);
	int fl = fcntl(sb->fd, F_GETFL);
	size_t start;
	if (fl < 0 || fcntl(sb->fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    mw_frame_begin(&sb->out, MW_F_HELLO, &start) != 0 ||
	    mw_buf_put_u32(&sb->out, cfg->parallel) != 0 ||
	    mw_buf_put_u32(&sb->out, cfg->pool) != 0 ||
	    mw_buf_put_u32(&sb->out, cfg->queue_max ? cfg->queue_max : 64) != 0 ||
	    mw_buf_put_cstring(&sb->out, cfg->state_dir ? cfg->state_dir : "") != 0 ||
	    put_protected(&sb->out, cfg) != 0 ||
	    mw_buf_put_u32(&sb->out, cfg->command_uid_count ? cfg->command_uid_first : 0) != 0 ||
	    mw_buf_put_u32(&sb->out, cfg->command_uid_count) != 0 ||
	    mw_frame_end(&sb->out, start) != 0) {
		mw_sandbox_stop(sb);
		return -1;
	}
	*out = sb;
	return 0;
}

int
mw_sandbox_fd(const struct mw_sandbox *sb)
{
	return sb->fd;
}

pid_t
mw_sandbox_pid(const struct mw_sandbox *sb)
{
	return sb->pid;
}

int
mw_sandbox_submit(struct mw_sandbox *sb, const struct mw_job *job)
{
	/* Relative to the unread bytes: encoding may compact sb->out. */
	size_t before = mw_buf_avail(&sb->out);
	if (mw_enc_job(&sb->out, job) != 0) {
		sb->out.len = sb->out.off + before;
		return -1;
	}
	mw_sandbox_flush(sb);
	return 0;
}

int
mw_sandbox_cancel(struct mw_sandbox *sb, const char *id, const char *why)
{
	size_t before = mw_buf_avail(&sb->out), start;
	char w[161];

	snprintf(w, sizeof(w), "%s", why != NULL ? why : "cancelled");
	if (mw_frame_begin(&sb->out, MW_F_CANCEL, &start) != 0 ||
	    mw_buf_put_cstring(&sb->out, id) != 0 ||
	    mw_buf_put_cstring(&sb->out, w) != 0 ||
	    mw_frame_end(&sb->out, start) != 0) {
		sb->out.len = sb->out.off + before;
		return -1;
	}
	mw_sandbox_flush(sb);
	return 0;
}

bool
mw_sandbox_want_write(const struct mw_sandbox *sb)
{
	return mw_buf_avail(&sb->out) > 0;
}

int
mw_sandbox_flush(struct mw_sandbox *sb)
{
	int r = mw_buf_flush_some(&sb->out, sb->fd);
	return r == MW_WIRE_EIO ? -1 : 0;
}

int
mw_sandbox_read_result(struct mw_sandbox *sb, struct mw_result *out)
{
	for (;;) {
		uint8_t type;
		struct mw_buf p;
		int r = mw_frame_take(&sb->in, MW_MAX_CALLER_FRAME, &type, &p);
		if (r == 0) {
			if (type != MW_F_RESULT || mw_dec_result(&p, out) != 0) {
				mw_result_free(out);
				return -1;
			}
			return 1;
		}
		if (r != MW_WIRE_ESHORT)
			return -1;
		mw_buf_compact(&sb->in);
		r = mw_buf_fill(&sb->in, sb->fd, 64 * 1024);
		if (r == MW_WIRE_ESHORT)
			return 0;
		if (r < 0)
			return -1;
	}
}

int
mw_sandbox_run(struct mw_sandbox *sb, const struct mw_job *job, struct mw_result *out)
{
	if (mw_sandbox_submit(sb, job) != 0)
		return -1;
	for (;;) {
		struct pollfd p = { sb->fd, POLLIN | (mw_sandbox_want_write(sb) ? POLLOUT : 0), 0 };
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if ((p.revents & POLLOUT) && mw_sandbox_flush(sb) != 0)
			return -1;
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			int r;
			while ((r = mw_sandbox_read_result(sb, out)) == 1) {
				if (strcmp(out->job_id, job->id) == 0)
					return 0;
				mw_result_free(out);
			}
			if (r < 0)
				return -1;
		}
	}
}

void
mw_sandbox_stop(struct mw_sandbox *sb)
{
	if (sb == NULL)
		return;
	close(sb->fd);	/* the supervisor shuts down when its caller goes */
	if (sb->pid > 0) {
		int st;
		for (int i = 0; i < 200; i++) {
			if (waitpid(sb->pid, &st, WNOHANG) == sb->pid)
				goto reaped;
			usleep(5000);
		}
		kill(sb->pid, SIGKILL);
		waitpid(sb->pid, &st, 0);
	}
reaped:
	mw_buf_free(&sb->in);
	mw_buf_free(&sb->out);
	free(sb);
}
