/*
 * main.c: the single `moonwire` binary and its subcommands.
 *
 * One binary keeps deployment simple and lets the agent start the sandbox
 * supervisor by re-executing itself (/proc/self/exe __supervisor) before any
 * key is loaded, so the supervisor's memory never held a secret.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "runtime/mw_runtime.h"

#ifndef MW_VERSION
#define MW_VERSION "0.1.0"	/* -DMW_VERSION=... overrides */
#endif

struct mw_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

static const struct mw_command commands[] = {
	{ "run", mw_cmd_run, "run [grants] [limits] [--json] FILE.lua" },
	{ "agent", mw_cmd_agent, "agent -c CONFIG [--check]" },
	{ "send", mw_cmd_send, "send -c CONFIG (--to JID | --targets FILE | --group NAME)... [options] FILE.lua" },
	{ "results", mw_cmd_results, "results -c CONFIG [--json] [--wait DURATION] JOB" },
	{ "jobs", mw_cmd_jobs, "jobs -c CONFIG [--json] [--limit N]" },
	{ "cancel", mw_cmd_cancel, "cancel -c CONFIG [--to JID ...] [--timeout DURATION] [--json] JOB" },
	{ "fleet", mw_cmd_fleet, "fleet (add | remove | list) -c CONFIG [--group NAME ...] [JID...]" },
	{ "fingerprint", mw_cmd_fingerprint, "fingerprint (-c CONFIG | --db PATH)" },
	{ "devices", mw_cmd_devices, "devices (-c CONFIG | --db PATH) JID" },
	{ "trust", mw_cmd_trust, "trust (-c CONFIG | --db PATH) JID FINGERPRINT" },
	{ "distrust", mw_cmd_distrust, "distrust (-c CONFIG | --db PATH) JID FINGERPRINT" },
	{ "sign", mw_cmd_sign, "sign (-k KEY | --prepare) --to JID [--ttl D] [--job-id ID] [--limit K=V] [--arg N=V] FILE.lua" },
	{ "init", mw_cmd_init, "init (agent | operator) --jid JID [options]" },
	{ "verify", mw_cmd_verify, "verify -f ALLOWED_SIGNERS [--audience JID] [--at TIME] [ENVELOPE|-]" },
	{ "__supervisor", mw_cmd_supervisor, NULL },
	{ "__omemo_client", mw_cmd_omemo_client, NULL },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: moonwire COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].usage != NULL)
			fprintf(f, "  moonwire %s\n", commands[i].usage);
	fprintf(f, "  moonwire --version\n");
	fprintf(f, "\n`moonwire COMMAND --help` describes one command.\n");
}

int
main(int argc, char **argv)
{
	/* A peer that went away is an error return, never a signal. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		usage(stderr);
		return MW_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("moonwire %s (job envelope: moonwire-job 1)\n", MW_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "moonwire: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return MW_EXIT_USAGE;
}
