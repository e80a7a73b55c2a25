/*
 * twinlane-bench-genlog: builds a data directory whose log holds N events, fast, for the scale
 * benchmark (bench/scale.sh): projection catch-up, rebuilds, cold start and memory with a
 * million orders in the log.
 *
 * Going through the writer (as twinlane-bench-snapshots does) would take minutes per million
 * events, so this program appends through the log API (tl_log_append) in large batches instead,
 * one transaction and one fsync per batch. The events are nevertheless made by the engine's own
 * code, exactly as the writer makes them: each command is decided by the domain's deciders
 * (tl_product_decide, tl_order_decide, with the catalog folded by tl_product_evolve for the
 * product lookup), its data serialised with tl_json_dumps, its metadata is
 * {eventId, correlationId, causationId: null} like a client command's, the schema version is
 * tl_event_schema_version(type), the order id a ULID of the recording time.
 *
 * What the log holds: --products ProductCreated events (bench-p<i>, "Widget <i> <word>", as the
 * load generator's catalogue, stock 1,000,000), then one OrderPlaced per remaining event: 1-3
 * distinct products at their catalogue price, quantity 1-3, a customer from a pool of
 * --customers UUIDs, a shipping address. Recording times are spread evenly over the --days days
 * before now, so the daily sales have that many days. Positions and stream versions are
 * contiguous from 1, as tl_log_append requires.
 *
 * The order saga: the server's process manager reads the log from its checkpoint in saga.db
 * and would issue reservations for every generated order at start-up (three commands per order
 * through the single writer: a million orders would keep it busy for minutes and add two
 * million events). This program therefore creates saga.db with the runtime itself
 * (tl_saga_start on the empty log, then stopped) and stores the order saga's checkpoint at the
 * head, as if it had seen every event: the generated orders stay PENDING, as orders placed
 * before the inventory workflow existed. The products projection then shows no reservations,
 * which is consistent with those orders.
 *
 * Output: a summary on stdout; with --json FILE, {events, orders, products, generate_ms}.
 * Exit status: 0 success, 1 usage error, 2 the engine failed (the message says where).
 */
#include "domain/domain.h"
#include "domain/upcast.h"
#include "log/tl_log.h"
#include "saga/tl_saga.h"
#include "util/tl_db.h"
#include "util/tl_money.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "util/tl_time.h"
#include "write/tl_writer.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
  long events;
  int products;
  int customers;
  int days;
  int batch;
  const char *dir;
  const char *json_path;
} opts;

static const char *const WORDS[] = {"amber",  "basalt", "cobalt", "dune",    "ember", "fjord",
                                    "garnet", "harbor", "indigo", "juniper", "kelp",  "lagoon",
                                    "maple",  "nickel", "onyx",   "pepper"};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])
static const char *const CATEGORIES[] = {"tools", "garden", "kitchen", "office", "toys"};
static const char *const CITIES[] = {"Lyon", "Porto", "Leeds", "Graz", "Turku", "Gdansk"};
static const char *const COUNTRIES[] = {"FR", "PT", "GB", "AT", "FI", "PL"};

static void die(const char *what, const char *detail) {
  fprintf(stderr, "twinlane-bench-genlog: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  exit(2);
}

static double now_ms_mono(void) {
  return (double)tl_mono_ns() / 1e6;
}

/* xorshift64*: reproducible choices of customers, products and quantities. */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ULL;
}

static unsigned rng_below(uint64_t *s, unsigned n) {
  return (unsigned)(rng_next(s) >> 33) % n;
}

/* ---- the batch being built ------------------------------------------------------------------ */

/* Events of one append, with the strings they point to (owned here, freed after the append). */
typedef struct gen_batch {
  tl_log_event_in *events;
  char **owned; /* 3 strings per event: stream, data, metadata */
  size_t n, cap;
} gen_batch;

