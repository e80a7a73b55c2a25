/*
 * tl_read.h: the query lane: read models, one SQLite file per projection in the data directory
 * (<dir>/read.<projection>.<generation>.db, see files.c), the projector that keeps them in step
 * with the log, and the connections queries run on.
 *
 * The projector thread consumes the log in position order, in batches of up to 512 events.
 * Each batch is one transaction over the projections' files that applies every event to every
 * projection whose checkpoint is below it and moves those checkpoints; each projection's rows
 * and checkpoint are in its own file and commit together, so a crash or a replay never applies
 * an event twice and never skips one. Savepoints isolate the projections
 * (see tl_read.c): a projection that fails on an event is retried with exponential backoff and
 * jitter while the others go on; after `retry_attempts` failures the event is parked in the
 * dead-letter table rm_dlq and the projection continues (see docs/projections.md). Read models
 * are derived data: they use synchronous=NORMAL (a crash may lose the last batches, never
 * consistency; they are re-applied from the log at start).
 *
 * Queries see a committed snapshot; tl_read_wait_async lets a query wait (woken by the
 * projector, not by polling) until the projection it reads reflects a given log position.
 */
#ifndef TL_READ_H
#define TL_READ_H

#include "log/tl_log.h"
#include "util/tl_db.h"
#include "util/tl_jv.h"
#include "util/tl_jw.h"
#include "util/tl_problem.h"

#include <jansson.h>

typedef struct tl_read tl_read;

/* A projection: its name, its version (bumped when its tables or logic change; a stored
 * checkpoint of another version makes the projection start again from position 0), the SQL
 * that creates its tables (idempotent: IF NOT EXISTS), the SQL that drops them, and how it
 * applies one event. */
/* A table of a projection and the SQL expression that names one of its rows in reports. */
typedef struct tl_rm_table {
  const char *name;
  const char *key;  /* over cols */
  const char *cols; /* the compared columns; NULL: all (*) */
} tl_rm_table;

/* What a projection's apply announces it changed (tl_db_changed), so that the answers the
 * read lane caches (view_cache.h) are dropped: an order's row (key: the order id; its view),
 * a customer's list of orders (key: the customer id; their pages), and an order that searches
 * may find (key: the order's items as its view holds them, a JSON array of objects whose
 * "name" members are what searches match; the searches those names can match). A change to
 * an order's row that a search can show must announce both ORDER and ITEMS. */
enum { TL_CHANGED_ORDER = 1, TL_CHANGED_CUSTOMER = 2, TL_CHANGED_ITEMS = 3 };

typedef struct tl_projection_def {
  const char *name;
  int version;
  const char *schema_sql;
  /* The tables a fold into a scratch database creates (a rebuild's new copy, reconciliation's
   * fresh fold), empty, before applying the log to them; NULL: schema_sql. Same IF NOT EXISTS
   * convention. Each of `tables` must have the same columns and keys as in schema_sql, since
   * reconciliation compares its `cols` with the live table's; what it may leave out is storage
   * only queries use: secondary indexes that apply's own statements do not need, and a
   * full-text index, kept as a plain table of its rows. The live files never take this
   * schema. */
  const char *fold_schema_sql;
  /* Turns a fold's tables (fold_schema_sql) into schema_sql's (NULL: they are the same): a
   * rebuild runs it once it has folded all but the last events, off the projector's thread.
   * An index built there in one sorted pass (and a full-text index filled in one statement)
   * costs a fraction of keeping it up during the fold. */
  const char *finish_sql;
  const char *reset_sql;
  const tl_rm_table *tables; /* every table the projection writes (reconciliation compares them) */
  int n_tables;
  /* Applies ev (data already parsed) inside the projector's open transaction. Must be
   * deterministic and touch only this projection's tables. Announces with tl_db_changed each
   * change a cached query answer may depend on (TL_CHANGED_*). Returns 0 or a TL_E code. */
  int (*apply)(tl_db *db, const tl_event *ev, const tl_jv *data, tl_err *err);
  /* Optional housekeeping of the projection's storage (NULL: none), which the projector runs
   * only when the log has been quiet for a while and no rebuild runs: one bounded step per
   * call, inside the projector's open transaction; the answers of queries must not change.
   * Returns 1 when another step would do more, 0 when there is nothing left to do, or a TL_E
   * code. */
  int (*tidy)(tl_db *db, tl_err *err);
} tl_projection_def;

extern const tl_projection_def *const tl_projections[];
extern const int tl_projections_count;

