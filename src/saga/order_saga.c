/*
 * order_saga.c: the order-fulfilment process manager: stock reservation with compensation.
 *
 *   OrderPlaced               -> reserve each product's quantity (one command per product)
 *   StockReserved / ...Rejected (per product, for the order) -> record the answer; once every
 *                                product has answered:
 *                                  all reserved -> mark the order RESERVED
 *                                  any rejected -> release what was reserved, reject the order
 *                                                  (OUT_OF_STOCK)
 *   OrderCancelled            -> release every reservation (and any that is still to come)
 *   OrderShipped              -> commit the reservations: the units leave the stock
 *
 * Instance state: pm_order(order_id, phase, lines) where lines is a JSON array of
 * {"p": productId, "q": quantity, "s": "pending"|"reserved"|"rejected"|"released"|"committed"}.
 * Every decision depends only on the event and this state, so a replayed batch asks for the
 * same commands with the same idempotency keys.
 */
#include "saga/tl_saga.h"

#include <stdio.h>
#include <string.h>

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS pm_order("
    " order_id TEXT PRIMARY KEY, phase TEXT NOT NULL, lines TEXT NOT NULL) WITHOUT ROWID;";
static const char SQL_GET[] = "SELECT phase, lines FROM pm_order WHERE order_id = ?";
static const char SQL_PUT[] =
    "INSERT INTO pm_order(order_id, phase, lines) VALUES(?,?,?)"
    " ON CONFLICT(order_id) DO UPDATE SET phase = excluded.phase, lines = excluded.lines";

typedef struct instance {
  char order_id[TL_ULID_LEN + 1];
  char phase[16]; /* reserving, reserved, rejected, cancelled, shipped */
  json_t *lines;  /* owned */
} instance;

/* Loads the instance of order_id; returns 1 found, 0 none, or a negative TL_E code. */
static int load(tl_db *db, const char *order_id, instance *in, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(db, SQL_GET, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    snprintf(in->order_id, sizeof in->order_id, "%s", order_id);
    snprintf(in->phase, sizeof in->phase, "%s", (const char *)sqlite3_column_text(st, 0));
    in->lines = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
  }
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW) return tl_db_fail(db, rc, "load saga instance", err);
  if (!in->lines) return tl_err_set(err, TL_E_IO, "saga instance %s is unreadable", order_id);
  return 1;
}

static int save(tl_db *db, const instance *in, tl_err *err) {
  char *lines = json_dumps(in->lines, JSON_COMPACT);
  if (!lines) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  sqlite3_stmt *st = tl_db_stmt(db, SQL_PUT, err);
  int rc = TL_E_IO;
  if (st) {
    sqlite3_bind_text(st, 1, in->order_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, in->phase, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, lines, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    rc = s == SQLITE_DONE ? TL_OK : tl_db_fail(db, s, "save saga instance", err);
  }
  free(lines);
  return rc;
}

static const char *line_state(const json_t *l) {
  return json_string_value(json_object_get(l, "s"));
}

static void set_state(json_t *l, const char *s) {
  json_object_set_new(l, "s", json_string(s));
}

/* Asks for a stock command on every line in state `from`, moving it to `to`. */
static int stock_commands(tl_pm_batch *b, instance *in, tl_cmd_kind kind, const char *verb,
                          const char *from, const char *to, tl_err *err) {
  size_t i;
  json_t *l;
  json_array_foreach(in->lines, i, l) {
    if (strcmp(line_state(l), from) != 0) continue;
    const char *pid = json_string_value(json_object_get(l, "p"));
    char suffix[96];
    snprintf(suffix, sizeof suffix, "%s:%s", verb, pid);
    tl_cmd *c = tl_pm_command(b, kind, pid, suffix);
    if (!c) return tl_err_set(err, TL_E_NOMEM, "out of memory");
    snprintf(c->order_id, sizeof c->order_id, "%s", in->order_id);
    c->quantity = json_integer_value(json_object_get(l, "q"));
    set_state(l, to);
  }
  return TL_OK;
}

static int on_placed(tl_db *db, const json_t *d, tl_pm_batch *b, tl_err *err) {
  instance in = {0};
  const char *oid = json_string_value(json_object_get(d, "orderId"));
  if (!oid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found != 0) {
    json_decref(in.lines);
    return found < 0 ? found : TL_OK; /* already started */
  }
  snprintf(in.order_id, sizeof in.order_id, "%s", oid);
  snprintf(in.phase, sizeof in.phase, "reserving");
  in.lines = json_array();
  /* One line per product: an order may list a product twice. */
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(d, "items"), i, it) {
    const char *pid = json_string_value(json_object_get(it, "productId"));
    json_int_t q = json_integer_value(json_object_get(it, "quantity"));
    if (!pid) continue;
    size_t k;
    json_t *l;
    int merged = 0;
    json_array_foreach(in.lines, k, l) {
      if (strcmp(json_string_value(json_object_get(l, "p")), pid) == 0) {
        json_object_set_new(l, "q", json_integer(json_integer_value(json_object_get(l, "q")) + q));
        merged = 1;
        break;
      }
    }
    if (!merged)
      json_array_append_new(in.lines, json_pack("{s:s, s:I, s:s}", "p", pid, "q", q, "s",
                                                "pending"));
  }
  int rc = stock_commands(b, &in, TL_CMD_RESERVE_STOCK, "reserve", "pending", "pending", err);
  if (rc == TL_OK) rc = save(db, &in, err);
  json_decref(in.lines);
  return rc;
}

