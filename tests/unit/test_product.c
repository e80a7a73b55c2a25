/* test_product.c: the product aggregate (domain/product.c): tl_product_decide and
 * tl_product_evolve. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "domain/domain.h"
#include "util/tl_common.h"
#include "util/tl_money.h"

#include <stdio.h>
#include <string.h>

#define T_CREATED 1700000000000LL
#define T_RESTOCKED (T_CREATED + 1000)

/* ---- helpers ------------------------------------------------------------------------------- */

static void create_cmd(tl_cmd *c) {
  memset(c, 0, sizeof *c);
  c->kind = TL_CMD_CREATE_PRODUCT;
  snprintf(c->id, sizeof c->id, "sku-1");
  snprintf(c->name, sizeof c->name, "Espresso Machine");
  snprintf(c->category, sizeof c->category, "kitchen");
  memcpy(c->currency, "EUR", 4);
  c->price_minor = 19999;
  c->quantity = 7;
}

static void restock_cmd(tl_cmd *c, const char *id, int64_t quantity) {
  memset(c, 0, sizeof *c);
  c->kind = TL_CMD_RESTOCK;
  snprintf(c->id, sizeof c->id, "%s", id);
  c->quantity = quantity;
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

/* Decides c against s and folds the single resulting event at time ms. */
static void decide_and_fold(tl_product_state *s, const tl_cmd *c, int64_t ms) {
  tl_decision d;
  memset(&d, 0, sizeof d);
  int rc = tl_product_decide(s, c, &d);
  if (rc != TL_OK) fail_msg("decide refused: %d %s", rc, d.problem.detail);
  assert_int_equal(d.n_events, 1);
  assert_int_equal(tl_product_evolve(s, d.events[0].type, d.events[0].data, ms), TL_OK);
  tl_decision_clear(&d);
}

/* A product state after its creation at T_CREATED. */
static void created_product(tl_product_state *s) {
  tl_product_state_init(s);
  tl_cmd c;
  create_cmd(&c);
  decide_and_fold(s, &c, T_CREATED);
  tl_cmd_clear(&c);
}

/* ---- decide -------------------------------------------------------------------------------- */

static void test_create_on_new_product_emits_product_created(void **s) {
  (void)s;
  tl_product_state st;
  tl_product_state_init(&st);
  tl_cmd c;
  create_cmd(&c);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_product_decide(&st, &c, &d), TL_OK);
  assert_int_equal(d.n_events, 1);
  assert_string_equal(d.events[0].type, "ProductCreated");
  const json_t *data = d.events[0].data;
  assert_int_equal(json_object_size(data), 6);
  assert_string_equal(str_of(data, "productId"), "sku-1");
  assert_string_equal(str_of(data, "name"), "Espresso Machine");
  assert_string_equal(str_of(data, "category"), "kitchen");
  assert_int_equal(money_of(json_object_get(data, "price")), 19999);
  assert_string_equal(str_of(data, "currency"), "EUR");
  assert_true(json_is_integer(json_object_get(data, "stock")));
  assert_int_equal(json_integer_value(json_object_get(data, "stock")), 7);
  assert_null(d.problem.code);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

static void test_create_on_existing_product_conflicts(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  tl_cmd c;
  create_cmd(&c);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_product_decide(&st, &c, &d), TL_E_CONFLICT);
  assert_int_equal(d.problem.status, 409);
  assert_string_equal(d.problem.code, "PRODUCT_EXISTS");
  assert_non_null(strstr(d.problem.detail, "sku-1"));
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);
}

static void test_restock_on_missing_product_is_not_found(void **s) {
  (void)s;
  tl_product_state st;
  tl_product_state_init(&st);
  tl_cmd c;
  restock_cmd(&c, "sku-404", 5);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_product_decide(&st, &c, &d), TL_E_NOTFOUND);
  assert_int_equal(d.problem.status, 404);
  assert_string_equal(d.problem.code, "PRODUCT_NOT_FOUND");
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);
}

static void test_restock_emits_product_restocked(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  tl_cmd c;
  restock_cmd(&c, "sku-1", 25);
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_product_decide(&st, &c, &d), TL_OK);
  assert_int_equal(d.n_events, 1);
  assert_string_equal(d.events[0].type, "ProductRestocked");
  const json_t *data = d.events[0].data;
  assert_int_equal(json_object_size(data), 2);
  assert_string_equal(str_of(data, "productId"), "sku-1");
  assert_int_equal(json_integer_value(json_object_get(data, "quantity")), 25);
  tl_decision_clear(&d);
}

static void test_order_command_is_not_a_product_command(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  tl_cmd c;
  memset(&c, 0, sizeof c);
  c.kind = TL_CMD_SHIP;
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_product_decide(&st, &c, &d), TL_E_INVALID);
  assert_int_equal(d.problem.status, 400);
  assert_string_equal(d.problem.code, "VALIDATION_FAILED");
  assert_int_equal(d.n_events, 0);
  tl_decision_clear(&d);
}

