/* test_saga.c: the order-fulfilment process manager (saga/order_saga.c), one step at a time.
 *
 * Each test drives tl_process_managers[0]->handle the way the runtime does: inside a saga.db
 * transaction (a real SQLite file in a fresh temporary directory, with the manager's schema),
 * with the causing event's id and correlation id set on a batch from tl_pm_batch_new. The
 * commands the step asks for are then read back with tl_pm_batch_get: kind, target, order id,
 * quantity, text, idempotency key "pm:<eventId>:<suffix>", causation and correlation ids.
 *
 * The story of every test is one order O (correlation C) for two lines of product A (2 + 3)
 * and one of B (1); event ids are E1, E2, ... in log order. The saga reserves an order with
 * one reserve_order command; instances that earlier versions started on the per-product flow
 * (phase "reserving") are stored directly and must go on with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "saga/tl_saga.h"
#include "util/tl_common.h"
#include "util/tl_db.h"

#include "tmp_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ORDER "01HZY3J6C4Q6V9B8N7M5K3J2H1"
#define OTHER_ORDER "01HZY3J6C4Q6V9B8N7M5K3J2H9"
#define CORR "corr-7f3a"
#define PROD_A "sku-a"
#define PROD_B "sku-b"
#define QTY_A 5 /* 2 + 3: the order lists A twice */
#define QTY_B 1

typedef struct fixture {
  tmp_db t;
  tl_db *db; /* t.db */
  tl_pm_batch *b;
  int64_t position; /* of the last event handed over */
} fixture;

static const tl_pm_def *pm(void) {
  assert_true(tl_process_managers_count >= 1);
  return tl_process_managers[0];
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  if (tmp_db_open(&f->t, "saga-test", "saga.db") != TL_OK) fail_msg("cannot open saga.db");
  f->db = f->t.db;
  tl_err err = {0};
  if (tl_db_exec(f->db, pm()->schema_sql, &err) != TL_OK) fail_msg("schema: %s", err.msg);
  f->b = tl_pm_batch_new();
  assert_non_null(f->b);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tl_pm_batch_free(f->b);
  tmp_db_remove(&f->t);
  free(f);
  return 0;
}

/* ---- handing events over -------------------------------------------------------------------- */

/* Hands one event (type, its data; data is consumed) to the manager in its own saga.db
 * transaction, committed when commit is set and rolled back otherwise. The batch starts empty,
 * so afterwards it holds exactly the commands this event asked for. Returns handle's result. */
static int deliver_tx(fixture *f, const char *type, const char *event_id, json_t *data,
                      int commit) {
  assert_non_null(data);
  tl_pm_batch_free(f->b);
  f->b = tl_pm_batch_new();
  assert_non_null(f->b);
  tl_pm_batch_event(f->b, event_id, CORR);

  char *text = json_dumps(data, JSON_COMPACT);
  json_t *meta_j = json_pack("{s:s, s:s}", "eventId", event_id, "correlationId", CORR);
  char *meta = json_dumps(meta_j, JSON_COMPACT);
  json_decref(meta_j);
  assert_non_null(text);
  assert_non_null(meta);
  char stream[96];
  bool on_product = strncmp(type, "Stock", 5) == 0 || strncmp(type, "Product", 7) == 0;
  const char *agg = json_string_value(json_object_get(data, on_product ? "productId" : "orderId"));
  tl_stream_name(stream, sizeof stream, !on_product, agg ? agg : "");
  tl_event ev = {.position = ++f->position,
                 .stream = stream,
                 .version = 1,
                 .type = (char *)type,
                 .schema_version = 1,
                 .data = text,
                 .metadata = meta,
                 .recorded_ms = 1700000000000LL + f->position};

  tl_jdoc doc = {0};
  const tl_jv *view = NULL;
  assert_int_equal(tl_jdoc_parse(&doc, text, strlen(text), &view), TL_OK);
  tl_err err = {0};
  assert_int_equal(tl_db_exec(f->db, "BEGIN IMMEDIATE", &err), TL_OK);
  int rc = pm()->handle(f->db, &ev, view, f->b, &err);
  if (rc != TL_OK) print_error("handle(%s) failed: %s\n", type, err.msg);
  assert_int_equal(tl_db_exec(f->db, commit && rc == TL_OK ? "COMMIT" : "ROLLBACK", &err), TL_OK);
  tl_jdoc_free(&doc);
  free(text);
  free(meta);
  json_decref(data);
  return rc;
}

