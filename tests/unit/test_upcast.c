/* test_upcast.c: event schema versions and the OrderPlaced v1 -> v2 upcaster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "domain/upcast.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char V1[] =
    "{\"orderId\":\"01J0000000000000000000000A\",\"customerId\":\"c\","
    "\"items\":[{\"productId\":\"p\",\"quantity\":3,\"price\":19.99}],"
    "\"shippingAddress\":{\"city\":\"x\"},\"total\":9999999999.99}";

static void test_latest_versions(void **s) {
  (void)s;
  assert_int_equal(tl_event_schema_version("OrderPlaced"), 2);
  assert_int_equal(tl_event_schema_version("PaymentConfirmed"), 1);
  assert_int_equal(tl_event_schema_version("NoSuchEvent"), 1);
}

static void test_order_placed_v1_gets_usd_and_keeps_everything_exact(void **s) {
  (void)s;
  char *out = NULL;
  int v = 0;
  assert_int_equal(tl_upcast("OrderPlaced", 1, V1, &out, &v), TL_OK);
  assert_non_null(out);
  assert_int_equal(v, 2);
  /* Same members in the same order, amounts written exactly, currency added at the end. */
  assert_string_equal(out,
                      "{\"orderId\":\"01J0000000000000000000000A\",\"customerId\":\"c\","
                      "\"items\":[{\"productId\":\"p\",\"quantity\":3,\"price\":19.99}],"
                      "\"shippingAddress\":{\"city\":\"x\"},\"total\":9999999999.99,"
                      "\"currency\":\"USD\"}");
  free(out);
}

static void test_v1_with_a_currency_keeps_it(void **s) {
  (void)s;
  char *out = NULL;
  int v = 0;
  assert_int_equal(
      tl_upcast("OrderPlaced", 1, "{\"orderId\":\"o\",\"currency\":\"EUR\"}", &out, &v), TL_OK);
  json_t *j = json_loads(out, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(j, "currency")), "EUR");
  json_decref(j);
  free(out);
}

static void test_nothing_to_do(void **s) {
  (void)s;
  char *out = (char *)1;
  int v = 7;
  assert_int_equal(tl_upcast("OrderPlaced", 2, "{\"currency\":\"EUR\"}", &out, &v), TL_OK);
  assert_null(out);
  assert_int_equal(v, 7);
  assert_int_equal(tl_upcast("PaymentConfirmed", 1, "not even json", &out, &v), TL_OK);
  assert_null(out); /* a latest version is not parsed at all */
}

static void test_unknown_versions_and_garbage(void **s) {
  (void)s;
  char *out = NULL;
  int v = 0;
  assert_int_equal(tl_upcast("OrderPlaced", 3, "{}", &out, &v), TL_E_INVALID); /* newer */
  assert_int_equal(tl_upcast("OrderPlaced", 0, "{}", &out, &v), TL_E_INVALID);
  assert_int_equal(tl_upcast("OrderPlaced", -5, "{}", &out, &v), TL_E_INVALID);
  assert_int_equal(tl_upcast("OrderPlaced", 1, "{\"orderId\":", &out, &v), TL_E_INVALID);
  assert_int_equal(tl_upcast("OrderPlaced", 1, "[1,2]", &out, &v), TL_E_INVALID);
  assert_int_equal(tl_upcast("PaymentConfirmed", 2, "{}", &out, &v), TL_E_INVALID);
  assert_null(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_latest_versions),
      cmocka_unit_test(test_order_placed_v1_gets_usd_and_keeps_everything_exact),
      cmocka_unit_test(test_v1_with_a_currency_keeps_it),
      cmocka_unit_test(test_nothing_to_do),
      cmocka_unit_test(test_unknown_versions_and_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
