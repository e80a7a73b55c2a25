/*
 * order_saga.c: the order-fulfilment process manager: stock reservation with compensation.
 *
 *   OrderPlaced     -> reserve_order: the writer reserves every product of the order in one
 *                      decision, all or nothing, and appends StockReserved per product +
 *                      OrderReserved, or StockReservationRejected (the products short of units)
 *                      + OrderRejected (OUT_OF_STOCK); nothing if the order is no longer PENDING
 *   OrderReserved / OrderRejected -> record the outcome on the instance's lines
 *   OrderCancelled  -> release every reservation
 *   OrderShipped    -> commit the reservations: the units leave the stock
 *
 * Instances started by earlier versions (phase "reserving") go on with the per-product flow
 * they began: one reserve_stock per product, each StockReserved / StockReservationRejected
 * recorded, then mark_reserved, or release_stock for what was reserved + reject_order; a
 * cancelled or rejected instance releases reservations that land late.
 *
 * Instance state: pm_order(order_id, phase, lines) where lines holds one text line per product,
 * "<state> <quantity> <productId>", state one of pending, reserved, rejected, released,
 * committed (earlier versions stored a JSON array of {p, q, s}; it is still read). Phases:
 * reserving_order (waiting for reserve_order's outcome), reserving (the per-product flow),
 * reserved, rejected, cancelled, shipped.
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

/* One line per product of the order: its quantity and where its reservation stands. */
typedef struct line {
  char p[TL_PRODUCT_ID_MAX + 1];
  int64_t q;
  char s[12]; /* pending, reserved, rejected, released, committed */
} line;

typedef struct instance {
  char order_id[TL_ULID_LEN + 1];
  char phase[16]; /* see the top of the file */
  int n;
  line lines[TL_ORDER_MAX_ITEMS];
} instance;

/* Stored lines are text, one per product: "<state> <quantity> <productId>\n" (product ids have
 * no blanks). Instances stored by earlier versions hold a JSON array of {p, q, s}; both read. */
static int parse_json_lines(const char *text, instance *in) {
  json_t *a = json_loads(text, 0, NULL);
  size_t i;
  json_t *l;
  int ok = json_is_array(a) && json_array_size(a) <= TL_ORDER_MAX_ITEMS;
  in->n = 0;
  json_array_foreach(a, i, l) {
    const char *pid = json_string_value(json_object_get(l, "p"));
    const char *st = json_string_value(json_object_get(l, "s"));
    if (!ok || !pid || !st || strlen(pid) > TL_PRODUCT_ID_MAX ||
        strlen(st) >= sizeof in->lines[0].s) {
      ok = 0;
      break;
    }
    line *ln = &in->lines[in->n++];
    memcpy(ln->p, pid, strlen(pid) + 1);
    memcpy(ln->s, st, strlen(st) + 1);
    ln->q = json_integer_value(json_object_get(l, "q"));
  }
  json_decref(a);
  return ok ? TL_OK : TL_E_INVALID;
}

static int parse_lines(const char *text, instance *in) {
  if (text[0] == '[') return parse_json_lines(text, in);
  in->n = 0;
  const char *c = text;
  while (*c) {
    if (in->n == TL_ORDER_MAX_ITEMS) return TL_E_INVALID;
    line *ln = &in->lines[in->n];
    size_t k = strcspn(c, " ");
    if (k == 0 || k >= sizeof ln->s || c[k] != ' ') return TL_E_INVALID;
    memcpy(ln->s, c, k);
    ln->s[k] = '\0';
    c += k + 1;
    char *endq;
    ln->q = strtoll(c, &endq, 10);
    if (endq == c || *endq != ' ') return TL_E_INVALID;
    c = endq + 1;
    k = strcspn(c, "\n");
    if (k == 0 || k > TL_PRODUCT_ID_MAX || c[k] != '\n') return TL_E_INVALID;
    memcpy(ln->p, c, k);
    ln->p[k] = '\0';
    c += k + 1;
    in->n++;
  }
  return TL_OK;
}

/* Loads the instance of order_id; returns 1 found, 0 none, or a negative TL_E code. */
static int load(tl_db *db, const char *order_id, instance *in, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(db, SQL_GET, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  int parsed = TL_OK;
  if (rc == SQLITE_ROW) {
    tl_strcpy(in->order_id, sizeof in->order_id, order_id);
    tl_strcpy(in->phase, sizeof in->phase, (const char *)sqlite3_column_text(st, 0));
    parsed = parse_lines((const char *)sqlite3_column_text(st, 1), in);
  }
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) return 0;
  if (rc != SQLITE_ROW) return tl_db_fail(db, rc, "load saga instance", err);
  if (parsed != TL_OK) return tl_err_set(err, TL_E_IO, "saga instance %s is unreadable", order_id);
  return 1;
}

