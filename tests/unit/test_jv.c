/* test_jv.c: the one-pass JSON view (util/tl_jv.c): what it reads, what it refuses (always
 * checked against jansson's json_loads, which it replaces), and reuse of one document. The
 * fuzz target fuzz_jv compares the two on arbitrary input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/tl_common.h"
#include "util/tl_jv.h"
#include "util/tl_money.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ORDER[] =
    "{\"orderId\":\"01M84VHWWB7KGWYCV52BR88RN4\",\"customerId\":\"c-1\","
    "\"items\":[{\"productId\":\"p91\",\"quantity\":3,\"price\":6.99},"
    "{\"productId\":\"p24\",\"quantity\":2,\"price\":29}],"
    "\"shippingAddress\":{\"street\":\"625 Bench Street\",\"city\":\"Lyon\"},"
    "\"currency\":\"USD\",\"total\":168.93,\"gift\":false,\"note\":null}";

static const tl_jv *parse(tl_jdoc *d, const char *text) {
  const tl_jv *root = NULL;
  assert_int_equal(tl_jdoc_parse(d, text, strlen(text), &root), TL_OK);
  assert_non_null(root);
  return root;
}

static void test_reads_an_order(void **s) {
  (void)s;
  tl_jdoc d = {0};
  const tl_jv *o = parse(&d, ORDER);
  assert_int_equal(o->type, TL_JV_OBJECT);
  assert_int_equal(tl_jv_size(o), 8);
  assert_string_equal(tl_jv_string(tl_jv_get(o, "orderId")), "01M84VHWWB7KGWYCV52BR88RN4");
  assert_int_equal(tl_jv_string_len(tl_jv_get(o, "customerId")), 3);
  assert_true(tl_jv_is(tl_jv_get(o, "gift"), TL_JV_FALSE));
  assert_true(tl_jv_is(tl_jv_get(o, "note"), TL_JV_NULL));
  assert_true(tl_jv_real(tl_jv_get(o, "total")) == 168.93);
  /* Absent members and wrong types answer "nothing", and chain. */
  assert_null(tl_jv_get(o, "missing"));
  assert_null(tl_jv_string(tl_jv_get(o, "total")));
  assert_int_equal(tl_jv_integer(tl_jv_get(o, "total")), 0); /* a real, as json_integer_value */
  assert_null(tl_jv_get(tl_jv_get(o, "missing"), "x"));
  assert_int_equal(tl_jv_size(tl_jv_get(o, "orderId")), 0);
  int n = 0;
  TL_JV_FOREACH(m, tl_jv_get(o, "orderId")) n++; /* a string has no members */
  TL_JV_FOREACH(m, NULL) n++;
  assert_int_equal(n, 0);

  const char *pids[2] = {0};
  int64_t qty[2] = {0}, price[2] = {0};
  TL_JV_FOREACH(it, tl_jv_get(o, "items")) {
    assert_null(it->key);
    pids[n] = tl_jv_string(tl_jv_get(it, "productId"));
    qty[n] = tl_jv_integer(tl_jv_get(it, "quantity"));
    assert_int_equal(tl_money_from_jv(tl_jv_get(it, "price"), &price[n]), TL_OK);
    n++;
  }
  assert_int_equal(n, 2);
  assert_string_equal(pids[0], "p91");
  assert_string_equal(pids[1], "p24");
  assert_true(qty[0] == 3 && qty[1] == 2);
  assert_true(price[0] == 699 && price[1] == 2900);
  /* Members in document order, with their names. */
  const char *names[8];
  n = 0;
  TL_JV_FOREACH(m, o) names[n++] = m->key;
  assert_string_equal(names[0], "orderId");
  assert_string_equal(names[3], "shippingAddress");
  assert_string_equal(names[7], "note");
  /* The address written back as tl_json_dumps writes what json_loads read. */
  char *text = tl_jv_dumps(tl_jv_get(o, "shippingAddress"));
  assert_string_equal(text, "{\"street\":\"625 Bench Street\",\"city\":\"Lyon\"}");
  free(text);
  tl_jdoc_free(&d);
}

