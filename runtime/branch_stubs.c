/*
 * branch_stubs.c: BRANCH `omemo` ONLY -- delete on merge.  Stand-ins for
 * the subcommands other engineers are writing in main, so this branch links
 * and `make all unit` runs.  A duplicate-symbol link error after merging
 * means this file was kept by mistake.
 */
#include <stdio.h>

#include "runtime/mw_runtime.h"

int
mw_cmd_run(int argc, char **argv)
{
	fprintf(stderr, "moonwire run: not in this build\n");
	return MW_EXIT_ERROR;
}

int
mw_cmd_supervisor(int argc, char **argv)
{
	return MW_EXIT_ERROR;
}
