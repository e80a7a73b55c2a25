/*
 * view_cache.c: see view_cache.h.
 */
#include "read/view_cache.h"

#include "util/tl_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 32 /* bytes of a key with its NUL; longer keys are not cached (ULIDs are 26) */
#define STRIPES 256

typedef struct slot {
  char key[KEY_MAX];
  char *val; /* NULL: empty */
  size_t len;
  uint64_t gen;
} slot;

struct tl_vcache {
  slot *slots;
  size_t mask;
  size_t budget;
  _Atomic size_t bytes; /* of the values held */
  pthread_mutex_t locks[STRIPES];
};

tl_vcache *tl_vcache_new(unsigned slots_log2, size_t budget) {
  tl_vcache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->budget = budget;
  atomic_init(&c->bytes, 0);
  c->slots = calloc((size_t)1 << slots_log2, sizeof *c->slots);
  if (!c->slots) {
    free(c);
    return NULL;
  }
  c->mask = ((size_t)1 << slots_log2) - 1;
  for (int i = 0; i < STRIPES; i++) pthread_mutex_init(&c->locks[i], NULL);
  return c;
}

void tl_vcache_free(tl_vcache *c) {
  if (!c) return;
  for (size_t i = 0; i <= c->mask; i++) free(c->slots[i].val);
  for (int i = 0; i < STRIPES; i++) pthread_mutex_destroy(&c->locks[i]);
  free(c->slots);
  free(c);
}

static size_t slot_of(const tl_vcache *c, const char *key) {
  uint64_t h = tl_fnv1a_str(key);
  return (size_t)(h ^ (h >> 29)) & c->mask;
}

static pthread_mutex_t *lock_of(tl_vcache *c, size_t i) {
  return &c->locks[i % STRIPES];
}

bool tl_vcache_get(tl_vcache *c, const char *key, tl_jw *out, uint64_t *ticket) {
  *ticket = UINT64_MAX; /* no put */
  if (strlen(key) >= KEY_MAX) return false;
  size_t i = slot_of(c, key);
  slot *s = &c->slots[i];
  pthread_mutex_lock(lock_of(c, i));
  bool hit = s->val && strcmp(s->key, key) == 0;
  if (hit)
    tl_jw_raw_members(out, s->val, s->len);
  else
    *ticket = s->gen;
  pthread_mutex_unlock(lock_of(c, i));
  return hit;
}

size_t tl_vcache_bytes(const tl_vcache *c) {
  return atomic_load(&((tl_vcache *)c)->bytes);
}

void tl_vcache_put(tl_vcache *c, const char *key, uint64_t ticket, const char *members, size_t n) {
  if (ticket == UINT64_MAX || strlen(key) >= KEY_MAX || n > TL_VCACHE_ENTRY_MAX ||
      atomic_load(&c->bytes) + n > c->budget)
    return;
  char *val = malloc(n ? n : 1);
  if (!val) return;
  memcpy(val, members, n);
  size_t i = slot_of(c, key);
  slot *s = &c->slots[i];
  pthread_mutex_lock(lock_of(c, i));
  if (s->gen == ticket) {
    char *old = s->val;
    atomic_fetch_add(&c->bytes, n);
    if (old) atomic_fetch_sub(&c->bytes, s->len);
    s->val = val;
    s->len = n;
    memcpy(s->key, key, strlen(key) + 1);
    val = old;
  }
  pthread_mutex_unlock(lock_of(c, i));
  free(val); /* the replaced value, or ours when the slot moved on */
}

static void drop(tl_vcache *c, size_t i) {
  slot *s = &c->slots[i];
  pthread_mutex_lock(lock_of(c, i));
  s->gen++;
  char *old = s->val;
  if (old) atomic_fetch_sub(&c->bytes, s->len);
  s->val = NULL;
  pthread_mutex_unlock(lock_of(c, i));
  free(old);
}

void tl_vcache_invalidate(tl_vcache *c, const char *key) {
  drop(c, slot_of(c, key)); /* also for a long key: harmless */
}

void tl_vcache_invalidate_all(tl_vcache *c) {
  for (size_t i = 0; i <= c->mask; i++) drop(c, i);
}
