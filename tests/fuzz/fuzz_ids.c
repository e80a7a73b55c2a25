/*
 * fuzz_ids.c: identifiers (util/tl_id.c): ULID, UUID and product-id validation, and ULID
 * generation.
 *
 * Input: any bytes; the text up to the first NUL is validated as each kind of id, and the
 * first 8 bytes (little-endian, cut to 48 bits) are a time for tl_ulid_new.
 *
 * Invariants:
 *  - each validator agrees with a reference written here from the id's definition (a ULID is
 *    26 Crockford base32 digits worth at most 128 bits; a UUID is 8-4-4-4-12 hex digits; a
 *    product id is 1 to 64 of [A-Za-z0-9_-]);
 *  - tl_ulid_new makes valid ULIDs, strictly increasing from one call to the next, whose time
 *    part is the largest time given so far (the generator never goes back);
 *  - tl_uuid_v4 makes valid version-4, variant-1 UUIDs;
 *  - tl_uuid_v7 makes valid version-7, variant-1 UUIDs, strictly increasing, whose first 48
 *    bits are the largest time given so far.
 */
#include "fuzz_common.h"

#include "util/tl_id.h"

#include <stdbool.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

/* Crockford's base32 digit value of c, or -1 (upper case only; no I, L, O, U). */
static int crockford(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c < 'A' || c > 'Z' || c == 'I' || c == 'L' || c == 'O' || c == 'U') return -1;
  int v = 10 + (c - 'A');
  /* Letters after each skipped one move down by one. */
  if (c > 'I') v--;
  if (c > 'L') v--;
  if (c > 'O') v--;
  if (c > 'U') v--;
  return v;
}

static bool ref_ulid(const char *s) {
  if (strlen(s) != TL_ULID_LEN) return false;
  for (int i = 0; i < TL_ULID_LEN; i++)
    if (crockford(s[i]) < 0) return false;
  return crockford(s[0]) <= 7; /* 26 digits hold 130 bits: the top 2 must be 0 */
}

static bool ref_uuid(const char *s) {
  if (strlen(s) != TL_UUID_LEN) return false;
  for (int i = 0; i < TL_UUID_LEN; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !strchr("0123456789abcdefABCDEF", s[i])) return false;
  }
  return true;
}

static bool ref_product_id(const char *s) {
  size_t n = strlen(s);
  return n >= 1 && n <= TL_PRODUCT_ID_MAX &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* The time part (first 10 digits, 48 bits) of a valid ULID. */
static int64_t ulid_ms(const char *u) {
  int64_t ms = 0;
  for (int i = 0; i < 10; i++) ms = ms * 32 + crockford(u[i]);
  return ms;
}

static char last_ulid[TL_ULID_LEN + 1], last_v7[TL_UUID_LEN + 1];
static int64_t max_ms = -1;

/* The time part (first 48 bits: 12 hex digits around one dash) of a valid UUID. */
static int64_t uuid_ms(const char *u) {
  int64_t ms = 0;
  for (int i = 0; i < 13; i++) {
    if (u[i] == '-') continue;
    char c = u[i];
    ms = ms * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = fuzz_strndup(data, size);
  FUZZ_CHECK(tl_ulid_valid(s) == ref_ulid(s), "ULID '%s'", s);
  FUZZ_CHECK(tl_uuid_valid(s) == ref_uuid(s), "UUID '%s'", s);
  FUZZ_CHECK(tl_product_id_valid(s) == ref_product_id(s), "product id '%s'", s);
  free(s);

  uint64_t raw = 0;
  memcpy(&raw, data, size < sizeof raw ? size : sizeof raw);
  int64_t ms = (int64_t)(raw & ((UINT64_C(1) << 48) - 1));
  char u[TL_ULID_LEN + 1];
  tl_ulid_new(ms, u);
  FUZZ_CHECK(strlen(u) == TL_ULID_LEN && ref_ulid(u), "generated ULID '%s'", u);
  if (ms > max_ms) max_ms = ms;
  FUZZ_CHECK(ulid_ms(u) == max_ms, "ULID '%s' has time %lld, not %lld", u, (long long)ulid_ms(u),
             (long long)max_ms);
  FUZZ_CHECK(strcmp(u, last_ulid) > 0, "ULID '%s' does not follow '%s'", u, last_ulid);
  memcpy(last_ulid, u, sizeof u);

  char v4[TL_UUID_LEN + 1];
  tl_uuid_v4(v4);
  FUZZ_CHECK(ref_uuid(v4) && tl_uuid_valid(v4) && v4[14] == '4' && strchr("89ab", v4[19]),
             "generated UUID '%s'", v4);

  char v7[TL_UUID_LEN + 1];
  tl_uuid_v7(ms, v7);
  FUZZ_CHECK(ref_uuid(v7) && v7[14] == '7' && strchr("89ab", v7[19]), "generated UUID '%s'", v7);
  FUZZ_CHECK(uuid_ms(v7) == max_ms, "UUIDv7 '%s' has time %lld, not %lld", v7,
             (long long)uuid_ms(v7), (long long)max_ms);
  FUZZ_CHECK(strcmp(v7, last_v7) > 0, "UUIDv7 '%s' does not follow '%s'", v7, last_v7);
  memcpy(last_v7, v7, sizeof v7);
  return 0;
}