/* Hands the event over and commits, as the runtime does once the commands are answered. */
static size_t deliver(fixture *f, const char *type, const char *event_id, json_t *data) {
  assert_int_equal(deliver_tx(f, type, event_id, data, 1), TL_OK);
  return tl_pm_batch_count(f->b);
}

/* OrderPlaced for ORDER: A x2, B x1, A x3 (or the first n_lines of them). */
static json_t *order_placed(const char *order_id, int n_lines) {
  json_t *items = json_array();
  const char *pids[] = {PROD_A, PROD_B, PROD_A};
  const int qtys[] = {2, 1, 3};
  for (int i = 0; i < n_lines && i < 3; i++)
    json_array_append_new(items, json_pack("{s:s, s:i, s:f}", "productId", pids[i], "quantity",
                                           qtys[i], "price", 1.25));
  return json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s, s:s}, s:s, s:f}", "orderId", order_id,
                   "customerId", "123e4567-e89b-12d3-a456-426614174000", "items", items,
                   "shippingAddress", "street", "1 Main St", "city", "Springfield", "country", "US",
                   "postalCode", "12345", "currency", "USD", "total", 7.5);
}

static json_t *stock_reserved(const char *product_id, const char *order_id, int quantity) {
  return json_pack("{s:s, s:s, s:i}", "productId", product_id, "orderId", order_id, "quantity",
                   quantity);
}

static json_t *stock_rejected(const char *product_id, const char *order_id, int quantity) {
  return json_pack("{s:s, s:s, s:i, s:i}", "productId", product_id, "orderId", order_id, "quantity",
                   quantity, "available", 0);
}

static json_t *order_event(const char *order_id, const char *key, const char *value) {
  return json_pack("{s:s, s:s}", "orderId", order_id, key, value);
}

/* Asserts the i-th command of the batch. order_id NULL: an order command (none set); quantity
 * -1: not checked; text NULL: empty. */
static void expect_cmd(const fixture *f, size_t i, tl_cmd_kind kind, const char *target,
                       const char *order_id, int64_t quantity, const char *text,
                       const char *event_id, const char *key_suffix) {
  const tl_cmd_request *r = tl_pm_batch_get(f->b, i);
  if (!r) fail_msg("no command %zu (batch has %zu)", i, tl_pm_batch_count(f->b));
  if (r->cmd.kind != kind)
    fail_msg("command %zu is %s, expected %s", i, tl_cmd_name(r->cmd.kind), tl_cmd_name(kind));
  assert_string_equal(r->cmd.id, target);
  assert_string_equal(r->cmd.order_id, order_id ? order_id : "");
  if (quantity >= 0) assert_int_equal(r->cmd.quantity, quantity);
  assert_string_equal(r->cmd.text, text ? text : "");
  char key[192];
  snprintf(key, sizeof key, "pm:%s:%s", event_id, key_suffix);
  assert_non_null(r->idem_key);
  assert_string_equal(r->idem_key, key);
  assert_non_null(r->causation_id);
  assert_string_equal(r->causation_id, event_id);
  assert_non_null(r->correlation_id);
  assert_string_equal(r->correlation_id, CORR);
  assert_int_equal(strlen(r->fingerprint), 32);
  assert_int_equal(r->if_match, -1);
  assert_null(r->body);
  assert_int_equal(r->status, 0);
}

