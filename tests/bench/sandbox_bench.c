/*
 * sandbox_bench.c: micro-benchmarks of the moonwire sandbox, driven by
 * tests/bench/run.py (which compiles this file itself; the Makefile does not
 * know about it).  Output: one JSON object per line on stdout.
 *
 *   sandbox_bench moonwire --exe PATH [--n N] [--warmup W] [--parallel P]
 *       [--pool Q] [--queue-max Q] [--inflight K] [--seconds T] [--jobs M]
 *       [--program TEXT] [--gap-n N2] [--gap-us G]
 *     (a) latency of one trivial job at a time through the supervisor,
 *         back to back, then N2 more with G us of idle time before each,
 *     (b) sustained throughput with K jobs in flight for T seconds or M jobs,
 *     (c) resident memory of the idle supervisor and of its process tree.
 *
 *   sandbox_bench spawn --name NAME [--n N] [--warmup W] -- ARGV...
 *     posix_spawnp + waitpid of ARGV, N times, one at a time (baselines:
 *     `lua5.4 -e ...`, `bwrap ... lua5.4 -e ...`).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/mw_sandbox.h"

extern char **environ;

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "sandbox_bench: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(2);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Prints the latency summary of n samples (ns) as JSON fields (in us). */
static void
print_stats(uint64_t *ns, size_t n)
{
	if (n == 0) {
		printf("\"n\":0");
		return;
	}
	qsort(ns, n, sizeof(*ns), cmp_u64);
	long double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += ns[i];
	size_t p99 = (size_t)((n * 99 + 99) / 100);	/* nearest-rank */
	if (p99 == 0)
		p99 = 1;
	double median = n % 2 ? ns[n / 2] / 1000.0 :
	    (ns[n / 2 - 1] + ns[n / 2]) / 2000.0;
	printf("\"n\":%zu,\"median_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,"
	    "\"min_us\":%.1f,\"max_us\":%.1f", n, median, ns[p99 - 1] / 1000.0,
	    (double)(sum / n / 1000.0L), ns[0] / 1000.0, ns[n - 1] / 1000.0);
}

/* ---- baselines: posix_spawn + waitpid ---- */

static int
bench_spawn(const char *name, unsigned n, unsigned warmup, char **argv)
{
	uint64_t *ns = calloc(n, sizeof(*ns));
	posix_spawn_file_actions_t fa;
	unsigned failed = 0;
	int last_status = 0;
	if (ns == NULL)
		return 2;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	for (unsigned i = 0; i < warmup + n; i++) {
		pid_t pid;
		int st;
		uint64_t t0 = now_ns();
		int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
		if (e != 0) {
			printf("{\"bench\":\"spawn\",\"name\":\"%s\",\"error\":\"posix_spawnp: %s\"}\n",
			    name, strerror(e));
			return 1;
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		uint64_t t1 = now_ns();
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed++;
			last_status = st;
			if (i < warmup || failed > 3) {
				printf("{\"bench\":\"spawn\",\"name\":\"%s\",\"error\":"
				    "\"child failed, wait status %d\"}\n", name, st);
				return 1;
			}
		}
		if (i >= warmup)
			ns[i - warmup] = t1 - t0;
	}
	printf("{\"bench\":\"spawn\",\"name\":\"%s\",\"failed\":%u,\"last_status\":%d,",
	    name, failed, last_status);
	print_stats(ns, n);
	printf("}\n");
	posix_spawn_file_actions_destroy(&fa);
	free(ns);
	return 0;
}

/* ---- memory of the supervisor and its tree ---- */

/* kB from a "Key:   123 kB" line of a /proc file; -1 when absent. */
static long
proc_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* The fields of /proc/PID/stat after the command name (which may contain
 * anything, ')' too), in buf; NULL when unreadable. */
static const char *
proc_stat_fields(pid_t pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p != NULL ? p + 1 : NULL;
}

