/* test_order.c: the order aggregate (domain/order.c): tl_order_decide, tl_order_evolve and the
 * state helpers.
 *
 * Commands are built directly as tl_cmd (decoding is test_commands.c's business); states are
 * reached by folding the events the decider itself produced, so each test drives the real
 * lifecycle PENDING -> RESERVED -> PAID -> SHIPPED, PENDING -> REJECTED (the order saga's
 * mark_reserved / reject_order) and PENDING -> CANCELLED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "domain/domain.h"
#include "util/tl_common.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORDER_ID "01HZY3J6C4Q6V9B8N7M5K3J2H1"
#define CUSTOMER_ID "123e4567-e89b-12d3-a456-426614174000"
#define T_PLACED 1700000000000LL /* 2023-11-14T22:13:20.000Z */
#define T_RESERVED (T_PLACED + 30000)
#define T_REJECTED (T_PLACED + 40000)
#define T_PAID (T_PLACED + 60000)
#define T_SHIPPED (T_PLACED + 120000)
#define T_CANCELLED (T_PLACED + 180000)

/* ---- a tiny catalog ------------------------------------------------------------------------ */

static tl_product_state catalog[3];

static void catalog_init(void) {
  const char *ids[] = {"sku-1", "sku-2", "ghost"};
  for (size_t i = 0; i < TL_ARRAY_LEN(catalog); i++) {
    tl_product_state_init(&catalog[i]);
    snprintf(catalog[i].product_id, sizeof catalog[i].product_id, "%s", ids[i]);
    snprintf(catalog[i].name, sizeof catalog[i].name, "Product %zu", i);
    snprintf(catalog[i].category, sizeof catalog[i].category, "cat");
    memcpy(catalog[i].currency, "USD", 4);
    catalog[i].price_minor = 100;
    catalog[i].stock = 10;
    catalog[i].version = 1;
  }
  catalog[2].version = 0; /* "ghost": known to the lookup, but not (yet) created */
}

static const tl_product_state *lookup(void *ctx, const char *product_id) {
  int *calls = ctx;
  if (calls) (*calls)++;
  for (size_t i = 0; i < TL_ARRAY_LEN(catalog); i++)
    if (strcmp(catalog[i].product_id, product_id) == 0) return &catalog[i];
  return NULL;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static json_t *address(void) {
  return json_pack("{s:s, s:s, s:s, s:s}", "street", "1 Main St", "city", "Springfield",
                   "country", "US", "postalCode", "12345");
}

/* place_order for 3 x sku-1 at 0.10 and 1 x sku-2 at 0.20 (total 0.50). Clear with
 * tl_cmd_clear. */
static void place_cmd(tl_cmd *c) {
  memset(c, 0, sizeof *c);
  c->kind = TL_CMD_PLACE_ORDER;
  snprintf(c->id, sizeof c->id, "%s", ORDER_ID);
  snprintf(c->customer_id, sizeof c->customer_id, "%s", CUSTOMER_ID);
  memcpy(c->currency, "USD", 4);
  c->n_items = 2;
  snprintf(c->items[0].product_id, sizeof c->items[0].product_id, "sku-1");
  c->items[0].quantity = 3;
  c->items[0].price_minor = 10;
  snprintf(c->items[1].product_id, sizeof c->items[1].product_id, "sku-2");
  c->items[1].quantity = 1;
  c->items[1].price_minor = 20;
  c->shipping = address();
  assert_non_null(c->shipping);
}

static void simple_cmd(tl_cmd *c, tl_cmd_kind kind, const char *text) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  snprintf(c->id, sizeof c->id, "%s", ORDER_ID);
  snprintf(c->text, sizeof c->text, "%s", text);
}

static int64_t money_of(const json_t *j) {
  int64_t v = -1;
  assert_int_equal(tl_money_from_json(j, &v), TL_OK);
  return v;
}

static const char *str_of(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v) fail_msg("member %s is not a string", key);
  return v;
}

/* Decides c against s and folds the resulting events at time ms; the decision must succeed. */
static void decide_and_fold(tl_order_state *s, const tl_cmd *c, int64_t ms) {
  tl_decision d;
  memset(&d, 0, sizeof d);
  int rc = tl_order_decide(s, c, lookup, NULL, &d);
  if (rc != TL_OK) fail_msg("decide refused: %d %s", rc, d.problem.detail);
  for (int i = 0; i < d.n_events; i++)
    assert_int_equal(tl_order_evolve(s, d.events[i].type, d.events[i].data, ms), TL_OK);
  tl_decision_clear(&d);
}

/* Brings a fresh state s to status st by deciding and folding the real commands: the saga's
 * mark_reserved before payment, its reject_order (OUT_OF_STOCK) for REJECTED; CANCELLED is
 * cancelled while PENDING. */
static void order_in(tl_order_state *s, tl_order_status st) {
  tl_order_state_init(s);
  if (st == TL_ORDER_NONE) return;
  tl_cmd c;
  place_cmd(&c);
  decide_and_fold(s, &c, T_PLACED);
  tl_cmd_clear(&c);
  if (st == TL_ORDER_RESERVED || st == TL_ORDER_PAID || st == TL_ORDER_SHIPPED) {
    simple_cmd(&c, TL_CMD_MARK_RESERVED, "");
    decide_and_fold(s, &c, T_RESERVED);
  }
  if (st == TL_ORDER_REJECTED) {
    simple_cmd(&c, TL_CMD_REJECT_ORDER, "OUT_OF_STOCK");
    decide_and_fold(s, &c, T_REJECTED);
  }
  if (st == TL_ORDER_PAID || st == TL_ORDER_SHIPPED) {
    simple_cmd(&c, TL_CMD_CONFIRM_PAYMENT, "pay-1");
    decide_and_fold(s, &c, T_PAID);
  }
  if (st == TL_ORDER_SHIPPED) {
    simple_cmd(&c, TL_CMD_SHIP, "track-1");
    decide_and_fold(s, &c, T_SHIPPED);
  }
  if (st == TL_ORDER_CANCELLED) {
    simple_cmd(&c, TL_CMD_CANCEL, "changed my mind");
    decide_and_fold(s, &c, T_CANCELLED);
  }
  assert_int_equal(s->status, st);
}

/* Asserts that command kind on an order in status st is refused with rc / status / code and
 * produces no event. */