static void batch_flush(tl_log *log, gen_batch *b) {
  if (b->n == 0) return;
  tl_err err = {0};
  tl_log_batch lb = {
      .events = b->events, .n_events = b->n, .recorded_ms = b->events[b->n - 1].recorded_ms};
  if (tl_log_append(log, &lb, &err) != TL_OK) die("append failed", err.msg);
  for (size_t i = 0; i < 3 * b->n; i++) free(b->owned[i]);
  b->n = 0;
}

/* Stages the decision's events (one here) as the writer does in stage_events. */
static void stage(tl_log *log, gen_batch *b, const char *stream, int64_t version,
                  const tl_decision *d, int64_t recorded_ms, int64_t *position) {
  for (int i = 0; i < d->n_events; i++) {
    if (b->n == b->cap) batch_flush(log, b);
    char event_id[TL_UUID_LEN + 1], correlation_id[TL_UUID_LEN + 1];
    tl_uuid_v7(recorded_ms, event_id); /* as the writer mints them */
    tl_uuid_v4(correlation_id); /* an HTTP request without X-Correlation-Id gets one */
    json_t *meta_j = json_pack("{s:s, s:s, s:o}", "eventId", event_id, "correlationId",
                               correlation_id, "causationId", json_null());
    char *meta = meta_j ? tl_json_dumps(meta_j) : NULL;
    json_decref(meta_j);
    char *data = tl_json_dumps(d->events[i].data);
    char *stream_copy = strdup(stream);
    if (!meta || !data || !stream_copy) die("out of memory", NULL);
    tl_log_event_in *e = &b->events[b->n];
    e->position = ++*position;
    e->stream = stream_copy;
    e->version = version + i;
    e->type = d->events[i].type;
    e->schema_version = tl_event_schema_version(e->type);
    e->data = data;
    e->metadata = meta;
    e->recorded_ms = recorded_ms;
    b->owned[3 * b->n] = stream_copy;
    b->owned[3 * b->n + 1] = data;
    b->owned[3 * b->n + 2] = meta;
    b->n++;
  }
}

/* ---- the catalog ---------------------------------------------------------------------------- */

typedef struct catalog {
  tl_product_state *states;
  int n;
} catalog;

static const tl_product_state *lookup_product(void *arg, const char *id) {
  const catalog *c = arg;
  int i;
  if (strncmp(id, "bench-p", 7) != 0) return NULL;
  i = atoi(id + 7);
  return i >= 0 && i < c->n ? &c->states[i] : NULL;
}

/* ---- saga.db -------------------------------------------------------------------------------- */

/* Creates saga.db through the runtime (on the empty log: nothing to handle), so its schema is
 * the server's own. */
static void create_saga_db(tl_log *log, const char *dir) {
  tl_err err = {0};
  tl_writer *w = NULL;
  tl_saga *s = NULL;
  tl_writer_opts wo = {.snapshot_every = TL_SNAPSHOT_EVERY_DEFAULT};
  if (tl_writer_start(&w, log, &wo, &err) != TL_OK) die("cannot start a writer", err.msg);
  if (tl_saga_start(&s, log, w, dir, NULL, &err) != TL_OK) die("cannot create saga.db", err.msg);
  tl_saga_stop(s);
  tl_writer_stop(w);
}

/* Stores every process manager's checkpoint at position (see the file comment for why). */
static void set_saga_checkpoints(const char *dir, int64_t position) {
  char path[4096];
  snprintf(path, sizeof path, "%s/saga.db", dir);
  tl_err err = {0};
  tl_db *db = NULL;
  if (tl_db_open(&db, path, 0, "FULL", &err) != TL_OK) die("cannot open saga.db", err.msg);
  for (int i = 0; i < tl_process_managers_count; i++) {
    sqlite3_stmt *st = tl_db_stmt(
        db,
        "INSERT INTO pm_checkpoints(name, version, position) VALUES(?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET version = excluded.version, position = excluded.position",
        &err);
    if (!st) die("cannot store a saga checkpoint", err.msg);
    sqlite3_bind_text(st, 1, tl_process_managers[i]->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, tl_process_managers[i]->version);
    sqlite3_bind_int64(st, 3, position);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) die("cannot store a saga checkpoint", sqlite3_errmsg(db->db));
  }
  tl_db_close(db);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: twinlane-bench-genlog --dir DIR [--events N] [--products N] [--customers N]\n"
          "                             [--days N] [--batch N] [--json FILE]\n\n"
          "  --dir DIR        data directory to fill (its log must be empty; created if needed)\n"
          "  --events N       events in the log: products first, then one OrderPlaced each\n"
          "                   (default 1000000)\n"
          "  --products N     catalogue size (default 100)\n"
          "  --customers N    customer pool (default 1000)\n"
          "  --days N         recording times spread over the N days before now (default 30)\n"
          "  --batch N        events per append (one transaction, one fsync; default 20000)\n"
          "  --json FILE      also write {events, orders, products, generate_ms} to FILE\n");
}

