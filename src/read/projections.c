/*
 * projections.c: the read models and how each event changes them.
 *
 *   orders        rm_orders (+ rm_orders_fts, rm_order_product_names): order view, customer
 *                 history, full-text search by product name.
 *   products      rm_products (+ rm_product_lines): product view and popularity.
 *   daily_sales   rm_daily_sales (+ rm_sales_orders): orders and revenue per UTC day.
 *
 * Counting rule: an order counts in sales while it is live (not cancelled, not rejected). Each
 * projection
 * keeps the per-order facts it needs to undo an order's contribution, so projections stay
 * independent of one another (each can be rebuilt alone). Row updates carry a last_position
 * guard so an event can never overwrite newer state.
 */
#include "read/tl_read.h"

#include "util/tl_buf.h"
#include "util/tl_id.h"
#include "util/tl_jw.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int step(tl_db *db, sqlite3_stmt *st, tl_err *err) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return tl_db_fail(db, rc, "projection", err);
  return TL_OK;
}

#define STMT(var, sql)                                                                          \
  sqlite3_stmt *var = tl_db_stmt(db, sql, err);                                                 \
  if (!var) return TL_E_IO

static const char *jstr(const tl_jv *o, const char *k) {
  const char *s = tl_jv_string(tl_jv_get(o, k));
  return s ? s : "";
}

/* An item's quantity and price (0 when absent or not money). */
static void item_of(const tl_jv *it, int64_t *qty, int64_t *price) {
  *qty = tl_jv_integer(tl_jv_get(it, "quantity"));
  *price = 0;
  tl_money_from_jv(tl_jv_get(it, "price"), price);
}

/* The total of an OrderPlaced's items in minor units; false if a line or the sum overflows
 * int64. decide bounds totals far below that and tl_order_evolve refuses such an event (no
 * order was placed), so every projection skips it too instead of computing garbage. */
static bool order_total(const tl_jv *d, int64_t *total) {
  *total = 0;
  TL_JV_FOREACH(it, tl_jv_get(d, "items")) {
    int64_t qty, price, amount;
    item_of(it, &qty, &price);
    if (__builtin_mul_overflow(qty, price, &amount) ||
        __builtin_add_overflow(*total, amount, total))
      return false;
  }
  return true;
}

/* ---- orders ------------------------------------------------------------------------------ */

/* The orders tables, the same in the live schema and the fold schema (a rebuild copies the one
 * into the other, reconciliation compares them). rm_orders' UNIQUE order_id is the key of the
 * status UPDATE and what makes the insert OR IGNORE. */
#define ORDERS_TABLE                                                                     \
  "CREATE TABLE IF NOT EXISTS rm_orders("                                                \
  " seq INTEGER PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL,"  \
  " status TEXT NOT NULL, total_minor INTEGER NOT NULL, currency TEXT NOT NULL,"         \
  " item_count INTEGER NOT NULL, items TEXT NOT NULL, shipping TEXT NOT NULL,"           \
  " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL," \
  " last_position INTEGER NOT NULL, rejection_reason TEXT);"
/* Covers the customer-history page (queries.c SUMMARY_COLS): a customer's newest orders are
 * adjacent entries of this index, read without visiting the table's rows. */
#define ORDERS_CUSTOMER_INDEX                                                                 \
  "CREATE INDEX IF NOT EXISTS rm_orders_customer ON rm_orders(customer_id, order_id, status," \
  " total_minor, currency, item_count, created_at, updated_at, version);"
#define ORDERS_NAMES_TABLE                             \
  "CREATE TABLE IF NOT EXISTS rm_order_product_names(" \
  " product_id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;"

/* Prefix indexes for query words of 2 to 8 characters: with one, FTS5 walks the prefix's
 * doclist newest first and stops at the page's LIMIT; without, it merges the doclists of
 * every term with that prefix first (every matching order: 100 ms at 40k orders). No column
 * sizes (columnsize=0): only ranking (bm25) reads them, and searches are newest first. */
#define ORDERS_FTS                                   \
  "CREATE VIRTUAL TABLE IF NOT EXISTS rm_orders_fts" \
  " USING fts5(names, tokenize='unicode61', prefix='2 3 4 5 6 7 8', columnsize=0);"

static const char ORDERS_SCHEMA[] =
    ORDERS_TABLE ORDERS_CUSTOMER_INDEX ORDERS_FTS ORDERS_NAMES_TABLE;
/* A scratch fold only stores the names, and orders_apply only inserts rows (tidy, the one
 * other FTS5 statement, runs on live files alone); the customer index, which only queries
 * read, is not kept up during the fold either. Once the fold is done, the names are indexed
 * in one pass and the index is built in one sorted pass (ORDERS_FINISH). */