static void expect_refusal(tl_order_status st, tl_cmd_kind kind, int want_rc, int want_status,
                           const char *want_code) {
  tl_order_state s;
  order_in(&s, st);
  tl_cmd c;
  if (kind == TL_CMD_PLACE_ORDER) place_cmd(&c);
  else simple_cmd(&c, kind, "x");
  tl_decision d;
  memset(&d, 0, sizeof d);
  int rc = tl_order_decide(&s, &c, lookup, NULL, &d);
  assert_int_equal(rc, want_rc);
  assert_int_equal(d.problem.status, want_status);
  assert_non_null(d.problem.code);
  assert_string_equal(d.problem.code, want_code);
  assert_true(d.problem.detail[0] != '\0');
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
  tl_order_state_clear(&s);
}

/* Asserts that command kind (with text) on an order in status st yields exactly one event of
 * type with data {orderId, text_key: text}. */
static void expect_event(tl_order_status st, tl_cmd_kind kind, const char *text,
                         const char *type, const char *text_key) {
  tl_order_state s;
  order_in(&s, st);
  tl_cmd c;
  simple_cmd(&c, kind, text);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&s, &c, lookup, NULL, &d), TL_OK);
  assert_int_equal(d.n_events, 1);
  assert_string_equal(d.events[0].type, type);
  const json_t *data = d.events[0].data;
  assert_int_equal(json_object_size(data), 2);
  assert_string_equal(str_of(data, "orderId"), ORDER_ID);
  assert_string_equal(str_of(data, text_key), text);
  assert_null(d.problem.code);
  tl_decision_clear(&d);
  tl_order_state_clear(&s);
}

/* Asserts that command kind on an order in status st is accepted as a no-op: TL_OK, no event,
 * no problem, and the state does not move. */
static void expect_noop(tl_order_status st, tl_cmd_kind kind, const char *text) {
  tl_order_state s;
  order_in(&s, st);
  int64_t version = s.version;
  tl_cmd c;
  simple_cmd(&c, kind, text);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&s, &c, lookup, NULL, &d), TL_OK);
  assert_int_equal(d.n_events, 0);
  assert_null(d.problem.code);
  assert_int_equal(d.problem.status, 0);
  assert_int_equal(s.status, st);
  assert_int_equal(s.version, version);
  tl_decision_clear(&d);
  tl_order_state_clear(&s);
}

/* ---- place_order --------------------------------------------------------------------------- */

static void test_place_order_on_new_order_emits_order_placed(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  tl_decision d;
  memset(&d, 0, sizeof d);
  int calls = 0;
  assert_int_equal(tl_order_decide(&st, &c, lookup, &calls, &d), TL_OK);
  assert_int_equal(calls, 2); /* every line is checked against the catalog */
  assert_int_equal(d.n_events, 1);
  assert_string_equal(d.events[0].type, "OrderPlaced");
  const json_t *data = d.events[0].data;
  assert_string_equal(str_of(data, "orderId"), ORDER_ID);
  assert_string_equal(str_of(data, "customerId"), CUSTOMER_ID);
  assert_string_equal(str_of(data, "currency"), "USD");
  assert_int_equal(money_of(json_object_get(data, "total")), 50); /* 3 x 0.10 + 0.20, exact */
  json_t *want_addr = address();
  assert_true(json_equal(json_object_get(data, "shippingAddress"), want_addr));
  json_decref(want_addr);

  const json_t *items = json_object_get(data, "items");
  assert_true(json_is_array(items));
  assert_int_equal(json_array_size(items), 2);
  const json_t *i0 = json_array_get(items, 0), *i1 = json_array_get(items, 1);
  assert_string_equal(str_of(i0, "productId"), "sku-1");
  assert_int_equal(json_integer_value(json_object_get(i0, "quantity")), 3);
  assert_int_equal(money_of(json_object_get(i0, "price")), 10);
  assert_string_equal(str_of(i1, "productId"), "sku-2");
  assert_int_equal(json_integer_value(json_object_get(i1, "quantity")), 1);
  assert_int_equal(money_of(json_object_get(i1, "price")), 20);

  tl_decision_clear(&d);
  assert_int_equal(d.n_events, 0);
  tl_cmd_clear(&c);
  tl_order_state_clear(&st);
}

static void test_place_order_total_is_exact_for_many_small_prices(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  /* 0.1 + 0.2 != 0.3 in binary floating point; in cents it is. */
  c.items[0].quantity = 10000;
  c.items[0].price_minor = 1; /* 10000 x 0.01 = 100.00 */
  c.items[1].quantity = 7;
  c.items[1].price_minor = 29; /* 7 x 0.29 = 2.03 */
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_OK);
  assert_int_equal(money_of(json_object_get(d.events[0].data, "total")), 10203);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_place_order_total_over_money_limit_is_refused(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  /* docs/api-notes.md: an order's total is at most 10,000,000,000.00 (400 on items). */
  c.items[0].quantity = 1;
  c.items[0].price_minor = TL_MONEY_MAX_MINOR - 20;
  c.items[1].quantity = 1;
  c.items[1].price_minor = 20; /* exactly at the limit: accepted */
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_OK);
  assert_int_equal(money_of(json_object_get(d.events[0].data, "total")), TL_MONEY_MAX_MINOR);
  tl_decision_clear(&d);

  c.items[1].price_minor = 21; /* one cent over */
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_E_INVALID);
  assert_int_equal(d.problem.status, 400);
  assert_string_equal(d.problem.code, "VALIDATION_FAILED");
  assert_int_equal(json_array_size(d.problem.errors), 1);
  assert_string_equal(str_of(json_array_get(d.problem.errors, 0), "field"), "items");
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);

  c.items[0].quantity = TL_ORDER_MAX_QTY; /* the largest sum the decoder lets through */
  c.items[0].price_minor = TL_MONEY_MAX_MINOR;
  c.items[1].quantity = TL_ORDER_MAX_QTY;
  c.items[1].price_minor = TL_MONEY_MAX_MINOR;
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_E_INVALID);
  assert_string_equal(str_of(json_array_get(d.problem.errors, 0), "field"), "items");
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_place_order_unknown_product_is_field_error(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  snprintf(c.items[1].product_id, sizeof c.items[1].product_id, "no-such-sku");
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_E_INVALID);
  assert_int_equal(d.problem.status, 400);
  assert_string_equal(d.problem.code, "VALIDATION_FAILED");
  assert_int_equal(d.n_events, 0);
  assert_non_null(d.problem.errors);
  assert_int_equal(json_array_size(d.problem.errors), 1);
  const json_t *e = json_array_get(d.problem.errors, 0);
  assert_string_equal(str_of(e, "field"), "items[1].productId");
  assert_non_null(json_string_value(json_object_get(e, "message")));
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_place_order_reports_every_unknown_product(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  /* A product the lookup knows at version 0 does not exist either. */
  snprintf(c.items[0].product_id, sizeof c.items[0].product_id, "ghost");
  snprintf(c.items[1].product_id, sizeof c.items[1].product_id, "nope");
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_E_INVALID);
  assert_int_equal(json_array_size(d.problem.errors), 2);
  assert_string_equal(str_of(json_array_get(d.problem.errors, 0), "field"), "items[0].productId");
  assert_string_equal(str_of(json_array_get(d.problem.errors, 1), "field"), "items[1].productId");
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_place_order_without_lookup_knows_no_product(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  tl_cmd c;
  place_cmd(&c);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, NULL, NULL, &d), TL_E_INVALID);
  assert_int_equal(json_array_size(d.problem.errors), 2);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_place_order_on_existing_order_conflicts(void **s) {
  (void)s;
  expect_refusal(TL_ORDER_PENDING, TL_CMD_PLACE_ORDER, TL_E_CONFLICT, 409, "ORDER_EXISTS");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_PLACE_ORDER, TL_E_CONFLICT, 409, "ORDER_EXISTS");
  expect_refusal(TL_ORDER_RESERVED, TL_CMD_PLACE_ORDER, TL_E_CONFLICT, 409, "ORDER_EXISTS");
  expect_refusal(TL_ORDER_REJECTED, TL_CMD_PLACE_ORDER, TL_E_CONFLICT, 409, "ORDER_EXISTS");
}

