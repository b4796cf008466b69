/*
 * mw_runtime.h: the runtime component's public header -- the moonwire
 * subcommands and their exit statuses.
 *
 * (Branch `omemo`: minimal stand-in.  On merge keep main's version of this
 * file and add the four mw_cmd_* OMEMO declarations below to it.)
 */
#ifndef MW_RUNTIME_H
#define MW_RUNTIME_H

/* Exit statuses of moonwire commands (spec/cli.md). */
enum {
	MW_EXIT_OK = 0,
	MW_EXIT_ERROR = 1,
	MW_EXIT_USAGE = 2,
};

/* Subcommands. */
int mw_cmd_run(int argc, char **argv);
int mw_cmd_supervisor(int argc, char **argv);

/* cmd_omemo.c: the identity's OMEMO keys and trust (spec/cli.md) */
int mw_cmd_fingerprint(int argc, char **argv);
int mw_cmd_devices(int argc, char **argv);
int mw_cmd_trust(int argc, char **argv);
int mw_cmd_distrust(int argc, char **argv);
int mw_cmd_omemo_client(int argc, char **argv);	/* tests only */

#endif
