/* test_view_cache.c: the view cache (read/view_cache.c): hits give back exactly the members
 * that were put, an invalidation between a miss and its put keeps the stale answer out, an
 * invalidated group loses every key of it and only those, keys sharing a slot replace each
 * other, bytes are bounded, and concurrent readers and an invalidating writer never see a torn
 * or stale-after-invalidation entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "read/view_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a hit for key appends to a fresh object, as text ("{...}"); NULL on a miss. */
static char *get_in(tl_vcache *c, const char *group, const char *key, uint64_t *ticket) {
  tl_jw w = {0};
  tl_jw_object(&w);
  tl_jw_key(&w, "first");
  tl_jw_int(&w, 1);
  if (!tl_vcache_get(c, group, key, &w, ticket)) {
    tl_jw_free(&w);
    return NULL;
  }
  tl_jw_key(&w, "last");
  tl_jw_int(&w, 2);
  tl_jw_end(&w);
  return tl_jw_take(&w);
}

/* The order view's use: every key is its own group. */
static char *get(tl_vcache *c, const char *key, uint64_t *ticket) {
  return get_in(c, key, key, ticket);
}
static void put(tl_vcache *c, const char *key, uint64_t ticket, const char *m, size_t n) {
  tl_vcache_put(c, key, key, ticket, m, n);
}

static void test_put_then_hit(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 8, 1 << 20);
  assert_non_null(c);
  uint64_t t;
  assert_null(get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", &t));
  const char *m = "\"status\":\"PENDING\",\"version\":1";
  put(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", t, m, strlen(m));
  char *text = get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", &t);
  assert_non_null(text);
  assert_string_equal(text, "{\"first\":1,\"status\":\"PENDING\",\"version\":1,\"last\":2}");
  free(text);
  /* An object with no members yet takes them without a comma. */
  tl_jw w = {0};
  tl_jw_object(&w);
  assert_true(tl_vcache_get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", "01HZY3J6C4Q6V9B8N7M5K3J2H1", &w, &t));
  tl_jw_end(&w);
  text = tl_jw_take(&w);
  assert_string_equal(text, "{\"status\":\"PENDING\",\"version\":1}");
  free(text);
  tl_vcache_free(c);
}

static void test_invalidation_between_miss_and_put_wins(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 8, 1 << 20);
  uint64_t t;
  assert_null(get(c, "A", &t));
  tl_vcache_invalidate(c, "A"); /* the projector committed a change meanwhile */
  put(c, "A", t, "\"v\":1", 5); /* the reader's pre-commit answer */
  assert_null(get(c, "A", &t)); /* ... is not kept */
  put(c, "A", t, "\"v\":2", 5);
  char *text = get(c, "A", &t);
  assert_string_equal(text, "{\"first\":1,\"v\":2,\"last\":2}");
  free(text);
  tl_vcache_invalidate(c, "A");
  assert_null(get(c, "A", &t));
  put(c, "A", t, "\"v\":3", 5);
  tl_vcache_invalidate_all(c);
  assert_null(get(c, "A", &t));
  tl_vcache_free(c);
}

static void test_slots_replace_each_other(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(0, 8, 1 << 20); /* one slot: every key shares it */
  uint64_t t;
  assert_null(get(c, "A", &t));
  put(c, "A", t, "\"a\":1", 5);
  assert_null(get(c, "B", &t)); /* a miss: the slot holds A */
  put(c, "B", t, "\"b\":1", 5);
  assert_null(get(c, "A", &t)); /* B took the slot over */
  char *text = get(c, "B", &t);
  assert_string_equal(text, "{\"first\":1,\"b\":1,\"last\":2}");
  free(text);
  tl_vcache_free(c);
}

/* A customer page's use: many keys (pages) per group (customer). Invalidating a group makes
 * each of its keys miss and leaves other groups' keys alone; a search-like cache with a single
 * group counter loses everything at once. */
static void test_groups(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(8, 16, 1 << 20);
  uint64_t t;
  const char *keys[] = {"c1\n20\n", "c1\n20\n01J0", "c2\n20\n"};
  const char *groups[] = {"c1", "c1", "c2"};
  for (int i = 0; i < 3; i++) {
    assert_null(get_in(c, groups[i], keys[i], &t));
    tl_vcache_put(c, groups[i], keys[i], t, "\"n\":1", 5);
  }
  for (int i = 0; i < 3; i++) {
    char *text = get_in(c, groups[i], keys[i], &t);
    assert_non_null(text);
    free(text);
  }
  size_t before = tl_vcache_bytes(c);
  tl_vcache_invalidate(c, "c1");
  assert_null(get_in(c, "c1", keys[0], &t));
  assert_null(get_in(c, "c1", keys[1], &t));
  assert_true(tl_vcache_bytes(c) < before); /* stale entries met by a look-up are freed */
  char *text = get_in(c, "c2", keys[2], &t);
  assert_non_null(text);
  free(text);
  tl_vcache_put(c, "c1", keys[0], t, "\"n\":2", 5); /* c2's ticket: not c1's generation */
  assert_null(get_in(c, "c1", keys[0], &t));
  tl_vcache_put(c, "c1", keys[0], t, "\"n\":2", 5);
  text = get_in(c, "c1", keys[0], &t);
  assert_string_equal(text, "{\"first\":1,\"n\":2,\"last\":2}");
  free(text);
  tl_vcache_free(c);

  c = tl_vcache_new(8, 0, 1 << 20); /* one counter for every group */
  assert_null(get_in(c, "", "20\nwidget", &t));
  tl_vcache_put(c, "", "20\nwidget", t, "\"n\":1", 5);
  assert_null(get_in(c, "", "20\ngadget", &t));
  tl_vcache_put(c, "", "20\ngadget", t, "\"n\":1", 5);
  text = get_in(c, "", "20\nwidget", &t);
  assert_non_null(text);
  free(text);
  tl_vcache_invalidate(c, "");
  assert_null(get_in(c, "", "20\nwidget", &t));
  assert_null(get_in(c, "", "20\ngadget", &t));
  tl_vcache_free(c);
}

/* Keys and values are bounded in bytes: a put past the budget, or larger than an entry may be,
 * is dropped (the read is just not cached); drops and replacements give their bytes back. */
static void test_byte_budget(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 8, 130);
  uint64_t t;
  char big[80];
  memset(big, 'x', sizeof big);
  assert_null(get(c, "A", &t));
  put(c, "A", t, big, 60);
  assert_int_equal(tl_vcache_bytes(c), 62); /* "A", its NUL and the members */
  assert_null(get(c, "B", &t));
  put(c, "B", t, big, 70); /* 62 + 72 > 130: not kept */
  assert_null(get(c, "B", &t));
  assert_int_equal(tl_vcache_bytes(c), 62);
  tl_vcache_invalidate(c, "A");
  assert_int_equal(tl_vcache_bytes(c), 62); /* stale, freed when met */
  assert_null(get(c, "A", &t));
  assert_int_equal(tl_vcache_bytes(c), 0);
  assert_null(get(c, "B", &t));
  put(c, "B", t, big, 70);
  assert_int_equal(tl_vcache_bytes(c), 72);
  tl_vcache_invalidate_all(c);
  assert_int_equal(tl_vcache_bytes(c), 0);
  tl_vcache_free(c);
  c = tl_vcache_new(4, 8, (size_t)1 << 30);
  char *huge = calloc(1, TL_VCACHE_ENTRY_MAX + 1);
  assert_non_null(huge);
  assert_null(get(c, "H", &t));
  put(c, "H", t, huge, TL_VCACHE_ENTRY_MAX - 1); /* with its key, one byte too many */
  assert_null(get(c, "H", &t));
  assert_int_equal(tl_vcache_bytes(c), 0);
  memset(huge, 'k', TL_VCACHE_ENTRY_MAX);
  assert_null(get(c, huge, &t)); /* a key alone too long */
  put(c, huge, t, "\"x\":1", 5);
  assert_null(get(c, huge, &t));
  assert_int_equal(tl_vcache_bytes(c), 0);
  free(huge);
  tl_vcache_free(c);
}

