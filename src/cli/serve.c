/*
 * serve.c: `twinlane serve`: opens the log, starts the writer, the read store and its
 * projector, and the HTTP server; waits for SIGTERM/SIGINT; shuts down in the reverse order so
 * that every acknowledged command is already durable and every in-flight one is answered.
 */
#include "cli/tl_cli.h"

#include "domain/upcast.h"
#include "http/tl_http.h"
#include "saga/tl_saga.h"
#include "util/tl_db.h"
#include "util/tl_failpoint.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void tl_cli_usage(int to_stderr) {
  fprintf(to_stderr ? stderr : stdout,
          "twinlane %s: a CQRS + event-sourcing server\n\n"
          "usage:\n"
          "  twinlane serve [--data DIR] [--listen HOST:PORT] [--log-level LEVEL]\n"
          "                 [--ready-lag-ms MS] [--order-cache N] [--snapshot-every N]\n"
          "                 [--view-cache N] [--fold-from N]\n"
          "                 [--http-threads N]\n"
          "                 [--retry-base-ms MS] [--retry-cap-ms MS] [--retry-attempts N]\n"
          "                 [--enable-failpoints]\n"
          "  twinlane dlq [--server HOST:PORT] list [--projection NAME] | retry ID | retry-all |\n"
          "               drop ID\n"
          "  twinlane reconcile [--server HOST:PORT]\n"
          "  twinlane projections [--server HOST:PORT] list | rebuild NAME [--wait]\n"
          "  twinlane export --data DIR [--out FILE]    the log as JSON lines (server stopped)\n"
          "  twinlane import --data DIR FILE            into an empty data directory\n"
          "  twinlane version\n"
          "  twinlane --help\n\n"
          "serve options:\n"
          "  --data DIR          data directory (default ./data): events.db, read.*.db,\n"
          "                      saga.db\n"
          "  --listen HOST:PORT  IPv4 address and port (default 127.0.0.1:8080; port 0: any)\n"
          "  --log-level LEVEL   debug, info, warn or error (default info)\n"
          "  --ready-lag-ms MS   /ready fails when a projection lags more (default 5000)\n"
          "  --order-cache N     orders kept in the writer's memory (default 100000)\n"
          "  --view-cache N      order views kept rendered in memory, rounded down to a\n"
          "                      power of two (default 65536; 0: none)\n"
          "  --fold-from N       a projection that starts empty on a log of at least N events\n"
          "                      is folded into a new copy, as a rebuild does (default %d;\n"
          "                      0: the projector catches it up)\n"
          "  --snapshot-every N  snapshot an aggregate's state every N events of its stream\n"
          "                      (default %d; 0: no snapshots, every load folds the stream)\n"
          "  --http-threads N    HTTP event-loop threads (default: CPUs, at most 8)\n"
          "  --retry-base-ms MS  first retry delay of a failing projection (default 200)\n"
          "  --retry-cap-ms MS   longest retry delay (default 30000)\n"
          "  --retry-attempts N  failures of one event before it goes to the DLQ (default 8)\n"
          "  --enable-failpoints serve PUT/DELETE /admin/failpoints/{point} (fault injection\n"
          "                      for tests; never in production)\n\n"
          "environment:\n"
          "  TWINLANE_FAILPOINTS  \"point=action;...\" armed at start-up (README: Fail points)\n",
          TL_VERSION, TL_READ_FOLD_FROM_DEFAULT, TL_SNAPSHOT_EVERY_DEFAULT);
}

/* Takes an exclusive lock on DIR/LOCK (creating DIR if needed), held until the process exits:
 * two servers on one data directory would each believe they are the single writer. Returns the
 * lock's file descriptor, or -1 with err set. */
int tl_cli_lock_data_dir(const char *dir, tl_err *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return tl_err_set(err, TL_E_IO, "cannot create %s: %s", dir, strerror(errno)), -1;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/LOCK", dir);
  if (n < 0 || (size_t)n >= sizeof path)
    return tl_err_set(err, TL_E_INVALID, "data directory path too long"), -1;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return tl_err_set(err, TL_E_IO, "cannot open %s: %s", path, strerror(errno)), -1;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return tl_err_set(err, TL_E_CONFLICT, "data directory %s is in use by another twinlane",
                        dir), -1;
    return tl_err_set(err, TL_E_IO, "cannot lock %s: %s", path, strerror(e)), -1;
  }
  return fd;
}

