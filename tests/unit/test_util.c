/* test_util.c: money, ids, time parsing and the LRU map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/tl_buf.h"
#include "util/tl_common.h"
#include "util/tl_id.h"
#include "util/tl_jw.h"
#include "util/tl_map.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t money(const char *text, int *rc) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  assert_non_null(j);
  int64_t v = -1;
  *rc = tl_money_from_json(j, &v);
  json_decref(j);
  return v;
}

static void test_money_two_decimals_exact(void **s) {
  (void)s;
  int rc;
  assert_int_equal(money("99.99", &rc), 9999);
  assert_int_equal(rc, TL_OK);
  assert_int_equal(money("0.1", &rc), 10);
  assert_int_equal(money("19.99", &rc), 1999);
  assert_int_equal(money("5", &rc), 500);
  assert_int_equal(money("0.29", &rc), 29);
  assert_int_equal(money("1.15", &rc), 115);
  assert_int_equal(money("10000000000.00", &rc), 1000000000000LL);
  assert_int_equal(rc, TL_OK);
  assert_int_equal(money("9999999999.99", &rc), 999999999999LL);
  assert_int_equal(rc, TL_OK);
}

static void test_money_refuses_precision_and_junk(void **s) {
  (void)s;
  int rc;
  const char *bad[] = {"0.001", "1.005", "99.999", "1.0000001", "\"9.99\"", "null", "true",
                       "10000000000.01", "1e300", "[1]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    money(bad[i], &rc);
    assert_int_equal(rc, TL_E_INVALID);
  }
}

static void test_money_format(void **s) {
  (void)s;
  char buf[32];
  tl_money_format(9999, buf, sizeof buf);
  assert_string_equal(buf, "99.99");
  tl_money_format(-5, buf, sizeof buf);
  assert_string_equal(buf, "-0.05");
  json_t *j = tl_money_to_json(1999);
  char *t = tl_json_dumps(j);
  assert_string_equal(t, "19.99");
  free(t);
  int64_t back = 0;
  assert_int_equal(tl_money_from_json(j, &back), TL_OK);
  assert_int_equal(back, 1999);
  json_decref(j);
  /* Amounts beyond double precision are written exactly, inside structures too. */
  j = json_pack("{s:o, s:[o], s:s}", "total", tl_money_to_json(999899999999990001LL), "a",
                tl_money_to_json(-5), "s", "x\"y");
  t = tl_json_dumps(j);
  assert_string_equal(t, "{\"total\":9998999999999900.01,\"a\":[-0.05],\"s\":\"x\\\"y\"}");
  free(t);
  json_decref(j);
  /* A malformed placeholder (not exactly two decimals) is refused. */
  j = json_string("\x01" "12.5");
  assert_int_equal(tl_money_from_json(j, &back), TL_E_INVALID);
  json_decref(j);
}

/* Found by tests/fuzz/fuzz_money.c: an absolute slack let amounts far below a cent pass as 0
 * cents, though they have more than two decimals. */
static void test_money_refuses_tiny_fractions(void **s) {
  (void)s;
  int rc;
  const char *bad[] = {"1.5e-27", "0.000000000001", "-0.0000000001", "1e-300"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    money(bad[i], &rc);
    if (rc != TL_E_INVALID) fail_msg("%s was accepted", bad[i]);
  }
  const char *zero[] = {"0", "0.0", "-0.0", "0e5", "0.00"};
  for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
    assert_int_equal(money(zero[i], &rc), 0);
    assert_int_equal(rc, TL_OK);
  }
  assert_int_equal(money("0.01", &rc), 1);
  assert_int_equal(rc, TL_OK);
  assert_int_equal(money("-0.01", &rc), -1);
  assert_int_equal(rc, TL_OK);
}

/* Reads the placeholder text after the mark; returns the result code. */
static int mark(const char *text, int64_t *minor) {
  char buf[64];
  snprintf(buf, sizeof buf, "\x01%s", text);
  json_t *j = json_string(buf);
  assert_non_null(j);
  int rc = tl_money_from_json(j, minor);
  json_decref(j);
  return rc;
}