static pid_t
ppid_of(pid_t pid)
{
	char buf[512];
	const char *p = proc_stat_fields(pid, buf, sizeof(buf));
	int ppid;
	if (p == NULL || sscanf(p, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/*
 * CPU time of one process (own) and of its reaped children, in us, from
 * /proc/PID/stat (utime, stime, cutime, cstime).  The zygote reaps the
 * workers, so its children's time is theirs.  -1 when unreadable.
 */
static int
proc_cpu_us(pid_t pid, double *own, double *kids)
{
	char buf[1024];
	const char *p = proc_stat_fields(pid, buf, sizeof(buf));
	unsigned long long ut, st, cut, cst;
	if (p == NULL || sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	    "%llu %llu %llu %llu", &ut, &st, &cut, &cst) != 4)
		return -1;
	double tick = 1e6 / (double)sysconf(_SC_CLK_TCK);
	*own = (double)(ut + st) * tick;
	*kids = (double)(cut + cst) * tick;
	return 0;
}

/* The supervisor's first child that is not a command: the zygote. */
static pid_t
zygote_of(pid_t sup)
{
	DIR *d = opendir("/proc");
	pid_t z = -1;
	struct dirent *e;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char *end, path[64], comm[64];
		long pid = strtol(e->d_name, &end, 10);
		if (*end != '\0' || pid <= 0 || ppid_of((pid_t)pid) != sup)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL &&
		    (strncmp(comm, "moonwire-zygote", 15) == 0 || strncmp(comm, "moonwire", 8) == 0))
			z = (pid_t)pid;
		fclose(f);
		if (z > 0)
			break;
	}
	closedir(d);
	return z;
}

struct tree_mem {
	unsigned procs;
	long rss_kb, pss_kb;	/* pss: -1 when some process hid it */
};

static void
tree_add(pid_t root, struct tree_mem *m)
{
	long rss = proc_kb(root, "status", "VmRSS");
	long pss = proc_kb(root, "smaps_rollup", "Pss");
	m->procs++;
	if (rss > 0)
		m->rss_kb += rss;
	if (pss >= 0 && m->pss_kb >= 0)
		m->pss_kb += pss;
	else
		m->pss_kb = -1;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return;
	pid_t kids[1024];
	size_t nk = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && nk < 1024) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		if (ppid_of((pid_t)pid) == root)
			kids[nk++] = (pid_t)pid;
	}
	closedir(d);
	for (size_t i = 0; i < nk; i++)
		tree_add(kids[i], m);
}

static void
print_memory(const char *when, pid_t sup)
{
	struct tree_mem m = { 0, 0, 0 };
	tree_add(sup, &m);
	printf("{\"bench\":\"memory\",\"when\":\"%s\",\"supervisor_pid\":%d,"
	    "\"supervisor_rss_kb\":%ld,\"supervisor_pss_kb\":%ld,"
	    "\"tree_processes\":%u,\"tree_rss_kb\":%ld,\"tree_pss_kb\":%ld}\n",
	    when, (int)sup, proc_kb(sup, "status", "VmRSS"),
	    proc_kb(sup, "smaps_rollup", "Pss"), m.procs, m.rss_kb, m.pss_kb);
	fflush(stdout);
}

/* ---- moonwire ---- */

struct mw_opts {
	const char *exe, *program;
	unsigned n, warmup, parallel, pool, queue_max, inflight, seconds, jobs;
	unsigned gap_n, gap_us;
};

static void
make_job(struct mw_job *job, char *id, size_t idlen, unsigned long seq,
    const char *program)
{
	snprintf(id, idlen, "b%lu", seq);
	memset(job, 0, sizeof(*job));
	job->id = id;
	job->chunkname = "=bench";
	job->program = program;
	job->program_len = strlen(program);
	mw_limits_default(&job->limits);
}