static const char ORDERS_FOLD_SCHEMA[] = ORDERS_TABLE
    "CREATE TABLE IF NOT EXISTS rm_orders_fts("
    " rowid INTEGER PRIMARY KEY, names TEXT);" ORDERS_NAMES_TABLE;
/* The names are indexed with a 16 MB term buffer (FTS5's hashsize, 1 MB by default, set back
 * after): fewer, larger segments to write and merge (300k orders: 1.66 s, 8 segments → 0.87 s,
 * 2 segments, measured apart). */
static const char ORDERS_FINISH[] =
    "ALTER TABLE rm_orders_fts RENAME TO rm_orders_fold_names;" ORDERS_CUSTOMER_INDEX ORDERS_FTS
    "INSERT INTO rm_orders_fts(rm_orders_fts, rank) VALUES('hashsize', 16777216);"
    "INSERT INTO rm_orders_fts(rowid, names) SELECT rowid, names FROM rm_orders_fold_names;"
    "INSERT INTO rm_orders_fts(rm_orders_fts, rank) VALUES('hashsize', 1048576);"
    "DROP TABLE rm_orders_fold_names;";
static const char ORDERS_RESET[] = "DROP TABLE IF EXISTS rm_orders;"
                                   "DROP TABLE IF EXISTS rm_orders_fts;"
                                   "DROP TABLE IF EXISTS rm_order_product_names;";

static const char SQL_ORD_NAME_PUT[] =
    "INSERT OR REPLACE INTO rm_order_product_names(product_id, name) VALUES(?, ?)";
static const char SQL_ORD_NAME_GET[] =
    "SELECT name FROM rm_order_product_names WHERE product_id = ?";
static const char SQL_ORD_INSERT[] =
    "INSERT OR IGNORE INTO rm_orders(seq, order_id, customer_id, status, total_minor, currency,"
    " item_count, items, shipping, created_at, updated_at, version, last_position)"
    " VALUES(?,?,?,'PENDING',?,?,?,?,?,?,?,?,?)";
static const char SQL_ORD_FTS[] = "INSERT INTO rm_orders_fts(rowid, names) VALUES(?, ?)";
/* A status event changes its order's row unless the row has seen a later event; the row's
 * customer and items are read in the same look-up, for the announcement (tl_db_changed). */
static const char SQL_ORD_FIND[] =
    "SELECT seq, customer_id, items FROM rm_orders WHERE order_id = ? AND last_position < ?";
/* Where nobody listens (a fold into a scratch database), the items are not read. */
static const char SQL_ORD_FIND_QUIET[] =
    "SELECT seq, customer_id FROM rm_orders WHERE order_id = ? AND last_position < ?";

/* Announces an order's items as its view holds them (text, n bytes: the searches its names can
 * match). Unreadable, or with a NUL that would cut the text short: announced as a non-ASCII
 * byte, which every search takes. */
static void announce_items(tl_db *db, const char *text, size_t n) {
  tl_db_changed(db, TL_CHANGED_ITEMS, text && strlen(text) == n ? text : "\x80");
}
static const char SQL_ORD_STATUS[] =
    "UPDATE rm_orders SET status = ?1, updated_at = ?2, version = ?3, last_position = ?4,"
    " rejection_reason = COALESCE(?5, rejection_reason) WHERE seq = ?6";

/* The order view's items: [{productId, name, quantity, price}], each product's name as the
 * projection knows it when the order is placed; and every name, space-separated, for the
 * full-text index. */
static int order_items(tl_db *db, const tl_jv *items, tl_jw *view, tl_buf *names, tl_err *err) {
  STMT(get_name, SQL_ORD_NAME_GET);
  tl_jw_array(view);
  TL_JV_FOREACH(it, items) {
    const char *pid = jstr(it, "productId");
    int64_t price, qty;
    item_of(it, &qty, &price);
    sqlite3_bind_text(get_name, 1, pid, -1, SQLITE_STATIC);
    int step_rc = sqlite3_step(get_name);
    const char *name = step_rc == SQLITE_ROW ? (const char *)sqlite3_column_text(get_name, 0) : "";
    size_t name_len = step_rc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(get_name, 0) : 0;
    if (step_rc != SQLITE_ROW && step_rc != SQLITE_DONE) {
      sqlite3_reset(get_name);
      return tl_db_fail(db, step_rc, "read product name", err);
    }
    if (!name) name = "", name_len = 0; /* a NULL column: out of memory in SQLite */
    if (name_len > 0) {
      if (names->len) tl_buf_append(names, " ", 1);
      tl_buf_append(names, name, name_len);
    }
    tl_jw_object(view);
    tl_jw_key(view, "productId");
    tl_jw_string(view, pid);
    tl_jw_key(view, "name");
    tl_jw_string_n(view, name, name_len);
    tl_jw_key(view, "quantity");
    tl_jw_int(view, qty);
    tl_jw_key(view, "price");
    tl_jw_money(view, price);
    tl_jw_end(view);
    sqlite3_reset(get_name); /* the name's text lives until the reset */
  }
  tl_jw_end(view);
  return TL_OK;
}