static void test_strings_decode_as_jansson(void **s) {
  (void)s;
  static const char *const texts[] = {
      "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]",
      "[\"\\u00e9\\u20AC\\ud83d\\ude00 caf\xc3\xa9 \xf0\x9f\x98\x80\"]",
      "[\"\"]",
      "[\"\\u001f\x7f\"]",
      "{\"k\\u00e9y\":\"\\u0001\"}",
  };
  tl_jdoc d = {0};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    const tl_jv *root = parse(&d, texts[i]);
    json_t *j = json_loads(texts[i], 0, NULL);
    assert_non_null(j);
    const tl_jv *v = tl_jv_first(root);
    const json_t *w =
        json_is_array(j) ? json_array_get(j, 0) : json_object_iter_value(json_object_iter(j));
    assert_int_equal(tl_jv_string_len(v), json_string_length(w));
    assert_memory_equal(tl_jv_string(v), json_string_value(w), json_string_length(w));
    if (json_is_object(j)) assert_string_equal(v->key, json_object_iter_key(json_object_iter(j)));
    json_decref(j);
  }
  tl_jdoc_free(&d);
}

static void test_numbers_as_jansson(void **s) {
  (void)s;
  tl_jdoc d = {0};
  const tl_jv *a = parse(&d,
                         "[0,-0,9223372036854775807,-9223372036854775808,1.5,-0.0,1e2,"
                         "2E-3,1e-400,0.1e1]");
  json_t *j = json_loads(
      "[0,-0,9223372036854775807,-9223372036854775808,1.5,-0.0,1e2,"
      "2E-3,1e-400,0.1e1]",
      0, NULL);
  assert_non_null(j);
  size_t i = 0;
  TL_JV_FOREACH(v, a) {
    const json_t *w = json_array_get(j, i++);
    if (json_is_integer(w)) {
      assert_int_equal(v->type, TL_JV_INTEGER);
      assert_true(tl_jv_integer(v) == json_integer_value(w));
    } else {
      assert_int_equal(v->type, TL_JV_REAL);
      double x = tl_jv_real(v), y = json_real_value(w);
      assert_memory_equal(&x, &y, sizeof x);
    }
  }
  assert_int_equal(i, 10);
  json_decref(j);
  tl_jdoc_free(&d);
}

/* Reals read without strtod (mantissa <= 2^53, power of ten within 10^+-22) and those past
 * that edge, which go to strtod: each must be the double strtod reads, bit for bit. Random
 * decimals of 1-19 digits with a point anywhere and exponents of -30..30, and the edges. */
