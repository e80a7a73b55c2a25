/*
 * view_cache.c: see view_cache.h.
 */
#include "read/view_cache.h"

#include "util/tl_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 256

typedef struct slot {
  char *data; /* the key, its NUL, then the members; NULL: empty */
  size_t klen, len;
  uint64_t stamp; /* the ticket it was put with */
} slot;

struct tl_vcache {
  slot *slots;
  size_t mask;
  _Atomic uint64_t *groups; /* a generation counter per group hash */
  size_t gmask;
  _Atomic uint64_t epoch; /* bumped by tl_vcache_invalidate_all */
  size_t budget;
  _Atomic size_t bytes; /* of the keys and values held */
  pthread_mutex_t locks[STRIPES];
};

tl_vcache *tl_vcache_new(unsigned slots_log2, unsigned groups_log2, size_t budget) {
  tl_vcache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->budget = budget;
  atomic_init(&c->bytes, 0);
  atomic_init(&c->epoch, 0);
  c->slots = calloc((size_t)1 << slots_log2, sizeof *c->slots);
  c->groups = calloc((size_t)1 << groups_log2, sizeof *c->groups);
  if (!c->slots || !c->groups) {
    free(c->slots);
    free(c->groups);
    free(c);
    return NULL;
  }
  c->mask = ((size_t)1 << slots_log2) - 1;
  c->gmask = ((size_t)1 << groups_log2) - 1;
  for (size_t g = 0; g <= c->gmask; g++) atomic_init(&c->groups[g], 0);
  for (int i = 0; i < STRIPES; i++) pthread_mutex_init(&c->locks[i], NULL);
  return c;
}

void tl_vcache_free(tl_vcache *c) {
  if (!c) return;
  for (size_t i = 0; i <= c->mask; i++) free(c->slots[i].data);
  for (int i = 0; i < STRIPES; i++) pthread_mutex_destroy(&c->locks[i]);
  free(c->slots);
  free(c->groups);
  free(c);
}

size_t tl_vcache_bytes(const tl_vcache *c) {
  return atomic_load(&((tl_vcache *)c)->bytes);
}

static size_t mix(uint64_t h, size_t mask) {
  return (size_t)(h ^ (h >> 29)) & mask;
}

static pthread_mutex_t *lock_of(tl_vcache *c, size_t i) {
  return &c->locks[i % STRIPES];
}

/* The group's generation now: its counter plus the epoch. Both only grow, so the sum equals an
 * earlier one exactly when neither moved in between. */
static uint64_t generation(tl_vcache *c, const char *group) {
  _Atomic uint64_t *g = &c->groups[mix(tl_fnv1a_str(group), c->gmask)];
  return atomic_load(g) + atomic_load(&c->epoch);
}

/* Empties slot s (its lock held); returns the data to free after unlocking. */
static char *take(tl_vcache *c, slot *s) {
  char *old = s->data;
  if (old) atomic_fetch_sub(&c->bytes, s->klen + 1 + s->len);
  s->data = NULL;
  return old;
}

bool tl_vcache_get(tl_vcache *c, const char *group, const char *key, tl_jw *out, uint64_t *ticket) {
  uint64_t now = generation(c, group);
  size_t klen = strlen(key);
  size_t i = mix(tl_fnv1a(TL_FNV_OFFSET, key, klen), c->mask);
  slot *s = &c->slots[i];
  char *stale = NULL;
  pthread_mutex_lock(lock_of(c, i));
  bool hit = s->data && s->klen == klen && memcmp(s->data, key, klen) == 0;
  if (hit && s->stamp != now) {
    hit = false;
    stale = take(c, s);
  }
  if (hit) tl_jw_raw_members(out, s->data + klen + 1, s->len);
  pthread_mutex_unlock(lock_of(c, i));
  free(stale);
  *ticket = now;
  return hit;
}

void tl_vcache_put(tl_vcache *c, const char *group, const char *key, uint64_t ticket,
                   const char *members, size_t n) {
  size_t klen = strlen(key);
  if (klen + 1 + n > TL_VCACHE_ENTRY_MAX || atomic_load(&c->bytes) + klen + 1 + n > c->budget)
    return;
  if (generation(c, group) != ticket) return; /* invalidated since the miss */
  char *data = malloc(klen + 1 + n);
  if (!data) return;
  memcpy(data, key, klen + 1);
  memcpy(data + klen + 1, members, n);
  size_t i = mix(tl_fnv1a(TL_FNV_OFFSET, key, klen), c->mask);
  slot *s = &c->slots[i];
  pthread_mutex_lock(lock_of(c, i));
  char *old = take(c, s);
  s->data = data;
  s->klen = klen;
  s->len = n;
  s->stamp = ticket;
  atomic_fetch_add(&c->bytes, klen + 1 + n);
  pthread_mutex_unlock(lock_of(c, i));
  free(old); /* whatever the slot held: the key's older answer, or another key */
}

void tl_vcache_invalidate(tl_vcache *c, const char *group) {
  atomic_fetch_add(&c->groups[mix(tl_fnv1a_str(group), c->gmask)], 1);
}

void tl_vcache_invalidate_all(tl_vcache *c) {
  atomic_fetch_add(&c->epoch, 1); /* a put of a ticket taken before this finds it moved */
  for (size_t i = 0; i <= c->mask; i++) {
    pthread_mutex_lock(lock_of(c, i));
    char *old = take(c, &c->slots[i]);
    pthread_mutex_unlock(lock_of(c, i));
    free(old);
  }
}