typedef struct tl_proj_status {
  const char *name;
  int version;
  int64_t position;
  int64_t lag_events;
  int64_t lag_ms;
  int64_t dlq_depth;
  uint64_t retries;         /* failed applications since start */
  int attempts;             /* failed attempts on the event it is stuck at (0: none) */
  const char *status;       /* "running", "retrying" while an event keeps failing, "rebuilding" */
  int64_t rebuild_position; /* while rebuilding: how far the new copy got */
  uint64_t tidy_steps;      /* housekeeping steps run since start (tl_projection_def.tidy) */
} tl_proj_status;

/* How a failing projection is retried; 0 fields take the defaults (200 ms, 30 s, 8). */
typedef struct tl_read_opts {
  int retry_base_ms;  /* delay after the first failure; doubles with each further one */
  int retry_cap_ms;   /* the delay never exceeds this */
  int retry_attempts; /* failures of one event before it is parked in the DLQ */
  /* Order views kept rendered in memory (view_cache.h), rounded down to a power of two, at most
   * TL_READ_VIEW_CACHE_MAX; a quarter as many customer pages and a 64th as many searches (at
   * least one each); 0: none (every query reads the read model). Without opts: the default.
   * Their text is bounded by TL_READ_VIEW_CACHE_BYTES (half and a quarter of it for pages and
   * searches) whatever the count. */
  long view_cache;
  /* A projection that starts empty (position 0) while the log holds at least this many events
   * is folded into a new copy, as a rebuild does (3-5x the events per second of the projector
   * applying them one batch at a time, which it does meanwhile for the others), instead of
   * being caught up by the projector; 0: never. Without opts: TL_READ_FOLD_FROM_DEFAULT. */
  long fold_from;
} tl_read_opts;

#define TL_READ_FOLD_FROM_DEFAULT 10000

#define TL_READ_VIEW_CACHE_DEFAULT 65536
#define TL_READ_VIEW_CACHE_MAX (1L << 20)
#define TL_READ_VIEW_CACHE_BYTES ((size_t)64 << 20)

/* Opens the read models under dir, creates or resets projections as their versions require, and
 * starts the projector over log (borrowed; must outlive the store). opts may be NULL. */
int tl_read_open(tl_read **out, tl_log *log, const char *dir, const tl_read_opts *opts,
                 tl_err *err);
/* Wakes every waiter for good (they answer TL_E_TIMEOUT) and tells the projector to stop;
 * call before stopping the HTTP server so no request sleeps through shutdown. */
void tl_read_shutdown(tl_read *r);
/* Stops the projector and wakes every waiter; closes the store. NULL is a no-op. */
void tl_read_close(tl_read *r);

/* The index of the projection called name in tl_projections, or -1. */
int tl_projection_index(const char *name);

/* The log the store follows (for reconciliation). */
tl_log *tl_read_log(const tl_read *r);

/* The log position every read model has applied (the slowest one's). */
int64_t tl_read_position(tl_read *r);
/* The log position projection `proj` has applied (-1: every one, as tl_read_position). */
int64_t tl_read_position_of(tl_read *r, int proj);

/* Waits until tl_read_position(r) >= min_position, at most timeout_ms. Returns 0 or
 * TL_E_TIMEOUT (also when the store is closing). */
int tl_read_wait(tl_read *r, int64_t min_position, int timeout_ms);

/* Called once when an asynchronous wait ends: rc 0 (reached) or TL_E_TIMEOUT (also at
 * shutdown). Runs on the projector's thread (or the closing thread): keep it short. */
typedef void (*tl_read_wait_fn)(void *arg, int rc);

/* Asynchronous wait until projection `proj` (-1: every one) has applied min_position: returns
 * 0 if it already has (fn is not called), else 1: fn(arg, rc) will be called exactly once,
 * woken by the projector's commit or by the deadline (to within a few milliseconds). A
 * projection waiting to retry a failing event does not hold back waits on the others. */
int tl_read_wait_async(tl_read *r, int proj, int64_t min_position, int timeout_ms,
                       tl_read_wait_fn fn, void *arg);

/* What the "meta" object of an answer read from projection `proj` (-1: the slowest one) says:
 * {position, dataAsOf (null when recorded_ms is 0), lagMs}. */
typedef struct tl_read_meta {
  int64_t position, recorded_ms, lag_ms;
} tl_read_meta;
tl_read_meta tl_read_meta_of(tl_read *r, int proj);
/* Writes meta as the value of the member the caller just keyed. */
void tl_read_meta_write(const tl_read_meta *m, tl_jw *out);

/* Fills up to max statuses; returns how many projections there are. */
int tl_read_status(tl_read *r, tl_proj_status *out, int max);

/* ---- reconciliation (reconcile.c) -------------------------------------------------------- */

/* Compares every read model with a fresh fold of the log: builds each projection in a scratch
 * database up to the position the live one has applied (read in one snapshot), then compares
 * the tables row by row. Changes nothing live. *report: {clean, position, projections: [{name,
 * position, mismatches, tables: [{table, rows, freshRows, mismatches, keys: [first 20]}]}]}. */