static void test_reals_bit_for_bit(void **s) {
  (void)s;
  static const char *const EDGES[] = {"9007199254740992.0",
                                      "9007199254740993.0",
                                      "9007199254740992.5",
                                      "0.9007199254740993",
                                      "1e22",
                                      "1e23",
                                      "9007199254740992e22",
                                      "1e-22",
                                      "1e-23",
                                      "123456789012345.67",
                                      "0.1",
                                      "0.30000000000000004",
                                      "4.35",
                                      "81.99",
                                      "1.7976931348623157e308",
                                      "5e-324",
                                      "0.000000000000000000001",
                                      "1E+0",
                                      "1e-0",
                                      "0.0000000000000000000123",
                                      "12345678901234567890.5",
                                      "0.12345678901234567890123",
                                      "1234567890123456789012345e-10",
                                      "100000000000000000000000e-2",
                                      "0.5e1"};
  tl_jdoc d = {0};
  char text[160], num[64];
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 200000 + (int)TL_ARRAY_LEN(EDGES); i++) {
    if (i < (int)TL_ARRAY_LEN(EDGES)) {
      snprintf(num, sizeof num, "%s", EDGES[i]);
    } else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      int digits = 1 + (int)(x % 19), point = (int)((x >> 8) % (uint64_t)(digits + 1));
      int n = 0;
      for (int k = 0; k < digits; k++) {
        if (k == point && k > 0) num[n++] = '.';
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        num[n++] = (char)('0' + (k == 0 && digits > 1 ? 1 + x % 9 : x % 10));
      }
      if ((x >> 20) % 3 == 0)
        n += snprintf(num + n, sizeof num - (size_t)n, "e%d", (int)((x >> 24) % 61) - 30);
      else if (point == 0 || point == digits)
        n += snprintf(num + n, sizeof num - (size_t)n, ".5");
      num[n] = '\0';
    }
    snprintf(text, sizeof text, "[%s,-%s]", num, num);
    const tl_jv *a = NULL;
    if (tl_jdoc_parse(&d, text, strlen(text), &a) != TL_OK) fail_msg("%s refused", text);
    double want = strtod(num, NULL), got = tl_jv_real(tl_jv_first(a)),
           got_neg = tl_jv_real(tl_jv_first(a) + 1), want_neg = -want;
    if (tl_jv_first(a)->type != TL_JV_REAL || memcmp(&want, &got, sizeof want) != 0 ||
        memcmp(&want_neg, &got_neg, sizeof want) != 0)
      fail_msg("%s: %.17g (strtod %.17g), -: %.17g", num, got, want, got_neg);
  }
  tl_jdoc_free(&d);
}

/* Every text here is refused by json_loads(text, 0); tl_jdoc_parse must refuse it too. */
static void test_refuses_what_jansson_refuses(void **s) {
  (void)s;
  static const char *const texts[] = {
      "",
      " ",
      "1",
      "\"s\"",
      "true",
      "null", /* no object or array at the top */
      "[",
      "[1,]",
      "[,1]",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\":1,}",
      "{a:1}",
      "[1 2]",
      "[1]]",
      "[1] x",
      "[01]",
      "[-]",
      "[1.]",
      "[.5]",
      "[1e]",
      "[1e+]",
      "[+1]",
      "[0x10]",
      "[NaN]",
      "[Infinity]",
      "[9223372036854775808]",
      "[-9223372036854775809]",
      "[1e400]",
      "[-1e400]",
      "[truex]",
      "[tru]",
      "[nul]",
      "[True]",
      "[\"a\nb\"]",
      "[\"a\x01\"]",
      "[\"\\x\"]",
      "[\"\\u12\"]",
      "[\"\\u00G0\"]",
      "[\"abc]",
      "[\"\\ud800\"]",
      "[\"\\ud800x\"]",
      "[\"\\ud800\\u0041\"]",
      "[\"\\udc00\"]",
      "[\"\\u0000\"]",
      "{\"\\u0000\":1}",
      "[\"\xc3\"]",
      "[\"\xc0\x80\"]",
      "[\"\xed\xa0\x80\"]",
      "[\"\xf4\x90\x80\x80\"]",
      "[\"\x80\"]",
      "[\xc3\xa9]",
      "\xef\xbb\xbf[]", /* a BOM is not white space for jansson */
  };
  tl_jdoc d = {0};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    json_t *j = json_loads(texts[i], 0, NULL);
    if (j) fail_msg("the test's premise is wrong: json_loads reads %s", texts[i]);
    const tl_jv *root = (const tl_jv *)1;
    int rc = tl_jdoc_parse(&d, texts[i], strlen(texts[i]), &root);
    if (rc != TL_E_INVALID) fail_msg("tl_jdoc_parse gives %d for %s", rc, texts[i]);
    assert_null(root);
  }
  /* A NUL inside the given length is refused (json_loads would stop there). */
  const tl_jv *root;
  assert_int_equal(tl_jdoc_parse(&d, "[1]\0", 4, &root), TL_E_INVALID);
  assert_int_equal(tl_jdoc_parse(&d, "[\"a\0\"]", 6, &root), TL_E_INVALID);
  tl_jdoc_free(&d);
}