static void test_commands_on_missing_order_are_not_found(void **s) {
  (void)s;
  expect_refusal(TL_ORDER_NONE, TL_CMD_CONFIRM_PAYMENT, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND");
  expect_refusal(TL_ORDER_NONE, TL_CMD_SHIP, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND");
  expect_refusal(TL_ORDER_NONE, TL_CMD_CANCEL, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND");
  expect_refusal(TL_ORDER_NONE, TL_CMD_MARK_RESERVED, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND");
  expect_refusal(TL_ORDER_NONE, TL_CMD_REJECT_ORDER, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND");
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void test_confirm_payment_transitions(void **s) {
  (void)s;
  /* Payment waits for the stock: a PENDING order is not payable yet. */
  expect_refusal(TL_ORDER_PENDING, TL_CMD_CONFIRM_PAYMENT, TL_E_CONFLICT, 409,
                 "ORDER_NOT_RESERVED");
  expect_event(TL_ORDER_RESERVED, TL_CMD_CONFIRM_PAYMENT, "pay_42", "PaymentConfirmed",
               "paymentId");
  expect_refusal(TL_ORDER_PAID, TL_CMD_CONFIRM_PAYMENT, TL_E_CONFLICT, 409, "ALREADY_PAID");
  expect_refusal(TL_ORDER_SHIPPED, TL_CMD_CONFIRM_PAYMENT, TL_E_CONFLICT, 409, "ALREADY_PAID");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_CONFIRM_PAYMENT, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_REJECTED, TL_CMD_CONFIRM_PAYMENT, TL_E_CONFLICT, 409, "ORDER_CLOSED");
}

static void test_ship_transitions(void **s) {
  (void)s;
  expect_refusal(TL_ORDER_PENDING, TL_CMD_SHIP, TL_E_CONFLICT, 409, "NOT_PAID");
  expect_refusal(TL_ORDER_RESERVED, TL_CMD_SHIP, TL_E_CONFLICT, 409, "NOT_PAID");
  expect_event(TL_ORDER_PAID, TL_CMD_SHIP, "1Z999", "OrderShipped", "trackingNumber");
  expect_refusal(TL_ORDER_SHIPPED, TL_CMD_SHIP, TL_E_CONFLICT, 409, "ALREADY_SHIPPED");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_SHIP, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_REJECTED, TL_CMD_SHIP, TL_E_CONFLICT, 409, "ORDER_CLOSED");
}

static void test_cancel_transitions(void **s) {
  (void)s;
  expect_event(TL_ORDER_PENDING, TL_CMD_CANCEL, "changed my mind", "OrderCancelled", "reason");
  expect_event(TL_ORDER_RESERVED, TL_CMD_CANCEL, "found it cheaper", "OrderCancelled", "reason");
  expect_event(TL_ORDER_PAID, TL_CMD_CANCEL, "refunded", "OrderCancelled", "reason");
  expect_event(TL_ORDER_PENDING, TL_CMD_CANCEL, "", "OrderCancelled", "reason");
  expect_refusal(TL_ORDER_SHIPPED, TL_CMD_CANCEL, TL_E_CONFLICT, 409, "ALREADY_SHIPPED");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_CANCEL, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_REJECTED, TL_CMD_CANCEL, TL_E_CONFLICT, 409, "ORDER_CLOSED");
}

static void test_mark_reserved_transitions(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PENDING);
  tl_cmd c;
  simple_cmd(&c, TL_CMD_MARK_RESERVED, "");
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(&st, &c, lookup, NULL, &d), TL_OK);
  assert_int_equal(d.n_events, 1);
  assert_string_equal(d.events[0].type, "OrderReserved");
  assert_int_equal(json_object_size(d.events[0].data), 1);
  assert_string_equal(str_of(d.events[0].data, "orderId"), ORDER_ID);
  assert_null(d.problem.code);
  tl_decision_clear(&d);
  tl_order_state_clear(&st);

  /* Already past PENDING (a redelivered saga command, or paid since): nothing to do. */
  expect_noop(TL_ORDER_RESERVED, TL_CMD_MARK_RESERVED, "");
  expect_noop(TL_ORDER_PAID, TL_CMD_MARK_RESERVED, "");
  expect_noop(TL_ORDER_SHIPPED, TL_CMD_MARK_RESERVED, "");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_MARK_RESERVED, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_REJECTED, TL_CMD_MARK_RESERVED, TL_E_CONFLICT, 409, "ORDER_CLOSED");
}