static int on_stock_answer(tl_db *db, const json_t *d, int reserved, tl_pm_batch *b,
                           tl_err *err) {
  instance in = {0};
  const char *oid = json_string_value(json_object_get(d, "orderId"));
  const char *pid = json_string_value(json_object_get(d, "productId"));
  if (!oid || !pid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found <= 0) return found;
  size_t i;
  json_t *l;
  json_array_foreach(in.lines, i, l) {
    if (strcmp(json_string_value(json_object_get(l, "p")), pid) == 0 &&
        strcmp(line_state(l), "pending") == 0)
      set_state(l, reserved ? "reserved" : "rejected");
  }
  int rc = TL_OK;
  if (strcmp(in.phase, "reserving") != 0) {
    /* Too late: the order was cancelled or rejected meanwhile. Give it back. */
    if (strcmp(in.phase, "cancelled") == 0 || strcmp(in.phase, "rejected") == 0)
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
  } else {
    int pending = 0, rejected = 0;
    json_array_foreach(in.lines, i, l) {
      pending += strcmp(line_state(l), "pending") == 0;
      rejected += strcmp(line_state(l), "rejected") == 0;
    }
    if (pending == 0 && rejected == 0) {
      snprintf(in.phase, sizeof in.phase, "reserved");
      rc = tl_pm_command(b, TL_CMD_MARK_RESERVED, oid, "reserved") ? TL_OK
                                                                     : tl_err_set(err, TL_E_NOMEM, "out of memory");
    } else if (pending == 0) {
      snprintf(in.phase, sizeof in.phase, "rejected");
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
      tl_cmd *c = rc == TL_OK ? tl_pm_command(b, TL_CMD_REJECT_ORDER, oid, "reject") : NULL;
      if (c) snprintf(c->text, sizeof c->text, "OUT_OF_STOCK");
      else if (rc == TL_OK) rc = tl_err_set(err, TL_E_NOMEM, "out of memory");
    }
  }
  if (rc == TL_OK) rc = save(db, &in, err);
  json_decref(in.lines);
  return rc;
}

/* OrderCancelled (release) and OrderShipped (commit). */
static int on_order_closed(tl_db *db, const json_t *d, int shipped, tl_pm_batch *b, tl_err *err) {
  instance in = {0};
  const char *oid = json_string_value(json_object_get(d, "orderId"));
  if (!oid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found <= 0) return found;
  int rc = TL_OK;
  if (strcmp(in.phase, "reserving") == 0 || strcmp(in.phase, "reserved") == 0) {
    if (shipped) {
      snprintf(in.phase, sizeof in.phase, "shipped");
      rc = stock_commands(b, &in, TL_CMD_COMMIT_STOCK, "commit", "reserved", "committed", err);
    } else {
      snprintf(in.phase, sizeof in.phase, "cancelled");
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
    }
    if (rc == TL_OK) rc = save(db, &in, err);
  }
  json_decref(in.lines);
  return rc;
}

static int handle(tl_db *db, const tl_event *ev, const json_t *data, tl_pm_batch *b,
                  tl_err *err) {
  const char *t = ev->type;
  if (strcmp(t, "OrderPlaced") == 0) return on_placed(db, data, b, err);
  if (strcmp(t, "StockReserved") == 0) return on_stock_answer(db, data, 1, b, err);
  if (strcmp(t, "StockReservationRejected") == 0) return on_stock_answer(db, data, 0, b, err);
  if (strcmp(t, "OrderCancelled") == 0) return on_order_closed(db, data, 0, b, err);
  if (strcmp(t, "OrderShipped") == 0) return on_order_closed(db, data, 1, b, err);
  return TL_OK;
}

static const char *const TYPES[] = {"OrderPlaced",    "StockReserved", "StockReservationRejected",
                                    "OrderCancelled", "OrderShipped",  NULL};

static const tl_pm_def ORDER_FULFILMENT = {"order_fulfilment", 1, SCHEMA, handle, TYPES};

const tl_pm_def *const tl_process_managers[] = {&ORDER_FULFILMENT};
const int tl_process_managers_count = 1;