/* The last of repeated names wins (jansson keeps the last value); each repeat is a member. */
static void test_repeated_names(void **s) {
  (void)s;
  tl_jdoc d = {0};
  const tl_jv *o = parse(&d, "{\"a\":1,\"b\":2,\"a\":{\"c\":3}}");
  assert_int_equal(tl_jv_size(o), 3);
  assert_int_equal(tl_jv_integer(tl_jv_get(tl_jv_get(o, "a"), "c")), 3);
  assert_int_equal(tl_jv_integer(tl_jv_get(o, "b")), 2);
  tl_jdoc_free(&d);
}

/* tl_jdoc_repeated_key: what JSON_REJECT_DUPLICATES refuses, in small objects (by pairs),
 * nested ones, and objects large enough to be checked by sorting their names. */
static void test_repeated_key_check(void **s) {
  (void)s;
  tl_jdoc d = {0};
  bool oom = true;
  parse(&d, "{\"a\":1,\"b\":{\"a\":2},\"c\":[{\"a\":1},{\"a\":2}]}");
  assert_null(tl_jdoc_repeated_key(&d, &oom));
  assert_false(oom);
  parse(&d, "{\"a\":1,\"b\":2,\"a\":3}");
  assert_string_equal(tl_jdoc_repeated_key(&d, &oom), "a");
  parse(&d, "[1,{\"x\":{\"k\":1,\"k\":2}}]");
  assert_string_equal(tl_jdoc_repeated_key(&d, &oom), "k");
  char big[1024];
  for (int dup = 0; dup <= 1; dup++) {
    size_t n = 0;
    big[n++] = '{';
    for (int i = 0; i < 40; i++)
      n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "",
                            dup && i == 39 ? 7 : i, i);
    snprintf(big + n, sizeof big - n, "}");
    parse(&d, big);
    const char *k = tl_jdoc_repeated_key(&d, &oom);
    assert_false(oom);
    if (dup)
      assert_string_equal(k, "k7");
    else
      assert_null(k);
    json_t *strict = json_loads(big, JSON_REJECT_DUPLICATES, NULL);
    assert_true((strict == NULL) == (dup == 1));
    json_decref(strict);
  }
  tl_jdoc_free(&d);
}

/* jansson allows 2048 levels of values (the top one is the first); so does tl_jv. */
static void test_depth_limit(void **s) {
  (void)s;
  for (int levels = TL_JV_MAX_DEPTH - 1; levels <= TL_JV_MAX_DEPTH + 1; levels++) {
    for (int scalar = 0; scalar <= 1; scalar++) {
      char *text = malloc((size_t)levels * 2 + 2);
      assert_non_null(text);
      size_t n = 0;
      for (int i = 0; i < levels; i++) text[n++] = '[';
      if (scalar) text[n++] = '1';
      for (int i = 0; i < levels; i++) text[n++] = ']';
      text[n] = '\0';
      json_t *j = json_loads(text, 0, NULL);
      tl_jdoc d = {0};
      const tl_jv *root;
      int rc = tl_jdoc_parse(&d, text, n, &root);
      assert_int_equal(rc == TL_OK, j != NULL);
      assert_int_equal(rc == TL_OK, levels + scalar <= TL_JV_MAX_DEPTH);
      if (rc == TL_OK) assert_int_equal(root->span, levels + scalar);
      json_decref(j);
      tl_jdoc_free(&d);
      free(text);
    }
  }
}

/* One document parsed again and again (as the projector does): a big document grows the
 * buffers, the next small one reads right, a failed parse leaves no root. */
