/*
 * fuzz_search_groups.c: which cached searches a changed order can touch
 * (read/search_groups.c).
 *
 * Input: a search text, then up to three product names, separated by NUL bytes. The names are
 * written as the orders projection writes an order view's items (tl_jw: quotes, backslashes
 * and control characters escaped), then read back by tl_search_touch_items; the search's
 * group comes from tl_search_group_of. Raw input is also read as items (any text: no crash).
 *
 * Invariant (tests/unit/search_groups_ref.h): a search that could show the order is touched.
 */
#include "fuzz_common.h"

#include "../unit/search_groups_ref.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 2);
  if (!text) abort();
  memcpy(text, data, size);
  text[size] = text[size + 1] = '\0';
  tl_search_touch t;
  memset(&t, 0, sizeof t);
  tl_search_touch_items(&t, text); /* whatever it is */
  const char *parts[4] = {text, "", "", ""};
  size_t n = 1;
  for (size_t i = 0; i < size && n < 4; i++)
    if (text[i] == '\0') parts[n++] = text + i + 1;
  const char *why = ref_check(parts[0], parts + 1, n > 1 ? n - 1 : 1);
  FUZZ_CHECK(why == NULL, "%s (q=%s)", why ? why : "", parts[0]);
  free(text);
  return 0;
}