/* The stored instance of order_id as "phase|lines" text (malloc), or NULL when there is none. */
static char *instance_text(fixture *f, const char *order_id) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->db->db,
                                      "SELECT phase || '|' || lines FROM pm_order"
                                      " WHERE order_id = ?",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
  char *out = NULL;
  if (sqlite3_step(st) == SQLITE_ROW) out = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return out;
}

static int instance_count(fixture *f) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->db->db, "SELECT count(*) FROM pm_order", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* Every field of every command in the batch, as one string (malloc), to compare two runs. */
static char *commands_text(const fixture *f) {
  json_t *a = json_array();
  for (size_t i = 0; i < tl_pm_batch_count(f->b); i++) {
    const tl_cmd_request *r = tl_pm_batch_get(f->b, i);
    json_array_append_new(
        a,
        json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "kind", (int)r->cmd.kind, "id",
                  r->cmd.id, "orderId", r->cmd.order_id, "quantity", (json_int_t)r->cmd.quantity,
                  "text", r->cmd.text, "key", r->idem_key, "causation", r->causation_id,
                  "correlation", r->correlation_id, "fingerprint", r->fingerprint));
  }
  char *s = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  assert_non_null(s);
  return s;
}

/* Places ORDER (E1); the writer's reserve_order appends StockReserved for A (E2) and B (E3)
 * and OrderReserved (E4). Checks every step. */
static void place_and_reserve_all(fixture *f) {
  assert_int_equal(deliver(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  expect_cmd(f, 0, TL_CMD_RESERVE_ORDER, ORDER, NULL, -1, NULL, "E1", "reserve");
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(deliver(f, "StockReserved", "E3", stock_reserved(PROD_B, ORDER, QTY_B)), 0);
  assert_int_equal(deliver(f, "OrderReserved", "E4", json_pack("{s:s}", "orderId", ORDER)), 0);
}

static void store_instance_of(fixture *f, const char *order_id, const char *phase,
                              const char *lines) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(f->db->db, "INSERT INTO pm_order VALUES(?,?,?)", -1, &st, NULL),
      SQLITE_OK);
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, phase, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, lines, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
}

/* An instance of order_id that an earlier version started on the per-product flow: it asked
 * reserve_stock for A (5) and B (1), no answer yet. */
static void start_per_product(fixture *f, const char *order_id) {
  store_instance_of(f, order_id, "reserving", "pending 5 " PROD_A "\npending 1 " PROD_B "\n");
}

/* The per-product flow's happy path: both answers, then mark_reserved. */
static void reserve_per_product(fixture *f) {
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(deliver(f, "StockReserved", "E3", stock_reserved(PROD_B, ORDER, QTY_B)), 1);
  expect_cmd(f, 0, TL_CMD_MARK_RESERVED, ORDER, NULL, -1, NULL, "E3", "reserved");
}

/* ---- OrderPlaced ---------------------------------------------------------------------------- */