static void test_reject_order_transitions(void **s) {
  (void)s;
  expect_event(TL_ORDER_PENDING, TL_CMD_REJECT_ORDER, "OUT_OF_STOCK", "OrderRejected", "reason");
  expect_noop(TL_ORDER_REJECTED, TL_CMD_REJECT_ORDER, "OUT_OF_STOCK");
  expect_refusal(TL_ORDER_RESERVED, TL_CMD_REJECT_ORDER, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_PAID, TL_CMD_REJECT_ORDER, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_SHIPPED, TL_CMD_REJECT_ORDER, TL_E_CONFLICT, 409, "ORDER_CLOSED");
  expect_refusal(TL_ORDER_CANCELLED, TL_CMD_REJECT_ORDER, TL_E_CONFLICT, 409, "ORDER_CLOSED");
}

/* The saga's order commands are order commands, the client's place_order is not a stock one. */
static void test_saga_commands_target_the_right_aggregate(void **s) {
  (void)s;
  assert_true(tl_cmd_is_order(TL_CMD_MARK_RESERVED));
  assert_true(tl_cmd_is_order(TL_CMD_REJECT_ORDER));
  assert_false(tl_cmd_is_order(TL_CMD_RESERVE_STOCK));
  assert_false(tl_cmd_is_order(TL_CMD_RELEASE_STOCK));
  assert_false(tl_cmd_is_order(TL_CMD_COMMIT_STOCK));
  assert_string_equal(tl_cmd_name(TL_CMD_MARK_RESERVED), "mark_reserved");
  assert_string_equal(tl_cmd_name(TL_CMD_REJECT_ORDER), "reject_order");
  expect_refusal(TL_ORDER_PENDING, TL_CMD_RESERVE_STOCK, TL_E_INVALID, 400, "VALIDATION_FAILED");
}

static void test_product_command_is_not_an_order_command(void **s) {
  (void)s;
  expect_refusal(TL_ORDER_PENDING, TL_CMD_RESTOCK, TL_E_INVALID, 400, "VALIDATION_FAILED");
}

/* ---- reserve_order: the order and its products in one decision ----------------------------- */

static void reset_catalog(void) {
  for (size_t i = 0; i < TL_ARRAY_LEN(catalog); i++) tl_product_state_clear(&catalog[i]);
  catalog_init();
}

static tl_product_state *catalog_product(const char *id) {
  return (tl_product_state *)lookup(NULL, id);
}

/* Decides reserve_order on s (must succeed) and folds every event: products into the catalog,
 * the order's into s. Returns the events as "stream type quantity/available" lines (malloc). */
static char *reserve_and_fold(tl_order_state *s) {
  tl_reservation r;
  int rc = tl_order_decide_reservation(s, lookup, NULL, &r);
  if (rc != TL_OK) fail_msg("reserve_order refused: %d %s", rc, r.order.problem.detail);
  char out[1024];
  size_t n = 0;
  for (int i = 0; i < r.n_stock; i++) {
    const json_t *data = r.stock[i].event.data;
    assert_string_equal(str_of(data, "orderId"), s->order_id);
    assert_string_equal(str_of(data, "productId"), r.stock[i].product_id);
    const json_t *avail = json_object_get(data, "available");
    n += (size_t)snprintf(out + n, sizeof out - n, "%s %s %lld", r.stock[i].product_id,
                          r.stock[i].event.type,
                          (long long)json_integer_value(json_object_get(data, "quantity")));
    if (avail)
      n += (size_t)snprintf(out + n, sizeof out - n, "/%lld", (long long)json_integer_value(avail));
    n += (size_t)snprintf(out + n, sizeof out - n, "\n");
    assert_true(n < sizeof out);
    tl_product_state *p = catalog_product(r.stock[i].product_id);
    assert_non_null(p);
    assert_int_equal(tl_product_evolve(p, r.stock[i].event.type, data, T_RESERVED), TL_OK);
  }
  for (int i = 0; i < r.order.n_events; i++) {
    const char *reason = json_string_value(json_object_get(r.order.events[i].data, "reason"));
    n += (size_t)snprintf(out + n, sizeof out - n, "order %s%s%s\n", r.order.events[i].type,
                          reason ? " " : "", reason ? reason : "");
    assert_true(n < sizeof out);
    assert_int_equal(tl_order_evolve(s, r.order.events[i].type, r.order.events[i].data, T_RESERVED),
                     TL_OK);
  }
  tl_reservation_clear(&r);
  assert_int_equal(r.n_stock, 0);
  assert_int_equal(r.order.n_events, 0);
  out[n] = '\0';
  return strdup(out);
}

