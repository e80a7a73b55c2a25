/* test_route_match.c: path splitting, route matching and the HTTP value parsers
 * (http/route_match.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/route_match.h"
#include "util/tl_common.h"

#include <string.h>

static char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN];

static void test_split_path(void **s) {
  (void)s;
  assert_int_equal(tl_route_split_path("/", seg), 0);
  assert_int_equal(tl_route_split_path("/orders/abc/ship", seg), 3);
  assert_string_equal(seg[0], "orders");
  assert_string_equal(seg[1], "abc");
  assert_string_equal(seg[2], "ship");
  assert_int_equal(tl_route_split_path("/orders/", seg), 1);
  assert_int_equal(tl_route_split_path("/orders//", seg), 1); /* the documented quirk */
  assert_int_equal(tl_route_split_path("/orders///", seg), -1);
  assert_int_equal(tl_route_split_path("//", seg), -1);
  assert_int_equal(tl_route_split_path("/a//b", seg), -1);
  assert_int_equal(tl_route_split_path("orders", seg), -1);
  assert_int_equal(tl_route_split_path("/1/2/3/4/5/6/7/8", seg), 8);
  assert_int_equal(tl_route_split_path("/1/2/3/4/5/6/7/8/9", seg), -1);
  char long_path[TL_ROUTE_MAX_SEGMENT_LEN + 2];
  long_path[0] = '/';
  memset(long_path + 1, 'x', TL_ROUTE_MAX_SEGMENT_LEN);
  long_path[TL_ROUTE_MAX_SEGMENT_LEN + 1] = '\0';
  assert_int_equal(tl_route_split_path(long_path, seg), -1);
  long_path[TL_ROUTE_MAX_SEGMENT_LEN] = '\0'; /* 255 bytes: the longest segment */
  assert_int_equal(tl_route_split_path(long_path, seg), 1);
}

static void test_match(void **s) {
  (void)s;
  const char *caps[TL_ROUTE_MAX_CAPTURES] = {NULL, NULL};
  int n = tl_route_split_path("/customers/c1/orders", seg);
  assert_true(tl_route_match("/customers/{}/orders", seg, n, caps));
  assert_ptr_equal(caps[0], seg[1]);
  assert_null(caps[1]);
  assert_false(tl_route_match("/customers/{}", seg, n, caps));
  assert_false(tl_route_match("/customers/{}/orders/{}", seg, n, caps));
  assert_false(tl_route_match("/orders/{}/orders", seg, n, caps));
  n = tl_route_split_path("/", seg);
  assert_true(tl_route_match("/", seg, n, caps));
  assert_false(tl_route_match("/health", seg, n, caps));
}

/* Found by tests/fuzz/fuzz_routes.c: with a maximum below 9, (max - digit) / 10 rounds a
 * negative difference up to 0, so "5" passed a maximum of 2. Callers pass INT64_MAX today. */
static void test_parse_uint(void **s) {
  (void)s;
  int64_t v = -1;
  assert_int_equal(tl_route_parse_uint("5", 2, &v), TL_E_INVALID);
  assert_int_equal(v, -1);
  assert_int_equal(tl_route_parse_uint("9", 8, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("2", 2, &v), TL_OK);
  assert_int_equal(v, 2);
  assert_int_equal(tl_route_parse_uint("0", 0, &v), TL_OK);
  assert_int_equal(v, 0);
  assert_int_equal(tl_route_parse_uint("1", 0, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("0", -1, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("100", 99, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("9223372036854775807", INT64_MAX, &v), TL_OK);
  assert_true(v == INT64_MAX);
  assert_int_equal(tl_route_parse_uint("9223372036854775808", INT64_MAX, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("", INT64_MAX, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint("-1", INT64_MAX, &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_uint(" 1", INT64_MAX, &v), TL_E_INVALID);
}

static void test_header_values(void **s) {
  (void)s;
  int64_t v = 0;
  assert_int_equal(tl_route_parse_if_match("\"3\"", &v), TL_OK);
  assert_int_equal(v, 3);
  assert_int_equal(tl_route_parse_if_match("7", &v), TL_OK);
  assert_int_equal(v, 7);
  assert_int_equal(tl_route_parse_if_match("W/\"3\"", &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_if_match("\"", &v), TL_E_INVALID);
  assert_int_equal(tl_route_parse_if_match("\"\"", &v), TL_E_INVALID);
  assert_true(tl_route_valid_idem_key("checkout-7f3a"));
  assert_true(tl_route_valid_idem_key("a b"));
  assert_false(tl_route_valid_idem_key(""));
  assert_false(tl_route_valid_idem_key("tab\there"));
  char key[130];
  memset(key, 'k', 128);
  key[128] = '\0';
  assert_true(tl_route_valid_idem_key(key));
  key[128] = 'k';
  key[129] = '\0';
  assert_false(tl_route_valid_idem_key(key));
  assert_true(tl_route_is_json_content_type("application/json"));
  assert_true(tl_route_is_json_content_type("  Application/JSON; charset=utf-8"));
  assert_false(tl_route_is_json_content_type("application/jsonx"));
  assert_false(tl_route_is_json_content_type("text/plain"));
  assert_false(tl_route_is_json_content_type(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_path),
      cmocka_unit_test(test_match),
      cmocka_unit_test(test_parse_uint),
      cmocka_unit_test(test_header_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