static int
bench_moonwire(const struct mw_opts *o)
{
	struct mw_sandbox_config cfg;
	struct mw_sandbox *sb;
	struct mw_job job;
	struct mw_result res;
	char id[32];
	unsigned long seq = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.exe = o->exe;
	cfg.parallel = o->parallel;
	cfg.pool = o->pool;
	cfg.queue_max = o->queue_max;
	uint64_t t0 = now_ns();
	if (mw_sandbox_start(&cfg, &sb) != 0)
		die("cannot start the supervisor (%s)", o->exe);
	/* The first job also waits for the supervisor's exec and first fork. */
	make_job(&job, id, sizeof(id), seq++, o->program);
	if (mw_sandbox_run(sb, &job, &res) != 0)
		die("supervisor failed on the first job%s", "");
	uint64_t first = now_ns() - t0;
	if (res.status != MW_JOB_OK) {
		fprintf(stderr, "sandbox_bench: first job: %s: %s\n",
		    mw_job_status_name(res.status), res.error ? res.error : "");
		return 1;
	}
	mw_result_free(&res);
	unsigned parallel = o->parallel ? o->parallel : 2;
	unsigned pool = o->pool ? o->pool : parallel;
	printf("{\"bench\":\"start\",\"first_job_us\":%.1f,\"parallel\":%u,\"pool\":%u}\n",
	    first / 1000.0, parallel, pool);
	fflush(stdout);

	/* Warm-up; then let the pool refill before measuring idle memory. */
	for (unsigned i = 0; i < o->warmup; i++) {
		make_job(&job, id, sizeof(id), seq++, o->program);
		if (mw_sandbox_run(sb, &job, &res) != 0)
			die("supervisor failed during warm-up%s", "");
		mw_result_free(&res);
	}
	usleep(200000);
	print_memory("idle_after_warmup", mw_sandbox_pid(sb));

	/* (a) latency, one job at a time. */
	uint64_t *ns = calloc(o->n, sizeof(*ns));
	uint64_t sup_wall = 0;
	unsigned bad = 0;
	if (ns == NULL)
		return 2;
	for (unsigned i = 0; i < o->n; i++) {
		make_job(&job, id, sizeof(id), seq++, o->program);
		uint64_t a = now_ns();
		if (mw_sandbox_run(sb, &job, &res) != 0)
			die("supervisor failed during the latency run%s", "");
		ns[i] = now_ns() - a;
		if (res.status != MW_JOB_OK)
			bad++;
		sup_wall += res.usage.wall_us;
		mw_result_free(&res);
	}
	printf("{\"bench\":\"latency\",\"not_ok\":%u,\"supervisor_wall_mean_us\":%.1f,",
	    bad, o->n ? (double)sup_wall / o->n : 0.0);
	print_stats(ns, o->n);
	printf("}\n");
	fflush(stdout);
	free(ns);

	/* (a2) the same with an idle gap before each job: the pool is ready
	 * and nothing else runs, so this is the bare path through the
	 * supervisor (what a sporadic caller sees). */
	if (o->gap_n > 0) {
		ns = calloc(o->gap_n, sizeof(*ns));
		sup_wall = 0;
		bad = 0;
		if (ns == NULL)
			return 2;
		for (unsigned i = 0; i < o->gap_n; i++) {
			usleep(o->gap_us);
			make_job(&job, id, sizeof(id), seq++, o->program);
			uint64_t a = now_ns();
			if (mw_sandbox_run(sb, &job, &res) != 0)
				die("supervisor failed during the gap latency run%s", "");
			ns[i] = now_ns() - a;
			if (res.status != MW_JOB_OK)
				bad++;
			sup_wall += res.usage.wall_us;
			mw_result_free(&res);
		}
		printf("{\"bench\":\"latency_gap\",\"gap_us\":%u,\"not_ok\":%u,"
		    "\"supervisor_wall_mean_us\":%.1f,", o->gap_us, bad,
		    (double)sup_wall / o->gap_n);
		print_stats(ns, o->gap_n);
		printf("}\n");
		fflush(stdout);
		free(ns);
	}

	/* (b) throughput with K jobs in flight. */
	unsigned k = o->inflight ? o->inflight : parallel * 2;
	unsigned long submitted = 0, done = 0, ok = 0, busy = 0, other = 0;
	uint64_t start = now_ns(), limit = (uint64_t)o->seconds * 1000000000u;
	bool stop = false;
	int dead = 0;
	while (!dead) {
		while (!stop && submitted - done < k) {
			make_job(&job, id, sizeof(id), seq++, o->program);
			if (mw_sandbox_submit(sb, &job) != 0)
				die("cannot encode a job%s", "");
			submitted++;
			if (o->jobs && submitted >= o->jobs)
				stop = true;
		}
		if (done == submitted)
			break;
		struct pollfd p = { mw_sandbox_fd(sb),
			POLLIN | (mw_sandbox_want_write(sb) ? POLLOUT : 0), 0 };
		if (poll(&p, 1, 10000) <= 0) {
			dead = 1;
			break;
		}
		if ((p.revents & POLLOUT) && mw_sandbox_flush(sb) != 0)
			dead = 1;
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			int r;
			while ((r = mw_sandbox_read_result(sb, &res)) == 1) {
				done++;
				if (res.status == MW_JOB_OK)
					ok++;
				else if (res.status == MW_JOB_BUSY)
					busy++;
				else
					other++;
				mw_result_free(&res);
			}
			if (r < 0)
				dead = 1;
		}
		if (!stop && o->seconds && now_ns() - start >= limit)
			stop = true;
	}
	double secs = (now_ns() - start) / 1e9;
	printf("{\"bench\":\"throughput\",\"inflight\":%u,\"parallel\":%u,\"pool\":%u,"
	    "\"seconds\":%.3f,\"jobs\":%lu,\"ok\":%lu,\"busy\":%lu,\"other\":%lu,"
	    "\"jobs_per_s\":%.1f,\"ok_per_s\":%.1f%s}\n", k, parallel, pool, secs,
	    done, ok, busy, other, done / secs, ok / secs,
	    dead ? ",\"error\":\"supervisor stopped answering\"" : "");
	fflush(stdout);

	/* (c) memory once idle again, and CPU per job of each process over
	 * the whole run (every job above; the pool's idle workers are not
	 * reaped yet, so not counted). */
	usleep(300000);
	print_memory("idle_after_load", mw_sandbox_pid(sb));
	{
		pid_t sup = mw_sandbox_pid(sb), zyg = zygote_of(sup);
		double s_own, s_kids, z_own, z_kids;
		if (seq > 0 && zyg > 0 && proc_cpu_us(sup, &s_own, &s_kids) == 0 &&
		    proc_cpu_us(zyg, &z_own, &z_kids) == 0)
			printf("{\"bench\":\"cpu\",\"jobs\":%lu,\"supervisor_us_per_job\":%.1f,"
			    "\"zygote_us_per_job\":%.1f,\"workers_us_per_job\":%.1f}\n", seq,
			    s_own / seq, z_own / seq, z_kids / seq);
		fflush(stdout);
	}
	mw_sandbox_stop(sb);
	return dead ? 1 : 0;
}