static void test_order_placed_reserves_the_whole_order_in_one_command(void **state) {
  fixture *f = *state;
  assert_int_equal(deliver(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  expect_cmd(f, 0, TL_CMD_RESERVE_ORDER, ORDER, NULL, 0, NULL, "E1", "reserve");
  assert_int_equal(instance_count(f), 1);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "reserving_order|pending 5 " PROD_A "\npending 1 " PROD_B "\n");
  free(text);

  /* The order's saga has started: a second OrderPlaced for it (another event) asks nothing. */
  assert_int_equal(deliver(f, "OrderPlaced", "E2", order_placed(ORDER, 3)), 0);
  assert_int_equal(instance_count(f), 1);
}

/* ---- reserve_order's outcome ---------------------------------------------------------------- */

static void test_order_reserved_settles_the_instance(void **state) {
  fixture *f = *state;
  place_and_reserve_all(f);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "reserved|reserved 5 " PROD_A "\nreserved 1 " PROD_B "\n");
  free(text);
  /* Late duplicates change nothing. */
  assert_int_equal(deliver(f, "StockReserved", "E5", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(deliver(f, "OrderReserved", "E6", json_pack("{s:s}", "orderId", ORDER)), 0);
  assert_int_equal(deliver(f, "OrderRejected", "E7", order_event(ORDER, "reason", "X")), 0);
  text = instance_text(f, ORDER);
  assert_string_equal(text, "reserved|reserved 5 " PROD_A "\nreserved 1 " PROD_B "\n");
  free(text);
}

static void test_order_rejected_settles_the_instance_with_nothing_to_release(void **state) {
  fixture *f = *state;
  assert_int_equal(deliver(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  /* reserve_order found B short: its rejection and the order's, nothing reserved. */
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E2", stock_rejected(PROD_B, ORDER, QTY_B)), 0);
  assert_int_equal(deliver(f, "OrderRejected", "E3", order_event(ORDER, "reason", "OUT_OF_STOCK")),
                   0);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "rejected|rejected 5 " PROD_A "\nrejected 1 " PROD_B "\n");
  free(text);
  /* Closed: nothing more to do for it. */
  assert_int_equal(deliver(f, "OrderCancelled", "E4", order_event(ORDER, "reason", "x")), 0);
  assert_int_equal(deliver(f, "OrderShipped", "E5", order_event(ORDER, "trackingNumber", "t")), 0);
}

static void test_cancel_before_reserve_order_decided_releases_nothing(void **state) {
  fixture *f = *state;
  assert_int_equal(deliver(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  /* The order was cancelled before reserve_order ran: the writer decides nothing for it. */
  assert_int_equal(deliver(f, "OrderCancelled", "E2", order_event(ORDER, "reason", "r")), 0);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "cancelled|pending 5 " PROD_A "\npending 1 " PROD_B "\n");
  free(text);
  assert_int_equal(deliver(f, "OrderShipped", "E3", order_event(ORDER, "trackingNumber", "t")), 0);
}

/* ---- instances on the per-product flow (started by earlier versions) ------------------------ */

static void test_per_product_answer_for_one_product_waits_for_the_other(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "reserving|reserved 5 " PROD_A "\npending 1 " PROD_B "\n");
  free(text);
}

/* ---- answers of the products ---------------------------------------------------------------- */

static void test_all_reserved_marks_the_order_after_the_last_answer(void **state) {
  fixture *f = *state;
  reserve_per_product(f);
  /* A late duplicate answer changes nothing: the order is already marked. */
  assert_int_equal(deliver(f, "StockReserved", "E4", stock_reserved(PROD_B, ORDER, QTY_B)), 0);
  assert_int_equal(deliver(f, "StockReserved", "E5", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
}

static void test_answers_in_the_other_order_also_mark_reserved(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_B, ORDER, QTY_B)), 0);
  /* An answer for a product the order does not list is not an answer for it. */
  assert_int_equal(deliver(f, "StockReserved", "E3", stock_reserved("sku-z", ORDER, 1)), 0);
  assert_int_equal(deliver(f, "StockReserved", "E4", stock_reserved(PROD_A, ORDER, QTY_A)), 1);
  expect_cmd(f, 0, TL_CMD_MARK_RESERVED, ORDER, NULL, -1, NULL, "E4", "reserved");
}

static void test_a_rejection_releases_the_rest_and_rejects_the_order(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E3", stock_rejected(PROD_B, ORDER, QTY_B)), 2);
  /* Compensation first, then the verdict. */
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E3", "release:" PROD_A);
  expect_cmd(f, 1, TL_CMD_REJECT_ORDER, ORDER, NULL, -1, "OUT_OF_STOCK", "E3", "reject");
  /* The order is settled: later events for it ask nothing more. */
  assert_int_equal(deliver(f, "StockReserved", "E4", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(deliver(f, "OrderCancelled", "E5", order_event(ORDER, "reason", "x")), 0);
  assert_int_equal(deliver(f, "OrderShipped", "E6", order_event(ORDER, "trackingNumber", "t")), 0);
}

static void test_a_rejection_first_waits_for_the_other_answers(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E2", stock_rejected(PROD_B, ORDER, QTY_B)), 0);
  /* A's reservation is only known now: it is released as the order is rejected. */
  assert_int_equal(deliver(f, "StockReserved", "E3", stock_reserved(PROD_A, ORDER, QTY_A)), 2);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E3", "release:" PROD_A);
  expect_cmd(f, 1, TL_CMD_REJECT_ORDER, ORDER, NULL, -1, "OUT_OF_STOCK", "E3", "reject");
}

static void test_all_rejected_rejects_without_releases(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E2", stock_rejected(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E3", stock_rejected(PROD_B, ORDER, QTY_B)), 1);
  expect_cmd(f, 0, TL_CMD_REJECT_ORDER, ORDER, NULL, -1, "OUT_OF_STOCK", "E3", "reject");
}

/* ---- OrderCancelled and OrderShipped -------------------------------------------------------- */

static void test_cancel_of_a_reserved_order_releases_every_product(void **state) {
  fixture *f = *state;
  place_and_reserve_all(f);
  assert_int_equal(
      deliver(f, "OrderCancelled", "E5", order_event(ORDER, "reason", "changed my mind")), 2);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E5", "release:" PROD_A);
  expect_cmd(f, 1, TL_CMD_RELEASE_STOCK, PROD_B, ORDER, QTY_B, NULL, "E5", "release:" PROD_B);
  /* Released once: a redelivered cancellation or a late answer give nothing back twice. */
  assert_int_equal(deliver(f, "OrderCancelled", "E6", order_event(ORDER, "reason", "again")), 0);
  assert_int_equal(deliver(f, "StockReserved", "E7", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(deliver(f, "OrderShipped", "E8", order_event(ORDER, "trackingNumber", "t")), 0);
}

static void test_cancel_of_a_per_product_reservation_releases_every_product(void **state) {
  fixture *f = *state;
  reserve_per_product(f);
  assert_int_equal(deliver(f, "OrderCancelled", "E4", order_event(ORDER, "reason", "r")), 2);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E4", "release:" PROD_A);
  expect_cmd(f, 1, TL_CMD_RELEASE_STOCK, PROD_B, ORDER, QTY_B, NULL, "E4", "release:" PROD_B);
  /* mark_reserved's OrderReserved arrives after: it settles nothing more. */
  assert_int_equal(deliver(f, "OrderReserved", "E5", json_pack("{s:s}", "orderId", ORDER)), 0);
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "cancelled|released 5 " PROD_A "\nreleased 1 " PROD_B "\n");
  free(text);
}

static void test_cancel_while_reserving_releases_the_late_reservation(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  /* B is still pending: only A can be released now. */
  assert_int_equal(deliver(f, "OrderCancelled", "E3", order_event(ORDER, "reason", "r")), 1);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E3", "release:" PROD_A);
  /* B's reservation lands after the cancellation: it is given back, the order not marked. */
  assert_int_equal(deliver(f, "StockReserved", "E4", stock_reserved(PROD_B, ORDER, QTY_B)), 1);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_B, ORDER, QTY_B, NULL, "E4", "release:" PROD_B);
}

static void test_cancel_before_any_answer(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "OrderCancelled", "E2", order_event(ORDER, "reason", "r")), 0);
  /* A rejected late answer holds nothing; a reserved one is released; neither marks nor
   * rejects the (cancelled) order. */
  assert_int_equal(
      deliver(f, "StockReservationRejected", "E3", stock_rejected(PROD_B, ORDER, QTY_B)), 0);
  assert_int_equal(deliver(f, "StockReserved", "E4", stock_reserved(PROD_A, ORDER, QTY_A)), 1);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E4", "release:" PROD_A);
}