/* ---- evolve -------------------------------------------------------------------------------- */

static void test_evolve_product_created_fills_every_field(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  assert_int_equal(st.version, 1);
  assert_string_equal(st.product_id, "sku-1");
  assert_string_equal(st.name, "Espresso Machine");
  assert_string_equal(st.category, "kitchen");
  assert_string_equal(st.currency, "EUR");
  assert_int_equal(st.price_minor, 19999);
  assert_int_equal(st.stock, 7);
  assert_int_equal(st.created_ms, T_CREATED);
  assert_int_equal(st.updated_ms, T_CREATED);
}

static void test_evolve_product_created_from_stored_text(void **s) {
  (void)s;
  /* As read back from the log: money as a JSON number, currency absent means USD. */
  json_t *data = json_loads("{\"productId\":\"p-9\",\"name\":\"Tea\",\"category\":\"drinks\","
                            "\"price\":9.99,\"stock\":3}",
                            0, NULL);
  assert_non_null(data);
  tl_product_state st;
  tl_product_state_init(&st);
  assert_int_equal(tl_product_evolve(&st, "ProductCreated", data, 42), TL_OK);
  json_decref(data);
  assert_int_equal(st.version, 1);
  assert_string_equal(st.product_id, "p-9");
  assert_string_equal(st.name, "Tea");
  assert_string_equal(st.category, "drinks");
  assert_string_equal(st.currency, "USD");
  assert_int_equal(st.price_minor, 999);
  assert_int_equal(st.stock, 3);
  assert_int_equal(st.created_ms, 42);
  assert_int_equal(st.updated_ms, 42);
}

static void test_evolve_restock_adds_stock(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  tl_cmd c;
  restock_cmd(&c, "sku-1", 25);
  decide_and_fold(&st, &c, T_RESTOCKED);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.stock, 32);
  assert_int_equal(st.created_ms, T_CREATED);
  assert_int_equal(st.updated_ms, T_RESTOCKED);
  restock_cmd(&c, "sku-1", 1);
  decide_and_fold(&st, &c, T_RESTOCKED + 1);
  assert_int_equal(st.version, 3);
  assert_int_equal(st.stock, 33);
  /* Restocking touches nothing else. */
  assert_string_equal(st.name, "Espresso Machine");
  assert_int_equal(st.price_minor, 19999);
}

static void test_evolve_unknown_type_only_bumps_version(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  json_t *data = json_object();
  assert_int_equal(tl_product_evolve(&st, "ProductRenamed", data, T_RESTOCKED), TL_OK);
  json_decref(data);
  assert_int_equal(st.version, 2);
  assert_int_equal(st.stock, 7);
  assert_string_equal(st.name, "Espresso Machine");
}

/* domain.h: on TL_E_INVALID "the state is then unchanged apart from the version". */
static void test_evolve_invalid_product_created_changes_only_the_version(void **s) {
  (void)s;
  tl_product_state st;
  created_product(&st);
  tl_product_state before = st;
  const char *bad[] = {"{}", "{\"productId\":\"x\",\"name\":\"n\",\"category\":\"c\"}",
                       "{\"productId\":\"x\",\"name\":\"n\",\"category\":\"c\",\"price\":0.001}",
                       "{\"productId\":\"x\",\"category\":\"c\",\"price\":1}"};
  for (size_t i = 0; i < TL_ARRAY_LEN(bad); i++) {
    json_t *data = json_loads(bad[i], 0, NULL);
    assert_non_null(data);
    assert_int_equal(tl_product_evolve(&st, "ProductCreated", data, T_RESTOCKED), TL_E_INVALID);
    json_decref(data);
    assert_int_equal(st.version, before.version + (int64_t)i + 1);
    assert_string_equal(st.product_id, before.product_id);
    assert_string_equal(st.name, before.name);
    assert_string_equal(st.category, before.category);
    assert_string_equal(st.currency, before.currency);
    assert_int_equal(st.price_minor, before.price_minor);
    assert_int_equal(st.stock, before.stock);
    assert_int_equal(st.created_ms, before.created_ms);
    assert_int_equal(st.updated_ms, before.updated_ms);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_on_new_product_emits_product_created),
      cmocka_unit_test(test_create_on_existing_product_conflicts),
      cmocka_unit_test(test_restock_on_missing_product_is_not_found),
      cmocka_unit_test(test_restock_emits_product_restocked),
      cmocka_unit_test(test_order_command_is_not_a_product_command),
      cmocka_unit_test(test_evolve_product_created_fills_every_field),
      cmocka_unit_test(test_evolve_product_created_from_stored_text),
      cmocka_unit_test(test_evolve_restock_adds_stock),
      cmocka_unit_test(test_evolve_unknown_type_only_bumps_version),
      cmocka_unit_test(test_evolve_invalid_product_created_changes_only_the_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