static int save(tl_db *db, const instance *in, tl_err *err) {
  char text[TL_ORDER_MAX_ITEMS * (sizeof in->lines[0].s + 21 + TL_PRODUCT_ID_MAX + 2) + 1];
  size_t n = 0;
  for (int i = 0; i < in->n; i++) {
    const line *l = &in->lines[i];
    int w = snprintf(text + n, sizeof text - n, "%s %lld %s\n", l->s, (long long)l->q, l->p);
    if (w < 0 || (size_t)w >= sizeof text - n)
      return tl_err_set(err, TL_E_INVALID, "saga lines too long");
    n += (size_t)w;
  }
  text[n] = '\0';
  sqlite3_stmt *st = tl_db_stmt(db, SQL_PUT, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, in->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, in->phase, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, text, (int)n, SQLITE_STATIC);
  int s = sqlite3_step(st);
  sqlite3_reset(st);
  return s == SQLITE_DONE ? TL_OK : tl_db_fail(db, s, "save saga instance", err);
}

static void set_state(line *l, const char *s) {
  tl_strcpy(l->s, sizeof l->s, s);
}

/* Asks for a stock command on every line in state `from`, moving it to `to`. */
static int stock_commands(tl_pm_batch *b, instance *in, tl_cmd_kind kind, const char *verb,
                          const char *from, const char *to, tl_err *err) {
  for (int i = 0; i < in->n; i++) {
    line *l = &in->lines[i];
    if (strcmp(l->s, from) != 0) continue;
    char suffix[96];
    snprintf(suffix, sizeof suffix, "%s:%s", verb, l->p);
    tl_cmd *c = tl_pm_command(b, kind, l->p, suffix);
    if (!c) return tl_err_set(err, TL_E_NOMEM, "out of memory");
    tl_strcpy(c->order_id, sizeof c->order_id, in->order_id);
    c->quantity = l->q;
    set_state(l, to);
  }
  return TL_OK;
}

static int on_placed(tl_db *db, const tl_jv *d, tl_pm_batch *b, tl_err *err) {
  instance in;
  const char *oid = tl_jv_string(tl_jv_get(d, "orderId"));
  if (!oid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found != 0) return found < 0 ? found : TL_OK; /* already started */
  tl_strcpy(in.order_id, sizeof in.order_id, oid);
  in.n = 0;
  /* One line per product: an order may list a product twice. */
  TL_JV_FOREACH(it, tl_jv_get(d, "items")) {
    const char *pid = tl_jv_string(tl_jv_get(it, "productId"));
    int64_t q = tl_jv_integer(tl_jv_get(it, "quantity"));
    if (!pid || strlen(pid) > TL_PRODUCT_ID_MAX) continue;
    int k = 0;
    while (k < in.n && strcmp(in.lines[k].p, pid) != 0) k++;
    if (k < in.n) {
      in.lines[k].q += q;
    } else if (in.n < TL_ORDER_MAX_ITEMS) {
      line *l = &in.lines[in.n++];
      memcpy(l->p, pid, strlen(pid) + 1);
      l->q = q;
      set_state(l, "pending");
    }
  }
  snprintf(in.phase, sizeof in.phase, "reserving_order");
  if (!tl_pm_command(b, TL_CMD_RESERVE_ORDER, oid, "reserve"))
    return tl_err_set(err, TL_E_NOMEM, "out of memory");
  return save(db, &in, err);
}

/* OrderReserved / OrderRejected: reserve_order's outcome (the per-product flow already moved
 * its instance on when it asked for mark_reserved / reject_order). */
static int on_settled(tl_db *db, const tl_jv *d, int reserved, tl_pm_batch *b, tl_err *err) {
  (void)b;
  instance in;
  const char *oid = tl_jv_string(tl_jv_get(d, "orderId"));
  if (!oid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found <= 0 || strcmp(in.phase, "reserving_order") != 0) return found < 0 ? found : TL_OK;
  tl_strcpy(in.phase, sizeof in.phase, reserved ? "reserved" : "rejected");
  for (int i = 0; i < in.n; i++)
    if (strcmp(in.lines[i].s, "pending") == 0)
      set_state(&in.lines[i], reserved ? "reserved" : "rejected");
  return save(db, &in, err);
}