/* An OrderPlaced whose items add up to total (order_total). */
static int orders_placed(tl_db *db, const tl_event *ev, const tl_jv *d, int64_t total,
                         tl_err *err) {
  const tl_jv *items = tl_jv_get(d, "items");
  tl_jw view = {0};
  tl_buf names = {0}; /* every product name of the order, for full-text search */
  tl_buf_append(&names, "", 0);
  int rc = order_items(db, items, &view, &names, err);
  char *items_text = rc == TL_OK ? tl_jw_take(&view) : NULL;
  /* Without an address (decide always writes one) the view says null: dumping NULL fails, and
   * that must not pass for out of memory and stall the projector. */
  const tl_jv *ship = tl_jv_get(d, "shippingAddress");
  char *ship_text = rc == TL_OK ? (ship ? tl_jv_dumps(ship) : strdup("null")) : NULL;
  tl_jw_free(&view);
  if (rc == TL_OK && (!items_text || !ship_text || names.oom))
    rc = tl_err_set(err, TL_E_NOMEM, "out of memory building an order view");
  sqlite3_stmt *ins = rc == TL_OK ? tl_db_stmt(db, SQL_ORD_INSERT, err) : NULL;
  if (rc == TL_OK && !ins) rc = TL_E_IO;
  if (rc == TL_OK) {
    sqlite3_bind_int64(ins, 1, ev->position);
    sqlite3_bind_text(ins, 2, jstr(d, "orderId"), -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, jstr(d, "customerId"), -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 4, total);
    /* currency is in every OrderPlaced since schema v2 (v1 events are upcast on reading) */
    sqlite3_bind_text(ins, 5, tl_jv_string(tl_jv_get(d, "currency")), -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 6, (sqlite3_int64)tl_jv_size(items));
    sqlite3_bind_text(ins, 7, items_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 8, ship_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 9, ev->recorded_ms);
    sqlite3_bind_int64(ins, 10, ev->recorded_ms);
    sqlite3_bind_int64(ins, 11, ev->version);
    sqlite3_bind_int64(ins, 12, ev->position);
    rc = step(db, ins, err);
  }
  if (rc == TL_OK && sqlite3_changes(db->db) == 1) {
    tl_db_changed(db, TL_CHANGED_ORDER, jstr(d, "orderId"));
    tl_db_changed(db, TL_CHANGED_CUSTOMER, jstr(d, "customerId"));
    tl_db_changed(db, TL_CHANGED_ITEMS, items_text); /* tl_jw's: no NUL inside */
    sqlite3_stmt *fts = tl_db_stmt(db, SQL_ORD_FTS, err);
    if (!fts) rc = TL_E_IO;
    else {
      sqlite3_bind_int64(fts, 1, ev->position);
      sqlite3_bind_text(fts, 2, names.data, (int)names.len, SQLITE_STATIC);
      rc = step(db, fts, err);
    }
  }
  free(items_text);
  free(ship_text);
  tl_buf_free(&names);
  return rc;
}

static int orders_apply(tl_db *db, const tl_event *ev, const tl_jv *d, tl_err *err) {
  const char *status = NULL;
  int64_t total;
  if (strcmp(ev->type, "OrderPlaced") == 0)
    return order_total(d, &total) ? orders_placed(db, ev, d, total, err) : TL_OK;
  if (strcmp(ev->type, "ProductCreated") == 0) {
    STMT(st, SQL_ORD_NAME_PUT);
    sqlite3_bind_text(st, 1, jstr(d, "productId"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jstr(d, "name"), -1, SQLITE_STATIC);
    return step(db, st, err);
  }
  if (strcmp(ev->type, "OrderReserved") == 0) status = "RESERVED";
  else if (strcmp(ev->type, "OrderRejected") == 0) status = "REJECTED";
  else if (strcmp(ev->type, "PaymentConfirmed") == 0) status = "PAID";
  else if (strcmp(ev->type, "OrderShipped") == 0) status = "SHIPPED";
  else if (strcmp(ev->type, "OrderCancelled") == 0) status = "CANCELLED";
  if (!status) return TL_OK;
  STMT(find, db->on_change ? SQL_ORD_FIND : SQL_ORD_FIND_QUIET);
  STMT(st, SQL_ORD_STATUS);
  const char *order_id = jstr(d, "orderId");
  sqlite3_bind_text(find, 1, order_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(find, 2, ev->position);
  int rc = sqlite3_step(find);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(find);
    return rc == SQLITE_DONE ? TL_OK : tl_db_fail(db, rc, "projection", err);
  }
  const char *customer = (const char *)sqlite3_column_text(find, 1);
  sqlite3_int64 seq = sqlite3_column_int64(find, 0);
  if (customer) { /* recorded now, acted on after the commit (or forgotten with the batch) */
    tl_db_changed(db, TL_CHANGED_ORDER, order_id);
    tl_db_changed(db, TL_CHANGED_CUSTOMER, customer);
    if (db->on_change)
      announce_items(db, (const char *)sqlite3_column_text(find, 2),
                     (size_t)sqlite3_column_bytes(find, 2));
  }
  sqlite3_reset(find);
  if (!customer) return tl_err_set(err, TL_E_NOMEM, "out of memory reading an order");
  sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, ev->recorded_ms);
  sqlite3_bind_int64(st, 3, ev->version);
  sqlite3_bind_int64(st, 4, ev->position);
  if (strcmp(status, "REJECTED") == 0)
    sqlite3_bind_text(st, 5, jstr(d, "reason"), -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, seq);
  return step(db, st, err);
}