static unsigned
num(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v > 100000000ul)
		die("bad number '%s'", s);
	return (unsigned)v;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: sandbox_bench moonwire|spawn ...%s", "");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "spawn") == 0) {
		const char *name = "spawn";
		unsigned n = 1000, warmup = 20;
		int i;
		for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
			if (i + 1 >= argc)
				die("missing value for %s", argv[i]);
			if (strcmp(argv[i], "--name") == 0)
				name = argv[i + 1];
			else if (strcmp(argv[i], "--n") == 0)
				n = num(argv[i + 1]);
			else if (strcmp(argv[i], "--warmup") == 0)
				warmup = num(argv[i + 1]);
			else
				die("unknown option %s", argv[i]);
		}
		if (i + 1 >= argc || n == 0)
			die("spawn: give -- ARGV...%s", "");
		return bench_spawn(name, n, warmup, argv + i + 1);
	}
	if (strcmp(argv[1], "moonwire") != 0)
		die("unknown mode %s", argv[1]);
	struct mw_opts o = { .program = "return 1+1", .n = 2000, .warmup = 200,
		.seconds = 5, .gap_n = 300, .gap_us = 2000 };
	for (int i = 2; i < argc; i += 2) {
		if (i + 1 >= argc)
			die("missing value for %s", argv[i]);
		const char *k = argv[i], *v = argv[i + 1];
		if (strcmp(k, "--exe") == 0) o.exe = v;
		else if (strcmp(k, "--program") == 0) o.program = v;
		else if (strcmp(k, "--n") == 0) o.n = num(v);
		else if (strcmp(k, "--warmup") == 0) o.warmup = num(v);
		else if (strcmp(k, "--parallel") == 0) o.parallel = num(v);
		else if (strcmp(k, "--pool") == 0) o.pool = num(v);
		else if (strcmp(k, "--queue-max") == 0) o.queue_max = num(v);
		else if (strcmp(k, "--inflight") == 0) o.inflight = num(v);
		else if (strcmp(k, "--seconds") == 0) o.seconds = num(v);
		else if (strcmp(k, "--jobs") == 0) o.jobs = num(v);
		else if (strcmp(k, "--gap-n") == 0) o.gap_n = num(v);
		else if (strcmp(k, "--gap-us") == 0) o.gap_us = num(v);
		else die("unknown option %s", k);
	}
	if (o.exe == NULL)
		die("moonwire: --exe PATH is required%s", "");
	if (o.seconds == 0 && o.jobs == 0)
		die("moonwire: give --seconds or --jobs%s", "");
	return bench_moonwire(&o);
}
