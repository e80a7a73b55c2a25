/* tl_map.c: chained hash table plus an intrusive LRU list. */
#include "util/tl_map.h"

#include "util/tl_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
  struct entry *chain;      /* next in bucket */
  struct entry *prev, *next; /* LRU list: head = most recent */
  uint64_t hash;
  void *value;
  char key[]; /* NUL-terminated copy */
} entry;

struct tl_map {
  entry **buckets;
  size_t n_buckets, size, capacity;
  entry *lru_head, *lru_tail;
  tl_map_free_fn free_value;
};

static uint64_t hash_str(const char *s) {
  return tl_fnv1a_str(s);
}

tl_map *tl_map_new(size_t capacity, tl_map_free_fn free_value) {
  tl_map *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->n_buckets = 1024;
  m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
  if (!m->buckets) {
    free(m);
    return NULL;
  }
  m->capacity = capacity;
  m->free_value = free_value;
  return m;
}

static void lru_unlink(tl_map *m, entry *e) {
  if (e->prev) e->prev->next = e->next;
  else m->lru_head = e->next;
  if (e->next) e->next->prev = e->prev;
  else m->lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_front(tl_map *m, entry *e) {
  e->prev = NULL;
  e->next = m->lru_head;
  if (m->lru_head) m->lru_head->prev = e;
  m->lru_head = e;
  if (!m->lru_tail) m->lru_tail = e;
}

static entry **find_slot(tl_map *m, const char *key, uint64_t h) {
  entry **pp = &m->buckets[h & (m->n_buckets - 1)];
  while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) pp = &(*pp)->chain;
  return pp;
}

static void drop(tl_map *m, entry **pp) {
  entry *e = *pp;
  *pp = e->chain;
  lru_unlink(m, e);
  if (m->free_value) m->free_value(e->value);
  free(e);
  m->size--;
}

static void grow(tl_map *m) {
  size_t nb = m->n_buckets * 2;
  entry **b = calloc(nb, sizeof *b);
  if (!b) return; /* stay at the current size: slower, still correct */
  for (size_t i = 0; i < m->n_buckets; i++) {
    entry *e = m->buckets[i];
    while (e) {
      entry *next = e->chain;
      e->chain = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->n_buckets = nb;
}

void tl_map_free(tl_map *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_buckets; i++) {
    entry *e = m->buckets[i];
    while (e) {
      entry *next = e->chain;
      if (m->free_value) m->free_value(e->value);
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  free(m);
}

void *tl_map_get(tl_map *m, const char *key) {
  entry *e = *find_slot(m, key, hash_str(key));
  if (!e) return NULL;
  lru_unlink(m, e);
  lru_push_front(m, e);
  return e->value;
}

int tl_map_put(tl_map *m, const char *key, void *value) {
  uint64_t h = hash_str(key);
  entry **pp = find_slot(m, key, h);
  if (*pp) {
    entry *e = *pp;
    if (m->free_value && e->value != value) m->free_value(e->value);
    e->value = value;
    lru_unlink(m, e);
    lru_push_front(m, e);
    return 0;
  }
  size_t klen = strlen(key);
  entry *e = malloc(sizeof *e + klen + 1);
  if (!e) return -1;
  memcpy(e->key, key, klen + 1);
  e->hash = h;
  e->value = value;
  e->chain = *pp;
  e->prev = e->next = NULL;
  *pp = e;
  lru_push_front(m, e);
  m->size++;
  if (m->capacity) tl_map_trim(m, m->capacity);
  if (m->size > m->n_buckets) grow(m);
  return 0;
}

void tl_map_remove(tl_map *m, const char *key) {
  entry **pp = find_slot(m, key, hash_str(key));
  if (*pp) drop(m, pp);
}

void tl_map_trim(tl_map *m, size_t max_size) {
  while (m->size > max_size) {
    entry *old = m->lru_tail;
    drop(m, find_slot(m, old->key, old->hash));
  }
}

int tl_map_each(const tl_map *m, int (*fn)(void *arg, const char *key, void *value), void *arg) {
  for (const entry *e = m->lru_head; e; e = e->next) {
    int rc = fn(arg, e->key, e->value);
    if (rc) return rc;
  }
  return 0;
}

size_t tl_map_size(const tl_map *m) {
  return m->size;
}
