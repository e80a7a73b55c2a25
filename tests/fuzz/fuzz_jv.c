/*
 * fuzz_jv.c: the one-pass JSON parser (util/tl_jv.c) against jansson's json_loads, the parser
 * it replaces on the read lane.
 *
 * Input: any bytes; both parse the C string they start with (up to the first NUL), as the
 * server hands both the NUL-terminated text SQLite returns. (json_loadb, given the length,
 * would skip a NUL right after a number or a keyword: a quirk of its lexer, never met there.)
 *
 * Invariants:
 *  - tl_jdoc_parse accepts exactly the texts json_loads(text, 0) accepts;
 *  - then both read the same values: the same types, strings byte for byte, the same integers,
 *    the same reals bit for bit, arrays element by element, and for every name of a jansson
 *    object tl_jv_get finds the value jansson kept (the last of repeated names), with as many
 *    distinct names on both sides;
 *  - tl_money_from_jv gives what tl_money_from_json gives, for every value;
 *  - when no name repeats, tl_jv_dumps writes exactly tl_json_dumps' text;
 *  - tl_jdoc_repeated_key finds a name exactly when json_loads(text, JSON_REJECT_DUPLICATES)
 *    refuses a text json_loads(text, 0) accepts (how request bodies are checked).
 * One document is reused across inputs, as the projector reuses its own.
 */
#include "fuzz_common.h"

#include "util/tl_common.h"
#include "util/tl_jv.h"
#include "util/tl_money.h"

#include <stdbool.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init_jansson();
  return 0;
}

static tl_jdoc doc;

/* Names of o's members that do not repeat later (the distinct names). */
static size_t distinct_names(const tl_jv *o) {
  size_t n = 0;
  TL_JV_FOREACH(m, o) {
    if (tl_jv_get(o, m->key) == m) n++;
  }
  return n;
}

/* Compares j and v; returns the number of values jansson holds (for the repeat test). */
static size_t same(const json_t *j, const tl_jv *v, bool *repeats) {
  int64_t a = 0, b = 0;
  int ra = tl_money_from_json(j, &a), rb = tl_money_from_jv(v, &b);
  FUZZ_CHECK(ra == rb && a == b, "money %d/%lld vs %d/%lld", ra, (long long)a, rb, (long long)b);
  size_t values = 1;
  switch (json_typeof(j)) {
    case JSON_OBJECT: {
      FUZZ_CHECK(v->type == TL_JV_OBJECT, "object vs type %d", (int)v->type);
      size_t distinct = distinct_names(v);
      FUZZ_CHECK(distinct == json_object_size(j), "%zu vs %zu names", distinct,
                 json_object_size(j));
      if (tl_jv_size(v) != distinct) *repeats = true;
      const char *key;
      size_t key_len;
      json_t *value;
      json_object_keylen_foreach((json_t *)j, key, key_len, value) {
        FUZZ_CHECK(strlen(key) == key_len, "a name with a NUL was accepted");
        const tl_jv *m = tl_jv_get(v, key);
        FUZZ_CHECK(m != NULL, "member %s missing", key);
        values += same(value, m, repeats);
      }
      return values;
    }
    case JSON_ARRAY: {
      FUZZ_CHECK(v->type == TL_JV_ARRAY, "array vs type %d", (int)v->type);
      FUZZ_CHECK(tl_jv_size(v) == json_array_size(j), "%zu vs %zu elements", tl_jv_size(v),
                 json_array_size(j));
      size_t i = 0;
      TL_JV_FOREACH(e, v) {
        FUZZ_CHECK(e->key == NULL, "an element has a name");
        values += same(json_array_get(j, i++), e, repeats);
      }
      return values;
    }
    case JSON_STRING:
      FUZZ_CHECK(v->type == TL_JV_STRING, "string vs type %d", (int)v->type);
      FUZZ_CHECK(tl_jv_string_len(v) == json_string_length(j) &&
                     memcmp(tl_jv_string(v), json_string_value(j), json_string_length(j)) == 0 &&
                     tl_jv_string(v)[tl_jv_string_len(v)] == '\0',
                 "strings differ");
      return values;
    case JSON_INTEGER:
      FUZZ_CHECK(v->type == TL_JV_INTEGER && tl_jv_integer(v) == json_integer_value(j),
                 "integer %lld vs %lld", (long long)json_integer_value(j),
                 (long long)tl_jv_integer(v));
      return values;
    case JSON_REAL: {
      double x = json_real_value(j), y = tl_jv_real(v);
      FUZZ_CHECK(v->type == TL_JV_REAL && memcmp(&x, &y, sizeof x) == 0, "real %.17g vs %.17g", x,
                 y);
      return values;
    }
    case JSON_TRUE: FUZZ_CHECK(v->type == TL_JV_TRUE, "true vs %d", (int)v->type); return values;
    case JSON_FALSE: FUZZ_CHECK(v->type == TL_JV_FALSE, "false vs %d", (int)v->type); return values;
    case JSON_NULL: FUZZ_CHECK(v->type == TL_JV_NULL, "null vs %d", (int)v->type); return values;
  }
  FUZZ_CHECK(0, "unknown jansson type");
  return values;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_strndup(data, size);
  json_t *j = json_loads(text, 0, NULL);
  const tl_jv *root = NULL;
  int rc = tl_jdoc_parse(&doc, text, strlen(text), &root);
  FUZZ_CHECK(rc != TL_E_NOMEM, "out of memory");
  FUZZ_CHECK((j != NULL) == (rc == TL_OK), "jansson %s, tl_jv %s", j ? "accepts" : "refuses",
             rc == TL_OK ? "accepts" : "refuses");
  if (j) {
    bool repeats = false;
    size_t values = same(j, root, &repeats);
    FUZZ_CHECK(repeats || values == root->span, "%zu values vs %u nodes", values, root->span);
    bool oom = false;
    const char *dup = tl_jdoc_repeated_key(&doc, &oom);
    FUZZ_CHECK(!oom, "out of memory");
    json_t *strict = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK((strict == NULL) == (dup != NULL), "jansson %s duplicates, tl_jv %s",
               strict ? "finds no" : "refuses", dup ? "finds one" : "finds none");
    json_decref(strict);
    if (!repeats) {
      char *a = tl_json_dumps(j), *b = tl_jv_dumps(root);
      FUZZ_CHECK(a && b && strcmp(a, b) == 0, "dumps differ: %s vs %s", a ? a : "(null)",
                 b ? b : "(null)");
      free(a);
      free(b);
    }
  }
  json_decref(j);
  free(text);
  return 0;
}
