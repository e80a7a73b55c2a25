/*
 * tl_map.h: a string-keyed hash map with a capacity and least-recently-used eviction, for the
 * writer's aggregate cache. Not thread-safe: one owner thread.
 */
#ifndef TL_MAP_H
#define TL_MAP_H

#include <stddef.h>

typedef struct tl_map tl_map;

/* Frees a value when it is evicted, removed or the map is destroyed. */
typedef void (*tl_map_free_fn)(void *value);

/* capacity 0: unbounded. Returns NULL when out of memory. */
tl_map *tl_map_new(size_t capacity, tl_map_free_fn free_value);
void tl_map_free(tl_map *m);

/* The value for key (marking it recently used), or NULL. */
void *tl_map_get(tl_map *m, const char *key);

/* Inserts or replaces (freeing the old value); may evict the least recently used entry.
 * Returns 0, or -1 when out of memory (value not stored, not freed). */
int tl_map_put(tl_map *m, const char *key, void *value);

/* Removes key (freeing its value) if present. */
void tl_map_remove(tl_map *m, const char *key);

/* Evicts least recently used entries (freeing their values) until at most max_size remain. */
void tl_map_trim(tl_map *m, size_t max_size);

/* Calls fn(arg, key, value) for every entry, most recently used first, without changing the
 * order; fn must not modify the map. Stops early when fn returns non-zero, and returns that
 * value (0 when every entry was visited). */
int tl_map_each(const tl_map *m, int (*fn)(void *arg, const char *key, void *value), void *arg);

size_t tl_map_size(const tl_map *m);

#endif
