/* tl_id.c: ULID and UUID generation and validation. */
#include "util/tl_id.h"

#include <assert.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

static const char CROCKFORD[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void random_fill(unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0) continue; /* EINTR; getrandom does not fail otherwise once the pool is ready */
    p += got;
    n -= (size_t)got;
  }
}

void tl_random_bytes(void *buf, size_t n) {
  static _Thread_local unsigned char pool[512];
  static _Thread_local size_t left; /* unused bytes at the end of pool */
  unsigned char *p = buf;
  if (n > sizeof pool / 2) {
    random_fill(p, n);
    return;
  }
  if (n > left) {
    random_fill(pool, sizeof pool);
    left = sizeof pool;
  }
  unsigned char *src = pool + sizeof pool - left;
  memcpy(p, src, n);
  memset(src, 0, n); /* a byte handed out is not kept */
  left -= n;
}

static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t ulid_last_ms = -1;
static unsigned char ulid_last_rand[10];

void tl_ulid_new(int64_t ms, char out[TL_ULID_LEN + 1]) {
  unsigned char b[16];
  pthread_mutex_lock(&ulid_lock);
  if (ms <= ulid_last_ms) {
    /* Same (or earlier) millisecond: keep the last time and increment the random part so ids
     * stay strictly increasing. 80 bits do not overflow in practice. */
    ms = ulid_last_ms;
    for (int i = 9; i >= 0; i--)
      if (++ulid_last_rand[i] != 0) break;
  } else {
    ulid_last_ms = ms;
    tl_random_bytes(ulid_last_rand, sizeof ulid_last_rand);
    ulid_last_rand[0] &= 0x7f; /* headroom for increments */
  }
  for (int i = 0; i < 6; i++) b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
  memcpy(b + 6, ulid_last_rand, 10);
  pthread_mutex_unlock(&ulid_lock);

  /* 128 bits as 26 base32 digits: the first digit carries 3 bits. */
  int bit = -2; /* 130 bits of digits, the top 2 are zero */
  for (int i = 0; i < TL_ULID_LEN; i++) {
    unsigned v = 0;
    for (int k = 0; k < 5; k++, bit++) {
      v <<= 1;
      if (bit >= 0) v |= (b[bit / 8] >> (7 - bit % 8)) & 1u;
    }
    out[i] = CROCKFORD[v];
  }
  out[TL_ULID_LEN] = '\0';
}

bool tl_ulid_valid(const char *s) {
  if (!s || strlen(s) != TL_ULID_LEN) return false;
  if (s[0] < '0' || s[0] > '7') return false;
  for (int i = 0; i < TL_ULID_LEN; i++)
    if (!strchr(CROCKFORD, s[i]) || s[i] == '\0') return false;
  return true;
}

static void uuid_format(const unsigned char b[16], char out[TL_UUID_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  int o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
  assert(o == TL_UUID_LEN);
}

void tl_uuid_v4(char out[TL_UUID_LEN + 1]) {
  unsigned char b[16];
  tl_random_bytes(b, sizeof b);
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  uuid_format(b, out);
}

void tl_uuid_v7(int64_t ms, char out[TL_UUID_LEN + 1]) {
  /* rand holds the 74 random bits as 10 bytes: 12 bits of rand_a (the low nibble of byte 0
   * and byte 1), then 62 bits of rand_b (the low 6 bits of byte 2, bytes 3-9). */
  static _Thread_local int64_t last_ms = -1;
  static _Thread_local unsigned char rand[10];
  if (ms <= last_ms) {
    ms = last_ms;
    for (int i = 9; i >= 0; i--) {
      unsigned char top = i == 2 ? 0x3f : i == 0 ? 0x0f : 0xff;
      if (rand[i] < top) {
        rand[i]++;
        break;
      }
      rand[i] = 0; /* carry; 74 bits do not overflow in practice */
    }
  } else {
    last_ms = ms;
    tl_random_bytes(rand, sizeof rand);
    rand[0] &= 0x07; /* headroom for increments */
    rand[2] &= 0x3f;
  }
  unsigned char b[16];
  for (int i = 0; i < 6; i++) b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
  b[6] = (unsigned char)(0x70 | rand[0]);
  b[7] = rand[1];
  b[8] = (unsigned char)(0x80 | rand[2]);
  memcpy(b + 9, rand + 3, 7);
  uuid_format(b, out);
}

static bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool tl_uuid_valid(const char *s) {
  if (!s || strlen(s) != TL_UUID_LEN) return false;
  for (int i = 0; i < TL_UUID_LEN; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!is_hex(s[i])) {
      return false;
    }
  }
  return true;
}

bool tl_product_id_valid(const char *s) {
  if (!s) return false;
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok || n >= TL_PRODUCT_ID_MAX) return false;
  }
  return n >= 1;
}
