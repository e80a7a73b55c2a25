/*
 * twinlane-bench-snapshots: how long the writer takes to load a long product stream it does not
 * have in its cache (a cold load), with and without snapshots.
 *
 * It links the engine (no HTTP): opens an event log in a fresh directory, and builds one
 * product's stream of --events events through a real writer with --snapshot-every N, the way the
 * order saga grows a flash-sale product: reservations for one order after another, nine in ten
 * of them released again, so about a tenth of the orders hold units at the end and the
 * snapshot carries a few thousand reservations. Commands go through tl_writer_submit (group
 * commit, fsync), so the snapshots are exactly the ones the server writes.
 *
 * Then, --repeat times for each mode, it starts a new writer on the log (empty caches) and times
 * one command on the product from submit to answer: a release for an order that holds nothing,
 * decided against the loaded state and appending nothing. That is the load (snapshot read and
 * decoded, then the tail folded; or the whole stream folded) plus a few microseconds of queue
 * hand-off and decision. Modes:
 *   full fold        snapshots off (--snapshot-every 0 in the server): every event is folded;
 *   snapshot         the snapshot at the stream's last multiple of N, tail of 0 events;
 *   snapshot + tail  after N - 1 more events: the longest tail a load can meet.
 * The SQLite page cache is warm in every mode (same connection): the figures compare folding
 * work, not disk reads.
 *
 * Output: a table on stdout and, with --json FILE, the figures as JSON (one member per line).
 * Exit status: 0 success, 1 usage error, 2 the engine failed (the message says where).
 */
#define _GNU_SOURCE /* nftw */
#include "domain/domain.h"
#include "log/tl_log.h"
#include "util/tl_db.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "write/tl_writer.h"

#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PRODUCT_ID "bench-snapshot-product"
#define WAVE 1000 /* commands in flight at once while building */

typedef struct opts {
  long events;
  int snapshot_every;
  int repeat;
  const char *dir; /* NULL: a fresh temporary directory, removed at the end */
  const char *json_path;
} opts;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "twinlane-bench-snapshots: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  exit(2);
}

/* ---- building the stream ------------------------------------------------------------------ */

typedef struct wave {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int pending;
  int failed;
} wave;

static void on_done(tl_cmd_request *req, void *arg) {
  wave *wv = arg;
  pthread_mutex_lock(&wv->lock);
  if (req->status != 200 && req->status != 201) wv->failed = req->status;
  if (--wv->pending == 0) pthread_cond_signal(&wv->cond);
  pthread_mutex_unlock(&wv->lock);
}

static void stock_cmd(tl_cmd_request *r, tl_cmd_kind kind, long order, int64_t quantity) {
  tl_cmd_request_init(r);
  r->cmd.kind = kind;
  snprintf(r->cmd.id, sizeof r->cmd.id, "%s", PRODUCT_ID);
  snprintf(r->cmd.order_id, sizeof r->cmd.order_id, "B%025ld", order);
  r->cmd.quantity = quantity;
  r->correlation_id = "bench-snapshots";
}

/* Submits every request of reqs[0..n) at once and waits for all answers. */
static void run_wave(tl_writer *w, tl_cmd_request *reqs, int n) {
  wave wv = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, n, 0};
  for (int i = 0; i < n; i++) {
    reqs[i].on_done = on_done;
    reqs[i].on_done_arg = &wv;
    tl_writer_submit(w, &reqs[i]);
  }
  pthread_mutex_lock(&wv.lock);
  while (wv.pending > 0) pthread_cond_wait(&wv.cond, &wv.lock);
  pthread_mutex_unlock(&wv.lock);
  for (int i = 0; i < n; i++) tl_cmd_request_clear(&reqs[i]);
  if (wv.failed) {
    char status[16];
    snprintf(status, sizeof status, "HTTP status %d", wv.failed);
    die("a command failed while building the stream", status);
  }
}

/* Appends events to the product's stream until it holds `target` events; *version and *order
 * carry on between calls. The first call creates the product. */
