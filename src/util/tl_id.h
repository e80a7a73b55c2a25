/*
 * tl_id.h: identifiers on the wire: ULID order ids (server-generated, time-sortable), UUID
 * customer ids and event ids, and client-chosen product ids.
 */
#ifndef TL_ID_H
#define TL_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_ULID_LEN 26
#define TL_UUID_LEN 36
#define TL_PRODUCT_ID_MAX 64

/* Writes a new ULID for time ms into out (27 bytes with NUL). Ids made by one process are
 * strictly increasing, also within one millisecond (the random part is incremented).
 * Thread-safe. */
void tl_ulid_new(int64_t ms, char out[TL_ULID_LEN + 1]);

/* True if s is a well-formed ULID (26 Crockford base32 chars, upper case, first char 0-7). */
bool tl_ulid_valid(const char *s);

/* Writes a random (version 4) UUID, lower case, into out (37 bytes with NUL). Thread-safe. */
void tl_uuid_v4(char out[TL_UUID_LEN + 1]);

/* Writes a time-ordered (version 7, RFC 9562) UUID for time ms, lower case, into out. Ids made
 * by one thread are strictly increasing, also within one millisecond (the 74 random bits are
 * incremented, as for ULIDs). Event ids: the keys derived from them (a process manager's
 * idempotency keys) then land at the end of their B-tree instead of on a random page. */
void tl_uuid_v7(int64_t ms, char out[TL_UUID_LEN + 1]);

/* True if s is a UUID in 8-4-4-4-12 hex form (any case, any version). */
bool tl_uuid_valid(const char *s);

/* True if s is 1-64 characters of [A-Za-z0-9_-]. */
bool tl_product_id_valid(const char *s);

/* Fills buf with n cryptographically random bytes: getrandom, through a per-thread buffer so
 * that a request's ids cost one system call per 512 bytes rather than one each. */
void tl_random_bytes(void *buf, size_t n);

#endif