int main(int argc, char **argv) {
  opts o = {1000000, 100, 1000, 30, 20000, NULL, NULL};
  static const struct option OPTS[] = {{"dir", required_argument, NULL, 'd'},
                                       {"events", required_argument, NULL, 'e'},
                                       {"products", required_argument, NULL, 'p'},
                                       {"customers", required_argument, NULL, 'c'},
                                       {"days", required_argument, NULL, 'y'},
                                       {"batch", required_argument, NULL, 'b'},
                                       {"json", required_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", OPTS, NULL)) != -1) {
    switch (c) {
      case 'd': o.dir = optarg; break;
      case 'e': o.events = atol(optarg); break;
      case 'p': o.products = atoi(optarg); break;
      case 'c': o.customers = atoi(optarg); break;
      case 'y': o.days = atoi(optarg); break;
      case 'b': o.batch = atoi(optarg); break;
      case 'j': o.json_path = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 1;
    }
  }
  if (optind < argc || !o.dir || o.products < 1 || o.products > 100000 ||
      o.events <= o.products || o.events > 1000000000L || o.customers < 1 || o.days < 1 ||
      o.batch < 1 || o.batch > 1000000) {
    usage(stderr);
    return 1;
  }

  tl_slog_set_level(TL_SLOG_WARN);
  tl_stats_init();
  tl_err err = {0};
  tl_log *log = NULL;
  tl_log_opts lo = {.dir = o.dir};
  if (tl_db_init_library(&err) != TL_OK || tl_log_open(&log, &lo, &err) != TL_OK)
    die("cannot open the log", err.msg);
  if (tl_log_head(log) != 0) die("the directory already holds a log", o.dir);
  create_saga_db(log, o.dir);

  double t0 = now_ms_mono();
  gen_batch b = {0};
  b.cap = (size_t)o.batch;
  b.events = calloc(b.cap, sizeof *b.events);
  b.owned = calloc(3 * b.cap, sizeof *b.owned);
  catalog cat = {calloc((size_t)o.products, sizeof(tl_product_state)), o.products};
  char(*customers)[TL_UUID_LEN + 1] = calloc((size_t)o.customers, sizeof *customers);
  if (!b.events || !b.owned || !cat.states || !customers) die("out of memory", NULL);
  for (int i = 0; i < o.customers; i++) tl_uuid_v4(customers[i]);

  /* Recording times: evenly from now - days to now, one step per event. */
  int64_t t_end = tl_now_ms() - 1000, span = (int64_t)o.days * 86400000LL;
  int64_t t_start = t_end - span;
  int64_t position = 0;
  char stream[96];

  for (int i = 0; i < o.products; i++) {
    tl_cmd cmd = {0};
    tl_decision d = {0};
    cmd.kind = TL_CMD_CREATE_PRODUCT;
    snprintf(cmd.id, sizeof cmd.id, "bench-p%d", i);
    snprintf(cmd.name, sizeof cmd.name, "Widget %d %s", i, WORDS[(unsigned)i % N_WORDS]);
    snprintf(cmd.category, sizeof cmd.category, "%s",
             CATEGORIES[(unsigned)i % (sizeof CATEGORIES / sizeof CATEGORIES[0])]);
    memcpy(cmd.currency, "USD", 4);
    cmd.price_minor = (5 + i % 90) * 100 + 99;
    cmd.quantity = 1000000;
    tl_product_state_init(&cat.states[i]);
    if (tl_product_decide(&cat.states[i], &cmd, &d) != TL_OK || d.n_events != 1)
      die("the product decider refused", d.problem.detail);
    int64_t rec = t_start + (int64_t)((double)span * (double)position / (double)o.events);
    if (tl_product_evolve(&cat.states[i], d.events[0].type, d.events[0].data, rec) != TL_OK)
      die("the product evolver refused", cmd.id);
    tl_stream_name(stream, sizeof stream, false, cmd.id);
    stage(log, &b, stream, 1, &d, rec, &position);
    tl_decision_clear(&d);
  }

  uint64_t rng = 0x9E3779B97F4A7C15ULL;
  tl_order_state none;
  tl_order_state_init(&none);
  long orders = 0;
  while (position < o.events) {
    tl_cmd cmd = {0};
    tl_decision d = {0};
    int64_t rec = t_start + (int64_t)((double)span * (double)position / (double)o.events);
    cmd.kind = TL_CMD_PLACE_ORDER;
    tl_ulid_new(rec, cmd.id);
    snprintf(cmd.customer_id, sizeof cmd.customer_id, "%s",
             customers[rng_below(&rng, (unsigned)o.customers)]);
    memcpy(cmd.currency, "USD", 4);
    int n = 1 + (int)rng_below(&rng, o.products < 3 ? (unsigned)o.products : 3u);
    int first = (int)rng_below(&rng, (unsigned)o.products);
    for (int k = 0; k < n; k++) { /* distinct products: consecutive catalogue entries */
      int p = (first + k) % o.products;
      tl_order_line *l = &cmd.items[k];
      snprintf(l->product_id, sizeof l->product_id, "bench-p%d", p);
      l->quantity = 1 + (int)rng_below(&rng, 3);
      l->price_minor = cat.states[p].price_minor;
    }
    cmd.n_items = n;
    unsigned a = rng_below(&rng, 6);
    char street[64], postal[16];
    snprintf(street, sizeof street, "%u Bench Street", 1 + rng_below(&rng, 999));
    snprintf(postal, sizeof postal, "%05u", rng_below(&rng, 100000));
    cmd.shipping = json_pack("{s:s, s:s, s:s, s:s}", "street", street, "city", CITIES[a],
                             "country", COUNTRIES[a], "postalCode", postal);
    if (!cmd.shipping) die("out of memory", NULL);
    if (tl_order_decide(&none, &cmd, lookup_product, &cat, &d) != TL_OK || d.n_events != 1)
      die("the order decider refused", d.problem.detail);
    tl_stream_name(stream, sizeof stream, true, cmd.id);
    stage(log, &b, stream, 1, &d, rec, &position);
    tl_decision_clear(&d);
    tl_cmd_clear(&cmd);
    orders++;
  }
  batch_flush(log, &b);
  double gen_ms = now_ms_mono() - t0;
  if (tl_log_head(log) != o.events) die("the head is not where it should be", NULL);
  set_saga_checkpoints(o.dir, position);

  printf("generated %ld events (%d products, %ld orders) in %.0f ms: %.0f events/s\n", o.events,
         o.products, orders, gen_ms, (double)o.events / gen_ms * 1e3);
  int rc = 0;
  if (o.json_path) {
    FILE *f = fopen(o.json_path, "w");
    if (!f) {
      perror(o.json_path);
      rc = 1;
    } else {
      fprintf(f, "{\"events\": %ld, \"orders\": %ld, \"products\": %d, \"generate_ms\": %.1f}\n",
              o.events, orders, o.products, gen_ms);
      fclose(f);
    }
  }
  for (int i = 0; i < o.products; i++) tl_product_state_clear(&cat.states[i]);
  free(cat.states);
  free(customers);
  free(b.events);
  free(b.owned);
  tl_log_close(log);
  return rc;
}