static void test_ship_of_a_reserved_order_commits_every_product(void **state) {
  fixture *f = *state;
  place_and_reserve_all(f);
  /* Payment is no business of the saga. */
  assert_int_equal(deliver(f, "PaymentConfirmed", "E5", order_event(ORDER, "paymentId", "p")), 0);
  assert_int_equal(deliver(f, "OrderShipped", "E6", order_event(ORDER, "trackingNumber", "1Z")), 2);
  expect_cmd(f, 0, TL_CMD_COMMIT_STOCK, PROD_A, ORDER, QTY_A, NULL, "E6", "commit:" PROD_A);
  expect_cmd(f, 1, TL_CMD_COMMIT_STOCK, PROD_B, ORDER, QTY_B, NULL, "E6", "commit:" PROD_B);
  /* Committed once. */
  assert_int_equal(deliver(f, "OrderShipped", "E7", order_event(ORDER, "trackingNumber", "1Z")), 0);
  assert_int_equal(deliver(f, "OrderCancelled", "E8", order_event(ORDER, "reason", "r")), 0);
}

/* ---- replay safety -------------------------------------------------------------------------- */

/* Hands the event over twice in transactions that are rolled back (a crash before the
 * checkpoint), then once for good: the three runs ask for identical commands and keys, and
 * only the committed one changes the stored instance. Returns the number of commands. */