static int on_stock_answer(tl_db *db, const tl_jv *d, int reserved, tl_pm_batch *b, tl_err *err) {
  instance in;
  const char *oid = tl_jv_string(tl_jv_get(d, "orderId"));
  const char *pid = tl_jv_string(tl_jv_get(d, "productId"));
  if (!oid || !pid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found <= 0) return found;
  /* reserve_order's own stock events: its order event settles the instance. */
  if (strcmp(in.phase, "reserving_order") == 0) return TL_OK;
  for (int i = 0; i < in.n; i++) {
    line *l = &in.lines[i];
    if (strcmp(l->p, pid) == 0 && strcmp(l->s, "pending") == 0)
      set_state(l, reserved ? "reserved" : "rejected");
  }
  int rc = TL_OK;
  if (strcmp(in.phase, "reserving") != 0) {
    /* Too late: the order was cancelled or rejected meanwhile. Give it back. */
    if (strcmp(in.phase, "cancelled") == 0 || strcmp(in.phase, "rejected") == 0)
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
  } else {
    int pending = 0, rejected = 0;
    for (int i = 0; i < in.n; i++) {
      pending += strcmp(in.lines[i].s, "pending") == 0;
      rejected += strcmp(in.lines[i].s, "rejected") == 0;
    }
    if (pending == 0 && rejected == 0) {
      snprintf(in.phase, sizeof in.phase, "reserved");
      rc = tl_pm_command(b, TL_CMD_MARK_RESERVED, oid, "reserved")
               ? TL_OK
               : tl_err_set(err, TL_E_NOMEM, "out of memory");
    } else if (pending == 0) {
      snprintf(in.phase, sizeof in.phase, "rejected");
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
      tl_cmd *c = rc == TL_OK ? tl_pm_command(b, TL_CMD_REJECT_ORDER, oid, "reject") : NULL;
      if (c)
        snprintf(c->text, sizeof c->text, "OUT_OF_STOCK");
      else if (rc == TL_OK)
        rc = tl_err_set(err, TL_E_NOMEM, "out of memory");
    }
  }
  if (rc == TL_OK) rc = save(db, &in, err);
  return rc;
}

/* OrderCancelled (release) and OrderShipped (commit). */
static int on_order_closed(tl_db *db, const tl_jv *d, int shipped, tl_pm_batch *b, tl_err *err) {
  instance in;
  const char *oid = tl_jv_string(tl_jv_get(d, "orderId"));
  if (!oid) return TL_OK;
  int found = load(db, oid, &in, err);
  if (found <= 0) return found;
  int rc = TL_OK;
  if (strcmp(in.phase, "reserving_order") == 0 || strcmp(in.phase, "reserving") == 0 ||
      strcmp(in.phase, "reserved") == 0) {
    if (shipped) {
      snprintf(in.phase, sizeof in.phase, "shipped");
      rc = stock_commands(b, &in, TL_CMD_COMMIT_STOCK, "commit", "reserved", "committed", err);
    } else {
      snprintf(in.phase, sizeof in.phase, "cancelled");
      rc = stock_commands(b, &in, TL_CMD_RELEASE_STOCK, "release", "reserved", "released", err);
    }
    if (rc == TL_OK) rc = save(db, &in, err);
  }
  return rc;
}

static int handle(tl_db *db, const tl_event *ev, const tl_jv *data, tl_pm_batch *b, tl_err *err) {
  const char *t = ev->type;
  if (strcmp(t, "OrderPlaced") == 0) return on_placed(db, data, b, err);
  if (strcmp(t, "StockReserved") == 0) return on_stock_answer(db, data, 1, b, err);
  if (strcmp(t, "StockReservationRejected") == 0) return on_stock_answer(db, data, 0, b, err);
  if (strcmp(t, "OrderReserved") == 0) return on_settled(db, data, 1, b, err);
  if (strcmp(t, "OrderRejected") == 0) return on_settled(db, data, 0, b, err);
  if (strcmp(t, "OrderCancelled") == 0) return on_order_closed(db, data, 0, b, err);
  if (strcmp(t, "OrderShipped") == 0) return on_order_closed(db, data, 1, b, err);
  return TL_OK;
}

static const char *const TYPES[] = {"OrderPlaced",
                                    "OrderReserved",
                                    "OrderRejected",
                                    "StockReserved",
                                    "StockReservationRejected",
                                    "OrderCancelled",
                                    "OrderShipped",
                                    NULL};

static const tl_pm_def ORDER_FULFILMENT = {"order_fulfilment", 1, SCHEMA, handle, TYPES};

const tl_pm_def *const tl_process_managers[] = {&ORDER_FULFILMENT};
const int tl_process_managers_count = 1;
