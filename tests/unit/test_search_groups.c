/* test_search_groups.c: which cached searches a changed order can touch
 * (read/search_groups.c): the group a search is cached in, the groups an order's items touch,
 * and the invariant that a search which could show an order is always touched (chosen cases
 * and random ones; tests/fuzz/fuzz_search_groups.c tries anything). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "search_groups_ref.h"

#include <stdio.h>

static const char *group(const char *q) {
  static char name[3];
  int g = tl_search_group_of(q);
  if (g < 0) return "-";
  tl_search_group_name(g, name);
  return name;
}

static void test_a_search_is_grouped_by_its_longest_word(void **state) {
  (void)state;
  assert_string_equal(group("widget"), "wi");
  assert_string_equal(group("Copper LAMP"), "co");
  assert_string_equal(group("lamp copper"), "co");
  assert_string_equal(group("widget amber"), "wi");
  assert_string_equal(group("widget cobalt"), "co"); /* equals: the later */
  assert_string_equal(group("  a "), "a");
  assert_string_equal(group("x9 (y)"), "x9");
  assert_string_equal(group("\xc3\x89"
                            "clair"),
                      "-");                     /* non-ASCII first byte */
  assert_string_equal(group("a\xc3\xa9"), "-"); /* ... or second */
  assert_string_equal(group("\xc3\x89"
                            "clair lamp"),
                      "la");                          /* another word can */
  assert_string_equal(group("caf\xc3\xa9 au"), "ca"); /* non-ASCII after the 2nd */
  assert_string_equal(group("--- ,;"), "-");
  assert_string_equal(group(""), "-");
}

/* The groups items touch, as "name name ..." in group order, or "*" for every search. */
static const char *touched(const char *items) {
  static char out[4096];
  tl_search_touch t;
  memset(&t, 0, sizeof t);
  tl_search_touch_items(&t, items);
  if (t.all) return "*";
  size_t o = 0;
  out[0] = '\0';
  for (int g = 0; g < TL_SEARCH_GROUPS; g++)
    if (t.group[g]) {
      char name[3];
      tl_search_group_name(g, name);
      o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", o ? " " : "", name);
    }
  return out;
}

static void test_an_order_touches_the_groups_of_its_names_tokens(void **state) {
  (void)state;
  assert_string_equal(
      touched("[{\"productId\":\"p1\",\"name\":\"Copper Lamp\",\"quantity\":1,\"price\":\"2.00\"},"
              "{\"productId\":\"p2\",\"name\":\"x\",\"quantity\":1,\"price\":\"1.00\"}]"),
      "co c la l x");
  /* Only names count: not product ids, keys or other members. */
  assert_string_equal(touched("[{\"productId\":\"zz\",\"name\":\"\",\"quantity\":1}]"), "");
  /* A member name inside a string is text; escapes inside a name are decoded: a quote, a
   * backslash or a control character separates tokens, an escaped ASCII letter is one. */
  assert_string_equal(
      touched("[{\"productId\":\"a\\\"name\\\":\\\"qq\",\"name\":\"ab\\\"cd\\\\ef\\u0001\"}]"),
      "ab a cd c ef e");
  assert_string_equal(touched("[{\"name\":\"\\u0010abc\\u0041x\"}]"), "ab a");
  assert_string_equal(touched("[{\"name\":\"x\\u00e9\"}]"), "*"); /* escaped non-ASCII */
  assert_string_equal(touched("[{\"name\":\"x\\u00\"}]"), "*");   /* cut short */
  assert_string_equal(touched("[{\"name\":\"\xc3\x89"
                              "clair\"}]"),
                      "*");
  assert_string_equal(touched("{\"name\":\"x\"}"), "*"); /* not an array */
  assert_string_equal(touched("[{\"name\":\"unterminated"), "*");
  assert_string_equal(touched("[]"), "");
}

static void test_the_invariant_on_chosen_cases(void **state) {
  (void)state;
  const char *names[] = {"Copper Lamp", "Walnut desk 12"};
  const char *queries[] = {"co", "lamp", "wal de", "12", "1", "z", "\xc3\xa9 lamp", "a-b c"};
  for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
    const char *why = ref_check(queries[i], names, 2);
    if (why) fail_msg("%s: %s", queries[i], why);
  }
  const char *odd[] = {"a\"b\\c", "\x01x\x7fy", "caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
    const char *why = ref_check(queries[i], odd, 3);
    if (why) fail_msg("%s: %s", queries[i], why);
  }
}

static unsigned next(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 16;
}

/* Random names and searches over a small alphabet (so words and tokens often share starts),
 * with separators, quotes, backslashes and the odd non-ASCII byte. */
static void random_text(unsigned *s, char *out, size_t cap) {
  static const char ALPHA[] = "abAB01 -\"\\";
  size_t n = next(s) % (cap - 1);
  for (size_t i = 0; i < n; i++)
    out[i] = next(s) % 50 == 0 ? (char)0xc3 : ALPHA[next(s) % (sizeof ALPHA - 1)];
  out[n] = '\0';
}

static void test_the_invariant_on_random_cases(void **state) {
  (void)state;
  unsigned seed = 20261205;
  char q[16], a[24], b[24];
  for (int i = 0; i < 50000; i++) {
    random_text(&seed, q, sizeof q);
    random_text(&seed, a, sizeof a);
    random_text(&seed, b, sizeof b);
    const char *names[] = {a, b};
    const char *why = ref_check(q, names, 1 + next(&seed) % 2);
    if (why) fail_msg("q=\"%s\" names=\"%s\", \"%s\": %s", q, a, b, why);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_search_is_grouped_by_its_longest_word),
      cmocka_unit_test(test_an_order_touches_the_groups_of_its_names_tokens),
      cmocka_unit_test(test_the_invariant_on_chosen_cases),
      cmocka_unit_test(test_the_invariant_on_random_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