/* Pages one tidy step of the full-text index writes (~10 ms). */
#define ORDERS_TIDY_PAGES 64

/* FTS5 adds a segment to the full-text index at every commit of the projector and merges them
 * only a few at a time (automerge), so under writes the index holds a dozen segments, and a
 * search seeks and walks each of them: 2-3x the time of one merged segment (measured at 200k
 * orders: 14 segments). One step of FTS5's incremental optimize ('merge' with a negative page
 * count) merges up to ORDERS_TIDY_PAGES pages; FTS5 changes fewer than 2 rows once a single
 * segment is left (its documented test for a merge that did nothing). */
static int orders_tidy(tl_db *db, tl_err *err) {
  STMT(st, "INSERT INTO rm_orders_fts(rm_orders_fts, rank) VALUES('merge', ?)");
  sqlite3_bind_int(st, 1, -ORDERS_TIDY_PAGES);
  int64_t before = sqlite3_total_changes64(db->db);
  int rc = step(db, st, err);
  if (rc != TL_OK) return rc;
  return sqlite3_total_changes64(db->db) - before >= 2;
}

static const tl_rm_table ORDERS_TABLES[] = {{"rm_orders", "order_id", NULL},
                                            {"rm_orders_fts", "rid", "rowid AS rid, names"},
                                            {"rm_order_product_names", "product_id", NULL}};
static const tl_projection_def ORDERS = {.name = "orders",
                                         .version = 6,
                                         .schema_sql = ORDERS_SCHEMA,
                                         .fold_schema_sql = ORDERS_FOLD_SCHEMA,
                                         .finish_sql = ORDERS_FINISH,
                                         .reset_sql = ORDERS_RESET,
                                         .tables = ORDERS_TABLES,
                                         .n_tables = 3,
                                         .apply = orders_apply,
                                         .tidy = orders_tidy};

/* ---- counters written once per transaction --------------------------------------------- */

/* The sales and stock counters of rm_products and rm_daily_sales change with nearly every event
 * (a sale of each line, each reservation), and their changes commute: sums and maxima. They are
 * summed per row in memory and written when the transaction or savepoint ends (tl_db_deferred),
 * so a batch of a thousand events updates each product and day once. A statement whose result
 * depends on the order of changes to a row (a product's creation, a cancellation's recomputed
 * last_sold_at) flushes first. What cannot be deferred (a full table, an id too long, no memory)
 * is written at once, as before. */

#define PROD_SLOTS 256 /* a power of two */
#define PROD_FILL 192  /* products deferred at most; others are written at once */
#define DAY_SLOTS 8

typedef struct prod_delta {
  char id[TL_PRODUCT_ID_MAX + 1]; /* "": a free slot */
  bool sold, stock;
  int64_t qty, amount, last_sold_at;                        /* SQL_PROD_SOLD */
  int64_t dstock, dreserved, updated_at, version, position; /* SQL_PROD_STOCK */
} prod_delta;

typedef struct counters {
  tl_db_deferred base;
  prod_delta prod[PROD_SLOTS];
  uint16_t used[PROD_FILL]; /* the slots taken, in the order they were */
  int n_prod;
  struct {
    int64_t day, count, amount;
  } days[DAY_SLOTS];
  int n_days;
} counters;

/* Stock changes of the product stream: ?1 units on hand, ?2 units reserved. Deltas commute, so
 * an event applied late (a dead letter retried after newer ones) still counts exactly once (the
 * checkpoint and the DLQ row guarantee once); the version and position only move forward. */