static void expect_reservation(tl_order_state *s, const char *want) {
  char *got = reserve_and_fold(s);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void test_reserve_order_reserves_every_product_then_the_order(void **st) {
  (void)st;
  reset_catalog();
  tl_order_state s;
  order_in(&s, TL_ORDER_PENDING);
  expect_reservation(&s,
                     "sku-1 StockReserved 3\n"
                     "sku-2 StockReserved 1\n"
                     "order OrderReserved\n");
  assert_int_equal(s.status, TL_ORDER_RESERVED);
  assert_int_equal(tl_product_available(catalog_product("sku-1")), 7);
  assert_int_equal(tl_product_reserved_for(catalog_product("sku-2"), ORDER_ID), 1);
  /* Settled: deciding again records nothing. */
  expect_reservation(&s, "");
  tl_order_state_clear(&s);
  reset_catalog();
}

static void test_reserve_order_is_all_or_nothing(void **st) {
  (void)st;
  reset_catalog();
  catalog_product("sku-2")->stock = 0;
  tl_order_state s;
  order_in(&s, TL_ORDER_PENDING);
  /* sku-1 had the 3 units: it records nothing for an order that sku-2 cannot serve. */
  expect_reservation(&s,
                     "sku-2 StockReservationRejected 1/0\n"
                     "order OrderRejected OUT_OF_STOCK\n");
  assert_int_equal(s.status, TL_ORDER_REJECTED);
  assert_string_equal(s.rejection_reason, "OUT_OF_STOCK");
  assert_int_equal(catalog_product("sku-1")->reserved, 0);
  assert_int_equal(catalog_product("sku-1")->version, 1);
  expect_reservation(&s, "");
  tl_order_state_clear(&s);

  /* Every product short of units records its rejection. */
  reset_catalog();
  catalog_product("sku-1")->stock = 2;
  catalog_product("sku-2")->stock = 0;
  order_in(&s, TL_ORDER_PENDING);
  expect_reservation(&s,
                     "sku-1 StockReservationRejected 3/2\n"
                     "sku-2 StockReservationRejected 1/0\n"
                     "order OrderRejected OUT_OF_STOCK\n");
  tl_order_state_clear(&s);
  reset_catalog();
}

static void test_reserve_order_sums_a_product_listed_twice(void **st) {
  (void)st;
  reset_catalog();
  tl_order_state s;
  order_in(&s, TL_ORDER_PENDING);
  snprintf(s.items[1].product_id, sizeof s.items[1].product_id, "sku-1"); /* 3 + 1 of sku-1 */
  catalog_product("sku-1")->stock = 4;
  expect_reservation(&s, "sku-1 StockReserved 4\norder OrderReserved\n");
  tl_order_state_clear(&s);

  reset_catalog();
  order_in(&s, TL_ORDER_PENDING);
  snprintf(s.items[1].product_id, sizeof s.items[1].product_id, "sku-1");
  catalog_product("sku-1")->stock = 3; /* each line alone fits, the sum does not */
  expect_reservation(&s, "sku-1 StockReservationRejected 4/3\norder OrderRejected OUT_OF_STOCK\n");
  tl_order_state_clear(&s);
  reset_catalog();
}

/* A product that already holds this order's units (reserved by the per-product flow of an
 * earlier version) is not reserved twice, and gives them back if the order is rejected. */
static void test_reserve_order_with_a_reservation_already_held(void **st) {
  (void)st;
  reset_catalog();
  json_t *held =
      json_pack("{s:s, s:s, s:i}", "productId", "sku-1", "orderId", ORDER_ID, "quantity", 3);
  assert_int_equal(tl_product_evolve(catalog_product("sku-1"), "StockReserved", held, T_PLACED),
                   TL_OK);
  tl_order_state s;
  order_in(&s, TL_ORDER_PENDING);
  expect_reservation(&s, "sku-2 StockReserved 1\norder OrderReserved\n");
  assert_int_equal(catalog_product("sku-1")->reserved, 3);
  tl_order_state_clear(&s);

  reset_catalog();
  assert_int_equal(tl_product_evolve(catalog_product("sku-1"), "StockReserved", held, T_PLACED),
                   TL_OK);
  catalog_product("sku-2")->stock = 0;
  order_in(&s, TL_ORDER_PENDING);
  expect_reservation(&s,
                     "sku-1 StockReleased 3\n"
                     "sku-2 StockReservationRejected 1/0\n"
                     "order OrderRejected OUT_OF_STOCK\n");
  assert_int_equal(catalog_product("sku-1")->reserved, 0);
  json_decref(held);
  tl_order_state_clear(&s);
  reset_catalog();
}

static void test_reserve_order_of_a_product_that_does_not_exist(void **st) {
  (void)st;
  reset_catalog();
  tl_order_state s;
  order_in(&s, TL_ORDER_PENDING);
  snprintf(s.items[1].product_id, sizeof s.items[1].product_id, "ghost"); /* version 0 */
  expect_reservation(&s, "order OrderRejected OUT_OF_STOCK\n");
  tl_order_state_clear(&s);
  order_in(&s, TL_ORDER_PENDING);
  snprintf(s.items[0].product_id, sizeof s.items[0].product_id, "nowhere"); /* lookup: NULL */
  expect_reservation(&s, "order OrderRejected OUT_OF_STOCK\n");
  assert_int_equal(catalog_product("sku-2")->version, 1); /* sku-2 fitted: nothing recorded */
  tl_order_state_clear(&s);
  reset_catalog();
}

static void test_reserve_order_decides_nothing_unless_pending(void **st) {
  (void)st;
  const tl_order_status settled[] = {TL_ORDER_RESERVED, TL_ORDER_REJECTED, TL_ORDER_PAID,
                                     TL_ORDER_SHIPPED, TL_ORDER_CANCELLED};
  for (size_t i = 0; i < TL_ARRAY_LEN(settled); i++) {
    reset_catalog();
    tl_order_state s;
    order_in(&s, settled[i]);
    int64_t version = s.version;
    expect_reservation(&s, "");
    assert_int_equal(s.version, version);
    assert_int_equal(catalog_product("sku-1")->version, 1);
    tl_order_state_clear(&s);
  }
  tl_order_state s;
  order_in(&s, TL_ORDER_NONE);
  tl_reservation r;
  assert_int_equal(tl_order_decide_reservation(&s, lookup, NULL, &r), TL_E_NOTFOUND);
  assert_int_equal(r.order.problem.status, 404);
  assert_string_equal(r.order.problem.code, "ORDER_NOT_FOUND");
  assert_int_equal(r.n_stock, 0);
  assert_int_equal(r.order.n_events, 0);
  tl_reservation_clear(&r);
  assert_true(tl_cmd_is_order(TL_CMD_RESERVE_ORDER));
  assert_string_equal(tl_cmd_name(TL_CMD_RESERVE_ORDER), "reserve_order");
  /* tl_order_decide does not take it: only the multi-stream decision does. */
  expect_refusal(TL_ORDER_PENDING, TL_CMD_RESERVE_ORDER, TL_E_INVALID, 400, "VALIDATION_FAILED");
  reset_catalog();
}

/* ---- evolve -------------------------------------------------------------------------------- */

static void test_evolve_folds_the_lifecycle(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PENDING);
  assert_int_equal(st.version, 1);
  assert_int_equal(st.status, TL_ORDER_PENDING);
  assert_string_equal(st.order_id, ORDER_ID);
  assert_string_equal(st.customer_id, CUSTOMER_ID);
  assert_string_equal(st.currency, "USD");
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.n_items, 2);
  assert_string_equal(st.items[0].product_id, "sku-1");
  assert_int_equal(st.items[0].quantity, 3);
  assert_int_equal(st.items[0].price_minor, 10);
  assert_string_equal(st.items[1].product_id, "sku-2");
  assert_int_equal(st.items[1].quantity, 1);
  assert_int_equal(st.items[1].price_minor, 20);
  json_t *want_addr = address();
  assert_true(json_equal(st.shipping, want_addr));
  json_decref(want_addr);
  assert_int_equal(st.created_ms, T_PLACED);
  assert_int_equal(st.updated_ms, T_PLACED);
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_RESERVED);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.status, TL_ORDER_RESERVED);
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.n_items, 2);
  assert_int_equal(st.created_ms, T_PLACED);
  assert_int_equal(st.updated_ms, T_RESERVED);
  assert_string_equal(st.rejection_reason, "");
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_REJECTED);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.status, TL_ORDER_REJECTED);
  assert_string_equal(st.rejection_reason, "OUT_OF_STOCK");
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.created_ms, T_PLACED);
  assert_int_equal(st.updated_ms, T_REJECTED);
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_PAID);
  assert_int_equal(st.version, 3);
  assert_int_equal(st.status, TL_ORDER_PAID);
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.created_ms, T_PLACED);
  assert_int_equal(st.updated_ms, T_PAID);
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_SHIPPED);
  assert_int_equal(st.version, 4);
  assert_int_equal(st.status, TL_ORDER_SHIPPED);
  assert_int_equal(st.created_ms, T_PLACED);
  assert_int_equal(st.updated_ms, T_SHIPPED);
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_CANCELLED);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.status, TL_ORDER_CANCELLED);
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.updated_ms, T_CANCELLED);
  assert_string_equal(st.rejection_reason, "");
  tl_order_state_clear(&st);
}