static void grow_stream(tl_log *log, int snapshot_every, long target, long *version, long *order) {
  tl_writer *w = NULL;
  tl_err err = {0};
  tl_writer_opts wo = {.snapshot_every = snapshot_every};
  if (tl_writer_start(&w, log, &wo, &err) != TL_OK) die("cannot start a writer", err.msg);
  tl_cmd_request *reqs = calloc(WAVE, sizeof *reqs);
  if (!reqs) die("out of memory", NULL);
  if (*version == 0) {
    tl_cmd_request_init(&reqs[0]);
    tl_cmd *c = &reqs[0].cmd;
    c->kind = TL_CMD_CREATE_PRODUCT;
    snprintf(c->id, sizeof c->id, "%s", PRODUCT_ID);
    snprintf(c->name, sizeof c->name, "Flash-sale lamp");
    snprintf(c->category, sizeof c->category, "lighting");
    memcpy(c->currency, "USD", 4);
    c->price_minor = 1999;
    c->quantity = 1000000000; /* every reservation fits */
    run_wave(w, reqs, 1);
    *version = 1;
  }
  while (*version < target) {
    int n = 0;
    while (n < WAVE - 1 && *version < target) {
      long o = (*order)++;
      stock_cmd(&reqs[n++], TL_CMD_RESERVE_STOCK, o, 1 + o % 3);
      (*version)++;
      if (o % 10 != 0 && *version < target) { /* nine in ten give their units back */
        stock_cmd(&reqs[n++], TL_CMD_RELEASE_STOCK, o, 0);
        (*version)++;
      }
    }
    run_wave(w, reqs, n);
  }
  free(reqs);
  tl_writer_stop(w);
}

/* ---- timing cold loads ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct timing {
  double min_ms, median_ms;
} timing;

/* Times --repeat cold loads of the product by writers with the given snapshot setting. */
static timing cold_loads(tl_log *log, int snapshot_every, int repeat, long expect_version) {
  double *ms = calloc((size_t)repeat, sizeof *ms);
  if (!ms) die("out of memory", NULL);
  for (int i = 0; i < repeat; i++) {
    tl_writer *w = NULL;
    tl_err err = {0};
    tl_writer_opts wo = {.snapshot_every = snapshot_every};
    if (tl_writer_start(&w, log, &wo, &err) != TL_OK) die("cannot start a writer", err.msg);
    tl_cmd_request req;
    stock_cmd(&req, TL_CMD_RELEASE_STOCK, -1, 0); /* an order that holds nothing: a no-op */
    double t0 = now_ms();
    tl_writer_submit(w, &req); /* blocks until answered */
    ms[i] = now_ms() - t0;
    if (req.status != 200 || req.version != expect_version || req.n_events != 0)
      die("the cold load decided wrong", req.problem.detail[0] ? req.problem.detail : "version");
    tl_cmd_request_clear(&req);
    tl_writer_stop(w);
  }
  qsort(ms, (size_t)repeat, sizeof *ms, cmp_double);
  timing t = {ms[0], repeat % 2 ? ms[repeat / 2] : (ms[repeat / 2 - 1] + ms[repeat / 2]) / 2};
  free(ms);
  return t;
}