static const char SQL_PROD_STOCK[] =
    "UPDATE rm_products SET stock = stock + ?1, reserved = reserved + ?2,"
    " updated_at = MAX(updated_at, ?3), version = MAX(version, ?4),"
    " last_position = MAX(last_position, ?5) WHERE product_id = ?6";

static const char SQL_PROD_SOLD[] =
    "UPDATE rm_products SET sales_count = sales_count + ?, revenue_minor = revenue_minor + ?,"
    " last_sold_at = MAX(COALESCE(last_sold_at, 0), ?) WHERE product_id = ?";
static const char SQL_SALES_ADD[] =
    "INSERT INTO rm_daily_sales(day, order_count, revenue_minor) VALUES(?1, ?2, ?3)"
    " ON CONFLICT(day) DO UPDATE SET order_count = order_count + ?2,"
    " revenue_minor = revenue_minor + ?3";

static int write_sold(tl_db *db, const char *pid, int64_t qty, int64_t amount, int64_t at,
                      tl_err *err) {
  STMT(st, SQL_PROD_SOLD);
  sqlite3_bind_int64(st, 1, qty);
  sqlite3_bind_int64(st, 2, amount);
  sqlite3_bind_int64(st, 3, at);
  sqlite3_bind_text(st, 4, pid, -1, SQLITE_STATIC);
  return step(db, st, err);
}

static int write_stock(tl_db *db, const char *pid, const prod_delta *p, tl_err *err) {
  STMT(st, SQL_PROD_STOCK);
  sqlite3_bind_int64(st, 1, p->dstock);
  sqlite3_bind_int64(st, 2, p->dreserved);
  sqlite3_bind_int64(st, 3, p->updated_at);
  sqlite3_bind_int64(st, 4, p->version);
  sqlite3_bind_int64(st, 5, p->position);
  sqlite3_bind_text(st, 6, pid, -1, SQLITE_STATIC);
  return step(db, st, err);
}

static int write_day(tl_db *db, int64_t day, int64_t count, int64_t amount, tl_err *err) {
  STMT(st, SQL_SALES_ADD);
  sqlite3_bind_int64(st, 1, day);
  sqlite3_bind_int64(st, 2, count);
  sqlite3_bind_int64(st, 3, amount);
  return step(db, st, err);
}

static void counters_discard(tl_db_deferred *self) {
  counters *c = (counters *)self;
  for (int k = 0; k < c->n_prod; k++) c->prod[c->used[k]].id[0] = '\0';
  c->n_prod = c->n_days = 0;
}

static int counters_flush(tl_db *db, tl_db_deferred *self, tl_err *err) {
  counters *c = (counters *)self;
  int rc = TL_OK;
  for (int k = 0; k < c->n_prod && rc == TL_OK; k++) {
    prod_delta *p = &c->prod[c->used[k]];
    if (p->sold) rc = write_sold(db, p->id, p->qty, p->amount, p->last_sold_at, err);
    if (rc == TL_OK && p->stock) rc = write_stock(db, p->id, p, err);
  }
  for (int i = 0; i < c->n_days && rc == TL_OK; i++)
    rc = write_day(db, c->days[i].day, c->days[i].count, c->days[i].amount, err);
  counters_discard(self); /* written, or the transaction fails */
  return rc;
}

static void counters_destroy(tl_db_deferred *self) {
  free(self);
}

/* db's counters (created at first use), or NULL: write at once. Read-store connections defer
 * only these. */
static counters *counters_of(tl_db *db) {
  if (!db->deferred) {
    counters *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = (tl_db_deferred){counters_flush, counters_discard, counters_destroy};
    tl_db_defer(db, &c->base);
  }
  return (counters *)db->deferred;
}

/* The slot of product pid in c (a new one if needed), or NULL: write at once. */
static prod_delta *prod_slot(counters *c, const char *pid) {
  size_t n = strlen(pid);
  if (!c || n == 0 || n > TL_PRODUCT_ID_MAX) return NULL;
  size_t i = (size_t)tl_fnv1a(TL_FNV_OFFSET, pid, n) & (PROD_SLOTS - 1);
  for (; c->prod[i].id[0]; i = (i + 1) & (PROD_SLOTS - 1))
    if (strcmp(c->prod[i].id, pid) == 0) return &c->prod[i];
  if (c->n_prod >= PROD_FILL) return NULL; /* full: this one is written at once */
  prod_delta *p = &c->prod[i];
  memset(p, 0, sizeof *p);
  memcpy(p->id, pid, n + 1);
  c->used[c->n_prod++] = (uint16_t)i;
  return p;
}

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/* A sale of qty units for amount at `at` (ms), on product pid. */
static int add_sold(tl_db *db, const char *pid, int64_t qty, int64_t amount, int64_t at,
                    tl_err *err) {
  prod_delta *p = prod_slot(counters_of(db), pid);
  if (!p) return write_sold(db, pid, qty, amount, at, err);
  p->qty += qty;
  p->amount += amount;
  p->last_sold_at = p->sold ? max64(p->last_sold_at, at) : at;
  p->sold = true;
  return TL_OK;
}