/* Entries nobody asks for again must not hold the budget: a put that would pass it frees the
 * stale entries of other slots first. */
static void test_stale_entries_make_room(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 8, 100);
  uint64_t t;
  char key[8];
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "A%d", i);
    assert_null(get(c, key, &t));
    put(c, key, t, "12345678", 8); /* 11 bytes each with the key */
    tl_vcache_invalidate(c, key);
  }
  assert_true(tl_vcache_bytes(c) >= 55); /* stale, still held */
  char big[60];
  memset(big, 'x', sizeof big);
  assert_null(get(c, "C", &t));
  put(c, "C", t, big, sizeof big);
  char *text = get(c, "C", &t);
  assert_non_null(text);
  free(text);
  assert_int_equal(tl_vcache_bytes(c), 62);
  tl_vcache_free(c);
}

/* The projector's protocol in small: commit a version, invalidate, then publish it. A reader
 * reads the published version first; an entry it then finds must not be older than that.
 * Readers that miss read the committed version ("the read model") and put it. */
typedef struct race {
  tl_vcache *c;
  _Atomic int committed, published;
  _Atomic int done;
  _Atomic int stale;
} race;

static void *reader(void *arg) {
  race *r = arg;
  while (!atomic_load(&r->done)) {
    uint64_t t;
    int before = atomic_load(&r->published);
    char *text = get(r->c, "K", &t);
    if (text) {
      int seen = -1;
      sscanf(text, "{\"first\":1,\"v\":%d", &seen);
      if (seen < before) atomic_store(&r->stale, 1); /* older than a version invalidated */
      free(text);
    } else {
      int v = atomic_load(&r->committed); /* "read the model" */
      char m[32];
      int n = snprintf(m, sizeof m, "\"v\":%d", v);
      put(r->c, "K", t, m, (size_t)n);
    }
  }
  return NULL;
}

static void test_concurrent_readers_never_see_an_invalidated_version(void **s) {
  (void)s;
  race r = {.c = tl_vcache_new(2, 8, 1 << 20)};
  pthread_t th[3];
  for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, reader, &r), 0);
  for (int v = 1; v <= 20000; v++) {
    atomic_store(&r.committed, v);
    tl_vcache_invalidate(r.c, "K");
    atomic_store(&r.published, v);
  }
  atomic_store(&r.done, 1);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&r.stale), 0);
  tl_vcache_free(r.c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_then_hit),
      cmocka_unit_test(test_invalidation_between_miss_and_put_wins),
      cmocka_unit_test(test_slots_replace_each_other),
      cmocka_unit_test(test_groups),
      cmocka_unit_test(test_byte_budget),
      cmocka_unit_test(test_stale_entries_make_room),
      cmocka_unit_test(test_concurrent_readers_never_see_an_invalidated_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