/* Found by tests/fuzz/fuzz_money.c: INT64_MIN made a placeholder that could not be read back,
 * and (seen in review, confirmed by the target's reference parser) 20 digits wrapped around
 * uint64 and read as a small amount. */
static void test_money_placeholder_limits(void **s) {
  (void)s;
  int64_t v = 0;
  const int64_t ends[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX};
  for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
    json_t *j = tl_money_to_json(ends[i]);
    v = 12345;
    assert_int_equal(tl_money_from_json(j, &v), TL_OK);
    assert_true(v == ends[i]);
    json_decref(j);
  }
  assert_int_equal(mark("-92233720368547758.08", &v), TL_OK);
  assert_true(v == INT64_MIN);
  assert_int_equal(mark("92233720368547758.07", &v), TL_OK);
  assert_true(v == INT64_MAX);
  assert_int_equal(mark("92233720368547758.08", &v), TL_E_INVALID);
  assert_int_equal(mark("-92233720368547758.09", &v), TL_E_INVALID);
  assert_int_equal(mark("184467440737095516.16", &v), TL_E_INVALID); /* 2^64: was 0 */
  assert_int_equal(mark("184467440737095516.19", &v), TL_E_INVALID); /* was 3 */
  assert_int_equal(mark("1000000000000000000000.00", &v), TL_E_INVALID);
}

/* Found by tests/fuzz/fuzz_money.c: tl_json_dumps rewrote any quote followed by U+0001 (a quote
 * escaped inside a string, a member name, a malformed amount) as if it opened a placeholder,
 * and wrote invalid JSON. Only whole string values made by tl_money_to_json are numbers. */
static void test_json_dumps_rewrites_only_placeholders(void **s) {
  (void)s;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:o}", "q", "x\"\x01" "9.99\"y", "lead",
                        "\x01" "007.00", "long", "\x01" "123456789012345678.00",
                        "\x01" "1.00", "key", "a", tl_money_to_json(-5));
  assert_non_null(j);
  char *t = tl_json_dumps(j);
  assert_non_null(t);
  assert_string_equal(t, "{\"q\":\"x\\\"\\u00019.99\\\"y\",\"lead\":\"\\u0001007.00\","
                         "\"long\":\"\\u0001123456789012345678.00\",\"\\u00011.00\":\"key\","
                         "\"a\":-0.05}");
  json_t *back = json_loads(t, 0, NULL);
  assert_non_null(back);
  assert_string_equal(json_string_value(json_object_get(back, "q")), "x\"\x01" "9.99\"y");
  json_decref(back);
  free(t);
  json_decref(j);
}