/* A stock change of product pid by an event of its stream. */
static int add_stock(tl_db *db, const char *pid, int64_t dstock, int64_t dreserved,
                     const tl_event *ev, tl_err *err) {
  prod_delta *p = prod_slot(counters_of(db), pid);
  prod_delta once = {.dstock = dstock,
                     .dreserved = dreserved,
                     .updated_at = ev->recorded_ms,
                     .version = ev->version,
                     .position = ev->position};
  if (!p) return write_stock(db, pid, &once, err);
  p->dstock += dstock;
  p->dreserved += dreserved;
  p->updated_at = p->stock ? max64(p->updated_at, once.updated_at) : once.updated_at;
  p->version = p->stock ? max64(p->version, once.version) : once.version;
  p->position = p->stock ? max64(p->position, once.position) : once.position;
  p->stock = true;
  return TL_OK;
}

/* count orders and amount of revenue more (or less) on day. */
static int add_day(tl_db *db, int64_t day, int64_t count, int64_t amount, tl_err *err) {
  counters *c = counters_of(db);
  if (!c) return write_day(db, day, count, amount, err);
  int i = 0;
  while (i < c->n_days && c->days[i].day != day) i++;
  if (i == DAY_SLOTS) return write_day(db, day, count, amount, err); /* full: at once */
  if (i == c->n_days) {
    c->days[i].day = day;
    c->days[i].count = c->days[i].amount = 0;
    c->n_days++;
  }
  c->days[i].count += count;
  c->days[i].amount += amount;
  return TL_OK;
}

/* ---- products ---------------------------------------------------------------------------- */

/* The products tables and the index of the live lines, the same in the live schema and the
 * fold schema: SQL_PROD_UNSOLD's MAX(placed_at) reads the index (without it, every line of the
 * product: a scan per cancelled line). */
#define PRODUCTS_TABLES_SQL                                                              \
  "CREATE TABLE IF NOT EXISTS rm_products("                                              \
  " product_id TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,"            \
  " price_minor INTEGER NOT NULL, currency TEXT NOT NULL, stock INTEGER NOT NULL,"       \
  " reserved INTEGER NOT NULL DEFAULT 0, sales_count INTEGER NOT NULL DEFAULT 0,"        \
  " revenue_minor INTEGER NOT NULL DEFAULT 0, last_sold_at INTEGER,"                     \
  " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL," \
  " last_position INTEGER NOT NULL) WITHOUT ROWID;"                                      \
  "CREATE TABLE IF NOT EXISTS rm_product_lines("                                         \
  " order_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL,"        \
  " amount_minor INTEGER NOT NULL, placed_at INTEGER NOT NULL, live INTEGER NOT NULL,"   \
  " PRIMARY KEY(order_id, product_id)) WITHOUT ROWID;"                                   \
  "CREATE INDEX IF NOT EXISTS rm_product_lines_live"                                     \
  " ON rm_product_lines(product_id, live, placed_at);"
/* The popularity pages (overall and per category), which only queries read: a fold builds
 * them at its end (finish_sql), instead of moving the product's entry in both at every
 * line sold. */
#define PRODUCTS_POPULAR_INDEXES                                                                 \
  "CREATE INDEX IF NOT EXISTS rm_products_popular ON rm_products(sales_count DESC, product_id);" \
  "CREATE INDEX IF NOT EXISTS rm_products_cat_popular"                                           \
  " ON rm_products(category, sales_count DESC, product_id);"

static const char PRODUCTS_SCHEMA[] = PRODUCTS_TABLES_SQL PRODUCTS_POPULAR_INDEXES;
static const char PRODUCTS_RESET[] = "DROP TABLE IF EXISTS rm_products;"
                                     "DROP TABLE IF EXISTS rm_product_lines;";

static const char SQL_PROD_INSERT[] =
    "INSERT OR IGNORE INTO rm_products(product_id, name, category, price_minor, currency, stock,"
    " created_at, updated_at, version, last_position) VALUES(?,?,?,?,?,?,?,?,?,?)";
static const char SQL_PROD_LINE[] =
    "INSERT INTO rm_product_lines(order_id, product_id, quantity, amount_minor, placed_at, live)"
    " VALUES(?,?,?,?,?,1) ON CONFLICT(order_id, product_id) DO UPDATE SET"
    " quantity = quantity + excluded.quantity, amount_minor = amount_minor + excluded.amount_minor";
