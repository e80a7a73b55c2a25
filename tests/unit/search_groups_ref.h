/*
 * search_groups_ref.h: the invariant of read/search_groups.c, checked from first principles
 * (tests/unit/test_search_groups.c on chosen and random cases, tests/fuzz/fuzz_search_groups.c
 * on anything).
 *
 * For a search q and an order whose product names are names[0..n): every word w of q that can
 * name a group (its first byte, and its second if any, ASCII letters or digits) and that could
 * match a token of the names (a real match needs w to prefix the token, so at least their
 * first one or two characters agree, case aside) has its group touched by the order's items,
 * or the items touch every search; names with a non-ASCII byte touch every search; and q's
 * group, if any, is the group of one of its words. Together: a search that could show the
 * order is never left cached.
 */
#ifndef TL_SEARCH_GROUPS_REF_H
#define TL_SEARCH_GROUPS_REF_H

#include "read/search_groups.h"
#include "util/tl_jw.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The order view's items for names, as the orders projection writes them (tl_jw). */
static char *ref_items(const char *const *names, size_t n) {
  tl_jw w = {0};
  tl_jw_array(&w);
  for (size_t i = 0; i < n; i++) {
    tl_jw_object(&w);
    tl_jw_key(&w, "productId");
    tl_jw_string(&w, "p\"name\":\"x"); /* a member name inside a string must not count */
    tl_jw_key(&w, "name");
    tl_jw_string(&w, names[i]);
    tl_jw_key(&w, "quantity");
    tl_jw_int(&w, 1);
    tl_jw_end(&w);
  }
  tl_jw_end(&w);
  return tl_jw_take(&w);
}

static bool ref_alnum(unsigned char c) {
  return c < 0x80 && isalnum(c);
}

/* Whether a token of names starts with the first k (1 or 2) characters of w, case aside. */
static bool ref_token_starts(const char *const *names, size_t n, const unsigned char *w, size_t k) {
  for (size_t i = 0; i < n; i++) {
    const unsigned char *s = (const unsigned char *)names[i];
    while (*s) {
      while (*s && !ref_alnum(*s)) s++;
      const unsigned char *t = s;
      while (*s && ref_alnum(*s)) s++;
      if ((size_t)(s - t) >= k && tolower(t[0]) == tolower(w[0]) &&
          (k == 1 || tolower(t[1]) == tolower(w[1])))
        return true;
    }
  }
  return false;
}

/* NULL when the invariant holds for q and names, else what broke. */
static const char *ref_check(const char *q, const char *const *names, size_t n) {
  char *items = ref_items(names, n);
  if (!items) return NULL; /* out of memory: nothing to check */
  tl_search_touch t;
  memset(&t, 0, sizeof t);
  tl_search_touch_items(&t, items);
  free(items);
  bool ascii = true;
  for (size_t i = 0; i < n; i++)
    for (const unsigned char *s = (const unsigned char *)names[i]; *s; s++)
      if (*s >= 0x80) ascii = false;
  if (!ascii) return t.all ? NULL : "names with a non-ASCII byte did not touch every search";
  int g = tl_search_group_of(q);
  bool g_is_a_word = g < 0;
  const unsigned char *s = (const unsigned char *)q;
  while (*s) {
    while (*s && *s < 0x80 && !ref_alnum(*s)) s++;
    if (!*s) break;
    const unsigned char *w = s;
    while (*s && (*s >= 0x80 || ref_alnum(*s))) s++;
    size_t len = (size_t)(s - w);
    if (!ref_alnum(w[0]) || (len > 1 && !ref_alnum(w[1]))) continue;
    char word[3] = {(char)w[0], len > 1 ? (char)w[1] : '\0', '\0'};
    int wg = tl_search_group_of(word);
    if (wg < 0) return "a word that can name a group has none";
    if (wg == g) g_is_a_word = true;
    if (ref_token_starts(names, n, w, len > 1 ? 2 : 1) && !t.all && !t.group[wg])
      return "a word an order's token could match left its group untouched";
  }
  return g_is_a_word ? NULL : "the search's group is none of its words'";
}

#endif