/* The stored snapshot's version and size in bytes (0, 0 when there is none). */
static void snapshot_info(tl_log *log, long *version, size_t *bytes) {
  tl_snapshot s;
  tl_err err = {0};
  *version = 0;
  *bytes = 0;
  if (tl_log_snapshot_get(tl_log_writer_reader(log), "product-" PRODUCT_ID, &s, &err) != TL_OK)
    return;
  *version = (long)s.version;
  *bytes = strlen(s.state);
  free(s.state);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: twinlane-bench-snapshots [--events N] [--snapshot-every N] [--repeat N]\n"
          "                                [--dir DIR] [--json FILE]\n\n"
          "  --events N          events in the product stream (default 50000, at least 2)\n"
          "  --snapshot-every N  snapshot interval, as twinlane serve's (default %d, >= 1)\n"
          "  --repeat N          cold loads timed per mode; the median is reported (default 5)\n"
          "  --dir DIR           build the log in DIR (must not hold one; default: a fresh\n"
          "                      temporary directory, removed at the end)\n"
          "  --json FILE         also write the figures to FILE\n",
          TL_SNAPSHOT_EVERY_DEFAULT);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(int argc, char **argv) {
  opts o = {50000, TL_SNAPSHOT_EVERY_DEFAULT, 5, NULL, NULL};
  static const struct option OPTS[] = {{"events", required_argument, NULL, 'e'},
                                       {"snapshot-every", required_argument, NULL, 's'},
                                       {"repeat", required_argument, NULL, 'r'},
                                       {"dir", required_argument, NULL, 'd'},
                                       {"json", required_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", OPTS, NULL)) != -1) {
    switch (c) {
      case 'e': o.events = atol(optarg); break;
      case 's': o.snapshot_every = atoi(optarg); break;
      case 'r': o.repeat = atoi(optarg); break;
      case 'd': o.dir = optarg; break;
      case 'j': o.json_path = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 1;
    }
  }
  if (optind < argc || o.events < 2 || o.events > 100000000 || o.snapshot_every < 1 ||
      o.repeat < 1 || o.repeat > 1000) {
    usage(stderr);
    return 1;
  }

  char tmp[256];
  const char *dir = o.dir;
  if (!dir) {
    const char *base = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/twinlane-bench-snapshots.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp)) die("cannot create a temporary directory", tmp);
    dir = tmp;
  }
  tl_slog_set_level(TL_SLOG_WARN);
  tl_stats_init();
  tl_err err = {0};
  tl_log *log = NULL;
  tl_log_opts lo = {.dir = dir};
  if (tl_db_init_library(&err) != TL_OK || tl_log_open(&log, &lo, &err) != TL_OK)
    die("cannot open the log", err.msg);
  if (tl_log_head(log) != 0) die("the directory already holds a log", dir);

  printf("== cold load of a %ld-event product stream (snapshots every %d events) ==\n", o.events,
         o.snapshot_every);
  long version = 0, order = 0;
  double t0 = now_ms();
  grow_stream(log, o.snapshot_every, o.events, &version, &order);
  double build_ms = now_ms() - t0;
  long snap_version;
  size_t snap_bytes;
  snapshot_info(log, &snap_version, &snap_bytes);
  printf(
      "built   : %ld events in %.0f ms (%.0f events/s, group commit); latest snapshot at "
      "version %ld, %zu bytes\n",
      version, build_ms, (double)version / build_ms * 1e3, snap_version, snap_bytes);
  if (snap_version == 0) die("no snapshot was written", NULL);

  timing full = cold_loads(log, -1, o.repeat, version);
  timing snap = cold_loads(log, o.snapshot_every, o.repeat, version);
  long tail_from = snap_version;
  /* The longest tail a load meets: N - 1 events after the latest snapshot. */
  long longest = snap_version + o.snapshot_every - 1;
  grow_stream(log, -1, longest, &version, &order);
  timing tail = cold_loads(log, o.snapshot_every, o.repeat, version);

  printf("%-34s %12s %12s\n", "cold load (median of runs)", "median ms", "min ms");
  printf("%-34s %12.2f %12.2f\n", "full fold, snapshots off", full.median_ms, full.min_ms);
  printf("%-34s %12.2f %12.2f\n", "snapshot, tail of 0 events", snap.median_ms, snap.min_ms);
  char label[64];
  snprintf(label, sizeof label, "snapshot + tail of %ld events", version - tail_from);
  printf("%-34s %12.2f %12.2f\n", label, tail.median_ms, tail.min_ms);
  printf("speed-up: %.0fx (tail 0), %.0fx (longest tail)\n", full.median_ms / snap.median_ms,
         full.median_ms / tail.median_ms);

  int rc = 0;
  if (o.json_path) {
    FILE *f = fopen(o.json_path, "w");
    if (!f) {
      perror(o.json_path);
      rc = 1;
    } else {
      fprintf(f,
              "{\n  \"events\": %ld,\n  \"snapshot_every\": %d,\n  \"repeat\": %d,\n"
              "  \"snapshot_bytes\": %zu,\n  \"build_ms\": %.1f,\n"
              "  \"full_fold_ms\": %.3f,\n  \"snapshot_ms\": %.3f,\n"
              "  \"snapshot_longest_tail_ms\": %.3f,\n  \"longest_tail_events\": %ld\n}\n",
              o.events, o.snapshot_every, o.repeat, snap_bytes, build_ms, full.median_ms,
              snap.median_ms, tail.median_ms, version - tail_from);
      fclose(f);
    }
  }
  tl_log_close(log);
  if (!o.dir) nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