/* The saga's events as they come back from the log (text). */
static void test_evolve_reserved_and_rejected_from_stored_text(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PENDING);
  json_t *data = json_loads("{\"orderId\":\"" ORDER_ID "\"}", 0, NULL);
  assert_non_null(data);
  assert_int_equal(tl_order_evolve(&st, "OrderReserved", data, T_RESERVED), TL_OK);
  json_decref(data);
  assert_int_equal(st.status, TL_ORDER_RESERVED);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.updated_ms, T_RESERVED);
  tl_order_state_clear(&st);

  order_in(&st, TL_ORDER_PENDING);
  data = json_loads("{\"orderId\":\"" ORDER_ID "\",\"reason\":\"OUT_OF_STOCK\"}", 0, NULL);
  assert_non_null(data);
  assert_int_equal(tl_order_evolve(&st, "OrderRejected", data, T_REJECTED), TL_OK);
  json_decref(data); /* the state keeps a copy of the reason, not a reference */
  assert_int_equal(st.status, TL_ORDER_REJECTED);
  assert_string_equal(st.rejection_reason, "OUT_OF_STOCK");
  assert_int_equal(st.version, 2);
  assert_int_equal(st.updated_ms, T_REJECTED);
  assert_int_equal(st.n_items, 2); /* the rejected order keeps its lines */
  tl_order_state_clear(&st);
}

static void test_evolve_order_placed_from_stored_text(void **s) {
  (void)s;
  /* Events come back from the log as text: money is a JSON number there. */
  json_t *data = json_loads(
      "{\"orderId\":\"" ORDER_ID "\",\"customerId\":\"" CUSTOMER_ID "\","
      "\"items\":[{\"productId\":\"sku-1\",\"quantity\":3,\"price\":0.1},"
      "{\"productId\":\"sku-2\",\"quantity\":1,\"price\":0.2}],"
      "\"shippingAddress\":{\"street\":\"s\",\"city\":\"c\",\"country\":\"US\","
      "\"postalCode\":\"1\"},"
      "\"currency\":\"EUR\",\"total\":0.5}",
      0, NULL);
  assert_non_null(data);
  tl_order_state st;
  tl_order_state_init(&st);
  /* Without its currency (a v1 event the log did not upcast) the event is refused. */
  json_t *v1 = json_deep_copy(data);
  json_object_del(v1, "currency");
  assert_int_equal(tl_order_evolve(&st, "OrderPlaced", v1, 5000), TL_E_INVALID);
  json_decref(v1);
  tl_order_state_clear(&st);
  tl_order_state_init(&st);
  assert_int_equal(tl_order_evolve(&st, "OrderPlaced", data, 5000), TL_OK);
  assert_int_equal(st.total_minor, 50);
  assert_string_equal(st.currency, "EUR");
  assert_int_equal(st.n_items, 2);
  json_decref(data);
  /* The state keeps its own reference to the address. */
  assert_string_equal(json_string_value(json_object_get(st.shipping, "city")), "c");
  tl_order_state_clear(&st);
}

/* Found by tests/fuzz/fuzz_evolve.c (seen in review, confirmed by the target under UBSan): the
 * total of a stored OrderPlaced could overflow int64. decide bounds it; such an event is
 * refused and changes nothing but the version. */
static void test_evolve_refuses_a_total_that_overflows(void **s) {
  (void)s;
  json_t *data = json_loads("{\"orderId\":\"" ORDER_ID "\",\"customerId\":\"" CUSTOMER_ID "\","
                            "\"items\":[{\"productId\":\"a\",\"quantity\":9223372036854775807,"
                            "\"price\":2}]}",
                            0, NULL);
  assert_non_null(data);
  tl_order_state st;
  tl_order_state_init(&st);
  assert_int_equal(tl_order_evolve(&st, "OrderPlaced", data, 5000), TL_E_INVALID);
  json_decref(data);
  assert_int_equal(st.version, 1);
  assert_int_equal(st.status, TL_ORDER_NONE);
  assert_int_equal(st.n_items, 0);
  assert_null(st.items);
  tl_order_state_clear(&st);
}

/* Found by tests/fuzz/fuzz_evolve.c: ids, currency and reason longer than the state's buffers
 * were cut, splitting UTF-8 sequences, and the order view (GET /orders/{id}/state) could not
 * be built. They are refused. */
