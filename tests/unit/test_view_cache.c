/* test_view_cache.c: the view cache (read/view_cache.c): hits give back exactly the members
 * that were put, an invalidation between a miss and its put keeps the stale answer out, keys
 * sharing a slot replace each other, long keys are never cached, and concurrent readers and
 * an invalidating writer never see a torn or stale-after-invalidation entry. */
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
static char *get(tl_vcache *c, const char *key, uint64_t *ticket) {
  tl_jw w = {0};
  tl_jw_object(&w);
  tl_jw_key(&w, "first");
  tl_jw_int(&w, 1);
  if (!tl_vcache_get(c, key, &w, ticket)) {
    tl_jw_free(&w);
    return NULL;
  }
  tl_jw_key(&w, "last");
  tl_jw_int(&w, 2);
  tl_jw_end(&w);
  return tl_jw_take(&w);
}

static void test_put_then_hit(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 1 << 20);
  assert_non_null(c);
  uint64_t t;
  assert_null(get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", &t));
  const char *m = "\"status\":\"PENDING\",\"version\":1";
  tl_vcache_put(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", t, m, strlen(m));
  char *text = get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", &t);
  assert_non_null(text);
  assert_string_equal(text, "{\"first\":1,\"status\":\"PENDING\",\"version\":1,\"last\":2}");
  free(text);
  /* An object with no members yet takes them without a comma. */
  tl_jw w = {0};
  tl_jw_object(&w);
  assert_true(tl_vcache_get(c, "01HZY3J6C4Q6V9B8N7M5K3J2H1", &w, &t));
  tl_jw_end(&w);
  text = tl_jw_take(&w);
  assert_string_equal(text, "{\"status\":\"PENDING\",\"version\":1}");
  free(text);
  tl_vcache_free(c);
}

static void test_invalidation_between_miss_and_put_wins(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 1 << 20);
  uint64_t t;
  assert_null(get(c, "A", &t));
  tl_vcache_invalidate(c, "A");           /* the projector committed a change meanwhile */
  tl_vcache_put(c, "A", t, "\"v\":1", 5); /* the reader's pre-commit answer */
  assert_null(get(c, "A", &t));           /* ... is not kept */
  tl_vcache_put(c, "A", t, "\"v\":2", 5);
  char *text = get(c, "A", &t);
  assert_string_equal(text, "{\"first\":1,\"v\":2,\"last\":2}");
  free(text);
  tl_vcache_invalidate(c, "A");
  assert_null(get(c, "A", &t));
  tl_vcache_put(c, "A", t, "\"v\":3", 5);
  tl_vcache_invalidate_all(c);
  assert_null(get(c, "A", &t));
  tl_vcache_free(c);
}

static void test_slots_and_long_keys(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(0, 1 << 20); /* one slot: every key shares it */
  uint64_t t;
  assert_null(get(c, "A", &t));
  tl_vcache_put(c, "A", t, "\"a\":1", 5);
  assert_null(get(c, "B", &t)); /* a miss: the slot holds A */
  tl_vcache_put(c, "B", t, "\"b\":1", 5);
  assert_null(get(c, "A", &t)); /* B took the slot over */
  char *text = get(c, "B", &t);
  assert_string_equal(text, "{\"first\":1,\"b\":1,\"last\":2}");
  free(text);
  char long_key[64];
  memset(long_key, 'k', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = '\0';
  assert_null(get(c, long_key, &t));
  assert_true(t == UINT64_MAX);
  tl_vcache_put(c, long_key, 0, "\"x\":1", 5); /* refused whatever the ticket */
  assert_null(get(c, long_key, &t));
  tl_vcache_free(c);
}

/* Values are bounded in bytes: a put past the budget, or larger than an entry may be, is
 * dropped (the read is just not cached); drops and replacements give their bytes back. */
static void test_byte_budget(void **s) {
  (void)s;
  tl_vcache *c = tl_vcache_new(4, 100);
  uint64_t t;
  char big[80];
  memset(big, 'x', sizeof big);
  assert_null(get(c, "A", &t));
  tl_vcache_put(c, "A", t, big, 60);
  assert_int_equal(tl_vcache_bytes(c), 60);
  assert_null(get(c, "B", &t));
  tl_vcache_put(c, "B", t, big, 60); /* 120 > 100: not kept */
  assert_null(get(c, "B", &t));
  assert_int_equal(tl_vcache_bytes(c), 60);
  tl_vcache_invalidate(c, "A");
  assert_int_equal(tl_vcache_bytes(c), 0);
  tl_vcache_put(c, "B", t, big, 60);
  assert_int_equal(tl_vcache_bytes(c), 60);
  tl_vcache_invalidate_all(c);
  assert_int_equal(tl_vcache_bytes(c), 0);
  tl_vcache_free(c);
  c = tl_vcache_new(4, (size_t)1 << 30);
  char *huge = calloc(1, TL_VCACHE_ENTRY_MAX + 1);
  assert_non_null(huge);
  assert_null(get(c, "H", &t));
  tl_vcache_put(c, "H", t, huge, TL_VCACHE_ENTRY_MAX + 1);
  assert_null(get(c, "H", &t));
  assert_int_equal(tl_vcache_bytes(c), 0);
  free(huge);
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
      tl_vcache_put(r->c, "K", t, m, (size_t)n);
    }
  }
  return NULL;
}

static void test_concurrent_readers_never_see_an_invalidated_version(void **s) {
  (void)s;
  race r = {.c = tl_vcache_new(2, 1 << 20)};
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
      cmocka_unit_test(test_slots_and_long_keys),
      cmocka_unit_test(test_byte_budget),
      cmocka_unit_test(test_concurrent_readers_never_see_an_invalidated_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