static void test_reuse(void **s) {
  (void)s;
  tl_jdoc d = {0};
  size_t n = 20000;
  char *big = malloc(n * 12 + 16); /* "sNNNNN", with quotes and a comma: at most 9 bytes each */
  assert_non_null(big);
  size_t at = 0;
  big[at++] = '[';
  for (size_t i = 0; i < n; i++) at += (size_t)sprintf(big + at, "%s\"s%zu\"", i ? "," : "", i);
  big[at++] = ']';
  big[at] = '\0';
  const tl_jv *root = parse(&d, big);
  assert_int_equal(tl_jv_size(root), n);
  assert_string_equal(tl_jv_string(root + n), "s19999");
  assert_true(d.str_cap > strlen(big) && d.cap > n);
  root = parse(&d, "{\"x\":\"y\"}");
  assert_string_equal(tl_jv_string(tl_jv_get(root, "x")), "y");
  assert_true(d.str_cap < 1024 && d.cap < 1024); /* the big buffers were given back */
  assert_int_equal(tl_jdoc_parse(&d, "{\"x\":", 5, &root), TL_E_INVALID);
  assert_null(root);
  root = parse(&d, "[]");
  assert_int_equal(tl_jv_size(root), 0);
  assert_null(tl_jv_first(root));
  free(big);
  tl_jdoc_free(&d);
  tl_jdoc_free(&d); /* freeing twice is harmless */
}

/* tl_jv_dumps writes what tl_json_dumps writes for the tree json_loads reads. */
static void test_dumps_as_tl_json_dumps(void **s) {
  (void)s;
  static const char *const texts[] = {
      ORDER,
      "[1.0, 1e300, -0.0, 0.1, 123456789012345678, \"\\u00e9\\n\", {}, [], [[{}]]]",
      "{\"price\":\"\\u000112.50\",\"not\":\"\\u00011.5\",\"r\":2.50}",
  };
  tl_jdoc d = {0};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    json_t *j = json_loads(texts[i], 0, NULL);
    assert_non_null(j);
    char *want = tl_json_dumps(j), *got = tl_jv_dumps(parse(&d, texts[i]));
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(j);
  }
  assert_null(tl_jv_dumps(NULL));
  tl_jdoc_free(&d);
}

/* A refused text says where it stops being JSON: the wrong token, the offending byte inside a
 * string or number, or the end when it ends too early. */
static void test_error_offsets(void **s) {
  (void)s;
  static const struct {
    const char *text;
    size_t at;
  } cases[] = {
      {"{\"a\": 1,}", 8},            /* the } where a name must be */
      {"{\"a\": tru}", 6},           /* the literal */
      {"{\"a\": \"x\x01\"}", 8},     /* the control character inside the string */
      {"{\"a\": \"\\q\"}", 9},       /* the unknown escape's letter */
      {"[1, 2", 5},                  /* ended too early */
      {"[01]", 2},                   /* the digit after a leading zero */
      {"[99999999999999999999]", 1}, /* an integer outside int64: its start */
      {"  42", 2},                   /* not an object or array */
      {"", 0},
      {"{}\n x", 4}, /* garbage after the document */
      {"{\"a\":\n  [1,\n   ]}", 15},
  };
  tl_jdoc doc = {0};
  const tl_jv *root;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(tl_jdoc_parse(&doc, cases[i].text, strlen(cases[i].text), &root),
                     TL_E_INVALID);
    if (doc.err_offset != cases[i].at)
      fail_msg("%s: offset %zu, wanted %zu", cases[i].text, doc.err_offset, cases[i].at);
  }
  tl_jdoc_free(&doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_an_order),
      cmocka_unit_test(test_strings_decode_as_jansson),
      cmocka_unit_test(test_numbers_as_jansson),
      cmocka_unit_test(test_reals_bit_for_bit),
      cmocka_unit_test(test_refuses_what_jansson_refuses),
      cmocka_unit_test(test_repeated_names),
      cmocka_unit_test(test_repeated_key_check),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_dumps_as_tl_json_dumps),
      cmocka_unit_test(test_error_offsets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