static void test_evolve_refuses_strings_that_do_not_fit(void **s) {
  (void)s;
  const char *placed[] = {
      "{\"orderId\":\"01HZY3J6C4Q6V9B8N7M5K3J2H\u00e91\",\"customerId\":\"c\",\"items\":[]}",
      "{\"orderId\":\"o\",\"customerId\":\"" CUSTOMER_ID "x\",\"items\":[]}",
      "{\"orderId\":\"o\",\"customerId\":\"c\",\"currency\":\"x\u20ac\",\"items\":[]}",
  };
  for (size_t i = 0; i < TL_ARRAY_LEN(placed); i++) {
    json_t *data = json_loads(placed[i], 0, NULL);
    assert_non_null(data);
    tl_order_state st;
    tl_order_state_init(&st);
    assert_int_equal(tl_order_evolve(&st, "OrderPlaced", data, 5000), TL_E_INVALID);
    json_decref(data);
    assert_int_equal(st.status, TL_ORDER_NONE);
    json_t *view = tl_order_state_json(&st);
    assert_non_null(view);
    json_decref(view);
    tl_order_state_clear(&st);
  }
  tl_order_state st;
  order_in(&st, TL_ORDER_PENDING);
  char text[256];
  char reason[TL_REASON_CODE_MAX + 2];
  memset(reason, 'R', sizeof reason - 1);
  reason[sizeof reason - 1] = '\0';
  snprintf(text, sizeof text, "{\"orderId\":\"" ORDER_ID "\",\"reason\":\"%s\"}", reason);
  json_t *data = json_loads(text, 0, NULL);
  assert_non_null(data);
  assert_int_equal(tl_order_evolve(&st, "OrderRejected", data, T_REJECTED), TL_E_INVALID);
  json_decref(data);
  assert_int_equal(st.status, TL_ORDER_PENDING);
  assert_string_equal(st.rejection_reason, "");
  tl_order_state_clear(&st);
}

static void test_evolve_unknown_type_only_bumps_version(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PAID);
  json_t *data = json_object();
  assert_int_equal(tl_order_evolve(&st, "OrderNoteAdded", data, T_PAID + 1), TL_OK);
  json_decref(data);
  assert_int_equal(st.version, 4);
  assert_int_equal(st.status, TL_ORDER_PAID);
  assert_int_equal(st.total_minor, 50);
  assert_int_equal(st.n_items, 2);
  assert_int_equal(st.created_ms, T_PLACED);
  tl_order_state_clear(&st);
}

/* domain.h: on TL_E_INVALID "the state is then unchanged apart from the version". */
static void test_evolve_invalid_order_placed_changes_only_the_version(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PAID);
  tl_order_state before;
  tl_order_state_copy(&before, &st);
  const char *bad[] = {"{}", "{\"orderId\":\"o\",\"customerId\":\"c\"}",
                       "{\"orderId\":\"o\",\"customerId\":\"c\",\"items\":[{\"quantity\":1}]}",
                       ("{\"orderId\":\"o\",\"customerId\":\"c\",\"items\":[{\"productId\":\"p\","
                        "\"quantity\":1,\"price\":0.001}]}")};
  for (size_t i = 0; i < TL_ARRAY_LEN(bad); i++) {
    json_t *data = json_loads(bad[i], 0, NULL);
    assert_non_null(data);
    assert_int_equal(tl_order_evolve(&st, "OrderPlaced", data, T_SHIPPED), TL_E_INVALID);
    json_decref(data);
    assert_int_equal(st.version, before.version + (int64_t)i + 1);
    assert_int_equal(st.status, TL_ORDER_PAID);
    assert_string_equal(st.order_id, ORDER_ID);
    assert_int_equal(st.total_minor, 50);
    assert_int_equal(st.n_items, 2);
    assert_int_equal(st.items[0].quantity, 3);
    assert_int_equal(st.created_ms, before.created_ms);
  }
  int64_t updated_after = st.updated_ms, updated_before = before.updated_ms;
  tl_order_state_clear(&before);
  tl_order_state_clear(&st);
  assert_int_equal(updated_after, updated_before); /* the failed event did not happen */
}

static void test_state_copy_is_independent(void **s) {
  (void)s;
  tl_order_state orig;
  order_in(&orig, TL_ORDER_PENDING);
  tl_order_state copy;
  tl_order_state_copy(&copy, &orig);
  assert_ptr_not_equal(copy.items, orig.items);
  assert_int_equal(copy.n_items, 2);
  assert_string_equal(copy.items[1].product_id, "sku-2");
  assert_int_equal(copy.total_minor, 50);

  copy.items[0].quantity = 99;
  snprintf(copy.items[1].product_id, sizeof copy.items[1].product_id, "changed");
  assert_int_equal(orig.items[0].quantity, 3);
  assert_string_equal(orig.items[1].product_id, "sku-2");

  /* Folding into the copy leaves the original where it was. */
  json_t *data = json_pack("{s:s, s:s}", "orderId", ORDER_ID, "paymentId", "p");
  assert_int_equal(tl_order_evolve(&copy, "PaymentConfirmed", data, T_PAID), TL_OK);
  json_decref(data);
  assert_int_equal(copy.status, TL_ORDER_PAID);
  assert_int_equal(orig.status, TL_ORDER_PENDING);
  assert_int_equal(orig.version, 1);

  /* Releasing the copy must not release what the original holds. */
  tl_order_state_clear(&copy);
  assert_null(copy.items);
  assert_string_equal(json_string_value(json_object_get(orig.shipping, "street")), "1 Main St");
  assert_int_equal(orig.items[0].quantity, 3);
  tl_order_state_clear(&orig);

  /* Copying an empty state gives an empty state. */
  tl_order_state empty, empty_copy;
  tl_order_state_init(&empty);
  tl_order_state_copy(&empty_copy, &empty);
  assert_null(empty_copy.items);
  assert_null(empty_copy.shipping);
  tl_order_state_clear(&empty_copy);
}

static void test_state_json_has_documented_members(void **s) {
  (void)s;
  tl_order_state st;
  order_in(&st, TL_ORDER_PAID);
  json_t *j = tl_order_state_json(&st);
  assert_non_null(j);
  assert_int_equal(json_object_size(j), 11);
  assert_string_equal(str_of(j, "orderId"), ORDER_ID);
  assert_string_equal(str_of(j, "customerId"), CUSTOMER_ID);
  assert_string_equal(str_of(j, "status"), "PAID");
  assert_string_equal(str_of(j, "currency"), "USD");
  assert_int_equal(money_of(json_object_get(j, "total")), 50);
  assert_string_equal(str_of(j, "createdAt"), "2023-11-14T22:13:20.000Z");
  assert_string_equal(str_of(j, "updatedAt"), "2023-11-14T22:14:20.000Z");
  assert_int_equal(json_integer_value(json_object_get(j, "version")), 3);
  assert_true(json_is_null(json_object_get(j, "rejectionReason"))); /* present, null */
  json_t *want_addr = address();
  assert_true(json_equal(json_object_get(j, "shippingAddress"), want_addr));
  json_decref(want_addr);
  const json_t *items = json_object_get(j, "items");
  assert_int_equal(json_array_size(items), 2);
  const json_t *i0 = json_array_get(items, 0);
  assert_int_equal(json_object_size(i0), 3);
  assert_string_equal(str_of(i0, "productId"), "sku-1");
  assert_int_equal(json_integer_value(json_object_get(i0, "quantity")), 3);
  assert_int_equal(money_of(json_object_get(i0, "price")), 10);
  json_decref(j);
  /* The JSON does not hold on to the state: it can be released first. */
  tl_order_state_clear(&st);
}