static const char SQL_PROD_LINES_OF[] =
    "SELECT product_id, quantity, amount_minor FROM rm_product_lines"
    " WHERE order_id = ? AND live = 1";
static const char SQL_PROD_LINES_KILL[] =
    "UPDATE rm_product_lines SET live = 0 WHERE order_id = ?";
static const char SQL_PROD_UNSOLD[] =
    "UPDATE rm_products SET sales_count = sales_count - ?1, revenue_minor = revenue_minor - ?2,"
    " last_sold_at = (SELECT MAX(placed_at) FROM rm_product_lines"
    "   WHERE product_id = ?3 AND live = 1)"
    " WHERE product_id = ?3";

static int products_placed(tl_db *db, const tl_event *ev, const tl_jv *d, tl_err *err) {
  int64_t total;
  if (!order_total(d, &total)) return TL_OK; /* not an order: see order_total */
  TL_JV_FOREACH(it, tl_jv_get(d, "items")) {
    int64_t price, qty;
    item_of(it, &qty, &price);
    STMT(line, SQL_PROD_LINE);
    sqlite3_bind_text(line, 1, jstr(d, "orderId"), -1, SQLITE_STATIC);
    sqlite3_bind_text(line, 2, jstr(it, "productId"), -1, SQLITE_STATIC);
    sqlite3_bind_int64(line, 3, qty);
    sqlite3_bind_int64(line, 4, qty * price);
    sqlite3_bind_int64(line, 5, ev->recorded_ms);
    int rc = step(db, line, err);
    if (rc != TL_OK) return rc;
    rc = add_sold(db, jstr(it, "productId"), qty, qty * price, ev->recorded_ms, err);
    if (rc != TL_OK) return rc;
  }
  return TL_OK;
}

static int products_cancelled(tl_db *db, const tl_jv *d, tl_err *err) {
  /* last_sold_at is recomputed from the live lines below: a deferred sale of this order would
   * put it back afterwards. */
  int flushed = tl_db_flush(db, err);
  if (flushed != TL_OK) return flushed;
  /* Collect the live lines first: the statements below change the rows being read. */
  struct {
    char product_id[65];
    int64_t qty, amount;
  } lines[100];
  int n = 0;
  STMT(of, SQL_PROD_LINES_OF);
  sqlite3_bind_text(of, 1, jstr(d, "orderId"), -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(of)) == SQLITE_ROW && n < 100) {
    snprintf(lines[n].product_id, sizeof lines[n].product_id, "%s",
             (const char *)sqlite3_column_text(of, 0));
    lines[n].qty = sqlite3_column_int64(of, 1);
    lines[n].amount = sqlite3_column_int64(of, 2);
    n++;
  }
  sqlite3_reset(of);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return tl_db_fail(db, rc, "read order lines", err);
  STMT(kill, SQL_PROD_LINES_KILL);
  sqlite3_bind_text(kill, 1, jstr(d, "orderId"), -1, SQLITE_STATIC);
  if ((rc = step(db, kill, err)) != TL_OK) return rc;
  for (int i = 0; i < n; i++) {
    STMT(un, SQL_PROD_UNSOLD);
    sqlite3_bind_int64(un, 1, lines[i].qty);
    sqlite3_bind_int64(un, 2, lines[i].amount);
    sqlite3_bind_text(un, 3, lines[i].product_id, -1, SQLITE_STATIC);
    if ((rc = step(db, un, err)) != TL_OK) return rc;
  }
  return TL_OK;
}

