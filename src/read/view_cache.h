/*
 * view_cache.h: rendered read-model answers kept in memory, keyed by an aggregate id (the order
 * view of GET /orders/{id}), so that a repeated query costs a hash look-up and a copy instead of
 * a read transaction and a row decode.
 *
 * Direct-mapped: a key has one slot (hash of the key), a newer key takes the slot over. Each
 * slot has a generation, bumped by every invalidation of the slot. A reader that misses gets
 * the slot's generation as a ticket, reads the read model, and puts its answer only if the
 * generation is still the ticket: a reader whose read began before a commit cannot put a
 * pre-commit answer after that commit's invalidation. The projector invalidates the keys a
 * batch touched after its COMMIT and before it publishes the batch's checkpoints, so an entry
 * found after reading a checkpoint is never older than that checkpoint.
 *
 * Thread-safe (striped mutexes). Values are the JSON members of an object, as written by
 * tl_jw (tl_jw_raw_members appends them back). Memory: the slots (56 bytes each) and at most
 * about budget bytes of values, none larger than TL_VCACHE_ENTRY_MAX (a put that would pass
 * either is dropped: the read is simply not cached).
 */
#ifndef TL_VIEW_CACHE_H
#define TL_VIEW_CACHE_H

#include "util/tl_jw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tl_vcache tl_vcache;

#define TL_VCACHE_ENTRY_MAX (64 * 1024)

/* A cache of 2^slots_log2 slots holding at most about budget bytes of values (NULL when out
 * of memory). */
tl_vcache *tl_vcache_new(unsigned slots_log2, size_t budget);
/* Bytes of values held now (approximate while others put and drop). */
size_t tl_vcache_bytes(const tl_vcache *c);
void tl_vcache_free(tl_vcache *c);

/* Appends key's cached members to out (an open object) and returns true; else returns false
 * with *ticket set for tl_vcache_put. */
bool tl_vcache_get(tl_vcache *c, const char *key, tl_jw *out, uint64_t *ticket);
/* Stores n bytes of members for key, unless the slot was invalidated since the ticket was
 * taken (or memory runs out: the cache only loses an entry). */
void tl_vcache_put(tl_vcache *c, const char *key, uint64_t ticket, const char *members, size_t n);
/* Drops key's entry (and whatever else shares its slot). */
void tl_vcache_invalidate(tl_vcache *c, const char *key);
/* Drops every entry (a rebuild swapped tables, a dead letter was applied). */
void tl_vcache_invalidate_all(tl_vcache *c);

#endif