static size_t expect_replay_safe(fixture *f, const char *type, const char *event_id, json_t *data) {
  char *before = instance_text(f, ORDER);
  char *runs[3];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(deliver_tx(f, type, event_id, json_deep_copy(data), i == 2), TL_OK);
    runs[i] = commands_text(f);
    if (i < 2) {
      char *now = instance_text(f, ORDER);
      if (before || now) {
        assert_non_null(before);
        assert_non_null(now);
        assert_string_equal(now, before);
      }
      free(now);
    }
  }
  assert_string_equal(runs[0], runs[1]);
  assert_string_equal(runs[0], runs[2]);
  for (int i = 0; i < 3; i++) free(runs[i]);
  free(before);
  json_decref(data);
  return tl_pm_batch_count(f->b);
}

static void test_replayed_events_ask_for_the_same_commands(void **state) {
  fixture *f = *state;
  assert_int_equal(expect_replay_safe(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  expect_cmd(f, 0, TL_CMD_RESERVE_ORDER, ORDER, NULL, -1, NULL, "E1", "reserve");
  assert_int_equal(
      expect_replay_safe(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(
      expect_replay_safe(f, "OrderReserved", "E3", json_pack("{s:s}", "orderId", ORDER)), 0);
  assert_int_equal(
      expect_replay_safe(f, "OrderShipped", "E4", order_event(ORDER, "trackingNumber", "t")), 2);
  expect_cmd(f, 1, TL_CMD_COMMIT_STOCK, PROD_B, ORDER, QTY_B, NULL, "E4", "commit:" PROD_B);
}

static void test_replayed_rejection_and_cancellation_ask_the_same(void **state) {
  fixture *f = *state;
  start_per_product(f, ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, QTY_A)), 0);
  assert_int_equal(expect_replay_safe(f, "OrderCancelled", "E3", order_event(ORDER, "reason", "r")),
                   1);
  assert_int_equal(
      expect_replay_safe(f, "StockReserved", "E4", stock_reserved(PROD_B, ORDER, QTY_B)), 1);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_B, ORDER, QTY_B, NULL, "E4", "release:" PROD_B);

  start_per_product(f, OTHER_ORDER);
  assert_int_equal(deliver(f, "StockReserved", "E6", stock_reserved(PROD_A, OTHER_ORDER, QTY_A)),
                   0);
  assert_int_equal(expect_replay_safe(f, "StockReservationRejected", "E7",
                                      stock_rejected(PROD_B, OTHER_ORDER, QTY_B)),
                   2);
  expect_cmd(f, 1, TL_CMD_REJECT_ORDER, OTHER_ORDER, NULL, -1, "OUT_OF_STOCK", "E7", "reject");
}

/* ---- events the saga has nothing to do with ------------------------------------------------- */

static void test_events_for_unknown_orders_ask_nothing(void **state) {
  fixture *f = *state;
  assert_int_equal(deliver(f, "StockReserved", "E1", stock_reserved(PROD_A, ORDER, 1)), 0);
  assert_int_equal(deliver(f, "StockReservationRejected", "E2", stock_rejected(PROD_A, ORDER, 1)),
                   0);
  assert_int_equal(deliver(f, "OrderCancelled", "E3", order_event(ORDER, "reason", "r")), 0);
  assert_int_equal(deliver(f, "OrderShipped", "E4", order_event(ORDER, "trackingNumber", "t")), 0);
  assert_int_equal(deliver(f, "OrderReserved", "E4a", json_pack("{s:s}", "orderId", ORDER)), 0);
  assert_int_equal(deliver(f, "OrderRejected", "E4b", order_event(ORDER, "reason", "X")), 0);
  assert_int_equal(instance_count(f), 0); /* and remembers nothing */

  /* Another order's events do not touch this one. */
  assert_int_equal(deliver(f, "OrderPlaced", "E5", order_placed(ORDER, 3)), 1);
  char *before = instance_text(f, ORDER);
  assert_non_null(before);
  assert_int_equal(deliver(f, "StockReserved", "E6", stock_reserved(PROD_A, OTHER_ORDER, 1)), 0);
  assert_int_equal(deliver(f, "OrderCancelled", "E7", order_event(OTHER_ORDER, "reason", "r")), 0);
  assert_int_equal(deliver(f, "OrderReserved", "E7a", json_pack("{s:s}", "orderId", OTHER_ORDER)),
                   0);
  char *after = instance_text(f, ORDER);
  assert_non_null(after);
  assert_string_equal(after, before);
  assert_int_equal(instance_count(f), 1);
  free(before);
  free(after);

  /* Events without the ids the saga keys on. */
  assert_int_equal(deliver(f, "OrderPlaced", "E8", json_pack("{s:[]}", "items")), 0);
  assert_int_equal(deliver(f, "StockReserved", "E9", json_pack("{s:s}", "orderId", ORDER)), 0);
  assert_int_equal(deliver(f, "OrderCancelled", "E10", json_object()), 0);
  assert_int_equal(deliver(f, "OrderReserved", "E11", json_object()), 0);
  assert_int_equal(instance_count(f), 1);
}

static void test_unrelated_event_types_ask_nothing(void **state) {
  fixture *f = *state;
  assert_int_equal(deliver(f, "OrderPlaced", "E1", order_placed(ORDER, 3)), 1);
  char *before = instance_text(f, ORDER);
  assert_non_null(before);
  const char *types[] = {"ProductCreated", "ProductRestocked", "StockReleased",
                         "StockCommitted", "PaymentConfirmed", "OrderNoteAdded"};
  for (size_t i = 0; i < TL_ARRAY_LEN(types); i++) {
    char eid[16];
    snprintf(eid, sizeof eid, "U%zu", i);
    json_t *data = json_pack("{s:s, s:s, s:s, s:i, s:s}", "orderId", ORDER, "productId", PROD_A,
                             "reason", "OUT_OF_STOCK", "quantity", QTY_A, "paymentId", "p");
    assert_int_equal(deliver(f, types[i], eid, data), 0);
  }
  char *after = instance_text(f, ORDER);
  assert_non_null(after);
  assert_string_equal(after, before);
  free(before);
  free(after);
  /* The saga still runs its course afterwards. */
  assert_int_equal(deliver(f, "OrderReserved", "E2", json_pack("{s:s}", "orderId", ORDER)), 0);
  after = instance_text(f, ORDER);
  assert_string_equal(after, "reserved|reserved 5 " PROD_A "\nreserved 1 " PROD_B "\n");
  free(after);
}

/* ---- stored instances ----------------------------------------------------------------------- */

static void test_an_instance_stored_as_json_by_an_earlier_version_goes_on(void **state) {
  fixture *f = *state;
  store_instance_of(f, ORDER, "reserving",
                    "[{\"p\":\"" PROD_A
                    "\",\"q\":5,\"s\":\"reserved\"},"
                    "{\"p\":\"" PROD_B "\",\"q\":1,\"s\":\"pending\"}]");
  assert_int_equal(deliver(f, "StockReserved", "E2", stock_reserved(PROD_B, ORDER, QTY_B)), 1);
  expect_cmd(f, 0, TL_CMD_MARK_RESERVED, ORDER, NULL, -1, NULL, "E2", "reserved");
  char *text = instance_text(f, ORDER);
  assert_string_equal(text, "reserved|reserved 5 " PROD_A "\nreserved 1 " PROD_B "\n");
  free(text);
  assert_int_equal(deliver(f, "OrderCancelled", "E3", order_event(ORDER, "reason", "r")), 2);
  expect_cmd(f, 0, TL_CMD_RELEASE_STOCK, PROD_A, ORDER, QTY_A, NULL, "E3", "release:" PROD_A);
}

static void test_an_unreadable_instance_is_an_error_not_a_guess(void **state) {
  fixture *f = *state;
  store_instance_of(f, ORDER, "reserving", "pending five " PROD_A "\n");
  assert_int_equal(deliver_tx(f, "StockReserved", "E2", stock_reserved(PROD_A, ORDER, 5), 1),
                   TL_E_IO);
  assert_int_equal(tl_pm_batch_count(f->b), 0);
}

static void test_the_manager_is_registered(void **state) {
  (void)state;
  assert_int_equal(tl_process_managers_count, 1);
  assert_non_null(pm()->name);
  assert_string_equal(pm()->name, "order_fulfilment");
  assert_true(pm()->version >= 1);
  assert_non_null(pm()->schema_sql);
  assert_non_null(pm()->handle);
}

#define SAGA_TEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_manager_is_registered),
      SAGA_TEST(test_order_placed_reserves_the_whole_order_in_one_command),
      SAGA_TEST(test_order_reserved_settles_the_instance),
      SAGA_TEST(test_order_rejected_settles_the_instance_with_nothing_to_release),
      SAGA_TEST(test_cancel_before_reserve_order_decided_releases_nothing),
      SAGA_TEST(test_per_product_answer_for_one_product_waits_for_the_other),
      SAGA_TEST(test_all_reserved_marks_the_order_after_the_last_answer),
      SAGA_TEST(test_answers_in_the_other_order_also_mark_reserved),
      SAGA_TEST(test_a_rejection_releases_the_rest_and_rejects_the_order),
      SAGA_TEST(test_a_rejection_first_waits_for_the_other_answers),
      SAGA_TEST(test_all_rejected_rejects_without_releases),
      SAGA_TEST(test_cancel_of_a_reserved_order_releases_every_product),
      SAGA_TEST(test_cancel_of_a_per_product_reservation_releases_every_product),
      SAGA_TEST(test_cancel_while_reserving_releases_the_late_reservation),
      SAGA_TEST(test_cancel_before_any_answer),
      SAGA_TEST(test_ship_of_a_reserved_order_commits_every_product),
      SAGA_TEST(test_replayed_events_ask_for_the_same_commands),
      SAGA_TEST(test_replayed_rejection_and_cancellation_ask_the_same),
      SAGA_TEST(test_events_for_unknown_orders_ask_nothing),
      SAGA_TEST(test_unrelated_event_types_ask_nothing),
      SAGA_TEST(test_an_instance_stored_as_json_by_an_earlier_version_goes_on),
      SAGA_TEST(test_an_unreadable_instance_is_an_error_not_a_guess),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