int tl_read_reconcile(tl_read *r, json_t **report, tl_err *err);

/* ---- zero-downtime rebuilds (rebuild.c) -------------------------------------------------- */

/* Starts rebuilding projection `name` in the background: a new copy is folded from position 0
 * in a scratch database beside the live files while the live copy keeps serving; once it has
 * caught up, the projector installs it as the projection's next file (queries see the old file
 * or the new one, never a mix), which also drops the projection's parked events (the rebuild
 * re-applied them).
 * TL_E_NOTFOUND for an unknown projection, TL_E_CONFLICT while another rebuild runs. */
int tl_read_rebuild_start(tl_read *r, const char *name, tl_err *err);

/* ---- the dead-letter queue ---------------------------------------------------------------- */

typedef enum { TL_DLQ_RETRY, TL_DLQ_RETRY_ALL, TL_DLQ_DROP } tl_dlq_op;

typedef struct tl_dlq_result {
  int found;   /* parked events the operation concerned */
  int applied; /* retried and applied (removed from the queue) */
  int failed;  /* retried and failed again (attempts and error updated) */
  int dropped; /* removed without applying */
} tl_dlq_result;

/* Runs a DLQ operation on the projector's thread (retry one parked event by id, retry all, or
 * drop one) and waits for it: TL_E_TIMEOUT if the projector did not take it within timeout_ms
 * (nothing happened then), TL_E_CLOSED at shutdown, TL_E_IO on storage failure (rolled back).
 * A retried event is applied to its projection as it is now: per-row position guards keep it
 * from overwriting newer state. */
int tl_read_dlq(tl_read *r, tl_dlq_op op, int64_t id, int timeout_ms, tl_dlq_result *out,
                tl_err *err);
/* Parked events, oldest first, at most limit, of one projection or (NULL) all:
 * [{id, projection, position, stream, type, error, attempts, firstFailedAt, lastFailedAt}]. */
json_t *tl_read_dlq_list(tl_read *r, const char *projection, int limit, tl_problem *p);

/* The answers of GET /orders/{id}, GET /customers/{id}/orders and GET /orders/search (the
 * members of tl_query_order, tl_query_customer_orders and tl_query_search, written into out),
 * from the view cache when it holds them, else from a query connection (the answer is then
 * cached). As fresh as a query of the read model: the projector invalidates an order's view,
 * its customer's pages and every search after the commit that changed the order and before it
 * publishes that batch's position. */
int tl_read_order_view(tl_read *r, const char *order_id, tl_jw *out, tl_problem *p);
int tl_read_customer_orders(tl_read *r, const char *customer_id, int limit, const char *cursor,
                            tl_jw *out, tl_problem *p);
int tl_read_search(tl_read *r, const char *q, int limit, tl_jw *out, tl_problem *p);

/* A query connection (read-only, its own statement cache). One thread at a time. */
int tl_read_conn_acquire(tl_read *r, tl_db **out, tl_err *err);
void tl_read_conn_release(tl_read *r, tl_db *db);

/* Applies one event to one projection and moves its checkpoint, inside the caller's
 * transaction, unless the checkpoint is already at or past the event (then nothing changes).
 * Returns 0 or a TL_E code. Exposed for unit tests of projections. */
int tl_projection_apply_one(tl_db *db, const tl_projection_def *def, const tl_event *ev,
                            const tl_jv *data, tl_err *err);
/* Creates a projection's tables and checkpoint row (version checked) on db. */
int tl_projection_setup(tl_db *db, const tl_projection_def *def, tl_err *err);
/* A projection's stored checkpoint, or -1 on error. */
int64_t tl_projection_checkpoint(tl_db *db, const char *name);

/* ---- queries (queries.c) ------------------------------------------------------------------
 * Each writes the members of its answer into out, whose object the caller opened, and returns
 * 0; or sets *p and returns a TL_E code (whatever it wrote must then be dropped). */

int tl_query_order(tl_db *db, const char *order_id, tl_jw *out, tl_problem *p);
int tl_query_customer_orders(tl_db *db, const char *customer_id, int limit, const char *cursor,
                             tl_jw *out, tl_problem *p);
int tl_query_search(tl_db *db, const char *q, int limit, tl_jw *out, tl_problem *p);
int tl_query_sales_daily(tl_db *db, int64_t from_day, int64_t to_day, tl_jw *out, tl_problem *p);
/* in_stock: 1 only products with available > 0, 0 only those without, -1 all. */
int tl_query_products(tl_db *db, const char *category, int in_stock, int limit, const char *cursor,
                      tl_jw *out, tl_problem *p);
int tl_query_product(tl_db *db, const char *product_id, tl_jw *out, tl_problem *p);

#endif
