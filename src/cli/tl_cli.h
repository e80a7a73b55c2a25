/* tl_cli.h: the command-line entry points (twinlane serve, --help, version). */
#ifndef TL_CLI_H
#define TL_CLI_H

/* Runs `twinlane serve [options]`; returns the process exit code. */
int tl_cli_serve(int argc, char **argv);

/* Prints usage to f-like stdout (to_stderr: to stderr). */
void tl_cli_usage(int to_stderr);

#define TL_VERSION "0.1.0"

#endif
