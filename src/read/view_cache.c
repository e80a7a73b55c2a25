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
#define SWEEP_SLOTS 256 /* slots a put past the budget checks for stale entries to free */

typedef struct slot {
  char *data; /* the key, its NUL, then the members; NULL: empty */
  size_t klen, len;
  uint64_t stamp; /* the ticket it was put with */
  size_t group;   /* its group's counter */
} slot;

struct tl_vcache {
  slot *slots;
  size_t mask;
  _Atomic uint64_t *groups; /* a generation counter per group hash */
  size_t gmask;
  _Atomic uint64_t epoch; /* bumped by tl_vcache_invalidate_all */
  size_t budget;
  _Atomic size_t bytes; /* of the keys and values held */
  _Atomic size_t sweep; /* the next slot a sweep looks at */
  pthread_mutex_t locks[STRIPES];
};

tl_vcache *tl_vcache_new(unsigned slots_log2, unsigned groups_log2, size_t budget) {
  tl_vcache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->budget = budget;
  atomic_init(&c->bytes, 0);
  atomic_init(&c->epoch, 0);
  atomic_init(&c->sweep, 0);
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

static size_t group_of(const tl_vcache *c, const char *group) {
  return mix(tl_fnv1a_str(group), c->gmask);
}

/* A group's generation now: its counter plus the epoch. Both only grow, so the sum equals an
 * earlier one exactly when neither moved in between. */
static uint64_t generation(tl_vcache *c, size_t g) {
  return atomic_load(&c->groups[g]) + atomic_load(&c->epoch);
}

/* Slot s (its lock held) holds an entry that can no longer be found. */
static bool stale(tl_vcache *c, const slot *s) {
  return s->data && s->stamp != generation(c, s->group);
}

/* Empties slot s (its lock held); returns the data to free after unlocking. */
static char *take(tl_vcache *c, slot *s) {
  char *old = s->data;
  if (old) atomic_fetch_sub(&c->bytes, s->klen + 1 + s->len);
  s->data = NULL;
  return old;
}

bool tl_vcache_get(tl_vcache *c, const char *group, const char *key, tl_jw *out, uint64_t *ticket) {
  uint64_t now = generation(c, group_of(c, group));
  size_t klen = strlen(key);
  size_t i = mix(tl_fnv1a(TL_FNV_OFFSET, key, klen), c->mask);
  slot *s = &c->slots[i];
  char *old = NULL;
  pthread_mutex_lock(lock_of(c, i));
  bool hit = s->data && s->klen == klen && memcmp(s->data, key, klen) == 0 && s->stamp == now;
  if (hit)
    tl_jw_raw_members(out, s->data + klen + 1, s->len);
  else if (stale(c, s)) /* this key's old answer, or another key's: free it */
    old = take(c, s);
  pthread_mutex_unlock(lock_of(c, i));
  free(old);
  *ticket = now;
  return hit;
}

/* Frees the stale entries of the next SWEEP_SLOTS slots: entries nobody looks up again would
 * otherwise hold the budget, and a full cache would take no new keys. */
static void sweep(tl_vcache *c) {
  size_t from = atomic_fetch_add(&c->sweep, SWEEP_SLOTS);
  for (size_t k = 0; k < SWEEP_SLOTS && k <= c->mask; k++) {
    size_t i = (from + k) & c->mask;
    pthread_mutex_lock(lock_of(c, i));
    char *old = stale(c, &c->slots[i]) ? take(c, &c->slots[i]) : NULL;
    pthread_mutex_unlock(lock_of(c, i));
    free(old);
  }
}

void tl_vcache_put(tl_vcache *c, const char *group, const char *key, uint64_t ticket,
                   const char *members, size_t n) {
  size_t klen = strlen(key), size = klen + 1 + n;
  size_t g = group_of(c, group);
  if (size > TL_VCACHE_ENTRY_MAX || generation(c, g) != ticket) return; /* or invalidated since */
  if (atomic_load(&c->bytes) + size > c->budget) sweep(c);
  char *data = malloc(size);
  if (!data) return;
  memcpy(data, key, klen + 1);
  memcpy(data + klen + 1, members, n);
  size_t i = mix(tl_fnv1a(TL_FNV_OFFSET, key, klen), c->mask);
  slot *s = &c->slots[i];
  pthread_mutex_lock(lock_of(c, i));
  /* Past the budget even counting the entry it would replace: not cached. */
  size_t held = s->data ? s->klen + 1 + s->len : 0;
  char *old = data;
  if (atomic_load(&c->bytes) - held + size <= c->budget) {
    old = take(c, s); /* the key's older answer, another key's, or nothing */
    s->data = data;
    s->klen = klen;
    s->len = n;
    s->stamp = ticket;
    s->group = g;
    atomic_fetch_add(&c->bytes, size);
  }
  pthread_mutex_unlock(lock_of(c, i));
  free(old);
}

void tl_vcache_invalidate(tl_vcache *c, const char *group) {
  atomic_fetch_add(&c->groups[group_of(c, group)], 1);
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