static void test_ulid(void **s) {
  (void)s;
  char a[27], b[27];
  tl_ulid_new(1700000000000LL, a);
  tl_ulid_new(1700000000000LL, b);
  assert_int_equal(strlen(a), 26);
  assert_true(tl_ulid_valid(a));
  assert_true(strcmp(a, b) < 0); /* strictly increasing within one millisecond */
  tl_ulid_new(1700000000001LL, b);
  assert_true(strcmp(a, b) < 0);
  assert_false(tl_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU")); /* U is not Crockford */
  assert_false(tl_ulid_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV")); /* overflows 128 bits */
  assert_false(tl_ulid_valid("01ARZ3NDEK"));
  assert_true(tl_ulid_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
}

static void test_uuid_and_product_id(void **s) {
  (void)s;
  char u[37];
  tl_uuid_v4(u);
  assert_true(tl_uuid_valid(u));
  assert_int_equal(u[14], '4');
  /* Version 7: the time in the first 48 bits, strictly increasing within a millisecond and
   * across them, never going back even if the clock does. */
  char v[37], prev[37];
  tl_uuid_v7(0x0123456789abLL, prev);
  assert_true(tl_uuid_valid(prev));
  assert_memory_equal(prev, "01234567-89ab-7", 15);
  assert_non_null(strchr("89ab", prev[19]));
  for (int i = 0; i < 5000; i++) {
    tl_uuid_v7(0x0123456789abLL + (i % 7 == 6) - (i % 11 == 10), v);
    assert_true(tl_uuid_valid(v));
    assert_int_equal(v[14], '7');
    assert_non_null(strchr("89ab", v[19]));
    assert_true(strcmp(prev, v) < 0);
    memcpy(prev, v, sizeof v);
  }
  /* Buffered randomness: consecutive draws differ, large draws bypass the buffer. */
  unsigned char r1[16], r2[16], big[4096];
  tl_random_bytes(r1, sizeof r1);
  tl_random_bytes(r2, sizeof r2);
  assert_memory_not_equal(r1, r2, sizeof r1);
  memset(big, 0, sizeof big);
  tl_random_bytes(big, sizeof big);
  int zeros = 0;
  for (size_t i = 0; i < sizeof big; i++) zeros += big[i] == 0;
  assert_true(zeros < 64); /* ~16 expected of 4096 random bytes */
  assert_true(tl_uuid_valid("123E4567-e89b-12d3-a456-426614174000"));
  assert_false(tl_uuid_valid("123e4567e89b12d3a456426614174000"));
  assert_false(tl_uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));
  assert_true(tl_product_id_valid("sku_1-A"));
  assert_false(tl_product_id_valid(""));
  assert_false(tl_product_id_valid("a b"));
  assert_false(tl_product_id_valid("a/b"));
  char long_id[66];
  memset(long_id, 'x', 65);
  long_id[65] = '\0';
  assert_false(tl_product_id_valid(long_id));
  long_id[64] = '\0';
  assert_true(tl_product_id_valid(long_id));
}

static void test_time_roundtrip(void **s) {
  (void)s;
  char iso[TL_ISO_LEN];
  tl_time_format(0, iso);
  assert_string_equal(iso, "1970-01-01T00:00:00.000Z");
  int64_t ms;
  assert_int_equal(tl_time_parse("2026-11-22T10:30:00.123Z", &ms), TL_OK);
  tl_time_format(ms, iso);
  assert_string_equal(iso, "2026-11-22T10:30:00.123Z");
  assert_int_equal(tl_time_parse("2024-02-29T23:59:59Z", &ms), TL_OK);
  assert_int_equal(tl_time_parse("2023-02-29T00:00:00Z", &ms), TL_E_INVALID);
  assert_int_equal(tl_time_parse("2026-11-22T10:30:00", &ms), TL_E_INVALID);
  assert_int_equal(tl_time_parse("2026-11-22T24:00:00Z", &ms), TL_E_INVALID);
  int64_t d;
  assert_int_equal(tl_date_parse("2026-11-22", &d), TL_OK);
  char date[11];
  tl_date_format(d, date);
  assert_string_equal(date, "2026-11-22");
  assert_int_equal(tl_date_parse("2026-13-01", &d), TL_E_INVALID);
  assert_int_equal(tl_date_parse("2026-11-22x", &d), TL_E_INVALID);
}

/* ---- tl_map ---------------------------------------------------------------------------------- */

static int g_freed;

static void count_free(void *v) {
  g_freed++;
  free(v);
}

static void *int_value(int i) {
  int *v = malloc(sizeof *v);
  assert_non_null(v);
  *v = i;
  return v;
}

static int collect_keys(void *arg, const char *key, void *value) {
  char *out = arg;
  strcat(out, key);
  strcat(out, value && *(int *)value >= 0 ? "," : "?");
  return 0;
}

static int stop_at_b(void *arg, const char *key, void *value) {
  (void)value;
  ++*(int *)arg;
  return strcmp(key, "b") == 0 ? 7 : 0;
}

/* A bounded map evicts the least recently used entry on insertion; an unbounded one only when
 * trimmed, which is what the writer relies on to keep a batch's aggregates until its commit. */
static void test_map_lru_trim_and_each(void **state) {
  (void)state;
  g_freed = 0;
  tl_map *bounded = tl_map_new(2, count_free);
  assert_non_null(bounded);
  assert_int_equal(tl_map_put(bounded, "a", int_value(1)), 0);
  assert_int_equal(tl_map_put(bounded, "b", int_value(2)), 0);
  assert_non_null(tl_map_get(bounded, "a")); /* b is now the least recently used */
  assert_int_equal(tl_map_put(bounded, "c", int_value(3)), 0);
  assert_int_equal(g_freed, 1);
  assert_null(tl_map_get(bounded, "b"));
  assert_int_equal(tl_map_size(bounded), 2);
  tl_map_free(bounded);
  assert_int_equal(g_freed, 3);

  g_freed = 0;
  tl_map *m = tl_map_new(0, count_free);
  assert_non_null(m);
  const char *keys[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++) assert_int_equal(tl_map_put(m, keys[i], int_value(i)), 0);
  assert_non_null(tl_map_get(m, "a"));
  char seen[64] = "";
  assert_int_equal(tl_map_each(m, collect_keys, seen), 0);
  assert_string_equal(seen, "a,d,c,b,"); /* most recently used first */
  int visited = 0;
  assert_int_equal(tl_map_each(m, stop_at_b, &visited), 7);
  assert_int_equal(visited, 4);
  tl_map_trim(m, 2); /* drops b and c, the two least recently used */
  assert_int_equal(g_freed, 2);
  assert_int_equal(tl_map_size(m), 2);
  assert_null(tl_map_get(m, "b"));
  assert_null(tl_map_get(m, "c"));
  assert_non_null(tl_map_get(m, "d"));
  tl_map_trim(m, 5); /* nothing to do */
  assert_int_equal(tl_map_size(m), 2);
  tl_map_trim(m, 0);
  assert_int_equal(tl_map_size(m), 0);
  assert_int_equal(tl_map_each(m, collect_keys, seen), 0);
  tl_map_free(m);
  assert_int_equal(g_freed, 4);
}

/* Found by tests/fuzz/fuzz_time.c: floor division by multiplying back overflowed (undefined
 * behaviour, reported under make test-asan) for the earliest int64 times; dates are formatted
 * over the whole range of days such times fall on. */
static void test_time_format_extremes(void **s) {
  (void)s;
  char iso[TL_ISO_LEN];
  tl_time_format(-1, iso);
  assert_string_equal(iso, "1969-12-31T23:59:59.999Z");
  tl_time_format(-86400000, iso);
  assert_string_equal(iso, "1969-12-31T00:00:00.000Z");
  tl_time_format(INT64_MIN, iso);
  assert_int_equal(strlen(iso), TL_ISO_LEN - 1);
  tl_time_format(INT64_MAX, iso);
  assert_int_equal(strlen(iso), TL_ISO_LEN - 1);
  int64_t ms;
  assert_int_equal(tl_time_parse("9999-12-31T23:59:59.999Z", &ms), TL_OK);
  tl_time_format(ms, iso);
  assert_string_equal(iso, "9999-12-31T23:59:59.999Z");
  char date[11];
  tl_date_format(TL_DAYS_MIN, date);
  assert_int_equal(strlen(date), 10);
  tl_date_format(TL_DAYS_MAX, date);
  assert_int_equal(strlen(date), 10);
  tl_date_format(-1, date);
  assert_string_equal(date, "1969-12-31");
}

/* Every ASCII byte, alone and inside text, is written as jansson writes it; appends cross the
 * buffer's growth (inline fast path, then the growing one) without losing a byte. */
static void test_json_strings_match_jansson_and_growth_keeps_every_byte(void **s) {
  (void)s;
  /* Each ASCII byte at every position of strings of 1 to 24 bytes (8 bytes at a time are
   * skipped when clean: the byte must be found in a word, in the tail and at the edges). */
  for (int c = 0; c < 128; c++) {
    for (size_t len = 1; len <= 24; len++) {
      for (size_t at = 0; at < len; at++) {
        char in[24];
        memset(in, 'a', sizeof in);
        in[len - 1] = 'z';
        in[at] = (char)c;
        json_t *j = json_stringn(in, len);
        assert_non_null(j);
        char *want = json_dumps(j, JSON_ENCODE_ANY);
        json_decref(j);
        tl_buf b = {0};
        tl_buf_json_string_n(&b, in, len);
        assert_false(b.oom);
        if (strcmp(b.data, want) != 0)
          fail_msg("byte 0x%02x at %zu of %zu: %s, want %s", c, at, len, b.data, want);
        free(want);
        tl_buf_free(&b);
      }
    }
  }
  /* UTF-8 (bytes from 0x80) is copied, never escaped, also inside a skipped word. */
  const char *utf8 = "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 12 \xf0\x9f\x98\x80!";
  tl_buf u = {0};
  tl_buf_json_string(&u, utf8);
  assert_int_equal(u.len, strlen(utf8) + 2);
  assert_memory_equal(u.data + 1, utf8, strlen(utf8));
  tl_buf_free(&u);
  tl_buf b = {0};
  size_t want_len = 0;
  for (int i = 0; i < 5000; i++) {
    char piece[32];
    int n = snprintf(piece, sizeof piece, "%d,", i);
    tl_buf_append(&b, piece, (size_t)n);
    want_len += (size_t)n;
    assert_int_equal(b.len, want_len);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
  }
  assert_memory_equal(b.data, "0,1,2,", 6);
  assert_memory_equal(b.data + b.len - 5, "4999,", 5);
  tl_buf_free(&b);
}

/* The writer places commas and brackets, escapes strings as JSON requires and writes numbers,
 * money and times exactly; jansson must read back what it wrote. */
static void test_json_writer(void **s) {
  (void)s;
  tl_jw w = {.depth = 0};
  tl_jw_object(&w);
  tl_jw_key(&w, "s");
  tl_jw_string(&w, "q\"b\\n\n\t\x01\x1f caf\xc3\xa9");
  tl_jw_key(&w, "min");
  tl_jw_int(&w, INT64_MIN);
  tl_jw_key(&w, "max");
  tl_jw_int(&w, INT64_MAX);
  tl_jw_key(&w, "zero");
  tl_jw_int(&w, 0);
  tl_jw_key(&w, "a");
  tl_jw_array(&w);
  tl_jw_array(&w);
  tl_jw_end(&w);
  tl_jw_object(&w);
  tl_jw_end(&w);
  tl_jw_bool(&w, true);
  tl_jw_bool(&w, false);
  tl_jw_null(&w);
  tl_jw_money(&w, -5);
  tl_jw_money(&w, 123456);
  tl_jw_raw(&w, "{\"x\":[1,2]}", 11);
  tl_jw_end(&w);
  tl_jw_key(&w, "t");
  tl_jw_time(&w, 1700000000123);
  tl_jw_key(&w, "e");
  tl_jw_string_n(&w, "ab\0cd", 5); /* a NUL inside a counted string is escaped, not an end */
  tl_jw_end(&w);
  char *text = tl_jw_take(&w);
  assert_non_null(text);
  assert_string_equal(text,
                      "{\"s\":\"q\\\"b\\\\n\\n\\t\\u0001\\u001F caf\xc3\xa9\","
                      "\"min\":-9223372036854775808,\"max\":9223372036854775807,\"zero\":0,"
                      "\"a\":[[],{},true,false,null,-0.05,1234.56,{\"x\":[1,2]}],"
                      "\"t\":\"2023-11-14T22:13:20.123Z\",\"e\":\"ab\\u0000cd\"}");
  json_error_t je;
  json_t *back = json_loads(text, JSON_ALLOW_NUL, &je);
  assert_non_null(back);
  assert_string_equal(json_string_value(json_object_get(back, "s")), "q\"b\\n\n\t\x01\x1f caf\xc3\xa9");
  assert_true(json_integer_value(json_object_get(back, "min")) == INT64_MIN);
  assert_int_equal(json_array_size(json_object_get(back, "a")), 8);
  json_decref(back);
  free(text);
  /* Nothing written: no text; the writer is reusable after take and free. */
  assert_null(tl_jw_take(&w));
  tl_jw_array(&w);
  tl_jw_free(&w);
  assert_int_equal(w.depth, 0);
}

/* tl_jw_json writes a jansson value as tl_json_dumps does, in its place among the others; a
 * value that cannot be written fails the whole text. */
static void test_json_writer_jansson_values(void **s) {
  (void)s;
  json_t *v = json_pack("{s:s, s:o, s:[i, f, n]}", "city", "Ly\xc3\xb3n", "price",
                        tl_money_to_json(1250), "a", 3, 2.5);
  assert_non_null(v);
  tl_jw w = {0};
  tl_jw_array(&w);
  tl_jw_int(&w, 1);
  tl_jw_json(&w, v);
  tl_jw_null(&w);
  tl_jw_end(&w);
  char *text = tl_jw_take(&w), *dumped = tl_json_dumps(v);
  assert_non_null(text);
  char want[256];
  snprintf(want, sizeof want, "[1,%s,null]", dumped);
  assert_string_equal(text, want);
  assert_non_null(strstr(text, "\"price\":12.50"));
  free(text);
  free(dumped);
  json_decref(v);
  json_t *bad = json_stringn_nocheck("\xff", 1); /* not UTF-8: jansson would not dump it */
  assert_non_null(bad);
  tl_jw_array(&w);
  tl_jw_json(&w, bad);
  tl_jw_end(&w);
  assert_true(tl_jw_failed(&w));
  assert_null(tl_jw_take(&w));
  json_decref(bad);
}

/* tl_utf8_seq: the length of each valid sequence, 0 for everything jansson refuses. */
static void test_utf8_seq(void **s) {
  (void)s;
  static const struct {
    const char *bytes;
    size_t n, want;
  } cases[] = {
      {"a", 1, 1},
      {"\xc3\xa9", 2, 2},
      {"\xe2\x82\xac", 3, 3},
      {"\xf0\x9f\x98\x80", 4, 4},
      {"\xf4\x8f\xbf\xbf", 4, 4}, /* U+10FFFF */
      {"\x80", 1, 0},             /* a stray continuation byte */
      {"\xc0\x80", 2, 0},         /* overlong NUL */
      {"\xe0\x80\x80", 3, 0},     /* overlong */
      {"\xed\xa0\x80", 3, 0},     /* a surrogate */
      {"\xf4\x90\x80\x80", 4, 0}, /* past U+10FFFF */
      {"\xc3", 1, 0},             /* cut off by n */
      {"\xc3\x28", 2, 0},         /* not a continuation */
      {"\xf5\x80\x80\x80", 4, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(tl_utf8_seq((const unsigned char *)cases[i].bytes, cases[i].n), cases[i].want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_money_two_decimals_exact),
      cmocka_unit_test(test_money_refuses_precision_and_junk),
      cmocka_unit_test(test_money_format),
      cmocka_unit_test(test_money_refuses_tiny_fractions),
      cmocka_unit_test(test_money_placeholder_limits),
      cmocka_unit_test(test_json_dumps_rewrites_only_placeholders),
      cmocka_unit_test(test_ulid),
      cmocka_unit_test(test_uuid_and_product_id),
      cmocka_unit_test(test_time_roundtrip),
      cmocka_unit_test(test_map_lru_trim_and_each),
      cmocka_unit_test(test_time_format_extremes),
      cmocka_unit_test(test_json_writer),
      cmocka_unit_test(test_json_strings_match_jansson_and_growth_keeps_every_byte),
      cmocka_unit_test(test_utf8_seq),
      cmocka_unit_test(test_json_writer_jansson_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
