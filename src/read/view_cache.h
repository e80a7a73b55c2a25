/*
 * view_cache.h: rendered read-model answers kept in memory (the order view, customer pages,
 * searches), so that a repeated query costs a hash look-up and a copy instead of a read
 * transaction, a B-tree walk and the rendering of its rows.
 *
 * Entries are keyed by the query (any string) and belong to a group: the unit the projector
 * invalidates (an order view's group is its order, a customer page's the customer, every
 * search shares one group). Direct-mapped: a key has one slot (hash of the key), a newer key
 * takes the slot over. Each group hashes to a generation counter; an invalidation bumps it (two
 * groups sharing a counter only cost each other extra misses). A reader that misses gets the
 * counter as a ticket, reads the read model, and puts its answer stamped with the ticket; a hit
 * needs the stamp to equal the counter now. So a reader whose read began before a commit
 * cannot have its pre-commit answer found after that commit's invalidation. The projector
 * invalidates the groups a batch touched after its COMMIT and before it publishes the batch's
 * checkpoints, so an entry found after reading a checkpoint is never older than that
 * checkpoint. Stale entries are freed when a look-up meets them in their slot, and a put that
 * would pass the budget first frees those of the next 256 slots (a rotating sweep), so entries
 * nobody asks for again cannot hold the budget.
 *
 * Thread-safe (striped mutexes, atomic counters). Values are the JSON members of an object, as
 * written by tl_jw (tl_jw_raw_members appends them back). Memory: the slots (40 bytes each), 8
 * bytes per group counter, and at most about budget bytes of keys and values, none larger than
 * TL_VCACHE_ENTRY_MAX (a put that would pass either is dropped: the read is simply not cached).
 */
#ifndef TL_VIEW_CACHE_H
#define TL_VIEW_CACHE_H

#include "util/tl_jw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tl_vcache tl_vcache;

#define TL_VCACHE_ENTRY_MAX (64 * 1024)

/* A cache of 2^slots_log2 slots and 2^groups_log2 group counters holding at most about budget
 * bytes of keys and values (NULL when out of memory). */
tl_vcache *tl_vcache_new(unsigned slots_log2, unsigned groups_log2, size_t budget);
/* Bytes of keys and values held now (approximate while others put and drop). */
size_t tl_vcache_bytes(const tl_vcache *c);
void tl_vcache_free(tl_vcache *c);

/* Appends the cached members of key (of group) to out (an open object) and returns true; else
 * returns false with *ticket set for tl_vcache_put. */
bool tl_vcache_get(tl_vcache *c, const char *group, const char *key, tl_jw *out, uint64_t *ticket);
/* Stores n bytes of members for key (of group), stamped with the ticket of the miss: unless
 * the group was invalidated since, it is found until the next invalidation (or memory runs
 * out: the cache only loses an entry). */
void tl_vcache_put(tl_vcache *c, const char *group, const char *key, uint64_t ticket,
                   const char *members, size_t n);
/* Makes every entry of group stale (and those of the groups sharing its counter). */
void tl_vcache_invalidate(tl_vcache *c, const char *group);
/* Drops every entry (a rebuild swapped tables, too many groups changed at once). */
void tl_vcache_invalidate_all(tl_vcache *c);

#endif