static int parse_listen(const char *s, char *host, size_t host_len, uint16_t *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= host_len || colon == s) return -1;
  char *end = NULL;
  long p = strtol(colon + 1, &end, 10);
  if (!end || *end != '\0' || p < 0 || p > 65535 || colon[1] == '\0') return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  *port = (uint16_t)p;
  return 0;
}

/* A whole number from 0 to max for option `name`: 0, or -1 after saying why on stderr. */
static int parse_count(const char *name, const char *text, long max, long *out) {
  char *end = NULL;
  long v = strtol(text, &end, 10);
  if (!end || end == text || *end != '\0' || v < 0 || v > max) {
    fprintf(stderr, "twinlane: %s wants a whole number from 0 to %ld, got '%s'\n", name, max, text);
    return -1;
  }
  *out = v;
  return 0;
}

int tl_cli_serve(int argc, char **argv) {
  const char *data_dir = "./data";
  char host[64] = "127.0.0.1";
  uint16_t port = 8080;
  int ready_lag_ms = 5000;
  long order_cache = 100000;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int http_threads = ncpu > 0 ? (int)(ncpu < 8 ? ncpu : 8) : 2;
  int enable_failpoints = 0;
  tl_read_opts ro = {.retry_base_ms = 200,
                     .retry_cap_ms = 30000,
                     .retry_attempts = 8,
                     .view_cache = TL_READ_VIEW_CACHE_DEFAULT,
                     .fold_from = TL_READ_FOLD_FROM_DEFAULT};
  long snapshot_every = TL_SNAPSHOT_EVERY_DEFAULT;
  static const struct option OPTS[] = {{"data", required_argument, NULL, 'd'},
                                       {"listen", required_argument, NULL, 'l'},
                                       {"log-level", required_argument, NULL, 'v'},
                                       {"ready-lag-ms", required_argument, NULL, 'r'},
                                       {"order-cache", required_argument, NULL, 'c'},
                                       {"http-threads", required_argument, NULL, 't'},
                                       {"retry-base-ms", required_argument, NULL, 'B'},
                                       {"retry-cap-ms", required_argument, NULL, 'C'},
                                       {"retry-attempts", required_argument, NULL, 'A'},
                                       {"enable-failpoints", no_argument, NULL, 'F'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"snapshot-every", required_argument, NULL, 's'},
                                       {"view-cache", required_argument, NULL, 'V'},
                                       {"fold-from", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:l:h", OPTS, NULL)) != -1) {
    switch (c) {
    case 'd': data_dir = optarg; break;
    case 'l':
      if (parse_listen(optarg, host, sizeof host, &port) != 0) {
        fprintf(stderr, "twinlane: --listen wants HOST:PORT, got '%s'\n", optarg);
        return 2;
      }
      break;
    case 'v': {
      tl_slog_level lvl;
      if (tl_slog_parse_level(optarg, &lvl) != TL_OK) {
        fprintf(stderr, "twinlane: unknown log level '%s'\n", optarg);
        return 2;
      }
      tl_slog_set_level(lvl);
      break;
    }
    case 'r': ready_lag_ms = atoi(optarg); break;
    case 'c': order_cache = atol(optarg); break;
    case 't': http_threads = atoi(optarg); break;
    case 's':
      if (parse_count("--snapshot-every", optarg, 1000000000, &snapshot_every) != 0) return 2;
      break;
    case 'V':
      if (parse_count("--view-cache", optarg, TL_READ_VIEW_CACHE_MAX, &ro.view_cache) != 0)
        return 2;
      break;
    case 'f':
      if (parse_count("--fold-from", optarg, INT32_MAX, &ro.fold_from) != 0) return 2;
      break;
    case 'F': enable_failpoints = 1; break;
    case 'B': ro.retry_base_ms = atoi(optarg); break;
    case 'C': ro.retry_cap_ms = atoi(optarg); break;
    case 'A': ro.retry_attempts = atoi(optarg); break;
    case 'h': tl_cli_usage(0); return 0;
    default: tl_cli_usage(1); return 2;
    }
  }
  if (ro.retry_base_ms < 1 || ro.retry_cap_ms < ro.retry_base_ms || ro.retry_attempts < 1 ||
      ro.retry_attempts > 1000) {
    fprintf(stderr, "twinlane: --retry-base-ms must be >= 1, --retry-cap-ms >= it, and "
                    "--retry-attempts from 1 to 1000\n");
    return 2;
  }
  if (ready_lag_ms <= 0 || order_cache <= 0 || http_threads < 1 || http_threads > 256) {
    fprintf(stderr, "twinlane: --ready-lag-ms, --order-cache and --http-threads (1-256) must be "
                    "positive\n");
    return 2;
  }

  /* Block the stop signals in every thread; the main thread takes them with sigwait. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  tl_stats_init();
  tl_err err = {0};
  const char *fp_spec = getenv("TWINLANE_FAILPOINTS");
  if (fp_spec && *fp_spec) {
    if (tl_fp_configure(fp_spec, &err) != TL_OK) {
      fprintf(stderr, "twinlane: TWINLANE_FAILPOINTS: %s\n", err.msg);
      return 2;
    }
    tl_slog(TL_SLOG_WARN, NULL, "fail points armed (fault injection)", "failpoints", fp_spec,
            NULL);
  }
  tl_log *log = NULL;
  tl_writer *writer = NULL;
  tl_read *read = NULL;
  tl_http *http = NULL;
  tl_saga *saga = NULL;
  tl_log_opts lo = {.dir = data_dir};
  tl_writer_opts wo = {.order_cache_capacity = (size_t)order_cache,
                       .snapshot_every = snapshot_every > 0 ? (int)snapshot_every : -1};
  int exit_code = 1;
  int lock_fd = -1;
  if (tl_db_init_library(&err) != TL_OK) goto out;
  lock_fd = tl_cli_lock_data_dir(data_dir, &err);
  if (lock_fd < 0) goto out;
  if (tl_log_open(&log, &lo, &err) != TL_OK) goto out;
  tl_log_set_upcaster(log, tl_upcast); /* everything below reads events in their latest shape */
  if (tl_writer_start(&writer, log, &wo, &err) != TL_OK) goto out;
  if (tl_read_open(&read, log, data_dir, &ro, &err) != TL_OK) goto out;
  tl_saga_opts so = {ro.retry_base_ms, ro.retry_cap_ms, ro.retry_attempts};
  if (tl_saga_start(&saga, log, writer, data_dir, &so, &err) != TL_OK) goto out;
  tl_app app = {
      .log = log,
      .writer = writer,
      .read = read,
      .saga = saga,
      .ready_lag_ms = ready_lag_ms,
      .failpoints_enabled = enable_failpoints,
  };
  if (tl_http_start(&http, &app, host, port, http_threads, &err) != TL_OK) goto out;

  char listen[96], head[24];
  snprintf(listen, sizeof listen, "%s:%u", host, tl_http_port(http));
  char every[24];
  snprintf(head, sizeof head, "%lld", (long long)tl_log_head(log));
  snprintf(every, sizeof every, "%ld", snapshot_every);
  tl_slog(TL_SLOG_INFO, NULL, "listening", "listen", listen, "data", data_dir, "logPosition",
          head, "snapshotEvery", every, "version", TL_VERSION, NULL);

  int sig = 0;
  sigwait(&stop, &sig);
  tl_slog(TL_SLOG_INFO, NULL, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
          NULL);
  exit_code = 0;
out:
  if (exit_code != 0) tl_slog(TL_SLOG_ERROR, NULL, "cannot start", "error", err.msg, NULL);
  /* Order: wake read-lane waiters, stop taking requests (suspended commands are answered by the
   * still running writer and syncer), stop the process managers (they wait for their
   * commands), stop the projector, drain the writer, then close the log. If commands were
   * still suspended after the HTTP layer's wait (a stalled fsync), the writer is drained first
   * (its syncer answers them), and the HTTP layer is stopped before anything it could reach is
   * closed. */
  tl_read_shutdown(read);
  int http_stopped = tl_http_stop(http);
  tl_saga_stop(saga);
  if (!http_stopped) {
    tl_writer_stop(writer);
    writer = NULL;
    http_stopped = tl_http_stop(http);
  }
  if (!http_stopped) { /* still suspended: the process ends without freeing what they use */
    tl_slog(TL_SLOG_ERROR, NULL, "HTTP requests still suspended; exiting without cleanup", NULL);
    return exit_code == 0 ? 1 : exit_code;
  }
  tl_read_close(read);
  tl_writer_stop(writer);
  tl_log_close(log);
  if (lock_fd >= 0) close(lock_fd);
  if (exit_code == 0) tl_slog(TL_SLOG_INFO, NULL, "stopped", NULL);
  return exit_code;
}
