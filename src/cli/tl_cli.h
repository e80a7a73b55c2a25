/* tl_cli.h: the command-line entry points (twinlane serve, --help, version). */
#ifndef TL_CLI_H
#define TL_CLI_H

/* Runs `twinlane serve [options]`; returns the process exit code. */
int tl_cli_serve(int argc, char **argv);

/* Runs `twinlane dlq ...` against a running server; returns the process exit code (0 on a
 * 2xx answer, 1 on another answer, 2 on a usage or connection error). */
int tl_cli_dlq(int argc, char **argv);

/* Runs `twinlane reconcile` against a running server: 0 when the read models agree with the
 * log, 3 when they do not, 1 on an error answer, 2 on a usage or connection error. */
int tl_cli_reconcile(int argc, char **argv);

/* Runs `twinlane projections list|rebuild NAME [--wait]` against a running server. */
int tl_cli_projections(int argc, char **argv);

/* `twinlane export` / `twinlane import` (portable.c): the log as JSON lines. */
int tl_cli_export(int argc, char **argv);
int tl_cli_import(int argc, char **argv);

/* Takes an exclusive lock on DIR/LOCK (creating DIR if needed), held until the process exits;
 * returns its descriptor, or -1 with err set (TL_E_CONFLICT: another process holds it). */
struct tl_err;
int tl_cli_lock_data_dir(const char *dir, struct tl_err *err);

/* Prints usage to f-like stdout (to_stderr: to stderr). */
void tl_cli_usage(int to_stderr);

#define TL_VERSION "0.1.0"

#endif