static void test_state_json_rejection_reason(void **s) {
  (void)s;
  const tl_order_status not_rejected[] = {TL_ORDER_PENDING, TL_ORDER_RESERVED, TL_ORDER_PAID,
                                          TL_ORDER_SHIPPED, TL_ORDER_CANCELLED};
  for (size_t i = 0; i < TL_ARRAY_LEN(not_rejected); i++) {
    tl_order_state st;
    order_in(&st, not_rejected[i]);
    json_t *j = tl_order_state_json(&st);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 11);
    assert_string_equal(str_of(j, "status"), tl_order_status_name(not_rejected[i]));
    assert_non_null(json_object_get(j, "rejectionReason"));
    assert_true(json_is_null(json_object_get(j, "rejectionReason")));
    json_decref(j);
    tl_order_state_clear(&st);
  }
  tl_order_state st;
  order_in(&st, TL_ORDER_REJECTED);
  json_t *j = tl_order_state_json(&st);
  assert_non_null(j);
  assert_int_equal(json_object_size(j), 11);
  assert_string_equal(str_of(j, "status"), "REJECTED");
  assert_string_equal(str_of(j, "rejectionReason"), "OUT_OF_STOCK");
  assert_string_equal(str_of(j, "updatedAt"), "2023-11-14T22:14:00.000Z");
  assert_int_equal(json_integer_value(json_object_get(j, "version")), 2);
  json_decref(j);
  tl_order_state_clear(&st);
}

static void test_state_json_of_empty_state(void **s) {
  (void)s;
  tl_order_state st;
  tl_order_state_init(&st);
  json_t *j = tl_order_state_json(&st);
  assert_non_null(j);
  assert_string_equal(str_of(j, "status"), "NONE");
  assert_true(json_is_null(json_object_get(j, "shippingAddress")));
  assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
  assert_int_equal(json_integer_value(json_object_get(j, "version")), 0);
  assert_true(json_is_null(json_object_get(j, "rejectionReason")));
  json_decref(j);
  tl_order_state_clear(&st);
}

static void test_status_names_and_stream_names(void **s) {
  (void)s;
  assert_string_equal(tl_order_status_name(TL_ORDER_NONE), "NONE");
  assert_string_equal(tl_order_status_name(TL_ORDER_PENDING), "PENDING");
  assert_string_equal(tl_order_status_name(TL_ORDER_RESERVED), "RESERVED");
  assert_string_equal(tl_order_status_name(TL_ORDER_REJECTED), "REJECTED");
  assert_string_equal(tl_order_status_name(TL_ORDER_PAID), "PAID");
  assert_string_equal(tl_order_status_name(TL_ORDER_SHIPPED), "SHIPPED");
  assert_string_equal(tl_order_status_name(TL_ORDER_CANCELLED), "CANCELLED");
  char name[80];
  tl_stream_name(name, sizeof name, true, ORDER_ID);
  assert_string_equal(name, "order-" ORDER_ID);
  tl_stream_name(name, sizeof name, false, "sku-1");
  assert_string_equal(name, "product-sku-1");
}

static int setup(void **s) {
  (void)s;
  catalog_init();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_place_order_on_new_order_emits_order_placed),
      cmocka_unit_test(test_place_order_total_is_exact_for_many_small_prices),
      cmocka_unit_test(test_place_order_total_over_money_limit_is_refused),
      cmocka_unit_test(test_place_order_unknown_product_is_field_error),
      cmocka_unit_test(test_place_order_reports_every_unknown_product),
      cmocka_unit_test(test_place_order_without_lookup_knows_no_product),
      cmocka_unit_test(test_place_order_on_existing_order_conflicts),
      cmocka_unit_test(test_commands_on_missing_order_are_not_found),
      cmocka_unit_test(test_confirm_payment_transitions),
      cmocka_unit_test(test_ship_transitions),
      cmocka_unit_test(test_cancel_transitions),
      cmocka_unit_test(test_mark_reserved_transitions),
      cmocka_unit_test(test_reject_order_transitions),
      cmocka_unit_test(test_saga_commands_target_the_right_aggregate),
      cmocka_unit_test(test_product_command_is_not_an_order_command),
      cmocka_unit_test(test_reserve_order_reserves_every_product_then_the_order),
      cmocka_unit_test(test_reserve_order_is_all_or_nothing),
      cmocka_unit_test(test_reserve_order_sums_a_product_listed_twice),
      cmocka_unit_test(test_reserve_order_with_a_reservation_already_held),
      cmocka_unit_test(test_reserve_order_of_a_product_that_does_not_exist),
      cmocka_unit_test(test_reserve_order_decides_nothing_unless_pending),
      cmocka_unit_test(test_evolve_folds_the_lifecycle),
      cmocka_unit_test(test_evolve_order_placed_from_stored_text),
      cmocka_unit_test(test_evolve_reserved_and_rejected_from_stored_text),
      cmocka_unit_test(test_evolve_unknown_type_only_bumps_version),
      cmocka_unit_test(test_evolve_invalid_order_placed_changes_only_the_version),
      cmocka_unit_test(test_state_copy_is_independent),
      cmocka_unit_test(test_state_json_has_documented_members),
      cmocka_unit_test(test_state_json_rejection_reason),
      cmocka_unit_test(test_state_json_of_empty_state),
      cmocka_unit_test(test_status_names_and_stream_names),
      cmocka_unit_test(test_evolve_refuses_a_total_that_overflows),
      cmocka_unit_test(test_evolve_refuses_strings_that_do_not_fit),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