static int products_apply(tl_db *db, const tl_event *ev, const tl_jv *d, tl_err *err) {
  if (strcmp(ev->type, "ProductCreated") == 0) {
    int64_t price = 0;
    tl_money_from_jv(tl_jv_get(d, "price"), &price);
    int flushed = tl_db_flush(db, err); /* a deferred change of a product not yet there: none */
    if (flushed != TL_OK) return flushed;
    STMT(st, SQL_PROD_INSERT);
    sqlite3_bind_text(st, 1, jstr(d, "productId"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jstr(d, "name"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, jstr(d, "category"), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, price);
    sqlite3_bind_text(st, 5, tl_jv_get(d, "currency") ? jstr(d, "currency") : "USD", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, tl_jv_integer(tl_jv_get(d, "stock")));
    sqlite3_bind_int64(st, 7, ev->recorded_ms);
    sqlite3_bind_int64(st, 8, ev->recorded_ms);
    sqlite3_bind_int64(st, 9, ev->version);
    sqlite3_bind_int64(st, 10, ev->position);
    return step(db, st, err);
  }
  int64_t dstock = 0, dreserved = 0, q = tl_jv_integer(tl_jv_get(d, "quantity"));
  if (strcmp(ev->type, "ProductRestocked") == 0) dstock = q;
  else if (strcmp(ev->type, "StockReserved") == 0) dreserved = q;
  else if (strcmp(ev->type, "StockReleased") == 0) dreserved = -q;
  else if (strcmp(ev->type, "StockCommitted") == 0) dstock = dreserved = -q;
  if (strncmp(ev->stream, "product-", 8) == 0 && strcmp(ev->type, "ProductCreated") != 0) {
    /* Every event of the product's stream moves its version; some move the stock. */
    return add_stock(db, jstr(d, "productId"), dstock, dreserved, ev, err);
  }
  if (strcmp(ev->type, "OrderPlaced") == 0) return products_placed(db, ev, d, err);
  if (strcmp(ev->type, "OrderCancelled") == 0 || strcmp(ev->type, "OrderRejected") == 0)
    return products_cancelled(db, d, err);
  return TL_OK;
}

static const tl_rm_table PRODUCTS_TABLES[] = {
    {"rm_products", "product_id", NULL},
    {"rm_product_lines", "order_id || '/' || product_id", NULL}};
static const tl_projection_def PRODUCTS = {.name = "products",
                                           .version = 2,
                                           .schema_sql = PRODUCTS_SCHEMA,
                                           .fold_schema_sql = PRODUCTS_TABLES_SQL,
                                           .finish_sql = PRODUCTS_POPULAR_INDEXES,
                                           .reset_sql = PRODUCTS_RESET,
                                           .tables = PRODUCTS_TABLES,
                                           .n_tables = 2,
                                           .apply = products_apply};

/* ---- daily sales ------------------------------------------------------------------------- */

static const char SALES_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS rm_daily_sales("
    " day INTEGER PRIMARY KEY, order_count INTEGER NOT NULL, revenue_minor INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rm_sales_orders("
    " order_id TEXT PRIMARY KEY, day INTEGER NOT NULL, total_minor INTEGER NOT NULL,"
    " live INTEGER NOT NULL) WITHOUT ROWID;";
static const char SALES_RESET[] = "DROP TABLE IF EXISTS rm_daily_sales;"
                                  "DROP TABLE IF EXISTS rm_sales_orders;";

static const char SQL_SALES_ORDER[] =
    "INSERT OR IGNORE INTO rm_sales_orders(order_id, day, total_minor, live) VALUES(?,?,?,1)";
static const char SQL_SALES_KILL[] =
    "UPDATE rm_sales_orders SET live = 0 WHERE order_id = ? AND live = 1"
    " RETURNING day, total_minor";

static int sales_apply(tl_db *db, const tl_event *ev, const tl_jv *d, tl_err *err) {
  if (strcmp(ev->type, "OrderPlaced") == 0) {
    int64_t total;
    if (!order_total(d, &total)) return TL_OK; /* not an order: see order_total */
    int64_t day = ev->recorded_ms / 86400000;
    STMT(st, SQL_SALES_ORDER);
    sqlite3_bind_text(st, 1, jstr(d, "orderId"), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, day);
    sqlite3_bind_int64(st, 3, total);
    int rc = step(db, st, err);
    if (rc != TL_OK || sqlite3_changes(db->db) != 1) return rc;
    return add_day(db, day, 1, total, err);
  }
  if (strcmp(ev->type, "OrderCancelled") == 0 || strcmp(ev->type, "OrderRejected") == 0) {
    STMT(st, SQL_SALES_KILL);
    sqlite3_bind_text(st, 1, jstr(d, "orderId"), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      int64_t day = sqlite3_column_int64(st, 0), total = sqlite3_column_int64(st, 1);
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      }
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return tl_db_fail(db, rc, "cancel sale", err);
      return add_day(db, day, -1, -total, err);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return tl_db_fail(db, rc, "cancel sale", err);
  }
  return TL_OK;
}

static const tl_rm_table SALES_TABLES[] = {{"rm_daily_sales", "day", NULL},
                                           {"rm_sales_orders", "order_id", NULL}};
/* No fold schema: daily_sales has no index that only queries use. */
static const tl_projection_def DAILY_SALES = {.name = "daily_sales",
                                              .version = 2,
                                              .schema_sql = SALES_SCHEMA,
                                              .reset_sql = SALES_RESET,
                                              .tables = SALES_TABLES,
                                              .n_tables = 2,
                                              .apply = sales_apply};

const tl_projection_def *const tl_projections[] = {&ORDERS, &PRODUCTS, &DAILY_SALES};
const int tl_projections_count = (int)(sizeof tl_projections / sizeof tl_projections[0]);
